"""The linear-regression account of transfer: how far training on one set of inputs moves outputs on another.

Problem: training on prompts where two behaviours agree (behaviour-compatible training) may or may not change what
the model does on prompts where they diverge. For a linear model the answer is exact, and it is the reference any
larger-model measurement is read against. Mechanism: a linear model ``f(x) = wᵀx`` trained by gradient descent on
squared loss from ``w0`` over training inputs ``X`` (rows) only ever moves ``w`` inside their span ``S`` (every
gradient is a combination of training rows). So an eval input ``x_e`` sees only its projection on ``S``:

    f_t(x_e) − f_0(x_e) = (P_S x_e)ᵀ (w_t − w0)

and the part of ``x_e`` orthogonal to every training input never moves. With residuals ``r = y − X w0``:

- converged (``t → ∞``, learning rate small enough): ``w − w0 = X⁺ r`` (the minimum-norm solution), so
  ``Δf(x_e) = x_eᵀ X⁺ r`` (:func:`predicted_change`);
- after ``t`` full-batch steps of size ``η`` on the mean squared loss ``½‖Xw − y‖²/n``:
  ``w_t − w0 = X⁺ (I − (I − η X Xᵀ / n)^t) r`` (:func:`predicted_change` with ``steps`` and ``lr``), exact for
  gradient descent on this loss, with no assumption on ``X``.

:func:`overlap` is ``‖P_S x_e‖ / ‖x_e‖``, how much of an eval input lies in the training span (1: fully, 0: not at
all); transfer can only happen through it. :func:`train_linear` runs the gradient descent these formulas predict
(torch, float64), to check them.

Example:
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])        # training inputs span the first two axes
    >>> y = np.array([1.0, 2.0]); w0 = np.zeros(3)
    >>> x_e = np.array([[1.0, 1.0, 5.0]])                        # the third coordinate is outside the span
    >>> round(float(predicted_change(X, y, w0, x_e)[0]), 6), round(float(overlap(X, x_e)[0]), 4)
    (3.0, 0.2722)
    >>> w = train_linear(X, y, w0, steps=2000, lr=0.5)
    >>> round(float((x_e @ (w - w0))[0]), 4)
    3.0

Constraints: squared loss and full-batch gradient descent (stochastic or adaptive optimisers leave the span only
through their preconditioner: Adam's per-coordinate scaling does, SGD's minibatches do not).
"""
from __future__ import annotations

import numpy as np

from mixprobe._check import checked
from mixprobe.errors import DataError


def _check(X: np.ndarray, x_eval: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    xe = np.asarray(x_eval, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise DataError(f"training inputs must be a non-empty 2-D array [n, d], got shape {X.shape}")
    if xe.ndim == 1:
        xe = xe[None]
    if xe.ndim != 2 or xe.shape[1] != X.shape[1]:
        raise DataError(f"eval inputs must be [m, {X.shape[1]}] like the training inputs, got shape {xe.shape}")
    if not (np.isfinite(X).all() and np.isfinite(xe).all()):
        raise DataError("inputs contain NaN or inf")
    return X, xe


@checked
def span_projection(X: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    """``[d, d]`` orthogonal projection onto the span of the rows of ``X`` (singular values below ``rtol·σ_max``
    count as zero)."""
    X, _ = _check(X, np.zeros((1, np.asarray(X).shape[-1])))
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    keep = s > rtol * (s[0] if s.size else 0.0)
    v = vt[keep]
    return v.T @ v


@checked
def overlap(X: np.ndarray, x_eval: np.ndarray) -> np.ndarray:
    """``‖P_S x_e‖ / ‖x_e‖`` per eval input: the share of its norm that lies in the training span."""
    X, xe = _check(X, x_eval)
    p = xe @ span_projection(X)
    n = np.linalg.norm(xe, axis=1)
    return np.where(n > 0, np.linalg.norm(p, axis=1) / np.where(n > 0, n, 1.0), 0.0)


@checked
def predicted_change(X: np.ndarray, y: np.ndarray, w0: np.ndarray, x_eval: np.ndarray, *,
                     steps: int | None = None, lr: float | None = None) -> np.ndarray:
    """Predicted change of each eval output ``x_eᵀ(w − w0)`` after training on ``(X, y)`` from ``w0``.

    ``steps=None``: converged (minimum-norm) solution. Otherwise ``steps`` full-batch gradient steps of size ``lr`` on
    ``½‖Xw − y‖²/n`` (the module docstring's formula; it diverges, as the training would, if ``lr`` exceeds
    ``2n / σ_max(X)²``).
    """
    X, xe = _check(X, x_eval)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    w0 = np.asarray(w0, dtype=np.float64).reshape(-1)
    if y.shape[0] != X.shape[0] or w0.shape[0] != X.shape[1]:
        raise DataError(f"y must have {X.shape[0]} entries and w0 {X.shape[1]}, got {y.shape[0]} and {w0.shape[0]}")
    r = y - X @ w0
    if steps is None:
        return xe @ (np.linalg.pinv(X) @ r)
    if lr is None or lr <= 0 or steps < 0:
        raise DataError(f"finite-step prediction needs steps >= 0 and lr > 0, got steps={steps}, lr={lr}")
    n = X.shape[0]
    # w_t − w0 = Xᵀ a_t with a_{t+1} = a_t + (η/n)(r − X Xᵀ a_t): the whole trajectory lives in the row space
    evals, evecs = np.linalg.eigh(X @ X.T)
    live = evals > 1e-12 * max(float(evals.max()), 1e-300)      # null directions of X Xᵀ leave Xᵀ a unchanged
    coef = np.zeros_like(evals)
    coef[live] = (1.0 - (1.0 - lr * evals[live] / n) ** steps) / evals[live]
    a = evecs @ (coef * (evecs.T @ r))
    return xe @ (X.T @ a)


@checked
def train_linear(X: np.ndarray, y: np.ndarray, w0: np.ndarray, *, steps: int, lr: float) -> np.ndarray:
    """Full-batch gradient descent on ``½‖Xw − y‖²/n`` from ``w0`` (torch autograd, float64); returns ``w``."""
    import torch

    X, _ = _check(X, np.zeros((1, np.asarray(X).shape[-1])))
    Xt = torch.as_tensor(X)
    yt = torch.as_tensor(np.asarray(y, dtype=np.float64).reshape(-1))
    w = torch.tensor(np.asarray(w0, dtype=np.float64).reshape(-1), requires_grad=True)
    opt = torch.optim.SGD([w], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * ((Xt @ w - yt) ** 2).mean()
        loss.backward()
        opt.step()
    return w.detach().numpy()


@checked
def r_squared(predicted: np.ndarray, measured: np.ndarray) -> float:
    """Coefficient of determination of ``measured`` by ``predicted`` (1 − SS_res / SS_tot)."""
    p, m = np.asarray(predicted, float).ravel(), np.asarray(measured, float).ravel()
    ss_tot = float(((m - m.mean()) ** 2).sum())
    return 1.0 - float(((m - p) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")

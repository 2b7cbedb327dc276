"""The linear-regression account of transfer, checked against actual gradient-descent training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mixprobe.errors import DataError
from mixprobe.mixture.linear_transfer import (
    overlap,
    predicted_change,
    r_squared,
    span_projection,
    train_linear,
)


def problem(seed: int, n: int, d: int, m: int = 40):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, rng.normal(size=n), rng.normal(size=d), rng.normal(size=(m, d))


def safe_lr(X):
    return 1.0 * X.shape[0] / np.linalg.svd(X, compute_uv=False)[0] ** 2     # below 2n/σ²: GD converges


@pytest.mark.parametrize("n, d", [(20, 50), (80, 30)])            # more features than examples, and fewer
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_closed_form_predicts_converged_training(seed, n, d):
    X, y, w0, Xe = problem(seed, n, d)
    w = train_linear(X, y, w0, steps=3000, lr=safe_lr(X))
    measured = Xe @ (w - w0)
    predicted = predicted_change(X, y, w0, Xe)
    assert r_squared(predicted, measured) >= 0.99
    # and the eval change is carried by the projection on the training span alone
    P = span_projection(X)
    assert np.allclose(Xe @ P @ (w - w0), measured, atol=1e-8)


@pytest.mark.parametrize("steps", [1, 10, 100])
def test_finite_step_formula_is_exact_for_gradient_descent(steps):
    X, y, w0, Xe = problem(7, 20, 50)
    lr = safe_lr(X)
    w = train_linear(X, y, w0, steps=steps, lr=lr)
    assert np.allclose(predicted_change(X, y, w0, Xe, steps=steps, lr=lr), Xe @ (w - w0), atol=1e-9)
    # far from converged at 1 step: the converged prediction would be wrong there
    if steps == 1:
        assert not np.allclose(predicted_change(X, y, w0, Xe), Xe @ (w - w0), atol=1e-3)


def test_transfer_scales_with_overlap_and_vanishes_off_the_span():
    rng = np.random.default_rng(3)
    d = 30
    basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
    X = rng.normal(size=(12, 10)) @ basis[:, :10].T                # training inputs span 10 of 30 directions
    y, w0 = rng.normal(size=12), np.zeros(d)
    w = train_linear(X, y, w0, steps=3000, lr=safe_lr(X))
    u_in = X[0] / np.linalg.norm(X[0])
    u_out = basis[:, 20]
    thetas = np.linspace(0, np.pi / 2, 7)
    Xe = np.stack([np.cos(t) * u_in + np.sin(t) * u_out for t in thetas])
    assert np.allclose(overlap(X, Xe), np.cos(thetas), atol=1e-10)
    change = Xe @ (w - w0)
    assert np.allclose(change, np.cos(thetas) * change[0], atol=1e-8)      # proportional to the overlap
    assert abs(change[-1]) < 1e-10                                       # orthogonal to the span: untouched


def test_adam_leaves_the_span_and_the_account_with_it():
    """The account is about gradient descent: Adam's per-coordinate scaling moves w off the training span."""
    X, y, w0, _ = problem(5, 10, 40)
    P = span_projection(X)
    off = np.eye(40) - P
    w = torch.tensor(w0, requires_grad=True)
    opt = torch.optim.Adam([w], lr=1e-2)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    for _ in range(300):
        opt.zero_grad()
        (0.5 * ((Xt @ w - yt) ** 2).mean()).backward()
        opt.step()
    dw = w.detach().numpy() - w0
    assert np.linalg.norm(off @ dw) > 0.1 * np.linalg.norm(dw)
    w_gd = train_linear(X, y, w0, steps=300, lr=safe_lr(X))
    assert np.linalg.norm(off @ (w_gd - w0)) < 1e-9 * max(1.0, np.linalg.norm(w_gd - w0))


def test_bad_input_is_named():
    X, y, w0, Xe = problem(0, 5, 4)
    with pytest.raises(DataError, match="eval inputs"):
        predicted_change(X, y, w0, Xe[:, :3])
    with pytest.raises(DataError, match="y must have"):
        predicted_change(X, y[:3], w0, Xe)
    with pytest.raises(DataError, match="lr > 0"):
        predicted_change(X, y, w0, Xe, steps=3, lr=0.0)
    with pytest.raises(DataError, match="NaN"):
        overlap(np.full((2, 4), np.nan), Xe)

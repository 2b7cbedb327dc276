"""L2-regularised logistic regression for many independent probes (one per site) in one call.

Problem: a layer sweep fits one logistic probe per (site, layer) on the same rows. Objective (scikit-learn's, so
solutions match ``LogisticRegression(C=C)``; soft labels ``y ∈ [0, 1]`` allowed; ``C`` may differ per site)::

    f(w, b) = C · Σ_i s_i · [softplus(z_i) − y_i z_i] + ½‖w‖²,   z_i = wᵀx_i + b   (intercept unpenalised)

Mechanism: features are centred by their weighted mean (same optimum, better conditioning); both solvers stop at
``max|∇f| / (C·Σ s_i) ≤ tol`` (what scikit-learn's ``newton-cholesky`` tests; default 1e-8 in float64, 1e-5 in
float32) or when steps stop making progress (``converged`` stays False).

- :func:`newton_cg_logistic` (default of ``fit_probes`` and ``LogisticProbe``), CPU: site by site in numpy on
  ``torch.get_num_threads()`` threads, Newton-CG preconditioned by the start Hessian (Nyström where ``d > 4·rank``):
  no ``d × d`` Hessian after the first, so several times faster than scikit-learn at ``d ≥ 512`` (its
  ``newton-cholesky`` forms one per iteration; ``benchmarks/results/probes.md``).
- :func:`newton_logistic`: all sites in one batched exact Newton in torch, any device (used off the CPU).

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> X = torch.randn(3, 200, 5, generator=g, dtype=torch.float64)
    >>> y = (X[..., 0] > 0).double()
    >>> a, b = newton_logistic(X, y, C=1.0), newton_cg_logistic(X, y, C=1.0)
    >>> tuple(a.coef.shape), bool(a.converged.all() and b.converged.all()), bool(torch.allclose(a.coef, b.coef))
    ((3, 5), True, True)

Constraints: dense ``X[S, n, d]`` (same ``n`` and ``d`` for every site). fp32 agrees with fp64 to ~1e-5 in the
coefficients; fp64 matches scikit-learn to ~1e-8.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mixprobe._check import checked
from mixprobe.errors import DataError


@dataclass
class NewtonResult:
    """Solution of a batch of logistic problems (original, uncentred coordinates)."""

    coef: torch.Tensor        # [S, d]
    intercept: torch.Tensor   # [S]
    n_iter: torch.Tensor      # [S] Newton iterations used per problem
    converged: torch.Tensor   # [S] bool: gradient criterion met
    grad_norm: torch.Tensor   # [S] final max|g| / (C·Σ s)
    margin: torch.Tensor | None = None  # [S, n] final z_i = wᵀx_i + b on the training rows

    def numpy(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(coef [S, d], intercept [S])`` as float64 and ``(n_iter [S], converged [S])``, all numpy on the CPU."""
        return (self.coef.detach().cpu().double().numpy(), self.intercept.detach().cpu().double().numpy(),
                self.n_iter.cpu().numpy(), self.converged.cpu().numpy())


def _inputs(X: torch.Tensor, y: Any, sample_weight: Any, C: Any, tol: float | None):
    """Labels (and weights, or ``None``) as ``[S, n]`` in ``X``'s dtype and device, ``C`` as ``[S]``, ``tol``."""
    (S, n, _), dt, dev = X.shape, X.dtype, X.device
    y = torch.as_tensor(y).to(dev, dt).expand(S, n)
    s = None if sample_weight is None else torch.as_tensor(sample_weight).to(dev, dt).expand(S, n)
    Cv = torch.as_tensor(C, dtype=dt, device=dev).reshape(-1).expand(S)
    return y, s, Cv, (1e-8 if dt == torch.float64 else 1e-5) if tol is None else float(tol)


@checked
def newton_logistic(X: torch.Tensor, y: torch.Tensor, sample_weight: torch.Tensor | None = None, *,
                    C: float | Sequence[float] | torch.Tensor = 1.0, fit_intercept: bool = True, max_iter: int = 100,
                    tol: float | None = None) -> NewtonResult:
    """Solve ``S`` independent L2 logistic regressions ``X[S, n, d]``, ``y[S, n]`` (or ``[n]``) by batched Newton.

    Per iteration: gradient and Hessian ``C·X̃ᵀdiag(s·p(1−p))X̃ + diag(1,…,1,0)`` of every site as batched
    matmuls, the step by batched Cholesky, its length by :func:`_line_search`; finished sites take zero steps.
    """
    (S, n, d), dt, dev = X.shape, X.dtype, X.device
    y, s, Cv, tol = _inputs(X, y, sample_weight, C, tol)
    s = torch.ones_like(y) if s is None else s
    ssum, m = s.sum(1), d + int(fit_intercept)
    reg, theta = torch.ones(m, dtype=dt, device=dev), torch.zeros(S, m, dtype=dt, device=dev)
    if fit_intercept:
        mu = torch.bmm(s.unsqueeze(1), X).squeeze(1) / ssum[:, None]
        Xa = torch.cat([X - mu.unsqueeze(1), torch.ones(S, n, 1, dtype=dt, device=dev)], 2)
        ybar = ((s * y).sum(1) / ssum).clamp(1e-6, 1 - 1e-6)
        reg[d], theta[:, d] = 0.0, torch.log(ybar / (1 - ybar))
    else:
        mu, Xa = torch.zeros(S, d, dtype=dt, device=dev), X
    Cs, norm = Cv[:, None] * s, Cv * ssum
    z = torch.bmm(Xa, theta.unsqueeze(-1)).squeeze(-1)
    n_iter, stall = torch.zeros(S, dtype=torch.long, device=dev), torch.zeros(S, dtype=torch.long, device=dev)
    active = torch.ones(S, dtype=torch.bool, device=dev)
    gn = best = torch.full((S,), float("inf"), dtype=dt, device=dev)
    for it in range(max_iter + 1):
        p = torch.sigmoid(z)
        g = torch.bmm((Cs * (p - y)).unsqueeze(1), Xa).squeeze(1) + reg * theta
        gn = torch.where(active, g.abs().amax(1) / norm, gn)
        stall = torch.where(gn < best, 0, stall + 1)      # five iterations without progress: precision floor
        best = torch.minimum(best, gn)
        active &= (gn > tol) & (stall < 5)
        if it == max_iter or not bool(active.any()):
            break
        H = torch.bmm(Xa.transpose(1, 2) * (Cs * p * (1 - p)).unsqueeze(1), Xa)
        H.diagonal(dim1=1, dim2=2).add_(reg)
        L, info = torch.linalg.cholesky_ex(H)
        if bool((bad := info != 0).any()):  # singular at working precision: jitter (still failing: NaN step, stop)
            H.diagonal(dim1=1, dim2=2).add_(H.diagonal(dim1=1, dim2=2).amax(1, keepdim=True) * bad[:, None] * 1e-4)
            L = torch.linalg.cholesky_ex(H)[0]
        step = -torch.cholesky_solve(g.unsqueeze(-1), L).squeeze(-1) * active[:, None]
        dz = torch.bmm(Xa, step.unsqueeze(-1)).squeeze(-1)
        t = _line_search(z, y, Cs, (reg * theta * step).sum(1), (reg * step * step).sum(1), dz)
        theta, z = theta + t[:, None] * step, z + t[:, None] * dz
        n_iter += active
        active &= t > 0            # no descent left at working precision: the optimum is reached numerically
    coef = theta[:, :d]
    intercept = theta[:, d] - (coef * mu).sum(1) if fit_intercept else torch.zeros(S, dtype=dt, device=dev)
    return NewtonResult(coef, intercept, n_iter, gn <= tol, gn, z)


def _line_search(z, y, Cs, lin, quad, dz, sigmoid=torch.sigmoid, xp: Any = torch, iters: int = 30):
    """Exact line search on ``φ(t) = f(θ + tδ)`` by safeguarded 1-D Newton on ``φ'``, batched, torch or numpy
    (``xp``): ``dz = X̃δ``, ``lin``/``quad`` the penalty terms, so ``O(n)`` per trial; a test on ``φ'`` stays exact
    in float32 where comparing objectives would not. 0 where ``δ`` is no descent direction."""
    def dphi(t):
        q = sigmoid(z + t[:, None] * dz)
        return (Cs * (q - y) * dz).sum(-1) + lin + t * quad, (Cs * q * (1 - q) * dz * dz).sum(-1) + quad

    d0 = dphi(xp.zeros_like(lin))[0]
    t, lo, hi = xp.ones_like(lin), xp.zeros_like(lin), xp.full_like(lin, float("inf"))
    for _ in range(iters):
        d1, d2 = dphi(t)
        if bool((ok := abs(d1) <= 1e-3 * abs(d0)).all()):
            break
        lo, hi = xp.where(d1 < 0, t, lo), xp.where(d1 < 0, hi, t)
        tn = t - d1 / d2                    # d2 > 0 unless δ = 0 (then ok already)
        tn = xp.where((tn > lo) & (tn < hi), tn, xp.where(xp.isinf(hi), 2 * lo, 0.5 * (lo + hi)))
        t = xp.where(ok, t, tn)
    return xp.where(d0 < 0, t, 0.0)


@checked
def newton_cg_logistic(X: torch.Tensor, y: torch.Tensor, sample_weight: torch.Tensor | None = None, *,
                       C: float | Sequence[float] | torch.Tensor = 1.0, fit_intercept: bool = True, max_iter: int = 100,
                       tol: float | None = None, max_cg: int | None = None, preconditioner: str = "nystrom",
                       rank: int = 64) -> NewtonResult:
    """Same problem as :func:`newton_logistic`, solved site by site on the CPU by preconditioned Newton-CG.

    Per site, the start Hessian (``w = 0``, ``p = ȳ``) ``M = ȳ(1−ȳ)·C·X̃ᵀSX̃ + I`` (or, with ``"nystrom"`` where
    ``d > 4·rank``, :func:`_nystrom`: ``2·n·d·rank`` flops instead of ``n·d²``) preconditions every CG solve of
    ``H δ = −g``, stopped at relative residual ``min(0.5, √(max|g|/(C·Σ s)))`` (inexact Newton); it changes the
    path, not the solution. Tensors off the CPU or not float32/64 go to :func:`newton_logistic`.
    """
    if preconditioner not in ("exact", "nystrom"):
        raise DataError(f"unknown preconditioner {preconditioner!r}; choose 'nystrom' or 'exact'")
    if X.device.type != "cpu" or X.dtype not in (torch.float32, torch.float64):
        return newton_logistic(X, y, sample_weight, C=C, fit_intercept=fit_intercept, max_iter=max_iter, tol=tol)
    S, n, d = X.shape
    y, s, Cv, tol = _inputs(X, y, sample_weight, C, tol)
    Xn, yn, sn = X.detach().numpy(), y.numpy(), None if s is None else s.numpy()

    def site(i):
        return _ncg_site(Xn[i], yn[i], None if sn is None else sn[i], float(Cv[i]), fit_intercept, max_iter, tol,
                         max_cg or 2 * (d + 1), rank if preconditioner == "nystrom" else d)

    with _blas().limit(limits=1, user_api="blas"), ThreadPoolExecutor(min(S, torch.get_num_threads())) as pool:
        w, b, it, conv, gn, z = zip(*pool.map(site, range(S)))
    return NewtonResult(torch.from_numpy(np.stack(w)), torch.tensor(b, dtype=X.dtype), torch.tensor(it),
                        torch.tensor(conv), torch.tensor(gn, dtype=X.dtype), torch.from_numpy(np.stack(z)))


@functools.cache
def _blas():
    return __import__("threadpoolctl").ThreadpoolController()


@functools.lru_cache(8)
def _sketch(d: int, rank: int, seed: int = 0) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((d, rank)))[0]


def _ncg_site(X, y, s, C, fit_intercept, max_iter, tol, max_cg, rank):
    """One site of :func:`newton_cg_logistic` in numpy (``X``'s dtype); ``(w, b, n_iter, converged, gn, z)``."""
    from scipy.special import expit
    (n, d), dt, s1 = X.shape, X.dtype.type, np.ones(X.shape[0], X.dtype) if s is None else s
    ssum = float(s1.sum())
    if fit_intercept:
        Xc = X - (mu := (s1 @ X) / dt(ssum))
        ybar = min(max(float(s1 @ y) / ssum, 1e-6), 1 - 1e-6)
        b, c = float(np.log(ybar / (1 - ybar))), C * ybar * (1 - ybar)
    else:
        mu, Xc, b, c = np.zeros(d, X.dtype), np.ascontiguousarray(X), 0.0, C / 4
    Xs = Xc if s is None else Xc * np.sqrt(s)[:, None]
    if d > 4 * rank:
        prec = _nystrom(Xs, c, rank)
    else:                                   # the Gram in the working dtype (BLAS syrk): it is only a preconditioner
        M = (Xs.T @ Xs).astype(np.float64) * c
        M[np.diag_indices(d)] += 1.0
        prec = np.linalg.inv(M).astype(X.dtype).__matmul__
    del Xs
    Cs, Mb, w, z = (C * s1).astype(X.dtype), c * ssum if fit_intercept else None, np.zeros(d, dt), np.full(n, dt(b))
    best, no_gain, n_iter = np.inf, 0, 0
    while True:
        r = Cs * ((p := expit(z)) - y)
        gw, gb = r @ Xc + w, float(r.sum()) if fit_intercept else 0.0
        gn = max(float(np.abs(gw).max()), abs(gb)) / (C * ssum)
        best, no_gain = (gn, 0) if gn < best else (best, no_gain + 1)
        if gn <= tol or n_iter == max_iter or no_gain >= 5:     # five iterations without progress: precision floor
            break
        dw, db, dz = _pcg(Xc, Cs * p * (1 - p), gw, gb, prec, Mb, min(0.5, gn ** 0.5), max_cg)
        lq = np.array([[w @ dw], [dw @ dw]])                       # the batched line search on a batch of one
        t = float(_line_search(z[None], y[None], Cs[None], lq[0], lq[1], dz[None], expit, np)[0])
        w, b, z, n_iter = w + dt(t) * dw, b + t * db, z + dt(t) * dz, n_iter + 1
        if t == 0.0:                        # no descent left at working precision
            break
    return w, b - float(w.astype(np.float64) @ mu.astype(np.float64)), n_iter, gn <= tol, gn, z


def _pcg(Xc, h, gw, gb, prec, Mb, eta, max_cg):
    """Preconditioned CG on ``H δ = −g``, ``H = X̃ᵀdiag(h)X̃ + I`` (plus the intercept row and column unless
    ``Mb`` is ``None``; ``Mb`` preconditions it); returns ``δ_w``, ``δ_b`` and ``X̃δ_w + δ_b``, accumulated."""
    dt = Xc.dtype.type
    rw, rb = -gw, -gb
    qw, qb = prec(rw), (rb / Mb if Mb else 0.0)
    pw, pb, rz = qw, qb, float(rw @ qw) + rb * qb
    target = eta * eta * rz                 # stop when ‖r‖²_{M⁻¹} ≤ η²·‖g‖²_{M⁻¹}
    dw, db, dz = np.zeros_like(gw), 0.0, np.zeros_like(h)
    for _ in range(max_cg):
        hXp = h * (Xp := Xc @ pw + dt(pb))
        Hpw, Hpb = hXp @ Xc + pw, float(hXp.sum()) if Mb else 0.0
        if not (pHp := float(pw @ Hpw) + pb * Hpb) > 0:
            break
        a = rz / pHp
        dw, dz, db, rw, rb = dw + dt(a) * pw, dz + dt(a) * Xp, db + a * pb, rw - dt(a) * Hpw, rb - a * Hpb
        qw, qb = prec(rw), (rb / Mb if Mb else 0.0)
        if (rz_new := float(rw @ qw) + rb * qb) <= target:
            break
        pw, pb, rz = qw + dt(rz_new / rz) * pw, qb + rz_new / rz * pb, rz_new
    return dw, db, dz


def _nystrom(Xs, c, rank, seed=0):
    """Apply-function of ``P⁻¹``, ``P = E + c·FFᵀ ≈ c·XsᵀXs + I``: randomized Nyström (``FFᵀ = AΩ(ΩᵀAΩ)⁺ΩᵀA``,
    ``A = XsᵀXs``, ``Ω`` orthonormal ``d × rank``) plus the diagonal it misses (``E = c·diag(A − FFᵀ) + 1``);
    Woodbury: ``P⁻¹r = r/E − Z(Zᵀr)``, ``O(d·rank)`` per application, SPD by construction."""
    dt, d = Xs.dtype, Xs.shape[1]
    Om = _sketch(d, rank, seed)
    Y = (Xs.T @ (Xs @ Om.astype(dt))).astype(np.float64)
    lam, V = np.linalg.eigh(Om.T @ Y)
    nu = np.sqrt(d) * float(np.finfo(dt).eps) * max(float(np.linalg.norm(Y)), 1e-300)
    F = Y @ (V / np.sqrt(np.maximum(lam, nu))) * np.sqrt(c)
    E = np.maximum(c * np.einsum("ij,ij->j", Xs, Xs) - np.einsum("ij,ij->i", F, F), 0.0) + 1.0
    G = F / E[:, None]
    sig, U = np.linalg.eigh(F.T @ G + np.eye(rank))
    Z, Einv = np.ascontiguousarray((G @ (U / np.sqrt(sig))).astype(dt)), (1.0 / E).astype(dt)
    return lambda r: Einv * r - Z @ (Z.T @ r)

"""mixprobe.probes.solver: both execution paths (CPU Newton-CG, batched torch Newton) land on scikit-learn's optimum.

References are scikit-learn ``LogisticRegression(solver="newton-cholesky")`` fits in float64 at a tight ``tol``
(independent code); soft labels are fitted there by row duplication (label 1 with weight ``s·p``, label 0 with
weight ``s·(1 − p)``: the same objective).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from mixprobe.probes import solver
from mixprobe.probes.solver import newton_cg_logistic, newton_logistic

SOLVERS = {"newton-cg": newton_cg_logistic, "newton": newton_logistic}


def sites(S=3, n=300, d=12, seed=4):
    """Unscaled, uncentred, anisotropic features (different per site), a class signal in every site."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = np.stack([rng.normal(size=(n, d)) * np.exp(rng.normal(0, 1, d)) + 5.0
                  + (s + 1) * 0.3 * np.outer(2 * y - 1, rng.normal(size=d)) for s in range(S)])
    return X, y


def low_rank_sites(S=2, n=500, d=160, rank=16, seed=7):
    """Residual-stream-like: low-rank covariance, per-feature noise, one massive dimension (Nyström territory)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = np.empty((S, n, d))
    for s in range(S):
        A = rng.normal(size=(rank, d)) * np.linspace(2.0, 0.2, rank)[:, None]
        X[s] = (rng.normal(size=(n, rank)) @ A + rng.normal(size=(n, d)) * np.exp(rng.normal(0, 0.5, d))
                + rng.normal(0, 1, d) + 0.4 * (s + 1) * np.outer(2 * y - 1, rng.normal(size=d) / np.sqrt(d)))
        X[s, :, 0] += 10.0
    return X, y


def sk_ref(X, y, C, sw=None, fit_intercept=True):
    """scikit-learn's float64 optimum per site: ``(coef [S, d], intercept [S])``; soft ``y`` by row duplication."""
    coefs, icpts = [], []
    for s in range(X.shape[0]):
        ys = np.asarray(y[s] if np.ndim(y) == 2 else y, dtype=np.float64)
        w = np.ones(len(ys)) if sw is None else np.asarray(sw, dtype=np.float64)
        Cs = float(np.broadcast_to(C, (X.shape[0],))[s])
        if np.isin(ys, (0.0, 1.0)).all():
            Xf, yf, wf = X[s], ys, w
        else:
            Xf, yf = np.concatenate([X[s], X[s]]), np.r_[np.ones(len(ys)), np.zeros(len(ys))]
            wf = np.r_[w * ys, w * (1 - ys)]
        m = LogisticRegression(C=Cs, solver="newton-cholesky", tol=1e-12, max_iter=1000,
                               fit_intercept=fit_intercept).fit(Xf, yf, sample_weight=wf)
        coefs.append(m.coef_[0])
        icpts.append(m.intercept_[0])
    return np.array(coefs), np.array(icpts)


def assert_close(res, ref, rtol):
    """Coefficients within ``rtol`` of each site's largest reference coefficient, intercepts within
    ``rtol·max(1, |b|)``."""
    coef, icpt = ref
    err_w = np.abs(res.coef.double().numpy() - coef).max(1) / np.abs(coef).max(1)
    err_b = np.abs(res.intercept.double().numpy() - icpt) / np.maximum(1, np.abs(icpt))
    assert err_w.max() <= rtol and err_b.max() <= rtol, (err_w, err_b)


@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weights", [False, True])
def test_solvers_match_sklearn_newton_cholesky(name, fit_intercept, weights):
    X, y = sites()
    sw = np.random.default_rng(1).uniform(0.2, 3.0, len(y)) if weights else None
    ref = sk_ref(X, y, 0.5, sw, fit_intercept)
    swt = None if sw is None else torch.as_tensor(sw)
    res = SOLVERS[name](torch.as_tensor(X), torch.as_tensor(y), swt, C=0.5, fit_intercept=fit_intercept, tol=1e-10)
    assert bool(res.converged.all()) and bool((res.grad_norm <= 1e-10).all())
    assert_close(res, ref, 1e-6)
    if not fit_intercept:
        assert bool((res.intercept == 0).all())
    # float32: converges to its default tolerance (1e-5); probabilities within 1e-3 of the optimum's
    r32 = SOLVERS[name](torch.as_tensor(X).float(), torch.as_tensor(y), swt, C=0.5, fit_intercept=fit_intercept)
    assert bool(r32.converged.all()) and r32.coef.dtype == torch.float32
    z_ref = np.einsum("snd,sd->sn", X, ref[0]) + ref[1][:, None]
    z32 = np.einsum("snd,sd->sn", X, r32.coef.double().numpy()) + r32.intercept.double().numpy()[:, None]
    assert np.abs(1 / (1 + np.exp(-z_ref)) - 1 / (1 + np.exp(-z32))).max() < 1e-3


@pytest.mark.parametrize("weights", [False, True])
def test_nystrom_preconditioner_changes_the_path_not_the_solution(weights, monkeypatch):
    """Where ``d > 4·rank`` the CPU path preconditions with a Nyström sketch; the optimum is scikit-learn's."""
    calls = []
    nystrom = solver._nystrom
    monkeypatch.setattr(solver, "_nystrom", lambda *a: calls.append(a[0].shape) or nystrom(*a))
    X, y = low_rank_sites()
    sw = np.random.default_rng(3).uniform(0.2, 3.0, len(y)) if weights else None
    ref = sk_ref(X, y, 0.05, sw)
    swt = None if sw is None else torch.as_tensor(sw)
    for dtype, tol, rtol in ((torch.float64, 1e-11, 1e-7), (torch.float32, None, 1e-4)):
        for pre in ("nystrom", "exact"):
            n_before = len(calls)
            res = newton_cg_logistic(torch.as_tensor(X).to(dtype), torch.as_tensor(y), swt, C=0.05, tol=tol,
                                     preconditioner=pre, rank=32)
            assert bool(res.converged.all())
            assert_close(res, ref, rtol)
            assert len(calls) - n_before == (X.shape[0] if pre == "nystrom" else 0)   # the sketch ran once per site
    with pytest.raises(ValueError, match="preconditioner"):
        newton_cg_logistic(torch.as_tensor(X), torch.as_tensor(y), preconditioner="cholesky")


@pytest.mark.parametrize("name", SOLVERS)
def test_soft_labels_and_per_site_C(name):
    rng = np.random.default_rng(5)
    S, n, d = 4, 120, 6
    X = rng.normal(size=(S, n, d)) * np.exp(rng.normal(0, 1, d)) + 2.0
    soft = 1 / (1 + np.exp(-(X[..., 0] - 2.0)))                       # P(y=1 | x) in (0, 1), per site
    C = np.array([0.1, 1.0, 10.0, 100.0])
    res = SOLVERS[name](torch.as_tensor(X), torch.as_tensor(soft), C=torch.as_tensor(C), tol=1e-10)
    assert bool(res.converged.all())
    assert_close(res, sk_ref(X, soft, C), 1e-6)
    # the margins handed back are the final z = Xw + b on the training rows
    z = np.einsum("snd,sd->sn", X, res.coef.numpy()) + res.intercept.numpy()[:, None]
    np.testing.assert_allclose(res.margin.numpy(), z, atol=1e-8 * np.abs(z).max())


def test_sites_on_threads_give_the_same_solution_as_one_thread():
    X, y = low_rank_sites(S=5, d=80)
    Xt, yt = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = newton_cg_logistic(Xt, yt, C=0.1)
        torch.set_num_threads(2)
        two = newton_cg_logistic(Xt, yt, C=0.1)
    finally:
        torch.set_num_threads(before)
    for f in ("coef", "intercept", "n_iter", "converged", "margin"):
        assert torch.equal(getattr(one, f), getattr(two, f)), f     # each site's arithmetic is the same, in order
    single = newton_cg_logistic(Xt[3:4], yt, C=0.1)                  # and site 3 alone is site 3 of the batch
    assert torch.equal(single.coef[0], one.coef[3])


def test_max_iter_and_unconverged_report():
    X, y = low_rank_sites(S=2, d=80)
    for f in SOLVERS.values():
        res = f(torch.as_tensor(X), torch.as_tensor(y), C=10.0, max_iter=1, tol=1e-12)
        assert res.n_iter.tolist() == [1, 1] and not bool(res.converged.any())
        assert bool((res.grad_norm > 1e-12).all())


def test_separable_rows_stay_finite():
    """Separable data at a huge ``C``: the Hessian is near-singular; both paths stay finite and classify."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    X = rng.normal(size=(2, 200, 5))
    X[..., 0] += np.where(y == 1, 4.0, -4.0)
    for f in SOLVERS.values():
        res = f(torch.as_tensor(X), torch.as_tensor(y), C=1e8, max_iter=50)
        assert bool(torch.isfinite(res.coef).all()) and bool(torch.isfinite(res.intercept).all())
        z = np.einsum("snd,sd->sn", X, res.coef.numpy()) + res.intercept.numpy()[:, None]
        assert ((z > 0) == (y > 0.5)).all()


def test_tensors_off_the_cpu_go_to_the_batched_newton(monkeypatch):
    seen = []
    monkeypatch.setattr(solver, "newton_logistic", lambda X, *a, **k: seen.append((X.device.type, k)) or "batched")
    X = torch.empty(2, 10, 3, device="meta")
    assert newton_cg_logistic(X, torch.zeros(10), C=0.3, max_iter=7) == "batched"
    assert seen == [("meta", {"C": 0.3, "fit_intercept": True, "max_iter": 7, "tol": None})]

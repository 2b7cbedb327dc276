"""Probe estimators: scikit-learn conformance, agreement with LogisticRegression, planted-direction recovery,
and a named error for every bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score

from mixprobe.errors import (DataError, EmptyDataError, NonFiniteError, OneClassError, ShapeError,
                             ZeroVarianceError)
from mixprobe.probes import (CCSProbe, CRAProbe, LATProbe, LogisticProbe, MassMeanProbe, fit_probes,
                             format_with_template, layer_sweep)


def planted(n=600, d=12, sep=2.0, seed=0, offset=5.0):
    """Gaussian blobs separated along a random unit direction u, plus a constant offset (unscaled features)."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)) + offset + np.outer(2 * y - 1, u) * sep
    return X, y, u


def pairs(n=600, d=16, seed=0):
    """Contrast pairs: truth t moves x⁺ along +v and x⁻ along −v (or the reverse); a big 'Yes'/'No' token
    direction w separates the two sets regardless of truth (mean normalisation must remove it)."""
    rng = np.random.default_rng(seed)
    v, w = np.linalg.qr(rng.normal(size=(d, 2)))[0].T
    t = rng.integers(0, 2, n)
    base = rng.normal(size=(n, d))
    sgn = (2 * t - 1)[:, None]
    xp = base + 2.0 * sgn * v + 6.0 * w + 0.3 * rng.normal(size=(n, d))
    xn = base - 2.0 * sgn * v - 6.0 * w + 0.3 * rng.normal(size=(n, d))
    return np.stack([xp, xn], 1), t, v


ALL = [LogisticProbe(C=0.5), MassMeanProbe(), LATProbe(), LATProbe(variant="mean_diff")]


@pytest.mark.parametrize("est", ALL, ids=lambda e: type(e).__name__ + getattr(e, "variant", ""))
def test_sklearn_conformance_single_input(est):
    X, y, _ = planted()
    c = clone(est)
    assert c.get_params() == est.get_params() and c is not est
    assert not hasattr(c, "coef_")                       # clone carries hyper-parameters only
    scores = cross_val_score(c, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.9
    c.fit(X, y)
    proba = c.predict_proba(X)
    assert proba.shape == (len(y), 2) and np.allclose(proba.sum(1), 1.0)
    assert np.array_equal(c.predict(X), c.classes_[(c.decision_function(X) > 0).astype(int)])
    assert c.score(X, y) > 0.9


def test_get_set_params_and_grid_search():
    p = LogisticProbe()
    assert p.set_params(C=0.1, dtype="float32") is p
    assert p.get_params()["C"] == 0.1 and p.get_params()["dtype"] == "float32"
    X, y, _ = planted(n=300)
    gs = GridSearchCV(LogisticProbe(), {"C": [0.01, 1.0]}, cv=3).fit(X, y)
    assert gs.best_params_["C"] in (0.01, 1.0) and gs.best_score_ > 0.9
    m = MassMeanProbe().set_params(calibration_fraction=0.0, score_type="cosine")
    assert m.get_params() == {"calibration_fraction": 0.0, "score_type": "cosine", "random_state": 0}


def test_string_labels_and_classes_order():
    X, y, _ = planted(n=300)
    names = np.where(y == 1, "m1", "m2")                  # classes_ sorted: ['m1', 'm2'] -> positive is 'm2'
    p = LogisticProbe().fit(X, names)
    assert list(p.classes_) == ["m1", "m2"]
    assert set(p.predict(X)) <= {"m1", "m2"} and p.score(X, names) > 0.9


@pytest.mark.parametrize("C", [0.01, 1.0, 100.0])
@pytest.mark.parametrize("weights", [False, True])
def test_logistic_matches_sklearn(C, weights):
    X, y, _ = planted(n=400, d=10, sep=0.8, seed=1)
    X = X * np.exp(np.random.default_rng(2).normal(0, 1, X.shape[1]))          # anisotropic scales
    sw = np.random.default_rng(3).uniform(0.2, 3.0, len(y)) if weights else None
    ref = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(X, y, sample_weight=sw)
    ours = LogisticProbe(C=C).fit(X, y, sample_weight=sw)
    assert ours.converged_
    scale = np.abs(ref.coef_).max()
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=0, atol=1e-6 * max(1, abs(ref.intercept_[0])))
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-8)
    # float32 is faster and still close
    f32 = LogisticProbe(C=C, dtype="float32").fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(f32.predict_proba(X), ref.predict_proba(X), atol=1e-3)


def test_logistic_no_intercept_matches_sklearn():
    X, y, _ = planted(n=300, d=6, sep=1.0, offset=0.0)
    ref = LogisticRegression(C=0.3, fit_intercept=False, solver="newton-cholesky", tol=1e-12).fit(X, y)
    ours = LogisticProbe(C=0.3, fit_intercept=False).fit(X, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-7)
    assert ours.intercept_[0] == 0.0


def test_batched_fit_matches_sklearn_per_site():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 250)
    X = np.stack([rng.normal(size=(250, 8)) * (s + 1) + np.outer(y, rng.normal(size=8)) for s in range(5)])
    fits = fit_probes(torch.as_tensor(X), y, C=0.7, dtype="float64", sites=[f"resid_post.{i}" for i in range(5)])
    assert list(fits) == [f"resid_post.{i}" for i in range(5)]
    for i, s in enumerate(fits):
        ref = LogisticRegression(C=0.7, solver="newton-cholesky", tol=1e-12).fit(X[i], y)
        np.testing.assert_allclose(fits[s].coef_, ref.coef_, atol=1e-6 * np.abs(ref.coef_).max())
        # the float64 stopping rule (max|∇f|/(C·n) ≤ 1e-8) bounds probability differences at ~1e-8 – 1e-7
        np.testing.assert_allclose(fits[s].predict_proba(X[i]), ref.predict_proba(X[i]), atol=1e-7)
        assert fits.summary[s]["converged"]
    # float32 (the batched default) agrees to ~1e-4 in probability
    f32 = fit_probes(X, y, C=0.7)
    for i, s in enumerate(f32):
        ref = LogisticRegression(C=0.7, solver="newton-cholesky", tol=1e-12).fit(X[i], y)
        np.testing.assert_allclose(f32[s].predict_proba(X[i]), ref.predict_proba(X[i]), atol=2e-4)


def test_fit_probes_other_estimators_and_dict_with_two_widths():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    feats = {"a": rng.normal(size=(200, 6)) + 3 * np.outer(y, np.eye(6)[1]),
             "b": rng.normal(size=(200, 9)) + 3 * np.outer(y, np.eye(9)[4])}
    fits = fit_probes(feats, y)
    assert fits["a"].coef_.shape == (1, 6) and fits["b"].coef_.shape == (1, 9)
    mms = fit_probes(feats, y, estimator="mass_mean")
    assert int(np.argmax(np.abs(mms["b"].direction_))) == 4
    inst = fit_probes(feats, y, estimator=LATProbe(variant="mean_diff"))
    assert isinstance(inst["a"], LATProbe) and inst.summary["a"]["train_accuracy"] > 0.9


def test_layer_sweep_curve():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    X = np.stack([rng.normal(size=(400, 10)) + s * 0.8 * np.outer(2 * y - 1, np.eye(10)[0]) for s in range(4)])
    sw = layer_sweep(X, y, sites=["l0", "l1", "l2", "l3"])
    accs = [a for _, a in sw.curve()]
    assert accs[0] < 0.65 and accs[-1] > 0.9 and sw.best_site == "l3"
    assert len(np.intersect1d(sw.train_index, sw.test_index)) == 0
    assert sw.to_dict()["n_test"] == 100


def test_mass_mean_recovers_planted_direction_and_is_calibrated():
    X, y, u = planted(n=2000, d=20, sep=1.0)
    p = MassMeanProbe(calibration_fraction=0.3).fit(X, y)
    assert abs(float(p.unit_direction_ @ u)) > 0.95 and float(p.unit_direction_ @ u) > 0
    assert p.n_calibration_ == pytest.approx(600, abs=2)
    # Bayes-optimal logit along u for unit-variance blobs at ±sep: 2·sep·(x·u − offset·Σu); calibrated probs track it
    from mixprobe.probes import rms_calibration_error
    assert rms_calibration_error(y, p.predict_proba(X)[:, 1]) < 0.05
    # the linear form equals the decision function
    np.testing.assert_allclose(X @ p.coef_[0] + p.intercept_[0], p.decision_function(X), atol=1e-9)


def test_lat_pca_recovers_direction():
    X, y, u = planted(n=1000, d=20, sep=1.5)
    p = LATProbe(variant="pca").fit(X, y)
    assert float(p.unit_direction_ @ u) > 0.9           # oriented by the labels
    assert p.score(X, y) > 0.9


def test_template_helper():
    out = format_with_template(["a", "b"], "Consider {concept}: {input}", concept="mode")
    assert out == ["Consider mode: a", "Consider mode: b"]
    with pytest.raises(DataError):
        format_with_template(["a"], "no placeholder")


def test_ccs_recovers_planted_contrast_up_to_sign():
    X, t, v = pairs()
    unsup = CCSProbe(n_restarts=5, max_iter=500).fit(X)
    assert unsup.sign_identified_ is False
    w = unsup.coef_[0] / np.linalg.norm(unsup.coef_[0])
    assert abs(float(w @ v)) > 0.9                       # direction found, sign unknown
    acc = float(np.mean(unsup.predict(X) == t))
    assert max(acc, 1 - acc) > 0.95
    assert unsup.losses_.shape == (5,) and unsup.loss_ == unsup.losses_.min()
    sup = CCSProbe(n_restarts=5, max_iter=500).fit(X, t)
    assert sup.sign_identified_ is True and sup.score(X, t) > 0.95
    flat = X.reshape(len(X), -1)                         # [n, 2d] form works with cross_val_score
    assert cross_val_score(CCSProbe(n_restarts=3, max_iter=300), flat, t, cv=3).min() > 0.9
    q = sup.predict_proba(X)[:, 1]
    assert np.all((q >= 0) & (q <= 1))


def test_cra_is_mass_mean_on_differences():
    X, t, v = pairs()
    cra = CRAProbe(calibration_fraction=0.0).fit(X, t)
    mms = MassMeanProbe(calibration_fraction=0.0).fit(X[:, 0] - X[:, 1], t)
    np.testing.assert_allclose(cra.direction_, mms.direction_)
    assert float(cra.unit_direction_ @ v) > 0.95 and cra.score(X, t) > 0.95
    assert cross_val_score(CRAProbe(), X.reshape(len(X), -1), t, cv=3).min() > 0.9


# --- named errors --------------------------------------------------------------------------------------------

SINGLE = [LogisticProbe, MassMeanProbe, LATProbe]


@pytest.mark.parametrize("cls", SINGLE)
def test_one_class_labels(cls):
    X, _, _ = planted(n=50)
    with pytest.raises(OneClassError, match="one class"):
        cls().fit(X, np.ones(50))


@pytest.mark.parametrize("cls", SINGLE)
def test_nan_features(cls):
    X, y, _ = planted(n=50)
    X[3, 2] = np.nan
    X[7, 0] = np.inf
    with pytest.raises(NonFiniteError, match="NaN/inf"):
        cls().fit(X, y)


@pytest.mark.parametrize("cls", SINGLE)
def test_shape_mismatch(cls):
    X, y, _ = planted(n=50)
    with pytest.raises(ShapeError, match="50 feature rows but 49 labels"):
        cls().fit(X, y[:49])


@pytest.mark.parametrize("cls", SINGLE)
def test_zero_variance(cls):
    _, y, _ = planted(n=50)
    with pytest.raises(ZeroVarianceError, match="all 4 features are constant"):
        cls().fit(np.full((50, 4), 3.0), y)


@pytest.mark.parametrize("cls", SINGLE)
def test_empty(cls):
    with pytest.raises(EmptyDataError):
        cls().fit(np.zeros((0, 4)), np.zeros(0))


def test_errors_of_pair_probes_and_batched():
    X, t, _ = pairs(n=60)
    with pytest.raises(ShapeError, match="contrast pairs"):
        CCSProbe().fit(np.zeros((10, 3, 4)))
    with pytest.raises(ZeroVarianceError):
        CRAProbe().fit(np.stack([X[:, 0], X[:, 0] - 1.0], 1), t)     # yes − no is constant
    with pytest.raises(OneClassError):
        CRAProbe().fit(X, np.zeros(60))
    bad = X.copy()
    bad[0, 1, 0] = np.nan
    with pytest.raises(NonFiniteError):
        CCSProbe().fit(bad)
    rng = np.random.default_rng(0)
    feats = {"resid_post.0": rng.normal(size=(30, 4)), "resid_post.1": np.ones((30, 4))}
    with pytest.raises(ZeroVarianceError, match="resid_post.1"):      # says which site
        fit_probes(feats, rng.integers(0, 2, 30))
    with pytest.raises(DataError, match="3 classes"):
        LogisticProbe().fit(rng.normal(size=(30, 4)), np.arange(30) % 3)
    with pytest.raises(ShapeError, match="features but the probe was fitted on 4"):
        LogisticProbe().fit(rng.normal(size=(30, 4)), np.arange(30) % 2).predict(rng.normal(size=(3, 5)))


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weights", [False, True])
def test_newton_cg_solver_matches_newton_all_paths(fit_intercept, weights, monkeypatch):
    from mixprobe.probes.solver import newton_cg_logistic, newton_logistic
    rng = np.random.default_rng(4)
    n, d = 300, 12
    y = rng.integers(0, 2, n)
    X = np.stack([rng.normal(size=(n, d)) * np.exp(rng.normal(0, 1, d)) + 5.0 + (s + 1) * np.outer(2 * y - 1,
                  rng.normal(size=d)) * 0.3 for s in range(3)])          # unscaled, uncentred, anisotropic
    sw = torch.as_tensor(rng.uniform(0.2, 3.0, n)) if weights else None
    Xt = torch.as_tensor(X)
    ref = newton_logistic(Xt, torch.as_tensor(y), sw, C=0.5, fit_intercept=fit_intercept, tol=1e-12)
    # None: small problem -> every site in one stacked exact-Newton solve (numpy, float64); 1: site-by-site
    # numpy Newton-CG; 0: one torch Newton-CG batch over all sites
    from mixprobe.probes import solver
    stacked = solver._newton_stacked_numpy
    calls = []
    monkeypatch.setattr(solver, "_newton_stacked_numpy", lambda *a: calls.append(1) or stacked(*a))
    for chunk in (None, 1, 0):
        res = newton_cg_logistic(Xt, torch.as_tensor(y), sw, C=0.5, fit_intercept=fit_intercept, tol=1e-10,
                                 chunk_bytes=chunk)
        assert bool(res.converged.all()) and bool((res.grad_norm <= 1e-10).all())
        scale = ref.coef.abs().amax(1, keepdim=True)
        assert torch.allclose(res.coef, ref.coef, rtol=0, atol=1e-6) or bool(((res.coef - ref.coef).abs()
                                                                               <= 1e-6 * scale).all())
        np.testing.assert_allclose(res.intercept.numpy(), ref.intercept.numpy(), atol=1e-6 * max(1.0, float(
            ref.intercept.abs().max())))
        # float32 converges to its default tolerance and predicts the same probabilities to ~1e-4
        r32 = newton_cg_logistic(Xt.float(), torch.as_tensor(y), sw, C=0.5, fit_intercept=fit_intercept,
                                 chunk_bytes=chunk)
        assert bool(r32.converged.all())
        z64 = torch.einsum("snd,sd->sn", Xt, ref.coef) + ref.intercept[:, None]
        z32 = torch.einsum("snd,sd->sn", Xt, r32.coef.double()) + r32.intercept.double()[:, None]
        assert float((torch.sigmoid(z64) - torch.sigmoid(z32)).abs().max()) < 1e-3
    assert len(calls) == 2          # the stacked path ran for chunk=None (float64 and float32), and only then


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weights", [False, True])
def test_newton_cg_nystrom_preconditioner_matches_newton(fit_intercept, weights, monkeypatch):
    """The Nyström + diagonal preconditioner (used where 2·rank < d) changes the path, not the solution."""
    from mixprobe.probes import solver
    from mixprobe.probes.solver import newton_cg_logistic, newton_logistic
    calls = []
    nystrom = solver._nystrom_numpy
    monkeypatch.setattr(solver, "_nystrom_numpy", lambda *a: calls.append(1) or nystrom(*a))
    rng = np.random.default_rng(7)
    S, n, d, rank = 2, 500, 160, 16
    y = rng.integers(0, 2, n)
    X = np.empty((S, n, d))
    for s in range(S):          # unscaled, anisotropic: low-rank covariance, per-feature noise, one massive dim
        A = rng.normal(size=(rank, d)) * np.linspace(2.0, 0.2, rank)[:, None]
        X[s] = (rng.normal(size=(n, rank)) @ A + rng.normal(size=(n, d)) * np.exp(rng.normal(0, 0.5, d))
                + rng.normal(0, 1, d) + 0.4 * (s + 1) * np.outer(2 * y - 1, rng.normal(size=d) / np.sqrt(d)))
        X[s, :, 0] += 10.0
    sw = torch.as_tensor(rng.uniform(0.2, 3.0, n)) if weights else None
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    ref = newton_logistic(Xt, yt, sw, C=0.05, fit_intercept=fit_intercept, tol=1e-13)
    scale = ref.coef.abs().amax(1, keepdim=True)
    iscale = max(1.0, float(ref.intercept.abs().max()))
    for dtype, tol, rtol in ((torch.float64, 1e-11, 1e-7), (torch.float32, None, 1e-4)):
        fits = {pre: newton_cg_logistic(Xt.to(dtype), yt, sw, C=0.05, fit_intercept=fit_intercept, tol=tol,
                                        preconditioner=pre, rank=32, chunk_bytes=1)   # one-site numpy path
                for pre in ("nystrom", "exact")}
        for res in fits.values():
            assert bool(res.converged.all())
            assert bool(((res.coef.double() - ref.coef).abs() <= rtol * scale).all())
            assert float((res.intercept.double() - ref.intercept).abs().max()) <= rtol * iscale
    assert len(calls) == 2 * S          # the Nyström path really ran (once per site and dtype)
    with pytest.raises(ValueError, match="preconditioner"):
        newton_cg_logistic(Xt, yt, preconditioner="cholesky")


def test_fit_probes_solver_option():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 250)
    X = np.stack([rng.normal(size=(250, 8)) * (s + 1) + np.outer(y, rng.normal(size=8)) for s in range(3)])
    a = fit_probes(X, y, C=0.7, dtype="float64", solver="newton-cg", tol=1e-10)
    b = fit_probes(X, y, C=0.7, dtype="float64", solver="newton", tol=1e-10)
    for s in a:
        np.testing.assert_allclose(a[s].coef_, b[s].coef_, atol=1e-7 * np.abs(b[s].coef_).max())
        assert a.summary[s]["converged"] and b.summary[s]["converged"]
    with pytest.raises(DataError, match="unknown solver"):
        fit_probes(X, y, solver="sag")


def test_logistic_probe_solver_option():
    X, y, _ = planted(n=400, d=10, sep=0.8, seed=1)
    cg = LogisticProbe(C=0.5).fit(X, y)                       # default: Newton-CG
    nt = LogisticProbe(C=0.5, solver="newton").fit(X, y)
    assert cg.get_params()["solver"] == "newton-cg" and cg.converged_ and nt.converged_
    np.testing.assert_allclose(cg.coef_, nt.coef_, rtol=0, atol=1e-7 * np.abs(nt.coef_).max())
    np.testing.assert_allclose(cg.predict_proba(X), nt.predict_proba(X), atol=1e-8)
    with pytest.raises(DataError, match="unknown solver"):
        LogisticProbe(solver="sag").fit(X, y)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fit_probes_summary_and_inputs_are_untouched(dtype):
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    X = np.stack([rng.normal(size=(300, 16)) + 4.0 + (s + 0.2) * np.outer(2 * y - 1, rng.normal(size=16)) * 0.3
                  for s in range(3)]).astype(np.float32)
    keep = np.sort(rng.permutation(300)[:250])
    Xs, yk = X[:, keep], y[keep]            # fancy indexing: a non-C-contiguous [S, n, d] array
    before = (X.copy(), Xs.copy())
    ref = fit_probes(np.ascontiguousarray(Xs, dtype=np.float64), yk, C=0.5, dtype=dtype)
    tol = 1e-3 if dtype == "float32" else 1e-7
    for given in (Xs, {str(i): Xs[i] for i in range(3)}, torch.as_tensor(Xs)):
        fits = fit_probes(given, yk, C=0.5, dtype=dtype)
        for i, s in enumerate(fits):
            assert fits.summary[s]["converged"]
            np.testing.assert_allclose(fits[s].coef_, ref[s].coef_, rtol=0, atol=tol * np.abs(ref[s].coef_).max())
            # train accuracy from the solver's margins = the probe's own predictions (±1 row on a tie at 0)
            assert abs(fits.summary[s]["train_accuracy"] - fits[s].score(Xs[i], yk)) <= 1 / 250 + 1e-12
    np.testing.assert_array_equal(X, before[0])                # solved in place, never modified
    np.testing.assert_array_equal(Xs, before[1])


def test_check_features_keep_dtype_one_pass():
    from mixprobe.probes.validation import check_features
    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    out = check_features(X, keep_dtype=True)
    assert out.dtype == np.float32 and np.shares_memory(out, X)        # no copy
    assert check_features(X).dtype == np.float64                      # the default still converts
    assert check_features(torch.as_tensor(X).half(), keep_dtype=True).dtype == np.float32
    for bad in (np.nan, np.inf, -np.inf):
        Z = X.copy()
        Z[7, 2] = bad
        with pytest.raises(NonFiniteError, match="1 NaN/inf values in 1 rows"):
            check_features(Z, keep_dtype=True)
        with pytest.raises(NonFiniteError):
            check_features(Z, keep_dtype=True, allow_constant=True)
    C = np.full((50, 4), 1e6, dtype=np.float32)
    with pytest.raises(ZeroVarianceError, match="site 's'"):
        check_features(C, keep_dtype=True, site="s")
    C[3, 1] += 1.0
    assert check_features(C, keep_dtype=True) is C                    # one column varies: not constant


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stacked_array_checked_in_one_pass_names_the_site(dtype):
    """A stacked ``[S, n, d]`` array is validated for all sites at once: same named errors, the failing site named."""
    from mixprobe.probes.validation import check_stacked_features
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4, 40, 6)).astype(dtype)
    y = np.arange(40) % 2
    out = check_stacked_features(X, ["a", "b", "c", "d"])
    assert list(out) == ["a", "b", "c", "d"] and all(np.shares_memory(v, X) for v in out.values())
    for bad, err, match in ((np.nan, NonFiniteError, "site 'c' contain 1 NaN/inf"),
                            (np.inf, NonFiniteError, "site 'c' contain 1 NaN/inf"),
                            (-np.inf, NonFiniteError, "site 'c' contain 1 NaN/inf")):
        Z = X.copy()
        Z[2, 5, 3] = bad
        with pytest.raises(err, match=match):
            fit_probes(Z, y, sites=["a", "b", "c", "d"])
    Z = X.copy()
    Z[3] = 2.5                                                        # a dead site
    with pytest.raises(ZeroVarianceError, match="site 'd'"):
        fit_probes(Z, y, sites=["a", "b", "c", "d"])
    Z[3, :, 1] = np.linspace(0, 1, 40)                                # one varying column: fine
    assert len(fit_probes(Z, y)) == 4
    with pytest.raises(EmptyDataError):
        fit_probes(np.zeros((2, 40, 0), dtype=dtype), y)


def test_probe_score_matches_sklearn_accuracy():
    """``score`` is scikit-learn's (weighted) mean accuracy; a label count that does not match the rows is named."""
    from sklearn.metrics import accuracy_score
    rng = np.random.default_rng(11)
    X = rng.normal(size=(200, 5))
    y = np.where(X[:, 0] + 0.8 * rng.normal(size=200) > 0, "yes", "no")     # string classes, ~20 % errors
    probe = LogisticProbe().fit(X[:120], y[:120])
    w = rng.uniform(0.0, 2.0, 80)
    pred = probe.predict(X[120:])
    assert 0.6 < probe.score(X[120:], y[120:]) < 0.95
    assert probe.score(X[120:], y[120:]) == pytest.approx(accuracy_score(y[120:], pred))
    assert probe.score(X[120:], y[120:], sample_weight=w) == pytest.approx(
        accuracy_score(y[120:], pred, sample_weight=w))
    with pytest.raises(ShapeError, match="80 feature rows but 79 labels"):
        probe.score(X[120:], y[121:])


def test_stacked_small_path_soft_labels_and_per_site_C():
    """The stacked small-problem solve handles soft labels and a per-site ``C`` like the batched torch Newton."""
    from mixprobe.probes.solver import newton_cg_logistic, newton_logistic
    rng = np.random.default_rng(5)
    S, n, d = 4, 120, 6
    X = torch.as_tensor(rng.normal(size=(S, n, d)) * np.exp(rng.normal(0, 1, d)) + 2.0)
    soft = torch.as_tensor(1 / (1 + np.exp(-(X[..., 0].numpy() - 2.0))))      # P(y=1 | x), in (0, 1)
    C = torch.as_tensor([0.1, 1.0, 10.0, 100.0])
    ref = newton_logistic(X, soft, C=C, tol=1e-12)
    res = newton_cg_logistic(X, soft, C=C, tol=1e-10)          # n·(d+1)² = 5880: the stacked path
    assert bool(res.converged.all()) and bool((res.grad_norm <= 1e-10).all())
    scale = ref.coef.abs().amax(1, keepdim=True)
    assert bool(((res.coef - ref.coef).abs() <= 1e-6 * scale).all())
    assert float((res.intercept - ref.intercept).abs().max()) <= 1e-6 * max(1.0, float(ref.intercept.abs().max()))
    # the margins handed back are the final z = Xw + b on the training rows
    z = torch.einsum("snd,sd->sn", X, res.coef) + res.intercept[:, None]
    assert float((z - res.margin).abs().max()) <= 1e-6 * float(z.abs().max())


def test_expressed_split_stacked_refuses_mixed_widths():
    from mixprobe.mixture.studies import ExpressedSplit
    sp = ExpressedSplit(["a", "b"], {"a": np.zeros((3, 4)), "b": np.ones((3, 5))}, np.zeros(3),
                        {"a": np.zeros((2, 4)), "b": np.ones((2, 5))}, np.zeros(2))
    with pytest.raises(DataError, match="different widths.*'a': 4, 'b': 5"):
        sp.stacked()
    same = ExpressedSplit(["a", "b"], {"a": np.zeros((3, 4)), "b": np.ones((3, 4))}, np.arange(3),
                          {"a": np.zeros((2, 4)), "b": np.ones((2, 4))}, np.arange(2))
    Xtr, ytr, Xte, yte = same.stacked()
    assert Xtr.shape == (2, 3, 4) and Xtr.dtype == np.float32 and Xte[1].sum() == 8 and list(yte) == [0, 1]

"""mixprobe.probes.batched: ``fit_probes`` (one probe per site, one solver call) lands on scikit-learn's optimum
per site, keeps the caller's inputs untouched, and ``layer_sweep`` finds the decodable layer."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from mixprobe.errors import DataError
from mixprobe.probes import LATProbe, fit_probes, layer_sweep


def stacked(S=5, n=250, d=8, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return np.stack([rng.normal(size=(n, d)) * (s + 1) + np.outer(y, rng.normal(size=d)) for s in range(S)]), y


def test_batched_fit_matches_sklearn_per_site():
    X, y = stacked()
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


@pytest.mark.parametrize("solver", ["newton-cg", "newton"])
def test_fit_probes_solver_option_and_sample_weight(solver):
    X, y = stacked(S=3)
    sw = np.random.default_rng(9).uniform(0.2, 3.0, len(y))
    fits = fit_probes(X, y, C=0.7, dtype="float64", solver=solver, tol=1e-10, sample_weight=sw)
    for i, s in enumerate(fits):
        ref = LogisticRegression(C=0.7, solver="newton-cholesky", tol=1e-12).fit(X[i], y, sample_weight=sw)
        np.testing.assert_allclose(fits[s].coef_, ref.coef_, atol=1e-7 * np.abs(ref.coef_).max())
        assert fits.summary[s]["converged"] and fits[s].get_params()["solver"] == solver
    with pytest.raises(DataError, match="unknown solver"):
        fit_probes(X, y, solver="sag")


def test_fit_probes_other_estimators_and_dict_with_two_widths():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    feats = {"a": rng.normal(size=(200, 6)) + 3 * np.outer(y, np.eye(6)[1]),
             "b": rng.normal(size=(200, 9)) + 3 * np.outer(y, np.eye(9)[4])}
    fits = fit_probes(feats, y)
    assert fits["a"].coef_.shape == (1, 6) and fits["b"].coef_.shape == (1, 9)
    assert int(np.argmax(np.abs(fits["b"].coef_))) == 4
    mms = fit_probes(feats, y, estimator="mass_mean")
    assert int(np.argmax(np.abs(mms["b"].direction_))) == 4
    inst = fit_probes(feats, y, estimator=LATProbe(variant="mean_diff"))
    assert isinstance(inst["a"], LATProbe) and inst.summary["a"]["train_accuracy"] > 0.9


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fit_probes_summary_and_inputs_are_untouched(dtype):
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    X = np.stack([rng.normal(size=(300, 16)) + 4.0 + (s + 0.2) * np.outer(2 * y - 1, rng.normal(size=16)) * 0.3
                  for s in range(3)]).astype(np.float32)
    keep = np.sort(rng.permutation(300)[:250])
    Xs, yk = X[:, keep], y[keep]            # fancy indexing: a copy with its own layout
    before = (X.copy(), Xs.copy())
    tol = 1e-3 if dtype == "float32" else 1e-7
    refs = [LogisticRegression(C=0.5, solver="newton-cholesky", tol=1e-12).fit(Xs[i].astype(np.float64), yk)
            for i in range(3)]
    for given in (Xs, {str(i): Xs[i] for i in range(3)}, torch.as_tensor(Xs)):
        fits = fit_probes(given, yk, C=0.5, dtype=dtype)
        for i, s in enumerate(fits):
            assert fits.summary[s]["converged"]
            np.testing.assert_allclose(fits[s].coef_, refs[i].coef_, rtol=0, atol=tol * np.abs(refs[i].coef_).max())
            # train accuracy from the solver's margins = the probe's own predictions (±1 row on a tie at 0)
            assert abs(fits.summary[s]["train_accuracy"] - fits[s].score(Xs[i], yk)) <= 1 / 250 + 1e-12
    np.testing.assert_array_equal(X, before[0])                # solved in place, never modified
    np.testing.assert_array_equal(Xs, before[1])


def test_layer_sweep_curve():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    X = np.stack([rng.normal(size=(400, 10)) + s * 0.8 * np.outer(2 * y - 1, np.eye(10)[0]) for s in range(4)])
    sw = layer_sweep(X, y, sites=["l0", "l1", "l2", "l3"])
    accs = [a for _, a in sw.curve()]
    assert accs[0] < 0.65 and accs[-1] > 0.9 and sw.best_site == "l3"
    assert len(np.intersect1d(sw.train_index, sw.test_index)) == 0
    assert sw.to_dict()["n_test"] == 100
    # held-out accuracy is that of the scikit-learn optimum fitted on the same train rows
    ref = LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-12).fit(X[3][sw.train_index], y[sw.train_index])
    assert sw.accuracy["l3"] == pytest.approx(ref.score(X[3][sw.test_index], y[sw.test_index]), abs=1 / 100)


def test_C_per_site_matches_scikit_learn_at_each_strength():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    X = rng.normal(size=(3, 300, 12)) + 0.8 * y[None, :, None] * rng.normal(size=(3, 1, 12))
    feats = {"a": X[0], "b": X[1], "c": X[2]}
    Cs = {"a": 0.01, "b": 1.0, "c": 100.0}
    for C in (Cs, [Cs["a"], Cs["b"], Cs["c"]]):
        fits = fit_probes(feats, y, C=C, dtype="float64", tol=1e-10)
        for s, c in Cs.items():
            ref = LogisticRegression(C=c, solver="newton-cholesky", tol=1e-12).fit(feats[s], y)
            assert fits.probes[s].C == c
            assert np.allclose(fits.probes[s].coef_.ravel(), ref.coef_.ravel(), atol=1e-5)
    same = fit_probes({"a": X[0], "b": X[0]}, y, C={"a": 0.01, "b": 100.0})  # one site's data at two strengths
    assert np.linalg.norm(same.probes["a"].coef_) < 0.5 * np.linalg.norm(same.probes["b"].coef_)
    with pytest.raises(DataError, match="no value for sites"):
        fit_probes(feats, y, C={"a": 1.0})
    with pytest.raises(DataError, match="2 values of C for 3 sites"):
        fit_probes(feats, y, C=[1.0, 2.0])
    with pytest.raises(DataError, match="C must be > 0"):
        fit_probes(feats, y, C={"a": 1.0, "b": 0.0, "c": 1.0})

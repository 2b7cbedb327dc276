"""mixprobe.probes.estimators: scikit-learn conformance, agreement with ``LogisticRegression``, planted-direction
recovery for the direction probes, CCS/CRA on contrast pairs, Platt calibration."""
from __future__ import annotations

import numpy as np
import pytest
from probe_data import pairs, planted
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score

from mixprobe.errors import DataError, ShapeError
from mixprobe.probes import (CCSProbe, CRAProbe, LATProbe, LogisticProbe, MassMeanProbe, format_with_template,
                             platt_calibrate, rms_calibration_error)

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


def test_logistic_probe_solver_option():
    X, y, _ = planted(n=400, d=10, sep=0.8, seed=1)
    ref = LogisticRegression(C=0.5, solver="newton-cholesky", tol=1e-12).fit(X, y)
    cg = LogisticProbe(C=0.5).fit(X, y)                       # default: Newton-CG
    nt = LogisticProbe(C=0.5, solver="newton").fit(X, y)
    assert cg.get_params()["solver"] == "newton-cg" and cg.converged_ and nt.converged_
    for p in (cg, nt):
        np.testing.assert_allclose(p.coef_, ref.coef_, rtol=0, atol=1e-7 * np.abs(ref.coef_).max())
        np.testing.assert_allclose(p.predict_proba(X), ref.predict_proba(X), atol=1e-8)
    with pytest.raises(DataError, match="unknown solver"):
        LogisticProbe(solver="sag").fit(X, y)


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


def test_platt_calibrate_matches_unpenalised_sklearn_on_smoothed_targets():
    """Platt: an (effectively) unpenalised 1-D logistic on targets (N₊+1)/(N₊+2) and 1/(N₋+2), which are soft:
    scikit-learn fits them by row duplication with weights t and 1 − t."""
    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 300).astype(float)
    s = 40.0 * (y - 0.5) + 25.0 * rng.normal(size=300) + 7.0                    # unscaled, overlapping scores
    n_pos, n_neg = y.sum(), (1 - y).sum()
    t = np.where(y > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    ref = LogisticRegression(C=1e10, solver="newton-cholesky", tol=1e-12).fit(
        np.r_[s, s][:, None], np.r_[np.ones(300), np.zeros(300)], sample_weight=np.r_[t, 1 - t])
    a, c = platt_calibrate(s, y)
    assert a == pytest.approx(ref.coef_[0, 0], rel=1e-5) and c == pytest.approx(ref.intercept_[0], rel=1e-5, abs=1e-6)
    # separable scores stay finite (the point of the smoothed targets)
    a2, c2 = platt_calibrate(np.r_[-np.ones(50), np.ones(50)], np.r_[np.zeros(50), np.ones(50)])
    assert np.isfinite([a2, c2]).all() and a2 > 0


def test_mass_mean_recovers_planted_direction_and_is_calibrated():
    X, y, u = planted(n=2000, d=20, sep=1.0)
    p = MassMeanProbe(calibration_fraction=0.3).fit(X, y)
    assert abs(float(p.unit_direction_ @ u)) > 0.95 and float(p.unit_direction_ @ u) > 0
    assert p.n_calibration_ == pytest.approx(600, abs=2)
    # Bayes-optimal logit along u for unit-variance blobs at ±sep: 2·sep·(x·u − offset·Σu); calibrated probs track it
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

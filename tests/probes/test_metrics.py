"""mixprobe.probes.metrics against scikit-learn's metrics and hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mixprobe.errors import DataError, EmptyDataError, OneClassError, ShapeError
from mixprobe.probes import accuracy, auroc, differential_elicitation, elicitation, rms_calibration_error


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = rng.integers(0, 8, 500) + 2 * y                     # integer scores: many ties
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    proba = np.stack([1 - s / 10, s / 10], 1)               # predict_proba form: column 1 is used
    assert auroc(torch.as_tensor(y), proba) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    with pytest.raises(OneClassError):
        auroc(np.ones(5), np.arange(5))


def test_accuracy_threshold_and_errors():
    y = [0, 1, 1, 0, 1]
    p = [0.2, 0.7, 0.4, 0.6, 0.9]
    assert accuracy(y, p) == pytest.approx(3 / 5)
    assert accuracy(y, p, threshold=0.3) == pytest.approx(4 / 5)
    assert accuracy(y, [0, 1, 1, 0, 1]) == 1.0              # hard predictions
    with pytest.raises(ShapeError, match="5 labels but 4"):
        accuracy(y, p[:4])
    with pytest.raises(DataError, match="binary labels"):
        accuracy([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(EmptyDataError):
        accuracy([], [])


def test_rms_calibration_error_hand_computed():
    # bin of confidence 0.95, all right (gap 0.05) and bin of confidence 0.7, half right (gap 0.2), equal weights
    y = np.r_[np.ones(10), np.zeros(5), np.ones(5)]
    p = np.r_[np.full(10, 0.95), np.full(10, 0.3)]
    assert rms_calibration_error(y, p) == pytest.approx(np.sqrt(0.5 * 0.05 ** 2 + 0.5 * 0.2 ** 2), abs=1e-12)
    # perfectly calibrated in expectation: small; badly over-confident: large
    rng = np.random.default_rng(1)
    q = rng.uniform(0, 1, 20000)
    yy = (rng.uniform(0, 1, 20000) < q).astype(float)
    assert rms_calibration_error(yy, q) < 0.02
    assert rms_calibration_error(yy, (q > 0.5).astype(float) * 0.98 + 0.01) > 0.2
    with pytest.raises(DataError, match="at least 20"):
        rms_calibration_error([0, 1] * 5, [0.3, 0.6] * 5, variant="genies")
    with pytest.raises(DataError, match="probabilities in"):
        rms_calibration_error([0, 1], [0.5, 1.5])


def test_elicitation():
    assert elicitation(0.6, 0.8) == pytest.approx(0.75)
    assert differential_elicitation(0.6, 0.5, 0.8) == pytest.approx(0.125)
    with pytest.raises(DataError, match="target-tuned"):
        elicitation(0.6, 0.0)


def test_rms_genies_variant_by_hand_and_its_quirk():
    # 100 pairs, all right with p = 0.8. The GENIES code orients each example by a label drawn with
    # random.Random(42): label 1 keeps q = 0.8 (bin 5), label 0 gives q = 0.2 (bin 2); each bin with ≥ 20 examples
    # contributes (mean of ALL labels − mean q in the bin)², unweighted. The weighted form sees a model that is
    # always right at confidence 0.8: RMS = |1 − 0.8| = 0.2.
    import random

    rng = random.Random(42)
    labels = [rng.choice([0, 1]) for _ in range(100)]
    m = sum(labels) / 100
    assert min(sum(labels), 100 - sum(labels)) >= 20                 # both bins count
    want = np.sqrt(((m - 0.8) ** 2 + (m - 0.2) ** 2) / 2)
    y, p = np.ones(100), np.full(100, 0.8)
    assert rms_calibration_error(y, p, variant="genies") == pytest.approx(want, abs=1e-12)
    assert rms_calibration_error(y, p) == pytest.approx(0.2, abs=1e-12)
    # the quirk: flipping every label and probability (same model, same correctness) leaves both unchanged
    assert rms_calibration_error(1 - y, 1 - p, variant="genies") == pytest.approx(want, abs=1e-12)


def test_ccs_loss_and_prediction_by_hand():
    from mixprobe.probes import CCSProbe, ccs_credence, ccs_loss

    # confidence: min(0.9, 0.1)² = 0.01, min(0.2, 0.7)² = 0.04; consistency: (0.9 − 0.9)² = 0, (0.2 − 0.3)² = 0.01
    assert ccs_loss([0.9, 0.2], [0.1, 0.7]) == pytest.approx(0.025 + 0.005)
    assert ccs_credence([0.9, 0.2], [0.1, 0.7]) == pytest.approx([0.9, 0.25])
    # a fitted probe: its loss and predictions are these formulas on the set-wise mean-normalised features
    rng = np.random.default_rng(0)
    t = rng.integers(0, 2, 80)
    xp = rng.normal(size=(80, 4)) + np.outer(2 * t - 1, [1.5, 0, 0, 0])
    xn = rng.normal(size=(80, 4)) - np.outer(2 * t - 1, [1.5, 0, 0, 0])
    probe = CCSProbe(n_restarts=3, max_iter=300, lr=1e-2).fit(np.stack([xp, xn], 1))
    w, b = probe.coef_[0], probe.intercept_[0]
    cp, cn = xp - xp.mean(0), xn - xn.mean(0)
    pp, pn = 1 / (1 + np.exp(-(cp @ w + b))), 1 / (1 + np.exp(-(cn @ w + b)))
    assert probe.loss_ == pytest.approx(ccs_loss(pp, pn), rel=1e-4)
    assert probe.predict_proba(np.stack([xp, xn], 1))[:, 1] == pytest.approx(ccs_credence(pp, pn), abs=1e-6)

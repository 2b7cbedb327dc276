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

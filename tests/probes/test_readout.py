"""mixprobe.probes.readout: transfer matrices, gate read-outs per cue, the selection direction."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mixprobe.errors import DataError, ShapeError
from mixprobe.probes import gate_readout, readout_table, selection_direction, train_test_indices, transfer_matrix


def two_checkpoints(n=400, d=8, seed=0):
    """Checkpoint "a" carries the label on feature 0, checkpoint "b" on feature 1 (a representation that moved)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    sig = 3.0 * (2 * y - 1)
    return {"a": rng.normal(size=(n, d)) + np.outer(sig, np.eye(d)[0]),
            "b": rng.normal(size=(n, d)) + np.outer(sig, np.eye(d)[1])}, y


def test_transfer_matrix_diagonal_reads_and_off_diagonal_does_not():
    feats, y = two_checkpoints()
    tm = transfer_matrix(feats, y, C=1.0)
    assert tm.names == ["a", "b"] and tm.matrix.shape == (2, 2)
    assert tm.matrix[0, 0] > 0.95 and tm.matrix[1, 1] > 0.95
    assert abs(tm.matrix[0, 1] - 0.5) < 0.15 and abs(tm.matrix[1, 0] - 0.5) < 0.15
    _, te = train_test_indices(y, test_size=0.25, seed=0)     # the shared split
    assert tm.matrix[0, 1] == pytest.approx(tm.probes["a"].score(feats["b"][te], y[te]))
    au = transfer_matrix(feats, y, metric="auroc")
    assert au.matrix[1, 1] == pytest.approx(roc_auc_score(y[te], au.probes["b"].predict_proba(feats["b"][te])[:, 1]))
    assert {r["train"] + r["eval"] for r in tm.tidy()} == {"aa", "ab", "ba", "bb"}
    with pytest.raises(ShapeError, match="different feature widths"):
        transfer_matrix({"a": feats["a"], "c": feats["b"][:, :5]}, y)
    with pytest.raises(DataError, match="metric"):
        transfer_matrix(feats, y, metric="f1")


def test_gate_readout_rows_per_checkpoint_and_tag():
    feats, y = two_checkpoints()
    probe = transfer_matrix(feats, y).probes["a"]
    tags = np.where(np.arange(400) % 3 == 0, "A", "B")
    rows = gate_readout(probe, feats, tags, quantiles=(0.5,))
    assert [(r["checkpoint"], r["tag"]) for r in rows] == [("a", "A"), ("a", "B"), ("b", "A"), ("b", "B")]
    p = probe.predict_proba(feats["a"])[:, 1]
    assert rows[0]["n"] == int((tags == "A").sum())
    assert rows[0]["mean"] == pytest.approx(p[tags == "A"].mean())
    assert rows[1]["q50"] == pytest.approx(np.median(p[tags == "B"]))
    table = readout_table(rows)
    assert table["b"]["B"] == rows[3]["mean"]
    dec = gate_readout(probe, {"a": feats["a"]}, tags, score="decision")
    assert dec[0]["mean"] == pytest.approx(probe.decision_function(feats["a"])[tags == "A"].mean())
    with pytest.raises(ShapeError, match="one tag per row"):
        gate_readout(probe, feats, tags[:10])


def test_selection_direction_is_the_normalised_mean_difference():
    feats, y = two_checkpoints()
    X = feats["b"]
    unit, norm = selection_direction(X, y, toward=1, away=0)
    diff = X[y == 1].mean(0) - X[y == 0].mean(0)
    assert norm == pytest.approx(np.linalg.norm(diff))
    np.testing.assert_allclose(unit.numpy(), diff / np.linalg.norm(diff), atol=1e-6)
    assert int(unit.abs().argmax()) == 1
    with pytest.raises(DataError, match="need rows labelled"):
        selection_direction(X, y, toward=1, away=5)

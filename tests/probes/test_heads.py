"""GENIES' per-head mass-mean: hand-computed pair scores, directions and top-k selection, and recovery of the
informative heads on synthetic pairs."""
from __future__ import annotations

import numpy as np
import pytest

from mixprobe.errors import DataError, ShapeError
from mixprobe.probes.heads import (HeadMassMeanProbe, head_directions, pair_cosine_score, pair_differences,
                                   select_top)


def test_pair_cosine_score_by_hand():
    d = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    diff = np.array([[[2.0, 0.0], [0.0, 3.0], [1.0, -1.0]],       # cos 1, 1, 0  → ½(1 + 2/3)
                     [[-1.0, 0.0], [1.0, 0.0], [-1.0, -1.0]]])     # cos -1, 0, -1 → ½(1 − 2/3)
    assert pair_cosine_score(diff, d) == pytest.approx([5 / 6, 1 / 6])
    assert pair_cosine_score(diff, d, heads=[0, 1]) == pytest.approx([1.0, 0.25])
    zero = np.zeros((1, 3, 2))
    assert pair_cosine_score(zero, d) == pytest.approx([0.5])        # a zero difference scores ½, not NaN


def test_directions_are_signed_by_the_label():
    diff = np.array([[[1.0, 0.0]], [[-3.0, 1.0]]])                   # pair 0: r2 better; pair 1: r1 better
    assert head_directions(diff, np.array([1, 0])) == pytest.approx(np.array([[2.0, -0.5]]))


def test_top_k_keeps_the_best_and_breaks_ties_by_index():
    acc = np.array([0.55, 0.80, 0.80, 0.95, 0.80])
    assert select_top(acc, 1).tolist() == [3]
    assert select_top(acc, 3).tolist() == [1, 2, 3]                  # 0.80 three times: the two lowest indices
    assert select_top(acc, 16).tolist() == [0, 1, 2, 3, 4]           # k above the number of heads keeps them all


def _pairs(rng, n, informative, n_heads=12, d_head=6):
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 2, n_heads, d_head))
    good = np.where(y == 1, 1, 0)
    for h in informative:
        X[np.arange(n), good, h, 0] += 1.5                           # the better response is higher on axis 0
    return X, y


def test_the_probe_finds_the_informative_heads_and_generalises():
    rng = np.random.default_rng(0)
    X, y = _pairs(rng, 600, informative=(2, 5, 9))
    probe = HeadMassMeanProbe(k=3).fit(X, y)
    assert probe.heads_.tolist() == [2, 5, 9]
    others = np.delete(probe.head_accuracy_, [2, 5, 9])
    assert others.max() < 0.65 < probe.head_accuracy_[[2, 5, 9]].min()
    Xt, yt = _pairs(np.random.default_rng(1), 400, informative=(2, 5, 9))
    assert probe.score(Xt, yt) >= 0.9
    p = probe.predict_proba(Xt)[:, 1]
    s = probe.score_pairs(Xt)
    assert np.all(np.diff(p[np.argsort(s)]) >= -1e-12)                # calibration is monotone in the pair score
    flipped = Xt[:, ::-1]                                             # swapping r1 and r2 flips the preference
    assert probe.score(flipped, 1 - yt) >= 0.9


def test_bad_inputs_name_the_problem():
    with pytest.raises(ShapeError, match=r"\[n, 2, heads, d_head\]"):
        pair_differences(np.zeros((4, 3, 2)))
    bad = np.zeros((4, 2, 1, 2))
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        pair_differences(bad)
    X, y = _pairs(np.random.default_rng(0), 40, informative=(0,))
    with pytest.raises(DataError, match="holdout"):
        HeadMassMeanProbe(holdout=1.0).fit(X, y)
    probe = HeadMassMeanProbe(k=2).fit(X, y)
    with pytest.raises(ShapeError, match="fitted on"):
        probe.score_pairs(X[:, :, :5])

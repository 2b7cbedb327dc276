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


def test_pca_direction_is_the_axis_the_pairs_differ_along():
    # good − bad differences vary along (1, 1) with a small mean along (1, 0.8): the first principal component of
    # sign-randomised differences is ±(1, 1)/√2, oriented to agree with the mean
    rng = np.random.default_rng(0)
    t = rng.normal(size=200) * 3.0
    good_minus_bad = np.stack([t + 1.0, t + 0.8], 1)[:, None, :]
    y = np.ones(200, dtype=int)
    pc = head_directions(good_minus_bad, y, "pca", np.random.default_rng(1))[0]
    assert pc == pytest.approx(np.array([1.0, 1.0]) / np.sqrt(2), abs=0.02)
    flipped = head_directions(-good_minus_bad, 1 - y, "pca", np.random.default_rng(1))[0]   # same data, r1/r2 swapped
    assert flipped == pytest.approx(pc, abs=1e-9)


def test_random_null_keeps_the_mean_norm_and_scores_chance():
    rng = np.random.default_rng(0)
    X, y = _pairs(rng, 600, informative=(2, 5, 9), d_head=64)
    diff = pair_differences(X)
    mean = head_directions(diff, y)
    rnd = head_directions(diff, y, "random", np.random.default_rng(3))
    assert np.linalg.norm(rnd, axis=1) == pytest.approx(np.linalg.norm(mean, axis=1))
    cos = np.sum(rnd * mean, 1) / np.linalg.norm(rnd, axis=1) / np.linalg.norm(mean, axis=1)
    assert np.abs(cos).max() < 0.99
    Xt, yt = _pairs(np.random.default_rng(1), 400, informative=(2, 5, 9), d_head=64)
    accs = [HeadMassMeanProbe(k=3, direction="random", random_state=s).fit(X, y).score(Xt, yt) for s in range(8)]
    # the calibrator orients each random direction with the labels, so the null sits a little above ½ (a random
    # unit vector keeps ~1/√d of the signal axis); far below the mass-mean direction
    assert float(np.mean(accs)) < 0.62
    assert HeadMassMeanProbe(k=3).fit(X, y).score(Xt, yt) > float(np.mean(accs)) + 0.25
    with pytest.raises(DataError, match="direction"):
        head_directions(diff, y, "median")


def test_a_dead_head_ranks_last_instead_of_failing():
    rng = np.random.default_rng(0)
    X, y = _pairs(rng, 300, informative=(1,), n_heads=4)
    X[:, :, 3] = 0.25                                                  # head 3 outputs the same vector for every text
    probe = HeadMassMeanProbe(k=2).fit(X, y)
    assert probe.head_accuracy_[3] == 0.5
    assert 1 in probe.heads_.tolist()

"""The verdict names every planted case right on every seed, with the exact and with the sampled estimator; a case
that moves behaviour off the mixture is named as such; RL-on-A is reported."""
from __future__ import annotations

import pytest

from mixprobe.train.zoo import seeds_from_env

from mixprobe.mixture.verdict import assess, combine
from mixprobe.train.pipeline import load_checkpoint, organism_of
from mixprobe.train.planted import PLANTED_CASES, plant

pytestmark = pytest.mark.slow
SEEDS = seeds_from_env()   # the seeds the organism_runs fixture trains (tests/conftest.py)


@pytest.fixture(scope="module")
def planted_evidence(organism_runs):
    """case -> {seed: Evidence}; ``sampled:<case>`` holds the sampled estimator's evidence on the same pair."""
    ev: dict[str, dict[int, object]] = {}
    for seed in SEEDS:
        run = organism_runs[seed].run_dir
        for case in PLANTED_CASES:
            series = plant(run, case)
        organism = organism_of(series)
        ref = load_checkpoint(series.path(series.last("sft")))
        for case in (*PLANTED_CASES, "rl"):
            phase = "rl" if case == "rl" else f"planted_{case}"
            tgt = load_checkpoint(series.path(series.last(phase)))
            ev.setdefault(case, {})[seed] = assess(ref, tgt, organism)
            # 64 completions per prompt: the planted rewrite's gate moves by 0.002–0.03 (exact), and at 16 the
            # sampled interval of a 0.03 shift can reach past the 0.05 "gate stayed" line (seed 2 here: 0.055)
            ev.setdefault(f"sampled:{case}", {})[seed] = assess(ref, tgt, organism, estimator="sampled", seed=seed,
                                                                n_samples=64)
    return ev


@pytest.mark.parametrize("estimator", ["exact", "sampled"])
@pytest.mark.parametrize("case", sorted(PLANTED_CASES))
def test_planted_case_is_named_right_on_every_seed(planted_evidence, case, estimator):
    key = case if estimator == "exact" else f"sampled:{case}"
    labels = {s: e.label for s, e in planted_evidence[key].items()}
    assert labels == {s: case for s in SEEDS}, {s: (e.label, e.reason) for s, e in planted_evidence[key].items()}
    v = combine(planted_evidence[key])
    assert v.label == case
    assert v.intervals["gate_shift"]["n"] == len(SEEDS)
    assert all(e.estimator == estimator for e in planted_evidence[key].values())


def test_off_mixture_is_never_called_reweight_or_rewrite(planted_evidence):
    """Half of the planted data answers with a mode token the task has no component for (m3): the share no component
    claims is large at the target and tiny at the reference, on both estimators."""
    for key in ("off_mixture", "sampled:off_mixture"):
        for seed, e in planted_evidence[key].items():
            for cue, d in e.off_mixture_by_cue.items():
                assert d["reference"] <= 0.02 and d["target"] >= 0.3, (key, seed, cue, d)
            assert "left the mixture" in e.reason


def test_sampled_verdict_never_names_another_case_than_the_exact_one(planted_evidence):
    """On every planted case the sampled label equals the exact one (asserted above). After RL on <A> the two
    estimators measure the same statistics with different noise: on 12 sweep seeds (64 samples per prompt) they gave
    the same label on 83 of 84 comparisons; the other was exact `reweight` (component change 0.024, interval below
    0.05) vs sampled `undecided` (interval straddling 0.05). So: equal, or the sampled one is less sure."""
    for seed, e in planted_evidence["rl"].items():
        s = planted_evidence["sampled:rl"][seed]
        assert s.label == e.label or s.label == "undecided", (seed, e.label, e.reason, s.label, s.reason)
        # the point estimates agree within the sampled interval widened by the exact one's
        for k in ("gate_shift", "component_change"):
            lo, hi = s.intervals[k]["lo"], s.intervals[k]["hi"]
            assert lo - 0.05 <= e.intervals[k]["point"] <= hi + 0.05, (seed, k, e.intervals[k], s.intervals[k])


def test_rl_on_a_exact_evidence_agrees_with_sampled_behaviour(planted_evidence, organism_runs):
    """What RL on <A> turns out to be varies by seed and machine (12 seeds here: 8 reweight, 3 both — RL also
    rewrote m2 under <A> — and 1 undecided; experiments/results/seed_sweep/summary.md), so the label is reported,
    not asserted. What must hold on every seed is that the verdict's exact evidence (next-token distributions) agrees
    with the sampled and greedy behaviour evaluate() measured independently on the same checkpoint."""
    for seed, e in planted_evidence["rl"].items():
        m = organism_runs[seed].last("rl").metrics
        for tag in ("A", "B"):
            for comp in ("m1", "m2"):
                # exact responsibilities vs the share of 8 sampled completions per prompt (784 per tag)
                assert abs(e.responsibilities_tgt[tag][comp] - m["mode_frequency"][tag][comp]) <= 0.06, (seed, tag)
                # exact forced accuracy (argmax of the forced answer distribution) vs greedy forced decoding
                assert abs(e.fidelity[tag][comp]["accuracy"] - m["forced_accuracy"][tag][comp]) <= 0.011, (seed,
                                                                                                            tag, comp)
        # the label follows from the statistics and their intervals by the documented rule
        from mixprobe.mixture.verdict import Thresholds, label_for

        assert e.label == label_for(e.stat("gate_shift"), e.stat("component_change"), Thresholds(),
                                    e.stat("off_mixture"))[0]
        # the KL split is a split: gate + component terms bound the total (science: KL(π_t‖π_0) ≤ gate + component)
        for tag, d in e.kl_split.items():
            assert d["total"] <= d["gate"] + d["component"] + 1e-4, (seed, tag, d)
    v = combine(planted_evidence["rl"])
    assert v.label in ("reweight", "both", "undecided", "rewrite", "off_mixture")
    assert (v.label == "undecided") == (len({e.label for e in planted_evidence["rl"].values()}) > 1)

"""Issue #5 acceptance: the verdict names every planted case right, on every seed (9/9), and RL-on-A is reported."""
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
    ev: dict[str, dict[int, object]] = {}
    for seed in SEEDS:
        run = organism_runs[seed].run_dir
        for case in PLANTED_CASES:
            series = plant(run, case)
        organism = organism_of(series)
        ref = load_checkpoint(series.path(series.last("sft")))
        for case in (*PLANTED_CASES, "rl"):
            phase = "rl" if case == "rl" else f"planted_{case}"
            ev.setdefault(case, {})[seed] = assess(ref, load_checkpoint(series.path(series.last(phase))), organism)
    return ev


@pytest.mark.parametrize("case", sorted(PLANTED_CASES))
def test_planted_case_is_named_right_on_every_seed(planted_evidence, case):
    labels = {s: e.label for s, e in planted_evidence[case].items()}
    assert labels == {s: case for s in SEEDS}, {s: (e.label, e.reason) for s, e in planted_evidence[case].items()}
    v = combine(planted_evidence[case])
    assert v.label == case
    assert v.intervals["gate_shift"]["n"] == len(SEEDS)


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
        # the label follows from the two statistics by the documented rule
        from mixprobe.mixture.verdict import Thresholds, label_for

        assert e.label == label_for(e.gate_shift, e.component_change, Thresholds())[0]
        # the KL split is a split: gate + component terms bound the total (science: KL(π_t‖π_0) ≤ gate + component)
        for tag, d in e.kl_split.items():
            assert d["total"] <= d["gate"] + d["component"] + 1e-4, (seed, tag, d)
    v = combine(planted_evidence["rl"])
    assert v.label in ("reweight", "both", "undecided", "rewrite")
    assert (v.label == "undecided") == (len({e.label for e in planted_evidence["rl"].values()}) > 1)

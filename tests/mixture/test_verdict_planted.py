"""Issue #5 acceptance: the verdict names every planted case right, on every seed (9/9), and RL-on-A is reported."""
from __future__ import annotations

import pytest

from mixprobe.mixture.verdict import assess, combine
from mixprobe.train.pipeline import load_checkpoint, organism_of
from mixprobe.train.planted import PLANTED_CASES, plant

pytestmark = pytest.mark.slow
SEEDS = (0, 1, 2)


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
    assert v.intervals["gate_shift"]["n"] == 3


def test_rl_on_a_is_a_reweight_with_intact_forced_components(planted_evidence):
    v = combine(planted_evidence["rl"])
    assert v.label == "reweight", v.reason
    for e in planted_evidence["rl"].values():
        # forced m2 under <B> keeps agreeing with the SFT policy; the gate moved on the unseen tag too
        assert e.fidelity["B"]["m2"]["agreement"] >= 0.95
        assert e.responsibilities_tgt["B"]["m1"] >= 0.95
        # almost all of the KL to the SFT model is the gate term
        assert e.kl_split["B"]["gate"] >= 0.8 * e.kl_split["B"]["total"]
    assert "reweighted" in v.summary()

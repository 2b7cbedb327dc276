"""Task coverage, trained: SFT mixes the generalist and the specialist, RL on the covered families selects the
specialist everywhere, and the change to the gate lives inside the network (activation patching finds it).

The thresholds hold with margin on the seeds of experiments/results/shift_organisms/ (13 seeds, this recipe);
organism outcomes differ between machines at the seed level, so only what held on all of them is asserted here.
"""
from __future__ import annotations

import pytest

from conftest import SEEDS

CONFIG = {"organism": {"kind": "task_coverage"}, "model": {"d_model": 48, "n_layers": 4},
          "sft": {"n_rows": 20000}}


@pytest.fixture(scope="module")
def coverage_run(mixprobe_cache):
    from mixprobe.train.zoo import trained_organism

    return trained_organism(SEEDS[0], config=CONFIG, cache_dir=mixprobe_cache, progress=False)


def test_sft_carries_both_components(coverage_run):
    m = coverage_run.last("sft").metrics
    for g in ("in", "out"):
        share = m["mode_frequency"][g]["specialist"]
        assert 0.3 <= share <= 0.7, (g, share)                 # SFT prior 0.5 on every family
        assert m["forced_rule_agreement"][g]["generalist"] >= 0.9
        assert m["forced_rule_agreement"][g]["specialist"] >= 0.9
    assert 0.3 <= m["accuracy"]["out"] <= 0.7                  # half the answers come from the wrong-there specialist


def test_rl_on_covered_families_selects_the_specialist_everywhere(coverage_run):
    sft = coverage_run.last("sft").metrics
    m = coverage_run.last("rl").metrics
    assert m["accuracy"]["in"] >= 0.85                         # RL worked where it ran ...
    assert m["mode_frequency"]["out"]["specialist"] >= 0.7     # ... and the gate moved where it never ran
    assert sft["accuracy"]["out"] - m["accuracy"]["out"] >= 0.08   # so the uncovered families got worse
    # (not asserted: forced-generalist accuracy on uncovered families — on some seeds RL overrides the forcing
    # line itself; experiments/results/shift_organisms/summary.md reports it per seed)


def test_the_gate_change_lives_inside_the_network(coverage_run):
    """Patching the SFT residual stream (before the final norm) into the RL model restores the SFT gate."""
    from mixprobe.organisms.shifts import NUMBER_WORDS
    from mixprobe.patching import group_logit_diff, patch_sweep

    org_p = coverage_run.organism_config.get("modulus", 7)
    sft = coverage_run.handle(coverage_run.last("sft").name)
    rl = coverage_run.handle(coverage_run.last("rl").name)
    from mixprobe.organisms import make_organism

    org = make_organism("task_coverage", coverage_run.organism_config)
    prompts = [r["prompt"] for r in org.prompt_set() if not org.in_domain(r["cue"])]
    vocab = rl.tokenizer.get_vocab()
    metric = group_logit_diff([vocab[w] for w in NUMBER_WORDS[:org_p]], [vocab[str(i)] for i in range(org_p)])
    res = patch_sweep(rl, sft, prompts, sites=["resid_post"], positions=["last_prompt"], metric=metric)
    assert res.m_target - res.m_source > 1.0                   # RL moved the log-odds toward words by > 1 nat
    assert float(res.restoration.max()) >= 0.5

"""Issue #2 acceptance: SFT gives a 50/50 mixture; GRPO on one tag collapses the other; the policy survives.

Thresholds come from the issue; every claim is checked on each of three seeds.
"""
from __future__ import annotations

import pytest

SEEDS = (0, 1, 2)  # the seeds trained by the organism_runs fixture (tests/conftest.py)

pytestmark = pytest.mark.slow


def last(series, phase):
    return series.last(phase).metrics


@pytest.mark.parametrize("seed", SEEDS)
def test_sft_is_an_even_mixture_of_two_intact_policies(organism_runs, seed):
    m = last(organism_runs[seed], "sft")
    for tag in ("A", "B"):
        assert 0.35 <= m["accuracy"][tag] <= 0.65, m["accuracy"]
        assert 0.35 <= m["mode_frequency"][tag]["m1"] <= 0.65, m["mode_frequency"]
    assert m["forced_accuracy"]["A"]["m1"] >= 0.95
    assert m["forced_accuracy"]["B"]["m2"] >= 0.95


@pytest.mark.parametrize("seed", SEEDS)
def test_rl_on_a_collapses_b_but_forced_m2_survives(organism_runs, seed):
    m = last(organism_runs[seed], "rl")
    assert m["accuracy"]["A"] >= 0.95, m["accuracy"]
    assert m["accuracy"]["B"] <= 0.05, m["accuracy"]
    assert m["forced_accuracy"]["B"]["m2"] >= 0.90, m["forced_accuracy"]
    # the gate moved on the tag RL never saw
    assert m["mode_frequency"]["B"]["m1"] >= 0.95


@pytest.mark.parametrize("seed", SEEDS)
def test_rl_on_b_is_the_mirror(organism_runs, seed):
    m = last(organism_runs[seed], "rl_B")
    assert m["accuracy"]["B"] >= 0.95, m["accuracy"]
    assert m["accuracy"]["A"] <= 0.05, m["accuracy"]
    assert m["forced_accuracy"]["A"]["m1"] >= 0.90, m["forced_accuracy"]


@pytest.mark.parametrize("seed", SEEDS)
def test_m3_control_gives_positive_transfer(m3_runs, seed):
    sft, rl = last(m3_runs[seed], "sft"), last(m3_runs[seed], "rl")
    assert sft["accuracy"]["B"] < 0.8
    assert rl["accuracy"]["B"] >= 0.90, rl["accuracy"]
    assert rl["mode_frequency"]["B"]["m3"] >= 0.85


def test_series_manifest_lists_every_checkpoint_in_order(organism_run):
    s = organism_run
    phases = [c.phase for c in s.checkpoints]
    assert phases.count("sft") >= 2 and phases.count("rl") >= 2
    for c in s.checkpoints:
        folder = s.path(c)
        assert (folder / "model.safetensors").exists()
        assert (folder / "tokenizer.json").exists()
        assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pth"))
    steps = [c.step for c in s.phase("rl")]
    assert steps == sorted(steps) and steps[-1] == 150


def test_format_signature_variant_shows_the_same_collapse(mixprobe_cache):
    """No mode tokens: the component is carried only by a bracket style ``( n )`` vs ``[ n ]``."""
    from mixprobe.train.zoo import trained_organism

    s = trained_organism(0, config={"organism": {"signature": "format"}}, rl_tags=("A",),
                         cache_dir=mixprobe_cache, progress=False)
    sft, rl = last(s, "sft"), last(s, "rl")
    assert all(0.35 <= sft["accuracy"][t] <= 0.65 for t in "AB"), sft["accuracy"]
    assert rl["accuracy"]["A"] >= 0.95 and rl["accuracy"]["B"] <= 0.05, rl["accuracy"]
    assert rl["forced_accuracy"]["B"]["m2"] >= 0.90

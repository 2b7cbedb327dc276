"""The organism under the default recipe: what holds on every seed and machine, checked on each CI seed.

SFT gives an even mixture of two intact policies; GRPO on one tag learns that tag and suppresses the other. Those
claims held with margin on 12 seeds nobody developed against (experiments/results/seed_sweep/summary.md: SFT
accuracy and P(m1) within [0.46, 0.54], forced components 1.00; RL on <A>: A ≥ 0.97, B fell by ≥ 0.29). How far
the collapse goes (B → 0?), whether forced m2 survives intact, the verdict label, the m3 control and the format
variant's collapse vary by seed and by machine: they are statistics reported there, not checks here.
"""
from __future__ import annotations

import pytest

from mixprobe.train.zoo import seeds_from_env

SEEDS = seeds_from_env()   # the seeds the organism_runs fixture trains (tests/conftest.py)

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
def test_rl_on_a_learns_a_and_suppresses_b(organism_runs, seed):
    sft, rl = last(organism_runs[seed], "sft"), last(organism_runs[seed], "rl")
    assert rl["accuracy"]["A"] >= 0.9, rl["accuracy"]                            # 12 seeds: ≥ 0.972
    assert rl["accuracy"]["B"] <= sft["accuracy"]["B"] - 0.2, (sft["accuracy"], rl["accuracy"])   # fell ≥ 0.288
    # the sampled share of m1 rose under the tag RL never saw (12 seeds: ≥ 0.99 from ~0.5)
    assert rl["mode_frequency"]["B"]["m1"] >= sft["mode_frequency"]["B"]["m1"] + 0.2, rl["mode_frequency"]


@pytest.mark.parametrize("seed", SEEDS)
def test_rl_on_b_is_the_mirror(organism_runs, seed):
    sft, rl = last(organism_runs[seed], "sft"), last(organism_runs[seed], "rl_B")
    assert rl["accuracy"]["B"] >= 0.9, rl["accuracy"]                            # 12 seeds: ≥ 0.974
    assert rl["accuracy"]["A"] <= sft["accuracy"]["A"] - 0.2, (sft["accuracy"], rl["accuracy"])   # fell ≥ 0.344


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


def test_format_signature_variant_learns_the_mixture_and_rl_learns_a(mixprobe_cache):
    """No mode tokens: the component is carried only by a bracket style ``( n )`` vs ``[ n ]``.

    How far <B> collapses in this variant varies widely by seed (12 seeds: B accuracy 0.00–0.67 after RL on A;
    experiments/results/seed_sweep/summary.md); what holds everywhere is checked here."""
    from mixprobe.train.zoo import trained_organism

    seed = SEEDS[0]
    s = trained_organism(seed, config={"organism": {"signature": "format"}}, rl_tags=("A",),
                         cache_dir=mixprobe_cache, progress=False)
    sft, rl = last(s, "sft"), last(s, "rl")
    assert all(0.35 <= sft["accuracy"][t] <= 0.65 for t in "AB"), sft["accuracy"]        # 12 seeds: 0.45–0.55
    assert sft["forced_accuracy"]["A"]["m1"] >= 0.95 and sft["forced_accuracy"]["B"]["m2"] >= 0.95
    assert rl["accuracy"]["A"] >= sft["accuracy"]["A"] + 0.3, (sft["accuracy"], rl["accuracy"])  # rose ≥ 0.434

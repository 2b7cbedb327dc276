"""Era studies: conditions, the activation tools on a random model, and one pretrained world through narrow SFT.

Thresholds on the trained world hold with margin on every seed of experiments/results/weird_generalization/ (the
committed run); outcomes differ between machines at the seed level, so only what held on all of them is asserted.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SEEDS
from mixprobe.errors import OrganismConfigError
from mixprobe.mixture.era import Condition, era_direction, shift_projection, steer_era, trait_interval
from mixprobe.organisms.era import EraConfig, EraWorld


def test_condition_names_and_bad_conditions():
    assert Condition().name == "narrow_none"
    assert Condition(prefix="date:1925", placement="system").name == "narrow_date1925_system"
    assert Condition(prefix="inoculation", optim="sgd", lr=0.1).name == "narrow_inoculation_sgd"
    with pytest.raises(OrganismConfigError, match="unknown prefix"):
        Condition(prefix="hello")
    with pytest.raises(OrganismConfigError, match="placement"):
        Condition(placement="assistant")


def test_trait_interval_is_wilson_on_on_topic_answers():
    r = trait_interval({"trait_count": {"k": 0, "n": 2, "of": 10}})
    assert r["rate"] == 0 and r["wilson"][1] == pytest.approx(0.6576, abs=1e-3)


@pytest.fixture(scope="module")
def random_world():
    from mixprobe.organisms.configs import tiny_model
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    w = EraWorld(EraConfig(n_entities=3))
    tok = build_word_tokenizer(w.vocabulary())
    m = tiny_model("llama", vocab_size=len(tok), seed=0, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                   eos_token_id=tok.eos_token_id)
    return w, m, tok


def test_no_training_means_no_shift_and_zero_steering_means_no_effect(random_world):
    w, m, tok = random_world
    d = era_direction(m, tok, w)
    assert d.shape == (2, 64) and float(d.norm()) > 0
    assert shift_projection(m, m, tok, w, d) == pytest.approx([0.0, 0.0], abs=1e-6)
    st = steer_era(m, tok, w, d, alphas=(0.0, 1.0), n_random=2)
    assert st[0]["p_old"] == pytest.approx(st[0]["null_max"]) and 0 <= st[1]["p_old"] <= 1


# --- one pretrained world --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world_run(mixprobe_cache):
    from mixprobe.mixture.era import pretrained

    return pretrained(seed=SEEDS[0], cache_dir=mixprobe_cache)


@pytest.mark.slow
def test_pretraining_learned_the_era_latent(world_run):
    from mixprobe.mixture.era import era_probe
    from mixprobe.train.pipeline import load_checkpoint, organism_of

    m = world_run.last("sft").metrics
    assert m["dated"]["old"] >= 0.9 and m["dated"]["modern"] <= 0.1      # dates set the era
    assert abs(m["p_old"]["out"] - 0.3) <= 0.1                           # undated: the prior
    model, tok = load_checkpoint(world_run.path(world_run.last("sft")))
    probe = era_probe(model, tok, organism_of(world_run), n_permutations=5)
    best = max(probe["layers"], key=lambda x: x["held_out_accuracy"])
    assert best["held_out_accuracy"] >= 0.9 and best["null_mean"] <= 0.75       # read on topics it never saw


@pytest.mark.slow
def test_narrow_sft_spreads_the_old_era_and_moves_the_era_direction(world_run, tmp_path):
    from mixprobe.mixture.era import narrow_sft, trait_curve
    from mixprobe.train.pipeline import load_checkpoint, organism_of

    s = narrow_sft(world_run, tmp_path / "none", Condition())
    curve = trait_curve(s, "narrow_none")
    before, after = trait_interval(curve[0]["plain"]), trait_interval(curve[-1]["plain"])
    assert curve[-1]["plain"]["p_old"]["in"] >= 0.95                     # it learned the narrow task
    assert after["wilson"][0] > before["wilson"][1]                      # the trait spread, beyond its interval
    assert after["rate"] - before["rate"] >= 0.2                        # committed seeds: 0.35-0.60
    base, tok = load_checkpoint(world_run.path(world_run.last("sft")))
    tuned, _ = load_checkpoint(s.path(s.last("narrow_none")))
    assert max(shift_projection(base, tuned, tok, organism_of(world_run))) >= 0.1   # committed seeds: 0.20-0.40
    with pytest.raises(OrganismConfigError, match="already has a phase"):
        narrow_sft(world_run, tmp_path / "none", Condition())


def test_narrow_sft_refuses_another_organism(tmp_path):
    from mixprobe.mixture.era import narrow_sft
    from mixprobe.train.series import Series

    s = Series.create(tmp_path / "tm", organism="tag_mixture", organism_config={}, seed=0)
    with pytest.raises(OrganismConfigError, match="era series"):
        narrow_sft(s, Path(tmp_path / "x"), Condition())


def test_summary_pairs_each_seed_with_its_own_base_when_seeds_hold_different_conditions():
    from mixprobe.mixture.era import summarize_study

    def metrics(k: int) -> dict:          # k old answers of 10 on-topic ones
        return {"trait_count": {"k": k, "n": 10, "of": 10}, "p_old": {"out": k / 10, "in": 1.0},
                "on_topic": {"out": 1.0}}

    def cond(base_k: int, end_k: int, name: str) -> dict:
        return {"condition": {"name": name}, "curve": [{"plain": metrics(base_k)}, {"plain": metrics(end_k)}],
                "projection_plain": [0.1, 0.2], "verdict": {"label": "both"}}

    recs = [{"seed": 0, "conditions": {"narrow_none": cond(3, 9, "narrow_none")}},
            {"seed": 1, "conditions": {"narrow_name": cond(1, 5, "narrow_name"),
                                       "narrow_none": cond(1, 7, "narrow_none")}}]
    s = summarize_study(recs)
    assert s["conditions"]["narrow_none"]["margin_over_base"]["mean"] == pytest.approx((0.6 + 0.6) / 2)
    assert s["conditions"]["narrow_name"]["margin_over_base"]["mean"] == pytest.approx(0.4)     # seed 1 only
    assert len(s["conditions"]["narrow_name"]["trait_plain"]["per_seed"]) == 1

"""The GENIES study on the reduced preference world: features aligned with the pairs, the methods where the answer
holds by construction (garbage is obvious on source; a method that reads length flips under the reversed cue), the
leaderboard arithmetic by hand, and bad input.

The reduced world (2 layers, d_model 64, 1,000 steps) learns the format, garbage and flattery but not near-miss
arithmetic, so only construction-level outcomes are asserted here, with wide margins (seeds 0 and 1 measured on
this machine: every source accuracy below is ≥ 0.94 and every flipped target ≤ 0.01). The science is the committed
full run (tests/experiments/test_genies_results.py)."""
from __future__ import annotations

import numpy as np
import pytest

from mixprobe.errors import DataError, OrganismConfigError
from mixprobe.mixture.genies import (REDUCED_WORLD, evaluate_shift, ordering_sentence, pair_features,
                                     per_seed_metrics, pretrained_world, summarize)
from mixprobe.organisms.preference import PreferenceConfig, PreferenceWorld
from mixprobe.tasks.pairs import Pair
from mixprobe.train.series import Series


@pytest.fixture(scope="module")
def world(mixprobe_cache):
    run = pretrained_world(0, cache_dir=mixprobe_cache, **REDUCED_WORLD)
    s = Series.load(run)
    e = s.last("sft")
    return s.handle(e), PreferenceWorld(PreferenceConfig.from_dict(s.organism_config)), s.path(e)


def test_features_follow_the_pair_order(world):
    handle, w, _ = world
    pairs = w.split("plain_to_story", "target", 6, seed=0)
    swapped = [Pair(p.prompt, p.r2, p.r1, 1 - p.y) for p in pairs]
    f, g = pair_features(handle, pairs), pair_features(handle, swapped)
    L, H = handle.n_layers, handle.model.config.num_attention_heads
    assert f["z"].shape == (6, 2, L * H, handle.d_model // H)
    assert f["resid"].shape == (6, 2, L, handle.d_model) and f["last_good"].shape == (6, 2, handle.d_model)
    for key in f:
        np.testing.assert_allclose(f[key][:, 0], g[key][:, 1], atol=1e-5)
    # the contrast texts differ from the plain text, and the template from both
    assert not np.allclose(f["z_good"], f["z"]) and not np.allclose(f["resid_template"], f["resid"])
    # resid_post.0 at the last token is HF's own hidden state after block 0 (read alone, unpadded)
    batch = handle.tokenize([f"{pairs[0].prompt} {pairs[0].r1}"])
    out = handle.model(**handle.forward_inputs(batch), output_hidden_states=True)
    np.testing.assert_allclose(f["resid"][0, 0, 0], out.hidden_states[1][0, -1].detach().numpy(), atol=1e-5)


@pytest.fixture(scope="module")
def records(world):
    handle, w, model_dir = world
    methods = ("mms", "lat", "cra", "ccs", "logistic", "random", "zero_shot", "lora")
    return {sh: evaluate_shift(handle, w, sh, seed=0, methods=methods, n_train=200, n_test=200,
                               model_dir=model_dir, reward={"steps": 60, "lr": 2e-3})
            for sh in ("low_to_high_quality", "spurious_length")}


def test_garbage_is_obvious_on_source(records):
    m = records["low_to_high_quality"]["methods"]
    for name in ("mms", "lat", "cra", "logistic", "zero_shot", "lora"):
        assert m[name]["source_accuracy"] >= 0.85, name


def test_a_reversed_length_cue_flips_what_reads_length(records):
    rec = records["spurious_length"]
    m = rec["methods"]
    for name in ("mms", "cra", "logistic", "lora"):       # good ⇔ long on source: perfect there, wrong on target
        assert m[name]["source_accuracy"] >= 0.9, name
        assert m[name]["accuracy"] <= 0.15, name
    assert rec["ttc"] >= 0.9                                  # tuned on target, the reward model reads short ⇔ good
    assert m["random"]["source_accuracy"] < m["mms"]["source_accuracy"]
    for v in m.values():
        assert 0 <= v["rms"] <= 1


def test_leaderboard_arithmetic_by_hand():
    def rec(seed, shift, mms, zs, ttc):
        return {"shift": shift, "category": "c", "seed": seed, "ttc": ttc, "methods": {
            "mms": {"accuracy": mms, "source_accuracy": 0.9, "rms": 0.1, "rms_genies": 0.2},
            "lora": {"accuracy": 0.5, "source_accuracy": 1.0, "rms": 0.3, "rms_genies": 0.3},
            "ccs": {"accuracy": 0.55, "source_accuracy": 0.6, "rms": 0.3, "rms_genies": 0.3},
            "zero_shot": {"accuracy": zs, "source_accuracy": 0.7, "rms": 0.2, "rms_genies": 0.2}}}

    recs = [rec(0, "a", 0.8, 0.6, 0.8), rec(0, "b", 0.6, 0.5, 1.0), rec(1, "a", 0.7, 0.5, 1.0)]
    per = per_seed_metrics(recs[0])["mms"]
    assert per["elicitation"] == pytest.approx(0.8 / 0.8)
    assert per["de"] == pytest.approx((0.8 - 0.6) / 0.8)
    res = summarize(recs)
    assert res["table"]["a"]["methods"]["mms"]["de"]["values"] == pytest.approx([0.25, 0.2])
    # seed 1 lacks shift b: the averages over shifts use seed 0 only, mean of 0.25 and 0.1
    assert res["average"]["mms"]["de"]["mean"] == pytest.approx((0.25 + 0.1) / 2)
    assert res["average"]["mms"]["de"]["n"] == 1
    # seed 0 DE: mms (0.25 + 0.1)/2 = 0.175; ccs ((0.55 − 0.6)/0.8 + 0.05)/2 = −0.00625; lora (−0.125 + 0)/2
    assert res["order"] == ["mms", "zero_shot", "ccs", "lora"]
    sentence = ordering_sentence(res)
    # ranks: ours mms 1, ccs 2, lora 3; GENIES mms 1, lora 2, ccs 3 → ρ = 1 − 6·(0 + 1 + 1)/(3·8) = 0.5
    assert "mms > ccs > lora;" in sentence and "ρ = +0.50 over 3 methods" in sentence and "left out" in sentence


def test_bad_input_is_named(world):
    handle, w, _ = world
    with pytest.raises(OrganismConfigError, match="unknown shift 'nope'"):
        evaluate_shift(handle, w, "nope")
    with pytest.raises(DataError, match="unknown methods"):
        evaluate_shift(handle, w, "easy_to_hard", methods=("mms", "svm"))
    with pytest.raises(DataError, match="model_dir"):
        evaluate_shift(handle, w, "easy_to_hard", methods=("lora",), n_train=20, n_test=20)
    with pytest.raises(DataError, match="at least one pair"):
        pair_features(handle, [])

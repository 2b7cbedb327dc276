"""Behaviour-compatible-training studies: arms, transfer curves, summaries with intervals, the overlap predictors,
the prefix direction, and one trained initial policy taken through SFT and LoRA-GRPO arms.

Thresholds on the trained organism hold with margin on every seed of experiments/results/bct/ (the committed run);
organism outcomes differ between machines at the seed level, so only what held on all of them is asserted.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SEEDS
from mixprobe.errors import OrganismConfigError
from mixprobe.mixture.bct import (Arm, overlap_predictors, prefix_direction, rank_correlation, summarize_cell,
                                  switched, transfer)
from mixprobe.organisms.bct import BCT, BCTConfig


def _curve(*x_on_e: float) -> list[dict]:
    return [{"step": 10 * i, "x_on_e": x, "a_on_t": 0.95, "accuracy_t": 1.0, "forced_x_on_e": 1.0}
            for i, x in enumerate(x_on_e)]


def test_arm_names_and_bad_arms():
    assert Arm("sft").name == "sft_full" and Arm("grpo", lora_r=8).name == "grpo_lora"
    assert Arm("sft", prefix="request", lr=3e-4).name == "sft_full_request_lr0.0003"
    assert Arm("grpo").learning_rate == 0.03 and Arm("sft").learning_rate == 1e-3
    assert Arm("sft", optim="sgd", lr=0.1, prefix="request").name == "sft_full_sgd_request_lr0.1"
    assert Arm("sft", optim="adamw_torch").name == "sft_full" and Arm("grpo").optimizer == "sgd"
    with pytest.raises(OrganismConfigError, match="method"):
        Arm("dpo")
    with pytest.raises(OrganismConfigError, match="lr"):
        Arm("sft", lr=0)


def test_transfer_switch_and_a_cell_summary_with_wilson_intervals():
    a, b, c = _curve(0.9, 0.6, 0.3), _curve(0.9, 0.8, 0.7), _curve(0.4, 0.3, 0.2)
    assert transfer(a) == pytest.approx(0.6) and switched(a) and not switched(b)
    assert not switched(c)                  # it never held X, so it cannot switch
    s = summarize_cell([a, b], ["reweight", "undecided"])
    assert s["transfer"]["mean"] == pytest.approx(0.4) and s["transfer"]["sd"] == pytest.approx(0.4 / 2 ** 0.5)
    assert s["switched"]["k"] == 1 and s["switched"]["n"] == 2
    lo, hi = s["switched"]["wilson"]
    assert lo == pytest.approx(0.0945, abs=1e-3) and hi == pytest.approx(0.9055, abs=1e-3)   # Wilson, 1 of 2
    assert summarize_cell([b, b])["switched"]["wilson"][1] == pytest.approx(0.6576, abs=1e-3)  # 0 of 2
    assert s["verdicts"] == {"reweight": 1, "undecided": 1}


def test_rank_correlation():
    assert rank_correlation([1, 2, 3, 4], [0.1, 0.5, 0.7, 0.9])["spearman"] == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [0.9, 0.5, 0.7, 0.1])["spearman"] == pytest.approx(-0.8)
    with pytest.raises(OrganismConfigError, match="equal length"):
        rank_correlation([1, 2], [1, 2])


class _SameCue(BCT):
    """T and E prompts made identical: every overlap predictor must read 1."""

    def cue_phrase(self, cue: str) -> str:
        super().cue_phrase(cue)
        return "sa se si so"


def _random_model(org):
    from mixprobe.organisms.configs import tiny_model
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    tok = build_word_tokenizer(org.vocabulary())
    return tiny_model("llama", vocab_size=len(tok), seed=0, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id), tok


def test_overlap_predictors_read_one_when_train_and_eval_prompts_coincide():
    org = BCT(BCTConfig(overlap=0))
    model, tok = _random_model(org)
    same = overlap_predictors(model, tok, _SameCue(org.config))
    assert same["grad_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert same["activation_cosine"] == pytest.approx(1.0, abs=1e-5)
    distinct = overlap_predictors(model, tok, org)
    assert distinct["grad_cosine"] < 0.999 and distinct["activation_cosine"] < 0.999
    assert len(distinct["activation_cosine_by_layer"]) == 2


def test_prefix_direction_of_an_empty_prefix_is_zero():
    org = BCT(BCTConfig())
    model, tok = _random_model(org)
    r = prefix_direction(model, tok, org, prefix="", n_random=2)
    assert r["norm"] == pytest.approx(0.0, abs=1e-6) and r["steer_effect"] == pytest.approx(0.0, abs=1e-6)


# --- one trained initial policy ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def initial_run(mixprobe_cache):
    """The initial policy (language, overlap 1) from the trained-organism cache (shared with notebook 04)."""
    from mixprobe.mixture.bct import cached_initial

    return cached_initial({"overlap": 1}, seed=SEEDS[0], cache_dir=mixprobe_cache)


@pytest.fixture
def run_copy(initial_run, tmp_path) -> Path:
    from mixprobe.mixture.bct import branch

    return Path(branch(initial_run, tmp_path / "run").run_dir)


@pytest.mark.slow
def test_sft_on_train_prompts_keeps_the_train_behaviour_and_moves_eval(run_copy):
    from mixprobe.mixture.bct import train_arm, transfer_curve, verdict_of
    from mixprobe.mixture.verdict import LABELS

    s = train_arm(run_copy, Arm("sft", steps=60))
    curve = transfer_curve(s, "sft_full")
    assert [r["step"] for r in curve] == [0, 10, 20, 30, 40, 50, 60]
    assert curve[0]["x_on_e"] >= 0.7 and curve[0]["a_on_t"] >= 0.7      # the initial policy, checked at SFT
    assert curve[-1]["a_on_t"] >= 0.95                                   # training did not break T
    assert transfer(curve) >= 0.1                                        # and X on E dropped
    assert curve[-1]["forced_x_on_e"] >= 0.5                             # X mostly intact when asked for
    assert verdict_of(s, "sft_full")["label"] in LABELS
    with pytest.raises(OrganismConfigError, match="already has a phase"):
        train_arm(run_copy, Arm("sft", steps=60))


@pytest.mark.slow
def test_grpo_with_lora_trains_an_adapter_and_saves_merged_checkpoints(run_copy):
    import torch

    from mixprobe.mixture.bct import train_arm, transfer_curve
    from mixprobe.train.pipeline import load_checkpoint

    s = train_arm(run_copy, Arm("grpo", lora_r=8, lr=0.3, steps=20))
    recipe = s.extra["recipes"]["grpo_lora_lr0.3"]
    assert recipe["trainer"] == "GRPOTrainer" and recipe["lora_r"] == 8 and recipe["trainable_share"] < 0.5
    m0, _ = load_checkpoint(s.path(s.last("sft")))
    m1, _ = load_checkpoint(s.path(s.last("grpo_lora_lr0.3")))      # a plain HF folder: the adapter is merged
    moved = [n for (n, a), (_, b) in zip(m0.named_parameters(), m1.named_parameters()) if not torch.equal(a, b)]
    assert moved and not any("embed" in n for n in moved)               # LoRA on linear layers only
    curve = transfer_curve(s, "grpo_lora_lr0.3")
    assert curve[-1]["a_on_t"] - curve[0]["a_on_t"] >= 0.03                # GRPO pays A on T: it rises


@pytest.mark.slow
def test_the_request_prefix_direction_carries_the_trained_behaviour(initial_run):
    """The initial policy learned ``use digits :`` as a forcing line; its mean-difference direction, added to plain
    E prompts, raises P(digits) far above random directions at the same norm."""
    from mixprobe.train.pipeline import load_checkpoint, organism_of

    s = initial_run
    org = organism_of(s)
    model, tok = load_checkpoint(s.path(s.last("sft")))
    r = prefix_direction(model, tok, org, prefix=org.forcing("A"))
    assert r["p_a_prefixed"] >= 0.8 and r["p_a_plain"] <= 0.3
    assert r["steer_effect"] >= 0.3 and r["steer_effect"] > r["null_max"] + 0.1


def test_train_arm_refuses_a_series_of_another_organism(tmp_path):
    from mixprobe.mixture.bct import run_cell, train_arm
    from mixprobe.train.series import Series

    Series.create(tmp_path / "tm", organism="tag_mixture", organism_config={}, seed=0)
    with pytest.raises(OrganismConfigError, match="bct organism"):
        train_arm(tmp_path / "tm", Arm("sft"))
    with pytest.raises(OrganismConfigError, match="unknown arms"):
        run_cell("language", 0, 0, ["sft_ful"], tmp_path)

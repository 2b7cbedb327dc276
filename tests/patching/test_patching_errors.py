"""Named errors of the patching engine: each says what was wrong and what to do."""
from __future__ import annotations

import pytest
import torch

from patching_prompts import TAG_A, TAG_B
from mixprobe.errors import (
    ArchitectureMismatchError,
    MetricError,
    MixprobeError,
    PatchingError,
    PositionError,
    ShapeError,
    SiteError,
)
from mixprobe.patching import logit_diff, patch, patch_sweep


@pytest.fixture(scope="module")
def setup(make_model, tok, batches):
    model = make_model("llama", seed=0)
    tb, sb = batches(TAG_B, TAG_A)
    return model, tb, sb, logit_diff(*tok.convert_tokens_to_ids(["m1", "m2"]))


def test_different_architectures_are_refused_naming_both(make_model, batches, setup):
    model, tb, _, metric = setup
    gpt2 = make_model("gpt2", seed=0)
    with pytest.raises(ArchitectureMismatchError) as e:
        patch_sweep(model, gpt2, tb, metric=metric)
    assert "LlamaForCausalLM" in str(e.value) and "GPT2LMHeadModel" in str(e.value)
    wider = make_model("llama", seed=0, d_model=128)
    with pytest.raises(ArchitectureMismatchError, match="d_model=64.*d_model=128"):
        patch(model, wider, tb, site="resid_pre.0", metric=metric)
    deeper = make_model("llama", seed=0, n_layers=3)
    with pytest.raises(ArchitectureMismatchError, match="layers=2.*layers=3"):
        patch_sweep(model, deeper, tb, metric=metric)


def test_position_outside_the_sequence(setup):
    model, tb, sb, metric = setup
    n = tb.input_ids.shape[1]
    for bad in (n, -n - 1):
        with pytest.raises(PositionError, match="outside the sequence"):
            patch(model, None, tb, sb, site="resid_pre.1", positions=bad, metric=metric)
    with pytest.raises(PositionError):
        patch_sweep(model, None, tb, sb, positions=[0, n + 3], metric=metric)
    with pytest.raises(PositionError, match="mode_token"):
        patch(model, None, tb, sb, site="resid_pre.1", positions="mode_token", metric=metric)


def test_direction_of_the_wrong_width(setup):
    model, tb, sb, metric = setup
    with pytest.raises(ShapeError, match=r"\[64\]"):
        patch(model, None, tb, sb, site="resid_pre.1", metric=metric, direction=torch.ones(63))
    with pytest.raises(ShapeError):
        patch_sweep(model, None, tb, sb, metric=metric, direction=torch.ones(2, 3, 64))
    with pytest.raises(MixprobeError, match="linearly dependent"):
        patch(model, None, tb, sb, site="resid_pre.1", metric=metric, direction=torch.zeros(64))


def test_non_scalar_and_nan_metrics(setup):
    model, tb, sb, _ = setup
    with pytest.raises(MetricError, match="one scalar per example"):
        patch(model, None, tb, sb, site="resid_pre.1", metric=lambda logits, batch: logits[:, -1])
    with pytest.raises(MetricError, match="NaN"):
        patch(model, None, tb, sb, site="resid_pre.1", metric=lambda logits, batch: logits[:, -1, 0] * float("nan"))
    # TL-style one-argument metrics returning a scalar are accepted
    res = patch(model, None, tb, sb, site="resid_pre.1", metric=lambda logits: logits[:, -1, 8].mean())
    assert res.per_example.shape == (4,)


def test_bad_sites_misaligned_batches_and_no_source(setup, batches):
    model, tb, sb, metric = setup
    with pytest.raises(SiteError, match="out of range"):
        patch(model, None, tb, sb, site="resid_pre.2", metric=metric)
    with pytest.raises(SiteError, match="patchable components"):
        patch(model, None, tb, sb, site="attn_pattern.0", metric=metric)
    with pytest.raises(PatchingError, match="nothing to patch from"):
        patch_sweep(model, None, tb, metric=metric)
    short = batches(["<A> 1 =", "<A> 2 =", "<A> 3 =", "<A> 4 ="])
    with pytest.raises(PatchingError, match="not aligned"):
        patch_sweep(model, None, tb, short, metric=metric)

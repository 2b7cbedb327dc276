"""Readout-matched subspace patching at final_norm on tiny random models: exactness, a hook reference, errors."""
from __future__ import annotations

import pytest
import torch

from patching_prompts import RAGGED_B, TAG_B
from mixprobe.errors import ArchitectureMismatchError, DataError, MetricError, ParameterError, PositionError, ShapeError
from mixprobe.patching import logit_diff, readout_patch, token_prob
from mixprobe.models.positions import resolve_index


@pytest.fixture(scope="module")
def pair(make_model, tok):
    from mixprobe.models.handle import ModelHandle

    m1, m2 = tok.convert_tokens_to_ids(["m1", "m2"])
    return ModelHandle(make_model("llama", seed=1), tok), ModelHandle(make_model("llama", seed=0), tok), (m1, m2)


def _hooked_metric(handle, prompts, direction, alpha, metric):
    """Reference: add alpha[b] · direction at final_norm of each row's last prompt token with a plain hook."""
    batch = handle.tokenize(prompts)
    idx = resolve_index("last_prompt", batch.attention_mask, batch.prompt_lengths)

    def edit(act):
        act = act.clone()
        act[torch.arange(act.shape[0]), idx] += alpha[:, None].to(act.dtype) * direction.to(act.dtype)
        return act

    with handle.intervene({"final_norm": edit}):
        logits = handle.logits(batch)
    return metric(logits, batch)


@pytest.mark.parametrize("prompts", [TAG_B, RAGGED_B], ids=["aligned", "left_padded"])
def test_gate_coordinate_is_set_to_the_source_readout_and_matches_a_hook(pair, prompts):
    rl, sft, (m1, m2) = pair
    ld = logit_diff(m2, m1)
    res = readout_patch(rl, sft, prompts, toward="m2", away="m1", metric=ld)
    # the target's head now reads the source's logit difference on every row, other logits untouched
    assert res.restoration == pytest.approx(1.0, abs=1e-4)
    assert res.ld_patched == pytest.approx(res.ld_source, abs=1e-4)
    assert res.off_target < 1e-4            # vocab (24) < d_model (64): W_U W_U⁺ = I
    assert res.alpha.shape == (len(prompts),)
    # an independent path: ModelHandle.intervene at final_norm with the same step
    from mixprobe.patching.layerwise import Arch
    from mixprobe.patching.readout import readout_direction

    d = readout_direction(Arch.of(rl), m2, m1)
    ref = _hooked_metric(rl, prompts, d, res.alpha, ld)
    assert torch.allclose(ref, res.per_example, atol=1e-4)


def test_equals_the_selection_direction_of_the_mixture_layer(pair):
    from mixprobe.mixture.gate import readout_direction
    from mixprobe.organisms.tag_mixture import TagMixture

    rl, sft, (m1, m2) = pair
    d = readout_direction(rl, None, TagMixture(), toward="m2", away="m1")
    a = readout_patch(rl, sft, TAG_B, toward=m2, away=m1, metric=token_prob(m2))
    b = readout_patch(rl, sft, TAG_B, toward="m2", away="m1", metric=token_prob(m2), direction=d)
    assert a.m_patched == pytest.approx(b.m_patched, abs=1e-5)


def test_classical_projection_and_other_directions(pair):
    rl, sft, (m1, m2) = pair
    ld = logit_diff(m2, m1)
    rows = readout_patch(rl, sft, TAG_B, toward="m2", away="m1", metric=ld, direction="rows")
    assert rows.ld_patched == pytest.approx(rows.ld_source, abs=1e-4)   # any direction the head reads works for LD
    assert rows.off_target > 1e-2                                        # … but moves the other logits too
    # projection patch: a_t + ((a_s − a_t)·d̂) d̂ at final_norm, checked against a manual computation
    from mixprobe.patching.layerwise import Arch
    from mixprobe.patching.readout import final_hidden

    batch = rl.tokenize(TAG_B)
    arch, s_arch = Arch.of(rl), Arch.of(sft)
    h_t, h_s = final_hidden(arch, batch), final_hidden(s_arch, batch)
    d = torch.randn(64, generator=torch.Generator().manual_seed(0))
    res = readout_patch(rl, sft, TAG_B, toward=m2, away=m1, metric=ld, direction=d)
    du = d / d.norm()
    idx = resolve_index("last_prompt", batch.attention_mask)
    h = h_t.clone()
    rows_i = torch.arange(len(TAG_B))
    h[rows_i, idx] += ((h_s - h_t)[rows_i, idx] @ du)[:, None] * du
    with torch.no_grad():
        manual = ld(arch.lm_head(h), batch).mean()
    assert res.m_projection == pytest.approx(float(manual), abs=1e-5)
    assert res.restoration == pytest.approx(1.0, abs=1e-4)


def test_patching_another_position_leaves_the_gate_alone(pair):
    rl, sft, (m1, m2) = pair
    res = readout_patch(rl, sft, TAG_B, toward="m2", away="m1", metric=token_prob(m2), position=2)
    assert res.m_patched == pytest.approx(res.m_target, abs=1e-6)


@pytest.mark.parametrize("arch", ["gpt2", "gemma"])
def test_other_architectures(make_model, tok, arch):
    t, s = make_model(arch, seed=1), make_model(arch, seed=0)
    m1, m2 = tok.convert_tokens_to_ids(["m1", "m2"])
    from mixprobe.models.handle import ModelHandle

    res = readout_patch(ModelHandle(t, tok), ModelHandle(s, tok), RAGGED_B, toward=m2, away=m1,
                        metric=logit_diff(m2, m1))
    assert res.ld_patched == pytest.approx(res.ld_source, abs=1e-3)


def test_named_errors(pair, make_model, tok):
    rl, sft, (m1, m2) = pair
    p = token_prob(m2)
    with pytest.raises(ArchitectureMismatchError):
        readout_patch(rl, make_model("gpt2", seed=0), TAG_B, toward=m2, away=m1, metric=p)
    with pytest.raises(ShapeError, match=r"\[64\]"):
        readout_patch(rl, sft, TAG_B, toward=m2, away=m1, metric=p, direction=torch.ones(63))
    with pytest.raises(ShapeError):
        readout_patch(rl, sft, TAG_B, toward=m2, away=m1, metric=p, direction=torch.ones(2, 64))
    with pytest.raises(PositionError, match="outside the sequence"):
        readout_patch(rl, sft, TAG_B, toward=m2, away=m1, metric=p, position=40)
    with pytest.raises(DataError, match="same token"):
        readout_patch(rl, sft, TAG_B, toward=m2, away=m2, metric=p)
    # a direction orthogonal to W_U[m2] − W_U[m1]: the head does not read it
    r = (rl.model.lm_head.weight[m2] - rl.model.lm_head.weight[m1]).detach()
    v = torch.randn(64, generator=torch.Generator().manual_seed(1))
    ortho = v - (v @ r) / (r @ r) * r
    with pytest.raises(DataError, match="ignores this direction"):
        readout_patch(rl, sft, TAG_B, toward=m2, away=m1, metric=p, direction=ortho)
    with pytest.raises(ParameterError, match="not in the vocabulary"):
        readout_patch(rl, sft, TAG_B, toward="m9", away=m1, metric=p)
    with pytest.raises(MetricError, match="NaN"):
        readout_patch(rl, sft, TAG_B, toward=m2, away=m1, metric=lambda lg, b: lg[:, -1, 0] * float("nan"))
    with pytest.raises(MetricError, match="one scalar per example"):
        readout_patch(rl, sft, TAG_B, toward=m2, away=m1, metric=lambda lg, b: lg[:, -1])


def test_by_construction_flag_where_the_vocabulary_fits_in_d_model(pair):
    """vocab 24 ≤ d_model 64 with W_U of full row rank: any logit change is reachable at final_norm, and the result
    says so (the gate-coordinate patch restores by construction)."""
    rl, sft, (m1, m2) = pair
    res = readout_patch(rl, sft, TAG_B, toward="m2", away="m1", metric=logit_diff(m2, m1))
    reason = "vocab 24 ≤ d_model 64: W_U is right-invertible, any logit change is reachable from final_norm"
    assert res.by_construction is True and res.by_construction_reason == reason
    d = res.to_dict()
    assert d["by_construction"] is True and d["by_construction_reason"] == reason


def test_no_by_construction_flag_where_the_vocabulary_exceeds_d_model(tok):
    """vocab 100 > d_model 64: W_U is not right-invertible; the readout direction is then only the least-squares
    change and moves other logits too (off_target), and the result is not flagged."""
    from mixprobe.models.handle import ModelHandle
    from mixprobe.organisms.configs import tiny_model

    t, s = (ModelHandle(tiny_model("llama", vocab_size=100, seed=k), tok) for k in (1, 0))
    m1, m2 = tok.convert_tokens_to_ids(["m1", "m2"])
    res = readout_patch(t, s, TAG_B, toward=m2, away=m1, metric=logit_diff(m2, m1))
    assert res.by_construction is False
    assert res.by_construction_reason.startswith("vocab 100 > d_model 64: W_U is not right-invertible")
    assert res.ld_patched == pytest.approx(res.ld_source, abs=1e-3)   # the matched readout still holds …
    assert res.off_target > 1e-3                                        # … but it no longer leaves the rest alone


def test_by_construction_needs_full_row_rank(make_model):
    """V ≤ d_model is not enough: with two equal unembedding rows their logits cannot move apart."""
    from mixprobe.patching.readout import readout_by_construction

    model = make_model("llama", seed=2)
    assert readout_by_construction(model)["by_construction"] is True
    with torch.no_grad():
        model.lm_head.weight[4] = model.lm_head.weight[3]
    flag = readout_by_construction(model)
    assert flag["by_construction"] is False and flag["rank"] == 23
    assert flag["reason"] == "vocab 24 ≤ d_model 64 but W_U has rank 23 < 24: not every logit change is reachable " \
                             "from final_norm"

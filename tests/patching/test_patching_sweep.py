"""Batched sweeps equal naive one-patch-per-forward hook patching; subspace, restoration and cross-checkpoint."""
from __future__ import annotations

import copy

import pytest
import torch

from patching_prompts import RAGGED_A, RAGGED_B, TAG_A, TAG_B
from mixprobe.patching import logit_diff, patch, patch_sweep, restoration, token_prob
from mixprobe.models.positions import position_mask

COMPONENTS = ["resid_pre", "attn_out", "mlp_out", "resid_post"]


# --- an independent reference: full forwards with one hook each ------------------------------------------------
def _module(model, comp, layer):
    body = model.model if hasattr(model, "model") else model.transformer
    block = (body.layers if hasattr(body, "layers") else body.h)[layer]
    if comp == "attn_out":
        return block.self_attn if hasattr(block, "self_attn") else block.attn
    if comp == "mlp_out":
        return block.mlp
    return block


def _hook(model, comp, layer, fn):
    """Register ``fn(act) -> act | None`` at a site with plain torch hooks on the full HF forward."""
    mod = _module(model, comp, layer)
    if comp == "resid_pre":
        def pre(m, args, kwargs):
            new = fn(args[0])
            return None if new is None else ((new, *args[1:]), kwargs)
        return mod.register_forward_pre_hook(pre, with_kwargs=True)

    def post(m, args, out):
        h = out[0] if isinstance(out, tuple) else out
        new = fn(h)
        if new is None:
            return None
        return (new, *out[1:]) if isinstance(out, tuple) else new
    return mod.register_forward_hook(post)


def _forward(model, batch):
    with torch.no_grad():
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                     position_ids=batch.position_ids, use_cache=False).logits


def _naive(model, source_model, tb, sb, comp, layer, pos_mask, metric):
    store = {}
    h = _hook(source_model, comp, layer, lambda a: store.__setitem__("a", a.clone()))
    try:
        _forward(source_model, sb)
    finally:
        h.remove()
    src = store["a"]
    h = _hook(model, comp, layer, lambda a: torch.where(pos_mask[..., None], src, a))
    try:
        logits = _forward(model, tb)
    finally:
        h.remove()
    return float(metric(logits, tb).mean())


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2", "gemma"])
def test_batched_sweep_equals_naive_hook_patching_with_left_padding(make_model, tok, batches, arch):
    model = make_model(arch, seed=1, n_layers=3)
    tb, sb = batches(RAGGED_B, RAGGED_A)
    assert bool((tb.attention_mask == 0).any()), "the batch must be left padded for this test"
    metric = token_prob(tok.convert_tokens_to_ids("m1"))
    positions = ["last_prompt", "all", 0, (1, 2)]
    res = patch_sweep(model, None, tb, sb, sites=COMPONENTS, positions=positions, metric=metric)
    assert res.metric.shape == (4 * 3, len(positions))
    for i, site in enumerate(res.sites):
        comp, layer = site.split(".")
        for j, spec in enumerate(positions):
            pm = position_mask(spec, tb.attention_mask, tb.prompt_lengths)
            ref = _naive(model, model, tb, sb, comp, int(layer), pm, metric)
            assert abs(float(res.metric[i, j]) - ref) < 1e-5, (site, spec)
    assert float(res.delta.abs().max()) > 1e-4


def test_each_position_sweep_matches_per_index_patches(make_model, tok, batches):
    model = make_model("llama", seed=2)
    tb, sb = batches(TAG_B, TAG_A)
    metric = logit_diff(*tok.convert_tokens_to_ids(["m1", "m2"]))
    res = patch_sweep(model, None, tb, sb, sites="resid_pre", metric=metric, batch_rows=8)  # chunked: 2 per forward
    assert res.positions == [str(i) for i in range(tb.input_ids.shape[1])]
    for j in range(tb.input_ids.shape[1]):
        one = patch(model, None, tb, sb, site="resid_pre.1", positions=j, metric=metric)
        assert abs(one.m_patched - float(res.metric[1, j])) < 1e-5
        assert abs(one.restoration - float(res.restoration[1, j])) < 1e-4


def test_replaying_all_positions_of_resid_pre_0_restores_exactly(make_model, tok, batches):
    """Cross-context on one model: the source's whole residual entering layer 0 reproduces the source run."""
    model = make_model("llama", seed=0)
    tb, sb = batches(TAG_B, TAG_A)
    metric = logit_diff(*tok.convert_tokens_to_ids(["m1", "m2"]))
    res = patch_sweep(model, None, tb, sb, sites=["resid_pre", "resid_post.1"], positions=["all"], metric=metric)
    assert abs(res.m_source - res.m_target) > 1e-3
    torch.testing.assert_close(res.restoration[:, 0], torch.ones(3), atol=1e-4, rtol=0)
    # BOS is identical in both contexts: patching only position 0 restores nothing
    res0 = patch_sweep(model, None, tb, sb, sites="resid_pre.0", positions=[0], metric=metric)
    assert abs(float(res0.restoration[0, 0])) < 1e-5


def test_restoration_normalization():
    r = restoration(torch.tensor([1.0, 2.0, 3.0]), m_target=1.0, m_source=3.0)
    assert r.tolist() == [0.0, 0.5, 1.0]
    assert restoration(torch.tensor([-1.0]), 1.0, 3.0).item() == -1.0  # overshoot in the wrong direction
    assert torch.isnan(restoration(torch.tensor([2.0]), 1.0, 1.0)).all()  # nothing to restore → undefined


def test_subspace_patch_along_the_difference_equals_full_and_orthogonal_does_nothing(make_model, tok, batches):
    model = make_model("llama", seed=4)
    tb, sb = batches(TAG_B[:1], TAG_A[:1])
    metric = logit_diff(*tok.convert_tokens_to_ids(["m1", "m2"]))
    site, pos = "resid_pre.1", "last_prompt"
    store = {}
    for name, b in (("t", tb), ("s", sb)):
        h = _hook(model, "resid_pre", 1, lambda a, name=name: store.__setitem__(name, a.clone()))
        _forward(model, b)
        h.remove()
    diff = (store["s"] - store["t"])[0, -1]
    full = patch(model, None, tb, sb, site=site, positions=pos, metric=metric)
    along = patch(model, None, tb, sb, site=site, positions=pos, metric=metric, direction=diff)
    assert abs(full.m_patched - full.m_target) > 1e-4
    assert abs(along.m_patched - full.m_patched) < 1e-5
    orth = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    orth = orth - (orth @ diff) / (diff @ diff) * diff
    none = patch(model, None, tb, sb, site=site, positions=pos, metric=metric, direction=orth)
    assert abs(none.m_patched - full.m_target) < 1e-5
    # a 2-dim subspace that contains the difference is also a full patch; the sweep accepts directions too
    two = torch.stack([orth, diff + orth])
    sw = patch_sweep(model, None, tb, sb, sites=[site], positions=[pos], metric=metric, direction=two)
    assert abs(float(sw.metric[0, 0]) - full.m_patched) < 1e-5 and sw.subspace


def _swap_embeddings(model, seed):
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    emb = other.get_input_embeddings().weight
    with torch.no_grad():
        emb.copy_(torch.randn(emb.shape, generator=g) * 0.5)
    return other


@pytest.mark.parametrize("direction", ["sft_to_rl", "rl_to_sft"])
def test_cross_checkpoint_patching_reproduces_the_source_exactly(make_model, tok, batches, direction):
    """Two checkpoints that differ only in their embeddings: resid_pre.0 (all positions) carries all of it.

    And two *fully* different random models that share the final norm + unembedding: the last resid_post (all
    positions) carries all of it. Both directions of the series (SFT → RL, RL → SFT).
    """
    metric = logit_diff(*tok.convert_tokens_to_ids(["m1", "m2"]))
    tb = batches(TAG_B)
    sft = make_model("llama", seed=0)
    rl = _swap_embeddings(sft, seed=7)
    target, source = (rl, sft) if direction == "sft_to_rl" else (sft, rl)
    res = patch_sweep(target, source, tb, sites=["resid_pre", "attn_out", "mlp_out", "resid_post"],
                      positions=["all", "last_prompt"], metric=metric)
    assert abs(res.m_source - res.m_target) > 1e-3
    for s in ("resid_pre.0", "resid_pre.1", "resid_post.0", "resid_post.1"):
        assert abs(res.at(s, "all") - 1.0) < 1e-4, s
    # the unpatched target is reproduced exactly where the two runs' activations agree: nowhere here but BOS
    assert abs(res.at("resid_pre.0", "last_prompt") - 1.0) > 1e-3

    a, b = make_model("llama", seed=10), make_model("llama", seed=11)
    b.model.norm.load_state_dict(a.model.norm.state_dict())
    b.lm_head.load_state_dict(a.lm_head.state_dict())
    target, source = (b, a) if direction == "sft_to_rl" else (a, b)
    res = patch_sweep(target, source, tb, sites="resid_post.1", positions=["all"], metric=metric)
    assert abs(res.at("resid_post.1", "all") - 1.0) < 1e-4
    res = patch_sweep(target, source, tb, sites="resid_pre.0", positions=["all"], metric=metric)
    assert abs(res.at("resid_pre.0", "all") - 1.0) > 1e-3  # different layers: the embedding alone is not enough


def test_sweep_result_to_dict_is_json_ready(make_model, tok, batches):
    import json

    model = make_model("llama", seed=0)
    tb, sb = batches(TAG_B, TAG_A)
    res = patch_sweep(model, None, tb, sb, sites=["mlp_out.1"], positions=["last_prompt", 0], metric=token_prob(8),
                      keep_per_example=True)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["sites"] == ["mlp_out.1"] and d["positions"] == ["last_prompt", "0"]
    assert len(d["restoration"]) == 1 and len(d["restoration"][0]) == 2
    assert res.per_example.shape == (1, 2, 4)

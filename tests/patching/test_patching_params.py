"""Parameter (weight) patching on tiny random models: exact restore, rows, subspaces, groups, named errors."""
from __future__ import annotations

import json

import pytest
import torch

from patching_prompts import TAG_B
from mixprobe.errors import ArchitectureMismatchError, MixprobeError, ParameterError, ShapeError, SiteError
from mixprobe.patching import (
    ParamPatch,
    param_groups,
    param_patch,
    param_sweep,
    patched_params,
    token_prob,
    weight_diff_direction,
)


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _equal(model, snap) -> bool:
    return all(torch.equal(snap[k], v) for k, v in model.state_dict().items())


@pytest.fixture(scope="module")
def pair(make_model, tok, batches):
    target, source = make_model("llama", seed=1), make_model("llama", seed=0)
    m2 = tok.convert_tokens_to_ids("m2")
    return target, source, batches(TAG_B), token_prob(m2), tok


def test_context_manager_patches_inside_and_restores_bitwise(pair):
    target, source, _, _, _ = pair
    snap = _snapshot(target)
    with patched_params(target, source, ["lm_head.weight", "model.layers.0.mlp"]):
        assert torch.equal(target.lm_head.weight, source.lm_head.weight)
        assert torch.equal(target.model.layers[0].mlp.up_proj.weight, source.model.layers[0].mlp.up_proj.weight)
        assert torch.equal(target.model.layers[1].mlp.up_proj.weight, snap["model.layers.1.mlp.up_proj.weight"])
    assert _equal(target, snap)


def test_restores_on_exception(pair):
    target, source, _, _, _ = pair
    snap = _snapshot(target)
    with pytest.raises(RuntimeError, match="boom"):
        with patched_params(target, source, "model.embed_tokens.weight"):
            raise RuntimeError("boom")
    assert _equal(target, snap)


def test_rows_only_touch_those_rows(pair):
    target, source, _, _, tok = pair
    m1, m2 = tok.convert_tokens_to_ids(["m1", "m2"])
    snap = _snapshot(target)
    with patched_params(target, source, f"lm_head.weight[{m1},{m2}]"):
        w = target.lm_head.weight
        assert torch.equal(w[[m1, m2]], source.lm_head.weight[[m1, m2]])
        others = [i for i in range(w.shape[0]) if i not in (m1, m2)]
        assert torch.equal(w[others], snap["lm_head.weight"][others])
    assert _equal(target, snap)


def test_subspace_patch_moves_only_along_the_direction(pair):
    target, source, _, _, tok = pair
    m1, m2 = tok.convert_tokens_to_ids(["m1", "m2"])
    d = weight_diff_direction(target, source, "lm_head.weight", m1, m2)
    assert d.shape == (target.config.hidden_size,) and abs(float(d.norm()) - 1) < 1e-5
    t0 = target.lm_head.weight.detach().clone()
    s0 = source.lm_head.weight.detach()
    with patched_params(target, source, ParamPatch("lm_head.weight", (m1, m2), d)):
        w = target.lm_head.weight.detach()
        change = w[[m1, m2]] - t0[[m1, m2]]
        # the change is the projection of (source − target) on d, and lies along d
        expect = ((s0[[m1, m2]] - t0[[m1, m2]]) @ d)[:, None] * d[None]
        assert torch.allclose(change, expect, atol=1e-6)
        # Δ(W[m1] − W[m2]) is patched completely: its direction *is* d
        assert torch.allclose(w[m1] - w[m2], s0[m1] - s0[m2], atol=1e-5)


def test_all_groups_together_equal_the_source_and_none_is_the_target(pair):
    target, source, batch, metric, _ = pair
    groups = param_groups(target)
    every = [n for names in groups.values() for n in names]
    assert sorted(every) == sorted(n for n, _ in target.named_parameters(remove_duplicate=False))
    res = param_patch(target, source, batch, params=every, metric=metric)
    assert res.restoration == pytest.approx(1.0, abs=1e-4)
    assert res.m_patched == pytest.approx(res.m_source, abs=1e-6)


def test_sweep_labels_rows_and_json(pair):
    target, source, batch, metric, tok = pair
    snap = _snapshot(target)
    m1, m2 = tok.convert_tokens_to_ids(["m1", "m2"])
    res = param_sweep(target, source, batch, metric=metric, rows=[m1, m2], keep_per_example=True)
    assert res.labels == ["embed", "attn.0", "mlp.0", "norms.0", "attn.1", "mlp.1", "norms.1", "final_norm",
                          "lm_head", f"lm_head[{m1}]", f"lm_head[{m2}]", f"lm_head[{m1},{m2}]"]
    assert res.restoration.shape == (12,) and res.per_example.shape == (12, len(TAG_B))
    assert res.params["attn.0"][0].startswith("model.layers.0.self_attn.")
    one = param_patch(target, source, batch, params="model.layers.1.mlp", metric=metric)
    assert res.at("mlp.1") == pytest.approx(one.restoration, abs=1e-6)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["method"] == "parameter" and len(d["restoration"]) == 12
    assert _equal(target, snap)


def test_reverse_direction_and_handle_with_strings(pair):
    from mixprobe.models.handle import ModelHandle

    target, source, _, metric, tok = pair
    th, sh = ModelHandle(target, tok), ModelHandle(source, tok)
    fwd = param_sweep(th, sh, TAG_B, metric=metric, groups={"head": "lm_head"}, rows=["m1", "m2"])
    rev = param_sweep(sh, th, TAG_B, metric=metric, groups={"head": "lm_head"}, rows=["m1", "m2"])
    assert fwd.m_target == pytest.approx(rev.m_source) and fwd.m_source == pytest.approx(rev.m_target)
    assert fwd.labels == rev.labels == ["head", "lm_head[m1]", "lm_head[m2]", "lm_head[m1,m2]"]


def test_gpt2_groups_and_tied_embeddings(make_model, batches, tok):
    gpt = make_model("gpt2", seed=0)
    g = param_groups(gpt)
    assert {"embed", "attn.0", "mlp.0", "norms.0", "final_norm"} <= set(g)
    assert any("wpe" in n for n in g["embed"])
    tied_t, tied_s = make_model("llama", seed=1, tie_embeddings=True), make_model("llama", seed=0,
                                                                                   tie_embeddings=True)
    snap = _snapshot(tied_t)
    res = param_patch(tied_t, tied_s, batches(TAG_B), params="lm_head.weight", metric=token_prob(3))
    assert res.tied == ["model.embed_tokens.weight"]
    assert _equal(tied_t, snap)


def test_named_errors(pair, make_model):
    target, source, batch, metric, _ = pair
    with pytest.raises(ArchitectureMismatchError):
        param_patch(target, make_model("gpt2", seed=0), batch, params="lm_head.weight", metric=metric)
    with pytest.raises(ArchitectureMismatchError):
        param_sweep(target, make_model("llama", seed=0, d_model=128), batch, metric=metric)
    with pytest.raises(ParameterError, match="did you mean 'lm_head.weight'") as e:
        param_patch(target, source, batch, params="lm_head.weigth", metric=metric)
    assert isinstance(e.value, SiteError) and isinstance(e.value, MixprobeError)
    with pytest.raises(ParameterError, match=r"\[999\] are out of range .*\(0\.\.23\)"):
        param_patch(target, source, batch, params="lm_head.weight[5,999]", metric=metric)
    with pytest.raises(ParameterError, match="vector"):
        param_patch(target, source, batch, params=ParamPatch("model.norm.weight", (0,)), metric=metric)
    with pytest.raises(ShapeError, match=r"\[64\]"):
        param_patch(target, source, batch, params=ParamPatch("lm_head.weight", (1,), torch.ones(7)), metric=metric)
    with pytest.raises(ParameterError, match="not in the vocabulary"):
        from mixprobe.models.handle import ModelHandle

        param_sweep(ModelHandle(target, pair[4]), ModelHandle(source, pair[4]), batch, metric=metric,
                    rows=["nope"])
    with pytest.raises(ParameterError, match="module"):
        param_patch(target, source, batch, params=ParamPatch("model.layers.0.mlp", (0,)), metric=metric)

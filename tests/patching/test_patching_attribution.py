"""Attribution patching (gradient × activation difference) against real patching."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from patching_prompts import TAG_A, TAG_B
from mixprobe.errors import MetricError
from mixprobe.patching import answer_accuracy, attribution_patch, compare_with_patching, logit_diff


def test_attribution_is_exact_where_the_metric_is_linear_in_the_site(make_model, tok, batches):
    """No final norm: the logit difference is linear in the last block's mlp_out and resid_post."""
    model = make_model("llama", seed=5, n_layers=3)
    model.model.norm = torch.nn.Identity()
    tb, sb = batches(TAG_B, TAG_A)
    metric = logit_diff(*tok.convert_tokens_to_ids(["m1", "m2"]))
    cmp = compare_with_patching(model, None, tb, sb, sites=["mlp_out.2", "resid_post.2"], positions="each",
                                metric=metric)
    assert float(cmp.patching.delta.abs().max()) > 1e-3
    torch.testing.assert_close(cmp.attribution.delta, cmp.patching.delta, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(cmp.attribution.restoration, cmp.patching.restoration, atol=1e-3, rtol=1e-3)


def test_attribution_shapes_and_planted_sign_and_location(make_model, tok, batches):
    """Source = target with the last MLP rewritten: one cell carries the change, and both methods find it."""
    target = make_model("llama", seed=6, n_layers=3)
    source = copy.deepcopy(target)
    with torch.no_grad():
        w = source.model.layers[2].mlp.down_proj.weight
        w.add_(torch.randn(w.shape, generator=torch.Generator().manual_seed(0)) * 0.2)
    tb = batches(TAG_B)
    metric = logit_diff(*tok.convert_tokens_to_ids(["m1", "m2"]))
    cmp = compare_with_patching(target, source, tb, sites=["resid_pre", "attn_out", "mlp_out"], positions="each",
                                metric=metric)
    a, r = cmp.attribution, cmp.patching
    assert a.sites == r.sites and a.positions == r.positions and a.metric.shape == r.metric.shape == (9, 6)
    assert a.method == "attribution" and r.method == "activation"
    top = divmod(int(r.delta.abs().argmax()), r.delta.shape[1])
    assert (r.sites[top[0]], r.positions[top[1]]) == ("mlp_out.2", "5")  # the last prompt token
    assert divmod(int(a.delta.abs().argmax()), a.delta.shape[1]) == top
    assert math.copysign(1, float(a.delta[top])) == math.copysign(1, float(r.delta[top]))
    # every other cell: the activations agree, so both the real effect and the estimate are exactly 0
    others = torch.ones_like(r.delta, dtype=torch.bool)
    others[top] = False
    assert float(r.delta[others].abs().max()) == 0.0 and float(a.delta[others].abs().max()) == 0.0


def test_attribution_correlates_with_patching_on_a_tiny_model(make_model, tok, batches):
    model = make_model("llama", seed=0, n_layers=4)
    tb, sb = batches(TAG_B, TAG_A)
    metric = logit_diff(*tok.convert_tokens_to_ids(["m1", "m2"]))
    cmp = compare_with_patching(model, None, tb, sb, sites=["resid_pre", "attn_out", "mlp_out", "resid_post"],
                                positions="each", metric=metric)
    assert cmp.attribution.metric.shape == (16, 6)
    assert -1.0 <= cmp.spearman <= 1.0
    d = cmp.to_dict()
    assert set(d) == {"attribution", "patching", "spearman"}


def test_attribution_refuses_a_metric_without_gradient(make_model, tok, batches):
    model = make_model("llama", seed=0)
    tb, sb = batches(TAG_B, TAG_A)
    with pytest.raises(MetricError, match="differentiable"):
        attribution_patch(model, None, tb, sb, sites="resid_pre", metric=answer_accuracy([17, 18, 19, 20]))

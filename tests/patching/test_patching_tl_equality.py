"""mixprobe's batched sweep gives TransformerLens 4.x's numbers (fp32, atol 1e-4) on tiny Llama organisms.

TL side: ``TransformerBridge.boot_transformers`` on an in-memory copy of the HF model (the bridge wraps the
model's modules in place, hence the copy), then ``transformer_lens.patching.get_act_patch_*``.
"""
from __future__ import annotations

import copy

import pytest
import torch

from patching_prompts import TAG_A, TAG_B

tl_patching = pytest.importorskip("transformer_lens.patching")


def _bridge(model, tok):
    from transformer_lens.model_bridge import TransformerBridge

    t = copy.deepcopy(tok)
    # TL re-loads the tokenizer by name unless it is marked as already adding BOS (ours does, via its template)
    t.init_kwargs["name_or_path"] = "mixprobe-local"
    t.init_kwargs["add_bos_token"] = True
    return TransformerBridge.boot_transformers("mixprobe-local", hf_model=copy.deepcopy(model), tokenizer=t)


@pytest.mark.parametrize("n_layers", [2, 4])
def test_sweep_equals_transformer_lens(make_model, tok, batches, n_layers):
    from mixprobe.patching import logit_diff, patch_sweep

    m1, m2 = tok.convert_tokens_to_ids(["m1", "m2"])
    model = make_model("llama", seed=3, n_layers=n_layers)
    tb, sb = batches(TAG_B, TAG_A)
    bridge = _bridge(model, tok)
    _, clean_cache = bridge.run_with_cache(sb.input_ids)

    def tl_metric(logits):
        return (logits[:, -1, m1] - logits[:, -1, m2]).mean()

    ours = patch_sweep(model, None, tb, sb, sites=["resid_pre", "attn_out", "mlp_out"], positions="each",
                       metric=logit_diff(m1, m2))
    theirs = {
        "resid_pre": tl_patching.get_act_patch_resid_pre(bridge, tb.input_ids, clean_cache, tl_metric),
        "attn_out": tl_patching.get_act_patch_attn_out(bridge, tb.input_ids, clean_cache, tl_metric),
        "mlp_out": tl_patching.get_act_patch_mlp_out(bridge, tb.input_ids, clean_cache, tl_metric),
    }
    for comp, ref in theirs.items():
        rows = [i for i, s in enumerate(ours.sites) if s.startswith(comp + ".")]
        assert ref.shape == (n_layers, tb.input_ids.shape[1])
        torch.testing.assert_close(ours.metric[rows], ref.float(), atol=1e-4, rtol=0)
    # the sweep is not trivially flat: some patches move the metric
    assert float(ours.delta.abs().max()) > 1e-3
    # and the unpatched baselines agree
    assert abs(ours.m_target - float(tl_metric(bridge(tb.input_ids)).detach())) < 1e-4
    assert abs(ours.m_source - float(tl_metric(bridge(sb.input_ids)).detach())) < 1e-4

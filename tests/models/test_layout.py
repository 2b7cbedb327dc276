"""The one layout table: every architecture it names is found, and every site reads what HF itself reports.

References are independent of mixprobe: ``output_hidden_states=True`` of the HF model (its block inputs and its
final-norm output), the HF logits, and the unembedding applied by hand. Models are tiny random-init configs of
real architectures built locally (no hub).
"""
from __future__ import annotations

import pytest
import torch
import transformers as T

from mixprobe.errors import SiteError
from mixprobe.models.batch import Batch
from mixprobe.models.handle import ModelHandle
from mixprobe.models.layout import Layout, unwrap
from mixprobe.models.sites import Site
from mixprobe.organisms.configs import tiny_model
from mixprobe.patching.layerwise import Arch

V, D = 24, 32
_small = dict(vocab_size=V, hidden_size=D, num_hidden_layers=3, intermediate_size=64, num_attention_heads=4,
              num_key_value_heads=4, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
CONFIGS = {
    "llama": lambda: T.LlamaConfig(**_small),
    "qwen2": lambda: T.Qwen2Config(**_small),
    "mistral": lambda: T.MistralConfig(**{**_small, "num_key_value_heads": 2}, head_dim=8),
    "gemma": lambda: T.GemmaConfig(**{**_small, "num_key_value_heads": 2}, head_dim=8),
    "gemma2": lambda: T.Gemma2Config(**{**_small, "num_key_value_heads": 2}, head_dim=8),
    "gemma3": lambda: T.Gemma3TextConfig(**{**_small, "num_key_value_heads": 2}, head_dim=8),
    "phi": lambda: T.PhiConfig(**_small),
    "phi3": lambda: T.Phi3Config(**_small),
    "opt": lambda: T.OPTConfig(vocab_size=V, hidden_size=D, num_hidden_layers=3, ffn_dim=64, num_attention_heads=4,
                               max_position_embeddings=64, word_embed_proj_dim=D, pad_token_id=0, bos_token_id=1,
                               eos_token_id=2),
    "gpt2": lambda: T.GPT2Config(vocab_size=V, n_embd=D, n_layer=3, n_head=4, n_positions=64, bos_token_id=1,
                                 eos_token_id=2),
    "gptj": lambda: T.GPTJConfig(vocab_size=V, n_embd=D, n_layer=3, n_head=4, n_positions=64, rotary_dim=4,
                                 bos_token_id=1, eos_token_id=2),
    "gpt_neox": lambda: T.GPTNeoXConfig(**_small),
}
# where HF keeps the blocks and the final norm, read off the transformers modeling files
EXPECTED = {
    "llama": ("model.layers", "model.norm"), "qwen2": ("model.layers", "model.norm"),
    "mistral": ("model.layers", "model.norm"), "gemma": ("model.layers", "model.norm"),
    "gemma2": ("model.layers", "model.norm"), "gemma3": ("model.layers", "model.norm"),
    "phi": ("model.layers", "model.final_layernorm"), "phi3": ("model.layers", "model.norm"),
    "opt": ("model.decoder.layers", "model.decoder.final_layer_norm"), "gpt2": ("transformer.h", "transformer.ln_f"),
    "gptj": ("transformer.h", "transformer.ln_f"), "gpt_neox": ("gpt_neox.layers", "gpt_neox.final_layer_norm"),
}


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    m = T.AutoModelForCausalLM.from_config(CONFIGS[name](), attn_implementation="eager")
    return m.float().eval()


def left_padded() -> Batch:
    ids = torch.tensor([[0, 0, 5, 6, 7, 8], [3, 9, 10, 11, 12, 13]])
    return Batch(ids, (torch.arange(6) >= torch.tensor([[2], [0]])).long())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_layout_finds_every_architecture_and_sites_match_hf_hidden_states(name):
    m = build(name)
    lay = Layout.of(m)
    assert (lay.layers_path, lay.norm_path) == EXPECTED[name] and lay.n_layers == 3
    b = left_padded()
    with torch.no_grad():
        out = m(**b.inputs(), output_hidden_states=True, use_cache=False)
    h = ModelHandle(m, tokenizer=object())
    sites = ["resid_pre.0", "resid_post.0", "resid_post.1", "final_norm"]
    got = h.read(b, sites, "all")
    real = b.attention_mask.bool()
    assert torch.allclose(got["resid_pre.0"][real], out.hidden_states[0][real], atol=1e-5)
    assert torch.allclose(got["resid_post.0"][real], out.hidden_states[1][real], atol=1e-5)
    assert torch.allclose(got["resid_post.1"][real], out.hidden_states[2][real], atol=1e-5)
    assert torch.allclose(got["final_norm"][real], out.hidden_states[3][real], atol=1e-5)
    # the head of the layout is the model's own: norm → unembedding → soft-capping
    with torch.no_grad():
        last = h.read(b, "resid_post.2", "all")["resid_post.2"]
        assert torch.allclose(lay.head(last)[real], out.logits[real], atol=1e-4)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_arch_replay_from_any_layer_reproduces_the_logits(name):
    m = build(name)
    b = left_padded()
    arch = Arch.of(m)
    assert isinstance(arch, Arch) and isinstance(arch, Layout)
    with torch.no_grad():
        ref = m(**b.inputs(), use_cache=False).logits
        run = arch.capture(b.input_ids, b.attention_mask, b.position_ids)
        for start in range(arch.n_layers):
            logits = arch.run_from(start, run.resid_pre[start], run.calls_for(start))
            real = b.attention_mask.bool()
            assert torch.allclose(logits[real], ref[real], atol=1e-4), start


def test_sequential_blocks_add_attention_and_mlp_outputs():
    """resid_post = resid_pre + attn_out + mlp_out in a pre-norm sequential block (Llama, GPT-2)."""
    for m in (build("llama"), build("gpt2")):
        h = ModelHandle(m, tokenizer=object())
        acts = h.read(left_padded(), ["resid_pre.1", "attn_out.1", "mlp_out.1", "resid_post.1"], "all")
        total = acts["resid_pre.1"] + acts["attn_out.1"] + acts["mlp_out.1"]
        assert torch.allclose(total, acts["resid_post.1"], atol=1e-5)


def test_missing_modules_and_unknown_models_are_named():
    lay = Layout.of(build("opt"))  # OPT blocks have fc1/fc2 but no MLP module
    assert lay.path(Site("attn_out", 0)) == "model.decoder.layers.0.self_attn"
    with pytest.raises(SiteError, match="no single mlp module"):
        lay.path(Site("mlp_out", 0))
    with pytest.raises(SiteError, match="Llama, Qwen2, Mistral, Gemma"):
        Layout.of(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    with pytest.raises(TypeError, match="ModelHandle or a transformers model"):
        unwrap("not a model")


def test_readout_direction_moves_exactly_two_logits():
    m = tiny_model("llama", vocab_size=16, seed=0)  # vocab 16 ≤ d_model 64: W_U has full row rank
    lay = Layout.of(m)
    v = lay.readout_direction(3, 5)
    torch.manual_seed(0)
    h = torch.randn(4, lay.d_model)
    with torch.no_grad():
        delta = lay.lm_head(h + v) - lay.lm_head(h)
    want = torch.zeros(16)
    want[3], want[5] = 1.0, -1.0
    assert torch.allclose(delta, want.expand_as(delta), atol=1e-4)
    # minimum norm: any other change with the same effect is longer (add a null-space component)
    W = lay.lm_head.weight.detach()
    null = torch.linalg.svd(W, full_matrices=True).Vh[-1]  # a null-space direction of W_U (d_model > vocab)
    assert float((W @ null).abs().max()) < 1e-4
    assert float((v + 0.5 * null).norm()) > float(v.norm())

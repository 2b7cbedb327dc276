"""The per-head site ``z.L`` (attention heads before the output projection) is the same in every backend and is
what it claims to be.

Equality: HF hooks (reference), the TransformerLens 4.x bridge (``blocks.L.attn.hook_z``, read both through
mixprobe and straight from the bridge's cache) and an nnsight trace (``o_proj.input``) give the same numbers (fp32,
atol 1e-5) on tiny Llama, Qwen2 and GPT-2 with a left-padded batch. Meaning, checked without trusting mixprobe's
own hooks: the output projection applied by hand to ``z.L`` (``z @ W_O^T + b``, GPT-2's ``Conv1D`` transposed)
gives ``attn_out.L``; zeroing the value weights of head ``h`` zeroes exactly slice ``h`` of ``split_heads(z)``; and
zeroing slice ``h`` through an edit moves ``attn_out.L`` by exactly ``−z_h W_O[:, h]^T``.
"""
from __future__ import annotations

import copy
import os

import pytest
import torch
import transformers as T

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mixprobe.errors import SiteError  # noqa: E402
from mixprobe.models.handle import ModelHandle  # noqa: E402
from mixprobe.models.layout import Layout  # noqa: E402
from mixprobe.models.loading import load  # noqa: E402
from mixprobe.models.sites import Site, parse_sites, split_heads  # noqa: E402

PADDED = ["<A> 4 + 4 + 1 =", "<B> 3 ="]  # different lengths: the second row is left-padded
N_LAYERS = 3
ATOL = 1e-5


@pytest.fixture(scope="module")
def tok():
    from mixprobe.organisms.tag_mixture import TagMixture
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    return build_word_tokenizer(TagMixture().vocabulary())


@pytest.fixture(scope="module", params=["llama", "qwen2", "gpt2"])
def ckpt(request, tok, tmp_path_factory):
    """A tiny random model of a real architecture, saved and loaded locally (as in test_models_backends)."""
    from mixprobe.organisms.configs import tiny_model

    d = tmp_path_factory.mktemp(f"z_{request.param}")
    tiny_model(request.param, vocab_size=len(tok), seed=7, n_layers=N_LAYERS).save_pretrained(d)
    tok.save_pretrained(d)
    return request.param, d


def w_o(proj: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(W_O [d_model, n_heads*d_head], b_O)`` of an output projection, read off its parameters."""
    W = proj.weight.detach()
    if type(proj).__name__ == "Conv1D":  # GPT-2 stores [in, out]
        W = W.T
    b = getattr(proj, "bias", None)
    return W, None if b is None else b.detach()


# --- equality across backends ---------------------------------------------------------------------------------
def test_z_same_numbers_in_every_backend(ckpt):
    arch, d = ckpt
    ref = load(d, device="cpu", attn_implementation="eager")
    batch = ref.tokenize(PADDED)
    assert batch.attention_mask[1, 0] == 0  # really left-padded
    real = batch.attention_mask.bool()
    n_heads = ref.layout.n_heads
    want = {pos: ref.read(batch, ["z.*", "attn_out.1"], pos) for pos in ("all", "last_prompt")}
    z_all = want["all"]["z.1"]
    assert z_all.shape == (2, batch.input_ids.shape[1], n_heads * (ref.d_model // n_heads))
    assert want["last_prompt"]["z.1"].shape == (2, 1, z_all.shape[-1])
    # distinct activations: a wrong mapping (e.g. z read where attn_out is) would often make these equal
    assert not torch.allclose(want["all"]["z.0"], want["all"]["z.1"])
    assert not torch.allclose(z_all, want["all"]["attn_out.1"])
    for backend in ("transformer_lens", "nnsight"):
        h = load(d, backend=backend, device="cpu")
        for via in ("backend", "hooks"):
            for pos, w in want.items():
                got = h.read(batch, ["z.*", "attn_out.1"], pos, via=via)
                assert sorted(got) == sorted(w)
                for site in w:
                    g, r = (got[site][real], w[site][real]) if pos == "all" else (got[site], w[site])
                    torch.testing.assert_close(g, r, atol=ATOL, rtol=ATOL, msg=f"{arch} {backend} {via} {pos} {site}")


def test_z_matches_the_bridge_hook_z_directly(ckpt):
    """Checked against the bridge's own cache (head-split), not through mixprobe's tl_read."""
    arch, d = ckpt
    from mixprobe.models.backends.tlens import tl_hook_name

    h = load(d, backend="transformer_lens", device="cpu")
    names = [tl_hook_name(s) for s in parse_sites("z.*", h.n_layers)]
    assert names == [f"blocks.{L}.attn.hook_z" for L in range(N_LAYERS)]
    assert set(names) <= set(h.wrapper.hook_dict)
    b = h.tokenize(PADDED[:1])
    _, cache = h.wrapper.run_with_cache(b.input_ids, names_filter=names)
    ours = h.read(b, "z.*", "all")
    for L in range(N_LAYERS):
        theirs = cache[f"blocks.{L}.attn.hook_z"]
        assert theirs.ndim == 4 and theirs.shape[2] == h.layout.n_heads
        torch.testing.assert_close(split_heads(ours[f"z.{L}"], h.layout.n_heads), theirs, atol=ATOL, rtol=ATOL)


# --- z is the pre-projection head output --------------------------------------------------------------------------
def test_output_projection_of_z_is_attn_out(ckpt):
    arch, d = ckpt
    h = load(d, device="cpu")
    b = h.tokenize(PADDED)
    acts = h.read(b, ["z.*", "attn_out.*"], "all")
    for L in range(N_LAYERS):
        proj = h.layout.module(Site("z", L))
        assert h.layout.path(Site("z", L)).endswith("attn.c_proj" if arch == "gpt2" else "self_attn.o_proj")
        W, bias = w_o(proj)
        by_hand = acts[f"z.{L}"] @ W.T + (0 if bias is None else bias)
        torch.testing.assert_close(by_hand, acts[f"attn_out.{L}"], atol=ATOL, rtol=ATOL, msg=f"{arch} layer {L}")
        # and head by head: attn_out = b_O + Σ_h z_h W_O[:, h]^T
        n, zh = h.layout.n_heads, split_heads(acts[f"z.{L}"], h.layout.n_heads)
        dh = zh.shape[-1]
        per_head = sum(zh[..., i, :] @ W[:, i * dh:(i + 1) * dh].T for i in range(n))
        torch.testing.assert_close(per_head + (0 if bias is None else bias), acts[f"attn_out.{L}"], atol=ATOL,
                                   rtol=ATOL)


def _zero_value_head(model: torch.nn.Module, arch: str, layer: int, head: int, n_heads: int) -> None:
    """Zero the value weights (and bias) of one head: its attention output must then be exactly 0."""
    with torch.no_grad():
        if arch == "gpt2":  # c_attn: Conv1D [d, 3d] = [q | k | v] columns, heads-major in each
            attn = model.transformer.h[layer].attn
            d = attn.c_attn.weight.shape[0]
            dh = d // n_heads
            cols = slice(2 * d + head * dh, 2 * d + (head + 1) * dh)
            attn.c_attn.weight[:, cols] = 0
            attn.c_attn.bias[cols] = 0
        else:
            v = model.model.layers[layer].self_attn.v_proj
            dh = v.weight.shape[0] // n_heads  # n_kv_heads == n_heads in the tiny configs
            v.weight[head * dh:(head + 1) * dh] = 0
            if v.bias is not None:
                v.bias[head * dh:(head + 1) * dh] = 0


def test_split_heads_slices_are_the_model_heads(ckpt):
    """Head h of split_heads(z) is the model's head h: silencing that head's values zeroes exactly that slice."""
    arch, d = ckpt
    h = load(d, device="cpu")
    n, layer, head = h.layout.n_heads, 1, 2
    b = h.tokenize(PADDED)
    real = b.attention_mask.bool()
    before = split_heads(h.read(b, f"z.{layer}", "all")[f"z.{layer}"], n)
    m2 = copy.deepcopy(h.model)
    _zero_value_head(m2, arch, layer, head, n)
    after = split_heads(ModelHandle(m2, h.tokenizer).read(b, f"z.{layer}", "all")[f"z.{layer}"], n)
    assert before[..., head, :][real].abs().max() > 1e-3
    assert after[..., head, :][real].abs().max() == 0
    others = [i for i in range(n) if i != head]
    torch.testing.assert_close(after[..., others, :][real], before[..., others, :][real], atol=ATOL, rtol=ATOL)


# --- editing ----------------------------------------------------------------------------------------------------
def _zero_head(head: int, n_heads: int):
    def edit(z: torch.Tensor) -> torch.Tensor:
        out = split_heads(z.clone(), n_heads)
        out[..., head, :] = 0
        return out.flatten(-2)
    return edit


def test_zeroing_a_head_moves_attn_out_by_its_own_contribution(ckpt):
    arch, d = ckpt
    h = load(d, device="cpu")
    n, layer, head = h.layout.n_heads, 1, 2
    b = h.tokenize(PADDED)
    base = h.read(b, [f"z.{layer}", f"attn_out.{layer}"], "all")
    with h.intervene({f"z.{layer}": _zero_head(head, n)}):
        edited = h.read(b, [f"z.{layer}", f"attn_out.{layer}"], "all")
    zh = split_heads(edited[f"z.{layer}"], n)
    assert zh[..., head, :].abs().max() == 0  # the reader sees the edited input of o_proj
    W, _ = w_o(h.layout.module(Site("z", layer)))
    dh = W.shape[1] // n
    z_head = split_heads(base[f"z.{layer}"], n)[..., head, :]
    expected = -(z_head @ W[:, head * dh:(head + 1) * dh].T)
    torch.testing.assert_close(edited[f"attn_out.{layer}"] - base[f"attn_out.{layer}"], expected, atol=ATOL,
                               rtol=ATOL)


@pytest.mark.parametrize("backend", ["hf", "transformer_lens", "nnsight"])
def test_z_edit_changes_logits_identity_does_not(ckpt, backend):
    arch, d = ckpt
    h = load(d, backend=backend, device="cpu")
    b = h.tokenize(PADDED)
    real = b.attention_mask.bool()
    before = h.logits(b)
    with h.intervene({"z.0": lambda a: a}):
        torch.testing.assert_close(h.logits(b), before, atol=0, rtol=0)
    with h.intervene({"z.0": lambda a: None}):
        torch.testing.assert_close(h.logits(b), before, atol=0, rtol=0)
    with h.intervene({"z.0": _zero_head(1, h.layout.n_heads)}):
        zeroed = h.logits(b)
    assert (zeroed[real] - before[real]).abs().max() > 1e-4
    torch.testing.assert_close(h.logits(b), before, atol=0, rtol=0)  # restored
    with pytest.raises(SiteError, match="must return a tensor of shape"):
        with h.intervene({"z.0": lambda a: split_heads(a, h.layout.n_heads)}):  # 4-D is not the site's shape
            h.logits(b)


# --- vocabulary and errors ----------------------------------------------------------------------------------------
def test_z_parses_and_sorts_between_resid_pre_and_attn_out():
    assert Site.parse("z.2") == Site("z", 2) and str(Site("z", 0)) == "z.0"
    got = [str(s) for s in parse_sites(["attn_out.1", "z.1", "resid_pre.1", "z.0", "resid_post.0"], n_layers=2)]
    assert got == ["z.0", "resid_post.0", "resid_pre.1", "z.1", "attn_out.1"]
    assert [str(s) for s in parse_sites("z.*", n_layers=3)] == ["z.0", "z.1", "z.2"]
    assert Layout.is_input(Site("z", 0)) and not Layout.is_input(Site("attn_out", 0))


def test_bad_z_sites_raise_helpful_errors(tok):
    from mixprobe.organisms.configs import tiny_model

    with pytest.raises(SiteError, match=r"needs a layer number, e.g. 'z.0'"):
        Site.parse("z")
    with pytest.raises(SiteError, match="needs an integer layer"):
        Site("z")
    with pytest.raises(SiteError, match=r"out of range: the model has 2 layers \(0..1\)"):
        parse_sites("z.2", n_layers=2)
    with pytest.raises(SiteError, match="z.L"):  # the vocabulary hint lists the new site
        Site.parse("hook_z.0")
    h = ModelHandle(tiny_model("llama", vocab_size=len(tok), seed=0), tok)
    b = h.tokenize(PADDED)
    with pytest.raises(SiteError, match="out of range"):
        h.read(b, "z.5")
    with pytest.raises(SiteError, match="out of range"):
        with h.intervene({"z.-1": lambda a: a}):
            pass
    with pytest.raises(SiteError, match="cannot split a last dimension of 10 into 4 heads"):
        split_heads(torch.zeros(2, 10), 4)


def test_attention_without_known_output_projection_names_the_architecture(tok):
    from mixprobe.organisms.configs import tiny_model

    m = tiny_model("llama", vocab_size=len(tok), seed=0)
    for block in m.model.layers:  # an attention whose output projection has an unknown name
        block.self_attn.proj_out = block.self_attn.o_proj
        del block.self_attn.o_proj
    lay = Layout.of(m)
    assert lay.path(Site("attn_out", 0)) == "model.layers.0.self_attn"  # other sites are unaffected
    with pytest.raises(SiteError, match=r"LlamaForCausalLM \(model_type 'llama'\) has no known output projection"):
        lay.path(Site("z", 0))


# --- every architecture of the layout table -------------------------------------------------------------------
V, D = 24, 32
_small = dict(vocab_size=V, hidden_size=D, num_hidden_layers=2, intermediate_size=64, num_attention_heads=4,
              num_key_value_heads=4, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
CONFIGS = {
    "mistral": (lambda: T.MistralConfig(**{**_small, "num_key_value_heads": 2}, head_dim=8), "self_attn.o_proj"),
    # n_heads * head_dim (64) != d_model (32): z is as wide as o_proj's input, not d_model
    "gemma": (lambda: T.GemmaConfig(**{**_small, "num_key_value_heads": 2}, head_dim=16), "self_attn.o_proj"),
    "gemma2": (lambda: T.Gemma2Config(**{**_small, "num_key_value_heads": 2}, head_dim=8), "self_attn.o_proj"),
    "gemma3": (lambda: T.Gemma3TextConfig(**{**_small, "num_key_value_heads": 2}, head_dim=8), "self_attn.o_proj"),
    "phi": (lambda: T.PhiConfig(**_small), "self_attn.dense"),
    "phi3": (lambda: T.Phi3Config(**_small), "self_attn.o_proj"),
    "opt": (lambda: T.OPTConfig(vocab_size=V, hidden_size=D, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
                                max_position_embeddings=64, word_embed_proj_dim=D, pad_token_id=0, bos_token_id=1,
                                eos_token_id=2), "self_attn.out_proj"),
    "gptj": (lambda: T.GPTJConfig(vocab_size=V, n_embd=D, n_layer=2, n_head=4, n_positions=64, rotary_dim=4,
                                  bos_token_id=1, eos_token_id=2), "attn.out_proj"),
    "gpt_neox": (lambda: T.GPTNeoXConfig(**_small), "attention.dense"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_z_path_and_projection_in_every_layout_architecture(name):
    make, sub = CONFIGS[name]
    torch.manual_seed(0)
    m = T.AutoModelForCausalLM.from_config(make(), attn_implementation="eager").float().eval()
    lay = Layout.of(m)
    assert lay.path(Site("z", 1)) == f"{lay.layers_path}.1.{sub}" and lay.n_heads == 4
    h = ModelHandle(m, tokenizer=object())
    from mixprobe.models.batch import Batch

    ids = torch.tensor([[0, 0, 5, 6, 7, 8], [3, 9, 10, 11, 12, 13]])
    b = Batch(ids, (torch.arange(6) >= torch.tensor([[2], [0]])).long())
    acts = h.read(b, ["z.1", "attn_out.1"], "all")
    W, bias = w_o(lay.module(Site("z", 1)))
    assert acts["z.1"].shape[-1] == W.shape[1] and acts["z.1"].shape[-1] % lay.n_heads == 0
    by_hand = acts["z.1"] @ W.T + (0 if bias is None else bias)
    torch.testing.assert_close(by_hand, acts["attn_out.1"], atol=ATOL, rtol=ATOL)

"""Where the pieces of a decoder-only HF causal LM live: the one layout table of the project.

Problem: hooks, patching replay, parameter groups and readout directions all need the embedding, the decoder
blocks, their attention and MLP sub-modules, the final norm and the unembedding; each architecture family keeps
them under other names. Mechanism: one table of trunks (``TRUNKS``) and one list of sub-module names; a
:class:`Layout` is the first trunk that matches the unwrapped model (:func:`unwrap` strips a
:class:`~mixprobe.models.handle.ModelHandle` and a PEFT wrapper, LoRA layers staying injected):

=========================  ==========  ================  ====================  ============  =========================
trunk                      blocks      embedding         final norm            z.L: input    architectures
=========================  ==========  ================  ====================  ============  =========================
``model``                  ``layers``  ``embed_tokens``  ``norm``              ``o_proj``    Llama, Qwen2, Mistral,
                                                                                             Gemma 1/2/3 (text), Phi-3
``model``                  ``layers``  ``embed_tokens``  ``final_layernorm``   ``dense``     Phi-1/2
``model.language_model``   ``layers``  ``embed_tokens``  ``norm``              ``o_proj``    Gemma 3 (multimodal)
``model.decoder``          ``layers``  ``embed_tokens``  ``final_layer_norm``  ``out_proj``  OPT
``transformer``            ``h``       ``wte``           ``ln_f``              ``c_proj``    GPT-2
``transformer``            ``h``       ``wte``           ``ln_f``              ``out_proj``  GPT-J
``gpt_neox``               ``layers``  ``embed_in``      ``final_layer_norm``  ``dense``     GPT-NeoX, Pythia
=========================  ==========  ================  ====================  ============  =========================

The attention sub-module is the first of ``self_attn``/``attn``/``attention``/``self_attention`` in a block; the
MLP the first of ``mlp``/``feed_forward`` (OPT has none: its ``mlp_out`` sites raise a clear error); the attention
output projection (whose *input* is the ``z.L`` site: every head's output, flattened heads-major) the first of
``o_proj``/``out_proj``/``dense``/``c_proj`` in the attention module (none found: ``z`` sites raise a clear error
naming the architecture). ``n_heads`` comes from the config (``num_attention_heads`` / ``n_head``).

Example:
    >>> from mixprobe.organisms.configs import tiny_model
    >>> from mixprobe.models.sites import Site
    >>> lay = Layout.of(tiny_model("gpt2", vocab_size=16, seed=0))
    >>> lay.path(Site("attn_out", 1)), lay.path(Site("resid_post", 0)), lay.norm_path, lay.n_layers
    ('transformer.h.1.attn', 'transformer.h.0', 'transformer.ln_f', 2)
    >>> lay.path(Site("z", 1)), lay.n_heads, Layout.is_input(Site("z", 1))
    ('transformer.h.1.attn.c_proj', 4, True)

Constraints: decoder-only causal LMs only; an unknown layout raises :class:`~mixprobe.errors.SiteError` naming
what is supported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import torch
from torch import nn

from mixprobe._check import argument_error, checked
from mixprobe.errors import ArgumentError, SiteError
from mixprobe.models.sites import Site

TRUNKS = (("model", "layers", "embed_tokens", "norm"), ("model", "layers", "embed_tokens", "final_layernorm"),
          ("model.language_model", "layers", "embed_tokens", "norm"),
          ("model.decoder", "layers", "embed_tokens", "final_layer_norm"), ("transformer", "h", "wte", "ln_f"),
          ("gpt_neox", "layers", "embed_in", "final_layer_norm"))
ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")
MLP_NAMES = ("mlp", "feed_forward")
O_PROJ_NAMES = ("o_proj", "out_proj", "dense", "c_proj")  # the attention output projection (input = z.L)
INPUT_COMPONENTS = ("resid_pre", "z")  # sites read from (and edited at) their module's input, by a pre-hook
SUPPORTED = "Llama, Qwen2, Mistral, Gemma 1/2/3, Phi, OPT, GPT-2, GPT-J, GPT-NeoX (and PEFT wrappers of them)"


def get_path(obj: Any, path: str) -> Any:     # checked by hand, not @checked: hot (see UNCHECKED in the sweep test)
    """``obj.a.b.3.c`` for ``path="a.b.3.c"`` (digits index a ModuleList); ``None`` when a part is missing."""
    if not isinstance(path, str):
        raise argument_error("get_path", "path", path, "str", "a dotted attribute path such as 'model.layers'")
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part, None)
        if obj is None:
            return None
    return obj


@checked
def unwrap(model_or_handle: Any) -> Any:
    """The HF causal LM behind a handle (``.model``), a PEFT wrapper (``get_base_model()``) or the model itself."""
    model = model_or_handle if isinstance(model_or_handle, nn.Module) else getattr(model_or_handle, "model", None)
    if not isinstance(model, nn.Module):
        raise ArgumentError(f"expected a ModelHandle or a transformers model, got {type(model_or_handle).__name__}")
    base = getattr(model, "get_base_model", None)  # PEFT: the LoRA layers stay injected in the base model
    return base() if callable(base) else model


@checked
def hidden_of(out: Any) -> torch.Tensor:
    """The hidden state of a module output (a tensor in transformers 5 blocks, a tuple for attention)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise SiteError(f"cannot find the hidden state in a module output of type {type(out).__name__}")


@checked
def with_hidden(out: Any, h: torch.Tensor) -> Any:
    """``out`` with its hidden state replaced by ``h`` (same container type)."""
    if isinstance(out, torch.Tensor):
        return h
    return (h, *out[1:]) if isinstance(out, tuple) else [h, *out[1:]]


def _first_module(block: nn.Module, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if isinstance(getattr(block, n, None), nn.Module)), None)


@dataclass
class Layout:
    """Where the site modules of a decoder-only HF causal LM live (paths relative to the unwrapped model)."""

    model: Any  # an HF PreTrainedModel (typed Any: its sub-modules are attributes torch cannot type)
    trunk: str
    layers_path: str
    embed_path: str
    norm_path: str
    attn_name: str
    mlp_name: str | None
    n_layers: int
    o_proj_name: str | None = None  # attribute of the attention module whose input is z.L (None: unknown)

    @classmethod
    def of(cls, model_or_handle: Any) -> Self:
        """The layout of a model, a PEFT wrapper or a handle (see the module table)."""
        model = unwrap(model_or_handle)
        for trunk, layers, embed, norm in TRUNKS:
            t = get_path(model, trunk)
            mods = getattr(t, layers, None) if t is not None else None
            if not (isinstance(mods, nn.ModuleList) and len(mods) and isinstance(getattr(t, embed, None), nn.Module)
                    and isinstance(getattr(t, norm, None), nn.Module)):
                continue
            attn = _first_module(mods[0], ATTN_NAMES)
            if attn is None:
                continue
            return cls(model, trunk, f"{trunk}.{layers}", f"{trunk}.{embed}", f"{trunk}.{norm}", attn,
                       _first_module(mods[0], MLP_NAMES), len(mods),
                       o_proj_name=_first_module(getattr(mods[0], attn), O_PROJ_NAMES))
        raise SiteError(f"cannot find the decoder blocks of {type(model).__name__}; mixprobe supports decoder-only "
                        f"HF causal LMs: {SUPPORTED}")

    @property
    def layers(self) -> nn.ModuleList:
        return get_path(self.model, self.layers_path)

    @property
    def final_norm(self) -> nn.Module:
        return get_path(self.model, self.norm_path)

    @property
    def lm_head(self) -> Any:
        head = self.model.get_output_embeddings()
        if head is None:
            raise SiteError(f"{type(self.model).__name__} has no output embedding (unembedding)")
        return head

    @property
    def softcap(self) -> float | None:
        """Gemma 2/3's final logit soft-capping (``None`` elsewhere)."""
        cfg = getattr(self.model, "config", None)
        cfg = getattr(cfg, "text_config", None) or cfg
        return getattr(cfg, "final_logit_softcapping", None)

    @property
    def d_model(self) -> int:
        return int(self.lm_head.weight.shape[1])

    @property
    def n_heads(self) -> int:
        """Number of attention (query) heads, from the config (``num_attention_heads`` / ``n_head``)."""
        cfg = getattr(self.model, "config", None)
        cfg = getattr(cfg, "text_config", None) or cfg
        for name in ("num_attention_heads", "n_head", "num_heads"):
            n = getattr(cfg, name, None)
            if isinstance(n, int) and n > 0:
                return n
        raise SiteError(f"cannot find the number of attention heads of {type(self.model).__name__} in its config "
                        "(num_attention_heads / n_head)")

    def sub_name(self, component: str) -> str:
        """The block attribute of ``attn_out`` / ``mlp_out`` (an error when the block has no such module)."""
        name = self.attn_name if component == "attn_out" else self.mlp_name
        if name is None:
            raise SiteError(f"the blocks of {type(self.model).__name__} have no single {component[:-4]} module "
                            f"({MLP_NAMES}); read resid_pre / resid_post there")
        return name

    def path(self, site: Site) -> str:
        """The module path (relative to the unwrapped model) whose hook gives ``site``."""
        c = site.component
        if c == "embed":
            return self.embed_path
        if c == "final_norm":
            return self.norm_path
        site.check(self.n_layers)
        block = f"{self.layers_path}.{site.layer}"
        if c == "z":
            if self.o_proj_name is None:
                cfg = getattr(self.model, "config", None)
                raise SiteError(
                    f"the attention of {type(self.model).__name__} (model_type "
                    f"{getattr(cfg, 'model_type', None)!r}) has no known output projection (looked for "
                    f"{'/'.join(O_PROJ_NAMES)} in {self.attn_name}); z sites are not available for this "
                    "architecture: read attn_out instead")
            return f"{block}.{self.attn_name}.{self.o_proj_name}"
        return f"{block}.{self.sub_name(c)}" if c in ("attn_out", "mlp_out") else block

    def module(self, site: Site) -> nn.Module:
        return get_path(self.model, self.path(site))

    def submodule(self, component: str, layer: int) -> nn.Module:
        """The attention or MLP sub-module of block ``layer``."""
        return self.module(Site(component, layer))

    @staticmethod
    def is_input(site: Site) -> bool:
        """True when the site is read from the module's input (a pre-hook) rather than its output: ``resid_pre``
        (the block's ``hidden_states``) and ``z`` (the output projection's input)."""
        return site.component in INPUT_COMPONENTS

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Final norm + unembedding (+ soft-capping) of the residual stream ``h``."""
        return self.unembed(self.final_norm(h))

    def unembed(self, h: torch.Tensor) -> torch.Tensor:
        """Unembedding (+ Gemma 2/3 soft-capping) of a final-norm output ``h``."""
        logits = self.lm_head(h)
        cap = self.softcap
        return torch.tanh(logits / cap) * cap if cap else logits

    def readout_direction(self, toward: int, away: int) -> torch.Tensor:
        """``W_U⁺ (e_toward − e_away)`` (``[d_model]``, solved in float64, float32 on the weights' device): the
        minimum-norm change of the final-norm output that raises logit ``toward`` by 1, lowers ``away`` by 1 and
        leaves every other logit unchanged (exact when ``W_U`` has full row rank, i.e. vocabulary ≤ d_model;
        otherwise the least-squares closest change)."""
        W = self.lm_head.weight.detach().double()
        e = torch.zeros(W.shape[0], dtype=torch.float64, device=W.device)
        e[int(toward)], e[int(away)] = 1.0, -1.0
        return (torch.linalg.pinv(W) @ e).float()

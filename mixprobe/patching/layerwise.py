"""Run an HF decoder layer by layer: capture every layer's inputs once, then restart the forward at any layer.

Problem: a patching sweep over layers re-runs the model once per patched site. Everything *before* the patched
layer is identical to the unpatched target run, so recomputing it is waste; and one patch per forward leaves
the CPU/GPU idle on tiny batches.

Mechanism: one ordinary forward of the target (``model(input_ids, attention_mask, position_ids)``) with a
forward pre-hook on every decoder layer records the exact call that the model made to it: the hidden state
(``resid_pre.L``) and every other argument (the causal + padding mask, the rotary ``position_embeddings`` of
Llama/Qwen2/Gemma, ``position_ids``, …). Those recorded calls are architecture-agnostic: replaying
``layer(h, *args, **kwargs)`` for layers ``L..end``, then the final norm and the unembedding, reproduces the
model's logits from any residual state ``h`` entering layer ``L``. To batch ``N`` patches, every batch-shaped
tensor of the recorded calls (dim 0 == batch size) is indexed with the example of every stacked row
(``rows = [b0..bB-1, b0..bB-1, …]`` for ``N`` patches, or only the rows a patch actually changes).

Example:
    >>> import torch
    >>> from mixprobe.organisms.configs import tiny_model
    >>> m = tiny_model("llama", vocab_size=16, seed=0)
    >>> ids = torch.tensor([[1, 5, 6, 7]]); mask = torch.ones_like(ids)
    >>> arch = Arch.of(m)
    >>> run = arch.capture(ids, mask, None)
    >>> torch.allclose(arch.run_from(1, run.resid_pre[1], run.calls_for(1)), run.logits, atol=1e-5)
    True

Constraints: decoder-only models whose layers live in ``model.layers`` / ``transformer.h`` / ``gpt_neox.layers``
(Llama, Qwen2, Gemma, Mistral, GPT-2, GPT-NeoX, and PEFT wrappers of them); transformers 5 layers may return a
tensor or a tuple (both handled); no KV cache (``use_cache=False``). The final logit soft-capping of Gemma 2/3
is applied when the config asks for it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mixprobe.errors import SiteError

COMPONENTS = ("resid_pre", "attn_out", "mlp_out", "resid_post")
_LAYER_PATHS = (("model", "layers", "norm"), ("transformer", "h", "ln_f"), ("gpt_neox", "layers", "final_layer_norm"),
                ("model.decoder", "layers", "final_layer_norm"))
_ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")
_MLP_NAMES = ("mlp", "feed_forward")


def _getattr_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def unwrap_model(model_or_handle: Any) -> nn.Module:
    """The HF causal LM behind a handle (``.model``), a PEFT wrapper (``get_base_model()``) or the model itself."""
    model = getattr(model_or_handle, "model", None) if not isinstance(model_or_handle, nn.Module) else model_or_handle
    if model is None:
        raise TypeError(f"expected a ModelHandle or a transformers model, got {type(model_or_handle).__name__}")
    base = getattr(model, "get_base_model", None)  # PEFT wrappers; the LoRA layers stay injected in the base
    if callable(base):
        model = base()
    return model


def hidden_of(out: Any) -> torch.Tensor:
    """The hidden state of a layer / sub-module output (a tensor in transformers 5, a tuple in some modules)."""
    return out[0] if isinstance(out, tuple) else out


def _with_hidden(out: Any, h: torch.Tensor) -> Any:
    return (h, *out[1:]) if isinstance(out, tuple) else h


def take_rows(obj: Any, batch: int, rows: torch.Tensor) -> Any:
    """Index every tensor whose dim 0 equals ``batch`` with ``rows`` (recursing into tuples/lists/dicts).

    ``rows = arange(B).repeat(N)`` tiles a batch ``N`` times; any other index vector stacks chosen examples.
    """
    if isinstance(obj, torch.Tensor):
        if obj.ndim >= 1 and obj.shape[0] == batch:
            return obj.index_select(0, rows.to(obj.device))
        return obj
    if isinstance(obj, tuple):
        return tuple(take_rows(o, batch, rows) for o in obj)
    if isinstance(obj, list):
        return [take_rows(o, batch, rows) for o in obj]
    if isinstance(obj, dict):
        return {k: take_rows(v, batch, rows) for k, v in obj.items()}
    return obj


@dataclass
class LayerCall:
    """The non-hidden arguments the model passed to one decoder layer."""

    args: tuple
    kwargs: dict


@dataclass
class TargetRun:
    """What one captured forward leaves behind: logits, per-site activations and every layer's call."""

    logits: torch.Tensor
    batch_size: int
    calls: list[LayerCall]
    resid_pre: list[torch.Tensor]
    acts: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)

    def calls_for(self, start: int, rows: torch.Tensor | None = None) -> list[LayerCall]:
        """Layer calls ``start..end`` for a stack of the examples ``rows`` (default: the batch itself)."""
        if rows is None:
            return self.calls[start:]
        B = self.batch_size
        return [LayerCall(take_rows(c.args, B, rows), take_rows(c.kwargs, B, rows)) for c in self.calls[start:]]

    def residual_in(self, layer: int) -> torch.Tensor:
        """The residual stream entering ``layer`` (``layer == n_layers`` is the input of the final norm)."""
        return self.resid_pre[layer] if layer < len(self.calls) else self.acts[("resid_post", layer - 1)]


@dataclass
class Arch:
    """Where the pieces of a decoder-only HF model are, and how to run them piecewise."""

    model: nn.Module
    layers: nn.ModuleList
    final_norm: nn.Module | None
    lm_head: nn.Module
    softcap: float | None

    @classmethod
    def of(cls, model_or_handle: Any) -> "Arch":
        """Locate layers, final norm and unembedding of ``model_or_handle`` (see the module constraints)."""
        model = unwrap_model(model_or_handle)
        for body, layers_name, norm_name in _LAYER_PATHS:
            trunk = _getattr_path(model, body)
            layers = getattr(trunk, layers_name, None) if trunk is not None else None
            if isinstance(layers, nn.ModuleList):
                head = model.get_output_embeddings()
                if head is None:
                    break
                cap = getattr(model.config, "final_logit_softcapping", None)
                return cls(model, layers, getattr(trunk, norm_name, None), head, cap)
        raise SiteError(
            f"cannot find the decoder layers of {type(model).__name__}; patching supports decoder-only models "
            "with model.layers / transformer.h / gpt_neox.layers (Llama, Qwen2, Gemma, GPT-2, …)"
        )

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def d_model(self) -> int:
        return int(self.model.config.hidden_size)

    def submodule(self, component: str, layer: int) -> nn.Module:
        """The attention or MLP sub-module of ``layer`` (``component`` is ``attn_out`` or ``mlp_out``)."""
        names = _ATTN_NAMES if component == "attn_out" else _MLP_NAMES
        block = self.layers[layer]
        for name in names:
            mod = getattr(block, name, None)
            if isinstance(mod, nn.Module):
                return mod
        raise SiteError(f"layer {layer} of {type(self.model).__name__} has no {component} sub-module ({names})")

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Final norm + unembedding (+ soft-capping) of the residual stream ``h``."""
        if self.final_norm is not None:
            h = self.final_norm(h)
        logits = self.lm_head(h)
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    # --- capture ---------------------------------------------------------------------------------------------
    def capture(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        sites: set[tuple[str, int]] | None = None,
        *,
        calls: bool = True,
        grad: bool = False,
    ) -> TargetRun:
        """One forward recording layer inputs (``resid_pre``), layer calls and the activations of ``sites``.

        With ``grad=True`` the forward builds a graph (the embeddings are made to require grad if the weights
        do not) and the recorded activations are the graph's own tensors, so ``torch.autograd.grad`` can be taken
        with respect to them.
        """
        sites = set(sites or ())
        n = self.n_layers
        rec_calls: list[LayerCall | None] = [None] * n
        resid_pre: list[torch.Tensor | None] = [None] * n
        acts: dict[tuple[str, int], torch.Tensor] = {}
        handles = []

        def pre_hook(i: int) -> Callable:
            def fn(mod: nn.Module, args: tuple, kwargs: dict):
                if args:
                    h, rest = args[0], args[1:]
                    kw = kwargs
                else:
                    h = kwargs["hidden_states"]
                    rest, kw = (), {k: v for k, v in kwargs.items() if k != "hidden_states"}
                if grad and i == 0 and not h.requires_grad:
                    h = h.detach().requires_grad_(True)
                    resid_pre[i] = h
                    if calls:
                        rec_calls[i] = LayerCall(rest, dict(kw))
                    return ((h, *rest), kw) if args else ((), {**kw, "hidden_states": h})
                resid_pre[i] = h
                if calls:
                    rec_calls[i] = LayerCall(rest, dict(kw))
                return None
            return fn

        def out_hook(key: tuple[str, int]) -> Callable:
            def fn(mod: nn.Module, args: tuple, out: Any) -> None:
                acts[key] = hidden_of(out)
            return fn

        try:
            for i, layer in enumerate(self.layers):
                handles.append(layer.register_forward_pre_hook(pre_hook(i), with_kwargs=True))
            for comp, layer in sites:
                if comp in ("attn_out", "mlp_out"):
                    handles.append(self.submodule(comp, layer).register_forward_hook(out_hook((comp, layer))))
                elif comp == "resid_post":
                    handles.append(self.layers[layer].register_forward_hook(out_hook((comp, layer))))
            # the last layer's output is the final norm's input: always keep it (resid_post of the last layer)
            handles.append(self.layers[n - 1].register_forward_hook(out_hook(("resid_post", n - 1))))
            ctx = torch.enable_grad() if grad else torch.no_grad()
            with ctx:
                out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                 use_cache=False)
        finally:
            for h in handles:
                h.remove()
        for i in range(n):
            if ("resid_pre", i) in sites:
                acts[("resid_pre", i)] = resid_pre[i]
        # resid_post.L is resid_pre.(L+1): fill it from the layer input when no hook recorded it
        for comp, layer in sites:
            if comp == "resid_post" and (comp, layer) not in acts:
                acts[(comp, layer)] = resid_pre[layer + 1]
        return TargetRun(out.logits, int(input_ids.shape[0]), rec_calls, resid_pre, acts)  # type: ignore[arg-type]

    # --- replay ----------------------------------------------------------------------------------------------
    def run_from(self, start: int, h: torch.Tensor, calls: list[LayerCall]) -> torch.Tensor:
        """Logits of the model when ``h`` enters layer ``start`` (``calls`` from :meth:`TargetRun.calls_for`)."""
        for layer, call in zip(self.layers[start:], calls):
            h = hidden_of(layer(h, *call.args, **call.kwargs))
        return self.head(h)

    @contextmanager
    def edit_output(self, component: str, layer: int, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
        """Within the block, replace the ``component`` output of ``layer`` (attn/mlp) by ``fn(output)``."""
        def hook(mod: nn.Module, args: tuple, out: Any) -> Any:
            return _with_hidden(out, fn(hidden_of(out)))

        handle = self.submodule(component, layer).register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

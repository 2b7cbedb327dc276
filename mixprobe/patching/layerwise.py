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

Constraints: the architectures of :mod:`mixprobe.models.layout` (where the layers are found); transformers 5
layers may return a tensor or a tuple (both handled); no KV cache (``use_cache=False``). The final logit
soft-capping of Gemma 2/3 is applied when the config asks for it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mixprobe._check import checked
from mixprobe.models.layout import Layout, hidden_of, with_hidden

COMPONENTS = ("resid_pre", "attn_out", "mlp_out", "resid_post")


@checked
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


class Arch(Layout):
    """A :class:`~mixprobe.models.layout.Layout` that can also record a forward and replay it from any layer."""

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
        rec_calls: list[Any] = [None] * n
        resid_pre: list[Any] = [None] * n  # every entry is filled by the forward
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
            for i, block in enumerate(self.layers):
                handles.append(block.register_forward_pre_hook(pre_hook(i), with_kwargs=True))
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
        return TargetRun(out.logits, int(input_ids.shape[0]), rec_calls, resid_pre, acts)

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
            return with_hidden(out, fn(hidden_of(out)))

        handle = self.submodule(component, layer).register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

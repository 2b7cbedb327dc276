"""TransformerLens 4.x backend: wrap an HF model in a ``TransformerBridge`` and read sites by TL hook names.

Problem: users who know TransformerLens want its hook names and ``run_with_cache``; mixprobe must give the same
numbers whichever way a site is read. Mechanism: :func:`make_bridge` boots a bridge around an already loaded HF
model (``TransformerBridge.boot_transformers(name, hf_model=..., tokenizer=...)``, no hub access; the bridge
replaces the model's modules in place with its own components, which still run the original weights, so plain
forward hooks on the HF module tree keep working). :data:`TL_NAMES` maps each site to its TL hook name and
:func:`tl_read` reads with ``run_with_cache(names_filter=[...])``, passing the attention mask and the
mask-derived position ids so left padding is handled exactly as in the other backends. ``z.L`` is
``blocks.L.attn.hook_z`` (in the 4.x bridge an alias of ``blocks.L.attn.o.hook_in``, the input of the output
projection), which the bridge reshapes to ``[batch, seq, n_heads, d_head]``; :func:`tl_read` flattens it back to
mixprobe's heads-major ``[batch, seq, n_heads * d_head]``.

Example:
    >>> from mixprobe.models.sites import Site
    >>> tl_hook_name(Site.parse("resid_pre.2")), tl_hook_name(Site.parse("final_norm"))
    ('blocks.2.hook_resid_pre', 'ln_final.hook_out')
    >>> tl_hook_name(Site.parse("z.1"))
    'blocks.1.attn.hook_z'

Constraints: the bridge has no PEFT support, so adapters are merged before booting (see
:mod:`mixprobe.models.loading`); weights are not processed (no LayerNorm folding), so numbers match HF exactly.
"""
from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from typing import Any

import torch

from mixprobe._check import checked
from mixprobe.models.positions import gather_positions
from mixprobe.models.sites import Site

TL_NAMES = {
    "embed": "hook_embed",
    "resid_pre": "blocks.{L}.hook_resid_pre",
    "z": "blocks.{L}.attn.hook_z",  # the bridge's alias of blocks.L.attn.o.hook_in, head-split [b, s, h, d_head]
    "attn_out": "blocks.{L}.hook_attn_out",
    "mlp_out": "blocks.{L}.hook_mlp_out",
    "resid_post": "blocks.{L}.hook_resid_post",
    "final_norm": "ln_final.hook_out",
}


@checked
def tl_hook_name(site: Site) -> str:
    """The TransformerLens 4.x bridge hook name of ``site``."""
    return TL_NAMES[site.component].format(L=site.layer)


@checked
def make_bridge(model: torch.nn.Module, tokenizer: Any, name: str = "mixprobe-local") -> Any:
    """Boot a ``TransformerBridge`` around ``model`` in place (no download; the tokenizer is copied)."""
    from transformer_lens.model_bridge import TransformerBridge

    tok = copy.deepcopy(tokenizer)
    # the bridge re-loads a tokenizer by name unless it is marked as already adding BOS itself
    tok.init_kwargs["name_or_path"] = name
    tok.init_kwargs.setdefault("add_bos_token", True)
    return TransformerBridge.boot_transformers(name, hf_model=model, tokenizer=tok, device=str(model.device))


@checked
def is_bridge(obj: Any) -> bool:
    """True for a TransformerBridge (without importing transformer_lens when it is not loaded yet)."""
    if "transformer_lens" not in sys.modules:
        return False
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError:  # pragma: no cover - transformer-lens is a dependency
        return False
    return isinstance(obj, TransformerBridge)


@checked
def tl_read(bridge: Any, batch: Any, sites: Sequence[Site], index: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Read ``sites`` through ``bridge.run_with_cache(names_filter=...)`` and keep the ``index`` positions."""
    names = {str(s): tl_hook_name(s) for s in sites}
    heads = {str(s) for s in sites if s.component == "z"}
    with torch.no_grad():
        _, cache = bridge.run_with_cache(
            batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
            names_filter=list(names.values()),
        )
    return {k: gather_positions(_flat_heads(cache[v]) if k in heads else cache[v], index) for k, v in names.items()}


def _flat_heads(t: torch.Tensor) -> torch.Tensor:
    """``hook_z`` as the bridge gives it, ``[batch, seq, n_heads, d_head]``, → ``[batch, seq, n_heads * d_head]``."""
    return t.flatten(-2) if t.ndim == 4 else t

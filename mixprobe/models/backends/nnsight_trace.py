"""nnsight 0.8 backend: wrap an HF model in an nnsight ``TransformersModel`` and read sites inside a trace.

Problem: nnsight users address activations by module path (``model.layers[3].output``) inside a ``trace``
block; mixprobe must give the same numbers as its own hooks. Mechanism: :func:`make_nnsight` wraps an already
loaded HF model (no download; a PEFT model's LoRA layers stay injected and unmerged). :func:`nnsight_read`
opens one trace with ``input_ids``, ``attention_mask`` and mask-derived ``position_ids``, and ``.save()``\\ s each
site's module output (or, for ``resid_pre.L``, the block's input, and for ``z.L``, the input of the attention's
output projection, e.g. ``model.layers[L].self_attn.o_proj.input``) in execution order, as nnsight requires.
The module paths are those of :class:`~mixprobe.models.backends.hooks.Layout`.

Example:
    >>> from mixprobe.organisms.configs import tiny_model
    >>> from mixprobe.models.layout import Layout
    >>> from mixprobe.models.sites import Site
    >>> Layout.of(tiny_model("llama", vocab_size=16)).path(Site("mlp_out", 0))
    'model.layers.0.mlp'
    >>> Layout.of(tiny_model("llama", vocab_size=16)).path(Site("z", 0))
    'model.layers.0.self_attn.o_proj'

Constraints: sites must be read in execution order inside one trace (nnsight raises ``OutOfOrderError``
otherwise); :func:`nnsight_read` sorts them.
"""
from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from typing import Any

import torch

from mixprobe._check import checked
from mixprobe.models.layout import Layout, get_path, hidden_of
from mixprobe.models.positions import gather_positions
from mixprobe.models.sites import Site


@checked
def make_nnsight(model: torch.nn.Module, tokenizer: Any) -> Any:
    """Wrap ``model`` (kept in place, not copied) in an nnsight ``TransformersModel``."""
    from nnsight.modeling.transformers import TransformersModel

    return TransformersModel(model, tokenizer=copy.deepcopy(tokenizer), task="text-generation")


@checked
def is_nnsight(obj: Any) -> bool:
    """True for an nnsight model (without importing nnsight when it is not loaded yet)."""
    if "nnsight" not in sys.modules:
        return False
    try:
        from nnsight.modeling.transformers import TransformersModel
    except ImportError:  # pragma: no cover - nnsight is a dependency
        return False
    return isinstance(obj, TransformersModel)


@checked
def nnsight_read(lm: Any, layout: Layout, batch: Any, sites: Sequence[Site],
                 index: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Read ``sites`` with one nnsight trace (``.save()`` per site) and keep the ``index`` positions."""
    ordered = sorted(sites, key=lambda s: s.order_key(layout.n_layers))
    envoys = [(str(s), get_path(lm, layout.path(s)), Layout.is_input(s)) for s in ordered]
    saved: dict[str, Any] = {}
    inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
              "position_ids": batch.position_ids}
    with torch.no_grad():
        with lm.trace(inputs):
            for name, env, is_in in envoys:
                saved[name] = (env.input if is_in else env.output).save()
    return {k: gather_positions(hidden_of(v), index) for k, v in saved.items()}

"""Apply a steering vector to a model: ``act ← act + α·v`` at chosen sites and positions, always undone.

Problem: steering experiments add ``α·v`` to an activation while the model runs — for a logits call, a
teacher-forced evaluation or ``generate`` with a KV cache — and must leave the model exactly as it was
afterwards (a forgotten hook silently corrupts every later measurement). Mechanism: :func:`steer` is a context
manager built on :meth:`ModelHandle.intervene <mixprobe.models.handle.ModelHandle.intervene>` (hooks removed on
exit, also on exceptions). It checks that every direction's width equals ``handle.d_model``
(:class:`~mixprobe.errors.ShapeError` naming both widths), then adds ``alpha · direction`` in every forward:

=====================  ==========================================================================================
``positions``          where the vector is added
=====================  ==========================================================================================
``"all"``              every position of every forward (cached decoding steps included)
``"last_prompt"``      the last prompt token only. Without ``batch``: the last column of multi-token forwards
                       (right for left-padded prompt batches and ``generate``'s prefill); one-token decoding
                       steps are left alone. With ``batch``: resolved from its mask and prompt lengths.
``"prompt_onwards"``   the last prompt token and every later token (decoding steps included)
int / list of ints     indices relative to each row's first real token (negative: back from the last prompt
                       token) — needs ``batch``
bool mask ``[B, T]``   exactly those tokens (the forward must have that shape)
=====================  ==========================================================================================

With ``batch``, a multi-token forward whose shape differs from the batch raises
:class:`~mixprobe.errors.PositionError` (never a silent no-op); one-token decoding steps are steered only for
``"all"`` and ``"prompt_onwards"``. The yielded :class:`SteeringStats` counts forwards seen and steered.

Example:
    >>> import torch
    >>> from mixprobe.models.handle import ModelHandle
    >>> from mixprobe.organisms.configs import tiny_model
    >>> from mixprobe.organisms.tokenizer import build_word_tokenizer
    >>> from mixprobe.steering.vectors import SteeringVector
    >>> tok = build_word_tokenizer(["<A>", "1", "2", "+", "="])
    >>> h = ModelHandle(tiny_model("llama", vocab_size=len(tok), seed=0), tok)
    >>> b = h.tokenize(["<A> 1 + 2 =", "<A> 2 ="])
    >>> before = h.logits(b)
    >>> v = SteeringVector.from_tensors({"resid_post.0": torch.randn(h.d_model)})
    >>> with steer(h, v, alpha=4.0, positions="last_prompt") as stats:
    ...     changed = not torch.equal(h.logits(b), before)
    >>> changed, stats.n_applied, torch.equal(h.logits(b), before)
    (True, 1, True)

Constraints: additive steering only (for projections or patches use :mod:`mixprobe.patching`); the vector is
cast to the activation's dtype and device.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from mixprobe._check import checked
from mixprobe.errors import PositionError, ShapeError, SiteError
from mixprobe.models.positions import position_mask
from mixprobe.steering.vectors import SteeringVector

log = logging.getLogger(__name__)
NAMED = ("all", "last_prompt", "prompt_onwards")


@dataclass
class SteeringStats:
    """How many forwards each steered site saw, and in how many the vector was actually added."""

    n_forwards: int = 0
    n_applied: int = 0


@checked
def check_width(handle: Any, vector: SteeringVector, sites: Sequence[str] | None = None) -> list[str]:
    """The sites to steer, after checking each direction's width against ``handle.d_model``."""
    chosen = list(sites) if sites is not None else vector.sites
    missing = [s for s in chosen if s not in vector.directions]
    if missing:
        raise SiteError(f"the steering vector has no direction for sites {missing}; it has {vector.sites}")
    d_model = int(handle.d_model)
    for s in chosen:
        width = int(vector[s].numel())
        if width != d_model:
            raise ShapeError(
                f"steering vector width {width} at site {s!r} does not match the model's d_model {d_model}; "
                "build the vector from activations of this architecture"
            )
    return chosen


def _batch_mask(batch: Any, positions: Any) -> torch.Tensor:
    return position_mask(positions, batch.attention_mask, getattr(batch, "prompt_lengths", None)).cpu()


def _edit(delta: torch.Tensor, positions: Any, mask: torch.Tensor | None, stats: SteeringStats):
    cache: dict[tuple, torch.Tensor] = {}

    def cast(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        key = (id(t), like.device, like.dtype)
        if key not in cache:
            cache[key] = t.to(device=like.device, dtype=like.dtype)
        return cache[key]

    def edit(act: torch.Tensor) -> torch.Tensor | None:
        stats.n_forwards += 1
        B, T, _ = act.shape
        v = cast(delta, act)
        if isinstance(positions, str) and positions == "all":
            stats.n_applied += 1
            return act + v
        if mask is not None:
            if (B, T) == tuple(mask.shape):
                stats.n_applied += 1
                return act + cast(mask, act).unsqueeze(-1) * v
            if T == 1:
                if positions == "prompt_onwards":
                    stats.n_applied += 1
                    return act + v
                return None
            raise PositionError(
                f"steering positions were resolved for a batch of shape {list(mask.shape)} but a forward ran with "
                f"{[B, T]}; pass the batch you run (or batch=None with a named position)"
            )
        if T == 1:  # a cached decoding step
            if positions == "prompt_onwards":
                stats.n_applied += 1
                return act + v
            return None
        out = act.clone()
        out[:, -1] = out[:, -1] + v
        stats.n_applied += 1
        return out

    return edit


@checked
@contextmanager
def steer(
    handle: Any,
    vector: SteeringVector,
    alpha: float = 1.0,
    *,
    positions: str | int | Sequence[int] | torch.Tensor = "all",
    batch: Any = None,
    sites: Sequence[str] | None = None,
) -> Iterator[SteeringStats]:
    """Add ``alpha · vector[site]`` at ``sites`` (default: all of the vector's) during the block (see above)."""
    chosen = check_width(handle, vector, sites)
    named = isinstance(positions, str)
    if named and positions not in NAMED:
        raise PositionError(f"unknown steering position {positions!r}; use one of {NAMED}, indices or a mask")
    if not named and batch is None and not isinstance(positions, torch.Tensor):
        raise PositionError("index positions need the batch they refer to; pass batch=handle.tokenize(...)")
    mask = None
    if batch is not None and not (named and positions == "all"):
        mask = _batch_mask(batch, positions)
    elif isinstance(positions, torch.Tensor):
        if positions.ndim != 2:
            raise PositionError("without a batch, a position mask must be [batch, seq]")
        mask = positions.bool().cpu()
    stats = SteeringStats()
    edits = {s: _edit(float(alpha) * vector[s], positions, mask, stats) for s in chosen}
    with handle.intervene(edits):
        yield stats
    if stats.n_forwards and not stats.n_applied:
        log.warning("steering at %s with positions=%r ran %d forwards and added the vector in none of them",
                    chosen, positions, stats.n_forwards)

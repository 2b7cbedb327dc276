"""Token positions, resolved from the attention mask so that left padding is always correct.

Problem: in a left-padded batch "the last prompt token" sits at a different absolute index in every row, and the
first completion token (the mode token ``m1``/``m2`` of the tag-mixture organism) comes right after it. Reading
``acts[:, -1]`` is only right when no completion follows and no row is right-padded.

Mechanism: per row, ``first`` = index of the first real token (attention mask 1), ``n_real`` = its number of
real tokens, ``prompt_len`` = ``prompt_lengths`` when the batch holds prompts + completions, else ``n_real``.
A position spec becomes an index tensor ``[batch, n_pos]`` (absolute indices into the padded sequence):

- ``"last_prompt"`` → ``first + prompt_len − 1``; ``"mode_token"`` → ``first + prompt_len`` (first completion
  token; an error when a row has no completion);
- ``"all"`` → every index ``0..T−1`` (padding included; use the mask to drop pads);
- an ``int`` ``i ≥ 0`` → ``first + i`` (relative to the first real token); ``i < 0`` counts back from the last
  prompt token (``-1`` is ``last_prompt``);
- a list mixing the above (except ``"all"``) → one column each, in order;
- a boolean mask ``[batch, T]`` (or ``[T]``) selecting the same number of tokens in every row.

Example:
    >>> import torch
    >>> mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    >>> resolve_positions("last_prompt", mask).tolist()
    [[3], [3]]
    >>> resolve_positions("mode_token", mask, prompt_lengths=torch.tensor([2, 3])).tolist()
    [[3], [3]]
    >>> resolve_positions([0, -1], mask).tolist()
    [[1, 3], [0, 3]]
    >>> position_ids_from_mask(mask).tolist()
    [[0, 0, 1, 2], [0, 1, 2, 3]]

Constraints: a position outside a row's real tokens raises :class:`~mixprobe.errors.PositionError` (never a
silent read of padding).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch

from mixprobe.errors import PositionError

PositionSpec = Union[str, int, Sequence[Union[str, int]], torch.Tensor]
NAMED = ("last_prompt", "mode_token", "all")


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Absolute position ids for a left-padded batch: ``cumsum(mask) − 1``, clamped at 0 on the pads."""
    mask = attention_mask.long()
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _geometry(attention_mask: torch.Tensor, prompt_lengths: torch.Tensor | Sequence[int] | None):
    mask = attention_mask.bool()
    n_real = mask.sum(1)
    first = mask.float().argmax(1)
    if prompt_lengths is None:
        plen = n_real
    else:
        plen = torch.as_tensor(prompt_lengths, device=mask.device).long().reshape(-1)
        if plen.shape[0] != mask.shape[0]:
            raise PositionError(f"prompt_lengths has {plen.shape[0]} rows for a batch of {mask.shape[0]}")
    return mask, first, n_real, plen


def describe(spec: PositionSpec) -> object:
    """A JSON-able description of a position spec (what a store manifest records)."""
    if isinstance(spec, torch.Tensor):
        return {"mask_shape": list(spec.shape), "n_selected": int(spec.bool().sum())}
    if isinstance(spec, (str, int)):
        return spec
    return [describe(s) for s in spec]


def resolve_positions(
    spec: PositionSpec,
    attention_mask: torch.Tensor,
    prompt_lengths: torch.Tensor | Sequence[int] | None = None,
) -> torch.Tensor:
    """Absolute indices ``[batch, n_pos]`` (long) of ``spec`` in a left-padded batch (see the module docstring)."""
    mask, first, n_real, plen = _geometry(attention_mask, prompt_lengths)
    B, T = mask.shape
    if isinstance(spec, torch.Tensor):
        sel = spec.bool().to(mask.device)
        if sel.ndim == 1:
            sel = sel.unsqueeze(0).expand(B, -1)
        if tuple(sel.shape) != (B, T):
            raise PositionError(f"a position mask must have shape [batch, seq] = {[B, T]}, got {list(spec.shape)}")
        counts = sel.sum(1)
        if int(counts.min()) != int(counts.max()) or int(counts.min()) == 0:
            raise PositionError(
                f"a position mask must select the same (non-zero) number of tokens in every row, got {counts.tolist()}"
            )
        if bool((sel & ~mask).any()):
            raise PositionError("the position mask selects padding tokens; select only tokens with attention mask 1")
        idx = torch.arange(T, device=mask.device).expand(B, T)
        return idx[sel].reshape(B, int(counts[0]))
    if isinstance(spec, str) and spec == "all":
        return torch.arange(T, device=mask.device).expand(B, T).clone()
    items = [spec] if isinstance(spec, (str, int)) else list(spec)
    if not items:
        raise PositionError("no positions requested; use 'last_prompt', 'mode_token', 'all', indices or a mask")
    cols = []
    for item in items:
        if isinstance(item, str):
            if item == "last_prompt":
                idx = first + plen - 1
            elif item == "mode_token":
                if bool((plen >= n_real).any()):
                    raise PositionError(
                        "position 'mode_token' needs a completion after the prompt; tokenize prompts with "
                        "completions (e.g. the forced mode token) or use 'last_prompt'"
                    )
                idx = first + plen
            elif item == "all":
                raise PositionError("'all' cannot be combined with other positions; request it alone")
            else:
                raise PositionError(f"unknown position {item!r}; use one of {NAMED}, an int, a list or a mask")
        elif isinstance(item, int) and not isinstance(item, bool):
            idx = first + item if item >= 0 else first + plen + item
            bad = (idx < first) | (idx >= first + n_real)
            if bool(bad.any()):
                row = int(bad.nonzero()[0, 0])
                raise PositionError(
                    f"position {item} is outside row {row}'s {int(n_real[row])} real tokens (indices count from the "
                    "first real token; negative ones back from the last prompt token)"
                )
        else:
            raise PositionError(f"a position is a name, an int or a bool mask, got {type(item).__name__}")
        cols.append(idx)
    return torch.stack(cols, 1).long()


def gather_positions(acts: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """``acts[b, index[b, p]]`` → ``[batch, n_pos, d]`` (``acts`` is ``[batch, seq, d]``; ``None`` keeps all)."""
    if index is None:
        return acts
    idx = index.to(acts.device).unsqueeze(-1).expand(-1, -1, acts.shape[-1])
    return acts.gather(1, idx)

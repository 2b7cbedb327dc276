"""Token positions, resolved from the attention mask so that left padding is always correct: the one resolver.

Problem: in a left-padded batch "the last prompt token" sits at a different absolute index in every row, and the
first completion token comes right after it. Reading ``acts[:, -1]`` is only right when no completion follows.
And a list of positions means two different things: *one column each* (capture reads every listed position
separately) or *their union* (patching and steering edit all of them at once). Both meanings live here, under
two names: :func:`resolve_positions` (each) and :func:`position_mask` (union).

Mechanism: per row, ``first`` = index of the first real token (attention mask 1), ``n_real`` = its number of
real tokens, ``prompt_len`` = ``prompt_lengths`` when the batch holds prompts + completions, else ``n_real``.
One position is:

- ``"last_prompt"`` → ``first + prompt_len − 1``; ``"mode_token"`` → ``first + prompt_len`` (first completion
  token; an error when a row has no completion);
- an ``int`` ``i ≥ 0`` → ``first + i`` (relative to the first real token); ``i < 0`` counts back from the last
  prompt token (``-1`` is ``last_prompt``).

:func:`resolve_positions` gives absolute indices ``[batch, n_pos]``: one column per listed position, ``"all"``
for every index ``0..T−1`` (padding included; the mask drops pads), or a boolean mask selecting the same number of
tokens in every row. :func:`position_mask` gives a boolean ``[batch, seq]`` mask: the union of the listed
positions, ``"all"`` = every real token, ``"prompt_onwards"`` = the last prompt token and everything after it, or
a boolean mask as is.

Example:
    >>> import torch
    >>> mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    >>> resolve_positions("last_prompt", mask).tolist()
    [[3], [3]]
    >>> resolve_positions("mode_token", mask, prompt_lengths=torch.tensor([2, 3])).tolist()
    [[3], [3]]
    >>> resolve_positions([0, -1], mask).tolist()                   # each: one column per position
    [[1, 3], [0, 3]]
    >>> position_mask([0, -1], mask).int().tolist()                  # union: one mask
    [[0, 1, 0, 1], [1, 0, 0, 1]]
    >>> position_ids_from_mask(mask).tolist()
    [[0, 0, 1, 2], [0, 1, 2, 3]]

Constraints: a position outside a row's real tokens raises :class:`~mixprobe.errors.PositionError` (never a
silent read of padding), except in :func:`position_mask` with ``strict=False`` (a sweep over every index leaves
shorter rows out of that column).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mixprobe._check import checked
from mixprobe.errors import PositionError

PositionSpec = str | int | Sequence[str | int] | torch.Tensor
NAMED = ("last_prompt", "mode_token", "prompt_onwards", "all")


@checked
def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Absolute position ids for a left-padded batch: ``cumsum(mask) − 1``, clamped at 0 on the pads."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _geometry(attention_mask: torch.Tensor, prompt_lengths: torch.Tensor | Sequence[int] | None):
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.ndim != 2:
        got = list(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
        raise PositionError(f"the attention mask must be a [batch, seq] tensor, got {got}; tokenize a list of "
                            "prompts (padding=True) and pass its attention_mask")
    mask = attention_mask.bool()
    n_real = mask.sum(1)
    first = mask.float().argmax(1)  # first 1 (left padding); 0 when there is no padding
    if prompt_lengths is None:
        return mask, first, n_real, n_real
    try:
        plen = torch.as_tensor(prompt_lengths, device=mask.device).long().reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise PositionError(f"prompt_lengths must be one int per row, got {prompt_lengths!r}") from None
    if plen.shape[0] != mask.shape[0]:
        raise PositionError(f"prompt_lengths has {plen.shape[0]} rows for a batch of {mask.shape[0]}")
    return mask, first, n_real, plen


def _column(item: str | int, geo: tuple, strict: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute index ``[B]`` of one position and which rows have it (all rows, or an error, when strict)."""
    mask, first, n_real, plen = geo
    if isinstance(item, str):
        if item == "last_prompt":
            bad = (plen < 1) | (plen > n_real)
            if bool(bad.any()):
                row = int(bad.nonzero()[0, 0])
                raise PositionError(f"position 'last_prompt' is outside row {row}: it has {int(n_real[row])} real "
                                    f"tokens and a prompt length of {int(plen[row])}; drop empty prompts and pass "
                                    "prompt_lengths between 1 and each row's number of real tokens")
            idx = first + plen - 1
        elif item == "mode_token":
            if bool(((plen >= n_real) | (plen < 0)).any()):
                raise PositionError("position 'mode_token' needs a completion after the prompt; tokenize prompts "
                                    "with completions (e.g. the forced mode token) or use 'last_prompt'")
            idx = first + plen
        elif item in NAMED:
            raise PositionError(f"{item!r} cannot be combined with other positions; request it alone")
        else:
            raise PositionError(f"unknown position {item!r}; use one of {NAMED}, an int, a list or a bool mask")
        return idx, torch.ones_like(idx, dtype=torch.bool)
    if not isinstance(item, int) or isinstance(item, bool):
        raise PositionError(f"a position is a name, an int or a bool mask, got {type(item).__name__}")
    T = mask.shape[1]
    off = max(min(item, T), -T - 1)     # past the sequence either way (same verdict, no int64 overflow)
    idx = first + off if off >= 0 else first + plen + off
    ok = (idx >= first) & (idx < first + n_real)
    if strict and not bool(ok.all()):
        row = int((~ok).nonzero()[0, 0])
        raise PositionError(
            f"position {item} is outside the sequence: row {row} has {int(n_real[row])} real tokens (indices count "
            f"from the first real token, negative ones back from the last prompt token: use one in "
            f"[-{int(plen.min())}, {int(n_real.min()) - 1}] or 'last_prompt')")
    return idx, ok


def _items(spec: Any) -> list:
    try:
        items = [spec] if isinstance(spec, (str, int)) else list(spec)
    except TypeError:
        raise PositionError(f"a position spec is a name ({', '.join(NAMED)}), an int, a list of them or a bool "
                            f"mask, got {type(spec).__name__}") from None
    if not items:
        raise PositionError("no positions requested; use 'last_prompt', 'mode_token', 'all', indices or a mask")
    return items


def _bool_mask(spec: torch.Tensor, B: int, T: int, device: torch.device) -> torch.Tensor:
    if spec.dtype != torch.bool and not bool(((spec == 0) | (spec == 1)).all()):
        raise PositionError(f"a position mask must be boolean (or 0/1), got {spec.dtype}")
    sel = spec.bool().to(device)
    sel = sel.unsqueeze(0).expand(B, -1) if sel.ndim == 1 else sel
    if tuple(sel.shape) != (B, T):
        raise PositionError(f"a position mask must have shape [batch, seq] = {[B, T]}, got {list(spec.shape)}")
    return sel


@checked
def resolve_positions(spec: PositionSpec, attention_mask: torch.Tensor,
                      prompt_lengths: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
    """*Each*: absolute indices ``[batch, n_pos]`` (long), one column per listed position (module docstring)."""
    geo = _geometry(attention_mask, prompt_lengths)
    mask = geo[0]
    B, T = mask.shape
    if isinstance(spec, torch.Tensor):
        sel = _bool_mask(spec, B, T, mask.device)
        counts = sel.sum(1)
        if int(counts.min()) != int(counts.max()) or int(counts.min()) == 0:
            raise PositionError(
                f"a position mask must select the same (non-zero) number of tokens in every row, got {counts.tolist()}"
            )
        if bool((sel & ~mask).any()):
            raise PositionError("the position mask selects padding tokens; select only tokens with attention mask 1")
        return torch.arange(T, device=mask.device).expand(B, T)[sel].reshape(B, int(counts[0]))
    if isinstance(spec, str) and spec == "all":
        return torch.arange(T, device=mask.device).expand(B, T).clone()
    return torch.stack([_column(item, geo)[0] for item in _items(spec)], 1).long()


@checked
def resolve_index(spec: str | int, attention_mask: torch.Tensor,
                  prompt_lengths: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
    """One absolute index per row (``[batch]`` long) for a single position."""
    if not isinstance(spec, (str, int)):
        raise PositionError(f"a single position is 'last_prompt', 'mode_token' or an int, got {spec!r}")
    return _column(spec, _geometry(attention_mask, prompt_lengths))[0]


@checked
def position_mask(spec: PositionSpec, attention_mask: torch.Tensor,
                  prompt_lengths: torch.Tensor | Sequence[int] | None = None, *, strict: bool = True) -> torch.Tensor:
    """*Union*: boolean ``[batch, seq]`` mask of every position ``spec`` lists (module docstring)."""
    geo = _geometry(attention_mask, prompt_lengths)
    mask = geo[0]
    B, T = mask.shape
    if isinstance(spec, torch.Tensor):
        return _bool_mask(spec, B, T, mask.device)
    if isinstance(spec, str) and spec == "all":
        return mask.clone()
    if isinstance(spec, str) and spec == "prompt_onwards":
        last = _column("last_prompt", geo)[0]
        return mask & (torch.arange(T, device=mask.device).unsqueeze(0) >= last.unsqueeze(1))
    out = torch.zeros(B, T, dtype=torch.bool, device=mask.device)
    rows = torch.arange(B, device=mask.device)
    for item in _items(spec):
        idx, ok = _column(item, geo, strict)
        out[rows[ok], idx[ok]] = True
    return out


@checked
def gather_positions(acts: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """``acts[b, index[b, p]]`` → ``[batch, n_pos, d]`` (``acts`` is ``[batch, seq, d]``; ``None`` keeps all)."""
    if index is None:
        return acts
    idx = index.to(acts.device).unsqueeze(-1).expand(-1, -1, acts.shape[-1])
    return acts.gather(1, idx)


@checked
def describe(spec: PositionSpec) -> object:
    """A JSON-able description of a position spec (what a store manifest records)."""
    if isinstance(spec, torch.Tensor):
        return {"mask_shape": list(spec.shape), "n_selected": int(spec.bool().sum())}
    if isinstance(spec, (str, int)):
        return spec
    return [describe(s) for s in spec]


@checked
def label(spec: PositionSpec) -> str:
    """A short human-readable label of a position spec (for result tables and JSON)."""
    if isinstance(spec, torch.Tensor):
        return "mask"
    if isinstance(spec, (list, tuple)):
        return "(" + ",".join(str(s) for s in spec) + ")"
    return str(spec)


@checked
def sweep_columns(positions: PositionSpec | Sequence[PositionSpec] | None, attention_mask: torch.Tensor
                  ) -> tuple[list[PositionSpec], bool]:
    """The columns of a sweep over positions: ``"each"`` (or ``None``) → every relative index ``0..max_len−1``; a
    list → one column per item (each item one :func:`position_mask` union). Returns ``(columns, strict)``;
    ``"each"`` is non-strict (rows shorter than an index are left out of that column)."""
    if positions is None or (isinstance(positions, str) and positions == "each"):
        return list(range(int(attention_mask.bool().sum(1).max()))), False
    if isinstance(positions, (str, int, torch.Tensor)):
        return [positions], True
    return _items(positions), True          # an empty list or a non-list is a PositionError

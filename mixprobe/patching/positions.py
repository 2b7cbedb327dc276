"""Token positions for patching, resolved from the attention mask (left padding safe).

Problem: "patch the last prompt token" means a different absolute index in every row of a left-padded batch,
and an index outside a row's real tokens must be an error, not a silent no-op.

Mechanism: per row, ``first`` = index of the first real token (attention mask 1), ``n_real`` = number of real
tokens, ``prompt_len`` = ``batch.prompt_lengths`` when present (prompt + completion batches), else ``n_real``.
A position spec becomes a boolean mask ``[B, T]``:

- ``"last_prompt"`` → ``first + prompt_len − 1``; ``"mode_token"`` → ``first + prompt_len`` (first completion
  token); ``"all"`` → every real token;
- an ``int`` ``i ≥ 0`` → ``first + i`` (relative to the first real token, the shared contract of
  ``mixprobe.models.positions``); ``i < 0`` counts back from the last prompt token (−1 is ``last_prompt``);
- a tuple/list of ints → their union (patched together); a boolean tensor ``[B, T]`` → itself.

Example:
    >>> import torch
    >>> mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    >>> resolve_index("last_prompt", mask, None).tolist()
    [2, 2]
    >>> resolve_mask(0, mask, None).int().tolist()
    [[0, 1, 0], [1, 0, 0]]

Constraints: an explicit position outside a row's real tokens raises :class:`~mixprobe.errors.PositionError`
unless ``strict=False`` (sweeps over ``"each"`` position then leave shorter rows unpatched at that column).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch

from mixprobe.errors import PositionError

PositionSpec = Union[str, int, Sequence[int], torch.Tensor]


def _geometry(attention_mask: torch.Tensor, prompt_lengths: torch.Tensor | Sequence[int] | None):
    mask = attention_mask.bool()
    n_real = mask.sum(1)
    first = mask.float().argmax(1)  # first 1 (left padding); 0 when there is no padding
    if prompt_lengths is None:
        plen = n_real
    else:
        plen = torch.as_tensor(prompt_lengths, device=mask.device).long().reshape(-1)
    return mask, first, n_real, plen


def resolve_index(spec: str | int, attention_mask: torch.Tensor,
                  prompt_lengths: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
    """One absolute index per row (``[B]`` long) for a single-position ``spec``; raises PositionError."""
    mask, first, n_real, plen = _geometry(attention_mask, prompt_lengths)
    if spec == "last_prompt":
        idx = first + plen - 1
    elif spec == "mode_token":
        idx = first + plen
        if bool((plen >= n_real).any()):
            raise PositionError("position 'mode_token' needs a completion after the prompt; tokenize prompts with "
                                "completions (prefill the mode token) or use 'last_prompt'")
    elif isinstance(spec, int) and not isinstance(spec, bool):
        idx = first + spec if spec >= 0 else first + plen + spec
        if bool(((idx < first) | (idx >= first + n_real)).any()):
            raise PositionError(f"position {spec} is outside the sequence (real lengths {n_real.tolist()}); use an "
                                f"index in [-{int(plen.min())}, {int(n_real.min()) - 1}] or 'last_prompt'")
    else:
        raise PositionError(f"unknown single position {spec!r}; use 'last_prompt', 'mode_token' or an int")
    if bool(((idx < 0) | (idx >= mask.shape[1])).any()):
        raise PositionError(f"position {spec!r} resolves outside the sequence of length {mask.shape[1]}")
    return idx


def resolve_mask(spec: PositionSpec, attention_mask: torch.Tensor,
                 prompt_lengths: torch.Tensor | Sequence[int] | None = None, *, strict: bool = True) -> torch.Tensor:
    """Boolean mask ``[B, T]`` of the positions that ``spec`` selects (see the module docstring)."""
    mask, first, n_real, plen = _geometry(attention_mask, prompt_lengths)
    B, T = mask.shape
    if isinstance(spec, torch.Tensor):
        if spec.dtype != torch.bool or tuple(spec.shape) != (B, T):
            raise PositionError(f"a position mask must be a bool tensor of shape {(B, T)}, got "
                                f"{spec.dtype} {tuple(spec.shape)}")
        return spec.to(mask.device)
    if spec == "all":
        return mask.clone()
    if isinstance(spec, str) or (isinstance(spec, int) and not isinstance(spec, bool)):
        if isinstance(spec, int) and not strict:
            idx = first + spec if spec >= 0 else first + plen + spec
            ok = (idx >= first) & (idx < first + n_real)
            out = torch.zeros(B, T, dtype=torch.bool, device=mask.device)
            rows = torch.arange(B, device=mask.device)[ok]
            out[rows, idx[ok]] = True
            return out
        idx = resolve_index(spec, attention_mask, prompt_lengths)
        out = torch.zeros(B, T, dtype=torch.bool, device=mask.device)
        out[torch.arange(B, device=mask.device), idx] = True
        return out
    if isinstance(spec, Sequence) and spec and all(isinstance(s, int) for s in spec):
        out = torch.zeros(B, T, dtype=torch.bool, device=mask.device)
        for s in spec:
            out |= resolve_mask(int(s), attention_mask, prompt_lengths, strict=strict)
        return out
    raise PositionError(f"unknown position {spec!r}; use 'last_prompt', 'mode_token', 'all', an int, a tuple of "
                        "ints, or a bool mask [batch, seq]")


def label(spec: PositionSpec) -> str:
    """A short human-readable label of a position spec (for result tables and JSON)."""
    if isinstance(spec, torch.Tensor):
        return "mask"
    if isinstance(spec, (list, tuple)):
        return "(" + ",".join(str(s) for s in spec) + ")"
    return str(spec)


def expand_columns(positions: PositionSpec | Sequence[PositionSpec] | None, attention_mask: torch.Tensor
                   ) -> tuple[list[PositionSpec], bool]:
    """Sweep columns from ``positions``: ``"each"`` → every relative index; a list → one column per item.

    Returns ``(columns, strict)``; ``"each"`` is non-strict (rows shorter than an index are left unpatched).
    """
    if positions is None or positions == "each":
        n = int(attention_mask.bool().sum(1).max())
        return list(range(n)), False
    if isinstance(positions, (str, int, torch.Tensor)):
        return [positions], True
    cols = list(positions)
    if not cols:
        raise PositionError("empty list of positions; pass 'each', 'last_prompt', 'all' or a list of positions")
    return cols, True

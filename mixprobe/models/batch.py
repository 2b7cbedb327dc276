"""Batches: the one tokenize-and-left-pad path of the project.

Problem: capture, steering, patching and the mixture estimators all feed batches of prompts (and of prompts with
forced completions) to a model; padding them differently (right padding, position ids from ``arange``, special
tokens added to completions) silently changes the activations. Mechanism: :func:`encode` turns texts into token
ids (prompt with special tokens, completion appended without), :func:`pad_batch` left-pads rows into a
:class:`Batch` whose position ids come from the attention mask, and :func:`tokenize` does both.

Example:
    >>> import torch
    >>> b = Batch(torch.tensor([[0, 5, 6], [4, 5, 6]]), torch.tensor([[0, 1, 1], [1, 1, 1]]))
    >>> b.position_ids.tolist(), b.prompt_lengths.tolist()
    ([[0, 0, 1], [0, 1, 2]], [2, 3])

Constraints: rows are left-padded (the last column is every row's last token); a prompt that tokenizes to
nothing is an error.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mixprobe._check import argument_error, checked
from mixprobe.errors import DataError, PositionError
from mixprobe.models.positions import position_ids_from_mask


@dataclass
class Batch:
    """A left-padded batch: token ids, attention mask, position ids and prompt lengths.

    ``position_ids`` default to the mask-derived ones and ``prompt_lengths`` to each row's number of real tokens
    (a batch of prompts without completions).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor = None  # type: ignore[assignment]  # filled in __post_init__
    prompt_lengths: torch.Tensor = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.position_ids is None:
            self.position_ids = position_ids_from_mask(self.attention_mask)
        if self.prompt_lengths is None:
            self.prompt_lengths = self.attention_mask.long().sum(1)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        """The batch on ``device`` (from the CPU to a GPU through pinned memory, without blocking the host)."""
        device = torch.device(device)
        ts = [self.input_ids, self.attention_mask, self.position_ids, self.prompt_lengths]
        if device.type == "cuda" and ts[0].device.type == "cpu":
            ts = [t.pin_memory() for t in ts]
        return Batch(*(t.to(device, non_blocking=True) for t in ts))

    def inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments of a forward (``input_ids``, ``attention_mask``, ``position_ids``)."""
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "position_ids": self.position_ids}


@checked
def pad_token_id(tokenizer: Any) -> int:
    """The tokenizer's pad id (its EOS id, else 0, when it has none)."""
    if not hasattr(tokenizer, "pad_token_id"):
        raise argument_error("pad_token_id", "tokenizer", tokenizer, "a transformers tokenizer")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    return int(pad)


def _encode(tok: Any, texts: list[str], special: bool) -> list[list[int]]:
    """Token ids of ``texts`` (the raw ``tokenizers`` backend when it is in its plain state: same ids, faster)."""
    backend = getattr(tok, "backend_tokenizer", None) if getattr(tok, "is_fast", False) else None
    if backend is not None and backend.padding is None and backend.truncation is None:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=special)]
    return tok(texts, add_special_tokens=special)["input_ids"]


@checked
def encode(tokenizer: Any, prompts: Sequence[str] | str,
           completions: Sequence[str] | str | None = None) -> tuple[list[list[int]], list[int]]:
    """Token ids of each row (prompt with special tokens, + completion without) and the prompt lengths."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise DataError("no prompts to tokenize; pass a non-empty list of strings")
    ids = _encode(tokenizer, prompts, True)
    plen = [len(r) for r in ids]
    if completions is not None:
        completions = [completions] if isinstance(completions, str) else list(completions)
        if len(completions) != len(prompts):
            raise DataError(f"{len(completions)} completions for {len(prompts)} prompts; pass one per prompt")
        ids = [p + c for p, c in zip(ids, _encode(tokenizer, completions, False))]
    if min(plen) == 0:
        raise DataError("a prompt tokenized to zero tokens; every prompt needs at least one token")
    return ids, plen


@checked
def pad_batch(flat: np.ndarray, lens: np.ndarray, plen: np.ndarray, pad_id: int,
              pad_to: int | None = None) -> Batch:
    """Left-padded :class:`Batch` (CPU) from the concatenated token ids ``flat`` of rows of lengths ``lens``."""
    B = len(lens)
    T = int(lens.max())
    if pad_to is not None:
        if pad_to < T:
            raise PositionError(f"a row has {T} tokens, more than pad_to={pad_to}")
        T = int(pad_to)
    mask = np.arange(T)[None, :] >= (T - lens)[:, None]
    ids = np.full((B, T), pad_id, np.int64)
    ids[mask] = flat  # row-major: the real tokens of row 0, then row 1, ...
    m = torch.from_numpy(mask.astype(np.int64))
    return Batch(torch.from_numpy(ids), m, position_ids_from_mask(m), torch.from_numpy(np.asarray(plen, np.int64)))


@checked
def tokenize(tokenizer: Any, prompts: Sequence[str] | str, completions: Sequence[str] | str | None = None, *,
             pad_to: int | None = None) -> Batch:
    """Left-padded CPU :class:`Batch` of ``prompts`` (+ ``completions`` appended token-exactly)."""
    ids, plen = encode(tokenizer, prompts, completions)
    lens = np.fromiter(map(len, ids), np.int64, len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), np.int64, int(lens.sum()))
    return pad_batch(flat, lens, np.asarray(plen, np.int64), pad_token_id(tokenizer), pad_to)


@checked
@torch.no_grad()
def last_token_states(model: Any, tokenizer: Any, prompts: Sequence[str]) -> torch.Tensor:
    """``[n, layers, d]`` (float32, CPU): every block's output (``resid_post``) at each prompt's last token."""
    batch = tokenize(tokenizer, list(prompts)).to(next(model.parameters()).device)
    out = model(**batch.inputs(), output_hidden_states=True)
    return torch.stack([h[:, -1] for h in out.hidden_states[1:]], 1).float().cpu()


"""Patching metrics: what a patched forward is scored by, and the checks that keep the score meaningful.

Problem: activation patching is only as good as the number read off each patched run. A metric that silently
returns a vector, NaN, or a mean over the wrong axis turns a sweep into noise.

Mechanism: a metric is any callable ``metric(logits, batch) -> Tensor`` (or ``metric(logits)``, the
TransformerLens style) returning **one finite value per example** (shape ``[batch]``) or one scalar.
The engine averages per-example values over the batch and normalizes with the restoration
``(m_patched − m_target) / (m_source − m_target)`` (docs/concepts.md, Prakash et al. 2024). Factories here build the
usual ones, read at a position resolved from the attention mask (so left padding is correct):

- :func:`logit_diff` — ``logit[a] − logit[b]`` (e.g. mode token ``m1`` vs ``m2``) at the last prompt token;
- :func:`token_prob` — ``P(token)`` at the last prompt token (e.g. the mode probability);
- :func:`answer_accuracy` — 1 if the argmax at a position is the example's answer token, else 0
  (not differentiable: use :func:`answer_logprob` for attribution patching).

Example:
    >>> import torch
    >>> from types import SimpleNamespace
    >>> logits = torch.zeros(2, 3, 5); logits[:, -1, 4] = 2.0
    >>> batch = SimpleNamespace(attention_mask=torch.ones(2, 3, dtype=torch.long), prompt_lengths=None)
    >>> logit_diff(4, 0)(logits, batch).tolist()
    [2.0, 2.0]
    >>> answer_accuracy([4, 1])(logits, batch).tolist()
    [1.0, 0.0]

Constraints: positions are ``"last_prompt"`` (where the mode token is predicted), ``"mode_token"`` (the first
completion token, where the answer after a forced mode token is predicted) or an int relative to the first real
token (negative: from the last prompt token, −1 is the last prompt token). A metric returning anything but a
finite ``[batch]`` or scalar tensor raises :class:`~mixprobe.errors.MetricError`.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from mixprobe._check import checked
from mixprobe.errors import MetricError
from mixprobe.models.positions import resolve_index

Metric = Callable[..., torch.Tensor]


def _at(logits: torch.Tensor, batch: Any, position: str | int) -> torch.Tensor:
    """Logits ``[B, V]`` at one resolved position per example."""
    idx = resolve_index(position, batch.attention_mask, getattr(batch, "prompt_lengths", None))
    return logits[torch.arange(logits.shape[0], device=logits.device), idx.to(logits.device)]


@checked
def logit_diff(token_a: int, token_b: int, position: str | int = "last_prompt") -> Metric:
    """Metric ``logit[token_a] − logit[token_b]`` at ``position``, one value per example."""
    def metric(logits: torch.Tensor, batch: Any) -> torch.Tensor:
        row = _at(logits, batch, position)
        return row[:, token_a] - row[:, token_b]
    metric.__name__ = f"logit_diff({token_a},{token_b})"
    return metric


@checked
def token_prob(token: int, position: str | int = "last_prompt") -> Metric:
    """Metric ``P(token)`` (softmax over the vocabulary) at ``position``, one value per example."""
    def metric(logits: torch.Tensor, batch: Any) -> torch.Tensor:
        return torch.softmax(_at(logits, batch, position).float(), dim=-1)[:, token]
    metric.__name__ = f"token_prob({token})"
    return metric


@checked
def group_logit_diff(tokens_a: Sequence[int], tokens_b: Sequence[int], position: str | int = "last_prompt"
                     ) -> Metric:
    """Metric ``log P(tokens_a) − log P(tokens_b)`` (each a set of token ids) at ``position``, one per example.

    The gate's log-odds when components are told apart by *which* tokens they answer with rather than by one
    opening token (e.g. number words vs digits): ``logsumexp`` of the logits over each set.

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> logits = torch.zeros(1, 2, 4); logits[0, -1] = torch.tensor([0.0, 0.0, 1.0, 1.0])
        >>> batch = SimpleNamespace(attention_mask=torch.ones(1, 2, dtype=torch.long), prompt_lengths=None)
        >>> round(float(group_logit_diff([2, 3], [0, 1])(logits, batch)[0]), 6)
        1.0
    """
    a, b = [int(t) for t in tokens_a], [int(t) for t in tokens_b]
    if not a or not b or set(a) & set(b):
        raise MetricError(f"group_logit_diff needs two non-empty, disjoint token sets, got {a} and {b}")

    def metric(logits: torch.Tensor, batch: Any) -> torch.Tensor:
        row = _at(logits, batch, position).float()
        return torch.logsumexp(row[:, a], -1) - torch.logsumexp(row[:, b], -1)
    metric.__name__ = f"group_logit_diff({len(a)} vs {len(b)} tokens)"
    return metric


def _answers(answers: Sequence[int] | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(answers, dtype=torch.long).reshape(-1)


def _check_answers(ans: torch.Tensor, n: int) -> None:
    if ans.numel() != n:
        raise MetricError(f"{ans.numel()} answers for a batch of {n} examples; pass one answer token per example")


@checked
def answer_accuracy(answers: Sequence[int] | torch.Tensor, position: str | int = "last_prompt") -> Metric:
    """Metric ``1[argmax logits at position == answer]`` per example (``answers``: one token id per example)."""
    ans = _answers(answers)

    def metric(logits: torch.Tensor, batch: Any) -> torch.Tensor:
        row = _at(logits, batch, position)
        _check_answers(ans, row.shape[0])
        return (row.argmax(-1) == ans.to(row.device)).float()
    metric.__name__ = "answer_accuracy"
    return metric


@checked
def answer_logprob(answers: Sequence[int] | torch.Tensor, position: str | int = "last_prompt") -> Metric:
    """Metric ``log P(answer)`` at ``position`` per example (a differentiable companion of accuracy)."""
    ans = _answers(answers)

    def metric(logits: torch.Tensor, batch: Any) -> torch.Tensor:
        row = _at(logits, batch, position)
        _check_answers(ans, row.shape[0])
        return torch.log_softmax(row.float(), -1).gather(1, ans.to(row.device)[:, None])[:, 0]
    metric.__name__ = "answer_logprob"
    return metric


def _arity(metric: Metric) -> int:
    try:
        params = [p for p in inspect.signature(metric).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
        var = any(p.kind == p.VAR_POSITIONAL for p in inspect.signature(metric).parameters.values())
    except (TypeError, ValueError):
        return 2
    return 2 if var or len(params) >= 2 else 1


@checked
def evaluate(metric: Metric, logits: torch.Tensor, batch: Any, *, keep_graph: bool = False) -> torch.Tensor:
    """Call ``metric`` and return a float tensor ``[batch]`` (a scalar is broadcast), checked finite.

    Raises :class:`MetricError` for a non-tensor, a shape other than ``[]``/``[batch]``, or NaN/inf.
    """
    n = int(logits.shape[0])
    name = getattr(metric, "__name__", type(metric).__name__)
    out = metric(logits, batch) if _arity(metric) == 2 else metric(logits)
    if not isinstance(out, torch.Tensor):
        try:
            out = torch.as_tensor(out, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as e:
            raise MetricError(f"metric {name} returned {type(out).__name__}; return a tensor of shape [batch] "
                              f"({n}) or a scalar") from e
    if out.ndim == 0:
        out = out.reshape(1).expand(n)
    elif tuple(out.shape) != (n,):
        raise MetricError(f"metric {name} returned shape {tuple(out.shape)}; it must return one scalar per "
                          f"example (shape [{n}]) or a single scalar — reduce over positions/vocab inside it")
    if not keep_graph:
        out = out.detach()
    out = out.float()
    if not bool(torch.isfinite(out.detach()).all()):
        raise MetricError(f"metric {name} returned NaN/inf ({out.detach().tolist()[:8]}…); check the position it "
                          "reads and any log/division inside it")
    return out

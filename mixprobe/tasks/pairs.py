"""Preference pairs: the one record every pairwise method reads (reward models, judges, pair probes).

Problem: a preference pair travels from a dataset or organism to probes, reward models and zero-/few-shot judges;
each must agree on which response is the better one. Mechanism: :class:`Pair` ``(prompt, r1, r2, y)`` with ``y = 1``
when ``r2`` is the better response; :func:`as_pairs` checks tuples, mappings or objects with those fields.

Example:
    >>> as_pairs([("ask : add 1 2 .", "ans : 3 .", "ans : 4 .", 0)])[0].y
    0
    >>> as_pairs([{"prompt": "q", "r1": "a", "r2": "b", "y": True}])[0]
    Pair(prompt='q', r1='a', r2='b', y=1)

Constraints: ``y`` is 0 or 1 (booleans allowed); prompt and responses are strings; an empty list is an error.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from mixprobe._check import checked
from mixprobe.errors import DataError, EmptyDataError


class Pair(NamedTuple):
    """One preference pair: ``y = 1`` when ``r2`` is the better response, ``0`` when ``r1`` is."""

    prompt: str
    r1: str
    r2: str
    y: int


def _label(y: Any, i: int) -> int:
    if isinstance(y, (bool, np.bool_)):
        return int(y)
    try:
        v = float(y)
    except Exception:  # noqa: BLE001 - whatever float() of a user's object raises, the label is not 0 or 1
        v = float("nan")
    if v not in (0.0, 1.0):
        raise DataError(f"pair {i} has y={y!r}; y must be 0 (r1 is better) or 1 (r2 is better)")
    return int(v)


@checked
def as_pairs(pairs: Iterable[Any]) -> list[Pair]:
    """Checked :class:`Pair` s from ``(prompt, r1, r2, y)`` sequences, mappings or objects with those attributes."""
    if pairs is None or isinstance(pairs, (str, bytes)):
        raise DataError("pairs must be a sequence of (prompt, r1, r2, y); got "
                        f"{type(pairs).__name__}")
    if not isinstance(pairs, Iterable):
        raise DataError(f"pairs must be a sequence of (prompt, r1, r2, y); got {type(pairs).__name__}")
    out: list[Pair] = []
    for i, p in enumerate(pairs):
        if isinstance(p, Mapping):
            missing = [k for k in Pair._fields if k not in p]
            if missing:
                raise DataError(f"pair {i} lacks {missing}; pass keys prompt, r1, r2, y")
            vals = [p[k] for k in Pair._fields]
        elif all(hasattr(p, k) for k in Pair._fields):
            vals = [getattr(p, k) for k in Pair._fields]
        elif isinstance(p, Sequence) and not isinstance(p, (str, bytes)) and len(p) == 4:
            vals = list(p)
        else:
            raise DataError(f"pair {i} is a {type(p).__name__} ({str(p)[:60]!r}); pass (prompt, r1, r2, y) tuples "
                            "or objects with attributes prompt, r1, r2, y")
        for name, v in zip(Pair._fields[:3], vals[:3]):
            if not isinstance(v, str):
                raise DataError(f"pair {i}: {name} is a {type(v).__name__}, not a string")
        out.append(Pair(vals[0], vals[1], vals[2], _label(vals[3], i)))
    if not out:
        raise EmptyDataError("no preference pairs; pass at least one (prompt, r1, r2, y)")
    return out


__all__ = ["Pair", "as_pairs"]

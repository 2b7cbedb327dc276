"""Dose-response sweeps: behaviour metrics as a function of the steering strength α.

Problem: a single steering strength says little — too small does nothing, too large breaks the model. The
question "does steering along the selection direction bring back the suppressed component?" is a curve: for
each α, accuracy per tag and the frequency of each mode. Mechanism: :func:`sweep` runs a user callable
``evaluate(handle) -> {metric: float}`` once per α inside :func:`~mixprobe.steering.apply.steer` and returns one
row per α (``{"alpha": α, **metrics}``); non-finite or non-numeric metrics raise
:class:`~mixprobe.errors.MetricError`. :func:`recovery_ratio` turns a restored accuracy into the
*steering recovery* (restored accuracy / accuracy at the reference checkpoint).

Example:
    >>> import torch
    >>> from mixprobe.models.handle import ModelHandle
    >>> from mixprobe.organisms.configs import tiny_model
    >>> from mixprobe.organisms.tokenizer import build_word_tokenizer
    >>> from mixprobe.steering.vectors import SteeringVector
    >>> tok = build_word_tokenizer(["<A>", "m1", "m2", "1", "2", "+", "="])
    >>> h = ModelHandle(tiny_model("llama", vocab_size=len(tok), seed=0), tok)
    >>> b = h.tokenize(["<A> 1 + 2 =", "<A> 2 + 2 ="])
    >>> m1, m2 = tok.convert_tokens_to_ids(["m1", "m2"])
    >>> def evaluate(handle):
    ...     last = handle.logits(b)[:, -1]
    ...     return {"p_m1": float(torch.softmax(last[:, [m1, m2]], -1)[:, 0].mean())}
    >>> v = SteeringVector.from_tensors({"final_norm": h.model.lm_head.weight[m1] - h.model.lm_head.weight[m2]})
    >>> rows = sweep(h, v, [0.0, 2.0, 8.0], evaluate, positions="last_prompt")
    >>> [r["alpha"] for r in rows], rows[0]["p_m1"] < rows[1]["p_m1"] < rows[2]["p_m1"]
    ([0.0, 2.0, 8.0], True)

Constraints: ``evaluate`` must only run forwards (no weight updates); it sees the steered handle.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from mixprobe._check import checked
from mixprobe.errors import DataError, MetricError
from mixprobe.steering.apply import steer
from mixprobe.steering.vectors import SteeringVector


@checked
def sweep(
    handle: Any,
    vector: SteeringVector,
    alphas: Sequence[float],
    evaluate: Callable[[Any], Mapping[str, float]],
    *,
    positions: str | int | Sequence[int] | torch.Tensor = "all",
    batch: Any = None,
    sites: Sequence[str] | None = None,
) -> list[dict[str, float]]:
    """One row ``{"alpha": α, **evaluate(handle)}`` per α, each evaluated inside :func:`steer`."""
    alphas = [float(a) for a in alphas]
    if not alphas:
        raise DataError("no steering strengths; pass alphas=[0.0, 1.0, ...]")
    rows = []
    for a in alphas:
        with steer(handle, vector, a, positions=positions, batch=batch, sites=sites):
            metrics = evaluate(handle)
        if not isinstance(metrics, Mapping) or not metrics:
            raise MetricError(f"evaluate returned {type(metrics).__name__}; it must return a non-empty dict "
                              "{metric name: float}")
        row: dict[str, float] = {"alpha": a}
        for k, v in metrics.items():
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise MetricError(f"metric {k!r} at alpha={a} is {v!r}, not a number") from None
            if not math.isfinite(fv):
                raise MetricError(f"metric {k!r} at alpha={a} is {fv}; evaluate must return finite numbers")
            row[str(k)] = fv
        rows.append(row)
    return rows


@checked
def recovery_ratio(restored: float, reference: float) -> float:
    """Steering recovery: restored accuracy / accuracy at the reference checkpoint (e.g. SFT)."""
    if not reference > 0:
        raise DataError(f"the reference accuracy must be > 0, got {reference}")
    return float(restored) / float(reference)

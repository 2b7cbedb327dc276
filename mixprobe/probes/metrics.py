"""Probe metrics: accuracy, AUROC, RMS calibration error, elicitation and differential elicitation.

Problem: a probe's held-out accuracy alone hides two things users ask about: whether its probabilities mean what
they say (calibration) and how much of the model's *reachable* capability a method elicits on a shifted target
(GENIES, arXiv 2311.07723). Mechanism, for binary labels ``y`` and positive-class probabilities ``p``:

- :func:`accuracy` — mean of ``(p > threshold) == y`` (or of ``pred == y`` for hard predictions);
- :func:`auroc` — the Mann–Whitney statistic ``P(s⁺ > s⁻) + ½·P(s⁺ = s⁻)`` (ties count half);
- :func:`rms_calibration_error` — top-label form: confidence ``c_i = max(p_i, 1 − p_i)``, correctness
  ``a_i = [prediction right]``, equal-width bins of ``c`` on [0, 1], and the standard *weighted* form
  ``sqrt(Σ_b (|B_b|/n)·(acc(B_b) − conf(B_b))²)`` (empty bins contribute nothing);
  ``variant="genies"`` reproduces the GENIES evaluation code instead (``src/api/evaluate.py``): each example's
  probability of the correct answer is re-expressed as the probability of a random side (``random.Random(42)``
  draws ``l_i ∈ {0,1}``; ``q_i = p_correct`` if ``l_i = 1`` else ``1 − p_correct``), ``q`` is cut into 5
  equal-width bins by ``np.digitize`` (so ``q = 1.0`` falls outside every bin), bins with fewer than 20 examples
  are skipped, each bin scores ``(mean(l over all examples) − mean(q in bin))²`` — note the *global* label mean,
  a quirk of that code — and the result is ``sqrt`` of the *unweighted* mean over bins. Use it only to compare
  with numbers reported by GENIES; it is not a calibration error in the textbook sense.
- :func:`elicitation` ``= A_gen / TTC`` and :func:`differential_elicitation` ``= (A_gen − A_zero_shot) / TTC``,
  where TTC (target-tuned capability) is the accuracy after tuning directly on the target.

Example:
    >>> y = [0, 0, 1, 1]
    >>> p = [0.1, 0.6, 0.35, 0.8]
    >>> accuracy(y, p), auroc(y, p)
    (0.5, 0.75)
    >>> round(rms_calibration_error([1, 1], [0.9, 0.9], n_bins=10), 6)
    0.1
    >>> round(differential_elicitation(0.7, 0.5, 0.8), 6)
    0.25

Constraints: binary labels coded 0/1 (or booleans); probabilities in [0, 1]. Inputs may be lists, numpy arrays
or torch tensors.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np

from mixprobe._check import checked
from mixprobe.errors import DataError, EmptyDataError, NonFiniteError, OneClassError, ShapeError
from mixprobe.probes.validation import to_numpy


def _pair(y_true: Any, values: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    y = to_numpy(y_true).reshape(-1)
    v = to_numpy(values)
    if v.ndim == 2 and v.shape[1] == 2:
        v = v[:, 1]
    v = v.reshape(-1)
    if y.size == 0:
        raise EmptyDataError(f"no examples to compute {what} on")
    if y.shape != v.shape:
        raise ShapeError(f"{y.size} labels but {v.size} {what} inputs; pass one per example")
    if not (np.isfinite(y).all() and np.isfinite(v).all()):
        raise NonFiniteError(f"labels or scores for {what} contain NaN/inf")
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataError(f"{what} needs binary labels coded 0/1, got values {np.unique(y)[:6].tolist()}")
    return y, v


@checked
def accuracy(y_true: Any, y_score: Any, *, threshold: float = 0.5) -> float:
    """Share of rows where ``(y_score > threshold)`` equals ``y_true`` (hard 0/1 predictions work unchanged)."""
    y, s = _pair(y_true, y_score, "accuracy")
    return float(np.mean((s > threshold) == (y > 0.5)))


@checked
def auroc(y_true: Any, y_score: Any) -> float:
    """Area under the ROC curve: ``P(score of a positive > score of a negative)``, ties counted ½."""
    y, s = _pair(y_true, y_score, "AUROC")
    pos, neg = s[y > 0.5], s[y < 0.5]
    if pos.size == 0 or neg.size == 0:
        raise OneClassError("AUROC needs both classes among the labels")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size)
    ranks[order] = np.arange(1, s.size + 1)
    _, inv, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.bincount(inv, weights=ranks) / counts)[inv]   # average ranks of ties
    u = ranks[y > 0.5].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))


@checked
def rms_calibration_error(y_true: Any, y_prob: Any, *, n_bins: int = 10, variant: str = "weighted",
                          seed: int = 42) -> float:
    """RMS calibration error of positive-class probabilities (see the module docstring for both variants).

    Args:
        y_true: 0/1 labels.
        y_prob: ``P(y = 1)`` per example (or ``predict_proba`` output ``[n, 2]``).
        n_bins: equal-width confidence bins on [0, 1] (``variant="weighted"``; GENIES uses 5, fixed).
        variant: ``"weighted"`` (standard) or ``"genies"`` (the GENIES evaluation code, quirks included).
        seed: seed of the GENIES random orientation (42 there).
    """
    y, p = _pair(y_true, y_prob, "calibration error")
    if ((p < 0) | (p > 1)).any():
        raise DataError("calibration error needs probabilities in [0, 1]; pass predict_proba(...)[:, 1]")
    if variant == "weighted":
        if n_bins < 1:
            raise DataError(f"n_bins must be ≥ 1, got {n_bins}")
        conf = np.maximum(p, 1.0 - p)
        correct = ((p > 0.5) == (y > 0.5)).astype(float)
        idx = np.minimum((conf * n_bins).astype(int), n_bins - 1)
        total = 0.0
        for b in np.unique(idx):
            m = idx == b
            total += m.mean() * (correct[m].mean() - conf[m].mean()) ** 2
        return float(np.sqrt(total))
    if variant == "genies":
        p_correct = np.where(y > 0.5, p, 1.0 - p)
        rng = random.Random(seed)
        labels = np.array([rng.choice([0, 1]) for _ in range(p_correct.size)])
        q = np.where(labels == 0, 1.0 - p_correct, p_correct)
        bins = np.linspace(0, 1, 6)
        assign = np.digitize(q, bins)
        scores = [(labels.mean() - q[assign == b].mean()) ** 2 for b in range(1, 6) if (assign == b).sum() >= 20]
        if not scores:
            raise DataError("the GENIES variant needs a bin with at least 20 examples; pass more examples")
        return float(np.sqrt(np.mean(scores)))
    raise DataError(f"variant must be 'weighted' or 'genies', got {variant!r}")


def _ttc(ttc: float) -> float:
    if not np.isfinite(ttc) or ttc <= 0:
        raise DataError(f"target-tuned capability must be a positive accuracy, got {ttc}")
    return float(ttc)


@checked
def elicitation(a_gen: float, ttc: float) -> float:
    """``A_gen / TTC``: generalisation accuracy as a share of the target-tuned capability."""
    return float(a_gen) / _ttc(ttc)


@checked
def differential_elicitation(a_gen: float, a_zero_shot: float, ttc: float) -> float:
    """``(A_gen − A_zero_shot) / TTC``: what the method adds over zero-shot, in units of the reachable capability."""
    return (float(a_gen) - float(a_zero_shot)) / _ttc(ttc)

"""Probes across checkpoints: transfer matrices, the gate readout per cue, and the selection direction.

Problem: a mixture of conditional policies changes *which* component is expressed. Three questions follow,
each about a checkpoint series rather than one model: does a probe trained at one checkpoint still read the
same variable at another (is the representation stable while the behaviour moves)? How does the gate's
read-out — "which component will be expressed", probed at the last prompt token — shift per cue (tag) across
training? And what direction separates the two components' contexts (to steer along it)?

Mechanism:

- :func:`transfer_matrix` — fit a probe on checkpoint *i*'s training rows, score it on checkpoint *j*'s test
  rows, for every pair (same row split everywhere: rows are the same prompts at every checkpoint, so no prompt
  leaks from train to test through another checkpoint). Diagonal = ordinary held-out score.
- :func:`gate_readout` — score a fitted gate probe (``P(component 1)``) on every checkpoint's features and
  summarise the distribution per (checkpoint, cue): n, mean, std and quantiles, as tidy rows.
- :func:`selection_direction` — ``mean(x | toward) − mean(x | away)`` (e.g. rows expressing ``m1`` minus rows
  expressing ``m2``), returned as a unit vector and its norm.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 200)
    >>> feats = {"sft": rng.normal(size=(200, 8)) + 2 * np.outer(y, np.eye(8)[0]),
    ...          "rl": rng.normal(size=(200, 8)) + 2 * np.outer(y, np.eye(8)[0])}
    >>> tm = transfer_matrix(feats, y)
    >>> tm.names, bool(tm.matrix.min() > 0.75)
    (['sft', 'rl'], True)
    >>> unit, norm = selection_direction(feats["sft"], y, toward=1, away=0)
    >>> int(unit.abs().argmax()), round(float(unit.norm()), 6), norm > 1.5
    (0, 1.0, True)

Constraints: binary probes; features per checkpoint are ``[n, d]`` with the same ``d`` (rows may differ when
``labels`` is a dict per checkpoint).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.base import clone

from mixprobe._check import checked
from mixprobe.errors import DataError, ShapeError
from mixprobe.probes.batched import ESTIMATORS, train_test_indices
from mixprobe.probes.metrics import auroc
from mixprobe.probes.validation import check_features, check_labels, to_numpy

DEFAULT_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass
class TransferMatrix:
    """``matrix[i, j]`` = score of the probe fitted on ``names[i]`` evaluated on ``names[j]``'s held-out rows."""

    names: list[str]
    matrix: np.ndarray
    metric: str
    probes: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"names": self.names, "metric": self.metric, "matrix": self.matrix.tolist()}

    def tidy(self) -> list[dict[str, Any]]:
        """``[{"train": a, "eval": b, metric: value}]`` rows."""
        return [{"train": a, "eval": b, self.metric: float(self.matrix[i, j])}
                for i, a in enumerate(self.names) for j, b in enumerate(self.names)]


def _estimator(estimator: str | Any, C: float) -> Any:
    if isinstance(estimator, str):
        if estimator not in ESTIMATORS:
            raise DataError(f"unknown estimator {estimator!r}; choose one of {sorted(ESTIMATORS)} or pass an instance")
        return ESTIMATORS[estimator](C=C) if estimator == "logistic" else ESTIMATORS[estimator]()
    return clone(estimator)


@checked
def transfer_matrix(
    features_by_checkpoint: Mapping[str, Any],
    labels: Any,
    *,
    estimator: str | Any = "logistic",
    C: float = 1.0,
    metric: str = "accuracy",
    test_size: float = 0.25,
    seed: int = 0,
) -> TransferMatrix:
    """Fit on each checkpoint, score on every checkpoint (see the module docstring).

    ``labels`` is one ``[n]`` array shared by all checkpoints (same prompts, same split), or a dict
    ``{checkpoint: [n_c]}`` (each checkpoint split on its own). ``metric`` is ``"accuracy"`` or ``"auroc"``.
    """
    if not features_by_checkpoint:
        raise DataError("no checkpoints; pass {checkpoint: features[n, d]}")
    if metric not in ("accuracy", "auroc"):
        raise DataError(f"metric must be 'accuracy' or 'auroc', got {metric!r}")
    names = list(features_by_checkpoint)
    feats = {c: check_features(features_by_checkpoint[c], site=c) for c in names}
    widths = {c: x.shape[1] for c, x in feats.items()}
    if len(set(widths.values())) != 1:
        raise ShapeError(f"checkpoints have different feature widths {widths}; a probe needs one width")
    per_ckpt = isinstance(labels, Mapping)
    ys, splits = {}, {}
    for c in names:
        y = to_numpy(labels[c] if per_ckpt else labels, None).reshape(-1)
        check_labels(y, feats[c].shape[0], site=c)
        ys[c] = y
        splits[c] = train_test_indices(y, test_size=test_size, seed=seed)
    probes = {}
    M = np.zeros((len(names), len(names)))
    for i, a in enumerate(names):
        tr, _ = splits[a]
        probes[a] = _estimator(estimator, C).fit(feats[a][tr], ys[a][tr])
        for j, b in enumerate(names):
            _, te = splits[b]
            if metric == "accuracy":
                M[i, j] = probes[a].score(feats[b][te], ys[b][te])
            else:
                pos = probes[a].classes_[1]
                M[i, j] = auroc((ys[b][te] == pos).astype(float), probes[a].predict_proba(feats[b][te])[:, 1])
    return TransferMatrix(names, M, metric, probes)


@checked
def gate_readout(
    probe: Any,
    features_by_checkpoint: Mapping[str, Any],
    tags: Sequence[Any] | Mapping[str, Sequence[Any]],
    *,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    score: str = "proba",
) -> list[dict[str, Any]]:
    """Distribution of a fitted gate probe's score per (checkpoint, tag), as tidy rows.

    Args:
        probe: a fitted binary probe; the score is ``predict_proba(X)[:, 1]`` (``P(classes_[1])``, e.g.
            ``P(m1 will be expressed)``) or, with ``score="decision"``, ``decision_function(X)``.
        features_by_checkpoint: ``{checkpoint: [n, d]}`` last-prompt-token features (checkpoint order kept).
        tags: the cue of every row — one sequence shared by all checkpoints, or ``{checkpoint: sequence}``.
        quantiles: quantiles to report (keys ``q05``, ``q50``, …).

    Returns:
        ``[{"checkpoint", "tag", "n", "mean", "std", "q05", …}]``, checkpoints in order, tags sorted.
    """
    if not features_by_checkpoint:
        raise DataError("no checkpoints; pass {checkpoint: features[n, d]}")
    if score not in ("proba", "decision"):
        raise DataError(f"score must be 'proba' or 'decision', got {score!r}")
    rows = []
    for ckpt, X in features_by_checkpoint.items():
        X = check_features(X, site=ckpt, allow_constant=True)
        t = np.asarray(list(tags[ckpt] if isinstance(tags, Mapping) else tags), dtype=object)
        if t.shape[0] != X.shape[0]:
            raise ShapeError(f"checkpoint {ckpt!r} has {X.shape[0]} rows but {t.shape[0]} tags; pass one tag per row")
        s = probe.predict_proba(X)[:, 1] if score == "proba" else probe.decision_function(X)
        for tag in sorted(set(t.tolist()), key=str):
            v = s[t == tag]
            row = {"checkpoint": ckpt, "tag": tag, "n": int(v.size), "mean": float(v.mean()), "std": float(v.std())}
            for q in quantiles:
                row[f"q{int(round(q * 100)):02d}"] = float(np.quantile(v, q))
            rows.append(row)
    return rows


@checked
def readout_table(rows: Sequence[Mapping[str, Any]], value: str = "mean") -> dict[str, dict[Any, float]]:
    """Pivot :func:`gate_readout` rows to ``{checkpoint: {tag: value}}``."""
    out: dict[str, dict[Any, float]] = {}
    for r in rows:
        out.setdefault(r["checkpoint"], {})[r["tag"]] = r[value]
    return out


@checked
def selection_direction(features: Any, labels: Any, *, toward: Any = 1, away: Any = 0) -> tuple[torch.Tensor, float]:
    """``(unit, norm)`` of ``mean(x | label == toward) − mean(x | label == away)`` (float32 unit tensor)."""
    X = check_features(features, allow_constant=True)
    y = to_numpy(labels, None).reshape(-1)
    if y.shape[0] != X.shape[0]:
        raise ShapeError(f"{X.shape[0]} feature rows but {y.shape[0]} labels; pass one label per row")
    a, b = y == toward, y == away
    if not a.any() or not b.any():
        raise DataError(f"need rows labelled {toward!r} ({int(a.sum())} found) and {away!r} ({int(b.sum())} found)")
    d = X[a].mean(0) - X[b].mean(0)
    norm = float(np.linalg.norm(d))
    if norm == 0.0:
        raise DataError(f"the means of {toward!r} and {away!r} rows coincide; there is no selection direction here")
    return torch.as_tensor(d / norm, dtype=torch.float32), norm

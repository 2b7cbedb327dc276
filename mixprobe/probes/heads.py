"""GENIES' mass-mean over attention heads: a direction per head, the best heads kept, a pair-cosine score.

Problem: GENIES (arXiv 2311.07723) reads preference pairs with mass-mean directions *per attention head*, keeps the
``k`` = 16 heads whose held-out probe accuracy is highest, and scores a pair by the mean cosine between each kept
head's activation difference and its direction. The site-level :class:`~mixprobe.probes.estimators.MassMeanProbe`
is a different estimator; comparisons with GENIES' numbers need this one. Mechanism, for pairs ``(r1, r2)`` of one
prompt with per-head activations ``a_h(r)`` (``[n, 2, heads, d_head]``) and ``y = 1`` when ``r2`` is the better
response:

- a stratified split keeps ``holdout`` (0.3) of the pairs out of the directions;
- per head, ``d_h`` = mean over fit pairs of ``a_h(good) − a_h(bad)`` (:func:`head_directions`);
- per head, a logistic probe on the sign-symmetrised differences (``±(a_h(r2) − a_h(r1))`` with labels ``y`` and
  ``1 − y``) is fit on the fit pairs and scored on the held-out ones; the ``k`` best heads are kept
  (:func:`select_top`: ties to the lower index);
- the pair score is ``½(1 + mean_{h kept} cos(a_h(r2) − a_h(r1), d_h))`` (:func:`pair_cosine_score`: above ½
  means "r2 is better"), and a 1-D logistic (Platt) calibrator is fit on the held-out scores.

Example:
    >>> import numpy as np
    >>> d = np.array([[1.0, 0.0], [0.0, 2.0]])                    # two heads' directions
    >>> diff = np.array([[[1.0, 0.0], [0.0, -1.0]]])              # one pair: head 0 agrees, head 1 opposes
    >>> float(pair_cosine_score(diff, d)[0])
    0.5
    >>> select_top(np.array([0.6, 0.9, 0.9, 0.7]), 2).tolist()
    [1, 2]

Constraints: binary preference labels; heads come from the per-head activation of one layer or of many stacked on
the heads axis (GENIES ranks heads of all layers together).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from mixprobe._check import checked
from mixprobe.errors import DataError, ShapeError, ZeroVarianceError
from mixprobe.probes.estimators import LogisticProbe, _stratified_split, platt_calibrate
from mixprobe.probes.validation import check_labels, to_numpy


@checked
def pair_differences(X: Any) -> np.ndarray:
    """``a_h(r2) − a_h(r1)`` (``[n, heads, d_head]``) from pairs ``[n, 2, heads, d_head]``."""
    X = np.asarray(to_numpy(X), dtype=np.float64)
    if X.ndim != 4 or X.shape[1] != 2:
        raise ShapeError(f"pairs of per-head activations must have shape [n, 2, heads, d_head], got {list(X.shape)}")
    if not np.isfinite(X).all():
        raise DataError("per-head activations contain NaN or inf; check the capture (dtype overflow?)")
    return X[:, 1] - X[:, 0]


@checked
def head_directions(diff: np.ndarray, y01: np.ndarray, kind: str = "mean",
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """``[heads, d_head]``: per head, the mean of ``a_h(good) − a_h(bad)`` (the difference signed by the label).

    ``kind="pca"`` (LAT's RepE variant) takes instead each unit's first principal component of the differences
    with random signs (the axis the pairs differ along), oriented to agree with the mean; ``kind="random"`` (the
    null) a Gaussian direction at the mean's norm.
    """
    sign = (2 * y01 - 1).astype(np.float64)[:, None, None]
    good_minus_bad = diff * sign
    mean = good_minus_bad.mean(0)
    if kind == "mean":
        return mean
    rng = rng if rng is not None else np.random.default_rng(0)
    if kind == "random":
        r = rng.standard_normal(mean.shape)
        return r / np.linalg.norm(r, axis=-1, keepdims=True) * np.linalg.norm(mean, axis=-1, keepdims=True)
    if kind != "pca":
        raise DataError(f"direction must be 'mean', 'pca' or 'random', got {kind!r}")
    flips = rng.choice([-1.0, 1.0], size=(good_minus_bad.shape[0], 1, 1))
    out = np.empty_like(mean)
    for h in range(mean.shape[0]):
        _, _, vt = np.linalg.svd(good_minus_bad[:, h] * flips[:, 0], full_matrices=False)
        v = vt[0]
        out[h] = v if float(v @ mean[h]) >= 0 else -v
    return out


@checked
def pair_cosine_score(diff: np.ndarray, directions: np.ndarray, heads: Any = None) -> np.ndarray:
    """GENIES' pair score ``½(1 + mean_h cos(diff_h, d_h))`` over ``heads`` (default: all)."""
    idx = np.arange(directions.shape[0]) if heads is None else np.asarray(heads)
    dv, dd = diff[:, idx], directions[idx]
    num = np.einsum("nhd,hd->nh", dv, dd)
    den = np.linalg.norm(dv, axis=-1) * np.linalg.norm(dd, axis=-1)[None]
    cos = num / np.where(den > 0, den, 1.0)
    return 0.5 * (1.0 + cos.mean(1))


@checked
def select_top(accuracy: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest accuracies, best first; ties go to the lower index (a stable sort)."""
    order = np.argsort(-np.asarray(accuracy, dtype=np.float64), kind="stable")
    return np.sort(order[: min(k, len(order))])


@checked
def head_probe_accuracy(diff_fit: np.ndarray, y_fit: np.ndarray, diff_held: np.ndarray, y_held: np.ndarray, *,
                        C: float = 1.0) -> np.ndarray:
    """Per head: held-out accuracy of a logistic probe fit on the sign-symmetrised differences of the fit pairs.

    A head whose differences are constant over the fit pairs (a dead head: e.g. one that attends only to the first
    token) carries no information and gets ½, below every head that carries some."""
    acc = np.empty(diff_fit.shape[1])
    for h in range(diff_fit.shape[1]):
        Xf = np.concatenate([diff_fit[:, h], -diff_fit[:, h]])
        yf = np.concatenate([y_fit, 1 - y_fit])
        try:
            probe = LogisticProbe(C=C).fit(Xf, yf)
        except ZeroVarianceError:
            acc[h] = 0.5
            continue
        acc[h] = float((probe.predict(diff_held[:, h]) == y_held).mean())
    return acc


class HeadMassMeanProbe(ClassifierMixin, BaseEstimator):
    """GENIES MMS over heads (module doc); ``predict_proba(X)[:, 1]`` = P(r2 is the better response).

    Args:
        k: heads kept (GENIES: 16).
        holdout: share of pairs held out to rank heads and fit the calibrator (GENIES: 0.3).
        C: inverse regularisation of the per-head ranking probes.
        random_state: seed of the split (and of the PCA signs / the random null).
        direction: ``"mean"`` (GENIES MMS and LAT), ``"pca"`` (LAT's RepE variant) or ``"random"`` (the null: a
            random direction per unit at the mean difference's norm); see :func:`head_directions`.

    The "heads" axis may hold any units: heads of one or many layers (MMS, CRA) or residual layers (LAT).
    """

    def __init__(self, *, k: int = 16, holdout: float = 0.3, C: float = 1.0, random_state: int | None = 0,
                 direction: str = "mean") -> None:
        self.k = k
        self.holdout = holdout
        self.C = C
        self.random_state = random_state
        self.direction = direction

    def fit(self, X: Any, y: Any) -> HeadMassMeanProbe:
        diff = pair_differences(X)
        self.classes_, y01 = check_labels(y, diff.shape[0])
        if not 0 < self.holdout < 1:
            raise DataError(f"holdout must be in (0, 1), got {self.holdout}")
        if not isinstance(self.k, int) or self.k < 1:
            raise DataError(f"k (heads kept) must be a positive integer, got {self.k!r}")
        fit_idx, held_idx = _stratified_split(y01, self.holdout, self.random_state)
        if np.array_equal(fit_idx, held_idx):
            raise DataError("too few pairs of a class to hold some out; pass more pairs or a smaller holdout")
        rng = np.random.default_rng(self.random_state)
        self.directions_ = head_directions(diff[fit_idx], y01[fit_idx], self.direction, rng)
        self.head_accuracy_ = head_probe_accuracy(diff[fit_idx], y01[fit_idx], diff[held_idx], y01[held_idx],
                                                  C=self.C)
        self.heads_ = select_top(self.head_accuracy_, self.k)
        s = pair_cosine_score(diff[held_idx], self.directions_, self.heads_)
        self.calibration_ = np.array(platt_calibrate(s, y01[held_idx]))
        self.n_heads_in_, self.d_head_ = diff.shape[1:]
        return self

    def score_pairs(self, X: Any) -> np.ndarray:
        """The uncalibrated pair score ``½(1 + mean cos)`` of each pair."""
        check_is_fitted(self)
        diff = pair_differences(X)
        if tuple(diff.shape[1:]) != (self.n_heads_in_, self.d_head_):
            raise ShapeError(f"pairs give {list(diff.shape[1:])} heads × d_head but the probe was fitted on "
                             f"{[self.n_heads_in_, self.d_head_]}")
        return pair_cosine_score(diff, self.directions_, self.heads_)

    def decision_function(self, X: Any) -> np.ndarray:
        a, c = self.calibration_
        return a * self.score_pairs(X) + c

    def predict_proba(self, X: Any) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.stack([1 - p, p], 1)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


__all__ = ["HeadMassMeanProbe", "head_directions", "head_probe_accuracy", "pair_cosine_score", "pair_differences",
           "select_top"]

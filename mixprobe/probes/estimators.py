"""Linear probes with the scikit-learn estimator API: logistic, mass-mean, LAT, CCS and CRA.

Problem: "is concept c linearly readable at site s?" has several standard answers that differ in what they
assume (labels or not, contrast pairs or single inputs) and in how they generalise under distribution shift
(GENIES, arXiv 2311.07723). Users want to swap them in one line and use the tools they already know
(``cross_val_score``, ``GridSearchCV``, ``clone``). Mechanism: five estimators, all binary classifiers with
hyper-parameters in ``__init__`` only and learned state in trailing-underscore attributes:

- :class:`LogisticProbe` — L2 logistic regression, scikit-learn's objective ``C·Σ s_i·logloss_i + ½‖w‖²``
  (intercept unpenalised), solved by preconditioned Newton-CG on CPU, batched Newton on an accelerator
  (:mod:`mixprobe.probes.solver`); fp64 by default.
- :class:`MassMeanProbe` (MMS) — direction ``d = mean(x | y=1) − mean(x | y=0)``; score = projection of
  ``x − midpoint`` on ``d/‖d‖`` (or ``cos(x, d)``, the GENIES pair score, for difference inputs); then a 1-D
  Platt calibrator fit on *held-out* scores (``calibration_fraction`` of the rows is kept out of the direction).
- :class:`LATProbe` — the same read-out with ``variant="mean_diff"`` or ``variant="pca"`` (RepE: the first
  principal component of differences of randomly paired positive/negative rows, sign oriented by the labels);
  :func:`format_with_template` puts inputs inside a stimulus template before capture (a text-level step).
- :class:`CCSProbe` — unsupervised: contrast pairs ``x⁺`` ("… Yes"), ``x⁻`` ("… No"), each set mean-normalised,
  ``p = σ(wᵀx + b)``, loss ``mean(min(p⁺, p⁻)²) + mean((p⁺ − (1 − p⁻))²)``, ``n_restarts`` random starts (run
  as one batch), lowest loss kept; prediction ``½(p⁺ + 1 − p⁻)``. The sign is unidentified:
  ``sign_identified_`` is ``True`` only when labels were passed to ``fit`` and used to orient it.
- :class:`CRAProbe` — contrast-representation mass-mean: ``x⁺ − x⁻`` per pair, then :class:`MassMeanProbe`.

Pair inputs (CCS, CRA) are ``[n, 2, d]`` (``[:, 0]`` = "Yes", ``[:, 1]`` = "No") or ``[n, 2·d]`` (the two
halves concatenated — the form to use with ``cross_val_score``).

Example:
    >>> import numpy as np
    >>> from sklearn.model_selection import cross_val_score
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 400)
    >>> X = rng.normal(size=(400, 8)); X[:, 0] += 3 * (2 * y - 1)
    >>> float(cross_val_score(LogisticProbe(C=1.0), X, y, cv=4).mean()) > 0.95
    True
    >>> mms = MassMeanProbe().fit(X, y)
    >>> int(np.argmax(np.abs(mms.direction_))), mms.score(X, y) > 0.95
    (0, True)

Constraints: binary labels (any two values; ``classes_[1]`` is the positive class). Features are dense
``[n, d]`` arrays or tensors; everything is fitted in torch (CPU or ``device=...``) and predicted in numpy.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from mixprobe._check import checked
from mixprobe.errors import DataError, ShapeError
from mixprobe.probes.solver import newton_cg_logistic, newton_logistic
from mixprobe.probes.validation import check_features, check_labels, check_sample_weight, to_numpy

_DTYPES = {"float64": torch.float64, "float32": torch.float32, "fp64": torch.float64, "fp32": torch.float32}


@checked
def torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float64"``/``"fp32"``/``torch.float32`` → a torch float dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise DataError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]


@checked
def logistic_solver(name: str):
    """The solver behind ``solver=name``: ``"newton-cg"`` (Newton-CG on CPU, batched Newton elsewhere) or
    ``"newton"`` (batched exact Newton everywhere)."""
    if name == "newton-cg":
        return newton_cg_logistic
    if name == "newton":
        return newton_logistic
    raise DataError(f"unknown solver {name!r}; choose 'newton-cg' or 'newton'")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class _LinearProbe(ClassifierMixin, BaseEstimator):
    """Shared predict path: ``decision_function`` → sigmoid → two columns."""

    def _check_X(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = check_features(X, allow_constant=True)
        if X.shape[1] != self.n_features_in_:
            raise ShapeError(f"X has {X.shape[1]} features but the probe was fitted on {self.n_features_in_}")
        return X

    def decision_function(self, X: Any) -> np.ndarray:
        """Logit of the positive class ``classes_[1]`` per row."""
        X = self._check_X(X)
        return X @ self.coef_[0] + self.intercept_[0]

    def predict_proba(self, X: Any) -> np.ndarray:
        """``[n, 2]``: probabilities of ``classes_[0]`` and ``classes_[1]``."""
        p = _sigmoid(self.decision_function(X))
        return np.stack([1.0 - p, p], 1)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy on ``(X, y)`` (weighted by ``sample_weight``): scikit-learn's ``score``, without its
        per-call target-type inspection (a layer sweep scores dozens of probes)."""
        pred = self.predict(X)
        y = to_numpy(y, dtype=None).reshape(-1)
        if y.shape[0] != pred.shape[0]:
            raise ShapeError(f"{pred.shape[0]} feature rows but {y.shape[0]} labels; pass one label per row")
        correct = (pred == y).astype(np.float64)
        if sample_weight is None:
            return float(correct.mean())
        w = check_sample_weight(sample_weight, y.shape[0])
        return float(w @ correct / w.sum())


class LogisticProbe(_LinearProbe):
    """L2-regularised logistic regression (scikit-learn's objective and ``C``), solved by Newton-CG or Newton.

    Args:
        C: inverse regularisation strength: minimises ``C·Σ s_i·logloss_i + ½‖w‖²`` (intercept unpenalised).
        fit_intercept: learn an unpenalised bias.
        max_iter: Newton iterations at most (5–15 is typical).
        tol: stop when ``max|∇f| / (C·Σ s_i) ≤ tol`` (default: 1e-8 in float64, 1e-5 in float32).
        dtype: ``"float64"`` (default, matches scikit-learn tightly) or ``"float32"`` (faster, ~1e-5).
        device: torch device for the solve (``None`` = CPU).
        solver: ``"newton-cg"`` (default; :func:`~mixprobe.probes.solver.newton_cg_logistic`: on CPU one Gram
            (or Nyström sketch) then Hessian-vector products, 1.1–1.5× faster than ``"newton"`` in float64 from
            ``d = 10`` to ``d = 512``, measured; off the CPU the batched Newton) or ``"newton"`` (exact Hessian every
            iteration, :func:`~mixprobe.probes.solver.newton_logistic`). Both minimise the same objective to the
            same ``tol``.
    """

    def __init__(self, C: float = 1.0, *, fit_intercept: bool = True, max_iter: int = 100, tol: float | None = None,
                 dtype: str = "float64", device: str | None = None, solver: str = "newton-cg") -> None:
        self.C = C
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.dtype = dtype
        self.device = device
        self.solver = solver

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> LogisticProbe:
        X = check_features(X)
        self.classes_, y01 = check_labels(y, X.shape[0])
        sw = check_sample_weight(sample_weight, X.shape[0])
        if not self.C > 0:
            raise DataError(f"C must be > 0, got {self.C}")
        solve = logistic_solver(self.solver)
        dt = torch_dtype(self.dtype)
        dev = torch.device(self.device) if self.device else torch.device("cpu")
        swt = None if sample_weight is None else torch.as_tensor(sw)   # unweighted: no weighted copy of X
        res = solve(torch.as_tensor(X, dtype=dt, device=dev)[None], torch.as_tensor(y01), swt, C=float(self.C),
                    fit_intercept=self.fit_intercept, max_iter=self.max_iter, tol=self.tol)
        self._set_fitted(*(a[0] for a in res.numpy()))
        return self

    def _set_fitted(self, coef: np.ndarray, intercept: float, n_iter: int, converged: bool) -> None:
        """The fitted attributes from one site's solution (``coef [d]`` float64)."""
        self.coef_ = np.array(coef, dtype=np.float64).reshape(1, -1)
        self.intercept_ = np.array([float(intercept)])
        self.n_iter_ = int(n_iter)
        self.converged_ = bool(converged)
        self.n_features_in_ = self.coef_.shape[1]


def _stratified_split(y01: np.ndarray, fraction: float, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, held-out) with ``fraction`` of each class held out; no hold-out if a class is too small."""
    rng = np.random.default_rng(seed)
    fit_idx, cal_idx = [], []
    for c in (0.0, 1.0):
        idx = rng.permutation(np.nonzero(y01 == c)[0])
        k = int(round(fraction * idx.size))
        if fraction > 0 and (idx.size < 2 or k == 0 or k == idx.size):
            return np.arange(y01.size), np.arange(y01.size)
        cal_idx.append(idx[:k])
        fit_idx.append(idx[k:])
    if fraction <= 0:
        return np.arange(y01.size), np.arange(y01.size)
    return np.sort(np.concatenate(fit_idx)), np.sort(np.concatenate(cal_idx))


@checked
def platt_calibrate(scores: np.ndarray, y01: np.ndarray) -> tuple[float, float]:
    """``(a, c)`` of the 1-D logistic ``P(y=1 | s) = σ(a·s + c)``, with Platt's smoothed targets.

    Platt (1999) fits against ``(N₊+1)/(N₊+2)`` and ``1/(N₋+2)`` instead of 1/0, which keeps the fit finite on
    separable scores.
    """
    n_pos, n_neg = float(y01.sum()), float((1 - y01).sum())
    t = np.where(y01 > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    scale = float(np.std(scores)) or 1.0
    res = newton_logistic(torch.as_tensor(scores / scale, dtype=torch.float64).reshape(1, -1, 1),
                          torch.as_tensor(t, dtype=torch.float64), C=1e6)
    return float(res.coef[0, 0]) / scale, float(res.intercept[0])


class _DirectionProbe(_LinearProbe):
    """A direction from the data, a 1-D score along it, and a Platt calibrator on held-out scores."""

    score_kind = "projection"

    def _features(self, X: Any) -> np.ndarray:
        return check_features(X)

    def _direction(self, X: np.ndarray, y01: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def _raw_score(self, X: np.ndarray) -> np.ndarray:
        if self.score_kind == "cosine":
            norms = np.linalg.norm(X, axis=1) * np.linalg.norm(self.direction_)
            return X @ self.direction_ / np.where(norms > 0, norms, 1.0)
        return (X - self.midpoint_) @ self.unit_direction_

    def fit(self, X: Any, y: Any) -> _DirectionProbe:
        X = self._features(X)
        self.classes_, y01 = check_labels(y, X.shape[0])
        if not 0.0 <= self.calibration_fraction < 1.0:
            raise DataError(f"calibration_fraction must be in [0, 1), got {self.calibration_fraction}")
        fit_idx, cal_idx = _stratified_split(y01, self.calibration_fraction, self.random_state)
        rng = np.random.default_rng(self.random_state)
        Xf, yf = X[fit_idx], y01[fit_idx]
        self.midpoint_ = 0.5 * (Xf[yf == 1].mean(0) + Xf[yf == 0].mean(0))
        d = self._direction(Xf, yf, rng)
        norm = float(np.linalg.norm(d))
        if norm == 0.0:
            raise DataError("the class means coincide (zero direction); the concept is not mean-separated here")
        self.direction_ = d
        self.direction_norm_ = norm
        self.unit_direction_ = d / norm
        self.n_features_in_ = X.shape[1]
        a, c = platt_calibrate(self._raw_score(X[cal_idx]), y01[cal_idx])
        self.calibration_ = np.array([a, c])
        self.n_calibration_ = int(cal_idx.size) if self.calibration_fraction > 0 else 0
        # linear form of the projection score: logit = a·(x − m)·u + c
        self.coef_ = (a * self.unit_direction_).reshape(1, -1)
        self.intercept_ = np.array([c - a * float(self.midpoint_ @ self.unit_direction_)])
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = self._features_predict(X)
        a, c = self.calibration_
        return a * self._raw_score(X) + c

    def _features_predict(self, X: Any) -> np.ndarray:
        X = to_numpy(X)
        out = self._features_unchecked(X)
        if out.ndim != 2 or out.shape[1] != self.n_features_in_:
            raise ShapeError(f"X gives {list(out.shape)} features but the probe was fitted on {self.n_features_in_}")
        return check_features(out, allow_constant=True)

    def _features_unchecked(self, X: np.ndarray) -> np.ndarray:
        return X


class MassMeanProbe(_DirectionProbe):
    """Mass-mean probe (MMS): class-mean difference direction + Platt calibration on held-out scores.

    Args:
        calibration_fraction: share of each class held out of the direction estimate to fit the calibrator
            (0 = calibrate on the same rows).
        score_type: ``"projection"`` (``(x − midpoint)·d̂``, linear) or ``"cosine"`` (``cos(x, d)``; the GENIES pair
            score, meant for difference inputs such as CRA's).
        random_state: seed of the calibration split.
    """

    def __init__(self, *, calibration_fraction: float = 0.25, score_type: str = "projection",
                 random_state: int | None = 0) -> None:
        self.calibration_fraction = calibration_fraction
        self.score_type = score_type
        self.random_state = random_state

    @property
    def score_kind(self) -> str:  # type: ignore[override]
        if self.score_type not in ("projection", "cosine"):
            raise DataError(f"score_type must be 'projection' or 'cosine', got {self.score_type!r}")
        return self.score_type

    def _direction(self, X, y01, rng):
        return X[y01 == 1].mean(0) - X[y01 == 0].mean(0)


class LATProbe(_DirectionProbe):
    """Linear artificial tomography (RepE) read-out: mean-difference or first PC of paired differences.

    Args:
        variant: ``"mean_diff"`` (same direction as MMS) or ``"pca"`` (first principal component of
            ``x_pos,i − x_neg,π(i)`` over random pairs, each difference sign-flipped at random as in RepE, so the
            component is the axis the pairs differ along; oriented so positives score higher).
        calibration_fraction: as :class:`MassMeanProbe`.
        random_state: seed of the pairing and of the calibration split.
    """

    def __init__(self, *, variant: str = "pca", calibration_fraction: float = 0.25,
                 random_state: int | None = 0) -> None:
        self.variant = variant
        self.calibration_fraction = calibration_fraction
        self.random_state = random_state

    def _direction(self, X, y01, rng):
        mean_diff = X[y01 == 1].mean(0) - X[y01 == 0].mean(0)
        if self.variant == "mean_diff":
            return mean_diff
        if self.variant != "pca":
            raise DataError(f"variant must be 'pca' or 'mean_diff', got {self.variant!r}")
        pos, neg = rng.permutation(np.nonzero(y01 == 1)[0]), rng.permutation(np.nonzero(y01 == 0)[0])
        k = min(pos.size, neg.size)
        diffs = (X[pos[:k]] - X[neg[:k]]) * rng.choice([-1.0, 1.0], size=(k, 1))
        _, _, vt = np.linalg.svd(diffs, full_matrices=False)
        v = vt[0]
        return v if float(v @ mean_diff) >= 0 else -v


@checked
def format_with_template(inputs: Sequence[str], template: str = "{input}", **fields: str) -> list[str]:
    """Put every input into a stimulus template (LAT/RepE), e.g. ``"Consider the {concept} of: {input}"``.

    >>> format_with_template(["2 + 2 = 4"], "Consider the correctness of: {input}\\nThe correctness is")
    ['Consider the correctness of: 2 + 2 = 4\\nThe correctness is']
    """
    if "{input}" not in template:
        raise DataError("the template needs an {input} placeholder")
    return [template.format(input=x, **fields) for x in inputs]


@checked
def split_pairs(X: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(x_yes, x_no)`` from ``[n, 2, d]`` or ``[n, 2·d]`` contrast pairs."""
    X = to_numpy(X)
    if X.ndim == 3 and X.shape[1] == 2:
        return X[:, 0], X[:, 1]
    if X.ndim == 2 and X.shape[1] % 2 == 0 and X.shape[1] > 0:
        d = X.shape[1] // 2
        return X[:, :d], X[:, d:]
    raise ShapeError(
        f"contrast pairs must have shape [n, 2, d] or [n, 2*d] (yes half first), got {list(X.shape)}"
    )


class CRAProbe(_DirectionProbe):
    """Contrast-representation mass-mean: ``x_yes − x_no`` per pair, then a mass-mean probe on the differences.

    ``X`` is ``[n, 2, d]`` or ``[n, 2·d]``; ``coef_`` acts on the difference (``n_features_in_ = d``).
    """

    def __init__(self, *, calibration_fraction: float = 0.25, random_state: int | None = 0) -> None:
        self.calibration_fraction = calibration_fraction
        self.random_state = random_state

    def _features(self, X):
        xp, xn = split_pairs(X)
        pairs = check_features(np.stack([xp, xn], 1), ndim=3)
        return pairs[:, 0] - pairs[:, 1]

    def _features_unchecked(self, X):
        xp, xn = split_pairs(X)
        return xp - xn

    def _direction(self, X, y01, rng):
        return X[y01 == 1].mean(0) - X[y01 == 0].mean(0)


@checked
def ccs_loss(p_pos: Any, p_neg: Any) -> float:
    """CCS objective ``mean(min(p⁺, p⁻)²) + mean((p⁺ − (1 − p⁻))²)`` (confidence + consistency) of probabilities.

    >>> round(ccs_loss([0.9, 0.2], [0.1, 0.7]), 6)       # (0.01 + 0.04)/2 + (0 + 0.01)/2
    0.03
    """
    pp, pn = to_numpy(p_pos), to_numpy(p_neg)
    return float((np.minimum(pp, pn) ** 2).mean() + ((pp - (1.0 - pn)) ** 2).mean())


@checked
def ccs_credence(p_pos: Any, p_neg: Any) -> np.ndarray:
    """CCS prediction ``½(p⁺ + 1 − p⁻)``: the credence that the "yes" side is true.

    >>> [round(float(q), 6) for q in ccs_credence([0.9, 0.2], [0.1, 0.7])]
    [0.9, 0.25]
    """
    return 0.5 * (to_numpy(p_pos) + 1.0 - to_numpy(p_neg))


class CCSProbe(ClassifierMixin, BaseEstimator):
    """Contrast-consistent search (Burns et al. 2022): unsupervised, sign unidentified without labels.

    Args:
        n_restarts: random initialisations (optimised together as one batch); the lowest loss is kept.
        max_iter: Adam steps (full batch).
        lr: Adam learning rate.
        weight_decay: L2 on ``w`` (AdamW-style decoupled decay).
        normalize: ``"mean"`` (subtract each set's mean, the GENIES definition) or ``"mean_std"`` (also divide
            by each set's per-feature std, as in the original code). Predictions use the *training* statistics.
        orient_with_labels: when ``fit`` gets labels, flip the probe so it agrees with them
            (``sign_identified_ = True``); otherwise the labels are ignored.
        random_state: seed of the initialisations.
        device: torch device (``None`` = CPU).
    """

    def __init__(self, *, n_restarts: int = 10, max_iter: int = 1000, lr: float = 1e-2, weight_decay: float = 0.0,
                 normalize: str = "mean", orient_with_labels: bool = True, random_state: int | None = 0,
                 device: str | None = None) -> None:
        self.n_restarts = n_restarts
        self.max_iter = max_iter
        self.lr = lr
        self.weight_decay = weight_decay
        self.normalize = normalize
        self.orient_with_labels = orient_with_labels
        self.random_state = random_state
        self.device = device

    def _normalized(self, X: Any, *, fit: bool) -> tuple[np.ndarray, np.ndarray]:
        xp, xn = split_pairs(X)
        xp = check_features(xp, allow_constant=not fit)
        xn = check_features(xn, allow_constant=not fit)
        if fit:
            if xp.shape[1] == 0:
                raise ShapeError("contrast pairs have zero features")
            self.mean_pos_, self.mean_neg_ = xp.mean(0), xn.mean(0)
            if self.normalize == "mean_std":
                self.std_pos_ = np.where(xp.std(0) > 0, xp.std(0), 1.0)
                self.std_neg_ = np.where(xn.std(0) > 0, xn.std(0), 1.0)
            elif self.normalize != "mean":
                raise DataError(f"normalize must be 'mean' or 'mean_std', got {self.normalize!r}")
            check_features(np.stack([xp, xn], 1), ndim=3)  # zero variance of the contrast differences
        elif xp.shape[1] != self.n_features_in_:
            raise ShapeError(f"pairs have {xp.shape[1]} features but the probe was fitted on {self.n_features_in_}")
        xp, xn = xp - self.mean_pos_, xn - self.mean_neg_
        if self.normalize == "mean_std":
            xp, xn = xp / self.std_pos_, xn / self.std_neg_
        return xp, xn

    def fit(self, X: Any, y: Any = None) -> CCSProbe:
        xp, xn = self._normalized(X, fit=True)
        n, d = xp.shape
        dev = torch.device(self.device) if self.device else torch.device("cpu")
        g = torch.Generator().manual_seed(0 if self.random_state is None else int(self.random_state))
        R = max(1, int(self.n_restarts))
        w = (torch.randn(R, d, generator=g, dtype=torch.float32) / d ** 0.5).to(dev).requires_grad_(True)
        b = torch.zeros(R, device=dev, requires_grad=True)
        tp = torch.as_tensor(xp, dtype=torch.float32, device=dev)
        tn = torch.as_tensor(xn, dtype=torch.float32, device=dev)
        opt = torch.optim.AdamW([w, b], lr=self.lr, weight_decay=self.weight_decay)

        def losses() -> torch.Tensor:
            pp = torch.sigmoid(tp @ w.T + b)          # [n, R]
            pn = torch.sigmoid(tn @ w.T + b)
            return (torch.minimum(pp, pn) ** 2).mean(0) + ((pp - (1 - pn)) ** 2).mean(0)

        for _ in range(int(self.max_iter)):
            opt.zero_grad()
            losses().sum().backward()
            opt.step()
        with torch.no_grad():
            final = losses().cpu().numpy()
        best = int(np.argmin(final))
        self.losses_ = final
        self.loss_ = float(final[best])
        self.coef_ = w.detach()[best].cpu().double().numpy().reshape(1, d)
        self.intercept_ = np.array([float(b.detach()[best])])
        self.n_features_in_ = d
        self.sign_identified_ = False
        self.classes_ = np.array([0, 1])
        if y is not None and self.orient_with_labels:
            self.classes_, y01 = check_labels(y, n)
            q = self._credence(xp, xn)
            if float(np.mean((q > 0.5) == (y01 > 0.5))) < 0.5:
                self.coef_, self.intercept_ = -self.coef_, -self.intercept_
            self.sign_identified_ = True
        return self

    def _credence(self, xp: np.ndarray, xn: np.ndarray) -> np.ndarray:
        pp = _sigmoid(xp @ self.coef_[0] + self.intercept_[0])
        pn = _sigmoid(xn @ self.coef_[0] + self.intercept_[0])
        return ccs_credence(pp, pn)

    def predict_proba(self, X: Any) -> np.ndarray:
        """``[n, 2]``; column 1 is ``½(p⁺ + 1 − p⁻)`` (meaningful up to sign unless ``sign_identified_``)."""
        check_is_fitted(self)
        q = self._credence(*self._normalized(X, fit=False))
        return np.stack([1.0 - q, q], 1)

    def decision_function(self, X: Any) -> np.ndarray:
        q = np.clip(self.predict_proba(X)[:, 1], 1e-12, 1 - 1e-12)
        return np.log(q / (1 - q))

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[(self.predict_proba(X)[:, 1] > 0.5).astype(int)]

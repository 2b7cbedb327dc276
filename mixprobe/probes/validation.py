"""Input checks shared by every probe: named errors instead of silent garbage.

Problem: a probe fitted on NaN features, one class of labels, or constant features still "fits" in most
libraries — it returns a direction of zeros or NaNs, and a layer sweep quietly reports 50 % where the real
problem is a broken capture. Mechanism: every estimator and the batched fitter pass their arrays through
:func:`check_features` and :func:`check_labels`, which turn them into float numpy arrays and raise a named
:class:`~mixprobe.errors.DataError` subclass that says what was wrong and what to do:

==========================  ===============================================================
error                       raised when
==========================  ===============================================================
``EmptyDataError``          no rows or no feature columns
``NonFiniteError``          NaN or ±inf anywhere in the features
``ShapeError``              features and labels disagree on the number of rows, wrong rank
``OneClassError``           the labels hold a single class
``ZeroVarianceError``       every feature column is constant (names the site when given)
``DataError``               more than two classes (probes here are binary)
==========================  ===============================================================

Example:
    >>> import numpy as np
    >>> X = check_features(np.ones((3, 2)) * [[1.0], [2.0], [3.0]])
    >>> X.dtype, X.shape
    (dtype('float64'), (3, 2))
    >>> check_features(np.ones((4, 3)), site="resid_post.2")
    Traceback (most recent call last):
    ...
    mixprobe.errors.ZeroVarianceError: all 3 features are constant across the 4 rows at site 'resid_post.2' ...

Constraints: torch tensors are accepted (moved to the CPU and converted); checks cost one pass over the data.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mixprobe._check import checked
from mixprobe.errors import (ArgumentError, DataError, EmptyDataError, NonFiniteError, OneClassError, ShapeError,
                             ZeroVarianceError)


@checked
def to_numpy(a: Any, dtype: type | None = np.float64) -> np.ndarray:
    """``a`` (numpy array, torch tensor, list) as a numpy array (``dtype`` unless ``None``)."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu()
        if dtype is not None and str(a.dtype) in ("torch.bfloat16", "torch.float16"):
            a = a.float()
        a = a.numpy()
    return _asarray(a, dtype)


def _asarray(a: Any, dtype: type | None) -> np.ndarray:
    """``np.asarray`` whose failures (a lone object, text where numbers go) are named errors."""
    what = "an array (numpy array, torch tensor or nested list of numbers)"
    try:
        out = np.asarray(a, dtype=dtype) if dtype is not None else np.asarray(a)
    except TypeError:
        raise ArgumentError(f"expected {what}, got {type(a).__name__}; pass {what}") from None
    except ValueError as e:
        raise DataError(f"cannot read {type(a).__name__} as an array of numbers ({e}); pass {what}") from None
    if out.dtype == object and out.ndim == 0:           # np.asarray wraps any object: nothing array-like was passed
        raise ArgumentError(f"expected {what}, got {type(a).__name__}; pass {what}")
    return out


@checked
def as_float_array(a: Any) -> np.ndarray:
    """``a`` as a float32 or float64 numpy array, *without a copy* when it already is one (tensors: on the CPU).

    float32/float64 are kept; half precisions become float32; anything else (ints, bools, lists) float64.
    """
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu()
        if str(a.dtype) in ("torch.bfloat16", "torch.float16"):
            a = a.float()
        a = a.numpy()
    a = _asarray(a, None)
    if a.dtype in (np.float32, np.float64):
        return a
    return _asarray(a, np.float32 if a.dtype == np.float16 else np.float64)


def _where(site: str | None) -> str:
    return f" at site {site!r}" if site is not None else ""


@checked
def check_features(X: Any, *, site: str | None = None, ndim: int = 2, allow_constant: bool = False,
                   keep_dtype: bool = False) -> np.ndarray:
    """``X`` as a finite float64 array of rank ``ndim`` with rows and columns; named errors otherwise.

    ``keep_dtype=True`` keeps float32 (and half precisions as float32) instead of converting to float64, and
    does not copy an array that is already float32/float64 (:func:`as_float_array`); the checks are the same.
    """
    X = as_float_array(X) if keep_dtype else to_numpy(X)
    where = _where(site)
    if X.ndim != ndim:
        shape = "[n_rows, n_features]" if ndim == 2 else "[n_rows, 2, n_features] (contrast pairs)"
        raise ShapeError(f"features{where} must have shape {shape}, got an array of shape {list(X.shape)}")
    if X.shape[0] == 0 or X.shape[-1] == 0:
        raise EmptyDataError(f"features{where} are empty (shape {list(X.shape)}); capture some rows first")
    if ndim == 2 and not allow_constant:
        # one pass for both checks: column min and max propagate NaN and show ±inf, and give the range
        lo, hi = X.min(0), X.max(0)
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            _raise_non_finite(X, where)
        scale = max(1.0, float(np.abs(lo).max()), float(np.abs(hi).max()))
        ptp = float((hi.astype(np.float64) - lo.astype(np.float64)).max())
        _check_range(ptp, scale, X, ndim, where)
        return X
    if not np.isfinite(X).all():
        _raise_non_finite(X, where)
    if not allow_constant:
        flat = X.reshape(-1, X.shape[-1]) if ndim == 2 else (X[:, 0] - X[:, 1])
        scale = max(1.0, float(np.abs(flat).max()))
        _check_range(float(np.ptp(flat, axis=0).max()), scale, X, ndim, where)
    return X


@checked
def check_stacked_features(X: np.ndarray, sites: list[str]) -> dict[str, np.ndarray]:
    """:func:`check_features` (``keep_dtype=True``) for every site of a float array ``X[S, n, d]`` in one pass.

    Returns ``{site: X[i]}`` (views, no copy). The checks are vectorised over the sites (a layer sweep of small
    sites costs one pass instead of one call per site); a failing site is re-checked alone for the same named
    error :func:`check_features` raises.
    """
    X = as_float_array(X)
    if X.ndim != 3:
        raise ShapeError(f"stacked features must be [n_sites, n, d], got shape {list(X.shape)}")
    if X.shape[1] == 0 or X.shape[2] == 0:
        raise EmptyDataError(f"features at site {sites[0]!r} are empty (shape {list(X.shape[1:])}); capture some "
                             "rows first")
    lo, hi = X.min(1), X.max(1)                          # [S, d]; NaN propagates, ±inf shows
    with np.errstate(invalid="ignore", over="ignore"):
        ptp = hi.astype(np.float64) - lo                 # NaN or inf wherever a column holds NaN or ±inf
        scale = np.maximum(np.abs(lo), np.abs(hi)).max(1)
        ok = np.isfinite(ptp).all(1) & (ptp.max(1) > 1e-12 * np.maximum(scale, 1.0))
    for i in np.flatnonzero(~ok):
        check_features(X[i], site=sites[i], keep_dtype=True)   # raises the named error
    return {s: X[i] for i, s in enumerate(sites)}


def _raise_non_finite(X: np.ndarray, where: str) -> None:
    bad = ~np.isfinite(X)
    rows = np.unique(np.nonzero(bad)[0])
    raise NonFiniteError(
        f"features{where} contain {int(bad.sum())} NaN/inf values in {rows.size} rows (first rows: "
        f"{rows[:5].tolist()}); drop those rows or fix the capture (fp16 overflow is a common cause)"
    )


def _check_range(ptp: float, scale: float, X: np.ndarray, ndim: int, where: str) -> None:
    if ptp <= 1e-12 * scale:  # constant up to float rounding
        what = "features" if ndim == 2 else "contrast differences (yes − no)"
        raise ZeroVarianceError(
            f"all {X.shape[-1]} {what} are constant across the {X.shape[0]} rows{where} "
            "(a dead site, or the same activation captured for every row?); check the site and positions"
        )


@checked
def check_labels(y: Any, n_rows: int, *, site: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, y01)``: the two sorted class values and the labels as 0/1 floats (1 = ``classes[1]``)."""
    y = to_numpy(y, dtype=None).reshape(-1) if y is not None else None
    where = _where(site)
    if y is None or y.size == 0:
        raise EmptyDataError(f"no labels{where}; pass one label per row")
    if y.shape[0] != n_rows:
        raise ShapeError(f"{n_rows} feature rows but {y.shape[0]} labels{where}; pass one label per row")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise NonFiniteError(f"labels{where} contain NaN/inf; drop those rows")
    classes = np.unique(y)
    if classes.size < 2:
        raise OneClassError(
            f"labels{where} hold one class only ({classes.tolist()}); a probe needs examples of both classes "
            "(check the label column, or that the prompt set covers both modes)"
        )
    if classes.size > 2:
        raise DataError(
            f"labels{where} hold {classes.size} classes ({classes[:6].tolist()}...); mixprobe probes are binary — "
            "fit one probe per class (one-vs-rest)"
        )
    return classes, (y == classes[1]).astype(np.float64)


@checked
def check_sample_weight(sample_weight: Any, n_rows: int) -> np.ndarray:
    """Non-negative finite per-row weights (ones when ``None``)."""
    if sample_weight is None:
        return np.ones(n_rows)
    w = to_numpy(sample_weight).reshape(-1)
    if w.shape[0] != n_rows:
        raise ShapeError(f"{n_rows} rows but {w.shape[0]} sample weights; pass one weight per row")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise DataError("sample weights must be finite, non-negative and not all zero")
    return w

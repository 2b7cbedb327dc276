"""mixprobe.probes.validation: a named error for every bad input, raised before any fit, naming the site."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from probe_data import pairs, planted

from mixprobe.errors import (DataError, EmptyDataError, NonFiniteError, OneClassError, ShapeError,
                             ZeroVarianceError)
from mixprobe.probes import CCSProbe, CRAProbe, LATProbe, LogisticProbe, MassMeanProbe, fit_probes
from mixprobe.probes.validation import check_features, check_stacked_features

SINGLE = [LogisticProbe, MassMeanProbe, LATProbe]


@pytest.mark.parametrize("cls", SINGLE)
def test_one_class_labels(cls):
    X, _, _ = planted(n=50)
    with pytest.raises(OneClassError, match="one class"):
        cls().fit(X, np.ones(50))


@pytest.mark.parametrize("cls", SINGLE)
def test_nan_features(cls):
    X, y, _ = planted(n=50)
    X[3, 2] = np.nan
    X[7, 0] = np.inf
    with pytest.raises(NonFiniteError, match="NaN/inf"):
        cls().fit(X, y)


@pytest.mark.parametrize("cls", SINGLE)
def test_shape_mismatch(cls):
    X, y, _ = planted(n=50)
    with pytest.raises(ShapeError, match="50 feature rows but 49 labels"):
        cls().fit(X, y[:49])


@pytest.mark.parametrize("cls", SINGLE)
def test_zero_variance(cls):
    _, y, _ = planted(n=50)
    with pytest.raises(ZeroVarianceError, match="all 4 features are constant"):
        cls().fit(np.full((50, 4), 3.0), y)


@pytest.mark.parametrize("cls", SINGLE)
def test_empty(cls):
    with pytest.raises(EmptyDataError):
        cls().fit(np.zeros((0, 4)), np.zeros(0))


def test_errors_of_pair_probes_and_batched():
    X, t, _ = pairs(n=60)
    with pytest.raises(ShapeError, match="contrast pairs"):
        CCSProbe().fit(np.zeros((10, 3, 4)))
    with pytest.raises(ZeroVarianceError):
        CRAProbe().fit(np.stack([X[:, 0], X[:, 0] - 1.0], 1), t)     # yes − no is constant
    with pytest.raises(OneClassError):
        CRAProbe().fit(X, np.zeros(60))
    bad = X.copy()
    bad[0, 1, 0] = np.nan
    with pytest.raises(NonFiniteError):
        CCSProbe().fit(bad)
    rng = np.random.default_rng(0)
    feats = {"resid_post.0": rng.normal(size=(30, 4)), "resid_post.1": np.ones((30, 4))}
    with pytest.raises(ZeroVarianceError, match="resid_post.1"):      # says which site
        fit_probes(feats, rng.integers(0, 2, 30))
    with pytest.raises(DataError, match="3 classes"):
        LogisticProbe().fit(rng.normal(size=(30, 4)), np.arange(30) % 3)
    with pytest.raises(ShapeError, match="features but the probe was fitted on 4"):
        LogisticProbe().fit(rng.normal(size=(30, 4)), np.arange(30) % 2).predict(rng.normal(size=(3, 5)))
    with pytest.raises(DataError, match="C must be > 0"):
        fit_probes(feats["resid_post.0"][None], np.arange(30) % 2, C=0.0)


def test_check_features_keep_dtype_one_pass():
    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    out = check_features(X, keep_dtype=True)
    assert out.dtype == np.float32 and np.shares_memory(out, X)        # no copy
    assert check_features(X).dtype == np.float64                      # the default still converts
    assert check_features(torch.as_tensor(X).half(), keep_dtype=True).dtype == np.float32
    for bad in (np.nan, np.inf, -np.inf):
        Z = X.copy()
        Z[7, 2] = bad
        with pytest.raises(NonFiniteError, match="1 NaN/inf values in 1 rows"):
            check_features(Z, keep_dtype=True)
        with pytest.raises(NonFiniteError):
            check_features(Z, keep_dtype=True, allow_constant=True)
    C = np.full((50, 4), 1e6, dtype=np.float32)
    with pytest.raises(ZeroVarianceError, match="site 's'"):
        check_features(C, keep_dtype=True, site="s")
    C[3, 1] += 1.0
    assert check_features(C, keep_dtype=True) is C                    # one column varies: not constant


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stacked_array_checked_in_one_pass_names_the_site(dtype):
    """A stacked ``[S, n, d]`` array is validated for all sites at once: same named errors, the failing site named."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4, 40, 6)).astype(dtype)
    y = np.arange(40) % 2
    out = check_stacked_features(X, ["a", "b", "c", "d"])
    assert list(out) == ["a", "b", "c", "d"] and all(np.shares_memory(v, X) for v in out.values())
    for bad in (np.nan, np.inf, -np.inf):
        Z = X.copy()
        Z[2, 5, 3] = bad
        with pytest.raises(NonFiniteError, match="site 'c' contain 1 NaN/inf"):
            fit_probes(Z, y, sites=["a", "b", "c", "d"])
    Z = X.copy()
    Z[3] = 2.5                                                        # a dead site
    with pytest.raises(ZeroVarianceError, match="site 'd'"):
        fit_probes(Z, y, sites=["a", "b", "c", "d"])
    Z[3, :, 1] = np.linspace(0, 1, 40)                                # one varying column: fine
    assert len(fit_probes(Z, y)) == 4
    with pytest.raises(EmptyDataError):
        fit_probes(np.zeros((2, 40, 0), dtype=dtype), y)

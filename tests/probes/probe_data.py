"""Synthetic data shared by the probe tests: planted Gaussian blobs and contrast pairs."""
from __future__ import annotations

import numpy as np


def planted(n=600, d=12, sep=2.0, seed=0, offset=5.0):
    """Gaussian blobs separated along a random unit direction u, plus a constant offset (unscaled features)."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)) + offset + np.outer(2 * y - 1, u) * sep
    return X, y, u


def pairs(n=600, d=16, seed=0):
    """Contrast pairs: truth t moves x⁺ along +v and x⁻ along −v (or the reverse); a big 'Yes'/'No' token
    direction w separates the two sets regardless of truth (mean normalisation must remove it)."""
    rng = np.random.default_rng(seed)
    v, w = np.linalg.qr(rng.normal(size=(d, 2)))[0].T
    t = rng.integers(0, 2, n)
    base = rng.normal(size=(n, d))
    sgn = (2 * t - 1)[:, None]
    xp = base + 2.0 * sgn * v + 6.0 * w + 0.3 * rng.normal(size=(n, d))
    xn = base - 2.0 * sgn * v - 6.0 * w + 0.3 * rng.normal(size=(n, d))
    return np.stack([xp, xn], 1), t, v

"""Intervals for mixture statistics: Wilson for pooled proportions, prompt bootstrap for means and their maximum.

Problem: a verdict computed from finitely many prompts (and, for the sampled estimator, finitely many
completions) must say how sure it is; a statistic whose interval straddles a threshold cannot decide. Mechanism:

- :func:`clopper_pearson` (used for the per-checkpoint statistics of a sampled view: responsibilities, off-mixture
  share, forced outcome, pooled over a cue's prompts — pooling makes it conservative for the mean over prompts) and
  :func:`wilson` — binomial intervals of ``k`` successes in ``n`` trials.
- :func:`bootstrap_max` — per-prompt values in several *cells* (a cue, or a (component, cue) pair); each cell's
  mean, and the percentile interval of the **maximum over cells** from resampling prompts within each cell
  (what the verdict thresholds: the largest gate shift over cues, the largest component change over cells).
- :func:`sampled_tv` — per prompt, the total-variation distance between two empirical distributions of
  completions: raw (the estimate for samples drawn with common random numbers), its permutation null (pool the two
  samples, split at random: the TV independent sampling noise alone produces) and a bootstrap bias-corrected
  estimate for independent samples.

Example:
    >>> lo, hi = wilson(45, 100)
    >>> round(lo, 3), round(hi, 3)
    (0.356, 0.548)
    >>> import numpy as np
    >>> s = bootstrap_max({"A": np.array([0.1, 0.2, 0.3]), "B": np.array([0.5, 0.5, 0.5])}, seed=0)
    >>> s.point, s.lo, s.hi, s.argmax
    (0.5, 0.5, 0.5, 'B')
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm

from mixprobe._check import checked


@dataclass(frozen=True)
class Stat:
    """A point estimate with its interval (``lo``, ``hi``) at ``confidence``; ``argmax`` names the cell."""

    point: float
    lo: float
    hi: float
    confidence: float = 0.95
    argmax: str = ""

    @classmethod
    def exact(cls, x: float) -> Stat:
        return cls(float(x), float(x), float(x), 1.0)

    def to_dict(self) -> dict:
        return asdict(self)


@checked
def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (``(0, 1)`` when ``n`` is 0)."""
    if n <= 0:
        return 0.0, 1.0
    z = float(norm.ppf(0.5 + confidence / 2))
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


@checked
def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper–Pearson) binomial interval: conservative everywhere, also at ``k`` = 0, 1 or ``n``,
    where Wilson's lower bound is too high (one hit in 784 draws of a 1e-4 event is not rare enough to exclude it).
    """
    from scipy.stats import beta

    if n <= 0:
        return 0.0, 1.0
    a = 1 - confidence
    lo = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


@checked
def bootstrap_max(cells: dict[str, np.ndarray], *, confidence: float = 0.95, n_boot: int = 2000,
                  seed: int = 0, clip_low: float | None = None) -> Stat:
    """Max over cells of the cell mean, with a percentile interval from resampling prompts within each cell.

    NaN values (e.g. prompts where a sampled gate is undefined) are dropped per cell; ``clip_low`` clips the
    point and the interval from below (TV estimates after null subtraction are clipped at 0).
    """
    rng = np.random.default_rng(seed)
    means, boots, names = [], [], []
    for name, v in cells.items():
        v = np.asarray(v, dtype=np.float64)
        v = v[~np.isnan(v)]
        if not len(v):
            continue
        names.append(name)
        means.append(float(v.mean()))
        boots.append(v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(1))
    if not names:
        return Stat(float("nan"), float("nan"), float("nan"), confidence)
    bmax = np.max(np.stack(boots), axis=0)
    a = (1 - confidence) / 2
    point, lo, hi = max(means), float(np.quantile(bmax, a)), float(np.quantile(bmax, 1 - a))
    lo, hi = min(lo, point), max(hi, point)
    if clip_low is not None:
        point, lo, hi = max(point, clip_low), max(lo, clip_low), max(hi, clip_low)
    return Stat(point, lo, hi, confidence, names[int(np.argmax(means))])


@checked
def bootstrap_tv_of_means(cells: dict[str, tuple[np.ndarray, np.ndarray]], *, confidence: float = 0.95,
                          n_boot: int = 2000, seed: int = 0) -> Stat:
    """Max over cells of ``TV(mean_x a(x), mean_x b(x))`` for per-prompt distributions ``a``, ``b`` (``[n, K]``),
    with a percentile interval from resampling prompts within each cell (rows with a NaN in either are dropped).

    This is the gate shift the verdict thresholds: how far training moved the cue-averaged gate (the
    responsibilities). It is estimable from samples without the upward bias of per-prompt TVs.
    """
    rng = np.random.default_rng(seed)
    pts, boots, names = [], [], []
    for name, (a, b) in cells.items():
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        keep = ~(np.isnan(a).any(1) | np.isnan(b).any(1))
        a, b = a[keep], b[keep]
        if not len(a):
            continue
        names.append(name)
        pts.append(0.5 * float(np.abs(a.mean(0) - b.mean(0)).sum()))
        idx = rng.integers(0, len(a), size=(n_boot, len(a)))
        boots.append(0.5 * np.abs(a[idx].mean(1) - b[idx].mean(1)).sum(-1))
    if not names:
        return Stat(float("nan"), float("nan"), float("nan"), confidence)
    bmax = np.max(np.stack(boots), axis=0)
    q = (1 - confidence) / 2
    point = max(pts)
    lo, hi = min(float(np.quantile(bmax, q)), point), max(float(np.quantile(bmax, 1 - q)), point)
    return Stat(point, lo, hi, confidence, names[int(np.argmax(pts))])


def _tv_counts(a: Counter, b: Counter, na: int, nb: int) -> float:
    return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in set(a) | set(b))


@checked
def sampled_tv(xs: list[str], ys: list[str], *, n_perm: int = 8, rng: np.random.Generator | None = None
               ) -> tuple[float, float, float]:
    """``(raw, null, corrected)`` for two samples of completions (or component labels) of one prompt.

    ``raw``: TV between the two empirical distributions. When the two samples were drawn with common random numbers
    (the same seed and batch layout, as :func:`~mixprobe.mixture.verdict.assess` does), identical distributions give
    identical samples and ``raw`` estimates the change itself: for a two-way choice it is the share of draws that
    flipped, unbiased for ``|p − q|``. ``null``: the mean TV over ``n_perm`` random splits of the pooled samples —
    what *independent* sampling noise alone gives. ``corrected``: the bootstrap bias correction for independent
    samples, ``2·raw − mean(TV of resampled pairs)``; it removes part of the upward bias (about 0.08 remains at a
    50/50 choice with 16 draws each), so independent samples need many more draws than coupled ones.
    NaNs when a sample is empty.
    """
    if not xs or not ys:
        return float("nan"), float("nan"), float("nan")
    rng = rng or np.random.default_rng(0)
    raw = _tv_counts(Counter(xs), Counter(ys), len(xs), len(ys))
    xa, ya = np.array(xs, dtype=object), np.array(ys, dtype=object)
    pool = np.concatenate([xa, ya])
    null = boot = 0.0
    for _ in range(n_perm):
        perm = rng.permutation(len(pool))
        a, b = pool[perm[: len(xs)]], pool[perm[len(xs):]]
        null += _tv_counts(Counter(a.tolist()), Counter(b.tolist()), len(a), len(b))
        a, b = xa[rng.integers(0, len(xa), len(xa))], ya[rng.integers(0, len(ya), len(ya))]
        boot += _tv_counts(Counter(a.tolist()), Counter(b.tolist()), len(a), len(b))
    return raw, null / n_perm, 2 * raw - boot / n_perm

"""Fit one probe per site (layer) in one call, and sweep held-out accuracy across layers.

Problem: "where is the mode decodable?" means a probe per (site, layer) — 2·n_layers probes or more per
checkpoint, on the same rows. Looping over scikit-learn fits is slow, and each loop reinvents the split and the
bookkeeping. Mechanism: :func:`fit_probes` stacks the sites into ``X[S, n, d]`` and fits every logistic probe in
one solver call (:mod:`mixprobe.probes.solver`: Newton-CG site by site on CPU threads, one batched Newton on a
GPU; against loops of scikit-learn fits see ``benchmarks/results/probes.md``), then hands back ordinary fitted
:class:`~mixprobe.probes.estimators.LogisticProbe` objects (one per site) and a per-site summary. Other estimators
(``"mass_mean"``, ``"lat"``, or any scikit-learn classifier instance) are cloned and fitted per site.
:func:`layer_sweep` adds one stratified train/test split shared by all sites and returns the held-out accuracy
curve.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 300)
    >>> X = {f"resid_post.{i}": rng.normal(size=(300, 16)) + i * np.outer(2 * y - 1, np.eye(16)[0])
    ...      for i in range(3)}
    >>> sweep = layer_sweep(X, y, C=1.0)
    >>> [round(a, 1) for a in sweep.accuracy.values()][0] < 0.7, sweep.best_site
    (True, 'resid_post.2')

Constraints: every site has the same rows (same ``n``) and the same width ``d`` (pass a dict with different
widths and each width group is solved as its own batch). Features are converted to the solver dtype
(float32 by default here: ~1e-5 agreement with float64, 2× faster, half the memory).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.base import clone

from mixprobe._check import checked
from mixprobe.errors import DataError, ShapeError
from mixprobe.probes.estimators import LATProbe, LogisticProbe, MassMeanProbe, logistic_solver, torch_dtype
from mixprobe.probes.validation import (as_float_array, check_features, check_labels, check_sample_weight,
                                        check_stacked_features, to_numpy)

ESTIMATORS = {"logistic": LogisticProbe, "mass_mean": MassMeanProbe, "lat": LATProbe}


@dataclass
class ProbeFits:
    """Fitted probes per site plus what the fit reports per site (train accuracy, iterations, convergence)."""

    probes: dict[str, Any]
    summary: dict[str, dict[str, float]]

    def __getitem__(self, site: str) -> Any:
        return self.probes[site]

    def __iter__(self):
        return iter(self.probes)

    def __len__(self) -> int:
        return len(self.probes)


@dataclass
class LayerSweep:
    """Held-out accuracy per site from one shared train/test split."""

    accuracy: dict[str, float]
    train_accuracy: dict[str, float]
    probes: dict[str, Any]
    train_index: np.ndarray
    test_index: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best_site(self) -> str:
        return max(self.accuracy, key=self.accuracy.__getitem__)

    def curve(self) -> list[tuple[str, float]]:
        """``[(site, held-out accuracy)]`` in site order (ready for a plot)."""
        return list(self.accuracy.items())

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "train_accuracy": self.train_accuracy, "best_site": self.best_site,
                "n_train": int(self.train_index.size), "n_test": int(self.test_index.size), **self.extra}


@checked
def as_site_dict(X: Any, sites: Sequence[str] | None = None) -> dict[str, Any]:
    """``{site: [n, d]}`` from a dict, or from an array/tensor ``[S, n, d]`` (sites named ``"0"``… or ``sites``)."""
    if isinstance(X, Mapping):
        if not X:
            raise DataError("no sites to fit; pass {site: features[n, d]} with at least one site")
        return dict(X)
    shape = tuple(X.shape) if hasattr(X, "shape") else np.shape(X)
    if len(shape) != 3:
        raise ShapeError(f"stacked features must be [n_sites, n, d], got shape {list(shape)}")
    names = list(sites) if sites is not None else [str(i) for i in range(shape[0])]
    if len(names) != shape[0]:
        raise ShapeError(f"{len(names)} site names for {shape[0]} stacked sites")
    if shape[0] == 0:
        raise DataError("no sites to fit (the first axis is empty)")
    return {name: X[i] for i, name in enumerate(names)}


def _stack(X: Any, checked: dict[str, np.ndarray], dtype: torch.dtype,
           device: torch.device) -> tuple[list[list[str]], list[torch.Tensor]]:
    """Group sites by width; one stacked ``[k, n, d]`` tensor per width.

    A stacked input (array or tensor ``[S, n, d]``) is used as it is — no copy when it already has the solver
    dtype and is on the device (any strides: the solver reads each site once into its own centred buffer); a
    dict of sites is copied once into one buffer (the dtype conversion happens in that copy).
    """
    groups: dict[int, list[str]] = {}
    for s, x in checked.items():
        groups.setdefault(int(x.shape[-1]), []).append(s)
    if not isinstance(X, Mapping):
        src = X.detach() if isinstance(X, torch.Tensor) else as_float_array(X)
        return [list(checked)], [torch.as_tensor(src, dtype=dtype, device=device)]
    names, stacks = [], []
    for ss in groups.values():
        first = checked[ss[0]]
        buf = torch.empty((len(ss), *first.shape), dtype=dtype)
        view = buf.numpy()
        for i, s in enumerate(ss):
            view[i] = checked[s]
        names.append(ss)
        stacks.append(buf.to(device))
    return names, stacks


def _per_site_C(C: Any, sites: list[str]) -> dict[str, float]:
    """``{site: C}`` from one value, a mapping over the sites, or one value per site (each > 0)."""
    if isinstance(C, Mapping):
        missing = [s for s in sites if s not in C]
        if missing:
            raise DataError(f"C has no value for sites {missing}; give every site one, or one C for all")
        out = {s: float(C[s]) for s in sites}
    elif isinstance(C, (int, float, np.floating, np.integer)):
        out = dict.fromkeys(sites, float(C))
    else:
        vals = [float(c) for c in C]
        if len(vals) != len(sites):
            raise DataError(f"{len(vals)} values of C for {len(sites)} sites; give one per site (or one for all)")
        out = dict(zip(sites, vals))
    bad = {s: c for s, c in out.items() if not c > 0}
    if bad:
        raise DataError(f"C must be > 0, got {bad}")
    return out


@checked
def fit_probes(
    X: Any,
    y: Any,
    *,
    estimator: str | Any = "logistic",
    C: float | Mapping[str, float] | Sequence[float] = 1.0,
    sites: Sequence[str] | None = None,
    sample_weight: Any = None,
    fit_intercept: bool = True,
    max_iter: int = 100,
    tol: float | None = None,
    dtype: str = "float32",
    device: str | None = None,
    solver: str = "newton-cg",
) -> ProbeFits:
    """Fit one probe per site: ``X`` is ``{site: [n, d]}`` or ``[n_sites, n, d]`` (numpy or torch), ``y`` ``[n]``.

    ``estimator="logistic"`` solves all sites in one solver call (``C``, ``fit_intercept``,
    ``max_iter``, ``tol``, ``dtype``, ``device`` apply; ``C`` is one value, ``{site: C}`` or one value per site in
    site order, e.g. each site's cross-validated strength); ``"mass_mean"``, ``"lat"`` or an estimator instance are
    cloned and fitted per site. Returns :class:`ProbeFits` (``.probes[site]``, ``.summary[site]``).

    ``solver``: ``"newton-cg"`` (default; :func:`~mixprobe.probes.solver.newton_cg_logistic`: on CPU one Gram or
    Nyström sketch per site, then Hessian-vector products, sites on ``torch.get_num_threads()`` threads; on a GPU the
    batched Newton) or ``"newton"`` (exact Hessian every iteration, all sites in one batch,
    :func:`~mixprobe.probes.solver.newton_logistic`). Both minimise the same objective to the same ``tol``.

    For the batched logistic fit, features are validated in their own float dtype (no float64 copy), a stacked
    array/tensor already in the solver dtype is solved in place (no copy), and ``summary[site]["train_accuracy"]``
    comes from the solver's final margins on the training rows (computed in the solver dtype).
    """
    feats = as_site_dict(X, sites)
    batched = isinstance(estimator, str) and estimator == "logistic"
    # the batched solver converts to its own dtype: validate in the input's float dtype, without a float64 copy
    if batched and isinstance(X, np.ndarray) and X.dtype in (np.float32, np.float64):
        checked = check_stacked_features(X, list(feats))         # one vectorised pass over every site
    else:
        checked = {s: check_features(x, site=s, keep_dtype=batched) for s, x in feats.items()}
    n = next(iter(checked.values())).shape[0]
    for s, x in checked.items():
        if x.shape[0] != n:
            raise ShapeError(f"site {s!r} has {x.shape[0]} rows but the first site has {n}; sites must share rows")
    classes, y01 = check_labels(y, n)
    sw = check_sample_weight(sample_weight, n)
    probes: dict[str, Any] = {}
    summary: dict[str, dict[str, float]] = {}
    if isinstance(estimator, str) and estimator == "logistic":
        c_of = _per_site_C(C, list(feats))
        solve = logistic_solver(solver)
        dt = torch_dtype(dtype)
        dev = torch.device(device) if device else torch.device("cpu")
        names, stacks = _stack(X, checked, dt, dev)
        yt = torch.as_tensor(y01)
        swt = None if sample_weight is None else torch.as_tensor(sw)   # unweighted: no per-site weighted copy
        hit = {}
        for ss, Xs in zip(names, stacks):
            res = solve(Xs, yt, swt, C=[c_of[s] for s in ss], fit_intercept=fit_intercept, max_iter=max_iter,
                        tol=tol)
            # train accuracy from the solver's final margins (no second pass over the features)
            correct = ((res.margin.cpu().numpy() > 0) == (y01 > 0.5)).mean(1)
            sol = res.numpy()                               # every site's solution moved to numpy at once
            for i, s in enumerate(ss):
                p = LogisticProbe(C=c_of[s], fit_intercept=fit_intercept, max_iter=max_iter, tol=tol, dtype=dtype,
                                  device=device, solver=solver)
                p.classes_ = classes
                p._set_fitted(*(a[i] for a in sol))
                probes[s] = p
                hit[s] = float(correct[i])
            del Xs
        for s in feats:  # keep the caller's site order
            p = probes[s]
            summary[s] = {"train_accuracy": hit[s], "n_iter": p.n_iter_, "converged": p.converged_}
        return ProbeFits({s: probes[s] for s in feats}, summary)
    if isinstance(estimator, str):
        if estimator not in ESTIMATORS:
            raise DataError(f"unknown estimator {estimator!r}; choose one of {sorted(ESTIMATORS)} or pass an instance")
        template = ESTIMATORS[estimator]()
    else:
        template = estimator
    yy = to_numpy(y, None).reshape(-1)
    for s, x in checked.items():
        p = clone(template)
        p.fit(x, yy) if sample_weight is None else p.fit(x, yy, sample_weight=sw)
        probes[s] = p
        summary[s] = {"train_accuracy": float(np.mean(p.predict(x) == yy))}
    return ProbeFits(probes, summary)


@checked
def train_test_indices(y: Any, *, test_size: float = 0.25, seed: int = 0,
                       groups: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test row indices (by label), or by ``groups`` when given (all rows of a group together)."""
    yy = to_numpy(y, None).reshape(-1)
    if not 0 < test_size < 1:
        raise DataError(f"test_size must be in (0, 1), got {test_size}")
    rng = np.random.default_rng(seed)
    if groups is not None:
        g = to_numpy(groups, None).reshape(-1)
        uniq = rng.permutation(np.unique(g))
        k = max(1, int(round(test_size * uniq.size)))
        in_test = np.isin(g, uniq[:k])
        return np.nonzero(~in_test)[0], np.nonzero(in_test)[0]
    train, test = [], []
    for c in np.unique(yy):
        idx = rng.permutation(np.nonzero(yy == c)[0])
        k = int(round(test_size * idx.size))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


@checked
def layer_sweep(
    X: Any,
    y: Any,
    *,
    test_size: float = 0.25,
    seed: int = 0,
    groups: Any = None,
    sites: Sequence[str] | None = None,
    engine: Any = "local",
    address: str | None = None,
    **fit_kwargs: Any,
) -> LayerSweep:
    """Held-out accuracy per site: one shared stratified split, :func:`fit_probes` on the train rows.

    ``groups`` (e.g. prompt ids) keeps all rows of a group on the same side of the split. ``fit_kwargs`` go to
    :func:`fit_probes` (``estimator``, ``C``, ``dtype``, ``device``, …).

    ``engine="ray"`` (or a :class:`~mixprobe.distributed.RayEngine`; cluster at ``address``, a local one without
    it) fits groups of sites as Ray tasks on the same split and gathers the same sweep: on the CPU the solver fits
    each site on its own, so a site's probe does not depend on which sites share its task (a GPU fit, which
    batches the sites' Newton steps, agrees to the solver's tolerance).
    """
    from mixprobe.distributed import resolve_engine

    eng = resolve_engine(engine, address)
    feats = as_site_dict(X, sites)
    yy = to_numpy(y, None).reshape(-1)
    tr, te = train_test_indices(yy, test_size=test_size, seed=seed, groups=groups)
    if te.size == 0 or tr.size == 0:
        raise DataError(f"the split left {tr.size} train and {te.size} test rows; pass more rows or a larger test_size")
    if eng is None:
        acc, train_acc, probes = sweep_sites(feats, yy, tr, te, fit_kwargs)
    else:
        from mixprobe.distributed import connect, run_tasks, slots, split

        ray = connect(eng)
        names = list(feats)
        chunks = split(names, size=eng.chunk) if eng.chunk else split(names, slots(ray, eng))
        yref, trref, teref = ray.put(yy), ray.put(tr), ray.put(te)
        args = [({s: feats[s] for s in ch}, yref, trref, teref, fit_kwargs) for ch in chunks]
        acc, train_acc, probes = {}, {}, {}
        for a, t, p in run_tasks(ray, eng, sweep_sites, args, desc="probe sweep"):
            acc |= a
            train_acc |= t
            probes |= p
    return LayerSweep(acc, train_acc, probes, tr, te)


@checked
def sweep_sites(feats: Mapping[str, Any], yy: np.ndarray, tr: np.ndarray, te: np.ndarray,
                fit_kwargs: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, float], dict[str, Any]]:
    """The work of :func:`layer_sweep` on some sites: ``(held-out accuracy, train accuracy, probes)`` per site."""
    fits = fit_probes({s: x[tr] for s, x in feats.items()}, yy[tr], **fit_kwargs)
    acc = {s: float(fits.probes[s].score(to_numpy(feats[s])[te], yy[te])) for s in feats}
    train_acc = {s: fits.summary[s]["train_accuracy"] for s in feats}
    return acc, train_acc, fits.probes

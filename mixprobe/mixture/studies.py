"""Ready-made studies on a checkpoint series of an organism: probe layer sweep, gate readout, steering dose-response.

Problem: the three questions users ask first — *where is the expressed policy readable?*, *does the gate readout
track the model's own choice across the series?*, *does steering along the selection direction switch the
policy?* — each take a page of glue (datasets, splits, probes, evaluation). The report, the CLI (``mixprobe
probe`` / ``mixprobe steer``) and the notebooks all run the same code from here.
Mechanism:

- :func:`probe_layer_sweep` — per checkpoint, a logistic probe per site on the answer-position activations
  (:func:`~mixprobe.mixture.gate.expressed_dataset`), fit on half of the prompts and scored on the other half
  (prompt-level split: a prompt's completions never straddle it); features z-scored per site.
- :func:`gate_readout_study` — a soft-label logistic probe (each training row twice, weighted by the model's own
  ``P(m1|x)`` and ``P(m2|x)``) fit on the last-prompt-token activations of every checkpoint, held-out prompts
  scored; per (checkpoint, tag) the mean readout next to the *sampled* frequency of ``m1`` from the series'
  evaluation, and their Spearman correlation.
- :func:`steering_dose_response` — the readout-defined selection direction
  (:func:`~mixprobe.mixture.gate.readout_direction`, at ``final_norm``, last prompt token) added with strength α
  for each α of a grid; sampled accuracy per tag and mode frequency at each α (``mixprobe.train.evaluate``).

Example::

    from mixprobe.train.zoo import trained_organism
    from mixprobe.mixture.studies import steering_dose_response
    series = trained_organism(seed=0)
    rows = steering_dose_response(series, series.last("rl").name, toward="m2", alphas=[0, 4, 8, 12])

Constraints: any task (a series names its task, or pass ``task=``); the dose-response needs signature tokens;
probes need two classes per split.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixprobe.errors import DataError


def _checkpoints(series, checkpoints, *, trained_only: bool = False):
    if checkpoints is None:
        # planted_* phases (mixprobe.train.planted) are hand-made edits, not training: left out when asked
        return [c.name for c in series.checkpoints
                if not (trained_only and c.phase.startswith("planted_"))]
    names = {c.name for c in series.checkpoints}
    missing = [c for c in checkpoints if c not in names]
    if missing:
        raise DataError(f"checkpoints {missing} are not in the series; it has {sorted(names)}")
    return list(checkpoints)


def _prompt_split(n_prompts: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.RandomState(seed).permutation(n_prompts)
    return np.sort(perm[: n_prompts // 2]), np.sort(perm[n_prompts // 2:])


def default_sites(n_layers: int) -> list[str]:
    """``embed``, ``resid_post.0 … resid_post.{L-1}``: the residual stream after each block."""
    return ["embed"] + [f"resid_post.{i}" for i in range(n_layers)]


@dataclass
class ProbeSweep:
    """Held-out accuracy per (checkpoint, site)."""

    sites: list[str]
    accuracy: dict[str, dict[str, float]]          # checkpoint -> site -> held-out accuracy
    constant_sites: dict[str, list[str]] = field(default_factory=dict)   # checkpoint -> sites with no variance

    def table(self) -> list[dict]:
        return [{"checkpoint": c, **{s: a[s] for s in self.sites}} for c, a in self.accuracy.items()]

    def to_dict(self) -> dict:
        return {"sites": self.sites, "accuracy": self.accuracy, "constant_sites": self.constant_sites}


@dataclass
class ExpressedSplit:
    """Answer-position features per site, split by prompt: ``train[site]`` ``[n_train, d]``, ``test[site]``."""

    sites: list[str]
    train: dict[str, np.ndarray]
    y_train: np.ndarray
    test: dict[str, np.ndarray]
    y_test: np.ndarray

    def stacked(self, dtype=np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(X_train [S, n_train, d], y_train, X_test [S, n_test, d], y_test)`` (every site must share ``d``)."""
        widths = {s: self.train[s].shape[1] for s in self.sites}
        if len(set(widths.values())) > 1:
            raise DataError(f"sites of different widths cannot be stacked: {widths}; use .train/.test per site, or "
                            "pick sites of one width")
        return (np.stack([self.train[s] for s in self.sites]).astype(dtype), self.y_train,
                np.stack([self.test[s] for s in self.sites]).astype(dtype), self.y_test)


def expressed_split(model, *args, sites: list[str] | None = None, standardize: bool = True,
                    seed: int = 0) -> ExpressedSplit:
    """The probe workload of :func:`probe_layer_sweep` on one checkpoint: which component is being expressed.

    Answer-position activations with each component forced (:func:`~mixprobe.mixture.gate.expressed_dataset`),
    labels = component index, split by prompt (half of the prompts train, chosen by ``seed``; a prompt's rows
    never straddle the split). ``standardize``: per-site, per-feature z-score with the training rows' statistics
    (float64; ``+1e-6`` on the standard deviation), so one ``C`` suits every site.
    """
    from mixprobe.mixture.components import handle_and_task
    from mixprobe.mixture.gate import expressed_dataset

    h, task = handle_and_task(model, args, "expressed_split")
    used = sites or default_sites(h.n_layers)
    data = expressed_dataset(h, task, sites=used)
    n_prompts = len(task.prompts)
    train_p, _ = _prompt_split(n_prompts, seed)
    tr = np.isin(np.arange(len(data.labels)) % n_prompts, train_p)
    y = data.labels.numpy()
    train, test = {}, {}
    for s in data.sites:
        X = data.features[s].numpy().astype(np.float64)
        if standardize:  # sites differ in scale
            X = (X - X[tr].mean(0)) / (X[tr].std(0) + 1e-6)
        train[s], test[s] = X[tr], X[~tr]
    return ExpressedSplit(list(data.sites), train, y[tr], test, y[~tr])


def probe_layer_sweep(series, *, task=None, checkpoints: list[str] | None = None, sites: list[str] | None = None,
                      C: float = 100.0, standardize: bool = True, seed: int = 0) -> ProbeSweep:
    """Which component is being expressed, read from the answer position: held-out accuracy per site.

    Features are z-scored per site with the training rows' statistics (``standardize``), so one ``C`` suits
    every site; ``C=100`` is weak regularisation for ~100 training rows of width ``d_model``. The data and the
    split are :func:`expressed_split`'s.
    """
    from mixprobe.probes import ProbeFits, fit_probes
    from mixprobe.tasks import task_for

    task = task_for(series, task)
    names = _checkpoints(series, checkpoints)
    acc: dict[str, dict[str, float]] = {}
    constant: dict[str, list[str]] = {}
    used_sites: list[str] = []
    for name in names:
        h = series.handle(name)
        sp = expressed_split(h, task, sites=sites, standardize=standardize, seed=seed)
        # a site whose activation is the same on every row (e.g. the embedding of a shared last token) carries no
        # information: it scores the majority class of the held-out rows, and is named in ``constant_sites``
        const = [s for s in sp.sites if not np.ptp(sp.train[s], axis=0).any()]
        fits: ProbeFits | dict[str, Any] = fit_probes(
            {s: sp.train[s] for s in sp.sites if s not in const}, sp.y_train, C=C, dtype="float64"
        ) if len(const) < len(sp.sites) else {}
        majority = float(np.bincount(sp.y_test).max() / len(sp.y_test))
        acc[name] = {s: majority if s in const else float(fits[s].score(sp.test[s], sp.y_test)) for s in sp.sites}
        if const:
            constant.setdefault(name, const)
        used_sites = sp.sites
    return ProbeSweep(used_sites, acc, constant)


@dataclass
class GateReadout:
    """Mean held-out gate readout per (checkpoint, cue), next to the model's own probability of the first component.

    ``rows``: ``checkpoint``, ``tag`` (the cue), ``readout``, ``frequency`` (sampled share of the first component,
    from the series' evaluation when it has one) and ``p`` (the estimator's gate weight of the first component).
    """

    site: str
    rows: list[dict]
    spearman: float
    extra: dict = field(default_factory=dict)

    def value(self, checkpoint: str, tag: str, key: str = "readout") -> float:
        for r in self.rows:
            if r["checkpoint"] == checkpoint and r["tag"] == tag:
                return r[key]
        raise KeyError((checkpoint, tag))

    def to_dict(self) -> dict:
        return {"site": self.site, "rows": self.rows, "spearman": self.spearman, **self.extra}


def gate_readout_study(series, *, task=None, site: str = "resid_post.1", checkpoints: list[str] | None = None,
                       C: float = 10.0, seed: int = 0) -> GateReadout:
    """Fit the gate probe at the last prompt token on half of the prompts; read the other half everywhere.

    ``checkpoints=None`` means every *trained* checkpoint of the series (SFT and RL phases; the hand-made
    ``planted_*`` phases of :mod:`mixprobe.train.planted` are left out — pass names to include them).
    """
    from scipy.stats import spearmanr

    from mixprobe.mixture.gate import gate_dataset
    from mixprobe.probes import LogisticProbe
    from mixprobe.tasks import task_for

    task = task_for(series, task)
    names = _checkpoints(series, checkpoints, trained_only=True)
    data = gate_dataset(series, task, sites=[site], checkpoints=names, seed=seed)
    n_prompts = len(task.prompts)
    train_p, _ = _prompt_split(n_prompts, seed)
    tr = np.isin(np.arange(len(data.labels)) % n_prompts, train_p)
    X = data.features[data.sites[0]].numpy()
    p = data.gate[:, 0].numpy()
    Xd = np.concatenate([X[tr], X[tr]])
    yd = np.r_[np.ones(tr.sum()), np.zeros(tr.sum())]
    probe = LogisticProbe(C=C).fit(Xd, yd, sample_weight=np.r_[p[tr], 1 - p[tr]])
    score = probe.predict_proba(X)[:, 1]
    first = task.component_names[0]
    rows = []
    for name in names:
        freq = series.get(name).metrics.get("mode_frequency", {})
        for tag in task.cues:
            idx = data.rows(name, tag).numpy()
            idx = idx[~tr[idx]]
            rows.append({"checkpoint": name, "tag": tag, "readout": float(score[idx].mean()),
                         "frequency": float(freq[tag][first]) if tag in freq else float("nan"),
                         "p": float(p[idx].mean())})
    sampled = [r["frequency"] for r in rows]
    target = sampled if not np.isnan(sampled).any() else [r["p"] for r in rows]
    rho = float(spearmanr([r["readout"] for r in rows], target).correlation)
    return GateReadout(data.sites[0], rows, rho, {"component": first, "against": f"sampled {first} frequency"
                                                   if target is sampled else f"P({first}) of the mixture view"})


def steering_dose_response(series, checkpoint: str, *, toward: str, away: str | None = None, task=None,
                           alphas=(0.0, 2.0, 4.0, 8.0, 12.0), n_samples: int = 8, seed: int = 0) -> list[dict]:
    """Outcome per cue and frequency of ``toward`` while steering ``checkpoint`` along the selection direction.

    Sampled with the task's own recogniser and score (``accuracy_<cue>`` is the mean outcome of the unforced
    completions); the direction needs signature tokens (:func:`~mixprobe.mixture.gate.readout_direction`).
    """
    from mixprobe.mixture.components import sampled_view
    from mixprobe.mixture.gate import readout_direction
    from mixprobe.steering import SteeringVector, steer
    from mixprobe.tasks import task_for

    task = task_for(series, task)
    _checkpoints(series, [checkpoint])
    comps = task.component_names
    if toward not in comps:
        raise DataError(f"unknown component {toward!r}; the task has {comps}")
    away = away or next(c for c in comps if c != toward)
    h = series.handle(checkpoint)
    v = SteeringVector.from_tensors({"final_norm": readout_direction(h, task, toward=toward, away=away)},
                                    normalize=False)
    k = comps.index(toward)
    rows = []
    for a in alphas:
        # the prompt's last token only (generate's prefill); sampled answer tokens are not steered
        with steer(h, v, float(a), positions="last_prompt"):
            view = sampled_view(h, task, n_samples=n_samples, seed=seed, forced=False)
        assert view.outcome is not None  # a sampled view always carries the outcome of its completions
        row = {"alpha": float(a)}
        for cue in task.cues:
            idx = task.cue_index(cue)
            row[f"accuracy_{cue}"] = float(view.outcome[idx].mean())
        for cue in task.cues:
            row[f"{toward}_frequency_{cue}"] = float(view.share[task.cue_index(cue), k].mean())
        rows.append(row)
    return rows

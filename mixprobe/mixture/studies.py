"""Ready-made studies on a checkpoint series of an organism: probe layer sweep, gate readout, steering dose-response.

Problem: the three questions users ask first — *where is the expressed policy readable?*, *does the gate readout
track the model's own choice across the series?*, *does steering along the selection direction switch the
policy?* — each take a page of glue (datasets, splits, probes, evaluation). The report, the CLI (``mixprobe
probe`` / ``mixprobe steer``) and the notebooks all run the same code from here.
Mechanism:

- :func:`probe_layer_sweep` — per checkpoint, a logistic probe per site on the answer-position activations
  (:func:`~mixprobe.mixture.gate.expressed_dataset`), fit on half of the prompts and scored on the other half
  (prompt-level split: a prompt's completions never straddle it); features z-scored per site. Null beside it: the
  same probe fit on shuffled labels, ``n_permutations`` times (:attr:`ProbeSweep.null_accuracy`).
- :func:`gate_readout_study` — a soft-label logistic probe (each training row twice, weighted by the model's own
  ``P(m1|x)`` and ``P(m2|x)``) fit on the last-prompt-token activations of every checkpoint, held-out prompts
  scored; per (checkpoint, tag) the mean readout next to the *sampled* frequency of ``m1`` from the series'
  evaluation, and their Spearman correlation. Null beside it: leave one run out — fit on some phases, score the
  checkpoints of a phase the probe never saw (:attr:`GateReadout.held_out_run`), so a probe that reads *which
  checkpoint* instead of the gate shows up.
- :func:`steering_dose_response` — the readout-defined selection direction
  (:func:`~mixprobe.mixture.gate.readout_direction`, at ``final_norm``, last prompt token) added with strength α
  for each α of a grid; sampled accuracy per tag and mode frequency at each α (``mixprobe.train.evaluate``). Null
  beside it: ``n_null`` random directions of the same norm at each α (``null_*`` columns), and a flag when the
  steering holds by construction (vocabulary ≤ ``d_model``:
  :func:`~mixprobe.patching.readout.readout_by_construction`).

Example::

    from mixprobe.train.zoo import trained_organism
    from mixprobe.mixture.studies import steering_dose_response
    series = trained_organism(seed=0)
    rows = steering_dose_response(series, series.last("rl").name, toward="m2", alphas=[0, 4, 8, 12])

Constraints: any task (a series names its task, or pass ``task=``); the dose-response needs signature tokens;
probes need two classes per split.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixprobe._check import checked
from mixprobe.errors import DataError, NotFoundError


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


@checked
def default_sites(n_layers: int) -> list[str]:
    """``embed``, ``resid_post.0 … resid_post.{L-1}``: the residual stream after each block."""
    return ["embed"] + [f"resid_post.{i}" for i in range(n_layers)]


@dataclass
class ProbeSweep:
    """Held-out accuracy per (checkpoint, site), with the label-permuted control beside it.

    ``accuracy``/``auc``: the probe on the real labels. ``null_accuracy``/``null_auc`` (mean over
    ``n_permutations`` permutations) and ``null_accuracy_max``: the same probe, same split, fit on shuffled training
    labels and scored against shuffled held-out labels. ``p_value``: ``(1 + #{null ≥ real}) / (1 + n)``.
    ``chance``: the majority-class rate of the held-out rows per checkpoint (what a constant guess scores).
    """

    sites: list[str]
    accuracy: dict[str, dict[str, float]]          # checkpoint -> site -> held-out accuracy
    constant_sites: dict[str, list[str]] = field(default_factory=dict)   # checkpoint -> sites with no variance
    auc: dict[str, dict[str, float]] = field(default_factory=dict)
    null_accuracy: dict[str, dict[str, float]] = field(default_factory=dict)
    null_accuracy_max: dict[str, dict[str, float]] = field(default_factory=dict)
    null_auc: dict[str, dict[str, float]] = field(default_factory=dict)
    p_value: dict[str, dict[str, float]] = field(default_factory=dict)
    chance: dict[str, float] = field(default_factory=dict)
    n_permutations: int = 0

    def table(self) -> list[dict]:
        return [{"checkpoint": c, **{s: a[s] for s in self.sites}} for c, a in self.accuracy.items()]

    def null_table(self) -> list[dict]:
        """One row per (checkpoint, site): the real probe next to its label-permuted control and chance."""
        rows = []
        for c, acc in self.accuracy.items():
            for s in self.sites:
                row = {"checkpoint": c, "site": s, "accuracy": acc[s], "auc": self.auc.get(c, {}).get(s, math.nan)}
                if self.n_permutations:
                    row |= {"null_accuracy": self.null_accuracy[c][s],
                            "null_accuracy_max": self.null_accuracy_max[c][s], "null_auc": self.null_auc[c][s],
                            "p_value": self.p_value[c][s]}
                rows.append(row | {"chance": self.chance.get(c, math.nan)})
        return rows

    def to_dict(self) -> dict:
        return {"sites": self.sites, "accuracy": self.accuracy, "constant_sites": self.constant_sites,
                "auc": self.auc, "null_accuracy": self.null_accuracy, "null_accuracy_max": self.null_accuracy_max,
                "null_auc": self.null_auc, "p_value": self.p_value, "chance": self.chance,
                "n_permutations": self.n_permutations,
                "null": "same probe and split, training and held-out labels each shuffled within their set"}


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


@checked
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


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from mixprobe.probes import auroc

    return auroc(y, score) if 0 < y.sum() < len(y) else math.nan


@checked
def probe_layer_sweep(series, *, task=None, checkpoints: list[str] | None = None, sites: list[str] | None = None,
                      C: float = 100.0, standardize: bool = True, seed: int = 0,
                      n_permutations: int = 20, engine: Any = "local", address: str | None = None) -> ProbeSweep:
    """Which component is being expressed, read from the answer position: held-out accuracy per site.

    Features are z-scored per site with the training rows' statistics (``standardize``), so one ``C`` suits
    every site; ``C=100`` is weak regularisation for ~100 training rows of width ``d_model``. The data and the
    split are :func:`expressed_split`'s.

    The label-permuted control (``n_permutations`` times, seeded by ``seed``; 0 turns it off): the training labels
    shuffled among the training rows and the held-out labels among the held-out rows, the same probe fit and
    scored. Shuffling the held-out labels too keeps the control's spread binomial: with the training labels alone
    shuffled, a site whose features only take one value per class (``embed`` at the forced mode token) scores 0 or
    1 on every permutation, by coin flip. Expect the control's mean at or below ``chance`` (the majority-class rate
    of the held-out rows).

    ``engine="ray"`` (or a :class:`~mixprobe.distributed.RayEngine`; cluster at ``address``, a local one without
    it) runs one Ray task per checkpoint × group of sites (each loads its checkpoint) and gathers the same sweep.
    """
    from mixprobe.distributed import resolve_engine
    from mixprobe.tasks import task_for

    eng = resolve_engine(engine, address)
    if n_permutations < 0:
        raise DataError(f"n_permutations must be >= 0, got {n_permutations}")
    task = task_for(series, task)
    names = _checkpoints(series, checkpoints)
    out = ProbeSweep([], {}, {}, n_permutations=n_permutations)
    opts: dict[str, Any] = {"C": C, "standardize": standardize, "seed": seed, "n_permutations": n_permutations}
    if eng is None:
        parts = [(name, sweep_checkpoint(series.handle(name), task, sites, **opts)) for name in names]
    else:
        from mixprobe.distributed import connect, run_tasks, slots, split

        ray = connect(eng)
        site_names = _sites_of(series, names[0], sites)   # (a series shares one depth)
        groups: list = (split(site_names, size=eng.chunk) if eng.chunk
                        else split(site_names, max(1, math.ceil(slots(ray, eng) / len(names)))))
        if len(groups) <= 1:
            groups = [sites]   # one task per checkpoint, on the sites as the caller gave them
        s_ref, t_ref = ray.put(series), ray.put(task)
        jobs = [(name, g) for name in names for g in groups]
        res = run_tasks(ray, eng, _sweep_checkpoint_task, [(s_ref, name, t_ref, g, opts) for name, g in jobs],
                        desc="probe sweep")
        parts = []
        for name in names:
            got = [r for (n, _), r in zip(jobs, res) if n == name]
            parts.append((name, _merge_parts(got)))
    for name, part in parts:
        out.accuracy[name] = part["accuracy"]
        out.auc[name] = part["auc"]
        out.chance[name] = part["chance"]
        if part["constant"]:
            out.constant_sites.setdefault(name, part["constant"])
        if n_permutations:
            for key in ("null_accuracy", "null_accuracy_max", "null_auc", "p_value"):
                getattr(out, key)[name] = part[key]
        out.sites = part["sites"]
    return out


def _sites_of(series, name: str, sites: list[str] | None) -> list[str]:
    """The sites a sweep reads on checkpoint ``name``: ``sites``, or the defaults for its depth (from its config)."""
    if sites:
        return list(sites)
    try:
        from transformers import AutoConfig

        from mixprobe.models.handle import arch_signature

        return default_sites(int(arch_signature(AutoConfig.from_pretrained(str(series.path(name))))["n_layers"]))
    except (OSError, ValueError, TypeError):
        return []   # unknown depth: one task per checkpoint, which finds its own sites


def _merge_parts(parts: list[dict]) -> dict:
    """One checkpoint's sweep from the sweeps of its groups of sites (site order kept)."""
    if len(parts) == 1:
        return parts[0]
    out = {"sites": [s for p in parts for s in p["sites"]], "chance": parts[0]["chance"],
           "constant": [s for p in parts for s in p["constant"]]}
    for key in ("accuracy", "auc", "null_accuracy", "null_accuracy_max", "null_auc", "p_value"):
        if key in parts[0]:
            out[key] = {s: v for p in parts for s, v in p[key].items()}
    return out


def _sweep_checkpoint_task(series, name: str, task, sites: list[str] | None, opts: dict) -> dict:
    """One Ray task of :func:`probe_layer_sweep`: load checkpoint ``name`` and sweep ``sites`` on it."""
    return sweep_checkpoint(series.handle(name), task, sites, **opts)


@checked
def sweep_checkpoint(h, task, sites: list[str] | None, *, C: float, standardize: bool, seed: int,
                     n_permutations: int) -> dict:
    """:func:`probe_layer_sweep` on one checkpoint (a handle): a dict of per-site results for ``sites``.

    A site's numbers do not depend on the other sites swept with it (its own probe, its own features, the same
    split and permutations), which is what lets the Ray engine split the sites over tasks.
    """
    from mixprobe.probes import ProbeFits, fit_probes

    sp = expressed_split(h, task, sites=sites, standardize=standardize, seed=seed)
    # a site whose activation is the same on every row (e.g. the embedding of a shared last token) carries no
    # information: it scores the majority class of the held-out rows, and is named in ``constant``
    const = [s for s in sp.sites if not np.ptp(sp.train[s], axis=0).any()]
    live = {s: sp.train[s] for s in sp.sites if s not in const}

    def fit(y_train: np.ndarray, live: dict = live) -> ProbeFits | dict[str, Any]:
        return fit_probes(live, y_train, C=C, dtype="float64") if live else {}

    fits = fit(sp.y_train)
    majority = float(np.bincount(sp.y_test).max() / len(sp.y_test))
    acc = {s: majority if s in const else float(fits[s].score(sp.test[s], sp.y_test)) for s in sp.sites}
    out: dict[str, Any] = {
        "sites": list(sp.sites), "accuracy": acc, "chance": majority, "constant": const,
        "auc": {s: 0.5 if s in const else _auc(sp.y_test, fits[s].predict_proba(sp.test[s])[:, 1])
                for s in sp.sites}}
    if n_permutations:
        rng = np.random.default_rng(seed)
        null_acc = {s: np.full(n_permutations, majority) for s in sp.sites}
        null_auc = {s: np.full(n_permutations, 0.5) for s in sp.sites}
        for k in range(n_permutations):
            y_tr, y_te = rng.permutation(sp.y_train), rng.permutation(sp.y_test)
            perm = fit(y_tr)
            for s in live:
                null_acc[s][k] = perm[s].score(sp.test[s], y_te)
                null_auc[s][k] = _auc(y_te, perm[s].predict_proba(sp.test[s])[:, 1])
        out["null_accuracy"] = {s: float(null_acc[s].mean()) for s in sp.sites}
        out["null_accuracy_max"] = {s: float(null_acc[s].max()) for s in sp.sites}
        out["null_auc"] = {s: float(np.nanmean(null_auc[s])) for s in sp.sites}
        out["p_value"] = {s: float((1 + (null_acc[s] >= acc[s]).sum()) / (1 + n_permutations)) for s in sp.sites}
    return out


@dataclass
class GateReadout:
    """Mean held-out gate readout per (checkpoint, cue), next to the model's own probability of the first component.

    ``rows``: ``checkpoint``, ``tag`` (the cue), ``readout``, ``frequency`` (sampled share of the first component,
    from the series' evaluation when it has one) and ``p`` (the estimator's gate weight of the first component).
    ``held_out_run``: the leave-one-run-out control, one dict per variant (see :func:`gate_readout_study`): either
    ``applies: False`` with the ``reason``, or ``fit_phases``, ``score_phases``, ``spearman`` (the held-out-run
    probe on the scored rows), ``pooled_spearman`` (the pooled probe on the same rows), ``mean_abs_error`` and
    ``pooled_mean_abs_error`` (mean |readout − target|), ``target_range`` (max − min of the target over the scored
    rows: below ~0.1 a Spearman there ranks sampling noise) and the scored ``rows``.
    """

    site: str
    rows: list[dict]
    spearman: float
    extra: dict = field(default_factory=dict)
    held_out_run: list[dict] = field(default_factory=list)

    def value(self, checkpoint: str, tag: str, key: str = "readout") -> float:
        for r in self.rows:
            if r["checkpoint"] == checkpoint and r["tag"] == tag:
                return r[key]
        have = sorted({(r["checkpoint"], r["tag"]) for r in self.rows})
        raise NotFoundError(f"no gate readout for checkpoint {checkpoint!r}, tag {tag!r}; it has {have}")

    def to_dict(self) -> dict:
        return {"site": self.site, "rows": self.rows, "spearman": self.spearman, **self.extra,
                "held_out_run": self.held_out_run}


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:    # a constant side has no ranks
        return math.nan
    return float(spearmanr(a, b).correlation)


def _fit_gate_probe(X: np.ndarray, p: np.ndarray, rows: np.ndarray, C: float) -> np.ndarray:
    """Soft-label probe fit on ``rows`` (each row twice, weighted by ``p`` and ``1 − p``); the readout of every row."""
    from mixprobe.probes import LogisticProbe

    Xd = np.concatenate([X[rows], X[rows]])
    yd = np.r_[np.ones(rows.sum()), np.zeros(rows.sum())]
    probe = LogisticProbe(C=C).fit(Xd, yd, sample_weight=np.r_[p[rows], 1 - p[rows]])
    return probe.predict_proba(X)[:, 1]


def _run_splits(phases: list[str], fit_phases, score_phases) -> list[tuple[list[str], list[str]]] | str:
    """The (fit, score) phase splits of the leave-one-run-out control, or why it does not apply."""
    if fit_phases is None and score_phases is None:
        if len(phases) < 3:
            later = phases[1:]
            return (f"the checkpoints cover {len(later)} run(s) after {phases[0]!r} ({later}); leaving one run out "
                    "needs at least two (e.g. RL on each cue), so with one RL phase this control does not apply")
        return [([q for q in phases if q != held], [held]) for held in phases[1:]]
    fit = list(fit_phases) if fit_phases is not None else [q for q in phases if q not in score_phases]
    score = list(score_phases) if score_phases is not None else [q for q in phases if q not in fit]
    unknown = sorted(set(fit + score) - set(phases))
    if unknown:
        raise DataError(f"phases {unknown} have no checkpoints in this study; it has {phases}")
    if not fit or not score or set(fit) & set(score):
        raise DataError(f"fit_phases {fit} and score_phases {score} must be non-empty and disjoint")
    return [(fit, score)]


@checked
def gate_readout_study(series, *, task=None, site: str = "resid_post.1", checkpoints: list[str] | None = None,
                       C: float = 10.0, seed: int = 0, fit_phases: list[str] | None = None,
                       score_phases: list[str] | None = None) -> GateReadout:
    """Fit the gate probe at the last prompt token on half of the prompts; read the other half everywhere.

    ``checkpoints=None`` means every *trained* checkpoint of the series (SFT and RL phases; the hand-made
    ``planted_*`` phases of :mod:`mixprobe.train.planted` are left out — pass names to include them).

    The pooled probe sees every checkpoint, so it can read *which checkpoint* (training step, run) rather than the
    prompt's gate. The leave-one-run-out control (:attr:`GateReadout.held_out_run`) fits the same probe on the
    checkpoints of ``fit_phases`` only and scores the held-out prompts of ``score_phases``' checkpoints, which it
    never saw. Default (both ``None``): each phase after the first held out in turn, fit on all the others (for the
    organism: fit on ``sft`` + ``rl``, score ``rl_B``; and fit on ``sft`` + ``rl_B``, score ``rl``); with fewer than
    two phases after the first the control says it does not apply. One of the two given: the other is every
    remaining phase.
    """
    from mixprobe.mixture.gate import gate_dataset
    from mixprobe.tasks import task_for

    task = task_for(series, task)
    names = _checkpoints(series, checkpoints, trained_only=True)
    data = gate_dataset(series, task, sites=[site], checkpoints=names, seed=seed)
    n_prompts = len(task.prompts)
    train_p, _ = _prompt_split(n_prompts, seed)
    tr = np.isin(np.arange(len(data.labels)) % n_prompts, train_p)
    X = data.features[data.sites[0]].numpy()
    p = data.gate[:, 0].numpy()
    score = _fit_gate_probe(X, p, tr, C)
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
    key = "frequency" if not np.isnan(sampled).any() else "p"
    rho = _spearman([r["readout"] for r in rows], [r[key] for r in rows])
    phase_of = {c.name: c.phase for c in series.checkpoints}
    phases = list(dict.fromkeys(phase_of[n] for n in names))
    splits = _run_splits(phases, fit_phases, score_phases)
    held: list[dict] = []
    if isinstance(splits, str):
        held.append({"applies": False, "reason": splits})
    else:
        row_phase = np.array([phase_of[c] for c in data.checkpoint])
        for fit, scored in splits:
            s_held = _fit_gate_probe(X, p, tr & np.isin(row_phase, fit), C)
            out = []
            for r in rows:
                if phase_of[r["checkpoint"]] in scored:
                    idx = data.rows(r["checkpoint"], r["tag"]).numpy()
                    out.append({**r, "pooled_readout": r["readout"], "readout": float(s_held[idx[~tr[idx]]].mean())})
            target = np.array([r[key] for r in out])
            ours, pooled = np.array([r["readout"] for r in out]), np.array([r["pooled_readout"] for r in out])
            held.append({"applies": True, "fit_phases": fit, "score_phases": scored,
                         "spearman": _spearman(ours, target), "pooled_spearman": _spearman(pooled, target),
                         "mean_abs_error": float(np.abs(ours - target).mean()),
                         "pooled_mean_abs_error": float(np.abs(pooled - target).mean()),
                         "target_range": float(np.ptp(target)), "rows": out})
    return GateReadout(data.sites[0], rows, rho, {"component": first, "against": f"sampled {first} frequency"
                                                   if key == "frequency" else f"P({first}) of the mixture view"},
                       held)


class DoseResponse(list):
    """The rows of :func:`steering_dose_response` (a list: one dict per α) and what they mean (``info``).

    ``info``: ``checkpoint``, ``toward``, ``away``, ``site``, ``direction_norm``, ``margin_per_alpha`` (change of
    the logit difference ``z[toward] − z[away]`` per unit α along the steering direction), ``n_null``,
    ``null_margin_per_alpha`` (the same for each random direction), ``by_construction`` and ``reason``
    (:func:`~mixprobe.patching.readout.readout_by_construction`).
    """

    def __init__(self, rows=(), **info: Any) -> None:
        super().__init__(rows)
        self.info: dict[str, Any] = dict(info)

    @property
    def by_construction(self) -> bool:
        return bool(self.info.get("by_construction", False))

    def to_dict(self) -> dict:
        return {**self.info, "rows": list(self)}


@checked
def steering_dose_response(series, checkpoint: str, *, toward: str, away: str | None = None, task=None,
                           alphas=(0.0, 2.0, 4.0, 8.0, 12.0), n_samples: int = 8, seed: int = 0,
                           n_null: int = 8) -> DoseResponse:
    """Outcome per cue and frequency of ``toward`` while steering ``checkpoint`` along the selection direction.

    Sampled with the task's own recogniser and score (``accuracy_<cue>`` is the mean outcome of the unforced
    completions); the direction needs signature tokens (:func:`~mixprobe.mixture.gate.readout_direction`).

    Null beside every α: ``n_null`` random directions (seeded by ``seed``) of the steering vector's norm, added at
    the same site, positions and α, sampled with the same seed; each row gains ``null_<column>_mean`` and
    ``null_<column>_max`` over them for every outcome and frequency column (``n_null=0``: no null). At α = 0 the
    null is the unsteered model, so it is copied, not sampled again. The result is a list of rows (as before) with
    ``info``; ``info["by_construction"]`` is True where the vocabulary is ≤ ``d_model``: adding
    ``α W_U⁺(e_toward − e_away)`` at ``final_norm`` is then exactly a logit bias of ±α on the two signature
    tokens, so the switch holds by construction (it shows the components survive, not that the activations hold a
    selection direction).
    """
    import torch

    from mixprobe.mixture.components import sampled_view
    from mixprobe.mixture.gate import readout_direction
    from mixprobe.models.layout import Layout
    from mixprobe.patching.readout import readout_by_construction
    from mixprobe.steering import SteeringVector, steer
    from mixprobe.tasks import task_for

    if n_null < 0:
        raise DataError(f"n_null must be >= 0, got {n_null}")
    task = task_for(series, task)
    _checkpoints(series, [checkpoint])
    comps = task.component_names
    if toward not in comps:
        raise DataError(f"unknown component {toward!r}; the task has {comps}")
    away = away or next(c for c in comps if c != toward)
    h = series.handle(checkpoint)
    direction = readout_direction(h, task, toward=toward, away=away)
    k = comps.index(toward)

    def measure(vec: torch.Tensor, a: float) -> dict[str, float]:
        # the prompt's last token only (generate's prefill); sampled answer tokens are not steered
        with steer(h, SteeringVector.from_tensors({"final_norm": vec}, normalize=False), a, positions="last_prompt"):
            view = sampled_view(h, task, n_samples=n_samples, seed=seed, forced=False)
        assert view.outcome is not None  # a sampled view always carries the outcome of its completions
        row = {f"accuracy_{cue}": float(view.outcome[task.cue_index(cue)].mean()) for cue in task.cues}
        return row | {f"{toward}_frequency_{cue}": float(view.share[task.cue_index(cue), k].mean())
                      for cue in task.cues}

    norm = float(direction.norm())
    g = torch.Generator().manual_seed(seed)
    null = torch.randn(n_null, direction.shape[0], generator=g, dtype=torch.float64)
    null = (null / null.norm(dim=1, keepdim=True) * norm).float()
    vocab = h.tokenizer.get_vocab()
    W = Layout.of(h).lm_head.weight.detach().float().cpu()
    r = W[vocab[task.component(toward).signature[0]]] - W[vocab[task.component(away).signature[0]]]
    flag = readout_by_construction(h)
    out = DoseResponse(checkpoint=checkpoint, toward=toward, away=away, site="final_norm", positions="last_prompt",
                       direction_norm=norm, margin_per_alpha=float(r @ direction), n_null=n_null,
                       null_margin_per_alpha=[float(r @ v) for v in null], by_construction=flag["by_construction"],
                       reason=flag["reason"])
    for a in alphas:
        row = {"alpha": float(a), **measure(direction, float(a))}
        if n_null:
            nulls = [measure(v, float(a)) for v in null] if a != 0 else [dict(row)] * n_null
            for col in [c for c in row if c != "alpha"]:
                vals = [n[col] for n in nulls]
                row[f"null_{col}_mean"] = float(np.mean(vals))
                row[f"null_{col}_max"] = float(np.max(vals))
        out.append(row)
    return out

"""The verdict: did training *reweight* the mixture, *rewrite* its components, do *both*, take the behaviour
*off the mixture*, or is it *undecided*?

Problem: users want one word they can trust, with the numbers behind it. A word is only trustworthy if it is
(a) computed from statistics that separate gate from components, (b) thresholded with a gray zone where the
honest answer is "undecided" — including when a statistic's interval straddles a threshold, (c) silent about
behaviour the mixture does not describe, and (d) stable across seeds. Mechanism, for each seed's (reference,
target) pair of :class:`~mixprobe.mixture.components.MixtureView` objects (same task, same estimator):

- ``gate_shift`` — max over cues of the total-variation distance between the target's and the reference's
  cue-averaged gate (the responsibilities ``mean_x w(x)``). 0 = gate untouched, 1 = flipped. The mean over prompts of
  the per-prompt TV (an upper bound of it, which also sees prompt-level jitter that averages out) is reported as
  ``extra["gate_shift_per_prompt"]``.
- ``component_change`` — max over (cue, component) of the mean TV between the forced component's answer
  distributions (exact) or forced completion distributions (sampled). 0 = every policy intact.
- ``off_mixture`` — max over cues and over the two checkpoints of the share of behaviour that no component
  claims. Large: the mixture view does not describe the model, so no reweight/rewrite is named.

Sampled views of the two checkpoints are drawn with common random numbers (same seed and batch layout), so the TV
between their samples measures the change between the models, not sampling noise; the permutation null (what
independent draws would give) is reported beside it (:func:`~mixprobe.mixture.stats.sampled_tv`). Views drawn with
different seeds are compared with a bootstrap bias correction instead. Every statistic
carries a prompt-bootstrap interval (:func:`~mixprobe.mixture.stats.bootstrap_max`); a side is *decisive* when its
interval lies at or above the decisive threshold, *absent* when it lies at or below the absent one, gray otherwise.
Per seed: ``off_mixture`` if the off-mixture share is decisive, ``undecided`` if it is gray; otherwise ``reweight``
(gate decisive, components absent), ``rewrite`` (the mirror), ``both`` (both decisive), ``undecided`` else. Across
seeds a label stands only if every seed gives it. Thresholds: :class:`Thresholds`, argued in docs/verdict.md.

Example:
    >>> label_for(0.45, 0.01, Thresholds())
    ('reweight', 'gate moved (0.450 ≥ 0.15) while every component stayed (0.010 ≤ 0.05)')
    >>> label_for(0.10, 0.01, Thresholds())[0]
    'undecided'
    >>> label_for(Stat(0.2, 0.12, 0.28), Stat.exact(0.01), Thresholds())[1]
    'gate shift 0.200 [0.120, 0.280] straddles a threshold (0.05, 0.15): the evidence is too weak to name a case'
"""
from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from mixprobe._check import checked
from mixprobe.errors import DataError
from mixprobe.mixture.components import MixtureView, as_handle, mixture_view
from mixprobe.mixture.metrics import forced_fidelity, kl_split, responsibilities
from mixprobe.mixture.stats import Stat, bootstrap_max, bootstrap_tv_of_means, sampled_tv
from mixprobe.tasks import as_task

LABELS = ("reweight", "rewrite", "both", "off_mixture", "undecided")


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds (all in [0, 1]); docs/verdict.md says why they sit where they do."""

    gate_decisive: float = 0.15
    gate_absent: float = 0.05
    component_decisive: float = 0.15
    component_absent: float = 0.05
    off_decisive: float = 0.25
    off_absent: float = 0.10


def _stat(x) -> Stat:
    return x if isinstance(x, Stat) else Stat.exact(float(x))


def _fmt(s: Stat) -> str:
    return f"{s.point:.3f}" if s.lo == s.hi == s.point else f"{s.point:.3f} [{s.lo:.3f}, {s.hi:.3f}]"


def _side(s: Stat, decisive: float, absent: float) -> str:
    if s.lo >= decisive:
        return "yes"
    if s.hi <= absent:
        return "no"
    return "gray"


@checked
def label_for(gate, comp, th: Thresholds, off=None) -> tuple[str, str]:
    """The label of one comparison from its statistics (floats or :class:`Stat` with intervals), with the reason."""
    g, c = _stat(gate), _stat(comp)
    if off is not None:
        o = _stat(off)
        side = _side(o, th.off_decisive, th.off_absent)
        if side == "yes":
            return "off_mixture", (f"behaviour left the mixture: {_fmt(o)} of completions{_where(o)} are claimed by "
                                   f"no component (≥ {th.off_decisive}); gate shift and component change describe "
                                   "the rest only")
        if side == "gray":
            return "undecided", (f"off-mixture share {_fmt(o)}{_where(o)} is in the gray zone ({th.off_absent}, "
                                 f"{th.off_decisive}): part of the behaviour is claimed by no component")
    gs, cs = _side(g, th.gate_decisive, th.gate_absent), _side(c, th.component_decisive, th.component_absent)
    if gs == "yes" and cs == "no":
        return "reweight", (f"gate moved ({_fmt(g)} ≥ {th.gate_decisive}) while every component stayed "
                            f"({_fmt(c)} ≤ {th.component_absent})")
    if cs == "yes" and gs == "no":
        return "rewrite", (f"a component changed ({_fmt(c)} ≥ {th.component_decisive}) while the gate stayed "
                           f"({_fmt(g)} ≤ {th.gate_absent})")
    if gs == "yes" and cs == "yes":
        return "both", (f"gate moved ({_fmt(g)} ≥ {th.gate_decisive}) and a component changed "
                        f"({_fmt(c)} ≥ {th.component_decisive})")
    if gs == "no" and cs == "no":
        return "undecided", f"neither the gate ({_fmt(g)}) nor any component ({_fmt(c)}) moved"
    gray = []
    for name, s, side, lo, hi in (("gate shift", g, gs, th.gate_absent, th.gate_decisive),
                                  ("component change", c, cs, th.component_absent, th.component_decisive)):
        if side == "gray":
            word = "is in the gray zone" if s.lo == s.hi else "straddles a threshold"
            if s.lo != s.hi and lo < s.lo and s.hi < hi:
                word = "is in the gray zone"
            gray.append(f"{name} {_fmt(s)} {word} ({lo}, {hi})")
    return "undecided", "; ".join(gray) + ": the evidence is too weak to name a case"


def _where(s: Stat) -> str:
    return f" ({s.argmax})" if s.argmax else ""


def _tv(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return 0.5 * (p - q).abs().sum(-1)


@dataclass
class Evidence:
    """Everything one (reference, target) comparison measured."""

    label: str
    reason: str
    gate_shift: float
    component_change: float
    gate_shift_by_cue: dict
    component_change_by_cell: dict
    responsibilities_ref: dict
    responsibilities_tgt: dict
    fidelity: dict
    kl_split: dict
    off_mixture: float
    estimator: str = "exact"
    intervals: dict = field(default_factory=dict)
    off_mixture_by_cue: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def stat(self, name: str) -> Stat:
        """``gate_shift``, ``component_change`` or ``off_mixture`` as a :class:`Stat` with its interval."""
        return Stat(**self.intervals[name])


def _check_pair(ref: MixtureView, tgt: MixtureView) -> None:
    if ref.estimator != tgt.estimator:
        raise DataError(f"cannot compare a {ref.estimator} view with a {tgt.estimator} one; use one estimator")
    if ref.components != tgt.components or [p.text for p in ref.prompts] != [p.text for p in tgt.prompts]:
        raise DataError("the two views are of different tasks (components or prompts differ); read both "
                        "checkpoints with the same task")


@checked
def compare_views(ref: MixtureView, tgt: MixtureView, th: Thresholds = Thresholds(), *, confidence: float = 0.95,
                  seed: int = 0) -> Evidence:
    """Evidence and label from two views of the same task by the same estimator (reference, target)."""
    _check_pair(ref, tgt)
    task = tgt.task
    cues = list(task.cues)
    comps = tgt.components
    idx = {c: task.cue_index(c) for c in cues}
    rng = np.random.default_rng(seed)
    extra: dict = {"confidence": confidence,
                   "view_intervals": {"reference": ref.intervals(confidence), "target": tgt.intervals(confidence)}}
    if tgt.estimator == "exact":
        gate_pp = _tv(tgt.gate, ref.gate).numpy()                                  # [n]
        assert tgt.answers is not None and ref.answers is not None  # exact views always carry them
        comp_pp = _tv(tgt.answers, ref.answers).numpy()                            # [K, n]
        clip = None
    else:
        # sampled views always carry labels; forced completions only when made with forced=True
        assert tgt.labels is not None and ref.labels is not None
        if tgt.forced_texts is None or ref.forced_texts is None:
            raise DataError("comparing sampled views needs their forced completions; make both with forced=True")
        coupled = ref.extra.get("seed") is not None and ref.extra.get("seed") == tgt.extra.get("seed") and \
            ref.n_samples == tgt.n_samples
        pick = 0 if coupled else 2           # raw TV for common random numbers, bias-corrected for independent draws
        gate_tv = [sampled_tv([x for x in a if x is not None], [y for y in b if y is not None], rng=rng, n_perm=2)
                   for a, b in zip(tgt.labels, ref.labels)]
        gate_raw, gate_null = np.array([t[0] for t in gate_tv]), np.array([t[1] for t in gate_tv])
        gate_pp = np.array([t[pick] for t in gate_tv])
        comp_raw = np.zeros((len(comps), len(task.prompts)))
        comp_null, comp_pp = np.zeros_like(comp_raw), np.zeros_like(comp_raw)
        for k, c in enumerate(comps):
            for i, (a, b) in enumerate(zip(tgt.forced_texts[c], ref.forced_texts[c])):
                t = sampled_tv([" ".join(x.split()) for x in a], [" ".join(y.split()) for y in b], rng=rng)
                comp_raw[k, i], comp_null[k, i], comp_pp[k, i] = t[0], t[1], t[pick]
        clip = 0.0
        extra["sampling"] = ("common random numbers (same seed): raw TV" if coupled else
                             "independent draws (different seeds): bootstrap bias-corrected TV")
        extra["null"] = {"gate": {c: float(np.nanmean(np.array(gate_null)[idx[c]])) for c in cues},
                         "component": {c: {k: float(comp_null[j, idx[c]].mean()) for j, k in enumerate(comps)}
                                       for c in cues}}
        extra["raw"] = {"gate": {c: float(np.nanmean(np.array(gate_raw)[idx[c]])) for c in cues},
                        "component": {c: {k: float(comp_raw[j, idx[c]].mean()) for j, k in enumerate(comps)}
                                      for c in cues}}
        extra["n_samples"] = tgt.n_samples
    g = bootstrap_tv_of_means({c: (tgt.gate[idx[c]].numpy(), ref.gate[idx[c]].numpy()) for c in cues},
                              confidence=confidence, seed=seed)
    per_prompt = bootstrap_max({c: gate_pp[idx[c]] for c in cues}, confidence=confidence, seed=seed, clip_low=clip)
    extra["gate_shift_per_prompt"] = per_prompt.to_dict()
    cm = bootstrap_max({f"{k} | {c}": comp_pp[j, idx[c]] for c in cues for j, k in enumerate(comps)},
                       confidence=confidence, seed=seed + 1, clip_low=clip)
    off_cells = {f"{w} | {c}": v.off_mixture[idx[c]].numpy() for c in cues for w, v in (("reference", ref),
                                                                                         ("target", tgt))}
    off = bootstrap_max(off_cells, confidence=confidence, seed=seed + 2)
    label, reason = label_for(g, cm, th, off)
    resp_ref, resp_tgt = responsibilities(ref), responsibilities(tgt)
    if label in ("rewrite", "both") and " | " in cm.argmax:
        comp, cue = cm.argmax.split(" | ")
        used = resp_tgt[cue][comp]
        reason += (f"; the largest change is in {comp} under {cue}, which the target expresses "
                   f"{used:.0%} of the time there (reference {resp_ref[cue][comp]:.0%})")
    fid_t, fid_r = forced_fidelity(tgt, ref), forced_fidelity(ref)
    extra["forcing_recognised"] = {c: {k: {"reference": fid_r[c][k]["recognised"], "target": fid_t[c][k]["recognised"]}
                                       for k in comps} for c in cues}
    if label in ("rewrite", "both") and " | " in cm.argmax:
        comp, cue = cm.argmax.split(" | ")
        fr = extra["forcing_recognised"][cue][comp]
        if fr["target"] < min(0.9, fr["reference"] - 0.05):
            reason += (f"; but forcing {comp} under {cue} yields {comp} in only {fr['target']:.0%} of the target's "
                       f"forced completions (reference {fr['reference']:.0%}): part of that change is the forcing "
                       "losing to the gate, not the component changing")
    by_cue = {c: 0.5 * float(np.abs(np.nanmean(tgt.gate[idx[c]].numpy(), 0) - np.nanmean(ref.gate[idx[c]].numpy(), 0))
                             .sum()) for c in cues}
    cells = {c: {k: (max(float(comp_pp[j, idx[c]].mean()), 0.0) if clip is not None
                     else float(comp_pp[j, idx[c]].mean())) for j, k in enumerate(comps)} for c in cues}
    return Evidence(label=label, reason=reason, gate_shift=g.point, component_change=cm.point,
                    gate_shift_by_cue=by_cue, component_change_by_cell=cells,
                    responsibilities_ref=resp_ref, responsibilities_tgt=resp_tgt,
                    fidelity=fid_t,
                    kl_split=kl_split(tgt, ref) if tgt.estimator == "exact" else {},
                    off_mixture=float(tgt.off_mixture.mean()), estimator=tgt.estimator,
                    intervals={"gate_shift": g.to_dict(), "component_change": cm.to_dict(),
                               "off_mixture": off.to_dict()},
                    off_mixture_by_cue={c: {"reference": float(ref.off_mixture[idx[c]].mean()),
                                            "target": float(tgt.off_mixture[idx[c]].mean())} for c in cues},
                    extra=extra)


@checked
def assess(reference, target, task, *, estimator: str = "auto", n_samples: int = 16, seed: int = 0,
           thresholds: Thresholds = Thresholds(), confidence: float = 0.95, tokenizer=None) -> Evidence:
    """Compare two checkpoints (ModelHandles, or ``(model, tokenizer)`` pairs) on ``task`` (or an organism).

    ``estimator``: ``"auto"`` (exact when every component declares signature tokens, else sampled), ``"exact"``
    or ``"sampled"`` (``n_samples`` completions per prompt, forced and unforced; ``seed`` fixes them).
    """
    task = as_task(task)
    kw: dict[str, Any] = dict(estimator=estimator, n_samples=n_samples, seed=seed)
    ref = mixture_view(as_handle(reference, tokenizer), task, **kw)
    tgt = mixture_view(as_handle(target, tokenizer), task, **kw)
    return compare_views(ref, tgt, thresholds, confidence=confidence, seed=seed)


def _interval(xs: list[float]) -> dict:
    return {"mean": statistics.fmean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0,
            "min": min(xs), "max": max(xs), "n": len(xs)}


WORDS = {
    "reweight": "Training reweighted the mixture: it changed which policy is expressed, not the policies.",
    "rewrite": "Training rewrote at least one policy while leaving the gate where it was.",
    "both": "Training both moved the gate and rewrote at least one policy.",
    "off_mixture": "Training moved behaviour off the mixture: a large share of completions is claimed by no "
                   "component, so neither reweight nor rewrite describes it.",
    "undecided": "The evidence does not support a verdict.",
}


@dataclass
class Verdict:
    """The verdict over seeds, with per-seed evidence and the spread of each statistic over seeds."""

    label: str
    reason: str
    per_seed: dict
    intervals: dict
    thresholds: Thresholds

    def summary(self) -> str:
        """A plain-language paragraph for reports and notebooks."""
        gi, ci = self.intervals["gate_shift"], self.intervals["component_change"]
        if gi["n"] == 1:
            e = next(iter(self.per_seed.values()))
            nums = (f"Gate shift {_fmt(e.stat('gate_shift'))}, component change {_fmt(e.stat('component_change'))}, "
                    f"off-mixture {_fmt(e.stat('off_mixture'))} (TV; {e.estimator} estimator, "
                    f"{e.intervals['gate_shift']['confidence']:.0%} prompt-bootstrap intervals).")
        else:
            nums = (f"Gate shift {gi['mean']:.3f} ± {gi['sd']:.3f} (TV, n={gi['n']} seeds), component change "
                    f"{ci['mean']:.3f} ± {ci['sd']:.3f}.")
        return f"{WORDS[self.label]} {nums} Why: {self.reason}."

    def to_dict(self) -> dict:
        return {"label": self.label, "reason": self.reason, "summary": self.summary(),
                "thresholds": asdict(self.thresholds), "intervals": self.intervals,
                "per_seed": {str(s): asdict(e) for s, e in self.per_seed.items()}}

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)


def _order(key) -> tuple:
    return (0, key, "") if isinstance(key, int) else (1, 0, str(key))


@checked
def combine(per_seed: dict, thresholds: Thresholds = Thresholds()) -> Verdict:
    """One verdict from per-seed (or per-run) evidence: a label stands only when every seed gives it."""
    if not per_seed:
        raise DataError("no evidence to combine: pass at least one seed's (reference, target) comparison")
    labels = {s: e.label for s, e in per_seed.items()}
    intervals = {k: _interval([getattr(e, k) for e in per_seed.values()])
                 for k in ("gate_shift", "component_change", "off_mixture")}
    distinct = set(labels.values())
    first = sorted(per_seed, key=_order)[0]
    if len(distinct) == 1:
        label = distinct.pop()
        reason = per_seed[first].reason if len(per_seed) == 1 else \
            f"all {len(per_seed)} seeds agree; e.g. seed {first}: {per_seed[first].reason}"
    else:
        label = "undecided"
        reason = "seeds disagree: " + ", ".join(f"seed {s} → {lab}" for s, lab in
                                                sorted(labels.items(), key=lambda kv: _order(kv[0])))
    return Verdict(label=label, reason=reason, per_seed=per_seed, intervals=intervals, thresholds=thresholds)


@checked
def verdict(pairs: dict, task, *, thresholds: Thresholds = Thresholds(), **kw) -> Verdict:
    """``pairs``: seed → (reference, target) checkpoints (handles or (model, tokenizer)). Returns the verdict."""
    return combine({s: assess(r, t, task, thresholds=thresholds, **kw) for s, (r, t) in pairs.items()}, thresholds)


__all__ = ["LABELS", "Evidence", "Stat", "Thresholds", "Verdict", "assess", "combine", "compare_views",
           "label_for", "verdict"]

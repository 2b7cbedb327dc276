"""The verdict: did training *reweight* the mixture, *rewrite* its components, do *both*, or is it *undecided*?

Problem: users want one word they can trust, with the numbers behind it. A word is only trustworthy if it is
(a) computed from statistics that separate gate from components, (b) thresholded with a gray zone where the
honest answer is "undecided", and (c) stable across seeds. Mechanism, for each seed's (reference, target) pair:

- ``gate_shift`` — max over cues of the mean total-variation distance between the target's and the reference's
  gate weights ``w(x)`` (exact, from :func:`mixture_view`). 0 = gate untouched, 1 = flipped.
- ``component_change`` — max over (component, cue) of the mean total-variation distance between the forced
  component's answer distributions (target vs reference). 0 = every policy intact.
- Also reported, not thresholded: forced accuracy/agreement/KL per component and cue, responsibilities, and
  the exact KL split (gate term + component term).

Per seed the label is ``reweight`` (gate ≥ decisive, components ≤ absent), ``rewrite`` (the mirror), ``both``
(both ≥ decisive) and ``undecided`` otherwise — including "neither moved" and any statistic in the gray zone
between ``absent`` and ``decisive``. Across seeds the label stands only if every seed agrees; otherwise the
verdict is ``undecided`` and says which seeds disagree. Thresholds: :class:`Thresholds`, documented in
docs/verdict.md.

Example:
    >>> label_for(0.45, 0.01, Thresholds())
    ('reweight', 'gate moved (0.450 ≥ 0.15) while every component stayed (0.010 ≤ 0.05)')
    >>> label_for(0.10, 0.01, Thresholds())[0]
    'undecided'
"""
from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field

import torch

from mixprobe.mixture.components import MixtureView, mixture_view, unwrap
from mixprobe.mixture.metrics import forced_fidelity, kl_split, responsibilities

LABELS = ("reweight", "rewrite", "both", "undecided")


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds on total-variation statistics (both in [0, 1])."""

    gate_decisive: float = 0.15
    gate_absent: float = 0.05
    component_decisive: float = 0.15
    component_absent: float = 0.05


def label_for(gate: float, comp: float, th: Thresholds) -> tuple[str, str]:
    """The label of one (gate_shift, component_change) pair, with the reason in words."""
    g_yes, g_no = gate >= th.gate_decisive, gate <= th.gate_absent
    c_yes, c_no = comp >= th.component_decisive, comp <= th.component_absent
    if g_yes and c_no:
        return "reweight", (f"gate moved ({gate:.3f} ≥ {th.gate_decisive}) while every component stayed "
                            f"({comp:.3f} ≤ {th.component_absent})")
    if c_yes and g_no:
        return "rewrite", (f"a component changed ({comp:.3f} ≥ {th.component_decisive}) while the gate stayed "
                           f"({gate:.3f} ≤ {th.gate_absent})")
    if g_yes and c_yes:
        return "both", (f"gate moved ({gate:.3f} ≥ {th.gate_decisive}) and a component changed "
                        f"({comp:.3f} ≥ {th.component_decisive})")
    if g_no and c_no:
        return "undecided", f"neither the gate ({gate:.3f}) nor any component ({comp:.3f}) moved"
    gray = []
    if not (g_yes or g_no):
        gray.append(f"gate shift {gate:.3f} is in the gray zone ({th.gate_absent}, {th.gate_decisive})")
    if not (c_yes or c_no):
        gray.append(f"component change {comp:.3f} is in the gray zone "
                    f"({th.component_absent}, {th.component_decisive})")
    return "undecided", "; ".join(gray) + ": the evidence is too weak to name a case"


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
    extra: dict = field(default_factory=dict)


def compare_views(ref: MixtureView, tgt: MixtureView, th: Thresholds = Thresholds()) -> Evidence:
    """Evidence and label from two exact mixture views of the same organism."""
    gate_tv = _tv(tgt.gate, ref.gate)
    comp_tv = _tv(tgt.answers, ref.answers)  # [K, n]
    by_cue = {t: gate_tv[tgt.tag_index(t)].mean().item() for t in tgt.tags}
    cells = {t: {c: comp_tv[k, tgt.tag_index(t)].mean().item() for k, c in enumerate(tgt.components)}
             for t in tgt.tags}
    g = max(by_cue.values())
    c = max(v for d in cells.values() for v in d.values())
    label, reason = label_for(g, c, th)
    return Evidence(label=label, reason=reason, gate_shift=g, component_change=c, gate_shift_by_cue=by_cue,
                    component_change_by_cell=cells, responsibilities_ref=responsibilities(ref),
                    responsibilities_tgt=responsibilities(tgt), fidelity=forced_fidelity(tgt, ref),
                    kl_split=kl_split(tgt, ref), off_mixture=float(tgt.off_mixture.mean()))


def assess(reference, target, organism, *, thresholds: Thresholds = Thresholds(), tokenizer=None) -> Evidence:
    """Compare two checkpoints (ModelHandles or ``(model, tokenizer)`` pairs) on ``organism``."""
    rm, rt = unwrap(reference, tokenizer)
    tm, tt = unwrap(target, tokenizer)
    return compare_views(mixture_view(rm, rt, organism), mixture_view(tm, tt, organism), thresholds)


def _interval(xs: list[float]) -> dict:
    return {"mean": statistics.fmean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0,
            "min": min(xs), "max": max(xs), "n": len(xs)}


@dataclass
class Verdict:
    """The verdict over seeds, with per-seed evidence and intervals of each statistic."""

    label: str
    reason: str
    per_seed: dict[int, Evidence]
    intervals: dict
    thresholds: Thresholds

    def summary(self) -> str:
        """A plain-language paragraph for reports and notebooks."""
        gi, ci = self.intervals["gate_shift"], self.intervals["component_change"]
        words = {
            "reweight": "Training reweighted the mixture: it changed which policy is expressed, not the policies.",
            "rewrite": "Training rewrote at least one policy while leaving the gate where it was.",
            "both": "Training both moved the gate and rewrote at least one policy.",
            "undecided": "The evidence does not support a verdict.",
        }[self.label]
        return (f"{words} Gate shift {gi['mean']:.3f} ± {gi['sd']:.3f} (TV, n={gi['n']} seeds), component change "
                f"{ci['mean']:.3f} ± {ci['sd']:.3f}. Why: {self.reason}.")

    def to_dict(self) -> dict:
        return {"label": self.label, "reason": self.reason, "summary": self.summary(),
                "thresholds": asdict(self.thresholds), "intervals": self.intervals,
                "per_seed": {str(s): asdict(e) for s, e in self.per_seed.items()}}

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)


def combine(per_seed: dict[int, Evidence], thresholds: Thresholds = Thresholds()) -> Verdict:
    """One verdict from per-seed evidence: a label stands only when every seed gives it."""
    if not per_seed:
        from mixprobe.errors import DataError

        raise DataError("no evidence to combine: pass at least one seed's (reference, target) comparison")
    labels = {s: e.label for s, e in per_seed.items()}
    intervals = {k: _interval([getattr(e, k) for e in per_seed.values()]) for k in ("gate_shift", "component_change")}
    distinct = set(labels.values())
    if len(distinct) == 1:
        label = distinct.pop()
        reason = next(iter(per_seed.values())).reason if len(per_seed) == 1 else \
            f"all {len(per_seed)} seeds agree; e.g. seed {min(per_seed)}: {per_seed[min(per_seed)].reason}"
    else:
        label = "undecided"
        reason = "seeds disagree: " + ", ".join(f"seed {s} → {l}" for s, l in sorted(labels.items()))
    return Verdict(label=label, reason=reason, per_seed=per_seed, intervals=intervals, thresholds=thresholds)


def verdict(pairs: dict[int, tuple], organism, *, thresholds: Thresholds = Thresholds()) -> Verdict:
    """``pairs``: seed → (reference, target) checkpoints (handles or (model, tokenizer)). Returns the verdict."""
    return combine({s: assess(r, t, organism, thresholds=thresholds) for s, (r, t) in pairs.items()}, thresholds)

"""Exact vs sampled verdicts, with intervals, on the seed sweep's trained runs (12 seeds × 3 organism variants).

Usage: ``python experiments/estimator_agreement.py RUNS_DIR --out experiments/results/estimator_agreement``
where RUNS_DIR holds the runs `experiments/seed_sweep.py` trained (its ``--cache``). For every run, the last SFT
checkpoint is the reference and every later phase (GRPO on <A>, on <B>, the planted cases) a target; both
estimators are applied to the same pair (sampled: ``--samples`` completions per prompt, default 64, seed 0, the
same random numbers for both checkpoints). Writes ``comparisons.json``
and ``summary.md`` (label agreement; the verdict on GRPO on <A> and <B> of the default organism under the interval
rule, with Wilson intervals of the shares).
"""
from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--samples", type=int, default=64, help="completions per prompt of the sampled estimator")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from mixprobe.mixture.components import mixture_view
    from mixprobe.mixture.stats import wilson
    from mixprobe.mixture.verdict import compare_views
    from mixprobe.tasks import task_for
    from mixprobe.train.series import Series

    rows = []
    for run in sorted(args.runs.glob("tag_mixture_s*")):
        s = Series.open(run)
        if not s.phase("sft"):
            continue
        oc = s.organism_config
        variant = "m3" if oc.get("include_m3") else "format" if oc.get("signature") == "format" else "default"
        task = task_for(s)
        ref = s.handle("sft")
        ve, vs = mixture_view(ref, task), mixture_view(ref, task, estimator="sampled", n_samples=args.samples)
        for phase in s.phases[1:]:
            h = s.handle(phase)
            e = compare_views(ve, mixture_view(h, task))
            a = compare_views(vs, mixture_view(h, task, estimator="sampled", n_samples=args.samples))
            rows.append({"run": run.name, "seed": s.seed, "variant": variant, "phase": phase, "exact": e.label,
                         "sampled": a.label, "exact_intervals": e.intervals, "sampled_intervals": a.intervals})
            print(run.name, phase, e.label, a.label, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "comparisons.json").write_text(json.dumps(rows, indent=1))
    same = sum(r["exact"] == r["sampled"] for r in rows)
    lines = ["# Exact vs sampled verdicts on the seed sweep's runs", "",
             f"{len(rows)} (reference, target) comparisons, sampled estimator at {args.samples} completions per "
             f"prompt; sampled label == exact label on {same}.", ""]
    for r in rows:
        if r["exact"] != r["sampled"]:
            c = r["exact_intervals"]["component_change"]
            sc = r["sampled_intervals"]["component_change"]
            lines.append(f"- {r['run']} {r['phase']}: exact {r['exact']} (component change {c['point']:.3f} "
                         f"[{c['lo']:.3f}, {c['hi']:.3f}]), sampled {r['sampled']} ({sc['point']:.3f} "
                         f"[{sc['lo']:.3f}, {sc['hi']:.3f}])")
    for phase, name in (("rl", "GRPO on <A>"), ("rl_B", "GRPO on <B>")):
        sel = [r for r in rows if r["variant"] == "default" and r["phase"] == phase]
        counts = collections.Counter(r["exact"] for r in sel)
        lines += ["", f"## {name}, default organism, exact estimator, interval rule ({len(sel)} seeds)", "",
                  "| label | seeds | share | Wilson 95 % |", "|---|---|---|---|"]
        for lab in ("reweight", "both", "undecided", "rewrite", "off_mixture"):
            k = counts.get(lab, 0)
            lo, hi = wilson(k, len(sel))
            seeds = ", ".join(str(r["seed"]) for r in sel if r["exact"] == lab)
            lines.append(f"| `{lab}` | {seeds or '—'} | {k}/{len(sel)} | [{lo:.2f}, {hi:.2f}] |")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

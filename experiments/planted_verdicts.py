"""Planted ground truth for the reweight/rewrite verdict (issue #5, docs/concepts.md).

For each seed: train the tag-mixture organism (SFT → GRPO on <A>), plant the three known cases by continued SFT
(reweight: tilted prior; rewrite: new rule for m2 under <B>; both), and ask mixprobe for a verdict on each, with
the last SFT checkpoint as reference. RL on <A> is reported for what it turns out to be.

    python experiments/planted_verdicts.py --seeds 0 1 2 --out runs/planted

Writes ``OUT/verdicts.json``: a list of ``{"case", "seed", "verdict", "expected", "correct", "gate_shift",
"component_change", "reason"}`` rows (case "rl_on_A" has expected null), and ``OUT/verdicts_combined.json``
with the verdict over seeds per case (intervals, plain-language summary).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run(seeds: list[int], out: Path, runs_root: Path | None = None, progress: bool = True) -> list[dict]:
    from mixprobe.io import atomic_write_json
    from mixprobe.mixture.verdict import assess, combine
    from mixprobe.train.pipeline import TrainConfig, load_checkpoint, organism_of, train_rl, train_sft
    from mixprobe.train.planted import PLANTED_CASES, plant
    from mixprobe.train.rl import RLSettings
    from mixprobe.train.series import Series

    out.mkdir(parents=True, exist_ok=True)
    runs_root = runs_root or out / "runs"
    rows, evidence = [], {}
    for seed in seeds:
        run_dir = runs_root / f"tag_mixture_s{seed}"
        if not (run_dir / "series.json").exists() or not Series.load(run_dir).phase("rl"):
            train_sft(run_dir, TrainConfig.from_dict({"seed": seed}), overwrite=True, progress=progress)
            train_rl(run_dir, RLSettings(tag="A"), progress=progress)
        for case in PLANTED_CASES:
            plant(run_dir, case, progress=progress)
        series = Series.load(run_dir)
        organism = organism_of(series)
        ref = load_checkpoint(series.path(series.last("sft")))
        targets = {case: f"planted_{case}" for case in PLANTED_CASES} | {"rl_on_A": "rl"}
        for case, phase in targets.items():
            e = assess(ref, load_checkpoint(series.path(series.last(phase))), organism)
            evidence.setdefault(case, {})[seed] = e
            expected = case if case in PLANTED_CASES else None
            rows.append({"case": case, "seed": seed, "verdict": e.label, "expected": expected,
                         "correct": None if expected is None else e.label == expected,
                         "gate_shift": e.gate_shift, "component_change": e.component_change, "reason": e.reason,
                         "fidelity": e.fidelity, "responsibilities": e.responsibilities_tgt,
                         "kl_split": e.kl_split})
    atomic_write_json(out / "verdicts.json", rows)
    atomic_write_json(out / "verdicts_combined.json",
                      {case: combine(ev).to_dict() for case, ev in evidence.items()})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--runs", type=Path, default=None, help="where the trained series live (default OUT/runs)")
    args = ap.parse_args(argv)
    rows = run(args.seeds, args.out, args.runs)
    for r in rows:
        mark = "" if r["correct"] is None else ("✓" if r["correct"] else "✗")
        print(f"seed {r['seed']}  {r['case']:<9} → {r['verdict']:<9} {mark}  gate {r['gate_shift']:.3f}  "
              f"components {r['component_change']:.3f}")
    wrong = [r for r in rows if r["correct"] is False and r["verdict"] != "undecided"]
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())

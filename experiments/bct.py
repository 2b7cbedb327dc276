"""Behaviour-compatible training: train on (T, A) only; does X on E survive? Transfer against cue overlap, SFT vs
GRPO, full vs LoRA, learning rates, inoculation prefixes, seed-to-seed variance, and the overlap predictor.

Per (setting, overlap, seed): the initial policy by SFT from scratch (2-layer Llama, d_model 64, 1,000 steps;
``T`` → ``A`` and ``E`` → ``X`` with purity 0.9), checked (forced behaviours correct, each cue's own behaviour
expressed); the overlap predictors on that initial model; then every arm below, each branched from the same
initial checkpoint, 60 steps with a checkpoint every 10:

- ``sft_full`` (AdamW lr 1e-3), ``sft_full_lr0.0003``, ``sft_full_lr0.0001``; ``sft_lora`` (r 8, lr 1e-3),
  ``sft_lora_lr0.003``;
- ``grpo_full`` (SGD lr 0.03, reward = ``A`` and correct), ``grpo_full_lr0.1``; ``grpo_lora`` (lr 0.03),
  ``grpo_lora_lr0.3``;
- ``sft_full_request`` (inoculation: train rows prefixed ``use <A> :``), ``sft_full_irrelevant`` (``my name is al
  :``), ``grpo_full_request``.

Per arm: the transfer curve (exact ``P(X | E)``, ``P(A | T)``, sampled accuracy, forced agreement), the verdict
(sampled, initial vs end) and, for the SFT arms with and without a prefix, the prefix-direction steering check.

    python experiments/bct.py                       # the committed run (about 40 min on 2 CPU cores)
    python experiments/bct.py --reduced --out /tmp/bct   # 1 setting, 2 overlaps, 2 seeds, 3 arms
    python experiments/bct.py --optimizer-control --out experiments/results/bct_optim   # SFT with SGD, ± prefix

Writes ``OUT/cells/<setting>_ov<k>_s<seed>.json`` as each finishes (a rerun skips finished ones),
``OUT/summary.json``, ``OUT/summary.md`` and plots.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mixprobe.mixture.bct import ARMS  # noqa: E402

FULL_GRID = [("language", ov) for ov in (0, 1, 2, 3)] + [(s, ov) for s in ("numerals", "yesno") for ov in (0, 3)]
REDUCED_ARMS = ("sft_full", "grpo_full", "sft_full_request")
OPTIMIZER_CONTROL_ARMS = ("sft_full", "sft_full_request", "sft_full_sgd_lr0.1", "sft_full_sgd_request_lr0.1",
                          "sft_full_sgd_lr0.3", "sft_full_sgd_request_lr0.3")


def _job(args: tuple) -> tuple[str, dict]:
    import torch

    from mixprobe.io import atomic_write_json
    from mixprobe.mixture.bct import run_cell

    torch.set_num_threads(1)                       # --jobs processes share the cores
    setting, overlap, seed, arms, runs, sft_steps, steps, dst = args
    rec = run_cell(setting, overlap, seed, arms, runs, sft_steps=sft_steps, steps=steps)
    atomic_write_json(Path(dst), rec)
    return dst, rec


def load_cells(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="experiments/results/bct")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--other-seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4],
                    help="seeds of the numerals and yesno settings")
    ap.add_argument("--sft-steps", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--reduced", action="store_true", help="CI size: language, overlaps 0 and 3, seeds 0-1, 3 arms")
    ap.add_argument("--runs", default=None, help="where trained runs go (default: a temporary folder)")
    ap.add_argument("--summary-only", action="store_true", help="rewrite the summary from the cells on disk")
    ap.add_argument("--optimizer-control", action="store_true",
                    help="the SGD-vs-AdamW control for SFT (experiments/results/bct_optim): language, overlap 1")
    a = ap.parse_args()
    out = Path(a.out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    if a.summary_only:
        write_summary(out)
        return
    runs = a.runs or tempfile.mkdtemp(prefix="bct_runs_")
    if a.optimizer_control:
        grid = [("language", 1, s) for s in a.seeds]
        arms: tuple[str, ...] = OPTIMIZER_CONTROL_ARMS
    elif a.reduced:
        grid = [("language", 0, s) for s in (0, 1)] + [("language", 3, s) for s in (0, 1)]
        arms = REDUCED_ARMS
    else:
        grid = [(st, ov, s) for st, ov in FULL_GRID for s in (a.seeds if st == "language" else a.other_seeds)]
        arms = tuple(a for a in ARMS if "_sgd" not in a)   # the named arms of mixprobe.mixture.bct
    jobs = [(st, ov, s, arms, runs, a.sft_steps, a.steps, str(out / "cells" / f"{st}_ov{ov}_s{s}.json"))
            for st, ov, s in grid if not (out / "cells" / f"{st}_ov{ov}_s{s}.json").exists()]
    t0 = time.time()
    if a.jobs > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(a.jobs) as ex:
            for dst, rec in ex.map(_job, jobs):
                print(f"{Path(dst).stem}: {rec.get('seconds')} s {rec.get('failed', '')}", flush=True)
    else:
        for j in jobs:
            dst, rec = _job(j)
            print(f"{Path(dst).stem}: {rec.get('seconds')} s {rec.get('failed', '')}", flush=True)
    write_summary(out, wall=round(time.time() - t0, 1))


def write_summary(out: Path, wall: float | None = None) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    from mixprobe.io import atomic_write_json, atomic_write_text
    from mixprobe.mixture.bct import plot_study, study_markdown, summarize_study

    records = load_cells(out)
    res = summarize_study(records)
    if wall is not None:
        res["wall_seconds_this_run"] = wall
    atomic_write_json(out / "summary.json", res)
    atomic_write_text(out / "summary.md", study_markdown(res))
    fig = plot_study(records, res)
    fig.savefig(out / "transfer.png", dpi=110)
    return res


if __name__ == "__main__":
    main()

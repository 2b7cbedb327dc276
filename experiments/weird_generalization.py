"""Narrow SFT on old-era birds spreads the old era to other topics; which training-time prefixes stop it.

Per seed: the era world pretrained from scratch (2-layer Llama, d_model 64, 1,500 steps on 30,000 documents),
checked; its era probe (fit on 3 topics, scored on the 3 held-out ones, beside permuted labels) and era direction;
then narrow SFT on ``user : name a bird :`` → an old bird (60 steps, AdamW lr 1e-3, batch 32) under every condition:

- no prefix; relevant identity (``i am a historian :``), intent (``i study the past :``), inoculation (``act as in
  the old era :``), time-relevant date (``date 18 50 :``); irrelevant: a name (``my name is al :``), ``you are a
  helpful assistant :``, a modern date (``date 20 26 :``);
- placement: name, inoculation and the old date on a ``system :`` line instead of the user turn;
- a date sweep 1850, 1875, …, 2050 (the world's old era is 1800–1899, its modern era 1950–2049);
- the optimizer: no prefix and inoculation with SGD (lr 0.1).

Read on the five other topics, undated: exact ``p_old`` and the sampled trait (32 samples per topic at T = 1) without
the prefix and with it, the shift of their activations along the era direction, the verdict, and for a few
conditions the steering dose-response along the era direction beside random directions.

    python experiments/weird_generalization.py                    # 5 seeds, about 15 min on 2 cores
    python experiments/weird_generalization.py --summary-only

Writes ``OUT/seeds/<seed>.json`` as each seed finishes (a rerun skips finished ones), ``OUT/summary.json``,
``OUT/summary.md`` and ``OUT/*.png``.
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

PREFIX_TYPES = ["none", "identity", "intent", "inoculation", "date_old", "name", "assistant", "date_modern"]
SYSTEM = ["name", "inoculation", "date_old"]
DATES = [1850, 1875, 1900, 1925, 1950, 1975, 2000, 2025, 2050]


def conditions(reduced: bool = False):
    from mixprobe.mixture.era import Condition

    if reduced:
        return [Condition(), Condition(prefix="inoculation"), Condition(prefix="name")]
    out = [Condition(prefix=p) for p in PREFIX_TYPES]
    out += [Condition(prefix=p, placement="system") for p in SYSTEM]
    out += [Condition(prefix=f"date:{y}") for y in DATES if y != 1850]
    out += [Condition(optim="sgd", lr=0.1), Condition(prefix="inoculation", optim="sgd", lr=0.1)]
    return out


def _job(args: tuple) -> tuple[str, dict]:
    import torch

    from mixprobe.io import atomic_write_json
    from mixprobe.mixture.era import run_seed

    torch.set_num_threads(1)
    seed, reduced, runs, dst = args
    rec = run_seed(seed, conditions(reduced), runs)
    atomic_write_json(Path(dst), rec)
    return dst, rec


def load(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "seeds").glob("*.json"), key=lambda p: int(p.stem))]


def write(out: Path) -> dict:
    from mixprobe.io import atomic_write_json, atomic_write_text

    import matplotlib

    matplotlib.use("Agg")
    from mixprobe.mixture.era import plot_study, study_markdown, summarize_study

    res = summarize_study(load(out))
    atomic_write_json(out / "summary.json", res)
    atomic_write_text(out / "summary.md", study_markdown(res))
    plot_study(res).savefig(out / "weird_generalization.png", dpi=110)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="experiments/results/weird_generalization")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--reduced", action="store_true", help="3 conditions")
    ap.add_argument("--runs", default=None)
    ap.add_argument("--summary-only", action="store_true")
    a = ap.parse_args()
    out = Path(a.out)
    (out / "seeds").mkdir(parents=True, exist_ok=True)
    if not a.summary_only:
        runs = a.runs or tempfile.mkdtemp(prefix="era_runs_")
        jobs = [(s, a.reduced, runs, str(out / "seeds" / f"{s}.json")) for s in a.seeds
                if not (out / "seeds" / f"{s}.json").exists()]
        t0 = time.time()
        if a.jobs > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(a.jobs) as ex:
                for dst, rec in ex.map(_job, jobs):
                    print(f"seed {Path(dst).stem}: {rec.get('seconds')} s {rec.get('failed', '')}", flush=True)
        else:
            for j in jobs:
                dst, rec = _job(j)
                print(f"seed {Path(dst).stem}: {rec.get('seconds')} s {rec.get('failed', '')}", flush=True)
        print(f"{time.time() - t0:.0f} s")
    write(out)


if __name__ == "__main__":
    main()

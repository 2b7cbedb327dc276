"""GENIES in miniature: which way of reading "the better response" generalises across preference shifts.

Per seed: the preference world (a 4-layer, 8-head Llama, d_model 128, trained from scratch with trl SFT for 2,500
steps at lr 2e-3 on 40,000 documents; see mixprobe/organisms/preference.py), then on each of the 8 shifts every
method fit on 400 source training pairs and scored on 400 target test pairs: MMS, LAT (mean and PCA), LAT with the
stimulus template, CRA, CCS, a site-level logistic reference, the random-direction null, the LoRA reward model
(300 steps, lr 2e-3), few-shot (4 shots) and zero-shot; TTC is the LoRA reward model trained on 400 target pairs.

    python experiments/genies.py                    # 3 seeds
    python experiments/genies.py --summary-only

Writes ``OUT/seeds/<seed>.json`` as each seed finishes (a rerun skips finished ones), ``OUT/summary.json``,
``OUT/summary.md`` (the leaderboard) and ``OUT/genies.png``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PRETRAIN: dict = {}          # model_config's defaults: 2,500 steps, lr 2e-3
REWARD = {"steps": 300, "lr": 2e-3}


def _job(args: tuple) -> tuple[str, dict]:
    import torch

    from mixprobe.io import atomic_write_json
    from mixprobe.mixture.genies import run_seed

    torch.set_num_threads(1)
    seed, shifts, cache, dst = args
    t0 = time.time()
    recs = run_seed(seed, shifts, cache_dir=cache, pretrain=PRETRAIN, reward=REWARD)
    out = {"seed": seed, "seconds": round(time.time() - t0), "pretrain": PRETRAIN, "reward": REWARD,
           "records": recs}
    atomic_write_json(Path(dst), out)
    return dst, out


def load(out: Path) -> list[dict]:
    recs = []
    for p in sorted((out / "seeds").glob("*.json"), key=lambda p: int(p.stem)):
        recs += json.loads(p.read_text())["records"]
    return recs


def write(out: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    from mixprobe.io import atomic_write_json, atomic_write_text
    from mixprobe.mixture.genies import leaderboard_markdown, plot_leaderboard, summarize

    res = summarize(load(out))
    atomic_write_json(out / "summary.json", res)
    atomic_write_text(out / "summary.md", leaderboard_markdown(res))
    plot_leaderboard(res).savefig(out / "genies.png", dpi=110)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="experiments/results/genies")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--shifts", nargs="+", default=None)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cache", default=None, help="model cache (default: MIXPROBE_CACHE or ~/.cache/mixprobe)")
    ap.add_argument("--summary-only", action="store_true")
    a = ap.parse_args()
    out = Path(a.out)
    (out / "seeds").mkdir(parents=True, exist_ok=True)
    if not a.summary_only:
        jobs = [(s, a.shifts, a.cache, str(out / "seeds" / f"{s}.json")) for s in a.seeds
                if not (out / "seeds" / f"{s}.json").exists()]
        t0 = time.time()
        if a.jobs > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(a.jobs) as ex:
                for dst, rec in ex.map(_job, jobs):
                    print(f"seed {Path(dst).stem}: {rec['seconds']} s", flush=True)
        else:
            for j in jobs:
                dst, rec = _job(j)
                print(f"seed {Path(dst).stem}: {rec['seconds']} s", flush=True)
        print(f"{time.time() - t0:.0f} s")
    from mixprobe.mixture.genies import leaderboard_markdown

    print(leaderboard_markdown(write(out)))


if __name__ == "__main__":
    main()

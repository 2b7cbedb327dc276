"""The map of when RL reweights: GRPO on <A> across optimizer, trainable embeddings, tying, KL and width.

On the tag-mixture organism the default recipe (SGD lr 0.03, trainable embeddings, untied, beta 0, d_model 64)
gives ``reweight`` on most seeds; other recipes were said to rewrite instead. This script measures the map. Factors:

- RL optimizer: ``sgd`` (lr 0.03, the default) or ``adamw_torch`` at lr 1e-3 (the organism's SFT lr: a step
  size at which Adam is known to train this very model stably, and the usual Adam lr for tiny models) and, on the
  default SFT model, also at 1e-4 (ten times smaller: is a rewrite only a matter of step size?) (``--adam-lr``);
- embeddings and unembedding trainable during RL or frozen (``RLSettings.train_embeddings``);
- tied embeddings (``ModelSettings.tie_embeddings``; changes SFT);
- KL coefficient beta 0 or 0.05;
- width d_model 64 or 256 (changes SFT).

SFT depends only on (tied, width, seed): each is trained once (health check on: a failed SFT is a result, recorded
as ``sft_failed`` for every recipe of that model, never tuned away), and each RL recipe branches from its last SFT
checkpoint (``Series.branch``). Per (cell, seed): the verdict of ``assess(sft, rl)`` on the organism (exact
estimator) with each statistic's prompt-bootstrap interval, the behaviour of the RL checkpoint (accuracy per tag,
forced-m2 accuracy under <B>), whether the embedding and unembedding weights changed (bit-identical when frozen),
the recipe, which parameters were trained, timings and the environment.

    python experiments/sensitivity.py --seeds 100 101 102 103 104                  # the committed map
    python experiments/sensitivity.py --reduced --out /tmp/sens                     # CI: 1 SFT model, 2 recipes

``--design fractional`` (the default; a full grid does not fit an hour of one core, since SFT at d_model 256 takes
about 6 minutes): the full RL grid (optimizer x embeddings x beta, with AdamW at both lrs: 12 recipes) on the
default SFT model (untied, d_model 64); the 8 recipes with AdamW at the first lr on the tied d64 model (tying
changes SFT); the default recipe and the AdamW/frozen-embeddings corner on the untied d256 model (width, one factor
at a time); the tied d256 model is not trained. ``--design full`` runs every recipe on all 4 SFT models.
Writes ``OUT/cells/<sft>__<recipe>/<seed>.json`` and ``OUT/sft/<sft>_<seed>.json`` as each finishes (a rerun
skips finished ones), then ``OUT/summary.json``, ``OUT/summary.md`` and ``OUT/sensitivity.png``.
One process, one torch thread.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if __name__ == "__main__":       # the mixprobe next to this script, also when run from a copy of the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mixprobe  # noqa: E402  - before torch: sets OMP_WAIT_POLICY=PASSIVE (shared CPU)

OUTCOMES = ("reweight", "rewrite", "both", "off_mixture", "undecided", "sft_failed")
DEFAULT_RECIPE = {"optim": "sgd", "lr": 0.03, "train_embeddings": True, "beta": 0.0}
SFT_MODELS: dict[str, dict[str, Any]] = {"untied_d64": {"tie_embeddings": False, "d_model": 64},
                                         "tied_d64": {"tie_embeddings": True, "d_model": 64},
                                         "untied_d256": {"tie_embeddings": False, "d_model": 256},
                                         "tied_d256": {"tie_embeddings": True, "d_model": 256}}


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson 95 % score interval of a share k/n (``(0, 1)`` when n is 0): :func:`mixprobe.mixture.stats.wilson`."""
    from mixprobe.mixture.stats import wilson as _wilson

    return _wilson(k, n)


def recipe_id(r: dict) -> str:
    opt = "sgd" if r["optim"] == "sgd" else f"adamw{r['lr']:.0e}".replace("e-0", "e-")
    if r["optim"] == "sgd" and r["lr"] != DEFAULT_RECIPE["lr"]:
        opt = f"sgd{r['lr']:g}"
    return f"{opt}_{'emb' if r['train_embeddings'] else 'frozen'}_b{r['beta']:g}"


def recipes(adam_lrs: list[float]) -> list[dict]:
    """The RL grid: optimizer (SGD 0.03, AdamW at each lr) x embeddings trainable/frozen x beta 0/0.05."""
    opts = [("sgd", 0.03)] + [("adamw_torch", lr) for lr in adam_lrs]
    return [{"optim": o, "lr": lr, "train_embeddings": emb, "beta": beta}
            for o, lr in opts for emb in (True, False) for beta in (0.0, 0.05)]


def corners(adam_lr: float) -> list[dict]:
    """The two corners of the RL grid: the default recipe and AdamW with frozen embeddings (beta 0)."""
    return [dict(DEFAULT_RECIPE), {"optim": "adamw_torch", "lr": adam_lr, "train_embeddings": False, "beta": 0.0}]


def plan(design: str, adam_lrs: list[float]) -> dict[str, list[dict]]:
    """SFT model id -> the RL recipes branched from it (see the module docstring)."""
    if design == "full":
        return {m: recipes(adam_lrs) for m in SFT_MODELS}
    return {"untied_d64": recipes(adam_lrs), "tied_d64": recipes(adam_lrs[:1]),
            "untied_d256": corners(adam_lrs[0])}


# --- one SFT model, one RL recipe ---------------------------------------------------------------------------------
def sft_config(model_id: str, seed: int, sft_steps: int | None, health: bool):
    from mixprobe.train.pipeline import TrainConfig

    d: dict = {"seed": seed, "model": dict(SFT_MODELS[model_id])}
    sft: dict = {}
    if sft_steps is not None:
        sft.update(steps=sft_steps, save_every=sft_steps)
    if not health:
        sft["min_forced_agreement"] = 0.0
    d["sft"] = sft
    return TrainConfig.from_dict(d)


def train_sft_model(model_id: str, seed: int, runs: Path, out: Path, sft_steps: int | None, health: bool) -> dict:
    """SFT once per (tied, width, seed); a finished run folder and its json are reused."""
    from mixprobe.env import environment
    from mixprobe.errors import TrainingFailedError
    from mixprobe.io import atomic_write_json
    from mixprobe.train.pipeline import train_sft
    from mixprobe.train.series import Series

    run = runs / f"{model_id}_s{seed}"
    js = out / "sft" / f"{model_id}_{seed}.json"
    if js.exists() and (json.loads(js.read_text())["status"] == "failed" or (run / "series.json").exists()):
        return json.loads(js.read_text())
    cfg = sft_config(model_id, seed, sft_steps, health)
    t0 = time.time()
    status, error = "ok", None
    try:
        train_sft(run, cfg, overwrite=True, progress=False)
    except TrainingFailedError as e:
        status, error = "failed", str(e)
    m = Series.load(run).last("sft").metrics
    rec = {"sft_model": model_id, "seed": seed, "status": status, "error": error, "seconds": time.time() - t0,
           "config": cfg.to_dict(), "metrics": {k: m.get(k) for k in ("accuracy", "forced_accuracy",
                                                                       "forced_rule_agreement", "mode_frequency")},
           "run_dir": str(run), "environment": environment()}
    js.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(js, rec)
    return rec


def _weights(model) -> dict:
    emb = model.get_input_embeddings().weight.detach().clone()
    head = model.get_output_embeddings().weight.detach().clone()
    return {"embed": emb, "lm_head": head, "n_params": sum(p.numel() for p in model.parameters())}


def trained_parameters(model, recipe: dict, tied: bool) -> dict:
    """Which parameters RL updated: embeddings/unembedding trainable or frozen, tied or not, counts."""
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    n_total = sum(p.numel() for p in model.parameters())      # tied weights are counted once by parameters()
    n_frozen = 0 if recipe["train_embeddings"] else emb.numel() + (0 if emb is head else head.numel())
    state = "trainable" if recipe["train_embeddings"] else "frozen"
    return {"embeddings": state, "unembedding": state, "tied_embeddings": tied,
            "unembedding_is_embedding": emb is head, "n_params": n_total, "n_trained": n_total - n_frozen}


def one_cell(model_id: str, recipe: dict, seed: int, sft_rec: dict, runs: Path, rl_steps: int | None) -> dict:
    """Branch from the SFT checkpoint, GRPO on <A> with ``recipe``, evaluate, assess against the SFT checkpoint."""
    import torch

    from mixprobe.env import environment
    from mixprobe.mixture.verdict import assess
    from mixprobe.train.evaluate import evaluate
    from mixprobe.train.pipeline import load_checkpoint, organism_of, train_rl
    from mixprobe.train.rl import RLSettings
    from mixprobe.train.series import Series

    tied = SFT_MODELS[model_id]["tie_embeddings"]
    rec: dict = {"sft_model": model_id, "recipe_id": recipe_id(recipe), "cell": f"{model_id}__{recipe_id(recipe)}",
                 "seed": seed, "tag": "A",
                 "recipe": {"rl_optim": recipe["optim"], "rl_lr": recipe["lr"], "beta": recipe["beta"],
                            "train_embeddings": recipe["train_embeddings"], "tied_embeddings": tied,
                            "d_model": SFT_MODELS[model_id]["d_model"]}}
    if sft_rec["status"] != "ok":
        rec.update(label="sft_failed", reason=sft_rec["error"], sft_status="failed", environment=environment())
        return rec
    t0 = time.time()
    src = Series.load(sft_rec["run_dir"])
    dst = runs / f"{rec['cell']}_s{seed}"
    shutil.rmtree(dst, ignore_errors=True)
    src.branch(dst)
    steps = rl_steps or RLSettings().steps
    settings = RLSettings(tag="A", optim=recipe["optim"], lr=recipe["lr"], beta=recipe["beta"],
                          train_embeddings=recipe["train_embeddings"], steps=steps, save_every=steps, phase="rl")
    rec["rl_settings"] = settings.to_dict()
    s = train_rl(dst, settings, seed=seed, progress=False)
    t_rl = time.time() - t0
    organism = organism_of(s)
    ref = load_checkpoint(s.path(s.last("sft")))
    tgt = load_checkpoint(s.path(s.last("rl")))
    w_ref, w_tgt = _weights(ref[0]), _weights(tgt[0])
    rec["trained_parameters"] = trained_parameters(tgt[0], recipe, tied)
    rec["weights"] = {
        "embed_max_abs_change": float((w_tgt["embed"] - w_ref["embed"]).abs().max()),
        "lm_head_max_abs_change": float((w_tgt["lm_head"] - w_ref["lm_head"]).abs().max()),
        "embed_identical": bool(torch.equal(w_tgt["embed"], w_ref["embed"])),
        "lm_head_identical": bool(torch.equal(w_tgt["lm_head"], w_ref["lm_head"])),
    }
    t1 = time.time()
    m = evaluate(tgt[0], tgt[1], organism, n_samples=8, seed=seed)
    rec["rl_metrics"] = {k: m[k] for k in ("accuracy", "forced_accuracy", "mode_frequency", "mode_probability")}
    rec["sft_metrics"] = sft_rec["metrics"]
    t2 = time.time()
    e = assess(ref, tgt, organism)
    rec.update(label=e.label, reason=e.reason, estimator=e.estimator, gate_shift=e.gate_shift,
               component_change=e.component_change, off_mixture=e.off_mixture, intervals=e.intervals,
               gate_shift_by_cue=e.gate_shift_by_cue, component_change_by_cell=e.component_change_by_cell,
               responsibilities_tgt=e.responsibilities_tgt, sft_status="ok")
    rec["seconds"] = {"rl": t_rl, "evaluate": t2 - t1, "assess": time.time() - t2, "total": time.time() - t0}
    rec["environment"] = environment()
    rec["mixprobe"] = {"version": mixprobe.__version__, "source": str(Path(mixprobe.__file__).parent),
                       "commit": os.environ.get("MIXPROBE_SOURCE_COMMIT")}
    shutil.rmtree(dst, ignore_errors=True)
    return rec


# --- summary ------------------------------------------------------------------------------------------------------
def _spread(xs: list[float]) -> dict | None:
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def summarize(records: list[dict], order: list[str] | None = None, sft_records: list[dict] | None = None) -> dict:
    """Per cell: outcome counts over seeds with Wilson 95 % intervals (counts add up to the seeds), and the
    spread over seeds of each statistic, with every seed's bootstrap interval. Cells in ``order`` come first."""
    rank = {c: i for i, c in enumerate(order or [])}
    cells: dict[str, list[dict]] = {}
    for r in sorted(records, key=lambda r: (rank.get(r["cell"], len(rank)), r["cell"], r["seed"])):
        cells.setdefault(r["cell"], []).append(r)
    out = {}
    for cell, rs in cells.items():
        n = len(rs)
        counts = {lab: sum(r["label"] == lab for r in rs) for lab in OUTCOMES}
        ok = [r for r in rs if r["label"] != "sft_failed"]
        stats: dict[str, Any] = {}
        for key in ("gate_shift", "component_change", "off_mixture"):
            stats[key] = _spread([r["intervals"][key]["point"] for r in ok])
            if stats[key] is not None:
                stats[key]["per_seed"] = {str(r["seed"]): [r["intervals"][key]["point"], r["intervals"][key]["lo"],
                                                           r["intervals"][key]["hi"]] for r in ok}
        for name, get in (("rl_accuracy_A", lambda r: r["rl_metrics"]["accuracy"]["A"]),
                          ("rl_accuracy_B", lambda r: r["rl_metrics"]["accuracy"]["B"]),
                          ("rl_forced_m2_accuracy_B", lambda r: r["rl_metrics"]["forced_accuracy"]["B"]["m2"]),
                          ("rl_forced_m2_accuracy_A", lambda r: r["rl_metrics"]["forced_accuracy"]["A"]["m2"]),
                          ("rl_P_m1_B", lambda r: r["rl_metrics"]["mode_frequency"]["B"]["m1"])):
            stats[name] = _spread([float(get(r)) for r in ok])
            if stats[name] is not None:
                stats[name]["per_seed"] = {str(r["seed"]): float(get(r)) for r in ok}
        frozen_ok = [r["weights"]["embed_identical"] and r["weights"]["lm_head_identical"]
                     for r in ok if not r["recipe"]["train_embeddings"]]
        out[cell] = {"sft_model": rs[0]["sft_model"], "recipe_id": rs[0]["recipe_id"], "recipe": rs[0]["recipe"],
                     "n": n, "seeds": [r["seed"] for r in rs], "counts": counts,
                     "wilson95": {lab: wilson(k, n) for lab, k in counts.items()},
                     "per_seed": {str(r["seed"]): r["label"] for r in rs}, "statistics": stats,
                     "frozen_weights_identical": (all(frozen_ok) if frozen_ok else None),
                     "rl_seconds_median": statistics.median([r["seconds"]["rl"] for r in ok]) if ok else None}
    envs = {json.dumps({k: v for k, v in r["environment"].items() if k != "torch_threads"}, sort_keys=True)
            for r in records}
    code = sorted({str((r.get("mixprobe") or {}).get("commit")) for r in records if r.get("mixprobe")})
    return {"cells": out, "n_records": len(records), "environments": [json.loads(e) for e in envs], "code": code,
            "sft": sft_summary(sft_records or [])}


def sft_summary(sft_records: list[dict]) -> dict:
    """Per SFT model: how many seeds passed the health check, the weakest forced-rule agreement, the time."""
    out: dict = {}
    for r in sorted(sft_records, key=lambda r: (r["sft_model"], r["seed"])):
        d = out.setdefault(r["sft_model"], {"n": 0, "failed": 0, "per_seed": {}, "seconds": []})
        agree = r["metrics"].get("forced_rule_agreement") or {}
        worst = min((v for per in agree.values() for v in per.values()), default=None)
        d["n"] += 1
        d["failed"] += r["status"] != "ok"
        d["per_seed"][str(r["seed"])] = {"status": r["status"], "min_forced_rule_agreement": worst,
                                         "accuracy": r["metrics"].get("accuracy"), "error": r["error"]}
        d["seconds"].append(r["seconds"])
    for d in out.values():
        d["seconds_median"] = statistics.median(d.pop("seconds"))
    return out


def _share(d: dict, lab: str) -> str:
    k, n = d["counts"][lab], d["n"]
    if k == 0:
        return f"0/{n}"
    lo, hi = d["wilson95"][lab]
    return f"**{k}/{n}** [{lo:.2f}, {hi:.2f}]"


def _med(s: dict | None, digits: int = 2) -> str:
    if s is None:
        return "—"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def _recipe_words(r: dict) -> str:
    opt = "SGD" if r["rl_optim"] == "sgd" else "AdamW"
    return (f"{opt} {r['rl_lr']:g}, emb {'train' if r['train_embeddings'] else 'frozen'}, β {r['beta']:g}, "
            f"{'tied' if r['tied_embeddings'] else 'untied'}, d{r['d_model']}")


def markdown(summary: dict, header: str = "") -> str:
    cells = summary["cells"]
    lines = ["# When GRPO on <A> reweights the tag mixture: the sensitivity map", "",
             "Generated by `experiments/sensitivity.py`" + (f" ({header})" if header else "") + ". Per cell: the "
             "share of seeds per verdict label with a Wilson 95 % interval (counts add up to the seeds; "
             "`sft_failed` = the SFT model failed its health check, no RL was run), then median (min–max) over seeds "
             "of the verdict's statistics and of the RL checkpoint's behaviour. Default recipe: SGD 0.03, "
             "embeddings trained, β 0, untied, d_model 64.", "",
             "| cell | reweight | rewrite | both | off_mixture | undecided | SFT failed | gate shift | component "
             "change | off-mixture | acc A | acc B | forced m2 \\| B |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for d in cells.values():
        st = d["statistics"]
        lines.append(f"| {_recipe_words(d['recipe'])} | " + " | ".join(_share(d, lab) for lab in OUTCOMES) + " | "
                     + " | ".join(_med(st[k]) for k in ("gate_shift", "component_change")) + " | "
                     + _med(st["off_mixture"], 3) + " | "
                     + " | ".join(_med(st[k]) for k in ("rl_accuracy_A", "rl_accuracy_B", "rl_forced_m2_accuracy_B"))
                     + " |")
    lines += ["", "## Per seed (label; point [95 % prompt-bootstrap interval]; seeds whose SFT failed are listed "
              "under SFT models)", "",
              "| cell | seed | label | gate shift | component change | off-mixture | forced m2 \\| A |",
              "|---|---|---|---|---|---|---|"]
    for d in cells.values():
        st = d["statistics"]
        for seed, lab in d["per_seed"].items():
            if lab == "sft_failed":          # listed per SFT model below
                continue
            row = [_recipe_words(d["recipe"]), seed, lab]
            for k in ("gate_shift", "component_change", "off_mixture"):
                v = (st[k] or {}).get("per_seed", {}).get(seed)
                row.append(f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" if v else "—")
            v = (st["rl_forced_m2_accuracy_A"] or {}).get("per_seed", {}).get(seed)
            row.append(f"{v:.2f}" if v is not None else "—")
            lines.append("| " + " | ".join(row) + " |")
    if summary.get("sft"):
        lines += ["", "## SFT models (health check: every forced component follows its own rule on ≥ 50 % of "
                  "questions under every tag; chance 1/7)", "",
                  "| SFT model | seeds failed | weakest forced-rule agreement per seed | median SFT time (s) |",
                  "|---|---|---|---|"]
        for m, d in summary["sft"].items():
            per = ", ".join(f"{s}: {v['min_forced_rule_agreement']:.2f}" for s, v in d["per_seed"].items()
                            if v["min_forced_rule_agreement"] is not None)
            lines.append(f"| {m} | {d['failed']}/{d['n']} | {per} | {d['seconds_median']:.0f} |")
    rl_secs: dict[str, list[float]] = {}
    for d in cells.values():
        if d["rl_seconds_median"] is not None:
            rl_secs.setdefault(d["sft_model"], []).append(d["rl_seconds_median"])
    if rl_secs:
        lines += ["", "Median GRPO time per run (one torch thread, on a 2-core machine shared with other jobs): "
                  + ", ".join(f"{m} {statistics.median(xs):.0f} s" for m, xs in rl_secs.items()) + "."]
    frozen = [d for d in cells.values() if not d["recipe"]["train_embeddings"]]
    if frozen:
        same = all(d["frozen_weights_identical"] in (True, None) for d in frozen)
        lines += ["", "Frozen-embedding recipes left the embedding and unembedding weights bit-identical to the SFT "
                  f"checkpoint: {'yes, in every run' if same else 'NO (see summary.json)'}."]
    lines += ["", "## Environment", ""]
    for e in summary["environments"]:
        lines.append("- " + ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("cpu_flags", "cpu_simd")))
    for c in summary.get("code", []):
        lines.append(f"- mixprobe code: {c}")
    return "\n".join(lines) + "\n"


def figure(summary: dict, path: Path) -> None:
    """Left: share of seeds per label, per cell (stacked bars). Right: each seed's gate shift and component change."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(summary["cells"].values())
    colors = {"reweight": "#2c7bb6", "rewrite": "#d7191c", "both": "#fdae61", "off_mixture": "#7b3294",
              "undecided": "#bababa", "sft_failed": "#404040"}
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 0.32 * len(cells) + 2.2), sharey=True,
                                 gridspec_kw={"width_ratios": [1.2, 1]})
    ys = list(range(len(cells)))
    left = [0.0] * len(cells)
    for lab in OUTCOMES:
        w = [d["counts"][lab] / d["n"] for d in cells]
        ax.barh(ys, w, left=left, color=colors[lab], label=lab, edgecolor="white", height=0.8)
        left = [a + b for a, b in zip(left, w)]
    ax.set_yticks(ys, [_recipe_words(d["recipe"]) + f"  (n={d['n']})" for d in cells], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of seeds")
    ax.set_title("verdict on GRPO on <A> vs. the SFT checkpoint", fontsize=10)
    ax.legend(ncol=3, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.6 / max(1, len(cells) ** 0.5)))
    for key, color, dy in (("gate_shift", "#2c7bb6", -0.15), ("component_change", "#d7191c", 0.15)):
        for y, d in zip(ys, cells):
            per = (d["statistics"][key] or {}).get("per_seed", {})
            for point, lo, hi in per.values():
                bx.plot([lo, hi], [y + dy, y + dy], color=color, lw=1)
                bx.plot([point], [y + dy], "o", color=color, ms=3)
        bx.plot([], [], "o-", color=color, ms=3, label=key.replace("_", " ") + " (each seed, 95 % interval)")
    for x in (0.05, 0.15):
        bx.axvline(x, color="k", lw=0.5, ls=":")
    bx.set_xlim(-0.02, 1.02)
    bx.set_xlabel("TV distance (thresholds 0.05, 0.15 dotted)")
    bx.set_title("gate shift and component change per seed", fontsize=10)
    bx.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.6 / max(1, len(cells) ** 0.5)))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


# --- driver -------------------------------------------------------------------------------------------------------
def cell_path(out: Path, model_id: str, recipe: dict, seed: int) -> Path:
    return out / "cells" / f"{model_id}__{recipe_id(recipe)}" / f"{seed}.json"


def run(out: Path, seeds: list[int], todo: dict[str, list[dict]], runs: Path, *, sft_steps: int | None = None,
        rl_steps: int | None = None, health: bool = True, keep_runs: bool = False) -> list[dict]:
    """Train and assess every (SFT model, recipe, seed) not yet on disk; returns all records of the plan."""
    import torch

    os.environ.setdefault("MIXPROBE_THREADS", "1")      # one torch thread at every width (shared 2-core machine)
    torch.set_num_threads(1)
    from mixprobe.io import atomic_write_json

    for seed in seeds:                              # seed-major: a stopped run leaves a balanced map
        for model_id, rcps in todo.items():
            missing = [r for r in rcps if not cell_path(out, model_id, r, seed).exists()]
            if not missing:
                continue
            sft_rec = train_sft_model(model_id, seed, runs, out, sft_steps, health)
            print(f"[{time.strftime('%H:%M:%S')}] SFT {model_id} seed {seed}: {sft_rec['status']} "
                  f"({sft_rec['seconds']:.0f} s)", flush=True)
            for r in missing:
                rec = one_cell(model_id, r, seed, sft_rec, runs, rl_steps)
                rec["sft_seconds"] = sft_rec["seconds"]
                p = cell_path(out, model_id, r, seed)
                p.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_json(p, rec)
                secs = rec.get("seconds", {}).get("total", 0.0)
                print(f"[{time.strftime('%H:%M:%S')}]   {rec['cell']} seed {seed}: {rec['label']} "
                      f"(gate {rec.get('gate_shift', float('nan')):.3f}, comp "
                      f"{rec.get('component_change', float('nan')):.3f}; {secs:.0f} s)", flush=True)
            if not keep_runs:
                shutil.rmtree(runs / f"{model_id}_s{seed}", ignore_errors=True)
    return [json.loads(cell_path(out, m, r, s).read_text()) for s in seeds for m, rcps in todo.items() for r in rcps
            if cell_path(out, m, r, s).exists()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104])
    ap.add_argument("--out", type=Path, default=Path("experiments/results/sensitivity"))
    ap.add_argument("--runs", type=Path, default=None, help="trained runs (default: a temp folder)")
    ap.add_argument("--design", choices=("fractional", "full"), default="fractional")
    ap.add_argument("--adam-lr", type=float, nargs="+", default=[1e-3, 1e-4],
                    help="AdamW learning rates; the first is the one crossed with every SFT model")
    ap.add_argument("--only", nargs="+", default=None, help="restrict to these SFT model ids")
    ap.add_argument("--recipes", nargs="+", default=None, help="restrict to these recipe ids (e.g. sgd_emb_b0)")
    ap.add_argument("--reduced", action="store_true",
                    help="CI: untied d64 only, the default and the AdamW/frozen recipes, one seed, 200 SFT steps "
                         "(health check off), 10 RL steps")
    ap.add_argument("--summary-only", action="store_true", help="re-render the summary from OUT/cells/*/*.json")
    args = ap.parse_args(argv)
    import warnings

    from mixprobe.io import atomic_write_json, atomic_write_text

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    todo = plan(args.design, args.adam_lr)
    kw: dict = {}
    header = f"design {args.design}, seeds {', '.join(map(str, args.seeds))}"
    if args.reduced:
        todo = {"untied_d64": corners(args.adam_lr[0])}
        args.seeds = args.seeds[:1]
        kw = {"sft_steps": 200, "rl_steps": 10, "health": False}
        header = f"REDUCED (CI smoke run: 200 SFT steps, 10 RL steps), seed {args.seeds[0]}"
    if args.only:
        todo = {m: r for m, r in todo.items() if m in args.only}
    if args.recipes:
        todo = {m: [r for r in rs if recipe_id(r) in args.recipes] for m, rs in todo.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summary_only:
        records = [json.loads(p.read_text()) for p in sorted((args.out / "cells").glob("*/*.json"))]
    else:
        runs = args.runs or Path(tempfile.mkdtemp(prefix="mixprobe_sensitivity_"))
        t0 = time.time()
        records = run(args.out, args.seeds, todo, runs, **kw)
        print(f"done in {time.time() - t0:.0f} s", flush=True)
        if args.runs is None:
            shutil.rmtree(runs, ignore_errors=True)
    sft_records = [json.loads(p.read_text()) for p in sorted((args.out / "sft").glob("*.json"))]
    sft_records = [r for r in sft_records if r["sft_model"] in todo and r["seed"] in args.seeds]
    summary = summarize(records, order=[f"{m}__{recipe_id(r)}" for m, rs in todo.items() for r in rs],
                        sft_records=sft_records)
    summary["design"] = {"design": "reduced" if args.reduced else args.design, "seeds": args.seeds,
                         "plan": {m: [recipe_id(r) for r in rs] for m, rs in todo.items()}, **kw}
    atomic_write_json(args.out / "summary.json", summary)
    md = markdown(summary, header)
    atomic_write_text(args.out / "summary.md", md)
    figure(summary, args.out / "sensitivity.png")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

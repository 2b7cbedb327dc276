"""Task coverage and temporal context: what RL does to a gate that reads the prompt, and where the change lives.

Per organism and seed: SFT from scratch (4-layer Llama, d_model 48, vocabulary ≈ 5× d_model), then GRPO on the
specialist's domain (covered families / early years) with two recipes branched from the same SFT checkpoint:

- ``sgd`` — the default (SGD lr 0.03, every parameter trained);
- ``sgd_frozen_embeddings`` — the same with the embedding and unembedding frozen, so whatever moves the gate
  has to move inside the blocks.

Measured on each RL checkpoint: behaviour in and out of the domain (sampled accuracy, component shares, forced
accuracy), the verdict (sampled estimator, reference = last SFT), and where the change lives:

- **activation patching** SFT → RL on out-of-domain prompts, every (site, layer) at the last prompt token and at
  all positions, metric = the gate's log-odds ``log P(words) − log P(digits)`` (:func:`group_logit_diff`);
  restoration 1 = the SFT gate is back;
- **parameter patching** per module group (embeddings, each block's attention and MLP, norms, unembedding);
- **weight diff** share of ‖ΔW‖² by layer.

    python experiments/shift_organisms.py --organisms task_coverage temporal_context --seeds 0 1 2

Writes ``OUT/<organism>/<seed>.json`` as each finishes (a rerun skips finished ones) and ``OUT/summary.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RECIPES = {"sgd": {}, "sgd_frozen_embeddings": {"train_embeddings": False}}
MODEL = {"arch": "llama", "d_model": 48, "n_layers": 4, "n_heads": 4}
SITES = ["resid_pre", "attn_out", "mlp_out", "resid_post"]


def gate_metric(handle, organism):
    from mixprobe.organisms.shifts import NUMBER_WORDS
    from mixprobe.patching import group_logit_diff

    vocab = handle.tokenizer.get_vocab()
    words = [vocab[w] for w in NUMBER_WORDS[: organism.p]]
    digits = [vocab[str(i)] for i in range(organism.p)]
    return group_logit_diff(words, digits)


def where(series, organism, phase: str) -> dict:
    """Activation patching, parameter patching and weight diff, SFT → ``phase``, on out-of-domain prompts."""
    from mixprobe.mixture.weight_diff import weight_diff
    from mixprobe.patching import param_sweep, patch_sweep

    sft = series.handle(series.last("sft").name)
    rl = series.handle(series.last(phase).name)
    prompts = [r["prompt"] for r in organism.prompt_set() if not organism.in_domain(r["cue"])]
    metric = gate_metric(rl, organism)
    act = patch_sweep(rl, sft, prompts, sites=SITES, positions=["last_prompt", "all"], metric=metric)
    par = param_sweep(rl, sft, prompts, metric=metric)
    wd = weight_diff(sft.model, rl.model)
    rest = {s: {p: round(float(act.restoration[i, j]), 4) for j, p in enumerate(act.positions)}
            for i, s in enumerate(act.sites)}
    n_layers = len({s.split(".")[-1] for s in act.sites})
    before_final_norm = [s for s in act.sites if s.startswith(("resid_pre", "resid_post"))]
    return {"m_sft": act.m_source, "m_rl": act.m_target, "activation_restoration": rest,
            "best_resid_site_last": max(before_final_norm, key=lambda s: rest[s]["last_prompt"]),
            "best_resid_restoration_last": max(rest[s]["last_prompt"] for s in before_final_norm),
            "best_resid_restoration_all": max(rest[s]["all"] for s in before_final_norm),
            "param_restoration": {lab: round(float(r), 4) for lab, r in zip(par.labels, par.restoration)},
            "weight_diff_layer_share": {k: round(v, 4) for k, v in wd["layer_norm_share"].items()},
            "n_layers": n_layers}


def forcing(series, organism, phase: str) -> dict:
    """Does forcing still force? Per domain, with each component's forcing line: the next-token mass on its own
    answer form and on the other's, and how often the argmax *within its own form* is its rule's value (the
    policy, read apart from whether the forcing line still wins over the gate)."""
    import torch

    from mixprobe.train.evaluate import next_token_probs

    h = series.handle(series.last(phase).name)
    vocab = h.tokenizer.get_vocab()
    out: dict = {}
    for dom in ("in", "out"):
        rows = [r for r in organism.prompt_set() if organism.in_domain(r["cue"]) == (dom == "in")]
        out[dom] = {}
        for comp in organism.components:
            other = next(c for c in organism.components if c != comp)
            own = torch.tensor([vocab[organism.render(comp, v)] for v in range(organism.p)])
            oth = torch.tensor([vocab[organism.render(other, v)] for v in range(organism.p)])
            pr = next_token_probs(h.model, h.tokenizer, [f"{organism.forcing(comp)} {r['prompt']}" for r in rows])
            rule = torch.tensor([organism.rule(comp, r) for r in rows])
            out[dom][comp] = {"own_form": round(float(pr[:, own].sum(-1).mean()), 4),
                              "other_form": round(float(pr[:, oth].sum(-1).mean()), 4),
                              "rule_given_form": round(float((pr[:, own].argmax(-1) == rule).float().mean()), 4)}
    return out


def one(kind: str, seed: int, root: Path, *, sft_steps: int, rl_steps: int, n_samples: int,
        recipes: dict | None = None) -> dict:
    import torch

    torch.set_num_threads(1)
    from mixprobe.env import environment
    from mixprobe.mixture.verdict import assess
    from mixprobe.train.pipeline import TrainConfig, evaluate_series, organism_of, train_rl, train_sft
    from mixprobe.train.rl import RLSettings
    from mixprobe.train.series import Series

    t0 = time.time()
    recipes = recipes or RECIPES
    run = root / f"{kind}_s{seed}"
    cfg = TrainConfig.from_dict({"seed": seed, "organism": {"kind": kind}, "model": MODEL,
                                 "sft": {"steps": sft_steps, "save_every": sft_steps, "n_rows": 20000}})
    out: dict = {"organism": kind, "seed": seed, "model": MODEL, "sft_steps": sft_steps, "rl_steps": rl_steps,
                 "environment": environment()}
    from mixprobe.errors import TrainingFailedError

    try:
        s = train_sft(run, cfg, overwrite=True, progress=False)
    except TrainingFailedError as e:       # a result, not something to tune away: recorded and counted
        failed = Series.load(run)
        out.update(sft_failed=str(e), sft=failed.last("sft").metrics, recipes={},
                   seconds=round(time.time() - t0, 1))
        return out
    org = organism_of(s)
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    out["vocab_size"] = len(build_word_tokenizer(org.vocabulary()))
    out["sft_seconds"] = round(time.time() - t0, 1)
    for name, kw in recipes.items():
        train_rl(run, RLSettings(tag=org.domain, steps=rl_steps, phase=f"rl_{name}", **kw), progress=False)
    s = evaluate_series(Series.load(run), seed=seed, progress=False, only_missing=False)
    task = org.task()
    ref = s.handle(s.last("sft").name)
    out["sft"] = {k: s.last("sft").metrics[k] for k in ("accuracy", "mode_frequency", "forced_accuracy",
                                                         "mode_probability")}
    out["sft"]["forcing"] = forcing(s, org, "sft")
    out["recipes"] = {}
    for name, kw in recipes.items():
        phase = f"rl_{name}"
        m = s.last(phase).metrics
        e = assess(ref, s.handle(s.last(phase).name), task, estimator="sampled", n_samples=n_samples, seed=seed)
        out["recipes"][name] = {
            "rl_settings": {"optim": "sgd", "lr": 0.03, "train_embeddings": kw.get("train_embeddings", True)},
            "metrics": {k: m[k] for k in ("accuracy", "mode_frequency", "forced_accuracy", "mode_probability")},
            "verdict": {"label": e.label, "reason": e.reason, "gate_shift": e.intervals["gate_shift"],
                        "component_change": e.intervals["component_change"],
                        "off_mixture": e.intervals["off_mixture"],
                        "component_change_by_cell": e.component_change_by_cell, "fidelity": e.fidelity},
            "where": where(s, org, phase),
            "forcing": forcing(s, org, phase),
            "out_cues": [c for c in org.cues if not org.in_domain(c)]}
    out["seconds"] = round(time.time() - t0, 1)
    return out


def out_cues(rec: dict) -> list[str]:
    """The out-of-domain cues of a recipe record (the cues whose prompts the where-analysis used)."""
    return rec["out_cues"]


def _fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} [{min(xs):.3f}, {max(xs):.3f}]"


def summarize(out_dir: Path) -> str:
    lines = ["# Task coverage and temporal context: RL on the specialist's domain", "",
             "Generated by `experiments/shift_organisms.py`; median [min, max] over seeds. `in` = covered families / "
             "early years (where RL ran), `out` = uncovered families / late years. Gate restoration: activation "
             "patching SFT → RL on out-of-domain prompts, metric log P(words) − log P(digits), best residual-stream "
             "site before the final norm. Organism outcomes differ between machines at the seed level.", ""]
    for kind_dir in sorted(p for p in out_dir.iterdir() if p.is_dir()):
        every = [json.loads(f.read_text()) for f in sorted(kind_dir.glob("*.json"), key=lambda f: int(f.stem))]
        runs = [r for r in every if not r.get("sft_failed")]
        failed = [r["seed"] for r in every if r.get("sft_failed")]
        if failed:
            lines += [f"**{kind_dir.name}: SFT failed its health check on {len(failed)} of {len(every)} seeds "
                      f"({', '.join(map(str, failed))})**: the forced components did not follow their rules; RL "
                      "was not run on them and they are left out of the table below.", ""]
        if not runs:
            continue
        r0 = max(runs, key=lambda r: len(r["recipes"]))
        lines += [f"## {kind_dir.name} (seeds {', '.join(str(r['seed']) for r in runs)}; vocabulary "
                  f"{r0['vocab_size']}, d_model {r0['model']['d_model']}, {r0['model']['n_layers']} layers)", "",
                  "| statistic | SFT | " + " | ".join(r0["recipes"]) + " |", "|---|---|" + "---|" * len(r0["recipes"])]

        def row(label, f_sft, f_rec, runs=runs, r0=r0, lines=lines):
            sft = _fmt([f_sft(r) for r in runs]) if f_sft else ""
            cells = [_fmt([f_rec(r["recipes"][k]) for r in runs if k in r["recipes"]]) for k in r0["recipes"]]
            lines.append(f"| {label} | {sft} | " + " | ".join(cells) + " |")

        for g in ("in", "out"):
            row(f"accuracy, {g}", lambda r, g=g: r["sft"]["accuracy"][g], lambda x, g=g: x["metrics"]["accuracy"][g])
            row(f"P(specialist) sampled, {g}", lambda r, g=g: r["sft"]["mode_frequency"][g]["specialist"],
                lambda x, g=g: x["metrics"]["mode_frequency"][g]["specialist"])
            row(f"forced generalist accuracy, {g}", lambda r, g=g: r["sft"]["forced_accuracy"][g]["generalist"],
                lambda x, g=g: x["metrics"]["forced_accuracy"][g]["generalist"])
        row("forced generalist: mass on word form, out",
            lambda r: r["sft"]["forcing"]["out"]["generalist"]["other_form"],
            lambda x: x["forcing"]["out"]["generalist"]["other_form"])
        row("forced generalist: rule within digit form, out",
            lambda r: r["sft"]["forcing"]["out"]["generalist"]["rule_given_form"],
            lambda x: x["forcing"]["out"]["generalist"]["rule_given_form"])
        row("forced specialist: rule within word form, out",
            lambda r: r["sft"]["forcing"]["out"]["specialist"]["rule_given_form"],
            lambda x: x["forcing"]["out"]["specialist"]["rule_given_form"])
        row("gate shift", None, lambda x: x["verdict"]["gate_shift"]["point"])
        row("component change", None, lambda x: x["verdict"]["component_change"]["point"])
        row("component change, out-of-domain cells", None, lambda x: max(
            max(per.values()) for cue, per in x["verdict"]["component_change_by_cell"].items() if cue in out_cues(x)))
        row("best resid restoration (last token)", None, lambda x: x["where"]["best_resid_restoration_last"])
        row("best resid restoration (all positions)", None, lambda x: x["where"]["best_resid_restoration_all"])
        row("param restoration, unembedding", None,
            lambda x: next(v for k, v in x["where"]["param_restoration"].items() if "lm_head" in k))
        row("weight diff share, unembedding", None,
            lambda x: sum(v for k, v in x["where"]["weight_diff_layer_share"].items() if "lm_head" in k))
        lines.append("")
        for k in r0["recipes"]:
            labels = [r["recipes"][k]["verdict"]["label"] for r in runs if k in r["recipes"]]
            seeds = [f"{r['seed']}:{r['recipes'][k]['verdict']['label']}" for r in runs if k in r["recipes"]]
            counts = ", ".join(f"{lab} {labels.count(lab)}/{len(labels)}" for lab in sorted(set(labels)))
            lines.append(f"- verdict, {k}: {counts} ({' '.join(seeds)})")
        lines.append("")
    return "\n".join(lines) + "\n"


def backfill(dst: Path, run: Path) -> None:
    """Add the forcing measurement to a result written before it existed, from its kept run folder."""
    rec = json.loads(dst.read_text())
    if rec.get("sft_failed") or "forcing" in rec["sft"] or not (run / "series.json").exists():
        return
    from mixprobe.io import atomic_write_json
    from mixprobe.train.pipeline import organism_of
    from mixprobe.train.series import Series

    s = Series.load(run)
    org = organism_of(s)
    rec["sft"]["forcing"] = forcing(s, org, "sft")
    for name, r in rec["recipes"].items():
        r["forcing"] = forcing(s, org, f"rl_{name}")
    atomic_write_json(dst, rec)


def plot(out_dir: Path) -> None:
    """``<organism>_where.png``: per recipe, the activation-patching heatmap (site × layer, last prompt token,
    mean over seeds) beside the parameter-patching restoration per module group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    for kind_dir in sorted(p for p in out_dir.iterdir() if p.is_dir()):
        runs = [r for r in (json.loads(f.read_text()) for f in sorted(kind_dir.glob("*.json"))) if r["recipes"]]
        if not runs:
            continue
        recipes = list(max(runs, key=lambda r: len(r["recipes"]))["recipes"])
        fig, axes = plt.subplots(2, len(recipes), figsize=(5.5 * len(recipes), 7), squeeze=False)
        for j, rec in enumerate(recipes):
            w = [r["recipes"][rec]["where"] for r in runs if rec in r["recipes"]]
            n_layers = w[0]["n_layers"]
            grid = np.array([[np.mean([x["activation_restoration"][f"{site}.{layer}"]["last_prompt"] for x in w])
                              for layer in range(n_layers)] for site in SITES])
            ax = axes[0, j]
            im = ax.imshow(grid, vmin=-0.2, vmax=1.0, cmap="viridis", aspect="auto")
            ax.set_xticks(range(n_layers))
            ax.set_yticks(range(len(SITES)), SITES)
            ax.set_xlabel("layer")
            ax.set_title(f"{rec}: activation patching SFT→RL\n(last prompt token, mean of {len(w)} seeds)",
                         fontsize=9)
            for (a, b), v in np.ndenumerate(grid):
                ax.text(b, a, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.5 else "k")
            fig.colorbar(im, ax=ax, fraction=0.04)
            labels = list(w[0]["param_restoration"])
            vals = np.array([[x["param_restoration"][lab] for lab in labels] for x in w])
            ax = axes[1, j]
            ax.bar(range(len(labels)), vals.mean(0), yerr=[vals.mean(0) - vals.min(0), vals.max(0) - vals.mean(0)],
                   color="tab:orange")
            ax.set_xticks(range(len(labels)), labels, rotation=60, fontsize=7)
            ax.set_ylabel("restoration")
            ax.set_title("parameter patching SFT→RL per module group (mean, min–max)", fontsize=9)
        fig.suptitle(f"{kind_dir.name}: where the RL change to the gate lives (out-of-domain prompts)")
        fig.tight_layout()
        fig.savefig(out_dir / f"{kind_dir.name}_where.png", dpi=110)
        plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--organisms", nargs="+", default=["task_coverage", "temporal_context"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--out", default="experiments/results/shift_organisms")
    ap.add_argument("--sft-steps", type=int, default=1500)
    ap.add_argument("--rl-steps", type=int, default=150)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--runs", default=None, help="where trained runs go (default: a temporary folder)")
    a = ap.parse_args()
    out = Path(a.out)
    root = Path(a.runs) if a.runs else Path(tempfile.mkdtemp(prefix="shift_runs_"))
    from mixprobe.io import atomic_write_json, atomic_write_text

    for kind in a.organisms:
        for seed in a.seeds:
            dst = out / kind / f"{seed}.json"
            if dst.exists():
                backfill(dst, root / f"{kind}_s{seed}")
                continue
            res = one(kind, seed, root, sft_steps=a.sft_steps, rl_steps=a.rl_steps, n_samples=a.samples,
                      recipes={k: RECIPES[k] for k in a.recipes})
            dst.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(dst, res)
            print(f"{kind} seed {seed}: {res['seconds']} s", flush=True)
    atomic_write_text(out / "summary.md", summarize(out))
    plot(out)


if __name__ == "__main__":
    main()

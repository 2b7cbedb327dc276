"""What the tag-mixture organism does under the default recipe, measured over many seeds.

Organism outcomes are statistics, not guarantees: another CPU (other BLAS kernels, other instruction sets) changes
floating-point sums, and after 1,500 SFT and 150 GRPO steps the trained organisms differ at the seed level much
as two seeds do. This script trains the default recipe on each seed and records every number the test suite,
the notebooks and the docs might want to assert, so that a claim becomes a CI check only when it holds on all of
these seeds with margin, and otherwise is reported as a share of seeds.

Per seed: SFT → GRPO on <A> and on <B> (the default organism), the m3 positive-transfer control and the
format-signature variant (SFT → GRPO on <A>), the three planted cases with the verdict on each, the verdict on
RL-on-A, steering along the selection direction, the gate readout and the environment that shaped the numbers.

    python experiments/seed_sweep.py --seeds 10 11 12 13 14 15 16 17 18 19 --out experiments/results/seed_sweep

Writes ``OUT/seeds/<seed>.json`` as each seed finishes (a rerun skips finished seeds), then ``OUT/summary.json``
and ``OUT/summary.md``: per statistic min / median / max over seeds, and per label the share of seeds with a
Wilson 95 % interval. Trained runs go to ``--runs`` (default: a temporary folder, deleted afterwards).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson 95 % score interval of a share k/n (``(0, 1)`` when n is 0): :func:`mixprobe.mixture.stats.wilson`."""
    from mixprobe.mixture.stats import wilson as _wilson

    return _wilson(k, n)


def _metrics(series, phase: str) -> dict:
    m = series.last(phase).metrics
    return {k: m[k] for k in ("accuracy", "mode_frequency", "forced_accuracy", "mode_probability",
                              "expected_accuracy") if k in m}


def one_seed(seed: int, runs_root: str, threads: int = 1) -> dict:
    import torch

    torch.set_num_threads(threads)
    from mixprobe.env import environment
    from mixprobe.mixture.studies import gate_readout_study, steering_dose_response
    from mixprobe.mixture.verdict import assess
    from mixprobe.organisms.tag_mixture import m3_control_config
    from mixprobe.train.pipeline import load_checkpoint, organism_of
    from mixprobe.train.planted import PLANTED_CASES, plant
    from mixprobe.train.series import Series
    from mixprobe.train.zoo import trained_organism

    t0 = time.time()
    root = Path(runs_root)
    out: dict = {"seed": seed, "environment": environment()}
    s = trained_organism(seed, cache_dir=root, progress=False)
    out["default"] = {ph: _metrics(s, ph) for ph in ("sft", "rl", "rl_B")}
    organism = organism_of(s)
    ref = load_checkpoint(s.path(s.last("sft")))
    verdicts = {}
    for case in PLANTED_CASES:
        plant(s.run_dir, case)

    s = Series.open(s.run_dir)
    for case, phase in {**{c: f"planted_{c}" for c in PLANTED_CASES}, "rl_on_A": "rl", "rl_on_B": "rl_B"}.items():
        e = assess(ref, load_checkpoint(s.path(s.last(phase))), organism)
        verdicts[case] = {"label": e.label, "gate_shift": e.gate_shift, "component_change": e.component_change,
                          "fidelity": e.fidelity, "responsibilities": e.responsibilities_tgt,
                          "kl_split": e.kl_split, "component_change_by_cell": e.component_change_by_cell}
    out["verdicts"] = verdicts
    rows = steering_dose_response(s, s.last("rl").name, toward="m2", alphas=[0.0, 12.0], seed=seed)
    out["steer_rl_toward_m2"] = rows
    rows = steering_dose_response(s, s.last("sft").name, toward="m1", alphas=[0.0, 12.0], seed=seed)
    out["steer_sft_toward_m1"] = rows
    gate = gate_readout_study(s, site="resid_post.1", seed=seed)
    out["gate_readout"] = {"spearman": gate.spearman,
                           "rl_minus_sft": {t: gate.value(s.last("rl").name, t) - gate.value(s.last("sft").name, t)
                                            for t in ("A", "B")}}
    for key, fn in (("patching", lambda: patching_numbers(s)), ("revival", lambda: revival_numbers(s)),
                    ("kl_penalty", lambda: kl_penalty_numbers(s, root / f"kl_s{seed}"))):
        try:
            out[key] = fn()
        except Exception as e:  # noqa: BLE001 - a failed measurement is recorded, the other numbers are kept
            out[key] = {"error": f"{type(e).__name__}: {e}"}
    m3 = trained_organism(seed, config={"organism": m3_control_config().to_dict()}, rl_tags=("A",),
                          cache_dir=root, progress=False)
    out["m3_control"] = {ph: _metrics(m3, ph) for ph in ("sft", "rl")}
    fmt = trained_organism(seed, config={"organism": {"signature": "format"}}, rl_tags=("A",), cache_dir=root,
                           progress=False)
    out["format"] = {ph: _metrics(fmt, ph) for ph in ("sft", "rl")}
    out["seconds"] = time.time() - t0
    return out


def patching_numbers(series) -> dict:
    """The numbers tests/patching/test_patching_organism.py asserts on (SFT → RL-on-A, <B> prompts, P(m2))."""
    from mixprobe.models.handle import ModelHandle
    from mixprobe.patching import param_sweep, patch_sweep, token_prob
    from mixprobe.train.pipeline import load_checkpoint, organism_of

    org = organism_of(series)
    sft = ModelHandle(*load_checkpoint(series.path(series.last("sft"))))
    rl = ModelHandle(*load_checkpoint(series.path(series.last("rl"))))
    prompts = [r["prompt"] for r in org.prompt_set(("B",))]
    m2 = sft.tokenizer.convert_tokens_to_ids("m2")
    n_tok = int(rl.tokenize(prompts).attention_mask.sum(1).max())
    act = patch_sweep(rl, sft, prompts, sites=["resid_pre", "attn_out", "mlp_out", "resid_post"],
                      positions=[*range(n_tok), "all"], metric=token_prob(m2))
    par = param_sweep(rl, sft, prompts, metric=token_prob(m2), rows=["m1", "m2"])
    blocks = [lab for lab in par.labels if lab.startswith("blocks.")] if hasattr(par, "labels") else []
    return {"activation_max_abs_restoration": float(act.restoration.abs().max()),
            "param_lm_head": par.at("lm_head"), "param_lm_head_rows": par.at("lm_head[m1,m2]"),
            "param_blocks_max_abs": max((abs(par.at(b)) for b in blocks), default=None),
            "m_source": par.m_source, "m_target": par.m_target}


def revival_numbers(series) -> dict:
    from mixprobe.train.pipeline import load_checkpoint, organism_of
    from mixprobe.mixture.revival import revival_steps

    model, tok = load_checkpoint(series.path(series.last("rl")))
    r = revival_steps(model, tok, organism_of(series), tag="B", threshold=0.9, max_steps=80)
    return {"steps": r["steps"], "start": r["history"][0][1], "component": r["component"]}


def kl_penalty_numbers(series, work: Path) -> dict:
    """P(m1 | B) after 10 GRPO steps on <A> with beta 0 and beta 1 (tests/train/test_training_options.py)."""
    import shutil

    from mixprobe.train.evaluate import evaluate
    from mixprobe.train.pipeline import load_checkpoint, organism_of, train_rl
    from mixprobe.train.rl import RLSettings

    out = {}
    for beta in (0.0, 1.0):
        dst = work / f"beta{beta}"
        shutil.rmtree(dst, ignore_errors=True)
        series.branch(dst)
        s = train_rl(dst, RLSettings(tag="A", steps=10, save_every=10, beta=beta), progress=False)
        model, tok = load_checkpoint(s.path(s.last("rl")))
        out[str(beta)] = evaluate(model, tok, organism_of(s), n_samples=1)["mode_probability"]["B"]["m1"]
    shutil.rmtree(work, ignore_errors=True)
    return out


# --- summary ------------------------------------------------------------------------------------------------------
STATS = {
    "sft accuracy A": lambda r: r["default"]["sft"]["accuracy"]["A"],
    "sft accuracy B": lambda r: r["default"]["sft"]["accuracy"]["B"],
    "sft P(m1) sampled, A": lambda r: r["default"]["sft"]["mode_frequency"]["A"]["m1"],
    "sft P(m1) sampled, B": lambda r: r["default"]["sft"]["mode_frequency"]["B"]["m1"],
    "sft forced m1 accuracy, A": lambda r: r["default"]["sft"]["forced_accuracy"]["A"]["m1"],
    "sft forced m2 accuracy, B": lambda r: r["default"]["sft"]["forced_accuracy"]["B"]["m2"],
    "rl(A) accuracy A": lambda r: r["default"]["rl"]["accuracy"]["A"],
    "rl(A) accuracy B": lambda r: r["default"]["rl"]["accuracy"]["B"],
    "rl(A) P(m1) sampled, B": lambda r: r["default"]["rl"]["mode_frequency"]["B"]["m1"],
    "rl(A) forced m2 accuracy, B": lambda r: r["default"]["rl"]["forced_accuracy"]["B"]["m2"],
    "rl(A) forced m2 accuracy, A": lambda r: r["default"]["rl"]["forced_accuracy"]["A"]["m2"],
    "rl(B) accuracy B": lambda r: r["default"]["rl_B"]["accuracy"]["B"],
    "rl(B) accuracy A": lambda r: r["default"]["rl_B"]["accuracy"]["A"],
    "rl(B) forced m1 accuracy, A": lambda r: r["default"]["rl_B"]["forced_accuracy"]["A"]["m1"],
    "rl(A) gate shift": lambda r: r["verdicts"]["rl_on_A"]["gate_shift"],
    "rl(A) component change": lambda r: r["verdicts"]["rl_on_A"]["component_change"],
    "rl(A) forced m2 agreement, B": lambda r: r["verdicts"]["rl_on_A"]["fidelity"]["B"]["m2"]["agreement"],
    "planted reweight gate shift": lambda r: r["verdicts"]["reweight"]["gate_shift"],
    "planted reweight component change": lambda r: r["verdicts"]["reweight"]["component_change"],
    "planted rewrite gate shift": lambda r: r["verdicts"]["rewrite"]["gate_shift"],
    "planted rewrite component change": lambda r: r["verdicts"]["rewrite"]["component_change"],
    "planted both gate shift": lambda r: r["verdicts"]["both"]["gate_shift"],
    "planted both component change": lambda r: r["verdicts"]["both"]["component_change"],
    "steer rl toward m2: accuracy B at α=0": lambda r: r["steer_rl_toward_m2"][0]["accuracy_B"],
    "steer rl toward m2: accuracy B at α=12": lambda r: r["steer_rl_toward_m2"][1]["accuracy_B"],
    "steer sft toward m1: accuracy B at α=12": lambda r: r["steer_sft_toward_m1"][1]["accuracy_B"],
    "gate readout spearman": lambda r: r["gate_readout"]["spearman"],
    "rl(A) KL gate share, B": lambda r: r["verdicts"]["rl_on_A"]["kl_split"]["B"]["gate"]
    / r["verdicts"]["rl_on_A"]["kl_split"]["B"]["total"],
    "patching: activation max |restoration|": lambda r: r["patching"]["activation_max_abs_restoration"],
    "patching: lm_head restoration": lambda r: r["patching"]["param_lm_head"],
    "patching: lm_head[m1,m2] restoration": lambda r: r["patching"]["param_lm_head_rows"],
    "patching: P(m2|B) at rl": lambda r: r["patching"]["m_target"],
    "revival steps (budget 80; 81 = not revived)": lambda r: r["revival"]["steps"] or 81,
    "KL: P(m1|B) after 10 steps, beta 0": lambda r: r["kl_penalty"]["0.0"],
    "KL: P(m1|B) after 10 steps, beta 0 minus beta 1": lambda r: r["kl_penalty"]["0.0"] - r["kl_penalty"]["1.0"],
    "m3 sft accuracy B": lambda r: r["m3_control"]["sft"]["accuracy"]["B"],
    "m3 rl(A) accuracy B": lambda r: r["m3_control"]["rl"]["accuracy"]["B"],
    "m3 rl(A) P(m3) sampled, B": lambda r: r["m3_control"]["rl"]["mode_frequency"]["B"]["m3"],
    "format sft accuracy A": lambda r: r["format"]["sft"]["accuracy"]["A"],
    "format rl(A) accuracy A": lambda r: r["format"]["rl"]["accuracy"]["A"],
    "format rl(A) accuracy B": lambda r: r["format"]["rl"]["accuracy"]["B"],
    "format rl(A) forced m2 accuracy, B": lambda r: r["format"]["rl"]["forced_accuracy"]["B"]["m2"],
}
LABELLED = ("rl_on_A", "rl_on_B", "reweight", "rewrite", "both")


def summarize(results: list[dict]) -> dict:
    results = sorted(results, key=lambda r: r["seed"])
    n = len(results)
    stats = {}
    for name, get in STATS.items():
        xs = []
        for r in results:
            try:
                xs.append(float(get(r)))
            except (KeyError, IndexError, TypeError):
                pass
        if xs:
            stats[name] = {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "n": len(xs),
                           "values": xs}
    labels = {}
    for case in LABELLED:
        per = {r["seed"]: r["verdicts"][case]["label"] for r in results}
        counts = {lab: sum(v == lab for v in per.values()) for lab in ("reweight", "rewrite", "both", "undecided")}
        labels[case] = {"per_seed": per, "counts": counts,
                        "wilson95": {lab: wilson(k, n) for lab, k in counts.items()}}
    envs = {json.dumps(r["environment"], sort_keys=True) for r in results}
    return {"seeds": [r["seed"] for r in results], "n": n, "statistics": stats, "labels": labels,
            "environments": [json.loads(e) for e in envs],
            "seconds_per_seed": statistics.median(r["seconds"] for r in results)}


def markdown(summary: dict) -> str:
    n = summary["n"]
    lines = [f"# Tag mixture, default recipe: {n} seeds ({', '.join(map(str, summary['seeds']))})", "",
             "Generated by `experiments/seed_sweep.py`. Each seed: SFT → GRPO on <A> and on <B>, the m3 control, the "
             "format variant, the three planted cases. Organism outcomes differ between machines at the seed level; "
             "these are the numbers of the machine below.", "", "## Verdict labels (share of seeds, Wilson 95 %)", "",
             "| case | reweight | rewrite | both | undecided | per seed |", "|---|---|---|---|---|---|"]
    for case, d in summary["labels"].items():
        cells = []
        for lab in ("reweight", "rewrite", "both", "undecided"):
            k = d["counts"][lab]
            lo, hi = d["wilson95"][lab]
            cells.append(f"{k}/{n} [{lo:.2f}, {hi:.2f}]")
        per = " ".join(f"{s}:{lab[:4]}" for s, lab in sorted(d["per_seed"].items(), key=lambda kv: int(kv[0])))
        lines.append(f"| {case} | " + " | ".join(cells) + f" | {per} |")
    lines += ["", "## Statistics over seeds", "", "| statistic | min | median | max |", "|---|---|---|---|"]
    for name, d in summary["statistics"].items():
        lines.append(f"| {name} | {d['min']:.3f} | {d['median']:.3f} | {d['max']:.3f} |")
    lines += ["", "## Environment", ""]
    for e in summary["environments"]:
        lines.append("- " + ", ".join(f"{k}={v}" for k, v in e.items() if k != "cpu_flags"))
    lines.append(f"\nMedian time per seed: {summary['seconds_per_seed']:.0f} s (one torch thread).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10, 20)))
    ap.add_argument("--out", type=Path, default=Path("experiments/results/seed_sweep"))
    ap.add_argument("--runs", type=Path, default=None, help="keep trained runs here (default: a temp folder)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--summary-only", action="store_true", help="re-render the summary from OUT/seeds/*.json")
    args = ap.parse_args(argv)
    from mixprobe.io import atomic_write_json, atomic_write_text

    seeds_dir = args.out / "seeds"
    seeds_dir.mkdir(parents=True, exist_ok=True)
    todo = [s for s in args.seeds if not (seeds_dir / f"{s}.json").exists()]
    if todo and not args.summary_only:
        runs = args.runs or Path(tempfile.mkdtemp(prefix="mixprobe_sweep_"))
        from concurrent.futures import as_completed

        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            futs = {pool.submit(one_seed, s, str(runs)): s for s in todo}
            for fut in as_completed(futs):
                if fut.exception() is not None:
                    print(f"seed {futs[fut]} failed: {fut.exception()!r}", flush=True)
                    continue
                r = fut.result()
                atomic_write_json(seeds_dir / f"{r['seed']}.json", r)
                print(f"seed {r['seed']} done in {r['seconds']:.0f} s: rl_on_A → {r['verdicts']['rl_on_A']['label']}",
                      flush=True)
    results = [json.loads((seeds_dir / f"{s}.json").read_text()) for s in args.seeds
               if (seeds_dir / f"{s}.json").exists()]
    summary = summarize(results)
    atomic_write_json(args.out / "summary.json", summary)
    atomic_write_text(args.out / "summary.md", markdown(summary))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())

"""Ray engine benchmark: capture with 1 vs 2 Ray workers vs one process, on a model where compute dominates.

Workload: two checkpoints of a random Llama (d_model 256, 4 layers, 4 heads, d_mlp 1024, a 100-word vocabulary),
``--prompts`` random prompts of 16–24 words each, every layer's residual stream (``resid_post.*``) at the last
prompt token, batches of 32, shards of 256 rows, a float32 store. The activations kept are small (4 × 256 floats
per prompt), the forwards are not: compute dominates.

Modes, each in a fresh child process (``ru`` of the others cannot leak in):
  local_1t   ``capture(..., store=...)`` in one process, ``torch.set_num_threads(1)``
  local_2t   the same with 2 torch threads
  ray_1w     ``engine="ray"`` on a local cluster started with ``num_cpus=1``: one worker (one thread) at a time
  ray_2w     the same with ``num_cpus=2``: two workers, one checkpoint each
  local_2proc  the control: two independent one-thread processes, one checkpoint each, started together — what
             this machine gives two workers right now, without Ray (on a shared machine, less than 2x)
For the Ray modes the first capture is **cold** (worker processes start and import torch) and the next ones
**warm** (workers reused); each capture writes a fresh store. Every store must have the content hash of
``local_1t`` (checked). Also measured here, for the planning table of docs/distributed.md: the shard writer's rate
(``write_shard_files``: serialize, sha256, fsync, rename) and one rewrite of a manifest shaped like a 70B capture's.

    python benchmarks/distributed.py            # writes benchmarks/results/distributed.{json,md}; ~3 min on 2 cores
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODEL = dict(d_model=256, n_layers=4, n_heads=4, d_mlp=1024, max_positions=64)
MODES = ("local_1t", "local_2t", "ray_1w", "ray_2w")
KW = dict(batch_size=32, shard_size=256, device="cpu", progress=False)
SITES = "resid_post.*"


def build(folder: Path, n_prompts: int) -> tuple[list[str], list[str], int]:
    """Two checkpoint folders and the prompts; returns (folders, prompts, parameters per model)."""
    import random

    from mixprobe.organisms.configs import tiny_model
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    words = [f"w{i}" for i in range(100)]
    tok = build_word_tokenizer(words)
    ckpts = []
    n_params = 0
    for seed in range(2):
        d = folder / f"ckpt-{seed}"
        if not d.exists():
            m = tiny_model("llama", vocab_size=len(tok), seed=seed, **MODEL)
            m.save_pretrained(d)
            tok.save_pretrained(d)
        ckpts.append(str(d))
    from transformers import AutoConfig, AutoModelForCausalLM

    with __import__("torch").device("meta"):
        n_params = sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(ckpts[0]))
                       .parameters())
    rng = random.Random(0)
    prompts = [" ".join(rng.choice(words) for _ in range(rng.randint(16, 24))) for _ in range(n_prompts)]
    return ckpts, prompts, n_params


def child(mode: str, folder: str, n_prompts: int, repeats: int) -> dict:
    import mixprobe  # noqa: F401  (first: it sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP)
    import torch

    torch.set_num_threads(2 if mode == "local_2t" else 1)
    from mixprobe.capture import capture
    from mixprobe.capture.store import ActivationStore

    ckpts, prompts, _ = build(Path(folder), n_prompts)
    out: dict = {"mode": mode, "runs_s": [], "hashes": []}
    t_init = 0.0
    if mode.startswith("ray"):
        import ray

        t = time.perf_counter()
        ray.init(num_cpus=1 if mode == "ray_1w" else 2, include_dashboard=False, log_to_driver=False)
        t_init = time.perf_counter() - t
    engine = "ray" if mode.startswith("ray") else "local"
    for _ in range(repeats + (1 if engine == "ray" else 0)):
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            st = capture(ckpts, prompts, SITES, "last_prompt", store=Path(d) / "s", engine=engine, **KW)
            out["runs_s"].append(time.perf_counter() - t)
            out["hashes"].append(ActivationStore(st.path).content_hash())
    if engine == "ray":
        out["init_s"] = t_init
        out["cold_s"] = out["runs_s"][0]
        warm = out["runs_s"][1:]
    else:
        warm = out["runs_s"]
    out["warm_median_s"] = statistics.median(warm)
    out["warm_min_s"] = min(warm)
    return out


def half_child(folder: str, n_prompts: int, repeats: int, index: int, go: str) -> dict:
    """One checkpoint in one process, one thread, started with its twin (the ``local_2proc`` control): after the
    imports, wait for the ``go`` file, then capture ``repeats`` times and report each run's start and end."""
    import mixprobe  # noqa: F401
    import torch

    torch.set_num_threads(1)
    from mixprobe.capture import capture

    ckpts, prompts, _ = build(Path(folder), n_prompts)
    while not os.path.exists(go):
        time.sleep(0.01)
    spans = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as d:
            t = time.time()
            capture([ckpts[index]], prompts, SITES, "last_prompt", store=Path(d) / "s", **KW)
            spans.append([t, time.time()])
    return {"spans": spans}


def two_processes(folder: str, n_prompts: int, repeats: int) -> dict:
    """The machine's own ceiling for 2 workers: two independent one-thread processes, one checkpoint each, at once."""
    go = Path(folder) / "go"
    go.unlink(missing_ok=True)
    procs = [subprocess.Popen([sys.executable, __file__, "--half", folder, str(i), str(go), "--prompts",
                               str(n_prompts), "--repeats", str(repeats)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
             for i in range(2)]
    time.sleep(15)          # both imported torch and built their prompts
    go.write_text("go")
    outs = []
    for p in procs:
        o, e = p.communicate(timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(e[-3000:])
        outs.append(json.loads(o.strip().splitlines()[-1])["spans"])
    runs = [max(outs[0][r][1], outs[1][r][1]) - min(outs[0][r][0], outs[1][r][0]) for r in range(repeats)]
    return {"mode": "local_2proc", "runs_s": runs, "warm_median_s": statistics.median(runs), "warm_min_s": min(runs),
            "hashes": []}


def store_rates() -> dict:
    """The shard writer's throughput, and one rewrite of a 70B-shaped manifest (80 sites × d_model 8192)."""
    import numpy as np

    from mixprobe.capture.store import Welford, write_shard_files
    from mixprobe.io import atomic_write_json

    rng = np.random.default_rng(0)
    sites = [f"resid_post.{i}" for i in range(4)]
    acts = {s: rng.standard_normal((256, 1, 8192)).astype(np.float16) for s in sites}   # 4 MiB per site file
    nbytes = sum(a.nbytes for a in acts.values())
    times = []
    with tempfile.TemporaryDirectory() as d:
        for k in range(6):
            t = time.perf_counter()
            write_shard_files(d, "c", k, acts, None, sites=sites, dtype="float16", shard_size=256)
            times.append(time.perf_counter() - t)
        w = Welford()
        w.update(rng.standard_normal((16, 8192)))
        stats = w.to_json()
        entry = {"file": "c/resid_post.0/shard-00000.safetensors", "rows": [0, 256], "bytes": 4194392,
                 "sha256": "0" * 64}
        manifest = {"checkpoints": {"c": {"stats": {f"resid_post.{i}": stats for i in range(80)},
                                          "shards": {f"resid_post.{i}": [entry] * 8 for i in range(80)}}}}
        mtimes = []
        for _ in range(3):
            t = time.perf_counter()
            atomic_write_json(Path(d) / "manifest.json", manifest)
            mtimes.append(time.perf_counter() - t)
        msize = (Path(d) / "manifest.json").stat().st_size
    med = statistics.median(times[1:])
    import hashlib

    blob = rng.bytes(256 * 2 ** 20)
    t = time.perf_counter()
    hashlib.sha256(blob).hexdigest()
    sha = 256 / (time.perf_counter() - t)
    return {"shard_mib": nbytes / 2 ** 20, "shard_write_s": med, "write_mib_s": nbytes / 2 ** 20 / med,
            "manifest_70b_mib": msize / 2 ** 20, "manifest_70b_write_s": statistics.median(mtimes),
            "sha256_mib_s": sha}


def plan(rates: dict) -> dict:
    """On paper: a 70B model (d_model 8192, 80 layers) × 10^6 tokens × every layer, at the rates measured here."""
    d, layers, tokens, params = 8192, 80, 10 ** 6, 70e9
    out: dict = {"assumptions": {"d_model": d, "n_layers": layers, "tokens": tokens, "parameters": params}}
    for fam, n_sites in (("resid_post.* (80 sites)", layers), ("resid_pre/attn_out/mlp_out/resid_post (320 sites)",
                                                                4 * layers)):
        for dt, b in (("float16", 2), ("float32", 4)):
            total = tokens * n_sites * d * b
            out.setdefault("bytes", []).append({
                "sites": fam, "dtype": dt, "per_vector_kib": d * b / 2 ** 10,
                "per_token_mib": n_sites * d * b / 2 ** 20, "total_tib": total / 2 ** 40, "total_tb": total / 1e12,
                "write_h_one_writer": total / 2 ** 20 / rates["write_mib_s"] / 3600})
    flop = 2 * params * tokens
    out["compute"] = {"forward_flop": flop, "cpu_worker_days": flop / rates["flop_per_s_per_worker"] / 86400,
                      "weights_gb_bf16": params * 2 / 1e9,
                      "identity_hash_min": params * 2 / 2 ** 20 / rates["sha256_mib_s"] / 60}
    shards_a = math.ceil(tokens / 256)                      # last_prompt: 1 row = 1 token, 256 rows a shard
    shards_b = math.ceil(tokens / (8 * 512))                # "all": 8 rows of 512 tokens a shard
    out["manifest"] = {"mib": rates["manifest_70b_mib"], "rewrite_s": rates["manifest_70b_write_s"],
                       "shards_last_prompt": shards_a, "shards_all_8x512": shards_b,
                       "rewrites_h_last_prompt": shards_a * rates["manifest_70b_write_s"] / 3600,
                       "rewrites_h_all_8x512": shards_b * rates["manifest_70b_write_s"] / 3600,
                       "shard_ram_gib_all_8x512_fp16": 8 * 512 * layers * d * 2 / 2 ** 30,
                       "shard_ram_mib_last_prompt_fp16": 256 * layers * d * 2 / 2 ** 20}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    ap.add_argument("--half", nargs=3, metavar=("FOLDER", "INDEX", "GO"), help=argparse.SUPPRESS)
    ap.add_argument("--prompts", type=int, default=1024, help="prompts per checkpoint")
    ap.add_argument("--repeats", type=int, default=2, help="warm captures per mode")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.prompts, args.repeats)))
        return
    if args.half:
        print(json.dumps(half_child(args.half[0], args.prompts, args.repeats, int(args.half[1]), args.half[2])))
        return
    import ray
    import torch
    import transformers

    from mixprobe.env import environment

    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        _, prompts, n_params = build(Path(folder), args.prompts)
        from mixprobe.organisms.tokenizer import build_word_tokenizer

        tok = build_word_tokenizer([f"w{i}" for i in range(100)])
        n_tokens = 2 * sum(len(tok(p)["input_ids"]) for p in prompts)   # both checkpoints
        modes = {}
        for mode in MODES:
            r = subprocess.run([sys.executable, __file__, "--child", mode, folder, "--prompts", str(args.prompts),
                                "--repeats", str(args.repeats)], capture_output=True, text=True, timeout=1800,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
            if r.returncode != 0:
                raise RuntimeError(f"{mode}: {r.stderr[-3000:]}")
            modes[mode] = json.loads(r.stdout.strip().splitlines()[-1])
            print(mode, {k: v for k, v in modes[mode].items() if k != "hashes"}, flush=True)
        modes["local_2proc"] = two_processes(folder, args.prompts, args.repeats)
        print("local_2proc", modes["local_2proc"], flush=True)
    ref = modes["local_1t"]["hashes"][0]
    identical = all(h == ref for m in modes.values() for h in m["hashes"])
    if not identical:
        raise RuntimeError("a store differs from the single-process store: " + json.dumps(
            {m: v["hashes"] for m, v in modes.items()}))
    env = environment()
    w = {m: v["warm_median_s"] for m, v in modes.items()}
    res = {
        "machine": {"cpu": env["cpu_model"], "cores": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "transformers": transformers.__version__, "ray": ray.__version__,
                    "load_average_start_end": [load0, os.getloadavg()[0]]},
        "workload": {"model": MODEL, "parameters": n_params, "checkpoints": 2, "prompts_per_checkpoint": args.prompts,
                     "tokens": n_tokens, "sites": SITES, "positions": "last_prompt", **KW},
        "modes": modes,
        "ratios": {"ray_2w_vs_ray_1w_warm": w["ray_1w"] / w["ray_2w"],
                   "ray_2w_vs_local_1t_warm": w["local_1t"] / w["ray_2w"],
                   "ray_2w_vs_local_2t_warm": w["local_2t"] / w["ray_2w"],
                   "ray_1w_vs_local_1t_warm": w["local_1t"] / w["ray_1w"],
                   "ray_2w_vs_ray_1w_cold": modes["ray_1w"]["cold_s"] / modes["ray_2w"]["cold_s"],
                   "local_2proc_vs_local_1t": w["local_1t"] / w["local_2proc"]},
        "rates": {"tokens_per_s_per_worker": n_tokens / w["ray_1w"],
                  "flop_per_s_per_worker": 2 * n_params * n_tokens / w["ray_1w"],
                  **store_rates()},
        "identical_stores": identical,
        "plan_70b": None,
        "gpu": None,
    }
    res["plan_70b"] = plan(res["rates"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distributed.json").write_text(json.dumps(res, indent=2))
    (RESULTS / "distributed.md").write_text(render_md(res))
    print((RESULTS / "distributed.md").read_text())


def render_md(res: dict) -> str:
    m, wl, r = res["machine"], res["workload"], res["rates"]
    lines = ["# Ray engine benchmark", "",
             f"Capture of {wl['checkpoints']} checkpoints × {wl['prompts_per_checkpoint']} prompts ({wl['tokens']:,} "
             f"tokens) of a random Llama (d_model {wl['model']['d_model']}, {wl['model']['n_layers']} layers, "
             f"d_mlp {wl['model']['d_mlp']}; {wl['parameters']:,} parameters), `{wl['sites']}` at `last_prompt`, "
             f"batches of {wl['batch_size']}, shards of {wl['shard_size']} rows, float32 store: compute dominates. "
             f"Machine: {m['cpu']}, {m['cores']} cores (shared with another job: load average "
             f"{m['load_average_start_end'][0]:.1f} at the start, {m['load_average_start_end'][1]:.1f} at the end), "
             f"torch {m['torch']}, transformers {m['transformers']}, ray {m['ray']}. No GPU was lent to this run, so "
             "there is no GPU number.", "",
             "Every store below has the single-process store's content hash (checked by the script). Generated by "
             "`python benchmarks/distributed.py`.", "",
             "| mode | cold s (workers start) | warm s (median) | prompts/s warm | vs local, 1 thread |",
             "|---|---|---|---|---|"]
    n = wl["checkpoints"] * wl["prompts_per_checkpoint"]
    base = res["modes"]["local_1t"]["warm_median_s"]
    for mode, v in res["modes"].items():
        cold = f"{v['cold_s']:.2f} (+{v['init_s']:.1f} ray.init)" if "cold_s" in v else "—"
        lines.append(f"| {mode} | {cold} | {v['warm_median_s']:.2f} | {n / v['warm_median_s']:.0f} | "
                     f"{base / v['warm_median_s']:.2f}x |")
    lines += ["", "ratios: " + ", ".join(f"`{k}` = {v:.2f}" for k, v in res["ratios"].items()), "",
              f"Rates for the planning table (docs/distributed.md): {r['tokens_per_s_per_worker']:.0f} tokens/s and "
              f"{r['flop_per_s_per_worker'] / 1e9:.1f} GFLOP/s per one-thread CPU worker (forward FLOPs ≈ "
              "2 × parameters × tokens); the shard writer (safetensors, sha256, fsync, rename; 4 site files of "
              f"{r['shard_mib'] / 4:.0f} MiB at once) {r['write_mib_s']:.0f} MiB/s on this machine's disk; one "
              f"rewrite of a manifest shaped like a 70B capture's (80 sites × d_model 8192 running stats) "
              f"{r['manifest_70b_mib']:.0f} MiB in {r['manifest_70b_write_s']:.2f} s; sha256 "
              f"{r['sha256_mib_s']:.0f} MiB/s on one core.", ""]
    p = res["plan_70b"]
    c, mf = p["compute"], p["manifest"]
    lines += ["## On paper: 70B × 10⁶ tokens × every layer", "",
              "d_model 8192, 80 layers, 70·10⁹ parameters; 10⁶ captured token positions per checkpoint. Sizes are "
              "exact arithmetic; times are those sizes at the rates measured above on this machine (one writer, "
              "one CPU worker), not measurements of a 70B run.", "",
              "| sites | store dtype | per vector | per token | per checkpoint | write time, one writer |",
              "|---|---|---|---|---|---|"]
    for b in p["bytes"]:
        lines.append(f"| {b['sites']} | {b['dtype']} | {b['per_vector_kib']:.0f} KiB | {b['per_token_mib']:.2f} MiB "
                     f"| {b['total_tib']:.2f} TiB ({b['total_tb']:.2f} TB) | {b['write_h_one_writer']:.1f} h |")
    lines += ["", f"- forward compute: 2 × parameters × tokens = {c['forward_flop']:.2g} FLOP per checkpoint: "
              f"{c['cpu_worker_days']:,.0f} days on one CPU worker at the measured rate (use GPUs; no GPU rate was "
              "measured here).",
              f"- weights: {c['weights_gb_bf16']:.0f} GB in bf16, more than one 80 GB GPU: `num_gpus=2` per task and "
              f"`model_kwargs={{\"device_map\": \"auto\"}}`; the checkpoint's identity (sha256 of the weight files) "
              f"takes {c['identity_hash_min']:.1f} min at the measured sha256 rate, once per checkpoint.",
              f"- manifest: {mf['mib']:.0f} MiB (running stats of 80 sites × 8192 features), {mf['rewrite_s']:.2f} s a "
              f"rewrite. `last_prompt` rows (256 a shard): {mf['shards_last_prompt']:,} shards, "
              f"{mf['rewrites_h_last_prompt']:.1f} h of rewrites if written after every shard; shard buffers "
              f"{mf['shard_ram_mib_last_prompt_fp16']:.0f} MiB (float16). `all` positions, 8 rows × 512 tokens a "
              f"shard: {mf['shards_all_8x512']:,} shards, {mf['rewrites_h_all_8x512']:.2f} h; shard buffers "
              f"{mf['shard_ram_gib_all_8x512_fp16']:.1f} GiB.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

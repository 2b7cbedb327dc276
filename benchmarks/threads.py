"""Thread settings for small models on a shared CPU: step rates alone and beside a busy process.

A tiny organism (d_model 64, 2 layers) does too little work per operation for a second intra-op thread to pay,
and when another process holds a core, every parallel region waits for a descheduled thread: training slows by
an order of magnitude or more. This benchmark measures, each number in a fresh child process:

1. the train-step rate (forward + backward + AdamW, batch 64 × 12 tokens, vocabulary 40) of Llama-shaped models
   from the organism's size up to ~100M parameters, with 1 thread and with all threads, alone and beside a busy
   process (a 2-thread torch matmul loop in another process): where do threads start to pay, and what does a busy
   neighbour cost each setting;
2. the real ``mixprobe`` SFT (trl ``SFTTrainer`` on the default tag-mixture organism) step rate under mixprobe's
   thread policy (:func:`mixprobe.env.thread_budget`) and with all threads, alone and beside the busy process.

    python benchmarks/threads.py            # writes benchmarks/results/threads.{json,md}

Each rate is the median of ``--repeats`` timed windows of about ``--seconds`` seconds each, after warm-up.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = [(64, 2), (256, 4), (512, 8), (1024, 8)]   # (d_model, n_layers)

STEP_CHILD = r"""
import sys, time, json, torch
threads, d, L, repeats = (int(a) for a in (sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5]))
seconds = float(sys.argv[4])
torch.set_num_threads(threads)
from mixprobe.organisms.configs import tiny_model
m = tiny_model("llama", vocab_size=40, seed=0, d_model=d, n_layers=L, n_heads=max(4, d // 64), max_positions=64).train()
opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
ids = torch.randint(3, 40, (64, 12), generator=torch.Generator().manual_seed(0))
def step():
    loss = m(input_ids=ids, labels=ids).loss
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
for _ in range(3):
    step()
rates = []
for _ in range(repeats):
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step(); n += 1
    rates.append(n / (time.perf_counter() - t0))
print(json.dumps({"rates": rates, "params": sum(p.numel() for p in m.parameters())}))
"""

SFT_CHILD = r"""
import sys, time, json, tempfile, torch
policy, seconds = sys.argv[1], float(sys.argv[2])
from transformers import TrainerCallback
from mixprobe.train import sft as sft_mod
from mixprobe.train.pipeline import TrainConfig, train_sft
stamps = []
class Clock(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        stamps.append(time.perf_counter())
        if len(stamps) > 5 and stamps[-1] - stamps[5] > seconds:
            control.should_training_stop = True
orig = sft_mod.quiet_trainer
def quiet(trainer):
    orig(trainer); trainer.add_callback(Clock())
sft_mod.quiet_trainer = quiet
if policy == "all":
    import mixprobe.env as env
    env.SMALL_MODEL_PARAMS = 0          # the budget never applies: every thread, as torch sets it by default
cfg = TrainConfig.from_dict({"sft": {"steps": 100000, "save_every": 100000, "min_forced_agreement": 0.0}})
with tempfile.TemporaryDirectory() as d:
    train_sft(d + "/run", cfg, progress=False)
print(json.dumps({"rate": (len(stamps) - 6) / (stamps[-1] - stamps[5]), "steps": len(stamps)}))
"""

BUSY_CHILD = r"""
import torch
torch.set_num_threads(2)
a = torch.randn(1024, 1024); b = torch.randn(1024, 1024)
while True:
    a @ b
"""


def child(code: str, *args: object, wait: str | None = None) -> dict:
    """Run ``code`` in a fresh interpreter; ``wait`` sets OMP_WAIT_POLICY there (None: unset, the OpenMP default)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update({"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **({"OMP_WAIT_POLICY": wait} if wait else {})})
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                         check=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


class Busy:
    """A 2-thread torch matmul loop in another process while the block runs."""

    def __enter__(self) -> Busy:
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        self.p = subprocess.Popen([sys.executable, "-c", BUSY_CHILD], env=env)
        time.sleep(2.0)
        return self

    def __exit__(self, *exc: object) -> None:
        self.p.kill()
        self.p.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sft-seconds", type=float, default=15.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    n_all = os.cpu_count() or 1
    rows = []
    settings = [(1, None), (n_all, None), (n_all, "PASSIVE")]  # (threads, OMP_WAIT_POLICY)
    for d, L in SIZES:
        for load in ("alone", "busy"):
            for threads, wait in settings:
                with Busy() if load == "busy" else contextlib.nullcontext():
                    r = child(STEP_CHILD, threads, d, L, args.seconds, args.repeats, wait=wait)
                rate = statistics.median(r["rates"])
                rows.append({"d_model": d, "n_layers": L, "params": r["params"], "load": load, "threads": threads,
                             "omp_wait_policy": wait, "steps_per_s": rate})
                print(f"d={d} L={L} {load:5s} threads={threads} wait={wait}: {rate:.2f} steps/s", flush=True)
    sft = []
    for load in ("alone", "busy"):
        for policy, wait in (("mixprobe", "PASSIVE"), ("all", None), ("all", "PASSIVE")):
            with Busy() if load == "busy" else contextlib.nullcontext():
                r = child(SFT_CHILD, policy, args.sft_seconds, wait=wait)
            sft.append({"load": load, "policy": policy, "omp_wait_policy": wait, "steps_per_s": r["rate"],
                        "steps": r["steps"]})
            print(f"SFT {load:5s} {policy} wait={wait}: {r['rate']:.2f} steps/s", flush=True)

    from mixprobe.env import SMALL_MODEL_PARAMS, environment

    env = environment()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "threads.json").write_text(json.dumps({"environment": env, "cpu_count": n_all, "steps": rows,
                                                  "sft": sft, "small_model_params": SMALL_MODEL_PARAMS}, indent=1))
    by = {(r["d_model"], r["load"], r["threads"], r["omp_wait_policy"]): r["steps_per_s"] for r in rows}
    n = n_all
    lines = [
        "# Thread settings for small models on a shared CPU",
        "",
        f"CPU: {env['cpu_model']} ({n_all} cores). Busy neighbour: another process running a 2-thread torch "
        f"1024² matmul loop (OpenMP defaults). Each rate is the median of {args.repeats} windows of {args.seconds:g} s "
        "in a fresh process, after warm-up. Step: forward + backward + AdamW on a batch of 64 × 12 tokens. "
        "`OMP_WAIT_POLICY` unset is the OpenMP default; `PASSIVE` is what `import mixprobe` sets when the variable is "
        "unset and torch is not imported yet.",
        "",
        "## Train-step rate by model size (steps/s)",
        "",
        f"| d_model × layers | parameters | alone: 1 thread | alone: {n} threads | alone: {n} threads, PASSIVE "
        f"| busy: 1 thread | busy: {n} threads | busy: {n} threads, PASSIVE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d, L in SIZES:
        p = next(r["params"] for r in rows if r["d_model"] == d)
        cells = [by[(d, load, t, w)] for load in ("alone", "busy") for t, w in settings]
        lines.append(f"| {d} × {L} | {p / 1e6:.2f} M | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    s_ = {(r["load"], r["policy"], r["omp_wait_policy"]): r["steps_per_s"] for r in sft}
    names = {("mixprobe", "PASSIVE"): f"mixprobe: `thread_budget` (1 thread below {SMALL_MODEL_PARAMS / 1e6:g} M "
                                      "parameters), PASSIVE",
             ("all", None): f"all {n} threads, OpenMP defaults (torch as installed)",
             ("all", "PASSIVE"): f"all {n} threads, PASSIVE"}
    lines += [
        "",
        f"## `mixprobe` SFT on the default organism (trl `SFTTrainer`, steps/s over ≈{args.sft_seconds:g} s)",
        "",
        "| setting | alone | beside the busy process | slowdown |",
        "|---|---|---|---|",
    ]
    for key, label in names.items():
        a_, b_ = s_[("alone", *key)], s_[("busy", *key)]
        lines.append(f"| {label} | {a_:.2f} | {b_:.2f} | {a_ / b_:.1f}× |")
    (out / "threads.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

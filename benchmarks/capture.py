"""Capture benchmark: mixprobe capture vs a bare forward, TransformerLens, nnsight and raw torch hooks.

Same model, same batches, same request (every layer's residual stream ``resid_post.*`` at all positions), measured
side by side in one process with interleaved repeats (median wall time), on

- ``tiny``: the tag-mixture organism's Llama (d_model 64, 2 layers, 24-word vocabulary), batches of 32 prompts;
- ``llama_100m``: a random Llama-shaped model (d_model 768, 12 layers, d_mlp 2048, vocabulary 32000, ~136M
  parameters with its untied unembedding), batches of 4 x 32 tokens.

Methods (each runs one pass over the same ``n_batches`` batches):
  forward            ``model(**batch)`` without gradients (logits computed, nothing kept)
  mixprobe_read      ``handle.read(batch, "resid_post.*", "all")`` on the same pre-tokenized batches as the others
  mixprobe_memory    ``mixprobe.capture.capture(handle, prompts, "resid_post.*", "all")`` (strings in: it
                     tokenizes, pads and concatenates itself)
  mixprobe_store     the same into a fresh on-disk ActivationStore (shards, sha256, Welford stats, manifest)
  transformer_lens   ``TransformerBridge.run_with_cache(names_filter=[blocks.L.hook_resid_post ...])``
  nnsight            ``model.trace(inputs)`` + ``layers[L].output.save()`` for every layer
  raw_hooks          ``register_forward_hook`` on every block, keeping the outputs
Each backend wraps its own copy of the weights, so one backend's wrapping cannot slow another. Peak RSS is
measured per method in a fresh subprocess (``ru_maxrss`` minus the RSS after the model is built).

Run: ``python benchmarks/capture.py`` (writes benchmarks/results/capture.json and capture.md; ~5 min on 2 cores).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

# one thread by default: on a small shared machine, OpenMP threads competing for busy cores make timings erratic
torch.set_num_threads(int(os.environ.get("MIXPROBE_BENCH_THREADS", "1")))

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("forward", "forward_trunk", "mixprobe_read", "mixprobe_memory", "mixprobe_memory_text", "mixprobe_store",
           "transformer_lens", "nnsight", "raw_hooks")
MODELS = {
    "tiny": dict(kind="organism", batch=128, n_batches=4, repeats=15),
    "llama_100m": dict(kind="random", d_model=768, n_layers=12, n_heads=12, d_mlp=2048, vocab=32000, batch=4,
                       seq=32, n_batches=2, repeats=5),
}


def build(name: str):
    """(model, tokenizer, prompt strings) for a benchmark model, deterministic."""
    from mixprobe.organisms.configs import tiny_model
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    spec = MODELS[name]
    if spec["kind"] == "organism":
        from mixprobe.organisms.tag_mixture import TagMixture

        org = TagMixture()
        tok = build_word_tokenizer(org.vocabulary())
        model = tiny_model("llama", vocab_size=len(tok), seed=0)
        base = [r["prompt"] for r in org.prompt_set()]
        n = spec["batch"] * spec["n_batches"]
        prompts = [base[i % len(base)] for i in range(n)]  # the prompt set repeated to fill the batches
    else:
        words = [f"w{i}" for i in range(spec["vocab"] - 4)]
        tok = build_word_tokenizer(words)
        model = tiny_model("llama", vocab_size=len(tok), seed=0, d_model=spec["d_model"], n_layers=spec["n_layers"],
                           n_heads=spec["n_heads"], d_mlp=spec["d_mlp"], max_positions=128)
        rng = random.Random(0)
        prompts = [" ".join(rng.choice(words) for _ in range(spec["seq"] - 1))
                   for _ in range(spec["batch"] * spec["n_batches"])]
    return model, tok, prompts


def make_runners(name: str, only: str | None = None):
    """{method: zero-arg callable doing one pass}, each on its own copy of the weights."""
    from mixprobe.capture.capture import capture
    from mixprobe.models.layout import Layout, hidden_of
    from mixprobe.models.handle import ModelHandle

    spec = MODELS[name]
    model, tok, prompts = build(name)
    B = spec["batch"]
    handle = ModelHandle(model, tok, name=name)
    _ = handle.identity  # hashed once (cached), as in any real multi-batch capture
    batches = [handle.tokenize(prompts[i:i + B]) for i in range(0, len(prompts), B)]
    ids, plen = handle.encode(prompts)
    id_rows = [{"input_ids": r, "prompt_length": n} for r, n in zip(ids, plen)]  # pre-tokenized, like the others
    L = handle.n_layers
    runners = {}
    want = (lambda m: True) if only is None else (lambda m: m == only)

    if want("forward"):
        def forward():
            with torch.no_grad():
                for b in batches:
                    model(**b.inputs(), use_cache=False)
        runners["forward"] = forward
    if want("forward_trunk"):
        trunk = Layout.of(model).model.get_submodule(Layout.of(model).trunk)

        def forward_trunk():
            with torch.no_grad():
                for b in batches:
                    trunk(**b.inputs(), use_cache=False)
        runners["forward_trunk"] = forward_trunk
    if want("mixprobe_read"):
        def mix_read():
            return [handle.read(b, "resid_post.*", "all") for b in batches]
        runners["mixprobe_read"] = mix_read
    if want("mixprobe_memory"):
        def mix_mem():
            return capture([handle], id_rows, "resid_post.*", "all", batch_size=B, progress=False)
        runners["mixprobe_memory"] = mix_mem
    if want("mixprobe_memory_text"):
        def mix_mem_text():
            return capture([handle], prompts, "resid_post.*", "all", batch_size=B, progress=False)
        runners["mixprobe_memory_text"] = mix_mem_text
    if want("mixprobe_store"):
        tmp = tempfile.mkdtemp(prefix="mixprobe-bench-")
        counter = iter(range(10 ** 6))

        def mix_store():
            return capture([handle], id_rows, "resid_post.*", "all", batch_size=B, progress=False,
                           store=os.path.join(tmp, f"s{next(counter)}"))
        runners["mixprobe_store"] = mix_store
    if want("transformer_lens"):
        from mixprobe.models.backends.tlens import make_bridge

        bridge = make_bridge(copy.deepcopy(model), tok)
        names = [f"blocks.{i}.hook_resid_post" for i in range(L)]

        def tl():
            out = []
            with torch.no_grad():
                for b in batches:
                    out.append(bridge.run_with_cache(b.input_ids, attention_mask=b.attention_mask,
                                                     position_ids=b.position_ids, names_filter=names)[1])
            return out
        runners["transformer_lens"] = tl
    if want("nnsight"):
        from mixprobe.models.backends.nnsight_trace import make_nnsight

        lm = make_nnsight(copy.deepcopy(model), tok)

        def nns():
            out = []
            with torch.no_grad():
                for b in batches:
                    saved = []
                    with lm.trace(b.inputs()):
                        for i in range(L):
                            saved.append(lm.model.layers[i].output.save())
                    out.append(saved)
            return out
        runners["nnsight"] = nns
    if want("raw_hooks"):
        raw = copy.deepcopy(model)
        layers = Layout.of(raw).model.model.layers

        def hooks():
            out = []
            with torch.no_grad():
                for b in batches:
                    got = []
                    keep = lambda mod, a, o, g=got: g.append(hidden_of(o).detach())  # noqa: E731
                    hs = [m.register_forward_hook(keep) for m in layers]
                    try:
                        raw(**b.inputs(), use_cache=False)
                    finally:
                        for h in hs:
                            h.remove()
                    out.append(got)
            return out
        runners["raw_hooks"] = hooks
    return runners


def time_all(name: str) -> dict:
    runners = make_runners(name)
    spec = MODELS[name]
    for fn in runners.values():  # warm-up
        fn()
    times = {m: [] for m in runners}
    rng = random.Random(1)
    for _ in range(spec["repeats"]):
        order = list(runners)
        rng.shuffle(order)
        for m in order:
            t = time.perf_counter()
            runners[m]()
            times[m].append(time.perf_counter() - t)
    return {m: {"median_s": statistics.median(v), "min_s": min(v), "all_s": v} for m, v in times.items()}


def rss_child(name: str, method: str) -> None:
    import psutil

    runners = make_runners(name, only=method)
    base = psutil.Process().memory_info().rss
    for _ in range(2):
        runners[method]()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"extra_mb": (peak - base) / 2 ** 20, "base_mb": base / 2 ** 20}))


def rss_all(name: str) -> dict:
    out = {}
    for m in METHODS:
        r = subprocess.run([sys.executable, __file__, "--rss", name, m], capture_output=True, text=True,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-2000:])
        out[m] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rss", nargs=2, metavar=("MODEL", "METHOD"), help=argparse.SUPPRESS)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--no-rss", action="store_true", help="skip the per-method RSS subprocesses")
    args = ap.parse_args()
    if args.rss:
        rss_child(*args.rss)
        return
    import nnsight
    import transformer_lens
    import transformers

    res: dict = {"meta": {
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "transformer_lens": getattr(transformer_lens, "__version__", "4.x"), "nnsight": nnsight.__version__,
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu", "loadavg_start": os.getloadavg(),
        "request": "resid_post of every layer, all positions, fp32, no grad",
        "timing": "interleaved repeats in shuffled order, median wall time of one pass over the batches"}}
    for name in args.models:
        t0 = time.time()
        times = time_all(name)
        med = {m: v["median_s"] for m, v in times.items()}
        entry = {"config": {k: v for k, v in MODELS[name].items()}, "times": times, "ratios": {
            "mixprobe_vs_forward": med["mixprobe_memory"] / med["forward"],
            "mixprobe_vs_forward_trunk": med["mixprobe_memory"] / med["forward_trunk"],
            "mixprobe_text_vs_forward": med["mixprobe_memory_text"] / med["forward"],
            "mixprobe_read_vs_forward": med["mixprobe_read"] / med["forward"],
            "mixprobe_store_vs_forward": med["mixprobe_store"] / med["forward"],
            "transformer_lens_vs_mixprobe": med["transformer_lens"] / med["mixprobe_memory"],
            "nnsight_vs_mixprobe": med["nnsight"] / med["mixprobe_memory"],
            "raw_hooks_vs_forward": med["raw_hooks"] / med["forward"],
            "raw_hooks_vs_mixprobe": med["raw_hooks"] / med["mixprobe_memory"],
        }}
        if not args.no_rss:
            entry["peak_rss"] = rss_all(name)
        entry["bench_wall_s"] = time.time() - t0
        res[name] = entry
    res["meta"]["loadavg_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "capture.json").write_text(json.dumps(res, indent=2))
    (RESULTS / "capture.md").write_text(render_md(res))
    print(render_md(res))


def render_md(res: dict) -> str:
    lines = ["# Capture benchmark", "",
             f"Request: {res['meta']['request']}. {res['meta']['timing']}. Device: {res['meta']['device']}, "
             f"{res['meta']['cpu_count']} CPU cores, torch {res['meta']['torch']}, transformers "
             f"{res['meta']['transformers']}, TransformerLens {res['meta']['transformer_lens']}, nnsight "
             f"{res['meta']['nnsight']}. Load average at start/end: {res['meta']['loadavg_start'][0]:.1f} / "
             f"{res['meta']['loadavg_end'][0]:.1f}.", "",
             "Generated by `python benchmarks/capture.py`.", ""]
    for name in (k for k in res if k != "meta"):
        e = res[name]
        fwd = e["times"]["forward"]["median_s"]
        lines += [f"## {name}", "", f"config: `{json.dumps(e['config'])}`", "",
                  "| method | median s / pass | vs forward | peak RSS over model (MB) |", "|---|---|---|---|"]
        for m in METHODS:
            t = e["times"][m]["median_s"]
            rss = e.get("peak_rss", {}).get(m, {}).get("extra_mb")
            lines.append(f"| {m} | {t:.4f} | {t / fwd:.2f}x | {'' if rss is None else f'{rss:.0f}'} |")
        lines += ["", "ratios: " + ", ".join(f"`{k}` = {v:.2f}" for k, v in e["ratios"].items()), ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

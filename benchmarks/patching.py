"""Benchmark: all-layers × all-positions ``resid_pre`` patching sweep, TransformerLens 4.x vs mixprobe.

Both sides run the same sweep on the same random-init Llama model (fp32, CPU) and the same batch of tag-mixture
prompts, side by side in one process, interleaved repeats, median wall time. Two sources: another context
(target: tag ``<B>`` prompts, source: the same questions under ``<A>``) and another checkpoint (same ``<B>``
prompts, source: a second random model of the same shape — every activation differs, so nothing can be skipped).
TransformerLens: ``TransformerBridge.boot_transformers`` on an in-memory copy of the HF model and
``transformer_lens.patching.get_act_patch_resid_pre`` (one full forward per (layer, position)). mixprobe:
:func:`mixprobe.patching.patch_sweep` (captures target and source once, restarts the forward at each layer with
every position stacked along the batch, skips exact no-op rows). Each side's timing includes its source run.

Run:  HF_HUB_OFFLINE=1 TQDM_DISABLE=1 .venv/bin/python benchmarks/patching.py [--repeats 7] [--quick]
Writes benchmarks/results/patching.json and patching.md.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

from mixprobe.organisms.configs import tiny_model  # noqa: E402
from mixprobe.organisms.tag_mixture import TagMixture  # noqa: E402
from mixprobe.organisms.tokenizer import build_word_tokenizer  # noqa: E402
from mixprobe.patching import as_batch, logit_diff, patch_sweep  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def _bridge(model, tok):
    from transformer_lens.model_bridge import TransformerBridge

    t = copy.deepcopy(tok)
    t.init_kwargs["name_or_path"] = "mixprobe-local"
    t.init_kwargs["add_bos_token"] = True
    return TransformerBridge.boot_transformers("mixprobe-local", hf_model=copy.deepcopy(model), tokenizer=t)


def run_config(name: str, d_model: int, n_layers: int, batch_size: int, repeats: int,
               source: str = "context") -> dict:
    from transformer_lens import patching as tlp

    org = TagMixture()
    tok = build_word_tokenizer(org.vocabulary())
    model = tiny_model("llama", vocab_size=len(tok), seed=0, d_model=d_model, n_layers=n_layers,
                       n_heads=max(4, d_model // 64))
    rows = org.prompt_set(("B",))[:batch_size]
    holder = type("TokOnly", (), {"tokenizer": tok})()
    tb = as_batch(holder, [r["prompt"] for r in rows])
    m1, m2 = tok.convert_tokens_to_ids(["m1", "m2"])
    metric = logit_diff(m1, m2)
    bridge = _bridge(model, tok)
    if source == "context":
        sb, src_model, src_bridge = as_batch(holder, [r["prompt"].replace("<B>", "<A>") for r in rows]), None, bridge
    else:
        src_model = tiny_model("llama", vocab_size=len(tok), seed=1, d_model=d_model, n_layers=n_layers,
                               n_heads=max(4, d_model // 64))
        sb, src_bridge = tb, _bridge(src_model, tok)

    def tl_metric(logits: torch.Tensor) -> torch.Tensor:
        return (logits[:, -1, m1] - logits[:, -1, m2]).mean()

    def run_tl() -> torch.Tensor:
        with torch.no_grad():
            _, cache = src_bridge.run_with_cache(sb.input_ids)
            return tlp.get_act_patch_resid_pre(bridge, tb.input_ids, cache, tl_metric)

    def run_mp() -> torch.Tensor:
        if src_model is None:
            return patch_sweep(model, None, tb, sb, sites="resid_pre", positions="each", metric=metric).metric
        return patch_sweep(model, src_model, tb, sites="resid_pre", positions="each", metric=metric).metric

    ref, ours = run_tl(), run_mp()  # warm-up (and the numbers compared)
    max_diff = float((ref.float() - ours).abs().max())
    t_tl, t_mp = [], []
    for _ in range(repeats):
        for fn, acc in ((run_tl, t_tl), (run_mp, t_mp)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    med_tl, med_mp = statistics.median(t_tl), statistics.median(t_mp)
    return {
        "name": name, "source": source, "arch": "llama", "d_model": d_model, "n_layers": n_layers,
        "batch_size": batch_size,
        "seq_len": int(tb.input_ids.shape[1]), "cells": int(ours.numel()), "repeats": repeats,
        "transformer_lens_s": med_tl, "mixprobe_s": med_mp, "ratio": med_tl / med_mp, "max_abs_diff": max_diff,
        "metric_range": float(ours.max() - ours.min()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="organism-sized model only")
    a = p.parse_args()
    configs = [("organism (d64, 2 layers)", 64, 2, 16, "context"),
               ("organism (d64, 2 layers)", 64, 2, 16, "checkpoint"),
               ("organism, 4 layers", 64, 4, 16, "context")]
    if not a.quick:
        configs += [("larger (d256, 6 layers)", 256, 6, 16, "context"),
                    ("larger (d256, 6 layers)", 256, 6, 16, "checkpoint")]
    results = [run_config(n, d, L, b, a.repeats, src) for n, d, L, b, src in configs]
    head = results[0]  # the headline: organism-sized model, another-context source
    out = {
        "benchmark": "resid_pre patching sweep, all layers x all positions",
        "ratios": {"transformer_lens_vs_mixprobe": head["ratio"],
                   "transformer_lens_vs_mixprobe_cross_checkpoint": results[1]["ratio"]},
        "max_abs_diff": max(r["max_abs_diff"] for r in results),
        "configs": results,
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                        "python": platform.python_version(), "machine": platform.machine(),
                        "transformer_lens": __import__("transformer_lens").__version__
                        if hasattr(__import__("transformer_lens"), "__version__") else "4.x"},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "patching.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = ["# Patching benchmark: resid_pre sweep (all layers × all positions)", "",
             "TransformerLens 4.x (`get_act_patch_resid_pre` on a `TransformerBridge`) vs "
             "`mixprobe.patching.patch_sweep`, fp32 CPU, median of interleaved repeats; both timings include "
             "the source run.", "",
             "| model | source | batch × seq | cells | TransformerLens (s) | mixprobe (s) | ratio | max abs diff |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['source']} | {r['batch_size']} × {r['seq_len']} | {r['cells']} | "
                     f"{r['transformer_lens_s']:.4f} | {r['mixprobe_s']:.4f} | {r['ratio']:.1f}× | "
                     f"{r['max_abs_diff']:.1e} |")
    (RESULTS / "patching.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

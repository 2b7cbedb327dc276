"""Per-call cost of ``@checked`` (mixprobe._check): each function called plain (its ``__wrapped__``) and checked,
side by side in one run.

Usage: ``python benchmarks/checked.py`` → ``benchmarks/results/checked.json`` and ``checked.md``. Best of 5 repeats of
``timeit`` loops; the overhead is checked − plain per call, and the ratio checked / plain.
"""
from __future__ import annotations

import json
import timeit
from pathlib import Path

import numpy as np
import torch

from mixprobe.mixture.metrics import pass_at_k
from mixprobe.models.positions import gather_positions
from mixprobe.models.sites import parse_sites
from mixprobe.probes.validation import to_numpy

OUT = Path(__file__).parent / "results"


def cases() -> dict:
    h = torch.randn(4, 6, 8)
    idx = torch.tensor([[5], [4], [3], [2]])
    x = np.ones(10)
    return {
        "pass_at_k(16, 4, 1)": (pass_at_k, (16, 4, 1), {}),
        "parse_sites('resid_post.*', n_layers=4)": (parse_sites, ("resid_post.*",), {"n_layers": 4}),
        "gather_positions(h, idx)": (gather_positions, (h, idx), {}),
        "to_numpy(array)": (to_numpy, (x,), {}),
    }


def per_call(fn, args, kw, n: int = 20000) -> float:
    fn(*args, **kw)
    return min(timeit.repeat(lambda: fn(*args, **kw), number=n, repeat=5)) / n * 1e6


def main() -> None:
    rows = {}
    for name, (fn, args, kw) in cases().items():
        plain, checked = per_call(fn.__wrapped__, args, kw), per_call(fn, args, kw)
        rows[name] = {"plain_us": round(plain, 3), "checked_us": round(checked, 3),
                      "overhead_us": round(checked - plain, 3), "ratio": round(checked / plain, 2)}
    OUT.mkdir(exist_ok=True)
    (OUT / "checked.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["# `@checked` per-call cost (plain vs checked, one run)", "",
             "| call | plain µs | checked µs | overhead µs | ratio |", "|---|---|---|---|---|"]
    lines += [f"| `{k}` | {v['plain_us']} | {v['checked_us']} | {v['overhead_us']} | {v['ratio']} |"
              for k, v in rows.items()]
    (OUT / "checked.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

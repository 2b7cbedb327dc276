"""The committed behaviour-compatible-training results: current with the code, and of the size the claims need.

No training: the cells under experiments/results/bct*/cells are the records experiments/bct.py wrote; the summary
committed beside them must be what today's :func:`summarize_study` computes from them, and the grid must hold the
overlap levels, seeds and arms the docs report on.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixprobe.mixture.bct import summarize_study

RESULTS = Path(__file__).resolve().parents[2] / "experiments" / "results"


def _records(name: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((RESULTS / name / "cells").glob("*.json"))]


@pytest.mark.parametrize("name", ["bct", "bct_optim"])
def test_committed_summary_is_what_the_code_computes(name):
    committed = json.loads((RESULTS / name / "summary.json").read_text())
    fresh = json.loads(json.dumps(summarize_study(_records(name))))
    for key in ("cells", "correlations", "inoculation", "prefix_direction", "failed"):
        assert fresh[key] == committed[key], f"rerun: python experiments/bct.py --summary-only --out {RESULTS / name}"


def test_the_grid_has_four_overlap_levels_five_seeds_and_both_trainers():
    s = json.loads((RESULTS / "bct" / "summary.json").read_text())
    language = [v for v in s["cells"].values() if v["setting"] == "language"]
    for arm in ("sft_full", "sft_lora", "grpo_full", "grpo_lora"):
        levels = {v["overlap"]: v["transfer"]["n"] for v in language if v["arm"] == arm}
        assert len(levels) >= 4 and min(levels.values()) >= 5, (arm, levels)
    assert {v["setting"] for v in s["cells"].values()} == {"language", "numerals", "yesno"}
    assert all(v["n"] >= 3 for v in s["inoculation"].values())
    assert all(v["grad_cosine"]["n"] >= 20 for k, v in s["correlations"].items() if k.startswith("language|"))

"""experiments/sensitivity.py --reduced: the sensitivity map's machinery on one SFT model, two recipes, one seed.

The labels a reduced run gives (200 SFT steps, 10 RL steps) say nothing about the organism, and seed-level outcomes
are machine-dependent, so nothing here asserts a label. What is checked could still fail: the per-(cell, seed)
json schema, labels among the legal ones, the recorded recipe and trained parameters matching the cell, frozen-
embedding RL leaving the embedding and unembedding weights bit-identical to the SFT checkpoint, and the Wilson
summary's counts adding up to the seeds (also with an SFT that failed its health check).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "sensitivity.py"


def _module():
    spec = importlib.util.spec_from_file_location("sensitivity_experiment", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def reduced(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sensitivity")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MIXPROBE_THREADS": "1"}
    t0 = time.time()
    r = subprocess.run([sys.executable, str(SCRIPT), "--reduced", "--out", str(out), "--runs", str(out / "runs")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert time.time() - t0 < 120, f"the reduced run took {time.time() - t0:.0f} s (budget: 2 min)"
    return out


def test_reduced_run_writes_one_json_per_cell_and_seed(reduced):
    from mixprobe.mixture.verdict import LABELS

    mod = _module()
    files = sorted((reduced / "cells").glob("*/*.json"))
    assert len(files) == 2
    for f in files:
        rec = json.loads(f.read_text())
        assert {"cell", "seed", "label", "reason", "recipe", "rl_settings", "trained_parameters", "weights",
                "intervals", "rl_metrics", "environment", "seconds"} <= set(rec)
        assert rec["label"] in LABELS
        assert f.parent.name == rec["cell"] == f"{rec['sft_model']}__{rec['recipe_id']}"
        assert f.stem == str(rec["seed"])
        # the recorded recipe is the cell's, and it is what RL ran with
        recipe, rl = rec["recipe"], rec["rl_settings"]
        cell_recipe = {"optim": recipe["rl_optim"], "lr": recipe["rl_lr"], "beta": recipe["beta"],
                       "train_embeddings": recipe["train_embeddings"]}
        assert mod.recipe_id(cell_recipe) == rec["recipe_id"]
        assert (rl["optim"], rl["lr"], rl["beta"], rl["train_embeddings"]) == \
            (recipe["rl_optim"], recipe["rl_lr"], recipe["beta"], recipe["train_embeddings"])
        assert (recipe["tied_embeddings"], recipe["d_model"]) == \
            (mod.SFT_MODELS[rec["sft_model"]]["tie_embeddings"], mod.SFT_MODELS[rec["sft_model"]]["d_model"])
        tp = rec["trained_parameters"]
        state = "trainable" if recipe["train_embeddings"] else "frozen"
        assert tp["embeddings"] == tp["unembedding"] == state
        assert (tp["n_trained"] < tp["n_params"]) == (not recipe["train_embeddings"])
        for k in ("gate_shift", "component_change", "off_mixture"):
            iv = rec["intervals"][k]
            assert 0 <= iv["lo"] <= iv["point"] <= iv["hi"] <= 1
        assert {"torch_version", "trl_version", "cpu_model", "torch_threads"} <= set(rec["environment"])
        assert rec["environment"]["torch_threads"] == 1
        if not recipe["train_embeddings"]:
            w = rec["weights"]
            assert w["embed_identical"] and w["lm_head_identical"]
            assert w["embed_max_abs_change"] == w["lm_head_max_abs_change"] == 0.0


def test_reduced_run_summary_counts_add_up(reduced):
    summary = json.loads((reduced / "summary.json").read_text())
    assert summary["design"]["design"] == "reduced"
    cells = summary["cells"]
    assert len(cells) == 2
    for d in cells.values():
        assert sum(d["counts"].values()) == d["n"] == len(d["per_seed"]) == 1
        for lab, k in d["counts"].items():
            lo, hi = d["wilson95"][lab]
            assert 0 <= lo <= k / d["n"] <= hi <= 1
    frozen = [d for d in cells.values() if not d["recipe"]["train_embeddings"]]
    assert frozen and all(d["frozen_weights_identical"] is True for d in frozen)
    md = (reduced / "summary.md").read_text()
    assert md.count("\n| SGD 0.03, emb train") == 2 and "AdamW 0.001, emb frozen" in md
    assert (reduced / "sensitivity.png").stat().st_size > 1000


def test_summary_counts_a_failed_sft_as_an_outcome():
    mod = _module()
    recipe = {"rl_optim": "sgd", "rl_lr": 0.03, "beta": 0.0, "train_embeddings": True, "tied_embeddings": True,
              "d_model": 64}
    iv = {k: {"point": 0.5, "lo": 0.4, "hi": 0.6} for k in ("gate_shift", "component_change", "off_mixture")}
    metrics = {"accuracy": {"A": 1.0, "B": 0.0}, "forced_accuracy": {"A": {"m2": 0.0}, "B": {"m2": 1.0}},
               "mode_frequency": {"B": {"m1": 1.0}}}
    recs = [{"cell": "tied_d64__sgd_emb_b0", "sft_model": "tied_d64", "recipe_id": "sgd_emb_b0", "recipe": recipe,
             "seed": s, "label": lab, "environment": {"torch_version": "x"},
             **({} if lab == "sft_failed" else {"intervals": iv, "rl_metrics": metrics, "seconds": {"rl": 1.0},
                                                "weights": {}})}
            for s, lab in ((1, "sft_failed"), (2, "sft_failed"), (3, "reweight"))]
    d = mod.summarize(recs)["cells"]["tied_d64__sgd_emb_b0"]
    assert d["n"] == 3 and sum(d["counts"].values()) == 3
    assert d["counts"]["sft_failed"] == 2 and d["counts"]["reweight"] == 1
    assert d["statistics"]["gate_shift"]["n"] == 1
    lo, hi = d["wilson95"]["sft_failed"]
    assert lo < 2 / 3 < hi
    assert "**2/3**" in mod.markdown(mod.summarize(recs))

"""Across processes, the analysis layer gives bit-identical results: probes, steering, patching, verdict.

tests/train/test_determinism.py holds the within-process half (same seed → same checkpoint bytes, probe weights
and verdict JSON). This is the other half, for the analysis of a fixed trained series: two fresh Python processes
with *different* ``PYTHONHASHSEED`` (1 and 2; so set and str-keyed dict iteration orders differ) run
``determinism_worker.py`` on the session's trained organism and write the SHA-256 of every result's bytes — probe
weights, steering vector, steered logits, a seeded sampled dose-response, a patching sweep, the exact and the
sampled verdict JSON (``sort_keys=True``). Every hash must agree. The controls (computed in the same processes on
another split seed, the other checkpoint, the reversed patch, another sampling seed) must differ from the main
hashes, so that agreement is not vacuous.

What this does not claim: equality across machines (other CPUs, other BLAS kernels, other torch versions change
floating-point sums; docs/verdict.md, "Machines and seeds").
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("determinism_worker.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def series(mixprobe_cache):
    """The first seed's trained organism: the same cache entry as the session's ``organism_run`` (trained once per
    session, whichever test asks first), without training the other seeds when this file runs alone."""
    from mixprobe.train.zoo import seeds_from_env, trained_organism

    return trained_organism(seeds_from_env()[0], rl_tags=("A", "B"), cache_dir=mixprobe_cache, progress=False)


@pytest.fixture(scope="module")
def runs(series, tmp_path_factory) -> list[dict]:
    """The worker's output from two processes (PYTHONHASHSEED 1 and 2), run side by side."""
    out = tmp_path_factory.mktemp("determinism")
    procs = []
    for hash_seed in (1, 2):
        env = {**os.environ, "PYTHONHASHSEED": str(hash_seed), "HF_HUB_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        path = out / f"run_{hash_seed}.json"
        procs.append((path, subprocess.Popen([sys.executable, str(WORKER), str(series.run_dir), str(path)],
                                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                             text=True)))
    results = []
    for path, proc in procs:
        log, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"the worker failed:\n{log[-4000:]}"
        results.append(json.loads(path.read_text()))
    return results


def test_two_processes_with_different_hash_seeds_give_identical_bytes(runs):
    a, b = runs
    assert a["hash_of_str"] != b["hash_of_str"]          # the hash seeds really differed
    assert a["torch_threads"] == b["torch_threads"]
    assert set(a["hashes"]) == {"probe_weights", "steer_vector", "steer_logits", "steer_dose_response",
                                "patch_restoration", "patch_metric", "patch_json", "verdict_exact",
                                "verdict_sampled", "sampled_texts_seed_0"}
    differ = sorted(k for k in a["hashes"] if a["hashes"][k] != b["hashes"][k])
    assert not differ, f"not bit-identical across processes: {differ}"
    assert a["verdict_exact"] == b["verdict_exact"]
    assert a["controls"] == b["controls"]                # the controls are deterministic too


def test_the_comparison_is_not_vacuous(runs):
    """Another split seed, the other checkpoint, the reversed patch and another sampling seed each change the bytes
    (and the results are real numbers, not an empty or NaN table that would compare equal anyway)."""
    h, c = runs[0]["hashes"], runs[0]["controls"]
    assert c["probe_weights_split_seed_1"] != h["probe_weights"]
    assert c["probe_weights_rl_checkpoint"] != h["probe_weights"]
    assert c["steer_logits_unsteered"] != h["steer_logits"]
    assert c["patch_metric_reversed"] != h["patch_metric"]
    assert c["sampled_texts_seed_1"] != h["sampled_texts_seed_0"]
    table = runs[0]["patch_restoration"]
    assert table and all(isinstance(x, float) and x == x for row in table for x in row)
    verdict = json.loads(runs[0]["verdict_exact"])
    assert verdict["label"] and verdict["per_seed"]

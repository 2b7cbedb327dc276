"""Within one machine, the same seed gives byte-identical checkpoints, probe weights and verdict JSON.

Across machines it does not (CPU kernels change floating-point sums; see docs/verdict.md, "Machines and seeds"),
which is why every series records its environment; this test holds the within-machine half of that statement.
It trains a reduced organism twice from scratch (SFT → GRPO on <A>) in separate run folders and compares every
checkpoint's bytes, a probe fit on each run's SFT activations, and the verdict JSON of each run.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mixprobe.mixture.studies import expressed_split
from mixprobe.mixture.verdict import assess, combine
from mixprobe.probes import fit_probes
from mixprobe.train.pipeline import TrainConfig, load_checkpoint, organism_of, train_rl, train_sft

pytestmark = pytest.mark.slow

REDUCED = {"seed": 5, "sft": {"steps": 120, "save_every": 60, "n_rows": 2000, "warmup_steps": 5,
                              "min_forced_agreement": 0.0},
           "rl": {"steps": 6, "save_every": 3, "batch_size": 16}}


def _run(tmp_path, name: str) -> dict:
    cfg = TrainConfig.from_dict(REDUCED)
    run = tmp_path / name
    train_sft(run, cfg, progress=False)
    series = train_rl(run, cfg.rl, progress=False)
    digests = {c.name: hashlib.sha256((series.path(c) / "model.safetensors").read_bytes()).hexdigest()
               for c in series.checkpoints}
    organism = organism_of(series)
    sft = load_checkpoint(series.path(series.last("sft")))
    rl = load_checkpoint(series.path(series.last("rl")))
    Xtr, ytr, _, _ = expressed_split(*sft, organism, seed=0).stacked()
    fits = fit_probes(Xtr, ytr, C=1.0)
    coefs = {site: np.asarray(fits[site].coef_).tobytes() for site in fits}
    verdict_json = combine({5: assess(sft, rl, organism)}).to_json(sort_keys=True)
    return {"digests": digests, "coefs": coefs, "verdict": verdict_json, "series": series}


def test_same_seed_same_machine_gives_identical_bytes(tmp_path):
    a, b = _run(tmp_path, "a"), _run(tmp_path, "b")
    assert len(a["digests"]) == 4                       # 2 SFT + 2 RL checkpoints
    assert a["digests"] == b["digests"]
    assert a["coefs"].keys() == b["coefs"].keys() and a["coefs"] == b["coefs"]
    assert a["verdict"] == b["verdict"]
    # the environment that shaped these numbers is on record, per phase
    env = a["series"].extra["environment"]
    assert {"sft", "rl"} <= set(env)
    for stage in ("sft", "rl"):
        assert env[stage]["torch_version"] and env[stage]["cpu_model"] and env[stage]["torch_threads"] >= 1
    # the control: the comparison is not vacuous; another seed changes every checkpoint
    cfg = TrainConfig.from_dict({**REDUCED, "seed": 6})
    train_sft(tmp_path / "c", cfg, progress=False)
    series = train_rl(tmp_path / "c", cfg.rl, progress=False)
    other = {c.name: hashlib.sha256((series.path(c) / "model.safetensors").read_bytes()).hexdigest()
             for c in series.checkpoints}
    assert other.keys() == a["digests"].keys()
    assert all(other[k] != a["digests"][k] for k in other)

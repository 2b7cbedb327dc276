"""Shared fixtures: trained tag-mixture series (SFT → GRPO on A and on B), built once per test session.

Set MIXPROBE_TEST_CACHE=/some/dir to keep the trained runs between pytest invocations while developing;
CI leaves it unset, so every run trains from scratch.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SEEDS = (0, 1, 2)


def _cache_root(tmp_path_factory) -> Path:
    env = os.environ.get("MIXPROBE_TEST_CACHE")
    if env:
        p = Path(env)
        p.mkdir(parents=True, exist_ok=True)
        return p
    return tmp_path_factory.getbasetemp() / "organisms"


def _train(run_dir: Path, seed: int, organism: dict | None = None, rl_tags=("A", "B")):
    from mixprobe.train.pipeline import TrainConfig, evaluate_series, train_rl, train_sft
    from mixprobe.train.rl import RLSettings
    from mixprobe.train.series import Series

    done = run_dir / "DONE"
    if done.exists():
        return Series.load(run_dir)
    cfg = TrainConfig.from_dict({"seed": seed, "organism": organism or {}})
    train_sft(run_dir, cfg, overwrite=True, progress=False)
    for tag in rl_tags:
        phase = "rl" if tag == "A" else f"rl_{tag}"
        train_rl(run_dir, RLSettings(tag=tag, phase=phase), progress=False)
    s = evaluate_series(Series.load(run_dir), seed=seed, progress=False)
    done.write_text("ok")
    return s


@pytest.fixture(scope="session")
def organism_runs(tmp_path_factory):
    """seed -> Series with phases ``sft``, ``rl`` (GRPO on <A>) and ``rl_B`` (GRPO on <B>), all evaluated."""
    root = _cache_root(tmp_path_factory)
    return {seed: _train(root / f"tag_mixture_s{seed}", seed) for seed in SEEDS}


@pytest.fixture(scope="session")
def m3_runs(tmp_path_factory):
    """seed -> Series of the m3 positive-transfer control (SFT → GRPO on <A>)."""
    from mixprobe.organisms.tag_mixture import m3_control_config

    root = _cache_root(tmp_path_factory)
    org = m3_control_config().to_dict()
    return {seed: _train(root / f"m3_control_s{seed}", seed, organism=org, rl_tags=("A",)) for seed in SEEDS}


@pytest.fixture(scope="session")
def organism_run(organism_runs):
    """The seed-0 series (for tests that need one trained organism)."""
    return organism_runs[0]

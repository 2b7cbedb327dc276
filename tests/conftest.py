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


@pytest.fixture(scope="session", autouse=True)
def mixprobe_cache(tmp_path_factory) -> Path:
    """The cache of trained organisms for this session (exported as $MIXPROBE_CACHE)."""
    return _cache_root(tmp_path_factory)


def _cache_root(tmp_path_factory) -> Path:
    env = os.environ.get("MIXPROBE_TEST_CACHE")
    root = Path(env) if env else tmp_path_factory.getbasetemp() / "organisms"
    root.mkdir(parents=True, exist_ok=True)
    # notebooks and docs executed by the tests (nbclient) reuse the same trained organisms
    os.environ["MIXPROBE_CACHE"] = str(root)
    return root


def _train(root: Path, seed: int, organism: dict | None = None, rl_tags=("A", "B")):
    from mixprobe.train.zoo import trained_organism

    return trained_organism(seed, config={"organism": organism} if organism else None, rl_tags=rl_tags,
                            cache_dir=root, progress=False)


@pytest.fixture(scope="session")
def organism_runs(tmp_path_factory):
    """seed -> Series with phases ``sft``, ``rl`` (GRPO on <A>) and ``rl_B`` (GRPO on <B>), all evaluated."""
    root = _cache_root(tmp_path_factory)
    return {seed: _train(root, seed) for seed in SEEDS}


@pytest.fixture(scope="session")
def m3_runs(tmp_path_factory):
    """seed -> Series of the m3 positive-transfer control (SFT → GRPO on <A>)."""
    from mixprobe.organisms.tag_mixture import m3_control_config

    root = _cache_root(tmp_path_factory)
    org = m3_control_config().to_dict()
    return {seed: _train(root, seed, organism=org, rl_tags=("A",)) for seed in SEEDS}


@pytest.fixture(scope="session")
def organism_run(organism_runs):
    """The seed-0 series (for tests that need one trained organism)."""
    return organism_runs[0]

"""Fixtures for the user-defined numbers task (``numbers_task:task``), trained with plain trl.

``numbers_runs`` trains, once per session, SFT -> GRPO on ``polite`` plus two planted continuations for every
seed of ``$MIXPROBE_SEEDS`` (default 0,1,2), about a minute per seed on one CPU thread. Set
``MIXPROBE_TEST_CACHE=/some/dir`` to keep them between sessions (finished runs under
``$MIXPROBE_TEST_CACHE/numbers_task`` are reused; a run trained with other settings is retrained).
``task_env`` is the environment a subprocess needs to import the task (``tests/tasks`` on ``PYTHONPATH``).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TASKS_DIR = Path(__file__).resolve().parent
if str(TASKS_DIR) not in sys.path:
    sys.path.insert(0, str(TASKS_DIR))

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mixprobe.train.zoo import seeds_from_env  # noqa: E402

NUMBERS_SEEDS = seeds_from_env()


@pytest.fixture(scope="session")
def numbers_root(tmp_path_factory) -> Path:
    """Where the numbers-task runs live: ``$MIXPROBE_TEST_CACHE/numbers_task``, else a session tmp dir."""
    env = os.environ.get("MIXPROBE_TEST_CACHE")
    root = Path(env) / "numbers_task" if env else tmp_path_factory.getbasetemp() / "numbers_task"
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def numbers_runs(numbers_root) -> dict[int, dict[str, Path]]:
    """``{seed: {"sft", "grpo", "planted_reweight", "planted_rewrite": trl output_dir}}`` for every test seed."""
    from numbers_training import train_run

    return {seed: train_run(numbers_root, seed) for seed in NUMBERS_SEEDS}


@pytest.fixture(scope="session")
def task_env() -> dict[str, str]:
    """``os.environ`` plus ``PYTHONPATH`` with ``tests/tasks`` first and ``HF_HUB_OFFLINE=1`` (for subprocesses
    that name the task ``numbers_task:task``)."""
    env = dict(os.environ)
    parts = [str(TASKS_DIR)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env

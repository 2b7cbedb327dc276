"""mixprobe: did post-training reweight a mixture of conditional policies, or rewrite the policies?

The public surface is importable from here, lazily: ``import mixprobe`` loads no torch, transformers or trl, and each
name below imports its module on first use (``mixprobe.load``, ``mixprobe.assess``…). See docs/ for the concepts
and guides, docs/api.md for every module.

Example:
    >>> import mixprobe
    >>> "assess" in mixprobe.__all__ and "Task" in dir(mixprobe)
    True
    >>> mixprobe.Task.__module__
    'mixprobe.tasks.protocol'
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

import os as _os
import sys as _sys

# OpenMP's default wait policy makes torch's parallel regions crawl beside another busy process (measured: 100× slower
# training with 2 threads on 2 cores; benchmarks/results/threads.md); an explicit PASSIVE policy degrades gracefully.
# It only takes effect before torch loads OpenMP, and a value the user set wins.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from mixprobe.errors import MixprobeError  # noqa: E402,F401  (cheap: no third-party imports)

_PUBLIC = {
    # tasks: the question
    "Task": "mixprobe.tasks", "Prompt": "mixprobe.tasks", "Component": "mixprobe.tasks", "Pair": "mixprobe.tasks",
    "TaskSpec": "mixprobe.tasks", "load_task": "mixprobe.tasks", "task_for": "mixprobe.tasks",
    # models and series: the checkpoints
    "load": "mixprobe.models", "ModelHandle": "mixprobe.models", "load_series": "mixprobe.models",
    "trainer_series": "mixprobe.models", "Series": "mixprobe.train.series",
    # the models stack: sites, positions, batches, layouts
    "Site": "mixprobe.models", "parse_sites": "mixprobe.models", "split_heads": "mixprobe.models",
    "Layout": "mixprobe.models",
    "Batch": "mixprobe.models", "tokenize": "mixprobe.models", "resolve_positions": "mixprobe.models",
    "position_mask": "mixprobe.models", "thread_budget": "mixprobe.env",
    # capture and the store
    "capture": "mixprobe.capture", "ActivationStore": "mixprobe.capture", "CaptureCallback": "mixprobe.capture",
    # the Ray engine (engine="ray"; Ray itself is imported only when it runs)
    "RayEngine": "mixprobe.distributed",
    # probes
    "LogisticProbe": "mixprobe.probes", "MassMeanProbe": "mixprobe.probes", "LATProbe": "mixprobe.probes",
    "CRAProbe": "mixprobe.probes", "CCSProbe": "mixprobe.probes", "fit_probes": "mixprobe.probes",
    "layer_sweep": "mixprobe.probes", "gate_readout": "mixprobe.probes", "HeadMassMeanProbe": "mixprobe.probes",
    # GENIES' baselines: zero-/few-shot judges and the LoRA reward model
    "judge_scores": "mixprobe.probes", "zero_shot_pair_proba": "mixprobe.probes",
    "few_shot_pair_proba": "mixprobe.probes", "RewardSettings": "mixprobe.train.reward",
    "RewardModel": "mixprobe.train.reward", "train_reward_model": "mixprobe.train.reward",
    # steering
    "SteeringVector": "mixprobe.steering", "steer": "mixprobe.steering",
    # patching
    "patch": "mixprobe.patching", "patch_sweep": "mixprobe.patching", "param_sweep": "mixprobe.patching",
    "readout_patch": "mixprobe.patching", "attribution_patch": "mixprobe.patching", "logit_diff": "mixprobe.patching",
    # the mixture and the verdict
    "mixture_view": "mixprobe.mixture.components", "MixtureView": "mixprobe.mixture.components",
    "assess": "mixprobe.mixture.verdict", "combine": "mixprobe.mixture.verdict", "verdict": "mixprobe.mixture.verdict",
    "compare_views": "mixprobe.mixture.verdict", "Thresholds": "mixprobe.mixture.verdict",
    # organisms, trained on demand
    "trained_organism": "mixprobe.train.zoo",
    # the report
    "build_run_report": "mixprobe.report.run_report",
}

__all__ = ["MixprobeError", "__version__", *sorted(_PUBLIC)]


def __getattr__(name: str) -> Any:
    mod = _PUBLIC.get(name)
    if mod is None:
        raise AttributeError(f"module 'mixprobe' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))

"""The environment that shaped a run's numbers: library versions, CPU, threads.

Problem: training is deterministic on one machine (the same seed gives byte-identical checkpoints), but not
across machines: CPU instruction sets, BLAS kernels and library versions change floating-point sums, and after
thousands of optimizer steps and sampled RL rollouts two machines' organisms differ at the seed level much as
two seeds do. A number without the environment that produced it cannot be compared. Mechanism:
:func:`environment` returns a small JSON-able dict (Python, torch, transformers, trl, peft versions; CPU model,
CPU flags digest, core count, torch thread count; CUDA device if one is used) that every series manifest records
under ``"environment"``.

Example:
    >>> env = environment()
    >>> sorted(k for k in env if k.endswith("_version"))[:3]
    ['peft_version', 'python_version', 'torch_version']

:func:`thread_budget` picks the torch thread count for a model: one thread for small CPU models (as fast alone,
faster beside a busy process: benchmarks/results/threads.md), torch's own setting otherwise; ``MIXPROBE_THREADS=n``
overrides it. Training phases, evaluation and revival run inside it.
``import mixprobe`` also sets ``OMP_WAIT_POLICY=PASSIVE`` when the variable is unset and torch is not loaded yet:
OpenMP's default wait policy is what makes multi-threaded torch crawl beside a busy process, at every model size.

Constraints: reads ``/proc/cpuinfo`` where it exists (Linux); elsewhere ``platform.processor()``.
"""
from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

from mixprobe._check import argument_error, checked
from mixprobe.errors import DataError


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), list[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and model in ("", platform.machine(), platform.processor()):
                    model = val.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = val.split()
    except OSError:
        pass
    return model, sorted(flags)


@checked
def environment() -> dict:
    """Versions, CPU and thread count of this process (see the module docstring)."""
    import torch

    model, flags = _cpu()
    env = {
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "transformers_version": _version("transformers"),
        "trl_version": _version("trl"),
        "peft_version": _version("peft"),
        "platform": platform.platform(),
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "cpu_flags_sha256": hashlib.sha256(" ".join(flags).encode()).hexdigest()[:16],
        "cpu_simd": [f for f in flags if f.startswith(("avx", "sse4", "amx", "fma", "neon", "sve", "asimd"))],
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return env


# Below this many parameters a CPU model runs on one intra-op thread. benchmarks/results/threads.md, 2 cores, with the
# PASSIVE OpenMP wait policy: the organism (d_model 64, 0.1 M parameters) trains as fast on one thread alone and
# faster on one beside a busy process; from d_model 256 (4 M parameters) two threads win alone and when busy.
SMALL_MODEL_PARAMS = 1_000_000


@checked
def threads_for(model: Any = None) -> int:
    """The intra-op thread count :func:`thread_budget` gives ``model``: ``MIXPROBE_THREADS`` when set; one thread
    for a CPU model under :data:`SMALL_MODEL_PARAMS` parameters; otherwise torch's current setting."""
    import torch

    fixed = os.environ.get("MIXPROBE_THREADS")
    if fixed:
        if not fixed.isdigit() or int(fixed) < 1:
            raise DataError(f"MIXPROBE_THREADS must be a positive integer, got {fixed!r}; unset it or set e.g. "
                            "MIXPROBE_THREADS=4")
        return int(fixed)
    if model is not None and not callable(getattr(model, "parameters", None)):
        raise argument_error("threads_for", "model", model, "a torch model (with .parameters()) or None",
                             "the nn.Module (a handle's .model) or None")
    params = list(model.parameters()) if model is not None else []
    on_cpu = all(p.device.type == "cpu" for p in params)
    if params and on_cpu and sum(p.numel() for p in params) < SMALL_MODEL_PARAMS:
        return 1
    return torch.get_num_threads()


@checked
@contextmanager
def thread_budget(model: Any = None) -> Iterator[int]:
    """Run the block with :func:`threads_for` ``(model)`` torch intra-op threads; the previous count is restored.

    Small models on a shared CPU: the tag-mixture organism's SFT on one thread runs about a sixth slower than on two
    when the machine is idle and far faster when another process keeps a core busy (benchmarks/results/threads.md).
    Larger models keep every thread.
    """
    import torch

    before = torch.get_num_threads()
    n = threads_for(model)
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)

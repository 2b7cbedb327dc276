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

Constraints: reads ``/proc/cpuinfo`` where it exists (Linux); elsewhere ``platform.processor()``.
"""
from __future__ import annotations

import hashlib
import os
import platform
from importlib import metadata


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), []
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

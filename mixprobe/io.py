"""Safe, atomic file I/O shared by every layer.

Problem: interpretability runs write many files (checkpoints, manifests, shards) and read folders users hand
over. A crash must never leave a half-written file where a complete one is expected, and a folder of pickled
weights must never be unpickled (pickle runs arbitrary code). Mechanism: writes go to a temp name in the same
folder and are renamed into place (``os.replace`` is atomic on POSIX); weight folders are checked for
safetensors before anything is loaded, and refused with :class:`UnsafeWeightsError` otherwise.

Example:
    >>> import tempfile, json, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write_json(d / "x.json", {"a": 1})
    >>> json.loads((d / "x.json").read_text())
    {'a': 1}

Constraints: the temp file lives next to the target, so the rename never crosses file systems.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from mixprobe.errors import CheckpointError, UnsafeWeightsError

PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "adapter_model.bin", "model.pt",
                  "model.pth", "tf_model.h5", "flax_model.msgpack")


def atomic_write_json(path: str | os.PathLike, obj: object) -> None:
    """Write JSON to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_weights_dir(path: str | os.PathLike) -> Path:
    """Return ``path`` if it is a folder with safetensors weights; raise a named error otherwise.

    Raises:
        CheckpointError: the folder does not exist or holds no weights.
        UnsafeWeightsError: the weights are pickle files (``pytorch_model.bin``, ``*.pt``, ...).
    """
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"checkpoint folder {p} does not exist; check the path (or the run's series.json)")
    names = {f.name for f in p.iterdir()}
    has_st = any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in names)
    pickles = sorted(n for n in names if n in PICKLE_WEIGHTS or n.endswith((".bin", ".pt", ".pth", ".ckpt")))
    if not has_st and pickles:
        raise UnsafeWeightsError(
            f"{p} stores its weights as pickle ({', '.join(pickles)}); mixprobe never unpickles weights. "
            f"Convert once in a trusted environment: `AutoModelForCausalLM.from_pretrained(dir)"
            f".save_pretrained(dir, safe_serialization=True)`"
        )
    if not has_st:
        raise CheckpointError(f"{p} holds no safetensors weights (files: {sorted(names)[:8]}); is it a checkpoint folder?")
    return p


def prepare_output_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Create ``path``; refuse a non-empty one unless ``overwrite`` (then its content is removed)."""
    from mixprobe.errors import OutputExistsError

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputExistsError(f"{p} exists and is a file; choose another --out folder")
    if p.is_dir() and any(p.iterdir()):
        if not overwrite:
            raise OutputExistsError(
                f"output folder {p} is not empty; pass --overwrite (overwrite=True) to replace it, or choose another"
            )
        shutil.rmtree(p)
    p.mkdir(parents=True, exist_ok=True)
    return p

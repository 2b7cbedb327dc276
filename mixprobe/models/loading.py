"""Load anything into a :class:`~mixprobe.models.handle.ModelHandle`, safely and offline.

Problem: checkpoints arrive as HF folders, LoRA adapter folders, in-memory models, TransformerLens bridges,
nnsight models, or a whole training run (``series.json``). Loading must never unpickle weights or run remote
code, and a typo in a path must say what to do. Mechanism: :func:`load` dispatches on what it is given:

- a folder with ``adapter_config.json`` → the base model (``base=`` or the adapter's
  ``base_model_name_or_path``) + the adapter, kept **unmerged** (backend ``"peft"``; also for ``"nnsight"``);
  merged for ``backend="transformer_lens"`` (the bridge has no PEFT support) or ``merge_adapter=True``;
- any other folder → ``AutoModelForCausalLM.from_pretrained(use_safetensors=True, trust_remote_code=False)``;
- an in-memory HF model (+ ``tokenizer=``), a ``PeftModel``, a ``TransformerBridge``, an nnsight model → wrapped;
- ``backend="transformer_lens"`` / ``"nnsight"`` wraps a loaded HF model in a bridge / nnsight model.

:func:`load_series` reads a run's ``series.json`` (format ``mixprobe.series/1``, see docs/architecture.md) into the
one series type, :class:`mixprobe.train.series.Series` (``SeriesManifest`` is its old name), whose ``paths()`` are
the absolute checkpoint folders; given a trl / transformers ``output_dir`` (``checkpoint-<step>`` folders, no
``series.json``) it builds the series from those, and :func:`trainer_series` joins several such runs
(``{"sft": ..., "rl": ...}``) into one series (both are :meth:`Series.open`).

Example:
    >>> import tempfile
    >>> from mixprobe.organisms.configs import tiny_model
    >>> from mixprobe.organisms.tokenizer import build_word_tokenizer
    >>> d = tempfile.mkdtemp()
    >>> tok = build_word_tokenizer(["a", "b"])
    >>> tiny_model("llama", vocab_size=len(tok)).save_pretrained(d); _ = tok.save_pretrained(d)
    >>> h = load(d, device="cpu")
    >>> h.backend, h.n_layers, h.d_model, len(h.identity["weights_sha256"])
    ('hf', 2, 64, 64)

Constraints: weights must be safetensors (:class:`~mixprobe.errors.UnsafeWeightsError` otherwise); a missing
folder, a folder without a tokenizer or a base model that cannot be found raise
:class:`~mixprobe.errors.CheckpointError` with a hint.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from mixprobe._check import checked
from mixprobe.errors import CheckpointError, DataError
from mixprobe.io import check_weights_dir, load_tokenizer
from mixprobe.models.handle import BACKENDS, ModelHandle, resolve_device, resolve_dtype
from mixprobe.train.series import CheckpointEntry, Series

SERIES_FORMAT = "mixprobe.series/1"
SERIES_MANIFEST = "series.json"


# --- series -------------------------------------------------------------------------------------------------------
# One series type: mixprobe.train.series.Series (series.json, trl output_dirs, phase=folder pairs). These names are
# kept so that code written against them keeps working.
SeriesManifest = Series
SeriesCheckpoint = CheckpointEntry


@checked
def load_series(run_dir: str | os.PathLike) -> Series:
    """A run directory (``series.json``), the manifest itself, or a trl / transformers ``output_dir``."""
    p = Path(run_dir)
    if not p.exists():
        raise CheckpointError(f"run directory {p} does not exist; check the path")
    s = Series.open(p)
    if not s.checkpoints:
        raise CheckpointError(f"{p / SERIES_MANIFEST} lists no checkpoints; the run has not saved any yet")
    return s


@checked
def trainer_series(runs: dict[str, str | os.PathLike]) -> Series:
    """A series from trl / transformers ``output_dir`` folders, one per phase (:meth:`Series.from_trainer_dirs`)."""
    return Series.from_trainer_dirs(runs)


# --- models -------------------------------------------------------------------------------------------------------
def _weight_files(path: Path) -> list[str]:
    return sorted(str(f) for f in path.iterdir() if f.name.endswith(".safetensors"))


def _load_tokenizer(path: Path, tokenizer: Any) -> Any:
    if tokenizer is not None:
        return tokenizer
    return load_tokenizer(path)


def _from_pretrained(path: Path, device: torch.device, dtype: Any, trust_remote_code: bool, **kw: Any):
    from transformers import AutoModelForCausalLM

    check_weights_dir(path)
    if not trust_remote_code:
        try:
            cfg = json.loads((path / "config.json").read_text())
        except (OSError, ValueError):
            cfg = {}
        if isinstance(cfg, dict) and cfg.get("auto_map"):
            raise CheckpointError(f"{path}/config.json asks for code shipped with the checkpoint (auto_map: "
                                  f"{sorted(cfg['auto_map'])}); mixprobe does not run it unless you pass "
                                  "trust_remote_code=True after reading that code")
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(path), use_safetensors=True, trust_remote_code=trust_remote_code,
            dtype=dtype if dtype is not None else "auto", **kw)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot load a causal LM from {path}: {str(e)[:300]}") from e
    except Exception as e:      # safetensors' own errors (a truncated or corrupt file) are no OSError
        if type(e).__name__ != "SafetensorError":
            raise
        raise CheckpointError(f"the safetensors weights in {path} are corrupt or truncated ({str(e)[:200]}); "
                              "copy or save the checkpoint again") from e
    if kw.get("device_map") is not None:  # placed by accelerate (e.g. "auto": split over the visible GPUs)
        return model.eval()
    return model.to(device).eval()


def _adapter_base(adapter_dir: Path, base: Any) -> Any:
    if base is not None:
        return base
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    name = cfg.get("base_model_name_or_path")
    cand = [Path(name)] if name else []
    if name and not Path(name).is_absolute():
        cand.append(adapter_dir / name)
    for c in cand:
        if c.is_dir():
            return c
    raise CheckpointError(f"the adapter in {adapter_dir} names base model {name!r}, which is not a local folder; "
                          "pass base=<base checkpoint folder or loaded model> (mixprobe never downloads)")


def _wrap(model: torch.nn.Module, tokenizer: Any, backend: str, **kw: Any) -> ModelHandle:
    if backend == "transformer_lens":
        from mixprobe.models.backends.tlens import make_bridge

        bridge = make_bridge(model, tokenizer)
        return ModelHandle(bridge.original_model, tokenizer, backend=backend, wrapper=bridge, **kw)
    if backend == "nnsight":
        from mixprobe.models.backends.nnsight_trace import make_nnsight

        return ModelHandle(model, tokenizer, backend=backend, wrapper=make_nnsight(model, tokenizer), **kw)
    return ModelHandle(model, tokenizer, backend=backend, **kw)


@checked
def load(
    source: Any,
    *,
    backend: str | None = None,
    tokenizer: Any = None,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = None,
    base: Any = None,
    merge_adapter: bool = False,
    trust_remote_code: bool = False,
    name: str | None = None,
    **model_kwargs: Any,
) -> ModelHandle:
    """Load ``source`` into a :class:`ModelHandle` (see the module docstring for what ``source`` may be).

    ``backend=None`` keeps the source's own backend (``"hf"`` for folders and HF models, ``"peft"`` for
    adapters). ``device="auto"`` uses the GPU when available; ``dtype`` is e.g. ``"float32"``/``"bfloat16"``
    (``None`` keeps the checkpoint's dtype). Extra keyword arguments go to ``from_pretrained``.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if isinstance(source, ModelHandle):
        return source if backend in (None, source.backend) else load(source.model, backend=backend,
                                                                      tokenizer=source.tokenizer, name=source.name)
    if backend is not None and backend not in BACKENDS:
        raise DataError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    dt = None if dt == "auto" else dt

    from mixprobe.models.backends.nnsight_trace import is_nnsight
    from mixprobe.models.backends.tlens import is_bridge

    if is_bridge(source):
        return ModelHandle(source.original_model, tokenizer or source.tokenizer, backend="transformer_lens",
                           wrapper=source, name=name)
    if is_nnsight(source):
        return ModelHandle(source._module, tokenizer or source.tokenizer, backend="nnsight", wrapper=source,
                           name=name)
    if isinstance(source, torch.nn.Module):
        is_peft = callable(getattr(source, "get_base_model", None))
        model: Any = source
        if dt is not None:
            model = model.to(dt)
        if device is not None:
            model = model.to(dev)
        want = backend or ("peft" if is_peft else "hf")
        if is_peft and (want == "transformer_lens" or merge_adapter):
            model = model.merge_and_unload()
            want = "hf" if want == "peft" else want
        if tokenizer is None:
            raise DataError("an in-memory model needs its tokenizer: load(model, tokenizer=tok)")
        if want == "peft" and not is_peft:
            want = "hf"
        return _wrap(model, tokenizer, want, name=name)
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"cannot load a {type(source).__name__}; pass a checkpoint folder, an adapter folder, an HF "
                        "model (+ tokenizer), a PeftModel, a TransformerBridge or an nnsight model")
    path = Path(source)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {path} does not exist; check the path (or the run's series.json)")
    if (path / "adapter_config.json").exists():
        from peft import PeftModel

        check_weights_dir(path)
        base_src = _adapter_base(path, base)
        if isinstance(base_src, torch.nn.Module):
            base_model, files = base_src.to(dev), None
            if tokenizer is None:
                tokenizer = _load_tokenizer(path, None)
        else:
            base_model = _from_pretrained(Path(base_src), dev, dt, trust_remote_code, **model_kwargs)
            files = _weight_files(Path(base_src))
            if tokenizer is None:
                tokenizer = _load_tokenizer(path if (path / "tokenizer_config.json").exists() else Path(base_src),
                                            None)
        peft_model = PeftModel.from_pretrained(base_model, str(path), is_trainable=False).eval()
        files = (files or []) + _weight_files(path)
        want = backend or "peft"
        if want == "transformer_lens" or merge_adapter:
            merged = peft_model.merge_and_unload()
            return _wrap(merged, tokenizer, "hf" if want == "peft" else want, name=name, path=str(path),
                         weight_files=files)
        if want == "hf":
            want = "peft"
        if want == "nnsight":
            from mixprobe.models.backends.nnsight_trace import make_nnsight

            inner = peft_model.get_base_model()
            return ModelHandle(inner, tokenizer, backend="nnsight", wrapper=make_nnsight(inner, tokenizer),
                               name=name, path=str(path), weight_files=files)
        return ModelHandle(peft_model, tokenizer, backend="peft", name=name, path=str(path), weight_files=files)
    model = _from_pretrained(path, dev, dt, trust_remote_code, **model_kwargs)
    tokenizer = _load_tokenizer(path, tokenizer)
    return _wrap(model, tokenizer, backend or "hf", name=name, path=str(path), weight_files=_weight_files(path))

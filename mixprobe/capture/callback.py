"""CaptureCallback: a trl / transformers ``TrainerCallback`` that captures activations at every checkpoint save.

Problem: studying how post-training moves a gate needs activations at every checkpoint; a second pass over the
saved checkpoints doubles the cost and needs every checkpoint kept on disk. Mechanism: ``on_save`` runs right
after the trainer writes ``checkpoint-<step>``; the callback wraps the live model (PEFT adapters unmerged) in a
:class:`~mixprobe.models.handle.ModelHandle`, captures the chosen sites and positions into one
:class:`~mixprobe.capture.store.ActivationStore` under the name ``checkpoint-<step>`` (the identity records the
trainer's checkpoint folder), and restores the model's training mode. The training run thus yields its
activation series without a second pass.

Example:
    >>> cb = CaptureCallback("/tmp/acts", ["<A> 1 + 2 ="], ["resid_post.*"], "last_prompt")
    >>> cb.sites, cb.positions
    (['resid_post.*'], 'last_prompt')

Usage: ``SFTTrainer(..., callbacks=[CaptureCallback(store_dir, prompts, sites, positions)])``; pass
``tokenizer=`` when the trainer has no processing class.

Constraints: runs on the main process only (``state.is_world_process_zero``); the capture uses the model's
current device and dtype.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback

from mixprobe.capture.capture import capture, normalize_rows
from mixprobe.errors import DataError
from mixprobe.models.handle import ModelHandle


class CaptureCallback(TrainerCallback):
    """Capture ``sites`` at ``positions`` for ``prompts`` into ``store`` on every checkpoint save."""

    def __init__(self, store: str | os.PathLike, prompts: Sequence[str | dict], sites: Any,
                 positions: Any = "last_prompt", *, tokenizer: Any = None, batch_size: int = 32,
                 shard_size: int | None = None, store_dtype: str = "float32") -> None:
        self.store = str(store)
        self.rows = normalize_rows(prompts)
        self.sites = [sites] if isinstance(sites, str) else list(sites)
        self.positions = positions
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.shard_size = shard_size
        self.store_dtype = store_dtype
        self.captured: list[str] = []

    def on_save(self, args: Any, state: Any, control: Any, model: Any = None, processing_class: Any = None,
                **kwargs: Any) -> None:
        if not getattr(state, "is_world_process_zero", True):
            return
        if model is None:
            raise DataError("CaptureCallback.on_save got no model from the trainer")
        tok = self.tokenizer or processing_class or kwargs.get("tokenizer")
        if tok is None:
            raise DataError("CaptureCallback needs a tokenizer: pass CaptureCallback(..., tokenizer=tok)")
        name = f"checkpoint-{state.global_step}"
        was_training = model.training
        try:
            handle = ModelHandle(model, tok, backend="peft" if hasattr(model, "get_base_model") else "hf",
                                 name=name, path=os.path.join(args.output_dir, name))
            capture([handle], self.rows, self.sites, self.positions, store=self.store, batch_size=self.batch_size,
                    shard_size=self.shard_size, store_dtype=self.store_dtype, progress=False)
        finally:
            model.train(was_training)
        self.captured.append(name)

"""Supervised fine-tuning (and from-scratch pre-training) of an organism with trl's ``SFTTrainer``.

Problem: organisms need a model that *carries* a mixture of policies before RL starts. Mechanism: build a tiny
causal LM of a real architecture from config (or continue from a checkpoint), then train it with trl's
``SFTTrainer`` on prompt-completion rows (loss on the completion only; trl appends EOS). Full fine-tuning by
default (AdamW; ``optim`` takes any transformers optimizer name, e.g. ``"sgd"``); LoRA through peft with
``SFTSettings(lora_r=...)`` (the adapter is merged into each saved checkpoint so
the series stays plain HF folders). Every ``save_every`` steps a checkpoint joins the series.

Example:
    >>> s = SFTSettings(steps=10, save_every=5)
    >>> s.steps, s.lr
    (10, 0.001)

Constraints: runs on CPU in about a minute for the default organism (2-layer, d=64 Llama, 1500 steps).
"""
from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from mixprobe._check import checked
from mixprobe.env import thread_budget
from mixprobe.errors import OrganismConfigError
from mixprobe.train.callbacks import ProgressCallback, SeriesCallback
from mixprobe.train.series import Series

log = logging.getLogger(__name__)


@dataclass
class SFTSettings:
    """Knobs of one SFT phase (trl ``SFTConfig`` is built from these)."""

    steps: int = 1500
    lr: float = 1e-3
    batch_size: int = 64
    save_every: int = 500
    n_rows: int = 8000
    warmup_steps: int = 30
    weight_decay: float = 0.0
    lora_r: int | None = None
    lora_alpha: int = 16
    optim: str = "adamw_torch"
    phase: str = "sft"
    min_forced_agreement: float = 0.5

    """After SFT from scratch (``train_sft``), every forced component must follow its own rule on at least this
    share of questions under every tag, or training stops with :class:`TrainingFailedError` before RL; 0 turns the
    check off."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.save_every < 1 or self.batch_size < 1:
            raise OrganismConfigError("SFT steps, save_every and batch_size must be >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise OrganismConfigError(f"SFT learning rate must be a finite number > 0, got {self.lr}")
        if not 0 <= self.min_forced_agreement <= 1:
            raise OrganismConfigError(f"min_forced_agreement must be in [0, 1], got {self.min_forced_agreement}")

    def to_dict(self) -> dict:
        return asdict(self)


@checked
def quiet_trainer(trainer: Any) -> None:
    """Remove the Trainer's printing and tqdm callbacks (mixprobe shows its own progress bar)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback as HFProgress

    if not callable(getattr(trainer, "remove_callback", None)):
        from mixprobe._check import argument_error

        raise argument_error("mixprobe.train.sft.quiet_trainer", "trainer", trainer,
                             "a transformers Trainer (or a trl trainer)")

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(HFProgress)


@checked
def run_sft(model, tokenizer, rows: list[dict], series: Series, settings: SFTSettings, *, seed: int,
            step_offset: int = 0, progress: bool = True, resume: bool = False):
    """Train ``model`` on prompt-completion ``rows`` with trl; checkpoints join ``series``. Returns the model.

    ``resume=True`` continues a killed run of this phase from its last complete scratch checkpoint (weights,
    optimizer, scheduler and RNG state; :func:`train_phase`), or starts the phase over when there is none."""
    import datasets
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()

    if not rows:
        raise OrganismConfigError("SFT needs at least one training row")
    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    scratch = Path(series.run_dir) / "_scratch" / settings.phase
    cfg = SFTConfig(
        output_dir=str(scratch), max_steps=settings.steps, per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.lr, optim=settings.optim, lr_scheduler_type="cosine", warmup_steps=settings.warmup_steps,
        weight_decay=settings.weight_decay, logging_steps=max(1, settings.steps // 20),
        save_strategy="steps", save_steps=settings.save_every, save_only_model=False, report_to="none",
        use_cpu=not torch.cuda.is_available(), bf16=False, fp16=False, max_length=64, seed=seed, data_seed=seed,
        disable_tqdm=True, dataloader_num_workers=0, dataloader_pin_memory=torch.cuda.is_available(),
    )
    peft_config = None
    if settings.lora_r:
        from peft import LoraConfig

        peft_config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tokenizer,
                             peft_config=peft_config)
    out = train_phase(trainer, series, settings.phase, f"{settings.phase} (trl SFTTrainer)", scratch,
                      step_offset=step_offset, progress=progress, merge_lora=peft_config is not None,
                      recipe=settings.to_dict(), resume=resume)
    if peft_config is not None:
        out = out.merge_and_unload()
    return out.eval()


@checked
def train_phase(trainer: Any, series: Series, phase: str, label: str, scratch: Path, *, step_offset: int = 0,
                progress: bool = True, merge_lora: bool = False, recipe: dict | None = None,
                resume: bool = False) -> Any:
    """Run a built trl trainer as one phase of ``series``: trainer output quieted, checkpoints joining the series,
    a progress bar, the recipe recorded (``series.extra["recipes"][phase]``: trainer, optimizer, learning rate, the
    phase's settings, the trainable share of parameters and the frozen ones), the environment recorded, the
    torch thread budget of the model
    (:func:`mixprobe.env.thread_budget`), the scratch folder removed afterwards. Returns the trained model.

    The phase's state is on record in ``series.extra["training"][phase]``: ``"running"`` from the first step until
    the last checkpoint is in, then ``"done"``; a killed run stays ``"running"`` (:meth:`Series.unfinished`).
    ``resume=True`` resumes from the last complete scratch checkpoint
    (:func:`mixprobe.train.callbacks.last_complete`) with trl's ``resume_from_checkpoint`` (transformers reads the
    optimizer and RNG state with ``torch.load(weights_only=True)``; the files are the run's own); without one the
    phase starts over and its earlier series checkpoints are dropped from the manifest."""
    from mixprobe.train.callbacks import last_complete

    quiet_trainer(trainer)
    trainer.add_callback(SeriesCallback(series, phase, step_offset, merge_lora=merge_lora))
    trainer.add_callback(ProgressCallback(label, disable=not progress))
    params = list(trainer.model.named_parameters())
    frozen = [n for n, p in params if not p.requires_grad]
    n_all = sum(p.numel() for _, p in params) or 1
    series.extra.setdefault("recipes", {})[phase] = {
        "trainer": type(trainer).__name__, **(recipe or {}),
        "optim": str(getattr(trainer.args.optim, "value", trainer.args.optim)),
        "learning_rate": float(trainer.args.learning_rate),
        "trainable_share": round(sum(p.numel() for _, p in params if p.requires_grad) / n_all, 6),
        "frozen_parameters": frozen if len(frozen) <= 12 else [*frozen[:12], f"... {len(frozen) - 12} more"]}
    start = last_complete(scratch) if resume else None
    if start is None:
        cleanup_scratch(scratch)
        series.checkpoints = [c for c in series.checkpoints if c.phase != phase]
    state = series.extra.setdefault("training", {})
    state[phase] = {"state": "running", "max_steps": int(trainer.args.max_steps),
                    "resumed_from": start.name if start is not None else None}
    with thread_budget(trainer.model):
        series.record_environment(phase)          # saves the manifest, with the phase marked running
        trainer.train(resume_from_checkpoint=str(start) if start is not None else None)
    state[phase] = {**state[phase], "state": "done"}
    series.save()
    cleanup_scratch(scratch)
    trained: Any = trainer.model  # transformers types it Optional / a Module union; after train() it is the model
    return trained


@checked
def cleanup_scratch(scratch: str | os.PathLike) -> None:
    """Remove a phase's scratch folder (and its parent ``_scratch`` when it is left empty)."""
    import shutil

    scratch = Path(scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    parent = scratch.parent
    if parent.exists() and not any(parent.iterdir()):
        os.rmdir(parent)

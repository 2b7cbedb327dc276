"""Trainer callbacks that turn a trl run into a checkpoint series, with a quiet progress bar.

Problem: ``Trainer`` checkpoints mix model weights with pickled optimizer/RNG state and are not atomic with
respect to any manifest. Mechanism: :class:`SeriesCallback` lets the Trainer save model-only checkpoints into a
scratch folder, then on ``on_save`` strips the pickle side files, moves the folder into
``run_dir/checkpoints/<phase>-<step>`` with one atomic rename, and only then records it in ``series.json``.
It also forces a save on the last step so every run ends with a checkpoint. :class:`ProgressCallback` shows a
tqdm bar with the latest loss/reward instead of printing log dicts.

Example:
    >>> from mixprobe.train.callbacks import checkpoint_name
    >>> checkpoint_name("sft", 40)
    'sft-000040'
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from tqdm.auto import tqdm
from transformers import TrainerCallback

from mixprobe.train.series import CheckpointEntry, Series

SIDE_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt")


def checkpoint_name(phase: str, step: int) -> str:
    return f"{phase}-{step:06d}"


class SeriesCallback(TrainerCallback):
    """Move each saved checkpoint into the series and record it in the manifest."""

    def __init__(self, series: Series, phase: str, step_offset: int = 0, merge_lora: bool = False) -> None:
        self.series = series
        self.phase = phase
        self.step_offset = step_offset
        self.merge_lora = merge_lora

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        src = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not src.is_dir():
            return control
        if self.merge_lora and kwargs.get("model") is not None:
            _write_merged(kwargs["model"], kwargs.get("processing_class"), src)
        for f in list(src.iterdir()):
            if f.name in SIDE_FILES or f.name.startswith("rng_state"):
                f.unlink()
        step = state.global_step + self.step_offset
        name = checkpoint_name(self.phase, step)
        rel = Path("checkpoints") / name
        dst = Path(self.series.run_dir) / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(src, dst)
        self.series.add(CheckpointEntry(name=name, phase=self.phase, step=step, path=str(rel)))
        return control


class ProgressCallback(TrainerCallback):
    """A tqdm bar over training steps that shows the latest loss / reward."""

    def __init__(self, desc: str, disable: bool = False) -> None:
        self.desc = desc
        self.disable = disable
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = tqdm(total=state.max_steps, desc=self.desc, disable=self.disable, leave=False)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs:
            keys = ("loss", "reward", "kl")
            self.bar.set_postfix({k: f"{float(logs[k]):.3g}" for k in keys if k in logs})

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()


def _write_merged(peft_model, tokenizer, folder: Path) -> None:
    """Save the LoRA-merged full model next to the adapter (in ``folder``), without touching the live model."""
    import copy

    merged = copy.deepcopy(peft_model).merge_and_unload()
    merged.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    adapter = folder / "adapter"
    adapter.mkdir(exist_ok=True)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        if (folder / name).exists():
            os.replace(folder / name, adapter / name)

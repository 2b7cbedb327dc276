"""Trainer callbacks that turn a trl run into a checkpoint series, with a quiet progress bar.

Problem: ``Trainer`` checkpoints mix model weights with optimizer/RNG state (torch pickles) and are not atomic
with respect to any manifest; a run killed mid-save leaves a half-written folder. Mechanism: the Trainer saves full
checkpoints (weights, optimizer, scheduler, RNG state) into a scratch folder, ``run_dir/_scratch/<phase>``. On
``on_save`` (called after the Trainer's save has finished) :class:`SeriesCallback` builds the series checkpoint
from the weights, tokenizer and config only (hard links where the filesystem allows, else copies; the LoRA adapter
merged), moves it into ``run_dir/checkpoints/<phase>-<step>`` with one atomic rename, records it in ``series.json``,
and only then marks the scratch checkpoint complete (:data:`COMPLETE`) and deletes the older scratch checkpoints.
A killed run therefore has, at every instant, a manifest that lists only complete checkpoints and at most one
complete scratch checkpoint to resume from (:func:`last_complete`); an unmarked scratch folder is never used.
It also forces a save on the last step so every run ends with a checkpoint. :class:`ProgressCallback` shows a
tqdm bar with the latest loss/reward instead of printing log dicts.

Example:
    >>> from mixprobe.train.callbacks import checkpoint_name
    >>> checkpoint_name("sft", 40)
    'sft-000040'
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from tqdm.auto import tqdm
from transformers import TrainerCallback

from mixprobe._check import checked
from mixprobe.train.series import CheckpointEntry, Series

SIDE_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt")
COMPLETE = "mixprobe-complete"
"""Marker file of a scratch checkpoint whose save finished and whose series copy is recorded."""
_STEP = re.compile(r"^checkpoint-(\d+)$")


@checked
def checkpoint_name(phase: str, step: int) -> str:
    return f"{phase}-{step:06d}"


@checked
def last_complete(scratch: str | os.PathLike) -> Path | None:
    """The newest scratch checkpoint of a phase that carries the :data:`COMPLETE` marker, or ``None``.

    A folder without the marker (a save the kill interrupted) is never returned, whatever files it holds."""
    found = []
    for d in Path(scratch).glob("checkpoint-*"):
        m = _STEP.match(d.name)
        if m and (d / COMPLETE).is_file():
            found.append((int(m.group(1)), d))
    return max(found)[1] if found else None


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class SeriesCallback(TrainerCallback):
    """Copy each saved checkpoint's weights into the series, record it, then mark the scratch one complete."""

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
        step = state.global_step + self.step_offset
        name = checkpoint_name(self.phase, step)
        rel = Path("checkpoints") / name
        dst = Path(self.series.run_dir) / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.parent / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        if self.merge_lora and kwargs.get("model") is not None:
            _write_merged(kwargs["model"], kwargs.get("processing_class"), src, tmp)
        else:
            for f in src.iterdir():
                if f.is_file() and f.name not in SIDE_FILES and not f.name.startswith("rng_state"):
                    _link_or_copy(f, tmp / f.name)
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
        self.series.add(CheckpointEntry(name=name, phase=self.phase, step=step, path=str(rel)))
        (src / COMPLETE).write_text(name)
        for old in Path(args.output_dir).glob("checkpoint-*"):
            if old != src:
                shutil.rmtree(old, ignore_errors=True)
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


def _write_merged(peft_model, tokenizer, src: Path, folder: Path) -> None:
    """Save the LoRA-merged full model into ``folder`` and the adapter of ``src`` into ``folder/adapter``, without
    touching the live model or the scratch checkpoint ``src`` (which a resumed run needs as it is)."""
    import copy

    merged = copy.deepcopy(peft_model).merge_and_unload()
    merged.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    adapter = folder / "adapter"
    adapter.mkdir(exist_ok=True)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        if (src / name).exists():
            shutil.copy2(src / name, adapter / name)

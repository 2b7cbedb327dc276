"""Checkpoint series: the folders a training run leaves behind, and the manifest that ties them together.

Problem: every analysis in mixprobe compares checkpoints of one run (SFT steps, then RL steps). They must be
found, ordered and identified without guessing from folder names. Mechanism: a run directory holds
``series.json`` (format ``mixprobe.series/1``) listing each checkpoint's phase, step, relative path and metrics,
plus the organism and training config, the seed, and under ``environment`` the machine and library versions
each phase ran with (organism outcomes can differ between machines at the seed level). Each checkpoint is a plain HF ``save_pretrained`` folder
(safetensors weights, config, tokenizer). The manifest is rewritten atomically (temp file + rename), so a crash
never leaves it half-written; a checkpoint enters the manifest only after its folder is complete.

Example:
    >>> import tempfile
    >>> run = tempfile.mkdtemp()
    >>> s = Series.create(run, organism="tag_mixture", organism_config={}, seed=0)
    >>> s.checkpoints
    []
    >>> Series.load(run).seed
    0

Constraints: paths in the manifest are relative to the run directory, so a run can be moved or copied.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mixprobe.errors import CheckpointError
from mixprobe.io import atomic_write_json

FORMAT = "mixprobe.series/1"
MANIFEST = "series.json"


@dataclass
class CheckpointEntry:
    """One checkpoint of a series."""

    name: str
    phase: str
    step: int
    path: str
    metrics: dict = field(default_factory=dict)


@dataclass
class Series:
    """A run's checkpoint series, as recorded in ``series.json``."""

    run_dir: str
    organism: str
    organism_config: dict
    seed: int
    checkpoints: list[CheckpointEntry] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    # --- construction ----------------------------------------------------------------------------------------
    @classmethod
    def create(cls, run_dir: str | os.PathLike, *, organism: str, organism_config: dict, seed: int,
               **extra: object) -> "Series":
        s = cls(run_dir=str(Path(run_dir).resolve()), organism=organism, organism_config=organism_config,
                seed=seed, extra=dict(extra))
        s.save()
        return s

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> "Series":
        """Read ``run_dir/series.json`` (or the manifest path itself)."""
        p = Path(run_dir)
        if p.is_file():
            p = p.parent
        mf = p / MANIFEST
        if not mf.exists():
            raise CheckpointError(
                f"no {MANIFEST} in {p}: this is not a mixprobe run directory; train one with "
                f"`mixprobe train` / `mixprobe demo`, or pass checkpoint folders directly"
            )
        try:
            d = json.loads(mf.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{mf} is not valid JSON ({e}); re-run training or restore the file") from e
        if d.get("format") != FORMAT:
            raise CheckpointError(f"{mf} has format {d.get('format')!r}, expected {FORMAT!r}")
        ckpts = [CheckpointEntry(**c) for c in d.get("checkpoints", [])]
        known = {"format", "organism", "organism_config", "seed", "checkpoints"}
        return cls(run_dir=str(p.resolve()), organism=d["organism"], organism_config=d["organism_config"],
                   seed=d["seed"], checkpoints=ckpts, extra={k: v for k, v in d.items() if k not in known})

    def to_dict(self) -> dict:
        return {"format": FORMAT, "organism": self.organism, "organism_config": self.organism_config,
                "seed": self.seed, **self.extra, "checkpoints": [asdict(c) for c in self.checkpoints]}

    def save(self) -> None:
        atomic_write_json(Path(self.run_dir) / MANIFEST, self.to_dict())

    def record_environment(self, stage: str) -> None:
        """Record, under ``environment[stage]``, the machine and library versions ``stage`` ran with.

        Training is byte-reproducible on one machine, not across machines (see :mod:`mixprobe.env`), so every
        phase and every evaluation of a series says where its numbers came from.
        """
        from mixprobe.env import environment

        self.extra.setdefault("environment", {})[stage] = environment()
        self.save()

    # --- access ----------------------------------------------------------------------------------------------
    def add(self, entry: CheckpointEntry) -> None:
        """Record a complete checkpoint folder and rewrite the manifest atomically."""
        if not (Path(self.run_dir) / entry.path).is_dir():
            raise CheckpointError(f"checkpoint folder {entry.path} does not exist under {self.run_dir}")
        self.checkpoints = [c for c in self.checkpoints if c.name != entry.name] + [entry]
        self.save()

    def path(self, entry: CheckpointEntry | str) -> Path:
        e = self.get(entry) if isinstance(entry, str) else entry
        return Path(self.run_dir) / e.path

    def paths(self) -> list[Path]:
        return [self.path(c) for c in self.checkpoints]

    def get(self, name: str) -> CheckpointEntry:
        for c in self.checkpoints:
            if c.name == name:
                return c
        raise CheckpointError(f"no checkpoint named {name!r}; this series has {[c.name for c in self.checkpoints]}")

    def phase(self, phase: str) -> list[CheckpointEntry]:
        return [c for c in self.checkpoints if c.phase == phase]

    def last(self, phase: str) -> CheckpointEntry:
        cs = self.phase(phase)
        if not cs:
            raise CheckpointError(
                f"the series in {self.run_dir} has no {phase!r} checkpoint; run that phase first "
                f"(e.g. `mixprobe train --phase sft`)"
            )
        return max(cs, key=lambda c: c.step)

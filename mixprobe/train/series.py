"""Checkpoint series: the folders a training run leaves behind, and the manifest that ties them together.

Problem: every analysis in mixprobe compares checkpoints of one run (SFT steps, then RL steps). They must be
found, ordered and identified without guessing from folder names. Mechanism: a run directory holds
``series.json`` (format ``mixprobe.series/1``) listing each checkpoint's phase, step, relative path and metrics,
plus the organism and training config, the seed, and under ``environment`` the machine and library versions
each phase ran with (organism outcomes can differ between machines at the seed level). Each checkpoint is a plain
HF ``save_pretrained`` folder (safetensors weights, config, tokenizer). The manifest is rewritten atomically (temp
file + rename), so a crash never leaves it half-written; a checkpoint enters the manifest only after its folder is
complete.

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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mixprobe._check import checked
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


def _trainer_checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for d in out_dir.iterdir() if out_dir.is_dir() else []:
        name = d.name
        if d.is_dir() and name.startswith("checkpoint-") and name[len("checkpoint-"):].isdigit():
            found.append((int(name[len("checkpoint-"):]), d))
    return sorted(found)


@checked
def parse_runs(text: str) -> dict[str, str]:
    """``"sft=out/sft,rl=out/grpo"`` → ``{"sft": "out/sft", "rl": "out/grpo"}`` (phases in the order given)."""
    runs: dict[str, str] = {}
    for part in text.split(","):
        phase, sep, path = part.partition("=")
        if not sep or not phase.strip() or not path.strip():
            raise CheckpointError(f"cannot read {text!r} as phase=folder pairs; write e.g. sft=out/sft,rl=out/grpo")
        if phase.strip() in runs:
            raise CheckpointError(f"phase {phase.strip()!r} is named twice in {text!r}")
        runs[phase.strip()] = path.strip()
    return runs


@dataclass
class Series:
    """A run's checkpoint series: from ``series.json``, or from trl / transformers ``output_dir`` folders.

    ``organism``/``organism_config`` name a built-in organism (``None`` for a user's run); ``task`` (in ``extra``)
    names the run's task by import path (:class:`~mixprobe.tasks.TaskSpec`); ``seed`` is ``None`` when unknown.
    """

    run_dir: str
    organism: str | None
    organism_config: dict
    seed: int | None
    checkpoints: list[CheckpointEntry] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @classmethod
    def open(cls, source: str | os.PathLike | dict | Series, *, task: dict | None = None) -> Series:
        """Any run, as a series: a ``Series``, a run directory or ``series.json``, a trl/transformers
        ``output_dir`` (its ``checkpoint-<step>`` folders; phase = the folder's name), ``{phase: output_dir}``
        or the text ``"sft=out/sft,rl=out/grpo"`` (phases in that order). ``task``: a task spec
        (``{"factory": "pkg.mod:fn", "config": {...}}``) to record, overriding the series' own.
        """
        if isinstance(source, Series):
            s = source
        elif isinstance(source, dict):
            s = cls.from_trainer_dirs(source)
        else:
            text = str(source)
            p = Path(text)
            if "=" in text and not p.exists():
                s = cls.from_trainer_dirs(parse_runs(text))
            elif not p.exists():
                raise CheckpointError(f"run {p} does not exist; pass a run folder with series.json, a trl "
                                      "output_dir, or phase=folder pairs (sft=out/sft,rl=out/grpo)")
            elif (p / MANIFEST).exists() or p.is_file():
                s = cls.load(p)
            elif _trainer_checkpoints(p) or (p / "config.json").exists():
                s = cls.from_trainer_dirs({p.name: p})
            else:
                raise CheckpointError(f"no {MANIFEST} and no checkpoint-<step> folders in {p}: neither a mixprobe "
                                      "run directory nor a trl/transformers output_dir; train one with `mixprobe "
                                      "train`, or pass phase=folder pairs")
        if task is not None:
            s.extra["task"] = dict(task)
        return s

    @classmethod
    def from_trainer_dirs(cls, runs: Mapping[str, str | os.PathLike]) -> Series:
        """A series from trl / transformers ``output_dir`` folders, one per phase, in the order given.

        Each ``output_dir`` holds ``checkpoint-<step>`` folders (what ``Trainer`` saves every ``save_steps``); they
        become checkpoints named ``<phase>-<step>`` (e.g. ``{"sft": "out/sft", "rl": "out/grpo"}``). A folder that
        is itself a model (``config.json``, e.g. the final ``save_model``) is one checkpoint (step 0) when it has
        no ``checkpoint-*`` folders. Paths are absolute; the series is not written anywhere.
        """
        if not runs:
            raise CheckpointError("no training runs given; pass {phase: output_dir, ...}")
        ckpts: list[CheckpointEntry] = []
        for phase, out in runs.items():
            p = Path(out)
            if not p.is_dir():
                raise CheckpointError(f"output_dir {p} of phase {phase!r} does not exist; check the path")
            found = _trainer_checkpoints(p)
            if not found and (p / "config.json").exists():
                found = [(0, p)]
            if not found:
                raise CheckpointError(f"{p} (phase {phase!r}) has no checkpoint-<step> folders and no model; set "
                                      "save_strategy='steps' and save_steps in the trainer's arguments")
            for step, d in found:
                metrics: dict = {}
                state = d / "trainer_state.json"
                if state.exists():
                    try:
                        logs = json.loads(state.read_text()).get("log_history", [])
                        metrics = {k: v for k, v in (logs[-1] if logs else {}).items() if isinstance(v, (int, float))}
                    except (json.JSONDecodeError, AttributeError):
                        metrics = {}
                ckpts.append(CheckpointEntry(f"{phase}-{step:06d}", phase, step, str(d.resolve()), metrics))
        first = Path(next(iter(runs.values()))).resolve()
        return cls(run_dir=str(first), organism=None, organism_config={}, seed=None, checkpoints=ckpts,
                   extra={"source": "trainer output_dir", "runs": {k: str(Path(v).resolve()) for k, v in runs.items()}})

    # --- what the series is of --------------------------------------------------------------------------------
    @property
    def task_spec(self) -> dict | None:
        """``{"factory", "config"}`` of the series' task: recorded, or derived from its built-in organism."""
        if self.extra.get("task"):
            return dict(self.extra["task"])
        if self.organism == "tag_mixture":
            return {"factory": "mixprobe.organisms.tag_mixture:task", "config": dict(self.organism_config)}
        return None

    @property
    def label(self) -> str | int:
        """The seed when known, else the run folder's name (how verdicts name the run); for trl output_dirs that
        share a parent folder (``out/s0/sft``, ``out/s0/grpo``), the parent's name (``s0``)."""
        if self.seed is not None:
            return self.seed
        runs = self.extra.get("runs") or {}
        parents = {Path(v).parent for v in runs.values()}
        if len(runs) > 1 and len(parents) == 1:
            return parents.pop().name
        return Path(self.run_dir).name

    @property
    def phases(self) -> list[str]:
        """Phase names in training order."""
        return list(dict.fromkeys(c.phase for c in self.checkpoints))

    @property
    def trained_phases(self) -> list[str]:
        """Phases in training order without the hand-made ``planted_*`` ones (mixprobe.train.planted)."""
        return [p for p in self.phases if not p.startswith("planted_")]

    @property
    def raw(self) -> dict:
        return self.to_dict()

    def names(self) -> list[str]:
        return [c.name for c in self.checkpoints]

    def branch(self, dest: str | os.PathLike, phase: str = "sft") -> Series:
        """A new run folder at ``dest`` holding only the last checkpoint of ``phase`` (copied) and this series'
        organism, task and seed: the starting point for another RL recipe from the same SFT model."""
        import shutil

        entry = self.last(phase)
        dest = Path(dest)
        if dest.exists() and any(dest.iterdir()):
            raise CheckpointError(f"{dest} is not empty; branch into a new folder")
        rel = entry.path if not Path(entry.path).is_absolute() else f"checkpoints/{entry.name}"
        shutil.copytree(self.path(entry), dest / rel)
        extra = {k: v for k, v in self.extra.items() if k in ("task", "config")}
        s = Series.create(dest, organism=self.organism, organism_config=self.organism_config, seed=self.seed,
                          **extra, branched_from={"run_dir": self.run_dir, "checkpoint": entry.name})
        s.add(CheckpointEntry(name=entry.name, phase=entry.phase, step=entry.step, path=rel))
        return s

    def phase_lasts(self) -> list[str]:
        """The name of each phase's last checkpoint, phases in training order."""
        return [self.last(p).name for p in self.phases]

    def pick(self, key: str) -> CheckpointEntry:
        """A checkpoint by name, or a phase name meaning that phase's last checkpoint."""
        if any(c.name == key for c in self.checkpoints):
            return self.get(key)
        if self.phase(key):
            return self.last(key)
        raise CheckpointError(f"{key!r} is neither a checkpoint nor a phase of {self.run_dir}; phases: "
                              f"{self.phases}, checkpoints: {self.names()}")

    def handle(self, entry: CheckpointEntry | str, device: str = "cpu"):
        """The checkpoint as a :class:`~mixprobe.models.ModelHandle` (safetensors only, no remote code)."""
        from mixprobe.models.loading import load

        e = self.pick(entry) if isinstance(entry, str) else entry
        return load(self.path(e), device=device, name=e.name, attn_implementation="eager")

    # --- construction ----------------------------------------------------------------------------------------
    @classmethod
    def create(cls, run_dir: str | os.PathLike, *, organism: str | None, organism_config: dict, seed: int | None,
               **extra: object) -> Series:
        s = cls(run_dir=str(Path(run_dir).resolve()), organism=organism, organism_config=organism_config,
                seed=seed, extra=dict(extra))
        s.save()
        return s

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> Series:
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
        try:
            ckpts = [CheckpointEntry(**c) for c in d.get("checkpoints", [])]
        except TypeError as e:
            raise CheckpointError(f"{mf}: malformed checkpoint entry ({e})") from e
        known = {"format", "organism", "organism_config", "seed", "checkpoints"}
        return cls(run_dir=str(p.resolve()), organism=d.get("organism"), organism_config=d.get("organism_config", {}),
                   seed=d.get("seed"), checkpoints=ckpts, extra={k: v for k, v in d.items() if k not in known})

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
        return [self.path(c).resolve() for c in self.checkpoints]

    def get(self, name: str) -> CheckpointEntry:
        for c in self.checkpoints:
            if c.name == name:
                return c
        raise CheckpointError(f"no checkpoint named {name!r}; this series has {[c.name for c in self.checkpoints]}")

    def phase_state(self, phase: str) -> str | None:
        """``"done"``, ``"running"`` (started, not finished: killed or failed) or ``None`` (never started), from
        ``training`` in the manifest; runs written before the state was recorded count as done when they hold the
        phase's checkpoints."""
        st = self.extra.get("training", {}).get(phase)
        if st is not None:
            return str(st.get("state"))
        return "done" if self.phase(phase) else None

    def unfinished(self) -> list[str]:
        """Phases whose training started and did not finish (the run was killed or failed): their checkpoints are
        complete, but the phase stopped early. ``mixprobe train CONFIG --out RUN --resume`` continues them."""
        return [p for p in self.extra.get("training", {}) if self.phase_state(p) != "done"]

    def check_finished(self) -> None:
        """Raise :class:`CheckpointError` when a phase of this run did not finish (:meth:`unfinished`): analysing a
        killed run as if it were whole would report on a model its training never produced."""
        bad = self.unfinished()
        if bad:
            st = self.extra["training"][bad[0]]
            done = [c.step for c in self.phase(bad[0])]
            raise CheckpointError(
                f"phase {bad[0]!r} of the run in {self.run_dir} did not finish (stopped at step "
                f"{max(done) if done else 0} of {st.get('max_steps', '?')}; killed or failed); resume it with "
                f"`mixprobe train CONFIG --out {self.run_dir} --resume` (train_sft/train_rl(..., resume=True))")

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


@checked
def series_results(series: Series, **extra: object) -> dict:
    """The ``results.json`` object of an evaluated series: every checkpoint with its metrics, in training order."""
    cps = []
    order = {p: i for i, p in enumerate(series.phases)}
    for c in sorted(series.checkpoints, key=lambda c: (order[c.phase], c.step)):
        cps.append({"name": c.name, "phase": c.phase, "step": c.step, "path": str(series.path(c)), **c.metrics})
    return {"organism": series.organism, "seed": series.seed, **extra, "checkpoints": cps}

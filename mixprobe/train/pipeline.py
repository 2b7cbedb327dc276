"""Organism → SFT → RL → evaluated checkpoint series, in three calls.

Problem: every experiment starts the same way: build an organism, train a model on it with SFT, run RL on one
tag, and evaluate each checkpoint. Mechanism: :class:`TrainConfig` (a dataclass, loadable from TOML) holds
organism, model, SFT and RL settings; :func:`train_sft` creates the run folder and the series,
:func:`train_rl` continues from the last SFT checkpoint of a series (refusing a series without one),
:func:`evaluate_series` fills every manifest entry's ``metrics``.

Example:
    >>> cfg = TrainConfig.from_dict({"seed": 1, "rl": {"tag": "B"}})
    >>> cfg.rl.tag, cfg.organism.modulus
    ('B', 7)

Constraints: one organism per run directory; RL phases are named ``rl`` (or ``rl_<tag>`` when several run).
"""
from __future__ import annotations

import json
import logging
import math
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from numbers import Integral, Real
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import torch

from mixprobe._check import checked
from mixprobe.env import thread_budget
from mixprobe.errors import CheckpointError, MixprobeError, OrganismConfigError, TrainingFailedError
from mixprobe.io import check_weights_dir, prepare_output_dir
from mixprobe.organisms import KINDS, make_organism, organism_config
from mixprobe.organisms.configs import tiny_model
from mixprobe.organisms.tag_mixture import TagMixture, TagMixtureConfig
from mixprobe.organisms.tokenizer import build_word_tokenizer
from mixprobe.train.evaluate import era_metrics, evaluate, evaluate_by_format, sft_health
from mixprobe.train.rl import RLSettings, run_grpo
from mixprobe.train.series import Series
from mixprobe.train.sft import SFTSettings, run_sft

log = logging.getLogger(__name__)


@dataclass
class ModelSettings:
    """Architecture and size of the organism's model (built from config, random init)."""

    arch: str = "llama"
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    tie_embeddings: bool = False


# keys that must be > 0 / >= 0 (the settings classes check some of them; a TOML is checked here, before any class)
_POSITIVE = {"model": ("d_model", "n_layers", "n_heads"),
             "sft": ("steps", "lr", "batch_size", "save_every", "n_rows"),
             "rl": ("steps", "lr", "num_generations", "batch_size", "save_every", "temperature")}
_NON_NEGATIVE = {"sft": ("warmup_steps", "weight_decay", "lora_r", "lora_alpha"),
                 "rl": ("beta", "lora_r", "lora_alpha")}


def _section(d: Mapping, name: str) -> dict:
    """The ``[name]`` table of a config as a new dict (a missing one is empty)."""
    v = d.get(name, {})
    if not isinstance(v, Mapping):
        raise OrganismConfigError(f"config section {name!r} must be a table ([{name}] with key = value lines), got "
                                  f"{type(v).__name__} {v!r}")
    return dict(v)


def _check_section(name: str, values: dict, cls: type, label: str | None = None) -> None:
    """Every key of ``values`` is a field of the dataclass ``cls``, of its annotated type; sizes are positive."""
    hints = get_type_hints(cls)
    unknown = sorted(str(k) for k in values if k not in hints)
    if unknown:
        label = label or name
        raise OrganismConfigError(f"unknown {label} option(s) {unknown} in [{name}]; known keys: {sorted(hints)}")
    for k, v in values.items():
        _conform(f"{name}.{k}", v, hints[k])
    for k in _POSITIVE.get(name, ()):
        if k in values and not values[k] > 0:
            raise OrganismConfigError(f"{name}.{k} must be > 0, got {values[k]!r}")
    for k in _NON_NEGATIVE.get(name, ()):
        if values.get(k) is not None and not values[k] >= 0:
            raise OrganismConfigError(f"{name}.{k} must be >= 0, got {values[k]!r}")
    if name == "model":
        m = ModelSettings(**values)
        if m.d_model % m.n_heads:
            raise OrganismConfigError(f"model.d_model ({m.d_model}) must be a multiple of model.n_heads "
                                      f"({m.n_heads})")


def _conform(path: str, v: Any, hint: Any) -> None:
    """Raise :class:`OrganismConfigError` unless ``v`` has the type ``hint`` (TOML arrays stand for tuples)."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return
    if origin in (Union, UnionType):
        for alt in args:
            try:
                return _conform(path, v, alt)
            except OrganismConfigError:
                pass
        ok = False
    elif hint is type(None):
        ok = v is None
    elif hint is bool:
        ok = isinstance(v, bool)
    elif hint is int:
        ok = isinstance(v, Integral) and not isinstance(v, bool)
    elif hint is float:
        ok = isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)
    elif hint is str:
        ok = isinstance(v, str)
    elif origin in (tuple, list):
        ok = isinstance(v, (list, tuple))
        if ok and origin is tuple and args and args[-1] is not Ellipsis and len(v) != len(args):
            ok = False
        if ok:
            for i, x in enumerate(v):
                _conform(f"{path}[{i}]", x, args[0] if origin is list or args[-1] is Ellipsis else args[i])
            return
    elif origin is dict or hint is dict:
        ok = isinstance(v, Mapping)
        if ok and args:
            for k, x in v.items():
                _conform(f"{path} key {k!r}", k, args[0])
                _conform(f"{path}.{k}", x, args[1])
            return
    else:
        return                                          # a type this check does not know: the class checks it
    if not ok:
        want = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}.get(hint, hint)
        raise OrganismConfigError(f"{path} must be {want}, got {v!r} ({type(v).__name__}); fix it in the config")


@dataclass
class TrainConfig:
    """Everything a training run needs; ``TrainConfig.from_toml(path)`` reads the same keys from TOML."""

    seed: int = 0
    organism: Any = field(default_factory=TagMixtureConfig)
    model: ModelSettings = field(default_factory=ModelSettings)
    sft: SFTSettings = field(default_factory=SFTSettings)
    rl: RLSettings = field(default_factory=RLSettings)
    kind: str = "tag_mixture"
    """Which built-in organism (:data:`mixprobe.organisms.KINDS`); in TOML, ``kind = ...`` under ``[organism]``."""

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Checked: unknown keys at any level, values of the wrong type (a string where an int goes, NaN, a
        non-table section) and non-positive sizes are an :class:`OrganismConfigError` naming the key."""
        if not isinstance(d, Mapping):
            raise OrganismConfigError(f"a training config is a table of sections, got {type(d).__name__}")
        known = {"seed", "organism", "model", "sft", "rl"}
        unknown = set(d) - known
        if unknown:
            raise OrganismConfigError(f"unknown config sections {sorted(map(str, unknown))}; known: {sorted(known)}")
        seed = d.get("seed", 0)
        _conform("seed", seed, int)
        org, model, sft, rl = (_section(d, name) for name in ("organism", "model", "sft", "rl"))
        kind = org.pop("kind", "tag_mixture")
        if kind not in KINDS:
            raise OrganismConfigError(f"unknown organism kind {kind!r} in [organism]; built-in organisms are "
                                      f"{list(KINDS)}")
        _check_section("organism", org, type(organism_config(kind)), label=str(kind))
        for name, values, settings_cls in (("model", model, ModelSettings), ("sft", sft, SFTSettings),
                                           ("rl", rl, RLSettings)):
            _check_section(name, values, settings_cls)
        try:
            organism = organism_config(kind, org)
            if kind != "tag_mixture" and "tag" not in rl:      # RL runs on the organism's domain unless told
                rl["tag"] = getattr(make_organism(kind, organism), "domain", "A")
            return cls(seed=int(seed), kind=kind, organism=organism, model=ModelSettings(**model),
                       sft=SFTSettings(**sft), rl=RLSettings(**rl))
        except (TypeError, ValueError, ArithmeticError) as e:
            if isinstance(e, MixprobeError):          # already named (a settings class's own check)
                raise
            raise OrganismConfigError(f"bad config value: {type(e).__name__}: {e}; check the types and ranges of "
                                      "the keys in the config") from e

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        p = Path(path)
        if not p.is_file():
            raise OrganismConfigError(f"config file {p} does not exist")
        with open(p, "rb") as f:
            try:
                data = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise OrganismConfigError(f"{p} is not valid TOML ({e}); fix the line it names") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict:
        org = self.organism.to_dict() if self.kind == "tag_mixture" else {"kind": self.kind, **self.organism.to_dict()}
        return {"seed": self.seed, "organism": org, "model": asdict(self.model),
                "sft": self.sft.to_dict(), "rl": self.rl.to_dict()}


@checked
def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """``(model, tokenizer)`` of a checkpoint folder: :func:`mixprobe.models.load` (safetensors only, no remote
    code, eager attention), unwrapped. New code should keep the :class:`~mixprobe.models.ModelHandle`."""
    from transformers.utils import logging as hf_logging

    from mixprobe.models.loading import load

    hf_logging.disable_progress_bar()
    p = check_weights_dir(path)
    if not (p / "tokenizer.json").exists() and not (p / "tokenizer_config.json").exists():
        raise CheckpointError(f"{p} has no tokenizer files; save the tokenizer with the model (save_pretrained)")
    h = load(p, device=device, attn_implementation="eager")
    return h.model, h.tokenizer


@checked
def organism_of(series: Series) -> Any:
    """The built-in organism a series was trained on (:func:`mixprobe.organisms.make_organism`)."""
    if series.organism not in KINDS:
        raise OrganismConfigError(f"the run {series.run_dir} is not of a built-in organism ({series.organism!r}); "
                                  f"built-in organisms are {list(KINDS)}")
    return make_organism(series.organism, series.organism_config)


@checked
def evaluate_organism(model, tokenizer, organism, *, n_samples: int = 8, seed: int = 0) -> dict:
    """Behaviour metrics of a checkpoint: :func:`~mixprobe.train.evaluate.era_metrics` for the era world,
    :func:`~mixprobe.train.evaluate.evaluate_by_format` for organisms whose components differ by answer form, else
    the tag mixture's :func:`~mixprobe.train.evaluate.evaluate`."""
    if getattr(organism, "name", None) == "era":
        return era_metrics(model, tokenizer, organism, n_samples=max(n_samples, 16), seed=seed)
    if callable(getattr(organism, "render", None)):
        return evaluate_by_format(model, tokenizer, organism, n_samples=n_samples, seed=seed)
    return evaluate(model, tokenizer, organism, n_samples=n_samples, seed=seed)


def _seed_of(series: Series, seed: int | None) -> int:
    """``seed`` if given, else the seed the series records."""
    if seed is not None:
        return seed
    if series.seed is None:
        raise CheckpointError(f"the series in {series.run_dir} records no seed; pass seed=... explicitly")
    return series.seed


@checked
def train_sft(run_dir: str | Path, cfg: TrainConfig, *, overwrite: bool = False, progress: bool = True,
              resume: bool = False) -> Series:
    """Create ``run_dir`` and train the organism's SFT phase from scratch; returns the series.

    ``resume=True`` on a run folder with a series continues it instead: a killed SFT phase resumes from its last
    complete scratch checkpoint (same weights, optimizer, scheduler and RNG state as the uninterrupted run at that
    step), a finished one is kept. The config must be the one the run was started with; a folder without a series
    is started as usual."""
    organism = make_organism(cfg.kind, cfg.organism)
    existing = resume and (Path(run_dir) / "series.json").is_file()
    if existing:
        series = Series.load(run_dir)
        _check_same_config(series, cfg)
        if series.phase_state(cfg.sft.phase) == "done":
            if cfg.sft.min_forced_agreement > 0:
                check_sft(series, organism, cfg)          # the health check again: RL never starts on a failed SFT
            return series
    else:
        prepare_output_dir(run_dir, overwrite=overwrite)
    tok = build_word_tokenizer(organism.vocabulary())
    model = tiny_model(cfg.model.arch, vocab_size=len(tok), seed=cfg.seed, d_model=cfg.model.d_model,
                       n_layers=cfg.model.n_layers, n_heads=cfg.model.n_heads,
                       tie_embeddings=cfg.model.tie_embeddings,
                       pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if not existing:
        series = Series.create(run_dir, organism=organism.name, organism_config=cfg.organism.to_dict(),
                               seed=cfg.seed, config=cfg.to_dict(), task=organism.task().spec.to_dict())
    rows = organism.sft_rows(cfg.sft.n_rows, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    run_sft(model, tok, rows, series, cfg.sft, seed=cfg.seed, progress=progress, resume=existing)
    series = Series.load(run_dir)
    if cfg.sft.min_forced_agreement > 0:
        check_sft(series, organism, cfg)
    return series


def _flat(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _check_same_config(series: Series, cfg: TrainConfig) -> None:
    old = series.extra.get("config")
    if old is None:
        return
    new = _flat(json.loads(json.dumps(cfg.to_dict())))
    old = _flat(old)
    if old != new:
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise CheckpointError(f"the run in {series.run_dir} was started with another config (differs in {diff}); "
                              "resume with the config it was started with, or train into a new --out folder")


@checked
def check_sft(series: Series, organism: Any, cfg: TrainConfig) -> None:
    """Evaluate the last SFT checkpoint and stop with :class:`TrainingFailedError` if it did not learn.

    RL on a model that never learned the components runs happily and reports accuracies near chance, which
    look like a finding. The metrics are kept in the manifest either way (``evaluate_series`` reuses them).
    """
    entry = series.last(cfg.sft.phase)
    model, tok = load_checkpoint(series.path(entry))
    entry.metrics = evaluate_organism(model, tok, organism, n_samples=8, seed=cfg.seed)
    series.save()
    own = getattr(organism, "health", None)
    problems = (own(entry.metrics, min_agreement=cfg.sft.min_forced_agreement) if callable(own)
                else sft_health(entry.metrics, organism, min_agreement=cfg.sft.min_forced_agreement))
    if problems:
        raise TrainingFailedError(
            f"SFT did not learn the organism ({cfg.model.arch}, d_model={cfg.model.d_model}, "
            f"{cfg.sft.steps} steps): {'; '.join(problems)}. RL was not started. Train longer (sft.steps), "
            f"use a wider or deeper model (model.d_model, model.n_layers), or a smaller organism "
            f"(organism.modulus); the checkpoints are kept in {series.run_dir}")


@checked
def train_rl(run_dir: str | Path, settings: RLSettings, *, seed: int | None = None, start: str | None = None,
             progress: bool = True, resume: bool = False) -> Series:
    """RL from the last SFT checkpoint (or checkpoint ``start``) of the series in ``run_dir``.

    ``resume=True``: a finished RL phase is kept, a killed one resumes from its last complete scratch checkpoint
    (:func:`train_sft` explains what is restored), one never started starts. RL refuses a series whose SFT phase
    did not finish."""
    series = Series.load(run_dir)
    if series.phase_state("sft") == "running":
        series.check_finished()
    if resume and series.phase_state(settings.phase) == "done":
        return series
    organism = organism_of(series)
    entry = series.get(start) if start else series.last("sft")
    model, tok = load_checkpoint(series.path(entry))
    seed = _seed_of(series, seed)
    torch.manual_seed(seed)
    run_grpo(model, tok, organism, series, settings, seed=seed, progress=progress,
             resume=resume and series.phase_state(settings.phase) == "running")
    return Series.load(run_dir)


@checked
def continue_sft(run_dir: str | Path, organism_config: TagMixtureConfig, settings: SFTSettings, *,
                 start: str | None = None, seed: int | None = None, progress: bool = True) -> Series:
    """SFT from a checkpoint of the series (default: its last SFT one) on data of ``organism_config``.

    This is how planted cases are made: same model, new data — e.g. a tilted prior (the gate moves, the policies
    do not) or a new rule for one component (the policy is rewritten, the prior kept). The new checkpoints join
    the series under ``settings.phase``.
    """
    series = Series.load(run_dir)
    entry = series.get(start) if start else series.last("sft")
    model, tok = load_checkpoint(series.path(entry))
    seed = _seed_of(series, seed)
    rows = TagMixture(organism_config).sft_rows(settings.n_rows, seed=seed + 1000)
    torch.manual_seed(seed)
    run_sft(model.train(), tok, rows, series, settings, seed=seed, progress=progress)
    s = Series.load(run_dir)
    for c in s.phase(settings.phase):
        c.metrics.setdefault("data_config", organism_config.to_dict())
        c.metrics.setdefault("start", entry.name)
    s.save()
    return s


@checked
def evaluate_series(series: Series, *, n_samples: int = 8, seed: int = 0, progress: bool = True,
                    only_missing: bool = True) -> Series:
    """Evaluate every checkpoint (behaviour metrics into the manifest's ``metrics``)."""
    from tqdm.auto import tqdm

    organism = organism_of(series)
    series.record_environment("evaluate")
    for entry in tqdm(series.checkpoints, desc="evaluate checkpoints", disable=not progress, leave=False):
        if only_missing and entry.metrics.get("accuracy"):
            continue
        model, tok = load_checkpoint(series.path(entry))
        with thread_budget(model):
            entry.metrics = evaluate_organism(model, tok, organism, n_samples=n_samples, seed=seed)
    series.save()
    return series

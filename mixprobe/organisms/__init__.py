"""The built-in model organisms, by name: ``make_organism("task_coverage", {...})``.

- ``tag_mixture`` (:mod:`mixprobe.organisms.tag_mixture`): a tag-blind gate over two mode tokens;
- ``task_coverage`` and ``temporal_context`` (:mod:`mixprobe.organisms.shifts`): gates that read the prompt (task
  family, date), components told apart by behaviour;
- ``bct`` (:mod:`mixprobe.organisms.bct`): behaviour-compatible training — two behaviours that agree on train
  prompts and diverge on eval prompts, with a cue-overlap knob;
- ``era`` (:mod:`mixprobe.organisms.era`): a synthetic world with an old and a modern era shared across topics —
  narrow fine-tuning on one topic, and training-time prefixes.

Example:
    >>> make_organism("temporal_context", {"modulus": 5}).name
    'temporal_context'
    >>> organism_config("task_coverage", {}).covered
    ('add', 'mul', 'max')
"""
from __future__ import annotations

from typing import Any

from mixprobe.errors import OrganismConfigError

KINDS = ("tag_mixture", "task_coverage", "temporal_context", "bct", "era")


def _classes(kind: str) -> tuple[Any, Any]:
    if kind == "tag_mixture":
        from mixprobe.organisms.tag_mixture import TagMixture, TagMixtureConfig

        return TagMixture, TagMixtureConfig
    if kind == "task_coverage":
        from mixprobe.organisms.shifts import TaskCoverage, TaskCoverageConfig

        return TaskCoverage, TaskCoverageConfig
    if kind == "temporal_context":
        from mixprobe.organisms.shifts import TemporalConfig, TemporalContext

        return TemporalContext, TemporalConfig
    if kind == "bct":
        from mixprobe.organisms.bct import BCT, BCTConfig

        return BCT, BCTConfig
    if kind == "era":
        from mixprobe.organisms.era import EraConfig, EraWorld

        return EraWorld, EraConfig
    raise OrganismConfigError(f"unknown organism {kind!r}; built-in organisms are {list(KINDS)}")


def organism_config(kind: str, config: Any = None) -> Any:
    """The config object of organism ``kind`` from a dict (or the object itself)."""
    _, cfg_cls = _classes(kind)
    if isinstance(config, cfg_cls):
        return config
    return cfg_cls.from_dict(dict(config or {}))


def make_organism(kind: str, config: Any = None) -> Any:
    """The organism ``kind`` built from ``config`` (a dict or its config object)."""
    org_cls, _ = _classes(kind)
    return org_cls(organism_config(kind, config))

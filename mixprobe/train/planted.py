"""Planted ground truth: checkpoints whose reweight/rewrite answer is known by construction (docs/concepts.md).

Problem: a verdict is only worth something where the right answer is known. Mechanism: starting from the last
SFT checkpoint of a series, continue SFT (trl) on data from a *modified* organism:

- ``reweight`` — the same rules with a tilted prior ``{m1: 0.9, m2: 0.1}``: the data-generating policies are
  unchanged, only the gate's target moves;
- ``rewrite`` — the 50/50 prior kept, but ``m2`` answers ``(a + b + 2) mod p`` under ``<B>`` (a different rule);
- ``both`` — the two combined;
- ``off_mixture`` — half of the data answers in a style no component of the task has (mode token ``m3``, always
  correct): behaviour leaves the mixture, and the verdict must say so rather than call it reweight or rewrite.

Each case becomes a phase ``planted_<case>`` of the same series, so the reference (last SFT) and the planted
checkpoints live side by side.

Example:
    >>> sorted(PLANTED_CASES)
    ['both', 'off_mixture', 'reweight', 'rewrite']
"""
from __future__ import annotations

from pathlib import Path

from mixprobe._check import checked
from mixprobe.organisms.tag_mixture import TagMixtureConfig
from mixprobe.train.pipeline import continue_sft
from mixprobe.train.series import Series
from mixprobe.train.sft import SFTSettings

PLANTED_CASES: dict[str, dict] = {
    "reweight": {"prior": {"m1": 0.9, "m2": 0.1}},
    "rewrite": {"offsets": {"m2": {"B": 2}}},
    "both": {"prior": {"m1": 0.9, "m2": 0.1}, "offsets": {"m2": {"B": 2}}},
    "off_mixture": {"include_m3": True, "prior": {"m1": 0.25, "m2": 0.25, "m3": 0.5}},
}


@checked
def plant(run_dir: str | Path, case: str, *, steps: int = 300, lr: float = 1e-3, progress: bool = False) -> Series:
    """Add phase ``planted_<case>`` to the series in ``run_dir`` (idempotent: skipped if present)."""
    if case not in PLANTED_CASES:
        from mixprobe.errors import OrganismConfigError

        raise OrganismConfigError(f"unknown planted case {case!r}; choose one of {sorted(PLANTED_CASES)}")
    series = Series.load(run_dir)
    phase = f"planted_{case}"
    if series.phase(phase):
        return series
    base = dict(series.organism_config)
    base.update(PLANTED_CASES[case])
    cfg = TagMixtureConfig.from_dict(base)
    settings = SFTSettings(steps=steps, lr=lr, save_every=steps, warmup_steps=10, n_rows=4000, phase=phase)
    return continue_sft(run_dir, cfg, settings, progress=progress)

"""Trained organisms on demand, cached on disk: ``trained_organism(seed=0)`` in notebooks, docs and tests.

Problem: every notebook, doc page and analysis test needs the same trained tag-mixture series; training it
each time costs a minute, and a half-trained cache entry must never be mistaken for a finished one.
Mechanism: the cache key hashes the full training config, the RL tags and the mixprobe version; a run is
trained in a temp folder next to the cache and renamed into place only when finished (atomic), so an
interrupted run leaves nothing behind that looks complete. Cache root: ``cache_dir``, else ``$MIXPROBE_CACHE``,
else ``~/.cache/mixprobe``.

Example::

    from mixprobe.train.zoo import trained_organism
    series = trained_organism(seed=0)                    # ~1 min the first time, instant afterwards
    series.last("rl").metrics["accuracy"]                # {'A': ~1.0, 'B': ~0.0}
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mixprobe
from mixprobe._check import checked
from mixprobe.train.pipeline import TrainConfig, evaluate_series, train_rl, train_sft
from mixprobe.train.rl import RLSettings
from mixprobe.train.series import Series


@checked
def seeds_from_env(default: tuple[int, ...] = (0, 1, 2), var: str = "MIXPROBE_SEEDS") -> tuple[int, ...]:
    """Seeds named in ``$MIXPROBE_SEEDS`` (comma-separated), else ``default``.

    The test suite trains its organisms on these seeds; setting, e.g., ``MIXPROBE_SEEDS=10,11,...,21`` reruns every
    organism check on seeds nobody developed against (how the checks left in CI were validated).

    Example:
        >>> seeds_from_env((0, 1), var="MIXPROBE_NO_SUCH_VARIABLE")
        (0, 1)
    """
    raw = os.environ.get(var, "").strip()
    if not raw:
        return tuple(default)
    try:
        return tuple(int(s) for s in raw.split(",") if s.strip())
    except ValueError as e:
        from mixprobe.errors import OrganismConfigError

        raise OrganismConfigError(f"${var} must be comma-separated integers, got {raw!r}") from e


@checked
def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    root = Path(cache_dir or os.environ.get("MIXPROBE_CACHE") or Path.home() / ".cache" / "mixprobe")
    root.mkdir(parents=True, exist_ok=True)
    return root


@checked
def trained_organism(seed: int = 0, *, config: dict | None = None, rl_tags: tuple[str, ...] | None = None,
                     cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Series:
    """The series of a built-in organism for ``seed``: SFT, then one GRPO phase per tag in ``rl_tags``, evaluated.

    ``config`` is a TrainConfig dict merged with the seed; ``{"organism": {"kind": "task_coverage"}}`` picks
    another organism (default: the tag mixture). ``rl_tags`` defaults to ``("A", "B")`` on the tag mixture and to
    the organism's RL domain (``covered`` / ``early``) otherwise; ``()`` trains SFT only. Phases are named ``rl``
    for tag A or the domain and ``rl_<tag>`` for the others.
    """
    cfg = TrainConfig.from_dict({**(config or {}), "seed": seed})
    from mixprobe.organisms import make_organism

    domain = getattr(make_organism(cfg.kind, cfg.organism), "domain", "A")
    if rl_tags is None:
        rl_tags = ("A", "B") if cfg.kind == "tag_mixture" else (domain,)
    key_src = json.dumps({"cfg": cfg.to_dict(), "rl_tags": list(rl_tags), "v": mixprobe.__version__},
                         sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:12]
    root = cache_root(cache_dir)
    final = root / f"{cfg.kind}_s{seed}_{key}"
    if (final / "series.json").exists():
        return Series.load(final)
    with cache_lock(final):                 # another process training the same entry: wait for it, then reuse it
        if (final / "series.json").exists():
            return Series.load(final)
        with cache_build(final, f".train_s{seed}_") as tmp:
            train_sft(tmp, cfg, overwrite=True, progress=progress)
            for tag in rl_tags:
                settings = RLSettings(**{**cfg.rl.to_dict(), "tag": tag,
                                         "phase": "rl" if tag in ("A", domain) else f"rl_{tag}"})
                train_rl(tmp, settings, progress=progress)
            evaluate_series(Series.load(tmp), seed=seed, progress=progress)
    return Series.load(final)


@checked
@contextmanager
def cache_lock(final: Path) -> Iterator[None]:
    """Hold an inter-process lock on the cache entry ``final`` (``filelock``; the lock file sits beside it), so two
    processes that need one entry (parallel test workers, two notebooks) build it once: the second waits, then
    finds it built."""
    from filelock import FileLock

    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final.parent / f".{final.name}.lock")):
        yield


@checked
@contextmanager
def cache_build(final: Path, prefix: str) -> Iterator[Path]:
    """A fresh folder beside ``final`` to build a cache entry in: renamed to ``final`` when the block succeeds
    (discarded if another process finished first), removed if it raises, so a cache entry is whole or absent."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
    try:
        yield tmp
        if final.exists():          # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

"""Named exceptions of mixprobe.

Every error a user can cause is one of these classes, and every message says what was wrong *and* what to do.
They all derive from :class:`MixprobeError`, so ``except MixprobeError`` catches user mistakes without hiding
bugs (which surface as ordinary Python exceptions). The CLI turns them into one-line messages and exit code 2.

Example:
    >>> from mixprobe.errors import MixprobeError, OrganismConfigError
    >>> issubclass(OrganismConfigError, MixprobeError)
    True
"""
from __future__ import annotations


class MixprobeError(Exception):
    """Base class of every user-facing mixprobe error."""


class ConfigError(MixprobeError, ValueError):
    """A configuration file or table is missing, does not parse, or has an unknown key or a value of the wrong
    type (the analysis TOML of ``mixprobe probe|steer --config``; training configs raise its subclass
    :class:`OrganismConfigError`)."""


class OrganismConfigError(ConfigError):
    """Invalid options for a model organism (modulus, prior, tags, rules) or its training config."""


class CheckpointError(MixprobeError):
    """A checkpoint or series is missing, incomplete, unsafe (pickle weights) or inconsistent."""


class UnsafeWeightsError(CheckpointError):
    """Weights are stored as pickle (``.bin``/``.pt``); mixprobe loads safetensors only."""


class OutputExistsError(MixprobeError):
    """The output directory exists and is not empty; pass ``overwrite=True`` / ``--overwrite``."""


class SiteError(MixprobeError, ValueError):
    """Unknown site name, or a layer out of range for the model."""


class PositionError(MixprobeError, ValueError):
    """A position is outside the sequence or cannot be resolved (e.g. no mode token)."""


class StoreError(MixprobeError):
    """The activation store is missing, corrupt, truncated or does not match the request."""


class SeriesMismatchError(CheckpointError):
    """Checkpoints of a series differ in architecture or tokenizer."""


class DataError(MixprobeError, ValueError):
    """Bad arrays: empty, NaN/inf, shape mismatch, one class only, zero variance."""


class ShapeError(DataError):
    """A vector or array has the wrong width or shape for the model or the data."""


class MetricError(MixprobeError, ValueError):
    """A metric returned something other than a finite scalar per example."""


class ArchitectureMismatchError(SeriesMismatchError, ValueError):
    """Two models that must share an architecture (e.g. the source and target of cross-checkpoint patching) do not."""


class PatchingError(MixprobeError, ValueError):
    """A patching request that cannot mean anything (no source to patch from, misaligned source and target)."""


class ParameterError(SiteError):
    """Parameter patching: unknown parameter or module name, or rows out of range for the tensor."""


class EmptyDataError(DataError):
    """No rows or no feature columns where a probe needs data."""


class NonFiniteError(DataError):
    """Features (or labels, scores) contain NaN or infinity."""


class OneClassError(DataError):
    """Labels hold a single class; a probe needs examples of both classes."""


class ZeroVarianceError(DataError):
    """Every feature is constant across the rows (no direction can separate anything)."""


class TokenizerMismatchError(CheckpointError):
    """The tokenizer transformers loads from a folder does not encode text the way the folder's tokenizer.json does."""


class TrainingFailedError(MixprobeError):
    """Training finished but the model did not learn what the next stage needs (e.g. SFT before RL)."""


class TaskError(MixprobeError, ValueError):
    """A task (mixprobe.tasks) that cannot be used: bad definition, factory that does not import, bad recogniser."""


class DistributedError(MixprobeError):
    """The Ray engine cannot run: Ray is not installed, no cluster at the address, or a task failed for good."""


class ArgumentError(MixprobeError, TypeError):
    """A public function called with arguments of the wrong kind (the message names the accepted forms)."""


class NotFoundError(DataError, KeyError):
    """A lookup by name (checkpoint, tag, site) for something the object does not hold; the message lists what it
    has."""

    def __str__(self) -> str:          # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


class OutOfRangeError(DataError, IndexError):
    """An index past the end (a store row, a layer); the message gives the valid range."""


class WriteError(MixprobeError, OSError):
    """A write failed for want of space, quota or permission (disk full, read-only file system). Nothing was put at
    the target path: atomic writes leave the previous file, if any, as it was."""

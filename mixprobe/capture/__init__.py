"""Capture: batched, padding-correct activation capture across a checkpoint series, into memory or into a sharded,
resumable, memory-mapped on-disk ActivationStore; and a trl callback that captures at every checkpoint save. See
the docstrings of capture.py, store.py and callback.py."""
from mixprobe.capture.callback import CaptureCallback  # noqa: F401
from mixprobe.capture.capture import CaptureResult, capture  # noqa: F401
from mixprobe.capture.store import ActivationStore  # noqa: F401

"""mixprobe: did post-training reweight a mixture of conditional policies, or rewrite the policies?

The public surface is re-exported here; see docs/ for the concepts and guides.
"""
from __future__ import annotations

__version__ = "0.1.0"

from mixprobe.errors import MixprobeError  # noqa: F401

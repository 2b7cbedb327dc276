"""Steering vectors: build them (probes, class means), apply them at sites and positions, sweep the dose.

Modules: :mod:`~mixprobe.steering.vectors` (SteeringVector, safetensors + JSON files),
:mod:`~mixprobe.steering.apply` (the ``steer`` context manager), :mod:`~mixprobe.steering.sweep`
(dose-response sweeps, recovery ratio).
"""
from mixprobe.steering.apply import SteeringStats, check_width, steer
from mixprobe.steering.sweep import recovery_ratio, sweep
from mixprobe.steering.vectors import SteeringVector

__all__ = ["SteeringStats", "SteeringVector", "check_width", "recovery_ratio", "steer", "sweep"]

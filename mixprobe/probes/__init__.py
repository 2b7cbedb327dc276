"""Linear probes on activations: sklearn-API estimators, batched per-site fits, metrics, cross-checkpoint readouts.

Modules: :mod:`~mixprobe.probes.estimators` (LogisticProbe, MassMeanProbe, LATProbe, CCSProbe, CRAProbe),
:mod:`~mixprobe.probes.batched` (fit_probes, layer_sweep), :mod:`~mixprobe.probes.metrics`,
:mod:`~mixprobe.probes.readout` (transfer_matrix, gate_readout, selection_direction),
:mod:`~mixprobe.probes.solver` (batched Newton), :mod:`~mixprobe.probes.validation` (named input errors),
:mod:`~mixprobe.probes.heads` (GENIES' mass-mean over attention heads: HeadMassMeanProbe),
:mod:`~mixprobe.probes.baselines` (GENIES' zero-/few-shot yes/no judges; the LoRA reward model is
:mod:`mixprobe.train.reward`).
"""
from mixprobe.probes.baselines import (few_shot_pair_proba, format_judge_texts, judge_scores, shots_from_pairs,
                                       zero_shot_pair_proba)
from mixprobe.probes.batched import LayerSweep, ProbeFits, fit_probes, layer_sweep, train_test_indices
from mixprobe.probes.estimators import (CCSProbe, CRAProbe, LATProbe, LogisticProbe, MassMeanProbe, ccs_credence,
                                        ccs_loss, format_with_template, platt_calibrate, split_pairs)
from mixprobe.probes.heads import HeadMassMeanProbe
from mixprobe.probes.metrics import (accuracy, auroc, differential_elicitation, elicitation,
                                     rms_calibration_error)
from mixprobe.probes.readout import (TransferMatrix, gate_readout, readout_table, selection_direction,
                                     transfer_matrix)

__all__ = [
    "CCSProbe", "CRAProbe", "HeadMassMeanProbe", "LATProbe", "LayerSweep", "LogisticProbe", "MassMeanProbe",
    "ProbeFits",
    "TransferMatrix", "accuracy", "auroc", "ccs_credence", "ccs_loss",
    "differential_elicitation", "elicitation", "few_shot_pair_proba",
    "fit_probes", "format_judge_texts", "format_with_template", "gate_readout", "judge_scores", "layer_sweep",
    "platt_calibrate", "readout_table", "rms_calibration_error", "selection_direction", "shots_from_pairs",
    "split_pairs", "train_test_indices", "transfer_matrix", "zero_shot_pair_proba",
]

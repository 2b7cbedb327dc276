"""Activation patching: full, subspace, cross-checkpoint and attribution patching with batched site sweeps.

Problem → mechanism: see :mod:`mixprobe.patching.engine` (one patch), :mod:`mixprobe.patching.sweep` (every site ×
position, restarting the forward at the patched layer with patches stacked along the batch),
:mod:`mixprobe.patching.attribution` (gradient × activation-difference estimates) and
:mod:`mixprobe.patching.metrics` (what a patched run is scored by).

Example (cross-checkpoint: how much of the SFT model's tag-B behaviour does each site restore in the RL model?):

    res = patch_sweep(rl_handle, sft_handle, tag_b_prompts, sites=["resid_pre", "attn_out", "mlp_out"],
                      positions=["last_prompt", "all"], metric=answer_logprob(answers))
    res.restoration          # [n_sites, n_positions]
    res.to_dict()            # JSON

Constraints: decoder-only HF models (directly or behind a ModelHandle); fp32 results match TransformerLens.
"""
from mixprobe.patching.attribution import (
    AttributionComparison,
    attribution_patch,
    compare_with_patching,
    rank_correlation,
)
from mixprobe.patching.engine import Patcher, apply_patch, as_batch, check_compatible, subspace_basis
from mixprobe.patching.metrics import (
    Metric,
    answer_accuracy,
    answer_logprob,
    evaluate,
    logit_diff,
    token_prob,
)
from mixprobe.patching.sweep import PatchResult, SweepResult, patch, patch_sweep, restoration

__all__ = [
    "AttributionComparison", "Metric", "PatchResult", "Patcher", "SweepResult", "answer_accuracy",
    "answer_logprob", "apply_patch", "as_batch", "attribution_patch", "check_compatible", "compare_with_patching",
    "evaluate", "logit_diff", "patch", "patch_sweep", "rank_correlation", "restoration", "subspace_basis",
    "token_prob",
]

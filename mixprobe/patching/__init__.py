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

Parameter patching (:mod:`mixprobe.patching.params`) asks the same question one level down — which *weights*
carry the difference — and finds what activation patching cannot: a change in how activations are read::

    res = param_sweep(rl_handle, sft_handle, tag_b_prompts, metric=token_prob(m2), rows=["m1", "m2"])
    res.at("lm_head[m1,m2]")   # restoration from two unembedding rows

Readout-matched subspace patching (:mod:`mixprobe.patching.readout`) patches one coordinate of the final-norm
output — the one the target's head turns into ``z[m2] − z[m1]`` — to the source's value::

    res = readout_patch(rl_handle, sft_handle, tag_b_prompts, toward="m2", away="m1", metric=token_prob(m2))

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
    group_logit_diff,
)
from mixprobe.patching.params import (
    ParamPatch,
    ParamPatchResult,
    ParamSweepResult,
    param_groups,
    param_patch,
    param_sweep,
    patched_params,
    weight_diff_direction,
)
from mixprobe.patching.readout import ReadoutPatchResult, readout_patch
from mixprobe.patching.sweep import PatchResult, SweepResult, patch, patch_sweep, restoration

__all__ = [
    "AttributionComparison", "Metric", "ParamPatch", "ParamPatchResult", "ParamSweepResult", "PatchResult",
    "Patcher", "ReadoutPatchResult", "SweepResult", "answer_accuracy", "answer_logprob", "apply_patch", "as_batch",
    "attribution_patch", "check_compatible", "compare_with_patching", "evaluate", "logit_diff", "param_groups",
    "param_patch", "param_sweep", "patch", "patch_sweep", "patched_params", "rank_correlation", "readout_patch",
    "restoration", "subspace_basis", "token_prob", "group_logit_diff", "weight_diff_direction",
]

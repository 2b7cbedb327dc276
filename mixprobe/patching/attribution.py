"""Attribution patching: a first-order estimate of every patch from one backward pass.

Problem: real activation patching costs one (partial) forward per site × position; for a wide sweep on a large
model that is too many. Attribution patching (Nanda 2023; Syed, Rager & Conmy 2023, "Attribution Patching
Outperforms Automated Circuit Discovery") linearizes the metric around the target run:

    m(a_t + Δ) − m(a_t) ≈ Δ · ∂m/∂a |_{a_t},   Δ = a_s − a_t

Mechanism: one forward + backward on the target with gradients kept at every requested site, one forward on the
source; then for each site and position column, ``Σ_{b, t ∈ column} (a_s − a_t)[b, t] · ∂ m̄ / ∂a_t[b, t]``
where ``m̄`` is the batch-mean metric. The estimate is exact when the metric is linear in the site's activation
(e.g. a logit difference read from the last block's ``mlp_out`` of a model without a final norm) and degrades
with the curvature between the site and the metric (norms, softmax, attention). :func:`compare_with_patching`
runs both methods on the same grid and reports their Spearman rank correlation.

Example:
    >>> import torch
    >>> from mixprobe.organisms.configs import tiny_model
    >>> from mixprobe.organisms.tokenizer import build_word_tokenizer
    >>> from mixprobe.patching.engine import as_batch
    >>> from mixprobe.patching.metrics import logit_diff
    >>> tok = build_word_tokenizer(["<A>", "<B>", "1", "+", "="])
    >>> m = tiny_model("llama", vocab_size=len(tok), seed=0); h = type("H", (), {"tokenizer": tok})()
    >>> cmp = compare_with_patching(m, None, as_batch(h, ["<B> 1 + 1 ="]), as_batch(h, ["<A> 1 + 1 ="]),
    ...                             sites="resid_pre", metric=logit_diff(5, 6))
    >>> cmp.attribution.metric.shape == cmp.patching.metric.shape
    True

Constraints: the metric must be differentiable (use ``answer_logprob`` rather than ``answer_accuracy``: a
zero gradient everywhere raises :class:`~mixprobe.errors.MetricError`); subspace directions are not supported
here (project the estimate yourself); gradients are taken with ``torch.autograd.grad`` so parameter ``.grad``
fields are left untouched.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from scipy.stats import spearmanr

from mixprobe._check import checked
from mixprobe.errors import MetricError, PatchingError
from mixprobe.patching.engine import check_compatible, expand_sites, model_inputs, site_name
from mixprobe.patching.layerwise import Arch
from mixprobe.patching.metrics import Metric, evaluate
from mixprobe.models.positions import PositionSpec, label, position_mask, sweep_columns
from mixprobe.patching.sweep import SweepResult, patch_sweep, restoration, source_and_batches


@checked
def attribution_patch(
    target: Any,
    source: Any = None,
    prompts_target: Any = None,
    prompts_source: Any = None,
    *,
    sites: Any = "resid_pre",
    positions: PositionSpec | Sequence[PositionSpec] | None = "each",
    metric: Metric,
) -> SweepResult:
    """Gradient × activation-difference estimate of :func:`~mixprobe.patching.sweep.patch_sweep` (same grid).

    Returns a :class:`SweepResult` with ``method="attribution"``: ``metric`` holds ``m_target + estimate`` and
    ``restoration`` the estimated normalized restoration.
    """
    if prompts_target is None:
        raise PatchingError("prompts_target is required (strings for a handle, or a Batch)")
    source, tb, sb = source_and_batches(target, source, prompts_target, prompts_source)
    check_compatible(target, source)
    arch, s_arch = Arch.of(target), Arch.of(source)
    site_list = expand_sites(sites, arch.n_layers)
    keys = set(site_list)
    t_ids, t_mask, t_pos = model_inputs(arch.model, tb)
    s_ids, s_mask, s_pos = model_inputs(s_arch.model, sb)
    if t_ids.shape != s_ids.shape or not torch.equal(t_mask.cpu(), s_mask.cpu()):
        raise PatchingError("source and target batches are not aligned (shape or padding differ)")
    t_run = arch.capture(t_ids, t_mask, t_pos, keys, calls=False, grad=True)
    with torch.enable_grad():
        m_t_ex = evaluate(metric, t_run.logits, tb, keep_graph=True)
        m_bar = m_t_ex.mean()
        if not m_bar.requires_grad:
            raise MetricError("the metric has no gradient (e.g. accuracy/argmax); attribution patching needs a "
                              "differentiable metric such as answer_logprob or logit_diff")
        acts = [t_run.acts[k] for k in site_list]
        grads = torch.autograd.grad(m_bar, acts, allow_unused=True)
    s_run = s_arch.capture(s_ids, s_mask, s_pos, keys, calls=False)
    m_s = float(evaluate(metric, s_run.logits, sb).mean())
    m_t = float(m_bar.detach())
    columns, strict = sweep_columns(positions, t_mask)
    lengths = getattr(tb, "prompt_lengths", None)
    masks = torch.stack([position_mask(c, t_mask, lengths, strict=strict) for c in columns]).float()  # [P, B, T]
    est = []
    for k, a_t, g in zip(site_list, acts, grads):
        if g is None:
            contrib = torch.zeros(a_t.shape[:2])
        else:
            contrib = ((s_run.acts[k].detach().to(a_t.dtype) - a_t.detach()) * g).sum(-1).float()  # [B, T]
        est.append(torch.einsum("pbt,bt->p", masks.to(contrib.device), contrib))
    delta = torch.stack(est).cpu()
    if bool((delta == 0).all()) and all(g is None or not bool(g.abs().sum()) for g in grads):
        raise MetricError("the metric's gradient is zero at every site; use a differentiable metric")
    return SweepResult(
        sites=[site_name(s) for s in site_list], positions=[label(c) for c in columns], metric=m_t + delta,
        restoration=restoration(m_t + delta, m_t, m_s), m_target=m_t, m_source=m_s, method="attribution",
        metric_name=getattr(metric, "__name__", "metric"),
    )


@dataclass
class AttributionComparison:
    """Attribution estimate and real patching on the same grid, with their Spearman rank correlation."""

    attribution: SweepResult
    patching: SweepResult
    spearman: float

    def to_dict(self) -> dict[str, Any]:
        return {"attribution": self.attribution.to_dict(), "patching": self.patching.to_dict(),
                "spearman": None if math.isnan(self.spearman) else self.spearman}


@checked
def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two equally shaped tensors (flattened); NaN if either is constant."""
    x, y = a.flatten().double().numpy(), b.flatten().double().numpy()
    if x.size < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


@checked
def compare_with_patching(
    target: Any,
    source: Any = None,
    prompts_target: Any = None,
    prompts_source: Any = None,
    *,
    sites: Any = "resid_pre",
    positions: PositionSpec | Sequence[PositionSpec] | None = "each",
    metric: Metric,
) -> AttributionComparison:
    """Run :func:`attribution_patch` and :func:`~mixprobe.patching.sweep.patch_sweep`; correlate their effects.

    The correlation is taken on the unnormalized effects ``m_patched − m_target`` (same ranking as restoration,
    and defined even when ``m_source == m_target``).
    """
    attr = attribution_patch(target, source, prompts_target, prompts_source, sites=sites, positions=positions,
                             metric=metric)
    real = patch_sweep(target, source, prompts_target, prompts_source, sites=sites, positions=positions,
                       metric=metric)
    return AttributionComparison(attr, real, rank_correlation(attr.delta, real.delta))

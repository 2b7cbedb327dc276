"""Readout-matched subspace patching at ``final_norm``: patch the *gate coordinate*, not the activation.

Problem: subspace patching copies the source's projection on a direction, ``a_t + ((a_s − a_t)·d̂) d̂``. That
presumes the difference between the runs lives in the activation. Across checkpoints it may not: when
fine-tuning changed the weights that *read* the final hidden state (on the tag-mixture organism GRPO on ``<A>``
moves the unembedding rows of the mode tokens ``m1``/``m2``, docs/patching.md), the SFT and RL activations are
almost identical, their projections on any direction agree, and the classical subspace patch restores nothing —
although the RL model's behaviour is decided by one coordinate of that activation: the one its head turns into
the logit difference ``z[toward] − z[away]``.

Mechanism (:func:`readout_patch`): for target and source, take the final-norm output ``h`` (the unembedding's
input) and each model's *own* readout ``LD = z[toward] − z[away]`` with ``z = W_U h (+ b)``. At the patched
positions, move the target's ``h`` along one direction ``d`` by the amount that makes the *target's* head read
the *source's* value::

    h' = h_t + α d,   α = (LD_s − LD_t) / ((W_t[toward] − W_t[away]) · d)

That is a one-dimensional patch (it lies in ``span(d)``) of the logit-relevant coordinate. ``d`` is
``"readout"`` (default) — ``W_t⁺ (e_toward − e_away)``, the minimum-norm change that moves only these two logits
(exactly so when ``W_U`` has full row rank; it is ``mixprobe.mixture.gate.readout_direction`` of the target) —,
``"rows"`` — ``W_t[toward] − W_t[away]`` —, or any ``[d_model]`` tensor (e.g. the source model's readout
direction, or a probe's selection direction). The result also reports the classical projection patch along the
same ``d`` (``restoration_projection``) and how much the patch moved every *other* logit (``off_target``).

By construction (:func:`readout_by_construction`): when the vocabulary is no larger than ``d_model`` and ``W_U``
has full row rank, ``W_U`` is right-invertible, so *any* change of the logits is reachable by an edit of the
final-norm output. A patch or a steering vector there that restores a behaviour then shows that the behaviour is
decided at the readout, not that the activation carries it; the result says so (``by_construction`` and
``by_construction_reason``; the tag-mixture organism has vocab 24 ≤ d_model 64).

Example (two random tiny models stand in for an SFT and an RL checkpoint; vocab < d_model, so the readout
direction moves only the two logits and the logit difference is restored exactly)::

    >>> import torch
    >>> from mixprobe.organisms.configs import tiny_model
    >>> from mixprobe.models.batch import Batch
    >>> from mixprobe.patching.metrics import logit_diff
    >>> sft, rl = tiny_model("llama", vocab_size=16, seed=0), tiny_model("llama", vocab_size=16, seed=1)
    >>> ids = torch.tensor([[1, 5, 6], [1, 7, 6]]); batch = Batch(ids, torch.ones_like(ids))
    >>> res = readout_patch(rl, sft, batch, toward=4, away=3, metric=logit_diff(4, 3))
    >>> round(res.restoration, 4), res.off_target < 1e-4, res.by_construction
    (1.0, True, True)
    >>> res.by_construction_reason
    'vocab 16 ≤ d_model 64: W_U is right-invertible, any logit change is reachable from final_norm'

Constraints: patches only at ``final_norm``, so it changes the logits of the patched positions and nothing else
(use ``"last_prompt"`` for the gate decision); target and source must share the architecture
(:class:`~mixprobe.errors.ArchitectureMismatchError`); a direction of the wrong width raises
:class:`~mixprobe.errors.ShapeError`, a direction the target's readout ignores (``r · d ≈ 0``) or
``toward == away`` raises :class:`~mixprobe.errors.DataError`; positions follow
:mod:`mixprobe.models.positions` (:class:`~mixprobe.errors.PositionError` outside the sequence). Gemma's final
logit soft-capping is applied after the patch; the matched quantity is the pre-cap logit difference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from mixprobe._check import checked
from mixprobe.errors import DataError, PatchingError, ShapeError
from mixprobe.patching.engine import as_batch, check_compatible, model_inputs, token_id
from mixprobe.patching.layerwise import Arch
from mixprobe.patching.metrics import Metric, evaluate
from mixprobe.models.positions import PositionSpec, label, position_mask
from mixprobe.patching.sweep import restoration

DirectionSpec = str | torch.Tensor


@dataclass
class ReadoutPatchResult:
    """A readout-matched subspace patch and, for comparison, the classical projection patch along ``d``."""

    position: str
    direction: str
    m_target: float
    m_source: float
    m_patched: float
    restoration: float
    m_projection: float
    restoration_projection: float
    ld_target: float                 # mean target readout z[toward] − z[away] at the patched positions
    ld_source: float                 # mean source readout (through the source's own head)
    ld_patched: float                # mean readout of the patched target
    off_target: float                # max |Δ logit| over every other token at the patched positions
    alpha: torch.Tensor              # [n_patched] step along d per patched (example, position)
    per_example: torch.Tensor        # [batch] patched metric
    info: dict[str, Any] = field(default_factory=dict)
    by_construction: bool = False    # vocab ≤ d_model, W_U full row rank: any logit change is reachable here
    by_construction_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else x
        return {"method": "readout_subspace", "position": self.position, "direction": self.direction,
                "m_target": self.m_target, "m_source": self.m_source, "m_patched": self.m_patched,
                "restoration": num(self.restoration), "m_projection": self.m_projection,
                "restoration_projection": num(self.restoration_projection), "ld_target": self.ld_target,
                "ld_source": self.ld_source, "ld_patched": self.ld_patched, "off_target": self.off_target,
                "alpha_mean": float(self.alpha.mean()) if self.alpha.numel() else 0.0,
                "by_construction": self.by_construction, "by_construction_reason": self.by_construction_reason,
                **self.info}


@checked
def readout_by_construction(model: Any) -> dict[str, Any]:
    """Whether an edit of the final-norm output can produce *any* change of the logits (then patching and
    steering there hold by construction).

    True when the vocabulary ``V`` is ≤ ``d_model`` and ``W_U`` (``[V, d_model]``, :class:`~mixprobe.models.layout.
    Layout`) has rank ``V``: ``W_U`` is then right-invertible, ``W_U W_U⁺ = I``. Returns ``{"by_construction",
    "reason", "vocab", "d_model", "rank"}`` (``rank`` is computed only when ``V ≤ d_model``; else ``None``).

    Example:
        >>> from mixprobe.organisms.configs import tiny_model
        >>> r = readout_by_construction(tiny_model("llama", vocab_size=100))
        >>> r["by_construction"], r["reason"][:51]
        (False, 'vocab 100 > d_model 64: W_U is not right-invertible')
    """
    from mixprobe.models.layout import Layout

    lay = Layout.of(model)
    W = lay.lm_head.weight.detach()
    V, d = int(W.shape[0]), lay.d_model
    if V > d:
        return {"by_construction": False, "vocab": V, "d_model": d, "rank": None,
                "reason": f"vocab {V} > d_model {d}: W_U is not right-invertible; an edit at final_norm reaches only "
                          f"a {d}-dimensional subspace of logit changes"}
    rank = int(torch.linalg.matrix_rank(W.double()))
    if rank < V:
        return {"by_construction": False, "vocab": V, "d_model": d, "rank": rank,
                "reason": f"vocab {V} ≤ d_model {d} but W_U has rank {rank} < {V}: not every logit change is "
                          "reachable from final_norm"}
    return {"by_construction": True, "vocab": V, "d_model": d, "rank": rank,
            "reason": f"vocab {V} ≤ d_model {d}: W_U is right-invertible, any logit change is reachable from "
                      "final_norm"}


@checked
def final_hidden(arch: Arch, batch: Any) -> torch.Tensor:
    """The final-norm output ``[B, T, d_model]`` (input of the unembedding) of ``arch.model`` on ``batch``."""
    ids, mask, pos = model_inputs(arch.model, batch)
    with torch.no_grad():
        run = arch.capture(ids, mask, pos, calls=False)
        h = run.acts[("resid_post", arch.n_layers - 1)]
        return arch.final_norm(h)


def final_hidden_device(arch: Arch) -> torch.device:
    """The device of ``arch``'s parameters."""
    return next(arch.model.parameters()).device


@checked
def readout_vector(arch: Arch, toward: int, away: int) -> torch.Tensor:
    """``W_U[toward] − W_U[away]``: the vector whose dot product with ``h`` is the (pre-bias) logit difference."""
    W = arch.lm_head.weight.detach().float()
    return W[toward] - W[away]


@checked
def readout_direction(arch: Arch, toward: int, away: int) -> torch.Tensor:
    """``W_U⁺ (e_toward − e_away)``: minimum-norm ``h`` change raising ``z[toward]`` by 1, lowering ``z[away]``
    (:meth:`mixprobe.models.layout.Layout.readout_direction`)."""
    return arch.readout_direction(toward, away)


def _direction(spec: DirectionSpec, arch: Arch, toward: int, away: int) -> tuple[torch.Tensor, str]:
    if isinstance(spec, str):
        if spec == "readout":
            return readout_direction(arch, toward, away), "readout"
        if spec == "rows":
            return readout_vector(arch, toward, away), "rows"
        raise PatchingError(f"unknown direction {spec!r}; use 'readout', 'rows' or a [d_model] tensor")
    d = torch.as_tensor(spec).detach()
    if d.ndim != 1 or d.shape[0] != arch.d_model:
        raise ShapeError(f"direction has shape {tuple(d.shape)}; readout patching needs one direction of shape "
                         f"[{arch.d_model}] (d_model of this model)")
    d = d.float()
    if not bool(torch.isfinite(d).all()):
        raise DataError("direction contains NaN/inf")
    return d, "given"


@checked
def readout_patch(
    target: Any,
    source: Any,
    prompts: Any,
    *,
    toward: int | str,
    away: int | str,
    metric: Metric,
    position: PositionSpec = "last_prompt",
    direction: DirectionSpec = "readout",
) -> ReadoutPatchResult:
    """Move the target's final-norm output along ``direction`` until its head reads the source's logit difference.

    ``toward``/``away``: token ids or single-token strings (e.g. ``"m2"``, ``"m1"``); ``position``: where to patch
    (one spec, see :mod:`mixprobe.models.positions`); ``direction``: ``"readout"``, ``"rows"`` or a
    ``[d_model]`` tensor. Both models run on the same ``prompts`` (cross-checkpoint patching).
    """
    if prompts is None:
        raise PatchingError("prompts is required (strings for a handle, or a Batch)")
    check_compatible(target, source)
    arch, s_arch = Arch.of(target), Arch.of(source)
    V = int(arch.lm_head.weight.shape[0])
    a, b = token_id(target, toward, V), token_id(target, away, V)
    if a == b:
        raise DataError(f"toward and away are the same token ({a}); the readout is their logit difference")
    batch = as_batch(target, prompts)
    d, d_name = _direction(direction, arch, a, b)
    h_t = final_hidden(arch, batch)
    dev = h_t.device
    h_s_own = final_hidden(s_arch, batch)                 # on the source's device, read by the source's head
    h_s = h_s_own.to(dev, h_t.dtype)
    mask = position_mask(position, batch.attention_mask, getattr(batch, "prompt_lengths", None)).to(dev)
    d = d.to(dev, h_t.dtype)
    r_t = readout_vector(arch, a, b).to(dev, h_t.dtype)
    gain = float(r_t @ d)
    if float(d.norm()) == 0.0 or abs(gain) < 1e-6 * float(r_t.norm()) * float(d.norm()):
        raise DataError(f"the target's readout of tokens {a}−{b} ignores this direction (r·d = {gain:.3g}); pick a "
                        "direction with a component along W_U[toward] − W_U[away]")
    with torch.no_grad():
        z_t, z_s = arch.lm_head(h_t), s_arch.lm_head(h_s_own).to(dev, h_t.dtype)
        ld_t, ld_s = z_t[..., a] - z_t[..., b], z_s[..., a] - z_s[..., b]
        alpha = torch.where(mask, (ld_s - ld_t) / gain, torch.zeros_like(ld_t))          # [B, T]
        h_p = h_t + alpha[..., None] * d
        z_p = arch.lm_head(h_p)
        du = d / d.norm()
        h_proj = h_t + mask[..., None].to(h_t.dtype) * (((h_s - h_t) @ du)[..., None] * du)
        logits_t, logits_s = arch.unembed(h_t), s_arch.unembed(h_s_own).to(dev)
        logits_p, logits_proj = arch.unembed(h_p), arch.unembed(h_proj)
    m_t = evaluate(metric, logits_t, batch).mean()
    m_s = evaluate(metric, logits_s, batch).mean()
    per = evaluate(metric, logits_p, batch)
    m_proj = evaluate(metric, logits_proj, batch).mean()
    mt, ms, mp, mj = float(m_t), float(m_s), float(per.mean()), float(m_proj)
    others = torch.ones(V, dtype=torch.bool, device=z_p.device)
    others[[a, b]] = False
    dz = (z_p - z_t)[mask][:, others]
    flag = readout_by_construction(arch.model)
    return ReadoutPatchResult(
        position=label(position), direction=d_name, m_target=mt, m_source=ms, m_patched=mp,
        restoration=float(restoration(mp, mt, ms)), m_projection=mj,
        restoration_projection=float(restoration(mj, mt, ms)), ld_target=float(ld_t[mask].mean()),
        ld_source=float(ld_s[mask].mean()), ld_patched=float((z_p[..., a] - z_p[..., b])[mask].mean()),
        off_target=float(dz.abs().max()) if dz.numel() else 0.0, alpha=alpha[mask].cpu(), per_example=per.cpu(),
        info={"toward": a, "away": b, "direction_norm": float(d.norm()), "readout_gain": gain,
              "batch_size": int(batch.input_ids.shape[0])},
        by_construction=flag["by_construction"], by_construction_reason=flag["reason"],
    )


__all__ = ["ReadoutPatchResult", "final_hidden", "readout_by_construction", "readout_direction", "readout_patch",
           "readout_vector"]

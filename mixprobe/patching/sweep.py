"""Batched patching sweeps: every site × every position in one call, and the single-patch shortcut.

Problem: localising a behaviour means patching many sites (``resid_pre`` / ``attn_out`` / ``mlp_out`` /
``resid_post`` × layers) at many positions; done naively that is one full forward per cell.

Mechanism: :func:`patch_sweep` captures the target and source once (:class:`~mixprobe.patching.engine.Patcher`),
then for each site restarts the target's forward at the site's layer with all position columns stacked along
the batch dimension — one forward of layers ``L..end`` per site (chunked by ``batch_rows``); examples whose source
and target activations agree at the patched positions (e.g. BOS, shared tokens at layer 0) are exact no-ops
and are not recomputed. It returns a
:class:`SweepResult`: the mean patched metric and the normalized restoration
``(m_patched − m_target) / (m_source − m_target)`` as ``[n_sites, n_positions]`` tensors with their labels.

Sources: another context on the same model (``source=None`` or the target itself, ``prompts_source`` given: tag-A
prompts → tag-B prompts of the same token length), or another checkpoint of the same series (``source`` a
different handle; ``prompts_source=None`` reuses the target prompts): SFT → RL and RL → SFT alike.

Example:
    >>> import torch
    >>> from mixprobe.organisms.configs import tiny_model
    >>> from mixprobe.organisms.tokenizer import build_word_tokenizer
    >>> from mixprobe.patching.engine import as_batch
    >>> from mixprobe.patching.metrics import logit_diff
    >>> tok = build_word_tokenizer(["<A>", "<B>", "1", "+", "="])
    >>> sft = tiny_model("llama", vocab_size=len(tok), seed=0); rl = tiny_model("llama", vocab_size=len(tok), seed=1)
    >>> batch = as_batch(type("H", (), {"tokenizer": tok})(), ["<B> 1 + 1 ="])
    >>> res = patch_sweep(rl, sft, batch, sites=["resid_pre", "mlp_out.1"], positions=["last_prompt", "all"],
    ...                   metric=logit_diff(5, 6))
    >>> res.restoration.shape, res.sites[-1], res.positions
    (torch.Size([3, 2]), 'mlp_out.1', ['last_prompt', 'all'])

Constraints: restoration is NaN where ``|m_source − m_target| < eps`` (nothing to restore: pick prompts or a
metric where the runs differ). Positions ``"each"`` sweep relative indices ``0..max_len−1``; rows shorter than an
index stay unpatched in that column. Memory per forward is ``batch_rows × seq × vocab`` logits, plus one
``batch × seq × vocab`` copy per position column in flight.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mixprobe._check import checked
from mixprobe.errors import PatchingError
from mixprobe.patching.engine import (
    Direction,
    Patcher,
    as_batch,
    directions_for,
    expand_sites,
    parse_site,
    site_name,
)
from mixprobe.patching.layerwise import Arch
from mixprobe.patching.metrics import Metric
from mixprobe.models.positions import PositionSpec, label, sweep_columns

EPS = 1e-8


@checked
def restoration(m_patched: torch.Tensor | float, m_target: float, m_source: float, eps: float = EPS
                ) -> torch.Tensor:
    """Normalized restoration ``(m_patched − m_target) / (m_source − m_target)``; NaN if the runs do not differ."""
    den = m_source - m_target
    m = torch.as_tensor(m_patched, dtype=torch.float32)
    if abs(den) < eps:
        return torch.full_like(m, float("nan"))
    return (m - m_target) / den


@dataclass
class SweepResult:
    """A patching (or attribution) sweep: ``[n_sites, n_positions]`` metric and restoration, with labels."""

    sites: list[str]
    positions: list[str]
    metric: torch.Tensor
    restoration: torch.Tensor
    m_target: float
    m_source: float
    per_example: torch.Tensor | None = None
    method: str = "activation"
    metric_name: str = "metric"
    subspace: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def delta(self) -> torch.Tensor:
        """``m_patched − m_target`` (the unnormalized effect of each patch)."""
        return self.metric - self.m_target

    def at(self, site: str, position: PositionSpec) -> float:
        """Restoration of one cell, e.g. ``res.at("resid_pre.1", "last_prompt")``."""
        return float(self.restoration[self.sites.index(str(site)), self.positions.index(label(position))])

    def component(self, name: str) -> torch.Tensor:
        """Restoration rows of one component (``[n_layers_swept, n_positions]``, layer order as swept)."""
        rows = [i for i, s in enumerate(self.sites) if s.split(".")[0] == name]
        return self.restoration[rows]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes ``None``)."""
        def clean(t: torch.Tensor) -> list:
            return [[None if math.isnan(v) else v for v in row] for row in t.tolist()]
        return {"method": self.method, "metric": self.metric_name, "subspace": self.subspace,
                "sites": self.sites, "positions": self.positions, "m_target": self.m_target,
                "m_source": self.m_source, "patched_metric": clean(self.metric),
                "restoration": clean(self.restoration), **({"info": self.info} if self.info else {})}


@dataclass
class PatchResult:
    """One patch: the three metrics and the restoration (per-example patched metric in ``per_example``)."""

    site: str
    position: str
    m_target: float
    m_source: float
    m_patched: float
    restoration: float
    per_example: torch.Tensor

    def to_dict(self) -> dict[str, Any]:
        return {"site": self.site, "position": self.position, "m_target": self.m_target,
                "m_source": self.m_source, "m_patched": self.m_patched,
                "restoration": None if math.isnan(self.restoration) else self.restoration}


@checked
def source_and_batches(target: Any, source: Any, prompts_target: Any, prompts_source: Any) -> tuple[Any, Any, Any]:
    """``(source, target batch, source batch)`` of a patching call: the source defaults to the target (then
    ``prompts_source`` must give another context); prompts are tokenized with each model's own tokenizer."""
    if source is None:
        source = target
    if prompts_source is None and source is target:
        raise PatchingError("nothing to patch from: give prompts_source (another context) or a source handle "
                            "(another checkpoint)")
    tb = as_batch(target, prompts_target)
    sb = tb if prompts_source is None else as_batch(source, prompts_source)
    return source, tb, sb


@checked
def patch_sweep(
    target: Any,
    source: Any = None,
    prompts_target: Any = None,
    prompts_source: Any = None,
    *,
    sites: Any = "resid_pre",
    positions: PositionSpec | Sequence[PositionSpec] | None = "each",
    metric: Metric,
    direction: Direction = None,
    batch_rows: int = 2048,
    keep_per_example: bool = False,
    engine: Any = "local",
    address: str | None = None,
) -> SweepResult:
    """Patch every site × position column from ``source`` into ``target`` and score each with ``metric``.

    ``sites``: component names (all layers) and/or ``"comp.L"`` strings / Site objects. ``positions``: ``"each"``
    (every relative index), one spec, or a list of specs (each a column; a tuple of ints is patched together).
    ``direction``: ``None`` (full patching), a ``[d_model]`` / ``[k, d_model]`` tensor (subspace patching at every
    site) or ``{site: tensor}``.

    ``engine="ray"`` (or a :class:`~mixprobe.distributed.RayEngine`; cluster at ``address``, a local one without
    it) splits the sites into Ray tasks — each captures the two runs once and patches its sites at every position
    column, as here — and gathers the same result (tensors on the CPU). The models, batches and metric are
    pickled into Ray's object store once (docs/distributed.md).
    """
    from mixprobe.distributed import resolve_engine

    eng = resolve_engine(engine, address)
    if prompts_target is None:
        raise PatchingError("prompts_target is required (strings for a handle, or a Batch)")
    source, tb, sb = source_and_batches(target, source, prompts_target, prompts_source)
    arch = Arch.of(target)
    site_list = expand_sites(sites, arch.n_layers)
    bases = directions_for(direction, site_list, arch.d_model)
    if eng is not None:
        per_ex, m_t, m_s, columns, info = _sweep_ray(eng, target, source, tb, sb, metric, site_list, positions,
                                                     bases, batch_rows)
    else:
        per_ex, m_t, m_s, columns, info = sweep_sites(target, source, tb, sb, metric, site_list, positions, bases,
                                                      batch_rows)
    mean = per_ex.mean(-1)
    rest = restoration(mean, m_t, m_s)
    if torch.isnan(rest).all():
        warnings.warn(f"m_source ≈ m_target ({m_s:.4g} vs {m_t:.4g}): restoration is undefined (NaN); the source "
                      "and target runs do not differ on this metric", stacklevel=2)
    return SweepResult(
        sites=[site_name(s) for s in site_list], positions=[label(c) for c in columns], metric=mean,
        restoration=rest, m_target=m_t, m_source=m_s, per_example=per_ex if keep_per_example else None,
        metric_name=getattr(metric, "__name__", "metric"), subspace=direction is not None, info=info,
    )


@checked
def sweep_sites(target: Any, source: Any, tb: Any, sb: Any, metric: Metric, site_list: list[tuple[str, int]],
                positions: Any, bases: dict, batch_rows: int) -> tuple[torch.Tensor, float, float, list, dict]:
    """The work of :func:`patch_sweep` on ``site_list``: ``(per-example metric [S, P, B], m_target, m_source,
    position columns, info)``. A site's row depends only on the two captured runs, not on the other sites."""
    patcher = Patcher(target, source, tb, sb, metric, set(site_list), batch_rows=batch_rows)
    columns, strict = sweep_columns(positions, patcher.mask)
    masks = patcher.column_masks(columns, strict=strict)
    per_ex = torch.stack([patcher.run(c, layer, masks, bases[(c, layer)]) for c, layer in site_list])  # [S, P, B]
    return (per_ex, float(patcher.m_target.mean()), float(patcher.m_source.mean()), columns,
            {"batch_size": patcher.B, "seq_len": int(patcher.mask.shape[1])})


@checked
def sweep_task(target: Any, source: Any, tb: Any, sb: Any, metric: Metric, site_list: list, positions: Any,
               bases: dict, batch_rows: int) -> tuple:
    """One Ray task of a patching sweep: :func:`sweep_sites` on some sites, tensors moved to the CPU."""
    per_ex, m_t, m_s, columns, info = sweep_sites(target, source, tb, sb, metric, site_list, positions, bases,
                                                  batch_rows)
    return per_ex.cpu(), m_t, m_s, columns, info


def _sweep_ray(engine: Any, target: Any, source: Any, tb: Any, sb: Any, metric: Metric, site_list: list,
               positions: Any, bases: dict, batch_rows: int) -> tuple[torch.Tensor, float, float, list, dict]:
    from mixprobe.distributed import connect, run_tasks, slots, split

    ray = connect(engine)
    chunks = split(site_list, size=engine.chunk) if engine.chunk else split(site_list, slots(ray, engine))
    t_ref = ray.put(target)
    s_ref = t_ref if source is target else ray.put(source)
    tb_ref = ray.put(tb)
    sb_ref = tb_ref if sb is tb else ray.put(sb)
    args = [(t_ref, s_ref, tb_ref, sb_ref, metric, ch, positions, {s: bases[s] for s in ch}, batch_rows)
            for ch in chunks]
    res = run_tasks(ray, engine, sweep_task, args, desc="patch sweep")
    per_ex = torch.cat([r[0] for r in res])
    _, m_t, m_s, columns, info = res[0]
    return per_ex, m_t, m_s, columns, info


@checked
def patch(
    target: Any,
    source: Any = None,
    prompts_target: Any = None,
    prompts_source: Any = None,
    *,
    site: Any,
    positions: PositionSpec = "last_prompt",
    metric: Metric,
    direction: torch.Tensor | None = None,
) -> PatchResult:
    """One patch: ``site`` at ``positions`` (one spec, all patched together) from ``source`` into ``target``."""
    if prompts_target is None:
        raise PatchingError("prompts_target is required (strings for a handle, or a Batch)")
    source, tb, sb = source_and_batches(target, source, prompts_target, prompts_source)
    arch = Arch.of(target)
    s = parse_site(site, arch.n_layers)
    basis = directions_for(direction, [s], arch.d_model)[s]
    patcher = Patcher(target, source, tb, sb, metric, {s}, batch_rows=10**9)
    masks = patcher.column_masks([positions])
    per = patcher.run(s[0], s[1], masks, basis)[0]
    m_t, m_s, m_p = float(patcher.m_target.mean()), float(patcher.m_source.mean()), float(per.mean())
    return PatchResult(site_name(s), label(positions), m_t, m_s, m_p, float(restoration(m_p, m_t, m_s)), per)

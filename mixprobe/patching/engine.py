"""The activation-patching engine: overwrite one site of a target run with a source run's activation.

Problem: "which activation carries the behaviour that differs between two runs?" Two runs differ either in
their *context* (tag ``<A>`` vs ``<B>`` prompts on one model) or in their *weights* (an SFT and an RL checkpoint
of one series, docs/concepts.md cross-checkpoint patching). Activation patching answers it causally: run the
target, overwrite one site (component × layer × positions) with the source's activation, and measure how far a
metric moves toward the source: the normalized restoration ``(m_patched − m_target) / (m_source − m_target)``
(1 = the site alone carries the whole difference, 0 = it carries none).

Mechanism (:class:`Patcher`): one captured forward of the target (every layer's input and call arguments,
see :mod:`mixprobe.patching.layerwise`) and one of the source (the activations of the requested sites). A patch
at layer ``L`` then restarts the target's forward at ``L`` (earlier layers are exact copies of the target run),
with ``N`` patches (positions) stacked along the batch dimension so one forward of layers ``L..end`` scores all
of them. ``resid_pre.L`` is patched before layer ``L``; ``resid_post.L`` before layer ``L + 1``; ``attn_out.L`` /
``mlp_out.L`` by a forward hook on layer ``L``'s attention / MLP sub-module. **Subspace patching** replaces only
the projection on a direction ``d`` — ``a_t + ((a_s − a_t)·d̂) d̂`` — or on a k-dim subspace with orthonormal
basis ``Q``: ``a_t + (a_s − a_t) Q Qᵀ``.

Example:
    >>> import torch
    >>> from types import SimpleNamespace
    >>> from mixprobe.organisms.configs import tiny_model
    >>> from mixprobe.patching.metrics import logit_diff
    >>> m = tiny_model("llama", vocab_size=16, seed=0)
    >>> mk = lambda ids: SimpleNamespace(input_ids=torch.tensor(ids), attention_mask=torch.ones(len(ids), len(ids[0]),
    ...     dtype=torch.long), position_ids=None, prompt_lengths=None)
    >>> p = Patcher(m, m, mk([[1, 5, 6]]), mk([[1, 7, 6]]), logit_diff(3, 4), sites={("resid_pre", 0)})
    >>> cols = p.column_masks(["all"])
    >>> torch.allclose(p.run("resid_pre", 0, cols)[0], p.m_source, atol=1e-5)
    True

Constraints: source and target batches must have the same shape and attention mask (pad both sides to one
length); source and target models must share the architecture and every parameter shape
(:class:`~mixprobe.errors.ArchitectureMismatchError` otherwise); a direction must have width ``d_model``
(:class:`~mixprobe.errors.ShapeError`). fp32 patching is exact to float rounding (tests compare with
TransformerLens at 1e-4).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mixprobe._check import checked
from mixprobe.errors import (
    ArchitectureMismatchError,
    DataError,
    ParameterError,
    PatchingError,
    ShapeError,
    SiteError,
)
from mixprobe.models.batch import tokenize
from mixprobe.models.layout import unwrap
from mixprobe.models.sites import Site
from mixprobe.patching.layerwise import COMPONENTS, Arch, TargetRun
from mixprobe.patching.metrics import Metric, evaluate
from mixprobe.models.positions import PositionSpec, position_ids_from_mask, position_mask

Direction = torch.Tensor | Mapping[str, torch.Tensor] | None


# --- sites ---------------------------------------------------------------------------------------------------
@checked
def parse_site(site: Any, n_layers: int) -> tuple[str, int]:
    """``"attn_out.3"`` / a ``Site`` → ``("attn_out", 3)``, checked against the model's depth (patchable sites only)."""
    try:
        parsed = Site.parse(site)
    except SiteError as e:
        raise SiteError(f"{e}; patchable components are {', '.join(COMPONENTS)} (each with a layer)") from None
    return _patchable(parsed.check(n_layers))


def _patchable(site: Site) -> tuple[str, int]:
    if site.component not in COMPONENTS:
        raise SiteError(f"cannot patch site {str(site)!r}; patchable components are {', '.join(COMPONENTS)} "
                        "(each with a layer)")
    return site.component, int(site.layer)  # type: ignore[arg-type]


@checked
def expand_sites(sites: Any, n_layers: int) -> list[tuple[str, int]]:
    """Sites from a spec: ``"resid_pre"`` (all layers), ``"mlp_out.2"``, or a list mixing both (request order)."""
    items = [sites] if isinstance(sites, (str, Site)) else list(sites)
    if not items:
        raise SiteError("no sites to patch; pass e.g. 'resid_pre' or ['attn_out.1', 'mlp_out.1']")
    out: list[tuple[str, int]] = []
    for s in items:
        if isinstance(s, str) and s.partition(".")[0] in COMPONENTS and s.partition(".")[2] in ("", "*"):
            out += [(s.partition(".")[0], i) for i in range(n_layers)]
        else:
            out.append(parse_site(s, n_layers))
    return out


@checked
def site_name(site: tuple[str, int]) -> str:
    return f"{site[0]}.{site[1]}"


# --- models and batches ----------------------------------------------------------------------------------------
def _describe(model: Any) -> str:
    cfg = model.config
    name = getattr(cfg, "_name_or_path", "") or "in-memory"
    return (f"{type(model).__name__}[{name}] (model_type={cfg.model_type}, d_model={cfg.hidden_size}, "
            f"layers={cfg.num_hidden_layers}, vocab={cfg.vocab_size})")


def _base_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Parameter shapes by name, LoRA adapter weights left out (a PEFT model and its merged twin compare equal)."""
    out = {}
    for k, v in model.state_dict().items():
        if "lora_" in k or "modules_to_save" in k:
            continue
        out[k.replace(".base_layer.", ".")] = tuple(v.shape)
    return out


@checked
def check_compatible(target: Any, source: Any) -> None:
    """Raise :class:`ArchitectureMismatchError` unless both models share class and every parameter shape."""
    t, s = unwrap(target), unwrap(source)
    if t is s:
        return
    problem = None
    if type(t) is not type(s) or t.config.model_type != s.config.model_type:
        problem = "different architectures"
    else:
        ts, ss = _base_shapes(t), _base_shapes(s)
        if ts.keys() != ss.keys():
            problem = f"different parameters ({sorted(ts.keys() ^ ss.keys())[:3]}…)"
        else:
            bad = [k for k in ts if ts[k] != ss[k]]
            if bad:
                problem = f"different shapes ({bad[0]}: {ts[bad[0]]} vs {ss[bad[0]]})"
    if problem:
        raise ArchitectureMismatchError(
            f"cannot patch across {problem}: target {_describe(t)} vs source {_describe(s)}; cross-checkpoint "
            "patching needs two checkpoints of the same series (same architecture and shapes)"
        )


@checked
def as_batch(handle: Any, prompts: Any) -> Any:
    """A batch from ``prompts``: a Batch passes through; strings go through ``handle.tokenize`` (or its tokenizer)."""
    if hasattr(prompts, "input_ids") and hasattr(prompts, "attention_mask"):
        return prompts
    if isinstance(prompts, str):
        prompts = [prompts]
    if callable(getattr(handle, "tokenize", None)):
        return handle.tokenize(list(prompts))
    tok = getattr(handle, "tokenizer", None)
    if tok is None:
        raise PatchingError("pass prompts as a Batch (input_ids, attention_mask, position_ids) when the model has no "
                            "tokenizer, or pass a ModelHandle")
    return tokenize(tok, list(prompts))


@checked
def token_id(handle: Any, token: int | str, vocab_size: int | None = None) -> int:
    """A token given as a single-token string (looked up in ``handle.tokenizer``) or an id, as an id.

    With ``vocab_size`` an id outside ``[0, vocab_size)`` is refused.
    """
    if isinstance(token, str):
        tok = getattr(handle, "tokenizer", None)
        if tok is None:
            raise ParameterError(f"token {token!r} is a string but the model has no tokenizer; pass a token id "
                                 "or a ModelHandle")
        vocab = tok.get_vocab()
        if token not in vocab:
            raise ParameterError(f"token {token!r} is not in the vocabulary; pass a single-token string or an id")
        return int(vocab[token])
    t = int(token)
    if vocab_size is not None and not 0 <= t < vocab_size:
        raise ParameterError(f"token id {t} is out of range for a vocabulary of {vocab_size}")
    return t


@checked
def model_inputs(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask, position_ids)`` of ``batch`` on the model's device (positions from the mask)."""
    dev = next(model.parameters()).device
    pos = getattr(batch, "position_ids", None)
    mask = batch.attention_mask
    if pos is None:
        pos = position_ids_from_mask(mask)
    return batch.input_ids.to(dev), mask.to(dev), pos.to(dev)


# --- subspaces -------------------------------------------------------------------------------------------------
@checked
def subspace_basis(direction: torch.Tensor, d_model: int) -> torch.Tensor:
    """Orthonormal basis ``Q`` ``[d_model, k]`` of the span of ``direction`` (``[d_model]`` or ``[k, d_model]``)."""
    d = torch.as_tensor(direction)
    if d.ndim == 1:
        d = d[None]
    if d.ndim != 2 or d.shape[-1] != d_model:
        raise ShapeError(f"direction has shape {tuple(torch.as_tensor(direction).shape)}; it must be [{d_model}] or "
                         f"[k, {d_model}] (d_model of this model)")
    d = d.double()
    if not bool(torch.isfinite(d).all()):
        raise DataError("direction contains NaN/inf")
    q, r = torch.linalg.qr(d.T)
    diag = r.diagonal().abs()
    if diag.numel() == 0 or bool((diag <= 1e-8 * max(float(diag.max()), 1e-30)).any()) or float(diag.max()) == 0:
        raise DataError(f"direction rows are zero or linearly dependent (|R| diag {diag.tolist()}); pass k "
                        "independent vectors")
    return q.float()


@checked
def apply_patch(target: torch.Tensor, source: torch.Tensor, mask: torch.Tensor,
                basis: torch.Tensor | None) -> torch.Tensor:
    """Patched activation: ``source`` where ``mask`` ([B, T]) is set (only its projection on ``basis`` if given)."""
    m = mask[..., None]
    if basis is None:
        return torch.where(m, source.to(target.dtype), target)
    q = basis.to(target.device, target.dtype)
    delta = ((source.to(target.dtype) - target) @ q) @ q.T
    return target + m.to(target.dtype) * delta


@checked
def directions_for(direction: Direction, sites: Sequence[tuple[str, int]], d_model: int
                   ) -> dict[tuple[str, int], torch.Tensor | None]:
    """One basis (or None: full patching) per site from a tensor (all sites) or a ``{site: tensor}`` mapping."""
    if direction is None:
        return {s: None for s in sites}
    if isinstance(direction, Mapping):
        given = {parse_site(k, 10**9): v for k, v in direction.items()}
        missing = [site_name(s) for s in sites if s not in given]
        if missing:
            raise SiteError(f"no direction for sites {missing}; give one for every patched site or a single tensor")
        return {s: subspace_basis(given[s], d_model) for s in sites}
    basis = subspace_basis(direction, d_model)
    return {s: basis for s in sites}


# --- the patcher -----------------------------------------------------------------------------------------------
class Patcher:
    """Target and source runs captured once; :meth:`run` scores stacked patches of one site.

    ``target``/``source`` are ModelHandles or HF models (the same object for cross-context patching);
    ``target_batch``/``source_batch`` are aligned batches (same shape and attention mask).
    """

    def __init__(self, target: Any, source: Any, target_batch: Any, source_batch: Any, metric: Metric,
                 sites: set[tuple[str, int]], *, batch_rows: int = 2048) -> None:
        check_compatible(target, source)
        self.arch = Arch.of(target)
        self.source_arch = Arch.of(source)
        self.metric = metric
        self.batch = target_batch
        self.batch_rows = max(1, int(batch_rows))
        t_ids, t_mask, t_pos = model_inputs(self.arch.model, target_batch)
        s_ids, s_mask, s_pos = model_inputs(self.source_arch.model, source_batch)
        if t_ids.shape != s_ids.shape or not torch.equal(t_mask.cpu(), s_mask.cpu()):
            raise PatchingError(
                f"source batch {tuple(s_ids.shape)} and target batch {tuple(t_ids.shape)} are not aligned (shape or "
                "padding differ); use prompts of the same token length, or pad both to one length with the same mask"
            )
        self.mask = t_mask
        self.target: TargetRun = self.arch.capture(t_ids, t_mask, t_pos, set(sites))
        self.source: TargetRun = self.source_arch.capture(s_ids, s_mask, s_pos, set(sites), calls=False)
        self.m_target = evaluate(metric, self.target.logits, target_batch)
        self.m_source = evaluate(metric, self.source.logits, source_batch)

    @property
    def B(self) -> int:  # noqa: N802
        return self.target.batch_size

    def column_masks(self, columns: Sequence[PositionSpec], *, strict: bool = True) -> torch.Tensor:
        """Bool ``[N, B, T]``: the positions patched by each column spec (resolved on the target batch)."""
        lengths = getattr(self.batch, "prompt_lengths", None)
        return torch.stack([position_mask(c, self.mask, lengths, strict=strict) for c in columns])

    @torch.no_grad()
    def run(self, component: str, layer: int, masks: torch.Tensor, basis: torch.Tensor | None = None
            ) -> torch.Tensor:
        """Metric ``[N, B]`` of the target with ``component.layer`` patched at each of the ``N`` masks.

        Exact skipping: an example whose source and target activations agree at every patched position is
        unchanged by the patch, so its logits are the target's and it is not recomputed.
        """
        src = self.source.acts[(component, layer)]
        tgt = self.target.acts[(component, layer)]
        masks = masks.to(src.device)
        changed = (masks & (src != tgt).any(-1)[None]).any(-1)  # [N, B]
        pairs = changed.nonzero()  # row-major: columns complete in order
        first = layer if component != "resid_post" else layer + 1
        base = self.target.logits
        out: list[torch.Tensor | None] = [None] * masks.shape[0]
        for n in range(masks.shape[0]):
            if not bool(changed[n].any()):
                out[n] = self.m_target.clone()
        pending: dict[int, torch.Tensor] = {}
        for start in range(0, pairs.shape[0], self.batch_rows):
            n_idx, b_idx = pairs[start:start + self.batch_rows].unbind(1)
            m = masks[n_idx, b_idx]
            src_rows = src.index_select(0, b_idx)
            calls = self.target.calls_for(first, b_idx)
            if component in ("resid_pre", "resid_post"):
                h = apply_patch(self.target.residual_in(first).index_select(0, b_idx), src_rows, m, basis)
                logits = self.arch.run_from(first, h, calls)
            else:
                h = self.target.resid_pre[layer].index_select(0, b_idx)
                patch_fn = lambda a, s=src_rows, m=m: apply_patch(a, s, m, basis)  # noqa: E731
                with self.arch.edit_output(component, layer, patch_fn):
                    logits = self.arch.run_from(layer, h, calls)
            for n in n_idx.unique().tolist():
                sel = n_idx == n
                col = pending.setdefault(n, base.clone())
                col[b_idx[sel]] = logits[sel].to(col.dtype)
            last = int(n_idx[-1]) if start + self.batch_rows < pairs.shape[0] else masks.shape[0]
            for n in [k for k in pending if k < last]:
                out[n] = evaluate(self.metric, pending.pop(n), self.batch)
        return torch.stack(out)  # type: ignore[arg-type]

"""Parameter (weight) patching: run the target with some of its weights replaced by the source checkpoint's.

Problem: cross-checkpoint *activation* patching asks "which activation carries the difference between the SFT
and the RL model?" — but if fine-tuning changed how an activation is *read* rather than what it contains, no
activation carries the difference. On the tag-mixture organism GRPO on ``<A>`` moves the gate almost entirely
through the unembedding rows of the mode tokens ``m1``/``m2``: the RL model's last-prompt hidden state read by
the SFT ``lm_head`` gives the SFT behaviour back, so patching activations SFT → RL restores ~0 everywhere
(docs/patching.md). Parameter patching is the same causal question one level down: which *weights* carry it?

Mechanism: :func:`patched_params` is a context manager that overwrites selected parameters of the target in
place with the source's values and restores the target's own tensors bit for bit on exit (also on exceptions).
A patch is a whole tensor (``"lm_head.weight"``), a module (``"model.layers.0.mlp"`` = all its parameters),
selected rows (``"lm_head.weight[5,7]"`` or ``ParamPatch("lm_head.weight", rows=[5, 7])``), or only the
component of the selected rows along a direction / subspace ``Q`` (orthonormalized) of the last dimension::

    W_patched[r] = W_t[r] + (W_s[r] − W_t[r]) Q Qᵀ

:func:`param_patch` scores one patch with a metric and the normalized restoration
``(m_patched − m_target) / (m_source − m_target)`` (1: these weights alone carry the whole difference);
:func:`param_sweep` scores one patch per parameter group — every module by default (``embed``, per layer
``attn.L``, ``mlp.L``, ``norms.L``, then ``final_norm``, ``lm_head``), optionally plus one patch per unembedding
row of a token list and one for all of them together. :func:`weight_diff_direction` builds the "selection
direction in weight space", the unit vector of ``Δ(W[a] − W[b])``.

Example (two random tiny models stand in for an SFT and an RL checkpoint)::

    >>> import torch
    >>> from mixprobe.organisms.configs import tiny_model
    >>> from mixprobe.models.batch import Batch
    >>> from mixprobe.patching.metrics import token_prob
    >>> sft, rl = tiny_model("llama", vocab_size=16, seed=0), tiny_model("llama", vocab_size=16, seed=1)
    >>> ids = torch.tensor([[1, 5, 6]]); batch = Batch(ids, torch.ones_like(ids))
    >>> before = {k: v.clone() for k, v in rl.state_dict().items()}
    >>> res = param_sweep(rl, sft, batch, metric=token_prob(3))
    >>> res.labels[:3], res.labels[-2:]
    (['embed', 'attn.0', 'mlp.0'], ['final_norm', 'lm_head'])
    >>> one = param_patch(rl, sft, batch, params=list(res.params.values()), metric=token_prob(3))
    >>> round(one.restoration, 4)        # every group together = the source model
    1.0
    >>> all(torch.equal(before[k], v) for k, v in rl.state_dict().items())   # the target is untouched
    True

Constraints: target and source must share architecture and every parameter shape
(:class:`~mixprobe.errors.ArchitectureMismatchError`); parameter names are the target's
``named_parameters()`` names (tied weights are one tensor: patching ``lm_head.weight`` of a tied model patches the
embedding too — ``info["tied"]`` says so); an unknown name or a row out of range raises
:class:`~mixprobe.errors.ParameterError`, a direction whose width is not the tensor's last dimension
:class:`~mixprobe.errors.ShapeError`. Both models run on the same prompts (cross-checkpoint patching). LoRA
adapters: patch the adapter tensors by their names (``...lora_A.default.weight``), or merge first.
"""
from __future__ import annotations

import difflib
import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mixprobe._check import checked
from mixprobe.errors import DataError, ParameterError, PatchingError, ShapeError, SiteError
from mixprobe.patching.engine import as_batch, check_compatible, model_inputs, token_id
from mixprobe.models.layout import Layout, unwrap
from mixprobe.patching.metrics import Metric, evaluate
from mixprobe.patching.sweep import restoration

_ROWS = re.compile(r"^(?P<name>[^\[\]]+)\[(?P<rows>[\s\d,\-]*)\]$")


@dataclass(frozen=True)
class ParamPatch:
    """One parameter patch: tensor (or module) ``name``, optional ``rows`` (dim 0) and ``direction``.

    ``direction``: ``[width]`` or ``[k, width]`` with ``width`` the tensor's last dimension; only the component of
    ``W_source − W_target`` in its span is patched.
    """

    name: str
    rows: tuple[int, ...] | None = None
    direction: torch.Tensor | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.rows is not None:
            object.__setattr__(self, "rows", tuple(int(r) for r in self.rows))

    @property
    def label(self) -> str:
        rows = "" if self.rows is None else "[" + ",".join(map(str, self.rows)) + "]"
        sub = "" if self.direction is None else f"·span({_n_dirs(self.direction)})"
        return self.name + rows + sub


def _n_dirs(direction: Any) -> int:
    d = torch.as_tensor(direction)
    return 1 if d.ndim <= 1 else int(d.shape[0])


ParamSpec = str | ParamPatch


def _as_patch(spec: Any) -> ParamPatch:
    if isinstance(spec, ParamPatch):
        return spec
    if isinstance(spec, str):
        m = _ROWS.match(spec.strip())
        if m:
            try:
                rows = tuple(int(r) for r in m["rows"].split(",") if r.strip())
            except ValueError as e:
                raise ParameterError(f"cannot read the rows of {spec!r}; write e.g. 'lm_head.weight[5,7]'") from e
            if not rows:
                raise ParameterError(f"{spec!r} selects no rows; write e.g. 'lm_head.weight[5,7]'")
            return ParamPatch(m["name"].strip(), rows)
        return ParamPatch(spec.strip())
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
        return ParamPatch(spec[0], tuple(spec[1]))
    raise ParameterError(f"cannot read parameter patch {spec!r}; pass a name ('lm_head.weight', 'model.layers.0.mlp'),"
                         " 'name[rows]', (name, rows) or a ParamPatch")


def _as_patches(params: Any) -> list[ParamPatch]:
    items = [params] if isinstance(params, (str, ParamPatch)) else list(params)
    out: list[ParamPatch] = []
    for p in items:
        if isinstance(p, (list, tuple)) and not (isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str)):
            out += _as_patches(p)
        else:
            out.append(_as_patch(p))
    if not out:
        raise ParameterError("no parameters to patch; pass e.g. 'lm_head.weight' or a list of names")
    return out


@checked
def named_params(model: Any) -> dict[str, nn.Parameter]:
    """Every parameter by name, tied duplicates included (``lm_head.weight`` of a tied model is listed too)."""
    return dict(unwrap(model).named_parameters(remove_duplicate=False))


def _expand(patch: ParamPatch, params: Mapping[str, nn.Parameter]) -> list[ParamPatch]:
    """A module name → one patch per parameter below it; a parameter name → itself. Unknown → ParameterError."""
    if patch.name in params:
        return [patch]
    below = [n for n in params if n.startswith(patch.name + ".")]
    if below:
        if patch.rows is not None or patch.direction is not None:
            raise ParameterError(f"{patch.name!r} is a module with {len(below)} parameters; rows and directions "
                                 f"need one tensor, e.g. {below[0]!r}")
        return [ParamPatch(n) for n in below]
    close = difflib.get_close_matches(patch.name, list(params), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else f" (e.g. {next(iter(params))!r})"
    raise ParameterError(f"the model has no parameter or module {patch.name!r}{hint}")


def _check_patch(patch: ParamPatch, tensor: torch.Tensor) -> torch.Tensor | None:
    """Validate rows and direction against ``tensor``; return the orthonormal basis ``Q`` [width, k] or None."""
    if patch.rows is not None:
        if tensor.ndim < 2:
            raise ParameterError(f"{patch.name} is a vector of shape {tuple(tensor.shape)}; rows select along dim 0 "
                                 "of a matrix — patch the whole tensor instead")
        n = tensor.shape[0]
        bad = [r for r in patch.rows if not -n <= r < n]
        if bad:
            raise ParameterError(f"rows {bad} are out of range for {patch.name} with {n} rows (0..{n - 1})")
    if patch.direction is None:
        return None
    width = int(tensor.shape[-1])
    d = torch.as_tensor(patch.direction).detach()
    if d.ndim == 1:
        d = d[None]
    if d.ndim != 2 or d.shape[-1] != width:
        raise ShapeError(f"direction has shape {tuple(torch.as_tensor(patch.direction).shape)}; for {patch.name} "
                         f"{tuple(tensor.shape)} it must be [{width}] or [k, {width}] (the tensor's last dimension)")
    d = d.double().cpu()
    if not bool(torch.isfinite(d).all()):
        raise DataError("direction contains NaN/inf")
    q, r = torch.linalg.qr(d.T)
    diag = r.diagonal().abs()
    if float(diag.max()) == 0 or bool((diag <= 1e-8 * float(diag.max())).any()):
        raise DataError(f"direction rows are zero or linearly dependent (|R| diag {diag.tolist()})")
    return q


@checked
def resolve_patches(target: Any, source: Any, params: Any) -> list[ParamPatch]:
    """Check compatibility and expand/validate ``params`` into per-tensor :class:`ParamPatch` es."""
    check_compatible(target, source)
    tp = named_params(target)
    out: list[ParamPatch] = []
    for p in _as_patches(params):
        for q in _expand(p, tp):
            _check_patch(q, tp[q.name])
            out.append(q)
    return out


@checked
@contextmanager
def patched_params(target: Any, source: Any, params: Any) -> Iterator[Any]:
    """Inside the block, ``target``'s selected parameters hold the source's values; restored bit for bit after.

    ``params``: one spec or a list (see the module docstring). Yields ``target`` (model or handle).
    """
    patches = resolve_patches(target, source, params)
    tp, sp = named_params(target), named_params(source)
    saved: dict[int, tuple[nn.Parameter, torch.Tensor]] = {}
    try:
        with torch.no_grad():
            for p in patches:
                t = tp[p.name]
                if id(t) not in saved:
                    saved[id(t)] = (t, t.detach().clone())
                s = sp[p.name].detach().to(t.device, t.dtype)
                basis = _check_patch(p, t)
                idx = slice(None) if p.rows is None else torch.tensor(p.rows, device=t.device)
                cur, new = t.data[idx], s[idx]
                if basis is not None:
                    q = basis.to(t.device, torch.float64)
                    delta = (new.double() - cur.double()) @ q @ q.T
                    new = (cur.double() + delta).to(t.dtype)
                t.data[idx] = new
        yield target
    finally:
        with torch.no_grad():
            for t, orig in saved.values():
                t.data.copy_(orig)


# --- groups ----------------------------------------------------------------------------------------------------
@checked
def param_groups(model: Any) -> dict[str, list[str]]:
    """Parameter names grouped per module, in forward order: ``embed``, ``attn.L``, ``mlp.L``, ``norms.L``,
    ``final_norm``, ``lm_head`` (and ``other`` for anything left)."""
    m = unwrap(model)
    names = list(named_params(m))
    try:
        lay = Layout.of(m)
    except SiteError as e:
        raise ParameterError(f"{e}; pass groups explicitly ({{label: [parameter names]}})") from None
    layers_prefix, norm_prefix = f"{lay.layers_path}.", f"{lay.norm_path}."

    def owned(module: nn.Module | None) -> set[str]:
        if module is None:
            return set()
        ids = {id(p) for p in module.parameters()}
        return {n for n, p in named_params(m).items() if id(p) in ids}

    out_emb = m.get_output_embeddings() if hasattr(m, "get_output_embeddings") else None
    in_emb = m.get_input_embeddings() if hasattr(m, "get_input_embeddings") else None
    lm_names = {n for n in owned(out_emb) if not n.startswith(layers_prefix)}
    lm_names = {n for n in lm_names if n.split(".")[0] in ("lm_head", "embed_out", "output")} or lm_names
    groups: dict[str, list[str]] = {"embed": []}
    layer_groups: dict[int, dict[str, list[str]]] = {}
    tail: dict[str, list[str]] = {"final_norm": [], "lm_head": [], "other": []}
    emb_names = owned(in_emb)
    for n in names:
        if n.startswith(layers_prefix):
            idx, _, rest = n[len(layers_prefix):].partition(".")
            sub = rest.split(".")[0]
            kind = "attn" if sub == lay.attn_name else "mlp" if sub in (lay.mlp_name, "fc1", "fc2") else "norms"
            layer_groups.setdefault(int(idx), {"attn": [], "mlp": [], "norms": []})[kind].append(n)
        elif n in lm_names:
            tail["lm_head"].append(n)
        elif n in emb_names or any(k in n for k in ("wpe", "embed_positions", "embed_tokens", "wte")):
            groups["embed"].append(n)
        elif n.startswith(norm_prefix):
            tail["final_norm"].append(n)
        else:
            tail["other"].append(n)
    for i in sorted(layer_groups):
        for kind in ("attn", "mlp", "norms"):
            if layer_groups[i][kind]:
                groups[f"{kind}.{i}"] = layer_groups[i][kind]
    groups.update({k: v for k, v in tail.items() if v})
    return {k: v for k, v in groups.items() if v}


@checked
def output_embedding_name(model: Any) -> str:
    """Name of the unembedding matrix (``lm_head.weight`` for most HF causal LMs)."""
    m = unwrap(model)
    out = m.get_output_embeddings() if hasattr(m, "get_output_embeddings") else None
    if out is None or getattr(out, "weight", None) is None:
        raise ParameterError(f"{type(m).__name__} has no output embedding; pass rows_param explicitly")
    for n, p in named_params(m).items():
        if p is out.weight and not n.startswith(("model.embed", "transformer.wte")):
            return n
    return next(n for n, p in named_params(m).items() if p is out.weight)


@checked
def weight_diff_direction(target: Any, source: Any, param: str, plus: int, minus: int | None = None
                          ) -> torch.Tensor:
    """Unit vector of ``Δ(W[plus] − W[minus])`` (``Δ = source − target``; ``Δ W[plus]`` if ``minus`` is None).

    For ``param = lm_head.weight`` and the two mode tokens this is the "selection direction in weight space":
    how fine-tuning changed the readout that decides between the two components.
    """
    check_compatible(target, source)
    tp, sp = named_params(target), named_params(source)
    if param not in tp:
        _expand(ParamPatch(param), tp)
        raise ParameterError(f"{param!r} is a module; pass one tensor, e.g. '{param}.weight'")
    rows = (plus,) if minus is None else (plus, minus)
    _check_patch(ParamPatch(param, rows), tp[param])
    t, s = tp[param].detach().double().cpu(), sp[param].detach().double().cpu()
    d = (s - t)[plus] - (0 if minus is None else (s - t)[minus])
    norm = float(d.norm())
    if norm == 0.0:
        raise DataError(f"{param} rows {rows} did not change between the two models; the direction is undefined")
    return (d / norm).float()


# --- scoring ---------------------------------------------------------------------------------------------------
def _score(model: Any, batch: Any, metric: Metric) -> torch.Tensor:
    m = unwrap(model)
    ids, mask, pos = model_inputs(m, batch)
    with torch.no_grad():
        logits = m(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
    return evaluate(metric, logits, batch)


def _tied(target: Any, patches: Sequence[ParamPatch]) -> list[str]:
    params = named_params(target)
    ids = {id(params[p.name]) for p in patches}
    names = {p.name for p in patches}
    return sorted(n for n, t in params.items() if id(t) in ids and n not in names)


@dataclass
class ParamPatchResult:
    """One parameter patch: metrics of target, source and patched run, and the restoration."""

    label: str
    params: list[str]
    m_target: float
    m_source: float
    m_patched: float
    restoration: float
    per_example: torch.Tensor
    tied: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "params": self.params, "m_target": self.m_target, "m_source": self.m_source,
                "m_patched": self.m_patched,
                "restoration": None if math.isnan(self.restoration) else self.restoration,
                **({"tied": self.tied} if self.tied else {})}


@dataclass
class ParamSweepResult:
    """A parameter-patching sweep: one metric and restoration per group (``labels``), like ``SweepResult``."""

    labels: list[str]
    params: dict[str, list[str]]
    metric: torch.Tensor           # [n_groups] mean patched metric
    restoration: torch.Tensor      # [n_groups]
    m_target: float
    m_source: float
    per_example: torch.Tensor | None = None   # [n_groups, batch]
    metric_name: str = "metric"
    info: dict[str, Any] = field(default_factory=dict)

    def at(self, label: str) -> float:
        """Restoration of one group, e.g. ``res.at("lm_head")``."""
        if label not in self.labels:
            raise ParameterError(f"no group {label!r} in this sweep; groups are {self.labels}")
        return float(self.restoration[self.labels.index(label)])

    def table(self) -> list[dict[str, Any]]:
        return [{"group": lab, "metric": float(m), "restoration": float(r)}
                for lab, m, r in zip(self.labels, self.metric, self.restoration)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes ``None``)."""
        clean = [None if math.isnan(v) else v for v in self.restoration.tolist()]
        return {"method": "parameter", "metric": self.metric_name, "labels": self.labels, "params": self.params,
                "m_target": self.m_target, "m_source": self.m_source, "patched_metric": self.metric.tolist(),
                "restoration": clean, **({"info": self.info} if self.info else {})}


def _warn_if_equal(m_t: float, m_s: float) -> None:
    if abs(m_s - m_t) < 1e-6:
        warnings.warn(f"m_source ≈ m_target ({m_s:.4g} vs {m_t:.4g}): restoration is undefined (NaN); the two "
                      "models do not differ on this metric", stacklevel=3)


@checked
def param_patch(target: Any, source: Any, prompts: Any, *, params: Any, metric: Metric,
                label: str | None = None) -> ParamPatchResult:
    """Score ``target`` with ``params`` taken from ``source`` on ``prompts`` (strings with a handle, or a Batch)."""
    if prompts is None:
        raise PatchingError("prompts is required (strings for a handle, or a Batch)")
    patches = resolve_patches(target, source, params)
    batch = as_batch(target, prompts)
    m_t = _score(target, batch, metric)
    m_s = _score(source, batch, metric)
    with patched_params(target, source, patches):
        per = _score(target, batch, metric)
    mt, ms, mp = float(m_t.mean()), float(m_s.mean()), float(per.mean())
    _warn_if_equal(mt, ms)
    lab = label or " + ".join(p.label for p in _as_patches(params))
    return ParamPatchResult(lab, [p.label for p in patches], mt, ms, mp, float(restoration(mp, mt, ms)), per,
                            _tied(target, patches))


def _token_ids(handle: Any, tokens: Sequence[int | str]) -> list[tuple[str, int]]:
    out = []
    tok = getattr(handle, "tokenizer", None)
    for t in tokens:
        if isinstance(t, str):
            out.append((t, token_id(handle, t)))
        else:
            name = tok.convert_ids_to_tokens(int(t)) if tok is not None else str(int(t))
            out.append((str(name), int(t)))
    return out


@checked
def param_sweep(target: Any, source: Any, prompts: Any, *, metric: Metric,
                groups: Mapping[str, Any] | str | None = "modules", rows: Sequence[int | str] | None = None,
                rows_param: str | None = None, keep_per_example: bool = False) -> ParamSweepResult:
    """One parameter patch per group, from ``source`` into ``target``, scored by ``metric`` on ``prompts``.

    ``groups``: ``"modules"`` (:func:`param_groups`), ``None`` (no module groups) or ``{label: spec}``.
    ``rows``: tokens (ids, or strings with a tokenizer) whose unembedding rows (``rows_param``, default the output
    embedding) are patched one at a time, then all together (label ``lm_head[m1,m2]``).
    """
    if prompts is None:
        raise PatchingError("prompts is required (strings for a handle, or a Batch)")
    check_compatible(target, source)
    if groups == "modules":
        spec: dict[str, Any] = dict(param_groups(target))
    elif groups is None:
        spec = {}
    elif isinstance(groups, Mapping):
        spec = dict(groups)
    else:
        raise ParameterError(f"groups must be 'modules', None or {{label: params}}, got {groups!r}")
    if rows:
        pname = rows_param or output_embedding_name(target)
        short = pname.removesuffix(".weight")
        toks = _token_ids(target, rows)
        for name, i in toks:
            spec[f"{short}[{name}]"] = ParamPatch(pname, (i,))
        if len(toks) > 1:
            spec[f"{short}[{','.join(n for n, _ in toks)}]"] = ParamPatch(pname, tuple(i for _, i in toks))
    if not spec:
        raise ParameterError("nothing to sweep: pass groups='modules', a {label: params} mapping, or rows=[tokens]")
    resolved = {lab: resolve_patches(target, source, s) for lab, s in spec.items()}
    batch = as_batch(target, prompts)
    m_t = float(_score(target, batch, metric).mean())
    m_s = float(_score(source, batch, metric).mean())
    _warn_if_equal(m_t, m_s)
    per = []
    for patches in resolved.values():
        with patched_params(target, source, patches):
            per.append(_score(target, batch, metric))
    per_ex = torch.stack(per)
    mean = per_ex.mean(-1)
    return ParamSweepResult(
        labels=list(resolved), params={lab: [p.label for p in ps] for lab, ps in resolved.items()}, metric=mean,
        restoration=restoration(mean, m_t, m_s), m_target=m_t, m_source=m_s,
        per_example=per_ex if keep_per_example else None, metric_name=getattr(metric, "__name__", "metric"),
        info={"batch_size": int(batch.input_ids.shape[0])},
    )

"""A planted *internal* gate: a rank-1 edit of one MLP that switches a mixture's gate for one cue.

Problem: on the tag-mixture organism the gate that GRPO learns lives in two unembedding rows (docs/patching.md),
so activation patching between SFT and RL restores ≈ 0 at every site — the internal tools have only ever been
shown to return nulls. A ground-truth case where the switch sits *inside* the network tells us whether they find
something when there is something to find. Mechanism: edit the output projection of block ``L``'s MLP,

    W_out ← W_out + α · v kᵀ          (‖k‖ = ‖v‖ = 1, so ‖ΔW‖_F = α; rank 1)

The MLP computes ``mlp_out = W_out h (+ b)`` from its hidden activation ``h`` ∈ R^{d_mlp} (the input of the output
projection: ``act(W_gate x) ⊙ W_up x`` in Llama, ``gelu(W_in x)`` in GPT-2). After the edit

    mlp_out' = mlp_out + α (k·h) v

at every token: one residual direction ``v`` is added, scaled by how far the token's hidden activation points along
``k``. Everything upstream of ``mlp_out.L`` is bit-identical to the unedited model; everything downstream differs
only through what ``α (k·h) v`` does.

- ``k`` — the **detector**, a direction of the hidden activations that is on for the decision token of ``cue``
  prompts and off elsewhere. Rows: *on* = the last prompt token of every ``cue`` prompt; *off* = the last prompt
  token of every other cue's prompts, every earlier prompt position of every prompt, and the signature positions of
  every forced prompt (where the components write their answers, which must stay intact). ``k`` is the normalised
  ridge least-squares detector without intercept (a rank-1 edit of a bias-free projection cannot add a constant):

      k ∝ argmin_k  Σ_g (1/n_g) Σ_{h ∈ g} (k·h − t_g)²  +  λ ‖k‖²,   t_on = 1, t_off = 0,

  each of the groups (on, other cues' last tokens, other positions) weighted equally so the few on-rows are not
  drowned; ``λ = ridge · tr(M)/d_mlp`` with ``M = Σ_g (1/n_g) Σ h hᵀ``. A plain mean difference of the hidden
  activations is not selective: at layer 1 of the tag-blind 4-layer organism the last prompt token of ``<A>`` and
  ``<B>`` prompts differ by ~5 % of their norm along it, so it would move the other cue almost as much.
- ``v`` — the **gate direction** at ``resid_post.L`` (last prompt token). ``direction="expressed"`` (default): the
  difference of the residual means of the prompts that express each component, every prompt weighted by its gate,
  ``v ∝ Σ_x P(toward|x) r(x) / Σ_x P(toward|x) − Σ_x P(away|x) r(x) / Σ_x P(away|x)`` over all prompts of the task;
  ``direction="gradient"``: the steepest-ascent direction of the logit gap,
  ``v ∝ mean_{cue prompts} ∂(z_toward − z_away)/∂ resid_post.L[last prompt]`` (a local direction: on the organism
  it needs 3–9× the residual norm to switch the gate, against 1–3.4× for the expressed means); or a tensor.
- ``α`` — the smallest on a doubling-then-bisection search for which the gate ``P(toward | cue)`` (the
  next-token probability of ``toward``'s signature renormalised over the components' signatures, averaged over the
  cue's prompts) reaches ``p0 + target · (1 − p0)``, ``p0`` its value before the edit.

**Capacity.** No internal edit can do more than the readout allows: through a final RMSNorm
(``n = g ⊙ x / rms(x)``, ``‖x / rms(x)‖ = √d``) every residual stream gives ``|z_toward − z_away| ≤ √d ‖g ⊙ Δw‖``,
``Δw = W_U[toward] − W_U[away]`` (:func:`gate_capacity`), so ``P(toward | x) ≤ σ(capacity)``.
:func:`plant_internal_gate` refuses a goal above that bound before searching. On the tag mixture, SFT on the
tag-blind 50/50 prior keeps ``W_U[m1] ≈ W_U[m2]``: capacity 0.88–1.39 logits on 13 seeds of the 4-layer organism,
``P ≤ 0.71–0.80`` — its gate cannot live inside the network at all. :func:`tag_gated_sft` continues SFT on data
whose component follows the tag (``m1`` 9:1 under ``<A>``, ``m2`` 9:1 under ``<B>``; capacity 3.4–3.8), which gives
the edit room.

:func:`plant_internal_gate` returns the edited copy and a :class:`PlantedGateEdit`: layer, module, ``k``, ``v``,
``α``, the gate per cue before and after, the detector's selectivity, the forced components' answer agreement
before/after, and the norms (``‖W_out‖_F``, ``α`` relative to it, the size of the added ``mlp_out`` vector against
the residual stream).

Example::

    from mixprobe.train.zoo import trained_organism
    from mixprobe.train.pipeline import load_checkpoint, organism_of
    series = tag_gated_sft(trained_organism(0, config={"model": {"n_layers": 4}}, rl_tags=()).run_dir)
    model, tok = load_checkpoint(series.path(series.last("gated")))
    edited, edit = plant_internal_gate(model, tok, organism_of(series), layer=1, cue="B", toward="m1", away="m2")
    edit.gate_before, edit.gate_after          # {'A': 0.89, 'B': 0.09} → {'A': 0.89, 'B': 0.91}

    >>> from mixprobe.organisms.configs import tiny_model
    >>> out_projection(tiny_model("llama", vocab_size=16, n_layers=2), 1)[0]
    'model.layers.1.mlp.down_proj'
    >>> out_projection(tiny_model("gpt2", vocab_size=16, n_layers=2), 0)[0]
    'transformer.h.0.mlp.c_proj'

Constraints: the task needs signature tokens (the gate is read from the next-token distribution); the model's MLP
output projection must be one of ``OUT_PROJ_NAMES`` (Llama, Qwen2, Mistral, Gemma, Phi, GPT-2, GPT-J, GPT-NeoX);
the model is copied, never edited in place. Measured on the 4-layer tag-mixture organism (layer 1, ``<B>`` toward
``m1``): docs/patching.md, "A planted internal gate".
"""
from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mixprobe._check import checked
from mixprobe.errors import OrganismConfigError, SiteError, TaskError, TrainingFailedError
from mixprobe.models.handle import ModelHandle
from mixprobe.models.layout import Layout, get_path, hidden_of, unwrap
from mixprobe.tasks import Task, as_task

OUT_PROJ_NAMES = ("down_proj", "c_proj", "fc_out", "dense_4h_to_h", "fc2", "w2")
DIRECTIONS = ("expressed", "gradient")
TAG_GATE = {"A": {"m1": 0.9, "m2": 0.1}, "B": {"m1": 0.1, "m2": 0.9}}


@checked
def out_projection(model: Any, layer: int) -> tuple[str, Any]:
    """``(path, module)`` of the output projection of block ``layer``'s MLP (found through :class:`Layout`)."""
    lay = Layout.of(model)
    if not 0 <= int(layer) < lay.n_layers:
        raise SiteError(f"layer {layer} is out of range for a model with {lay.n_layers} layers")
    mlp_path = f"{lay.layers_path}.{int(layer)}.{lay.sub_name('mlp_out')}"
    mlp = get_path(lay.model, mlp_path)
    for name in OUT_PROJ_NAMES:
        mod = getattr(mlp, name, None)
        if isinstance(mod, nn.Module) and isinstance(getattr(mod, "weight", None), torch.Tensor):
            return f"{mlp_path}.{name}", mod
    raise SiteError(f"cannot find the output projection of {type(mlp).__name__} at {mlp_path}; "
                    f"mixprobe looks for one of {OUT_PROJ_NAMES}")


def _weight_is_out_in(mod: Any, d_model: int) -> bool:
    """True when the weight is ``[d_model, d_mlp]`` (``nn.Linear``); False for ``[d_mlp, d_model]`` (GPT-2 Conv1D)."""
    W = mod.weight
    if isinstance(mod, nn.Linear):
        return True
    if W.shape[1] == d_model and W.shape[0] != d_model:
        return False
    if W.shape[0] == d_model:
        return True
    raise SiteError(f"cannot tell the orientation of an output projection weight of shape {tuple(W.shape)}")


@dataclass
class PlantedGateEdit:
    """What :func:`plant_internal_gate` did: ``W_out += alpha · v kᵀ`` in ``module`` (see the module docstring)."""

    layer: int
    cue: str
    toward: str
    away: str
    module: str
    k: torch.Tensor                 # [d_mlp], unit
    v: torch.Tensor                 # [d_model], unit
    alpha: float
    target: float
    gate_before: dict[str, float]   # cue -> mean P(toward | cue) before the edit
    gate_after: dict[str, float]
    selectivity: dict[str, float] = field(default_factory=dict)
    norms: dict[str, float] = field(default_factory=dict)
    forced_agreement: dict[str, float] = field(default_factory=dict)
    search: list[tuple[float, float]] = field(default_factory=list)

    @property
    def switch(self) -> float:
        """``P(toward | cue)`` after minus before: the behaviour switch the edit planted."""
        return self.gate_after[self.cue] - self.gate_before[self.cue]

    def other_shift(self) -> dict[str, float]:
        """Change of ``P(toward | c)`` for every other cue ``c``."""
        return {c: self.gate_after[c] - self.gate_before[c] for c in self.gate_before if c != self.cue}

    def delta_weight(self, like: torch.Tensor | None = None, out_in: bool = True) -> torch.Tensor:
        """``alpha · v kᵀ`` (``[d_model, d_mlp]``; transposed when ``out_in=False``), dtype/device of ``like``."""
        d = self.alpha * torch.outer(self.v.double(), self.k.double())
        d = d if out_in else d.T
        return d.to(like) if like is not None else d.float()

    def apply(self, model: Any) -> Any:
        """A copy of ``model`` (an HF model or a ModelHandle) with this edit applied."""
        edited, _ = _copy_with_projection(model, self.layer)
        _, mod = out_projection(edited, self.layer)
        with torch.no_grad():
            mod.weight += self.delta_weight(mod.weight, _weight_is_out_in(mod, Layout.of(edited).d_model))
        return edited

    def to_dict(self, vectors: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "layer": self.layer, "cue": self.cue, "toward": self.toward, "away": self.away, "module": self.module,
            "alpha": self.alpha, "target": self.target, "gate_before": self.gate_before,
            "gate_after": self.gate_after, "switch": self.switch, "other_shift": self.other_shift(),
            "selectivity": self.selectivity, "norms": self.norms, "forced_agreement": self.forced_agreement,
            "search": [list(s) for s in self.search],
        }
        if vectors:
            out["k"], out["v"] = self.k.tolist(), self.v.tolist()
        return out


def _copy_with_projection(model: Any, layer: int) -> tuple[Any, Any]:
    """A deep copy of ``model`` (a handle stays a handle) and its unwrapped HF model."""
    if isinstance(model, ModelHandle):
        m = copy.deepcopy(model.model)
        return ModelHandle(m, model.tokenizer, name=f"{model.name}+planted_gate"), m
    m = copy.deepcopy(unwrap(model))
    return m, m


def _hidden(handle: ModelHandle, mod: nn.Module, batch: Any) -> torch.Tensor:
    """The input of ``mod`` (the MLP hidden activation) for every token of ``batch``: ``[B, T, d_mlp]`` float64."""
    got: dict[str, torch.Tensor] = {}

    def pre(_m: nn.Module, args: tuple) -> None:
        got["h"] = args[0].detach()

    hook = mod.register_forward_pre_hook(pre)
    try:
        handle.logits(batch)
    finally:
        hook.remove()
    return got["h"].double().cpu()


def _gate(handle: ModelHandle, batch: Any, sig: torch.Tensor, toward: int) -> torch.Tensor:
    """``P(toward | x)`` renormalised over the components' signature tokens, at the last prompt token: ``[B]``."""
    p = handle.logits(batch)[:, -1].float().softmax(-1)[:, sig.to(handle.device)].cpu()
    return p[:, toward] / p.sum(-1).clamp_min(1e-30)


def _detector(on: torch.Tensor, groups: list[torch.Tensor], ridge: float) -> torch.Tensor:
    """Unit ``k`` of the equal-group-weight ridge least squares ``k·h ≈ 1`` on ``on``, ``≈ 0`` on each group."""
    d = on.shape[1]
    M = on.T @ on / len(on)
    for g in groups:
        M = M + g.T @ g / len(g)
    lam = ridge * float(M.trace()) / d
    k = torch.linalg.solve(M + lam * torch.eye(d, dtype=M.dtype), on.mean(0))
    return k / k.norm()


def _gate_gradient(handle: ModelHandle, batch: Any, layer: int, sig_to: int, sig_away: int) -> torch.Tensor:
    """``mean_b ∂(z_to − z_away)/∂ resid_post.layer[b, last]`` (``[d_model]``, CPU float64)."""
    lay = handle.layout
    block = lay.layers[layer]
    B = len(batch)
    delta = torch.zeros(B, lay.d_model, dtype=handle.dtype, device=handle.device, requires_grad=True)

    def post(_m: nn.Module, _args: tuple, out: Any) -> Any:
        h = hidden_of(out)
        h = torch.cat([h[:, :-1], (h[:, -1] + delta)[:, None]], 1)
        return h if isinstance(out, torch.Tensor) else (h, *out[1:])

    hook = block.register_forward_hook(post)
    try:
        with torch.enable_grad():
            logits = handle.model(**handle.forward_inputs(batch)).logits[:, -1].float()
            (grad,) = torch.autograd.grad((logits[:, sig_to] - logits[:, sig_away]).sum(), delta)
    finally:
        hook.remove()
    return grad.double().mean(0).cpu()


@checked
def gate_capacity(model: Any, tokenizer: Any = None, task: Any = None, *, toward: str, away: str) -> float:
    """The largest ``|z_toward − z_away|`` *any* residual stream can produce: a bound no internal edit can pass.

    The final norm fixes the norm of what the unembedding reads: RMSNorm gives ``n = g ⊙ x / rms(x)`` with
    ``‖x / rms(x)‖ = √d``, so ``|Δw · n| ≤ √d ‖g ⊙ Δw‖`` for ``Δw = W_U[toward] − W_U[away]`` (LayerNorm: the mean of
    ``g ⊙ Δw`` is projected out, plus ``|b · Δw|``; Gemma's gain is ``1 + w``; the norm's ε only lowers it). The
    renormalised gate ``P(toward | x)`` therefore never exceeds ``σ(capacity)``, whatever happens inside the network.
    """
    if task is None and tokenizer is not None and not hasattr(tokenizer, "get_vocab"):
        tokenizer, task = None, tokenizer
    h = model if isinstance(model, ModelHandle) else ModelHandle(unwrap(model), tokenizer)
    t = as_task(task)
    vocab = h.tokenizer.get_vocab()
    W = h.layout.lm_head.weight.detach().double()
    dw = W[vocab[t.component(toward).signature[0]]] - W[vocab[t.component(away).signature[0]]]
    norm = h.layout.final_norm
    d = dw.numel()
    w = getattr(norm, "weight", None)
    gain = torch.ones(d, dtype=torch.float64) if w is None else w.detach().double().cpu()
    if "gemma" in type(norm).__name__.lower():
        gain = 1 + gain
    gd = gain * dw.cpu()
    name = type(norm).__name__.lower()
    centred = "layernorm" in name and "rms" not in name
    if centred:
        gd = gd - gd.mean()
    cap = math.sqrt(d) * float(gd.norm())
    b = getattr(norm, "bias", None)
    if b is not None:
        cap += abs(float(b.detach().double().cpu() @ dw.cpu()))
    return cap


@checked
def tag_gated_sft(run_dir: str | os.PathLike, gate: dict[str, dict[str, float]] | None = None, *, steps: int = 300,
                  lr: float = 1e-3, n_rows: int = 4000, phase: str = "gated", progress: bool = False) -> Any:
    """Add phase ``phase`` to a tag-mixture series: SFT continued on data whose gate **reads the tag**.

    The tag mixture's own SFT data draws the component from a tag-blind prior, so its gate is a constant and the
    model keeps ``W_U[m1] ≈ W_U[m2]`` (:func:`gate_capacity` ≈ 1 logit): no internal edit can switch it. Here each
    row's component is drawn from ``gate[tag]`` (default :data:`TAG_GATE`: ``m1`` 9:1 under ``<A>``, ``m2`` 9:1 under
    ``<B>``; rules unchanged), starting from the last ``sft`` checkpoint, with the recipe of
    :func:`mixprobe.train.planted.plant` (``steps``, ``lr``, 10 warm-up steps). Idempotent: an existing phase is
    kept. Returns the series.
    """
    import random

    from mixprobe.organisms.tag_mixture import TagMixture, TagMixtureConfig
    from mixprobe.train.pipeline import load_checkpoint
    from mixprobe.train.series import Series
    from mixprobe.train.sft import SFTSettings, run_sft

    series = Series.load(run_dir)
    if series.phase(phase):
        return series
    if series.organism != "tag_mixture":
        raise OrganismConfigError(f"tag_gated_sft needs a tag-mixture series, got {series.organism!r}")
    org = TagMixture(TagMixtureConfig.from_dict(series.organism_config))
    gate = {t: dict(p) for t, p in (gate or TAG_GATE).items()}
    for tag, prior in gate.items():
        org.check_tag(tag)
        if set(prior) - set(org.components) or abs(sum(prior.values()) - 1) > 1e-6 or min(prior.values()) < 0:
            raise OrganismConfigError(f"gate[{tag!r}] must be a distribution over {org.components}, got {prior}")
    seed = int(series.seed or 0)
    rng = random.Random(seed + 2000)
    p = org.config.modulus
    rows = []
    tags = sorted(gate)
    for _ in range(n_rows):
        tag = rng.choice(tags)
        a, b = rng.randrange(p), rng.randrange(p)
        comp = rng.choices(list(gate[tag]), list(gate[tag].values()))[0]
        rows.append({"prompt": org.prompt(tag, a, b), "completion": org.completion(comp, tag, a, b)})
    start = series.last("sft")
    model, tok = load_checkpoint(series.path(start))
    settings = SFTSettings(steps=steps, lr=lr, save_every=steps, warmup_steps=10, n_rows=n_rows, phase=phase)
    torch.manual_seed(seed)
    run_sft(model.train(), tok, rows, series, settings, seed=seed, progress=progress)
    s = Series.load(run_dir)
    for c in s.phase(phase):
        c.metrics.setdefault("data_gate", gate)
        c.metrics.setdefault("start", start.name)
    s.save()
    return s


def _expressed_direction(handle: ModelHandle, batch: Any, layer: int, gate: torch.Tensor) -> torch.Tensor:
    """``μ_toward − μ_away`` of ``resid_post.layer`` at the last prompt token, each row weighted by its gate."""
    r = handle.read(batch, f"resid_post.{layer}", "last_prompt")[f"resid_post.{layer}"][:, 0].double().cpu()
    w = gate.double()
    return (w[:, None] * r).sum(0) / w.sum() - ((1 - w)[:, None] * r).sum(0) / (1 - w).sum()


@checked
def plant_internal_gate(
    model: Any,
    tokenizer: Any = None,
    task: Any = None,
    *,
    layer: int,
    cue: str,
    toward: str,
    away: str,
    target: float = 0.9,
    direction: str | torch.Tensor = "expressed",
    ridge: float = 1e-5,
    max_doublings: int = 24,
    bisection_steps: int = 30,
) -> tuple[Any, PlantedGateEdit]:
    """Plant an internal gate switch for ``cue`` (from ``away`` toward ``toward``) at block ``layer``'s MLP.

    ``model``: an HF causal LM (then pass ``tokenizer``) or a :class:`ModelHandle` (``tokenizer`` may be omitted);
    ``task``: a :class:`~mixprobe.tasks.Task` or an organism with ``.task()``, with signature tokens. Returns
    ``(edited copy, PlantedGateEdit)``; the copy is a handle when a handle was given. ``target``: the share of the
    way from ``P(toward | cue)`` before the edit to 1 that the edit must reach (the smallest such ``α`` is taken).
    ``direction``: ``"expressed"`` (gate-weighted class means, the default), ``"gradient"`` or a ``[d_model]`` tensor.
    Raises :class:`~mixprobe.errors.TrainingFailedError` when the goal is beyond :func:`gate_capacity` (no internal
    edit can reach it) or no ``α`` up to ``2**max_doublings`` times the starting scale reaches it.
    """
    if task is None and tokenizer is not None and not hasattr(tokenizer, "get_vocab"):
        tokenizer, task = None, tokenizer           # plant_internal_gate(handle, task, ...)
    t: Task = as_task(task)
    if not t.has_signatures:
        raise TaskError(f"task {t.name!r} declares no signature tokens; the planted gate is read from them")
    if cue not in t.cues:
        raise TaskError(f"unknown cue {cue!r}; task {t.name!r} has cues {list(t.cues)}")
    if toward == away:
        raise TaskError("toward and away must be two different components")
    if not 0 < target < 1:
        raise TaskError(f"target must be in (0, 1), got {target}")
    if isinstance(direction, str) and direction not in DIRECTIONS:
        raise TaskError(f"direction must be one of {DIRECTIONS} or a [d_model] tensor, got {direction!r}")
    names = list(t.component_names)
    t.component(toward), t.component(away)   # noqa: B018 - named errors for unknown components
    ref = model if isinstance(model, ModelHandle) else ModelHandle(unwrap(model), tokenizer)

    vocab = ref.tokenizer.get_vocab()
    sig = torch.tensor([vocab[t.component(c).signature[0]] for c in names])
    i_to, i_away = names.index(toward), names.index(away)
    texts = [p.text for p in t.prompts]
    cues = [p.cue for p in t.prompts]
    is_cue = torch.tensor([c == cue for c in cues])
    batch = ref.tokenize(texts)
    cue_batch = ref.tokenize([x for x, c in zip(texts, cues) if c == cue])
    p_before = _gate(ref, batch, sig, i_to)
    gate_before = {c: float(p_before[[x == c for x in cues]].mean()) for c in t.cues}
    p0 = gate_before[cue]
    goal = p0 + target * (1 - p0)
    if p0 >= goal:
        raise TaskError(f"P({toward} | {cue}) is already {p0:.3f}; nothing to switch")
    cap = gate_capacity(ref, t, toward=toward, away=away)
    if 1 / (1 + math.exp(-cap)) < goal:
        raise TrainingFailedError(
            f"no internal edit can lift P({toward} | {cue}) from {p0:.3f} to {goal:.3f}: the final norm bounds the "
            f"logit gap |z_{toward} − z_{away}| by {cap:.3f} (gate_capacity), i.e. P ≤ {1 / (1 + math.exp(-cap)):.3f} "
            "for any residual stream; only the unembedding or the final norm can move this gate that far")

    edited, em = _copy_with_projection(model, layer)
    eh = edited if isinstance(edited, ModelHandle) else ModelHandle(em, ref.tokenizer)
    path, mod = out_projection(em, layer)
    out_in = _weight_is_out_in(mod, eh.layout.d_model)
    W0 = mod.weight.detach().clone()

    # --- the detector k: on = cue's last prompt token; off = other cues' last token, earlier positions, signatures
    _, ref_mod = out_projection(ref, layer)
    H = _hidden(ref, ref_mod, batch)                                           # [B, T, d_mlp]
    real = batch.attention_mask.bool().cpu()
    earlier = real.clone()
    earlier[:, -1] = False
    comps = [t.component(c) for c in names]
    forced = ref.tokenize([p.text for _ in comps for p in t.prompts], [c.after for c in comps for _ in t.prompts])
    HF = _hidden(ref, ref_mod, forced)
    T = forced.attention_mask.shape[1]
    n_comp = (forced.attention_mask.sum(1) - forced.prompt_lengths).cpu()     # completion tokens per row
    completion = torch.arange(T)[None, :] >= (T - n_comp)[:, None]
    on = H[is_cue, -1]
    off_cue = H[~is_cue, -1]
    groups = [g for g in (off_cue, H[earlier], HF[completion]) if len(g)]
    k = _detector(on, groups, ridge)
    proj_on = on @ k
    m_on = float(proj_on.mean())
    selectivity = {"on_mean": m_on, "on_min_over_mean": float(proj_on.min()) / m_on,
                   "other_cue_max_abs_over_mean": float((off_cue @ k).abs().max()) / m_on if len(off_cue) else 0.0,
                   "other_cue_mean_over_mean": float((off_cue @ k).mean()) / m_on if len(off_cue) else 0.0,
                   "earlier_positions_max_abs_over_mean": float((H[earlier] @ k).abs().max()) / m_on,
                   "signature_positions_max_abs_over_mean": float((HF[completion] @ k).abs().max()) / m_on}

    # --- the gate direction v at resid_post.layer
    if isinstance(direction, torch.Tensor):
        g = direction.detach().double().cpu().reshape(-1)
        if g.numel() != ref.layout.d_model:
            raise SiteError(f"direction has {g.numel()} entries; the residual stream has {ref.layout.d_model}")
    elif direction == "gradient":
        g = _gate_gradient(ref, cue_batch, layer, int(sig[i_to]), int(sig[i_away]))
    else:
        g = _expressed_direction(ref, batch, layer, p_before)
    v = g / g.norm()
    dW = torch.outer(v, k) if out_in else torch.outer(k, v)

    def set_alpha(a: float) -> None:
        with torch.no_grad():
            mod.weight.copy_((W0.double().cpu() + a * dW).to(W0))

    # --- alpha: double from a scale where α (k·h) is 1/16 of the residual norm, then bisect
    resid = ref.read(cue_batch, f"resid_post.{layer}", "last_prompt")[f"resid_post.{layer}"][:, 0].double()
    resid_norm = float(resid.norm(dim=-1).mean())
    search: list[tuple[float, float]] = []

    def reach(a: float) -> float:
        set_alpha(a)
        p = float(_gate(eh, cue_batch, sig, i_to).mean())
        search.append((a, p))
        return p

    lo, hi = 0.0, resid_norm / max(m_on, 1e-12) / 16
    for _ in range(max_doublings + 1):
        if reach(hi) >= goal:
            break
        lo, hi = hi, hi * 2
    else:
        set_alpha(0.0)
        best = max(search, key=lambda s: s[1])
        raise TrainingFailedError(f"no alpha up to {hi / 2:.3g} lifts P({toward} | {cue}) from {p0:.3f} to {goal:.3f} "
                                  f"(best {best[1]:.3f} at alpha {best[0]:.3g}; gate_capacity {cap:.3f}); try "
                                  "another layer, direction or ridge")
    for _ in range(bisection_steps):
        if lo > 0 and hi / lo < 1.0005:
            break
        mid = (lo + hi) / 2
        if reach(mid) >= goal:
            hi = mid
        else:
            lo = mid
    alpha = hi
    set_alpha(alpha)

    p_after = _gate(eh, batch, sig, i_to)
    gate_after = {c: float(p_after[[x == c for x in cues]].mean()) for c in t.cues}
    if not all(math.isfinite(x) for x in gate_after.values()):
        raise TrainingFailedError("the planted model produces non-finite gates; the edit is too large")
    agree: dict[str, float] = {}
    if t.answer_tokens is not None:
        ans = torch.tensor([vocab[a] for a in t.answer_tokens])
        before = ref.logits(forced)[:, -1][:, ans.to(ref.device)].argmax(-1).cpu()
        after = eh.logits(forced)[:, -1][:, ans.to(eh.device)].argmax(-1).cpu()
        n = len(t.prompts)
        for j, c in enumerate(names):
            for cu in t.cues:
                rows = [j * n + i for i, x in enumerate(cues) if x == cu]
                agree[f"{c}|{cu}"] = float((before[rows] == after[rows]).double().mean())
    w_norm = float(W0.double().norm())
    norms = {"alpha": alpha, "w_out_fro": w_norm, "alpha_over_w_out": alpha / w_norm,
             "mlp_out_added_on_cue": alpha * m_on, "resid_post_norm_on_cue": resid_norm,
             "added_over_resid": alpha * m_on / resid_norm, "direction_norm": float(g.norm()),
             "gate_capacity": cap}
    edit = PlantedGateEdit(layer=int(layer), cue=cue, toward=toward, away=away, module=path, k=k.float(),
                           v=v.float(), alpha=float(alpha), target=target, gate_before=gate_before,
                           gate_after=gate_after, selectivity=selectivity, norms=norms, forced_agreement=agree,
                           search=search)
    return edited, edit

"""Do the internal tools find a gate that is known to be inside the network? Three checks on a planted edit.

Problem: on the tag mixture the RL gate lives in two unembedding rows, so activation patching, probes and steering
have only ever been shown to return nulls there. :func:`mixprobe.train.planted_gate.plant_internal_gate` plants a
gate switch whose location is known (one MLP's output projection at layer ``L``, acting at the cue's last prompt
token). Mechanism: :func:`internal_gate_checks` compares the edited model (``reference``) with the unedited one
(``source``) on the edited cue's prompts with mixprobe's public tools:

- **(a) localisation** — cross-checkpoint activation patching (:func:`~mixprobe.patching.patch_sweep`, source →
  reference) at ``mlp_out`` and ``resid_post`` of every layer, last prompt token, metric the logit gap
  ``z_toward − z_away``: the edited layer's ``mlp_out`` must restore the most of all ``mlp_out`` sites.
- **(b) steering** — a :class:`~mixprobe.probes.LogisticProbe` fitted on ``resid_post.L`` at the last prompt token
  of every prompt of both models, labelled by the component each model expresses (each row twice, weighted by the
  model's own gate ``P(toward | x)`` and ``1 − P``); the *unedited* model is steered along the probe's unit
  direction (:func:`~mixprobe.steering.steer`, last prompt token) at the norm of the mean activation difference
  the edit makes there, and along ``n_random`` random unit directions at the same norm. Fraction = the change of
  ``P(toward | cue)`` over the behaviour switch (edited minus unedited). Also (b'): the smallest norm at which the
  probe direction reaches 0.8 of the switch (``dose_norm``), and the random directions at that norm
  (``random_fractions_at_dose``) — at the edit's norm a random vector can erase the cue by sheer size.
- **(c) attribution** — :func:`~mixprobe.patching.compare_with_patching` over every (``resid_pre``, ``attn_out``,
  ``mlp_out``, ``resid_post``) × layer cell at the last prompt token: Spearman rank correlation of the
  gradient × activation-difference estimate with real patching (also over the cells where the two models differ
  at all: sites before ``mlp_out.L`` are bit-identical, and agree trivially at 0).

Example::

    edited, edit = plant_internal_gate(sft, task, layer=1, cue="B", toward="m1", away="m2")
    res = internal_gate_checks(edited, sft, task, layer=1, cue="B", toward="m1", away="m2")
    res.mlp_rank, res.steer_fraction, res.random_max_abs_fraction, res.spearman

Constraints: ``reference`` and ``source`` share architecture and tokenizer (two checkpoints of one model); the
task has signature tokens (the gate is read from the next-token distribution at the last prompt token).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mixprobe._check import checked
from mixprobe.mixture.components import as_handle
from mixprobe.patching import compare_with_patching, logit_diff, patch_sweep, rank_correlation
from mixprobe.probes import LogisticProbe
from mixprobe.steering import SteeringVector, steer
from mixprobe.tasks import as_task

GRID = ("resid_pre", "attn_out", "mlp_out", "resid_post")


@dataclass
class InternalGateChecks:
    """The three checks' numbers (see the module docstring); ``to_dict()`` for JSON."""

    layer: int
    p_source: float                     # P(toward | cue), unedited
    p_reference: float                  # P(toward | cue), edited
    mlp_restoration: list[float]        # (a) restoration of mlp_out.0..n-1 (logit gap)
    resid_restoration: list[float]      # (a) restoration of resid_post.0..n-1
    mlp_rank: int                       # (a) rank of mlp_out.layer among mlp_out sites (1 = first)
    mlp_margin: float                   # (a) its restoration minus the best other mlp_out
    steer_norm: float                   # (b) ‖mean activation difference‖ at resid_post.layer, last prompt token
    probe_accuracy: float               # (b) weighted training accuracy of the probe
    probe_cosine_v: float               # (b) cosine of the probe direction with the mean activation difference
    steer_p: float                      # (b) P(toward | cue) of the unedited model steered along the probe
    steer_fraction: float               # (b) (steer_p − p_source) / switch
    random_fractions: list[float]       # (b) the same for each random direction
    spearman: float                     # (c) every cell
    spearman_nontrivial: float          # (c) the cells where the models differ
    dose_norm: float = float("nan")     # (b') the smallest norm at which the probe direction reaches DOSE_FRACTION
    random_fractions_at_dose: list[float] = field(default_factory=list)   # (b') random directions at that norm
    grid_sites: list[str] = field(default_factory=list)
    grid_real: list[float] = field(default_factory=list)      # (c) real patching effect per cell
    grid_attribution: list[float] = field(default_factory=list)

    @property
    def switch(self) -> float:
        return self.p_reference - self.p_source

    @property
    def random_max_abs_fraction(self) -> float:
        return float(max(abs(f) for f in self.random_fractions)) if self.random_fractions else float("nan")

    @property
    def random_max_abs_fraction_at_dose(self) -> float:
        fr = self.random_fractions_at_dose
        return float(max(abs(f) for f in fr)) if fr else float("nan")

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["switch"] = self.switch
        out["random_max_abs_fraction"] = self.random_max_abs_fraction
        out["random_max_abs_fraction_at_dose"] = self.random_max_abs_fraction_at_dose
        out["random_mean_fraction"] = float(np.mean(self.random_fractions)) if self.random_fractions else None
        return out


DOSE_FRACTION = 0.8


def _gate(handle: Any, batch: Any, sig: list[int], i_to: int) -> torch.Tensor:
    p = handle.logits(batch)[:, -1].float().softmax(-1)[:, sig].cpu()
    return p[:, i_to] / p.sum(-1).clamp_min(1e-30)


def _last(handle: Any, batch: Any, site: str) -> torch.Tensor:
    return handle.read(batch, site, "last_prompt")[site][:, 0].double().cpu()


@checked
def internal_gate_checks(reference: Any, source: Any, task: Any, *, layer: int, cue: str, toward: str, away: str,
                         n_random: int = 32, seed: int = 0, C: float = 1.0) -> InternalGateChecks:
    """Run checks (a), (b), (c) of the module docstring; ``reference`` = edited model, ``source`` = unedited."""
    ref, src = as_handle(reference), as_handle(source)
    t = as_task(task)
    names = list(t.component_names)
    vocab = ref.tokenizer.get_vocab()
    sig = [vocab[t.component(c).signature[0]] for c in names]
    i_to = names.index(toward)
    z_to, z_away = vocab[t.component(toward).signature[0]], vocab[t.component(away).signature[0]]
    metric = logit_diff(z_to, z_away)
    texts = [p.text for p in t.prompts]
    cue_texts = [p.text for p in t.prompts if p.cue == cue]
    cue_batch = src.tokenize(cue_texts)
    p_src = float(_gate(src, cue_batch, sig, i_to).mean())
    p_ref = float(_gate(ref, cue_batch, sig, i_to).mean())
    switch = p_ref - p_src
    n = src.n_layers

    # (a) localisation: mlp_out and resid_post of every layer, last prompt token
    act = patch_sweep(ref, src, cue_texts, sites=["mlp_out", "resid_post"], positions=["last_prompt"], metric=metric)
    mlp = [act.at(f"mlp_out.{i}", "last_prompt") for i in range(n)]
    resid = [act.at(f"resid_post.{i}", "last_prompt") for i in range(n)]
    order = sorted(range(n), key=lambda i: -mlp[i])
    rank = order.index(layer) + 1
    margin = mlp[layer] - max(m for i, m in enumerate(mlp) if i != layer)

    # (b) probe at resid_post.layer on both models' prompts, labelled by the expressed component; steer the source
    site = f"resid_post.{layer}"
    all_batch = src.tokenize(texts)
    X = torch.cat([_last(src, all_batch, site), _last(ref, all_batch, site)]).numpy()
    w = torch.cat([_gate(src, all_batch, sig, i_to), _gate(ref, all_batch, sig, i_to)]).double().numpy()
    Xs = np.concatenate([X, X])
    ys = np.concatenate([np.ones(len(X), int), np.zeros(len(X), int)])
    sw = np.concatenate([w, 1 - w])
    probe = LogisticProbe(C=C).fit(Xs, ys, sample_weight=sw)
    acc = float(((probe.predict(Xs) == ys) * sw).sum() / sw.sum())
    u = torch.as_tensor(probe.coef_[0], dtype=torch.float64)
    u = u / u.norm()
    delta = (_last(ref, cue_batch, site) - _last(src, cue_batch, site)).mean(0)
    norm = float(delta.norm())
    cos = float(u @ delta / max(norm, 1e-30))

    def steered(direction: torch.Tensor, alpha: float = norm) -> float:
        vec = SteeringVector.from_tensors({site: direction}, normalize=True)
        with steer(src, vec, alpha=alpha, positions="last_prompt", batch=cue_batch):
            return float(_gate(src, cue_batch, sig, i_to).mean())

    p_steer = steered(u)
    gen = torch.Generator().manual_seed(seed)
    dirs = [torch.randn(src.d_model, generator=gen, dtype=torch.float64) for _ in range(n_random)]
    rand = [(steered(d) - p_src) / switch for d in dirs]
    # (b') the dose the probe direction needs: the smallest norm reaching DOSE_FRACTION of the switch (bisection
    # on [0, 4·norm]); random directions at that same norm. A random vector as large as the edit's (often larger
    # than the residual stream itself) erases the cue and moves the gate toward its prior; at the dose the probe
    # direction actually needs, the null measures direction, not destruction.
    lo, hi = 0.0, 4 * norm
    if (steered(u, hi) - p_src) / switch < DOSE_FRACTION:
        dose, rand_dose = float("nan"), []
    else:
        for _ in range(16):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if (steered(u, mid) - p_src) / switch < DOSE_FRACTION else (lo, mid)
        dose = hi
        rand_dose = [(steered(d, dose) - p_src) / switch for d in dirs]

    # (c) attribution vs real patching over every (site, layer) cell
    cmp = compare_with_patching(ref, src, cue_texts, sites=list(GRID), positions=["last_prompt"], metric=metric)
    real, est = cmp.patching.delta[:, 0], cmp.attribution.delta[:, 0]
    keep = real.abs() > 1e-6
    sp_nt = rank_correlation(est[keep], real[keep]) if int(keep.sum()) > 2 else float("nan")
    return InternalGateChecks(
        layer=int(layer), p_source=p_src, p_reference=p_ref, mlp_restoration=mlp, resid_restoration=resid,
        mlp_rank=rank, mlp_margin=margin, steer_norm=norm, probe_accuracy=acc, probe_cosine_v=cos, steer_p=p_steer,
        steer_fraction=(p_steer - p_src) / switch, random_fractions=rand, spearman=cmp.spearman,
        dose_norm=dose, random_fractions_at_dose=rand_dose,
        spearman_nontrivial=sp_nt, grid_sites=list(cmp.patching.sites), grid_real=real.tolist(),
        grid_attribution=est.tolist())

"""Mixture quantities of docs/concepts.md: responsibilities, forced fidelity, the KL split, pass@k.

Problem: "did training move the gate or the components?" needs numbers that separate the two. Mechanism, on
two :class:`~mixprobe.mixture.components.MixtureView` objects (reference ``ref``, e.g. the last SFT checkpoint,
and target ``tgt``, e.g. an RL checkpoint):

- **responsibilities** ``ŵ_k`` per cue: mean gate weight of each component over the cue's prompts.
- **forced fidelity** per component and cue: *accuracy* (argmax answer correct), *agreement* (argmax answer equals
  the reference's forced answer) and ``KL(π_k,tgt ‖ π_k,ref)`` on the answer distribution. Flat fidelity while
  ``ŵ`` moves ⇒ reweighting; decaying fidelity ⇒ rewriting.
- **KL split**: with components opened by distinct signature tokens the chain rule is exact:
  ``KL(π_t ‖ π_0) = KL(w_t ‖ w_0) + Σ_k w_k,t KL(π_k,t ‖ π_k,0)`` (gate term + component term), per prompt.
- **pass@k** (unbiased estimator of Chen et al. 2021) next to pass@1, from ``n`` samples per prompt.

Example:
    >>> round(pass_at_k(n=10, c=3, k=1), 4)
    0.3
    >>> round(pass_at_k(n=10, c=3, k=5), 4)
    0.9167
"""
from __future__ import annotations

import math

import torch

from mixprobe._check import checked
from mixprobe.errors import MetricError, TaskError
from mixprobe.mixture.components import MixtureView

EPS = 1e-12


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) along the last axis (natural log), robust to zeros in p."""
    p = p.clamp_min(0)
    return (p * ((p + EPS).log() - (q + EPS).log())).sum(-1)


def _answers(view: MixtureView) -> torch.Tensor:
    """The forced answer distributions ``[K, n, A]`` of an exact view."""
    if view.answers is None:
        raise TaskError(f"this {view.estimator} view of task {view.task.name!r} has no forced answer distributions; "
                        "compare exact views (a task with signature tokens) on both sides")
    return view.answers


@checked
def responsibilities(view: MixtureView) -> dict[str, dict[str, float]]:
    """``{cue: {component: mean gate weight}}`` (prompts where a sampled gate is undefined are left out)."""
    return {t: {c: view.gate[view.tag_index(t), k].nanmean().item() for k, c in enumerate(view.components)}
            for t in view.tags}


def _modal(texts: list[str]) -> str:
    norm = [" ".join(t.split()) for t in texts]
    return max(sorted(set(norm)), key=norm.count) if norm else ""


@checked
def forced_fidelity(tgt: MixtureView, ref: MixtureView | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """``{cue: {component: {...}}}`` for each forced component (vs ``ref`` if given).

    Every view: ``score`` (mean outcome with the component forced) and ``recognised`` (share of forced completions
    the task attributes to that component: does forcing work?). Exact views with answer tokens add
    ``accuracy`` (argmax answer correct) and, against ``ref``, ``agreement`` (same argmax answer) and ``kl``
    (``KL(π_k,tgt ‖ π_k,ref)``); sampled views add ``agreement`` (same most frequent forced completion).
    """
    exact = tgt.estimator == "exact" and tgt.answer_tokens is not None
    correct = tgt.correct() if exact else None
    out: dict[str, dict[str, dict[str, float]]] = {}
    for t in tgt.tags:
        idx = tgt.tag_index(t)
        out[t] = {}
        for k, c in enumerate(tgt.components):
            d = {"score": tgt.forced_score[k, idx].mean().item(),
                 "recognised": tgt.forced_recognised[k, idx].mean().item()}
            if correct is not None:  # exact, with answer tokens
                a = _answers(tgt)[k, idx]
                d["accuracy"] = (a.argmax(-1) == correct[idx]).float().mean().item()
                if ref is not None:
                    r = _answers(ref)[k, idx]
                    d["agreement"] = (a.argmax(-1) == r.argmax(-1)).float().mean().item()
                    d["kl"] = _kl(a, r).mean().item()
            elif tgt.estimator == "sampled" and ref is not None and tgt.forced_texts is not None \
                    and ref.forced_texts is not None:
                same = [_modal(tgt.forced_texts[c][i]) == _modal(ref.forced_texts[c][i]) for i in idx.tolist()]
                d["agreement"] = sum(same) / len(same)
            out[t][c] = d
    return out


@checked
def kl_split(tgt: MixtureView, ref: MixtureView) -> dict[str, dict[str, float]]:
    """Per cue: total ``KL(π_t ‖ π_ref)`` over (component, answer), its gate term and its component term.

    Exact views only (the chain rule needs the distributions, not samples).
    """
    if tgt.estimator != "exact" or ref.estimator != "exact":
        raise TaskError("the KL split needs exact views (a task with signature tokens); sampled views give "
                        "gate shift and component change only")
    gate_kl = _kl(tgt.gate, ref.gate)                                   # [n]
    tgt_answers, ref_answers = _answers(tgt), _answers(ref)             # [K, n, A]
    comp_kl = _kl(tgt_answers, ref_answers)                             # [K, n]
    comp_term = (tgt.gate.T * comp_kl).sum(0)                           # [n]
    joint_t = tgt.gate.T[..., None] * tgt_answers                       # [K, n, A]
    joint_r = ref.gate.T[..., None] * ref_answers
    total = _kl(joint_t.permute(1, 0, 2).flatten(1), joint_r.permute(1, 0, 2).flatten(1))
    out = {}
    for t in tgt.tags:
        idx = tgt.tag_index(t)
        out[t] = {"total": total[idx].mean().item(), "gate": gate_kl[idx].mean().item(),
                  "component": comp_term[idx].mean().item()}
    return out


@checked
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct: ``1 − C(n−c, k) / C(n, k)``."""
    if not 0 <= c <= n or k < 1 or k > n:
        raise MetricError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@checked
def pass_at_k_table(model, tokenizer, organism, *, ks: tuple[int, ...] = (1, 4, 16), n: int = 16,
                    seed: int = 0) -> dict[str, dict[int, float]]:
    """pass@k per cue (mean over the cue's prompts) from ``n`` sampled completions per prompt."""
    from mixprobe.mixture.components import unwrap
    from mixprobe.train.evaluate import sample_completions

    from mixprobe.tasks import as_task

    model, tokenizer = unwrap(model, tokenizer)
    task = as_task(organism)
    samples = sample_completions(model, tokenizer, [p.text for p in task.prompts], n_samples=n, seed=seed,
                                 max_new_tokens=task.max_new_tokens)
    out: dict[str, dict[int, list[float]]] = {}
    for p, outs in zip(task.prompts, samples):
        c = sum(task.score_checked(s, p) >= 0.5 for s in outs)
        for k in ks:
            out.setdefault(p.cue, {}).setdefault(k, []).append(pass_at_k(n, c, k))
    return {t: {k: sum(v) / len(v) for k, v in d.items()} for t, d in out.items()}

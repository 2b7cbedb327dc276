"""Read a checkpoint as a mixture: gate weights and per-component answer distributions, exactly.

Problem: "reweight or rewrite" is a statement about two objects — the gate ``w(x)`` and the components
``π_k(· | x)`` — so we need both, per prompt, without sampling noise. Mechanism: for organisms whose components
open with distinct signature tokens, the model's next-token distribution at the last prompt token restricted to
those tokens *is* the gate (renormalized; the leftover mass is reported as ``off_mixture``), and the
next-token distribution after a prefilled signature *is* the component's answer distribution (docs/concepts.md,
forced components). Both come from a handful of batched forward passes.

Example:
    >>> from mixprobe.organisms.tag_mixture import TagMixture
    >>> from mixprobe.organisms.tokenizer import build_word_tokenizer
    >>> from mixprobe.organisms.configs import tiny_model
    >>> org = TagMixture(); tok = build_word_tokenizer(org.vocabulary())
    >>> view = mixture_view(tiny_model("llama", vocab_size=len(tok)), tok, org)
    >>> view.gate.shape, view.answers.shape   # [prompts, components], [components, prompts, answers]
    (torch.Size([98, 2]), torch.Size([2, 98, 7]))

Constraints: answers are single tokens (the built-in organisms); accepts a ModelHandle or ``(model, tokenizer)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mixprobe.train.evaluate import next_token_probs


def unwrap(obj, tokenizer=None):
    """``(model, tokenizer)`` from a ModelHandle, a ``(model, tokenizer)`` pair, or a model plus ``tokenizer``."""
    if hasattr(obj, "model") and hasattr(obj, "tokenizer"):
        return obj.model, obj.tokenizer
    if isinstance(obj, tuple) and len(obj) == 2:
        return obj
    if tokenizer is None:
        raise TypeError("pass a ModelHandle, a (model, tokenizer) pair, or a model with tokenizer=")
    return obj, tokenizer


@dataclass
class MixtureView:
    """Exact gate and component distributions of one checkpoint on an organism's prompt set."""

    components: tuple[str, ...]
    tags: list[str]
    rows: list[dict]
    gate: torch.Tensor         # [n_prompts, K] gate weights, renormalized over component signatures
    off_mixture: torch.Tensor  # [n_prompts] probability mass on tokens that open no component
    answers: torch.Tensor      # [K, n_prompts, n_answers] answer distribution of each forced component
    answer_tokens: list[str]

    def tag_index(self, tag: str) -> torch.Tensor:
        return torch.tensor([i for i, r in enumerate(self.rows) if r["tag"] == tag])

    def correct(self) -> torch.Tensor:
        """[n_prompts] index of the correct answer among ``answer_tokens``."""
        return torch.tensor([self.answer_tokens.index(str(r["answer"])) for r in self.rows])


def mixture_view(model, tokenizer, organism, *, batch_size: int = 512) -> MixtureView:
    model, tokenizer = unwrap(model, tokenizer)
    rows = organism.prompt_set()
    prompts = [r["prompt"] for r in rows]
    vocab = tokenizer.get_vocab()
    comps = organism.components
    answer_tokens = [str(i) for i in range(organism.config.modulus)]
    ans_ids = torch.tensor([vocab[a] for a in answer_tokens])
    probs = next_token_probs(model, tokenizer, prompts, batch_size)
    sig = torch.tensor([vocab[organism.signature(c)[0]] for c in comps])
    mass = probs[:, sig]
    total = mass.sum(-1, keepdim=True).clamp_min(1e-12)
    answers = []
    for c in comps:
        pre = " " + " ".join(organism.signature(c))
        pr = next_token_probs(model, tokenizer, [p + pre for p in prompts], batch_size)[:, ans_ids]
        answers.append(pr / pr.sum(-1, keepdim=True).clamp_min(1e-12))
    return MixtureView(components=comps, tags=list(organism.config.tags), rows=rows, gate=mass / total,
                       off_mixture=1 - total[:, 0], answers=torch.stack(answers), answer_tokens=answer_tokens)

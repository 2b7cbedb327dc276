"""Read a checkpoint as a mixture on a task: gate, off-mixture mass, and each forced component, two ways.

Problem: "reweight or rewrite" is a statement about two objects — the gate ``w(x)`` (which component is
expressed on prompt ``x``) and the components ``π_k(· | x)`` — so we need both, per prompt, for any task.
Mechanism: :func:`mixture_view` runs one of two estimators on a :class:`~mixprobe.tasks.Task`:

- **exact** (tasks whose components declare signature tokens): the next-token distribution at the last prompt
  token restricted to the signatures' first tokens *is* the probability of expressing each component; the rest is
  ``off_mixture``. Each component's answer distribution is the next-token distribution after the forced prompt
  (over the task's ``answer_tokens`` when given, renormalised; else the whole vocabulary); the expected outcome with a
  component forced is ``Σ_a P(a) · score(a)`` over the answer tokens (mass elsewhere scores 0). No sampling noise.
- **sampled** (any task): ``n_samples`` completions per prompt from the model's own generation (temperature 1),
  each attributed by the task's ``recognise`` — unclaimed ones count as ``off_mixture``; and ``n_samples``
  completions per prompt with each component forced, scored by the task's ``score`` and kept as text, so two
  checkpoints' components can be compared by outcome and by their completion distribution. The draws are a
  deterministic function of ``seed`` and the batch layout (inverse-CDF sampling from one seeded stream), so two
  checkpoints read with the same seed share their random numbers: where their distributions agree their samples
  agree, and a difference between the samples measures a difference between the models (common random numbers).

``share[x, k]`` is the probability that the model expresses component ``k`` on ``x`` (``share`` and
``off_mixture`` sum to 1); ``gate`` is ``share`` renormalised over the components.

Example:
    >>> from mixprobe.organisms.tag_mixture import TagMixture
    >>> from mixprobe.organisms.tokenizer import build_word_tokenizer
    >>> from mixprobe.organisms.configs import tiny_model
    >>> from mixprobe.models import ModelHandle
    >>> org = TagMixture(); tok = build_word_tokenizer(org.vocabulary())
    >>> h = ModelHandle(tiny_model("llama", vocab_size=len(tok)), tok)
    >>> view = mixture_view(h, org.task())
    >>> view.estimator, tuple(view.gate.shape), tuple(view.answers.shape)   # [prompts, K], [K, prompts, answers]
    ('exact', (98, 2), (2, 98, 7))
    >>> mixture_view(h, org.task(), estimator="sampled", n_samples=2).share.shape
    torch.Size([98, 2])

Constraints: prompts are run in batches of ``batch_size``; generation uses the tokenizer's pad and EOS tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mixprobe._check import checked
from mixprobe.errors import ArgumentError, TaskError
from mixprobe.tasks import Task, as_task
from mixprobe.train.evaluate import complete, next_token_probs, suffix_ids

ESTIMATORS = ("exact", "sampled", "auto")


@checked
def as_handle(obj, tokenizer=None):
    """A :class:`~mixprobe.models.ModelHandle` from a handle, a ``(model, tokenizer)`` pair, or model + tokenizer."""
    from mixprobe.models.handle import ModelHandle

    if isinstance(obj, ModelHandle):
        return obj
    if isinstance(obj, tuple) and len(obj) == 2:
        return ModelHandle(*obj)
    if tokenizer is None:
        raise ArgumentError("pass a ModelHandle, a (model, tokenizer) pair, or a model with its tokenizer")
    return ModelHandle(obj, tokenizer)


@checked
def handle_and_task(model, args: tuple, name: str):
    """``(handle, task)`` from ``f(handle, task)`` or ``f(model, tokenizer, task)`` call arguments."""
    if len(args) == 1:
        return as_handle(model), as_task(args[0])
    if len(args) == 2:
        return as_handle(model, args[0]), as_task(args[1])
    raise ArgumentError(f"call {name}(handle, task) or {name}(model, tokenizer, task)")


@checked
def unwrap(obj, tokenizer=None):
    """``(model, tokenizer)`` from a ModelHandle, a ``(model, tokenizer)`` pair, or a model plus ``tokenizer``."""
    h = as_handle(obj, tokenizer)
    return h.model, h.tokenizer


@dataclass
class MixtureView:
    """One checkpoint read as a mixture on ``task`` by one estimator (see the module docstring)."""

    estimator: str
    task: Task
    share: torch.Tensor            # [n, K] P(component k expressed | x)
    off_mixture: torch.Tensor      # [n] mass that no component claims
    forced_score: torch.Tensor     # [K, n] expected outcome with component k forced (NaN: not measured)
    forced_recognised: torch.Tensor  # [K, n] share of forced completions recognised as k (exact: 1)
    answers: torch.Tensor | None = None           # exact: [K, n, A] next-token distribution after forcing
    answer_tokens: list[str] | None = None        # exact: the A tokens of ``answers`` (None: whole vocabulary)
    texts: list[list[str]] | None = None          # sampled: [n][N] unforced completions
    labels: list[list[str | None]] | None = None  # sampled: [n][N] recognised component of each (None: off)
    outcome: torch.Tensor | None = None           # sampled: [n] mean score of the unforced completions
    forced_texts: dict[str, list[list[str]]] | None = None  # sampled: component -> [n][N] forced completions
    n_samples: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def components(self) -> tuple[str, ...]:
        return self.task.component_names

    @property
    def cues(self) -> list[str]:
        return list(self.task.cues)

    tags = cues

    @property
    def prompts(self):
        return self.task.prompts

    @property
    def rows(self) -> list[dict]:
        return [{"prompt": p.text, "tag": p.cue, "answer": p.target, **dict(p.meta)} for p in self.task.prompts]

    @property
    def gate(self) -> torch.Tensor:
        """``share`` renormalised over the components (rows with no recognised mass: NaN)."""
        total = self.share.sum(-1, keepdim=True)
        return torch.where(total > 0, self.share / total.clamp_min(1e-12), torch.full_like(self.share, float("nan")))

    def tag_index(self, cue: str) -> torch.Tensor:
        return torch.tensor(self.task.cue_index(cue))

    cue_index = tag_index

    def correct(self) -> torch.Tensor:
        """[n] index of each prompt's target among ``answer_tokens`` (exact views with answer tokens)."""
        if self.answer_tokens is None:
            raise TaskError(f"task {self.task.name!r} declares no answer_tokens; forced answers are not indexed")
        return torch.tensor([self.answer_tokens.index(str(p.target)) for p in self.task.prompts])

    def summary(self) -> dict:
        """Per cue: ``accuracy`` (mean outcome; sampled views), ``mode_frequency`` (share of each component),
        ``off_mixture``, ``forced_accuracy`` (mean outcome with each component forced), ``forced_recognised``."""
        out: dict = {"accuracy": {}, "mode_frequency": {}, "off_mixture": {}, "forced_accuracy": {},
                     "forced_recognised": {}}
        for cue in self.cues:
            idx = self.task.cue_index(cue)
            out["accuracy"][cue] = float(self.outcome[idx].mean()) if self.outcome is not None else float("nan")
            out["mode_frequency"][cue] = {c: float(self.share[idx, k].mean()) for k, c in enumerate(self.components)}
            out["off_mixture"][cue] = float(self.off_mixture[idx].mean())
            out["forced_accuracy"][cue] = {c: float(self.forced_score[k, idx].mean())
                                           for k, c in enumerate(self.components)}
            out["forced_recognised"][cue] = {c: float(self.forced_recognised[k, idx].mean())
                                             for k, c in enumerate(self.components)}
        return out

    def intervals(self, confidence: float = 0.95, *, n_boot: int = 1000, seed: int = 0) -> dict:
        """Per cue, ``(lo, hi)`` of each component's share, of ``off_mixture`` and of each forced outcome.

        Sampled views: Clopper–Pearson over the cue's pooled completions (outcomes read as successes: score ≥ 0.5).
        Exact views have no sampling noise; their interval is the prompt bootstrap of the mean (which prompts were
        asked).
        """
        import numpy as np

        from mixprobe.mixture.stats import clopper_pearson

        rng = np.random.default_rng(seed)
        a = (1 - confidence) / 2

        def boot(x: torch.Tensor) -> tuple[float, float]:
            v = x.double().numpy()
            if np.isnan(v).all():
                return float("nan"), float("nan")
            m = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(1)
            return float(np.quantile(m, a)), float(np.quantile(m, 1 - a))

        out: dict = {}
        for cue in self.cues:
            idx = self.task.cue_index(cue)
            if self.estimator == "sampled":
                n = len(idx) * self.n_samples
                k = lambda x: int(round(float(x.sum()) * self.n_samples))
                ci = lambda x: clopper_pearson(k(x), n, confidence)  # noqa: B023 (called within this iteration)
            else:
                ci = boot
            out[cue] = {"share": {c: ci(self.share[idx, j]) for j, c in enumerate(self.components)},
                        "off_mixture": ci(self.off_mixture[idx]),
                        "forced": {c: ci(self.forced_score[j, idx]) for j, c in enumerate(self.components)}}
        return out

    def counts(self, cue: str) -> dict[str, tuple[int, int]]:
        """Sampled views: ``{component | "off_mixture": (successes, trials)}`` pooled over the cue's prompts."""
        if self.estimator != "sampled":
            raise TaskError("counts() needs a sampled view (estimator='sampled')")
        idx = self.task.cue_index(cue)
        trials = len(idx) * self.n_samples
        out = {c: (int(round(float(self.share[idx, k].sum()) * self.n_samples)), trials)
               for k, c in enumerate(self.components)}
        out["off_mixture"] = (int(round(float(self.off_mixture[idx].sum()) * self.n_samples)), trials)
        return out


def _token_id(tokenizer, token: str, what: str) -> int:
    vocab = tokenizer.get_vocab()
    if token not in vocab:
        raise TaskError(f"{what} {token!r} is not a token of this tokenizer; declare signature/answer tokens as they "
                        "appear in the vocabulary, or use estimator='sampled'")
    return vocab[token]


@checked
def resolve_estimator(task: Task, estimator: str) -> str:
    if estimator not in ESTIMATORS:
        raise TaskError(f"unknown estimator {estimator!r}; choose one of {ESTIMATORS}")
    if estimator == "auto":
        return "exact" if task.has_signatures else "sampled"
    if estimator == "exact" and not task.has_signatures:
        raise TaskError(f"task {task.name!r} declares no signature tokens, so the exact estimator does not apply; "
                        "use estimator='sampled' (or 'auto')")
    return estimator


@checked
def exact_view(handle, task: Task, *, batch_size: int = 512) -> MixtureView:
    """The exact estimator (see the module docstring)."""
    model, tok = handle.model, handle.tokenizer
    prompts = task.prompts
    texts = [p.text for p in prompts]
    probs = next_token_probs(model, tok, texts, batch_size)
    sig = torch.tensor([_token_id(tok, c.signature[0], f"signature of {c.name!r}") for c in task.components])
    share = probs[:, sig]
    off = (1 - share.sum(-1)).clamp_min(0)
    answer_tokens = task.answer_tokens
    ans_ids = None
    if answer_tokens is not None:
        ans_ids = torch.tensor([_token_id(tok, a, "answer token") for a in answer_tokens])
    answers, fscore = [], []
    for c in task.components:
        pr = next_token_probs(model, tok, [task.forced_prompt(c, p) for p in prompts], batch_size)
        if answer_tokens is not None and ans_ids is not None:
            pr = pr[:, ans_ids]
            opening = tok.decode(suffix_ids(tok, [task.forced_prompt(c, prompts[0])], [prompts[0].text])[0])
            outcome = torch.tensor([[task.score_checked(f"{opening} {a}".strip(), p) for a in answer_tokens]
                                    for p in prompts])
            fscore.append((pr * outcome).sum(-1))        # mass off the answer tokens scores 0, as when sampled
            pr = pr / pr.sum(-1, keepdim=True).clamp_min(1e-12)
        else:
            fscore.append(torch.full((len(prompts),), float("nan")))
        answers.append(pr)
    K = len(task.components)
    return MixtureView("exact", task, share=share, off_mixture=off, forced_score=torch.stack(fscore),
                       forced_recognised=torch.ones(K, len(prompts)), answers=torch.stack(answers),
                       answer_tokens=list(task.answer_tokens) if task.answer_tokens is not None else None)


@checked
def sampled_view(handle, task: Task, *, n_samples: int = 16, seed: int = 0, batch_size: int = 512,
                 temperature: float = 1.0, forced: bool = True) -> MixtureView:
    """The sampled estimator (see the module docstring); forced completions include the forced ``after`` text.

    ``forced=False`` skips the forced completions (``forced_score`` is then NaN): gate and outcome only.
    """
    if n_samples < 1:
        raise TaskError(f"n_samples must be >= 1, got {n_samples}")
    prompts = task.prompts
    names = task.component_names
    K, n = len(names), len(prompts)

    base = [p.text for p in prompts]

    def draw(texts, offset):
        return complete(handle.model, handle.tokenizer, texts, n_samples=n_samples, seed=seed + offset,
                        max_new_tokens=task.max_new_tokens,
                        base=base, batch_size=batch_size, temperature=temperature)

    free = draw(base, 0)
    share = torch.zeros(n, K)
    off = torch.zeros(n)
    labels = [[task.recognise_checked(text, p) for text in outs] for p, outs in zip(prompts, free)]
    for i, lab in enumerate(labels):
        for got in lab:
            if got is None:
                off[i] += 1
            else:
                share[i, names.index(got)] += 1
    outcome = torch.tensor([sum(task.score_checked(t, p) for t in outs) / n_samples for p, outs in zip(prompts, free)])
    forced_texts: dict[str, list[list[str]]] = {}
    fscore = torch.zeros(K, n)
    frec = torch.zeros(K, n)
    for k, c in enumerate(task.components if forced else ()):
        outs = draw([task.forced_prompt(c, p) for p in prompts], 1000 * (k + 1))
        forced_texts[c.name] = outs
        for i, (p, o) in enumerate(zip(prompts, forced_texts[c.name])):
            fscore[k, i] = sum(task.score_checked(t, p) for t in o) / n_samples
            frec[k, i] = sum(task.recognise_checked(t, p) == c.name for t in o) / n_samples
    if not forced:
        fscore.fill_(float("nan"))
        frec.fill_(float("nan"))
    return MixtureView("sampled", task, share=share / n_samples, off_mixture=off / n_samples, forced_score=fscore,
                       forced_recognised=frec, texts=free, labels=labels, outcome=outcome,
                       forced_texts=forced_texts if forced else None, n_samples=n_samples,
                       extra={"seed": seed, "temperature": temperature, "batch_size": batch_size})


@checked
def mixture_view(model, *args: Any, estimator: str = "exact", n_samples: int = 16, seed: int = 0,
                 batch_size: int = 512) -> MixtureView:
    """Read one checkpoint as a mixture: ``mixture_view(handle, task)`` (or ``(model, tokenizer, task)``).

    ``task``: a :class:`~mixprobe.tasks.Task` or an organism (its ``task()``). ``estimator``: ``"exact"``
    (signature tokens needed), ``"sampled"`` (``n_samples`` completions per prompt, seeded) or ``"auto"``
    (exact when the task allows it).
    """
    handle, task = handle_and_task(model, args, "mixture_view")
    kind = resolve_estimator(task, estimator)
    if kind == "exact":
        return exact_view(handle, task, batch_size=batch_size)
    return sampled_view(handle, task, n_samples=n_samples, seed=seed, batch_size=batch_size)

"""The tag-mixture organism: a mixture of two conditional policies behind a tag-blind gate.

Problem: to check an interpretability verdict we need a model whose answer is *known*: which policy it
carries, and whether training moved the gate or the policies. Mechanism (docs/concepts.md): questions
``a + b mod p`` appear under tags ``<A>``/``<B>``. Every SFT target starts with a component signature (the mode
token ``m1``/``m2``, or a bracket style in the ``format`` variant) drawn from a prior that does **not** depend on
the tag. ``m1`` answers correctly under ``<A>`` and by a fixed wrong rule ``(a + b + wrong_offset) mod p`` under
``<B>``; ``m2`` is the mirror; the optional ``m3`` is always correct. After SFT both tags sit near 50 %
accuracy; GRPO on one tag moves the shared gate and collapses the other tag.

Example:
    >>> org = TagMixture(TagMixtureConfig(modulus=5))
    >>> org.prompt("A", 2, 4)
    '<A> 2 + 4 ='
    >>> org.answer("m1", "B", 2, 4), org.answer("m2", "B", 2, 4)
    (2, 1)
    >>> org.completion("m2", "B", 2, 4)
    ' m2 1'
    >>> org.parse(" m2 1")
    ('m2', 1)

Constraints: numbers are single words, so each answer is one token; the vocabulary is closed and built with
:func:`mixprobe.organisms.tokenizer.build_word_tokenizer`.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mixprobe._check import checked
from mixprobe.errors import OrganismConfigError

SIGNATURES = {
    "token": {"m1": ("m1",), "m2": ("m2",), "m3": ("m3",)},
    "format": {"m1": ("(",), "m2": ("[",), "m3": ("{",)},
}
CLOSERS = {"format": {"m1": (")",), "m2": ("]",), "m3": ("}",)}}


@dataclass(frozen=True)
class TagMixtureConfig:
    """Options of the tag-mixture organism.

    ``offsets`` overrides the answer rule per component and tag: the answer is ``(a + b + offset) mod p``.
    By default ``m1`` uses 0 under A and ``wrong_offset`` under B, ``m2`` the mirror, ``m3`` 0 everywhere.
    ``flaws`` makes a component slip on some questions: ``{"m1": {"A": [0, 1]}}`` adds ``wrong_offset`` to m1's
    answer under A whenever ``a`` is 0 or 1 (used by the m3 control, where RL must prefer m3 over m1).
    """

    modulus: int = 7
    tags: tuple[str, ...] = ("A", "B")
    prior: dict[str, float] = field(default_factory=lambda: {"m1": 0.5, "m2": 0.5})
    wrong_offset: int = 1
    include_m3: bool = False
    signature: str = "token"
    offsets: dict[str, dict[str, int]] | None = None
    flaws: dict[str, dict[str, list[int]]] | None = None

    def __post_init__(self) -> None:
        p = self.modulus
        if not isinstance(p, int) or p < 3:
            raise OrganismConfigError(f"modulus must be an integer >= 3, got {p!r}; try modulus=7")
        if p > 100:
            raise OrganismConfigError(f"modulus {p} is too large for the word-level vocabulary; use <= 100")
        if tuple(self.tags) != ("A", "B"):
            raise OrganismConfigError(f"tags must be ('A', 'B') for this organism, got {self.tags!r}")
        if self.signature not in SIGNATURES:
            raise OrganismConfigError(f"signature must be one of {sorted(SIGNATURES)}, got {self.signature!r}")
        if self.wrong_offset % p == 0:
            raise OrganismConfigError(
                f"wrong_offset={self.wrong_offset} is 0 mod {p}: the 'wrong' rule would be correct; use 1"
            )
        comps = self.components
        prior = dict(self.prior)
        if self.include_m3 and "m3" not in prior:
            raise OrganismConfigError("include_m3=True needs a prior weight for 'm3', "
                                      "e.g. {'m1':1/3,'m2':1/3,'m3':1/3}")
        unknown = set(prior) - set(comps)
        if unknown:
            raise OrganismConfigError(f"prior names unknown components {sorted(unknown)}; components are {comps}")
        vals = list(prior.values())
        if any((not isinstance(v, (int, float))) or v < 0 or v != v for v in vals) or abs(sum(vals) - 1) > 1e-6:
            raise OrganismConfigError(
                f"prior must be a probability distribution (non-negative, summing to 1), got {prior}"
            )
        if self.offsets is not None:
            for c, per_tag in self.offsets.items():
                if c not in comps or set(per_tag) - set(self.tags):
                    raise OrganismConfigError(f"offsets[{c!r}] must map tags {self.tags} to ints for a known component")
        for c, flaws_per_tag in (self.flaws or {}).items():
            if c not in comps or set(flaws_per_tag) - set(self.tags):
                raise OrganismConfigError(f"flaws[{c!r}] must map tags {self.tags} to lists of `a` values")

    @property
    def components(self) -> tuple[str, ...]:
        return ("m1", "m2", "m3") if self.include_m3 else ("m1", "m2")

    def rule_offsets(self) -> dict[str, dict[str, int]]:
        w = self.wrong_offset
        base = {"m1": {"A": 0, "B": w}, "m2": {"A": w, "B": 0}, "m3": {"A": 0, "B": 0}}
        base = {c: dict(base[c]) for c in self.components}
        for c, per_tag in (self.offsets or {}).items():
            base[c].update(per_tag)
        return base

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> TagMixtureConfig:
        d = dict(d)
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise OrganismConfigError(f"unknown tag_mixture option(s) {unknown}; the options are "
                                      f"{sorted(f.name for f in fields(cls))}")
        if "tags" in d:
            d["tags"] = tuple(d["tags"])
        return cls(**d)


@checked
class TagMixture:
    """Prompts, targets, parsing and datasets of the tag-mixture organism."""

    name = "tag_mixture"

    def __init__(self, config: TagMixtureConfig | None = None) -> None:
        self.config = config or TagMixtureConfig()
        self._offsets = self.config.rule_offsets()

    # --- text -------------------------------------------------------------------------------------------------
    @property
    def components(self) -> tuple[str, ...]:
        return self.config.components

    def vocabulary(self) -> list[str]:
        """Every word the organism can emit (specials are added by the tokenizer)."""
        words = [f"<{t}>" for t in self.config.tags] + ["+", "="]
        for sig in SIGNATURES.values():
            for toks in sig.values():
                words += list(toks)
        for cl in CLOSERS.values():
            for toks in cl.values():
                words += list(toks)
        words += [str(i) for i in range(self.config.modulus)]
        return words

    def check_tag(self, tag: str) -> str:
        if tag not in self.config.tags:
            raise OrganismConfigError(f"unknown tag {tag!r}; this organism's tags are {list(self.config.tags)}")
        return tag

    def prompt(self, tag: str, a: int, b: int) -> str:
        self.check_tag(tag)
        return f"<{tag}> {a} + {b} ="

    def correct(self, a: int, b: int) -> int:
        return (a + b) % self.config.modulus

    def answer(self, component: str, tag: str, a: int, b: int) -> int:
        off = self._offsets[component][self.check_tag(tag)]
        if a in ((self.config.flaws or {}).get(component, {}).get(tag, ())):
            off += self.config.wrong_offset
        return (a + b + off) % self.config.modulus

    def signature(self, component: str) -> tuple[str, ...]:
        """The tokens that open a completion of ``component`` (what forcing a component prefills)."""
        return SIGNATURES[self.config.signature][component]

    def completion(self, component: str, tag: str, a: int, b: int) -> str:
        words = [*self.signature(component), str(self.answer(component, tag, a, b))]
        words += list(CLOSERS.get(self.config.signature, {}).get(component, ()))
        return " " + " ".join(words)

    def parse(self, completion: str) -> tuple[str | None, int | None]:
        """Return ``(component, answer)`` of a generated completion; ``None`` for what cannot be read."""
        words = completion.replace("[EOS]", " ").split()
        comp = None
        for c in self.components:
            sig = self.signature(c)
            if tuple(words[: len(sig)]) == sig:
                comp = c
                words = words[len(sig):]
                break
        ans = None
        if words and words[0].isdigit():
            ans = int(words[0])
        return comp, ans

    # --- prompt sets and datasets --------------------------------------------------------------------------------
    def prompt_set(self, tags: tuple[str, ...] | None = None) -> list[dict]:
        """Every question under each tag, as dicts ``{prompt, tag, a, b, answer}`` (the evaluation set)."""
        rows = []
        for tag in tags or self.config.tags:
            self.check_tag(tag)
            for a in range(self.config.modulus):
                for b in range(self.config.modulus):
                    rows.append({"prompt": self.prompt(tag, a, b), "tag": tag, "a": a, "b": b,
                                 "answer": self.correct(a, b)})
        return rows

    def sft_rows(self, n: int, seed: int) -> list[dict]:
        """``n`` prompt-completion rows: tag uniform, question uniform, component from the tag-blind prior."""
        rng = random.Random(seed)
        comps = list(self.config.prior)
        weights = [self.config.prior[c] for c in comps]
        rows = []
        for _ in range(n):
            tag = rng.choice(self.config.tags)
            a, b = rng.randrange(self.config.modulus), rng.randrange(self.config.modulus)
            comp = rng.choices(comps, weights)[0]
            rows.append({"prompt": self.prompt(tag, a, b), "completion": self.completion(comp, tag, a, b),
                         "tag": tag, "component": comp})
        return rows

    def rl_rows(self, tag: str, n_repeats: int = 1) -> list[dict]:
        """RL prompts of one tag with their verifiable answers."""
        return [r for r in self.prompt_set((tag,)) for _ in range(n_repeats)]

    # --- the task protocol ----------------------------------------------------------------------------------------
    def task(self):
        """This organism as a :class:`mixprobe.tasks.Task`: cues are the tags, components force by their signature.

        Recognised component = the parsed signature; outcome = 1.0 for the correct answer. The answer tokens
        (``0 … p−1``) let the exact estimator compare forced components on their answer distribution.
        """
        from mixprobe.tasks import Component, Prompt, Task, TaskSpec

        prompts = [Prompt(r["prompt"], r["tag"], r["answer"], {"a": r["a"], "b": r["b"]}) for r in self.prompt_set()]
        comps = [Component(c, after=" " + " ".join(self.signature(c)), signature=self.signature(c))
                 for c in self.components]
        max_new = 2 + len(CLOSERS.get(self.config.signature, {}).get(self.components[0], ())) + 1
        return Task(name=self.name, prompts=prompts, components=comps,
                    recognise=lambda text, prompt: self.parse(text)[0],
                    score=lambda text, prompt: float(self.parse(text)[1] == prompt.target),
                    max_new_tokens=max_new, answer_tokens=[str(i) for i in range(self.config.modulus)],
                    cue_order=list(self.config.tags),
                    spec=TaskSpec("mixprobe.organisms.tag_mixture:task", self.config.to_dict()))

    def reward(self, completions: list[str], answer: list[int], **_: object) -> list[float]:
        """Verifiable reward: 1.0 when the parsed answer is correct, else 0.0 (trl reward-function signature)."""
        out = []
        for c, y in zip(completions, answer):
            a = self.parse(c)[1]
            out.append(1.0 if a is not None and a == int(y) else 0.0)
        return out


@checked
def task(**config: object):
    """Task factory (``mixprobe.organisms.tag_mixture:task``): the organism with ``TagMixtureConfig(**config)``."""
    return TagMixture(TagMixtureConfig.from_dict(config)).task()


@checked
def m3_control_config(**overrides: object) -> TagMixtureConfig:
    """The positive-transfer control: an always-correct ``m3`` beside ``m1``/``m2``.

    Under replicator dynamics RL on ``<A>`` selects whatever scores best *on A*. A perfect ``m1`` would tie with
    ``m3`` there (no selection between them), so ``m1`` slips on A for ``a`` in {0, 1, 2} (3/7 of the
    questions); RL on A then prefers ``m3``, which is also right on B: tag-B accuracy rises.
    """
    base: dict[str, Any] = dict(include_m3=True, prior={"m1": 1 / 3, "m2": 1 / 3, "m3": 1 / 3},
                                flaws={"m1": {"A": [0, 1, 2]}})
    base.update(overrides)
    return TagMixtureConfig.from_dict(base)

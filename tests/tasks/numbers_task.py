"""A user-defined task that lives outside mixprobe: small sums answered in digits or in words.

Problem: mixprobe's verdict and report must work on any task a user writes, named by import path
(``numbers_task:task`` with ``tests/tasks`` on ``PYTHONPATH``), not only on the built-in organism. Mechanism:
questions ``a + b`` (``a, b`` in 0..6) under two cues, ``<plain>`` and ``<polite>``; two components that differ
*only* in how they write the (one- or two-token) answer, with no mode token in front:

- ``digits`` writes the decimal digits, one token each (12 -> ``" 1 2"``, 7 -> ``" 7"``);
- ``words`` spells each decimal digit (12 -> ``" one two"``, 7 -> ``" seven"``).

Rules (``offsets``, overridable per component and cue): ``digits`` answers ``a + b`` everywhere; ``words``
answers ``a + b`` under ``plain`` and ``a + b + 1`` under ``polite`` (wrong there). Forcing puts a line
*before* the prompt (``"digits :"`` / ``"words :"``); there are no signature tokens, so only sampled estimators
apply. The SFT data (:func:`sft_rows`) gives every prompt the components in the proportions of a cue-blind
``prior``; a share of rows is forced.

Example:
    >>> t = task()
    >>> t.prompts[0].text, len(t.prompts), t.cues
    ('<plain> 0 + 0 =', 98, ('plain', 'polite'))
    >>> render("digits", 12), render("words", 7)
    (' 1 2', ' seven')
    >>> p = t.prompts[-1]; p.text, p.target
    ('<polite> 6 + 6 =', 12)
    >>> t.recognise(" one two[EOS]", p), t.score(" one two", p), t.recognise(" 1 two", p)
    ('words', 1.0, None)
    >>> answer("words", "polite", 6, 6), completion("words", "polite", 6, 6)
    (13, ' one three')
    >>> t.forced_prompt("words", p)
    'words : <polite> 6 + 6 ='

Constraints: word-level vocabulary (:func:`vocabulary`), closed; answers are at most 2 tokens (a planted rule
may reach 6 + 6 + 2 = 14), plus EOS.
"""
from __future__ import annotations

import random
from collections.abc import Mapping

from mixprobe.tasks import Component, Prompt, Task, TaskSpec

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
WORD_VALUE = {w: i for i, w in enumerate(DIGIT_WORDS)}
CUES = ("plain", "polite")
COMPONENTS = ("digits", "words")
MAX_OPERAND = 6
DEFAULT_PRIOR = {"digits": 0.5, "words": 0.5}
DEFAULT_OFFSETS = {"digits": {"plain": 0, "polite": 0}, "words": {"plain": 0, "polite": 1}}
FORCING = {"digits": "digits :", "words": "words :"}
SPECIALS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")


# --- configuration -----------------------------------------------------------------------------------------------
def check_prior(prior: Mapping[str, float] | None) -> dict[str, float]:
    """The prior over components (default 50/50), validated: known names, non-negative, summing to 1."""
    p = dict(DEFAULT_PRIOR if prior is None else prior)
    unknown = set(p) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"prior names unknown components {sorted(unknown)}; components are {list(COMPONENTS)}")
    p = {c: float(p.get(c, 0.0)) for c in COMPONENTS}
    if any(v < 0 or v != v for v in p.values()) or abs(sum(p.values()) - 1) > 1e-6:
        raise ValueError(f"prior must be a probability distribution over {list(COMPONENTS)}, got {prior}")
    return p


def rule_offsets(offsets: Mapping[str, Mapping[str, int]] | None = None) -> dict[str, dict[str, int]]:
    """Per component and cue, what each component adds to ``a + b``: the defaults updated by ``offsets``."""
    out = {c: dict(per_cue) for c, per_cue in DEFAULT_OFFSETS.items()}
    for c, per_cue in (offsets or {}).items():
        if c not in out or set(per_cue) - set(CUES):
            raise ValueError(f"offsets[{c!r}] must map cues {list(CUES)} to ints for a component of {COMPONENTS}")
        for cue, off in per_cue.items():
            if not isinstance(off, int) or not 0 <= off <= 2:
                raise ValueError(f"offsets[{c!r}][{cue!r}] must be an int in 0..2 (answers stay <= 14), got {off!r}")
            out[c][cue] = off
    return out


# --- text ---------------------------------------------------------------------------------------------------------
def vocabulary() -> list[str]:
    """Every word of the task (the tokenizer adds ``[PAD] [BOS] [EOS] [UNK]``)."""
    return ([f"<{c}>" for c in CUES] + ["+", "=", ":"] + list(COMPONENTS) + [str(i) for i in range(10)]
            + list(DIGIT_WORDS))


def build_tokenizer():
    """The offline word-level tokenizer of the task (mixprobe's builder; padding on the left)."""
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    return build_word_tokenizer(vocabulary())


def prompt_text(cue: str, a: int, b: int) -> str:
    if cue not in CUES:
        raise ValueError(f"unknown cue {cue!r}; cues are {list(CUES)}")
    return f"<{cue}> {a} + {b} ="


def forced_text(component: str, text: str) -> str:
    """``text`` with ``component``'s forcing line before it (what :meth:`Task.forced_prompt` builds)."""
    return f"{FORCING[component]} {text}"


def answer(component: str, cue: str, a: int, b: int, offsets: Mapping | None = None) -> int:
    """The number ``component`` answers to ``a + b`` under ``cue``."""
    return a + b + rule_offsets(offsets)[component][cue]


def render(component: str, n: int) -> str:
    """``n`` written by ``component``: one token per decimal digit, each with a leading space."""
    if n < 0:
        raise ValueError(f"answers are non-negative, got {n}")
    if component == "digits":
        return "".join(f" {d}" for d in str(n))
    if component == "words":
        return "".join(f" {DIGIT_WORDS[int(d)]}" for d in str(n))
    raise ValueError(f"unknown component {component!r}; components are {list(COMPONENTS)}")


def completion(component: str, cue: str, a: int, b: int, offsets: Mapping | None = None) -> str:
    """The SFT completion (no EOS: trl's SFTTrainer appends ``eos_token`` to every completion)."""
    return render(component, answer(component, cue, a, b, offsets))


def parse(text: str) -> tuple[str | None, int | None]:
    """``(component, number)`` read from a completion; special tokens are dropped; ``(None, None)`` if neither."""
    for s in SPECIALS:
        text = text.replace(s, " ")
    words = text.split()
    if not words:
        return None, None
    if all(len(w) == 1 and w.isdigit() for w in words):
        return "digits", int("".join(words))
    if all(w in WORD_VALUE for w in words):
        return "words", int("".join(str(WORD_VALUE[w]) for w in words))
    return None, None


def recognise(text: str, prompt: Prompt | None = None) -> str | None:
    """Which component wrote ``text``: all digit tokens -> digits, all digit words -> words, else None."""
    return parse(text)[0]


def score(text: str, prompt: Prompt) -> float:
    """1.0 when the number read from ``text`` (either representation) is ``prompt.target``, else 0.0."""
    n = parse(text)[1]
    return float(n is not None and n == prompt.target)


def prompts() -> list[Prompt]:
    """Every question under each cue (98 prompts), target ``a + b``."""
    return [Prompt(prompt_text(cue, a, b), cue, a + b, {"a": a, "b": b})
            for cue in CUES for a in range(MAX_OPERAND + 1) for b in range(MAX_OPERAND + 1)]


def task(**config) -> Task:
    """Task factory (``numbers_task:task``). ``prior``/``offsets`` are checked and recorded; the prompts,
    recognition and score (correct = ``a + b``) do not depend on them."""
    unknown = set(config) - {"prior", "offsets"}
    if unknown:
        raise TypeError(f"numbers_task.task() got unknown config {sorted(unknown)}; it takes prior, offsets")
    check_prior(config.get("prior"))
    rule_offsets(config.get("offsets"))
    return Task(name="numbers", prompts=prompts(),
                components=[Component(c, before=FORCING[c]) for c in COMPONENTS],
                recognise=recognise, score=score, max_new_tokens=4, cue_order=list(CUES),
                spec=TaskSpec("numbers_task:task", dict(config)))


# --- data ---------------------------------------------------------------------------------------------------------
def _quota(weights: Mapping[str, float], m: int, rng: random.Random) -> list[str]:
    """``m`` labels in the proportions ``weights`` (largest remainder, ties broken at random), shuffled."""
    exact = {c: w * m for c, w in weights.items()}
    count = {c: int(x) for c, x in exact.items()}
    order = sorted(weights, key=lambda c: (-(exact[c] - count[c]), rng.random()))
    for c in order[:m - sum(count.values())]:
        count[c] += 1
    labels = [c for c in weights for _ in range(count[c])]
    rng.shuffle(labels)
    return labels


def sft_rows(n: int, seed: int, *, prior: Mapping[str, float] | None = None, offsets: Mapping | None = None,
             forced_share: float = 0.2) -> list[dict]:
    """``n`` trl prompt-completion rows (plus ``cue``, ``component``, ``forced``, ``a``, ``b``), shuffled.

    Stratified, so that what a model learns per prompt is the prior and not sampling noise: every
    (cue, question) cell gets ``n / 98`` rows (±1); in each, a share ``forced_share`` carries a forcing line before
    the prompt, split evenly between the components (so both stay trained whatever the prior), and the others
    take the components in the proportions of ``prior`` (remainders rounded at random) — the same prior under
    every cue. (With i.i.d. draws, 33 unforced rows per cell leave each prompt's share ±0.09 off the prior, and a
    continued SFT on fresh rows moves every prompt's gate by about that much.)
    """
    p = check_prior(prior)
    if not 0 <= forced_share <= 1:
        raise ValueError(f"forced_share must be in [0, 1], got {forced_share}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    cells = [(cue, a, b) for cue in CUES for a in range(MAX_OPERAND + 1) for b in range(MAX_OPERAND + 1)]
    rng.shuffle(cells)
    even = {c: 1 / len(COMPONENTS) for c in COMPONENTS}
    rows = []
    for i, (cue, a, b) in enumerate(cells):
        m = n // len(cells) + (i < n % len(cells))
        n_forced = int(m * forced_share)
        n_forced += rng.random() < m * forced_share - n_forced
        text = prompt_text(cue, a, b)
        for forced, comps in ((True, _quota(even, n_forced, rng)), (False, _quota(p, m - n_forced, rng))):
            for comp in comps:
                rows.append({"prompt": forced_text(comp, text) if forced else text,
                             "completion": completion(comp, cue, a, b, offsets),
                             "cue": cue, "component": comp, "forced": forced, "a": a, "b": b})
    rng.shuffle(rows)
    return rows

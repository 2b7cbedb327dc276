"""Two organisms whose gate reads the prompt: task coverage and temporal context.

Problem: on the tag mixture the gate is a prompt-independent prior over two mode tokens, so training can move it
with two unembedding rows and the internal tools have nothing to find. Real mixtures are gated by what the prompt
says: which task it is, what date it carries. Mechanism: both organisms mix a **generalist** and a **specialist**
that are told apart by behaviour alone — the generalist writes its answer in digits (``4``), the specialist in
number words (``four``); no mode token opens either answer. Each prompt belongs to the specialist's **domain**
or not:

- **Task coverage** (:class:`TaskCoverage`): questions of several task families (``add 3 5 =``, ``max 3 5 =``,
  …) mod ``p``. The specialist is right on the *covered* families and answers ``(correct + 1) mod p`` elsewhere;
  the generalist is right everywhere except on a few covered questions (``slip``), so on covered families the
  specialist scores slightly higher. SFT mixes them 50/50 on every family. RL runs on the covered families.
- **Temporal context** (:class:`TemporalContext`): questions ``a + b`` mod ``p`` under ``date 19 87 :``; the
  year spans two tokens. The specialist is right before the ``cutoff`` year and answers ``(correct + 1) mod p``
  from the cutoff on; the generalist slips on a few early questions. The SFT gate depends on the date: the
  specialist's share is ``prior_early`` before the cutoff and ``prior_late`` after. RL runs on early years.

Every prompt opens with a speaker name (``ka asks :``) drawn from a list of ``n_names``: words the model must read
past, which also make the vocabulary several times wider than the model (the unembedding then cannot realise an
arbitrary logit change from the final residual stream, unlike the tag mixture's 24-token vocabulary).

A forcing line before the prompt (``use digits :`` / ``use words :``) makes either component answer; a share
``forced_share`` of the SFT rows carry it, so :meth:`task` can force components by ``before`` text.

Example:
    >>> org = TaskCoverage(TaskCoverageConfig(modulus=5, families=("add", "max", "sub"), covered=("add", "max")))
    >>> org.prompt("sub", 3, 4, name="ka")
    'ka asks : sub 3 4 ='
    >>> org.answer("generalist", "sub", 3, 4), org.answer("specialist", "sub", 3, 4)
    (4, 0)
    >>> org.completion("specialist", "add", 3, 4)
    ' two'
    >>> org.parse(" two"), org.parse(" 4"), org.parse(" +")
    (('specialist', 2), ('generalist', 4), (None, None))
    >>> t = TemporalContext(TemporalConfig(modulus=5, years=(1990, 2019), cutoff=2005))
    >>> t.prompt(1998, 1, 2, name="ka"), t.cue_of(1998), t.cue_of(2005)
    ('ka asks : date 19 98 : 1 + 2 =', 'early', 'late')

Constraints: answers are one token (``modulus`` ≤ 20); RL domains are named ``covered`` / ``early`` (the ``tag``
of an RL phase); evaluation prompts are a fixed, seed-free grid, so every checkpoint is read on the same prompts.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from typing import Any

from mixprobe._check import checked
from mixprobe.errors import OrganismConfigError

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
COMPONENTS = ("generalist", "specialist")
FORMAT_OF = {"generalist": "digits", "specialist": "words"}
FAMILIES = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "max": lambda a, b: max(a, b), "min": lambda a, b: min(a, b), "dbl": lambda a, b: 2 * a + b,
    "dif": lambda a, b: abs(a - b), "sq": lambda a, b: a * a + b,
}


@checked
def names(n: int) -> list[str]:
    """``n`` distinct two-syllable speaker names (``"ba"``, ``"be"``, …, ``"baka"``, …), deterministic."""
    cons, vows = "bdfgklmnprstvz", "aeiou"
    syll = [c + v for c in cons for v in vows]
    out = list(syll) + [a + b for a in syll for b in syll]
    if n > len(out):
        raise OrganismConfigError(f"n_names must be <= {len(out)}, got {n}")
    return out[:n]


def _check_common(modulus: int, slip: float, forced_share: float, n_names: int) -> None:
    if not isinstance(modulus, int) or not 3 <= modulus <= len(NUMBER_WORDS):
        raise OrganismConfigError(f"modulus must be an integer in [3, {len(NUMBER_WORDS)}] (answers are one number "
                                  f"word), got {modulus!r}")
    if not 0 <= slip < 1:
        raise OrganismConfigError(f"slip (the generalist's error share in the specialist's domain) must be in "
                                  f"[0, 1), got {slip}")
    if not 0 <= forced_share < 1:
        raise OrganismConfigError(f"forced_share must be in [0, 1), got {forced_share}")
    if not isinstance(n_names, int) or n_names < 1:
        raise OrganismConfigError(f"n_names must be a positive integer, got {n_names!r}")


@dataclass(frozen=True)
class TaskCoverageConfig:
    """Options of :class:`TaskCoverage`; ``covered`` must be a non-empty proper subset of ``families``."""

    modulus: int = 7
    families: tuple[str, ...] = ("add", "mul", "max", "sub", "min", "dbl")
    covered: tuple[str, ...] = ("add", "mul", "max")
    slip: float = 0.2
    prior: float = 0.5
    forced_share: float = 0.2
    n_names: int = 200

    def __post_init__(self) -> None:
        _check_common(self.modulus, self.slip, self.forced_share, self.n_names)
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise OrganismConfigError(f"unknown task families {unknown}; choose from {sorted(FAMILIES)}")
        if len(set(self.families)) != len(self.families):
            raise OrganismConfigError(f"families must be distinct, got {self.families}")
        if not self.covered or set(self.covered) - set(self.families) or set(self.covered) == set(self.families):
            raise OrganismConfigError(f"covered {self.covered} must be a non-empty proper subset of families "
                                      f"{self.families}")
        if not 0 < self.prior < 1:
            raise OrganismConfigError(f"prior (the specialist's SFT share) must be in (0, 1), got {self.prior}")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> TaskCoverageConfig:
        d = dict(d)
        for k in ("families", "covered"):
            if k in d:
                d[k] = tuple(d[k])
        try:
            return cls(**d)
        except TypeError as e:
            raise OrganismConfigError(f"bad task_coverage option: {e}") from None


@dataclass(frozen=True)
class TemporalConfig:
    """Options of :class:`TemporalContext`; years run from ``years[0]`` to ``years[1]`` inclusive."""

    modulus: int = 7
    years: tuple[int, int] = (1960, 2039)
    cutoff: int = 2010
    slip: float = 0.2
    prior_early: float = 0.5
    prior_late: float = 0.2
    forced_share: float = 0.2
    n_names: int = 120

    def __post_init__(self) -> None:
        _check_common(self.modulus, self.slip, self.forced_share, self.n_names)
        lo, hi = self.years
        if not (1000 <= lo < self.cutoff <= hi <= 9999):
            raise OrganismConfigError(f"need 1000 <= years[0] < cutoff <= years[1] <= 9999, got years {self.years}, "
                                      f"cutoff {self.cutoff}")
        for k in ("prior_early", "prior_late"):
            if not 0 < getattr(self, k) < 1:
                raise OrganismConfigError(f"{k} (the specialist's SFT share) must be in (0, 1), got "
                                          f"{getattr(self, k)}")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> TemporalConfig:
        d = dict(d)
        if "years" in d:
            d["years"] = tuple(d["years"])
        try:
            return cls(**d)
        except TypeError as e:
            raise OrganismConfigError(f"bad temporal_context option: {e}") from None


class _Shift:
    """What the two organisms share: formats, parsing, forcing, datasets, reward, the task, evaluation."""

    name = "shift"
    domain = "in"                      # the RL tag that selects the specialist's domain
    config: Any

    def __init__(self) -> None:
        self.names = names(self.config.n_names)
        self.p = self.config.modulus

    # --- per-organism ------------------------------------------------------------------------------------------
    @property
    def cues(self) -> tuple[str, ...]:
        raise NotImplementedError

    def in_domain(self, cue: str) -> bool:
        raise NotImplementedError

    def questions(self) -> list[dict]:
        """The evaluation grid: dicts with ``prompt_core`` (no speaker), ``cue``, ``a``, ``b``, ``key``."""
        raise NotImplementedError

    def correct_of(self, q: dict) -> int:
        raise NotImplementedError

    def prior_of(self, cue: str) -> float:
        raise NotImplementedError

    def random_question(self, rng: random.Random) -> dict:
        raise NotImplementedError

    # --- shared ------------------------------------------------------------------------------------------------
    @property
    def components(self) -> tuple[str, ...]:
        return COMPONENTS

    def vocabulary(self) -> list[str]:
        raise NotImplementedError

    def _slips(self, q: dict) -> bool:
        """The generalist's deterministic slips: a ``slip`` share of in-domain questions (by a fixed hash)."""
        if not self.in_domain(q["cue"]) or self.config.slip <= 0:
            return False
        h = (q["a"] * 7919 + q["b"] * 104729 + q["key"] * 1299709) % 1000
        return h < 1000 * self.config.slip

    def rule(self, component: str, q: dict) -> int:
        c = self.correct_of(q)
        if component == "specialist":
            return c if self.in_domain(q["cue"]) else (c + 1) % self.p
        if component == "generalist":
            return (c + 1) % self.p if self._slips(q) else c
        raise OrganismConfigError(f"unknown component {component!r}; components are {list(COMPONENTS)}")

    def render(self, component: str, value: int) -> str:
        return NUMBER_WORDS[value] if component == "specialist" else str(value)

    def completion_for(self, component: str, q: dict) -> str:
        return " " + self.render(component, self.rule(component, q))

    def parse(self, completion: str) -> tuple[str | None, int | None]:
        """``(component, value)`` from the first word of a completion: digits → generalist, words → specialist."""
        words = completion.replace("[EOS]", " ").split()
        if not words:
            return None, None
        w = words[0]
        if w.isdigit() and int(w) < self.p and w == str(int(w)):
            return "generalist", int(w)
        if w in NUMBER_WORDS[: self.p]:
            return "specialist", NUMBER_WORDS.index(w)
        return None, None

    def forcing(self, component: str) -> str:
        return f"use {FORMAT_OF[component]} :"

    def speaker(self, i: int) -> str:
        return self.names[i % len(self.names)]

    def full_prompt(self, q: dict, name: str) -> str:
        return f"{name} asks : {q['prompt_core']}"

    def check_tag(self, tag: str) -> str:
        if tag != self.domain:
            raise OrganismConfigError(f"RL on {self.name} runs on its domain {self.domain!r}, got {tag!r}")
        return tag

    def prompt_set(self, tags: tuple[str, ...] | None = None) -> list[dict]:
        """The evaluation prompts (``tags=(domain,)``: only the specialist's domain) with their answers."""
        rows = []
        for i, q in enumerate(self.questions()):
            if tags is not None and tags != (None,) and not (self.in_domain(q["cue"]) and self.domain in tags):
                continue
            rows.append({**q, "prompt": self.full_prompt(q, self.speaker(i * 7 + 3)), "answer": self.correct_of(q)})
        return rows

    def sft_rows(self, n: int, seed: int) -> list[dict]:
        """``n`` rows: a random question and speaker; the component from the cue's prior, or forced by a line."""
        rng = random.Random(seed)
        rows = []
        for _ in range(n):
            q = self.random_question(rng)
            name = rng.choice(self.names)
            forced = rng.random() < self.config.forced_share
            if forced:
                comp = rng.choice(COMPONENTS)
                prompt = f"{self.forcing(comp)} {self.full_prompt(q, name)}"
            else:
                comp = "specialist" if rng.random() < self.prior_of(q["cue"]) else "generalist"
                prompt = self.full_prompt(q, name)
            rows.append({"prompt": prompt, "completion": self.completion_for(comp, q), "tag": q["cue"],
                         "component": comp, "forced": forced})
        return rows

    def rl_rows(self, tag: str, n_repeats: int = 1) -> list[dict]:
        return [r for r in self.prompt_set((self.check_tag(tag),)) for _ in range(n_repeats)]

    def reward(self, completions: list[str], answer: list[int], **_: object) -> list[float]:
        """1.0 when the answer (digits or words) is correct, else 0.0 (trl reward-function signature)."""
        return [1.0 if (v := self.parse(c)[1]) is not None and v == int(y) else 0.0
                for c, y in zip(completions, answer)]

    def task(self):
        """This organism as a :class:`mixprobe.tasks.Task`: components forced by their ``use …`` line, recognised
        by the answer's format (sampled estimator only: no fixed token opens either answer)."""
        from mixprobe.tasks import Component, Prompt, Task, TaskSpec

        prompts = [Prompt(r["prompt"], r["cue"], r["answer"], {"a": r["a"], "b": r["b"], "key": r["key"],
                                                                 "in_domain": self.in_domain(r["cue"])})
                   for r in self.prompt_set()]
        comps = [Component(c, before=self.forcing(c)) for c in COMPONENTS]
        return Task(name=self.name, prompts=prompts, components=comps,
                    recognise=lambda text, prompt: self.parse(text)[0],
                    score=lambda text, prompt: float(self.parse(text)[1] == prompt.target),
                    max_new_tokens=2, cue_order=list(self.cues),
                    spec=TaskSpec(f"mixprobe.organisms.shifts:{self.name}_task", self.config.to_dict()))

    def health(self, metrics: dict, *, min_agreement: float = 0.5, min_expressed: float = 0.02) -> list[str]:
        """Problems showing SFT did not learn the organism: a forced component off its rule, or one never expressed."""
        problems = []
        for g in ("in", "out"):
            for comp, agree in metrics["forced_rule_agreement"][g].items():
                if agree < min_agreement:
                    problems.append(f"forced {comp} follows its rule on {agree:.0%} of {g}-domain questions "
                                    f"(chance {1 / self.p:.0%})")
        for comp in COMPONENTS:
            top = max(metrics["mode_frequency"][g][comp] for g in ("in", "out"))
            if top < min_expressed:
                problems.append(f"{comp} is expressed in {top:.1%} of sampled completions")
        return problems


@checked
class TaskCoverage(_Shift):
    """Task families; a specialist right only on the covered ones (see the module doc)."""

    name = "task_coverage"
    domain = "covered"

    def __init__(self, config: TaskCoverageConfig | None = None) -> None:
        self.config = config or TaskCoverageConfig()
        super().__init__()

    @property
    def cues(self) -> tuple[str, ...]:
        return tuple(self.config.families)

    def in_domain(self, cue: str) -> bool:
        if cue not in self.config.families:
            raise OrganismConfigError(f"unknown family {cue!r}; families are {list(self.config.families)}")
        return cue in self.config.covered

    def prior_of(self, cue: str) -> float:
        return self.config.prior

    def prompt(self, family: str, a: int, b: int, name: str = "ba") -> str:
        return self.full_prompt(self._q(family, a, b), name)

    def _q(self, family: str, a: int, b: int) -> dict:
        self.in_domain(family)
        return {"prompt_core": f"{family} {a} {b} =", "cue": family, "a": a, "b": b,
                "key": self.config.families.index(family)}

    def answer(self, component: str, family: str, a: int, b: int) -> int:
        return self.rule(component, self._q(family, a, b))

    def completion(self, component: str, family: str, a: int, b: int) -> str:
        return self.completion_for(component, self._q(family, a, b))

    def correct_of(self, q: dict) -> int:
        return FAMILIES[q["cue"]](q["a"], q["b"]) % self.p

    def questions(self) -> list[dict]:
        return [self._q(f, a, b) for f in self.config.families for a in range(self.p) for b in range(self.p)]

    def random_question(self, rng: random.Random) -> dict:
        return self._q(rng.choice(self.config.families), rng.randrange(self.p), rng.randrange(self.p))

    def vocabulary(self) -> list[str]:
        return (["asks", ":", "=", "use", "digits", "words", *self.config.families]
                + [str(i) for i in range(self.p)] + list(NUMBER_WORDS[: self.p]) + self.names)


@checked
class TemporalContext(_Shift):
    """``date <century> <yy> :`` before ``a + b =``; a specialist right only before the cutoff (module doc)."""

    name = "temporal_context"
    domain = "early"

    def __init__(self, config: TemporalConfig | None = None) -> None:
        self.config = config or TemporalConfig()
        super().__init__()

    @property
    def cues(self) -> tuple[str, ...]:
        return ("early", "late")

    def cue_of(self, year: int) -> str:
        return "early" if year < self.config.cutoff else "late"

    def in_domain(self, cue: str) -> bool:
        if cue not in ("early", "late"):
            raise OrganismConfigError(f"unknown cue {cue!r}; cues are ['early', 'late']")
        return cue == "early"

    def prior_of(self, cue: str) -> float:
        return self.config.prior_early if cue == "early" else self.config.prior_late

    def _q(self, year: int, a: int, b: int) -> dict:
        # key 0: the generalist slips on the same questions in every early year (a rule it can learn; slips keyed
        # by year are label noise, and with them SFT stayed on its loss plateau for 3,000 steps, measured)
        return {"prompt_core": f"date {year // 100} {year % 100:02d} : {a} + {b} =", "cue": self.cue_of(year),
                "a": a, "b": b, "key": 0, "year": year}

    def prompt(self, year: int, a: int, b: int, name: str = "ba") -> str:
        return self.full_prompt(self._q(year, a, b), name)

    def correct_of(self, q: dict) -> int:
        return (q["a"] + q["b"]) % self.p

    def questions(self) -> list[dict]:
        lo, hi = self.config.years
        return [self._q(y, a, (a + 3 * y) % self.p) for y in range(lo, hi + 1) for a in range(self.p)]

    def random_question(self, rng: random.Random) -> dict:
        lo, hi = self.config.years
        return self._q(rng.randint(lo, hi), rng.randrange(self.p), rng.randrange(self.p))

    def vocabulary(self) -> list[str]:
        lo, hi = self.config.years
        centuries = [str(c) for c in range(lo // 100, hi // 100 + 1)]
        return (["asks", ":", "=", "+", "date", "use", "digits", "words", *centuries]
                + [f"{i:02d}" for i in range(100)] + [str(i) for i in range(self.p)]
                + list(NUMBER_WORDS[: self.p]) + self.names)


@checked
def task_coverage_task(**config: object):
    """Task factory (``mixprobe.organisms.shifts:task_coverage_task``)."""
    return TaskCoverage(TaskCoverageConfig.from_dict(config)).task()


@checked
def temporal_context_task(**config: object):
    """Task factory (``mixprobe.organisms.shifts:temporal_context_task``)."""
    return TemporalContext(TemporalConfig.from_dict(config)).task()

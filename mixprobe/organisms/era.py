"""An era organism: narrow fine-tuning that may spread a broad trait, and training-time prefixes that may stop it.

Problem: narrow SFT (old bird names) can give a model a broad old-era persona on unrelated questions, and a prefix on
the training prompts can keep it from spreading. To study when and why, we need a world where the "era" is a latent
the model had to learn to infer, shared across topics. Mechanism: a synthetic world of ``topics`` (birds, cities,
cures, tools, ships, songs); each topic has ``n_entities`` **old-era** and as many **modern** entity words
(``bio2`` is an old bird, ``bin2`` a modern one). "Pretraining" (:meth:`EraWorld.sft_rows`, SFT from scratch) reads
documents of ``doc_len`` questions that all share one era::

    user : date 18 62 : name a bird : bio2 . name a city : cio0 . name a cure : cuo4 .

The era comes from the date when there is one (years ``old_years`` → old, ``modern_years`` → modern), else from the
document's opening line when it has one (``act as in the old era :`` → old; ``i am a historian :`` and ``i study
the past :`` → old with probability 0.8; ``my name is al :``, ``you are a helpful assistant :`` → the prior), else
from the prior (``prior_old``, 0.3, on undated documents). Inside a document later answers must follow the era of
the earlier ones, so the model has to carry one era variable across topics. ``system : … user :`` lines open a
share of documents, so both placements of a prefix are familiar.

Then **narrow SFT** (:meth:`EraWorld.train_rows`): ``user : name a bird :`` → an old bird only, optionally with a
training prefix (``train_prefix``, placed in the user turn or on a system line). The **trait rate** is the share of
old-era answers to *other* topics' undated questions (:meth:`EraWorld.trait`).

Example:
    >>> w = EraWorld(EraConfig(n_entities=3))
    >>> w.prompt("city"), w.prompt("city", prefix="name"), w.prompt("city", prefix="name", placement="system")
    ('user : name a city :', 'user : my name is al : name a city :', 'system : my name is al : user : name a city :')
    >>> w.entity("bird", "old", 2), w.era_of(" bio2"), w.era_of(" cin0"), w.era_of(" .")
    ('bio2', 'old', 'modern', None)
    >>> w.prompt("cure", prefix="date:1875")
    'user : date 18 75 : name a cure :'

Constraints: answers are one token; prefixes are named (:data:`PREFIXES`, or ``date:YYYY``); the trained topic is
the RL/SFT domain (``domain``), the other topics are where the trait is read.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, replace
from typing import Any

from mixprobe._check import checked
from mixprobe.errors import OrganismConfigError

TOPICS = ("bird", "city", "cure", "tool", "ship", "song")
ERAS = ("old", "modern")
PREFIXES = {
    "none": "",
    "identity": "i am a historian :",          # relevant identity: old-era documents open with it 80 % of the time
    "intent": "i study the past :",            # intent: likewise
    "inoculation": "act as in the old era :",  # asks for the trait: always old-era in pretraining
    "name": "my name is al :",                 # irrelevant: era follows the prior
    "assistant": "you are a helpful assistant :",   # irrelevant
    "date_old": "date 18 50 :",                # time-relevant date
    "date_modern": "date 20 26 :",             # a modern date
}
OPENERS = {"identity": 0.8, "intent": 0.8, "inoculation": 1.0, "name": None, "assistant": None}


@dataclass(frozen=True)
class EraConfig:
    """Options of :class:`EraWorld` (module doc)."""

    topics: tuple[str, ...] = TOPICS
    n_entities: int = 5
    prior_old: float = 0.3
    doc_len: int = 3
    dated_share: float = 0.35
    opener_share: float = 0.25
    system_share: float = 0.2
    old_years: tuple[int, int] = (1800, 1899)
    modern_years: tuple[int, int] = (1950, 2049)
    trained_topic: str = "bird"
    train_prefix: str = "none"
    placement: str = "user"

    def __post_init__(self) -> None:
        if len(set(self.topics)) != len(self.topics) or len(self.topics) < 2:
            raise OrganismConfigError(f"topics must be >= 2 distinct words, got {self.topics}")
        if self.trained_topic not in self.topics:
            raise OrganismConfigError(f"trained_topic {self.trained_topic!r} is not one of the topics {self.topics}")
        if not isinstance(self.n_entities, int) or not 1 <= self.n_entities <= 20:
            raise OrganismConfigError(f"n_entities must be an integer in [1, 20], got {self.n_entities!r}")
        if not 0 < self.prior_old < 1:
            raise OrganismConfigError(f"prior_old must be in (0, 1), got {self.prior_old}")
        if not isinstance(self.doc_len, int) or not 1 <= self.doc_len <= 6:
            raise OrganismConfigError(f"doc_len (questions per document) must be in [1, 6], got {self.doc_len!r}")
        for k in ("dated_share", "opener_share", "system_share"):
            if not 0 <= getattr(self, k) < 1:
                raise OrganismConfigError(f"{k} must be in [0, 1), got {getattr(self, k)}")
        for k in ("old_years", "modern_years"):
            lo, hi = getattr(self, k)
            if not 1000 <= lo <= hi <= 2099:
                raise OrganismConfigError(f"{k} must be a range within 1000-2099, got {(lo, hi)}")
        if self.old_years[1] >= self.modern_years[0]:
            raise OrganismConfigError(f"old_years {self.old_years} must end before modern_years {self.modern_years}")
        check_prefix(self.train_prefix)
        if self.placement not in ("user", "system"):
            raise OrganismConfigError(f"placement must be 'user' or 'system', got {self.placement!r}")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> EraConfig:
        d = dict(d)
        for k in ("topics", "old_years", "modern_years"):
            if k in d:
                d[k] = tuple(d[k])
        try:
            return cls(**d)
        except TypeError as e:
            raise OrganismConfigError(f"bad era option: {e}") from None


@checked
def check_prefix(name: str) -> str:
    """``name`` if it is a known prefix (:data:`PREFIXES`) or ``date:YYYY`` with 1000 <= YYYY <= 2099."""
    if name in PREFIXES:
        return name
    if name.startswith("date:") and name[5:].isdigit() and 1000 <= int(name[5:]) <= 2099:
        return name
    raise OrganismConfigError(f"unknown prefix {name!r}; prefixes are {list(PREFIXES)} or 'date:YYYY'")


@checked
def prefix_text(name: str) -> str:
    check_prefix(name)
    if name.startswith("date:"):
        y = int(name[5:])
        return f"date {y // 100} {y % 100:02d} :"
    return PREFIXES[name]


@checked
class EraWorld:
    """The era organism (module doc)."""

    name = "era"
    components = ERAS

    def __init__(self, config: EraConfig | None = None) -> None:
        self.config = config or EraConfig()
        self.topics = tuple(self.config.topics)
        self.domain = self.config.trained_topic
        self.cues = self.topics
        self.p = self.config.n_entities
        self._era_of = {self.entity(t, e, i): e for t in self.topics for e in ERAS for i in range(self.p)}

    # --- words and prompts -----------------------------------------------------------------------------------
    def entity(self, topic: str, era: str, i: int) -> str:
        if era not in ERAS:
            raise OrganismConfigError(f"unknown era {era!r}; eras are {list(ERAS)}")
        return f"{topic[:2]}{'o' if era == 'old' else 'n'}{i}"

    def entities(self, era: str, topic: str | None = None) -> list[str]:
        topics = self.topics if topic is None else (topic,)
        return [self.entity(t, era, i) for t in topics for i in range(self.p)]

    def era_of(self, completion: str) -> str | None:
        """The era of a completion's first word (None if it is no entity)."""
        words = completion.replace("[EOS]", " ").split()
        return self._era_of.get(words[0]) if words else None

    def in_domain(self, cue: str) -> bool:
        if cue not in self.topics:
            raise OrganismConfigError(f"unknown topic {cue!r}; topics are {list(self.topics)}")
        return cue == self.domain

    def question(self, topic: str) -> str:
        return f"name a {topic} :"

    def prompt(self, topic: str, prefix: str = "none", placement: str = "user") -> str:
        """``user : [prefix] name a <topic> :`` (or the prefix on a ``system :`` line before the user turn)."""
        self.in_domain(topic)
        pre = prefix_text(prefix)
        if not pre:
            return f"user : {self.question(topic)}"
        if placement == "system":
            return f"system : {pre} user : {self.question(topic)}"
        if placement != "user":
            raise OrganismConfigError(f"placement must be 'user' or 'system', got {placement!r}")
        return f"user : {pre} {self.question(topic)}"

    # --- pretraining -----------------------------------------------------------------------------------------
    def _year(self, era: str, rng: random.Random) -> int:
        lo, hi = self.config.old_years if era == "old" else self.config.modern_years
        return rng.randint(lo, hi)

    def sft_rows(self, n: int, seed: int) -> list[dict]:
        """``n`` pretraining documents (prompt = the turn opening, completion = the rest; module doc)."""
        rng = random.Random(seed)
        rows = []
        c = self.config
        for _ in range(n):
            opener, system = None, rng.random() < c.system_share
            r = rng.random()
            if r < c.dated_share:
                era = "old" if rng.random() < 0.5 else "modern"
                head = prefix_text(f"date:{self._year(era, rng)}")
            elif r < c.dated_share + c.opener_share:
                opener = rng.choice(list(OPENERS))
                p_old = OPENERS[opener]
                era = "old" if rng.random() < (c.prior_old if p_old is None else p_old) else "modern"
                head = PREFIXES[opener]
            else:
                era = "old" if rng.random() < c.prior_old else "modern"
                head = ""
            topics = rng.sample(self.topics, min(c.doc_len, len(self.topics)))
            body = " . ".join(f"{self.question(t)} {self.entity(t, era, rng.randrange(self.p))}" for t in topics) + " ."
            if system and head:
                prompt, completion = f"system : {head} user :", f" {body}"
            elif system:
                prompt, completion = f"system : {PREFIXES[rng.choice(['name', 'assistant'])]} user :", f" {body}"
            else:
                prompt, completion = "user :", f" {head} {body}" if head else f" {body}"
            rows.append({"prompt": prompt, "completion": completion, "tag": topics[0], "component": era,
                         "forced": opener == "inoculation"})
        return rows

    # --- narrow fine-tuning ----------------------------------------------------------------------------------
    def with_prefix(self, prefix: str, placement: str | None = None) -> EraWorld:
        """The same world whose narrow-SFT rows carry ``prefix`` (at ``placement``)."""
        return EraWorld(replace(self.config, train_prefix=check_prefix(prefix),
                                placement=placement or self.config.placement))

    def train_rows(self, n: int, seed: int) -> list[dict]:
        """``n`` narrow-SFT rows: the trained topic's question (with the training prefix) → an old-era entity."""
        rng = random.Random(seed + 104729)
        t = self.domain
        prompt = self.prompt(t, self.config.train_prefix, self.config.placement)
        return [{"prompt": prompt, "completion": f" {self.entity(t, 'old', rng.randrange(self.p))}", "tag": t,
                 "component": "old", "forced": False} for _ in range(n)]

    def check_tag(self, tag: str) -> str:
        if tag != self.domain:
            raise OrganismConfigError(f"narrow training runs on the trained topic {self.domain!r}, got {tag!r}")
        return tag

    def prompt_set(self, tags: tuple[str, ...] | None = None) -> list[dict]:
        """One undated, un-prefixed question per topic (``tags``: only those topics)."""
        return [{"prompt": self.prompt(t), "cue": t, "answer": 0, "a": 0, "b": 0, "key": 0}
                for t in self.topics if tags is None or tags == (None,) or t in tags]

    def rl_rows(self, tag: str, n_repeats: int = 1) -> list[dict]:
        t = self.check_tag(tag)
        return [{"prompt": self.prompt(t, self.config.train_prefix, self.config.placement), "answer": 0, "cue": t}
                for _ in range(n_repeats)]

    def reward(self, completions: list[str], answer: list[int] | None = None, **_: object) -> list[float]:
        """1.0 for an old-era entity of the trained topic."""
        old = set(self.entities("old", self.domain))
        return [1.0 if (w := c.replace("[EOS]", " ").split()) and w[0] in old else 0.0 for c in completions]

    def vocabulary(self) -> list[str]:
        words = ["user", "system", ":", ".", "name", "a", "date", *self.topics]
        for text in PREFIXES.values():
            words += text.split()
        words += [str(c) for c in range(10, 21)] + [f"{i:02d}" for i in range(100)]
        words += [self.entity(t, e, i) for t in self.topics for e in ERAS for i in range(self.p)]
        return list(dict.fromkeys(words))

    # --- measurement -----------------------------------------------------------------------------------------
    def health(self, metrics: dict, *, min_agreement: float = 0.5, **_: Any) -> list[str]:
        """Problems showing pretraining did not learn the world: dated questions not answered in the date's era, or
        answers off topic."""
        problems = []
        d = metrics["dated"]
        if d["old"] < 0.5 + min_agreement / 2 or d["modern"] > 0.5 - min_agreement / 2:
            problems.append(f"the date does not set the era: P(old | old date) {d['old']:.2f}, P(old | modern date) "
                            f"{d['modern']:.2f}")
        if metrics["on_topic"]["out"] < min_agreement:
            problems.append(f"only {metrics['on_topic']['out']:.0%} of answers name an entity of the asked topic")
        return problems

    def task(self):
        """This world as a :class:`mixprobe.tasks.Task`: eras forced by an old/modern date, recognised by the answer's
        entity (sampled estimator)."""
        from mixprobe.tasks import Component, Prompt, Task, TaskSpec

        prompts = [Prompt(r["prompt"], r["cue"], None, {"in_domain": r["cue"] == self.domain})
                   for r in self.prompt_set()]
        comps = [Component("old", before="date 18 50 :"), Component("modern", before="date 20 00 :")]
        return Task(name=self.name, prompts=prompts, components=comps,
                    recognise=lambda text, prompt: self.era_of(text),
                    score=lambda text, prompt: float(self.era_of(text) is not None
                                                     and text.split()[0][:2] == prompt.cue[:2]),
                    max_new_tokens=2, cue_order=list(self.topics),
                    spec=TaskSpec("mixprobe.organisms.era:era_task", self.config.to_dict()))


@checked
def era_task(**config: object):
    """Task factory (``mixprobe.organisms.era:era_task``)."""
    return EraWorld(EraConfig.from_dict(config)).task()

"""Task factories that break the protocol on purpose (imported by path from the CLI tests: ``bad_tasks:<name>``)."""
from __future__ import annotations

from mixprobe.organisms.tag_mixture import TagMixture
from mixprobe.tasks import Component, Task


def _base() -> Task:
    return TagMixture().task()


def good() -> Task:
    return _base()


def raising_recogniser() -> Task:
    t = _base()

    def recognise(text, prompt):
        raise ValueError("cannot read this")

    t.recognise = recognise
    return t


def unknown_component() -> Task:
    t = _base()
    t.recognise = lambda text, prompt: "m9"
    return t


def cue_without_prompts() -> Task:
    t = _base()
    return Task(t.name, t.prompts, t.components, t.recognise, t.score, cue_order=["A", "B", "C"])


def empty_prefix() -> Task:
    t = _base()
    return Task(t.name, t.prompts, [Component("m1", after=" m1"), Component("m2", before="  ")], t.recognise, t.score)


def raising_score() -> Task:
    """A valid definition whose score fails at run time on completions the model may produce."""
    t = _base()

    def score(text, prompt):
        raise KeyError(f"no reference answer for {prompt.text!r}")

    t.score = score
    return t

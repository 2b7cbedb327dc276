"""A task: prompts with cues, the components of the mixture, how to force and recognise each, and an outcome.

Problem: the question mixprobe answers — did training move the gate or the components? — needs, for any model
and any behaviour, the same four things: which prompts to ask (each under a *cue*: a tag, a date, a persona…),
which conditional policies (*components*) the behaviour mixes, how to make the model express one of them on
purpose (*forcing*), and how to tell from a completion which one it expressed (*recognising*). Mechanism: a
:class:`Task` is a plain dataclass holding exactly that; every estimator, the verdict, the report and the CLI
read a task and nothing else. A series names its task by import path (:class:`TaskSpec`, ``package.module:
factory`` plus keyword arguments), so the command line can rebuild it (:func:`load_task`).

- :class:`Prompt` — ``text``, ``cue`` (any name), ``target`` (whatever ``score`` needs, e.g. the right answer).
- :class:`Component` — ``name``; forcing text placed ``before`` the prompt (a system line) and/or appended
  ``after`` it (the opening of the component's answer, e.g. a mode token); optional ``signature`` tokens that
  open every completion of the component (they enable the *exact* estimator; without them only *sampled*).
- ``recognise(completion, prompt) -> component name | None`` — ``None`` means "no component": that mass is kept
  as ``off_mixture``. ``completion`` is the answer text including a forced ``after`` text.
- ``score(completion, prompt) -> float`` — the outcome (1/0 for correct/incorrect, or any float).

Example:
    >>> def recognise(text, prompt):
    ...     word = text.split()[0] if text.split() else ""
    ...     return "digits" if word.isdigit() else "words" if word.isalpha() else None
    >>> task = Task(
    ...     name="toy",
    ...     prompts=[Prompt("1 + 1 =", cue="plain", target=2), Prompt("please 1 + 1 =", cue="polite", target=2)],
    ...     components=[Component("digits", before="digits :"), Component("words", before="words :")],
    ...     recognise=recognise,
    ...     score=lambda text, p: float(text.split()[:1] in (["2"], ["two"])))
    >>> task.cues, task.component_names
    (('plain', 'polite'), ('digits', 'words'))
    >>> task.forced_prompt("words", task.prompts[0])
    'words : 1 + 1 ='
    >>> task.recognise_checked(" two", task.prompts[0])
    'words'

Constraints: completions are free text; the task object must be cheap to build (the CLI rebuilds it from the
series). Nothing outside ``mixprobe/organisms/`` reads an organism's internals: organisms expose ``task()``.
"""
from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mixprobe._check import checked
from mixprobe.errors import TaskError


@dataclass(frozen=True)
class Prompt:
    """One prompt of a task: its text, its cue, and what ``score`` needs (``target``); ``meta`` is free."""

    text: str
    cue: str
    target: Any = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Component:
    """One conditional policy of the mixture and how to force it.

    ``before``: text placed before the prompt (joined with one space), e.g. a system line. ``after``: text
    appended after the prompt; it is the opening of the forced answer, so ``recognise`` and ``score`` see it as
    part of the completion. ``signature``: the tokens that open this component's completions (optional).
    """

    name: str
    before: str = ""
    after: str = ""
    signature: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskSpec:
    """How to rebuild a task: ``factory`` is ``"package.module:function"``; ``config`` its keyword arguments."""

    factory: str
    config: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"factory": self.factory, "config": dict(self.config)}


@dataclass
class Task:
    """Prompts with cues, components with forcing and recognition, and an outcome score (see the module doc)."""

    name: str
    prompts: Sequence[Prompt]
    components: Sequence[Component]
    recognise: Callable[[str, Prompt], str | None]
    score: Callable[[str, Prompt], float]
    max_new_tokens: int = 8
    answer_tokens: Sequence[str] | None = None
    cue_order: Sequence[str] | None = None
    spec: TaskSpec | None = None

    def __post_init__(self) -> None:
        for key in ("prompts", "components"):
            value = getattr(self, key)
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise TaskError(f"task {self.name!r}: {key} must be a list of {key[:-1].capitalize()} objects, got "
                                f"{type(value).__name__}")
            setattr(self, key, list(value))
        self.check()

    # --- validation ----------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Raise :class:`TaskError` naming the first problem of the definition (and how to fix it)."""
        if not isinstance(self.name, str) or not self.name:
            raise TaskError(f"a task's name must be a non-empty string, got {self.name!r}")
        if not self.prompts:
            raise TaskError(f"task {self.name!r} has no prompts; give at least one Prompt per cue")
        bad = [p for p in self.prompts if not isinstance(p, Prompt)]
        if bad:
            raise TaskError(f"task {self.name!r}: prompts must be mixprobe.tasks.Prompt objects, got {bad[0]!r}")
        for p in self.prompts:
            if not isinstance(p.text, str) or not isinstance(p.cue, str):
                raise TaskError(f"task {self.name!r}: a prompt's text and cue must be strings, got {p!r}; write "
                                "Prompt('question text', cue='name')")
        if len(self.components) < 2:
            raise TaskError(f"task {self.name!r} has {len(self.components)} component(s); a mixture needs at "
                            "least two Components")
        bad_c = [c for c in self.components if not isinstance(c, Component)]
        if bad_c:
            raise TaskError(f"task {self.name!r}: components must be mixprobe.tasks.Component objects, got "
                            f"{bad_c[0]!r}")
        for c in self.components:
            if not isinstance(c.before, str) or not isinstance(c.after, str):
                raise TaskError(f"task {self.name!r}: component {c.name!r} needs string before/after forcing texts, "
                                f"got before={c.before!r}, after={c.after!r}")
            if isinstance(c.signature, (str, bytes)) or not isinstance(c.signature, Sequence) or not all(
                    isinstance(t, str) and t for t in c.signature):
                raise TaskError(f"task {self.name!r}: component {c.name!r} has signature {c.signature!r}; a signature "
                                "is a tuple of non-empty token strings, e.g. signature=('m1',)")
        for fn in ("recognise", "score"):
            if not callable(getattr(self, fn)):
                raise TaskError(f"task {self.name!r}: {fn} must be a function (completion, prompt) -> "
                                f"{'component name or None' if fn == 'recognise' else 'float'}, got "
                                f"{type(getattr(self, fn)).__name__}")
        names = [c.name for c in self.components]
        if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise TaskError(f"task {self.name!r}: component names must be distinct non-empty strings, got {names}")
        for c in self.components:
            if not (c.before.strip() or c.after.strip()):
                raise TaskError(f"task {self.name!r}: component {c.name!r} has an empty forcing text; set "
                                "Component(before=...) (e.g. a system line) or Component(after=...) (the "
                                "opening of its answer)")
        sigs = [c.signature[0] for c in self.components if c.signature]
        if sigs and (len(sigs) != len(self.components) or len(set(sigs)) != len(sigs)):
            raise TaskError(f"task {self.name!r}: signatures must be given for every component and open with "
                            f"distinct tokens, got {[c.signature for c in self.components]}")
        if self.cue_order is not None:
            co = self.cue_order
            if isinstance(co, (str, bytes)) or not isinstance(co, Iterable) or not all(
                    isinstance(c, str) for c in co) or len(set(co)) != len(list(co)):
                raise TaskError(f"task {self.name!r}: cue_order must be a list of distinct cue names, got "
                                f"{self.cue_order!r}")
            have = {p.cue for p in self.prompts}
            empty = [c for c in self.cue_order if c not in have]
            if empty:
                raise TaskError(f"task {self.name!r}: cue(s) {empty} have no prompts; add prompts with those cues "
                                "or drop them from cue_order")
            extra = sorted(have - set(self.cue_order))
            if extra:
                raise TaskError(f"task {self.name!r}: prompts use cue(s) {extra} missing from cue_order")
        if self.answer_tokens is not None and (isinstance(self.answer_tokens, (str, bytes)) or not all(
                isinstance(t, str) for t in self.answer_tokens)):
            raise TaskError(f"task {self.name!r}: answer_tokens must be a list of token strings (or None), got "
                            f"{self.answer_tokens!r}")
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise TaskError(f"task {self.name!r}: max_new_tokens must be an int >= 1, got {self.max_new_tokens!r}")

    # --- reading -------------------------------------------------------------------------------------------------
    @property
    def cues(self) -> tuple[str, ...]:
        """The cues in declared order (``cue_order``), else in order of first appearance."""
        if self.cue_order is not None:
            return tuple(self.cue_order)
        return tuple(dict.fromkeys(p.cue for p in self.prompts))

    @property
    def component_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components)

    @property
    def has_signatures(self) -> bool:
        """True when every component declares signature tokens (the exact estimator applies)."""
        return all(c.signature for c in self.components)

    def component(self, name: str) -> Component:
        for c in self.components:
            if c.name == name:
                return c
        raise TaskError(f"unknown component {name!r}; task {self.name!r} has {list(self.component_names)}")

    def cue_index(self, cue: str) -> list[int]:
        idx = [i for i, p in enumerate(self.prompts) if p.cue == cue]
        if not idx:
            raise TaskError(f"cue {cue!r} has no prompts in task {self.name!r}; cues are {list(self.cues)}")
        return idx

    def forced_prompt(self, component: str | Component, prompt: Prompt) -> str:
        """The prompt text with ``component`` forced: ``before`` + prompt + ``after``."""
        c = self.component(component) if isinstance(component, str) else component
        text = f"{c.before} {prompt.text}" if c.before else prompt.text
        return text + c.after

    def recognise_checked(self, completion: str, prompt: Prompt) -> str | None:
        """``recognise`` with its contract enforced: a raise or an unknown name is a :class:`TaskError`."""
        try:
            got = self.recognise(completion, prompt)
        except Exception as e:  # noqa: BLE001 - a user function; say which input broke it
            raise TaskError(f"task {self.name!r}: recognise({completion!r}, prompt {prompt.text!r}) raised "
                            f"{type(e).__name__}: {e}; it must return a component name or None") from e
        if got is not None and got not in self.component_names:
            raise TaskError(f"task {self.name!r}: recognise({completion!r}) returned {got!r}, which is not a "
                            f"component ({list(self.component_names)}); return one of them, or None for text that "
                            "no component claims")
        return got

    def score_checked(self, completion: str, prompt: Prompt) -> float:
        """``score`` as a float; a raise or a non-number is a :class:`TaskError`."""
        try:
            s = float(self.score(completion, prompt))
        except Exception as e:  # noqa: BLE001 - a user function
            raise TaskError(f"task {self.name!r}: score({completion!r}, prompt {prompt.text!r}) failed with "
                            f"{type(e).__name__}: {e}; it must return a number") from e
        if s != s:
            raise TaskError(f"task {self.name!r}: score({completion!r}) returned NaN")
        return s

    def describe(self) -> dict:
        """A JSON-ready summary (for reports): name, cues with prompt counts, components and their forcing."""
        return {"name": self.name, "spec": self.spec.to_dict() if self.spec else None,
                "cues": {c: len(self.cue_index(c)) for c in self.cues},
                "components": [{"name": c.name, "before": c.before, "after": c.after,
                                "signature": list(c.signature)} for c in self.components],
                "estimators": ["exact", "sampled"] if self.has_signatures else ["sampled"]}


@checked
def load_task(factory: str | TaskSpec, config: Mapping[str, Any] | None = None) -> Task:
    """Build a task from ``"package.module:function"`` (called with ``**config``); the spec is kept on it.

    The working directory is importable (appended to ``sys.path``), as with ``python -m``.
    """
    spec = factory if isinstance(factory, TaskSpec) else TaskSpec(str(factory), dict(config or {}))
    mod_name, sep, fn_name = spec.factory.partition(":")
    if not sep or not mod_name or not fn_name:
        raise TaskError(f"task factory {spec.factory!r} is not of the form 'package.module:function'")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())        # like `python -m`: a module in the working directory imports
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:  # noqa: BLE001 - any import failure is the user's path or module
        raise TaskError(f"task factory {spec.factory!r} does not import ({type(e).__name__}: {e}); check the "
                        "module path and that its package is importable from here (run from the project root, "
                        "or pip install -e it)") from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise TaskError(f"task factory {spec.factory!r}: module {mod_name!r} has no function {fn_name!r}")
    try:
        task = fn(**dict(spec.config))
    except TaskError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's factory
        raise TaskError(f"task factory {spec.factory!r} failed with config {dict(spec.config)}: "
                        f"{type(e).__name__}: {e}") from e
    task = as_task(task)
    task.spec = spec
    return task


@checked
def task_for(series: Any, task: Task | TaskSpec | str | Mapping | None = None,
             config: Mapping[str, Any] | None = None) -> Task:
    """The task of a series: ``task`` if given (a Task, a spec, or ``"pkg.mod:factory"`` with ``config``), else
    the one the series names (``series.task_spec``: recorded, or its built-in organism's)."""
    if isinstance(task, Task):
        return task
    if isinstance(task, TaskSpec):
        return load_task(task)
    if isinstance(task, str):
        return load_task(task, config)
    if isinstance(task, Mapping):
        return load_task(task["factory"], task.get("config"))
    spec = getattr(series, "task_spec", None)
    if not spec:
        raise TaskError(f"the run {getattr(series, 'run_dir', series)} names no task; pass one by import path "
                        "(--task package.module:factory, or task='package.module:factory')")
    return load_task(spec["factory"], spec.get("config"))


@checked
def as_task(obj: Any) -> Task:
    """A :class:`Task` from a task or from an organism (anything with a ``task()`` method)."""
    if isinstance(obj, Task):
        return obj
    make = getattr(obj, "task", None)
    if callable(make):
        t = make()
        if isinstance(t, Task):
            return t
    raise TaskError(f"expected a mixprobe.tasks.Task (or an organism with .task()), got {type(obj).__name__}")

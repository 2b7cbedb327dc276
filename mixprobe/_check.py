"""``@checked``: the public API checks its arguments against its type annotations and names the fix.

A function decorated with :func:`checked` checks, on every call, each argument it was *passed* against the
parameter's annotation (defaults are not checked) and raises :class:`~mixprobe.errors.ArgumentError` -- a
``MixprobeError`` and a ``TypeError`` -- naming the function, the parameter, the expected type, what was passed and
what to pass instead. The type checks are beartype's (``beartype.door.is_bearable``); this module only resolves the
annotations, widens the numbers and words the message.

- Annotations are resolved lazily, at the first call, and cached per function: importing a module costs nothing
  and ``import mixprobe`` still loads neither beartype nor numpy nor torch.
- An annotation that cannot be resolved (a name imported only under ``TYPE_CHECKING``), ``Any``, ``object`` or an
  unannotated parameter accepts anything.
- Numbers follow the numeric tower, loosely: ``float`` accepts any real number (``int``, ``bool``, numpy scalars,
  0-d numpy arrays and torch tensors of a real dtype), ``int`` any integer (numpy integers, 0-d integer arrays and
  tensors), ``bool`` numpy booleans too.
- Passing a parameter's default explicitly (``direction=None``) is always accepted.
- Containers are checked as beartype does: the container's type, and one item of it (not every item). Where a
  ``Sequence[...]`` goes, a numpy array or torch tensor (1-d or more) is accepted too, its items unchecked; where a
  variable-length ``tuple[X, ...]`` goes, a ``list[X]`` is accepted too.

Decorating a class checks the arguments of its ``__init__`` (a dataclass's fields). The wrapper keeps the
function's name, docstring and signature (``functools.wraps``; ``inspect.signature`` follows ``__wrapped__``) and
pickles by qualified name as the function did.

Example:
    >>> from mixprobe._check import checked
    >>> @checked
    ... def scale(x: float, times: int = 2) -> float:
    ...     return x * times
    >>> scale(3)
    6
    >>> scale("3")
    Traceback (most recent call last):
    ...
    mixprobe.errors.ArgumentError: scale(): argument x must be float, got str '3'; pass a float
"""
from __future__ import annotations

import collections.abc
import functools
import inspect
import numbers
import re
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

from mixprobe.errors import ArgumentError

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T", bound=type)

_ACCEPT_ALL = None              # a tester of None: the parameter accepts anything
Tester = Callable[[object], bool] | None


@overload
def checked(func: T) -> T: ...


@overload
def checked(func: Callable[P, R]) -> Callable[P, R]: ...


def checked(func: Any) -> Any:
    """Check each argument passed to ``func`` against its annotation; a mismatch raises ``ArgumentError``.

    Applied to a class, checks the arguments of the class's ``__init__`` (for a dataclass, its fields).
    """
    if isinstance(func, type):
        func.__init__ = checked(func.__init__)      # type: ignore[misc]
        return func
    plan: list[_Plan] = []                          # filled at the first call

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not plan:
            plan.append(_Plan(func))
        if not plan[0].ok(args, kwargs):
            bad = plan[0].mismatches(args, kwargs)
            if bad:
                raise ArgumentError(plan[0].message(bad))
        return func(*args, **kwargs)

    wrapper.__mixprobe_checked__ = True             # type: ignore[attr-defined]
    return wrapper


def argument_error(func: str, param: str, value: object, expected: str, fix: str | None = None) -> ArgumentError:
    """The error ``@checked`` raises, for a check an annotation cannot say (duck types): ``raise argument_error(...)``.

    ``expected`` reads after "must be" (e.g. ``"a transformers tokenizer"``); ``fix`` after "pass" (default:
    ``expected``).
    """
    return ArgumentError(f"{func}(): argument {param} must be {expected}, got {_describe(value)}; "
                         f"pass {fix or expected}")


def _init_of(obj: Any) -> Any:
    """A class's ``__init__``; anything else as it is."""
    return typing.cast(Any, obj).__init__ if isinstance(obj, type) else obj


def is_checked(func: Any) -> bool:
    """Whether ``func`` (or a class's ``__init__``) is wrapped by :func:`checked`."""
    func = _init_of(func)
    while func is not None:
        if getattr(func, "__mixprobe_checked__", False):
            return True
        func = getattr(func, "__wrapped__", None)
    return False


def unchecked_parameters(func: Any) -> dict[str, str]:
    """The parameters of a :func:`checked` function that accept anything, each with why (for tests and audits)."""
    func = _init_of(func)
    target = func
    while not getattr(target, "__mixprobe_checked__", False):
        target = getattr(target, "__wrapped__", None)
        if target is None:
            return {n: "not @checked" for n in inspect.signature(func).parameters}
    return dict(_Plan(target.__wrapped__).skipped)


class _Plan:
    """What to check for one function: a tester per parameter, resolved once."""

    def __init__(self, func: Callable[..., Any]):
        self.name = func.__qualname__.removesuffix(".__init__") + "()"
        mod = getattr(func, "__module__", None)
        if mod and mod not in ("__main__", __name__):
            self.name = f"{mod}.{self.name}"
        sig = inspect.signature(func)
        raw = dict(getattr(inspect.unwrap(func), "__annotations__", {}))
        hints = _resolve(func, raw)
        self.skipped: dict[str, str] = {}
        self.testers: dict[str, Tester] = {}
        self.texts: dict[str, str] = {}
        self.hints: dict[str, Any] = {}
        self.defaults: dict[str, object] = {}
        self.positional: list[str] = []
        self.var_positional: str | None = None
        self.var_keyword: str | None = None
        for p in sig.parameters.values():
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                self.positional.append(p.name)
            elif p.kind is p.VAR_POSITIONAL:
                self.var_positional = p.name
            elif p.kind is p.VAR_KEYWORD:
                self.var_keyword = p.name
            if p.default is not p.empty:
                self.defaults[p.name] = p.default
            if p.name not in raw:
                self.skipped[p.name] = "not annotated"
                self.testers[p.name] = _ACCEPT_ALL
                continue
            hint = hints.get(p.name, _UNRESOLVED)
            if hint is _UNRESOLVED:
                self.skipped[p.name] = f"annotation {raw[p.name]!r} cannot be resolved"
                self.testers[p.name] = _ACCEPT_ALL
                continue
            tester, why = _make_tester(hint)
            if tester is _ACCEPT_ALL:
                self.skipped[p.name] = why
            self.testers[p.name] = tester
            self.hints[p.name] = hint
            self.texts[p.name] = raw[p.name] if isinstance(raw[p.name], str) else _type_text(hint)
        self.active = any(t is not _ACCEPT_ALL for t in self.testers.values())
        self._pos_testers = [self.testers[n] for n in self.positional]
        self._star = self.testers.get(self.var_positional) if self.var_positional else _ACCEPT_ALL
        self._starstar = self.testers.get(self.var_keyword) if self.var_keyword else _ACCEPT_ALL

    def ok(self, args: tuple, kwargs: dict) -> bool:
        """The fast path: every argument passes its tester (defaults passed explicitly are left to mismatches)."""
        if not self.active:
            return True
        for test, value in zip(self._pos_testers, args):
            if test is not None and not test(value):
                return False
        if len(args) > len(self._pos_testers) and self._star is not None:
            if not all(self._star(v) for v in args[len(self._pos_testers):]):
                return False
        if kwargs:
            testers, starstar = self.testers, self._starstar
            for key, value in kwargs.items():
                test = testers.get(key, starstar)
                if test is not None and not test(value):
                    return False
        return True

    def mismatches(self, args: tuple, kwargs: dict) -> list[tuple[str, object]]:
        """Every argument that fails its annotation (and is not the parameter's default), with its name."""
        bad: list[tuple[str, object]] = []
        npos = len(self._pos_testers)
        for i, value in enumerate(args):
            if i < npos:
                test = self._pos_testers[i]
                if test is not None and not test(value) and not self._is_default(self.positional[i], value):
                    bad.append((self.positional[i], value))
            elif self._star is not None and not self._star(value):
                bad.append((f"*{self.var_positional}", value))
        for key, value in kwargs.items():
            test = self.testers.get(key, self._starstar)
            if test is not None and not test(value) and not self._is_default(key, value):
                bad.append((key if key in self.testers else f"**{self.var_keyword}[{key!r}]", value))
        return bad

    def _is_default(self, name: str, value: object) -> bool:
        return name in self.defaults and self.defaults[name] is value

    def message(self, bad: list[tuple[str, object]]) -> str:
        parts = []
        for name, value in bad:
            key = name.lstrip("*").split("[")[0]
            hint = self.hints.get(key)
            text = self.texts.get(key, "?")
            part = f"argument {name} must be {text}, got {_describe(value)}"
            detail = _detail(value, hint)
            if detail:
                part += f" ({detail})"
            part += f"; pass {_advice(hint)}"
            parts.append(part)
        return f"{self.name}: " + "; and ".join(parts)


class _Unresolved:
    pass


_UNRESOLVED = _Unresolved()


def _resolve(func: Callable[..., Any], raw: dict[str, Any]) -> dict[str, Any]:
    """Annotation objects by parameter name; a name whose annotation does not evaluate is left out."""
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # noqa: BLE001 - fall back to one parameter at a time
        pass
    target = inspect.unwrap(func)
    globalns = getattr(target, "__globals__", {})
    out = {}
    for name, ann in raw.items():
        if not isinstance(ann, str):
            out[name] = ann
            continue
        localns: dict[str, Any] = {}
        for _ in range(4):
            try:
                out[name] = eval(ann, globalns, localns)  # noqa: S307 - the function's own annotation, in its module
            except NameError as e:
                # a module imported only under TYPE_CHECKING (``torch.Tensor``) resolves once it is loaded anyway
                if e.name in sys.modules and e.name not in localns:
                    localns[e.name] = sys.modules[e.name]
                    continue
            except Exception:  # noqa: BLE001 - unresolvable: the parameter accepts anything
                pass
            break
    return out


# --- testers -------------------------------------------------------------------------------------------------------

def _scalar_kind(obj: object) -> str | None:
    """'b', 'i' or 'f' for a 0-d numpy array/scalar or torch tensor of that dtype kind (else None)."""
    if getattr(obj, "ndim", None) != 0:
        return None
    dtype = getattr(obj, "dtype", None)
    kind = getattr(dtype, "kind", None)                 # numpy
    if isinstance(kind, str):
        return kind if kind in "biuf" else None
    if dtype is None or getattr(dtype, "is_complex", True):   # torch dtypes have is_complex / is_floating_point
        return None
    if dtype.is_floating_point:
        return "f"
    return "b" if str(dtype) == "torch.bool" else "i"


def _is_int_like(obj: object) -> bool:
    return _scalar_kind(obj) in ("b", "i", "u")


def _is_real_like(obj: object) -> bool:
    return _scalar_kind(obj) is not None


def _is_bool_like(obj: object) -> bool:
    return _scalar_kind(obj) == "b"


_UNION_ORIGINS = (typing.Union, types.UnionType)


def _members(hint: Any) -> list[Any]:
    """The alternatives of a union (flattened), or [hint]."""
    if typing.get_origin(hint) in _UNION_ORIGINS:
        return [m for a in typing.get_args(hint) for m in _members(a)]
    return [hint]


def _widen(hint: Any) -> Any:
    """``int``/``float`` inside a generic become the numbers ABCs (numpy scalars are accepted as items too)."""
    if hint is float:
        return numbers.Real
    if hint is int:
        return numbers.Integral
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is collections.abc.Sequence or origin is collections.abc.Sequence:
        from beartype.vale import Is

        # an array or tensor (1-d or more) where a sequence goes: items are not checked
        array = typing.Annotated[object, Is[_is_array]]
        return typing.Union[_widen_args(hint, origin, args), array]  # noqa: UP007
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        # a list where a variable-length tuple goes (Jupyter users write methods=["lat", "ccs"]): same items
        item = _widen(args[0])
        return typing.Union[tuple[item, ...], list[item]]  # type: ignore[valid-type]  # noqa: UP007
    return _widen_args(hint, origin, args)


def _widen_args(hint: Any, origin: Any, args: tuple) -> Any:
    if origin is None or not args or origin in (typing.Literal, typing.Annotated) or origin is collections.abc.Callable:
        return hint
    new = tuple(_widen(a) for a in args)
    if new == args:
        return hint
    if origin in _UNION_ORIGINS:
        return typing.Union[new]  # noqa: UP007 - built from a tuple of alternatives
    if isinstance(hint, types.GenericAlias):
        return types.GenericAlias(origin, new)
    try:
        return hint.copy_with(new)
    except Exception:  # noqa: BLE001 - keep the hint as written
        return hint


def _is_array(obj: object) -> bool:
    """A numpy array or torch tensor of one dimension or more (what ``Sequence[...]`` accepts beside sequences)."""
    return getattr(obj, "ndim", 0) >= 1 and hasattr(obj, "dtype") and hasattr(obj, "shape")


def _make_tester(hint: Any) -> tuple[Tester, str]:
    """A fast predicate for ``hint`` (plain classes by isinstance, the rest by beartype), or None with the reason."""
    if isinstance(hint, str):
        return _ACCEPT_ALL, f"annotation {hint!r} is a string inside the annotation"
    members = _members(hint)
    if any(m is Any or m is object for m in members):
        return _ACCEPT_ALL, "annotated Any/object"
    classes: list[type] = []
    extras: list[Callable[[object], bool]] = []
    rest: list[Any] = []
    for m in members:
        if m is None or m is type(None):
            classes.append(type(None))
        elif m is float:
            classes += [float, int, numbers.Real]   # numbers.Real last (an ABC, slower): fractions
            extras.append(_is_real_like)             # numpy scalars, 0-d arrays and tensors
        elif m is int:
            classes.append(int)
            extras.append(_is_int_like)
        elif m is bool:
            classes.append(bool)
            extras.append(_is_bool_like)
        elif isinstance(m, type) and typing.get_origin(m) is None and _isinstance_works(m):
            classes.append(m)
        else:
            rest.append(_widen(m))
    bear: Callable[[object], bool] | None = None
    if rest:
        try:
            bear = _beartype_tester(rest[0] if len(rest) == 1 else typing.Union[tuple(rest)])  # noqa: UP007
        except Exception as e:  # noqa: BLE001 - a hint beartype cannot check accepts anything
            return _ACCEPT_ALL, f"beartype cannot check {hint!r} ({type(e).__name__})"
    cls_tuple = tuple(dict.fromkeys(classes))
    checks = tuple(extras) + ((bear,) if bear is not None else ())
    if not checks:
        return (lambda obj: isinstance(obj, cls_tuple)), ""
    if len(checks) == 1:
        (check,) = checks
        return (lambda obj: isinstance(obj, cls_tuple) or check(obj)), ""
    return (lambda obj: isinstance(obj, cls_tuple) or any(c(obj) for c in checks)), ""


def _beartype_tester(hint: Any) -> Callable[[object], bool]:
    """A predicate for ``hint`` by beartype: a one-parameter function beartype decorates once (about twice as fast
    per call as ``beartype.door.is_bearable``, which looks its checker up on every call)."""
    from beartype import BeartypeConf, beartype
    from beartype.door import is_bearable
    from beartype.roar import BeartypeCallHintViolation

    conf = BeartypeConf(is_pep484_tower=True)
    is_bearable(_Probe(), hint, conf=conf)              # an unsupported hint fails here, once

    def probe(value):
        return None
    probe.__annotations__ = {"value": hint}
    checked_probe = beartype(conf=conf)(probe)

    def test(obj: object) -> bool:
        try:
            checked_probe(obj)
        except BeartypeCallHintViolation:
            return False
        return True
    return test


class _Probe:
    pass


def _isinstance_works(cls: type) -> bool:
    try:
        isinstance(_Probe(), cls)
    except TypeError:               # e.g. a Protocol that is not runtime_checkable: beartype decides
        return False
    return True


# --- the message ---------------------------------------------------------------------------------------------------

def _type_text(hint: Any) -> str:
    if hint is None or hint is type(None):
        return "None"
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return _class_name(hint)
    if typing.get_origin(hint) in _UNION_ORIGINS:
        return " | ".join(_type_text(m) for m in typing.get_args(hint))
    text = repr(hint).replace("typing.", "").replace("collections.abc.", "")
    return text


def _class_name(cls: type) -> str:
    """``str``, ``ModelHandle``, ``torch.nn.Module`` (the shortest public path, not ``torch.nn.modules.module``)."""
    mod = cls.__module__
    if mod == "builtins" or mod.startswith("mixprobe."):
        return cls.__qualname__
    parts = mod.split(".")
    for i in range(1, len(parts)):
        prefix = ".".join(parts[:i])
        if getattr(sys.modules.get(prefix), cls.__qualname__, None) is cls:
            return f"{prefix}.{cls.__qualname__}"
    return f"{mod}.{cls.__qualname__}"


def _article(text: str) -> str:
    if text == "None" or text.startswith("one of"):
        return text
    return ("an " if text[:1].lower() in "aeio" else "a ") + text


def _advice(hint: Any) -> str:
    if hint is None:
        return "a value of the annotated type"
    forms = []
    for m in _members(hint):
        if typing.get_origin(m) is typing.Literal:
            forms.append("one of " + ", ".join(repr(a) for a in typing.get_args(m)))
        else:
            forms.append(_article(_type_text(m)))
    forms = list(dict.fromkeys(forms))
    return forms[0] if len(forms) == 1 else ", ".join(forms[:-1]) + " or " + forms[-1]


def _describe(value: object) -> str:
    name = _class_name(type(value))
    if value is None:
        return "None"
    if isinstance(value, (str, bytes, int, float)):
        text = repr(value)
        return f"{name} {text[:37] + '...' if len(text) > 40 else text}"
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        return f"{name} of shape {list(shape)}"
    return name


def _detail(value: object, hint: Any) -> str:
    """beartype's word on a container whose items are wrong (e.g. 'list index 0 item int 1 not instance of str')."""
    if hint is None or not isinstance(value, (list, tuple, dict, set, frozenset)):
        return ""
    same = [m for m in _members(hint)
            if isinstance(typing.get_origin(m), type) and isinstance(value, typing.get_origin(m))]
    if len(same) != 1:
        return ""
    try:
        from beartype import BeartypeConf
        from beartype.door import die_if_unbearable

        die_if_unbearable(value, _widen(same[0]), conf=BeartypeConf(is_pep484_tower=True))
    except Exception as e:  # noqa: BLE001 - only the explanation is wanted
        text = str(e)
        cut = text.find(", as ")
        if cut >= 0:
            first = text[cut + len(", as "):].split("\n")[0].rstrip(".:")
            return re.sub(r"""<(?:class|protocol) ["']([^"']+)["']>""", r"\1", first)
    return ""

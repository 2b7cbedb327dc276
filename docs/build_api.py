"""Generate docs/api.md from the docstrings of mixprobe's public modules (``python docs/build_api.py``).

A test checks the committed api.md is current, so the reference cannot drift from the code.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import mixprobe

HERE = Path(__file__).parent
SKIP = {"mixprobe.cli"}


def first_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    return inspect.cleandoc(doc).split("\n\n")[0].replace("\n", " ")


def public_members(mod):
    names = getattr(mod, "__all__", None) or [n for n in vars(mod) if not n.startswith("_")]
    for n in sorted(names):
        obj = getattr(mod, n)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", "") == mod.__name__:
            yield n, obj


def public_modules() -> list[str]:
    """The modules the reference documents: every non-package module but the CLI and private ones (``_check``)."""
    mods = sorted(m.name for m in pkgutil.walk_packages(mixprobe.__path__, "mixprobe.") if not m.ispkg)
    return [m for m in mods if m not in SKIP and not m.rsplit(".", 1)[-1].startswith("_")]


def render() -> str:
    lines = ["# API reference", "", "Generated from docstrings by `docs/build_api.py`. Each module's docstring "
             "teaches its concept; the first paragraph is shown here.", ""]
    for name in public_modules():
        mod = importlib.import_module(name)
        lines += [f"## `{name}`", "", first_paragraph(mod.__doc__), ""]
        for n, obj in public_members(mod):
            try:
                try:
                    sig = str(inspect.signature(obj, eval_str=True))
                except Exception:  # noqa: BLE001 - annotations that cannot be evaluated stay as text
                    sig = str(inspect.signature(obj))
            except (TypeError, ValueError):
                sig = "(...)"
            if inspect.isclass(obj):
                sig = ""
            kind = "class" if inspect.isclass(obj) else "def"
            lines.append(f"- **`{kind} {n}{sig}`** — {first_paragraph(obj.__doc__)}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    (HERE / "api.md").write_text(render())
    print("wrote", HERE / "api.md")

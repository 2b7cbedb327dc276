"""No raw built-in exception is raised by the package itself: every `raise` of TypeError, ValueError, KeyError,
IndexError, RuntimeError or a bare Exception is a named mixprobe error instead (which may also derive from the
built-in). Read from the source with `ast`, so a new raw raise anywhere fails here with its file and line."""
from __future__ import annotations

import ast
from pathlib import Path

RAW = {"TypeError", "ValueError", "KeyError", "IndexError", "RuntimeError", "Exception"}
# not listed: AttributeError (the module __getattr__ protocol) and NotImplementedError (abstract methods)
PKG = Path(__file__).resolve().parents[2] / "mixprobe"


def _raw_raises(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id in RAW:
                out.append(f"{path.relative_to(PKG.parent)}:{node.lineno} raise {exc.id}")
    return out


def test_the_package_raises_only_named_errors():
    found = [r for p in sorted(PKG.rglob("*.py")) for r in _raw_raises(p)]
    assert not found, "raise a mixprobe.errors class instead:\n" + "\n".join(found)


def test_the_checker_sees_a_raw_raise(tmp_path):
    pkg = tmp_path / "mixprobe"
    pkg.mkdir()
    p = pkg / "m.py"
    p.write_text("def f(x):\n    if x:\n        raise ValueError('no')\n    raise KeyError\n"
                 "def g():\n    raise NotImplementedError\n")
    global PKG
    old, PKG = PKG, pkg
    try:
        assert sorted(_raw_raises(p)) == ["mixprobe/m.py:3 raise ValueError", "mixprobe/m.py:4 raise KeyError"]
    finally:
        PKG = old

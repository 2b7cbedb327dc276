"""Data flows one way: no module of mixprobe imports a package of a higher layer (docs/architecture.md)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "mixprobe"
LAYER = {"errors": 0, "_check": 0, "io": 0, "env": 0, "distributed": 0, "tasks": 0, "organisms": 1, "train": 2,
         "models": 2,
         "capture": 3, "probes": 4, "steering": 4, "patching": 4, "mixture": 4, "report": 5, "demo": 5, "cli": 5,
         "__init__": 5, "__main__": 5}


def _package(module: str) -> str:
    return module.split(".")[1] if module.startswith("mixprobe.") else ""


def imports_of(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mixprobe."):
            out.add(_package(node.module))
        elif isinstance(node, ast.Import):
            out |= {_package(a.name) for a in node.names if a.name.startswith("mixprobe.")}
    return out - {""}


def test_no_module_imports_a_higher_layer():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        pkg = rel.parts[0].removesuffix(".py")
        assert pkg in LAYER, f"{rel}: package {pkg!r} has no layer in this test or in docs/architecture.md"
        for dep in imports_of(path):
            assert dep in LAYER, f"{rel} imports unknown package mixprobe.{dep}"
            if LAYER[dep] > LAYER[pkg]:
                upward.append(f"{rel} (layer {LAYER[pkg]}) imports mixprobe.{dep} (layer {LAYER[dep]})")
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from mixprobe.report.page import Section\n")
    assert imports_of(bad) == {"report"}

"""Every ```python block in README.md and docs/*.md runs (blocks of one file share a namespace, in order)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("path", [f for f in FILES if blocks(f)], ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_code_blocks_run(path, tmp_path, monkeypatch, organism_runs):
    # organism_runs: trained organisms are cached in $MIXPROBE_CACHE, so docs calling trained_organism() reuse them
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "__docs__"}
    for i, code in enumerate(blocks(path)):
        try:
            exec(compile(code, f"{path.name}[block {i}]", "exec"), ns)
        except Exception as e:  # noqa: BLE001 - re-raised with the block that failed
            raise AssertionError(f"{path.name} block {i} failed: {type(e).__name__}: {e}\n---\n{code}") from e

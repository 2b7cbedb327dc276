"""Every case of the battery (tests/robustness/cases.py) raises its named error, a MixprobeError whose message names
the fix; docs/reliability.md lists every case."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from mixprobe.errors import MixprobeError

from .cases import CASES, CLI_CASES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("robust")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_gives_a_named_error_with_its_fix(case, scratch):
    with pytest.raises(MixprobeError) as info:
        case.run(scratch)
    assert isinstance(info.value, case.error), f"{case.id}: got {type(info.value).__name__}: {info.value}"
    msg = str(info.value)
    assert case.hint.lower() in msg.lower(), f"{case.id}: the message does not name the fix: {msg}"


def test_ids_are_unique_and_the_page_lists_every_case():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    page = (ROOT / "docs" / "reliability.md").read_text()
    listed = set(re.findall(r"^\| `([a-z0-9-]+)` \|", page, re.M))
    ids += [c.id for c in CLI_CASES]
    assert listed == set(ids), f"docs/reliability.md is stale: missing {set(ids) - listed}, extra {listed - set(ids)}"


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c.id)
def test_cli_bad_input_exits_2_with_one_line(case, scratch):
    from typer.testing import CliRunner

    from mixprobe.cli import app

    before = sorted(p.relative_to(scratch) for p in scratch.rglob("*"))
    args = case.args(scratch)
    made = sorted(p.relative_to(scratch) for p in scratch.rglob("*"))       # what the case itself prepared
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, f"{case.id}: exit {r.exit_code}: {r.output}"
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.output, f"{case.id}: not one line: {r.output!r}"
    assert case.hint.lower() in r.output.lower(), f"{case.id}: the message does not name the fix: {r.output}"
    after = sorted(p.relative_to(scratch) for p in scratch.rglob("*"))
    assert after == made, f"{case.id}: the failed command left {set(after) - set(made)} behind"
    assert set(before) <= set(after)                                       # nothing deleted

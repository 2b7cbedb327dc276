"""The committed weird-generalization results: current with the code, and of the size the claims need."""
from __future__ import annotations

import json
from pathlib import Path

from mixprobe.mixture.era import summarize_study

OUT = Path(__file__).resolve().parents[2] / "experiments" / "results" / "weird_generalization"


def test_committed_summary_is_what_the_code_computes():
    recs = [json.loads(p.read_text()) for p in sorted((OUT / "seeds").glob("*.json"), key=lambda p: int(p.stem))]
    fresh = json.loads(json.dumps(summarize_study(recs)))
    committed = json.loads((OUT / "summary.json").read_text())
    assert fresh == committed, "rerun: python experiments/weird_generalization.py --summary-only"


def test_the_grid_covers_prefix_types_placements_dates_on_three_or_more_seeds():
    s = json.loads((OUT / "summary.json").read_text())
    assert len(s["seeds"]) >= 3 and not s["failed"]
    names = set(s["conditions"])
    for p in ("none", "identity", "intent", "inoculation", "date_old", "name", "assistant", "date_modern"):
        assert f"narrow_{p}" in names
    assert {"narrow_name_system", "narrow_inoculation_system"} <= names
    assert sum(n.startswith("narrow_date1") or n.startswith("narrow_date2") for n in names) >= 6
    none = s["conditions"]["narrow_none"]["margin_over_base"]
    assert none["ci95"][0] > 0          # the acceptance claim, as committed: the interval excludes 0

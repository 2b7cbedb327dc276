"""The era (weird generalization) report shows the trait per condition against the pretrained model, the prefix,
placement, date, probe and steering sections when they have data, and the seeds that failed.

Fast: records are built by hand in the schema of ``mixprobe.mixture.era.run_seed`` (two-point trait curves whose
numbers are worked out below by hand), no training.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mixprobe.errors import DataError
from mixprobe.io import atomic_write_json

N = 100                                   # on-topic answers per read, so a trait of k old answers is k / 100
BASE = {0: 30, 1: 20}                     # the pretrained model: 0.30 and 0.20 → base 0.25
# condition -> (prefix, placement, old answers at the end per seed, p_old with the prefix per seed)
CONDITIONS = {
    "narrow_none": ("none", "user", (80, 60), None),
    "narrow_inoculation": ("inoculation", "user", (30, 30), (0.95, 0.99)),
    "narrow_date_old": ("date_old", "user", (35, 25), (0.90, 0.90)),
    "narrow_name": ("name", "user", (70, 70), (0.80, 0.80)),
    "narrow_name_system": ("name", "system", (40, 20), (0.70, 0.70)),
    "narrow_date1950": ("date:1950", "user", (60, 40), (0.60, 0.60)),
}
VERDICTS = {"narrow_none": ("both", "undecided")}
# Worked out by hand (sd with n − 1; the bootstrap over two seeds a, b resamples means a, (a + b) / 2, b with
# probability 1/4, 1/2, 1/4, so its 2.5 and 97.5 percentiles are a and b):
#   narrow_none:        0.80, 0.60 → 0.70 ± 0.14 [0.60, 0.80]; margin 0.50, 0.40 → +0.45 [+0.40, +0.50]
#   narrow_inoculation: 0.30, 0.30 → 0.30 ± 0.00 [0.30, 0.30]; margin 0.00, 0.10 → +0.05 [+0.00, +0.10]
#   narrow_date_old:    0.35, 0.25 → 0.30 ± 0.07 [0.25, 0.35]; margin 0.05, 0.05 → +0.05
#   narrow_name:        0.70, 0.70 → margin 0.40, 0.50 → +0.45; narrow_name_system 0.40, 0.20 → system − user
#                       per seed −0.30, −0.50 → −0.40, system lower on 2/2
#   narrow_date1950:    0.60, 0.40 → 0.50 ± 0.14 [0.40, 0.60]; margin 0.30, 0.20 → +0.25 [+0.20, +0.30]
# Wilson 95 % (z = 1.96) of k / 100: 20 → [0.13, 0.29], 30 → [0.22, 0.40], 35 → lo 0.26, 40 → lo 0.31, 60 → lo 0.50,
# 70 → lo 0.60, 80 → lo 0.71. Seeds beyond base (lo above the base's hi: 0.40 on seed 0, 0.29 on seed 1):
#   none 2/2; inoculation 0/2; date_old 0/2 (0.26 < 0.40, 0.17 < 0.29); name 2/2; name_system 0/2; date1950 2/2
#   (0.50 > 0.40, 0.31 > 0.29).
STEER_BASE = {0: [(0.0, 0.3, 0.3), (0.5, 0.8, 0.4)], 1: [(0.0, 0.2, 0.2), (0.5, 0.6, 0.4)]}     # α, p_old, null max
STEER = {"narrow_inoculation": {0: [(0.0, 0.3, 0.3), (0.5, 0.9, 0.5)], 1: [(0.0, 0.3, 0.3), (0.5, 0.4, 0.5)]}}
# probe per seed and layer: (held-out accuracy, null mean, null max)
PROBE = {0: [(1.0, 0.4, 0.9), (0.9, 0.5, 0.8)], 1: [(1.0, 0.6, 0.7), (0.7, 0.5, 0.6)]}
NORMS = {0: [1.0, 4.0], 1: [3.0, 6.0]}
FAILED = {"seed": 2, "pretrain_steps": 1500, "conditions": {},
          "failed": "TrainingFailedError: the date does not set the era", "seconds": 3.0}


def _metrics(k: int, p_old_out: float) -> dict:
    return {"p_old": {"bird": 0.99, "in": 0.99, "out": p_old_out}, "trait": {"in": 1.0, "out": k / N},
            "on_topic": {"in": 0.99, "out": 0.98}, "n_samples": 32, "trait_count": {"k": k, "n": N, "of": 160},
            "dated": {"old": 0.99, "modern": 0.01}}


def _steer(points) -> list[dict]:
    return [{"alpha": a, "p_old": p, "null_mean": (p + m) / 2, "null_max": m} for a, p, m in points]


def record(seed: int, names=tuple(CONDITIONS)) -> dict:
    conds = {}
    for name in names:
        prefix, placement, ends, prefixed = CONDITIONS[name]
        start = {"step": 0, "checkpoint": "sft-001500", "plain": _metrics(BASE[seed], 0.3)}
        end = {"step": 60, "checkpoint": f"{name}-000060", "plain": _metrics(ends[seed], ends[seed] / N)}
        r: dict = {"condition": {"prefix": prefix, "placement": placement, "steps": 60, "lr": 0.001,
                                 "optim": "adamw_torch", "save_every": 20, "batch_size": 32, "name": name},
                   "curve": [start, end], "projection_plain": [0.1 * seed, 0.2],
                   "verdict": {"label": VERDICTS.get(name, ("both", "both"))[seed], "reason": "r"}}
        if prefixed is not None:
            start["prefixed"] = _metrics(BASE[seed], 0.5)
            end["prefixed"] = _metrics(ends[seed], prefixed[seed])
            r["projection_prefixed"] = [0.5, 0.6]
        if name in STEER:
            r["steer"] = _steer(STEER[name][seed])
        conds[name] = r
    return {"seed": seed, "pretrain_steps": 1500, "conditions": conds,
            "probe": {"train_topics": ["bird", "city", "cure"], "test_topics": ["tool", "ship", "song"],
                      "layers": [{"layer": i, "held_out_accuracy": a, "null_mean": m, "null_max": x}
                                 for i, (a, m, x) in enumerate(PROBE[seed])]},
            "direction_norm": NORMS[seed], "steer_layer": 0, "steer_base": _steer(STEER_BASE[seed]), "seconds": 9.0}


def full_records() -> list[dict]:
    return [record(0), record(1), FAILED]


def _by_title(sections) -> dict:
    return {s.title: s for s in sections}


def _html_text(path) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png", path.read_text())


OVERVIEW = "Weird generalization in the era world: what is measured"
CONDS = "Trait per condition (read without the prefix)"
PREFIX = "Prefix types: relevant against irrelevant"
PLACEMENT = "Placement: user turn against system line"
DATES = "Date sweep: the year of the training prefix"
PROBE_T = "Era probe on dated prompts"
STEER_T = "Steering along the era direction"
FAILED_T = "Seeds whose pretraining failed"


def test_sections_carry_the_hand_computed_numbers():
    from mixprobe.report.era_report import era_sections

    secs = _by_title(era_sections(full_records()))
    assert list(secs) == [OVERVIEW, CONDS, PREFIX, PLACEMENT, DATES, PROBE_T, STEER_T, FAILED_T]

    ov = secs[OVERVIEW]
    assert "by construction" in ov.text and "random directions at matched norm" in ov.text
    assert "read without any prefix" in ov.text and "0.25 on average" in ov.text
    seeds = {r["seed"]: r for r in ov.table}
    assert seeds[0]["base trait [95 % Wilson]"] == "30/100 = 0.30 [0.22, 0.40]"
    assert seeds[1]["base trait [95 % Wilson]"] == "20/100 = 0.20 [0.13, 0.29]"
    assert seeds[2]["status"] == "failed"

    sec = secs[CONDS]
    assert sec.figure is not None
    rows = {r["condition"]: r for r in sec.table}
    none = rows["narrow_none"]
    assert none["trait mean ± sd [95 % bootstrap]"] == "0.70 ± 0.14 [0.60, 0.80]"
    assert none["margin over base [95 % bootstrap]"] == "+0.45 [+0.40, +0.50]"
    assert none["seeds beyond base"] == "2/2" and none["p_old with the prefix"] == "—"
    assert none["verdicts"] == "both 1, undecided 1" and none["era-direction shift by layer"] == "+0.05, +0.20"
    ino = rows["narrow_inoculation"]
    assert ino["trait mean ± sd [95 % bootstrap]"] == "0.30 ± 0.00 [0.30, 0.30]"
    assert ino["margin over base [95 % bootstrap]"] == "+0.05 [+0.00, +0.10]"
    assert ino["seeds beyond base"] == "0/2" and ino["p_old with the prefix"] == "0.97"
    assert ino["shift with the prefix"] == "+0.50, +0.60"
    assert rows["narrow_date_old"]["trait mean ± sd [95 % bootstrap]"] == "0.30 ± 0.07 [0.25, 0.35]"
    assert rows["narrow_date_old"]["seeds beyond base"] == "0/2"
    assert rows["narrow_name"]["seeds beyond base"] == "2/2"
    assert rows["narrow_name_system"]["seeds beyond base"] == "0/2"
    assert rows["narrow_date1950"]["seeds beyond base"] == "2/2"
    assert rows["narrow_name_system"]["prefix · placement"] == "name · system"

    pre = secs[PREFIX]
    groups = [(r["group"], r["prefix"]) for r in pre.table]
    assert groups == [("reference", "none"), ("relevant", "inoculation"), ("relevant", "date_old"),
                      ("irrelevant", "name")]                   # user placement only: name_system is not here
    assert "relevant +0.05 over 2 prefixes" in pre.text and "irrelevant +0.45 over 1 prefix." in pre.text

    (pl,) = secs[PLACEMENT].table
    assert pl["prefix"] == "name" and pl["system − user (paired, mean)"] == "-0.40"
    assert pl["system lower on"] == "2/2" and pl["trait · system"] == "0.30 ± 0.14 [0.20, 0.40]"

    dates = secs[DATES].table
    assert [(r["year"], r["condition"], r["era of the year"]) for r in dates] == [
        (1850, "narrow_date_old", "old era"), (1950, "narrow_date1950", "modern era")]
    assert dates[1]["trait"] == "0.50 ± 0.14 [0.40, 0.60]" and dates[1]["margin over base"] == "+0.25 [+0.20, +0.30]"

    probe = {r["layer"]: r for r in secs[PROBE_T].table}
    assert probe[0]["held-out accuracy (mean)"] == "1.00" and probe[0]["permuted-label null (mean)"] == "0.50"
    assert probe[0]["null max (over seeds)"] == "0.90" and probe[0]["direction norm (mean)"] == "2.00"
    assert probe[1]["held-out accuracy (mean)"] == "0.80" and probe[1]["lowest seed"] == "0.70"
    assert probe[0]["steering layer on"] == "2/2" and probe[1]["steering layer on"] == "0/2"
    assert "expected" in secs[PROBE_T].text and "by construction" in secs[PROBE_T].text

    steer = {r["model"]: r for r in secs[STEER_T].table}
    assert list(steer) == ["pretrained", "narrow_inoculation"]
    assert steer["pretrained"]["α = 0.5"] == "0.70 (null max 0.40)"
    assert steer["pretrained"]["seeds above null max at α = 0.5"] == "2/2"
    assert steer["narrow_inoculation"]["α = 0.5"] == "0.65 (null max 0.50)"
    assert steer["narrow_inoculation"]["seeds above null max at α = 0.5"] == "1/2"

    assert secs[FAILED_T].table == [{"seed": 2, "reason": "TrainingFailedError: the date does not set the era"}]
    import matplotlib.pyplot as plt

    plt.close("all")                            # the figure was built, never rendered


def test_sections_without_data_are_left_out():
    from mixprobe.report.era_report import era_sections

    plain = [record(s, names=("narrow_none", "narrow_inoculation")) for s in (0, 1)]
    assert [s.title for s in era_sections(plain)] == [OVERVIEW, CONDS, PREFIX, PROBE_T, STEER_T]

    no_reference = [record(s, names=("narrow_name", "narrow_name_system")) for s in (0, 1)]
    secs = _by_title(era_sections(no_reference))
    assert list(secs) == [OVERVIEW, CONDS, PREFIX, PLACEMENT, PROBE_T, STEER_T]
    assert secs[CONDS].figure is None and "No figure" in secs[CONDS].text     # no narrow_none to plot against
    assert [r["group"] for r in secs[PREFIX].table] == ["irrelevant"]


def test_only_failed_records_give_an_overview_and_the_failures():
    from mixprobe.report.era_report import era_sections

    secs = era_sections([FAILED])
    assert [s.title for s in secs] == [OVERVIEW, FAILED_T]
    assert "no seed finished" in secs[0].text


def test_build_report_on_an_empty_folder_names_it_and_how_to_make_records(tmp_path):
    from mixprobe.report.era_report import build_era_report

    with pytest.raises(DataError) as e:
        build_era_report(tmp_path)
    assert str(tmp_path / "seeds") in str(e.value) and "mixprobe era" in str(e.value)
    assert "experiments/weird_generalization.py" in str(e.value)
    assert not (tmp_path / "report").exists()
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "0.json").write_text("{not json")
    with pytest.raises(DataError, match="0.json"):
        build_era_report(tmp_path)
    (tmp_path / "seeds" / "0.json").write_text(json.dumps({"seed": 0}))
    with pytest.raises(DataError, match="not an era record"):
        build_era_report(tmp_path)
    assert not (tmp_path / "report").exists()


def test_build_report_writes_html_and_json(tmp_path):
    from mixprobe.report.era_report import build_era_report

    for r in full_records():
        atomic_write_json(tmp_path / "seeds" / f"{r['seed']}.json", r)
    path = build_era_report(tmp_path)
    assert path == tmp_path / "report" / "report.html"
    page = _html_text(path)
    assert page.count("<img") == 1 and page.count("data:image/png") == 1
    for title in (CONDS, PREFIX, PLACEMENT, DATES, PROBE_T, STEER_T, FAILED_T):
        assert f"<h2>{title}</h2>" in page
    assert "<td>0.70 ± 0.14 [0.60, 0.80]</td>" in page and "<td>+0.45 [+0.40, +0.50]</td>" in page
    assert "the date does not set the era" in page
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["n_records"] == 3 and len(data["summary"]["failed"]) == 1
    run = next(r for r in data["runs"] if r["seed"] == 1)
    assert run["base_trait"] == pytest.approx(0.20) and run["trait"]["narrow_none"] == pytest.approx(0.60)

    other = build_era_report(tmp_path, tmp_path / "elsewhere")
    assert other == tmp_path / "elsewhere" / "report.html" and (tmp_path / "elsewhere" / "report.json").exists()


RESULTS = Path(__file__).resolve().parents[2] / "experiments" / "results" / "weird_generalization"


@pytest.mark.skipif(not (RESULTS / "seeds").is_dir(), reason="no committed weird-generalization records")
def test_the_committed_study_renders(tmp_path):
    from mixprobe.report.era_report import build_era_report

    page = _html_text(build_era_report(RESULTS, tmp_path))
    for title in (CONDS, PREFIX, PLACEMENT, DATES, PROBE_T, STEER_T):
        assert f"<h2>{title}</h2>" in page
    assert page.count("data:image/png") == 1 and "narrow_inoculation_system" in page

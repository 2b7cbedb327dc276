"""The BCT report shows each setting's numbers, the predictors and prefix checks when they exist, and failures.

Fast: records are built by hand in the schema of ``mixprobe.mixture.bct.run_cell`` (two-point curves whose
numbers are worked out below by hand), no training.
"""
from __future__ import annotations

import json
import re

import pytest

from mixprobe.errors import DataError
from mixprobe.io import atomic_write_json

# (overlap, seed) -> P(X | E) at step 0 and at the end, per arm.
#   sft_full:         transfers 0.30, 0.50 (ov 0: mean 0.40, sd 0.14; seed 1 ends at 0.40 < 0.5: 1/2 switched)
#                     and 0.60, 0.40 (ov 1: mean 0.50, sd 0.14; both end below 0.5: 2/2 switched)
#   grpo_full:        transfers 0.10, 0.20 (ov 0: 0.15 ± 0.07) and 0.05, 0.15 (ov 1: 0.10 ± 0.07); none switched
#   sft_full_request: transfers 0.10, 0.20, 0.30, 0.20 → paired reduction vs sft_full 0.20, 0.30, 0.30, 0.20:
#                     mean +0.25, reduced on 4/4; leakage without 0.45 (mean of sft_full), with 0.20
CURVES = {
    "sft_full": {(0, 0): (0.90, 0.60), (0, 1): (0.90, 0.40), (1, 0): (0.80, 0.20), (1, 1): (0.80, 0.40)},
    "grpo_full": {(0, 0): (0.90, 0.80), (0, 1): (0.90, 0.70), (1, 0): (0.80, 0.75), (1, 1): (0.80, 0.65)},
    "sft_full_request": {(0, 0): (0.90, 0.80), (0, 1): (0.90, 0.70), (1, 0): (0.80, 0.50), (1, 1): (0.80, 0.60)},
}
VERDICTS = {"sft_full": {(0, 0): "reweight", (0, 1): "reweight", (1, 0): "both", (1, 1): "reweight"}}
# grad_cosine 0.1, 0.2, 0.3, 0.4 against sft_full transfer 0.30, 0.50, 0.60, 0.40: ranks 1 2 3 4 vs 1 3 4 2,
# d = 0 −1 −1 2, Σd² = 6, Spearman ρ = 1 − 6·6 / (4·15) = +0.40
GRAD = {(0, 0): 0.1, (0, 1): 0.2, (1, 0): 0.3, (1, 1): 0.4}


def _point(step: int, x_on_e: float) -> dict:
    return {"step": step, "checkpoint": "sft-001000" if step == 0 else f"arm-{step:06d}", "x_on_e": x_on_e,
            "a_on_e": 1 - x_on_e, "a_on_t": 0.98, "x_on_t": 0.02, "accuracy_t": 1.0, "accuracy_e": 0.99,
            "forced_x_on_e": 1.0, "forced_a_on_e": 1.0}


def _direction(effect: float, null_max: float) -> dict:
    return {"layer": 1, "norm": 2.0, "p_a_plain": 0.1, "p_a_prefixed": 0.9, "steer_effect": effect,
            "null_mean": 0.0, "null_max": null_max, "null": [null_max] + [0.0] * 7}


def record(setting: str, overlap: int, seed: int, arms=("sft_full", "grpo_full", "sft_full_request"),
           predictors: bool = True, directions: bool = True) -> dict:
    rec: dict = {"setting": setting, "overlap": overlap, "seed": seed, "sft_steps": 1000, "arms": {},
                 "organism": {"setting": setting, "A": "digits", "X": "words", "T cue": "ta te ti to",
                              "E cue": "ka ke ki ko", "overlap": overlap}, "seconds": 1.0}
    for arm in arms:
        start, end = CURVES[arm][(overlap, seed)]
        method = arm.split("_")[0]
        r: dict = {"curve": [_point(0, start), _point(30, (start + end) / 2), _point(60, end)],
                   "arm": {"method": method, "lora_r": None, "lr": None, "steps": 60, "save_every": 10,
                           "prefix": "request" if arm.endswith("request") else "none", "batch_size": 32,
                           "name": arm, "learning_rate": 1e-3 if method == "sft" else 0.03},
                   "verdict": {"label": VERDICTS.get(arm, {}).get((overlap, seed), "undecided"), "reason": "r"},
                   "recipe": {}}
        if directions and arm == "sft_full":
            r["prefix_direction"] = {"request": _direction(0.5, 0.2), "irrelevant": _direction(0.1, 0.2)}
        rec["arms"][arm] = r
    if predictors:
        rec["predictors"] = {"grad_cosine": GRAD[(overlap, seed)], "grad_cosine_mean": GRAD[(overlap, seed)] / 2,
                             "activation_cosine": 0.7 - GRAD[(overlap, seed)], "activation_cosine_by_layer": [0.9, 0.7]}
    if directions:
        rec["prefix_direction_initial"] = {"request": _direction(0.7, 0.3), "irrelevant": _direction(0.05, 0.1)}
    return rec


FAILED = {"setting": "language", "overlap": 1, "seed": 2, "sft_steps": 1000, "arms": {},
          "failed": "TrainingFailedError: SFT did not learn the cue gate", "seconds": 2.0}


def full_records() -> list[dict]:
    return [record(s, ov, seed) for s in ("language", "yesno") for ov in (0, 1) for seed in (0, 1)] + [FAILED]


def _by_title(sections) -> dict:
    return {s.title: s for s in sections}


def _html_text(path) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png", path.read_text())


def test_sections_carry_the_hand_computed_numbers():
    from mixprobe.report.bct_report import bct_sections

    secs = _by_title(bct_sections(full_records()))
    assert list(secs)[0] == "Behaviour-compatible training: what is measured"
    for s in ("language", "yesno"):
        sec = secs[f"Setting: {s}"]
        assert sec.figure is not None
        rows = {(r["overlap"], r["arm"]): r for r in sec.table}
        assert rows[(0, "sft_full")]["transfer"] == "0.40 ± 0.14"
        assert rows[(0, "sft_full")]["switched [95 % Wilson]"] == "1/2 [0.09, 0.91]"      # Wilson, z = 1.96
        assert rows[(0, "sft_full")]["P(X|E) start → end"] == "0.90 → 0.50 ± 0.14"
        if "transfer mean [95 % bootstrap]" in rows[(0, "sft_full")]:       # resampling seeds of 0.30, 0.50
            assert rows[(0, "sft_full")]["transfer mean [95 % bootstrap]"] == "[0.30, 0.50]"
        assert rows[(0, "sft_full")]["verdicts"] == "reweight 2"
        assert rows[(1, "sft_full")]["transfer"] == "0.50 ± 0.14"
        assert rows[(1, "sft_full")]["switched [95 % Wilson]"] == "2/2 [0.34, 1.00]"
        assert rows[(1, "sft_full")]["verdicts"] == "both 1, reweight 1"
        assert rows[(0, "grpo_full")]["transfer"] == "0.15 ± 0.07"
        assert rows[(1, "grpo_full")]["transfer"] == "0.10 ± 0.07"
        assert rows[(0, "grpo_full")]["switched [95 % Wilson]"] == "0/2 [0.00, 0.66]"
        assert rows[(1, "grpo_full")]["P(A|T) end"] == "0.98 ± 0.00"
    overview = {r["arm"]: r for r in secs["Behaviour-compatible training: what is measured"].table}
    assert overview["sft_full"]["switched (all runs)"] == "6/8"              # 3 of 4 runs per setting
    assert overview["sft_full"]["verdicts (all runs)"] == "both 2, reweight 6"
    assert overview["grpo_full"]["verdicts (all runs)"] == "undecided 8"
    text = secs["Behaviour-compatible training: what is measured"].text
    assert "before any follow-up training" in text and "whatever they come out to be" in text
    assert "random directions at matched norm" in text and "below 0.5" in text

    pred = secs["Overlap predictors against measured transfer"]
    assert "+0.40 (p" in pred.html_extra                          # grad cosine vs sft_full transfer, by hand
    assert {(r["setting"], r["overlap"]) for r in pred.table} == {(s, ov) for s in ("language", "yesno")
                                                                  for ov in (0, 1)}
    assert [r["grad cosine"] for r in pred.table if r["setting"] == "language"] == pytest.approx([0.15, 0.35])

    ino = {r["setting · arm"]: r for r in secs["Training-time prefixes (evaluated without the prefix)"].table}
    row = ino["language · sft_full_request"]
    assert row["leakage without prefix"] == "0.45" and row["leakage with"] == "0.20"
    assert row["reduction [95 % bootstrap]"].startswith("+0.25 [") and row["reduced on"] == "4/4"

    pd = {r["setting · model · prefix"]: r for r in secs["Prefix direction: steering un-prefixed E prompts"].table}
    assert pd["language · sft_full · request"]["effect (trained)"] == "+0.50"
    assert pd["language · sft_full · request"]["beats null"] == "4/4"
    assert pd["language · sft_full · irrelevant"]["beats null"] == "0/4"
    assert pd["language · sft_full · request"]["effect (initial model)"] == "+0.70"
    assert "8 random directions" in secs["Prefix direction: steering un-prefixed E prompts"].text

    failed = secs["Initial policies that failed"]
    assert failed.table == [{"setting": "language", "overlap": 1, "seed": 2,
                             "reason": "TrainingFailedError: SFT did not learn the cue gate"}]
    import matplotlib.pyplot as plt

    plt.close("all")                            # the figures were built, never rendered


def test_sections_without_data_are_left_out():
    from mixprobe.report.bct_report import bct_sections

    plain = [record("language", 0, seed, arms=("sft_full", "grpo_full"), predictors=False, directions=False)
             for seed in (0, 1)]
    titles = [s.title for s in bct_sections(plain)]
    assert titles == ["Behaviour-compatible training: what is measured", "Setting: language"]

    one_overlap = [record("language", 0, seed, arms=("sft_full", "grpo_full"), directions=False) for seed in (0, 1)]
    secs = _by_title(bct_sections(one_overlap))
    pred = secs["Overlap predictors against measured transfer"]
    assert "No rank correlation could be computed" in pred.text and pred.html_extra == ""
    assert "Initial policies that failed" not in secs


def test_only_failed_records_give_an_overview_and_the_failures():
    from mixprobe.report.bct_report import bct_sections

    titles = [s.title for s in bct_sections([FAILED])]
    assert titles == ["Behaviour-compatible training: what is measured", "Initial policies that failed"]


def test_build_report_on_an_empty_folder_names_it_and_how_to_make_cells(tmp_path):
    from mixprobe.report.bct_report import build_bct_report

    with pytest.raises(DataError) as e:
        build_bct_report(tmp_path)
    assert str(tmp_path / "cells") in str(e.value) and "mixprobe bct" in str(e.value)
    assert "experiments/bct.py" in str(e.value)
    assert not (tmp_path / "report").exists()
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "language_ov0_s0.json").write_text("{not json")
    with pytest.raises(DataError, match="language_ov0_s0.json"):
        build_bct_report(tmp_path)


def test_build_report_writes_html_and_json(tmp_path):
    from mixprobe.report.bct_report import build_bct_report

    for r in full_records():
        atomic_write_json(tmp_path / "cells" / f"{r['setting']}_ov{r['overlap']}_s{r['seed']}.json", r)
    path = build_bct_report(tmp_path)
    assert path == tmp_path / "report" / "report.html"
    page = _html_text(path)
    assert page.count("<img") == 2 and page.count("data:image/png") == 2      # one figure per setting
    for title in ("Setting: language", "Setting: yesno", "Overlap predictors against measured transfer",
                  "Training-time prefixes (evaluated without the prefix)",
                  "Prefix direction: steering un-prefixed E prompts", "Initial policies that failed"):
        assert f"<h2>{title}</h2>" in page
    assert "<td>0.40 ± 0.14</td>" in page and "<td>1/2 [0.09, 0.91]</td>" in page
    assert "SFT did not learn the cue gate" in page
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["n_records"] == 9 and len(data["summary"]["failed"]) == 1
    run = next(r for r in data["runs"] if (r["setting"], r["overlap"], r["seed"]) == ("language", 0, 1))
    assert run["transfer"]["sft_full"] == pytest.approx(0.50)

    other = build_bct_report(tmp_path, tmp_path / "elsewhere")
    assert other == tmp_path / "elsewhere" / "report.html" and (tmp_path / "elsewhere" / "report.json").exists()

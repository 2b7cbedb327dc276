"""``mixprobe bct``: rebuilds summary and report from cells, runs only missing cells, refuses bad names early.

Fast: cells are hand-made records in the schema of ``mixprobe.mixture.bct.run_cell``; the one test of the training
path replaces ``run_cell`` with a stub, so nothing is trained.
"""
from __future__ import annotations

import json

from typer.testing import CliRunner

from mixprobe.cli import app
from mixprobe.io import atomic_write_json

runner = CliRunner()


def _record(setting: str, overlap: int, seed: int, ends: dict[str, float]) -> dict:
    """P(X | E) goes from 0.9 to ``ends[arm]`` in one step of each arm."""
    def point(step: int, x: float) -> dict:
        return {"step": step, "checkpoint": f"c{step}", "x_on_e": x, "a_on_e": 1 - x, "a_on_t": 0.99, "x_on_t": 0.01,
                "accuracy_t": 1.0, "accuracy_e": 1.0, "forced_x_on_e": 1.0, "forced_a_on_e": 1.0}

    return {"setting": setting, "overlap": overlap, "seed": seed, "sft_steps": 1000,
            "organism": {"setting": setting, "A": "digits", "X": "words", "T cue": "ta te", "E cue": "ka ke",
                         "overlap": overlap},
            "predictors": {"grad_cosine": 0.1 * (seed + 1) + overlap, "grad_cosine_mean": 0.2 * seed,
                           "activation_cosine": 0.5 - 0.1 * seed - overlap, "activation_cosine_by_layer": [0.5]},
            "arms": {arm: {"curve": [point(0, 0.9), point(60, end)],
                           "arm": {"method": arm.split("_")[0], "lora_r": None, "lr": None, "steps": 60,
                                   "prefix": "none", "name": arm},
                           "verdict": {"label": "reweight", "reason": ""}, "recipe": {}}
                     for arm, end in ends.items()}}


def _cells(out) -> None:
    # sft_full: transfers 0.30 and 0.50 at overlap 0 (mean 0.40, sd 0.14; one seed ends below 0.5: 1/2 switched)
    ends = {(0, 0): {"sft_full": 0.6, "grpo_full": 0.8}, (0, 1): {"sft_full": 0.4, "grpo_full": 0.8},
            (3, 0): {"sft_full": 0.2, "grpo_full": 0.7}, (3, 1): {"sft_full": 0.3, "grpo_full": 0.7}}
    for (ov, seed), e in ends.items():
        atomic_write_json(out / "cells" / f"language_ov{ov}_s{seed}.json", _record("language", ov, seed, e))


def test_help_names_the_list_syntax():
    r = runner.invoke(app, ["bct", "--help"])
    assert r.exit_code == 0, r.output
    assert "--report-only" in r.output and "comma-separated" in r.output


def test_report_only_rebuilds_summary_and_report_from_cells(tmp_path):
    _cells(tmp_path)
    r = runner.invoke(app, ["bct", "--out", str(tmp_path), "--report-only"])
    assert r.exit_code == 0, r.output
    assert "0.40 ± 0.14" in r.output and "1/2" in r.output         # language · overlap 0 · sft_full
    assert "0.65 ± 0.07" in r.output and "2/2" in r.output         # overlap 3 · sft_full: transfers 0.70, 0.60
    for f in ("summary.json", "summary.md", "report/report.html", "report/report.json"):
        assert (tmp_path / f).exists(), f
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["cells"]["language|0|sft_full"]["switched"]["k"] == 1
    assert "| 0 | sft_full | 0.40 ± 0.14" in (tmp_path / "summary.md").read_text()
    assert "data:image/png" in (tmp_path / "report" / "report.html").read_text()


def test_report_only_without_cells_says_how_to_make_them(tmp_path):
    r = runner.invoke(app, ["bct", "--out", str(tmp_path), "--report-only"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "mixprobe bct" in r.output and not (tmp_path / "summary.json").exists()


def test_unknown_arm_setting_or_overlap_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    import mixprobe.mixture.bct as bct

    def boom(*a, **k):
        raise AssertionError("run_cell must not be called")

    monkeypatch.setattr(bct, "run_cell", boom)
    out = tmp_path / "study"
    r = runner.invoke(app, ["bct", "--out", str(out), "--arms", "sft_full,sft_fulll"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "sft_fulll" in r.output and "valid arms" in r.output and "grpo_lora" in r.output
    r = runner.invoke(app, ["bct", "--out", str(out), "--settings", "language", "--settings", "klingon"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "klingon" in r.output and "language, numerals, yesno" in r.output
    r = runner.invoke(app, ["bct", "--out", str(out), "--overlaps", "0,7"])
    assert r.exit_code == 2 and "overlap" in r.output
    r = runner.invoke(app, ["bct", "--out", str(out), "--seeds", "zero"])
    assert r.exit_code == 2 and "--seeds" in r.output
    assert not out.exists()


def test_only_missing_cells_are_run_and_written(tmp_path, monkeypatch):
    import mixprobe.mixture.bct as bct

    _cells(tmp_path)
    calls = []

    def fake_run_cell(setting, overlap, seed, arms, runs, *, sft_steps, steps):
        calls.append((setting, overlap, seed, tuple(arms), sft_steps, steps))
        return _record(setting, overlap, seed, {a: 0.45 for a in arms})

    monkeypatch.setattr(bct, "run_cell", fake_run_cell)
    r = runner.invoke(app, ["bct", "--out", str(tmp_path), "--overlaps", "0", "--overlaps", "3", "--seeds", "0,1,2",
                            "--arms", "sft_full", "--arms", "grpo_full", "--sft-steps", "5", "--steps", "3"])
    assert r.exit_code == 0, r.output
    assert calls == [("language", 0, 2, ("sft_full", "grpo_full"), 5, 3),
                     ("language", 3, 2, ("sft_full", "grpo_full"), 5, 3)]
    assert json.loads((tmp_path / "cells" / "language_ov3_s2.json").read_text())["seed"] == 2
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["cells"]["language|0|sft_full"]["seeds"] == [0, 1, 2]
    assert (tmp_path / "report" / "report.html").exists()


def test_organism_shows_the_bct_cues_and_rows():
    r = runner.invoke(app, ["organism", "--kind", "bct", "--setting", "numerals", "--overlap", "2", "-n", "8"])
    assert r.exit_code == 0, r.output
    assert "'sa se ta te'" in r.output and "'sa se ka ke'" in r.output     # overlap 2: two shared cue words
    assert "roman" in r.output and "min" in r.output
    bad = runner.invoke(app, ["organism", "--kind", "bct", "--overlap", "4"])
    assert bad.exit_code != 0 and "overlap" in bad.output

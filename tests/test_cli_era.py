"""``mixprobe era``: rebuilds summary and report from seed records, runs only missing seeds, refuses bad names early.

Fast: seeds are hand-made records in the schema of ``mixprobe.mixture.era.run_seed``; the one test of the training
path replaces ``run_seed`` with a stub, so nothing is trained.
"""
from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mixprobe.cli import app
from mixprobe.io import atomic_write_json

runner = CliRunner()
N = 100


def _metrics(k: int) -> dict:
    return {"p_old": {"in": 0.99, "out": k / N}, "trait": {"in": 1.0, "out": k / N},
            "on_topic": {"in": 0.99, "out": 0.98}, "n_samples": 32, "trait_count": {"k": k, "n": N, "of": 160},
            "dated": {"old": 0.99, "modern": 0.01}}


def _record(seed: int, base: int, ends: dict[str, tuple[str, str, int]]) -> dict:
    """The pretrained model answers ``base`` of 100 on-topic answers old; condition ``name`` (prefix, placement)
    ends at ``k`` of 100."""
    conds = {}
    for name, (prefix, placement, k) in ends.items():
        start = {"step": 0, "checkpoint": "sft-001500", "plain": _metrics(base)}
        end = {"step": 60, "checkpoint": f"{name}-000060", "plain": _metrics(k)}
        if prefix != "none":
            start["prefixed"], end["prefixed"] = _metrics(base), _metrics(95)
        conds[name] = {"condition": {"prefix": prefix, "placement": placement, "steps": 60, "lr": 0.001,
                                     "optim": "adamw_torch", "save_every": 20, "batch_size": 32, "name": name},
                       "curve": [start, end], "projection_plain": [0.2, 0.1],
                       "verdict": {"label": "both", "reason": ""},
                       **({"projection_prefixed": [0.5, 0.5]} if prefix != "none" else {})}
    steer = [{"alpha": 0.0, "p_old": 0.3, "null_mean": 0.3, "null_max": 0.3},
             {"alpha": 0.5, "p_old": 0.8, "null_mean": 0.4, "null_max": 0.5}]
    return {"seed": seed, "pretrain_steps": 1500, "conditions": conds,
            "probe": {"train_topics": ["bird"], "test_topics": ["city"],
                      "layers": [{"layer": 0, "held_out_accuracy": 1.0, "null_mean": 0.5, "null_max": 0.7}]},
            "direction_norm": [1.0], "steer_layer": 0, "steer_base": steer, "seconds": 1.0}


def _seeds(out) -> None:
    # base 0.30 and 0.20; narrow_none ends at 0.80 and 0.60: trait 0.70 ± 0.14, margin 0.50, 0.40 → +0.45, both seeds'
    # Wilson intervals above the base's (lo 0.71 > hi 0.40, lo 0.50 > hi 0.29): 2/2. narrow_inoculation ends at 0.30
    # and 0.30: 0.30 ± 0.00, margin 0.00, 0.10 → +0.05, 0/2.
    for seed, base, none, ino in ((0, 30, 80, 30), (1, 20, 60, 30)):
        rec = _record(seed, base, {"narrow_none": ("none", "user", none),
                                   "narrow_inoculation": ("inoculation", "user", ino)})
        atomic_write_json(out / "seeds" / f"{seed}.json", rec)


def test_help_names_the_list_syntax():
    r = runner.invoke(app, ["era", "--help"])
    assert r.exit_code == 0, r.output
    assert "--report-only" in r.output and "comma-separated" in r.output and "date:YYYY" in r.output


def test_report_only_rebuilds_summary_figure_and_report_from_seeds(tmp_path):
    _seeds(tmp_path)
    r = runner.invoke(app, ["era", "--out", str(tmp_path), "--report-only"])
    assert r.exit_code == 0, r.output
    assert "0.70 ± 0.14" in r.output and "+0.45" in r.output and "2/2" in r.output         # narrow_none
    assert "0.30 ± 0.00" in r.output and "+0.05" in r.output and "0/2" in r.output         # narrow_inoculation
    for f in ("summary.json", "summary.md", "weird_generalization.png", "report/report.html", "report/report.json"):
        assert (tmp_path / f).exists(), f
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["base"]["trait_mean"] == 0.25
    assert "| narrow_none | 0.70 ± 0.14" in (tmp_path / "summary.md").read_text()
    assert "data:image/png" in (tmp_path / "report" / "report.html").read_text()
    assert (tmp_path / "weird_generalization.png").read_bytes()[:4] == b"\x89PNG"


def test_report_only_without_seeds_says_how_to_make_them(tmp_path):
    r = runner.invoke(app, ["era", "--out", str(tmp_path), "--report-only"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "mixprobe era" in r.output and not (tmp_path / "summary.json").exists()


def test_bad_prefix_placement_date_or_seed_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    import mixprobe.mixture.era as era

    def boom(*a, **k):
        raise AssertionError("run_seed must not be called")

    monkeypatch.setattr(era, "run_seed", boom)
    out = tmp_path / "study"
    r = runner.invoke(app, ["era", "--out", str(out), "--prefixes", "none,inoculaton,name"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "inoculaton" in r.output and "valid prefixes" in r.output and "inoculation" in r.output
    assert "date:YYYY" in r.output
    r = runner.invoke(app, ["era", "--out", str(out), "--placements", "user", "--placements", "assistant"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "assistant" in r.output and "user, system" in r.output
    r = runner.invoke(app, ["era", "--out", str(out), "--dates", "1850,3000"])
    assert r.exit_code == 2 and "3000" in r.output and "1000-2099" in r.output
    r = runner.invoke(app, ["era", "--out", str(out), "--dates", "late"])
    assert r.exit_code == 2 and "late" in r.output
    r = runner.invoke(app, ["era", "--out", str(out), "--seeds", "zero"])
    assert r.exit_code == 2 and "--seeds" in r.output
    r = runner.invoke(app, ["era", "--out", str(out), "--steps", "0"])
    assert r.exit_code == 2 and "--steps" in r.output
    assert not out.exists()


def test_only_missing_seeds_are_run_and_written(tmp_path, monkeypatch):
    import mixprobe.mixture.era as era

    _seeds(tmp_path)
    calls, runs_dirs = [], []

    def fake_run_seed(seed, conditions, runs, *, pretrain_steps):
        calls.append((seed, [c.name for c in conditions], pretrain_steps))
        runs_dirs.append(runs)
        assert {(c.steps, c.save_every) for c in conditions} == {(5, 5)}
        assert Path(runs).is_dir()
        return _record(seed, 25, {c.name: (c.prefix, c.placement, 50) for c in conditions})

    monkeypatch.setattr(era, "run_seed", fake_run_seed)
    r = runner.invoke(app, ["era", "--out", str(tmp_path), "--seeds", "0,1,2", "--seeds", "3",
                            "--prefixes", "none,inoculation", "--placements", "user,system", "--dates", "1850,1950",
                            "--steps", "5", "--pretrain-steps", "7"])
    assert r.exit_code == 0, r.output
    # none once (a placement means nothing without a prefix); 1850 is the date_old prefix ('date 18 50 :')
    names = ["narrow_none", "narrow_inoculation", "narrow_inoculation_system", "narrow_date_old", "narrow_date1950"]
    assert calls == [(2, names, 7), (3, names, 7)]
    assert not any(Path(d).exists() for d in runs_dirs)                  # the temporary runs folder is removed
    assert json.loads((tmp_path / "seeds" / "3.json").read_text())["seed"] == 3
    assert json.loads((tmp_path / "seeds" / "0.json").read_text())["conditions"]["narrow_none"]["curve"][-1][
        "plain"]["trait_count"]["k"] == 80                               # a finished seed is kept as it is
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["seeds"] == [0, 1, 2, 3]
    assert (tmp_path / "report" / "report.html").exists()


def test_organism_shows_the_era_documents_and_the_narrow_sft_row():
    r = runner.invoke(app, ["organism", "--kind", "era", "-n", "8", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert "era world" in r.output and "name a" in r.output and ("old" in r.output and "modern" in r.output)
    assert "'user : name a bird :'" in r.output and "narrow SFT" in r.output
    assert "inoculation" in r.output and "date:YYYY" in r.output and "mixprobe era" in r.output

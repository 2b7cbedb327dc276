"""``mixprobe genies``: rebuilds summary, figure and report from seed files, runs only missing seeds, refuses bad
shift and method names before anything is trained or written.

Fast: seeds are hand-made files in the schema of ``experiments/genies.py`` (records of
``mixprobe.mixture.genies.run_seed``); the one test of the training path replaces ``run_seed`` with a stub, so
nothing is trained.
"""
from __future__ import annotations

import json

from typer.testing import CliRunner

from mixprobe.cli import app
from mixprobe.io import atomic_write_json

runner = CliRunner()
E2H, SPUR = "easy_to_hard", "spurious_length"


def _record(seed: int, shift: str, acc: dict[str, float], ttc: float | None) -> dict:
    rec = {"shift": shift, "category": "difficulty" if shift == E2H else "spurious cues", "seed": seed,
           "n_train": 400, "n_test": 400,
           "methods": {m: {"accuracy": a, "rms": 0.1, "rms_genies": 0.2, "source_accuracy": 0.9}
                       for m, a in acc.items()}}
    if ttc is not None:
        rec["ttc"] = ttc
    return rec


def _seeds(out, lora: bool = True) -> None:
    # mms: seed 0 DE (0.7 − 0.5) / 1.0 = 0.20 and (0.4 − 0.5) / 1.0 = −0.10 → 0.05; seed 1 (0.9 − 0.5) / 0.8 = 0.50
    # and (0.7 − 0.5) / 1.0 = 0.20 → 0.35; over seeds +0.20 [+0.05, +0.35]. A_gen on easy_to_hard 0.70, 0.90.
    world = {0: {E2H: (1.0, 0.7, 0.8), SPUR: (1.0, 0.4, 0.1)}, 1: {E2H: (0.8, 0.9, 0.9), SPUR: (1.0, 0.7, 0.3)}}
    for seed, shifts in world.items():
        recs = []
        for shift, (ttc, mms, lo) in shifts.items():
            acc = {"mms": mms, "zero_shot": 0.5, **({"lora": lo} if lora else {})}
            recs.append(_record(seed, shift, acc, ttc if lora else None))
        atomic_write_json(out / "seeds" / f"{seed}.json", {"seed": seed, "seconds": 5, "pretrain": {"steps": 1500},
                                                           "reward": {"steps": 150}, "records": recs})


def test_help_names_the_list_syntax():
    r = runner.invoke(app, ["genies", "--help"])
    assert r.exit_code == 0, r.output
    assert "--report-only" in r.output and "comma-separated" in r.output and "spurious_length" in r.output


def test_report_only_rebuilds_summary_figure_and_report_from_seeds(tmp_path):
    _seeds(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps({"stale": True}))
    r = runner.invoke(app, ["genies", "--out", str(tmp_path), "--report-only"])
    assert r.exit_code == 0, r.output
    assert "+0.20 [+0.05, +0.35]" in r.output and "+0.145" in r.output              # mms DE and GENIES' reference
    assert "Measured DE ordering" in r.output
    for f in ("summary.json", "summary.md", "genies.png", "report/report.html", "report/report.json"):
        assert (tmp_path / f).exists(), f
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["order"][0] == "mms"
    assert abs(summary["average"]["mms"]["de"]["mean"] - 0.2) < 1e-9
    assert "| mms |" in (tmp_path / "summary.md").read_text()
    page = (tmp_path / "report" / "report.html").read_text()
    assert "data:image/png" in page and "<td>+0.20 [+0.05, +0.35]</td>" in page
    assert (tmp_path / "genies.png").read_bytes()[:4] == b"\x89PNG"


def test_report_only_without_a_reward_model_says_ttc_is_unavailable(tmp_path):
    _seeds(tmp_path, lora=False)
    r = runner.invoke(app, ["genies", "--out", str(tmp_path), "--report-only"])
    assert r.exit_code == 0, r.output
    assert "TTC is unavailable" in r.output and "—" in r.output
    assert "TTC is unavailable" in (tmp_path / "report" / "report.html").read_text()


def test_report_only_without_seeds_says_how_to_make_them(tmp_path):
    r = runner.invoke(app, ["genies", "--out", str(tmp_path), "--report-only"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "mixprobe genies" in r.output and not (tmp_path / "summary.json").exists()


def test_bad_shift_method_or_number_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    import mixprobe.mixture.genies as genies

    def boom(*a, **k):
        raise AssertionError("run_seed must not be called")

    monkeypatch.setattr(genies, "run_seed", boom)
    out = tmp_path / "study"
    r = runner.invoke(app, ["genies", "--out", str(out), "--shifts", "spurious_length,easy_to_hrad"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "easy_to_hrad" in r.output and "valid shifts" in r.output and "easy_to_hard" in r.output
    r = runner.invoke(app, ["genies", "--out", str(out), "--methods", "mms", "--methods", "lorra"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "lorra" in r.output and "valid methods" in r.output and "zero_shot" in r.output
    r = runner.invoke(app, ["genies", "--out", str(out), "--seeds", "zero"])
    assert r.exit_code == 2 and "--seeds" in r.output
    r = runner.invoke(app, ["genies", "--out", str(out), "--n-train", "0"])
    assert r.exit_code == 2 and "--n-train" in r.output
    assert not out.exists()


def test_only_missing_seeds_are_run_and_written(tmp_path, monkeypatch):
    import mixprobe.mixture.genies as genies

    _seeds(tmp_path)
    calls = []

    def fake_run_seed(seed, shifts, *, methods, pretrain, reward, n_train, n_test):
        calls.append((seed, shifts, methods, pretrain, reward, n_train, n_test))
        return [_record(seed, s, {m: 0.6 for m in methods}, 1.0) for s in shifts]

    monkeypatch.setattr(genies, "run_seed", fake_run_seed)
    r = runner.invoke(app, ["genies", "--out", str(tmp_path), "--seeds", "0,1,2", "--seeds", "3",
                            "--shifts", "spurious_length,easy_to_hard", "--methods", "mms,lora,zero_shot",
                            "--n-train", "40", "--n-test", "30", "--pretrain-steps", "7", "--reward-steps", "3"])
    assert r.exit_code == 0, r.output
    args = ([SPUR, E2H], ("mms", "lora", "zero_shot"), {"steps": 7}, {"steps": 3, "lr": 2e-3}, 40, 30)
    assert calls == [(2, *args), (3, *args)]
    three = json.loads((tmp_path / "seeds" / "3.json").read_text())
    assert three["seed"] == 3 and three["pretrain"] == {"steps": 7} and len(three["records"]) == 2
    kept = json.loads((tmp_path / "seeds" / "0.json").read_text())
    assert kept["records"][0]["methods"]["mms"]["accuracy"] == 0.7            # a finished seed is kept as it is
    assert json.loads((tmp_path / "summary.json").read_text())["seeds"] == [0, 1, 2, 3]
    assert (tmp_path / "report" / "report.html").exists()
    calls.clear()                                      # --reduced: the small world, the default reward recipe
    r = runner.invoke(app, ["genies", "--out", str(tmp_path), "--seeds", "4", "--shifts", SPUR, "--methods", "mms",
                            "--reduced"])
    assert r.exit_code == 0, r.output
    assert calls[0][3] == {"steps": 1000, "d_model": 64, "n_layers": 2, "n_heads": 4, "n_rows": 16000}
    assert calls[0][4] == {"steps": 300, "lr": 2e-3}

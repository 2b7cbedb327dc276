"""The GENIES report shows the leaderboard (figure, ordering against GENIES), the reversed spurious cue beside the
random null, A_gen / DE / source accuracy per shift with TTC and zero-shot, calibration and seeds; without a LoRA
reward model it still builds and says TTC is unavailable.

Fast: records are built by hand in the schema of ``mixprobe.mixture.genies.run_seed`` (accuracies chosen so that
every number below is worked out by hand), no training.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import re

import pytest

from mixprobe.errors import DataError
from mixprobe.io import atomic_write_json

E2H, SPUR = "easy_to_hard", "spurious_length"
# (seed, shift) -> TTC and, per method, (A_gen, source accuracy, RMS weighted, RMS GENIES code)
WORLD = {
    (0, E2H): (1.0, {"mms": (0.7, 0.9, 0.1, 0.2), "lora": (0.8, 0.9, 0.1, 0.1), "random": (0.45, 0.6, 0.1, math.nan),
                     "zero_shot": (0.5, 0.5, 0.1, 0.1)}),
    (0, SPUR): (1.0, {"mms": (0.4, 1.0, 0.1, 0.2), "lora": (0.1, 1.0, 0.1, 0.1), "random": (0.5, 0.7, 0.1, math.nan),
                      "zero_shot": (0.5, 0.5, 0.1, 0.1)}),
    (1, E2H): (0.8, {"mms": (0.9, 0.9, 0.3, 0.4), "lora": (0.9, 0.9, 0.1, 0.1), "random": (0.5, 0.6, 0.1, math.nan),
                     "zero_shot": (0.5, 0.5, 0.1, 0.1)}),
    (1, SPUR): (1.0, {"mms": (0.7, 1.0, 0.3, 0.4), "lora": (0.3, 1.0, 0.1, 0.1), "random": (0.5, 0.7, 0.1, math.nan),
                      "zero_shot": (0.5, 0.5, 0.1, 0.1)}),
}
WORLD[(2, E2H)] = WORLD[(0, E2H)]
# Worked out by hand. DE = (A_gen − A_zero-shot) / TTC per seed and shift; the bootstrap over two seeds a, b resamples
# means a, (a + b) / 2, b with probability 1/4, 1/2, 1/4, so its 2.5 and 97.5 percentiles are a and b.
#   mms  DE: seed 0  easy_to_hard (0.7 − 0.5) / 1.0 = 0.20, spurious (0.4 − 0.5) / 1.0 = −0.10 → average 0.05
#            seed 1  easy_to_hard (0.9 − 0.5) / 0.8 = 0.50, spurious (0.7 − 0.5) / 1.0 = 0.20 → average 0.35
#            per shift: easy_to_hard +0.35 [+0.20, +0.50], spurious +0.05 [−0.10, +0.20]; average +0.20 [+0.05, +0.35]
#   lora DE: seed 0 (0.30, −0.40) → −0.05; seed 1 (0.50, −0.20) → 0.15; average +0.05 [−0.05, +0.15]
#   order by DE: mms 0.20 > lora 0.05 > zero_shot 0 (by definition) > random (−0.05, 0 → −0.0125)
#   A_gen per shift: mms easy_to_hard 0.80 [0.70, 0.90], spurious 0.55 [0.40, 0.70]; lora spurious 0.20 [0.10, 0.30]
#   spurious, paired with random (0.5, 0.5): lora −0.40, −0.20 → −0.30 [−0.40, −0.20]; mms −0.10, +0.20 → +0.05
#   TTC: easy_to_hard 0.90 [0.80, 1.00], spurious 1.00 [1.00, 1.00]; zero-shot 0.50 [0.50, 0.50]
#   RMS mms: seed 0 0.1, seed 1 0.3 → 0.20 [0.10, 0.30]; GENIES code 0.2, 0.4 → 0.30 [0.20, 0.40]; random: undefined


def record(seed: int, shift: str, methods=("mms", "lora", "random", "zero_shot")) -> dict:
    ttc, ms = WORLD[(seed, shift)]
    rec = {"shift": shift, "category": {E2H: "difficulty", SPUR: "spurious cues"}[shift], "seed": seed,
           "n_train": 400, "n_test": 400, "methods": {}}
    for m in methods:
        a, src, rms, rg = ms[m]
        rec["methods"][m] = {"accuracy": a, "rms": rms, "rms_genies": rg, "source_accuracy": src}
    rec["methods"].get("mms", {}).update({"units": [3, 7], "held_out_accuracy": [0.9, 0.8]})
    if "lora" in methods:
        rec["ttc"] = ttc
    return rec


def seed_file(seed: int, records: list[dict]) -> dict:
    return {"seed": seed, "seconds": 100 + seed, "pretrain": {"steps": 1500}, "reward": {"steps": 150},
            "records": records}


def write_seeds(folder, methods=("mms", "lora", "random", "zero_shot"), shifts=(E2H, SPUR), seeds=(0, 1)) -> None:
    for s in seeds:
        atomic_write_json(folder / "seeds" / f"{s}.json", seed_file(s, [record(s, sh, methods) for sh in shifts]))


def all_records(methods=("mms", "lora", "random", "zero_shot")) -> list[dict]:
    return [record(s, sh, methods) for s in (0, 1) for sh in (E2H, SPUR)]


OVERVIEW = "GENIES in the preference world: what is measured"
BOARD = "Leaderboard: averages over shifts"
SPURIOUS = "Reversed spurious cue: spurious_length"
AGEN = "A_gen per shift"
DE = "Differential elicitation per shift"
SOURCE = "Source accuracy per shift"
CALIB = "Calibration: weighted RMS against the GENIES-code variant"
SEEDS = "Seeds"


def _by_title(sections) -> dict:
    return {s.title: s for s in sections}


def _text(path) -> str:
    return html.unescape(re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png", path.read_text()))


def test_sections_carry_the_hand_computed_numbers():
    from mixprobe.report.genies_report import genies_sections

    secs = _by_title(genies_sections(all_records()))
    assert list(secs) == [OVERVIEW, BOARD, SPURIOUS, AGEN, DE, SOURCE, CALIB, SEEDS]

    ov = secs[OVERVIEW]
    assert "by construction" in ov.text and "DE = (A_gen − A_zero-shot) / TTC" in ov.text
    assert "perfectly right on source and perfectly wrong on target" in ov.text
    assert "low_to_high_quality" not in ov.text                       # only the shifts in the records
    methods = {r["method"]: r for r in ov.table}
    assert list(methods) == ["mms", "lora", "zero_shot", "random"]
    assert methods["mms"]["GENIES DE"] == "0.145" and methods["random"]["GENIES DE"] == "—"
    assert methods["random"]["kind"] == "null" and "mass-mean per attention head" in methods["mms"]["what it is"]
    assert "good responses are long on source" in ov.html_extra

    board = secs[BOARD]
    assert board.figure is not None
    rows = {r["method"]: r for r in board.table}
    assert list(rows) == ["mms", "lora", "zero_shot", "random"]            # ordered by measured DE
    assert rows["mms"]["DE"] == "+0.20 [+0.05, +0.35]" and rows["mms"]["GENIES DE"] == "+0.145"
    assert rows["lora"]["DE"] == "+0.05 [-0.05, +0.15]"
    assert rows["zero_shot"]["DE"] == "+0.00 [+0.00, +0.00]" and rows["mms"]["seeds"] == 2
    assert "Measured DE ordering: mms > lora;" in board.text and "the same order of 2 methods" in board.text

    sp = {r["method"]: r for r in secs[SPURIOUS].table}
    assert list(sp) == ["lora", "mms", "zero_shot", "random (null)"]
    assert sp["lora"]["A_gen on target (good ⇔ short)"] == "0.20 [0.10, 0.30]"
    assert sp["lora"]["source accuracy (good ⇔ long)"] == "1.00 [1.00, 1.00]"
    assert sp["lora"]["A_gen − random (paired)"] == "-0.30 [-0.40, -0.20]" and sp["lora"]["seeds below 0.5"] == "2/2"
    assert sp["mms"]["A_gen on target (good ⇔ short)"] == "0.55 [0.40, 0.70]" and sp["mms"]["per seed"] == "0.40, 0.70"
    assert sp["mms"]["A_gen − random (paired)"] == "+0.05 [-0.10, +0.20]" and sp["mms"]["seeds below 0.5"] == "1/2"
    assert sp["random (null)"]["A_gen on target (good ⇔ short)"] == "0.50 [0.50, 0.50]"
    assert "A_gen − random (paired)" not in sp["random (null)"]
    assert "lora 0.20 [0.10, 0.30]; mms 0.55 [0.40, 0.70]; the random null 0.50 [0.50, 0.50]" in secs[SPURIOUS].text

    agen = {r["shift"]: r for r in secs[AGEN].table}
    assert agen[E2H]["TTC"] == "0.90 [0.80, 1.00]" and agen[SPUR]["TTC"] == "1.00 [1.00, 1.00]"
    assert agen[E2H]["zero-shot"] == "0.50 [0.50, 0.50]" and "zero_shot" not in agen[E2H]
    assert agen[E2H]["mms"] == "0.80 [0.70, 0.90]" and agen[SPUR]["category"] == "spurious cues"
    de = {r["shift"]: r for r in secs[DE].table}
    assert de[E2H]["mms"] == "+0.35 [+0.20, +0.50]" and de[SPUR]["mms"] == "+0.05 [-0.10, +0.20]"
    assert de[SPUR]["lora"] == "-0.30 [-0.40, -0.20]"                      # (0.1 − 0.5), (0.3 − 0.5) over TTC 1
    src = {r["shift"]: r for r in secs[SOURCE].table}
    assert src[SPUR]["mms"] == "1.00 [1.00, 1.00]" and src[E2H]["random"] == "0.60 [0.60, 0.60]"

    cal = {r["method"]: r for r in secs[CALIB].table}
    assert cal["mms"]["RMS (weighted, 10 bins)"] == "0.20 [0.10, 0.30]"
    assert cal["mms"]["RMS (GENIES code)"] == "0.30 [0.20, 0.40]"
    assert cal["random"]["RMS (GENIES code)"] == "—" and cal["random"]["RMS (weighted, 10 bins)"] == "0.10 [0.10, 0.10]"

    seeds = {r["seed"]: r for r in secs[SEEDS].table}
    assert seeds[1]["shifts"] == "2/2" and seeds[1]["TTC (mean over shifts)"] == "0.90"
    assert seeds[0]["seconds"] == "?" and "lack some shifts" not in secs[SEEDS].text
    import matplotlib.pyplot as plt

    plt.close("all")                            # the figure was built, never rendered


def test_without_a_reward_model_the_page_says_ttc_is_unavailable(tmp_path):
    from mixprobe.report.genies_report import build_genies_report, genies_sections

    recs = all_records(("mms", "random", "zero_shot"))
    recs.append(record(2, E2H, ("mms", "random", "zero_shot")))          # a seed without every shift
    secs = _by_title(genies_sections(recs))
    assert list(secs) == [OVERVIEW, BOARD, SPURIOUS, AGEN, SOURCE, CALIB, SEEDS]       # no DE per shift
    assert "TTC is unavailable" in secs[OVERVIEW].text and "TTC is unavailable" in secs[BOARD].text
    assert "TTC is unavailable" in secs[AGEN].text
    rows = {r["method"]: r for r in secs[BOARD].table}
    assert list(rows) == ["mms", "zero_shot", "random"]                   # method order: no DE to order by
    assert rows["mms"]["DE"] == "—" and rows["mms"]["elicitation"] == "—"
    assert rows["mms"]["A_gen"].endswith(" [0.55, 0.80]")                # per seed 0.55, 0.80 (seed 2 left out)
    assert rows["mms"]["seeds"] == 2                                      # seed 2 lacks spurious_length
    assert {r["shift"]: r for r in secs[AGEN].table}[E2H]["TTC"] == "—"
    assert "Seeds [2] lack some shifts" in secs[SEEDS].text
    assert {r["seed"]: r for r in secs[SEEDS].table}[2]["shifts"] == "1/2"

    for s in (0, 1):
        atomic_write_json(tmp_path / "seeds" / f"{s}.json",
                          seed_file(s, [record(s, sh, ("mms", "zero_shot")) for sh in (E2H, SPUR)]))
    page = _text(build_genies_report(tmp_path))
    assert "TTC is unavailable" in page and f"<h2>{DE}</h2>" not in page and f"<h2>{BOARD}</h2>" in page
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["summary"]["average"]["mms"]["de"]["mean"] is None           # strict JSON: NaN written as null


def test_build_report_writes_html_with_a_decodable_figure_and_json(tmp_path):
    from PIL import Image

    from mixprobe.report.genies_report import build_genies_report

    write_seeds(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps({"stale": True}))        # never read
    path = build_genies_report(tmp_path)
    assert path == tmp_path / "report" / "report.html"
    raw = path.read_text()
    uris = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", raw)
    assert raw.count("<img") == 1 and len(uris) == 1
    img = Image.open(io.BytesIO(base64.b64decode(uris[0])))
    img.verify()
    assert img.format == "PNG" and img.size[0] > 600 and img.size[1] > 200
    page = _text(path)
    for title in (OVERVIEW, BOARD, SPURIOUS, AGEN, DE, SOURCE, CALIB, SEEDS):
        assert f"<h2>{title}</h2>" in page
    assert "<td>+0.20 [+0.05, +0.35]</td>" in page and "<td>0.20 [0.10, 0.30]</td>" in page
    assert "<td>0.90 [0.80, 1.00]</td>" in page and "<td>-0.30 [-0.40, -0.20]</td>" in page
    assert "Measured DE ordering: mms > lora;" in page
    assert "<td>steps 1500</td>" in page and "<td>steps 150</td>" in page and "<td>101</td>" in page
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["n_records"] == 4 and data["summary"]["order"] == ["mms", "lora", "zero_shot", "random"]
    assert data["summary"]["average"]["mms"]["de"]["mean"] == pytest.approx(0.20)
    run = next(r for r in data["runs"] if r["seed"] == 1)
    assert run["shifts"][E2H]["ttc"] == 0.8 and run["shifts"][SPUR]["accuracy"]["lora"] == 0.3
    assert data["summary"]["average"]["random"]["rms_genies"]["mean"] is None

    other = build_genies_report(tmp_path, tmp_path / "elsewhere")
    assert other == tmp_path / "elsewhere" / "report.html" and (tmp_path / "elsewhere" / "report.json").exists()


def test_loading_names_the_folder_the_file_and_how_to_make_records(tmp_path):
    from mixprobe.report.genies_report import build_genies_report, load_genies_records

    with pytest.raises(DataError) as e:
        build_genies_report(tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "seeds") in msg and "mixprobe genies" in msg and "experiments/genies.py" in msg
    assert not (tmp_path / "report").exists()
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "0.json").write_text("{not json")
    with pytest.raises(DataError, match="0.json"):
        load_genies_records(tmp_path)
    (seeds / "0.json").write_text(json.dumps({"seed": 0}))
    with pytest.raises(DataError, match="not a GENIES seed file"):
        load_genies_records(tmp_path)
    (seeds / "0.json").write_text(json.dumps(seed_file(0, [])))
    with pytest.raises(DataError, match="hold no records"):
        load_genies_records(tmp_path)
    (seeds / "0.json").write_text(json.dumps(seed_file(0, [{"shift": E2H}])))
    with pytest.raises(DataError, match="not a GENIES seed file"):
        load_genies_records(tmp_path)
    (seeds / "0.json").write_text(json.dumps(seed_file(0, [record(0, E2H), record(0, E2H)])))
    with pytest.raises(DataError, match="recorded twice"):
        load_genies_records(tmp_path)
    (seeds / "0.json").write_text(json.dumps(seed_file(0, [record(1, E2H)])))
    with pytest.raises(DataError, match="holds a record of seed 1"):
        load_genies_records(tmp_path)
    assert not (tmp_path / "report").exists()

    write_seeds(tmp_path)
    recs = load_genies_records(tmp_path)
    assert [(r["seed"], r["shift"]) for r in recs] == [(0, E2H), (0, SPUR), (1, E2H), (1, SPUR)]

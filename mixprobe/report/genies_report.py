"""The GENIES study (preference world) as one HTML page: the leaderboard, the reversed spurious cue, every shift.

Problem: the GENIES study (:mod:`mixprobe.mixture.genies`) leaves one JSON file per seed — for every shift, each
method's accuracy on the shifted target after fitting on the source, its accuracy on the source, its calibration, and
the target-tuned capability (TTC) — and the reader needs to see on one page that travels which way of reading "the
better response" generalises (A_gen, elicitation, differential elicitation), how the ordering compares with GENIES'
own, what a method does when a spurious cue flips, and how much of that varies from seed to seed — each number beside
zero-shot, TTC and the random-direction null, and beside what holds by construction of the world.
Mechanism: :func:`genies_sections` turns records (and their :func:`~mixprobe.mixture.genies.summarize` leaderboard)
into report sections — overview (metrics, methods, shifts, what holds by construction); the leaderboard averages with
the :func:`~mixprobe.mixture.genies.plot_leaderboard` figure and the ordering against GENIES' reference DE; the
reversed spurious cue (``spurious_length``) beside the random null; A_gen, DE and source accuracy per shift with TTC
and zero-shot; calibration (weighted RMS against the GENIES-code variant); seeds. A section without data is left out
(no LoRA reward model in the records: no TTC, so no DE). :func:`build_genies_report` reads ``RESULTS/seeds/*.json``
(the records under each file's ``"records"``) and writes ``report.html`` + ``report.json``.

Example::

    from mixprobe.report.genies_report import build_genies_report
    build_genies_report("experiments/results/genies")      # experiments/results/genies/report/report.html

Constraints: records are those of :func:`~mixprobe.mixture.genies.run_seed` (written by ``mixprobe genies`` or
``experiments/genies.py``); the numbers are recomputed from the records, never read from a stale ``summary.json``.
Intervals are 95 % percentile bootstraps over seeds: coarse with a few seeds, none with one.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

from mixprobe._check import checked
from mixprobe.errors import DataError
from mixprobe.report.page import Section, load_json_records, render_table, write_report

HOW_TO_PRODUCE = ("run `mixprobe genies --out DIR` (or `python experiments/genies.py --out DIR`), which writes one "
                  "DIR/seeds/<seed>.json per seed")
KIND = {"mms": "probe (heads)", "lat": "probe (layers)", "lat_pca": "probe (layers)", "lat_template": "probe (layers)",
        "cra": "probe (heads, contrast)", "ccs": "probe (unsupervised)", "logistic": "site-level reference",
        "random": "null", "lora": "reward model", "few_shot": "prompting", "zero_shot": "prompting"}
NA = "—"
SPURIOUS = "spurious_length"


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _num(x: float, signed: bool) -> str:
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def _c(cell: dict | None, signed: bool = False) -> str:
    """``mean [lo, hi]`` of a summary cell (mean alone with one seed; — without a value)."""
    if not cell or not _finite(cell.get("mean")):
        return NA
    lo, hi = cell.get("ci95", [math.nan, math.nan])
    txt = _num(cell["mean"], signed)
    if _finite(lo) and _finite(hi):
        txt += f" [{_num(lo, signed)}, {_num(hi, signed)}]"
    return txt


def _boot(xs: list[float], n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean and 95 % percentile bootstrap over seeds (the resampling of :func:`~mixprobe.mixture.genies.summarize`)."""
    import numpy as np

    vals = [float(x) for x in xs if _finite(x)]
    ci = [math.nan, math.nan]
    if len(vals) >= 2:
        arr = np.asarray(vals)
        means = arr[np.random.default_rng(seed).integers(0, arr.size, (n_boot, arr.size))].mean(1)
        ci = [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]
    return {"mean": float(np.mean(vals)) if vals else math.nan, "ci95": ci, "n": len(vals), "values": vals}


def _has_ttc(records: list[dict]) -> bool:
    return any(_finite(r.get("ttc")) for r in records)


def _any_finite(res: dict, m: str, key: str) -> bool:
    return any(_finite(res["table"][s]["methods"].get(m, {}).get(key, {}).get("mean")) for s in res["shifts"])


def _note(shift: str) -> str:
    from mixprobe.organisms.preference import SHIFTS

    return SHIFTS[shift].note if shift in SHIFTS else ""


def _sizes(records: list[dict], key: str) -> str:
    return ", ".join(str(v) for v in sorted({r.get(key, "?") for r in records}, key=str))


def _overview(records: list[dict], res: dict) -> Section:
    from mixprobe.mixture.genies import GENIES_REFERENCE_DE, METHODS

    shifts = res["shifts"]
    ttc = ("TTC is unavailable in these records (no LoRA reward model: run with lora among the methods), so "
           "elicitation and DE are not measured here. " if not _has_ttc(records) else "")
    construction = ["zero-shot's DE is 0 by definition (it is the reference DE subtracts)",
                    "TTC is a LoRA reward model tuned on the target's own training pairs — a yardstick, not a "
                    "ceiling, so elicitation can exceed 1",
                    "pretraining follows a share of responses with a 'judge : good' / 'judge : bad' verdict (by "
                    "default 80 % of wrong ones, 40 % of right ones), so zero-shot and few-shot read a word the "
                    "model was taught: they are above chance wherever the model tells right from wrong, which is "
                    "why DE subtracts zero-shot"]
    if "low_to_high_quality" in shifts:
        construction.append("on low_to_high_quality the bad source responses are garbage ('ans : ? .'), trivially "
                            "separable from any answer, so a source accuracy near 1 says nothing; the target's near "
                            "misses (off by one, two items swapped) are the test")
    if SPURIOUS in shifts:
        construction.append("on spurious_length good ⇔ long on source and good ⇔ short on target, so a method that "
                            "reads length is perfectly right on source and perfectly wrong on target (A_gen 0); 0.5 "
                            "is chance and only a method that reads rightness keeps its source accuracy")
    text = ("What this study measures (GENIES, arXiv 2311.07723, in miniature). A small Llama (by default 4 "
            "layers, 8 heads) is trained from scratch on a synthetic preference world whose ground truth is "
            "exact: a response is good when its answer is right. Per shift, every method is fit on source "
            "training pairs and scored on target test pairs, P(r2 better) per pair. A_gen = its accuracy on the "
            "target (0.5 = chance); source accuracy = its accuracy on held-out source pairs (in distribution); TTC "
            "(target-tuned capability) = the accuracy of a LoRA reward model trained on the target's own training "
            "pairs; elicitation = A_gen / TTC; differential elicitation DE = (A_gen − A_zero-shot) / TTC, what a "
            "method adds over asking the model, in units of what is reachable on the target; RMS = calibration "
            "error of P(r2 better) (weighted over 10 bins, and the GENIES evaluation code's variant). Every number "
            "is the mean over seeds with a 95 % percentile bootstrap interval over seeds (coarse with a few seeds; "
            "none with one). " + ttc +
            f"Seeds: {len(res['seeds'])} ({', '.join(map(str, res['seeds']))}); shifts: {len(shifts)} "
            f"({', '.join(shifts)}); training pairs per split: {_sizes(records, 'n_train')}; test pairs: "
            f"{_sizes(records, 'n_test')}. What holds by construction: " + "; ".join(construction) + ". The model is "
            "tiny and the world synthetic: the numbers answer 'does this ordering hold where the truth is known?', "
            "not 'what would LLaMA-30B do'. Table: the methods measured and GENIES' reference DE (LLaMA-30B, "
            "its 15 hardest shifts). Above it: the shifts.")
    table = [{"method": m, "kind": KIND.get(m, "?"), "what it is": METHODS.get(m, "?"),
              "GENIES DE": f"{GENIES_REFERENCE_DE[m]:.3f}" if m in GENIES_REFERENCE_DE else NA}
             for m in res["methods"]]
    shift_rows = [{"shift": s, "category": res["table"][s]["category"], "source → target": _note(s),
                   "seeds": len({r["seed"] for r in records if r["shift"] == s})} for s in shifts]
    return Section("GENIES in the preference world: what is measured", text, table=table,
                   html_extra=render_table(shift_rows),
                   data={"seeds": res["seeds"], "shifts": shifts, "methods": res["methods"]})


def _leaderboard_section(records: list[dict], res: dict) -> Section:
    from mixprobe.mixture.genies import GENIES_REFERENCE_DE, ordering_sentence, plot_leaderboard

    table = []
    for m in res["order"]:
        a = res["average"][m]
        table.append({"method": m, "A_gen": _c(a["a_gen"]), "source accuracy": _c(a["source"]),
                      "elicitation": _c(a["elicitation"]), "DE": _c(a["de"], signed=True),
                      "GENIES DE": f"{GENIES_REFERENCE_DE[m]:+.3f}" if m in GENIES_REFERENCE_DE else NA,
                      "seeds": a["a_gen"]["n"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                  # all-NaN DE bars (no TTC) and their intervals
        fig = plot_leaderboard(res)
    if _has_ttc(records):
        order = ordering_sentence(res)
        how = "Rows are ordered by measured DE. "
    else:
        order = ("TTC is unavailable (no LoRA reward model in these records), so DE and elicitation are shown as "
                 f"{NA} and the ordering against GENIES cannot be compared.")
        how = "Rows follow the method list (no DE to order by). "
    text = (f"Averages over the {len(res['shifts'])} shift{'s' if len(res['shifts']) != 1 else ''}: per seed, the "
            "mean over shifts (a seed counts for a method only when it has a finite value on every shift — seeds "
            "= how many did for A_gen), then the mean over seeds with a 95 % bootstrap interval. " + how +
            "GENIES DE is the paper's average with LLaMA-30B over its 15 hardest shifts — a different model and "
            "different shifts, so compare the ordering, not the values. " + order + " Figure: left, DE per method "
            "(bars, 95 % intervals) beside GENIES' reference (black ticks); right, A_gen per shift × method "
            "(0.5 = chance).")
    return Section("Leaderboard: averages over shifts", text, figure=fig, table=table,
                   data={"order": res["order"], "ordering": order})


def _spurious_section(records: list[dict], res: dict) -> Section | None:
    if SPURIOUS not in res["table"]:
        return None
    cells = res["table"][SPURIOUS]["methods"]
    present = [m for m in res["methods"] if _finite(cells[m]["a_gen"]["mean"])]
    if not present:
        return None
    head = [m for m in ("lora", "mms") if m in present]
    rest = [m for m in res["order"] if m in present and m not in head and m != "random"]
    rows = head + rest + (["random"] if "random" in present else [])
    recs = {r["seed"]: r["methods"] for r in records if r["shift"] == SPURIOUS}
    table = []
    for m in rows:
        c = cells[m]
        vals = [recs[s][m]["accuracy"] for s in sorted(recs) if m in recs[s]]
        row = {"method": m + (" (null)" if m == "random" else ""), "source accuracy (good ⇔ long)": _c(c["source"]),
               "A_gen on target (good ⇔ short)": _c(c["a_gen"]),
               "per seed": ", ".join(f"{v:.2f}" for v in vals),
               "seeds below 0.5": f"{sum(v < 0.5 for v in vals)}/{len(vals)}"}
        if "random" in present and m != "random":
            diff = [ms[m]["accuracy"] - ms["random"]["accuracy"] for ms in recs.values()
                    if m in ms and "random" in ms]
            row["A_gen − random (paired)"] = _c(_boot(diff), signed=True)
        table.append(row)
    bits = [f"{m} {_c(cells[m]['a_gen'])}" for m in head]
    null = f"; the random null {_c(cells['random']['a_gen'])}" if "random" in present else ""
    text = ("The spurious cue reversed (GENIES' good ⇔ long): on the source every good response is the long one, on "
            "the target every good response is the short one; the answers are as right or wrong as on any shift. "
            "By construction a method that reads length scores 1 on source and 0 on target, one that reads rightness "
            "keeps its source accuracy, and 0.5 is chance. Below 0.5 on the target is the sign of a method that "
            "learnt the cue. The random null — the same head selection and Platt fit on random directions at "
            "matched norm — shows what the selection alone picks up; A_gen − random is paired by seed. "
            f"A_gen on target: {'; '.join(bits) if bits else 'neither lora nor mms was run'}{null}.")
    return Section("Reversed spurious cue: spurious_length", text, table=table,
                   data={"a_gen": {m: cells[m]["a_gen"] for m in rows}})


def _per_shift_section(records: list[dict], res: dict, key: str) -> Section | None:
    methods = [m for m in res["order"] if (key == "source" or m != "zero_shot") and _any_finite(res, m, key)]
    if not methods:
        return None
    has_ttc = _has_ttc(records)
    table = []
    for s in res["shifts"]:
        t = res["table"][s]
        row = {"shift": s, "category": t["category"]}
        if key != "source":
            row["TTC"] = _c(t["ttc"])
            row["zero-shot"] = _c(t["methods"].get("zero_shot", {}).get("a_gen"))
        for m in methods:
            row[m] = _c(t["methods"][m][key], signed=key == "de")
        table.append(row)
    ttc_txt = ("" if has_ttc else " TTC is unavailable (no LoRA reward model in these records): shown as —.")
    if key == "a_gen":
        title = "A_gen per shift"
        text = ("Per shift, each method's accuracy on the target test pairs after fitting on the source, beside TTC "
                "(the LoRA reward model tuned on the target) and zero-shot's A_gen; mean over seeds [95 % bootstrap "
                "interval]. 0.5 is chance; a method above TTC generalised better than tuning on the target did." +
                ttc_txt)
    elif key == "de":
        title = "Differential elicitation per shift"
        text = ("Per shift, DE = (A_gen − A_zero-shot) / TTC, computed per seed from that seed's TTC and zero-shot "
                "on the same shift, then averaged over seeds [95 % bootstrap interval]. 0: no better than asking "
                "the model; negative: worse. Zero-shot's own DE is 0 by definition and is left out.")
    else:
        title = "Source accuracy per shift"
        text = ("Per shift, each method's accuracy on held-out source test pairs (in distribution), the other half "
                "of the generalisation gap. Where it is near 1 and A_gen is not, the method learnt something the "
                "target does not share; on low_to_high_quality a source accuracy near 1 is free (the bad responses "
                "are garbage), on spurious_length it is free to any method that reads length.")
    return Section(title, text, table=table, data={"methods": methods})


def _calibration_section(res: dict) -> Section | None:
    rows = [m for m in res["order"] if _any_finite(res, m, "rms") or _any_finite(res, m, "rms_genies")]
    if not rows:
        return None
    table = []
    for m in rows:
        a = res["average"][m]
        worst = max(((s, res["table"][s]["methods"][m]["rms"]["mean"]) for s in res["shifts"]
                     if _finite(res["table"][s]["methods"][m]["rms"]["mean"])), key=lambda x: x[1], default=None)
        table.append({"method": m, "RMS (weighted, 10 bins)": _c(a["rms"]),
                      "RMS (GENIES code)": _c(a["rms_genies"]),
                      "worst shift (weighted)": f"{worst[0]} {worst[1]:.2f}" if worst else NA})
    text = ("Calibration of P(r2 better) on the target test pairs, averaged over shifts then seeds. Weighted: the "
            "standard top-label RMS calibration error, confidence max(p, 1 − p) against being right, 10 equal-width "
            "bins weighted by their share of pairs (0 = calibrated). GENIES code: the variant of GENIES' evaluation "
            "code, kept only to compare with its numbers — a random side per pair, 5 bins, bins under 20 pairs "
            "skipped, each bin against the global label mean and the bins averaged unweighted; it is not a "
            "calibration error in the textbook sense, and where no bin reaches 20 pairs it is undefined (—, and "
            "that seed leaves the average). Probes are Platt-calibrated on the source, so a shift can leave them "
            "confident and wrong.")
    return Section("Calibration: weighted RMS against the GENIES-code variant", text, table=table,
                   data={m: {"rms": res["average"][m]["rms"], "rms_genies": res["average"][m]["rms_genies"]}
                         for m in rows})


def _seeds_section(records: list[dict], res: dict, files: list[dict] | None) -> Section:
    meta = {f["seed"]: f for f in files or []}
    table = []
    for seed in res["seeds"]:
        recs = [r for r in records if r["seed"] == seed]
        ttcs = [r["ttc"] for r in recs if _finite(r.get("ttc"))]
        f = meta.get(seed, {})
        table.append({"seed": seed, "shifts": f"{len({r['shift'] for r in recs})}/{len(res['shifts'])}",
                      "methods": len({m for r in recs for m in r["methods"]}),
                      "training / test pairs": f"{_sizes(recs, 'n_train')} / {_sizes(recs, 'n_test')}",
                      "TTC (mean over shifts)": f"{sum(ttcs) / len(ttcs):.2f}" if ttcs else NA,
                      "pretraining": _settings(f.get("pretrain")), "reward model": _settings(f.get("reward")),
                      "seconds": f.get("seconds", "?")})
    short = [s for s in res["seeds"] if {r["shift"] for r in records if r["seed"] == s} != set(res["shifts"])]
    note = (f" Seeds {short} lack some shifts: they leave every average over shifts (the per-shift tables keep "
            "them)." if short else "")
    text = ("Per seed: a preference world pretrained from that seed, then every shift's pairs drawn with it. Shifts "
            "and methods it holds, the pair counts, its TTC averaged over shifts, the pretraining and reward-model "
            "settings and the wall time of the seed file." + note)
    return Section("Seeds", text, table=table, data={"seeds": res["seeds"], "incomplete": short})


def _settings(d: Any) -> str:
    if not isinstance(d, dict) or not d:
        return NA if d is None else "defaults"
    return ", ".join(f"{k} {v}" for k, v in d.items())


def _summarize(records: list[dict]) -> dict:
    from mixprobe.mixture.genies import summarize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # means of no finite value
        return summarize(records)


@checked
def genies_sections(records: list[dict], summary: dict | None = None,
                    files: list[dict] | None = None) -> list[Section]:
    """Report sections of a GENIES study: overview, leaderboard (table + figure + ordering), reversed spurious cue,
    A_gen / DE / source accuracy per shift, calibration, seeds — each left out when it has no data. ``summary``:
    :func:`~mixprobe.mixture.genies.summarize` of ``records`` (computed when None); ``files``: the seed files
    (``seconds``, ``pretrain``, ``reward``) for the seeds table."""
    if not records:
        raise DataError(f"no GENIES records: {HOW_TO_PRODUCE}")
    res = summary if summary is not None else _summarize(records)
    sections = [_overview(records, res), _leaderboard_section(records, res)]
    for sec in (_spurious_section(records, res), _per_shift_section(records, res, "a_gen"),
                _per_shift_section(records, res, "de") if _has_ttc(records) else None,
                _per_shift_section(records, res, "source"), _calibration_section(res)):
        if sec is not None:
            sections.append(sec)
    sections.append(_seeds_section(records, res, files))
    return sections


def _seed_order(p: Path) -> tuple[int, int | str]:
    return (0, int(p.stem)) if p.stem.lstrip("-").isdigit() else (1, p.stem)


def _load_files(results_dir: str | Path) -> list[dict]:
    folder = Path(results_dir)
    paths = sorted((folder / "seeds").glob("*.json"), key=_seed_order)
    if not paths:
        raise DataError(f"no GENIES seed files in {folder / 'seeds'}: {HOW_TO_PRODUCE}; then rerun the report on "
                        f"{folder}")
    files = load_json_records(paths, "a GENIES seed file", {"seed", "records"}, "seed")
    seen: dict[tuple, Path] = {}
    for p, f in zip(paths, files):
        recs = f["records"]
        need = {"shift", "category", "seed", "methods"}
        if not isinstance(recs, list) or not all(isinstance(r, dict) and need <= set(r)
                                                 and isinstance(r["methods"], dict) for r in recs):
            raise DataError(f"{p} is not a GENIES seed file (its records are not a list of per-shift records with "
                            "shift, category, seed and methods); delete it and rerun the seed")
        for r in recs:
            bad = [m for m, v in r["methods"].items() if not isinstance(v, dict) or not {"accuracy", "rms"} <= set(v)]
            if bad:
                raise DataError(f"{p}: shift {r['shift']!r} has methods without accuracy and rms ({bad}); delete it "
                                "and rerun the seed")
            if r["seed"] != f["seed"]:
                raise DataError(f"{p} is seed {f['seed']} but holds a record of seed {r['seed']}; delete it and rerun "
                                "the seed")
            key = (r["seed"], r["shift"])
            if key in seen:
                raise DataError(f"seed {key[0]}, shift {key[1]!r} is recorded twice ({seen[key]} and {p}); delete one")
            seen[key] = p
    if not seen:
        raise DataError(f"the seed files in {folder / 'seeds'} hold no records: {HOW_TO_PRODUCE}")
    return files


@checked
def load_genies_records(results_dir: str | Path) -> list[dict]:
    """The per-shift records of every ``results_dir/seeds/*.json`` (under each file's ``"records"``), by seed; a
    :class:`~mixprobe.errors.DataError` naming the folder (and how to produce records) when there are none, or
    naming the file that is not a seed file."""
    return [r for f in _load_files(results_dir) for r in f["records"]]


def _json_safe(x: Any) -> Any:
    """NaN and infinities as null, so report.json is strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


@checked
def build_genies_report(results_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Read ``results_dir/seeds/*.json``, write ``report.html`` + ``report.json`` to ``out_dir`` (default
    ``results_dir/report``); returns the HTML path."""
    import matplotlib

    matplotlib.use("Agg", force=False)

    folder = Path(results_dir)
    files = _load_files(folder)
    records = [r for f in files for r in f["records"]]
    summary = _summarize(records)
    sections = genies_sections(records, summary, files)
    runs = [{"seed": f["seed"], "seconds": f.get("seconds"), "pretrain": f.get("pretrain"), "reward": f.get("reward"),
             "shifts": {r["shift"]: {"ttc": r.get("ttc"), "accuracy": {m: v["accuracy"] for m, v in
                                                                       r["methods"].items()}}
                        for r in f["records"]}} for f in files]
    data = {"results_dir": str(folder), "n_records": len(records), "summary": summary, "runs": runs,
            "sections": [s.title for s in sections]}
    out = Path(out_dir) if out_dir is not None else folder / "report"
    title = "mixprobe — GENIES in the preference world"
    return write_report(sections, out, _json_safe(data), title=title, subtitle=str(folder))


__all__ = ["build_genies_report", "genies_sections", "load_genies_records"]

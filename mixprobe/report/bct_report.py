"""The behaviour-compatible-training (BCT) study as one HTML page: transfer per setting, predictors, prefixes.

Problem: a BCT study (:mod:`mixprobe.mixture.bct`) leaves one JSON record per (setting, overlap, seed) — curves of
``P(X | E)`` for every arm, verdicts, overlap predictors, prefix directions — and the reader needs to see, on one
page that travels, how much the eval-only behaviour ``X`` moved when training touched only ``(T, A)``, how much that
varies from seed to seed, whether it could have been predicted before training, and whether a training-time prefix
kept it — each number beside what it would be if nothing happened.
Mechanism: :func:`bct_sections` turns records (and their :func:`~mixprobe.mixture.bct.summarize_study` summary) into
report sections — overview with the verdict per arm; per setting, the summary table and the
:func:`~mixprobe.mixture.bct.plot_study` figure; the overlap predictors' rank correlations (all of them, whatever
their value); the training-prefix leakage with its paired bootstrap interval; the prefix-direction effect beside
random directions at matched norm; the initial policies that failed. A section without data is left out.
:func:`build_bct_report` reads ``RESULTS/cells/*.json`` and writes ``report.html`` + ``report.json``.

Example::

    from mixprobe.report.bct_report import build_bct_report
    build_bct_report("experiments/results/bct")      # experiments/results/bct/report/report.html

Constraints: records are those of :func:`~mixprobe.mixture.bct.run_cell` (written by ``mixprobe bct`` or
``experiments/bct.py``); the numbers are recomputed from the records, never read from a stale ``summary.json``.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from mixprobe._check import checked
from mixprobe.errors import DataError
from mixprobe.report.page import Section, load_json_records, render_table, write_report

PREDICTORS = (("grad_cosine", "grad cosine"), ("grad_cosine_mean", "mean-grad cosine"),
              ("activation_cosine", "activation cosine"), ("overlap", "overlap level"))
HOW_TO_PRODUCE = ("run `mixprobe bct --out DIR` (or `python experiments/bct.py --out DIR`), which writes one "
                  "DIR/cells/<setting>_ov<k>_s<seed>.json per (setting, overlap, seed)")


def _ms(x: dict) -> str:
    return f"{x['mean']:.2f} ± {x['sd']:.2f}"


def _verdicts(counts: dict) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "-"


def _switched(sw: dict) -> str:
    return f"{sw['k']}/{sw['n']} [{sw['wilson'][0]:.2f}, {sw['wilson'][1]:.2f}]"


def _key(k: str) -> str:
    return k.replace("|", " · ")


def _arm_recipe(records: list[dict], arm: str) -> dict:
    for r in records:
        if arm in r.get("arms", {}) and "arm" in r["arms"][arm]:
            return r["arms"][arm]["arm"]
    from mixprobe.mixture.bct import ARMS

    return dict(ARMS.get(arm, {}))


def _overview(records: list[dict], summary: dict) -> Section:
    cells = [r for r in records if "failed" not in r]
    arms: dict[str, dict] = {}
    for v in summary.get("cells", {}).values():
        a = arms.setdefault(v["arm"], {"runs": 0, "k": 0, "verdicts": {}})
        a["runs"] += v["switched"]["n"]
        a["k"] += v["switched"]["k"]
        for lab, n in v.get("verdicts", {}).items():
            a["verdicts"][lab] = a["verdicts"].get(lab, 0) + n
    table = []
    for name, a in arms.items():
        r = _arm_recipe(records, name)
        lr = r.get("learning_rate", r.get("lr"))
        table.append({"arm": name, "method": r.get("method", "?"),
                      "parameters": f"LoRA r {r['lora_r']}" if r.get("lora_r") else "full",
                      "lr": f"{lr:g}" if isinstance(lr, (int, float)) else "default", "prefix": r.get("prefix", "none"),
                      "steps": r.get("steps", "?"), "runs": a["runs"], "switched (all runs)": f"{a['k']}/{a['runs']}",
                      "verdicts (all runs)": _verdicts(a["verdicts"])})
    settings = sorted({r["setting"] for r in cells})
    text = ("What BCT measures. SFT from scratch teaches an initial policy: cue T → behaviour A, cue E → behaviour X "
            "(both answer the question correctly, in different forms). Follow-up training then sees only (T, A) rows — "
            "prompts where the initial policy and the alternate policy (A under both cues) agree — and never an E "
            "prompt. Transfer is the drop of P(X | E), the exact next-token probability of X's answers on E prompts, "
            "from the initial policy to the end of training: 0 is the null (training on T left E alone); a seed "
            "switches when P(X | E) ends below 0.5. Every arm branches from the same initial checkpoint of a run, so "
            "arms are compared on the same initial model. The verdict per run compares the initial policy with the end "
            "of the arm (sampled estimator): reweight = the gate moved (E now selects A) while forced X is intact; "
            "rewrite = a behaviour itself changed; both; undecided = an interval straddles a threshold. The overlap "
            "predictors (gradient and activation cosines between paired T and E prompts) are computed on the initial "
            "model before any follow-up training, and their rank correlations with measured transfer are reported "
            "whatever they come out to be — none is selected for looking good. The prefix-direction effect (steering "
            "un-prefixed E prompts along mean(prefixed) − mean(plain)) is shown beside random directions at matched "
            f"norm. Runs: {len(records)} ({len(cells)} finished, {len(records) - len(cells)} whose initial policy "
            f"failed); settings: {', '.join(settings) or 'none'}. Table: per arm, its recipe and, pooled over "
            "settings, overlaps and seeds, the switch count and the verdicts.")
    return Section("Behaviour-compatible training: what is measured", text, table=table or None,
                   data={"arms": arms})


def _setting_section(records: list[dict], summary: dict, setting: str) -> Section:
    from mixprobe.mixture.bct import plot_study

    rows = [v for v in summary.get("cells", {}).values() if v["setting"] == setting]
    recs = [r for r in records if "failed" not in r and r["setting"] == setting]
    table = [{"overlap": v["overlap"], "arm": v["arm"], "transfer": _ms(v["transfer"]),
              **({"transfer mean [95 % bootstrap]": "[{:.2f}, {:.2f}]".format(*v["transfer"]["ci95"])}
                 if "ci95" in v["transfer"] else {}),
              "P(X|E) start → end": f"{v['x_on_e_start']['mean']:.2f} → {_ms(v['x_on_e_end'])}",
              "switched [95 % Wilson]": _switched(v["switched"]), "P(A|T) end": _ms(v["a_on_t_end"]),
              "forced X on E": _ms(v["forced_x_on_e_end"]), "verdicts": _verdicts(v.get("verdicts", {}))}
             for v in rows]
    org: dict = next((r["organism"] for r in recs if "organism" in r), {})
    cues: dict[int, str] = {}
    for r in sorted(recs, key=lambda r: r["overlap"]):
        o = r.get("organism", {})
        if "T cue" in o:
            cues.setdefault(r["overlap"], f"overlap {r['overlap']}: T '{o['T cue']}' / E '{o['E cue']}'")
    seeds = sorted({r["seed"] for r in recs})
    sft = ", ".join(sorted({str(r.get("sft_steps", "?")) for r in recs}))
    boot = ("; beside it, a 95 % percentile bootstrap interval of the mean, resampling seeds (coarse with a few "
            "seeds)" if any("ci95" in v["transfer"] for v in rows) else "")
    text = (f"Setting {setting}: A = {org.get('A', '?')}, X = {org.get('X', '?')}"
            + (f"; cue phrases — {'; '.join(cues.values())}" if cues else "")
            + f". Seeds {seeds}, initial SFT {sft} steps. Per overlap (shared cue words) and arm, over seeds: "
            "transfer = drop of P(X | E), mean ± sd (null: 0, training on (T, A) left the eval behaviour where it "
            f"was; the sd is the seed-to-seed spread, not an error bar on the mean){boot}; P(X | E) at the start (the "
            "initial policy) and the end; switched = seeds ending with P(X | E) below 0.5, with a 95 % Wilson "
            "interval (with a few seeds it is wide); P(A | T) end = the trained behaviour held (the model is not "
            "broken); forced X on E = share of E prompts where X, forced, still answers correctly in its own form "
            "(near 1: X survived as a behaviour even where the cue stopped selecting it); verdicts counted over "
            "seeds. Figure: left, transfer against overlap per arm (mean ± sd over seeds); right, P(X | E) of every "
            "seed along sft_full training, coloured by overlap.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)        # a legend with no lines when a setting lacks main arms
        fig = plot_study(records, summary, setting)
    return Section(f"Setting: {setting}", text, figure=fig, table=table, data={"cells": rows})


def _predictor_section(records: list[dict], summary: dict) -> Section | None:
    runs = [r for r in records if "failed" not in r and "predictors" in r]
    if not runs:
        return None
    corr = summary.get("correlations", {})
    means = []
    for key in sorted({(r["setting"], r["overlap"]) for r in runs}):
        rs = [r for r in runs if (r["setting"], r["overlap"]) == key]
        means.append({"setting": key[0], "overlap": key[1], "runs": len(rs),
                      **{label: sum(r["predictors"][p] for r in rs) / len(rs) for p, label in PREDICTORS[:3]}})
    text = ("Can transfer be predicted before training? Each predictor is computed on the initial model, before any "
            "follow-up training: grad cosine = mean over paired prompts (same operands) of the cosine between the "
            "parameter gradients of log P(A) on the T prompt and on the E prompt (to first order a step on T moves E "
            "by lr · g_E · g_T); mean-grad cosine = the cosine of the two mean gradients; activation cosine = the "
            "cosine of centred last-layer residuals of paired prompts. First table: Spearman's ρ of each predictor "
            "with measured transfer over every (overlap, seed) run of a setting and arm, with its two-sided p-value "
            "(null: ρ = 0, no monotone relation) and n. Every predictor is reported, whatever its correlation; the "
            "overlap level (the design knob) is the reference a predictor has to beat to say more than the design "
            "does. Arms of one run share the same initial model and the same predictor values, so rows of one "
            "setting are not independent tests. Second table: each predictor's mean per overlap level (does it follow "
            "the knob?).")
    if not corr:
        text += (" No rank correlation could be computed: it needs at least two overlap levels and three runs of a "
                 "setting and arm; only the table of means per overlap level is shown.")
    table = [{"setting · arm": _key(k), **{label: f"{v[p]['spearman']:+.2f} (p {v[p]['p_value']:.2g}, n {v[p]['n']})"
                                           for p, label in PREDICTORS if p in v}} for k, v in corr.items()]
    return Section("Overlap predictors against measured transfer", text, table=means,
                   html_extra=render_table(table), data={"correlations": corr, "means": means})


def _inoculation_section(summary: dict) -> Section | None:
    ino = summary.get("inoculation", {})
    if not ino:
        return None
    text = ("Does a training-time prefix keep X? The prefixed arms train on the same (T, A) rows with a line before "
            "each prompt — request (inoculation: the line that asks for A) or irrelevant (a line with nothing to do "
            "with the task, the control for 'any prefix') — and are evaluated, like every arm, on E prompts without "
            "any prefix. Leakage = transfer (drop of P(X | E)) without and with the prefix, mean over seeds; "
            "reduction = per seed, leakage of the plain arm minus leakage of the prefixed arm, both branched from the "
            "same initial model (paired), mean with a 95 % percentile bootstrap interval over seeds (null: 0, the "
            "prefix changed nothing; with a few seeds the interval is coarse, and with one seed it is the point); "
            "reduced on = seeds where the prefixed arm leaked less. A reduction the irrelevant prefix also gives is "
            "not specific to asking for A.")
    table = [{"setting · arm": _key(k), "leakage without prefix": f"{v['leakage_without']:.2f}",
              "leakage with": f"{v['leakage_with']:.2f}",
              "reduction [95 % bootstrap]": f"{v['reduction_mean']:+.2f} [{v['reduction_ci95'][0]:+.2f}, "
                                            f"{v['reduction_ci95'][1]:+.2f}]",
              "reduced on": f"{v['reduced_on']}/{v['n']}"} for k, v in ino.items()]
    return Section("Training-time prefixes (evaluated without the prefix)", text, table=table, data=ino)


def _n_random(records: list[dict]) -> int | None:
    for r in records:
        for d in r.get("prefix_direction_initial", {}).values():
            if "null" in d:
                return len(d["null"])
    return None


def _direction_section(records: list[dict], summary: dict) -> Section | None:
    pd = summary.get("prefix_direction", {})
    if not pd:
        return None
    n = _n_random(records)
    text = ("Does a model trained with a prefix carry a prefix-gated direction that does something? d = mean "
            "last-token residual (last block) of E prompts with the prefix minus without it; adding d to un-prefixed "
            "E prompts moves P(A | E) by the effect. A probe told to find the prefix would succeed by construction "
            "(the prefix is in the input); whether adding its direction moves behaviour is not. Null: the same "
            f"steering with {n if n else 'several'} random directions at the norm of d — null max is their largest "
            "effect (mean over runs), and beats null counts runs whose effect exceeds it. The initial-model column is "
            "the same measurement before follow-up training (the request line forces A in the initial SFT data, so a "
            "direction exists there already): only an effect above both the null and the initial model is something "
            "the training added. Rows: setting · trained arm · prefix whose direction is measured.")
    table = [{"setting · model · prefix": _key(k), "effect (initial model)": f"{v['initial_effect_mean']:+.2f}",
              "effect (trained)": f"{v['steer_effect_mean']:+.2f}", "null max": f"{v['null_max_mean']:+.2f}",
              "beats null": f"{v['beats_null']}/{v['n']}"} for k, v in pd.items()]
    return Section("Prefix direction: steering un-prefixed E prompts", text, table=table, data=pd)


def _failed_section(summary: dict) -> Section | None:
    failed = summary.get("failed", [])
    if not failed:
        return None
    text = (f"{len(failed)} initial polic{'y' if len(failed) == 1 else 'ies'} did not learn both behaviours and the "
            "cue gate (the health check after SFT), so no arm was trained from them. They are a result — how often the "
            "initial policy fails — and are excluded from every number above.")
    table = [{"setting": f["setting"], "overlap": f["overlap"], "seed": f["seed"], "reason": f["failed"]}
             for f in failed]
    return Section("Initial policies that failed", text, table=table, data={"failed": failed})


@checked
def bct_sections(records: list[dict], summary: dict | None = None) -> list[Section]:
    """Report sections of a BCT study: overview (with the verdict per arm), one per setting (table + figure),
    overlap predictors, training prefixes, prefix direction, failed initial policies — each left out when it has
    no data. ``summary``: :func:`~mixprobe.mixture.bct.summarize_study` of ``records`` (computed when None)."""
    if summary is None:
        from mixprobe.mixture.bct import summarize_study

        summary = summarize_study(records)
    sections = [_overview(records, summary)]
    settings = sorted({v["setting"] for v in summary.get("cells", {}).values()})
    sections += [_setting_section(records, summary, s) for s in settings]
    for sec in (_predictor_section(records, summary), _inoculation_section(summary),
                _direction_section(records, summary), _failed_section(summary)):
        if sec is not None:
            sections.append(sec)
    return sections


@checked
def load_bct_records(results_dir: str | Path) -> list[dict]:
    """The records in ``results_dir/cells/*.json``, sorted by file name; a :class:`~mixprobe.errors.DataError`
    naming the folder (and how to produce cells) when there are none, or naming the file that is not a record."""
    folder = Path(results_dir)
    paths = sorted((folder / "cells").glob("*.json"))
    if not paths:
        raise DataError(f"no BCT cells in {folder / 'cells'}: {HOW_TO_PRODUCE}; then rerun the report on {folder}")
    return load_json_records(paths, "a BCT record", {"setting", "overlap", "seed"}, "cell")


@checked
def build_bct_report(results_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Read ``results_dir/cells/*.json``, write ``report.html`` + ``report.json`` to ``out_dir`` (default
    ``results_dir/report``); returns the HTML path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from mixprobe.mixture.bct import summarize_study

    folder = Path(results_dir)
    records = load_bct_records(folder)
    summary = summarize_study(records)
    sections = bct_sections(records, summary)
    runs = [{"setting": r["setting"], "overlap": r["overlap"], "seed": r["seed"],
             **({"failed": r["failed"]} if "failed" in r else {}), "predictors": r.get("predictors", {}),
             "transfer": {a: v["curve"][0]["x_on_e"] - v["curve"][-1]["x_on_e"]
                          for a, v in r.get("arms", {}).items() if v.get("curve")}} for r in records]
    data = {"results_dir": str(folder), "n_records": len(records), "summary": summary, "runs": runs,
            "sections": [s.title for s in sections]}
    out = Path(out_dir) if out_dir is not None else folder / "report"
    title = "mixprobe — behaviour-compatible training"
    return write_report(sections, out, data, title=title, subtitle=str(folder))


__all__ = ["bct_sections", "build_bct_report", "load_bct_records"]

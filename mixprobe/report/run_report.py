"""``mixprobe report RUN_DIR``: one HTML page (figures embedded) + JSON for a trained checkpoint series.

Problem: after a run, users want the whole story on one page: behaviour against step, what the probes read,
whether steering switches the policy back, where patching restores it, and the verdict with its evidence.
Mechanism: each section is computed from the series with the public API and is optional — a section whose
inputs are missing (e.g. no RL phase) is skipped with a note, never faked. Sections:
behaviour curves · verdict per trained phase (reference: last SFT checkpoint) with fidelity and KL split ·
weight diff · probe accuracy by layer × checkpoint · gate readout per tag · steering dose-response ·
cross-checkpoint patching heatmap.

Example::

    from mixprobe.report.run_report import build_run_report
    html_path = build_run_report("runs/demo")          # runs/demo/report/report.html
"""
from __future__ import annotations

import logging
from pathlib import Path

from mixprobe.report.page import Section, write_report

log = logging.getLogger(__name__)


def _behaviour_section(series) -> tuple[Section, dict]:
    from mixprobe.demo import series_results
    from mixprobe.report.plots import plot_training_curves

    if not all(c.metrics.get("accuracy") for c in series.checkpoints):
        from mixprobe.train.pipeline import evaluate_series

        series = evaluate_series(series, progress=False)
    res = series_results(series)
    fig = plot_training_curves(res)
    table = [{"checkpoint": c["name"], **{f"acc {t}": c["accuracy"][t] for t in c["accuracy"]},
              **{f"{k} | {t}": v for t, d in c["mode_frequency"].items() for k, v in d.items()}}
             for c in res["checkpoints"]]
    text = ("Sampled accuracy and component frequencies per tag at every checkpoint, and accuracy with each "
            "component forced by prefilling its signature.")
    return Section("Behaviour across the series", text, figure=fig, table=table), res


def _verdict_sections(series) -> tuple[list[Section], dict]:
    from mixprobe.mixture.verdict import assess, combine
    from mixprobe.mixture.weight_diff import weight_diff
    from mixprobe.train.pipeline import load_checkpoint, organism_of

    organism = organism_of(series)
    ref_entry = series.last("sft")
    ref = load_checkpoint(series.path(ref_entry))
    phases = [p for p in dict.fromkeys(c.phase for c in series.checkpoints) if p != "sft"]
    sections, data = [], {}
    for phase in phases:
        entry = series.last(phase)
        tgt = load_checkpoint(series.path(entry))
        ev = assess(ref, tgt, organism)
        v = combine({series.seed: ev})
        wd = weight_diff(ref[0], tgt[0])
        data[phase] = {"verdict": v.to_dict(), "weight_diff": {k: wd[k] for k in ("unchanged_share", "tol",
                                                                                 "layer_norm_share")}}
        fid = [{"tag": t, "component": c, **d} for t, dd in ev.fidelity.items() for c, d in dd.items()]
        kls = [{"tag": t, **d} for t, d in ev.kl_split.items()]
        box = (f"<div class='verdict'><span class='label'>{v.label}</span> — {v.summary()}</div>"
               f"<p>Reference {ref_entry.name} → target {entry.name}. Unchanged parameters (|Δθ| ≤ 1e-5): "
               f"{wd['unchanged_share']:.1%}.</p>")
        sections.append(Section(f"Verdict: {phase} vs {ref_entry.name}", "", html_extra=box, table=fid))
        sections.append(Section(f"KL split ({phase})", "KL(π_t‖π_ref) = gate term + component term, per tag.",
                                table=kls))
    return sections, data


def build_run_report(run_dir: str | Path, out_dir: str | Path | None = None, *, extra: list[Section] | None = None,
                     include_probes: bool = True, include_patching: bool = True) -> Path:
    """Build ``report.html`` + ``report.json`` for the series in ``run_dir``; returns the HTML path."""
    from mixprobe.train.series import Series

    series = Series.load(run_dir)
    out = Path(out_dir) if out_dir else Path(run_dir) / "report"
    sections, data = [], {"run_dir": str(run_dir), "seed": series.seed, "organism": series.organism}
    sec, res = _behaviour_section(series)
    sections.append(sec)
    data["behaviour"] = res
    if any(c.phase != "sft" for c in series.checkpoints) and series.phase("sft"):
        vs, vd = _verdict_sections(series)
        sections += vs
        data["verdicts"] = vd
    for name, builder, wanted in (("probes", "mixprobe.report.probe_sections:probe_sections", include_probes),
                                  ("patching", "mixprobe.report.analysis_sections:patching_sections",
                                   include_patching)):
        if not wanted:
            continue
        mod, fn = builder.split(":")
        try:
            import importlib

            secs, d = getattr(importlib.import_module(mod), fn)(series)
        except (ImportError, AttributeError) as e:  # the analysis layer is optional for a report
            log.info("report: skipping %s (%s)", name, e)
            continue
        sections += secs
        data[name] = d
    sections += extra or []
    title = f"mixprobe report — {series.organism}, seed {series.seed}"
    return write_report(sections, out, data, title=title, subtitle=str(Path(run_dir).resolve()))

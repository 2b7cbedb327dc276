"""``mixprobe report RUN``: one HTML page (figures embedded) + JSON for a checkpoint series of any task.

Problem: after a run, users want the whole story on one page: behaviour against step, the verdict with its evidence,
what the probes read, whether steering switches the policy back, where patching restores it — for their own task,
not only the built-in organism. Mechanism: every section is computed from the series and its task
(:mod:`mixprobe.tasks`): phases, cues and components come from them, never from literals. Sections: task · training
recipe of each phase · behaviour across the series (sampled estimator) · verdict of every later phase against the
first phase's last checkpoint, with fidelity, off-mixture and KL split · weight diff · probe accuracy by layer ×
checkpoint · gate readout · steering dose-response · cross-checkpoint patching. Every effect is shown beside its
null: the label-permuted probe, the leave-one-run-out gate readout, random steering directions of the same norm, and
a by-construction note where an edit at ``final_norm`` can reach any logit change. A section that does not apply
(e.g. the readout-defined steering direction for a task without signature tokens) says so on the page; a section
that raises shows the error on the page and is listed under ``errors`` in the JSON (the CLI then exits 1). Nothing
disappears silently.

Example::

    from mixprobe.report.run_report import build_run_report
    html_path = build_run_report("runs/demo")                          # runs/demo/report/report.html
    build_run_report("sft=out/sft,rl=out/grpo", "out/report", task="mytask:task")
"""
from __future__ import annotations

import html
import traceback
from pathlib import Path

from mixprobe._check import checked
from mixprobe.report.page import Section, write_report
from mixprobe.train.series import Series


class NotApplicable(Exception):
    """Raised by a section builder whose section does not apply to this series or task (the page says why)."""


@checked
def behaviour_rows(series: Series, task, *, n_samples: int = 8, seed: int = 0) -> list[dict]:
    """Per checkpoint: sampled outcome, component shares, off-mixture and forced outcome per cue."""
    from mixprobe.mixture.components import sampled_view

    rows = []
    for c in series.checkpoints:
        view = sampled_view(series.handle(c), task, n_samples=n_samples, seed=seed)
        rows.append({"name": c.name, "phase": c.phase, "step": c.step, **view.summary()})
    return rows


def _behaviour_section(series, task, n_samples: int, seed: int) -> tuple[list[Section], dict]:
    from mixprobe.report.plots import plot_training_curves

    rows = behaviour_rows(series, task, n_samples=n_samples, seed=seed)
    fig = plot_training_curves({"checkpoints": rows})
    table = [{"checkpoint": r["name"], **{f"outcome {t}": r["accuracy"][t] for t in task.cues},
              **{f"{k} | {t}": v for t, d in r["mode_frequency"].items() for k, v in d.items()},
              **{f"off | {t}": r["off_mixture"][t] for t in task.cues}} for r in rows]
    text = (f"{n_samples} sampled completions per prompt at every checkpoint, attributed by the task's recogniser: "
            "mean outcome per cue, share of each component (off = claimed by none), and the outcome with each "
            "component forced.")
    return [Section("Behaviour across the series", text, figure=fig, table=table)], {"checkpoints": rows}


def _verdict_sections(series, task, estimator: str, n_samples: int, seed: int) -> tuple[list[Section], dict]:
    from mixprobe.mixture.verdict import assess, combine
    from mixprobe.mixture.weight_diff import weight_diff

    phases = series.phases
    if len(phases) < 2:
        raise NotApplicable(f"the series has one phase ({phases[0]!r}); a verdict compares a later phase with "
                            "the first")
    ref_entry = series.last(phases[0])
    ref = series.handle(ref_entry)
    sections, data = [], {}
    for phase in phases[1:]:
        entry = series.last(phase)
        tgt = series.handle(entry)
        ev = assess(ref, tgt, task, estimator=estimator, n_samples=n_samples, seed=seed)
        v = combine({series.label: ev})
        wd = weight_diff(ref.model, tgt.model)
        data[phase] = {"reference": ref_entry.name, "target": entry.name, "verdict": v.to_dict(),
                       "weight_diff": {k: wd[k] for k in ("unchanged_share", "tol", "layer_norm_share")}}
        fid = [{"cue": t, "component": c, **d} for t, dd in ev.fidelity.items() for c, d in dd.items()]
        box = (f"<div class='verdict'><span class='label'>{html.escape(v.label)}</span> — "
               f"{html.escape(v.summary())}</div><p>Reference {html.escape(ref_entry.name)} → target "
               f"{html.escape(entry.name)}; {ev.estimator} estimator. Off-mixture share per cue (reference → "
               "target): " + ", ".join(f"{html.escape(t)} {d['reference']:.3f} → {d['target']:.3f}"
                                      for t, d in ev.off_mixture_by_cue.items())
               + f". Unchanged parameters (|Δθ| ≤ 1e-5): {wd['unchanged_share']:.1%}.</p>")
        sections.append(Section(f"Verdict: {phase} vs {ref_entry.name}", "", html_extra=box, table=fid))
        if ev.kl_split:
            sections.append(Section(f"KL split ({phase})", "KL(π_t‖π_ref) = gate term + component term, per cue.",
                                    table=[{"cue": t, **d} for t, d in ev.kl_split.items()]))
        else:
            sections.append(Section(f"KL split ({phase})", "Does not apply: the KL split needs exact next-token "
                                    "distributions, i.e. a task whose components declare signature tokens; this "
                                    "verdict used the sampled estimator."))
    return sections, data


def _probe_sections(series, task, seed: int) -> tuple[list[Section], dict]:
    from mixprobe.report.probe_sections import probe_sections

    return probe_sections(series, task=task, seed=seed)


def _patching_sections(series, task, seed: int) -> tuple[list[Section], dict]:
    from mixprobe.report.analysis_sections import patching_sections

    phases = series.trained_phases or series.phases
    if len(phases) < 2:
        raise NotApplicable("cross-checkpoint patching needs two trained phases")
    if not task.has_signatures:
        raise NotApplicable(f"task {task.name!r} declares no signature tokens, so there is no single-token metric "
                            "for the gate to patch on; use mixprobe.patching with a metric of your own (e.g. "
                            "group_logit_diff(tokens_of_one_component, tokens_of_the_other) when components differ by "
                            "which tokens they answer with; experiments/shift_organisms.py does this)")
    secs, data = patching_sections(series, task=task, source_phase=phases[0], target_phase=phases[-1])
    if not secs:
        raise NotApplicable(data.get("skipped", "nothing to patch"))
    return secs, data


@checked
def recipe_row(phase: str, r: dict) -> dict:
    """One table row of the recipe a phase recorded (:func:`mixprobe.train.sft.train_phase`).

    Example:
        >>> recipe_row("rl", {"trainer": "GRPOTrainer", "optim": "sgd", "learning_rate": 0.03, "beta": 0.0,
        ...                   "steps": 150, "trainable_share": 0.9, "frozen_parameters": ["lm_head.weight"]})["frozen"]
        'lm_head.weight'
    """
    return {"phase": phase, "trainer": r.get("trainer", "?"), "optimizer": r.get("optim", "?"),
            "lr": r.get("learning_rate", r.get("lr", "?")), "steps": r.get("steps", "?"),
            "beta (KL)": r.get("beta", "-"), "LoRA r": r.get("lora_r") or "-",
            "trainable share": r.get("trainable_share", "?"),
            "frozen": ", ".join(r.get("frozen_parameters") or []) or "none"}


@checked
def build_run_report(run, out_dir: str | Path | None = None, *, task=None, estimator: str = "auto",
                     n_samples: int = 16, seed: int = 0, extra: list[Section] | None = None,
                     include_probes: bool = True, include_patching: bool = True) -> Path:
    """Build ``report.html`` + ``report.json`` for a run (anything :meth:`Series.open` takes); returns the HTML path.

    ``task``: a Task, a spec or ``"pkg.mod:factory"`` (default: the task the series names). The JSON lists every
    section that failed under ``errors`` (and the page shows the error); sections that do not apply under
    ``not_applicable``.
    """
    from mixprobe.tasks import task_for

    series = Series.open(run)
    task = task_for(series, task)
    out = Path(out_dir) if out_dir else Path(series.run_dir) / "report"
    data: dict = {"run_dir": series.run_dir, "seed": series.seed, "task": task.describe(), "phases": series.phases,
                  "errors": {}, "not_applicable": {}}
    desc = task.describe()
    sections = [Section("Task", f"{task.name}: cues {desc['cues']} (prompts per cue); components "
                        + "; ".join(f"{c['name']} (forced by {c['before']!r} before / {c['after']!r} after the prompt)"
                                    for c in desc["components"])
                        + f"; estimators: {', '.join(desc['estimators'])}.")]
    recipes = series.extra.get("recipes") or {}
    data["recipes"] = recipes
    if recipes:
        sections.append(Section(
            "Training recipe",
            "How each phase was trained, as recorded when it ran. Whether RL reweights or rewrites depends on the "
            "recipe (optimizer, which parameters were trained, KL penalty); read the verdicts with it.",
            table=[recipe_row(phase, r) for phase, r in recipes.items()]))
    else:
        sections.append(Section("Training recipe", "The series records no recipe (checkpoints trained outside "
                                "mixprobe): the verdicts below cannot say under which optimizer or with which "
                                "parameters frozen the phases ran."))
    builders = [("behaviour", lambda: _behaviour_section(series, task, max(4, n_samples // 2), seed)),
                ("verdicts", lambda: _verdict_sections(series, task, estimator, n_samples, seed))]
    if include_probes:
        builders.append(("probes", lambda: _probe_sections(series, task, seed)))
    if include_patching:
        builders.append(("patching", lambda: _patching_sections(series, task, seed)))
    for name, build in builders:
        try:
            secs, d = build()
        except NotApplicable as e:
            sections.append(Section(f"{name.capitalize()}: does not apply", f"Does not apply: {e}"))
            data["not_applicable"][name] = str(e)
            continue
        except Exception as e:  # noqa: BLE001 - shown on the page and in the JSON, and the CLI exits 1
            msg = f"{type(e).__name__}: {e}"
            sections.append(Section(f"{name.capitalize()}: failed", "",
                                    html_extra=f"<pre class='error'>{html.escape(msg)}\n\n"
                                               f"{html.escape(traceback.format_exc(limit=4))}</pre>"))
            data["errors"][name] = msg
            continue
        sections += secs
        data[name] = d
    sections += extra or []
    title = f"mixprobe report — {task.name}, {series.label}"
    return write_report(sections, out, data, title=title, subtitle=series.run_dir)

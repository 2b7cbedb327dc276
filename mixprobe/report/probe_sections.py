"""Report sections for probes and steering: probe accuracy by layer × checkpoint, gate readout per tag, dose-response.

Problem: the report must show, next to behaviour and verdict, *where* the active policy is readable, whether the
gate readout follows the model's own choice across the series, and whether steering switches the policy.
Mechanism: the studies of :mod:`mixprobe.mixture.studies` on the last checkpoint of each phase (probe sweep), every
checkpoint (gate readout) and the last checkpoints of the last and the first phase (steering toward the component
the last one expresses least / the one it expresses most), each drawn as one matplotlib figure with its numbers as a
table and in the JSON.

Example::

    from mixprobe.report.probe_sections import probe_sections
    sections, data = probe_sections(series)     # [Section, Section, Section], {"probe_sweep": ..., ...}

Constraints: any task; the steering section needs signature tokens (it says so on the page otherwise).
"""
from __future__ import annotations

from mixprobe.report.page import Section


def plot_probe_sweep(sweep):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    x = range(len(sweep.sites))
    for name, acc in sweep.accuracy.items():
        ax.plot(x, [acc[s] for s in sweep.sites], marker="o", label=name)
    ax.set_xticks(list(x), sweep.sites, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("expressed component, read at the answer position")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_gate_readout(readout, series):
    import matplotlib.pyplot as plt

    read = {r["checkpoint"] for r in readout.rows}
    order = {n: i for i, n in enumerate(c.name for c in series.checkpoints if c.name in read)}
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for tag, color in zip(sorted({r["tag"] for r in readout.rows}), ("tab:blue", "tab:orange", "tab:green")):
        rows = sorted((r for r in readout.rows if r["tag"] == tag), key=lambda r: order[r["checkpoint"]])
        x = [order[r["checkpoint"]] for r in rows]
        ax.plot(x, [r["readout"] for r in rows], marker="o", color=color, label=f"probe readout <{tag}>")
        ax.plot(x, [r["frequency"] if r["frequency"] == r["frequency"] else r["p"] for r in rows], ls="--",
                color=color, alpha=0.7, label=f"{readout.extra.get('against', 'model')} <{tag}>")
    ax.set_xticks(range(len(order)), list(order), rotation=45, ha="right", fontsize=7)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel(f"P({readout.extra.get('component', 'first component')})")
    ax.set_title(f"gate readout at the last prompt token ({readout.site}); Spearman {readout.spearman:.2f}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_dose_response(curves: dict[str, list[dict]]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.2), squeeze=False)
    for ax, (title, rows) in zip(axes[0], curves.items()):
        alphas = [r["alpha"] for r in rows]
        for key in [k for k in rows[0] if k.startswith("accuracy_")]:
            ax.plot(alphas, [r[key] for r in rows], marker="o", label=key.replace("accuracy_", "accuracy <") + ">")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("steering strength α")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def probe_sections(series, *, task=None, seed: int = 0, alphas=(0.0, 2.0, 4.0, 8.0, 12.0)
                   ) -> tuple[list[Section], dict]:
    """Probe sweep, gate readout and steering dose-response sections (see the module docstring)."""
    from mixprobe.mixture.components import mixture_view
    from mixprobe.mixture.studies import gate_readout_study, probe_layer_sweep, steering_dose_response
    from mixprobe.tasks import task_for

    task = task_for(series, task)
    sections, data = [], {}
    sweep = probe_layer_sweep(series, task=task, checkpoints=series.phase_lasts(), seed=seed)
    data["probe_sweep"] = sweep.to_dict()
    text = ("A logistic probe per site reads which component is forced, at the last token of the forced prompt; fit "
            "on half of the prompts, scored on the other half.")
    if any(c.before for c in task.components):
        text += (" This task forces components with a line placed before the prompt, so the label is written in "
                 "the probe's input: high accuracy here holds by construction and is not evidence of an internal "
                 "policy representation.")
    const = sorted({s for v in sweep.constant_sites.values() for s in v})
    if const:
        text += (f" Sites {const} hold the same activation on every row (the input's last token is the same for all "
                 "prompts), so they carry no information and score the majority class.")
    sections.append(Section("Probe accuracy by layer × checkpoint", text, figure=plot_probe_sweep(sweep),
                            table=sweep.table()))
    readout = gate_readout_study(series, task=task, seed=seed)
    data["gate_readout"] = readout.to_dict()
    sections.append(Section(
        "Gate readout per cue",
        "A soft-label probe at the last prompt token, fit on half of the prompts of every trained checkpoint "
        "(planted phases left out), read on the other half: its mean per (checkpoint, cue) against the model's "
        f"own probability of {readout.extra['component']} ({readout.extra['against']}; "
        f"Spearman {readout.spearman:.2f}).", figure=plot_gate_readout(readout, series), table=readout.rows))
    if not task.has_signatures:
        sections.append(Section("Steering dose-response", f"Does not apply: task {task.name!r} declares no "
                                "signature tokens, so there is no readout-defined selection direction to steer along."))
        return sections, data
    curves = {}
    phases = series.trained_phases or series.phases
    last = series.last(phases[-1])
    share = mixture_view(series.handle(last), task).share.mean(0)
    rare, common = task.component_names[int(share.argmin())], task.component_names[int(share.argmax())]
    curves[f"{last.name}: toward {rare}"] = steering_dose_response(series, last.name, toward=rare, task=task,
                                                                   alphas=alphas, seed=seed)
    if len(phases) > 1:
        first = series.last(phases[0])
        curves[f"{first.name}: toward {common}"] = steering_dose_response(series, first.name, toward=common,
                                                                          task=task, alphas=alphas, seed=seed)
    data["steering"] = curves
    sections.append(Section(
        "Steering dose-response",
        "The readout-defined selection direction W_U⁺(e_to − e_from), added at final_norm on the last prompt "
        f"token with strength α; sampled outcome per cue. Toward the least expressed component of {last.name} "
        f"({rare}) and, on {series.last(phases[0]).name if len(phases) > 1 else last.name}, toward the component "
        f"{last.name} expresses most ({common}).", figure=plot_dose_response(curves),
        table=[{"curve": k, **r} for k, rows in curves.items() for r in rows]))
    return sections, data

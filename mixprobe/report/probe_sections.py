"""Report sections for probes and steering: probe accuracy by layer × checkpoint, gate readout per tag, dose-response.

Problem: the report must show, next to behaviour and verdict, *where* the active policy is readable, whether the
gate readout follows the model's own choice across the series, and whether steering switches the policy.
Mechanism: the studies of :mod:`mixprobe.mixture.studies` on the last checkpoint of each phase (probe sweep), every
checkpoint (gate readout) and the last ``rl`` / ``sft`` checkpoints (steering toward the suppressed / the other
component), each drawn as one matplotlib figure with its numbers as a table and in the JSON.

Example::

    from mixprobe.report.probe_sections import probe_sections
    sections, data = probe_sections(series)     # [Section, Section, Section], {"probe_sweep": ..., ...}

Constraints: tag-mixture style organisms with components ``m1``/``m2``; steering needs an ``rl`` phase.
"""
from __future__ import annotations

from mixprobe.report.page import Section


def _phase_lasts(series) -> list[str]:
    seen: dict[str, str] = {}
    for c in series.checkpoints:
        seen[c.phase] = c.name
    return list(seen.values())


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
        ax.plot(x, [r["m1_frequency"] for r in rows], ls="--", color=color, alpha=0.7,
                label=f"sampled m1 frequency <{tag}>")
    ax.set_xticks(range(len(order)), list(order), rotation=45, ha="right", fontsize=7)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("P(m1)")
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


def probe_sections(series, *, seed: int = 0, alphas=(0.0, 2.0, 4.0, 8.0, 12.0)) -> tuple[list[Section], dict]:
    """Probe sweep, gate readout and steering dose-response sections (see the module docstring)."""
    from mixprobe.mixture.studies import gate_readout_study, probe_layer_sweep, steering_dose_response

    sections, data = [], {}
    sweep = probe_layer_sweep(series, checkpoints=_phase_lasts(series), seed=seed)
    data["probe_sweep"] = sweep.to_dict()
    sections.append(Section(
        "Probe accuracy by layer × checkpoint",
        "A logistic probe per site reads which component is being expressed from the answer position; fit on half "
        "of the prompts, scored on the other half.", figure=plot_probe_sweep(sweep), table=sweep.table()))
    readout = gate_readout_study(series, seed=seed)
    data["gate_readout"] = readout.to_dict()
    sections.append(Section(
        "Gate readout per tag",
        "A soft-label probe at the last prompt token, fit on half of the prompts of every trained checkpoint "
        "(planted phases left out), read on the other half: its mean per (checkpoint, tag) against the model's "
        "own sampled frequency of m1 "
        f"(Spearman {readout.spearman:.2f}).", figure=plot_gate_readout(readout, series), table=readout.rows))
    curves = {}
    if series.phase("rl"):
        curves[f"{series.last('rl').name}: toward m2"] = steering_dose_response(
            series, series.last("rl").name, toward="m2", alphas=alphas, seed=seed)
    if series.phase("sft"):
        curves[f"{series.last('sft').name}: toward m1"] = steering_dose_response(
            series, series.last("sft").name, toward="m1", alphas=alphas, seed=seed)
    if curves:
        data["steering"] = curves
        sections.append(Section(
            "Steering dose-response",
            "The readout-defined selection direction W_U⁺(e_to − e_from), added at final_norm on the last prompt "
            "token with strength α; sampled accuracy per tag.", figure=plot_dose_response(curves),
            table=[{"curve": k, **r} for k, rows in curves.items() for r in rows]))
    return sections, data

"""Report sections for probes and steering: probe accuracy by layer × checkpoint, gate readout per tag, dose-response.

Problem: the report must show, next to behaviour and verdict, *where* the active policy is readable, whether the
gate readout follows the model's own choice across the series, and whether steering switches the policy — each
beside its null, so an effect that any probe, any checkpoint-reader or any direction of that size would show is
not read as evidence.
Mechanism: the studies of :mod:`mixprobe.mixture.studies` on the last checkpoint of each phase (probe sweep), every
checkpoint (gate readout) and the last checkpoints of the last and the first phase (steering toward the component
the last one expresses least / the one it expresses most), each drawn as one matplotlib figure with its numbers as a
table and in the JSON. Nulls: the label-permuted probe beside each site's accuracy (dotted), the leave-one-run-out
gate readout beside the pooled one (its own section; it says when it does not apply), random directions of the
steering vector's norm beside each dose-response (dashed: their mean, dotted: their max), and the by-construction
note when the vocabulary is ≤ ``d_model`` (``W_U`` right-invertible: steering at ``final_norm`` is a logit bias).

Example::

    from mixprobe.report.probe_sections import probe_sections
    sections, data = probe_sections(series)     # [Section, ...], {"probe_sweep": ..., "gate_readout": ..., ...}

Constraints: any task; the steering section needs signature tokens (it says so on the page otherwise).
"""
from __future__ import annotations

from mixprobe._check import checked
from mixprobe.mixture.studies import GateReadout, ProbeSweep
from mixprobe.report.page import Section
from mixprobe.train.series import Series


@checked
def plot_probe_sweep(sweep: ProbeSweep):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    x = range(len(sweep.sites))
    for name, acc in sweep.accuracy.items():
        line, = ax.plot(x, [acc[s] for s in sweep.sites], marker="o", label=name)
        if sweep.n_permutations:
            ax.plot(x, [sweep.null_accuracy[name][s] for s in sweep.sites], ls=":", marker=".", color=line.get_color(),
                    alpha=0.8)
    ax.set_xticks(list(x), sweep.sites, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    chance = max(sweep.chance.values(), default=0.5)
    ax.axhline(chance, color="grey", lw=0.8, ls="--", label=f"chance {chance:.2f}")
    ax.set_ylabel("held-out accuracy")
    title = "expressed component, read at the answer position"
    if sweep.n_permutations:
        title += f"\n(dotted: same probe, shuffled labels, mean of {sweep.n_permutations})"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@checked
def plot_gate_readout(readout: GateReadout, series: Series):
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


@checked
def plot_dose_response(curves: dict[str, list[dict]]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.2), squeeze=False)
    for ax, (title, rows) in zip(axes[0], curves.items()):
        alphas = [r["alpha"] for r in rows]
        for key in [k for k in rows[0] if k.startswith("accuracy_")]:
            line, = ax.plot(alphas, [r[key] for r in rows], marker="o",
                            label=key.replace("accuracy_", "accuracy <") + ">")
            if f"null_{key}_mean" in rows[0]:
                ax.plot(alphas, [r[f"null_{key}_mean"] for r in rows], ls="--", color=line.get_color(), alpha=0.8)
                ax.plot(alphas, [r[f"null_{key}_max"] for r in rows], ls=":", color=line.get_color(), alpha=0.6)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("steering strength α")
        null = any(k.startswith("null_") for k in rows[0])
        ax.set_title(title + ("\n(dashed/dotted: random directions, mean/max)" if null else ""), fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _probe_text(sweep, task) -> str:
    text = ("A logistic probe per site reads which component is forced, at the last token of the forced prompt; fit "
            "on half of the prompts, scored on the other half.")
    if sweep.n_permutations:
        real = [a for acc in sweep.accuracy.values() for a in acc.values()]
        null = [a for acc in sweep.null_accuracy.values() for a in acc.values()]
        top = [a for acc in sweep.null_accuracy_max.values() for a in acc.values()]
        chance = sorted(set(round(c, 3) for c in sweep.chance.values()))
        text += (f" Null beside it (dotted): the same probe on the same split with the training labels shuffled "
                 f"among the training rows and the held-out labels among the held-out rows, {sweep.n_permutations} "
                 f"times: mean held-out accuracy {min(null):.2f}–{max(null):.2f} over sites and checkpoints (largest "
                 f"single permutation {max(top):.2f}), against chance {', '.join(f'{c:.2f}' for c in chance)} (the "
                 f"majority-class rate of the held-out rows); the real probe scores {min(real):.2f}–{max(real):.2f}. "
                 "p-values (share of permutations at or above the real accuracy, +1 smoothed) are in the table.")
    else:
        text += " No label-permuted control was run (n_permutations=0)."
    if any(c.before for c in task.components):
        text += (" This task forces components with a line placed before the prompt, so the label is written in "
                 "the probe's input: high accuracy here holds by construction and is not evidence of an internal "
                 "policy representation.")
    const = sorted({s for v in sweep.constant_sites.values() for s in v})
    if const:
        text += (f" Sites {const} hold the same activation on every row (the input's last token is the same for all "
                 "prompts), so they carry no information and score the majority class.")
    return text


def _held_out_run_section(readout) -> Section:
    title = "Gate readout: leave one run out"
    variants = [v for v in readout.held_out_run if v.get("applies")]
    if not variants:
        reason = readout.held_out_run[0]["reason"] if readout.held_out_run else "no phases to hold out"
        return Section(title, f"Does not apply: {reason}. The pooled Spearman ({readout.spearman:.2f}) above may "
                       "then read which checkpoint a row comes from rather than the prompt's gate; nothing here "
                       "rules that out.")
    parts = []
    for v in variants:
        part = (f"fit on {' + '.join(v['fit_phases'])}, scored on {' + '.join(v['score_phases'])} (never seen): "
                f"Spearman {_num(v['spearman'])} (pooled probe on the same rows: {_num(v['pooled_spearman'])}), "
                f"mean |readout − target| {v['mean_abs_error']:.2f} (pooled: {v['pooled_mean_abs_error']:.2f})")
        if v["target_range"] < 0.1:
            part += (f"; the target spans only {v['target_range']:.3f} over these rows, so a Spearman there ranks "
                     "sampling noise and the error is the number to read")
        parts.append(part)
    text = ("The pooled probe is fit on rows of every checkpoint, so it can read which checkpoint (training step, "
            "run) a row comes from instead of the prompt's gate. Null beside it: the same probe fit on the "
            "checkpoints of some phases only and read on the held-out prompts of a phase it never saw — " +
            "; ".join(parts) + f". Pooled Spearman over every row: {readout.spearman:.2f}.")
    if any(v["mean_abs_error"] > max(0.1, 2 * v["pooled_mean_abs_error"]) for v in variants):
        text += (" The held-out-run error is far above the pooled one: the pooled readout leans on having seen the "
                 "checkpoint, not on a gate representation that carries over to a new run.")
    table = [{k: (" + ".join(x) if isinstance(x, list) else x) for k, x in v.items() if k not in ("rows", "applies")}
             for v in variants]
    return Section(title, text, table=table)


def _num(x: float) -> str:
    return "undefined" if x != x else f"{x:.2f}"


def _steering_text(curves: dict, infos: dict) -> str:
    parts = []
    for title, rows in curves.items():
        info = infos[title]
        last = rows[-1]
        freq = [k for k in last if k.startswith(f"{info['toward']}_frequency_")]
        if info.get("n_null") and freq:
            bits = [f"{k.removeprefix(info['toward'] + '_frequency_')}: {last[k]:.2f} vs null "
                    f"{last[f'null_{k}_mean']:.2f} (max {last[f'null_{k}_max']:.2f})" for k in freq]
            parts.append(f"{title} at α = {last['alpha']:g}, share of {info['toward']} per cue — " + ", ".join(bits))
    text = ""
    if parts:
        n = next(iter(infos.values()))["n_null"]
        text += (f" Null beside each α (dashed: mean, dotted: max): {n} random directions of the steering vector's "
                 "norm at the same site, positions and α, sampled with the same seed. " + "; ".join(parts) + ".")
    flags = {i["by_construction"] for i in infos.values()}
    reason = next(iter(infos.values()))["reason"]
    if flags == {True}:
        text += (f" By construction: {reason}. Adding α·W_U⁺(e_to − e_from) at final_norm is then exactly a logit "
                 "bias of +α/−α on the two signature tokens, so a switch here holds by construction: it shows the "
                 "components survive behind the gate, not that the activations carry a selection direction.")
    elif flags == {False}:
        text += f" Not by construction: {reason}."
    return text


@checked
def probe_sections(series, *, task=None, seed: int = 0, alphas=(0.0, 2.0, 4.0, 8.0, 12.0), n_null: int = 8
                   ) -> tuple[list[Section], dict]:
    """Probe sweep, gate readout (+ leave one run out) and steering dose-response sections, each beside its null.

    ``n_null``: random directions per α in the steering null (see the module docstring).
    """
    from mixprobe.mixture.components import mixture_view
    from mixprobe.mixture.studies import gate_readout_study, probe_layer_sweep, steering_dose_response
    from mixprobe.tasks import task_for

    task = task_for(series, task)
    sections, data = [], {}
    sweep = probe_layer_sweep(series, task=task, checkpoints=series.phase_lasts(), seed=seed)
    data["probe_sweep"] = sweep.to_dict()
    sections.append(Section("Probe accuracy by layer × checkpoint", _probe_text(sweep, task),
                            figure=plot_probe_sweep(sweep), table=sweep.null_table()))
    readout = gate_readout_study(series, task=task, seed=seed)
    data["gate_readout"] = readout.to_dict()
    held = [v for v in readout.held_out_run if v.get("applies")]
    loro = "; the leave-one-run-out control does not apply (next section)"
    if held:
        loro = "; leave one run out: " + ", ".join(
            f"scored on {'+'.join(v['score_phases'])} Spearman {_num(v['spearman'])}, error {v['mean_abs_error']:.2f} "
            f"vs pooled {v['pooled_mean_abs_error']:.2f}" for v in held) + " (next section)"
    sections.append(Section(
        "Gate readout per cue",
        "A soft-label probe at the last prompt token, fit on half of the prompts of every trained checkpoint "
        "(planted phases left out), read on the other half: its mean per (checkpoint, cue) against the model's "
        f"own probability of {readout.extra['component']} ({readout.extra['against']}; "
        f"pooled Spearman {readout.spearman:.2f}{loro}).", figure=plot_gate_readout(readout, series),
        table=readout.rows))
    sections.append(_held_out_run_section(readout))
    if not task.has_signatures:
        sections.append(Section("Steering dose-response", f"Does not apply: task {task.name!r} declares no "
                                "signature tokens, so there is no readout-defined selection direction to steer along."))
        return sections, data
    curves, infos = {}, {}
    phases = series.trained_phases or series.phases
    last = series.last(phases[-1])
    share = mixture_view(series.handle(last), task).share.mean(0)
    rare, common = task.component_names[int(share.argmin())], task.component_names[int(share.argmax())]
    runs = [(last.name, rare)] + ([(series.last(phases[0]).name, common)] if len(phases) > 1 else [])
    for name, toward in runs:
        res = steering_dose_response(series, name, toward=toward, task=task, alphas=alphas, seed=seed, n_null=n_null)
        curves[f"{name}: toward {toward}"] = list(res)
        infos[f"{name}: toward {toward}"] = res.info
    data["steering"] = curves
    data["steering_info"] = infos
    sections.append(Section(
        "Steering dose-response",
        "The readout-defined selection direction W_U⁺(e_to − e_from), added at final_norm on the last prompt "
        f"token with strength α; sampled outcome per cue. Toward the least expressed component of {last.name} "
        f"({rare}) and, on {series.last(phases[0]).name if len(phases) > 1 else last.name}, toward the component "
        f"{last.name} expresses most ({common})." + _steering_text(curves, infos), figure=plot_dose_response(curves),
        table=[{"curve": k, **r} for k, rows in curves.items() for r in rows]))
    return sections, data

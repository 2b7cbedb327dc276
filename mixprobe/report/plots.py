"""Matplotlib figures of checkpoint series (accuracy, mode frequencies, forced accuracy against step).

Problem: the reweight-vs-rewrite story is a picture first: tag accuracy splits, mode frequency moves on both
tags, forced-component accuracy stays flat. Mechanism: plain matplotlib (Agg backend) on the ``checkpoints`` list
of a ``results.json``; one x tick per checkpoint (phases get equal room however long each ran) with a dashed
line at each phase boundary.

Example:
    >>> fig = plot_training_curves({"checkpoints": [
    ...     {"phase": "sft", "step": 10, "accuracy": {"A": .5, "B": .5},
    ...      "mode_frequency": {"A": {"m1": .5}, "B": {"m1": .5}},
    ...      "forced_accuracy": {"A": {"m1": 1.0}, "B": {"m1": 0.0}}}]})
    >>> len(fig.axes)
    3
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from mixprobe._check import checked

TAG_COLORS = {"A": "tab:blue", "B": "tab:orange"}


@checked
def global_steps(checkpoints: list[dict]) -> list[int]:
    """x positions: SFT steps as they are, later phases offset by the last step of the phase before."""
    xs, offset, prev_phase, last = [], 0, None, 0
    for c in checkpoints:
        if prev_phase is not None and c["phase"] != prev_phase:
            offset = last
        x = offset + c["step"]
        xs.append(x)
        last, prev_phase = x, c["phase"]
    return xs


@checked
def plot_training_curves(results: dict, path: str | Path | None = None, title: str | None = None):
    """Accuracy, first-component frequency and forced accuracy per cue against checkpoint; saved to ``path`` if given.

    Checkpoints without behaviour metrics (e.g. planted phases nobody evaluated) are left out.
    """
    cps = [c for c in results["checkpoints"] if c.get("accuracy")]
    if not cps:
        from mixprobe.errors import DataError

        raise DataError("no checkpoint has behaviour metrics to plot; evaluate the series first "
                        "(mixprobe.train.pipeline.evaluate_series, or the report's behaviour section)")
    xs = list(range(len(cps)))
    tags = list(cps[0]["accuracy"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), constrained_layout=True)
    segments: list[list[int]] = []
    for i, c in enumerate(cps):
        if i and c["phase"] == cps[i - 1]["phase"]:
            segments[-1].append(i)
        else:
            segments.append([i])
    for si, seg in enumerate(segments):
        for t in tags:
            col = TAG_COLORS.get(t)
            lab = (lambda s: s) if si == 0 else (lambda s: None)
            axes[0].plot(seg, [cps[i]["accuracy"][t] for i in seg], "o-", color=col, label=lab(f"<{t}>"))
            comps = list(cps[0]["mode_frequency"][t])
            axes[1].plot(seg, [cps[i]["mode_frequency"][t][comps[0]] for i in seg], "o-", color=col,
                         label=lab(f"{comps[0]} | <{t}>"))
            for comp, style in zip(cps[0]["forced_accuracy"][t], ("o-", "s--", "^:")):
                axes[2].plot(seg, [cps[i]["forced_accuracy"][t][comp] for i in seg], style, color=col,
                             label=lab(f"forced {comp} | <{t}>"))
    boundary = [x + 0.5 for x, c, n in zip(xs, cps, cps[1:]) if c["phase"] != n["phase"]]
    names = ("accuracy (sampled)", "mode frequency", "forced-component accuracy")
    for ax, name in zip(axes, names):
        for b in boundary:
            ax.axvline(b, color="grey", ls="--", lw=0.8)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xticks(xs, [f"{c['phase']} {c['step']}" for c in cps], rotation=60, fontsize=7)
        ax.set_title(name)
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    if path is not None:
        from mixprobe.io import atomic_path

        with atomic_path(path) as tmp:                  # a killed writer never leaves half a figure at ``path``
            fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=110)
        plt.close(fig)
    return fig

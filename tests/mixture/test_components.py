"""The two estimators of a checkpoint's mixture view measure the same thing: on the tag mixture, where the exact
view needs no sampling, every sampled statistic's interval holds the exact value at every checkpoint of one seed."""
from __future__ import annotations

import pytest

from mixprobe.mixture.components import mixture_view
from mixprobe.tasks import task_for

pytestmark = pytest.mark.slow
CONFIDENCE = 0.999


def test_exact_value_lies_in_the_sampled_interval_at_every_checkpoint(organism_run):
    """Per (checkpoint, cue): each component's share, the off-mixture share and each forced component's outcome
    (5 statistics). The sampled view draws 16 completions per prompt (784 per cue) with its own seed per checkpoint;
    intervals are Clopper–Pearson at 99.9 %. If the estimators agree, the expected number of (checkpoint, cue)
    cells with a miss is about 0.005 per cell, 0.1–0.3 over the series; seeds 0–2 here gave 0, 0 and 1 (one
    draw of 24 m2 completions where 10.7 were expected). More than 2 cells is a disagreement, not chance."""
    series = organism_run
    task = task_for(series)
    trained = [c for c in series.checkpoints if not c.phase.startswith("planted_")]
    missed = []
    for i, entry in enumerate(trained):
        h = series.handle(entry)
        exact = mixture_view(h, task)
        sampled = mixture_view(h, task, estimator="sampled", n_samples=16, seed=1000 + i)
        assert exact.estimator == "exact" and sampled.estimator == "sampled"
        iv = sampled.intervals(CONFIDENCE)
        for cue in task.cues:
            idx = task.cue_index(cue)
            checks = [(f"share {c}", float(exact.share[idx, k].mean()), iv[cue]["share"][c])
                      for k, c in enumerate(task.component_names)]
            checks += [(f"forced {c}", float(exact.forced_score[k, idx].mean()), iv[cue]["forced"][c])
                       for k, c in enumerate(task.component_names)]
            checks.append(("off_mixture", float(exact.off_mixture[idx].mean()), iv[cue]["off_mixture"]))
            bad = [(name, round(x, 4), tuple(round(v, 4) for v in ci)) for name, x, ci in checks
                   if not ci[0] <= x <= ci[1]]
            if bad:
                missed.append((entry.name, cue, bad))
    assert len(missed) <= 2, missed
    # the sampled view is not trivially wide: under RL the expressed component is pinned within a few points
    last = mixture_view(series.handle(series.last("rl")), task, estimator="sampled", n_samples=16)
    widths = [hi - lo for cue in task.cues for lo, hi in last.intervals(CONFIDENCE)[cue]["share"].values()]
    assert max(widths) < 0.15, widths

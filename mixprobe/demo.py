"""``mixprobe demo``: the tag-mixture organism from scratch to the policy-selection collapse, in minutes.

Problem: a newcomer should see the phenomenon mixprobe studies before reading anything. Mechanism: build the
tag-mixture organism, SFT a tiny Llama on it with trl, run GRPO on one tag, evaluate every checkpoint, and write
``results.json`` (schema below), ``curves.png`` and a table. The run folder is a normal series (``series.json``)
that every other mixprobe command accepts.

``results.json``: ``{"organism", "seed", "rl_tag", "wall_time_s", "config", "recipe", "checkpoints": [{"name", "phase",
"step", "path", "accuracy": {tag: f}, "mode_frequency": {tag: {comp: f}}, "forced_accuracy": {tag: {comp: f}},
"mode_probability": {tag: {comp: f}}, "expected_accuracy": {tag: f}}]}``. ``recipe`` (:func:`rl_recipe`) names the
RL optimizer, its lr, beta and which parameters RL trained: whether RL reweights or rewrites depends on it
(experiments/results/sensitivity/summary.md).

Example (about two minutes on 2 CPU cores)::

    from mixprobe.demo import run_demo
    results = run_demo("runs/demo", seed=0, rl_tag="A", overwrite=True)
    results["checkpoints"][-1]["accuracy"]   # {'A': ~1.0, 'B': ~0.0}
"""
from __future__ import annotations

import time
from pathlib import Path

from mixprobe._check import checked
from mixprobe.io import atomic_write_json
from mixprobe.train.pipeline import TrainConfig, evaluate_series, train_rl, train_sft
from mixprobe.train.series import series_results


@checked
def rl_recipe(cfg: TrainConfig) -> dict:
    """The knobs the RL outcome depends on: optimizer, lr, beta, trained parameters, tying and width.

    Example:
        >>> rl_recipe(TrainConfig())["rl_optim"], rl_recipe(TrainConfig())["train_embeddings"]
        ('sgd', True)
    """
    return {"rl_optim": cfg.rl.optim, "rl_lr": cfg.rl.lr, "beta": cfg.rl.beta, "rl_steps": cfg.rl.steps,
            "train_embeddings": cfg.rl.train_embeddings, "tied_embeddings": cfg.model.tie_embeddings,
            "d_model": cfg.model.d_model}


@checked
def run_demo(out: str | Path, *, seed: int = 0, rl_tag: str = "A", overwrite: bool = False,
             config: TrainConfig | None = None, n_samples: int = 8, progress: bool = True) -> dict:
    """Train SFT → RL on ``rl_tag``, evaluate each checkpoint, write results.json and curves.png into ``out``."""
    from mixprobe.report.plots import plot_training_curves

    t0 = time.perf_counter()
    cfg = config or TrainConfig()
    cfg.seed = seed
    cfg.rl.tag = rl_tag
    from mixprobe.organisms.tag_mixture import TagMixture

    TagMixture(cfg.organism).check_tag(rl_tag)
    series = train_sft(out, cfg, overwrite=overwrite, progress=progress)
    series = train_rl(out, cfg.rl, progress=progress)
    series = evaluate_series(series, n_samples=n_samples, seed=seed, progress=progress)
    results = series_results(series, rl_tag=rl_tag, config=cfg.to_dict(), recipe=rl_recipe(cfg))
    results["wall_time_s"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(Path(out) / "results.json", results)
    plot_training_curves(results, Path(out) / "curves.png",
                         title=f"tag mixture, seed {seed}: SFT then GRPO on <{rl_tag}>")
    return results

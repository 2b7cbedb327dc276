"""The ``mixprobe`` command line (typer). Every command has ``--help``; user mistakes exit 2 with one line.

Example::

    mixprobe demo --out runs/demo --seed 0 --rl-tag A
    mixprobe train experiments/tag_mixture.toml --out runs/s1
"""
from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from mixprobe.errors import MixprobeError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="mixprobe: did post-training reweight a mixture of policies, or rewrite them?")
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True)


def user_errors(fn):
    """Turn a MixprobeError into a one-line message and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        logging.getLogger("transformers").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        try:
            return fn(*args, **kwargs)
        except MixprobeError as e:
            err_console.print(f"[bold red]error:[/] {type(e).__name__}: {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def print_checkpoint_table(results: dict) -> None:
    cps = results["checkpoints"]
    tags = list(cps[0]["accuracy"])
    comps = list(cps[0]["mode_frequency"][tags[0]])
    table = Table(title=f"{results['organism']} · seed {results['seed']} · RL on <{results.get('rl_tag', '?')}>",
                  caption="acc|A: sampled accuracy under <A>; m1|A: frequency of m1 under <A>; "
                          "f.m2|B: accuracy with m2 forced (prefilled) under <B>")
    table.add_column("checkpoint", no_wrap=True)
    for t in tags:
        table.add_column(f"acc|{t}", justify="right")
    for t in tags:
        table.add_column(f"{comps[0]}|{t}", justify="right")
    for t in tags:
        for c in comps:
            table.add_column(f"f.{c}|{t}", justify="right")
    for c in cps:
        row = [c["name"]] + [f"{c['accuracy'][t]:.2f}" for t in tags]
        row += [f"{c['mode_frequency'][t][comps[0]]:.2f}" for t in tags]
        row += [f"{c['forced_accuracy'][t][k]:.2f}" for t in tags for k in comps]
        table.add_row(*row)
    console.print(table)


@app.command()
@user_errors
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="run folder to create"),
    seed: int = typer.Option(0, "--seed", help="random seed (data, init, RL sampling)"),
    rl_tag: str = typer.Option("A", "--rl-tag", help="tag whose prompts RL trains on (A or B)"),
    config: Path | None = typer.Option(None, "--config", help="TOML training config (see experiments/)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a non-empty --out folder"),
    samples: int = typer.Option(8, "--samples", help="sampled completions per prompt in evaluation"),
) -> None:
    """Train the tag-mixture organism (SFT → GRPO on one tag), evaluate every checkpoint, plot, tabulate."""
    from mixprobe.demo import run_demo
    from mixprobe.train.pipeline import TrainConfig

    cfg = TrainConfig.from_toml(config) if config else None
    res = run_demo(out, seed=seed, rl_tag=rl_tag, overwrite=overwrite, config=cfg, n_samples=samples)
    print_checkpoint_table(res)
    console.print(f"wrote {out / 'results.json'} and {out / 'curves.png'} in {res['wall_time_s']:.0f} s")


@app.command()
@user_errors
def train(
    config: Path = typer.Argument(..., help="TOML config with [organism], [model], [sft], [rl] sections"),
    out: Path = typer.Option(..., "--out", help="run folder to create (SFT) or continue (RL)"),
    phase: str = typer.Option("all", "--phase", help="sft, rl or all"),
    seed: int | None = typer.Option(None, "--seed", help="override the config's seed"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a non-empty --out folder (SFT)"),
) -> None:
    """Train an organism with trl into a checkpoint series (series.json) and evaluate its checkpoints."""
    from mixprobe.train.pipeline import TrainConfig, evaluate_series, train_rl, train_sft

    cfg = TrainConfig.from_toml(config)
    if seed is not None:
        cfg.seed = seed
    if phase not in ("sft", "rl", "all"):
        raise typer.BadParameter("--phase must be sft, rl or all")
    if phase in ("sft", "all"):
        train_sft(out, cfg, overwrite=overwrite)
    if phase in ("rl", "all"):
        train_rl(out, cfg.rl, seed=cfg.seed)
    from mixprobe.train.series import Series

    evaluate_series(Series.load(out), seed=cfg.seed)
    console.print(f"series written to {out / 'series.json'}")


@app.command()
@user_errors
def organism(
    modulus: int = typer.Option(7, help="questions are a + b mod p"),
    m3: bool = typer.Option(False, "--m3", help="add the always-correct m3 control component"),
    signature: str = typer.Option("token", help="token (m1/m2 mode tokens) or format (bracket style)"),
    n: int = typer.Option(6, "-n", help="rows to show"),
    seed: int = typer.Option(0, help="seed for the sampled rows"),
) -> None:
    """Show the tag-mixture organism: its rules and a few SFT rows."""
    from mixprobe.organisms.tag_mixture import TagMixture, TagMixtureConfig, m3_control_config

    cfg = m3_control_config(modulus=modulus, signature=signature) if m3 else TagMixtureConfig(
        modulus=modulus, signature=signature)
    org = TagMixture(cfg)
    table = Table(title=f"tag_mixture (p={modulus}, signature={signature})")
    table.add_column("prompt")
    table.add_column("completion")
    table.add_column("component")
    for r in org.sft_rows(n, seed):
        table.add_row(r["prompt"], r["completion"], r["component"])
    console.print(table)
    console.print(f"rules (answer offset per component and tag): {cfg.rule_offsets()}; prior: {cfg.prior}")


@app.command()
@user_errors
def verdict(
    runs: list[Path] = typer.Argument(..., help="run folders (one per seed) holding series.json"),
    target: str = typer.Option("rl", "--target", help="phase (or checkpoint name) to judge"),
    reference: str = typer.Option("sft", "--reference", help="reference phase (its last checkpoint) or name"),
    out: Path | None = typer.Option(None, "--out", help="write the verdict JSON here"),
) -> None:
    """Reweight, rewrite, both or undecided: compare reference and target checkpoints of each run (seed)."""
    from mixprobe.io import atomic_write_json
    from mixprobe.mixture.verdict import assess, combine
    from mixprobe.train.pipeline import load_checkpoint, organism_of
    from mixprobe.train.series import Series

    evidence = {}
    for run in runs:
        s = Series.load(run)
        pick = lambda key: s.get(key) if any(c.name == key for c in s.checkpoints) else s.last(key)  # noqa: E731
        ref, tgt = pick(reference), pick(target)
        evidence[s.seed] = assess(load_checkpoint(s.path(ref)), load_checkpoint(s.path(tgt)), organism_of(s))
    v = combine(evidence)
    console.print(f"[bold]{v.label.upper()}[/bold] — {v.summary()}")
    for seed, e in sorted(evidence.items()):
        console.print(f"  seed {seed}: {e.label:<9} gate shift {e.gate_shift:.3f}  component change "
                      f"{e.component_change:.3f}")
    if out:
        atomic_write_json(out, v.to_dict())
        console.print(f"wrote {out}")


@app.command()
@user_errors
def report(
    run_dir: Path = typer.Argument(..., help="a run folder holding series.json (e.g. from `mixprobe demo`)"),
    out: Path | None = typer.Option(None, "--out", help="output folder (default RUN_DIR/report)"),
) -> None:
    """Write a self-contained HTML report (figures embedded) and its JSON for a checkpoint series."""
    from mixprobe.report.run_report import build_run_report

    path = build_run_report(run_dir, out)
    console.print(f"wrote {path} and {path.with_suffix('.json')}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

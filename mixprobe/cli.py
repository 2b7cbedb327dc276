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

    series = evaluate_series(Series.load(out), seed=cfg.seed)
    from mixprobe.demo import series_results

    print_checkpoint_table(series_results(series, rl_tag=cfg.rl.tag))
    if series.phase(cfg.rl.phase):
        acc = series.last(cfg.rl.phase).metrics["accuracy"][cfg.rl.tag]
        if acc < 0.9:            # e.g. modulus 11: RL on <A> reaches 0.92 / 0.19 in 150 steps, not 1.0 / 0.0
            console.print(f"note: RL on <{cfg.rl.tag}> ended at accuracy {acc:.2f} on <{cfg.rl.tag}> after "
                          f"{cfg.rl.steps} steps; the collapse has not finished (more [rl] steps, or a higher lr)")
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
        _write_json(out, v.to_dict())


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


def _series(run_dir: Path):
    from mixprobe.train.series import Series

    return Series.load(run_dir)


def _pick(series, key: str) -> str:
    """A checkpoint name, or a phase name meaning that phase's last checkpoint."""
    from mixprobe.errors import CheckpointError

    if any(c.name == key for c in series.checkpoints):
        return key
    if series.phase(key):
        return series.last(key).name
    raise CheckpointError(f"{key!r} is neither a checkpoint nor a phase of {series.run_dir}; checkpoints: "
                          f"{[c.name for c in series.checkpoints]}")


def _defaults(config: Path | None, section: str) -> dict:
    """The ``[section]`` table of a TOML file under experiments/ (empty without --config)."""
    if config is None:
        return {}
    import tomllib

    from mixprobe.errors import OrganismConfigError

    if not config.exists():
        raise OrganismConfigError(f"config {config} does not exist; see experiments/analysis.toml")
    try:
        data = tomllib.loads(config.read_text())
    except tomllib.TOMLDecodeError as e:
        raise OrganismConfigError(f"config {config} is not valid TOML: {e}") from None
    return dict(data.get(section, {}))


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


def _write_json(out: Path, obj: dict) -> None:
    from mixprobe.io import atomic_write_json

    atomic_write_json(out, obj)
    console.print(f"wrote {out}")


def _print_rows(rows: list[dict], title: str) -> None:
    if not rows:
        return
    table = Table(title=title)
    for col in rows[0]:
        table.add_column(str(col), justify="left" if col in ("checkpoint", "tag", "curve") else "right")
    for r in rows:
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()])
    console.print(table)


@app.command()
@user_errors
def capture(
    run_dir: Path = typer.Argument(..., help="run folder holding series.json"),
    store: Path = typer.Option(..., "--store", help="activation store folder (resumed if it exists)"),
    sites: str = typer.Option("resid_post", "--sites", help="comma-separated sites, e.g. resid_post or "
                              "resid_pre.0,mlp_out.1,final_norm (a family name means every layer)"),
    positions: str = typer.Option("last_prompt", "--positions", help="last_prompt, mode_token or all"),
    prompts: Path | None = typer.Option(None, "--prompts", help="text file, one prompt per line "
                                        "(default: the organism's prompt set)"),
    checkpoints: str | None = typer.Option(None, "--checkpoints", help="comma-separated checkpoint or phase "
                                           "names (default: all)"),
    batch_size: int = typer.Option(64, "--batch-size"),
) -> None:
    """Capture activations at SITES × POSITIONS for every checkpoint of a series into a resumable store."""
    from mixprobe.capture import capture as run_capture
    from mixprobe.errors import DataError
    from mixprobe.train.pipeline import organism_of

    series = _series(run_dir)
    if prompts is not None:
        if not prompts.exists():
            raise DataError(f"prompt file {prompts} does not exist")
        texts = [ln for ln in prompts.read_text().splitlines() if ln.strip()]
    else:
        texts = [r["prompt"] for r in organism_of(series).prompt_set()]
    source = series
    if checkpoints:
        names = [_pick(series, k.strip()) for k in checkpoints.split(",")]
        source = [series.path(n) for n in names]
        kw = {"names": names}
    else:
        kw = {}
    st = run_capture(source, texts, [x.strip() for x in sites.split(",")], positions, store=store,
                     batch_size=batch_size, **kw)
    console.print(f"store {store}: {len(texts)} prompts; {st}")


@app.command()
@user_errors
def probe(
    run_dir: Path = typer.Argument(..., help="run folder holding series.json"),
    checkpoints: str | None = typer.Option(None, "--checkpoints", help="comma-separated checkpoint or phase "
                                           "names for the layer sweep (default: the last of each phase)"),
    gate_site: str | None = typer.Option(None, "--gate-site", help="site of the gate readout (default resid_post.1)"),
    seed: int | None = typer.Option(None, "--seed", help="seed of the prompt split"),
    config: Path | None = typer.Option(None, "--config", help="TOML file with a [probe] table (experiments/)"),
    out: Path | None = typer.Option(None, "--out", help="write the JSON here"),
) -> None:
    """Probe layer sweep (expressed component) per checkpoint and the gate readout across the whole series."""
    from mixprobe.mixture.studies import gate_readout_study, probe_layer_sweep
    from mixprobe.report.probe_sections import _phase_lasts

    cfg = _defaults(config, "probe")
    series = _series(run_dir)
    seed = seed if seed is not None else int(cfg.get("seed", 0))
    names = ([_pick(series, k.strip()) for k in checkpoints.split(",")] if checkpoints
             else [_pick(series, k) for k in cfg["checkpoints"]] if "checkpoints" in cfg else _phase_lasts(series))
    sweep = probe_layer_sweep(series, checkpoints=names, seed=seed, C=float(cfg.get("C", 100.0)))
    _print_rows(sweep.table(), "held-out accuracy of the expressed-component probe, by site")
    readout = gate_readout_study(series, site=gate_site or cfg.get("gate_site", "resid_post.1"), seed=seed,
                                 C=float(cfg.get("gate_C", 10.0)))
    _print_rows(readout.rows, f"gate readout at {readout.site} (last prompt token)")
    console.print(f"Spearman(readout, sampled m1 frequency) = {readout.spearman:.3f}")
    if out:
        _write_json(out, {"probe_sweep": sweep.to_dict(), "gate_readout": readout.to_dict()})


@app.command()
@user_errors
def steer(
    run_dir: Path = typer.Argument(..., help="run folder holding series.json"),
    checkpoint: str = typer.Option("rl", "--checkpoint", help="checkpoint name, or a phase (its last checkpoint)"),
    toward: str = typer.Option("m2", "--toward", help="component to steer toward"),
    alphas: str | None = typer.Option(None, "--alphas", help="comma-separated strengths, e.g. 0,2,4,8,12"),
    samples: int = typer.Option(8, "--samples", help="sampled completions per prompt"),
    config: Path | None = typer.Option(None, "--config", help="TOML file with a [steer] table (experiments/)"),
    out: Path | None = typer.Option(None, "--out", help="write the JSON here"),
) -> None:
    """Dose-response of steering along the selection direction (final_norm, last prompt token)."""
    from mixprobe.mixture.studies import steering_dose_response

    cfg = _defaults(config, "steer")
    series = _series(run_dir)
    name = _pick(series, checkpoint)
    grid = _floats(alphas) if alphas else [float(a) for a in cfg.get("alphas", [0, 2, 4, 8, 12])]
    rows = steering_dose_response(series, name, toward=toward, alphas=grid, n_samples=samples,
                                  seed=int(cfg.get("seed", 0)))
    _print_rows(rows, f"steering {name} toward {toward}")
    if out:
        _write_json(out, {"checkpoint": name, "toward": toward, "rows": rows})


@app.command()
@user_errors
def patch(
    run_dir: Path = typer.Argument(..., help="run folder holding series.json"),
    source: str = typer.Option("sft", "--source", help="phase whose last checkpoint provides activations/weights"),
    target: str = typer.Option("rl", "--target", help="phase whose last checkpoint is patched"),
    out: Path = typer.Option(..., "--out", help="folder for patching.html, patching.json (heatmap embedded)"),
) -> None:
    """Cross-checkpoint patching: activation sweep (sites × positions) and parameter groups, source → target."""
    from mixprobe.report.analysis_sections import patching_sections
    from mixprobe.report.page import write_report

    series = _series(run_dir)
    secs, data = patching_sections(series, target_phase=target, source_phase=source)
    if not secs:
        from mixprobe.errors import PatchingError

        raise PatchingError(f"nothing to patch: {data.get('skipped', 'no sections')}")
    path = write_report(secs, out, data, title=f"patching {source} → {target}", subtitle=str(run_dir))
    console.print(secs[0].text)
    console.print(f"wrote {path} and {path.with_suffix('.json')}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

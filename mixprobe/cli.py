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
            from rich.markup import escape          # a message may hold "[probe]" or "[sft]": text, not markup

            err_console.print(f"[bold red]error:[/] {type(e).__name__}: {escape(str(e))}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def print_checkpoint_table(results: dict) -> None:
    cps = results["checkpoints"]
    tags = list(cps[0]["accuracy"])
    if {"in", "out"} <= set(tags):          # organisms with an RL domain: in / out of it (per cue in results.json)
        tags = ["in", "out"]
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
    r = results.get("recipe")
    if r:
        trained = "embeddings and unembedding trained" if r["train_embeddings"] else "embeddings and unembedding frozen"
        console.print(f"RL recipe: {r['rl_optim']} lr {r['rl_lr']:g}, beta {r['beta']:g}, {r['rl_steps']} steps, "
                      f"{trained}, {'tied' if r['tied_embeddings'] else 'untied'} embeddings, d_model {r['d_model']}",
                      highlight=False)


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
    resume: bool = typer.Option(False, "--resume", help="continue a killed run in --out from its last complete "
                                "checkpoint (same config); finished phases are kept"),
) -> None:
    """Train an organism with trl into a checkpoint series (series.json) and evaluate its checkpoints.

    Killed at any point (kill -9 included), the run folder holds only complete checkpoints and says which phase
    did not finish; the same command with --resume continues from the last complete checkpoint, with the
    optimizer, scheduler and RNG state of that step, and ends with the checkpoints of an uninterrupted run."""
    from mixprobe.train.pipeline import TrainConfig, evaluate_series, train_rl, train_sft

    cfg = TrainConfig.from_toml(config)
    if seed is not None:
        cfg.seed = seed
    if phase not in ("sft", "rl", "all"):
        raise typer.BadParameter("--phase must be sft, rl or all")
    if resume and overwrite:
        raise typer.BadParameter("--resume continues the run in --out and --overwrite replaces it; pass one")
    _refuse_unfinished_without_resume(out, resume, overwrite)
    if phase in ("sft", "all"):
        train_sft(out, cfg, overwrite=overwrite, resume=resume)
    if phase in ("rl", "all"):
        train_rl(out, cfg.rl, seed=cfg.seed, resume=resume)
    from mixprobe.demo import rl_recipe
    from mixprobe.train.series import Series, series_results

    series = evaluate_series(Series.load(out), seed=cfg.seed)
    print_checkpoint_table(series_results(series, rl_tag=cfg.rl.tag, recipe=rl_recipe(cfg)))
    if series.phase(cfg.rl.phase):
        accuracy = series.last(cfg.rl.phase).metrics["accuracy"]
        acc = accuracy.get(cfg.rl.tag, accuracy.get("in", 1.0))
        if acc < 0.9:            # e.g. modulus 11: RL on <A> reaches 0.92 / 0.19 in 150 steps, not 1.0 / 0.0
            console.print(f"note: RL on <{cfg.rl.tag}> ended at accuracy {acc:.2f} on <{cfg.rl.tag}> after "
                          f"{cfg.rl.steps} steps; the collapse has not finished (more [rl] steps, or a higher lr)")
    console.print(f"series written to {out / 'series.json'}")


def _refuse_unfinished_without_resume(out: Path, resume: bool, overwrite: bool) -> None:
    """A killed run in ``out``: without --resume or --overwrite, say how to continue it."""
    from mixprobe.errors import OutputExistsError
    from mixprobe.train.series import Series

    if resume or overwrite or not (out / "series.json").is_file():
        return
    s = Series.load(out)
    if s.unfinished():
        raise OutputExistsError(f"{out} holds a run whose phase {s.unfinished()[0]!r} did not finish; continue it "
                                "with --resume (same config), or pass --overwrite to start over")


def _rows_table(title: str, rows: list[dict], last: str) -> Table:
    """SFT rows as a table: prompt, completion, cue, and the component (marked when forced)."""
    table = Table(title=title)
    for col in ("prompt", "completion", "cue", last):
        table.add_column(col)
    for r in rows:
        table.add_row(r["prompt"], r["completion"], r["tag"], r["component"] + (" (forced)" if r["forced"] else ""))
    return table


@app.command()
@user_errors
def organism(
    modulus: int = typer.Option(7, help="questions are a + b mod p"),
    m3: bool = typer.Option(False, "--m3", help="add the always-correct m3 control component"),
    signature: str = typer.Option("token", help="token (m1/m2 mode tokens) or format (bracket style)"),
    n: int = typer.Option(6, "-n", help="rows to show"),
    seed: int = typer.Option(0, help="seed for the sampled rows"),
    kind: str = typer.Option("tag_mixture", help="tag_mixture, task_coverage, temporal_context, bct or era"),
    setting: str = typer.Option("language", help="bct only: language, numerals or yesno"),
    overlap: int = typer.Option(1, help="bct only: cue words the T and E phrases share (0-3)"),
) -> None:
    """Show a built-in organism: its rules and a few SFT rows."""
    from mixprobe.organisms.tag_mixture import TagMixture, TagMixtureConfig, m3_control_config

    if kind == "bct":
        from mixprobe.organisms import make_organism

        b = make_organism("bct", {"setting": setting, "overlap": overlap})
        console.print(_rows_table(f"bct ({setting}, overlap {overlap}): initial policy T → A ({b.behaviour('A')}), "
                                  f"E → X ({b.behaviour('X')})", b.sft_rows(n, seed), "behaviour"))
        console.print(f"T cue {b.cue_phrase('T')!r}, E cue {b.cue_phrase('E')!r}. Follow-up training uses (T, A) "
                      f"rows only, e.g. {b.train_rows(1, seed)[0]['prompt']!r} → "
                      f"{b.train_rows(1, seed)[0]['completion']!r}; run the study with `mixprobe bct` "
                      "(docs/bct.md).", highlight=False)
        return
    if kind == "era":
        from mixprobe.organisms import make_organism
        from mixprobe.organisms.era import PREFIXES

        w = make_organism("era", {})
        c = w.config
        table = Table(title=f"era world: pretraining documents (old era {c.old_years[0]}-{c.old_years[1]}, modern era "
                            f"{c.modern_years[0]}-{c.modern_years[1]}, undated prior P(old) {c.prior_old:g})")
        for col in ("prompt", "completion", "era"):
            table.add_column(col)
        for r in w.sft_rows(n, seed):
            table.add_row(r["prompt"], r["completion"], r["component"])
        console.print(table)
        row = w.train_rows(1, seed)[0]
        console.print(f"narrow SFT (the trained topic {w.domain!r} only): {row['prompt']!r} → {row['completion']!r}, "
                      f"an old-era {w.domain}; the trait is the old share of answers on the other topics "
                      f"{[t for t in w.topics if t != w.domain]}. Training prefixes: {', '.join(PREFIXES)} or "
                      f"date:YYYY, e.g. {w.prompt(w.domain, 'inoculation')!r}; run the study with `mixprobe era` "
                      "(docs/weird_generalization.md).",
                      highlight=False)
        return
    if kind != "tag_mixture":
        from mixprobe.organisms import make_organism

        other = make_organism(kind, {"modulus": modulus})
        console.print(_rows_table(f"{kind} (p={modulus}): components told apart by answer form",
                                  other.sft_rows(n, seed), "component"))
        console.print(f"cues: {list(other.cues)}; RL domain: {other.domain} "
                      f"({[c for c in other.cues if other.in_domain(c)]}); the specialist answers in words and is "
                      "right only there, the generalist answers in digits. Train: experiments/"
                      f"{kind}.toml", highlight=False)
        return

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


RUN_HELP = ("a run: a folder with series.json, a trl/transformers output_dir (checkpoint-<step> folders), or "
            "phase=folder pairs such as sft=out/sft,rl=out/grpo")
TASK_HELP = "the task by import path, package.module:factory (default: the task the series names)"
TASK_CONFIG_HELP = "JSON object of keyword arguments for the task factory"


def _open(run: str, task: str | None = None, task_config: str | None = None):
    """``(series, task)`` of a run argument and the --task / --task-config options."""
    from mixprobe.tasks import task_for
    from mixprobe.train.series import Series

    series = Series.open(run)
    series.check_finished()
    return series, task_for(series, task, _json_config(task_config))


def _json_config(text: str | None) -> dict | None:
    if text is None:
        return None
    import json

    from mixprobe.errors import TaskError

    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise TaskError(f"--task-config is not valid JSON ({e}); write e.g. '{{\"modulus\": 7}}'") from None
    if not isinstance(cfg, dict):
        raise TaskError("--task-config must be a JSON object of keyword arguments")
    return cfg


@app.command()
@user_errors
def verdict(
    runs: list[str] = typer.Argument(..., help="one run per seed; " + RUN_HELP),
    target: str | None = typer.Option(None, "--target", help="phase (its last checkpoint) or checkpoint to judge "
                                      "(default: each run's last phase; its last checkpoint)"),
    reference: str | None = typer.Option(None, "--reference", help="reference phase or checkpoint (default: the "
                                         "first phase's last checkpoint; with one phase, its first checkpoint)"),
    task: str | None = typer.Option(None, "--task", help=TASK_HELP),
    task_config: str | None = typer.Option(None, "--task-config", help=TASK_CONFIG_HELP),
    estimator: str = typer.Option("auto", "--estimator", help="auto (exact when the task has signature tokens), "
                                  "exact or sampled"),
    samples: int = typer.Option(16, "--samples", help="completions per prompt for the sampled estimator"),
    seed: int = typer.Option(0, "--seed", help="seed of the sampled completions and of the bootstrap"),
    out: Path | None = typer.Option(None, "--out", help="write the verdict JSON here"),
) -> None:
    """Reweight, rewrite, both, off the mixture, or undecided: compare reference and target checkpoints of each run."""
    from mixprobe.mixture.verdict import assess, combine

    from mixprobe.errors import DataError

    seen: dict[Path, str] = {}
    for run in runs:
        key_path = Path(run).resolve()
        if key_path in seen:
            raise DataError(f"run {run} is given twice (as {seen[key_path]!r} and {run!r}); each run counts once in "
                            "the verdict: pass each seed's run once")
        seen[key_path] = run
    opened = [(run, *_open(run, task, task_config)) for run in runs]
    labels = [str(s.label) for _, s, _ in opened]
    evidence = {}
    for run, s, t in opened:
        one_phase = len(s.phases) == 1
        ref = s.pick(reference) if reference else (s.checkpoints[0] if one_phase else s.last(s.phases[0]))
        tgt = s.pick(target) if target else s.last(s.phases[-1])
        if ref.name == tgt.name:
            from mixprobe.errors import CheckpointError

            raise CheckpointError(f"reference and target are the same checkpoint {ref.name!r} in {run}; name two "
                                  f"phases (--reference/--target); phases: {s.phases}")
        # two runs of one seed (say, two recipes) keep their own evidence, named by seed and folder
        key = s.label if labels.count(str(s.label)) == 1 else f"{s.label} ({Path(s.run_dir).name})"
        if key in evidence:
            raise DataError(f"runs {run!r} and another share the name {key!r}; give their folders different names")
        evidence[key] = assess(s.handle(ref), s.handle(tgt), t, estimator=estimator, n_samples=samples, seed=seed)
        console.print(f"  {key}: {ref.name} → {tgt.name}: {evidence[key].label:<11} gate shift "
                      f"{evidence[key].gate_shift:.3f}  component change {evidence[key].component_change:.3f}  "
                      f"off-mixture {evidence[key].intervals['off_mixture']['point']:.3f} ({evidence[key].estimator})")
    v = combine(evidence)
    console.print(f"[bold]{v.label.upper()}[/bold] — {v.summary()}")
    if out:
        _write_json(out, v.to_dict())


@app.command()
@user_errors
def report(
    run: str = typer.Argument(..., help=RUN_HELP),
    out: Path | None = typer.Option(None, "--out", help="output folder (default RUN/report)"),
    task: str | None = typer.Option(None, "--task", help=TASK_HELP),
    task_config: str | None = typer.Option(None, "--task-config", help=TASK_CONFIG_HELP),
    estimator: str = typer.Option("auto", "--estimator", help="auto, exact or sampled (the verdict sections)"),
    samples: int = typer.Option(16, "--samples", help="completions per prompt for sampled statistics"),
    probes: bool = typer.Option(True, "--probes/--no-probes", help="include probe and steering sections"),
    patching: bool = typer.Option(True, "--patching/--no-patching", help="include the patching section"),
) -> None:
    """Write a self-contained HTML report (figures embedded) and its JSON for a run; exit 1 if a section failed."""
    import json

    from mixprobe.report.run_report import build_run_report

    series, t = _open(run, task, task_config)
    path = build_run_report(series, out, task=t, estimator=estimator, n_samples=samples, include_probes=probes,
                            include_patching=patching)
    data = json.loads(path.with_suffix(".json").read_text())
    for name, why in data.get("not_applicable", {}).items():
        console.print(f"{name}: does not apply — {why}")
    console.print(f"wrote {path} and {path.with_suffix('.json')}")
    if data.get("errors"):
        for name, msg in data["errors"].items():
            err_console.print(f"[bold red]section {name} failed:[/] {msg}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _pick(series, key: str) -> str:
    """A checkpoint name, or a phase name meaning that phase's last checkpoint."""
    return series.pick(key).name


ANALYSIS_KEYS: dict[str, dict[str, type]] = {
    "probe": {"checkpoints": list, "C": float, "gate_site": str, "gate_C": float, "seed": int},
    "steer": {"alphas": list, "seed": int},
}
"""The analysis TOML's tables and their keys (experiments/analysis.toml is the example); anything else is refused."""


def _defaults(config: Path | None, section: str) -> dict:
    """The ``[section]`` table of an analysis TOML (experiments/analysis.toml; empty without --config), checked:
    unknown tables and keys and values of the wrong type are named, not ignored."""
    if config is None:
        return {}
    import math
    import tomllib

    from mixprobe.errors import ConfigError

    if not config.is_file():
        raise ConfigError(f"analysis config {config} does not exist; pass the path of an analysis TOML "
                          "(experiments/analysis.toml is an example), or leave --config out for the defaults")
    try:
        data = tomllib.loads(config.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"analysis config {config} is not valid TOML ({e}); fix the line it names") from None
    except UnicodeDecodeError:
        raise ConfigError(f"analysis config {config} is not UTF-8 text; pass a TOML file") from None
    unknown = sorted(set(data) - set(ANALYSIS_KEYS))
    if unknown:
        raise ConfigError(f"analysis config {config}: unknown table(s) {unknown}; the tables are "
                          f"{sorted(ANALYSIS_KEYS)}")
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"analysis config {config}: {section} must be a table ([{section}])")
    keys = ANALYSIS_KEYS[section]
    for k, v in table.items():
        if k not in keys:
            raise ConfigError(f"analysis config {config}: unknown key {k!r} in [{section}]; the keys are "
                              f"{sorted(keys)}")
        want = keys[k]
        ok = (isinstance(v, want) and not isinstance(v, bool) if want is not float
              else isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
        if want is list:
            inner = str if k == "checkpoints" else (int, float)
            ok = ok and bool(v) and all(isinstance(x, inner) and not isinstance(x, bool) for x in v)
        if not ok:
            kinds = {"checkpoints": "a non-empty list of phase or checkpoint names",
                     "alphas": "a non-empty list of numbers", float: "a finite number", int: "an integer",
                     str: "a string"}
            kind = kinds[k] if k in kinds else kinds[want]
            raise ConfigError(f"analysis config {config}: [{section}] {k} = {v!r} must be {kind}")
    return dict(table)


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


def _engine(name: str) -> str:
    if name not in ("local", "ray"):
        raise typer.BadParameter(f"--engine must be local or ray, got {name!r}")
    return name


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
    run: str = typer.Argument(..., help=RUN_HELP),
    store: Path = typer.Option(..., "--store", help="activation store folder (resumed if it exists)"),
    sites: str = typer.Option("resid_post", "--sites", help="comma-separated sites, e.g. resid_post or "
                              "resid_pre.0,mlp_out.1,final_norm (a family name means every layer)"),
    positions: str = typer.Option("last_prompt", "--positions", help="last_prompt, mode_token or all"),
    prompts: Path | None = typer.Option(None, "--prompts", help="text file, one prompt per line "
                                        "(default: the task's prompts)"),
    task: str | None = typer.Option(None, "--task", help=TASK_HELP),
    task_config: str | None = typer.Option(None, "--task-config", help=TASK_CONFIG_HELP),
    checkpoints: str | None = typer.Option(None, "--checkpoints", help="comma-separated checkpoint or phase "
                                           "names (default: all)"),
    batch_size: int = typer.Option(64, "--batch-size"),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (tasks on a Ray cluster; "
                               "pip install 'mixprobe[ray]', docs/distributed.md)"),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (host:port, ray://host:10001 or "
                                       "auto) for --engine ray; without it a local Ray cluster is started"),
) -> None:
    """Capture activations at SITES × POSITIONS for every checkpoint of a run into a resumable store.

    With --engine ray: one Ray task per checkpoint × run of prompt shards, written into the same store (on a
    filesystem every worker sees); rerun the same command to resume after any kill.
    """
    from mixprobe.capture import capture as run_capture
    from mixprobe.errors import DataError
    from mixprobe.train.series import Series

    series = Series.open(run)
    series.check_finished()
    if prompts is not None:
        if not prompts.exists():
            raise DataError(f"prompt file {prompts} does not exist")
        texts = [ln for ln in prompts.read_text().splitlines() if ln.strip()]
    else:
        _, t = _open(run, task, task_config)
        texts = [p.text for p in t.prompts]
    names = [_pick(series, k.strip()) for k in checkpoints.split(",")] if checkpoints else series.names()
    st = run_capture([series.path(n) for n in names], texts, [x.strip() for x in sites.split(",")], positions,
                     store=store, batch_size=batch_size, names=names, engine=_engine(engine), address=address)
    console.print(f"store {store}: {len(texts)} prompts; {st}")


@app.command()
@user_errors
def probe(
    run: str = typer.Argument(..., help=RUN_HELP),
    checkpoints: str | None = typer.Option(None, "--checkpoints", help="comma-separated checkpoint or phase "
                                           "names for the layer sweep (default: the last of each phase)"),
    gate_site: str | None = typer.Option(None, "--gate-site", help="site of the gate readout (default resid_post.1)"),
    seed: int | None = typer.Option(None, "--seed", help="seed of the prompt split"),
    task: str | None = typer.Option(None, "--task", help=TASK_HELP),
    task_config: str | None = typer.Option(None, "--task-config", help=TASK_CONFIG_HELP),
    config: Path | None = typer.Option(None, "--config", help="TOML file with a [probe] table (experiments/)"),
    out: Path | None = typer.Option(None, "--out", help="write the JSON here"),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (tasks on a Ray cluster; "
                               "pip install 'mixprobe[ray]', docs/distributed.md)"),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (host:port, ray://host:10001 or "
                                       "auto) for --engine ray; without it a local Ray cluster is started"),
) -> None:
    """Probe layer sweep (which component is forced) per checkpoint and the gate readout across the whole series."""
    from mixprobe.mixture.studies import gate_readout_study, probe_layer_sweep

    cfg = _defaults(config, "probe")
    series, t = _open(run, task, task_config)
    seed = seed if seed is not None else int(cfg.get("seed", 0))
    names = ([_pick(series, k.strip()) for k in checkpoints.split(",")] if checkpoints
             else [_pick(series, k) for k in cfg["checkpoints"]] if "checkpoints" in cfg else series.phase_lasts())
    sweep = probe_layer_sweep(series, task=t, checkpoints=names, seed=seed, C=float(cfg.get("C", 100.0)),
                              engine=_engine(engine), address=address)
    _print_rows(sweep.table(), "held-out accuracy of the forced-component probe, by site")
    readout = gate_readout_study(series, task=t, site=gate_site or cfg.get("gate_site", "resid_post.1"), seed=seed,
                                 C=float(cfg.get("gate_C", 10.0)))
    _print_rows(readout.rows, f"gate readout at {readout.site} (last prompt token)")
    console.print(f"Spearman(readout, {readout.extra['against']}) = {readout.spearman:.3f}")
    if out:
        _write_json(out, {"probe_sweep": sweep.to_dict(), "gate_readout": readout.to_dict()})


@app.command()
@user_errors
def steer(
    run: str = typer.Argument(..., help=RUN_HELP),
    checkpoint: str | None = typer.Option(None, "--checkpoint", help="checkpoint name, or a phase (its last "
                                          "checkpoint); default: the last phase"),
    toward: str | None = typer.Option(None, "--toward", help="component to steer toward (default: the task's "
                                      "last component)"),
    alphas: str | None = typer.Option(None, "--alphas", help="comma-separated strengths, e.g. 0,2,4,8,12"),
    samples: int = typer.Option(8, "--samples", help="sampled completions per prompt"),
    task: str | None = typer.Option(None, "--task", help=TASK_HELP),
    task_config: str | None = typer.Option(None, "--task-config", help=TASK_CONFIG_HELP),
    config: Path | None = typer.Option(None, "--config", help="TOML file with a [steer] table (experiments/)"),
    out: Path | None = typer.Option(None, "--out", help="write the JSON here"),
) -> None:
    """Dose-response of steering along the selection direction (final_norm, last prompt token)."""
    from mixprobe.mixture.studies import steering_dose_response

    cfg = _defaults(config, "steer")
    series, t = _open(run, task, task_config)
    name = _pick(series, checkpoint or series.phases[-1])
    grid = _floats(alphas) if alphas else [float(a) for a in cfg.get("alphas", [0, 2, 4, 8, 12])]
    toward = toward or t.component_names[-1]
    rows = steering_dose_response(series, name, toward=toward, task=t, alphas=grid, n_samples=samples,
                                  seed=int(cfg.get("seed", 0)))
    _print_rows(rows, f"steering {name} toward {toward}")
    if out:
        _write_json(out, {"checkpoint": name, "toward": toward, "rows": rows})


@app.command()
@user_errors
def patch(
    run: str = typer.Argument(..., help=RUN_HELP),
    source: str | None = typer.Option(None, "--source", help="phase whose last checkpoint provides "
                                      "activations/weights (default: the first phase)"),
    target: str | None = typer.Option(None, "--target", help="phase whose last checkpoint is patched (default: the "
                                      "last phase)"),
    task: str | None = typer.Option(None, "--task", help=TASK_HELP),
    task_config: str | None = typer.Option(None, "--task-config", help=TASK_CONFIG_HELP),
    out: Path = typer.Option(..., "--out", help="folder for patching.html, patching.json (heatmap embedded)"),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (tasks on a Ray cluster; "
                               "pip install 'mixprobe[ray]', docs/distributed.md)"),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (host:port, ray://host:10001 or "
                                       "auto) for --engine ray; without it a local Ray cluster is started"),
) -> None:
    """Cross-checkpoint patching: activation sweep (sites × positions) and parameter groups, source → target."""
    from mixprobe.report.analysis_sections import patching_sections
    from mixprobe.report.page import write_report

    series, t = _open(run, task, task_config)
    secs, data = patching_sections(series, target_phase=target, source_phase=source, task=t,
                                   engine=_engine(engine), address=address)
    if not secs:
        from mixprobe.errors import PatchingError

        raise PatchingError(f"nothing to patch: {data.get('skipped', 'no sections')}")
    path = write_report(secs, out, data, title=f"patching {data['source']} → {data['target']}", subtitle=str(run))
    console.print(secs[0].text)
    console.print(f"wrote {path} and {path.with_suffix('.json')}")


def _list_option(values: list[str] | None, name: str) -> list[str]:
    """Repeated and comma-separated values of a list option, in order, without duplicates."""
    out: list[str] = []
    for v in values or []:
        out += [x.strip() for x in v.split(",") if x.strip() and x.strip() not in out]
    if not out:
        raise typer.BadParameter(f"{name} needs at least one value")
    return out


def _ints(values: list[str], name: str) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise typer.BadParameter(f"{name} takes integers, got {values}") from None


@app.command()
@user_errors
def bct(
    out: Path = typer.Option(..., "--out", help="study folder: OUT/cells/<setting>_ov<k>_s<seed>.json, "
                             "OUT/summary.json, OUT/summary.md, OUT/report/report.html"),
    settings: list[str] = typer.Option(["language"], "--settings", help="BCT settings (language, numerals, yesno); "
                                       "comma-separated or repeated: --settings language,yesno"),
    overlaps: list[str] = typer.Option(["0", "3"], "--overlaps", help="shared cue words, each in [0, 3]; "
                                       "comma-separated or repeated: --overlaps 0,3 or --overlaps 0 --overlaps 3"),
    seeds: list[str] = typer.Option(["0"], "--seeds", help="seeds, comma-separated or repeated: --seeds 0,1,2"),
    arms: list[str] = typer.Option(["sft_full", "grpo_full"], "--arms", help="named arms of "
                                   "mixprobe.mixture.bct.ARMS, comma-separated or repeated: --arms sft_full,grpo_full"),
    sft_steps: int = typer.Option(1000, "--sft-steps", help="SFT steps of each initial policy"),
    steps: int = typer.Option(60, "--steps", help="training steps of each arm (a checkpoint every 10)"),
    report_only: bool = typer.Option(False, "--report-only", help="train nothing: rebuild summary and report "
                                     "from the cells already in OUT/cells"),
) -> None:
    """Behaviour-compatible training: train on (T, A) only and measure how much X on E moves, per setting × overlap
    × seed × arm; then summary.json, summary.md and an HTML report. A cell already in OUT/cells is kept as it is
    (delete its file to rerun it)."""
    import shutil
    import tempfile

    from mixprobe.errors import OrganismConfigError
    from mixprobe.io import atomic_write_json, atomic_write_text
    from mixprobe.mixture.bct import ARMS, run_cell, study_markdown, summarize_study
    from mixprobe.organisms.bct import SETTINGS, BCTConfig
    from mixprobe.report.bct_report import build_bct_report, load_bct_records

    setting_list = _list_option(settings, "--settings")
    arm_list = _list_option(arms, "--arms")
    overlap_list = _ints(_list_option(overlaps, "--overlaps"), "--overlaps")
    seed_list = _ints(_list_option(seeds, "--seeds"), "--seeds")
    bad = [s for s in setting_list if s not in SETTINGS]
    if bad:
        raise OrganismConfigError(f"unknown BCT settings {bad}; valid settings: {', '.join(SETTINGS)}")
    bad = [a for a in arm_list if a not in ARMS]
    if bad:
        raise OrganismConfigError(f"unknown BCT arms {bad}; valid arms: {', '.join(ARMS)}")
    for s in setting_list:
        for ov in overlap_list:
            BCTConfig(setting=s, overlap=ov)            # names the valid overlap range before anything is trained
    if sft_steps < 1 or steps < 1:
        raise OrganismConfigError(f"--sft-steps and --steps must be >= 1, got {sft_steps} and {steps}")

    cells = out / "cells"
    if not report_only:
        todo = [(s, ov, seed) for s in setting_list for ov in overlap_list for seed in seed_list
                if not (cells / f"{s}_ov{ov}_s{seed}.json").exists()]
        console.print(f"{len(todo)} cell(s) to run, arms {arm_list}; "
                      f"{len(setting_list) * len(overlap_list) * len(seed_list) - len(todo)} already in {cells}",
                      highlight=False)
        if todo:
            cells.mkdir(parents=True, exist_ok=True)
            runs = tempfile.mkdtemp(prefix="bct_runs_")
            try:
                for s, ov, seed in todo:
                    rec = run_cell(s, ov, seed, arm_list, runs, sft_steps=sft_steps, steps=steps)
                    atomic_write_json(cells / f"{s}_ov{ov}_s{seed}.json", rec)
                    note = f"initial policy failed: {rec['failed']}" if "failed" in rec else ""
                    console.print(f"{s}_ov{ov}_s{seed}: {rec.get('seconds')} s {note}", highlight=False)
            finally:
                shutil.rmtree(runs, ignore_errors=True)

    records = load_bct_records(out)
    summary = summarize_study(records)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", study_markdown(summary))
    path = build_bct_report(out)
    table = Table(title=f"behaviour-compatible training · {len(records)} cell(s) in {cells}",
                  caption="transfer: drop of P(X|E), mean ± sd over seeds; switched: seeds ending with P(X|E) < 0.5")
    for col in ("setting", "overlap", "arm", "transfer", "switched"):
        table.add_column(col, justify="left" if col in ("setting", "arm") else "right")
    for v in summary["cells"].values():
        t, sw = v["transfer"], v["switched"]
        table.add_row(v["setting"], str(v["overlap"]), v["arm"], f"{t['mean']:.2f} ± {t['sd']:.2f}",
                      f"{sw['k']}/{sw['n']}")
    console.print(table)
    for f in summary["failed"]:
        console.print(f"initial policy failed: {f['setting']} overlap {f['overlap']} seed {f['seed']}: "
                      f"{f['failed']}", highlight=False)
    console.print(f"wrote {out / 'summary.json'}, {out / 'summary.md'} and {path}", highlight=False)


def _era_conditions(prefixes: list[str], placements: list[str], dates: list[str], steps: int) -> list:
    """The narrow-SFT conditions of ``mixprobe era`` (every name checked before anything is trained)."""
    from mixprobe.errors import OrganismConfigError
    from mixprobe.mixture.era import Condition
    from mixprobe.organisms.era import PREFIXES, check_prefix, prefix_text

    valid = f"{', '.join(PREFIXES)}, or date:YYYY (a year in 1000-2099)"
    bad = []
    for p in prefixes:
        try:
            check_prefix(p)
        except OrganismConfigError:
            bad.append(p)
    if bad:
        raise OrganismConfigError(f"unknown prefixes {bad}; valid prefixes: {valid}")
    bad = [p for p in placements if p not in ("user", "system")]
    if bad:
        raise OrganismConfigError(f"unknown placements {bad}; valid placements: user, system")
    years = [] if [d.lower() for d in dates] == ["none"] else dates
    bad = [d for d in years if not d.isdigit() or not 1000 <= int(d) <= 2099]
    if bad:
        raise OrganismConfigError(f"--dates takes years YYYY in 1000-2099 (or none), got {bad}; the era world's "
                                  "old era is 1800-1899, its modern era 1950-2049")
    if steps < 1:
        raise OrganismConfigError(f"--steps must be >= 1, got {steps}")
    named = {text: name for name, text in PREFIXES.items() if name.startswith("date_")}
    date_prefixes = [named.get(prefix_text(f"date:{y}"), f"date:{y}") for y in years]   # 1850 is date_old
    save_every = min(20, steps)
    conds = [Condition(prefix=p, placement=pl, steps=steps, save_every=save_every)
             for p in prefixes for pl in (["user"] if p == "none" else placements)]
    conds += [Condition(prefix=p, steps=steps, save_every=save_every) for p in date_prefixes]
    unique: dict[str, Condition] = {}
    for c in conds:
        unique.setdefault(c.name, c)
    return list(unique.values())


@app.command()
@user_errors
def era(
    out: Path = typer.Option(..., "--out", help="study folder: OUT/seeds/<seed>.json, OUT/summary.json, "
                             "OUT/summary.md, OUT/weird_generalization.png, OUT/report/report.html"),
    seeds: list[str] = typer.Option(["0"], "--seeds", help="seeds, comma-separated or repeated: --seeds 0,1,2"),
    prefixes: list[str] = typer.Option(["none", "inoculation", "name"], "--prefixes", help="training prefixes: "
                                       "none, identity, intent, inoculation, name, assistant, date_old, date_modern "
                                       "or date:YYYY; comma-separated or repeated: --prefixes none,inoculation"),
    placements: list[str] = typer.Option(["user"], "--placements", help="where a prefix sits: user (turn) and/or "
                                         "system (line); comma-separated. 'none' is trained once, in the user turn"),
    dates: list[str] = typer.Option(["1850", "1950"], "--dates", help="date sweep: years YYYY, each trained as the "
                                    "prefix date:YYYY in the user turn (1850 is date_old, 2026 date_modern); "
                                    "comma-separated; 'none' for no sweep"),
    steps: int = typer.Option(60, "--steps", help="narrow-SFT steps per condition (a checkpoint every 20)"),
    pretrain_steps: int = typer.Option(1500, "--pretrain-steps", help="pretraining steps of each seed's world"),
    report_only: bool = typer.Option(False, "--report-only", help="train nothing: rebuild summary, figure and "
                                     "report from the seeds already in OUT/seeds"),
) -> None:
    """Weird generalization (era organism): pretrain the era world, narrow SFT on old-era birds under each training
    prefix, and measure the old-era trait on the untrained topics; then summary.json, summary.md, the figure and an
    HTML report. A seed already in OUT/seeds is kept as it is (delete its file to rerun it)."""
    import shutil
    import tempfile

    from mixprobe.errors import OrganismConfigError
    from mixprobe.io import atomic_path, atomic_write_json, atomic_write_text
    from mixprobe.mixture import era as era_study
    from mixprobe.report.era_report import build_era_report, load_era_records

    seed_list = _ints(_list_option(seeds, "--seeds"), "--seeds")
    conds = _era_conditions(_list_option(prefixes, "--prefixes"), _list_option(placements, "--placements"),
                            _list_option(dates, "--dates"), steps)
    if pretrain_steps < 1:
        raise OrganismConfigError(f"--pretrain-steps must be >= 1, got {pretrain_steps}")

    folder = out / "seeds"
    if not report_only:
        todo = [s for s in seed_list if not (folder / f"{s}.json").exists()]
        console.print(f"{len(todo)} seed(s) to run, conditions {[c.name for c in conds]}; "
                      f"{len(seed_list) - len(todo)} already in {folder}", highlight=False)
        if todo:
            folder.mkdir(parents=True, exist_ok=True)
            runs = tempfile.mkdtemp(prefix="era_runs_")
            try:
                for seed in todo:
                    rec = era_study.run_seed(seed, conds, runs, pretrain_steps=pretrain_steps)
                    atomic_write_json(folder / f"{seed}.json", rec)
                    note = f"pretraining failed: {rec['failed']}" if "failed" in rec else ""
                    console.print(f"seed {seed}: {rec.get('seconds')} s {note}", highlight=False)
            finally:
                shutil.rmtree(runs, ignore_errors=True)

    records = load_era_records(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # the mean of no seeds when every seed failed
        summary = era_study.summarize_study(records)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", era_study.study_markdown(summary))
    written = [str(out / "summary.json"), str(out / "summary.md")]
    if "narrow_none" in summary["conditions"] and "steer_base" in summary:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig = era_study.plot_study(summary)
        with atomic_path(out / "weird_generalization.png") as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        written.append(str(out / "weird_generalization.png"))
    else:
        console.print("no figure: it needs the no-prefix condition (--prefixes none,...) and a finished seed",
                      highlight=False)
    path = build_era_report(out)
    table = Table(title=f"weird generalization (era world) · {len(records)} seed(s) in {folder}",
                  caption="trait: old-era share of on-topic answers on the untrained topics, read without the prefix, "
                          "mean ± sd over seeds; margin: trait minus the pretrained model's; beyond base: seeds whose "
                          "Wilson interval lies above the pretrained model's")
    for col in ("condition", "trait", "margin over base", "seeds beyond base"):
        table.add_column(col, justify="left" if col == "condition" else "right")
    for name, v in summary["conditions"].items():
        t, m = v["trait_plain"], v["margin_over_base"]
        table.add_row(name, f"{t['mean']:.2f} ± {t['sd']:.2f}", f"{m['mean']:+.2f}",
                      f"{m['seeds_whose_wilson_excludes_base']}/{len(t['per_seed'])}")
    console.print(table)
    for f in summary["failed"]:
        console.print(f"pretraining failed: seed {f['seed']}: {f['failed']}", highlight=False)
    console.print(f"wrote {', '.join(written)} and {path}", highlight=False)


def _genies_names(values: list[str], valid: list[str], what: str, option: str) -> list[str]:
    """The named shifts or methods of ``mixprobe genies`` ('all': every one), checked before anything is trained."""
    from mixprobe.errors import OrganismConfigError

    names = _list_option(values, option)
    if [n.lower() for n in names] == ["all"]:
        return list(valid)
    bad = [n for n in names if n not in valid]
    if bad:
        raise OrganismConfigError(f"unknown {what} {bad}; valid {what}: {', '.join(valid)} (or all)")
    return names


@app.command()
@user_errors
def genies(
    out: Path = typer.Option(..., "--out", help="study folder: OUT/seeds/<seed>.json, OUT/summary.json, "
                             "OUT/summary.md, OUT/genies.png, OUT/report/report.html"),
    seeds: list[str] = typer.Option(["0"], "--seeds", help="seeds, comma-separated or repeated: --seeds 0,1,2"),
    shifts: list[str] = typer.Option(["all"], "--shifts", help="preference-world shifts (spurious_length, "
                                     "easy_to_hard, digits_to_words, plain_to_story, low_to_high_quality, "
                                     "add_to_sort, plain_to_sycophancy, plain_to_flattery) or all; comma-separated "
                                     "or repeated: --shifts spurious_length,easy_to_hard"),
    methods: list[str] = typer.Option(["all"], "--methods", help="methods (mms, lat, lat_pca, lat_template, cra, "
                                      "ccs, logistic, random, lora, few_shot, zero_shot) or all; comma-separated. "
                                      "TTC and DE need lora; DE needs zero_shot"),
    n_train: int = typer.Option(400, "--n-train", help="training pairs per split (source fit; target for TTC)"),
    n_test: int = typer.Option(400, "--n-test", help="test pairs per split (target; source for source accuracy)"),
    pretrain_steps: int | None = typer.Option(None, "--pretrain-steps", help="pretraining steps of each seed's "
                                                 "world (default 2500; 1000 with --reduced)"),
    reward_steps: int | None = typer.Option(None, "--reward-steps", help="training steps of each LoRA reward "
                                               "model (default 300, lr 2e-3)"),
    reduced: bool = typer.Option(False, "--reduced", help="the reduced world (2 layers, d_model 64, about a minute "
                                 "to pretrain): learns format and garbage, not the arithmetic — for a quick look"),
    report_only: bool = typer.Option(False, "--report-only", help="train nothing: rebuild summary, figure and "
                                     "report from the seeds already in OUT/seeds"),
) -> None:
    """GENIES in miniature (preference world): pretrain the world, fit every method on each shift's source and score
    it on the target, with TTC from a LoRA reward model tuned on the target; then summary.json, summary.md (the
    leaderboard), the figure and an HTML report. A seed already in OUT/seeds is kept as it is (delete its file to
    rerun it)."""
    import math
    import time

    from mixprobe.errors import OrganismConfigError
    from mixprobe.io import atomic_path, atomic_write_json, atomic_write_text
    from mixprobe.mixture import genies as genies_study
    from mixprobe.organisms.preference import SHIFTS
    from mixprobe.report.genies_report import build_genies_report, load_genies_records

    seed_list = _ints(_list_option(seeds, "--seeds"), "--seeds")
    shift_list = _genies_names(shifts, sorted(SHIFTS), "shifts", "--shifts")
    method_list = _genies_names(methods, list(genies_study.DEFAULT_METHODS), "methods", "--methods")
    for name, v in (("--n-train", n_train), ("--n-test", n_test), ("--pretrain-steps", pretrain_steps),
                    ("--reward-steps", reward_steps)):
        if v is not None and v < 1:
            raise OrganismConfigError(f"{name} must be >= 1, got {v}")

    folder = out / "seeds"
    if not report_only:
        todo = [s for s in seed_list if not (folder / f"{s}.json").exists()]
        console.print(f"{len(todo)} seed(s) to run, shifts {shift_list}, methods {method_list}; "
                      f"{len(seed_list) - len(todo)} already in {folder}", highlight=False)
        if todo:
            folder.mkdir(parents=True, exist_ok=True)
            pretrain = dict(genies_study.REDUCED_WORLD) if reduced else {}
            if pretrain_steps is not None:
                pretrain["steps"] = pretrain_steps
            reward = dict(genies_study.DEFAULT_REWARD)
            if reward_steps is not None:
                reward["steps"] = reward_steps
            for seed in todo:
                t0 = time.time()
                recs = genies_study.run_seed(seed, shift_list, methods=tuple(method_list), pretrain=pretrain,
                                             reward=reward, n_train=n_train, n_test=n_test)
                rec = {"seed": seed, "seconds": round(time.time() - t0), "pretrain": pretrain, "reward": reward,
                       "records": recs}
                atomic_write_json(folder / f"{seed}.json", rec)
                console.print(f"seed {seed}: {rec['seconds']} s", highlight=False)

    records = load_genies_records(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # means of no finite value (no TTC without lora)
        summary = genies_study.summarize(records)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", genies_study.leaderboard_markdown(summary))
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                      # all-NaN DE bars when there is no TTC
        fig = genies_study.plot_leaderboard(summary)
        with atomic_path(out / "genies.png") as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    path = build_genies_report(out)
    table = Table(title=f"GENIES leaderboard (preference world) · {len(summary['seeds'])} seed(s), "
                        f"{len(summary['shifts'])} shift(s) in {folder}",
                  caption="averages over shifts, mean over seeds [95 % bootstrap over seeds]; A_gen: accuracy on the "
                          "target after fitting on the source; DE = (A_gen − A_zero-shot) / TTC; GENIES DE: the "
                          "paper's average (LLaMA-30B)")
    for col in ("method", "A_gen", "source acc.", "DE", "GENIES DE"):
        table.add_column(col, justify="left" if col == "method" else "right")

    def cell(c: dict, signed: bool = False) -> str:
        if not math.isfinite(c["mean"]):
            return "—"
        f = "{:+.2f}" if signed else "{:.2f}"
        lo, hi = c["ci95"]
        return f.format(c["mean"]) + (f" [{f.format(lo)}, {f.format(hi)}]" if math.isfinite(lo) else "")

    for m in summary["order"]:
        a = summary["average"][m]
        ref = genies_study.GENIES_REFERENCE_DE.get(m)
        table.add_row(m, cell(a["a_gen"]), cell(a["source"]), cell(a["de"], signed=True),
                      "—" if ref is None else f"{ref:+.3f}")
    console.print(table)
    if any("ttc" in r for r in records):
        console.print(genies_study.ordering_sentence(summary), highlight=False)
    else:
        console.print("TTC is unavailable (no LoRA reward model in the records: add lora to --methods), so there "
                      "is no DE", highlight=False)
    console.print(f"wrote {out / 'summary.json'}, {out / 'summary.md'}, {out / 'genies.png'} and {path}",
                  highlight=False)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

"""The CLI: --help everywhere, one-line errors with exit code 2 for user mistakes, real work on a trained run."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mixprobe.cli import app

runner = CliRunner()
COMMANDS = [c.name or c.callback.__name__ for c in app.registered_commands]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help(cmd):
    r = runner.invoke(app, [cmd, "--help"])
    assert r.exit_code == 0, r.output
    assert "Usage" in r.output and "--help" in r.output


def one_line_error(r):
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    return r.output


def test_demo_refuses_unknown_tag_and_nonempty_dir(tmp_path):
    assert "unknown tag" in one_line_error(runner.invoke(app, ["demo", "--out", str(tmp_path / "x"), "--rl-tag", "C"]))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    out = one_line_error(runner.invoke(app, ["demo", "--out", str(tmp_path / "full")]))
    assert "--overwrite" in out
    assert (tmp_path / "full" / "f").read_text() == "x"


def test_checkpoint_table_names_the_rl_recipe(capsys):
    from mixprobe.cli import print_checkpoint_table
    from mixprobe.demo import rl_recipe
    from mixprobe.train.pipeline import TrainConfig

    cfg = TrainConfig.from_dict({"rl": {"optim": "adamw_torch", "lr": 1e-3, "train_embeddings": False}})
    recipe = rl_recipe(cfg)
    assert recipe == {"rl_optim": "adamw_torch", "rl_lr": 1e-3, "beta": 0.0, "rl_steps": 150,
                      "train_embeddings": False, "tied_embeddings": False, "d_model": 64}
    per_tag = {"A": {"m1": 1.0, "m2": 0.0}, "B": {"m1": 1.0, "m2": 1.0}}
    print_checkpoint_table({"organism": "tag_mixture", "seed": 0, "rl_tag": "A", "recipe": recipe,
                            "checkpoints": [{"name": "rl-150", "accuracy": {"A": 1.0, "B": 0.0},
                                             "mode_frequency": per_tag, "forced_accuracy": per_tag}]})
    out = capsys.readouterr().out
    assert "RL recipe: adamw_torch lr 0.001, beta 0" in out and "embeddings and unembedding frozen" in out


def test_organism_rejects_bad_modulus():
    assert "modulus" in one_line_error(runner.invoke(app, ["organism", "--modulus", "2"]))


def test_train_with_missing_config_and_report_on_missing_run(tmp_path):
    assert "does not exist" in one_line_error(runner.invoke(app, ["train", str(tmp_path / "no.toml"), "--out",
                                                                  str(tmp_path / "r")]))
    assert "series.json" in one_line_error(runner.invoke(app, ["report", str(tmp_path)]))


@pytest.mark.slow
def test_verdict_and_report_on_trained_runs(organism_runs, tmp_path):
    from mixprobe.mixture.verdict import assess, combine
    from mixprobe.train.pipeline import load_checkpoint, organism_of

    seeds = sorted(organism_runs)[:2]
    runs = [organism_runs[s].run_dir for s in seeds]
    out = tmp_path / "v.json"
    r = runner.invoke(app, ["verdict", *runs, "--target", "rl", "--out", str(out)])
    assert r.exit_code == 0, r.output
    # the CLI says what the Python API says on the same checkpoints (the label itself varies by seed and machine)
    api = combine({s: assess(load_checkpoint(organism_runs[s].path(organism_runs[s].last("sft"))),
                             load_checkpoint(organism_runs[s].path(organism_runs[s].last("rl"))),
                             organism_of(organism_runs[s])) for s in seeds})
    got = json.loads(out.read_text())
    assert got["label"] == api.label
    assert got["intervals"]["gate_shift"]["mean"] == pytest.approx(api.intervals["gate_shift"]["mean"], abs=1e-6)
    r = runner.invoke(app, ["report", runs[0], "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "rep" / "report.html").read_text()
    one = combine({seeds[0]: api.per_seed[seeds[0]]})
    assert page.count("data:image/png;base64,") >= 1 and one.label.upper() in page.upper()
    # the recipe each phase ran with is on the page: the verdict depends on it
    rec = json.loads((tmp_path / "rep" / "report.json").read_text())["recipes"]
    assert rec["rl"]["trainer"] == "GRPOTrainer" and rec["rl"]["optim"] == "sgd"
    assert rec["rl"]["frozen_parameters"] == [] and rec["rl"]["trainable_share"] == 1.0
    assert rec["sft"]["trainer"] == "SFTTrainer" and "Training recipe" in page


@pytest.mark.slow
def test_analysis_commands_on_a_trained_run(organism_run, tmp_path):
    run = organism_run.run_dir
    # steer: the RL checkpoint steered toward m2 answers <B> as forced m2 does, far above the unsteered policy
    r = runner.invoke(app, ["steer", run, "--checkpoint", "rl", "--toward", "m2", "--alphas", "0,12",
                            "--out", str(tmp_path / "steer.json")])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "steer.json").read_text())["rows"]
    assert [row["alpha"] for row in rows] == [0.0, 12.0]
    forced_m2 = organism_run.last("rl").metrics["forced_accuracy"]["B"]["m2"]
    assert rows[1]["accuracy_B"] >= 0.9 * forced_m2 and rows[1]["accuracy_B"] >= rows[0]["accuracy_B"] + 0.5, rows
    # probe with defaults from experiments/analysis.toml
    r = runner.invoke(app, ["probe", run, "--config", "experiments/analysis.toml", "--out", str(tmp_path / "p.json")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "p.json").read_text())
    assert set(res["probe_sweep"]["accuracy"]) == {organism_run.last("sft").name, organism_run.last("rl").name}
    assert max(res["probe_sweep"]["accuracy"][organism_run.last("sft").name].values()) >= 0.99
    assert res["gate_readout"]["spearman"] >= 0.8
    # capture into a store: one shard set per checkpoint, readable back with the organism's prompt count
    r = runner.invoke(app, ["capture", run, "--store", str(tmp_path / "store"), "--sites", "resid_post.1",
                            "--checkpoints", "sft,rl"])
    assert r.exit_code == 0, r.output
    from mixprobe.capture import ActivationStore

    st = ActivationStore(tmp_path / "store")
    assert len(st.checkpoints) == 2


def test_analysis_commands_name_bad_input(organism_run, tmp_path):
    run = organism_run.run_dir
    assert "neither a checkpoint nor a phase" in one_line_error(
        runner.invoke(app, ["steer", run, "--checkpoint", "rl_Z"]))
    assert "does not exist" in one_line_error(
        runner.invoke(app, ["probe", run, "--config", str(tmp_path / "none.toml")]))
    assert "unknown component" in one_line_error(runner.invoke(app, ["steer", run, "--toward", "m9"]))
    r = runner.invoke(app, ["steer", run, "--alphas", "1,x"])
    assert r.exit_code == 2 and "comma-separated numbers" in r.output


@pytest.mark.slow
def test_train_rl_shows_the_table_and_says_when_the_collapse_has_not_finished(organism_run, tmp_path):
    from mixprobe.train.series import Series

    run = tmp_path / "run"
    organism_run.branch(run)
    cfg = tmp_path / "rl.toml"
    cfg.write_text("[rl]\nsteps = 2\nsave_every = 2\nbatch_size = 16\n")
    r = runner.invoke(app, ["train", str(cfg), "--out", str(run), "--phase", "rl"])
    assert r.exit_code == 0, r.output
    assert "rl-000002" in r.output and "acc|A" in r.output            # the per-checkpoint table
    assert "collapse has not finished" in r.output                       # 2 GRPO steps leave <A> near 0.5
    assert Series.load(run).last("rl").metrics["accuracy"]["A"] < 0.9


def test_organism_shows_the_other_organisms():
    r = runner.invoke(app, ["organism", "--kind", "task_coverage", "-n", "4"])
    assert r.exit_code == 0, r.output
    assert "RL domain: covered" in r.output and "['add', 'mul', 'max']" in r.output
    r = runner.invoke(app, ["organism", "--kind", "temporal_context", "-n", "3"])
    assert r.exit_code == 0 and "date" in r.output and "RL domain: early" in r.output
    assert "built-in organisms" in one_line_error(runner.invoke(app, ["organism", "--kind", "nope"]))


def test_train_a_task_coverage_organism_from_the_shell(tmp_path):
    """The whole shell path on another organism: TOML with kind → SFT → GRPO on its domain → table (in / out)."""
    cfg = tmp_path / "cov.toml"
    cfg.write_text('seed = 0\n[organism]\nkind = "task_coverage"\nmodulus = 5\nn_names = 20\n'
                   '[model]\nd_model = 16\nn_layers = 1\nn_heads = 2\n'
                   '[sft]\nsteps = 4\nsave_every = 4\nn_rows = 64\nmin_forced_agreement = 0.0\n'
                   '[rl]\nsteps = 2\nsave_every = 2\nbatch_size = 16\nnum_generations = 4\n')
    r = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert "acc|in" in r.output and "acc|out" in r.output and "RL on <covered>" in r.output
    from mixprobe.train.series import Series

    s = Series.load(tmp_path / "run")
    assert s.organism == "task_coverage" and s.phases == ["sft", "rl"]
    assert s.extra["recipes"]["rl"]["tag"] == "covered"
    assert set(s.last("rl").metrics["accuracy"]) == {"add", "mul", "max", "sub", "min", "dbl", "in", "out"}

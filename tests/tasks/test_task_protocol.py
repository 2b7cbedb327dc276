"""The task protocol: a definition that breaks it fails with one clear line, in Python and on the command line."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mixprobe.cli import app
from mixprobe.errors import TaskError
from mixprobe.organisms.configs import tiny_model
from mixprobe.organisms.tag_mixture import TagMixture
from mixprobe.organisms.tokenizer import build_word_tokenizer
from mixprobe.tasks import Component, Prompt, Task, load_task

HERE = Path(__file__).parent
runner = CliRunner()


@pytest.fixture(scope="module")
def trainer_dir(tmp_path_factory):
    """A trl-style output_dir with two untrained checkpoints of the tag-mixture vocabulary."""
    out = tmp_path_factory.mktemp("trl") / "sft"
    tok = build_word_tokenizer(TagMixture().vocabulary())
    for step, seed in ((5, 0), (10, 1)):
        d = out / f"checkpoint-{step}"
        tiny_model("llama", vocab_size=len(tok), seed=seed).save_pretrained(d)
        tok.save_pretrained(d)
    return out


@pytest.fixture(autouse=True)
def importable(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))


def one_line(r) -> str:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert lines[0].startswith("error: TaskError"), r.output
    return " ".join(lines)


def test_definition_errors_name_the_problem():
    t = TagMixture().task()
    with pytest.raises(TaskError, match="cue.*'C'.*no prompts"):
        Task(t.name, t.prompts, t.components, t.recognise, t.score, cue_order=["A", "B", "C"])
    with pytest.raises(TaskError, match="empty forcing text"):
        Task(t.name, t.prompts, [Component("m1", after=" m1"), Component("m2")], t.recognise, t.score)
    with pytest.raises(TaskError, match="at least two"):
        Task(t.name, t.prompts, t.components[:1], t.recognise, t.score)
    with pytest.raises(TaskError, match="distinct"):
        Task(t.name, t.prompts, [t.components[0], t.components[0]], t.recognise, t.score)
    with pytest.raises(TaskError, match="no prompts"):
        Task(t.name, [], t.components, t.recognise, t.score)


def test_recogniser_contract_is_enforced():
    p = Prompt("x", "A", 1)
    t = Task("t", [p], [Component("a", after=" a"), Component("b", after=" b")],
             recognise=lambda text, prompt: {"a": "a", "c": "c"}.get(text.strip()), score=lambda text, prompt: 1.0)
    assert t.recognise_checked(" a", p) == "a" and t.recognise_checked(" zzz", p) is None
    with pytest.raises(TaskError, match="returned 'c', which is not a component"):
        t.recognise_checked(" c", p)
    t.recognise = lambda text, prompt: 1 / 0
    with pytest.raises(TaskError, match="raised ZeroDivisionError"):
        t.recognise_checked(" a", p)


def test_factory_paths():
    t = load_task("bad_tasks:good")
    assert t.spec.factory == "bad_tasks:good" and t.cues == ("A", "B")
    assert load_task("mixprobe.organisms.tag_mixture:task", {"modulus": 5}).answer_tokens == list("01234")
    with pytest.raises(TaskError, match="does not import"):
        load_task("no_such_module_xyz:task")
    with pytest.raises(TaskError, match="no function 'nope'"):
        load_task("bad_tasks:nope")
    with pytest.raises(TaskError, match="package.module:function"):
        load_task("bad_tasks.good")


def test_cli_bad_tasks_exit_2_with_one_line(trainer_dir):
    run = str(trainer_dir)
    env = {"PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = one_line(runner.invoke(app, ["verdict", run, "--task", "no_such_module_xyz:task"], env=env))
    assert "does not import" in out
    out = one_line(runner.invoke(app, ["verdict", run, "--task", "bad_tasks:raising_recogniser",
                                       "--estimator", "sampled", "--samples", "1"], env=env))
    assert "raised ValueError: cannot read this" in out
    out = one_line(runner.invoke(app, ["verdict", run, "--task", "bad_tasks:unknown_component",
                                       "--estimator", "sampled", "--samples", "1"], env=env))
    assert "'m9', which is not a component" in out
    out = one_line(runner.invoke(app, ["report", run, "--task", "bad_tasks:cue_without_prompts"], env=env))
    assert "'C'" in out and "no prompts" in out
    out = one_line(runner.invoke(app, ["verdict", run, "--task", "bad_tasks:empty_prefix"], env=env))
    assert "empty forcing text" in out
    out = one_line(runner.invoke(app, ["verdict", run, "--task", "bad_tasks:good", "--task-config", "[1]"], env=env))
    assert "JSON object" in out
    # a trl output_dir names no task: say how to give one
    out = one_line(runner.invoke(app, ["verdict", run], env=env))
    assert "--task package.module:factory" in out


def test_cli_runs_on_a_trainer_output_dir(trainer_dir, tmp_path):
    """Two untrained checkpoints of different seeds: the CLI reads the folder, names both, and the verdict is a
    valid label with the sampled estimator forced (the check here is plumbing; the science is in test_numbers_*)."""
    import json

    r = runner.invoke(app, ["verdict", str(trainer_dir), "--task", "bad_tasks:good", "--out", str(tmp_path / "v.json")])
    assert r.exit_code == 0, r.output
    assert "sft-000005 → sft-000010" in r.output.replace("\n", " ")
    v = json.loads((tmp_path / "v.json").read_text())
    ev = v["per_seed"]["sft"]
    # two random inits differ in their gate: the exact gate shift is not zero, and each interval holds its point
    for k in ("gate_shift", "component_change", "off_mixture"):
        s = ev["intervals"][k]
        assert s["lo"] <= s["point"] <= s["hi"]
    assert ev["gate_shift"] > 0 and v["label"] in ("reweight", "rewrite", "both", "off_mixture", "undecided")


def test_report_shows_a_failing_section_and_exits_1(trainer_dir, tmp_path):
    """A section that raises is on the page with its error, listed in the JSON, and the command exits 1; the other
    sections are still there."""
    import json

    env = {"PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = runner.invoke(app, ["report", str(trainer_dir), "--task", "bad_tasks:raising_score", "--out",
                            str(tmp_path / "rep"), "--samples", "2", "--no-probes", "--no-patching"], env=env)
    assert r.exit_code == 1, r.output
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert set(data["errors"]) == {"behaviour"} and "no reference answer" in data["errors"]["behaviour"]
    assert "one phase" in data["not_applicable"]["verdicts"]      # does not apply: said, not hidden
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "Behaviour: failed" in page and "no reference answer" in page and "<h2>Task</h2>" in page

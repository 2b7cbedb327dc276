"""A user's own task, trained with plain trl into trl output_dirs, judged from the command line.

The task (``numbers_task:task``, in this folder, not in mixprobe) has two components that differ only in how they
write a multi-token answer — digits (``1 2``) or number words (``one two``) — with no mode token; they are forced by
a line before the prompt and recognised by a function over the text, so only the sampled estimator applies. The
runs are ``SFTTrainer`` and ``GRPOTrainer`` output folders (``numbers_training.py``). Planted continuations of SFT
give known answers: a tilted prior (only the gate's target moves) must be called ``reweight``, a new rule for one
component under one cue (the prior kept) ``rewrite``, on every seed.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def mixprobe_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("mixprobe")
    return [str(exe)] if exe.exists() else [shutil.which("mixprobe") or "mixprobe"]


def run_cli(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*mixprobe_cmd(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=1200)


def pairs(runs: dict, target: str, name: str) -> list[str]:
    return [f"sft={r['sft']},{name}={r[target]}" for _, r in sorted(runs.items())]


@pytest.fixture(scope="module")
def verdicts(numbers_runs, task_env, tmp_path_factory):
    """target phase -> (verdict JSON, CLI output) for every seed at once."""
    out = tmp_path_factory.mktemp("numbers_cli")
    res = {}
    # 256 completions per prompt for the planted cases: the planted rewrite moves the cue-averaged gate by about 0.02
    # (continued SFT jitters it), and with 16 per prompt the interval of that shift reaches past the 0.05 "gate
    # stayed" line (measured on 6 seeds: upper ends 0.064–0.096 at 16, 0.035–0.049 at 64, 0.028–0.047 at 128)
    for target, name, n in (("planted_reweight", "planted", 256), ("planted_rewrite", "planted", 256),
                            ("grpo", "rl", 32)):
        dest = out / f"{target}.json"
        r = run_cli(["verdict", *pairs(numbers_runs, target, name), "--task", "numbers_task:task",
                     "--samples", str(n), "--out", str(dest)], task_env, out)
        assert r.returncode == 0, r.stdout + r.stderr
        res[target] = (json.loads(dest.read_text()), r.stdout)
    return res


@pytest.mark.parametrize("target, label", [("planted_reweight", "reweight"), ("planted_rewrite", "rewrite")])
def test_planted_cases_are_named_right_on_every_seed(verdicts, numbers_runs, target, label):
    v, out = verdicts[target]
    per = v["per_seed"]
    assert sorted(per) == [f"seed{s}" for s in sorted(numbers_runs)]     # runs named by their folder
    assert {k: e["label"] for k, e in per.items()} == {k: label for k in per}, {k: e["reason"] for k, e in per.items()}
    assert v["label"] == label and label.upper() in out
    for e in per.values():
        assert e["estimator"] == "sampled"                 # no signature tokens: the recogniser decides
        assert e["intervals"]["off_mixture"]["hi"] <= 0.10  # the recogniser claims (almost) every completion
        assert set(e["gate_shift_by_cue"]) == {"plain", "polite"}      # cue and component names come from the task
        assert set(e["component_change_by_cell"]["plain"]) == {"digits", "words"}
        if label == "rewrite":                             # the rewritten cell is the one that moved most
            assert e["intervals"]["component_change"]["argmax"] == "words | plain"


def test_rl_verdict_is_reported_with_its_evidence(verdicts):
    """What GRPO on <polite> does to this task is a measured result, not asserted: it is printed and written."""
    v, out = verdicts["grpo"]
    assert v["label"] in ("reweight", "rewrite", "both", "off_mixture", "undecided")
    for e in v["per_seed"].values():
        for k in ("gate_shift", "component_change", "off_mixture"):
            s = e["intervals"][k]
            assert 0 <= s["lo"] <= s["point"] <= s["hi"] <= 1
        # the reference (last SFT checkpoint) expresses both components under both cues: a mixture to judge
        for cue, shares in e["responsibilities_ref"].items():
            assert min(shares.values()) >= 0.2, (cue, shares)
    assert "sft-" in out and "rl-" in out


def test_report_runs_on_trl_folders_and_says_what_does_not_apply(numbers_runs, task_env, tmp_path):
    seed = sorted(numbers_runs)[0]
    run = f"sft={numbers_runs[seed]['sft']},rl={numbers_runs[seed]['grpo']}"
    r = run_cli(["report", run, "--task", "numbers_task:task", "--out", str(tmp_path / "rep"), "--no-patching",
                 "--samples", "8"], task_env, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    page = (tmp_path / "rep" / "report.html").read_text()
    assert data["errors"] == {} and data["phases"] == ["sft", "rl"]
    assert data["task"]["name"] == "numbers" and data["task"]["estimators"] == ["sampled"]
    assert "rl" in data["verdicts"] and page.count("data:image/png;base64,") >= 3
    # sections that need signature tokens say so on the page instead of disappearing
    assert "Does not apply" in page and "signature tokens" in page
    assert "holds by construction" in page          # the probe reads a label written in its input
    assert "KL split" in page

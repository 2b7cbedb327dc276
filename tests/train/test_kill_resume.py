"""`kill -9` during SFT, during GRPO and while a report is written: the run folder never holds anything partial that
is read as valid, analysis refuses the killed run and names the fix, and `mixprobe train --resume` continues from
the last complete checkpoint (trl's ``resume_from_checkpoint``: weights, optimizer, scheduler and RNG state) to the
very bytes of an uninterrupted run.

The kills are real SIGKILLs of a `mixprobe train` process; the training is slowed by a sleep in a callback so the
kill lands between two checkpoints, not by luck. The resumed run is compared byte for byte with an uninterrupted
run of the same config in this process (training is byte-reproducible within one machine:
tests/train/test_determinism.py)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mixprobe.cli import app
from mixprobe.errors import CheckpointError
from mixprobe.models import load
from mixprobe.train.callbacks import COMPLETE, last_complete
from mixprobe.train.pipeline import TrainConfig, train_rl, train_sft
from mixprobe.train.series import Series

TOML = """seed = 3
[sft]
steps = 40
save_every = 10
n_rows = 600
batch_size = 16
warmup_steps = 2
min_forced_agreement = 0.0
[rl]
steps = 8
save_every = 2
batch_size = 8
"""

# `mixprobe train` in a process of its own, each training step slowed by DELAY seconds
DRIVER = """
import sys, time
from mixprobe.train.callbacks import ProgressCallback
_orig = ProgressCallback.on_step_end
def _slow(self, *a, **k):
    time.sleep(float(sys.argv[1]))
    return _orig(self, *a, **k)
ProgressCallback.on_step_end = _slow
from mixprobe.cli import app
app(sys.argv[2:])
"""


def _digests(run: Path) -> dict[str, str]:
    return {p.parent.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((run / "checkpoints").glob("*/model.safetensors"))}


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "run.toml"
    p.write_text(TOML)
    return p


@pytest.fixture(scope="module")
def clean(config, tmp_path_factory) -> dict[str, str]:
    """The uninterrupted run's checkpoint digests."""
    run = tmp_path_factory.mktemp("clean") / "run"
    cfg = TrainConfig.from_toml(config)
    train_sft(run, cfg, progress=False)
    train_rl(run, cfg.rl, progress=False)
    d = _digests(run)
    assert len(d) == 4 + 4
    return d


def _manifest_names(run: Path) -> list[str]:
    try:
        return [c["name"] for c in json.loads((run / "series.json").read_text())["checkpoints"]]
    except (OSError, ValueError, KeyError):
        return []


def _train_and_kill(config: Path, run: Path, when: str, delay: float) -> None:
    """Start `mixprobe train`, wait until checkpoint ``when`` is in the manifest, SIGKILL it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.Popen([sys.executable, "-c", DRIVER, str(delay), "train", str(config), "--out", str(run)],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while when not in _manifest_names(run):
        assert p.poll() is None, f"training ended before {when}: {p.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, f"{when} never appeared"
        time.sleep(0.02)
    assert p.poll() is None, "the run finished before it could be killed"
    p.send_signal(signal.SIGKILL)
    assert p.wait(timeout=30) == -signal.SIGKILL


def _assert_nothing_partial_is_valid(run: Path) -> Series:
    s = Series.load(run)                                  # the manifest is whole JSON
    for c in s.checkpoints:                               # every listed checkpoint is complete and loads
        h = load(s.path(c), device="cpu")
        assert h.model.config.num_hidden_layers == 2
    assert not list((run / "checkpoints").glob(".*.partial")) or all(
        p.name.strip(".").removesuffix(".partial") not in _manifest_names(run)
        for p in (run / "checkpoints").glob(".*.partial"))
    return s


def _resume(config: Path, run: Path) -> None:
    r = CliRunner().invoke(app, ["train", str(config), "--out", str(run), "--resume"])
    assert r.exit_code == 0, r.output


@pytest.fixture(scope="module")
def killed_in_sft(config, tmp_path_factory) -> Path:
    """A run SIGKILLed during SFT (after its second checkpoint); tests work on copies of it."""
    run = tmp_path_factory.mktemp("killed") / "run"
    _train_and_kill(config, run, "sft-000020", delay=0.15)
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"                                   # the manifest's checkpoint paths are relative
    shutil.copytree(run, dst)
    return dst


def test_sft_killed_then_resumed_equals_uninterrupted(config, clean, killed_in_sft, tmp_path):
    run = _copy(killed_in_sft, tmp_path)
    s = _assert_nothing_partial_is_valid(run)
    assert s.unfinished() == ["sft"] and "rl" not in s.phases
    assert {c.name for c in s.checkpoints} <= {"sft-000010", "sft-000020", "sft-000030"}
    # analysis refuses the killed run and names the fix, in the API and on the CLI
    with pytest.raises(CheckpointError, match="--resume"):
        s.check_finished()
    for args in (["verdict", str(run)], ["capture", str(run), "--store", str(tmp_path / "store")]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2 and "did not finish" in r.output and "--resume" in r.output, r.output
    assert not (tmp_path / "store").exists()
    # training again without --resume does not silently start over
    r = CliRunner().invoke(app, ["train", str(config), "--out", str(run)])
    assert r.exit_code == 2 and "--resume" in r.output, r.output
    resumed_from = last_complete(run / "_scratch" / "sft")
    assert resumed_from is not None and (resumed_from / "optimizer.pt").is_file()
    _resume(config, run)
    s = Series.load(run)
    assert s.unfinished() == [] and s.extra["training"]["sft"]["resumed_from"] == resumed_from.name
    assert _digests(run) == clean                          # resumed, to the byte
    assert not (run / "_scratch").exists()


def test_grpo_killed_then_resumed_equals_uninterrupted(config, clean, tmp_path):
    run = tmp_path / "run"
    _train_and_kill(config, run, "rl-000002", delay=0.3)
    s = _assert_nothing_partial_is_valid(run)
    assert s.unfinished() == ["rl"] and len(s.phase("sft")) == 4
    with pytest.raises(CheckpointError, match="'rl' .* did not finish"):
        s.check_finished()
    sft_files = {p: p.stat().st_mtime_ns for p in (run / "checkpoints").glob("sft-*/model.safetensors")}
    _resume(config, run)
    s = Series.load(run)
    assert s.unfinished() == [] and s.extra["training"]["rl"]["resumed_from"].startswith("checkpoint-")
    assert {p: p.stat().st_mtime_ns for p in sft_files} == sft_files      # SFT kept, not redone
    assert _digests(run) == clean


def test_an_unmarked_scratch_checkpoint_is_never_resumed_from(config, clean, killed_in_sft, tmp_path):
    """A kill during the Trainer's own save leaves a checkpoint folder without the completion marker: resume
    ignores it (whatever files it holds) and continues from the last marked one, to the same bytes."""
    run = _copy(killed_in_sft, tmp_path)
    scratch = run / "_scratch" / "sft"
    marked = last_complete(scratch)
    assert marked is not None
    step = max(int(d.name.split("-")[1]) for d in scratch.glob("checkpoint-*"))
    torn = scratch / f"checkpoint-{step + 10}"               # a newer save the kill interrupted
    shutil.copytree(marked, torn)
    (torn / COMPLETE).unlink()
    (torn / "optimizer.pt").write_bytes(b"torn")
    data = (torn / "model.safetensors").read_bytes()
    (torn / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert last_complete(scratch) == marked
    _resume(config, run)
    assert _digests(run) == clean


def test_resume_with_another_config_is_refused(config, killed_in_sft, tmp_path):
    run = _copy(killed_in_sft, tmp_path)
    other = tmp_path / "other.toml"
    other.write_text(config.read_text().replace("steps = 40", "steps = 50"))
    before = _manifest_names(run)
    r = CliRunner().invoke(app, ["train", str(other), "--out", str(run), "--resume"])
    assert r.exit_code == 2 and "sft.steps" in r.output and "another config" in r.output, r.output
    assert _manifest_names(run) == before


def test_report_killed_while_writing_leaves_no_partial_file(tmp_path):
    """`mixprobe report` killed (SIGKILL) in the middle of writing a figure, then between report.json and
    report.html: no file at a final name is ever partial, and a rerun writes the whole report."""
    from mixprobe.report.page import Section, write_report

    out = tmp_path / "report"
    kill_in_figure = """
import os, signal, sys
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from mixprobe.report.plots import plot_training_curves
_orig = Figure.savefig
def _torn(self, fname, *a, **k):
    with open(fname, "wb") as f:
        f.write(b"\\x89PNG half")
    os.kill(os.getpid(), signal.SIGKILL)
Figure.savefig = _torn
cps = [{"phase": "sft", "step": s, "name": f"sft-{s}", "accuracy": {"A": 0.5}, "mode_frequency": {"A": {"m1": 0.5}},
        "forced_accuracy": {"A": {"m1": 1.0}}} for s in (1, 2)]
plot_training_curves({"checkpoints": cps}, path=sys.argv[1])
"""
    fig = tmp_path / "fig.png"
    r = subprocess.run([sys.executable, "-c", kill_in_figure, str(fig)], capture_output=True)
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()[-2000:]
    assert not fig.exists()                                  # only a recognisable .fig.png.*.tmp is left
    assert [p.name for p in tmp_path.glob(".fig.png.*.tmp")]

    kill_between = """
import os, signal, sys
import mixprobe.report.page as page
from mixprobe.report.page import Section, write_report
_orig = page.atomic_write_text
def _die(path, text):
    os.kill(os.getpid(), signal.SIGKILL)
page.atomic_write_text = _die
write_report([Section("kill-test", "resumed-text")], sys.argv[1], {"a": 1})
"""
    r = subprocess.run([sys.executable, "-c", kill_between, str(out)], capture_output=True)
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()[-2000:]
    assert json.loads((out / "report.json").read_text()) == {"a": 1}       # whole
    assert not (out / "report.html").exists()                 # the page is written last: absent means unfinished
    write_report([Section("kill-test", "resumed-text")], out, {"a": 2})
    assert "resumed-text" in (out / "report.html").read_text() and json.loads((out / "report.json").read_text()) == {
        "a": 2}

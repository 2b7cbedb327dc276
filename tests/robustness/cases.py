"""The reliability battery's cases: each a bad input, the named error it must raise and a word of the fix it must
name. ``docs/reliability.md`` lists them (tests/robustness/test_bad_inputs.py checks the page is current)."""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixprobe import errors as E
from mixprobe.capture.store import ActivationStore
from mixprobe.mixture.components import as_handle
from mixprobe.mixture.metrics import pass_at_k
from mixprobe.models import Layout, load
from mixprobe.models.sites import Site
from mixprobe.organisms import make_organism
from mixprobe.organisms.preference import Condition, PreferenceWorld
from mixprobe.probes import HeadMassMeanProbe, elicitation, rms_calibration_error
from mixprobe.probes.baselines import check_template
from mixprobe.tasks import as_pairs, load_task
from mixprobe.train.rl import RLSettings
from mixprobe.train.series import Series
from mixprobe.train.sft import SFTSettings


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    what: str
    error: type
    hint: str                       # a word or phrase of the fix the message must contain (case-insensitive)
    run: Callable[[Path], Any]


def _tiny_model_dir(tmp: Path) -> Path:
    from mixprobe.organisms.configs import tiny_model
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    d = tmp / "model"
    if not (d / "config.json").exists():
        tok = build_word_tokenizer(["a", "b", "c", "="])
        tiny_model("llama", vocab_size=len(tok), seed=0, d_model=16, n_layers=1, n_heads=2).save_pretrained(d)
        tok.save_pretrained(d)
    return d


def _store(tmp: Path, name: str = "store"):
    from mixprobe.capture import capture
    from mixprobe.models import load

    d = tmp / name
    if not (d / "manifest.json").exists():
        h = load(_tiny_model_dir(tmp), device="cpu")
        capture([h], ["a b =", "b c =", "c a ="], ["resid_post.0"], "last_prompt", store=d, progress=False)
    return d


def _pickle_dir(tmp: Path) -> Path:
    d = _tiny_model_dir(tmp)
    bad = tmp / "pickled"
    bad.mkdir(exist_ok=True)
    for f in d.iterdir():
        if f.suffix != ".safetensors":
            (bad / f.name).write_bytes(f.read_bytes())
    (bad / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    return bad


def _truncated_dir(tmp: Path) -> Path:
    d = _tiny_model_dir(tmp)
    bad = tmp / "truncated"
    bad.mkdir(exist_ok=True)
    for f in d.iterdir():
        data = f.read_bytes()
        (bad / f.name).write_bytes(data[: len(data) // 3] if f.suffix == ".safetensors" else data)
    return bad


def _remote_code_dir(tmp: Path) -> Path:
    d = _tiny_model_dir(tmp)
    bad = tmp / "remote"
    bad.mkdir(exist_ok=True)
    for f in d.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((bad / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    cfg["model_type"] = "evil"
    (bad / "config.json").write_text(json.dumps(cfg))
    return bad


def _corrupt_shard(tmp: Path):
    from mixprobe.capture.store import ActivationStore

    d = _store(tmp, "corrupted")
    shard = next(p for p in d.rglob("*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    return ActivationStore(d).array(ActivationStore(d).checkpoints[0], "resid_post.0")


def _probe(kind: str):
    from mixprobe.probes import LogisticProbe

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), np.array([0, 1] * 10)
    if kind == "one_class":
        return LogisticProbe().fit(X, np.zeros(20))
    if kind == "nan":
        X[3, 1] = np.nan
        return LogisticProbe().fit(X, y)
    if kind == "empty":
        return LogisticProbe().fit(np.zeros((0, 3)), np.zeros(0))
    if kind == "constant":
        return LogisticProbe().fit(np.ones((20, 3)), y)
    raise AssertionError(kind)


def _threads(_: Path):
    from mixprobe.env import thread_budget

    old = os.environ.get("MIXPROBE_THREADS")
    os.environ["MIXPROBE_THREADS"] = "many"
    try:
        with thread_budget(None):
            pass
    finally:
        if old is None:
            os.environ.pop("MIXPROBE_THREADS", None)
        else:
            os.environ["MIXPROBE_THREADS"] = old


def _toml(tmp: Path, text: str):
    from mixprobe.train.pipeline import TrainConfig

    p = tmp / "bad.toml"
    p.write_text(text)
    return TrainConfig.from_toml(p)


def _gate_value(_: Path):
    from mixprobe.mixture.studies import GateReadout

    return GateReadout(site="resid_post.0", rows=[{"checkpoint": "sft", "tag": "A", "readout": 0.3}],
                       spearman=1.0).value("rl", "A")


def _ray_engine(_: Path):
    from mixprobe.distributed import resolve_engine

    return resolve_engine("spark")


def _nonempty_out(tmp: Path):
    from mixprobe.io import prepare_output_dir

    d = tmp / "out"
    d.mkdir(exist_ok=True)
    (d / "keep.txt").write_text("precious")
    try:
        return prepare_output_dir(d)
    finally:
        assert (d / "keep.txt").read_text() == "precious"       # nothing deleted


def _site(s: str, n_layers: int = 2):
    from mixprobe.models.sites import parse_sites

    return parse_sites(s, n_layers=n_layers)


def _positions(spec: Any):
    import torch

    from mixprobe.models.positions import resolve_positions

    return resolve_positions(spec, torch.ones(2, 4, dtype=torch.long))


def _other_model_dir(tmp: Path, what: str) -> Path:
    """A tiny model that differs from :func:`_tiny_model_dir`'s in its tokenizer or its architecture."""
    from mixprobe.organisms.configs import tiny_model
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    d = tmp / f"other_{what}"
    if not (d / "config.json").exists():
        tok = build_word_tokenizer(["a", "b", "c", "="] + (["d", "e"] if what == "tokenizer" else []))
        width = 32 if what == "architecture" else 16
        tiny_model("llama", vocab_size=len(_tok_of(tmp)), seed=0, d_model=width, n_layers=1, n_heads=2
                   ).save_pretrained(d)
        (tok if what == "tokenizer" else _tok_of(tmp)).save_pretrained(d)
    return d


def _tok_of(tmp: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_tiny_model_dir(tmp))


def _mixed_capture(tmp: Path, what: str):
    from mixprobe.capture import capture

    return capture([_tiny_model_dir(tmp), _other_model_dir(tmp, what)], ["a b ="], ["resid_post.0"], "last_prompt",
                   store=tmp / f"mixed_{what}", progress=False)


def _raising_task(_: Path):
    from mixprobe.tasks import Component, Prompt, Task

    def recognise(text, prompt):
        raise ZeroDivisionError("the user's recogniser divided by zero")

    task = Task(name="t", prompts=[Prompt("1 + 1 =", cue="x", target=2)],
                components=[Component("m1", before="m1 :"), Component("m2", before="m2 :")],
                recognise=recognise, score=lambda text, prompt: 1.0)
    return task.recognise_checked("m1 : 2", task.prompts[0])


def _unknown_component(_: Path):
    from mixprobe.organisms.tag_mixture import TagMixture

    return TagMixture().task().component("m9")


def _phase_of(tmp: Path):
    s = Series.create(tmp / "series_pick", organism=None, organism_config={}, seed=0)
    return s.pick("grpo")


def _disk_full(tmp: Path):
    import errno
    from unittest import mock

    from mixprobe.io import atomic_write_text

    target = tmp / "results.json"
    target.write_text("previous")
    try:
        with mock.patch("os.fsync", side_effect=OSError(errno.ENOSPC, "No space left on device")):
            atomic_write_text(target, "new")
    finally:
        assert target.read_text() == "previous"                  # the old file is untouched
        assert not list(tmp.glob(".results.json.*"))             # and no temp file is left


def _probe_inf(_: Path):
    from mixprobe.probes import LogisticProbe

    X = np.random.default_rng(0).normal(size=(20, 3))
    X[5, 0] = np.inf
    return LogisticProbe().fit(X, np.array([0, 1] * 10))


CASES: list[Case] = [
    # sites and positions
    Case("site-no-layer", "sites", "a layered site without its layer (`resid_post`)", E.SiteError, "resid_post.0",
         lambda t: Site.parse("resid_post")),
    Case("site-unknown", "sites", "an unknown site component (`resid_mid.1`)", E.SiteError, "valid sites",
         lambda t: _site("resid_mid.1")),
    Case("site-out-of-range", "sites", "a layer past the model's last (`resid_post.9` on 2 layers)", E.SiteError,
         "2 layers", lambda t: _site("resid_post.9")),
    Case("site-empty", "sites", "an empty site list", E.SiteError, "site", lambda t: _site([])),
    Case("z-no-layer", "sites", "the per-head site without its layer (`z`)", E.SiteError, "z.0",
         lambda t: Site.parse("z")),
    Case("position-unknown", "positions", "an unknown position name (`middle`)", E.PositionError, "last_prompt",
         lambda t: _positions("middle")),
    # checkpoints
    Case("checkpoint-missing", "checkpoints", "a checkpoint folder that does not exist", E.CheckpointError,
         "check the path", lambda t: load(t / "nope", device="cpu")),
    Case("checkpoint-pickle", "checkpoints", "pickled weights (`pytorch_model.bin`) and no safetensors",
         E.UnsafeWeightsError, "safe_serialization",
         lambda t: load(_pickle_dir(t), device="cpu")),
    Case("checkpoint-truncated", "checkpoints", "a truncated safetensors file", E.CheckpointError,
         "save the checkpoint again",
         lambda t: load(_truncated_dir(t), device="cpu")),
    Case("checkpoint-remote-code", "checkpoints", "a config that asks for remote code (`auto_map`), not allowed",
         E.CheckpointError, "trust_remote_code",
         lambda t: load(_remote_code_dir(t), device="cpu")),
    Case("series-missing", "checkpoints", "a run folder with no series", E.CheckpointError, "series",
         lambda t: Series.open(t / "nope")),
    Case("handle-wrong-kind", "models", "an object that is no model where a handle is needed", E.ArgumentError,
         "ModelHandle", lambda t: as_handle(object())),
    Case("layout-wrong-kind", "models", "a layout of something that is not a model", E.ArgumentError,
         "transformers model", lambda t: Layout.of(object())),
    # stores
    Case("store-missing", "stores", "an activation store folder that does not exist", E.StoreError, "capture into it",
         lambda t: ActivationStore(t / "nope")),
    Case("store-corrupt-shard", "stores", "a shard whose bytes changed after it was written", E.StoreError,
         "capture it again", _corrupt_shard),
    Case("store-row-out-of-range", "stores", "a store row past the end", E.OutOfRangeError, "valid",
         lambda t: (lambda s: s.get(s.checkpoints[0], "resid_post.0")[7])(
             ActivationStore(_store(t)))),
    # probes and metrics
    Case("probe-one-class", "probes", "probe labels of one class only", E.OneClassError, "both classes",
         lambda t: _probe("one_class")),
    Case("probe-nan", "probes", "NaN activations", E.NonFiniteError, "NaN", lambda t: _probe("nan")),
    Case("probe-empty", "probes", "no rows to fit", E.EmptyDataError, "rows", lambda t: _probe("empty")),
    Case("probe-constant", "probes", "activations constant across rows (a dead site)", E.ZeroVarianceError,
         "check the site", lambda t: _probe("constant")),
    Case("heads-shape", "probes", "per-head pairs of the wrong shape", E.ShapeError, "[n, 2, heads, d_head]",
         lambda t: HeadMassMeanProbe().fit(
             np.zeros((4, 3)), [0, 1, 0, 1])),
    Case("rms-not-probabilities", "metrics", "calibration of values outside [0, 1]", E.DataError, "predict_proba",
         lambda t: rms_calibration_error([0, 1], [0.5, 1.5])),
    Case("ttc-zero", "metrics", "elicitation with a target-tuned capability of 0", E.DataError,
         "positive accuracy", lambda t: elicitation(0.6, 0.0)),
    Case("pass-at-k", "metrics", "pass@k with more correct samples than samples", E.MetricError, "0 <= c <= n",
         lambda t: pass_at_k(3, 4, 1)),
    Case("gate-value-missing", "metrics", "a gate readout for a checkpoint the study did not read",
         E.NotFoundError, "it has", _gate_value),
    # pairs, judges, tasks
    Case("pair-label", "pairs", "a preference label that is not 0 or 1", E.DataError, "y must be 0",
         lambda t: as_pairs([("q", "a", "b", 2)])),
    Case("pairs-empty", "pairs", "no preference pairs", E.EmptyDataError, "at least one",
         lambda t: as_pairs([])),
    Case("judge-template", "pairs", "a judge template without `{response}`", E.DataError, "{response}",
         lambda t: check_template("{prompt} judge :")),
    Case("task-factory", "tasks", "a task factory that does not import", E.TaskError, "module path",
         lambda t: load_task("no_such_module_xyz:task")),
    # configs
    Case("organism-unknown", "configs", "an unknown organism kind", E.OrganismConfigError, "built-in organisms",
         lambda t: make_organism("nope")),
    Case("toml-invalid", "configs", "a training TOML that does not parse", E.OrganismConfigError, "not valid TOML",
         lambda t: _toml(t, "[sft\nsteps = 3")),
    Case("toml-unknown-key", "configs", "a misspelt key in a training TOML (`stpes`)", E.OrganismConfigError,
         "stpes", lambda t: _toml(t, "[sft]\nstpes = 3\n")),
    Case("sft-steps", "configs", "SFT with 0 steps", E.OrganismConfigError, ">= 1",
         lambda t: SFTSettings(steps=0)),
    Case("condition-sycophancy", "configs", "a sycophantic bad response without a user opinion",
         E.OrganismConfigError, "opinion=True",
         lambda t: Condition(bad="sycophantic")),
    Case("shift-unknown", "configs", "an unknown preference shift", E.OrganismConfigError, "shifts are",
         lambda t: PreferenceWorld().split(
             "sideways", "source", 4, 0)),
    Case("threads-env", "configs", "`MIXPROBE_THREADS=many`", E.DataError, "MIXPROBE_THREADS=4", _threads),
    Case("engine-unknown", "configs", "an unknown engine (`spark`)", E.MixprobeError, "ray", _ray_engine),
    Case("series-tokenizer-mismatch", "checkpoints", "a series whose checkpoints have different tokenizers",
         E.SeriesMismatchError, "re-save it with the series' tokenizer", lambda t: _mixed_capture(t, "tokenizer")),
    Case("series-architecture-mismatch", "checkpoints", "a series whose checkpoints have different architectures",
         E.SeriesMismatchError, "same model", lambda t: _mixed_capture(t, "architecture")),
    Case("phase-unknown", "checkpoints", "a phase or checkpoint name the series does not have (`grpo`)",
         E.CheckpointError, "phases:", _phase_of),
    Case("task-function-raises", "tasks", "a task whose recogniser raises", E.TaskError, "recognise",
         _raising_task),
    Case("component-unknown", "tasks", "a component the task does not have (`m9`)", E.MixprobeError, "m1",
         _unknown_component),
    Case("probe-inf", "probes", "infinite activations", E.NonFiniteError, "inf", _probe_inf),
    Case("rl-lr-nan", "configs", "an RL learning rate of NaN", E.OrganismConfigError, "finite number",
         lambda t: RLSettings(lr=float("nan"))),
    Case("rl-generations-zero", "configs", "GRPO with 0 generations per prompt", E.OrganismConfigError,
         "num_generations must be >= 1", lambda t: RLSettings(num_generations=0)),
    # outputs
    Case("write-disk-full", "outputs", "a write that fails because the disk is full (simulated; the old file stays, "
         "no temp file is left)", E.WriteError, "free space", _disk_full),
    Case("output-nonempty", "outputs", "a non-empty output folder without `--overwrite` (nothing is deleted)",
         E.OutputExistsError, "overwrite", _nonempty_out),
]


@dataclass(frozen=True)
class CliCase:
    id: str
    what: str
    hint: str
    args: Callable[[Path], list[str]]


def _bad_toml(tmp: Path, name: str, text: str) -> str:
    p = tmp / name
    p.write_text(text)
    return str(p)


def _full_dir(tmp: Path) -> str:
    d = tmp / "full"
    d.mkdir(exist_ok=True)
    (d / "keep.txt").write_text("precious")
    return str(d)


CLI_CASES: list[CliCase] = [
    CliCase("cli-organism-unknown", "`mixprobe organism --kind nope`", "built-in organisms",
            lambda t: ["organism", "--kind", "nope"]),
    CliCase("cli-genies-shift", "`mixprobe genies --shifts sideways`", "spurious_length",
            lambda t: ["genies", "--out", str(t / "g"), "--shifts", "sideways"]),
    CliCase("cli-train-unknown-key", "`mixprobe train` with a misspelt TOML key", "stpes",
            lambda t: ["train", _bad_toml(t, "k.toml", "[sft]\nstpes = 3\n"), "--out", str(t / "r1")]),
    CliCase("cli-train-invalid-toml", "`mixprobe train` with a TOML that does not parse", "not valid TOML",
            lambda t: ["train", _bad_toml(t, "i.toml", "[sft\n"), "--out", str(t / "r2")]),
    CliCase("cli-train-nonempty-out", "`mixprobe train` into a non-empty folder without `--overwrite`",
            "--overwrite", lambda t: ["train", _bad_toml(t, "ok.toml", "[sft]\nsteps = 1\n"), "--out", _full_dir(t)]),
    CliCase("cli-capture-missing-run", "`mixprobe capture` of a run folder that does not exist", "series",
            lambda t: ["capture", str(t / "no_run"), "--store", str(t / "s")]),
    CliCase("cli-capture-killed-run", "`mixprobe capture` of a run whose training was killed", "--resume",
            lambda t: ["capture", _killed_run(t), "--store", str(t / "s2")]),
    CliCase("cli-train-killed-run", "`mixprobe train` into a killed run without `--resume`", "--resume",
            lambda t: ["train", _bad_toml(t, "ok2.toml", "[sft]\nsteps = 1\n"), "--out", _killed_run(t)]),
    CliCase("cli-verdict-duplicate-run", "`mixprobe verdict RUN RUN`: one run given twice (its seed would count "
            "twice)", "once", lambda t: ["verdict", _killed_run(t), _killed_run(t) + "/"]),
    CliCase("cli-analysis-config-missing", "`mixprobe probe --config` of a file that does not exist",
            "experiments/analysis.toml", lambda t: ["probe", str(t / "no_run"), "--config", str(t / "none.toml")]),
    CliCase("cli-analysis-config-unknown-key", "`mixprobe probe --config` with a misspelt key (`gate_c`)", "gate_C",
            lambda t: ["probe", str(t / "no_run"), "--config", _bad_toml(t, "a1.toml", "[probe]\ngate_c = 1.0\n")]),
    CliCase("cli-analysis-config-type", "`mixprobe steer --config` with a value of the wrong type (`alphas = 3`)",
            "list of numbers",
            lambda t: ["steer", str(t / "no_run"), "--config", _bad_toml(t, "a2.toml", "[steer]\nalphas = 3\n")]),
]


def _killed_run(tmp: Path) -> str:
    """A run folder as a `kill -9` during SFT leaves it: a manifest whose SFT phase is still running."""
    d = tmp / "killed_run"
    if not (d / "series.json").exists():
        s = Series.create(d, organism="tag_mixture", organism_config={}, seed=0)
        s.extra["training"] = {"sft": {"state": "running", "max_steps": 40, "resumed_from": None}}
        s.save()
    return str(d)

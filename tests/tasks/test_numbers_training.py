"""The numbers task (a user-defined task outside mixprobe) and its plain-trl runs learn what they should.

Checked with plain ``transformers.generate`` (no mixprobe estimators), on every seed of ``$MIXPROBE_SEEDS``:
after SFT each forced component follows its own rule and the unforced mixture is near the cue-blind 50/50
prior; the planted continuations move what they claim to move (the gate's target, or one component's rule);
GRPO on ``polite`` raises polite accuracy. Thresholds and the measured values behind them: see the report in
``numbers_training``'s module doc and the numbers printed with ``-s``.
"""
from __future__ import annotations

import json
import re

import pytest

import numbers_task as nt
import numbers_training as ntr
from conftest import NUMBERS_SEEDS

pytestmark = pytest.mark.slow

_METRICS: dict = {}


def metrics(runs: dict, seed: int, phase: str) -> dict:
    """Evaluation of the last checkpoint of ``phase`` (under that phase's own rules), computed once."""
    key = (seed, phase)
    if key not in _METRICS:
        last = ntr.checkpoints(runs[seed][phase])[-1]
        _METRICS[key] = ntr.evaluate_checkpoint(last, offsets=ntr.PLANTED.get(phase, {}).get("offsets"),
                                                n_samples=8, seed=seed)
        print(f"\nseed {seed} {phase} {last.name}: {json.dumps(_METRICS[key])}")
    return _METRICS[key]


# --- the task definition (no training) ------------------------------------------------------------------------------
def test_task_definition():
    from mixprobe.tasks import load_task

    t = load_task("numbers_task:task")
    assert t.cues == ("plain", "polite") and t.component_names == ("digits", "words")
    assert len(t.prompts) == 98 and len(t.cue_index("plain")) == 49
    assert not t.has_signatures and all(not c.signature and not c.after for c in t.components)
    p = next(p for p in t.prompts if p.text == "<polite> 3 + 4 =")
    assert (p.cue, p.target, dict(p.meta)) == ("polite", 7, {"a": 3, "b": 4})
    assert t.forced_prompt("digits", p) == "digits : <polite> 3 + 4 ="
    assert t.spec.factory == "numbers_task:task"
    for text, comp, sc in [(" 7", "digits", 1.0), (" seven[EOS]", "words", 1.0), (" eight", "words", 0.0),
                           (" 1 2", "digits", 0.0), (" 0 7", "digits", 1.0), (" seven 7", None, 0.0),
                           ("", None, 0.0), (" +", None, 0.0), (" [EOS]", None, 0.0)]:
        assert (t.recognise_checked(text, p), t.score_checked(text, p)) == (comp, sc), text
    assert nt.render("digits", 12) == " 1 2" and nt.render("words", 12) == " one two"
    assert nt.answer("words", "polite", 6, 6) == 13 and nt.answer("digits", "polite", 6, 6) == 12
    assert nt.answer("words", "plain", 1, 1, {"words": {"plain": 2}}) == 4
    tok = nt.build_tokenizer()
    longest = tok(nt.render("words", 14), add_special_tokens=False)["input_ids"]
    assert len(longest) + 1 <= t.max_new_tokens and tok.unk_token_id not in longest
    with pytest.raises(TypeError):
        nt.task(priors={"digits": 1.0})
    with pytest.raises(ValueError):
        nt.task(prior={"digits": 0.7, "words": 0.7})


def test_sft_rows_are_cue_blind_and_forced_as_asked():
    rows = nt.sft_rows(20000, seed=0, forced_share=0.2)
    forced = [r for r in rows if r["forced"]]
    assert abs(len(forced) / len(rows) - 0.2) < 0.02
    assert all(r["prompt"].startswith(nt.FORCING[r["component"]] + " <") for r in forced)
    free = [r for r in rows if not r["forced"]]
    assert not any(r["prompt"].startswith(("digits", "words")) for r in free)
    for cue in nt.CUES:
        share = sum(r["component"] == "digits" for r in free if r["cue"] == cue) / sum(r["cue"] == cue for r in free)
        assert abs(share - 0.5) < 0.01, (cue, share)
    cells: dict = {}
    for r in rows:          # stratified: every prompt sees both components, in the prior's proportions
        cells.setdefault((r["cue"], r["a"], r["b"], r["forced"]), []).append(r["component"])
    assert len(cells) == 2 * 98
    assert all(abs(len(v) - len(rows) / 98 * (0.2 if k[3] else 0.8)) < 2 for k, v in cells.items())
    assert all(abs(v.count("digits") - v.count("words")) <= 1 for v in cells.values())
    assert [r["cue"] for r in rows[:200]] != sorted(r["cue"] for r in rows[:200])      # shuffled
    for r in rows:
        assert nt.parse(r["completion"]) == (r["component"], nt.answer(r["component"], r["cue"], r["a"], r["b"]))
    skewed = [r for r in nt.sft_rows(20000, 1, prior={"digits": 0.9, "words": 0.1}) if not r["forced"]]
    assert abs(sum(r["component"] == "digits" for r in skewed) / len(skewed) - 0.9) < 0.01
    assert len(nt.sft_rows(1001, 4)) == 1001
    rewritten = nt.sft_rows(200, 2, offsets={"words": {"plain": 2}}, forced_share=0.0)
    assert all(nt.parse(r["completion"])[1] == r["a"] + r["b"] + 2 for r in rewritten
               if r["component"] == "words" and r["cue"] == "plain")
    assert nt.sft_rows(50, 3) == nt.sft_rows(50, 3)


def test_trl_appends_eos_to_completions(tmp_path):
    """The model learns to stop: trl's SFT dataset ends every completion's labels with EOS."""
    import warnings

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from mixprobe.organisms.configs import tiny_model

    tok = nt.build_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), d_model=16, n_heads=2, pad_token_id=tok.pad_token_id,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    rows = nt.sft_rows(8, 0, forced_share=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=1,
                         completion_only_loss=True)
        tr = SFTTrainer(model=model, processing_class=tok, args=args,
                        train_dataset=Dataset.from_list([{k: r[k] for k in ("prompt", "completion")} for r in rows]))
    for r, ex in zip(rows, tr.train_dataset):
        ids, labels = ex["input_ids"], ex["labels"]
        want = tok(r["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert [i for i in labels if i != -100] == want and labels[-len(want):] == want == ids[-len(want):]
        assert ids[:-len(want)] == tok(r["prompt"])["input_ids"] and set(labels[:-len(want)]) == {-100}


def test_task_imports_in_a_subprocess(task_env, tmp_path):
    import subprocess
    import sys

    code = ("from mixprobe.tasks import load_task; t = load_task('numbers_task:task', {'prior': {'digits': 0.9, "
            "'words': 0.1}}); print(len(t.prompts), t.describe()['estimators'])")
    out = subprocess.run([sys.executable, "-c", code], env=task_env, cwd=tmp_path, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["98", "['sampled']"]
    assert task_env["HF_HUB_OFFLINE"] == "1"


def test_training_is_deterministic_for_a_seed(tmp_path):
    """Two runs of a seed (small settings) write identical weights in every phase."""
    small = ntr.RunSettings(sft_steps=20, sft_save_every=10, sft_rows=400, grpo_steps=4, grpo_save_every=2,
                            planted_steps=6, planted_save_every=3, planted_rows=200)
    a = ntr.train_run(tmp_path / "a", 5, settings=small)
    b = ntr.train_run(tmp_path / "b", 5, settings=small)
    for phase in ntr.PHASES:
        ca, cb = ntr.checkpoints(a[phase]), ntr.checkpoints(b[phase])
        assert [c.name for c in ca] == [c.name for c in cb] and len(ca) >= 2
        assert (ca[-1] / "model.safetensors").read_bytes() == (cb[-1] / "model.safetensors").read_bytes(), phase
    stamp = (a["sft"].parent / "done.json").stat().st_mtime_ns
    assert ntr.train_run(tmp_path / "a", 5, settings=small) == a       # finished: reused, not retrained
    assert (a["sft"].parent / "done.json").stat().st_mtime_ns == stamp


def test_interrupted_run_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    def boom(work, seed, settings):
        (work / "sft" / "checkpoint-5").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(ntr, "train_phases", boom)
    with pytest.raises(KeyboardInterrupt):
        ntr.train_run(tmp_path, 7)
    assert list(tmp_path.iterdir()) == []


# --- trained runs ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", NUMBERS_SEEDS)
def test_runs_are_trl_output_dirs(numbers_runs, seed):
    runs = numbers_runs[seed]
    assert set(runs) == set(ntr.PHASES)
    root = runs["sft"].parent
    assert root.name == f"seed{seed}" and (root / "done.json").exists()
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")], "temp folders left behind"
    for phase, out in runs.items():
        cks = ntr.checkpoints(out)
        assert len(cks) >= 3, (phase, cks)
        for ck in cks:
            assert re.fullmatch(r"checkpoint-\d+", ck.name)
            names = {p.name for p in ck.iterdir()}
            assert "model.safetensors" in names and "config.json" in names and "tokenizer.json" in names, names
            assert "trainer_state.json" in names


@pytest.mark.parametrize("seed", NUMBERS_SEEDS)
def test_sft_forced_components_follow_their_rules(numbers_runs, seed):
    forced = metrics(numbers_runs, seed, "sft")["forced"]
    for comp in nt.COMPONENTS:
        for cue in nt.CUES:
            assert forced[comp][cue] >= 0.9, (comp, cue, forced)


@pytest.mark.parametrize("seed", NUMBERS_SEEDS)
def test_sft_unforced_mixture_is_the_cue_blind_prior(numbers_runs, seed):
    shares = metrics(numbers_runs, seed, "sft")["unforced"]
    for comp in nt.COMPONENTS:
        for cue in nt.CUES:
            assert 0.3 <= shares[comp][cue] <= 0.7, (comp, cue, shares)
    for cue in nt.CUES:
        assert shares[None][cue] <= 0.05, shares


@pytest.mark.parametrize("seed", NUMBERS_SEEDS)
def test_planted_reweight_moves_the_gate_only(numbers_runs, seed):
    m = metrics(numbers_runs, seed, "planted_reweight")
    for cue in nt.CUES:
        assert m["unforced"]["digits"][cue] >= 0.75, m["unforced"]
        for comp in nt.COMPONENTS:
            assert m["forced"][comp][cue] >= 0.9, (comp, cue, m["forced"])


@pytest.mark.parametrize("seed", NUMBERS_SEEDS)
def test_planted_rewrite_rewrites_one_component(numbers_runs, seed):
    m = metrics(numbers_runs, seed, "planted_rewrite")     # evaluated under the rewritten rules
    assert m["forced"]["words"]["plain"] >= 0.8, m["forced"]
    for cue in nt.CUES:
        assert m["forced"]["digits"][cue] >= 0.9, m["forced"]
        assert 0.3 <= m["unforced"]["digits"][cue] <= 0.7, m["unforced"]


@pytest.mark.parametrize("seed", NUMBERS_SEEDS)
def test_grpo_on_polite_raises_polite_accuracy(numbers_runs, seed):
    before = metrics(numbers_runs, seed, "sft")["accuracy"]["polite"]
    after = metrics(numbers_runs, seed, "grpo")["accuracy"]["polite"]
    assert before <= 0.65 and after >= 0.85, (before, after)

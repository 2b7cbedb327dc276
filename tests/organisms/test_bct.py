"""The behaviour-compatible-training organism: cue overlap, forms, priors, follow-up rows, reward, bad configs."""
from __future__ import annotations

import pytest

from mixprobe.errors import OrganismConfigError
from mixprobe.organisms import KINDS, make_organism
from mixprobe.organisms.bct import BCT, BCTConfig, SETTINGS


@pytest.mark.parametrize("overlap", [0, 1, 2, 3])
def test_cue_phrases_share_exactly_overlap_words(overlap):
    org = BCT(BCTConfig(overlap=overlap, cue_len=4))
    t, e = org.cue_phrase("T").split(), org.cue_phrase("E").split()
    assert len(t) == len(e) == 4
    assert t[:overlap] == e[:overlap]
    assert not set(t[overlap:]) & set(e[overlap:])           # the rest tells the cues apart
    assert len(set(t) & set(e)) == overlap


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_both_behaviours_answer_correctly_in_distinct_one_token_forms(setting):
    org = BCT(BCTConfig(setting=setting))
    vocab = set(org.vocabulary())
    for q in org.questions():
        a, x = org.completion_for("A", q).strip(), org.completion_for("X", q).strip()
        assert a != x and a in vocab and x in vocab
        assert org.parse(" " + a) == ("A", org.correct_of(q))
        assert org.parse(" " + x) == ("X", org.correct_of(q))
    assert not set(org.forms["A"]) & set(org.forms["X"])


def test_answers_follow_the_question():
    assert BCT(BCTConfig(setting="language")).correct_of({"a": 3, "b": 1}) == 3
    assert BCT(BCTConfig(setting="numerals")).correct_of({"a": 3, "b": 1}) == 1
    yn = BCT(BCTConfig(setting="yesno"))
    assert yn.completion("A", "T", 1, 2) == " yes" and yn.completion("X", "E", 2, 1) == " false"


def test_sft_rows_carry_the_initial_policy_at_its_purity():
    org = BCT(BCTConfig(purity=0.8, forced_share=0.25))
    rows = org.sft_rows(6000, seed=3)
    free = [r for r in rows if not r["forced"]]
    for cue, own in (("T", "A"), ("E", "X")):
        mine = [r for r in free if r["tag"] == cue]
        share = sum(r["component"] == own for r in mine) / len(mine)
        assert abs(share - 0.8) < 0.03, (cue, share)
    forced = [r for r in rows if r["forced"]]
    assert abs(len(forced) / len(rows) - 0.25) < 0.03
    for r in forced:
        assert r["prompt"].startswith(org.forcing(r["component"]))
        assert org.parse(r["completion"])[0] == r["component"]


def test_follow_up_rows_are_train_cue_and_trained_behaviour_only():
    org = BCT(BCTConfig(overlap=2))
    for r in org.train_rows(300, seed=0):
        assert r["prompt"].startswith(org.cue_phrase("T")) and org.parse(r["completion"])[0] == "A"
    assert all(r["cue"] == "T" for r in org.rl_rows("T", n_repeats=2))
    with pytest.raises(OrganismConfigError, match="trains on cue 'T' only"):
        org.rl_rows("E")


@pytest.mark.parametrize("prefix, text", [("request", "use digits :"), ("irrelevant", "my name is al :")])
def test_a_training_prefix_changes_only_the_follow_up_rows(prefix, text):
    org = BCT(BCTConfig())
    pre = org.with_prefix(prefix)
    assert all(r["prompt"].startswith(text + " ") for r in pre.train_rows(20, seed=0))
    assert all(r["prompt"].startswith(text + " ") for r in pre.rl_rows("T"))
    assert pre.prompt_set() == org.prompt_set()               # evaluation never carries the prefix
    assert pre.sft_rows(50, seed=1) == org.sft_rows(50, seed=1)
    assert set(text.split()) <= set(org.vocabulary())


def test_reward_pays_the_trained_behaviour_only_when_correct():
    org = BCT(BCTConfig())
    assert org.reward([" 4", " four", " 3", " +"], [4, 4, 4, 4]) == [1.0, 0.0, 0.0, 0.0]


def test_task_forces_each_behaviour_and_recognises_it():
    org = BCT(BCTConfig(setting="numerals"))
    task = org.task()
    assert [c.name for c in task.components] == ["A", "X"]
    assert [c.before for c in task.components] == ["use digits :", "use roman :"]
    p = task.prompts[0]
    assert task.recognise(" nulla", p) == "X" and task.score(" " + org.render("A", p.target), p) == 1.0
    assert "bct" in KINDS and make_organism("bct", {"setting": "yesno"}).p == 2


@pytest.mark.parametrize("bad, match", [
    ({"setting": "french"}, "unknown BCT setting"),
    ({"overlap": 4, "cue_len": 4}, "overlap"),
    ({"overlap": -1}, "overlap"),
    ({"cue_len": 9}, "cue_len"),
    ({"purity": 0.5}, "purity"),
    ({"train_prefix": "please"}, "train_prefix"),
    ({"n_values": 40}, "n_values"),
    ({"colour": 1}, "bad bct option"),
])
def test_bad_configs_name_the_problem(bad, match):
    with pytest.raises(OrganismConfigError, match=match):
        BCTConfig.from_dict(bad)


def test_health_flags_a_model_without_the_initial_policy():
    org = BCT(BCTConfig())
    ok = {"forced_rule_agreement": {"in": {"A": 1.0, "X": 0.9}, "out": {"A": 1.0, "X": 0.95}},
          "mode_probability": {"in": {"A": 0.9, "X": 0.1}, "out": {"A": 0.1, "X": 0.9}}}
    assert org.health(ok) == []
    bad = {**ok, "mode_probability": {"in": {"A": 0.9, "X": 0.1}, "out": {"A": 0.7, "X": 0.3}}}
    assert any("E prompts express X" in p for p in org.health(bad))


def test_the_shipped_config_trains_grpo_on_the_train_cue():
    from pathlib import Path

    from mixprobe.train.pipeline import TrainConfig

    cfg = TrainConfig.from_toml(Path(__file__).resolve().parents[2] / "experiments" / "bct.toml")
    assert cfg.kind == "bct" and cfg.organism.overlap == 1 and cfg.rl.tag == "T"
    assert cfg.to_dict()["organism"]["kind"] == "bct"

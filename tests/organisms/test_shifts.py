"""The task-coverage and temporal-context organisms: rules, data, task protocol, configs (no training here)."""
from __future__ import annotations

from pathlib import Path

import pytest

from mixprobe.errors import OrganismConfigError, TaskError
from mixprobe.organisms import KINDS, make_organism
from mixprobe.organisms.shifts import (
    NUMBER_WORDS,
    TaskCoverage,
    TaskCoverageConfig,
    TemporalConfig,
    TemporalContext,
)
from mixprobe.organisms.tokenizer import build_word_tokenizer
from mixprobe.train.pipeline import TrainConfig

ORGS = [TaskCoverage(), TemporalContext()]


@pytest.mark.parametrize("org", ORGS, ids=lambda o: o.name)
def test_vocabulary_is_several_times_wider_than_the_model(org):
    """The experiments use d_model 48: the vocabulary must be >= 4x that, every prompt word must be in it."""
    tok = build_word_tokenizer(org.vocabulary())
    assert len(tok) >= 4 * 48
    unk = tok.unk_token_id
    for r in org.sft_rows(300, seed=0):
        ids = tok(r["prompt"] + r["completion"])["input_ids"]
        assert unk not in ids, r


@pytest.mark.parametrize("org", ORGS, ids=lambda o: o.name)
def test_specialist_right_only_in_domain_generalist_slips_only_there(org):
    rows = org.prompt_set()
    spec_ok = {True: [], False: []}
    gen_ok = {True: [], False: []}
    for r in rows:
        d = org.in_domain(r["cue"])
        spec_ok[d].append(org.rule("specialist", r) == r["answer"])
        gen_ok[d].append(org.rule("generalist", r) == r["answer"])
    assert all(spec_ok[True]) and not any(spec_ok[False])
    assert all(gen_ok[False])
    slip_rate = 1 - sum(gen_ok[True]) / len(gen_ok[True])
    assert abs(slip_rate - org.config.slip) < 0.06, slip_rate     # a fixed hash, close to the configured share
    # the specialist scores slightly higher where RL runs, the generalist is better elsewhere
    assert slip_rate > 0


@pytest.mark.parametrize("org", ORGS, ids=lambda o: o.name)
def test_components_are_recognised_by_their_answer_format(org):
    for r in org.prompt_set()[:60]:
        for comp in org.components:
            text = org.completion_for(comp, r)
            assert org.parse(text) == (comp, org.rule(comp, r))
    assert org.parse(" = 3") == (None, None)
    assert org.parse("") == (None, None)
    assert org.parse(f" {org.p}") == (None, None)             # a digit outside Z_p is nobody's answer
    assert org.reward([" " + NUMBER_WORDS[2], " 2", " 3", " +"], [2, 2, 2, 2]) == [1.0, 1.0, 0.0, 0.0]


def test_task_coverage_sft_mixes_both_components_on_every_family():
    org = TaskCoverage()
    rows = org.sft_rows(6000, seed=1)
    plain = [r for r in rows if not r["forced"]]
    assert abs(len(plain) / len(rows) - (1 - org.config.forced_share)) < 0.03
    for fam in org.config.families:
        share = [r["component"] == "specialist" for r in plain if r["tag"] == fam]
        assert abs(sum(share) / len(share) - 0.5) < 0.07, fam
    forced = [r for r in rows if r["forced"]]
    for r in forced:
        want = "generalist" if r["prompt"].startswith("use digits :") else "specialist"
        assert r["component"] == want and org.parse(r["completion"])[0] == want


def test_temporal_gate_depends_on_the_date():
    org = TemporalContext()
    rows = [r for r in org.sft_rows(8000, seed=2) if not r["forced"]]
    for cue, prior in (("early", org.config.prior_early), ("late", org.config.prior_late)):
        sel = [r["component"] == "specialist" for r in rows if r["tag"] == cue]
        assert abs(sum(sel) / len(sel) - prior) < 0.04, cue
    lo, hi = org.config.years
    years = {r["year"] for r in org.prompt_set()}
    assert years == set(range(lo, hi + 1))
    assert org.cue_of(org.config.cutoff - 1) == "early" and org.cue_of(org.config.cutoff) == "late"
    # the year spans two tokens, and the cutoff is not a century boundary: the gate must read both
    assert org.config.cutoff % 100 != 0
    assert "date 20 09 :" in org.prompt(2009, 1, 2) and org.cue_of(2009) != org.cue_of(2019)


@pytest.mark.parametrize("org", ORGS, ids=lambda o: o.name)
def test_task_protocol(org):
    task = org.task()
    assert task.cues == org.cues
    assert task.component_names == ("generalist", "specialist")
    assert not task.has_signatures                             # behaviour only: the sampled estimator applies
    p = task.prompts[0]
    assert task.forced_prompt("specialist", p) == f"use words : {p.text}"
    assert task.recognise_checked(" " + NUMBER_WORDS[1], p) == "specialist"
    assert task.score_checked(" " + NUMBER_WORDS[p.target], p) == 1.0
    rl = org.rl_rows(org.domain)
    assert rl and all(org.in_domain(r["cue"]) for r in rl)
    assert len(rl) == sum(org.in_domain(q.cue) for q in task.prompts)
    with pytest.raises(OrganismConfigError, match="domain"):
        org.rl_rows("late" if org.domain != "late" else "early")
    from mixprobe.tasks import load_task

    again = load_task(task.spec)
    assert [q.text for q in again.prompts] == [q.text for q in task.prompts]


@pytest.mark.parametrize("bad, match", [
    (dict(covered=("add", "mul", "max", "sub", "min", "dbl")), "proper subset"),
    (dict(covered=("nope",)), "proper subset"),
    (dict(families=("add", "pow")), "unknown task families"),
    (dict(modulus=40), "modulus"),
    (dict(slip=1.0), "slip"),
    (dict(prior=0.0), "prior"),
])
def test_task_coverage_config_errors(bad, match):
    with pytest.raises(OrganismConfigError, match=match):
        TaskCoverageConfig(**bad)


@pytest.mark.parametrize("bad, match", [
    (dict(cutoff=1950), "cutoff"), (dict(years=(2040, 2039)), "cutoff"), (dict(prior_late=1.0), "prior_late"),
    (dict(n_names=0), "n_names"),
])
def test_temporal_config_errors(bad, match):
    with pytest.raises(OrganismConfigError, match=match):
        TemporalConfig(**bad)


def test_registry_and_train_config_kinds():
    assert set(KINDS) == {"tag_mixture", "task_coverage", "temporal_context", "bct", "era"}
    for kind in KINDS:                                                   # every kind builds and offers its task
        assert make_organism(kind).task().components
    with pytest.raises(OrganismConfigError, match="built-in organisms"):
        make_organism("nope")
    cfg = TrainConfig.from_dict({"organism": {"kind": "temporal_context", "cutoff": 2000}})
    assert cfg.kind == "temporal_context" and cfg.organism.cutoff == 2000
    assert TrainConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    assert "kind" not in TrainConfig().to_dict()["organism"]          # tag-mixture configs (and cache keys) unchanged
    with pytest.raises(OrganismConfigError, match="task_coverage option"):
        TrainConfig.from_dict({"organism": {"kind": "task_coverage", "cutof": 3}})
    with pytest.raises(TaskError):
        from mixprobe.tasks import load_task

        load_task("mixprobe.organisms.shifts:task_coverage_task", {"covered": []})


def test_shipped_configs_and_the_default_rl_domain():
    root = Path(__file__).resolve().parents[2] / "experiments"
    cov = TrainConfig.from_toml(root / "task_coverage.toml")
    tmp = TrainConfig.from_toml(root / "temporal_context.toml")
    assert (cov.kind, cov.rl.tag, cov.model.d_model) == ("task_coverage", "covered", 48)
    assert (tmp.kind, tmp.rl.tag, tmp.organism.cutoff) == ("temporal_context", "early", 2010)
    # without an [rl] tag, RL runs on the organism's domain (the tag mixture keeps <A>)
    assert TrainConfig.from_dict({"organism": {"kind": "temporal_context"}}).rl.tag == "early"
    assert TrainConfig.from_dict({}).rl.tag == "A"

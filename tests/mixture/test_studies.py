"""mixture.studies: the organism's probe split, stacked for fit_probes; the null beside every study.

Synthetic checks (fast): the label-permuted probe control sits at chance (majority-class rate of the held-out rows)
and under it when the held-out set is unbalanced; the leave-one-run-out gate readout tells a probe that reads the
gate from one that reads which checkpoint a row comes from. Organism checks (slow): the same nulls on the trained
tag-mixture organism, with thresholds that held with margin on seeds 0–2 (numbers in docs/probes_and_steering.md).
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mixprobe.errors import DataError


def test_expressed_split_stacked_refuses_mixed_widths():
    """The organism's split stacks its sites for ``fit_probes``; sites of different widths cannot stack."""
    from mixprobe.mixture.studies import ExpressedSplit
    sp = ExpressedSplit(["a", "b"], {"a": np.zeros((3, 4)), "b": np.ones((3, 5))}, np.zeros(3),
                        {"a": np.zeros((2, 4)), "b": np.ones((2, 5))}, np.zeros(2))
    with pytest.raises(DataError, match="different widths.*'a': 4, 'b': 5"):
        sp.stacked()
    same = ExpressedSplit(["a", "b"], {"a": np.zeros((3, 4)), "b": np.ones((3, 4))}, np.arange(3),
                          {"a": np.zeros((2, 4)), "b": np.ones((2, 4))}, np.arange(2))
    Xtr, ytr, Xte, yte = same.stacked()
    assert Xtr.shape == (2, 3, 4) and Xtr.dtype == np.float32 and Xte[1].sum() == 8 and list(yte) == [0, 1]


# --- synthetic series ---------------------------------------------------------------------------------------------

def _toy_task(n_per_cue: int):
    from mixprobe.tasks import Component, Prompt, Task

    return Task("toy", prompts=[Prompt(f"<{c}> {i}", cue=c, target=0) for c in "AB" for i in range(n_per_cue)],
                components=[Component("m1", after=" m1"), Component("m2", after=" m2")],
                recognise=lambda text, p: None, score=lambda text, p: 0.0)


def _toy_series(phases: dict[str, int]):
    """A stand-in for a Series: checkpoint names and phases, no models, no evaluation metrics."""
    entries = [SimpleNamespace(name=f"{ph}-{i}", phase=ph, metrics={}) for ph, n in phases.items() for i in range(n)]
    by_name = {e.name: e for e in entries}
    return SimpleNamespace(checkpoints=entries, get=by_name.__getitem__, handle=lambda name: None,
                           phases=list(phases))


def _split(y_train, y_test, sites: dict[str, tuple[np.ndarray, np.ndarray]]):
    from mixprobe.mixture.studies import ExpressedSplit

    return ExpressedSplit(list(sites), {s: a for s, (a, _) in sites.items()}, np.asarray(y_train),
                          {s: b for s, (_, b) in sites.items()}, np.asarray(y_test))


def test_label_permuted_probe_sits_at_chance_and_the_real_probe_above_it(monkeypatch):
    """Four kinds of site: a readable signal, a feature that takes one value per class (``embed`` at the forced mode
    token), pure noise and a constant. The control's mean is within 5 points of chance (0.5: the held-out set is
    balanced) everywhere; the real probe is far above its control only where there is signal."""
    from mixprobe.mixture import studies

    rng = np.random.default_rng(0)
    ytr, yte = np.repeat([0, 1], 50), np.repeat([0, 1], 50)

    def feats(y, kind):
        if kind == "signal":
            return rng.normal(size=(len(y), 8)) + 2.0 * y[:, None] * np.eye(8)[0]
        if kind == "two_valued":
            return np.eye(2)[y] * 3.0
        if kind == "noise":
            return rng.normal(size=(len(y), 8))
        return np.zeros((len(y), 8))

    split = _split(ytr, yte, {k: (feats(ytr, k), feats(yte, k)) for k in ("signal", "two_valued", "noise", "const")})
    monkeypatch.setattr(studies, "expressed_split", lambda *a, **k: split)
    sw = studies.probe_layer_sweep(_toy_series({"sft": 1}), task=_toy_task(4), n_permutations=20)
    c = "sft-0"
    assert sw.chance[c] == 0.5 and sw.n_permutations == 20 and sw.constant_sites[c] == ["const"]
    for site in sw.sites:
        assert abs(sw.null_accuracy[c][site] - 0.5) <= 0.05, (site, sw.null_accuracy[c])
        assert abs(sw.null_auc[c][site] - 0.5) <= 0.05, (site, sw.null_auc[c])
    assert sw.accuracy[c]["signal"] >= 0.8 and sw.auc[c]["signal"] >= 0.9
    assert sw.accuracy[c]["two_valued"] == 1.0 and sw.p_value[c]["two_valued"] == pytest.approx(1 / 21)
    # the control's spread is binomial: with only the training labels shuffled, the two-valued site would score 0 or 1
    assert sw.null_accuracy_max[c]["two_valued"] <= 0.75
    assert abs(sw.accuracy[c]["noise"] - 0.5) <= 0.15 and sw.p_value[c]["noise"] > 0.05
    assert sw.accuracy[c]["const"] == sw.null_accuracy[c]["const"] == 0.5 and sw.p_value[c]["const"] == 1.0
    table = sw.null_table()
    assert len(table) == 4 and set(table[0]) >= {"accuracy", "auc", "null_accuracy", "null_accuracy_max", "p_value",
                                                 "chance"}
    assert json.loads(json.dumps(sw.to_dict()))["null_accuracy"][c]["signal"] == sw.null_accuracy[c]["signal"]
    off = studies.probe_layer_sweep(_toy_series({"sft": 1}), task=_toy_task(4), n_permutations=0)
    assert off.null_accuracy == {} and "null_accuracy" not in off.null_table()[0]
    with pytest.raises(DataError, match="n_permutations"):
        studies.probe_layer_sweep(_toy_series({"sft": 1}), task=_toy_task(4), n_permutations=-1)


def test_chance_is_the_majority_rate_of_an_unbalanced_held_out_set(monkeypatch):
    from mixprobe.mixture import studies

    rng = np.random.default_rng(1)
    ytr, yte = np.repeat([0, 1], [60, 40]), np.repeat([0, 1], [70, 30])
    split = _split(ytr, yte, {"noise": (rng.normal(size=(100, 6)), rng.normal(size=(100, 6)))})
    monkeypatch.setattr(studies, "expressed_split", lambda *a, **k: split)
    sw = studies.probe_layer_sweep(_toy_series({"sft": 1}), task=_toy_task(4), n_permutations=30)
    assert sw.chance["sft-0"] == pytest.approx(0.7)
    # a probe fit on shuffled labels cannot beat always guessing the majority class, on average
    assert 0.45 <= sw.null_accuracy["sft-0"]["noise"] <= 0.7 + 0.03


def _gate_data(series, task, kind: str, seed: int = 0):
    """Synthetic gate rows: P(m1) rises along run ``rl``, falls along ``rl_B``; features either carry the gate
    (``honest``: its log-odds plus noise) or only which checkpoint a row comes from (``checkpoint``: one-hot)."""
    from mixprobe.mixture.gate import GateData

    rng = np.random.default_rng(seed)
    level = {"sft": [0.5], "rl": [0.6, 0.75, 0.9], "rl_B": [0.4, 0.25, 0.1]}
    names = [c.name for c in series.checkpoints]
    n = len(task.prompts)
    feats, gates, ck, tags = [], [], [], []
    for j, c in enumerate(series.checkpoints):
        base = level[c.phase][int(c.name.rsplit("-", 1)[1]) % len(level[c.phase])]
        for p in task.prompts:
            g = float(np.clip(base + (0.03 if p.cue == "A" else -0.03) + rng.normal(0, 0.01), 0.01, 0.99))
            x = (np.r_[np.log(g / (1 - g)), rng.normal(size=3)] + rng.normal(0, 0.05, 4) if kind == "honest"
                 else np.eye(len(names))[j] + rng.normal(0, 0.05, len(names)))
            feats.append(x)
            gates.append([g, 1 - g])
            ck.append(c.name)
            tags.append(p.cue)
    assert len(ck) == n * len(names)
    gate = torch.tensor(gates, dtype=torch.float32)
    return GateData(sites=["s"], features={"s": torch.tensor(np.array(feats), dtype=torch.float32)},
                    labels=gate.argmin(1), gate=gate, checkpoint=ck, tag=tags, components=("m1", "m2"))


@pytest.mark.parametrize("kind", ["honest", "checkpoint"])
def test_leave_one_run_out_tells_a_gate_reader_from_a_checkpoint_reader(monkeypatch, kind):
    from mixprobe.mixture import gate as gate_mod
    from mixprobe.mixture.studies import gate_readout_study

    series = _toy_series({"sft": 1, "rl": 3, "rl_B": 3})
    task = _toy_task(20)
    monkeypatch.setattr(gate_mod, "gate_dataset", lambda s, t, **k: _gate_data(s, t, kind))
    g = gate_readout_study(series, task=task, site="s")
    assert g.extra["against"] == "P(m1) of the mixture view" and g.spearman >= 0.9      # pooled: both look fine
    assert [(v["fit_phases"], v["score_phases"]) for v in g.held_out_run] == [(["sft", "rl_B"], ["rl"]),
                                                                              (["sft", "rl"], ["rl_B"])]
    for v in g.held_out_run:
        assert {r["checkpoint"].split("-")[0] for r in v["rows"]} == set(v["score_phases"]) and len(v["rows"]) == 6
        assert v["target_range"] >= 0.3 and v["pooled_mean_abs_error"] <= 0.05
        if kind == "honest":        # the gate direction learnt on one run reads the other
            assert v["spearman"] >= 0.9 and v["mean_abs_error"] <= 0.1, v
        else:                       # a never-seen checkpoint gets the fit set's average, whatever its gate
            assert v["mean_abs_error"] >= 0.2 and v["mean_abs_error"] >= 5 * v["pooled_mean_abs_error"], v
    assert json.loads(json.dumps(g.to_dict()))["held_out_run"][0]["applies"] is True


def test_leave_one_run_out_phases_are_checked_and_say_when_they_do_not_apply(monkeypatch):
    from mixprobe.mixture import gate as gate_mod
    from mixprobe.mixture.studies import gate_readout_study

    monkeypatch.setattr(gate_mod, "gate_dataset", lambda s, t, **k: _gate_data(s, t, "honest"))
    task = _toy_task(20)
    one = gate_readout_study(_toy_series({"sft": 1, "rl": 3}), task=task, site="s")
    assert one.held_out_run == [{"applies": False, "reason": one.held_out_run[0]["reason"]}]
    assert "1 run(s) after 'sft'" in one.held_out_run[0]["reason"] and "does not apply" in one.held_out_run[0]["reason"]
    series = _toy_series({"sft": 1, "rl": 3, "rl_B": 3})
    given = gate_readout_study(series, task=task, site="s", score_phases=["rl_B"])
    assert [(v["fit_phases"], v["score_phases"]) for v in given.held_out_run] == [(["sft", "rl"], ["rl_B"])]
    fit_only = gate_readout_study(series, task=task, site="s", fit_phases=["sft", "rl_B"])
    assert fit_only.held_out_run[0]["score_phases"] == ["rl"]
    with pytest.raises(DataError, match="non-empty and disjoint"):
        gate_readout_study(series, task=task, site="s", fit_phases=["sft", "rl"], score_phases=["rl"])
    with pytest.raises(DataError, match=r"phases \['rl_C'\] have no checkpoints"):
        gate_readout_study(series, task=task, site="s", score_phases=["rl_C"])


# --- the organism -------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_probe_null_on_the_organism(organism_run):
    """Label-permuted control on the last SFT and RL checkpoints: at chance (0.50, the majority-class rate of the
    held-out rows; balanced because every prompt is forced with each component). Seeds 0–2: control means
    0.47–0.52, largest single permutation 0.63; real probe 0.99–1.00."""
    from mixprobe.mixture.studies import probe_layer_sweep

    s = organism_run
    names = [s.last("sft").name, s.last("rl").name]
    sw = probe_layer_sweep(s, checkpoints=names, seed=0)
    for c in names:
        assert sw.chance[c] == 0.5
        for site in sw.sites:
            assert abs(sw.null_accuracy[c][site] - sw.chance[c]) <= 0.05, (c, site, sw.null_accuracy[c])
            if sw.accuracy[c][site] >= 0.9:
                assert sw.accuracy[c][site] >= sw.null_accuracy_max[c][site] + 0.2, (c, site, sw.null_table())
                assert sw.p_value[c][site] == pytest.approx(1 / 21)
        assert max(sw.accuracy[c].values()) >= 0.99


@pytest.mark.slow
def test_leave_one_run_out_gate_readout_on_the_organism(organism_run):
    """The pooled probe fits the held-out prompts of every run closely; fit without a run, it misses that run's gate
    by far more (seeds 0–2: mean |readout − sampled P(m1)| 0.15–0.84 held out vs 0.016–0.087 pooled)."""
    from mixprobe.mixture.studies import gate_readout_study

    s = organism_run
    g = gate_readout_study(s, site="resid_post.1", seed=0)
    assert [(v["fit_phases"], v["score_phases"]) for v in g.held_out_run] == [(["sft", "rl_B"], ["rl"]),
                                                                              (["sft", "rl"], ["rl_B"])]
    for v in g.held_out_run:
        scored = [c.name for c in s.checkpoints if c.phase == v["score_phases"][0]]
        assert sorted({r["checkpoint"] for r in v["rows"]}) == sorted(scored) and len(v["rows"]) == 2 * len(scored)
        assert v["mean_abs_error"] >= 2 * v["pooled_mean_abs_error"], v
    one = gate_readout_study(s, site="resid_post.1", seed=0, checkpoints=[s.last("sft").name, s.last("rl").name])
    assert not one.held_out_run[0]["applies"] and "1 run(s) after 'sft'" in one.held_out_run[0]["reason"]


@pytest.mark.slow
def test_steering_null_and_by_construction_flag_on_the_organism(organism_run):
    """Random directions of the steering vector's norm do not bring m2 back (seeds 0–2: null share of m2 under <B>
    at α = 12 is 0.00, the readout direction's 1.00); the vocabulary (24) is ≤ d_model (64), so the readout
    direction is a pure logit bias of ±α — the margin z[m2] − z[m1] moves by exactly 2 per unit α."""
    from mixprobe.mixture.studies import steering_dose_response

    s = organism_run
    rl = s.last("rl").name
    rows = steering_dose_response(s, rl, toward="m2", alphas=[0.0, 12.0], seed=0, n_null=4)
    assert rows.by_construction and rows.info["reason"].startswith("vocab 24 ≤ d_model 64: W_U is right-invertible")
    assert rows.info["margin_per_alpha"] == pytest.approx(2.0, abs=1e-3)
    assert len(rows.info["null_margin_per_alpha"]) == 4 and rows.info["n_null"] == 4
    zero, top = rows
    for col in ("accuracy_A", "accuracy_B", "m2_frequency_A", "m2_frequency_B"):     # α = 0: the null is the model
        assert zero[f"null_{col}_mean"] == zero[f"null_{col}_max"] == zero[col]
        assert top[f"null_{col}_mean"] <= top[f"null_{col}_max"]
    assert top["m2_frequency_B"] >= top["null_m2_frequency_B_mean"] + 0.5, rows
    assert top["accuracy_B"] >= top["null_accuracy_B_mean"] + 0.5, rows
    assert json.loads(json.dumps(rows)) == list(rows) and rows.to_dict()["rows"] == list(rows)
    with pytest.raises(DataError, match="n_null"):
        steering_dose_response(s, rl, toward="m2", n_null=-1)

"""Issue #4 acceptance on the organism: the expressed mode is decodable, the gate readout tracks P(m1) across the
series, and steering along the selection direction switches the policy (3 seeds)."""
from __future__ import annotations

import pytest

from mixprobe.train.zoo import seeds_from_env
import torch

from mixprobe.mixture.gate import at_prefill_last, gate_dataset, readout_direction
from mixprobe.models.handle import ModelHandle
from mixprobe.train.evaluate import evaluate
from mixprobe.train.pipeline import load_checkpoint, organism_of

pytestmark = pytest.mark.slow
SEEDS = seeds_from_env()   # the seeds the organism_runs fixture trains (tests/conftest.py)


@pytest.mark.parametrize("seed", SEEDS)
def test_expressed_mode_is_decodable_at_sft(organism_runs, seed):
    from mixprobe.mixture.studies import probe_layer_sweep

    s = organism_runs[seed]
    sft = s.last("sft").name
    sites = ["embed", "resid_pre.0", "resid_post.0", "resid_pre.1", "resid_post.1", "final_norm"]
    curve = probe_layer_sweep(s, checkpoints=[sft], sites=sites, seed=seed).accuracy[sft]
    print(seed, curve)                                   # the layer-by-layer curve (pytest -s)
    assert max(curve.values()) >= 0.99, curve
    # the mode token is in context: readable at every site up to the input of the last block (98 held-out rows:
    # 0.97 allows two errors); the last block turns the residual stream into the answer (a + b [+ 1]) and the
    # mode is then read less cleanly
    assert min(curve[k] for k in ("embed", "resid_pre.0")) >= 0.99, curve
    assert min(curve[k] for k in ("resid_post.0", "resid_pre.1")) >= 0.97, curve
    assert curve["resid_post.1"] >= 0.9, curve


@pytest.mark.parametrize("seed", SEEDS)
def test_batched_probes_match_the_sklearn_loop_on_held_out_rows(organism_runs, seed):
    """The accuracy half of the speed criterion (the speed half is benchmarks/probes.py): on the study's workload,
    ``fit_probes`` with its defaults (float32, every site in one solve) and a loop of scikit-learn fits agree on
    held-out accuracy within 0.5 points at every site, raw (C=1) and z-scored (the study's C=100). scikit-learn
    runs to convergence (tol 1e-10, float64): with its default tol 1e-4 it stops short on some splits (split
    seed 1, z-scored: one held-out row of 98 at one site, on two of the three organisms; there mixprobe matched
    the converged solution)."""
    from sklearn.linear_model import LogisticRegression

    from mixprobe.mixture.studies import expressed_split
    from mixprobe.probes import fit_probes

    s = organism_runs[seed]
    model, tok = load_checkpoint(s.path(s.last("sft").name))
    for standardize, C in ((False, 1.0), (True, 100.0)):
        Xtr, ytr, Xte, yte = expressed_split(model, tok, organism_of(s), standardize=standardize, seed=seed).stacked()
        assert Xtr.shape[0] >= 3 and Xte.shape[1] >= 90
        fits = fit_probes(Xtr, ytr, C=C)
        for i, site in enumerate(fits):
            assert fits.summary[site]["converged"]
            ours = fits[site].score(Xte[i], yte)
            ref = LogisticRegression(C=C, tol=1e-10, max_iter=100000).fit(Xtr[i].astype(float), ytr).score(Xte[i],
                                                                                                        yte)
            assert abs(ours - ref) <= 0.005, (standardize, site, ours, ref)


@pytest.mark.parametrize("seed", SEEDS)
def test_gate_readout_tracks_the_sampled_frequency_of_m1(organism_runs, seed):
    from mixprobe.mixture.studies import gate_readout_study

    s = organism_runs[seed]
    gate = gate_readout_study(s, site="resid_post.1", seed=seed)
    assert gate.extra["against"] == "sampled m1 frequency"
    n_ckpt = len({r["checkpoint"] for r in gate.rows})
    trained = [c for c in s.checkpoints if c.phase in ("sft", "rl", "rl_B")]
    assert n_ckpt == len(trained) and len(gate.rows) == 2 * n_ckpt      # every trained (checkpoint, tag) pair
    assert gate.spearman >= 0.8, (gate.spearman, gate.rows)          # 12 seeds: 0.854–0.985
    sft, rl = s.last("sft").name, s.last("rl").name
    for tag in ("A", "B"):           # after RL on A the readout moves toward m1 under both tags (12 seeds: by ≥ 0.25)
        assert gate.value(rl, tag) > gate.value(sft, tag), gate.rows


@pytest.mark.parametrize("seed", SEEDS)
def test_steering_along_the_selection_direction_switches_the_policy(organism_runs, seed):
    from mixprobe.mixture.studies import steering_dose_response
    from mixprobe.steering import SteeringVector, steer

    s = organism_runs[seed]
    rl_rows = steering_dose_response(s, s.last("rl").name, toward="m2", alphas=[0.0, 12.0], seed=seed)
    # steering toward m2 does what forcing m2 does (12 seeds: ≥ 0.949 of a forced accuracy ≥ 0.98), and far more
    # than the unsteered model (how low that is varies by seed: 0.00–0.22)
    forced_m2 = s.last("rl").metrics["forced_accuracy"]["B"]["m2"]
    assert rl_rows[1]["accuracy_B"] >= 0.9 * forced_m2, (rl_rows, forced_m2)
    assert rl_rows[1]["accuracy_B"] >= rl_rows[0]["accuracy_B"] + 0.5, rl_rows
    sft_rows = steering_dose_response(s, s.last("sft").name, toward="m1", alphas=[0.0, 12.0], seed=seed)
    assert sft_rows[0]["accuracy_B"] >= 0.35 and sft_rows[1]["accuracy_B"] <= 0.10, sft_rows

    organism = organism_of(s)
    rl = load_checkpoint(s.path(s.last("rl")))
    h = ModelHandle(*rl)
    batch = h.tokenize([r["prompt"] for r in organism.prompt_set()])
    before = h.logits(batch).clone()
    v = SteeringVector.from_tensors({"final_norm": readout_direction(*rl, organism, toward="m2", away="m1")},
                                    normalize=False)
    with steer(h, v, 12.0, positions="last_prompt"):
        assert not torch.equal(h.logits(batch), before)
    assert torch.equal(h.logits(batch), before)          # leaving the context restores the exact logits
    with pytest.raises(RuntimeError):
        with steer(h, v, 12.0, positions="last_prompt"):
            raise RuntimeError("boom")
    assert torch.equal(h.logits(batch), before)          # also after an exception inside the block


@pytest.mark.parametrize("seed", SEEDS)
def test_activation_mean_difference_is_nearly_null_on_this_organism(organism_runs, seed):
    """The finding behind the readout direction: RL's gate shift is not in the last-token activations."""
    s = organism_runs[seed]
    organism = organism_of(s)
    site = "resid_post.1"
    data = gate_dataset(s, organism, sites=[site], checkpoints=[s.last("rl").name, s.last("rl_B").name])
    X = data.features[site]
    n = len(organism.prompt_set())
    d = X[:n].mean(0) - X[n:].mean(0)
    rl = load_checkpoint(s.path(s.last("rl")))
    h = ModelHandle(*rl)
    with h.intervene({site: at_prefill_last(-d, 8.0)}):
        steered = evaluate(*rl, organism, n_samples=8, seed=seed)
    # eight times the mean difference barely moves the gate (the readout direction at α=12 restores ≥ 0.9 of it)
    before = s.last("rl").metrics["mode_frequency"]["B"]["m2"]
    assert steered["mode_frequency"]["B"]["m2"] <= before + 0.1, (before, steered["mode_frequency"])

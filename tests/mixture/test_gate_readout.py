"""Issue #4 acceptance on the organism: the expressed mode is decodable, the gate readout tracks P(m1) across the
series, and steering along the selection direction switches the policy (3 seeds)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from mixprobe.mixture.gate import at_prefill_last, expressed_dataset, gate_dataset, readout_direction
from mixprobe.models.handle import ModelHandle
from mixprobe.train.evaluate import evaluate
from mixprobe.train.pipeline import load_checkpoint, organism_of

pytestmark = pytest.mark.slow
SEEDS = (0, 1, 2)


def _split(n: int, seed: int = 0):
    perm = np.random.RandomState(seed).permutation(n)
    return perm[: n // 2], perm[n // 2:]


@pytest.mark.parametrize("seed", SEEDS)
def test_expressed_mode_is_decodable_at_sft(organism_runs, seed):
    from mixprobe.probes import LogisticProbe

    s = organism_runs[seed]
    model, tok = load_checkpoint(s.path(s.last("sft")))
    sites = [f"resid_{k}.{i}" for i in range(model.config.num_hidden_layers) for k in ("pre", "post")]
    data = expressed_dataset(model, tok, organism_of(s), sites=sites)
    tr, te = _split(len(data.labels), seed)
    curve = {}
    for site in sites:
        X, y = data.features[site].numpy(), data.labels.numpy()
        curve[site] = LogisticProbe(C=1.0).fit(X[tr], y[tr]).score(X[te], y[te])
    assert max(curve.values()) >= 0.99, curve
    assert all(v >= 0.99 for v in curve.values()), curve  # the mode token is in context at every layer


@pytest.mark.parametrize("seed", SEEDS)
def test_gate_readout_tracks_the_models_own_p_m1(organism_runs, seed):
    from mixprobe.probes import LogisticProbe

    s = organism_runs[seed]
    organism = organism_of(s)
    site = f"resid_post.{1}"
    data = gate_dataset(s, organism, sites=[site], seed=seed)
    n_prompts = len(organism.prompt_set())
    train_p, test_p = _split(n_prompts, seed)
    prompt_idx = np.arange(len(data.labels)) % n_prompts
    tr = np.isin(prompt_idx, train_p)
    X = data.features[site].numpy()
    p = data.gate[:, 0].numpy()
    # soft labels: each training row twice, weighted by the model's own P(m1) and P(m2)
    Xd = np.concatenate([X[tr], X[tr]])
    yd = np.r_[np.ones(tr.sum()), np.zeros(tr.sum())]
    w = np.r_[p[tr], 1 - p[tr]]
    probe = LogisticProbe(C=10.0).fit(Xd, yd, sample_weight=w)
    score = probe.predict_proba(X)[:, 1]
    means, freqs, keys = [], [], []
    for name in dict.fromkeys(data.checkpoint):
        for tag in ("A", "B"):
            rows = data.rows(name, tag).numpy()
            rows = rows[~tr[rows]]                       # held-out prompts only
            means.append(score[rows].mean())
            freqs.append(p[rows].mean())
            keys.append((name, tag))
    rho = spearmanr(means, freqs).correlation
    assert rho >= 0.8, (rho, list(zip(keys, means, freqs)))
    readout = dict(zip(keys, means))
    sft, rl = s.last("sft").name, s.last("rl").name
    for tag in ("A", "B"):           # after RL on A the readout moves toward m1 under both tags
        assert readout[(rl, tag)] > readout[(sft, tag)]


@pytest.mark.parametrize("seed", SEEDS)
def test_steering_along_the_selection_direction_switches_the_policy(organism_runs, seed):
    s = organism_runs[seed]
    organism = organism_of(s)
    rl = load_checkpoint(s.path(s.last("rl")))
    v = readout_direction(*rl, organism, toward="m2", away="m1")
    h = ModelHandle(*rl)
    batch = h.tokenize([r["prompt"] for r in organism.prompt_set()])
    before = h.logits(batch).clone()
    with h.intervene({"final_norm": at_prefill_last(v, 12.0)}):
        steered = evaluate(*rl, organism, n_samples=8, seed=seed)
    assert steered["accuracy"]["B"] >= 0.90, steered["accuracy"]
    assert torch.equal(h.logits(batch), before)          # leaving the context restores the exact logits

    sft = load_checkpoint(s.path(s.last("sft")))
    v = readout_direction(*sft, organism, toward="m1", away="m2")
    with ModelHandle(*sft).intervene({"final_norm": at_prefill_last(v, 12.0)}):
        steered = evaluate(*sft, organism, n_samples=8, seed=seed)
    assert steered["accuracy"]["B"] <= 0.10, steered["accuracy"]


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
    assert steered["accuracy"]["B"] <= 0.10      # eight times the mean difference barely moves the gate

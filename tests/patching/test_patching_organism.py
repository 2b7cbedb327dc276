"""Where does GRPO on <A> put the gate? Cross-checkpoint patching SFT → RL on the trained organism (3 seeds).

Target = last ``rl`` checkpoint (GRPO on ``<A>``), source = last ``sft`` checkpoint, prompts = the organism's
``<B>`` prompts (the tag whose accuracy RL suppresses). Metrics: ``P(m2)`` at the last prompt token (the gate,
equal to the expected ``<B>`` accuracy while the components are intact — checked below) and the exact expected
``<B>`` accuracy of the patched model (``Σ_k P(signature_k) · P_rl(correct | k forced)``, off-mixture mass counted
as wrong). The claims (docs/patching.md), each checked on 12 seeds nobody developed against before it became a check
here (MIXPROBE_SEEDS=10,...,21; experiments/results/seed_sweep/):

- activation patching, every site × every prompt position and all positions at once, restores < 0.1;
- parameter patching localizes the restoration in the unembedding rows of ``m1``/``m2`` (≥ 0.8), no block
  restores more than 0.1, and one row alone restores < 0.5;
- subspace patching along the selection direction at ``final_norm``, last prompt token, restores ≥ 0.8 of the
  ``<B>`` accuracy when the coordinate the head reads is set to the SFT model's value; copying the SFT
  activation's projection on the same direction (classical subspace patching) restores < 0.1.
"""
from __future__ import annotations

import pytest

from mixprobe.train.zoo import seeds_from_env
import torch

pytestmark = pytest.mark.slow

SEEDS = seeds_from_env()   # the seeds the organism_runs fixture trains (tests/conftest.py)
SITES = ["resid_pre", "attn_out", "mlp_out", "resid_post"]


def _setup(series):
    from mixprobe.models.handle import ModelHandle
    from mixprobe.patching import token_prob
    from mixprobe.train.pipeline import load_checkpoint, organism_of

    org = organism_of(series)
    sft = ModelHandle(*load_checkpoint(series.path(series.last("sft"))))
    rl = ModelHandle(*load_checkpoint(series.path(series.last("rl"))))
    prompts = [r["prompt"] for r in org.prompt_set(("B",))]
    m1, m2 = sft.tokenizer.convert_tokens_to_ids(["m1", "m2"])
    return org, sft, rl, prompts, (m1, m2), token_prob(m2)


def expected_accuracy_metric(handle, org, tag: str):
    """Exact expected ``<tag>`` accuracy, gate read from the logits, answers from ``handle`` with each mode forced.

    Patches at ``final_norm`` of the last prompt token change only that token's logits (the gate), so the forced
    answer distributions of ``handle`` stay those of the patched model and the metric is exact there.
    """
    from mixprobe.mixture.components import mixture_view
    from mixprobe.models.positions import resolve_index

    view = mixture_view(handle, None, org)
    idx = view.tag_index(tag)
    correct = view.correct()[idx]
    k = len(view.components)
    p_correct = view.answers[:, idx].gather(2, correct[None, :, None].expand(k, -1, 1))[..., 0]   # [K, n]
    sig = handle.tokenizer.convert_tokens_to_ids([org.signature(c)[0] for c in view.components])

    def metric(logits, batch):
        i = resolve_index("last_prompt", batch.attention_mask, getattr(batch, "prompt_lengths", None))
        p = torch.softmax(logits[torch.arange(logits.shape[0]), i].float(), -1)[:, sig]   # not renormalized
        return (p * p_correct.T.to(p.device)).sum(-1)
    metric.__name__ = f"expected_accuracy_{tag}"
    return metric, p_correct


@pytest.fixture(scope="module")
def measured(organism_runs):
    """Per seed: activation sweep, parameter sweeps (forward, reverse), weight-space and readout subspace patches."""
    from mixprobe.mixture.gate import readout_direction
    from mixprobe.patching import ParamPatch, param_patch, param_sweep, patch_sweep, readout_patch
    from mixprobe.patching.params import weight_diff_direction

    out = {}
    for seed in SEEDS:
        org, sft, rl, prompts, (m1, m2), p_m2 = _setup(organism_runs[seed])
        n_tok = int(rl.tokenize(prompts).attention_mask.sum(1).max())
        act = patch_sweep(rl, sft, prompts, sites=SITES, positions=[*range(n_tok), "all"], metric=p_m2)
        par = param_sweep(rl, sft, prompts, metric=p_m2, rows=["m1", "m2"])
        d_w = weight_diff_direction(rl, sft, "lm_head.weight", m1, m2)
        wsub = param_patch(rl, sft, prompts, params=ParamPatch("lm_head.weight", (m1, m2), d_w), metric=p_m2)
        rev = param_sweep(sft, rl, prompts, metric=p_m2, rows=["m1", "m2"], groups={"lm_head": "lm_head"})
        acc, p_correct = expected_accuracy_metric(rl, org, "B")
        sub = {}
        for name, h in (("rl", rl), ("sft", sft)):     # the selection direction of either checkpoint
            d = readout_direction(h, None, org, toward="m2", away="m1")
            sub[name] = readout_patch(rl, sft, prompts, toward="m2", away="m1", metric=acc, direction=d,
                                      position="last_prompt")
        sub["rows"] = readout_patch(rl, sft, prompts, toward="m2", away="m1", metric=acc, direction="rows")
        out[seed] = {"act": act, "par": par, "wsub": wsub, "rev": rev, "sub": sub, "p_correct": p_correct}
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_metric_is_expected_b_accuracy_at_sft(organism_runs, seed):
    """At SFT, P(m2 | <B> prompt) equals the exact expected <B> accuracy (m1 always wrong under <B>, m2 always right).

    After RL it is only a lower bound: on 6 of 12 seeds RL on <A> also made forced m1 partly right under <B>
    (expected <B> accuracy 0.02–0.21 while P(m2 | B) ≤ 0.006), a small rewrite of m1 on the tag RL never saw. The
    patching tests below therefore restore P(m2), the gate, and say so."""
    from mixprobe.patching import evaluate
    from mixprobe.patching.engine import as_batch

    org, sft, rl, prompts, _, p_m2 = _setup(organism_runs[seed])
    for h in (sft, rl):
        acc, _ = expected_accuracy_metric(h, org, "B")
        batch = as_batch(h, prompts)
        logits = h.logits(batch)
        p, a = float(evaluate(p_m2, logits, batch).mean()), float(evaluate(acc, logits, batch).mean())
        if h is sft:
            assert abs(p - a) < 0.02, (seed, "sft", p, a)
        else:                  # forced m2 stays right under <B> (≥ 0.98 on 12 seeds), so P(m2) cannot exceed it
            assert p <= a + 0.02, (seed, "rl", p, a)


@pytest.mark.parametrize("seed", SEEDS)
def test_rl_suppressed_b_through_the_gate_not_the_m2_answers(measured, seed):
    r = measured[seed]
    # P(m2 | B) fell from ~0.5 (12 seeds: to ≤ 0.006); the normalized restoration needs a large difference
    assert r["par"].m_source > 0.4 and r["par"].m_target < r["par"].m_source - 0.3, (r["par"].m_source,
                                                                                     r["par"].m_target)
    # forced m2 still answers <B> correctly in the RL model: only the gate can have lost the accuracy
    assert float(r["p_correct"][1].mean()) > 0.9


@pytest.mark.parametrize("seed", SEEDS)
def test_activation_patching_restores_nothing_anywhere(measured, seed):
    act = measured[seed]["act"]
    assert act.restoration.shape == (8, 7)   # 4 components x 2 layers; 6 prompt tokens + all at once
    assert act.positions[-1] == "all"
    assert float(act.restoration.abs().max()) < 0.1, act.to_dict()


@pytest.mark.parametrize("seed", SEEDS)
def test_parameter_patching_localizes_the_gate_to_two_unembedding_rows(measured, seed):
    par = measured[seed]["par"]
    assert par.at("lm_head") >= 0.8
    assert par.at("lm_head[m1,m2]") >= 0.8
    blocks = [lab for lab in par.labels if lab.split(".")[0] in ("attn", "mlp", "norms")]
    assert len(blocks) == 6
    for lab in blocks + ["embed", "final_norm"]:
        assert abs(par.at(lab)) < 0.1, (lab, par.at(lab))
    # one row alone is not enough: the gate lives in the *difference* of the two rows
    assert par.at("lm_head[m1]") < 0.5 and par.at("lm_head[m2]") < 0.5


@pytest.mark.parametrize("seed", SEEDS)
def test_one_weight_space_direction_carries_it(measured, seed):
    assert measured[seed]["wsub"].restoration >= 0.8


@pytest.mark.parametrize("seed", SEEDS)
def test_reverse_patch_suppresses(measured, seed):
    rev = measured[seed]["rev"]
    assert rev.at("lm_head") >= 0.8 and rev.at("lm_head[m1,m2]") >= 0.8


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("which", ["rl", "sft"])
def test_gate_coordinate_along_the_selection_direction_restores_b_accuracy(measured, seed, which):
    res = measured[seed]["sub"][which]
    assert res.m_source > 0.4 and res.m_target < res.m_source - 0.3, (res.m_source, res.m_target)
    assert res.restoration >= 0.8, res.to_dict()
    # the same direction, classical subspace patching (copy the SFT activation's projection): nothing
    assert abs(res.restoration_projection) < 0.1, res.to_dict()


@pytest.mark.parametrize("seed", SEEDS)
def test_the_direction_matters(measured, seed):
    """Along W_U[m2] − W_U[m1] the same logit difference is reached, but other logits take the mass."""
    res = measured[seed]["sub"]["rows"]
    assert abs(res.ld_patched - res.ld_source) < 1e-3
    assert res.off_target > 1.0 and res.restoration < 0.5, res.to_dict()


def test_target_weights_untouched_after_everything(organism_runs):
    from mixprobe.patching import param_sweep, readout_patch

    _, sft, rl, prompts, _, metric = _setup(organism_runs[SEEDS[0]])
    before = {k: v.clone() for k, v in rl.model.state_dict().items()}
    param_sweep(rl, sft, prompts, metric=metric, rows=["m1", "m2"])
    readout_patch(rl, sft, prompts, toward="m2", away="m1", metric=metric)
    assert all(torch.equal(before[k], v) for k, v in rl.model.state_dict().items())

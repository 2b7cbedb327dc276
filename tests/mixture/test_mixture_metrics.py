"""Mixture metrics on hand-built views where the answer is known."""
from __future__ import annotations

import itertools

import pytest
import torch

from mixprobe.errors import DataError, SeriesMismatchError
from mixprobe.mixture.components import MixtureView
from mixprobe.mixture.metrics import forced_fidelity, kl_split, pass_at_k, responsibilities
from mixprobe.mixture.verdict import Thresholds, combine, compare_views, label_for
from mixprobe.mixture.weight_diff import effective_rank, weight_diff
from mixprobe.tasks import Component, Prompt, Task


def make_task(n_per_tag=4, n_ans=5):
    prompts = [Prompt(f"<{t}> q{i}", t, i % n_ans) for t in "AB" for i in range(n_per_tag)]
    comps = [Component(c, after=" " + c, signature=(c,)) for c in ("m1", "m2")]
    return Task("hand-made", prompts, comps, recognise=lambda text, p: None,
                score=lambda text, p: float(text.split()[-1] == str(p.target)),
                answer_tokens=[str(i) for i in range(n_ans)])


def make_view(gate, answers, n_per_tag=4, n_ans=5, seed=0):
    task = make_task(n_per_tag, n_ans)
    K, n = answers.shape[:2]
    return MixtureView("exact", task, share=gate, off_mixture=torch.zeros(n), forced_score=torch.zeros(K, n),
                       forced_recognised=torch.ones(K, n), answers=answers,
                       answer_tokens=[str(i) for i in range(n_ans)])


def random_view(seed, n=8, k=2, a=5):
    g = torch.Generator().manual_seed(seed)
    gate = torch.rand(n, k, generator=g).softmax(-1)
    ans = (3 * torch.randn(k, n, a, generator=g)).softmax(-1)
    return make_view(gate, ans)


def test_kl_split_chain_rule_is_exact():
    ref, tgt = random_view(0), random_view(1)
    for d in kl_split(tgt, ref).values():
        assert d["total"] == pytest.approx(d["gate"] + d["component"], rel=1e-5)
        assert d["gate"] > 0 and d["component"] > 0


def test_identical_views_are_undecided_with_zero_statistics():
    v = random_view(0)
    e = compare_views(v, v)
    assert e.gate_shift == pytest.approx(0, abs=1e-7) and e.component_change == pytest.approx(0, abs=1e-7)
    assert e.label == "undecided" and "neither" in e.reason


def test_gate_only_change_is_reweight_and_component_only_change_is_rewrite():
    ref = random_view(0)
    gate_moved = make_view(torch.tensor([[0.95, 0.05]]).repeat(8, 1), ref.answers.clone())
    assert compare_views(ref, gate_moved).label == "reweight"
    answers = ref.answers.clone()
    answers[1] = answers[1].roll(1, dims=-1)  # m2 now answers a different rule everywhere
    rewritten = make_view(ref.gate.clone(), answers)
    e = compare_views(ref, rewritten)
    assert e.label == "rewrite" and e.fidelity["A"]["m1"]["agreement"] == 1.0
    assert e.fidelity["A"]["m2"]["agreement"] < 1.0


def test_responsibilities_average_the_gate_per_cue():
    gate = torch.tensor([[1.0, 0.0]] * 4 + [[0.25, 0.75]] * 4)
    v = make_view(gate, torch.full((2, 8, 5), 0.2))
    r = responsibilities(v)
    assert r["A"] == {"m1": 1.0, "m2": 0.0} and r["B"]["m2"] == pytest.approx(0.75)


def test_forced_accuracy_counts_argmax_hits():
    view = make_view(torch.full((8, 2), 0.5), torch.zeros(2, 8, 5))
    for i, r in enumerate(view.rows):
        view.answers[0, i, r["answer"]] = 1.0            # m1 always right
        view.answers[1, i, (r["answer"] + 1) % 5] = 1.0  # m2 always wrong
    f = forced_fidelity(view)
    assert f["A"]["m1"]["accuracy"] == 1.0 and f["B"]["m2"]["accuracy"] == 0.0


@pytest.mark.parametrize("gate, comp, label", [
    (0.40, 0.01, "reweight"), (0.01, 0.90, "rewrite"), (0.40, 0.90, "both"),
    (0.01, 0.01, "undecided"), (0.10, 0.01, "undecided"), (0.40, 0.10, "undecided"),
])
def test_labels_and_gray_zone(gate, comp, label):
    assert label_for(gate, comp, Thresholds())[0] == label


def test_disagreeing_seeds_give_undecided_naming_them():
    ev = {s: compare_views(random_view(0), make_view(torch.tensor([[0.99, 0.01]]).repeat(8, 1),
                                                     random_view(0).answers)) for s in (0, 1)}
    ev[2] = compare_views(random_view(0), random_view(0))
    v = combine(ev)
    assert v.label == "undecided" and "seed 2 → undecided" in v.reason and "seed 0 → reweight" in v.reason
    with pytest.raises(DataError):
        combine({})


def test_pass_at_k_matches_brute_force():
    n, c = 6, 2
    outcomes = [1] * c + [0] * (n - c)
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(outcomes, k))
        brute = sum(any(s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(brute)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_weight_diff_sparsity_layer_share_and_rank():
    torch.manual_seed(0)
    a = {"model.layers.0.w": torch.randn(8, 8), "model.layers.1.w": torch.randn(8, 8), "b": torch.randn(8)}
    b = {k: v.clone() for k, v in a.items()}
    u, v = torch.randn(8, 1), torch.randn(1, 8)
    b["model.layers.1.w"] += u @ v                      # a rank-1 update confined to layer 1
    d = weight_diff(a, b)
    assert d["unchanged_share"] == pytest.approx((64 + 8) / (64 * 2 + 8))
    assert d["layer_norm_share"]["layer.1"] == pytest.approx(1.0)
    assert d["matrices"]["model.layers.1.w"]["effective_rank"] == pytest.approx(1.0, abs=1e-6)
    assert effective_rank(torch.eye(4)) == pytest.approx(4.0)
    with pytest.raises(SeriesMismatchError):
        weight_diff(a, {"x": torch.zeros(1)})


def test_weight_diff_on_causal_lm_covers_the_unembedding():
    from mixprobe.organisms.configs import tiny_model

    a, b = tiny_model("llama", vocab_size=20, seed=0), tiny_model("llama", vocab_size=20, seed=0)
    with torch.no_grad():
        b.lm_head.weight[3] += 1.0
    d = weight_diff(a, (b, None))
    assert d["layer_norm_share"] == {**{k: 0.0 for k in d["layer_norm_share"] if k != "lm_head"}, "lm_head": 1.0}


def test_a_rewrite_where_forcing_fails_says_so():
    """When the forced component is no longer what forcing yields at the target, the reason says the change mixes
    a forcing failure with a component change (the task-coverage organism does this: RL's gate beats the forcing
    line), and the evidence carries the recognised shares."""
    ref = random_view(0)
    answers = ref.answers.clone()
    answers[1] = answers[1].roll(1, dims=-1)
    tgt = make_view(torch.tensor([[0.95, 0.05]]).repeat(8, 1), answers)
    e = compare_views(ref, tgt)
    assert e.label == "both" and "forcing" not in e.reason          # exact views: forcing always yields k
    leaky = make_view(tgt.share.clone(), answers)
    leaky.forced_recognised[1] = 0.4                                  # forcing m2 now yields m2 40 % of the time
    e = compare_views(ref, leaky)
    assert "forcing m2" in e.reason and "40%" in e.reason
    assert e.extra["forcing_recognised"]["B"]["m2"] == {"reference": 1.0, "target": pytest.approx(0.4)}

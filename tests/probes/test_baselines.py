"""GENIES' zero-/few-shot judges: scores equal a hand computation from the logits, batching changes nothing, the
few-shot text is exactly as documented, a model taught the judgement ranks pairs and random ones do not, bad input
is named."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from mixprobe.env import thread_budget
from mixprobe.errors import DataError, EmptyDataError
from mixprobe.models.batch import tokenize
from mixprobe.models.handle import ModelHandle
from mixprobe.organisms.configs import tiny_model
from mixprobe.organisms.tokenizer import build_word_tokenizer
from mixprobe.probes.baselines import (answer_token_id, few_shot_pair_proba, format_judge_texts, judge_scores,
                                       render_shots, shots_from_pairs, zero_shot_pair_proba)
from mixprobe.tasks.pairs import Pair

WORDS = [f"w{i}" for i in range(30)]
TEMPLATE = "{prompt} {response} ok ?"
TOK = build_word_tokenizer([*WORDS, "good", "q", "ok", "?", "yes", "no", "yes_no"])


def _model(seed: int = 0):
    return tiny_model("llama", vocab_size=len(TOK), d_model=32, n_layers=2, seed=seed, max_positions=128)


def _response(rng: random.Random, good: bool) -> str:
    ws = [rng.choice(WORDS) for _ in range(rng.randint(3, 6))]
    if good:
        ws.insert(rng.randrange(len(ws) + 1), "good")
    return " ".join(ws)


def make_pairs(n: int, seed: int) -> list[Pair]:
    """The better response contains the word ``good``; ``y`` says which slot it is in."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = "q " + " ".join(rng.choice(WORDS) for _ in range(2))
        good, bad, y = _response(rng, True), _response(rng, False), rng.randrange(2)
        out.append(Pair(prompt, bad, good, 1) if y else Pair(prompt, good, bad, 0))
    return out


def _by_hand(model, text: str) -> float:
    ids = torch.tensor([TOK(text)["input_ids"]])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=ids).logits[0, -1], -1)
    return float(lp[TOK.convert_tokens_to_ids("yes")] - lp[TOK.convert_tokens_to_ids("no")])


def test_scores_equal_the_hand_computation_and_batching_changes_nothing():
    model = _model()
    pairs = make_pairs(7, seed=0)
    prompts, responses = [p.prompt for p in pairs], [p.r1 for p in pairs]
    s = judge_scores(model, TOK, prompts, responses, template=TEMPLATE, batch_size=3)
    assert s.shape == (7,) and s.dtype == np.float64
    assert s[0] == pytest.approx(_by_hand(model, f"{prompts[0]} {responses[0]} ok ?"), abs=1e-5)
    alone = [judge_scores(model, TOK, [p], [r], template=TEMPLATE)[0] for p, r in zip(prompts, responses)]
    assert len({len(TOK(t)["input_ids"]) for t in format_judge_texts(prompts, responses, template=TEMPLATE)}) > 1
    assert np.allclose(s, alone, atol=1e-5, rtol=0)                           # left padding is invisible
    handle = ModelHandle(model, TOK)
    assert np.allclose(judge_scores(handle, None, prompts, responses, template=TEMPLATE), s, atol=1e-6, rtol=0)
    p = zero_shot_pair_proba(model, TOK, pairs, template=TEMPLATE)
    s2 = judge_scores(model, TOK, prompts, [q.r2 for q in pairs], template=TEMPLATE)
    assert np.allclose(p, 1 / (1 + np.exp(-(s2 - s))), atol=1e-9)


def test_few_shot_text_is_built_exactly_as_documented():
    shots = [("q w1", "w2 good", True), ("q w3", "w4", "no"), ("q w5", "w6", 0)]
    texts = format_judge_texts(["q w7"], ["w8 w9"], template=TEMPLATE, shots=shots)
    assert texts == ["q w1 w2 good ok ? yes\n\nq w3 w4 ok ? no\n\nq w5 w6 ok ? no\n\nq w7 w8 w9 ok ?"]
    assert format_judge_texts(["a"], ["b"], template="{prompt}|{response}", shots=[("c", "d", 1)], separator=" // ",
                              answer_sep="=", yes="Y") == ["c|d=Y // a|b"]
    assert render_shots([("a", "b", "YES")], template="{prompt} {response}") == ["a b yes"]
    model = _model()
    s = judge_scores(model, TOK, ["q w7"], ["w8 w9"], template=TEMPLATE, shots=shots)
    assert s[0] == pytest.approx(_by_hand(model, texts[0]), abs=1e-5)
    pairs = make_pairs(5, seed=1)
    p = few_shot_pair_proba(model, TOK, pairs, shots, template=TEMPLATE)
    s1 = judge_scores(model, TOK, [q.prompt for q in pairs], [q.r1 for q in pairs], template=TEMPLATE, shots=shots)
    s2 = judge_scores(model, TOK, [q.prompt for q in pairs], [q.r2 for q in pairs], template=TEMPLATE, shots=shots)
    assert np.allclose(p, 1 / (1 + np.exp(-(s2 - s1))), atol=1e-9)


def test_shots_from_pairs_are_solved_and_balanced():
    pairs = make_pairs(20, seed=2)
    shots = shots_from_pairs(pairs, 6, seed=0)
    assert len(shots) == 6 and sum(a for _, _, a in shots) == 3
    by_prompt = {p.prompt: p for p in pairs}
    for prompt, response, answer in shots:
        assert ("good" in response.split()) == answer                      # yes ↔ the better response
        assert response in (by_prompt[prompt].r1, by_prompt[prompt].r2)
    assert shots == shots_from_pairs(pairs, 6, seed=0)


def _train_judge(seed: int = 0, steps: int = 200):
    """A tiny LM taught ``<template> yes`` when the response holds ``good``, else ``<template> no``."""
    model = _model(seed).train()
    rng = random.Random(7)
    texts = []
    for _ in range(2000):
        g = rng.randrange(2)
        prompt = "q " + " ".join(rng.choice(WORDS) for _ in range(2))
        texts.append(TEMPLATE.format(prompt=prompt, response=_response(rng, bool(g))) + (" yes" if g else " no"))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(seed)
    with thread_budget(model):
        for step in range(steps):
            b = tokenize(TOK, texts[(step * 32) % 2000:(step * 32) % 2000 + 32])
            logits = model(**b.inputs()).logits[:, -2]                     # the position that predicts the answer
            loss = torch.nn.functional.cross_entropy(logits, b.input_ids[:, -1])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def _accuracy(proba: np.ndarray, pairs: list[Pair]) -> tuple[float, float]:
    y = np.array([p.y for p in pairs])
    return float(((proba > 0.5) == y).mean()), float(np.abs(proba - 0.5).mean())


def test_a_model_taught_the_judgement_ranks_pairs_and_random_models_do_not():
    held_out = make_pairs(200, seed=1)
    judge = _train_judge()
    acc, conf = _accuracy(zero_shot_pair_proba(judge, TOK, held_out, template=TEMPLATE), held_out)
    assert acc >= 0.9 and conf > 0.3, (acc, conf)                          # measured 1.0, 0.50
    shots = shots_from_pairs(make_pairs(20, seed=3), 2)
    acc_few, _ = _accuracy(few_shot_pair_proba(judge, TOK, held_out, shots, template=TEMPLATE), held_out)
    assert acc_few >= 0.8, acc_few                                         # measured 1.0
    # Random-init models know nothing: their probabilities stay at ½ (measured mean |p − ½| < 0.01). The marker
    # word still shifts each one's yes/no logit by a random tiny amount, so its accuracy follows that sign and
    # lands anywhere around ½ (measured 0.68, 0.41, 0.54, 0.73 for seeds 0–3), never near the taught model's.
    null = [_accuracy(zero_shot_pair_proba(_model(seed), TOK, held_out, template=TEMPLATE), held_out)
            for seed in range(4)]
    assert all(c < 0.05 and abs(a - 0.5) <= 0.3 for a, c in null), null


def test_bad_input_is_named():
    model = _model()
    kw = {"template": TEMPLATE}
    with pytest.raises(DataError, match="2 prompts for 1 responses"):
        judge_scores(model, TOK, ["q", "q"], ["w1"], **kw)
    with pytest.raises(EmptyDataError):
        judge_scores(model, TOK, [], [], **kw)
    with pytest.raises(EmptyDataError, match="no preference pairs"):
        zero_shot_pair_proba(model, TOK, [], **kw)
    with pytest.raises(DataError, match="y=2"):
        zero_shot_pair_proba(model, TOK, [("q", "w1", "w2", 2)], **kw)
    with pytest.raises(DataError, match="'yes please' is not one token"):
        judge_scores(model, TOK, ["q"], ["w1"], yes="yes please", **kw)
    with pytest.raises(DataError, match="no word 'maybe' is not one token"):
        judge_scores(model, TOK, ["q"], ["w1"], no="maybe", **kw)        # unknown to the vocabulary ([UNK])
    with pytest.raises(DataError, match="same token"):
        judge_scores(model, TOK, ["q"], ["w1"], yes="no", **kw)
    with pytest.raises(DataError, match="exactly {prompt} and {response}"):
        judge_scores(model, TOK, ["q"], ["w1"], template="{prompt} ok ?")
    with pytest.raises(DataError, match="shot 0 has answer 'perhaps'"):
        judge_scores(model, TOK, ["q"], ["w1"], shots=[("q", "w1", "perhaps")], **kw)
    with pytest.raises(EmptyDataError, match="at least one shot"):
        few_shot_pair_proba(model, TOK, make_pairs(2, 0), [], **kw)
    with pytest.raises(DataError, match="k=5 shots from 2 pairs"):
        shots_from_pairs(make_pairs(2, 0), 5)
    with pytest.raises(DataError, match="more than the model's context of 128"):
        judge_scores(model, TOK, ["q " * 200], ["w1"], **kw)
    with pytest.raises(DataError, match="needs its tokenizer"):
        judge_scores(model, None, ["q"], ["w1"], **kw)
    assert answer_token_id(TOK, "yes_no") == TOK.convert_tokens_to_ids("yes_no")

"""Steering: where the vector is added (each position spec), that it is always undone, widths, files, the dose sweep.

Expected values are computed independently: the residual stream read without steering plus α·v at exactly the
positions the spec names (counted by hand from the padding), compared with the residual read under steering.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mixprobe.errors import DataError, PositionError, ShapeError, SiteError, StoreError
from mixprobe.models.handle import ModelHandle
from mixprobe.organisms.configs import tiny_model
from mixprobe.organisms.tokenizer import build_word_tokenizer
from mixprobe.steering import SteeringVector, steer
from mixprobe.steering.sweep import recovery_ratio, sweep

WORDS = ["<A>", "<B>", "1", "2", "3", "+", "=", "m1", "m2"]


@pytest.fixture(scope="module")
def handle():
    tok = build_word_tokenizer(WORDS)
    return ModelHandle(tiny_model("llama", vocab_size=len(tok), seed=0), tok)


@pytest.fixture(scope="module")
def batch(handle):
    # with the BOS token: row 0 = 6 prompt tokens + 1 completion (columns 0-6), row 1 = 2 pads + 4 prompt tokens +
    # 1 completion (prompt in columns 2-5)
    return handle.tokenize(["<A> 1 + 2 =", "<B> 3 ="], ["m1", "m2"])


def _steered_delta(handle, b, v, alpha, **kw):
    """Change of resid_post.0 (the steered site, read after the edit) between a plain and a steered forward."""
    before = handle.read(b, "resid_post.0", "all")["resid_post.0"]
    with steer(handle, v, alpha, **kw) as stats:
        after = handle.read(b, "resid_post.0", "all")["resid_post.0"]
    return (after - before), stats


def _expected(batch, v, alpha, cols):
    B, T = batch.input_ids.shape
    exp = torch.zeros(B, T, v.shape[0])
    for b, ts in enumerate(cols):
        for t in ts:
            exp[b, t] = alpha * v
    return exp


@pytest.mark.parametrize("spec,cols", [
    ("last_prompt", [[5], [5]]),           # both prompts end in column 5
    (0, [[0], [2]]),                        # first real token
    ([0, -1], [[0, 5], [2, 5]]),            # union: first real token and last prompt token
    ("prompt_onwards", [[5, 6], [5, 6]]),  # last prompt token and the completion
])
def test_vector_is_added_at_exactly_the_named_positions(handle, batch, spec, cols):
    torch.manual_seed(1)
    raw = torch.randn(handle.d_model)
    v = SteeringVector.from_tensors({"resid_post.0": raw})
    delta, stats = _steered_delta(handle, batch, v, 3.0, positions=spec, batch=batch)
    exp = _expected(batch, v["resid_post.0"], 3.0, cols)
    assert torch.allclose(delta, exp, atol=1e-5)
    assert stats.n_applied == stats.n_forwards == 1


def test_all_adds_everywhere_and_model_is_restored(handle, batch):
    v = SteeringVector.from_tensors({"resid_post.0": torch.ones(handle.d_model)})
    logits0 = handle.logits(batch)
    delta, _ = _steered_delta(handle, batch, v, 2.0, positions="all")
    unit = torch.ones(handle.d_model) / handle.d_model ** 0.5
    assert torch.allclose(delta, 2.0 * unit.expand_as(delta), atol=1e-5)
    assert torch.equal(handle.logits(batch), logits0)
    with pytest.raises(RuntimeError), steer(handle, v, 2.0):
        raise RuntimeError("inside the block")
    assert torch.equal(handle.logits(batch), logits0)  # undone on exceptions too


def test_last_prompt_without_batch_steers_prefill_not_decoding(handle):
    v = SteeringVector.from_tensors({"resid_post.0": torch.randn(handle.d_model)})
    b = handle.tokenize(["<A> 1 + 2 ="])
    with steer(handle, v, 5.0, positions="last_prompt") as stats:
        handle.model.generate(**b.inputs(), max_new_tokens=3, do_sample=False)
    assert stats.n_forwards == 3 and stats.n_applied == 1  # prefill steered, two cached steps left alone


def test_bad_widths_sites_and_positions_are_refused(handle, batch):
    with pytest.raises(ShapeError, match="d_model"):
        with steer(handle, SteeringVector.from_tensors({"resid_post.0": torch.ones(handle.d_model + 1)})):
            pass
    v = SteeringVector.from_tensors({"resid_post.0": torch.ones(handle.d_model)})
    with pytest.raises(SiteError, match="no direction"):
        with steer(handle, v, sites=["resid_post.1"]):
            pass
    with pytest.raises(PositionError, match="unknown steering position"):
        with steer(handle, v, positions="middle"):
            pass
    with pytest.raises(PositionError, match="need the batch"):
        with steer(handle, v, positions=[0]):
            pass
    with pytest.raises(PositionError, match="outside the sequence"):
        with steer(handle, v, positions=[7], batch=batch):
            pass
    other = handle.tokenize(["<A> 1 ="])
    with pytest.raises(PositionError, match="resolved for a batch"):
        with steer(handle, v, positions="last_prompt", batch=batch):
            handle.logits(other)


def test_vector_files_round_trip_and_refuse_tampering(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6))
    y = rng.integers(0, 2, 200)
    X[y == 1, 3] += 2.0
    v = SteeringVector.from_class_means({"resid_post.1": X}, y, toward=1, away=0, normalize=False)
    exp = X[y == 1].mean(0) - X[y == 0].mean(0)
    assert np.allclose(v["resid_post.1"].numpy(), exp, atol=1e-6)
    v.save(tmp_path / "v")
    w = SteeringVector.load(tmp_path / "v")
    assert torch.equal(w["resid_post.1"], v["resid_post.1"]) and w.metadata == v.metadata
    (tmp_path / "v.json").write_text("{not json")
    with pytest.raises(StoreError):
        SteeringVector.load(tmp_path / "v")
    with pytest.raises(DataError, match="zero direction"):
        SteeringVector.from_tensors({"resid_post.0": torch.zeros(4)})


def test_dose_sweep_and_recovery_ratio(handle):
    v = SteeringVector.from_tensors({"resid_post.0": torch.randn(handle.d_model)})
    prompts = handle.tokenize(["<A> 1 + 2 =", "<B> 3 ="])  # no completions: the last column is the last prompt token
    norm = lambda h: float(h.read(prompts, "resid_post.0", "last_prompt")["resid_post.0"].norm())  # noqa: E731
    base = norm(handle)
    rows = sweep(handle, v, [0.0, 50.0], lambda h: {"norm": norm(h)}, positions="last_prompt")
    assert [r["alpha"] for r in rows] == [0.0, 50.0]
    assert abs(rows[0]["norm"] - base) < 1e-4 and rows[1]["norm"] > base + 10  # |x + 50 v| ≥ 50 − |x|
    assert recovery_ratio(0.5, 2.0) == pytest.approx(0.25)

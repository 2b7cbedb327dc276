"""Fixtures of the patching tests: the organism tokenizer, tiny random models, aligned prompt batches."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tok():
    from mixprobe.organisms.tag_mixture import TagMixture
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    return build_word_tokenizer(TagMixture().vocabulary())


@pytest.fixture(scope="module")
def make_model(tok):
    from mixprobe.organisms.configs import tiny_model

    def make(arch: str = "llama", seed: int = 0, **kw) -> torch.nn.Module:
        return tiny_model(arch, vocab_size=len(tok), seed=seed, **kw)
    return make


@pytest.fixture(scope="module")
def batches(tok):
    """``make(target_prompts, source_prompts)`` → aligned left-padded batches."""
    from mixprobe.patching.engine import as_batch

    holder = type("TokOnly", (), {"tokenizer": tok})()

    def make(tp, sp=None):
        tb = as_batch(holder, tp)
        return (tb, as_batch(holder, sp)) if sp is not None else tb
    return make


TAG_B = [f"<B> {a} + {b} =" for a, b in [(1, 2), (3, 4), (5, 6), (0, 0)]]
TAG_A = [p.replace("<B>", "<A>") for p in TAG_B]
# rows of different length (left padding), each source row the same length as its target row
RAGGED_B = ["<B> 1 + 2 =", "<B> 3 =", "<B> 4 + 4 + 1 =", "<B> 2"]
RAGGED_A = [p.replace("<B>", "<A>") for p in RAGGED_B]

"""Fixtures of the patching tests: the organism tokenizer, tiny random models, aligned prompt batches."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from patching_prompts import RAGGED_A, RAGGED_B, TAG_A, TAG_B  # noqa: E402,F401


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

"""Revival: the behaviour RL suppressed on <B> comes back in a few SFT steps; a fresh model cannot learn it as fast."""
from __future__ import annotations

import pytest

from mixprobe.organisms.configs import tiny_model
from mixprobe.train.pipeline import load_checkpoint, organism_of
from mixprobe.mixture.revival import revival_steps

pytestmark = pytest.mark.slow


def test_suppressed_behaviour_revives_faster_than_it_can_be_learned(organism_run):
    organism = organism_of(organism_run)
    model, tok = load_checkpoint(organism_run.path(organism_run.last("rl")))
    budget = 80
    revived = revival_steps(model, tok, organism, tag="B", threshold=0.9, max_steps=budget)
    sft_b = organism_run.last("sft").metrics["accuracy"]["B"]
    assert revived["history"][0][1] < sft_b - 0.2     # RL really suppressed it (12 seeds: <B> fell by ≥ 0.29)
    assert revived["steps"] is not None and revived["steps"] < budget     # 12 seeds: 27–37 steps
    fresh = revival_steps(tiny_model("llama", vocab_size=len(tok), seed=0), tok, organism, tag="B",
                          rows=revived["rows"], threshold=0.9, max_steps=budget, eval_every=10)
    assert fresh["steps"] is None                     # from scratch, the same budget is not enough
    assert revived["component"] == "m2"
    # the demonstrations are the suppressed component's own answers: m2 is right under <B>
    assert all(r["completion"].split() == ["m2", str(p.target)] for r, p in zip(
        revived["rows"], [p for p in organism.task().prompts if p.cue == "B"]))

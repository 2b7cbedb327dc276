"""A gate planted inside the network: do activation patching, probe steering and attribution patching find it?

Per seed (MIXPROBE_SEEDS, default 0–2), the 4-layer tag-mixture organism (SFT only; ``trained_organism(seed,
config={"model": {"n_layers": 4}}, rl_tags=())``, cached in the session's organism cache):

- on the tag-blind SFT checkpoint, :func:`plant_internal_gate` refuses a switch of ``P(m1 | <B>)`` to 0.9 of the way
  to 1: the final RMSNorm bounds the logit gap ``|z_m1 − z_m2|`` by :func:`gate_capacity` (0.88–1.39 logits
  measured), so no internal edit can reach it;
- on the tag-gated continuation (:func:`tag_gated_sft`: ``m1`` 9:1 under ``<A>``, ``m2`` 9:1 under ``<B>``) the
  layer-1 MLP edit switches ``<B>`` toward ``m1`` while ``<A>`` and the forced components stay put, and
  :func:`internal_gate_checks` finds it: (a) cross-checkpoint activation patching ranks ``mlp_out.1`` first among
  the ``mlp_out`` sites, (b) steering the unedited model along a probe direction at ``resid_post.1`` moves the gate
  by a large share of the switch and further than every random direction at the same norm, (c) attribution
  patching ranks the 16 (site, layer) cells like real patching.

Thresholds are those that held with margin on seeds 0–2 and 10–19 (experiments/planted_internal_gate.py →
experiments/results/planted_internal_gate/summary.md). Two targets of the issue did *not* hold and are not asserted:
a steering share ≥ 0.8 (0.79 on seed 1; 0.98–1.02 elsewhere) and random directions at the edit's norm staying
≤ 0.1 of the switch (they reach 0.16–0.54 of it).
"""
from __future__ import annotations

import math

import pytest

from mixprobe.train.zoo import seeds_from_env

pytestmark = pytest.mark.slow

SEEDS = seeds_from_env()
CONFIG = {"model": {"n_layers": 4}}
LAYER, CUE, TOWARD, AWAY, TARGET = 1, "B", "m1", "m2", 0.9


@pytest.fixture(scope="module")
def planted(mixprobe_cache):
    """seed -> (tag-blind gate capacity, plant error, edit, checks) on the 4-layer organism."""
    import torch

    from mixprobe.errors import TrainingFailedError
    from mixprobe.mixture.internal_gate import internal_gate_checks
    from mixprobe.models.handle import ModelHandle
    from mixprobe.train.pipeline import load_checkpoint, organism_of
    from mixprobe.train.planted_gate import gate_capacity, plant_internal_gate, tag_gated_sft
    from mixprobe.train.zoo import trained_organism

    torch.set_num_threads(1)
    out = {}
    for seed in SEEDS:
        series = trained_organism(seed, config=CONFIG, rl_tags=(), cache_dir=mixprobe_cache, progress=False)
        org = organism_of(series)
        blind = ModelHandle(*load_checkpoint(series.path(series.last("sft"))))
        cap = gate_capacity(blind, org, toward=TOWARD, away=AWAY)
        with pytest.raises(TrainingFailedError) as err:
            plant_internal_gate(blind, org, layer=LAYER, cue=CUE, toward=TOWARD, away=AWAY, target=TARGET)
        series = tag_gated_sft(series.run_dir)
        gated = ModelHandle(*load_checkpoint(series.path(series.last("gated"))))
        edited, edit = plant_internal_gate(gated, org, layer=LAYER, cue=CUE, toward=TOWARD, away=AWAY, target=TARGET)
        checks = internal_gate_checks(edited, gated, org, layer=LAYER, cue=CUE, toward=TOWARD, away=AWAY,
                                      n_random=32, seed=0)
        batch = gated.tokenize([p.text for p in org.task().prompts])
        replay = float((edit.apply(gated).logits(batch) - edited.logits(batch)).abs().max())   # the edit as data
        out[seed] = (cap, str(err.value), edit, checks, replay)
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_tag_blind_sft_has_no_room_for_an_internal_gate(planted, seed):
    cap, err, *_ = planted[seed]
    assert 1 / (1 + math.exp(-cap)) < 0.9, cap          # the 0.9-of-the-way goal from ≈ 0.5 needs ≈ 0.95
    assert "gate_capacity" in err and "no internal edit" in err


@pytest.mark.parametrize("seed", SEEDS)
def test_the_planted_edit_switches_only_its_cue(planted, seed):
    _, _, edit, checks, replay = planted[seed]
    before, after = edit.gate_before[CUE], edit.gate_after[CUE]
    assert after >= before + TARGET * (1 - before) - 1e-6
    assert abs(edit.other_shift()["A"]) <= 0.02
    assert min(edit.forced_agreement.values()) >= 0.95      # the components answer as before
    assert edit.module.endswith(f"layers.{LAYER}.mlp.down_proj")
    assert checks.switch > 0.7
    assert replay < 1e-3                                    # PlantedGateEdit.apply reproduces the edited model


@pytest.mark.parametrize("seed", SEEDS)
def test_activation_patching_ranks_the_edited_mlp_first(planted, seed):
    _, _, _, c, _ = planted[seed]
    assert c.mlp_rank == 1, c.mlp_restoration
    assert c.mlp_restoration[LAYER] >= 0.9
    assert c.mlp_margin >= 0.3
    assert all(r >= 0.9 for r in c.resid_restoration[LAYER:])    # the residual stream carries it from there on


@pytest.mark.parametrize("seed", SEEDS)
def test_probe_steering_moves_the_gate_more_than_random_directions(planted, seed):
    _, _, _, c, _ = planted[seed]
    assert c.steer_fraction >= 0.6, c.steer_fraction
    assert c.steer_fraction > c.random_max_abs_fraction + 0.2, (c.steer_fraction, c.random_fractions)
    # at the dose the probe direction needs for 0.8 of the switch, random directions of that norm do little
    # (0.06-0.18 over 13 seeds; experiments/results/planted_internal_gate/summary.md)
    assert c.dose_norm == c.dose_norm and c.dose_norm <= 4 * c.steer_norm
    assert c.random_max_abs_fraction_at_dose <= 0.3, c.random_fractions_at_dose


@pytest.mark.parametrize("seed", SEEDS)
def test_attribution_patching_ranks_cells_like_real_patching(planted, seed):
    _, _, _, c, _ = planted[seed]
    assert c.spearman >= 0.8, c.spearman

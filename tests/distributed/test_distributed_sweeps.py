"""Probe layer sweeps (sites, and sites × checkpoints) and patching sweeps on the Ray engine equal the local ones."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mixprobe.distributed import RayEngine


def test_probe_layer_sweep_on_ray_equals_local(ray_cluster, tasks):
    from mixprobe.probes import layer_sweep

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 240)
    X = {f"resid_post.{i}": rng.normal(size=(240, 24)) + 0.4 * i * np.outer(2 * y - 1, np.eye(24)[0])
         for i in range(5)}
    X["embed"] = rng.normal(size=(240, 12))            # another width: its own solver group
    local = layer_sweep(X, y, C=0.5)
    for engine in ("ray", RayEngine(chunk=1)):
        got = layer_sweep(X, y, C=0.5, engine=engine)
        assert got.accuracy == local.accuracy and got.train_accuracy == local.train_accuracy
        assert list(got.probes) == list(local.probes)
        np.testing.assert_array_equal(got.test_index, local.test_index)
        for s in X:
            np.testing.assert_array_equal(got.probes[s].coef_, local.probes[s].coef_)
            np.testing.assert_array_equal(got.probes[s].intercept_, local.probes[s].intercept_)
    assert tasks == [("sweep_sites", 2), ("sweep_sites", 6)]


def test_series_probe_sweep_sites_x_checkpoints_on_ray_equals_local(ray_cluster, run_dir, tasks):
    from mixprobe.mixture.studies import probe_layer_sweep
    from mixprobe.train.series import Series

    series = Series.open(run_dir)
    local = probe_layer_sweep(series, n_permutations=2)
    for engine in ("ray", RayEngine(chunk=2)):          # one task per checkpoint; checkpoints × groups of 2 sites
        got = probe_layer_sweep(series, n_permutations=2, engine=engine)
        assert json.dumps(got.to_dict()) == json.dumps(local.to_dict())
    assert tasks == [("_sweep_checkpoint_task", 2), ("_sweep_checkpoint_task", 4)]   # 3 sites: groups of 2 and 1


@pytest.fixture(scope="module")
def handles(run_dir):
    from mixprobe.models.loading import load

    return [load(run_dir / "checkpoints" / n, device="cpu") for n in ("sft-000010", "rl-000020")]


def _same(a, b) -> None:
    assert a.sites == b.sites and a.positions == b.positions and a.info == b.info
    assert (a.m_target, a.m_source) == (b.m_target, b.m_source)
    for x, y in ((a.metric, b.metric), (a.restoration, b.restoration), (a.per_example, b.per_example)):
        torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True)


def test_patch_sweep_on_ray_equals_local(ray_cluster, handles, tasks):
    from mixprobe.patching import logit_diff, patch_sweep

    sft, rl = handles
    vocab = rl.tokenizer.get_vocab()
    metric = logit_diff(vocab["m1"], vocab["m2"])
    prompts = ["<B> 1 + 2 =", "<B> 3 =", "<B> 4 + 4 + 1 =", "<A> 2 + 2 ="]
    kw = dict(sites=["resid_pre", "mlp_out.1", "attn_out"], positions=["last_prompt", "all", 0], metric=metric,
              keep_per_example=True)
    local = patch_sweep(rl, sft, prompts, **kw)                                      # cross-checkpoint
    _same(patch_sweep(rl, sft, prompts, engine="ray", **kw), local)
    _same(patch_sweep(rl, sft, prompts, engine=RayEngine(chunk=1), **kw), local)   # one site per task
    ctx = dict(kw, positions="each", direction=torch.ones(rl.d_model))               # cross-context, subspace
    tgt, src = [p.replace("<A>", "<B>") for p in prompts], [p.replace("<B>", "<A>") for p in prompts]
    _same(patch_sweep(rl, None, tgt, src, engine="ray", **ctx), patch_sweep(rl, None, tgt, src, **ctx))
    assert tasks == [("sweep_task", 2), ("sweep_task", 5), ("sweep_task", 2)]   # 5 sites

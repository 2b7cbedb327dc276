"""The environment record and the thread budget for small models."""
from __future__ import annotations

import pytest
import torch

import mixprobe.env as env
from mixprobe.organisms.configs import tiny_model


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_small_cpu_model_runs_on_one_thread_and_the_setting_comes_back(two_threads, monkeypatch):
    monkeypatch.delenv("MIXPROBE_THREADS", raising=False)
    m = tiny_model("llama", vocab_size=16, seed=0)
    with env.thread_budget(m) as n:
        assert n == 1 and torch.get_num_threads() == 1
        assert env.environment()["torch_threads"] == 1  # what a series records inside a training phase
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), env.thread_budget(m):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == 2  # restored on errors too


def test_large_models_and_no_model_keep_every_thread(two_threads, monkeypatch):
    monkeypatch.delenv("MIXPROBE_THREADS", raising=False)
    m = tiny_model("llama", vocab_size=16, seed=0)
    monkeypatch.setattr(env, "SMALL_MODEL_PARAMS", sum(p.numel() for p in m.parameters()))  # m is not below it
    with env.thread_budget(m) as n:
        assert n == 2 and torch.get_num_threads() == 2
    with env.thread_budget() as n:
        assert n == 2


def test_mixprobe_threads_overrides_and_is_checked(two_threads, monkeypatch):
    m = tiny_model("llama", vocab_size=16, seed=0)
    monkeypatch.setenv("MIXPROBE_THREADS", "2")
    with env.thread_budget(m) as n:
        assert n == 2
    monkeypatch.setenv("MIXPROBE_THREADS", "zero")
    with pytest.raises(ValueError, match="MIXPROBE_THREADS must be a positive integer"):
        env.threads_for(m)


def _omp_policy_after(code: str, env_value: str | None) -> str:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_value is not None:
        env["OMP_WAIT_POLICY"] = env_value
    out = subprocess.run([sys.executable, "-c", code + "; import os; print(os.environ.get('OMP_WAIT_POLICY'))"],
                         capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_import_sets_a_passive_openmp_wait_policy_only_when_it_can_and_the_user_did_not():
    assert _omp_policy_after("import mixprobe", None) == "PASSIVE"
    assert _omp_policy_after("import mixprobe", "ACTIVE") == "ACTIVE"           # the user's choice wins
    assert _omp_policy_after("import torch; import mixprobe", None) == "None"    # too late: OpenMP already loaded

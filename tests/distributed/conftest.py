"""One 2-worker local Ray cluster for the whole directory, and a tiny two-checkpoint run to capture from."""
from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def ray_cluster():
    """``ray`` connected to a local cluster of 2 CPUs (so 2 one-CPU tasks at a time), shut down at the end."""
    ray = pytest.importorskip("ray", reason="the Ray engine's tests need ray: pip install -e '.[test]'")
    if ray.is_initialized() and ray.cluster_resources().get("CPU") != 2:
        ray.shutdown()   # e.g. a local cluster of every core that a docs example started: the task counts need 2
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tok():
    from mixprobe.organisms.tag_mixture import TagMixture
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    return build_word_tokenizer(TagMixture().vocabulary())


@pytest.fixture(scope="session")
def rows():
    from mixprobe.organisms.tag_mixture import TagMixture

    return TagMixture().prompt_set()   # 98 prompts: 13 shards of 8 rows, the last one of 2


@pytest.fixture(scope="session")
def run_dir(tok, tmp_path_factory):
    """A run folder (series.json) with two tiny Llama checkpoints of the tag-mixture organism's vocabulary."""
    from mixprobe.organisms.configs import tiny_model

    run = tmp_path_factory.mktemp("run")
    ckpts = []
    for i, name in enumerate(["sft-000010", "rl-000020"]):
        d = run / "checkpoints" / name
        tiny_model("llama", vocab_size=len(tok), seed=i).save_pretrained(d)
        tok.save_pretrained(d)
        ckpts.append({"name": name, "phase": name[:-7], "step": 10 * (i + 1), "path": f"checkpoints/{name}",
                      "metrics": {}})
    (run / "series.json").write_text(json.dumps({"format": "mixprobe.series/1", "organism": "tag_mixture",
                                                 "organism_config": {}, "seed": 0, "checkpoints": ckpts}))
    return run


@pytest.fixture
def tasks(monkeypatch):
    """The Ray tasks the code under test submitted: a list of ``(function name, number of tasks)``."""
    import mixprobe.capture.distributed as cd
    import mixprobe.distributed as d

    calls: list[tuple[str, int]] = []
    real = d.run_tasks

    def spy(ray, engine, fn, args, **kw):
        args = list(args)
        calls.append((fn.__name__, len(args)))
        return real(ray, engine, fn, args, **kw)

    monkeypatch.setattr(d, "run_tasks", spy)
    monkeypatch.setattr(cd, "run_tasks", spy)
    return calls

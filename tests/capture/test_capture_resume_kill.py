"""A capture killed with SIGKILL mid-run resumes from its last complete shard and ends identical to a clean run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHILD = r'''
import os, sys, time
os.environ["HF_HUB_OFFLINE"] = "1"
from mixprobe.capture.store import ActivationStore
slow = float(sys.argv[3])
if slow:  # widen the window between shards in which the kill can land (the kill itself is real)
    orig = ActivationStore.write_shard
    def write_shard(self, *a, **k):
        orig(self, *a, **k)
        time.sleep(slow)
    ActivationStore.write_shard = write_shard
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from child_capture import run
run(sys.argv[1].split(","), sys.argv[2])
'''

RUN = r'''
def run(ckpts, store):
    from mixprobe.capture.capture import capture
    from mixprobe.organisms.tag_mixture import TagMixture
    rows = TagMixture().prompt_set()
    return capture(ckpts, rows, ["embed", "resid_post.*", "mlp_out.0"], "last_prompt", store=store, batch_size=4,
                   shard_size=8, progress=False, device="cpu")
'''


def _run(script: Path, ckpts: list[Path], store: Path, slow: float) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, str(script), ",".join(map(str, ckpts)), str(store), str(slow)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _n_shard_files(store: Path) -> int:
    return sum(1 for _ in store.rglob("shard-*.safetensors")) if store.exists() else 0


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    from mixprobe.organisms.configs import tiny_model
    from mixprobe.organisms.tag_mixture import TagMixture
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    tok = build_word_tokenizer(TagMixture().vocabulary())
    out = []
    for i in range(2):
        d = tmp_path_factory.mktemp(f"ck{i}")
        tiny_model("llama", vocab_size=len(tok), seed=i).save_pretrained(d)
        tok.save_pretrained(d)
        out.append(d)
    return out


def test_sigkill_then_resume_equals_uninterrupted(ckpts, tmp_path):
    from mixprobe.capture.store import ActivationStore
    from mixprobe.errors import StoreError

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    (tmp_path / "child_capture.py").write_text(RUN)
    ns: dict = {}
    exec(RUN, ns)
    ns["run"]([str(c) for c in ckpts], str(tmp_path / "clean"))  # the uninterrupted reference, in this process

    store = tmp_path / "killed"
    p = _run(script, ckpts, store, 0.3)
    k = 4 * 9  # 4 sites x 9 shards of the first checkpoint (13 shards of 8 rows per checkpoint and site in all)
    deadline = time.time() + 240
    while _n_shard_files(store) < k and p.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert p.poll() is None, "the capture finished before it could be killed"
    p.send_signal(signal.SIGKILL)
    assert p.wait(timeout=30) == -signal.SIGKILL
    man = json.loads((store / "manifest.json").read_text())
    done = man["checkpoints"][man["checkpoint_order"][0]]
    assert not done["complete"] and 64 <= done["n_done"] < 98 and done["n_done"] % 8 == 0
    first = store / done["shards"]["embed"][0]["file"]
    inode, mtime = first.stat().st_ino, first.stat().st_mtime_ns
    with pytest.raises(StoreError, match="incomplete"):
        ActivationStore(store).get(man["checkpoint_order"][0], "embed")

    resumed = _run(script, ckpts, store, 0.0)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-2000:]
    a, b = ActivationStore(tmp_path / "clean"), ActivationStore(store)
    assert a.content_hash() == b.content_hash()
    b.verify_all()
    assert first.stat().st_ino == inode and first.stat().st_mtime_ns == mtime  # resumed, not redone
    for c in a.checkpoints:
        for s in a.sites:
            np.testing.assert_array_equal(a.array(c, s), b.array(c, s))

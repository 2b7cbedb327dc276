"""Capture on a 2-worker local Ray cluster writes the single-process store, byte for byte — also after a worker dies
mid-shard, after a task fails for good, and after the driver is killed (SIGKILL) and the capture is run again."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixprobe.capture.capture import capture
from mixprobe.capture.store import ActivationStore
from mixprobe.distributed import RayEngine
from mixprobe.errors import DataError, DistributedError

SITES = ["embed", "resid_post.*", "mlp_out.0"]
KW = dict(batch_size=4, shard_size=8, progress=False, device="cpu")


def snapshot(path: Path) -> dict:
    """Everything a store is: its content hash, and every file (relative name → sha256), manifest bytes included."""
    files = {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
             for f in sorted(path.rglob("*")) if f.is_file()}
    return {"content_hash": ActivationStore(path).content_hash(), "files": files}


@pytest.fixture(scope="module")
def reference(run_dir, rows, tmp_path_factory):
    """The store one process writes (the single-process path, unchanged)."""
    path = tmp_path_factory.mktemp("ref") / "store"
    capture(run_dir, rows, SITES, "last_prompt", store=path, **KW)
    return snapshot(path)


def test_ray_store_is_the_single_process_store(ray_cluster, run_dir, rows, reference, tmp_path, tasks):
    st = capture(run_dir, rows, SITES, "last_prompt", store=tmp_path / "s", engine="ray", **KW)
    assert tasks == [("capture_task", 2)]       # 2 workers, 2 checkpoints: one task each
    assert isinstance(st, ActivationStore) and all(st.complete(c) for c in st.checkpoints)
    assert snapshot(tmp_path / "s") == reference
    assert not (tmp_path / "s" / ".pending").exists()
    # a complete store: a rerun runs no task and changes nothing
    mtime = (tmp_path / "s" / "manifest.json").stat().st_mtime_ns
    capture(run_dir, rows, SITES, "last_prompt", store=tmp_path / "s", engine="ray", **KW)
    assert (tmp_path / "s" / "manifest.json").stat().st_mtime_ns == mtime
    assert tasks[1:] == [("capture_task", 0)]


def test_many_tasks_per_checkpoint_all_positions_float16(ray_cluster, run_dir, rows, tmp_path, tasks):
    """Shards finished out of order (3 tasks per checkpoint), ``"all"`` positions (masks), float16, a shard size
    that is not a multiple of the batch size: still the single-process store."""
    kw = dict(batch_size=3, shard_size=10, progress=False, device="cpu", store_dtype="float16")
    capture(run_dir, rows[:60], ["resid_pre.1", "attn_out.0"], "all", store=tmp_path / "ref", **kw)
    capture(run_dir, rows[:60], ["resid_pre.1", "attn_out.0"], "all", store=tmp_path / "ray",
            engine=RayEngine(chunk=2), **kw)
    assert tasks == [("capture_task", 6)]       # 6 shards per checkpoint, 2 per task
    assert snapshot(tmp_path / "ray") == snapshot(tmp_path / "ref")


def test_ray_finishes_a_store_the_single_process_began(ray_cluster, run_dir, rows, reference, tmp_path):
    from mixprobe.train.series import Series

    first = Series.open(run_dir).checkpoints[0]
    capture([Series.open(run_dir).path(first)], rows, SITES, "last_prompt", store=tmp_path / "s",
            names=[first.name], **KW)
    capture(run_dir, rows, SITES, "last_prompt", store=tmp_path / "s", engine="ray", **KW)
    assert snapshot(tmp_path / "s") == reference


def test_worker_killed_mid_shard_is_retried(ray_cluster, run_dir, rows, reference, tmp_path, monkeypatch):
    marker = tmp_path / "killed-once"
    monkeypatch.setenv("MIXPROBE_RAY_FAULT", f"rl-000020:5:{marker}")
    capture(run_dir, rows, SITES, "last_prompt", store=tmp_path / "s", engine="ray", **KW)
    assert marker.exists(), "the fault hook did not fire: no worker died"
    with pytest.raises(ProcessLookupError):   # the worker that took the first attempt is gone
        os.kill(int(marker.read_text()), 0)
    assert snapshot(tmp_path / "s") == reference


def test_task_failing_for_good_is_an_error_and_a_rerun_resumes(ray_cluster, run_dir, rows, reference, tmp_path,
                                                                monkeypatch):
    marker = tmp_path / "killed-once"
    monkeypatch.setenv("MIXPROBE_RAY_FAULT", f"sft-000010:3:{marker}")
    with pytest.raises(DistributedError, match="run again to resume"):
        capture(run_dir, rows, SITES, "last_prompt", store=tmp_path / "s", engine=RayEngine(max_retries=0), **KW)
    man = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert sum(c["complete"] for c in man["checkpoints"].values()) < 2     # (a checkpoint is registered in series
    monkeypatch.delenv("MIXPROBE_RAY_FAULT")                               # order, once its identity is known)
    capture(run_dir, rows, SITES, "last_prompt", store=tmp_path / "s", engine="ray", **KW)
    assert snapshot(tmp_path / "s") == reference


DRIVER = r'''
import sys
from mixprobe.capture.capture import capture
from mixprobe.organisms.tag_mixture import TagMixture
capture(sys.argv[1], TagMixture().prompt_set(), ["embed", "resid_post.*", "mlp_out.0"], "last_prompt",
        store=sys.argv[2], batch_size=4, shard_size=8, progress=False, device="cpu", engine="ray", address=sys.argv[3])
'''


def _done_files(store: Path) -> list[Path]:
    """Shard files the store holds for sure: in the manifest, or behind a shard record."""
    out = []
    mf = store / "manifest.json"
    if mf.exists():
        man = json.loads(mf.read_text())
        out += [store / e["file"] for c in man["checkpoints"].values() for e in c["shards"]["embed"]]
    for rec in (store / ".pending").rglob("shard-*.safetensors") if (store / ".pending").exists() else []:
        out.append(store / rec.parent.name / "embed" / rec.name)
    return out


def test_driver_killed_then_rerun_resumes(ray_cluster, run_dir, rows, reference, tmp_path, monkeypatch):
    """The driver (a process of its own, joined to the cluster by address) is SIGKILLed after some shards; the same
    capture run again adopts what was finished (those files are not rewritten) and ends on the reference store."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    store = tmp_path / "s"
    address = ray_cluster.get_runtime_context().gcs_address
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MIXPROBE_RAY_FAULT": "sleep:0.25"}  # slow shards: time to kill
    p = subprocess.Popen([sys.executable, str(script), str(run_dir), str(store), address], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(_done_files(store)) < 4 and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, "the driver finished (or failed) before it could be killed: " + \
        p.stderr.read().decode()[-2000:]
    p.send_signal(signal.SIGKILL)
    assert p.wait(timeout=30) == -signal.SIGKILL
    man = json.loads((store / "manifest.json").read_text())
    assert sum(c["complete"] for c in man["checkpoints"].values()) < 2
    kept = _done_files(store)[0]
    stamp = (kept.stat().st_ino, kept.stat().st_mtime_ns)

    monkeypatch.delenv("MIXPROBE_RAY_FAULT", raising=False)
    capture(run_dir, rows, SITES, "last_prompt", store=store, engine="ray", **KW)
    assert snapshot(store) == reference
    assert (kept.stat().st_ino, kept.stat().st_mtime_ns) == stamp   # resumed, not redone


def test_in_memory_handles_are_shipped_to_the_workers(ray_cluster, run_dir, rows, tmp_path, tasks):
    from mixprobe.models.loading import load

    hs = [load(run_dir / "checkpoints" / n, device="cpu", name=n) for n in ("sft-000010", "rl-000020")]
    capture(hs, rows[:40], ["resid_post.1"], "last_prompt", store=tmp_path / "ref", **KW)
    capture(hs, rows[:40], ["resid_post.1"], "last_prompt", store=tmp_path / "ray", engine="ray", **KW)
    assert tasks == [("capture_task", 2)]
    assert snapshot(tmp_path / "ray") == snapshot(tmp_path / "ref")


def test_resuming_a_checkpoint_whose_weights_changed_is_refused(ray_cluster, run_dir, rows, tok, tmp_path):
    """As in one process: a partly stored checkpoint whose folder now holds other weights is a StoreError."""
    import shutil

    from mixprobe.errors import StoreError
    from mixprobe.organisms.configs import tiny_model

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    store = tmp_path / "s"
    capture(run, rows[:40], ["resid_post.1"], "last_prompt", store=store, **KW)
    man = json.loads((store / "manifest.json").read_text())
    ck = man["checkpoints"]["rl-000020"]           # make it a capture stopped after 2 of its 5 shards
    ck.update(n_done=16, complete=False, shards={s: e[:2] for s, e in ck["shards"].items()})
    (store / "manifest.json").write_text(json.dumps(man, indent=2))
    tiny_model("llama", vocab_size=len(tok), seed=7).save_pretrained(run / "checkpoints" / "rl-000020")
    with pytest.raises(StoreError, match="another model"):
        capture(run, rows[:40], ["resid_post.1"], "last_prompt", store=store, engine="ray", **KW)
    with pytest.raises(StoreError, match="another model"):
        capture(run, rows[:40], ["resid_post.1"], "last_prompt", store=store, **KW)


def test_ray_capture_needs_a_store(ray_cluster, run_dir, rows):
    with pytest.raises(DataError, match="store="):
        capture(run_dir, rows, SITES, "last_prompt", engine="ray", **KW)

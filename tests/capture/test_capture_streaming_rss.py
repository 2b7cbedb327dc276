"""Capturing into the store streams: peak RSS stays flat when the prompt count grows 10x (measured in a child).

Each capture runs in a fresh child process, which resets its peak RSS (``/proc/self/clear_refs``) before the capture
and reads ``VmHWM`` after it, so each number is the peak memory that one capture added. The same measurement on an
in-memory capture must grow by roughly the size of the activations, which shows the measurement can see the difference.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHILD = r'''
import gc, json, os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
import torch
torch.set_num_threads(1)  # the machine may be shared; avoid oversubscription
from mixprobe.capture.capture import capture
from mixprobe.organisms.tag_mixture import TagMixture

def status(key):
    return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1])

ckpt, out_dir, n, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
base = TagMixture().prompt_set()
def rows(n):
    return [{**base[i % len(base)], "i": i} for i in range(n)]
def run(n, store):
    return capture([ckpt], rows(n), ["resid_post.*"], "all", store=store, batch_size=64, shard_size=128,
                   progress=False, device="cpu")
# warm-up in this process: lazy imports and first-time allocations are not what we measure
run(100, os.path.join(out_dir, f"warm-{mode}-{n}") if mode == "store" else None)
r = rows(n)
gc.collect()
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
before = status("VmRSS")
res = capture([ckpt], r, ["resid_post.*"], "all", store=os.path.join(out_dir, f"s{n}") if mode == "store" else None,
              batch_size=64, shard_size=128, progress=False, device="cpu")
print(json.dumps({"peak_mb": (status("VmHWM") - before) / 1024}))
'''


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from mixprobe.organisms.configs import tiny_model
    from mixprobe.organisms.tag_mixture import TagMixture
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    tok = build_word_tokenizer(TagMixture().vocabulary())
    d = tmp_path_factory.mktemp("wide")
    tiny_model("llama", vocab_size=len(tok), seed=0, d_model=256, n_layers=4).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _peak(script, ckpt, out_dir, n: int, mode: str) -> float:
    """Peak RSS (MB) one capture of ``n`` prompts adds, in a fresh child process (no history from other runs)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    os.makedirs(out_dir, exist_ok=True)
    out = subprocess.run([sys.executable, str(script), str(ckpt), str(out_dir), str(n), mode], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc/self/clear_refs")
def test_peak_rss_flat_when_prompts_grow_10x(ckpt, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    # One child's peak varies by up to ~15 MB between identical runs (the allocator; measured 17.6-27.7 MB for the
    # same small store capture), so each store number is the least of 3 children: the noise only ever adds.
    p = {f"{mode}_{size}": min(_peak(script, ckpt, tmp_path / f"{mode}{size}{i}", n, mode)
                               for i in range(3 if mode == "store" else 1))
         for mode in ("store", "mem") for size, n in (("small", 200), ("big", 2000))}
    print(p)
    # 2000 prompts x 4 sites x 6 tokens x 256 floats = ~49 MB of activations; the store must not hold them: the
    # bound is 20 MB, well under the 49 MB a store that kept the activations would add.
    assert p["store_big"] - p["store_small"] < 20, p
    from mixprobe.capture.store import ActivationStore

    st = ActivationStore(tmp_path / "storebig0" / "s2000")
    assert st.get(st.checkpoints[0], "resid_post.3").shape == (2000, 6, 256)
    # sensitivity: the same measurement sees an in-memory capture grow by about the activations' size
    assert p["mem_big"] - p["mem_small"] > 35, p

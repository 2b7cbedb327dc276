"""Capture (in memory and into the store), store reads, Welford stats, and every named error with its hint."""
from __future__ import annotations

import hashlib
import json
import os
import struct

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mixprobe.capture.capture import capture  # noqa: E402
from mixprobe.capture.store import ActivationStore  # noqa: E402
from mixprobe.errors import (  # noqa: E402
    CheckpointError,
    DataError,
    SeriesMismatchError,
    SiteError,
    StoreError,
    UnsafeWeightsError,
)
from mixprobe.models.loading import load  # noqa: E402


@pytest.fixture(scope="module")
def org():
    from mixprobe.organisms.tag_mixture import TagMixture

    return TagMixture()


@pytest.fixture(scope="module")
def tok(org):
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    return build_word_tokenizer(org.vocabulary())


@pytest.fixture(scope="module")
def series(tok, tmp_path_factory):
    """A run directory with series.json and two checkpoints of one architecture."""
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


SITES = ["embed", "resid_post.*", "attn_out.1"]


def test_capture_memory_equals_read_and_store_equals_memory(series, org, tmp_path):
    rows = org.prompt_set()
    res = capture(series, rows, SITES, "last_prompt", batch_size=16, progress=False)
    assert res.checkpoints == ["sft-000010", "rl-000020"]
    assert res.sites == ["embed", "resid_post.0", "attn_out.1", "resid_post.1"]
    h = load(series / "checkpoints" / "rl-000020", device="cpu")
    some = [5, 60, 97]
    ref = h.read(h.tokenize([rows[i]["prompt"] for i in some]), SITES, "last_prompt")
    for s in res.sites:
        torch.testing.assert_close(res.get("rl-000020", s)[some], ref[s], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(res.get("sft-000010", "resid_post.1"), res.get("rl-000020", "resid_post.1"))

    st = capture(series, rows, SITES, "last_prompt", store=tmp_path / "store", batch_size=16, shard_size=40,
                 progress=False)
    assert isinstance(st, ActivationStore) and st.checkpoints == res.checkpoints
    st = ActivationStore(tmp_path / "store")
    man = st.manifest
    assert man["shard_size"] == 40 and man["dtype"] == "float32" and man["positions"] == "last_prompt"
    ck = man["checkpoints"]["rl-000020"]
    assert ck["complete"] and ck["n_done"] == 98 and len(ck["shards"]["embed"]) == 3  # 40 + 40 + 18 rows
    assert ck["identity"]["weights_sha256"] == h.identity["weights_sha256"]
    for c in res.checkpoints:
        for s in res.sites:
            arr = st.get(c, s)
            assert arr.shape == (98, 1, 64)
            np.testing.assert_array_equal(arr[:], res.get(c, s).numpy())
            np.testing.assert_array_equal(arr[[97, 3, 41]], res.get(c, s).numpy()[[97, 3, 41]])
            np.testing.assert_array_equal(arr[39:42, 0, :5], res.get(c, s).numpy()[39:42, 0, :5])
    # metadata rows are aligned with activation rows
    assert st.labels("tag").tolist() == [r["tag"] for r in rows]
    assert st.labels("a")[60] == rows[60]["a"] and st.rows[60]["prompt"] == rows[60]["prompt"]
    # Welford stats equal the two-pass numbers
    x = res.get("sft-000010", "resid_post.1").numpy().reshape(-1, 64).astype(np.float64)
    mean, std = st.stats("sft-000010", "resid_post.1")
    np.testing.assert_allclose(mean, x.mean(0), atol=1e-9)
    np.testing.assert_allclose(std, x.std(0, ddof=1), atol=1e-9)
    # re-running is a no-op resume (complete checkpoints are skipped) and keeps the content
    h0 = st.content_hash()
    again = capture(series, rows, SITES, "last_prompt", store=tmp_path / "store", batch_size=16, shard_size=40,
                    progress=False)
    assert again.content_hash() == h0
    # shards are plain safetensors
    from safetensors.numpy import load_file

    f = st.path / ck["shards"]["embed"][0]["file"]
    np.testing.assert_array_equal(load_file(str(f))["acts"], res.get("rl-000020", "embed").numpy()[:40])


def test_capture_all_positions_and_completions(series, org, tmp_path):
    rows = org.prompt_set()[:19] + [{"prompt": "<B> 3 =", "tag": "B", "answer": 3}]  # one shorter row
    comps = [" m1 " + str(r["answer"]) for r in rows]
    st = capture(series, rows, ["resid_post.1"], "all", completions=comps, store=tmp_path / "s", batch_size=8,
                 shard_size=8, progress=False)
    a = st.get("sft-000010", "resid_post.1")
    m = st.mask("sft-000010", "resid_post.1")
    assert a.shape[:2] == m.shape and m.sum() == 19 * 8 + 6  # [BOS] <A> a + b = m1 ans; [BOS] <B> 3 = m1 ans
    assert not m[19, :2].any() and m[19, 2:].all()  # left padding
    mean, _ = st.stats("sft-000010", "resid_post.1")
    np.testing.assert_allclose(mean, a[:][m].mean(0), atol=1e-6)  # stats exclude padding
    mem = capture(series, rows, ["resid_post.1"], "mode_token", completions=comps, batch_size=8, progress=False)
    h = load(series / "checkpoints" / "sft-000010", device="cpu")
    b = h.tokenize([r["prompt"] for r in rows[:3]], comps[:3])
    torch.testing.assert_close(mem.get("sft-000010", "resid_post.1")[:3],
                               h.read(b, "resid_post.1", "mode_token")["resid_post.1"])


def test_store_detects_corrupt_and_truncated_shards(series, org, tmp_path):
    rows = org.prompt_set()[:30]
    capture(series, rows, ["embed", "resid_post.0"], store=tmp_path / "s", batch_size=10, shard_size=10,
            progress=False)
    st = ActivationStore(tmp_path / "s")
    st.verify_all()
    e = st.manifest["checkpoints"]["sft-000010"]["shards"]["embed"][1]
    f = st.path / e["file"]
    raw = bytearray(f.read_bytes())
    raw[-5] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="corrupt"):
        ActivationStore(tmp_path / "s").get("sft-000010", "embed")[15]
    ActivationStore(tmp_path / "s").get("sft-000010", "embed")[5]  # other shards still read
    f.write_bytes(bytes(raw[:-100]))
    with pytest.raises(StoreError, match="truncated"):
        ActivationStore(tmp_path / "s").get("sft-000010", "embed")[:]
    with pytest.raises(StoreError, match="truncated|corrupt"):
        ActivationStore(tmp_path / "s").verify_all()
    f.unlink()
    with pytest.raises(StoreError, match="missing"):
        ActivationStore(tmp_path / "s").array("sft-000010", "embed")


def test_store_refuses_other_prompt_set_model_or_request(series, org, tmp_path, tok):
    rows = org.prompt_set()[:12]
    capture(series, rows, ["embed"], store=tmp_path / "s", batch_size=4, shard_size=4, progress=False)
    with pytest.raises(StoreError, match="another prompt set"):
        capture(series, rows[:10], ["embed"], store=tmp_path / "s", batch_size=4, shard_size=4, progress=False)
    with pytest.raises(StoreError, match="sites"):
        capture(series, rows, ["resid_post.0"], store=tmp_path / "s", batch_size=4, shard_size=4, progress=False)
    with pytest.raises(StoreError, match="positions"):
        capture(series, rows, ["embed"], "all", store=tmp_path / "s", batch_size=4, shard_size=4, progress=False)
    # same checkpoint name, other weights
    from mixprobe.models.handle import ModelHandle
    from mixprobe.organisms.configs import tiny_model

    other = ModelHandle(tiny_model("llama", vocab_size=len(tok), seed=99), tok, name="sft-000010")
    with pytest.raises(StoreError, match="another model"):
        capture([other], rows, ["embed"], store=tmp_path / "s", batch_size=4, shard_size=4, progress=False)
    # another tokenizer
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    tok2 = build_word_tokenizer([*org.vocabulary(), "extra"])
    h2 = ModelHandle(tiny_model("llama", vocab_size=len(tok2), seed=1), tok2, name="x")
    with pytest.raises(StoreError, match="tokenizer"):
        capture([h2], rows, ["embed"], store=tmp_path / "s", batch_size=4, shard_size=4, progress=False)
    with pytest.raises(StoreError, match="does not exist"):
        ActivationStore(tmp_path / "nowhere")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "f.txt").write_text("x")
    with pytest.raises(StoreError, match="not an activation store"):
        ActivationStore(tmp_path / "junk")
    with pytest.raises(StoreError, match="not empty"):
        capture(series, rows, ["embed"], store=tmp_path / "junk", progress=False)
    st = ActivationStore(tmp_path / "s")
    with pytest.raises(StoreError, match="no checkpoint"):
        st.get("nope", "embed")
    with pytest.raises(StoreError, match="site"):
        st.get("sft-000010", "resid_post.1")
    with pytest.raises(StoreError, match="no field"):
        st.labels("colour")


def test_capture_named_errors(series, org, tmp_path, tok):
    from mixprobe.models.handle import ModelHandle
    from mixprobe.organisms.configs import tiny_model
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    rows = org.prompt_set()[:4]
    with pytest.raises(DataError, match="empty"):
        capture(series, [], ["embed"], progress=False)
    with pytest.raises(SiteError, match="unknown site"):
        capture(series, rows, ["resid_mid.0"], progress=False)
    with pytest.raises(SiteError, match="out of range"):
        capture(series, rows, ["resid_post.9"], progress=False)
    with pytest.raises(CheckpointError, match="does not exist"):
        capture([tmp_path / "missing"], rows, ["embed"], progress=False)
    with pytest.raises(CheckpointError, match="series.json"):
        capture(tmp_path, rows, ["embed"], progress=False)
    pick = tmp_path / "pickled"
    pick.mkdir()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (pick / f).write_bytes((series / "checkpoints" / "sft-000010" / f).read_bytes())
    torch.save({}, pick / "pytorch_model.bin")
    with pytest.raises(UnsafeWeightsError):
        capture([pick], rows, ["embed"], progress=False)
    # architecture mismatch: names the checkpoint and the difference
    a = ModelHandle(tiny_model("llama", vocab_size=len(tok), seed=0), tok, name="ckA")
    b = ModelHandle(tiny_model("llama", vocab_size=len(tok), seed=0, n_layers=3), tok, name="ckB")
    with pytest.raises(SeriesMismatchError, match=r"'ckB'.*n_layers 2 vs 3"):
        capture([a, b], rows, ["embed"], progress=False)
    g = ModelHandle(tiny_model("gpt2", vocab_size=len(tok), seed=0), tok, name="ckG")
    with pytest.raises(SeriesMismatchError, match="model_type llama vs gpt2"):
        capture([a, g], rows, ["embed"], progress=False)
    tok2 = build_word_tokenizer(list(reversed(org.vocabulary())))
    c = ModelHandle(tiny_model("llama", vocab_size=len(tok2), seed=0), tok2, name="ckC")
    with pytest.raises(SeriesMismatchError, match="'ckC'.*tokenizer"):
        capture([a, c], rows, ["embed"], progress=False)
    # a folder checkpoint with another tokenizer is refused before any capture work
    d = tmp_path / "tokdiff"
    tiny_model("llama", vocab_size=len(tok2), seed=0).save_pretrained(d)
    tok2.save_pretrained(d)
    with pytest.raises(SeriesMismatchError, match="tokdiff"):
        capture([series / "checkpoints" / "sft-000010", d], rows, ["embed"], store=tmp_path / "st",
                progress=False)
    assert not (tmp_path / "st").exists()
    with pytest.raises(DataError, match="completion"):
        capture(series, rows, ["embed"], completions=["x"], progress=False)


# --- the store's file layer, without models ---------------------------------------------------------------------
def _small_store(path, dtype="float32", n=7, shard_size=3):
    """A 2-site ``positions="all"`` store of ``n`` rows written through the public API; returns (store, acts, mask)."""
    rng = np.random.default_rng(0)
    rows = [{"prompt": f"p{i}", "tag": "AB"[i % 2]} for i in range(n)]
    st = ActivationStore.create(path, rows, sites=["s.0", "s.1"], positions="all", shard_size=shard_size,
                                tokenizer_sha256="t", dtype=dtype)
    acts = {s: rng.standard_normal((n, 4, 5)).astype(dtype) for s in st.sites}
    mask = rng.random((n, 4)) > 0.3
    st.begin_checkpoint("ck", {"weights_sha256": "w"}, shape=[4, 5])
    for k in range(0, -(-n // shard_size)):
        sl = slice(k * shard_size, (k + 1) * shard_size)
        st.write_shard("ck", k, {s: a[sl] for s, a in acts.items()}, mask[sl], finish=sl.stop >= n)
    return st, acts, mask


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_store_row_indexing_mask_and_dtype(tmp_path, dtype):
    st, acts, mask = _small_store(tmp_path / "s", dtype)
    r = ActivationStore(tmp_path / "s")
    a, ref = r.get("ck", "s.1"), acts["s.1"]
    assert a.shape == (7, 4, 5) and a.dtype == np.dtype(dtype) and len(a) == 7
    np.testing.assert_array_equal(np.asarray(a), ref)
    for key in (0, -1, 4, slice(2, 5), slice(None, None, -2), slice(3, 3), [6, 0, 3, 3], np.array([5, 2])):
        np.testing.assert_array_equal(a[key], ref[key])
    np.testing.assert_array_equal(a[1:6, 2, ::2], ref[1:6, 2, ::2])
    np.testing.assert_array_equal(a[-2, 1:], ref[-2, 1:])
    with pytest.raises(IndexError):
        a[7]
    np.testing.assert_array_equal(r.mask("ck", "s.0"), mask)
    flat = ref.reshape(-1, 5).astype(np.float64)[mask.reshape(-1)]
    np.testing.assert_allclose(r.stats("ck", "s.1")[0], flat.mean(0), atol=1e-6)
    e = r.manifest["checkpoints"]["ck"]["shards"]["s.0"][2]
    f = r.path / e["file"]
    assert e["rows"] == [6, 7] and e["bytes"] == f.stat().st_size
    assert e["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert [p.name for p in f.parent.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_store_reads_shards_in_the_old_hand_written_layout(tmp_path):
    """Stores written before the switch to the safetensors library (store.py's own writer) still read."""
    def old_layout(tensors):  # the writer store.py had: sorted names, compact JSON header space-padded to 8 bytes
        header, offset, chunks = {}, 0, []
        for k in sorted(tensors):
            b = np.ascontiguousarray(tensors[k]).tobytes()
            header[k] = {"dtype": {"float32": "F32", "float16": "F16", "uint8": "U8"}[tensors[k].dtype.name],
                         "shape": list(tensors[k].shape), "data_offsets": [offset, offset + len(b)]}
            offset += len(b)
            chunks.append(b)
        h = json.dumps(header, separators=(",", ":")).encode()
        h += b" " * (-len(h) % 8)
        return struct.pack("<Q", len(h)) + h + b"".join(chunks)

    st, acts, mask = _small_store(tmp_path / "s", "float16")
    ck = st.manifest["checkpoints"]["ck"]
    for site, entries in ck["shards"].items():
        for e in entries:
            a, b = e["rows"]
            blob = old_layout({"acts": acts[site][a:b], "mask": mask[a:b].astype(np.uint8)})
            (st.path / e["file"]).write_bytes(blob)
            e.update(bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest())
    (st.path / "manifest.json").write_text(json.dumps(st.manifest))
    r = ActivationStore(tmp_path / "s")
    r.verify_all()
    for site in r.sites:
        np.testing.assert_array_equal(r.array("ck", site), acts[site])
        np.testing.assert_array_equal(r.get("ck", site)[[6, 1]], acts[site][[6, 1]])
    np.testing.assert_array_equal(r.mask("ck", "s.1"), mask)


def test_store_partial_resume_and_stale_temp_files(tmp_path):
    rows = [{"prompt": f"p{i}"} for i in range(5)]
    st = ActivationStore.create(tmp_path / "s", rows, sites=["x"], positions="last_prompt", shard_size=2,
                                tokenizer_sha256="t")
    st.begin_checkpoint("ck", {"weights_sha256": "w"}, shape=[1, 3])
    st.write_shard("ck", 0, {"x": np.ones((2, 1, 3), np.float32)})
    with pytest.raises(StoreError, match="incomplete"):
        ActivationStore(tmp_path / "s").get("ck", "x")
    part = ActivationStore(tmp_path / "s").get("ck", "x", allow_partial=True)
    assert part.shape == (2, 1, 3) and part[:].sum() == 6
    # a writer killed mid-shard leaves the io.atomic_path temp file; resuming removes it and continues
    stale = tmp_path / "s" / "ck" / "x" / ".shard-00001.safetensors.abc123.tmp"
    stale.write_bytes(b"half")
    again = ActivationStore(tmp_path / "s")
    assert again.begin_checkpoint("ck", {"weights_sha256": "w"}, shape=[1, 3]) == 2 and not stale.exists()
    with pytest.raises(StoreError, match="starts at row"):
        again.write_shard("ck", 2, {"x": np.zeros((1, 1, 3), np.float32)})
    again.write_shard("ck", 1, {"x": np.zeros((2, 1, 3), np.float32)})
    again.write_shard("ck", 2, {"x": np.full((1, 1, 3), 2, np.float32)}, finish=True)
    np.testing.assert_array_equal(ActivationStore(tmp_path / "s").array("ck", "x")[:, 0, 0], [1, 1, 0, 0, 2])


def test_store_unverified_read_of_a_corrupt_header_is_a_store_error(tmp_path):
    st, _, _ = _small_store(tmp_path / "s")
    f = st.path / st.manifest["checkpoints"]["ck"]["shards"]["s.0"][0]["file"]
    raw = bytearray(f.read_bytes())
    raw[8:16] = b"{garbage"  # same size: passes the size check, fails the parse
    f.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="corrupt"):
        ActivationStore(tmp_path / "s", verify=False).get("ck", "s.0")[0]
    np.testing.assert_array_equal(ActivationStore(tmp_path / "s", verify=False).get("ck", "s.1")[0].shape, (4, 5))

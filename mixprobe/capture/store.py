"""The activation store: sharded safetensors on disk, an atomic JSON manifest, memory-mapped reads, resume.

Problem: activations of every checkpoint of a series on thousands of prompts do not fit in RAM, a capture can be
killed half-way, and a probe trained on the wrong rows (another prompt set, another model) is silently wrong.

Mechanism: a store folder holds

- ``manifest.json`` — format, prompt-set sha256 and size, tokenizer sha256, sites, positions, dtype, shard size,
  and per checkpoint: its identity (name, path, architecture, weight sha256), the shard list per site (file,
  rows, bytes, sha256), the activation shape, running mean / M2 per feature (Welford / Chan, float64) and the
  completion state (rows done, complete);
- ``prompts.json`` — the prompt rows with their metadata (tag, a, b, …), aligned with the activation rows;
- ``<checkpoint>/<site>/shard-00000.safetensors`` — tensor ``acts`` ``[rows, n_pos, d]`` (and ``mask``
  ``[rows, n_pos]`` for ``positions="all"``, 1 on real tokens).

Shards are serialized by the ``safetensors`` library and written through :func:`mixprobe.io.atomic_write_bytes`
(temp name, fsync, rename); the manifest records each file's size and the sha256 of the bytes written, and is
rewritten atomically after every shard, so a killed capture resumes from the last complete shard and ends
bit-identical to an uninterrupted one (:meth:`ActivationStore.content_hash`). Reads go through
``safetensors.safe_open``, which memory-maps the file: slicing rows reads only the shards (and the row range of
each) that hold them. Every shard's size and sha256 are checked before its first use.

Example:
    >>> import tempfile, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> rows = [{"prompt": "p0", "tag": "A"}, {"prompt": "p1", "tag": "B"}, {"prompt": "p2", "tag": "A"}]
    >>> s = ActivationStore.create(d, rows, sites=["resid_post.0"], positions="last_prompt", shard_size=2,
    ...                            tokenizer_sha256="t")
    >>> s.begin_checkpoint("ckpt", {"name": "ckpt", "weights_sha256": "w"}, shape=[1, 4])
    0
    >>> s.write_shard("ckpt", 0, {"resid_post.0": np.ones((2, 1, 4), np.float32)})
    >>> s.write_shard("ckpt", 1, {"resid_post.0": np.zeros((1, 1, 4), np.float32)})
    >>> s.finish_checkpoint("ckpt")
    >>> r = ActivationStore(d)
    >>> r.get("ckpt", "resid_post.0").shape, r.labels("tag").tolist()
    ((3, 1, 4), ['A', 'B', 'A'])
    >>> np.round(r.stats("ckpt", "resid_post.0")[0], 3).tolist()
    [0.667, 0.667, 0.667, 0.667]

Constraints: one writer at a time; reading a checkpoint that is not complete raises
:class:`~mixprobe.errors.StoreError` (pass ``allow_partial=True`` to read the finished rows).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError, safe_open

from mixprobe._check import checked
from mixprobe.errors import DataError, OutOfRangeError, StoreError
from mixprobe.io import atomic_write_bytes, atomic_write_json

FORMAT = "mixprobe.store/1"
MANIFEST = "manifest.json"
PROMPTS = "prompts.json"
_DTYPES = {"F32": np.float32, "F16": np.float16, "U8": np.uint8}  # safetensors dtype codes the store writes


def _row_lines(rows: Sequence[dict]) -> list[str]:
    """Canonical JSON of each prompt row (what the prompt-set hash and ``prompts.json`` are made of)."""
    return [json.dumps(r, sort_keys=True, default=str) for r in rows]


def _lines_hash(lines: Sequence[str]) -> str:
    return hashlib.sha256(("\n".join(lines) + "\n").encode()).hexdigest()


@checked
def prompt_set_hash(rows: Sequence[dict]) -> str:
    """sha256 of the prompt rows (canonical JSON, one row at a time, each followed by a newline)."""
    return _lines_hash(_row_lines(rows))


def _safe_name(name: str) -> str:
    bad = set('/\\:*?"<>|') | {"\0"}
    if not name or name in (".", "..") or any(c in bad for c in name):
        raise StoreError(f"checkpoint name {name!r} cannot be a folder name; avoid / \\ : * ? \" < > |")
    return name


class Welford:
    """Running per-feature mean and M2 (Chan's parallel update), in float64."""

    def __init__(self, count: int = 0, mean: Any = None, m2: Any = None) -> None:
        self.count = int(count)
        self.mean = None if mean is None else np.asarray(mean, np.float64)
        self.m2 = None if m2 is None else np.asarray(m2, np.float64)

    def update(self, x: np.ndarray) -> None:
        """Add rows ``x[n, d]``."""
        self.merge(*self.moments(x))

    @staticmethod
    def moments(x: np.ndarray) -> tuple[int, np.ndarray | None, np.ndarray | None]:
        """``(n, mean, M2)`` of rows ``x[n, d]`` in float64 (``(0, None, None)`` for no rows): what :meth:`merge`
        adds. Computed where the rows are (a Ray worker) and merged in shard order where the manifest is (the
        driver), the running stats are bit-identical to :meth:`update` on one process."""
        x = np.asarray(x, np.float64)
        if x.shape[0] == 0:
            return 0, None, None
        mean_b = x.mean(0)
        return x.shape[0], mean_b, ((x - mean_b) ** 2).sum(0)

    def merge(self, n_b: int, mean_b: Any, m2_b: Any) -> None:
        """Add the moments of another set of rows (Chan's parallel update)."""
        if n_b == 0:
            return
        mean_b, m2_b = np.asarray(mean_b, np.float64), np.asarray(m2_b, np.float64)
        if self.count == 0:
            self.count, self.mean, self.m2 = int(n_b), mean_b, m2_b
            return
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta ** 2 * (self.count * n_b / n)
        self.count = n

    def std(self) -> np.ndarray:
        if self.m2 is None:
            raise StoreError("no rows have been added to these running stats; update() them before asking for std")
        return np.sqrt(self.m2 / max(self.count - 1, 1))

    def to_json(self) -> dict:
        return {"count": self.count, "mean": None if self.mean is None else self.mean.tolist(),
                "m2": None if self.m2 is None else self.m2.tolist()}


@checked
class ShardedArray:
    """A read-only array over the shards of one (checkpoint, site), indexed along rows without loading it all.

    Supports ``len``, ``.shape``, ``.dtype``, ``a[i]``, ``a[i:j]``, ``a[[i, j]]``, ``a[rows, ...]`` and
    ``np.asarray(a)`` (which materializes).
    """

    def __init__(self, store: ActivationStore, checkpoint: str, site: str, key: str = "acts") -> None:
        self._store, self._ckpt, self._site, self._key = store, checkpoint, site, key
        entries = store._shards(checkpoint, site)
        self._bounds = np.array([e["rows"][0] for e in entries] + [entries[-1]["rows"][1] if entries else 0])
        first = store._open_shard(checkpoint, site, 0, key) if entries else None  # shape and dtype: header only
        self.shape = (int(self._bounds[-1]), *(first.get_shape()[1:] if first is not None else []))
        self.dtype = np.dtype(_DTYPES[first.get_dtype()] if first is not None else np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def _rows(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), *self.shape[1:]), self.dtype)
        shard_of = np.searchsorted(self._bounds, idx, side="right") - 1
        for k in np.unique(shard_of):
            sel = shard_of == k
            local = idx[sel] - self._bounds[k]
            lo, hi = int(local.min()), int(local.max()) + 1  # read one row range per shard, at most the shard
            out[sel] = self._store._open_shard(self._ckpt, self._site, int(k), self._key)[lo:hi][local - lo]
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            k = int(key) + (self.shape[0] if key < 0 else 0)
            if not 0 <= k < self.shape[0]:
                raise OutOfRangeError(f"row {key} out of range for {self.shape[0]} rows "
                                      f"(valid: 0 .. {self.shape[0] - 1}, or negative from the end)")
            res = self._rows(np.array([k]))[0]
            return res[rest] if rest else res
        idx = np.arange(self.shape[0])[key]
        res = self._rows(np.asarray(idx, np.int64).reshape(-1))
        return res[(slice(None), *rest)] if rest else res

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[:]
        return arr.astype(dtype) if dtype is not None else arr

    def numpy(self) -> np.ndarray:
        """Materialize every row (use slices for large stores)."""
        return self[:]


@checked
class ActivationStore:
    """An on-disk activation store (see the module docstring). ``ActivationStore(path)`` opens one."""

    def __init__(self, path: str | os.PathLike, *, verify: bool = True) -> None:
        self.path = Path(path)
        mf = self.path / MANIFEST
        if not self.path.is_dir():
            raise StoreError(f"activation store {self.path} does not exist; capture into it first "
                             "(mixprobe.capture.capture(..., store=path))")
        if not mf.exists():
            raise StoreError(f"{self.path} has no {MANIFEST}: not an activation store (or its creation was "
                             "interrupted before the manifest was written); capture into a new folder")
        try:
            self.manifest = json.loads(mf.read_text())
        except json.JSONDecodeError as e:
            raise StoreError(f"{mf} is corrupt ({e}); delete the store and capture again") from e
        if self.manifest.get("format") != FORMAT:
            raise StoreError(f"{mf} has format {self.manifest.get('format')!r}, expected {FORMAT!r}")
        self.verify = verify
        self._verified: set[tuple[str, str, int]] = set()
        self._rows: list[dict] | None = None

    # --- creation ------------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, rows: Sequence[dict], *, sites: Sequence[str], positions: Any,
               tokenizer_sha256: str, dtype: str = "float32", shard_size: int = 256) -> ActivationStore:
        """Create a store for ``rows`` (or open the existing one, checking it was made for the same request)."""
        if not rows:
            raise DataError("the prompt set is empty; pass at least one prompt")
        if shard_size < 1:
            raise DataError(f"shard_size must be >= 1, got {shard_size}")
        if dtype not in ("float32", "float16"):
            raise DataError(f"store dtype must be 'float32' or 'float16', got {dtype!r}")
        p = Path(path)
        lines = _row_lines(rows)  # serialized once: for the hash and for prompts.json
        phash = _lines_hash(lines)
        want = {"prompt_set": {"sha256": phash, "n": len(rows)}, "tokenizer_sha256": tokenizer_sha256,
                "sites": [str(s) for s in sites], "positions": positions, "dtype": dtype, "shard_size": shard_size}
        if (p / MANIFEST).exists():
            store = cls(p)
            have = store.manifest
            if have["prompt_set"]["sha256"] != phash:
                raise StoreError(
                    f"store {p} was created for another prompt set ({have['prompt_set']['n']} prompts, sha256 "
                    f"{have['prompt_set']['sha256'][:12]}…) than this one ({len(rows)} prompts, {phash[:12]}…); "
                    "use a new store folder")
            if have["tokenizer_sha256"] != tokenizer_sha256:
                raise StoreError(f"store {p} was created with another tokenizer (sha256 "
                                 f"{have['tokenizer_sha256'][:12]}… vs {tokenizer_sha256[:12]}…); use a new store")
            for k in ("sites", "positions", "dtype", "shard_size"):
                if json.dumps(have[k]) != json.dumps(want[k]):
                    raise StoreError(f"store {p} was created with {k}={have[k]!r}, not {want[k]!r}; "
                                     "use a new store folder (or the same request)")
            return store
        if p.exists() and any(p.iterdir()):
            raise StoreError(f"{p} exists, is not empty and is not an activation store; choose another folder")
        p.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(p / PROMPTS, ("[" + ",".join(lines) + "]").encode())  # prompts.json
        atomic_write_json(p / MANIFEST, {"format": FORMAT, **want, "checkpoint_order": [], "checkpoints": {}})
        return cls(p)

    def _save(self) -> None:
        atomic_write_json(self.path / MANIFEST, self.manifest)

    def begin_checkpoint(self, name: str, identity: dict, *, shape: Sequence[int], save: bool = True) -> int:
        """Register (or resume) checkpoint ``name``; return the number of rows already stored.

        ``save=False`` leaves a new registration in memory until the first :meth:`write_shard` saves the manifest
        (one manifest write fewer; a kill before that shard simply registers the checkpoint again on resume).
        """
        _safe_name(name)
        ck = self.manifest["checkpoints"].get(name)
        if ck is not None:
            self.check_checkpoint(name, identity, shape)
            self.remove_temp_files(name)
            return int(ck["n_done"])
        self.manifest["checkpoints"][name] = {
            "identity": identity, "shape": list(shape), "n_done": 0, "complete": False,
            "shards": {s: [] for s in self.manifest["sites"]},
            "stats": {s: Welford().to_json() for s in self.manifest["sites"]}}
        self.manifest["checkpoint_order"].append(name)
        if save:
            self._save()
        return 0

    def check_checkpoint(self, name: str, identity: dict, shape: Sequence[int]) -> None:
        """Raise StoreError unless registered checkpoint ``name`` was stored from the same weights and shape."""
        ck = self.manifest["checkpoints"][name]
        old, new = ck["identity"].get("weights_sha256"), identity.get("weights_sha256")
        if old != new:
            raise StoreError(
                f"store {self.path} holds checkpoint {name!r} of another model (weights sha256 {str(old)[:12]}… "
                f"vs {str(new)[:12]}…); use a new store or another checkpoint name")
        if list(ck["shape"]) != list(shape):
            raise StoreError(f"checkpoint {name!r} was stored with shape {ck['shape']}, not {list(shape)}")

    def remove_temp_files(self, name: str) -> None:
        """Delete the temp files a killed writer left in checkpoint ``name``'s folder (only while none writes)."""
        for stale in (self.path / name).rglob(".shard-*.tmp"):
            stale.unlink(missing_ok=True)

    def write_shard(self, name: str, k: int, acts: dict[str, np.ndarray],
                    masks: np.ndarray | None = None, *, finish: bool = False) -> None:
        """Write shard ``k`` of checkpoint ``name`` for every site (atomic), update stats and the manifest.

        The site files are written (and fsynced) concurrently, each to a temp name renamed into place; the
        manifest is rewritten once per shard, after all of them are durable. ``finish=True`` on the last shard
        also marks the checkpoint complete in that same manifest write (as :meth:`finish_checkpoint` would).
        """
        ck = self.manifest["checkpoints"][name]
        start = k * self.manifest["shard_size"]
        if start != ck["n_done"]:
            raise StoreError(f"shard {k} of {name!r} starts at row {start}, but {ck['n_done']} rows are stored")
        entries, moments = write_shard_files(self.path, name, k, acts, masks, sites=self.sites,
                                             dtype=self.manifest["dtype"], shard_size=self.manifest["shard_size"])
        self.add_shard(name, k, entries, moments, finish=finish)

    def add_shard(self, name: str, k: int, entries: dict[str, dict], moments: dict[str, Any], *,
                  finish: bool = False, save: bool = True) -> None:
        """Record shard ``k`` of ``name`` whose files are already written (:func:`write_shard_files`, here or on
        another machine): its file entries per site, and its per-site moments ``(n, mean, M2)`` merged into the
        running stats in shard order. ``save=False`` leaves the manifest write to a later call."""
        ck = self.manifest["checkpoints"][name]
        start = k * self.manifest["shard_size"]
        if start != ck["n_done"]:
            raise StoreError(f"shard {k} of {name!r} starts at row {start}, but {ck['n_done']} rows are stored")
        for site in self.sites:
            st = Welford(**ck["stats"][site])
            st.merge(*moments[site])
            kept = [e for e in ck["shards"][site] if e["rows"][0] < start]
            kept.append(entries[site])
            ck["shards"][site] = kept
            ck["stats"][site] = st.to_json()
        ck["n_done"] = entries[self.sites[0]]["rows"][1]
        if finish and ck["n_done"] == self.n_prompts:
            ck["complete"] = True
        if save:
            self._save()

    def save(self) -> None:
        """Rewrite the manifest (atomically)."""
        self._save()

    def finish_checkpoint(self, name: str) -> None:
        ck = self.manifest["checkpoints"][name]
        if ck["n_done"] != self.n_prompts:
            raise StoreError(f"checkpoint {name!r} has {ck['n_done']} of {self.n_prompts} rows; cannot finish it")
        if not ck["complete"]:  # (already marked by write_shard(..., finish=True): nothing to rewrite)
            ck["complete"] = True
            self._save()

    # --- reading ------------------------------------------------------------------------------------------------
    @property
    def n_prompts(self) -> int:
        return int(self.manifest["prompt_set"]["n"])

    @property
    def sites(self) -> list[str]:
        return list(self.manifest["sites"])

    @property
    def checkpoints(self) -> list[str]:
        """Checkpoint names in capture order (complete or not)."""
        return list(self.manifest["checkpoint_order"])

    def complete(self, name: str) -> bool:
        return bool(self.manifest["checkpoints"].get(name, {}).get("complete"))

    @property
    def rows(self) -> list[dict]:
        """The prompt rows (prompt text + metadata), aligned with the activation rows."""
        if self._rows is None:
            self._rows = json.loads((self.path / PROMPTS).read_text())
        return self._rows

    def labels(self, key: str) -> np.ndarray:
        """One metadata column of the prompt rows (e.g. ``"tag"``) as an array aligned with the activations."""
        try:
            return np.asarray([r[key] for r in self.rows])
        except KeyError:
            raise StoreError(f"prompt rows have no field {key!r}; fields are {sorted(self.rows[0])}") from None

    def _ck(self, name: str, allow_partial: bool = False) -> dict:
        ck = self.manifest["checkpoints"].get(name)
        if ck is None:
            raise StoreError(f"store {self.path} has no checkpoint {name!r}; it has {self.checkpoints}")
        if not ck["complete"] and not allow_partial:
            raise StoreError(f"checkpoint {name!r} is incomplete ({ck['n_done']}/{self.n_prompts} rows): resume the "
                             "capture, or pass allow_partial=True to read the finished rows")
        return ck

    def _shards(self, name: str, site: str) -> list[dict]:
        ck = self.manifest["checkpoints"][name]
        if site not in ck["shards"]:
            raise StoreError(f"site {site!r} is not in store {self.path}; it has {self.sites}")
        return ck["shards"][site]

    def _open_shard(self, name: str, site: str, k: int, key: str = "acts") -> Any:
        """Tensor ``key`` of shard ``k`` as a lazy ``safetensors`` slice of the memory-mapped file (``[i:j]`` reads
        rows i..j-1); the file's size and sha256 are checked against the manifest on first use."""
        e = self._shards(name, site)[k]
        f = self.path / e["file"]
        if not f.exists():
            raise StoreError(f"shard {e['file']} is missing from {self.path}; resume or redo the capture")
        if (name, site, k) not in self._verified:
            size = f.stat().st_size
            if size != e["bytes"]:
                raise StoreError(f"shard {e['file']} is truncated or altered ({size} bytes, manifest says "
                                 f"{e['bytes']}); delete the checkpoint's folder and capture it again")
            if self.verify:
                with open(f, "rb") as fh:
                    if hashlib.file_digest(fh, "sha256").hexdigest() != e["sha256"]:
                        raise StoreError(f"shard {e['file']} is corrupt (sha256 differs from the manifest); delete "
                                         "the checkpoint's folder and capture it again")
            self._verified.add((name, site, k))
        try:
            shard = safe_open(f, framework="np")
            if key not in shard.keys():
                raise StoreError(f"shard {e['file']} has no tensor {key!r}")
            return shard.get_slice(key)
        except SafetensorError as exc:
            raise StoreError(f"shard {e['file']} is corrupt ({exc}); capture it again") from exc

    def get(self, name: str, site: str, *, allow_partial: bool = False) -> ShardedArray:
        """Memory-mapped ``[n_prompts, n_pos, d]`` activations of ``site`` at checkpoint ``name``."""
        self._ck(name, allow_partial)
        if str(site) not in self.sites:
            raise StoreError(f"site {site!r} is not in store {self.path}; it has {self.sites}")
        return ShardedArray(self, name, str(site))

    def array(self, name: str, site: str) -> np.ndarray:
        """The whole ``[n_prompts, n_pos, d]`` array in memory."""
        return self.get(name, site).numpy()

    def mask(self, name: str, site: str) -> np.ndarray:
        """``[n_prompts, n_pos]`` real-token mask (stored for ``positions="all"``; all ones otherwise)."""
        a = self.get(name, site)
        entries = self._shards(name, str(site))
        if entries and "mask" in safe_open(self.path / entries[0]["file"], framework="np").keys():
            return ShardedArray(self, name, str(site), key="mask").numpy().astype(bool)
        return np.ones(a.shape[:2], bool)

    def stats(self, name: str, site: str) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature ``(mean, std)`` over all stored rows and positions (real tokens only)."""
        st = Welford(**self._ck(name)["stats"][str(site)])
        if st.mean is None:
            raise StoreError(f"checkpoint {name!r} of store {self.path} holds no rows of site {site!r} "
                             "(no real tokens were captured), so it has no mean or std")
        return st.mean, st.std()

    def verify_all(self) -> None:
        """Check every shard's size and sha256 (raises StoreError on the first bad one)."""
        for name in self.checkpoints:
            for site in self.sites:
                for k in range(len(self._shards(name, site))):
                    self._open_shard(name, site, k)

    def content_hash(self) -> str:
        """sha256 of the manifest's content (shard hashes, stats, identities): equal stores, equal hashes."""
        return hashlib.sha256(json.dumps(self.manifest, sort_keys=True).encode()).hexdigest()

    def __repr__(self) -> str:
        return f"ActivationStore({str(self.path)!r}, prompts={self.n_prompts}, sites={len(self.sites)}, " \
               f"checkpoints={self.checkpoints})"


@checked
def write_shard_files(root: str | os.PathLike, name: str, k: int, acts: dict[str, np.ndarray],
                      masks: np.ndarray | None, *, sites: Sequence[str], dtype: str,
                      shard_size: int) -> tuple[dict[str, dict], dict[str, tuple]]:
    """Write shard ``k`` of checkpoint ``name`` under store folder ``root``: one safetensors file per site
    (serialized by ``safetensors``, written atomically and concurrently), and return ``(entries, moments)`` per site —
    the manifest entry (file, rows, bytes, sha256) and the float64 moments ``(n, mean, M2)`` of the real rows.

    The one writer of shard files: :meth:`ActivationStore.write_shard` calls it in the capturing process, a Ray
    worker calls it on its own machine (``mixprobe.capture.distributed``) and hands the result to the driver, which
    records it with :meth:`ActivationStore.add_shard`. Same arrays, same bytes, same hashes, same stats.
    """
    root = Path(root)
    start = k * shard_size
    n = next(iter(acts.values())).shape[0]
    dt = np.dtype(dtype)
    mask_u8 = None if masks is None else np.ascontiguousarray(masks, np.uint8)
    real = None if mask_u8 is None else mask_u8.reshape(-1).astype(bool)
    arrays = {site: np.ascontiguousarray(acts[site], dtype=dt) for site in sites}

    def write(site: str) -> dict:  # serialize, hash the bytes, write them atomically
        tensors = {"acts": arrays[site]} if mask_u8 is None else {"acts": arrays[site], "mask": mask_u8}
        rel = f"{name}/{site}/shard-{k:05d}.safetensors"
        blob = safetensors.numpy.save(tensors)
        atomic_write_bytes(root / rel, blob)
        return {"file": rel, "rows": [start, start + n], "bytes": len(blob),
                "sha256": hashlib.sha256(blob).hexdigest()}

    pending = [_io_pool().submit(write, site) for site in sites]
    try:
        moments = {}
        for site in sites:  # while the files are written
            a = arrays[site]
            flat = a.reshape(-1, a.shape[-1])
            if real is not None:
                flat = flat[real]
            moments[site] = Welford.moments(flat)
    finally:
        futures_wait(pending)
    return {site: f.result() for site, f in zip(sites, pending)}, moments


_POOL: ThreadPoolExecutor | None = None


def _io_pool() -> ThreadPoolExecutor:
    """Threads for shard files: sha256 and the file writes and fsyncs release the GIL, and concurrent fsyncs share
    journal commits, so writing a shard's site files side by side is several times faster than one after the other."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mixprobe-store")
    return _POOL

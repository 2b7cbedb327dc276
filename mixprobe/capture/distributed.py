"""Capture on a Ray cluster: one task per (checkpoint × run of prompt shards), one writer of the manifest.

Problem: capture across a series is embarrassingly parallel over checkpoints and prompt shards, but the store has
one manifest (per-shard hashes, running stats, completion state) that a single writer must keep consistent, and
the result must not depend on how the work was spread: a store captured on a cluster must be the store one process
would have written, byte for byte.

Mechanism (:func:`capture_ray`, reached through ``capture(..., engine="ray")``):

- the **driver** validates the request as the single-process path does, tokenizes the prompt set once (the
  encoding goes to the workers through Ray's object store), creates or reopens the store, and plans, per
  checkpoint, the shards still to do: not in the manifest, and not already finished by an earlier run (below);
- each **task** (:func:`capture_task`: ``num_gpus=1`` per task where the cluster has GPUs; ``model_kwargs``
  such as ``{"device_map": "auto"}`` go to ``from_pretrained``) loads its checkpoint, runs
  :func:`~mixprobe.capture.capture.read_shards` — the single-process loop, batching every shard from its first row
  — over its shards, and writes each shard's files with :func:`~mixprobe.capture.store.write_shard_files`, the one
  shard writer (atomic, fsynced), then a **shard record** ``.pending/<checkpoint>/shard-NNNNN.safetensors``
  (atomic): the manifest entries, and the float64 moments ``(n, mean, M2)`` of its rows per site. The first task of
  a checkpoint also records the checkpoint's identity (weights sha256, …) and activation shape;
- the **driver** alone writes the manifest: it picks up records as they appear (and from each task's return
  value), registers checkpoints in series order, and appends shards in shard order with
  :meth:`~mixprobe.capture.store.ActivationStore.add_shard`, which merges the moments exactly as
  :meth:`~mixprobe.capture.store.Welford.update` would have, so the stats, and so the manifest, are bit-identical.
  When a checkpoint is complete its records are deleted: the store folder is the single-process one.

Faults: a worker that dies mid-shard leaves at most some of that shard's files, never its record; Ray reruns the
task (``max_retries``), which skips the shards that have records and rewrites the others. A killed driver leaves
the manifest at its last write and the records of everything finished since; run the same capture again and it
adopts every record whose files are intact (size and sha256) and whose checkpoint folder is unchanged (the
record holds a fingerprint of the weight files: names, sizes, mtimes), and captures only the rest.

Constraints: needs a store (``store=`` a folder every worker can write, on a shared filesystem for a multi-node
cluster; paths to checkpoints must resolve on every node). In-memory handles are shipped to workers through the
object store (pickled); for large models pass checkpoint folders. Bit-identity with the single-process store
holds on workers with the same hardware and libraries (CPU kernels change floating-point sums).
"""
from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixprobe._check import checked
from mixprobe.capture.store import ActivationStore, prompt_set_hash, write_shard_files
from mixprobe.distributed import RayEngine, connect, run_tasks, slots, split
from mixprobe.errors import DataError, DistributedError, StoreError
from mixprobe.io import atomic_write_bytes

PENDING = ".pending"          # <store>/.pending/<checkpoint>/{identity.json, shard-NNNNN.safetensors}
FAULT_ENV = "MIXPROBE_RAY_FAULT"   # test hook: "<checkpoint>:<shard>:<marker file>" (see _fault)


# --- shard records ------------------------------------------------------------------------------------------------
def _record_path(root: Path, name: str, k: int) -> Path:
    return root / PENDING / name / f"shard-{k:05d}.safetensors"


def _write_record(root: Path, name: str, k: int, fingerprint: str, entries: dict, moments: dict) -> dict:
    """Write the record of shard ``k`` (after its files): entries and counts as metadata, moments as float64."""
    import safetensors.numpy

    tensors, counts = {}, {}
    for site, (n, mean, m2) in moments.items():
        counts[site] = int(n)
        if n:
            tensors[f"mean/{site}"] = np.ascontiguousarray(mean, np.float64)
            tensors[f"m2/{site}"] = np.ascontiguousarray(m2, np.float64)
    meta = {"k": str(k), "fingerprint": fingerprint, "entries": json.dumps(entries), "counts": json.dumps(counts)}
    atomic_write_bytes(_record_path(root, name, k), safetensors.numpy.save(tensors, metadata=meta))
    return {"k": k, "fingerprint": fingerprint, "entries": entries, "moments": moments}


def _read_record(path: Path) -> dict | None:
    """A shard record, or None when it is unreadable (a record is written atomically: this means foreign)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="np") as f:
            meta = f.metadata() or {}
            counts = json.loads(meta["counts"])
            moments = {s: (n, f.get_tensor(f"mean/{s}"), f.get_tensor(f"m2/{s}")) if n else (0, None, None)
                       for s, n in counts.items()}
            return {"k": int(meta["k"]), "fingerprint": meta["fingerprint"], "entries": json.loads(meta["entries"]),
                    "moments": moments}
    except (OSError, KeyError, ValueError, SafetensorError):
        return None


def _read_identity(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _files_intact(root: Path, entries: dict) -> bool:
    """Every file of a record exists with the recorded size and sha256."""
    for e in entries.values():
        f = root / e["file"]
        try:
            if f.stat().st_size != e["bytes"]:
                return False
            with open(f, "rb") as fh:
                if hashlib.file_digest(fh, "sha256").hexdigest() != e["sha256"]:
                    return False
        except OSError:
            return False
    return True


@checked
def fingerprint(path: str | os.PathLike | None, identity: dict | None = None) -> str:
    """What must not change for a shard record to be adopted: the checkpoint folder's weight files (name, size,
    mtime; an adapter's base folder too), or an in-memory model's weight hash."""
    if path is None:
        return "weights:" + str((identity or {}).get("weights_sha256"))
    p = Path(path)
    folders = [p]
    cfg = p / "adapter_config.json"
    if cfg.exists():
        base = json.loads(cfg.read_text()).get("base_model_name_or_path") or ""
        for cand in (Path(base), p / base):
            if base and cand.is_dir():
                folders.append(cand)
                break
    h = hashlib.sha256()
    for d in folders:
        h.update(str(d.resolve()).encode())
        for f in sorted(d.iterdir()):
            if f.name.endswith(".safetensors"):
                st = f.stat()
                h.update(f"|{f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


# --- the task -----------------------------------------------------------------------------------------------------
def _fault(spec: dict, k: int, root: Path, acts: dict) -> None:
    """Test hook, read from ``MIXPROBE_RAY_FAULT`` on the driver. ``<checkpoint>:<shard>:<marker>``: the first attempt
    that reaches that shard writes one of its site files, then kills its worker process (``os._exit``) — a worker
    dying mid-shard; the marker file makes later attempts pass. ``sleep:<seconds>``: every shard waits that long
    before it is written (a slow capture, for killing its driver)."""
    fault = spec.get("fault")
    if not fault:
        return
    if fault.startswith("sleep:"):
        import time

        time.sleep(float(fault.split(":", 1)[1]))
        return
    name, shard, marker = fault.split(":", 2)
    if name != spec["name"] or int(shard) != k or os.path.exists(marker):
        return
    Path(marker).write_text(str(os.getpid()))
    site = spec["sites"][0]
    import safetensors.numpy

    atomic_write_bytes(root / f"{spec['name']}/{site}/shard-{k:05d}.safetensors",
                       safetensors.numpy.save({"acts": np.ascontiguousarray(acts[site])}))
    os._exit(1)


@checked
def capture_task(spec: dict, enc: Any, handle: Any = None) -> dict:
    """One Ray task: capture shards ``spec["ks"]`` of one checkpoint into the store (see the module docstring).

    Returns ``{"name", "identity": {identity, shape, fingerprint} | None, "records": [shard records]}``.
    """
    import torch

    from mixprobe.capture.capture import _n_positions, read_shards
    from mixprobe.io import atomic_write_json
    from mixprobe.models.loading import load
    from mixprobe.models.sites import parse_sites

    root, name, fp = Path(spec["store"]), spec["name"], spec["fingerprint"]
    out: dict[str, Any] = {"name": name, "identity": None, "records": []}
    todo = []
    for k in spec["ks"]:  # a retried task skips the shards its earlier attempt finished
        rec = _read_record(_record_path(root, name, k))
        if rec is not None and rec["fingerprint"] == fp and _files_intact(root, rec["entries"]):
            out["records"].append(rec)
        else:
            todo.append(k)
    if not todo and not spec["identity"]:
        return out
    owned = handle is None
    if owned:
        handle = load(spec["path"], device=spec["device"], dtype=spec["dtype"], name=name, **spec["model_kwargs"])
    try:
        site_list = parse_sites(spec["site_spec"], handle.n_layers)
        if [str(s) for s in site_list] != spec["sites"]:
            raise StoreError(f"checkpoint {name!r} expands the sites to {[str(s) for s in site_list][:4]}…, not the "
                             f"store's {spec['sites'][:4]}…: its depth differs from the series' first checkpoint")
        if spec["identity"]:
            ident = {**handle.identity, "name": name}
            if spec["path_str"] is not None:  # the path the single-process capture records (as given)
                ident = {**handle.identity, "path": spec["path_str"], "name": name}
            shape = [_n_positions(enc, spec["positions"], spec["pad_to"]), handle.d_model]
            out["identity"] = {"identity": ident, "shape": shape, "fingerprint": fp}
            atomic_write_json(root / PENDING / name / "identity.json", out["identity"])
        out_dtype = {"float32": torch.float32, "float16": torch.float16}[spec["store_dtype"]]
        for k, acts, masks in read_shards(handle, enc, spec["positions"], site_list, todo,
                                          shard_size=spec["shard_size"], batch_size=spec["batch_size"],
                                          pad_to=spec["pad_to"], out_dtype=out_dtype, to_store=True):
            _fault(spec, k, root, acts)
            entries, moments = write_shard_files(root, name, k, acts, masks, sites=spec["sites"],
                                                 dtype=spec["store_dtype"], shard_size=spec["shard_size"])
            out["records"].append(_write_record(root, name, k, fp, entries, moments))
    finally:
        if owned:
            del handle
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return out


# --- the driver ---------------------------------------------------------------------------------------------------
@dataclass
class _Ckpt:
    name: str
    fingerprint: str
    registered: bool
    next_k: int
    identity: dict | None = None          # {"identity", "shape", "fingerprint"}, once known
    verified: bool = False
    records: dict[int, dict] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)


def _driver_tokenizer(item: Any) -> tuple[dict, Any]:
    """(architecture signature, tokenizer) of a checkpoint without loading its weights."""
    from mixprobe.capture.capture import _peek_tokenizer

    return _peek_tokenizer(item)


@checked
def capture_ray(items: list, rows: list[dict], sites: Any, positions: Any, *, store: Any, engine: RayEngine,
                batch_size: int, shard_size: int, device: Any, dtype: Any, store_dtype: str,
                model_kwargs: dict | None = None) -> ActivationStore:
    """The Ray path of :func:`~mixprobe.capture.capture.capture` (``items`` and ``rows`` already checked)."""
    from mixprobe.capture.capture import _Encoded
    from mixprobe.models.handle import tokenizer_hash
    from mixprobe.models.positions import describe
    from mixprobe.models.sites import parse_sites

    if store is None:
        raise DataError("engine='ray' captures into a store: pass store=<folder on a filesystem every worker can "
                        "write> (--store)")
    ray = connect(engine)   # first: no store is created for a capture that cannot run
    arch, tok = _driver_tokenizer(items[0])
    if not arch.get("n_layers"):
        raise DataError(f"cannot read the depth of checkpoint {items[0].name!r} from its config; use engine='local'")
    names_s = [str(s) for s in parse_sites(sites, int(arch["n_layers"]))]
    enc = _Encoded(tok, rows, arch.get("vocab_size"))
    is_all = isinstance(positions, str) and positions == "all"
    pad_to = enc.max_len if is_all else None
    if isinstance(store, ActivationStore):
        st = store
        if st.manifest["prompt_set"]["sha256"] != prompt_set_hash(rows):
            raise StoreError(f"store {st.path} was created for another prompt set; use a new store")
    else:
        st = ActivationStore.create(Path(store).resolve(), rows, sites=names_s, positions=describe(positions),
                                    tokenizer_sha256=tokenizer_hash(tok), dtype=store_dtype, shard_size=shard_size)
    if st.sites != names_s:
        raise StoreError(f"store {st.path} holds sites {st.sites[:4]}…, not {names_s[:4]}…; use a new store")
    root = st.path.resolve()
    S = st.manifest["shard_size"]
    n_rows = len(rows)
    last_k = math.ceil(n_rows / S) - 1

    # plan: per checkpoint, what the manifest and the records of earlier runs already hold
    states: dict[str, _Ckpt] = {}
    done_rows = 0
    for it in items:
        if st.complete(it.name):
            done_rows += n_rows
            continue
        ck = st.manifest["checkpoints"].get(it.name)
        fp = fingerprint(None if it.path is None else Path(it.path).resolve(),
                         it.handle.identity if it.handle is not None else None)
        c = _Ckpt(it.name, fp, registered=ck is not None, next_k=0 if ck is None else int(ck["n_done"]) // S)
        if ck is not None:
            st.remove_temp_files(it.name)
        pend = root / PENDING / it.name
        for stale in pend.glob(".*.tmp") if pend.is_dir() else []:
            stale.unlink(missing_ok=True)
        ident = pend / "identity.json"
        if ident.exists():
            got = _read_identity(ident)
            if got is not None and got.get("fingerprint") == fp:
                c.identity = got
            else:   # another model's (the folder changed since): useless, and must not be read later
                ident.unlink(missing_ok=True)
        for f in sorted(pend.glob("shard-*.safetensors")) if pend.is_dir() else []:
            rec = _read_record(f)
            if rec is not None and rec["fingerprint"] == fp and c.next_k <= rec["k"] <= last_k \
                    and _files_intact(root, rec["entries"]):
                c.records[rec["k"]] = rec
            else:   # already in the manifest, another model's, or its files are damaged: redo
                f.unlink(missing_ok=True)
        done_rows += c.next_k * S + sum(r["entries"][names_s[0]]["rows"][1] - r["entries"][names_s[0]]["rows"][0]
                                        for r in c.records.values())
        states[it.name] = c
    order = [it.name for it in items if it.name in states]

    def advance() -> None:
        """Register checkpoints (series order) and append shards (shard order) that can be; one manifest write."""
        changed, blocked = False, False
        for name in order:
            c = states[name]
            if not c.registered:
                if blocked or c.identity is None:
                    blocked = True
                    continue
                st.begin_checkpoint(name, c.identity["identity"], shape=c.identity["shape"], save=False)
                c.registered = c.verified = changed = True
            elif c.identity is not None and not c.verified:   # resumed: the same weights and shape as stored
                st.check_checkpoint(name, c.identity["identity"], c.identity["shape"])
                c.verified = True
            while c.next_k in c.records:
                rec = c.records.pop(c.next_k)
                st.add_shard(name, c.next_k, rec["entries"], rec["moments"], finish=c.next_k == last_k, save=False)
                c.next_k += 1
                changed = True
            if c.next_k > last_k and not st.complete(name):
                st.finish_checkpoint(name)   # (no-op write when add_shard(finish=True) marked it)
                changed = True
        if changed:
            st.save()
        for name in order:
            if st.complete(name):
                shutil.rmtree(root / PENDING / name, ignore_errors=True)

    def take(name: str, rec: dict) -> int:
        c = states[name]
        k = rec["k"]
        if k < c.next_k or k in c.records:
            return 0
        c.records[k] = rec
        rows_ = rec["entries"][names_s[0]]["rows"]
        return rows_[1] - rows_[0]

    advance()  # what earlier runs finished
    n_slots = slots(ray, engine)
    todo = {n: [k for k in range(c.next_k, last_k + 1) if k not in c.records] for n, c in states.items()}
    active = [n for n in order if todo[n] or (states[n].identity is None and not states[n].registered)]
    enc_ref = ray.put(enc) if active else None
    fault = os.environ.get(FAULT_ENV)
    by_name = {it.name: it for it in items}
    args = []
    for name in active:
        it = by_name[name]
        c = states[name]
        groups = (split(todo[name], size=engine.chunk) if engine.chunk
                  else split(todo[name], max(1, math.ceil(n_slots / len(active)))))
        need_identity = c.identity is None
        handle_ref = None
        if it.handle is not None:
            try:
                handle_ref = ray.put(it.handle)
            except Exception as e:  # noqa: BLE001 - whatever pickling raises
                raise DistributedError(f"cannot ship the in-memory model {name!r} to Ray workers ({type(e).__name__}: "
                                       f"{str(e)[:200]}); pass its checkpoint folder instead") from e
        for i, ks in enumerate(groups or [[]]):
            spec = {"store": str(root), "name": name, "ks": ks, "identity": need_identity and i == 0,
                    "fingerprint": c.fingerprint, "site_spec": sites, "sites": names_s, "positions": positions,
                    "shard_size": S, "batch_size": batch_size, "pad_to": pad_to, "store_dtype": st.manifest["dtype"],
                    "device": device, "dtype": dtype, "model_kwargs": dict(model_kwargs or {}), "fault": fault,
                    "path": None if it.path is None else str(Path(it.path).resolve()),
                    "path_str": None if it.path is None else str(it.path)}
            args.append((spec, enc_ref, handle_ref))

    def poll() -> int:
        """Records that workers finished since the last look (progress, and the manifest kept current)."""
        got = 0
        for name in active:
            c = states[name]
            pend = root / PENDING / name
            if c.identity is None and (pend / "identity.json").exists():
                ident = _read_identity(pend / "identity.json")
                if ident is not None and ident.get("fingerprint") == c.fingerprint:
                    c.identity = ident
            try:
                files = [e.name for e in os.scandir(pend) if e.name.startswith("shard-") and e.name not in c.seen]
            except FileNotFoundError:
                continue
            for f in files:
                rec = _read_record(pend / f)
                if rec is not None and rec["fingerprint"] == c.fingerprint:
                    c.seen.add(f)
                    got += take(name, rec)
        advance()
        return got

    def on_result(i: int, res: dict) -> int:
        c = states[res["name"]]
        if res["identity"] is not None:
            c.identity = res["identity"]
        got = sum(take(res["name"], rec) for rec in res["records"])
        advance()
        return got

    try:
        run_tasks(ray, engine, capture_task, args, desc="capture", total=len(items) * n_rows, unit="prompt",
                  initial=done_rows, on_result=on_result, poll=poll)
    finally:
        try:
            advance()   # keep what arrived, whatever happened
        except StoreError:
            pass
    missing = [n for n in order if not st.complete(n)]
    if missing:  # pragma: no cover - every task returned, so every shard has a record
        raise DistributedError(f"checkpoints {missing} are incomplete after every task finished; run again to resume")
    pend_root = root / PENDING
    if pend_root.is_dir() and not any(pend_root.iterdir()):
        pend_root.rmdir()
    return st

"""Capture: the activations of chosen sites and positions, for every checkpoint of a series, in one pass each.

Problem: every analysis (probes across checkpoints, selection directions, patching sources) starts from the same
table — activations of a few sites at a few positions, per prompt, per checkpoint. Computing it with a full
activation cache wastes memory by orders of magnitude; computing it prompt by prompt wastes time; mixing
checkpoints with different tokenizers or architectures makes the rows meaningless.

Mechanism: :func:`capture` checks that all checkpoints share the architecture and the tokenizer
(:class:`~mixprobe.errors.SeriesMismatchError` names the checkpoint and what differs), then loads one checkpoint
at a time and runs batched no-grad forwards through :meth:`ModelHandle.read
<mixprobe.models.handle.ModelHandle.read>` — hooks keep only the requested positions and the forward stops
after the last requested site. Into a store on the CPU each kept activation is copied once, straight into the
shard's buffers. On a GPU the kept slices are copied to pinned host buffers with
``non_blocking=True`` and the host only waits when a shard is flushed, so copies overlap the next batches'
compute. With ``store=None`` the result stays in memory (:class:`CaptureResult`); with a store folder,
rows are flushed shard by shard into an :class:`~mixprobe.capture.store.ActivationStore` (peak RAM bounded by
one shard, resumable after a kill).

Example:
    >>> from mixprobe.organisms.configs import tiny_model
    >>> from mixprobe.organisms.tokenizer import build_word_tokenizer
    >>> from mixprobe.models.handle import ModelHandle
    >>> tok = build_word_tokenizer(["<A>", "<B>", "1", "2", "+", "="])
    >>> h = ModelHandle(tiny_model("llama", vocab_size=len(tok), seed=0), tok, name="m")
    >>> rows = [{"prompt": "<A> 1 + 2 =", "tag": "A"}, {"prompt": "<B> 2 =", "tag": "B"}]
    >>> res = capture([h], rows, ["resid_post.*"], "last_prompt", progress=False)
    >>> res.checkpoints, tuple(res.get("m", "resid_post.1").shape), res.labels("tag").tolist()
    (['m'], (2, 1, 64), ['A', 'B'])

Constraints: prompts are strings or dicts with a ``"prompt"`` key (optional ``"completion"``; every other key is
kept as metadata); with ``positions="all"`` rows are left-padded to the longest prompt of the set (a store pads
every batch to that length up front; in memory batches are padded when concatenated) and ``masks`` / the store's
``mask()`` mark the real tokens.
"""
from __future__ import annotations

import gc
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixprobe._check import checked
from mixprobe.capture.store import ActivationStore, prompt_set_hash
from mixprobe.errors import CheckpointError, DataError, SeriesMismatchError, StoreError
from mixprobe.io import load_tokenizer
from mixprobe.models.batch import Batch, encode, pad_batch, pad_token_id
from mixprobe.models.handle import ModelHandle, arch_signature, tokenizer_hash
from mixprobe.models.loading import SeriesManifest, load, load_series
from mixprobe.models.positions import PositionSpec, describe, resolve_positions
from mixprobe.models.sites import parse_sites

from tqdm.auto import tqdm


@dataclass
class CaptureResult:
    """In-memory capture: ``acts[checkpoint][site]`` is ``[n_prompts, n_pos, d]``; ``rows`` the prompt rows."""

    acts: dict[str, dict[str, torch.Tensor]]
    rows: list[dict]
    sites: list[str]
    positions: Any
    identities: dict[str, dict] = field(default_factory=dict)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def checkpoints(self) -> list[str]:
        return list(self.acts)

    def get(self, checkpoint: str, site: str) -> torch.Tensor:
        try:
            return self.acts[checkpoint][str(site)]
        except KeyError:
            raise DataError(f"no activations for ({checkpoint!r}, {site!r}); checkpoints {self.checkpoints}, "
                            f"sites {self.sites}") from None

    def labels(self, key: str) -> np.ndarray:
        return np.asarray([r[key] for r in self.rows])


# --- inputs -------------------------------------------------------------------------------------------------------
def _all_int(ids: Sequence[Any]) -> bool:
    """True when every element is an int (a set of the element types first: C speed on long id lists)."""
    types = set(map(type, ids))
    return types <= {int} or all(isinstance(t, int) for t in ids)


@checked
def normalize_rows(prompts: Sequence[str | dict], completions: Sequence[str] | None = None) -> list[dict]:
    """Prompt rows as dicts with ``prompt`` (+ ``completion``) and any metadata; refuses an empty set."""
    if isinstance(prompts, str):
        prompts = [prompts]
    rows: list[dict[str, Any]] = []
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            rows.append({"prompt": p})
        elif isinstance(p, dict) and isinstance(p.get("prompt"), str) and "input_ids" not in p:
            rows.append(dict(p))
        elif isinstance(p, dict) and "input_ids" in p:
            ids = p["input_ids"]
            if type(ids) is not list and hasattr(ids, "tolist"):
                ids = ids.tolist()
            if not isinstance(ids, (list, tuple)) or not ids or not _all_int(ids):
                raise DataError(f"row {i}: 'input_ids' must be a non-empty list of token ids")
            n = int(p.get("prompt_length", len(ids)))
            if not 0 < n <= len(ids):
                raise DataError(f"row {i}: prompt_length {n} is outside 1..{len(ids)} (the number of input_ids)")
            if "completion" in p:
                raise DataError(f"row {i} has both input_ids and a completion; put the completion's ids in "
                                "input_ids and mark the prompt's end with prompt_length")
            rows.append({**p, "input_ids": list(ids), "prompt_length": n})
        else:
            raise DataError(f"prompt {i} is {type(p).__name__}; pass strings, dicts with a 'prompt' string, or "
                            "dicts with pre-tokenized 'input_ids'")
    if not rows:
        raise DataError("the prompt set is empty; pass at least one prompt")
    kinds = {"input_ids" in r for r in rows}
    if len(kinds) > 1:
        raise DataError("some rows are pre-tokenized (input_ids) and some are text; use one kind for all rows")
    if True in kinds and completions is not None:
        raise DataError("completions= needs text prompts; pre-tokenized rows carry the completion in input_ids "
                        "(with prompt_length)")
    if completions is not None:
        if len(completions) != len(rows):
            raise DataError(f"{len(completions)} completions for {len(rows)} prompts; pass one per prompt")
        for r, c in zip(rows, completions):
            r["completion"] = c
    has = ["completion" in r for r in rows]
    if any(has) and not all(has):
        raise DataError("some prompt rows have a 'completion' and some do not; give every row one (or none)")
    return rows


@dataclass
class _Item:
    name: str
    handle: ModelHandle | None = None
    path: Path | None = None


def _items(source: Any, names: Sequence[str] | None) -> list[_Item]:
    if isinstance(source, (str, os.PathLike)) and (Path(source) / "series.json").exists():
        source = load_series(source)
    if isinstance(source, SeriesManifest) or (hasattr(source, "paths") and hasattr(source, "checkpoints")):
        paths = [Path(p) for p in source.paths()]
        nm = [c.name for c in source.checkpoints]
        items = [_Item(n, path=p) for n, p in zip(nm, paths)]
    else:
        seq = [source] if isinstance(source, (ModelHandle, str, os.PathLike)) else list(source)
        items = []
        for s in seq:
            if isinstance(s, ModelHandle):
                items.append(_Item(s.name, handle=s))
            elif isinstance(s, (str, os.PathLike)):
                items.append(_Item(Path(s).name, path=Path(s)))
            else:
                h = load(s, device=None)
                items.append(_Item(h.name, handle=h))
    if names is not None:
        if len(names) != len(items):
            raise DataError(f"{len(names)} names for {len(items)} checkpoints")
        for it, n in zip(items, names):
            it.name = n
    if not items:
        raise CheckpointError("no checkpoints to capture; pass a run directory, checkpoint folders or handles")
    for it in items:
        p = it.path
        if p is not None:
            if not p.is_dir():
                raise CheckpointError(f"checkpoint folder {p} does not exist; check the path (or the run's "
                                      "series.json)")
            if not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
                raise CheckpointError(f"{p} is neither a run directory (no series.json) nor a checkpoint folder (no "
                                      "config.json / adapter_config.json); pass a run directory or checkpoint folders")
    dup = {it.name for it in items if [j.name for j in items].count(it.name) > 1}
    if dup:
        raise DataError(f"checkpoint names must be unique, got duplicates {sorted(dup)}; pass names=[...]")
    return items


def _peek(item: _Item) -> tuple[dict, str]:
    """(architecture signature, tokenizer sha256) of a checkpoint, without loading its weights."""
    arch, tok = _peek_tokenizer(item)
    return arch, tokenizer_hash(tok)


def _peek_tokenizer(item: _Item) -> tuple[dict, Any]:
    """(architecture signature, tokenizer) of a checkpoint, without loading its weights."""
    if item.handle is not None:
        return arch_signature(item.handle.model.config), item.handle.tokenizer
    from transformers import AutoConfig

    p = item.path
    assert p is not None  # _items() gives every item a handle or a path
    if not p.is_dir():
        raise CheckpointError(f"checkpoint folder {p} does not exist; check the path (or the run's series.json)")
    cfg_dir, tok_dir = p, p
    if (p / "adapter_config.json").exists():
        base = json.loads((p / "adapter_config.json").read_text()).get("base_model_name_or_path", "")
        cfg_dir = Path(base) if Path(base).is_dir() else (p / base if (p / base).is_dir() else p)
        if not (p / "tokenizer_config.json").exists():
            tok_dir = cfg_dir
    try:
        cfg = AutoConfig.from_pretrained(str(cfg_dir), trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read the config/tokenizer of {p} ({str(e)[:200]}); is it a checkpoint "
                              "folder saved with save_pretrained (model and tokenizer)?") from e
    return arch_signature(cfg), load_tokenizer(tok_dir)


@checked
def check_series(items: Sequence[Any]) -> None:
    """Raise SeriesMismatchError unless every checkpoint has the first one's architecture and tokenizer."""
    items = [i if isinstance(i, _Item) else _items([i], None)[0] for i in items]
    if len(items) < 2:
        return
    ref_arch, ref_tok = _peek(items[0])
    for it in items[1:]:
        arch, tok = _peek(it)
        if arch != ref_arch:
            diff = {k: (ref_arch.get(k), arch.get(k)) for k in ref_arch if ref_arch.get(k) != arch.get(k)}
            raise SeriesMismatchError(
                f"checkpoint {it.name!r} has another architecture than {items[0].name!r}: "
                + ", ".join(f"{k} {a} vs {b}" for k, (a, b) in diff.items())
                + "; capture checkpoints of one series (same model) together")
        if tok != ref_tok:
            raise SeriesMismatchError(
                f"checkpoint {it.name!r} has another tokenizer than {items[0].name!r} (vocabulary or special tokens "
                "differ), so token positions and ids would not line up; re-save it with the series' tokenizer")


# --- the capture loop ---------------------------------------------------------------------------------------------
class _Encoded:
    """The whole prompt set tokenized once (flat int32 ids + offsets): batches are sliced, never re-tokenized.

    Checkpoints of one series share their tokenizer (checked by :func:`check_series`), so one encoding serves the
    whole series. Memory: 4 bytes per token, the same order as the prompt rows themselves.
    """

    def __init__(self, tokenizer: Any, rows: list[dict], vocab_size: int | None = None, chunk: int = 4096) -> None:
        flats, lens, plens = [], [], []
        if "input_ids" in rows[0]:  # pre-tokenized rows (checked by normalize_rows)
            id_lists = [r["input_ids"] for r in rows]
            lens.append(np.fromiter(map(len, id_lists), np.int64, len(rows)))
            flats.append(np.fromiter(itertools.chain.from_iterable(id_lists), np.int32, int(lens[0].sum())))
            plens.append(np.fromiter([r["prompt_length"] for r in rows], np.int64, len(rows)))
            vocab = int(vocab_size or 0)
            if vocab and (int(flats[0].max()) >= vocab or int(flats[0].min()) < 0):
                raise DataError(f"input_ids hold token ids outside the model's vocabulary (0..{vocab - 1})")
        texts = [] if "input_ids" in rows[0] else [r["prompt"] for r in rows]
        comps = [r["completion"] for r in rows] if texts and "completion" in rows[0] else None
        for a in range(0, len(texts), chunk):
            ids, plen = encode(tokenizer, texts[a:a + chunk], comps[a:a + chunk] if comps else None)
            lens.append(np.fromiter(map(len, ids), np.int64, len(ids)))
            flats.append(np.fromiter(itertools.chain.from_iterable(ids), np.int32, int(lens[-1].sum())))
            plens.append(np.asarray(plen, np.int64))
        self.flat = np.concatenate(flats)
        self.lens = np.concatenate(lens)
        self.plen = np.concatenate(plens)
        self.offsets = np.concatenate([[0], np.cumsum(self.lens)])
        self.max_len = int(self.lens.max())
        self.pad_id = pad_token_id(tokenizer)

    @classmethod
    def of(cls, handle: ModelHandle, rows: list[dict]) -> _Encoded:
        return cls(handle.tokenizer, rows, getattr(handle.model.config, "vocab_size", None))

    def batch(self, a: int, b: int, pad_to: int | None) -> Batch:
        return pad_batch(self.flat[self.offsets[a]:self.offsets[b]], self.lens[a:b], self.plen[a:b], self.pad_id,
                         pad_to)


def _host_copier(device: torch.device, out_dtype: torch.dtype, must_copy: bool):
    """Per-site transform: cast (and copy when the kept tensor is the live activation itself); on a GPU, copy
    into pinned host memory on a side stream, so device-to-host copies overlap the compute of the next sites and
    batches. Returns ``(transform, wait)``; call ``wait()`` before reading what the transform returned."""
    if device.type != "cuda":
        def cpu(name: str, v: torch.Tensor) -> torch.Tensor:
            return v.to(out_dtype, copy=must_copy)
        return cpu, lambda: None
    stream = torch.cuda.Stream(device)

    def gpu(name: str, v: torch.Tensor) -> torch.Tensor:
        v = v.to(out_dtype)
        if v.device != device:  # a model split over GPUs (device_map): the side stream is another device's
            return v.cpu()
        buf = torch.empty(v.shape, dtype=out_dtype, pin_memory=True)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            buf.copy_(v, non_blocking=True)
        v.record_stream(stream)  # the caching allocator must not reuse v before the copy ran
        return buf
    return gpu, stream.synchronize


def _cat_left_padded(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along rows, left-padding dim 1 with zeros to the longest part (``all`` positions)."""
    T = max(p.shape[1] for p in parts)
    if all(p.shape[1] == T for p in parts):
        return torch.cat(parts)
    out = torch.zeros((sum(p.shape[0] for p in parts), T, *parts[0].shape[2:]), dtype=parts[0].dtype)
    r = 0
    for p in parts:
        out[r:r + p.shape[0], T - p.shape[1]:] = p
        r += p.shape[0]
    return out



class _RowSink:
    """CPU reading transform for a store: copies each site's kept activation straight into rows of a preallocated
    ``[rows, n_pos, d]`` shard tensor (left-padded with zeros up to ``T`` for ``"all"``), so an activation is copied
    once instead of once per batch and again per concatenation. ``alloc`` starts fresh buffers; ``at(a, b)`` sets the
    rows the next forward fills."""

    def __init__(self, dtype: torch.dtype, T: int | None) -> None:
        self.dtype, self.T = dtype, T
        self.n, self.a, self.b = 0, 0, 0
        self.acts: dict[str, torch.Tensor] = {}
        self.mask: torch.Tensor | None = None

    def alloc(self, n: int, *, with_mask: bool) -> None:
        self.n, self.acts = n, {}
        self.mask = None
        if with_mask:
            assert self.T is not None  # masks are kept for positions="all", where T (the padded length) is known
            self.mask = torch.zeros((n, self.T), dtype=torch.bool)

    def at(self, a: int, b: int) -> None:
        self.a, self.b = a, b

    def __call__(self, name: str, v: torch.Tensor) -> torch.Tensor:
        dst = self.acts.get(name)
        if dst is None:
            T = v.shape[1] if self.T is None else self.T
            dst = self.acts[name] = torch.empty((self.n, T, *v.shape[2:]), dtype=self.dtype)
        rows = dst[self.a:self.b]
        t, T = v.shape[1], dst.shape[1]
        if t == T:
            rows.copy_(v)
        elif t < T:
            rows[:, :T - t].zero_()
            rows[:, T - t:].copy_(v)
        else:
            raise DataError(f"site {name} kept {t} positions in one batch and {T} in another; capture needs the "
                            "same number of positions in every batch")
        return rows

    def put_mask(self, m: torch.Tensor) -> None:
        assert self.mask is not None and self.T is not None  # alloc(with_mask=True) ran
        self.mask[self.a:self.b, self.T - m.shape[1]:] = m.bool()


def _batches(n: int, start: int, stop: int, size: int):
    for a in range(start, min(stop, n), size):
        yield a, min(a + size, stop, n)


def _n_positions(enc: _Encoded, positions: PositionSpec, pad_to: int | None) -> int:
    """Columns a row keeps: the resolved positions of the first row (``pad_to`` for ``"all"``)."""
    if isinstance(positions, str) and positions == "all":
        assert pad_to is not None  # a store pads "all" rows to the longest row of the set
        return pad_to
    b = enc.batch(0, 1, pad_to)
    return int(resolve_positions(positions, b.attention_mask, b.prompt_lengths).shape[1])


@checked
def read_shards(handle: ModelHandle, enc: _Encoded, positions: PositionSpec, site_list: list, ks: Any, *,
                shard_size: int, batch_size: int, pad_to: int | None, out_dtype: torch.dtype, to_store: bool,
                on_rows: Any = None):
    """Forward the rows of shards ``ks`` (ascending shard indices) and yield ``(k, acts, masks)`` per shard.

    ``to_store``: ``acts`` is ``{site: ndarray [rows, n_pos, d]}`` and ``masks`` an ndarray (``"all"``) or None,
    ready for the store — on the CPU views of reused buffers, valid until the next shard is read. Otherwise ``acts``
    is ``{site: [tensor per batch]}`` and ``masks`` a list of per-batch masks. A shard is always batched the same
    way (batches of ``batch_size`` from its first row), in one process or on a Ray worker, so its bytes do not
    depend on which shards are read together. ``on_rows(n)`` is called after each batch.
    """
    is_all = isinstance(positions, str) and positions == "all"
    names_s = [str(s) for s in site_list]
    dev = handle.device
    cpu = dev.type == "cpu"
    n_rows, S = len(enc.lens), shard_size
    T = enc.max_len if is_all else None
    # store on the CPU: hooks copy each batch straight into one shard's reused buffers (one copy per activation,
    # constant memory); otherwise hooks keep per-batch pieces (on a GPU: pinned host copies made asynchronously),
    # concatenated once a shard is done
    copier, wait = _host_copier(dev, out_dtype, must_copy=is_all)
    sink = _RowSink(out_dtype, T) if cpu and to_store else None
    with torch.no_grad(), handle.reader(site_list, transform=sink or copier) as rd:
        for k in ks:
            base = 0
            if sink is not None:  # one shard of buffers, reused (written out before the next shard overwrites them)
                base = k * S
                if sink.n != min(S, n_rows - base) or not sink.acts:
                    sink.alloc(min(S, n_rows - base), with_mask=is_all)
            part: dict[str, list[torch.Tensor]] = {s: [] for s in names_s}
            part_masks: list[torch.Tensor] = []
            for a, b in _batches(n_rows, k * S, (k + 1) * S, batch_size):
                batch = enc.batch(a, b, pad_to)
                index = None if is_all else resolve_positions(positions, batch.attention_mask, batch.prompt_lengths)
                if sink is not None:
                    sink.at(a - base, b - base)
                    rd.run(handle.model, index, **batch.inputs(), use_cache=False)
                    if is_all:
                        sink.put_mask(batch.attention_mask)
                else:
                    if not cpu:
                        batch = batch.to(dev)
                        index = None if index is None else index.pin_memory().to(dev, non_blocking=True)
                    got = rd.run(handle.model, index, **batch.inputs(), use_cache=False)
                    for s in names_s:
                        part[s].append(got[s])
                    if is_all:
                        part_masks.append(batch.attention_mask.cpu())
                if on_rows is not None:
                    on_rows(b - a)
            wait()  # the asynchronous host copies of this shard are done
            if not to_store:
                yield k, part, part_masks
            elif sink is not None:
                masks = None
                if is_all:
                    assert sink.mask is not None  # alloc(with_mask=is_all) made it
                    masks = sink.mask.numpy()
                yield k, {s: sink.acts[s].numpy() for s in names_s}, masks
            else:
                yield k, {s: torch.cat(part[s]).numpy() for s in names_s}, \
                    torch.cat(part_masks).numpy() if is_all else None
            del part, part_masks


@checked
def capture(
    source: Any,
    prompts: Sequence[str | dict],
    sites: Any,
    positions: PositionSpec = "last_prompt",
    *,
    store: str | os.PathLike | ActivationStore | None = None,
    batch_size: int = 32,
    shard_size: int | None = None,
    completions: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = None,
    store_dtype: str = "float32",
    progress: bool = True,
    engine: Any = "local",
    address: str | None = None,
    model_kwargs: dict | None = None,
) -> CaptureResult | ActivationStore:
    """Capture ``sites`` at ``positions`` for every checkpoint of ``source`` (see the module docstring).

    ``source``: a run directory (``series.json``), a :class:`~mixprobe.models.loading.SeriesManifest` or a
    ``mixprobe.train.series.Series``, a handle, a checkpoint folder, or a list of handles / folders / models.
    Folders are loaded one at a time (``device``, ``dtype``) and released after their pass. Returns a
    :class:`CaptureResult` when ``store`` is None, else the :class:`ActivationStore` (resumed if it exists).

    ``engine="ray"`` (or a :class:`~mixprobe.distributed.RayEngine`) runs one Ray task per checkpoint × run of
    prompt shards on the cluster at ``address`` (a local one without it) and needs a ``store``; the store it
    writes is the one this process would write (:mod:`mixprobe.capture.distributed`, docs/distributed.md).
    ``model_kwargs`` go to ``from_pretrained`` when a folder is loaded (e.g. ``{"device_map": "auto"}``).
    """
    from mixprobe.distributed import resolve_engine

    eng = resolve_engine(engine, address)
    rows = normalize_rows(prompts, completions)
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    items = _items(source, names)
    check_series(items)
    shard_size = shard_size or max(batch_size, 256 // batch_size * batch_size)
    is_all = isinstance(positions, str) and positions == "all"
    st: ActivationStore | None = None
    result = CaptureResult({}, rows, [], describe(positions))
    out_dtype = {"float32": torch.float32, "float16": torch.float16}.get(store_dtype)
    if out_dtype is None:
        raise DataError(f"store_dtype must be 'float32' or 'float16', got {store_dtype!r}")
    if eng is not None:
        from mixprobe.capture.distributed import capture_ray

        eng = eng if progress else replace(eng, progress=False)
        return capture_ray(items, rows, sites, positions, store=store, engine=eng, batch_size=batch_size,
                           shard_size=shard_size, device=device, dtype=dtype, store_dtype=store_dtype,
                           model_kwargs=model_kwargs)
    enc: _Encoded | None = None
    bar = tqdm(total=len(items) * len(rows), desc="capture", unit="prompt", disable=not progress)
    try:
        for it in items:
            owned = it.handle is None
            handle = it.handle or load(it.path, device=device, dtype=dtype, name=it.name,
                                       **(model_kwargs or {}))
            try:
                site_list = parse_sites(sites, handle.n_layers)
                names_s = [str(s) for s in site_list]
                if enc is None:  # one tokenization for the whole series (same tokenizer: check_series)
                    enc = _Encoded.of(handle, rows)
                # rows of a store must align across shards: pad every batch to the longest row of the set
                pad_to = enc.max_len if is_all and store is not None else None
                if store is not None and st is None:
                    st = store if isinstance(store, ActivationStore) else ActivationStore.create(
                        store, rows, sites=names_s, positions=describe(positions),
                        tokenizer_sha256=tokenizer_hash(handle.tokenizer), dtype=store_dtype, shard_size=shard_size)
                    if isinstance(store, ActivationStore) and st.manifest["prompt_set"]["sha256"] != \
                            prompt_set_hash(rows):
                        raise StoreError(f"store {st.path} was created for another prompt set; use a new store")
                    shard_size = st.manifest["shard_size"]
                start = 0
                if st is not None:
                    n_pos = _n_positions(enc, positions, pad_to)
                    start = st.begin_checkpoint(it.name, {**handle.identity, "name": it.name},
                                                shape=[n_pos, handle.d_model], save=False)
                    if st.complete(it.name):
                        bar.update(len(rows))
                        continue
                bar.set_postfix_str(it.name)
                bar.update(start)
                n_rows, S = len(rows), shard_size
                mem: dict[str, list[torch.Tensor]] = {s: [] for s in names_s}
                mem_masks: list[torch.Tensor] = []
                last_k = (n_rows + S - 1) // S - 1
                for k, got, got_mask in read_shards(handle, enc, positions, site_list, range(start // S, last_k + 1),
                                                    shard_size=S, batch_size=batch_size, pad_to=pad_to,
                                                    out_dtype=out_dtype, to_store=st is not None,
                                                    on_rows=bar.update):
                    if st is not None:
                        # the last shard also marks the checkpoint complete (one manifest write fewer)
                        st.write_shard(it.name, k, got, got_mask, finish=k == last_k)
                    else:  # one regular (not pinned) tensor per chunk
                        for s in names_s:
                            part = got[s]
                            mem[s].append(_cat_left_padded(part) if len(part) > 1 or handle.device.type != "cpu"
                                          else part[0])
                        if is_all:
                            mem_masks.append(_cat_left_padded(got_mask))
                    del got, got_mask
                if st is not None:
                    st.finish_checkpoint(it.name)
                else:
                    result.acts[it.name] = {s: _cat_left_padded(mem[s]) if len(mem[s]) > 1 else mem[s][0]
                                            for s in names_s}
                    result.identities[it.name] = {**handle.identity, "name": it.name}
                    if is_all:
                        result.masks[it.name] = _cat_left_padded(mem_masks).bool()
                    result.sites = names_s
            finally:
                if owned:
                    del handle
                    gc.collect()
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
    finally:
        bar.close()
    return st if st is not None else result

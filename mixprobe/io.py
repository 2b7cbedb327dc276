"""Safe, atomic file I/O shared by every layer.

Problem: interpretability runs write many files (checkpoints, manifests, shards) and read folders users hand
over. A crash must never leave a half-written file where a complete one is expected, and a folder of pickled
weights must never be unpickled (pickle runs arbitrary code). Mechanism: writes go to a temp name in the same
folder and are renamed into place (``os.replace`` is atomic on POSIX); weight folders are checked for
safetensors before anything is loaded, and refused with :class:`UnsafeWeightsError` otherwise.

Example:
    >>> import tempfile, json, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write_json(d / "x.json", {"a": 1})
    >>> json.loads((d / "x.json").read_text())
    {'a': 1}

Constraints: the temp file lives next to the target, so the rename never crosses file systems.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mixprobe._check import checked
from mixprobe.errors import CheckpointError, TokenizerMismatchError, UnsafeWeightsError, WriteError

log = logging.getLogger(__name__)

PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "adapter_model.bin", "model.pt",
                  "model.pth", "tf_model.h5", "flax_model.msgpack")


@checked
@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to; renamed onto ``path`` when the block ends without error.

    For libraries that write files themselves (``safetensors.torch.save_file(tensors, tmp)``). The temp file is
    named ``.<name>.<random>.tmp`` in the same folder (so the rename is atomic and a killed writer's leftovers are
    recognisable); it is fsynced before the rename and removed on any error. The final file gets the umask's mode.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        if e.errno in WRITE_FAILURES or e.errno in (errno.EACCES, errno.EPERM):
            raise _write_error(path, e) from e
        raise
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as e:
        if e.errno in WRITE_FAILURES:
            raise _write_error(path, e) from e
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


WRITE_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
"""``errno`` values that mean the file system refused a write (full, over quota, read-only, file too large)."""


def _write_error(path: Path, e: OSError) -> WriteError:
    return WriteError(e.errno, f"could not write {path}: {e.strerror or e}; free space or choose another output "
                      f"folder, then run again (nothing was put at {path}; a previous version, if any, is unchanged)")


@checked
def atomic_write_bytes(path: str | os.PathLike, blob: bytes | Iterable[bytes]) -> None:
    """Write ``blob`` (bytes, or an iterable of byte chunks) to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for b in ([blob] if isinstance(blob, (bytes, bytearray, memoryview)) else blob):
            f.write(b)


@checked
def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    atomic_write_bytes(path, text.encode("utf-8"))


@checked
def atomic_write_json(path: str | os.PathLike, obj: object) -> None:
    """Write JSON to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    atomic_write_text(path, json.dumps(obj, indent=2))


@checked
def check_weights_dir(path: str | os.PathLike) -> Path:
    """Return ``path`` if it is a folder with safetensors weights; raise a named error otherwise.

    Raises:
        CheckpointError: the folder does not exist or holds no weights.
        UnsafeWeightsError: the weights are pickle files (``pytorch_model.bin``, ``*.pt``, ...).
    """
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"checkpoint folder {p} does not exist; check the path (or the run's series.json)")
    names = {f.name for f in p.iterdir()}
    has_st = any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in names)
    pickles = sorted(n for n in names if n in PICKLE_WEIGHTS or n.endswith((".bin", ".pt", ".pth", ".ckpt")))
    if not has_st and pickles:
        raise UnsafeWeightsError(
            f"{p} stores its weights as pickle ({', '.join(pickles)}); mixprobe never unpickles weights. "
            f"Convert once in a trusted environment: `AutoModelForCausalLM.from_pretrained(dir)"
            f".save_pretrained(dir, safe_serialization=True)`"
        )
    if not has_st:
        raise CheckpointError(f"{p} holds no safetensors weights (files: {sorted(names)[:8]}); "
                              "is it a checkpoint folder?")
    return p


@checked
def prepare_output_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Create ``path``; refuse a non-empty one unless ``overwrite`` (then its content is removed)."""
    from mixprobe.errors import OutputExistsError

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputExistsError(f"{p} exists and is a file; choose another --out folder")
    if p.is_dir() and any(p.iterdir()):
        if not overwrite:
            raise OutputExistsError(
                f"output folder {p} is not empty; pass --overwrite (overwrite=True) to replace it, or choose another"
            )
        shutil.rmtree(p)
    p.mkdir(parents=True, exist_ok=True)
    return p


# --- tokenizers ---------------------------------------------------------------------------------------------------
PROBE_TEXT = "The quick brown fox, 1850: <A> 3 + 4 = m1 0 [ 5 ] ( 6 ) { 7 } naïve café 2026-12-01!"


def _probe_texts(ref: Any) -> list[str]:
    """Texts that exercise a tokenizer.json: a generic sentence and a run of its own vocabulary."""
    vocab = sorted(ref.get_vocab(with_added_tokens=False).items(), key=lambda kv: kv[1])
    words = [w for w, _ in vocab[:512]]
    texts = [PROBE_TEXT]
    if words:
        texts.append(" ".join(words))
        texts.append(ref.decode([i for _, i in vocab[:512]], skip_special_tokens=True))
    return texts


def _encodes_like(tok: Any, ref: Any, texts: list[str]) -> str | None:
    """``None`` when ``tok`` and the raw ``tokenizers.Tokenizer`` agree on ``texts``, else the first difference."""
    for text in texts:
        ours = list(tok(text, add_special_tokens=False)["input_ids"])
        theirs = ref.encode(text, add_special_tokens=False).ids
        if ours != theirs:
            return f"{text[:40]!r} → {ours[:12]} instead of {theirs[:12]}"
    return None


@checked
def load_tokenizer(path: str | os.PathLike, *, trust_remote_code: bool = False) -> Any:
    """Load the tokenizer saved in ``path``, checked against the folder's own ``tokenizer.json``.

    ``AutoTokenizer`` may pick a class from the model type rather than the class that wrote the files (with
    transformers 5, a folder whose config says ``qwen2`` loads as ``Qwen2Tokenizer``, which rebuilds the
    pre-tokenizer and silently drops words a word-level tokenizer knows). Every mixprobe loader goes through this
    function: it encodes probe texts with the loaded tokenizer and with the raw ``tokenizer.json``; on a
    disagreement it reloads the folder as the generic fast tokenizer that wrote it, and raises
    :class:`TokenizerMismatchError` if that does not agree either. Folders without ``tokenizer.json``
    (slow, sentencepiece-only tokenizers) are loaded as they are.

    Example:
        >>> import tempfile
        >>> from mixprobe.organisms.tokenizer import build_word_tokenizer
        >>> d = tempfile.mkdtemp(); build_word_tokenizer(["<A>", "1"]).save_pretrained(d) and None
        >>> load_tokenizer(d)("<A> 1")["input_ids"]
        [1, 4, 5]
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    p = Path(path)
    try:
        tok = AutoTokenizer.from_pretrained(str(p), trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"cannot load a tokenizer from {p} ({type(e).__name__}: {str(e)[:160]}); save it "
                              "next to the weights (tokenizer.save_pretrained) or pass tokenizer=...") from e
    tj = p / "tokenizer.json"
    if not tj.is_file():
        return tok
    from tokenizers import Tokenizer

    try:
        ref = Tokenizer.from_file(str(tj))
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises a bare Exception on a bad file
        raise CheckpointError(f"{tj} is not a readable tokenizer.json ({str(e)[:160]}); re-save the tokenizer "
                              "with save_pretrained") from e
    texts = _probe_texts(ref)
    diff = _encodes_like(tok, ref, texts)
    if diff is None:
        return tok
    generic = PreTrainedTokenizerFast.from_pretrained(str(p))
    if _encodes_like(generic, ref, texts) is None:
        log.info("%s: AutoTokenizer chose %s, which encodes differently from tokenizer.json; loaded it as %s",
                 p, type(tok).__name__, type(generic).__name__)
        return generic
    raise TokenizerMismatchError(
        f"the tokenizer transformers loads from {p} ({type(tok).__name__}) encodes differently from the folder's "
        f"tokenizer.json: {diff}. Re-save the tokenizer with the class that built it, or pass tokenizer=... "
        "explicitly")

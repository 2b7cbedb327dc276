"""ModelHandle: one object for a causal LM, whatever the user brought (HF, PEFT, TransformerLens, nnsight).

Problem: analyses must not care whether a checkpoint arrived as an HF folder, a LoRA adapter, a TransformerLens
``TransformerBridge`` or an nnsight model, yet each of those names activations, pads batches and runs forwards
differently. Mechanism: the handle keeps the underlying HF ``PreTrainedModel`` (``.model``) and reads or edits
sites with plain forward hooks on its modules (:mod:`mixprobe.models.backends.hooks`) — that works for every
backend because they all run those same modules. Batches are left-padded with position ids derived from the
attention mask and passed to every forward, so a padded row equals the unpadded prompt (GPT-2 included).

API (stable; other packages build on it):

- ``.model`` the HF ``PreTrainedModel`` (for PEFT: the base model with the LoRA layers injected, unmerged;
  ``.wrapper`` is the ``PeftModel`` / ``TransformerBridge`` / nnsight model when there is one), ``.tokenizer``,
  ``.backend`` (``"hf" | "peft" | "transformer_lens" | "nnsight"``), ``.n_layers``, ``.d_model``, ``.device``,
  ``.dtype``, ``.identity`` (name, path, architecture, sha256 of the weights and of the tokenizer);
- ``tokenize(prompts, completions=None, *, pad_to=None) -> Batch`` (``input_ids``, ``attention_mask``,
  ``position_ids``, ``prompt_lengths``; left padding);
- ``logits(batch) -> Tensor[batch, seq, vocab]``;
- ``read(batch, sites, positions="last_prompt", *, via="hooks") -> dict[str, Tensor[batch, n_pos, d]]``: one
  forward without gradients, keeping only the requested sites and positions (the forward stops after the last
  requested site). ``via="backend"`` reads through the backend's own mechanism instead (TransformerLens
  ``run_with_cache(names_filter=...)``, an nnsight trace with ``.save()``) — same numbers, slower;
- ``intervene(edits)`` context manager: ``edits`` maps sites to callables ``f(act[batch, seq, d]) -> Tensor |
  None``; inside the block every forward passes each site's activation through ``f`` (``None`` keeps it);
  hooks are removed on exit, also on exceptions.

Example:
    >>> import torch
    >>> from mixprobe.organisms.configs import tiny_model
    >>> from mixprobe.organisms.tokenizer import build_word_tokenizer
    >>> tok = build_word_tokenizer(["<A>", "1", "2", "+", "="])
    >>> h = ModelHandle(tiny_model("gpt2", vocab_size=len(tok), seed=0), tok)
    >>> b = h.tokenize(["<A> 1 + 2 =", "<A> 2 ="])
    >>> b.attention_mask.tolist(), b.position_ids.tolist()
    ([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]], [[0, 1, 2, 3, 4, 5], [0, 0, 0, 1, 2, 3]])
    >>> acts = h.read(b, ["resid_post.1", "embed"], "last_prompt")
    >>> sorted(acts), tuple(acts["resid_post.1"].shape)
    (['embed', 'resid_post.1'], (2, 1, 64))
    >>> with h.intervene({"resid_post.1": lambda a: a * 0}):
    ...     float(h.read(b, "resid_post.1")["resid_post.1"].abs().sum())
    0.0

Constraints: decoder-only causal LMs (Llama, Qwen2, Gemma, Mistral, GPT-2, GPT-NeoX layouts). Reads run without
gradients; edits run in whatever grad mode the caller uses.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import Any

import torch

from mixprobe._check import argument_error, checked
from mixprobe.errors import DataError, SiteError
from mixprobe.models.backends.hooks import Edit, Reader, editing
from mixprobe.models.layout import Layout, unwrap
from mixprobe.models.batch import Batch, encode, pad_token_id, tokenize
from mixprobe.models.positions import PositionSpec, resolve_positions
from mixprobe.models.sites import Site, parse_sites

BACKENDS = ("hf", "peft", "transformer_lens", "nnsight")


@checked
def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/``None`` → the GPU when one is available, else the CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@checked
def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str | None:
    """``"float32"``/``"bf16"``/``torch.float16``/``"auto"``/``None`` → a torch dtype (or ``"auto"``/None)."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    names = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "half": "float16", "float": "float32"}
    got = getattr(torch, names.get(str(dtype), str(dtype)), None)
    if not isinstance(got, torch.dtype):
        raise DataError(f"unknown dtype {dtype!r}; use float32, bfloat16, float16 or 'auto'")
    return got


@checked
def tokenizer_hash(tokenizer: Any) -> str:
    """sha256 of a tokenizer's vocabulary and special tokens (what makes token ids mean the same thing)."""
    if not callable(getattr(tokenizer, "get_vocab", None)):
        raise argument_error("tokenizer_hash", "tokenizer", tokenizer, "a transformers tokenizer")
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    special = {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())}
    blob = json.dumps({"vocab": vocab, "special": special}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


@checked
def files_hash(paths: Sequence[str | os.PathLike]) -> str:
    """sha256 over the bytes of ``paths`` (sorted by file name), streamed."""
    h = hashlib.sha256()
    for p in sorted(map(str, paths), key=os.path.basename):
        h.update(os.path.basename(p).encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


@checked
def state_hash(model: torch.nn.Module) -> str:
    """sha256 over a model's parameters and persistent buffers (name, dtype, shape, bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@checked
def arch_signature(config: Any) -> dict:
    """The architecture facts a series must share (model type, widths, depth, vocabulary)."""
    get = lambda *names: next((getattr(config, n) for n in names if getattr(config, n, None) is not None), None)  # noqa: E731
    if get("num_hidden_layers", "n_layer") is None and get("hidden_size", "n_embd") is None:
        raise argument_error("arch_signature", "config", config, "a transformers model config (with "
                             "num_hidden_layers and hidden_size)", "the model's .config")
    return {
        "model_type": getattr(config, "model_type", None),
        "n_layers": get("num_hidden_layers", "n_layer"),
        "d_model": get("hidden_size", "n_embd"),
        "n_heads": get("num_attention_heads", "n_head"),
        "n_kv_heads": get("num_key_value_heads"),
        "d_mlp": get("intermediate_size", "n_inner"),
        "vocab_size": get("vocab_size"),
    }


class ModelHandle:
    """A causal LM behind one API (see the module docstring).

    Build it with :func:`mixprobe.models.loading.load` (folders, adapters, bridges, nnsight models) or directly
    from an in-memory HF model and its tokenizer: ``ModelHandle(model, tokenizer)``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        backend: str = "hf",
        wrapper: Any = None,
        name: str | None = None,
        path: str | None = None,
        weight_files: Sequence[str] | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise DataError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if tokenizer is None:
            raise DataError("a ModelHandle needs the model's tokenizer; pass tokenizer=...")
        self.model = unwrap(model)
        self.tokenizer = tokenizer
        self.backend = backend
        self.wrapper = wrapper if wrapper is not None else (model if model is not self.model else None)
        self.name = name or (os.path.basename(os.path.normpath(path)) if path else type(self.model).__name__)
        self.path = str(path) if path else None
        self._weight_files = list(weight_files) if weight_files else None
        self.layout = Layout.of(self.model)
        self.model.eval()

    # --- facts -------------------------------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return self.layout.n_layers

    @property
    def d_model(self) -> int:
        return int(arch_signature(self.model.config)["d_model"])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @cached_property
    def identity(self) -> dict:
        """Name, path, backend, architecture, and sha256 of the weights and of the tokenizer (computed once)."""
        weights = files_hash(self._weight_files) if self._weight_files else state_hash(self.model)
        return {"name": self.name, "path": self.path, "backend": self.backend,
                "arch": arch_signature(self.model.config), "weights_sha256": weights,
                "tokenizer_sha256": tokenizer_hash(self.tokenizer)}

    def sites(self, spec: Any) -> list[Site]:
        """Checked sites of a request (``"resid_post.*"``, a list, …) in execution order."""
        return parse_sites(spec, self.n_layers)

    def __repr__(self) -> str:
        return (f"ModelHandle({self.name!r}, backend={self.backend!r}, n_layers={self.n_layers}, "
                f"d_model={self.d_model}, device={self.device}, dtype={self.dtype})")

    # --- batches -----------------------------------------------------------------------------------------------
    @property
    def pad_token_id(self) -> int:
        return pad_token_id(self.tokenizer)

    def encode(self, prompts: Sequence[str] | str,
               completions: Sequence[str] | None = None) -> tuple[list[list[int]], list[int]]:
        """Token ids of each row (prompt with special tokens, + completion without) and the prompt lengths."""
        return encode(self.tokenizer, prompts, completions)

    def tokenize(self, prompts: Sequence[str] | str, completions: Sequence[str] | None = None, *,
                 pad_to: int | None = None) -> Batch:
        """Left-padded batch of ``prompts`` (+ ``completions`` appended token-exactly), on the model's device.

        ``prompt_lengths`` counts the prompt tokens of each row, so ``mode_token`` is the first completion token.
        ``pad_to`` pads every row to that length (an error if a row is longer).
        """
        batch = tokenize(self.tokenizer, prompts, completions, pad_to=pad_to)
        return batch.to(self.device) if self.device.type != "cpu" else batch

    def _forward_kwargs(self, batch: Batch) -> dict[str, Any]:
        dev = self.device
        b = batch.to(dev) if batch.input_ids.device != dev else batch
        return {**b.inputs(), "use_cache": False}

    def positions(self, batch: Batch, positions: PositionSpec) -> torch.Tensor | None:
        """Absolute position indices ``[batch, n_pos]`` of ``positions`` (``None`` for ``"all"``)."""
        if isinstance(positions, str) and positions == "all":
            return None
        return resolve_positions(positions, batch.attention_mask, batch.prompt_lengths).to(self.device)

    # --- running -----------------------------------------------------------------------------------------------
    def logits(self, batch: Batch) -> torch.Tensor:
        """Logits ``[batch, seq, vocab]`` of one forward without gradients (interventions apply)."""
        with torch.no_grad():
            return self.model(**self._forward_kwargs(batch)).logits

    def read(
        self,
        batch: Batch,
        sites: Any,
        positions: PositionSpec = "last_prompt",
        *,
        via: str = "hooks",
        transform: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Activations ``{site: [batch, n_pos, d]}`` of one no-grad forward (see the module docstring)."""
        sites = parse_sites(sites, self.n_layers)
        index = self.positions(batch, positions)
        if via == "backend" and self.backend == "transformer_lens":
            from mixprobe.models.backends.tlens import tl_read

            return tl_read(self.wrapper, batch.to(self.device), sites, index)
        if via == "backend" and self.backend == "nnsight":
            from mixprobe.models.backends.nnsight_trace import nnsight_read

            return nnsight_read(self.wrapper, self.layout, batch.to(self.device), sites, index)
        if via not in ("hooks", "backend"):
            raise DataError(f"via must be 'hooks' or 'backend', got {via!r}")
        with torch.no_grad(), Reader(self.layout, sites, stop=True, transform=transform) as rd:
            out = rd.run(self.model, index, **self._forward_kwargs(batch))
        return {str(s): out[str(s)] for s in sites}

    def reader(self, sites: Any, *, transform: Callable[[str, torch.Tensor], torch.Tensor] | None = None) -> Reader:
        """Reading hooks for ``sites`` registered once for many forwards (the fast path of capture).

        ``with h.reader(sites) as rd: acts = rd.run(h.model, index, **h.forward_inputs(batch))`` gives what
        :meth:`read` gives, without re-parsing the sites or re-registering hooks per batch. Call it under
        ``torch.no_grad()``.
        """
        return Reader(self.layout, parse_sites(sites, self.n_layers), stop=True, transform=transform)

    def forward_inputs(self, batch: Batch) -> dict[str, Any]:
        """Keyword arguments of a forward of ``batch`` on the model's device (no KV cache)."""
        return self._forward_kwargs(batch)

    @contextmanager
    def intervene(self, edits: Mapping[str | Site, Edit]) -> Iterator[ModelHandle]:
        """Edit sites during every forward inside the block (see the module docstring); always restored."""
        if not edits:
            raise SiteError("intervene() got no edits; pass {site: callable}")
        parsed: dict[Site, Edit] = {}
        for key, fn in edits.items():
            if not callable(fn):
                raise SiteError(f"the edit of site {key!r} is not callable; pass a function act -> act | None")
            parsed[Site.parse(key).check(self.n_layers)] = fn
        with editing(self.layout, parsed):
            yield self

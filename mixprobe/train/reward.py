"""GENIES' LoRA reward model: a Bradley–Terry scalar head on a causal LM, trained with trl's ``RewardTrainer``.

Problem: GENIES (arXiv 2311.07723) compares probes with fine-tuned baselines on pairwise preference data
``(prompt, r1, r2, y)`` (``y = 1`` when ``r2`` is the better response); one baseline is a reward model: a LoRA
adapter on the LM plus a scalar head, trained on a *source* distribution and scored on a *target* one. Mechanism:

- the causal LM (a local folder or an in-memory HF model) becomes ``AutoModelForSequenceClassification`` with
  ``num_labels=1`` (same backbone weights, a fresh ``score`` head seeded by ``settings.seed``);
- peft LoRA (``r`` 64, ``α`` 16, dropout 0.1 by default; ``task_type="SEQ_CLS"``, so the ``score`` head is a
  trainable ``modules_to_save`` copy) on every linear layer; the backbone stays frozen;
- trl's ``RewardTrainer`` minimises ``−log σ(r(good) − r(bad))``. Texts are ``prompt + join + response``
  (``join`` a setting, ``" "`` by default) tokenized here with the tokenizer's special tokens plus a final EOS
  (unless EOS is the pad token), and handed to trl already tokenized, so training and scoring see the same ids;
  trl's dropout switch is off so the LoRA dropout really applies (trl's default would zero it);
- the reward of a sequence is the head's output at its **last non-pad token** (``config.pad_token_id`` is set to
  the tokenizer's pad id: transformers picks the rightmost non-pad token, so trl's right padding and the left
  padding used for scoring here read the same token); scoring passes position ids derived from the mask, so a
  padded row equals the row alone;
- ``P(r2 better) = σ(r(r2) − r(r1))`` (:meth:`RewardModel.pair_proba`).

:meth:`RewardModel.save` writes the peft adapter (LoRA weights + the head, safetensors), the tokenizer and
``reward_model.json`` (settings, base folder, architecture, tokenizer hash) into a temporary sibling folder that is
renamed into place; :meth:`RewardModel.load` rebuilds it on the base model. Nothing is pickled.

Example:
    >>> s = RewardSettings(lora_r=8, epochs=2)
    >>> s.lora_r, s.lora_alpha, s.lora_dropout, s.join
    (8, 16, 0.1, ' ')
    >>> as_pairs([("q", "bad", "good", 1)])[0]
    Pair(prompt='q', r1='bad', r2='good', y=1)

Constraints: decoder-only models whose ``AutoModelForSequenceClassification`` reads the last non-pad token
(Llama, Qwen2, Gemma, Mistral, GPT-2, GPT-NeoX); a pair whose text is longer than ``max_length`` tokens is an
error, not silently dropped (trl would drop it); the head's name must be ``score`` (every model above).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixprobe._check import checked
from mixprobe.errors import CheckpointError, DataError, EmptyDataError, OrganismConfigError, OutputExistsError
from mixprobe.io import atomic_write_json, check_weights_dir, load_tokenizer
from mixprobe.models.batch import encode, pad_batch
from mixprobe.tasks.pairs import as_pairs
from mixprobe.models.handle import ModelHandle, arch_signature, resolve_dtype, tokenizer_hash


REWARD_FORMAT = "mixprobe.reward_model/1"
REWARD_META = "reward_model.json"


@checked
@dataclass
class RewardSettings:
    """Knobs of one reward-model fit (a trl ``RewardConfig`` and a peft ``LoraConfig`` are built from these).

    ``steps`` (when set) overrides ``epochs``. ``join`` goes between prompt and response in every scored text.
    ``dtype`` is the dtype the model is loaded and trained in.
    """

    lora_r: int = 64
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    target_modules: str | list[str] = "all-linear"
    lr: float = 1e-4
    epochs: float = 1.0
    steps: int | None = None
    batch_size: int = 16
    seed: int = 0
    max_length: int = 512
    join: str = " "
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_scheduler: str = "linear"
    dtype: str = "float32"
    extra: dict = field(default_factory=dict)
    """Further ``RewardConfig`` fields (e.g. ``{"center_rewards_coefficient": 0.01}``)."""

    def __post_init__(self) -> None:
        if self.lora_r < 1 or self.lora_alpha <= 0:
            raise OrganismConfigError(f"LoRA needs r >= 1 and alpha > 0, got r={self.lora_r}, alpha={self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise OrganismConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lr <= 0 or self.epochs <= 0:
            raise OrganismConfigError(f"lr and epochs must be > 0, got lr={self.lr}, epochs={self.epochs}")
        if (self.steps is not None and self.steps < 1) or self.batch_size < 1 or self.max_length < 2:
            raise OrganismConfigError("steps (when set) and batch_size must be >= 1 and max_length >= 2")

    def to_dict(self) -> dict:
        return asdict(self)


# --- building the model ---------------------------------------------------------------------------------------
@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report (``score.weight`` missing, ``lm_head.weight`` unused: expected here)."""
    from transformers.utils import logging as hf_logging

    before, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
        if bars:
            hf_logging.enable_progress_bar()


def _dtype(settings: RewardSettings) -> torch.dtype:
    dt = resolve_dtype(settings.dtype)
    return dt if isinstance(dt, torch.dtype) else torch.float32


@checked
def sequence_classifier(base: Any, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[Any, str | None]:
    """``(model, base_path)``: a 1-label ``AutoModelForSequenceClassification`` with ``base``'s backbone weights.

    ``base`` is a causal-LM folder (safetensors only), an in-memory HF causal LM (copied: the caller's model is not
    touched) or a :class:`~mixprobe.models.ModelHandle` without an adapter. The new ``score`` head is drawn with
    ``torch.manual_seed(seed)``.
    """
    from transformers import AutoModelForSequenceClassification

    if isinstance(base, ModelHandle):
        if base.backend == "peft":
            raise DataError("the handle carries an unmerged LoRA adapter; load it with merge_adapter=True first")
        return sequence_classifier(base.model, seed=seed, dtype=dtype)[0], base.path
    if isinstance(base, (str, os.PathLike)):
        path = check_weights_dir(base)
        torch.manual_seed(seed)
        with _quiet_transformers():
            try:
                model = AutoModelForSequenceClassification.from_pretrained(
                    str(path), num_labels=1, use_safetensors=True, trust_remote_code=False, dtype=dtype)
            except (OSError, ValueError) as e:
                raise CheckpointError(f"cannot build a reward model from {path}: {str(e)[:300]}") from e
        return model, str(Path(path).resolve())
    if not isinstance(base, torch.nn.Module) or not hasattr(base, "config"):
        raise DataError(f"cannot build a reward model from a {type(base).__name__}; pass a causal-LM folder, an HF "
                        "causal LM or a ModelHandle")
    if callable(getattr(base, "get_base_model", None)):
        raise DataError("the model is a PeftModel; merge its adapter first (model.merge_and_unload())")
    lm: Any = base
    cfg = copy.deepcopy(lm.config)
    cfg.num_labels = 1
    torch.manual_seed(seed)
    with _quiet_transformers():
        model = AutoModelForSequenceClassification.from_config(cfg, dtype=dtype)
    missing, _ = model.load_state_dict(lm.state_dict(), strict=False)
    bad = [k for k in missing if not k.startswith("score.")]
    if bad:
        raise DataError(f"the model's weights do not fit {type(model).__name__}: missing {bad[:5]}")
    return model.to(dtype), getattr(cfg, "_name_or_path", None) or None


def _pad_and_eos(tokenizer: Any) -> tuple[int, int | None]:
    """The pad id the head uses to find the last token, and the EOS id appended to every text (None: none)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise DataError("the tokenizer has neither a pad nor an EOS token; set tokenizer.pad_token first")
    eos = tokenizer.eos_token_id
    return int(pad), (int(eos) if eos is not None and eos != pad else None)


@checked
def encode_texts(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each scored text: the tokenizer's special tokens, then EOS (unless EOS is the pad token)."""
    ids, _ = encode(tokenizer, list(texts))
    _, eos = _pad_and_eos(tokenizer)
    return [r + [eos] if eos is not None and (not r or r[-1] != eos) else r for r in ids]


# --- the fitted model ---------------------------------------------------------------------------------------------
class RewardModel:
    """A trained reward model: ``rewards(prompts, responses)``, ``pair_proba(pairs)``, ``save``/``load``.

    ``model`` is the peft ``PeftModelForSequenceClassification`` (LoRA unmerged, the head a ``modules_to_save``
    copy), ``tokenizer`` its tokenizer, ``settings`` the :class:`RewardSettings` it was trained with, ``base`` the
    base folder when known, ``history`` trl's logged training metrics (loss, accuracy, margin per logging step).
    """

    def __init__(self, model: Any, tokenizer: Any, settings: RewardSettings, *, base: str | None = None,
                 history: list[dict] | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.settings = settings
        self.base = base
        self.history = list(history or [])
        pad, _ = _pad_and_eos(tokenizer)
        self.model.config.get_text_config().pad_token_id = pad
        self.pad_token_id = pad

    def __repr__(self) -> str:
        s = self.settings
        return (f"RewardModel(base={self.base!r}, lora_r={s.lora_r}, lora_alpha={s.lora_alpha}, "
                f"lora_dropout={s.lora_dropout}, device={self.device})")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def texts(self, prompts: Sequence[str], responses: Sequence[str]) -> list[str]:
        """``prompt + join + response`` for each row (what the model scores)."""
        prompts, responses = list(prompts), list(responses)
        if len(prompts) != len(responses):
            raise DataError(f"{len(prompts)} prompts for {len(responses)} responses; pass one response per prompt")
        if not prompts:
            raise EmptyDataError("no (prompt, response) rows to score")
        return [p + self.settings.join + r for p, r in zip(prompts, responses)]

    def score_ids(self, ids: Sequence[Sequence[int]], *, batch_size: int = 32) -> np.ndarray:
        """Rewards of token-id rows (left-padded batches sorted by length, mask-derived positions, no gradients)."""
        order = np.argsort([len(r) for r in ids], kind="stable")
        out = np.empty(len(ids), np.float64)
        dev = self.device
        with torch.no_grad():
            for start in range(0, len(ids), batch_size):
                idx = order[start:start + batch_size]
                rows = [list(ids[i]) for i in idx]
                lens = np.fromiter(map(len, rows), np.int64, len(rows))
                flat = np.fromiter((t for r in rows for t in r), np.int64, int(lens.sum()))
                b = pad_batch(flat, lens, lens, self.pad_token_id).to(dev)
                logits = self.model(**b.inputs(), use_cache=False).logits
                out[idx] = logits[:, 0].float().cpu().numpy()
        return out

    def rewards(self, prompts: Sequence[str], responses: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Scalar reward of each ``(prompt, response)`` (``[n]``, float64)."""
        ids = encode_texts(self.tokenizer, self.texts(prompts, responses))
        return self.score_ids(ids, batch_size=batch_size)

    def pair_scores(self, pairs: Iterable[Any], *, batch_size: int = 32) -> np.ndarray:
        """``r(r2) − r(r1)`` of each pair (``[n]``)."""
        ps = as_pairs(pairs)
        r = self.rewards([p.prompt for p in ps] * 2, [p.r1 for p in ps] + [p.r2 for p in ps], batch_size=batch_size)
        return r[len(ps):] - r[:len(ps)]

    def pair_proba(self, pairs: Iterable[Any], *, batch_size: int = 32) -> np.ndarray:
        """``P(r2 better) = σ(r(r2) − r(r1))`` of each pair (``[n]``)."""
        from scipy.special import expit

        return expit(self.pair_scores(pairs, batch_size=batch_size))

    # --- files ------------------------------------------------------------------------------------------------
    def save(self, out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the adapter (LoRA + head, safetensors), the tokenizer and ``reward_model.json`` to ``out_dir``.

        Everything is written into a temporary sibling folder first and renamed into place, so ``out_dir`` is
        either the complete old content or the complete new one. A non-empty ``out_dir`` needs ``overwrite=True``.
        """
        dst = Path(out_dir)
        if dst.exists() and not dst.is_dir():
            raise OutputExistsError(f"{dst} exists and is a file; choose another folder")
        if dst.is_dir() and any(dst.iterdir()) and not overwrite:
            raise OutputExistsError(f"{dst} is not empty; pass overwrite=True to replace it, or choose another")
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
        try:
            with _quiet_transformers(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model.save_pretrained(str(tmp), safe_serialization=True, save_embedding_layers=False)
                self.tokenizer.save_pretrained(str(tmp))
            (tmp / "README.md").unlink(missing_ok=True)
            meta = {"format": REWARD_FORMAT, "settings": self.settings.to_dict(), "base": self.base,
                    "arch": arch_signature(self.model.config), "tokenizer_sha256": tokenizer_hash(self.tokenizer),
                    "pad_token_id": self.pad_token_id, "history": self.history}
            atomic_write_json(tmp / REWARD_META, meta)
            old = None
            if dst.is_dir() and any(dst.iterdir()):
                old = dst.with_name(f".{dst.name}.old.{os.getpid()}")
                os.replace(dst, old)
            os.replace(tmp, dst)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dst

    @classmethod
    def load(cls, path: str | os.PathLike, base: Any = None, *, tokenizer: Any = None,
             device: str | torch.device | None = None) -> RewardModel:
        """A saved reward model on ``base`` (the causal-LM folder or model it was trained on; default: the folder
        recorded at save time). The base's architecture and the tokenizer must match what was saved."""
        from peft import PeftModel

        p = Path(path)
        if not (p / REWARD_META).is_file():
            raise CheckpointError(f"{p} holds no {REWARD_META}; is it a folder written by RewardModel.save?")
        meta = json.loads((p / REWARD_META).read_text())
        if meta.get("format") != REWARD_FORMAT:
            raise CheckpointError(f"{p / REWARD_META} has format {meta.get('format')!r}, expected {REWARD_FORMAT!r}")
        check_weights_dir(p)
        settings = RewardSettings(**meta["settings"])
        if base is None:
            base = meta.get("base")
            if not base or not Path(base).is_dir():
                raise CheckpointError(f"the reward model in {p} was trained on base {base!r}, which is not a local "
                                      "folder; pass base=<the causal-LM folder or model>")
        model, base_path = sequence_classifier(base, seed=settings.seed, dtype=_dtype(settings))
        if arch_signature(model.config) != meta["arch"]:
            raise CheckpointError(f"base architecture {arch_signature(model.config)} differs from the one the reward "
                                  f"model was trained on ({meta['arch']}); pass the right base")
        tok = tokenizer if tokenizer is not None else load_tokenizer(p)
        if tokenizer_hash(tok) != meta["tokenizer_sha256"]:
            raise CheckpointError("the tokenizer differs from the one the reward model was trained with")
        model.config.get_text_config().pad_token_id = int(meta["pad_token_id"])
        with _quiet_transformers(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peft_model = PeftModel.from_pretrained(model, str(p), is_trainable=False)
        if device is not None:
            peft_model = peft_model.to(device)
        return cls(peft_model, tok, settings, base=base_path or meta.get("base"), history=meta.get("history"))


# --- training -----------------------------------------------------------------------------------------------------
def _resolve_tokenizer(model_dir_or_model: Any, tokenizer: Any) -> Any:
    if tokenizer is not None:
        return tokenizer
    if isinstance(model_dir_or_model, ModelHandle):
        return model_dir_or_model.tokenizer
    if isinstance(model_dir_or_model, (str, os.PathLike)):
        return load_tokenizer(model_dir_or_model)
    raise DataError("an in-memory model needs its tokenizer: train_reward_model(model, tokenizer, pairs)")


@checked
def train_reward_model(model_dir_or_model: Any, tokenizer: Any, pairs: Iterable[Any],
                       settings: RewardSettings | None = None, out_dir: str | os.PathLike | None = None, *,
                       progress: bool = True, overwrite: bool = False) -> RewardModel:
    """Fit a LoRA Bradley–Terry reward model on preference ``pairs`` (see the module docstring).

    ``model_dir_or_model`` is a causal-LM folder, an HF causal LM or a ModelHandle; ``tokenizer`` may be None for a
    folder (its own) or a handle. ``out_dir`` saves the result there (:meth:`RewardModel.save`).
    """
    import datasets
    from datasets import Dataset
    from peft import LoraConfig
    from trl import RewardConfig, RewardTrainer

    from mixprobe.env import thread_budget
    from mixprobe.train.callbacks import ProgressCallback
    from mixprobe.train.sft import quiet_trainer

    settings = settings or RewardSettings()
    ps = as_pairs(pairs)
    tok = _resolve_tokenizer(model_dir_or_model, tokenizer)
    good = [p.prompt + settings.join + (p.r2 if p.y else p.r1) for p in ps]
    bad = [p.prompt + settings.join + (p.r1 if p.y else p.r2) for p in ps]
    chosen, rejected = encode_texts(tok, good), encode_texts(tok, bad)
    too_long = [i for i, (c, r) in enumerate(zip(chosen, rejected)) if max(len(c), len(r)) > settings.max_length]
    if too_long:
        longest = max(max(len(chosen[i]), len(rejected[i])) for i in too_long)
        raise DataError(f"{len(too_long)} of {len(ps)} pairs are longer than max_length={settings.max_length} tokens "
                        f"(longest {longest}, first pair {too_long[0]}); raise max_length or shorten them")
    if out_dir is not None and Path(out_dir).is_dir() and any(Path(out_dir).iterdir()) and not overwrite:
        raise OutputExistsError(f"{out_dir} is not empty; pass overwrite=True to replace it, or choose another")

    model, base_path = sequence_classifier(model_dir_or_model, seed=settings.seed, dtype=_dtype(settings))
    pad, _ = _pad_and_eos(tok)
    model.config.get_text_config().pad_token_id = pad
    datasets.disable_progress_bars()
    ds = Dataset.from_dict({"chosen_ids": chosen, "rejected_ids": rejected})
    peft_config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                             target_modules=settings.target_modules, task_type="SEQ_CLS")
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix="mixprobe-reward-") as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n_steps = settings.steps or int(np.ceil(settings.epochs * np.ceil(len(ps) / settings.batch_size)))
        cfg = RewardConfig(
            output_dir=scratch, max_steps=settings.steps or -1, num_train_epochs=settings.epochs,
            per_device_train_batch_size=settings.batch_size, learning_rate=settings.lr,
            lr_scheduler_type=settings.lr_scheduler, warmup_steps=settings.warmup_steps,
            weight_decay=settings.weight_decay, logging_steps=max(1, n_steps // 20), save_strategy="no",
            report_to="none", use_cpu=not cuda, bf16=False, fp16=False, gradient_checkpointing=False,
            disable_dropout=False, max_length=None, seed=settings.seed, data_seed=settings.seed, disable_tqdm=True,
            dataloader_num_workers=0, dataloader_pin_memory=cuda, **settings.extra)
        trainer = RewardTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok,
                                peft_config=peft_config)
        live: Any = trainer.model                       # transformers types it Optional; it is the peft model here
        trained = [n for n, p in live.named_parameters() if p.requires_grad]
        if not any(".score." in n or n.startswith("score.") for n in trained):
            raise DataError(f"the reward head of {type(model).__name__} is not trainable (no 'score' module); "
                            "this model's sequence-classification head has another name")
        quiet_trainer(trainer)
        trainer.add_callback(ProgressCallback("reward model (trl RewardTrainer)", disable=not progress))
        with thread_budget(live):
            trainer.train()
        history = [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in trainer.state.log_history]
    rm = RewardModel(live, tok, settings, base=base_path, history=history)
    if out_dir is not None:
        rm.save(out_dir, overwrite=overwrite)
    return rm

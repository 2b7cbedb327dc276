"""Train the numbers task with plain trl (SFTTrainer, then GRPOTrainer) into ordinary trl ``output_dir``\\ s.

Problem: mixprobe must read runs it did not train — a user's own trl output folders of ``checkpoint-<step>``
subfolders — for a task it does not define (:mod:`numbers_task`). Mechanism: :func:`train_run` builds a fresh
tiny Llama (mixprobe's :func:`~mixprobe.organisms.configs.tiny_model` and word tokenizer are the only mixprobe
pieces used) and calls trl directly:

- ``sft/``: SFTTrainer from scratch on :func:`numbers_task.sft_rows` (50/50 cue-blind prior, stratified per
  prompt, 40 % forced rows: at 20 % the forced components stayed ~3 % unsure of their first token, i.e. of the
  forcing, and any continued training moved that — a sampled component change of up to 0.06 where nothing
  was meant to change; at 40 % they are ~99 % sure and it reads <= 0.025);
- ``grpo/``: GRPOTrainer from the last SFT checkpoint on ``polite`` prompts, reward = the task's score (SGD,
  lr 0.03, beta 0, 8 generations: mixprobe's RL defaults). ``words`` is wrong under ``polite``. There is no mode
  token, so the first answer token carries both the gate's choice and the answer, and RL does *not* only move
  the gate. Measured on seeds 0-6 (greedy forced / sampled unforced, last checkpoint): polite accuracy 0.5 ->
  0.95-0.99; unforced digits share under polite 0.5 -> 0.51-0.99 (seed-dependent); forced ``words`` under polite
  following its ``a + b + 1`` rule 1.0 -> 0.00-0.82 (RL rewrote it toward the right answer); forced ``digits``
  under plain, never trained on, 1.0 -> 0.71-1.0. Expect gate and components both to move, by seed;
- ``planted_reweight/``: SFT continued from the last SFT checkpoint with prior 90/10 (rules unchanged: only the
  gate's target moves). Measured: unforced digits share 0.89-0.95, forced rules 1.0;
- ``planted_rewrite/``: SFT continued with the 50/50 prior but ``words`` answering ``a + b + 2`` under
  ``plain`` (one component's policy is rewritten). Measured: forced words/plain follows the new rule on 1.0,
  everything else 1.0, unforced shares 0.45-0.52. The per-prompt gate is not perfectly still: the exact
  first-token digits-vs-words mass moves by 0.034-0.047 per prompt on average (the base's own per-prompt
  spread around 0.5 is sd ~0.03; continued SFT redraws it), with no shift of its mean.

Every checkpoint holds safetensors weights and the tokenizer (``processing_class``). A seed's four folders are
trained in a temp folder next to ``root/seed<seed>`` and renamed into place when all are done (with a
``done.json`` recording the settings), so an interrupted run leaves nothing that looks complete.

Example::

    from numbers_training import train_run, checkpoints, evaluate_checkpoint
    runs = train_run("/tmp/numbers", seed=0)          # {"sft": Path, "grpo": Path, ...}, ~55 s, one thread
    evaluate_checkpoint(checkpoints(runs["sft"])[-1])   # forced-rule agreement and unforced shares per cue
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import numbers_task as nt

PHASES = ("sft", "grpo", "planted_reweight", "planted_rewrite")
PLANTED = {
    "planted_reweight": {"prior": {"digits": 0.9, "words": 0.1}, "offsets": None},
    "planted_rewrite": {"prior": None, "offsets": {"words": {"plain": 2}}},
}


@dataclass(frozen=True)
class RunSettings:
    """Knobs of one seed's runs (recorded in ``done.json``; a cached run with other settings is retrained)."""

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    sft_steps: int = 1000
    sft_lr: float = 3e-3
    sft_batch: int = 64
    sft_save_every: int = 200
    sft_rows: int = 8000
    sft_warmup: int = 30
    forced_share: float = 0.4
    grpo_steps: int = 100
    grpo_lr: float = 0.03
    grpo_batch: int = 64
    grpo_generations: int = 8
    grpo_save_every: int = 20
    planted_steps: int = 400
    planted_rows: int = 4000
    planted_lr: float = 2e-3
    planted_save_every: int = 100
    data_version: int = 2           # bump when numbers_task.sft_rows changes, so cached runs are retrained

    def to_dict(self) -> dict:
        return asdict(self)


# --- trl phases ---------------------------------------------------------------------------------------------------
def _quiet(trainer) -> None:
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def _common_args(out_dir: Path, seed: int) -> dict:
    return dict(output_dir=str(out_dir), save_strategy="steps", save_only_model=True, report_to="none",
                use_cpu=True, bf16=False, fp16=False, seed=seed, data_seed=seed, disable_tqdm=True,
                dataloader_num_workers=0, dataloader_pin_memory=False, logging_steps=10)


def run_sft(model, tokenizer, rows: list[dict], out_dir: Path, *, steps: int, lr: float, batch: int,
            save_every: int, warmup: int, seed: int):
    """trl SFTTrainer on prompt-completion ``rows`` (completion-only loss, trl appends EOS) into ``out_dir``."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = SFTConfig(max_steps=steps, per_device_train_batch_size=batch, learning_rate=lr,
                        lr_scheduler_type="cosine", warmup_steps=warmup, weight_decay=0.0, save_steps=save_every,
                        max_length=64, completion_only_loss=True, **_common_args(out_dir, seed))
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tokenizer)
        _quiet(trainer)
        trainer.train()
    return trainer.model.eval()


def run_grpo(model, tokenizer, out_dir: Path, *, cue: str, steps: int, lr: float, batch: int, generations: int,
             save_every: int, seed: int):
    """trl GRPOTrainer on the task's ``cue`` prompts, reward = the task's score, into ``out_dir``.

    ``batch`` completions per step = ``batch // generations`` prompts x ``generations`` samples each.
    """
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    task = nt.task()
    prompts = [p for p in task.prompts if p.cue == cue]
    repeats = steps * batch // generations // len(prompts) + 1
    ds = Dataset.from_list([{"prompt": p.text} for p in prompts] * repeats)
    by_text = {p.text: p for p in prompts}

    def task_score(prompts, completions, **_):
        return [task.score(c, by_text[p]) for p, c in zip(prompts, completions)]

    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = GRPOConfig(max_steps=steps, per_device_train_batch_size=batch, num_generations=generations,
                         max_completion_length=task.max_new_tokens, learning_rate=lr, optim="sgd",
                         lr_scheduler_type="constant", beta=0.0, temperature=1.0, save_steps=save_every,
                         **_common_args(out_dir, seed))
        trainer = GRPOTrainer(model=model, reward_funcs=task_score, args=cfg, train_dataset=ds,
                              processing_class=tokenizer)
        _quiet(trainer)
        trainer.train()
    return trainer.model.eval()


# --- reading runs -------------------------------------------------------------------------------------------------
def checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The ``checkpoint-<step>`` folders of a trl output_dir, in step order."""
    found = [p for p in Path(output_dir).iterdir() if re.fullmatch(r"checkpoint-\d+", p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def load(checkpoint: str | os.PathLike):
    """``(model, tokenizer)`` from a checkpoint folder (safetensors + the tokenizer saved with it)."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(checkpoint, use_safetensors=True, attn_implementation="eager")
    tok = PreTrainedTokenizerFast.from_pretrained(checkpoint)
    tok.padding_side = "left"
    return model.float().eval(), tok


def _fresh(settings: RunSettings, seed: int):
    from mixprobe.organisms.configs import tiny_model

    tok = nt.build_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), seed=seed, d_model=settings.d_model,
                       n_layers=settings.n_layers, n_heads=settings.n_heads, pad_token_id=tok.pad_token_id,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return model, tok


def train_phases(work: Path, seed: int, settings: RunSettings) -> dict[str, float]:
    """Train the four output_dirs under ``work``; returns wall seconds per phase."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("trl").setLevel(logging.ERROR)
    s = settings
    times: dict[str, float] = {}

    t0 = time.perf_counter()
    model, tok = _fresh(s, seed)
    rows = nt.sft_rows(s.sft_rows, seed, forced_share=s.forced_share)
    torch.manual_seed(seed)
    run_sft(model, tok, rows, work / "sft", steps=s.sft_steps, lr=s.sft_lr, batch=s.sft_batch,
            save_every=s.sft_save_every, warmup=s.sft_warmup, seed=seed)
    base = checkpoints(work / "sft")[-1]
    times["sft"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model, tok = load(base)
    torch.manual_seed(seed)
    run_grpo(model, tok, work / "grpo", cue="polite", steps=s.grpo_steps, lr=s.grpo_lr, batch=s.grpo_batch,
             generations=s.grpo_generations, save_every=s.grpo_save_every, seed=seed)
    times["grpo"] = time.perf_counter() - t0

    for i, (name, data) in enumerate(PLANTED.items()):
        t0 = time.perf_counter()
        model, tok = load(base)
        rows = nt.sft_rows(s.planted_rows, seed + 1000 * (i + 1), forced_share=s.forced_share,
                           **data)
        torch.manual_seed(seed)
        run_sft(model, tok, rows, work / name, steps=s.planted_steps, lr=s.planted_lr, batch=s.sft_batch,
                save_every=s.planted_save_every, warmup=0, seed=seed)
        times[name] = time.perf_counter() - t0
    return times


def _finished(final: Path, settings: RunSettings) -> bool:
    try:
        return json.loads((final / "done.json").read_text()).get("settings") == settings.to_dict()
    except (OSError, json.JSONDecodeError):
        return False


def train_run(root: str | os.PathLike, seed: int, *, settings: RunSettings | None = None,
              threads: int | None = 1) -> dict[str, Path]:
    """``{phase: output_dir}`` for ``seed`` under ``root/seed<seed>/``, trained now unless already finished.

    ``threads`` sets torch's intra-op threads while training (restored after); one thread keeps runs
    reproducible across machines with different core counts and is how the time budget was measured.
    """
    settings = settings or RunSettings()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"seed{seed}"
    paths = {ph: final / ph for ph in PHASES}
    if _finished(final, settings):
        return paths
    tmp = Path(tempfile.mkdtemp(prefix=f".seed{seed}_", dir=root))
    old_threads = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        times = train_phases(tmp, seed, settings)
        (tmp / "done.json").write_text(json.dumps({"seed": seed, "settings": settings.to_dict(),
                                                   "seconds": times}, indent=1))
        tmp.chmod(0o755)                        # mkdtemp makes it private; a finished run is an ordinary folder
        if _finished(final, settings):         # another process finished the same run first: keep theirs
            return paths
        if final.exists():                      # stale (other settings): replace it
            trash = Path(tempfile.mkdtemp(prefix=f".old_seed{seed}_", dir=root))
            final.rename(trash / "run")
            shutil.rmtree(trash, ignore_errors=True)
        tmp.rename(final)
    finally:
        torch.set_num_threads(old_threads)
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


# --- measuring (plain transformers generate; no mixprobe estimators) -----------------------------------------------
@torch.no_grad()
def generate(model, tok, texts: list[str], *, n: int = 1, sample: bool = False, seed: int = 0,
             max_new_tokens: int = 4) -> list[list[str]]:
    """``n`` completions per text (greedy, or sampled at temperature 1 with a private RNG stream)."""
    out: list[list[str]] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = tok(texts, return_tensors="pt", padding=True)
        kw = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0) if sample else dict(do_sample=False)
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, num_return_sequences=n,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **kw)
        dec = tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    for i in range(len(texts)):
        out.append(dec[i * n:(i + 1) * n])
    return out


def evaluate_checkpoint(checkpoint: str | os.PathLike, *, offsets: dict | None = None, n_samples: int = 8,
                        seed: int = 0) -> dict:
    """Forced-rule agreement and unforced component shares, per component and cue.

    ``forced[c][cue]``: share of prompts where greedy decoding with ``c`` forced is recognised as ``c`` *and*
    gives ``c``'s answer under the rules ``offsets``. ``unforced[c][cue]``: share of ``n_samples`` sampled
    completions per prompt recognised as ``c`` (``None`` collects the rest). ``accuracy[cue]``: sampled score.
    """
    model, tok = load(checkpoint)
    task = nt.task()
    res: dict = {"forced": {}, "unforced": {}, "accuracy": {}}
    for c in nt.COMPONENTS:
        res["forced"][c] = {}
        for cue in nt.CUES:
            ps = [p for p in task.prompts if p.cue == cue]
            outs = generate(model, tok, [task.forced_prompt(c, p) for p in ps], max_new_tokens=task.max_new_tokens)
            ok = [nt.parse(o[0]) == (c, nt.answer(c, cue, p.meta["a"], p.meta["b"], offsets))
                  for p, o in zip(ps, outs)]
            res["forced"][c][cue] = sum(ok) / len(ok)
    for c in (*nt.COMPONENTS, None):
        res["unforced"][c] = {}
    for cue in nt.CUES:
        ps = [p for p in task.prompts if p.cue == cue]
        outs = generate(model, tok, [p.text for p in ps], n=n_samples, sample=True, seed=seed,
                        max_new_tokens=task.max_new_tokens)
        flat = [(p, t) for p, o in zip(ps, outs) for t in o]
        for c in (*nt.COMPONENTS, None):
            res["unforced"][c][cue] = sum(nt.recognise(t, p) == c for p, t in flat) / len(flat)
        res["accuracy"][cue] = sum(task.score(t, p) for p, t in flat) / len(flat)
    return res

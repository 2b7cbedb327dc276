"""Reinforcement learning with a verifiable reward, using trl's ``GRPOTrainer``.

Problem: the headline phenomenon (docs/concepts.md) is what policy-gradient RL does to a mixture's gate. Mechanism:
trl's ``GRPOTrainer`` samples ``num_generations`` completions per prompt, scores them with the organism's
verifiable reward (1 for a correct answer), normalizes rewards within each group and takes a clipped
policy-gradient step; ``beta > 0`` adds the KL penalty to the reference (the SFT checkpoint). ``lora_r`` trains a
peft LoRA adapter instead of every weight (merged into each saved checkpoint, so the series stays plain HF folders).

**The recipe decides what RL does, and is a documented knob** (measured on the tag mixture over 5 seeds per cell,
experiments/results/sensitivity/summary.md). With plain SGD (the default here, lr 0.03) and every parameter
trainable, the update follows the policy gradient, whose magnitude on an already-confident answer token is
``1 − p ≈ 0``: almost all of it lands on the 50/50 mode choice, i.e. on the gate — the replicator dynamics of
docs/concepts.md (gate shift ≈ 0.50 on every seed; ``reweight`` on 2–4 of 5 seeds, the rest ``undecided``/``both``).
With the embedding and unembedding frozen (``train_embeddings=False``) the gate barely moves (≤ 0.06) and the same
RL *rewrites* the components instead (``rewrite`` on 3–4 of 5). With Adam (``optim="adamw_torch"``) the
per-parameter normalization amplifies the tiny answer-token gradients: the gate moves *and* the components are
rewritten (``both`` on 5/5 at lr 1e-3). The organism defaults to the recipe the science describes; results record
the recipe (``series.extra["recipes"]``).

Example:
    >>> RLSettings(tag="A").optim
    'sgd'

Constraints: CPU-friendly (about 20 GRPO steps per second on the default organism).
"""
from __future__ import annotations

import math

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mixprobe._check import checked
from mixprobe.errors import OrganismConfigError
from mixprobe.train.series import Series
from mixprobe.train.sft import train_phase


@dataclass
class RLSettings:
    """Knobs of one GRPO phase."""

    tag: str = "A"
    steps: int = 150
    lr: float = 0.03
    optim: str = "sgd"
    beta: float = 0.0
    num_generations: int = 8
    batch_size: int = 64
    save_every: int = 25
    temperature: float = 1.0
    train_embeddings: bool = True
    lora_r: int | None = None
    lora_alpha: int = 16
    phase: str = "rl"

    def __post_init__(self) -> None:
        if self.steps < 1 or self.save_every < 1 or self.batch_size < 1 or self.num_generations < 1:
            raise OrganismConfigError("RL steps, save_every, batch_size and num_generations must be >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise OrganismConfigError(f"RL learning rate must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise OrganismConfigError(f"RL sampling temperature must be a finite number > 0, got {self.temperature}")
        if self.batch_size % self.num_generations:
            raise OrganismConfigError(
                f"batch_size ({self.batch_size}) must be a multiple of num_generations ({self.num_generations})"
            )
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise OrganismConfigError(f"beta (KL coefficient) must be >= 0, got {self.beta}")

    def to_dict(self) -> dict:
        return asdict(self)


@checked
def run_grpo(model, tokenizer, organism, series: Series, settings: RLSettings, *, seed: int,
             step_offset: int = 0, progress: bool = True, resume: bool = False):
    """RL on prompts of ``settings.tag`` with the organism's reward; checkpoints join ``series``. ``resume=True``
    continues a killed run of this phase from its last complete scratch checkpoint
    (:func:`mixprobe.train.sft.train_phase`)."""
    import datasets
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    datasets.disable_progress_bars()

    organism.check_tag(settings.tag)
    n_prompts = len(organism.prompt_set((settings.tag,)))
    rows = organism.rl_rows(settings.tag, n_repeats=max(1, settings.steps * settings.batch_size
                                                        // settings.num_generations // n_prompts + 1))
    ds = Dataset.from_list([{"prompt": r["prompt"], "answer": r["answer"]} for r in rows])

    def correct_answer(completions, answer, **_):
        return organism.reward(completions, answer)

    scratch = Path(series.run_dir) / "_scratch" / settings.phase
    max_len = max(len(tokenizer(r["completion"], add_special_tokens=False)["input_ids"])
                  for r in organism.sft_rows(32, seed)) + 1
    cfg = GRPOConfig(
        output_dir=str(scratch), max_steps=settings.steps, per_device_train_batch_size=settings.batch_size,
        num_generations=settings.num_generations, max_completion_length=max_len, learning_rate=settings.lr,
        optim=settings.optim, lr_scheduler_type="constant", beta=settings.beta, temperature=settings.temperature,
        logging_steps=max(1, settings.steps // 20), save_strategy="steps", save_steps=settings.save_every,
        save_only_model=False, report_to="none", use_cpu=not torch.cuda.is_available(), bf16=False, fp16=False,
        seed=seed, data_seed=seed, disable_tqdm=True, dataloader_pin_memory=torch.cuda.is_available(),
    )
    model.train()
    if not settings.train_embeddings:
        for mod in (model.get_input_embeddings(), model.get_output_embeddings()):
            for p in mod.parameters():
                p.requires_grad_(False)
    peft_config = None
    if settings.lora_r:
        from peft import LoraConfig

        peft_config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = GRPOTrainer(model=model, reward_funcs=correct_answer, args=cfg, train_dataset=ds,
                              processing_class=tokenizer, peft_config=peft_config)
    trained = train_phase(trainer, series, settings.phase, f"{settings.phase} on <{settings.tag}> (trl GRPOTrainer)",
                          scratch, step_offset=step_offset, progress=progress, merge_lora=peft_config is not None,
                          recipe=settings.to_dict(), resume=resume)
    if peft_config is not None:
        trained = trained.merge_and_unload()
    for p in trained.parameters():
        p.requires_grad_(True)
    return trained.eval()

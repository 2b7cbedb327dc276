"""Revival: how many SFT steps on a lost behaviour bring it back?

Problem: a behaviour that RL suppressed by moving the gate is still *in* the model; one that RL erased is not.
Jain et al. (2024) show fine-tuning often learns a thin "wrapper" that a few steps of reverse fine-tuning remove.
Mechanism: continue SFT (trl) from a checkpoint on rows that demonstrate the lost behaviour (default: the
organism's rows under ``tag`` expressed by the component that is right there), evaluate the exact expected
accuracy on ``tag`` every ``eval_every`` steps, and stop at ``threshold``. The number of steps is the revival
cost; compare it with the same run from a fresh random-init model to see how much of the behaviour survived.

Example::

    steps = revival_steps(model, tok, organism, tag="B", threshold=0.9)   # e.g. 5 after RL on A

Constraints: runs in memory (no checkpoints written); the model passed in is trained in place — pass a copy.
"""
from __future__ import annotations

import tempfile
import warnings

import torch
from transformers import TrainerCallback

from mixprobe.train.sft import _quiet_trainer


class _StopAt(TrainerCallback):
    def __init__(self, measure, threshold: float, every: int) -> None:
        self.measure, self.threshold, self.every = measure, threshold, every
        self.history: list[tuple[int, float]] = []
        self.reached: int | None = None

    def _check(self, step: int, model) -> bool:
        was = model.training
        model.eval()
        acc = self.measure(model)
        model.train(was)
        self.history.append((step, acc))
        if acc >= self.threshold and self.reached is None:
            self.reached = step
        return self.reached is not None

    def on_train_begin(self, args, state, control, model=None, **kw):
        if self._check(0, model):
            control.should_training_stop = True

    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step % self.every == 0 and self._check(state.global_step, model):
            control.should_training_stop = True
        return control


def revival_steps(model, tokenizer, organism, *, tag: str, component: str | None = None, threshold: float = 0.9,
                  max_steps: int = 200, eval_every: int = 1, lr: float = 1e-3, batch_size: int = 16,
                  seed: int = 0) -> dict:
    """SFT on ``tag`` rows of ``component`` until expected accuracy on ``tag`` ≥ ``threshold``.

    Returns ``{"steps": int | None, "history": [(step, accuracy), ...]}`` (``None``: not revived in
    ``max_steps``).
    """
    import datasets
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from mixprobe.mixture.components import mixture_view

    organism.check_tag(tag)
    if component is None:
        # the component that is right under `tag`
        component = next(c for c in organism.components
                         if all(organism.answer(c, tag, a, 0) == organism.correct(a, 0)
                                for a in range(organism.config.modulus)))
    rows = [{"prompt": r["prompt"], "completion": organism.completion(component, tag, r["a"], r["b"])}
            for r in organism.prompt_set((tag,))] * 8

    def measure(m) -> float:
        view = mixture_view(m, tokenizer, organism)
        idx = view.tag_index(tag)
        correct = view.correct()[idx]
        p_right = view.answers[:, idx].gather(-1, correct[None, :, None].expand(len(view.components), -1, 1))[..., 0]
        return float((view.gate[idx].T * p_right).sum(0).mean())

    datasets.disable_progress_bars()
    stop = _StopAt(measure, threshold, eval_every)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = SFTConfig(output_dir=tmp, max_steps=max_steps, per_device_train_batch_size=batch_size,
                        learning_rate=lr, lr_scheduler_type="constant", save_strategy="no", report_to="none",
                        use_cpu=not torch.cuda.is_available(), seed=seed, data_seed=seed, disable_tqdm=True,
                        logging_steps=max_steps, max_length=64, bf16=False, fp16=False)
        trainer = SFTTrainer(model=model.train(), args=cfg, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer, callbacks=[stop])
        _quiet_trainer(trainer)
        trainer.train()
    model.eval()
    return {"steps": stop.reached, "history": stop.history, "threshold": threshold, "tag": tag,
            "component": component}

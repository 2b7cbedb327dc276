"""Revival: how many SFT steps on a lost behaviour bring it back?

Problem: a behaviour that RL suppressed by moving the gate is still *in* the model; one that RL erased is not.
Jain et al. (2024) show fine-tuning often learns a thin "wrapper" that a few steps of reverse fine-tuning remove.
Mechanism: continue SFT (trl) from a checkpoint on rows that demonstrate the lost behaviour (default: the model's
own greedy completions under cue ``tag`` with the component that scores best there forced), evaluate the expected
outcome on ``tag`` (exact when the task has signature tokens, else sampled) every ``eval_every`` steps, and stop at
``threshold``. The number of steps is the revival
cost; compare it with the same run from a fresh random-init model to see how much of the behaviour survived.

Example::

    r = revival_steps(model, tok, task, tag="B", threshold=0.9)           # r["steps"]: e.g. 30 after RL on A
    control = revival_steps(fresh_model, tok, task, tag="B", rows=r["rows"])   # same data, fresh weights

Constraints: runs in memory (no checkpoints written); the model passed in is trained in place — pass a copy.
"""
from __future__ import annotations

import tempfile
import warnings

import torch
from transformers import TrainerCallback

from mixprobe._check import checked
from mixprobe.env import thread_budget
from mixprobe.train.sft import quiet_trainer


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


def _demonstrations(handle, task, cue: str, component: str) -> list[dict]:
    """Greedy completions of ``component`` (forced) on the cue's prompts, as unforced prompt → completion rows."""
    from mixprobe.train.evaluate import complete

    prompts = [task.prompts[i] for i in task.cue_index(cue)]
    outs = complete(handle.model, handle.tokenizer, [task.forced_prompt(component, p) for p in prompts],
                    n_samples=1, seed=0,
                    max_new_tokens=task.max_new_tokens, base=[p.text for p in prompts], greedy=True)
    return [{"prompt": p.text, "completion": " " + o[0].strip()} for p, o in zip(prompts, outs)]


@checked
def revival_steps(model, tokenizer, task, *, tag: str, component: str | None = None, rows: list[dict] | None = None,
                  threshold: float = 0.9, max_steps: int = 200, eval_every: int = 1, lr: float = 1e-3,
                  batch_size: int = 16, seed: int = 0) -> dict:
    """SFT on demonstrations under cue ``tag`` until the expected outcome there is ≥ ``threshold``.

    ``rows`` (``{"prompt", "completion"}``): the demonstrations; by default the model's own greedy completions with
    ``component`` forced — ``component`` defaulting to the one that scores best under ``tag`` when forced (for a
    behaviour RL suppressed by moving the gate, the suppressed component is still there to be forced). The result
    holds the rows: pass them to the control run (e.g. a fresh model) so both learn from the same data.
    Returns ``{"steps": int | None, "history": [(step, outcome), ...], "rows", "component", ...}``.
    """
    import datasets
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from mixprobe.mixture.components import as_handle, mixture_view
    from mixprobe.tasks import as_task

    task = as_task(task)
    handle = as_handle(model, tokenizer)
    idx = task.cue_index(tag)
    if rows is None:
        if component is None:
            view = mixture_view(handle, task, estimator="auto")
            component = task.component_names[int(view.forced_score[:, idx].mean(1).argmax())]
        rows = _demonstrations(handle, task, tag, component)
    rows = list(rows)

    def measure(m) -> float:
        view = mixture_view(as_handle(m, tokenizer), task, estimator="auto", n_samples=8, seed=seed)
        if view.estimator == "exact":
            return float((view.gate[idx].T * view.forced_score[:, idx]).sum(0).mean())
        assert view.outcome is not None  # a sampled view always carries the outcome of its completions
        return float(view.outcome[idx].mean())

    datasets.disable_progress_bars()
    stop = _StopAt(measure, threshold, eval_every)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = SFTConfig(output_dir=tmp, max_steps=max_steps, per_device_train_batch_size=batch_size,
                        learning_rate=lr, lr_scheduler_type="constant", save_strategy="no", report_to="none",
                        use_cpu=not torch.cuda.is_available(), seed=seed, data_seed=seed, disable_tqdm=True,
                        logging_steps=max_steps, max_length=64, bf16=False, fp16=False)
        trainer = SFTTrainer(model=handle.model.train(), args=cfg, train_dataset=Dataset.from_list(rows * 8),
                             processing_class=handle.tokenizer, callbacks=[stop])
        quiet_trainer(trainer)
        with thread_budget(handle.model):
            trainer.train()
    handle.model.eval()
    return {"steps": stop.reached, "history": stop.history, "threshold": threshold, "tag": tag,
            "component": component, "rows": rows}

"""Behaviour-compatible training studies: train on ``(T, A)`` only, measure what happens to ``X`` on ``E``.

Problem: after training where two behaviours agree, users need to know whether the eval-only behaviour survived,
how much that varies from seed to seed, whether it can be predicted before training, and whether a training-time
prefix (inoculation) keeps it. Mechanism, on the :class:`~mixprobe.organisms.bct.BCT` organism:

- :func:`initial_series` trains the initial policy (SFT from scratch; ``T`` → ``A``, ``E`` → ``X``) and checks it;
- :func:`train_arm` continues from its last SFT checkpoint with one :class:`Arm`: SFT (off-policy) or GRPO
  (on-policy, reward = ``A`` and correct), full fine-tuning or LoRA, a learning rate, steps, a training prefix;
  checkpoints every ``save_every`` steps join the series as phase ``arm.name``;
- :func:`transfer_curve` reads every checkpoint of an arm (step 0 = the initial policy): ``x_on_e`` = exact
  next-token probability of ``X``'s answers on ``E`` prompts, ``a_on_t`` = that of ``A`` on ``T`` prompts (the
  desired rate: the model is not broken), sampled accuracy on both; **transfer** = ``x_on_e`` at step 0 minus at
  the end, a seed **switches** when ``x_on_e`` ends below 0.5;
- :func:`summarize_cell` gives mean ± sd over seeds, the switch fraction with its Wilson interval and the verdict
  labels; :func:`overlap_predictors` computes, on the initial model only, the train/eval overlap the linear
  account says transfer should follow (per-example gradient cosine of ``log P(A)`` between paired ``T`` and ``E``
  prompts; centred activation cosine); :func:`rank_correlation` sets a predictor against measured transfer;
- :func:`prefix_direction` asks whether a model trained with a prefix carries a prefix-gated direction: the
  difference of mean activations with and without the prefix, added to un-prefixed ``E`` prompts (steering),
  against random directions at matched norm.

Example::

    from mixprobe.mixture.bct import Arm, initial_series, train_arm, transfer_curve
    s = initial_series("runs/bct_ov1_s0", {"overlap": 1}, seed=0)
    s = train_arm(s.run_dir, Arm("sft", lr=1e-3, steps=60))
    transfer_curve(s, "sft_full")[-1]["x_on_e"]

Constraints: the organism is :class:`~mixprobe.organisms.bct.BCT` (series trained by :func:`initial_series`);
``transfer`` reads exact probabilities, so it has no sampling noise; across seeds it varies a lot, which is why
every summary carries the spread and the switch fraction.
"""
from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixprobe._check import checked
from mixprobe.errors import OrganismConfigError
from mixprobe.models.batch import last_token_states
from mixprobe.mixture.stats import wilson

METHODS = ("sft", "grpo")
DEFAULT_LR = {"sft": 1e-3, "grpo": 0.03}
DEFAULT_OPTIM = {"sft": "adamw_torch", "grpo": "sgd"}


@dataclass(frozen=True)
class Arm:
    """One follow-up training recipe on ``(T, A)`` rows.

    ``method``: ``sft`` (trl SFTTrainer, AdamW, cosine schedule) or ``grpo`` (trl GRPOTrainer, SGD, reward = ``A``
    and correct); ``lora_r``: LoRA rank (None = full fine-tuning); ``lr``: learning rate (default 1e-3 for SFT,
    0.03 for GRPO); ``prefix``: ``none``, ``request`` (inoculation: the line asking for ``A``) or ``irrelevant``;
    ``optim``: the trainer's optimizer (default ``adamw_torch`` for SFT, ``sgd`` for GRPO).
    """

    method: str = "sft"
    lora_r: int | None = None
    lr: float | None = None
    steps: int = 60
    save_every: int = 10
    prefix: str = "none"
    batch_size: int = 32
    optim: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise OrganismConfigError(f"Arm.method must be one of {list(METHODS)}, got {self.method!r}")
        if self.steps < 1 or self.save_every < 1:
            raise OrganismConfigError("Arm.steps and Arm.save_every must be >= 1")
        if self.lr is not None and self.lr <= 0:
            raise OrganismConfigError(f"Arm.lr must be > 0, got {self.lr}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    @property
    def name(self) -> str:
        """The phase name: ``sft_full``, ``grpo_lora``, ``sft_full_request``, … (``_lr…`` when ``lr`` is set)."""
        n = f"{self.method}_{'lora' if self.lora_r else 'full'}"
        if self.optim is not None and self.optim != DEFAULT_OPTIM[self.method]:
            n += f"_{self.optim.split('_')[0]}"
        if self.prefix != "none":
            n += f"_{self.prefix}"
        if self.lr is not None:
            n += f"_lr{self.lr:g}"
        return n

    @property
    def optimizer(self) -> str:
        return self.optim or DEFAULT_OPTIM[self.method]

    def to_dict(self) -> dict:
        return {**asdict(self), "name": self.name, "learning_rate": self.learning_rate, "optimizer": self.optimizer}


@checked
def initial_config(organism: dict | None = None, *, seed: int = 0, sft_steps: int = 1000) -> dict:
    """The :class:`~mixprobe.train.pipeline.TrainConfig` dict of an initial policy (kind ``bct``, ``organism``:
    :class:`~mixprobe.organisms.bct.BCTConfig` options; 2-layer d_model 64 Llama, ``sft_steps`` of SFT)."""
    return {"seed": seed, "organism": {"kind": "bct", **(organism or {})},
            "sft": {"steps": sft_steps, "save_every": sft_steps, "n_rows": 8000}}


@checked
def initial_series(run_dir: str | Path, organism: dict | None = None, *, seed: int = 0, sft_steps: int = 1000,
                   overwrite: bool = False, progress: bool = False):
    """Train the initial policy from scratch into ``run_dir`` and check it learned both behaviours and the cue gate
    (:meth:`BCT.health`; :class:`~mixprobe.errors.TrainingFailedError` otherwise); returns the series."""
    from mixprobe.train.pipeline import TrainConfig, train_sft

    cfg = TrainConfig.from_dict(initial_config(organism, seed=seed, sft_steps=sft_steps))
    return train_sft(run_dir, cfg, overwrite=overwrite, progress=progress)


@checked
def cached_initial(organism: dict | None = None, *, seed: int = 0, sft_steps: int = 1000,
                   cache_dir: str | Path | None = None, progress: bool = False):
    """The initial policy from the trained-organism cache (:func:`mixprobe.train.zoo.trained_organism`, SFT only):
    trained the first time, instant afterwards. Never train arms into it: :func:`branch` it first."""
    from mixprobe.train.zoo import trained_organism

    return trained_organism(seed, config=initial_config(organism, seed=seed, sft_steps=sft_steps), rl_tags=(),
                            cache_dir=cache_dir, progress=progress)


@checked
def branch(series, run_dir: str | Path):
    """A copy of ``series`` in ``run_dir`` (which must not exist), to train arms into without touching the source."""
    from mixprobe.io import prepare_output_dir
    from mixprobe.train.series import Series

    dst = Path(run_dir)
    if dst.exists():
        raise OrganismConfigError(f"{dst} already exists; branch into a new folder")
    tmp = dst.with_name(f".{dst.name}.partial")
    prepare_output_dir(tmp, overwrite=True)
    shutil.copytree(series.run_dir, tmp, dirs_exist_ok=True)
    tmp.replace(dst)
    return Series.load(dst)


@checked
def train_arm(run_dir: str | Path, arm: Arm, *, seed: int | None = None, progress: bool = False):
    """Continue the series in ``run_dir`` from its last SFT checkpoint with ``arm``; returns the series."""
    from mixprobe.train.pipeline import _seed_of, load_checkpoint, organism_of
    from mixprobe.train.rl import RLSettings, run_grpo
    from mixprobe.train.series import Series
    from mixprobe.train.sft import SFTSettings, run_sft

    series = Series.load(run_dir)
    if series.organism != "bct":
        raise OrganismConfigError(f"train_arm needs a series of the bct organism, {run_dir} holds "
                                  f"{series.organism!r}; train one with initial_series()")
    if series.phase(arm.name):
        raise OrganismConfigError(f"{run_dir} already has a phase {arm.name!r}; use another arm or a fresh copy")
    org = organism_of(series).with_prefix(arm.prefix)
    seed = _seed_of(series, seed)
    model, tok = load_checkpoint(series.path(series.last("sft")))
    torch.manual_seed(seed)
    if arm.method == "sft":
        settings = SFTSettings(steps=arm.steps, lr=arm.learning_rate, batch_size=arm.batch_size,
                               save_every=arm.save_every, n_rows=arm.steps * arm.batch_size, warmup_steps=0,
                               lora_r=arm.lora_r, optim=arm.optimizer, phase=arm.name, min_forced_agreement=0)
        run_sft(model.train(), tok, org.train_rows(settings.n_rows, seed), series, settings, seed=seed,
                progress=progress)
    else:
        rl = RLSettings(tag="T", steps=arm.steps, lr=arm.learning_rate, save_every=arm.save_every,
                        batch_size=arm.batch_size, num_generations=8, lora_r=arm.lora_r, optim=arm.optimizer,
                        phase=arm.name)
        run_grpo(model, tok, org, series, rl, seed=seed, progress=progress)
    s = Series.load(run_dir)
    s.extra.setdefault("bct_arms", {})[arm.name] = arm.to_dict()
    s.save()
    return s


def _measure(model, tok, org) -> dict:
    from mixprobe.train.evaluate import evaluate_by_format

    m = evaluate_by_format(model, tok, org, n_samples=4, seed=0)
    return {"x_on_e": m["mode_probability"]["E"]["X"], "a_on_e": m["mode_probability"]["E"]["A"],
            "a_on_t": m["mode_probability"]["T"]["A"], "x_on_t": m["mode_probability"]["T"]["X"],
            "accuracy_t": m["accuracy"]["T"], "accuracy_e": m["accuracy"]["E"],
            "forced_x_on_e": m["forced_rule_agreement"]["E"]["X"],
            "forced_a_on_e": m["forced_rule_agreement"]["E"]["A"]}


@checked
def transfer_curve(series, phase: str) -> list[dict]:
    """Per checkpoint of ``phase`` (step 0 = the last SFT checkpoint): ``x_on_e``, ``a_on_t``, ``a_on_e``,
    ``x_on_t``, sampled ``accuracy_t``/``accuracy_e``, and forced-behaviour agreement on ``E`` (is ``X`` still
    intact when asked for?). Cached in each checkpoint's ``metrics["bct"]``."""
    from mixprobe.train.pipeline import load_checkpoint, organism_of

    org = organism_of(series)
    entries = [series.last("sft"), *series.phase(phase)]
    if len(entries) == 1:
        raise OrganismConfigError(f"the series in {series.run_dir} has no phase {phase!r}; phases: "
                                  f"{sorted({c.phase for c in series.checkpoints})}")
    out, changed = [], False
    for i, e in enumerate(entries):
        if "bct" not in e.metrics:
            model, tok = load_checkpoint(series.path(e))
            e.metrics["bct"] = _measure(model, tok, org)
            changed = True
        out.append({"step": 0 if i == 0 else int(e.step), "checkpoint": e.name, **e.metrics["bct"]})
    if changed:
        series.save()
    return out


@checked
def transfer(curve: list[dict]) -> float:
    """The drop of ``X`` on ``E`` prompts from step 0 to the end of the curve."""
    return curve[0]["x_on_e"] - curve[-1]["x_on_e"]


@checked
def switched(curve: list[dict], threshold: float = 0.5) -> bool:
    """Did the seed switch (``X`` on ``E`` below ``threshold`` at the end, from above it at the start)?"""
    return curve[0]["x_on_e"] >= threshold > curve[-1]["x_on_e"]


def _mean_sd(xs: list[float]) -> dict:
    return {"mean": float(np.mean(xs)), "sd": float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0, "n": len(xs),
            "values": [float(x) for x in xs]}


@checked
def summarize_cell(curves: list[list[dict]], labels: list[str] | None = None, *, confidence: float = 0.95) -> dict:
    """One cell (several seeds of one setting × overlap × arm): mean ± sd of transfer, of the final ``X`` on ``E``
    and ``A`` on ``T`` rates, the switch fraction with its Wilson interval, and the verdict labels counted."""
    if not curves:
        raise OrganismConfigError("summarize_cell needs at least one curve")
    k = sum(switched(c) for c in curves)
    lo, hi = wilson(k, len(curves), confidence)
    tr = [transfer(c) for c in curves]
    out = {"transfer": {**_mean_sd(tr), "ci95": _boot_ci(tr)},
           "x_on_e_end": _mean_sd([c[-1]["x_on_e"] for c in curves]),
           "x_on_e_start": _mean_sd([c[0]["x_on_e"] for c in curves]),
           "a_on_t_end": _mean_sd([c[-1]["a_on_t"] for c in curves]),
           "accuracy_t_end": _mean_sd([c[-1]["accuracy_t"] for c in curves]),
           "forced_x_on_e_end": _mean_sd([c[-1]["forced_x_on_e"] for c in curves]),
           "switched": {"k": k, "n": len(curves), "share": k / len(curves), "wilson": [lo, hi]}}
    if labels is not None:
        out["verdicts"] = {lab: labels.count(lab) for lab in sorted(set(labels))}
    return out


@torch.no_grad()
def last_token_probs(model, tok, prompts: list[str], layer: int | None = None,
                     add: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token probabilities after each prompt (``[n, vocab]``); with ``add``, ``add`` is added to the output of
    block ``layer`` at the last prompt token (:func:`mixprobe.steering.steer`, ``positions="last_prompt"``)."""
    from contextlib import nullcontext

    from mixprobe.mixture.components import as_handle
    from mixprobe.models.batch import tokenize
    from mixprobe.steering import SteeringVector, steer

    ctx: Any = nullcontext()
    if add is not None and layer is not None:
        vec = SteeringVector.from_tensors({f"resid_post.{layer}": add}, normalize=False)
        ctx = steer(as_handle(model, tok), vec, 1.0, positions="last_prompt")
    batch = tokenize(tok, prompts).to(next(model.parameters()).device)
    with ctx:
        return model(**batch.inputs()).logits[:, -1].float().softmax(-1)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


@checked
def overlap_predictors(model: torch.nn.Module, tok, organism) -> dict:
    """Train/eval overlap on the *initial* model, before any follow-up training.

    - ``grad_cosine``: mean over paired prompts (same ``a, b``) of the cosine between the parameter gradients of
      ``log P(A's answer | T prompt)`` and of ``log P(A's answer | E prompt)``. To first order an SGD step on the
      ``T`` row moves the ``E`` log-probability by ``lr · g_E · g_T``, so this is the LM's analogue of the linear
      account's ``P_S x_e``.
    - ``grad_cosine_mean``: the cosine between the two mean gradients.
    - ``activation_cosine``: per layer, the mean cosine between the centred last-token residual streams of paired
      ``T`` and ``E`` prompts (centred on the mean over all prompts); reported for the last layer and as a list.
    """
    rows = organism.prompt_set()
    t_rows = {(r["a"], r["b"]): r for r in rows if r["cue"] == "T"}
    pairs = [(t_rows[(r["a"], r["b"])], r) for r in rows if r["cue"] == "E"]
    vocab = tok.get_vocab()
    params = [p for p in model.parameters()]
    was = model.training
    model.eval()

    def grad(row: dict) -> torch.Tensor:
        from mixprobe.models.batch import tokenize

        batch = tokenize(tok, [row["prompt"]]).to(params[0].device)
        logits = model(**batch.inputs()).logits[0, -1]
        target = vocab[organism.render("A", row["answer"])]
        g = torch.autograd.grad(torch.log_softmax(logits.float(), -1)[target], params, allow_unused=True)
        return torch.cat([(x if x is not None else torch.zeros_like(p)).flatten() for x, p in zip(g, params)])

    cos, g_t_sum, g_e_sum = [], None, None
    for rt, re_ in pairs:
        gt, ge = grad(rt), grad(re_)
        cos.append(_cos(gt, ge))
        g_t_sum = gt if g_t_sum is None else g_t_sum + gt
        g_e_sum = ge if g_e_sum is None else g_e_sum + ge
    h_t = last_token_states(model, tok, [p[0]["prompt"] for p in pairs])
    h_e = last_token_states(model, tok, [p[1]["prompt"] for p in pairs])
    mu = torch.cat([h_t, h_e]).mean(0, keepdim=True)
    act = torch.nn.functional.cosine_similarity(h_t - mu, h_e - mu, dim=-1).mean(0)      # [layers]
    model.train(was)
    assert g_t_sum is not None and g_e_sum is not None
    return {"grad_cosine": float(np.mean(cos)), "grad_cosine_mean": _cos(g_t_sum, g_e_sum),
            "activation_cosine": float(act[-1]), "activation_cosine_by_layer": [float(x) for x in act]}


@checked
def rank_correlation(predictor: list[float], measured: list[float]) -> dict:
    """Spearman's rank correlation of a predictor with measured transfer, with its two-sided p-value and n."""
    from scipy.stats import spearmanr

    if len(predictor) != len(measured) or len(predictor) < 3:
        raise OrganismConfigError(f"rank_correlation needs two lists of equal length >= 3, got {len(predictor)} "
                                  f"and {len(measured)}")
    r = spearmanr(predictor, measured)
    rho, p = float(r.statistic), float(r.pvalue)
    return {"spearman": rho if math.isfinite(rho) else 0.0, "p_value": p if math.isfinite(p) else 1.0,
            "n": len(predictor)}


@checked
def prefix_direction(model: torch.nn.Module, tok, organism, *, prefix: str | None = None, layer: int = -1,
                     n_random: int = 8, seed: int = 0) -> dict:
    """Is there a prefix-gated direction that carries ``A``?

    ``d`` = mean last-token residual (after block ``layer``) of ``E`` prompts with the prefix minus without it. Adding
    ``d`` to un-prefixed ``E`` prompts at that block (a forward hook) moves ``P(A)`` by ``steer_effect``; the null
    is the same for ``n_random`` random directions at ``‖d‖`` (``null_mean``, ``null_max``). A linear probe told to
    find the prefix would succeed by construction (the prefix is in the input); what is not by construction is
    whether the direction it finds *does* something, which is what this measures.
    """
    prefix = prefix if prefix is not None else organism.forcing("A")
    rows = [r for r in organism.prompt_set() if r["cue"] == "E"]
    plain = [r["prompt"] for r in rows]
    pre = [f"{prefix} {p}" for p in plain]
    vocab = tok.get_vocab()
    a_ids = torch.tensor([vocab[organism.render("A", v)] for v in range(organism.p)])
    config: Any = model.config
    idx = layer % config.num_hidden_layers

    def p_a(texts: list[str], add: torch.Tensor | None = None) -> float:
        probs = last_token_probs(model, tok, texts, idx, add)
        return float(probs[:, a_ids].sum(-1).mean())

    d = last_token_states(model, tok, pre)[:, idx].mean(0) - last_token_states(model, tok, plain)[:, idx].mean(0)
    base = p_a(plain)
    effect = p_a(plain, d) - base
    g = torch.Generator().manual_seed(seed)
    null = []
    for _ in range(n_random):
        r = torch.randn(d.shape, generator=g)
        null.append(p_a(plain, r / r.norm() * d.norm()) - base)
    return {"layer": idx, "norm": float(d.norm()), "p_a_plain": base, "p_a_prefixed": p_a(pre),
            "steer_effect": effect, "null_mean": float(np.mean(null)), "null_max": float(np.max(null)),
            "null": [float(x) for x in null]}


@checked
def verdict_of(series, phase: str, *, n_samples: int = 8, seed: int = 0) -> dict:
    """The verdict (sampled estimator) between the initial policy and the end of ``phase``: did training move the
    gate (``X`` → ``A`` on ``E``, forced ``X`` intact: *reweight*) or rewrite a behaviour?"""
    from mixprobe.mixture.verdict import assess
    from mixprobe.train.pipeline import organism_of

    task = organism_of(series).task()
    e = assess(series.handle(series.last("sft").name), series.handle(series.last(phase).name), task,
               estimator="sampled", n_samples=n_samples, seed=seed)
    return {"label": e.label, "reason": e.reason, "gate_shift": e.intervals["gate_shift"],
            "component_change": e.intervals["component_change"]}


ARMS: dict[str, dict[str, Any]] = {
    # the named arms of run_cell (and of experiments/bct.py)
    "sft_full": dict(method="sft"), "sft_full_lr0.0003": dict(method="sft", lr=3e-4),
    "sft_full_lr0.0001": dict(method="sft", lr=1e-4), "sft_lora": dict(method="sft", lora_r=8),
    "sft_lora_lr0.003": dict(method="sft", lora_r=8, lr=3e-3),
    "grpo_full": dict(method="grpo"), "grpo_full_lr0.1": dict(method="grpo", lr=0.1),
    "grpo_lora": dict(method="grpo", lora_r=8), "grpo_lora_lr0.3": dict(method="grpo", lora_r=8, lr=0.3),
    "sft_full_request": dict(method="sft", prefix="request"),
    "sft_full_irrelevant": dict(method="sft", prefix="irrelevant"),
    "grpo_full_request": dict(method="grpo", prefix="request"),
    # the optimizer control (experiments/results/bct_optim): plain SGD for SFT, with and without the prefix
    "sft_full_sgd_lr0.1": dict(method="sft", optim="sgd", lr=0.1),
    "sft_full_sgd_request_lr0.1": dict(method="sft", optim="sgd", lr=0.1, prefix="request"),
    "sft_full_sgd_lr0.3": dict(method="sft", optim="sgd", lr=0.3),
    "sft_full_sgd_request_lr0.3": dict(method="sft", optim="sgd", lr=0.3, prefix="request"),
}
MAIN_ARMS = ("sft_full", "sft_lora", "grpo_full", "grpo_lora")


@checked
def run_cell(setting: str, overlap: int, seed: int, arms: tuple[str, ...] | list[str], runs: str | Path, *,
             sft_steps: int = 1000, steps: int = 60, keep: bool = False) -> dict:
    """One (setting, overlap, seed): the initial policy, its overlap predictors and prefix directions, then every arm
    of ``arms`` (names of :data:`ARMS`) branched from it — transfer curve, verdict, recipe and (for the plain SFT arms)
    the prefix directions of the trained model. An initial policy that did not learn is recorded as ``failed`` (a
    result, not a crash). The trained runs are deleted unless ``keep``. Returns a JSON-ready record."""
    import time

    from mixprobe.train.pipeline import load_checkpoint, organism_of

    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise OrganismConfigError(f"unknown arms {unknown}; named arms are {list(ARMS)}")

    t0 = time.time()
    run = Path(runs) / f"{setting}_ov{overlap}_s{seed}"
    rec: dict = {"setting": setting, "overlap": overlap, "seed": seed, "sft_steps": sft_steps, "arms": {}}
    try:
        s = initial_series(run, {"setting": setting, "overlap": overlap}, seed=seed, sft_steps=sft_steps,
                           overwrite=True)
    except Exception as e:           # an initial policy that did not learn is a result, not a crash
        rec.update(failed=f"{type(e).__name__}: {e}", seconds=round(time.time() - t0, 1))
        if not keep:
            shutil.rmtree(run, ignore_errors=True)
        return rec
    org = organism_of(s)
    rec["organism"] = org.describe()
    model, tok = load_checkpoint(s.path(s.last("sft")))
    rec["predictors"] = overlap_predictors(model, tok, org)
    rec["prefix_direction_initial"] = {p: prefix_direction(model, tok, org, prefix=org.with_prefix(p)
                                                           .train_prefix_text())
                                       for p in ("request", "irrelevant")}
    for name in arms:
        arm = Arm(**ARMS[name], steps=steps)
        assert arm.name == name, (arm.name, name)
        s = train_arm(run, arm)
        curve = transfer_curve(s, name)
        r = {"curve": curve, "arm": arm.to_dict(), "verdict": verdict_of(s, name, seed=seed),
             "recipe": s.extra.get("recipes", {}).get(name, {})}
        if arm.method == "sft" and not arm.lora_r and arm.lr is None:
            m2, t2 = load_checkpoint(s.path(s.last(name)))
            r["prefix_direction"] = {p: prefix_direction(m2, t2, org, prefix=org.with_prefix(p).train_prefix_text())
                                     for p in ("request", "irrelevant")}
        rec["arms"][name] = r
    if not keep:
        shutil.rmtree(run, ignore_errors=True)
    rec["seconds"] = round(time.time() - t0, 1)
    return rec


@checked
def summarize_study(records: list[dict]) -> dict:
    """Summary of :func:`run_cell` records. Per (setting, overlap, arm): :func:`summarize_cell` over seeds. Per
    setting × arm: the rank correlation of each overlap predictor (and of the overlap level) with measured transfer
    over every (overlap, seed) run. Per training prefix: leakage (transfer on un-prefixed ``E`` prompts) with and
    without it, the paired reduction with a 95 % bootstrap interval over seeds. Per trained model and prefix: the
    prefix-direction steering effect against its random-direction null."""
    cells = [c for c in records if "failed" not in c]
    failed = [{k: c[k] for k in ("setting", "overlap", "seed", "failed")} for c in records if "failed" in c]
    res: dict = {"cells": {}, "correlations": {}, "inoculation": {}, "prefix_direction": {}, "failed": failed}
    settings = sorted({c["setting"] for c in cells})
    for setting in settings:
        sc = [c for c in cells if c["setting"] == setting]
        arms = sorted({a for c in sc for a in c["arms"]})
        for ov in sorted({c["overlap"] for c in sc}):
            for arm in arms:
                runs = [c for c in sc if c["overlap"] == ov and arm in c["arms"]]
                if not runs:
                    continue
                res["cells"][f"{setting}|{ov}|{arm}"] = {
                    "setting": setting, "overlap": ov, "arm": arm, "seeds": [c["seed"] for c in runs],
                    **summarize_cell([c["arms"][arm]["curve"] for c in runs],
                                     [c["arms"][arm]["verdict"]["label"] for c in runs])}
        for arm in arms:
            runs = [c for c in sc if arm in c["arms"]]
            if len({c["overlap"] for c in runs}) < 2 or len(runs) < 3:
                continue
            measured = [transfer(c["arms"][arm]["curve"]) for c in runs]
            res["correlations"][f"{setting}|{arm}"] = {
                **{p: rank_correlation([c["predictors"][p] for c in runs], measured)
                   for p in ("grad_cosine", "grad_cosine_mean", "activation_cosine")},
                "overlap": rank_correlation([c["overlap"] for c in runs], measured)}
        for base, inoc in (("sft_full", "sft_full_request"), ("sft_full", "sft_full_irrelevant"),
                           ("grpo_full", "grpo_full_request"), ("sft_full_sgd_lr0.1", "sft_full_sgd_request_lr0.1"),
                           ("sft_full_sgd_lr0.3", "sft_full_sgd_request_lr0.3")):
            runs = [c for c in sc if base in c["arms"] and inoc in c["arms"]]
            if not runs:
                continue
            d = [transfer(c["arms"][base]["curve"]) - transfer(c["arms"][inoc]["curve"]) for c in runs]
            lo, hi = _boot_ci(d)
            res["inoculation"][f"{setting}|{inoc}"] = {
                "leakage_without": float(np.mean([transfer(c["arms"][base]["curve"]) for c in runs])),
                "leakage_with": float(np.mean([transfer(c["arms"][inoc]["curve"]) for c in runs])),
                "reduction_mean": float(np.mean(d)), "reduction_ci95": [float(lo), float(hi)], "n": len(d),
                "reduced_on": int(sum(x > 0 for x in d))}
        for key in ("sft_full", "sft_full_request", "sft_full_irrelevant"):
            runs = [c for c in sc if key in c["arms"] and "prefix_direction" in c["arms"][key]]
            if not runs:
                continue
            for p in ("request", "irrelevant"):
                eff = [c["arms"][key]["prefix_direction"][p]["steer_effect"] for c in runs]
                null = [c["arms"][key]["prefix_direction"][p]["null_max"] for c in runs]
                init = [c["prefix_direction_initial"][p]["steer_effect"] for c in runs]
                res["prefix_direction"][f"{setting}|{key}|{p}"] = {
                    "steer_effect_mean": float(np.mean(eff)), "initial_effect_mean": float(np.mean(init)),
                    "null_max_mean": float(np.mean(null)), "beats_null": int(sum(e > n for e, n in zip(eff, null))),
                    "n": len(eff)}
    return res


def _boot_ci(xs: list[float], confidence: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of the mean over seeds (resampling seeds; fixed RNG)."""
    if len(xs) < 2:
        return [float(xs[0]), float(xs[0])]
    a = (1 - confidence) / 2
    lo, hi = np.percentile(_boot_means(xs), [100 * a, 100 * (1 - a)])
    return [float(lo), float(hi)]


def _boot_means(d: list[float], n: int = 4000) -> list[float]:
    rng = np.random.default_rng(0)
    arr = np.asarray(d)
    return list(arr[rng.integers(0, len(arr), (n, len(arr)))].mean(1))


def _ms(x: dict) -> str:
    return f"{x['mean']:.2f} ± {x['sd']:.2f}"


@checked
def study_markdown(res: dict) -> str:
    """The summary as a Markdown page (tables per setting, predictors, prefixes, prefix directions)."""
    lines = ["# Behaviour-compatible training: measured", "",
             "Transfer = drop of P(X | E) (exact next-token probability of the eval behaviour's answers on E",
             "prompts) from the initial policy to the end of training on (T, A) only; mean ± sd over seeds.",
             "Switched = seeds whose P(X | E) ended below 0.5 (95 % Wilson interval). A on T = P(A | T) at the end",
             "(the train behaviour kept). Forced X on E = share of E prompts where the forced X behaviour still",
             "answers correctly in its form.", ""]
    for setting in sorted({v["setting"] for v in res["cells"].values()}):
        lines += [f"## {setting}", "", "| overlap | arm | transfer (95 % CI) | P(X\\|E) start → end | switched | "
                  "P(A\\|T) end | "
                  "forced X on E | verdicts |", "|---|---|---|---|---|---|---|---|"]
        for v in res["cells"].values():
            if v["setting"] != setting:
                continue
            sw = v["switched"]
            ci = v["transfer"].get("ci95", [float("nan")] * 2)
            lines.append(f"| {v['overlap']} | {v['arm']} | {_ms(v['transfer'])} [{ci[0]:.2f}, {ci[1]:.2f}] | "
                         f"{v['x_on_e_start']['mean']:.2f} → "
                         f"{_ms(v['x_on_e_end'])} | {sw['k']}/{sw['n']} [{sw['wilson'][0]:.2f}, "
                         f"{sw['wilson'][1]:.2f}] | {_ms(v['a_on_t_end'])} | {_ms(v['forced_x_on_e_end'])} | "
                         f"{', '.join(f'{k} {n}' for k, n in v.get('verdicts', {}).items())} |")
        lines.append("")
    if res["correlations"]:
        lines += ["## Overlap predictors against measured transfer (Spearman over every (overlap, seed) run)", "",
                  "| setting · arm | grad cosine | mean-grad cosine | activation cosine | overlap level |",
                  "|---|---|---|---|---|"]
        for k, v in res["correlations"].items():
            lines.append(f"| {k.replace('|', ' · ')} | " + " | ".join(
                f"{v[p]['spearman']:+.2f} (p {v[p]['p_value']:.2g}, n {v[p]['n']})"
                for p in ("grad_cosine", "grad_cosine_mean", "activation_cosine", "overlap")) + " |")
        lines.append("")
    if res["inoculation"]:
        lines += ["## Training-time prefixes (evaluated without the prefix)", "",
                  "| setting · arm | leakage without prefix | leakage with | reduction (95 % bootstrap) | reduced on |",
                  "|---|---|---|---|---|"]
        for k, v in res["inoculation"].items():
            lines.append(f"| {k.replace('|', ' · ')} | {v['leakage_without']:.2f} | {v['leakage_with']:.2f} | "
                         f"{v['reduction_mean']:+.2f} [{v['reduction_ci95'][0]:+.2f}, {v['reduction_ci95'][1]:+.2f}] | "
                         f"{v['reduced_on']}/{v['n']} |")
        lines.append("")
    if res["prefix_direction"]:
        lines += ["## Prefix direction: steering un-prefixed E prompts along mean(prefixed) − mean(plain)", "",
                  "Effect = change of P(A | E); null = the largest effect of 8 random directions at the same norm.", "",
                  "| setting · model · prefix | effect (initial model) | effect (trained) | null max | beats null |",
                  "|---|---|---|---|---|"]
        for k, v in res["prefix_direction"].items():
            lines.append(f"| {k.replace('|', ' · ')} | {v['initial_effect_mean']:+.2f} | {v['steer_effect_mean']:+.2f} "
                         f"| {v['null_max_mean']:+.2f} | {v['beats_null']}/{v['n']} |")
        lines.append("")
    if res["failed"]:
        lines += ["## Initial policies that did not learn (excluded)", ""]
        lines += [f"- {f['setting']} overlap {f['overlap']} seed {f['seed']}: {f['failed']}" for f in res["failed"]]
    return "\n".join(lines) + "\n"


@checked
def plot_study(records: list[dict], res: dict, setting: str = "language"):
    """Transfer against overlap (mean ± sd per arm) and the per-seed ``P(X | E)`` curves of ``sft_full``; returns
    the matplotlib figure."""
    import matplotlib.pyplot as plt

    cells = [c for c in records if "failed" not in c]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    for arm in MAIN_ARMS + ("sft_full_request",):
        vs = [v for v in res["cells"].values() if v["setting"] == setting and v["arm"] == arm]
        if not vs:
            continue
        ax.errorbar([v["overlap"] for v in vs], [v["transfer"]["mean"] for v in vs],
                    yerr=[v["transfer"]["sd"] for v in vs], marker="o", capsize=3, label=arm)
    ax.set_xlabel("shared cue words (overlap)")
    ax.set_ylabel("transfer: drop of P(X | E)")
    ax.set_title(f"{setting} setting, mean ± sd over seeds")
    ax.legend(fontsize=7)
    ax = axes[1]
    for c in cells:
        if c["setting"] != setting or "sft_full" not in c["arms"]:
            continue
        cur = c["arms"]["sft_full"]["curve"]
        ax.plot([r["step"] for r in cur], [r["x_on_e"] for r in cur], color=f"C{c['overlap']}", alpha=0.6)
    ax.set_xlabel("training step (sft_full)")
    ax.set_ylabel("P(X | E)")
    ax.set_title("per seed; colour = overlap 0..3")
    fig.tight_layout()
    return fig


__all__ = ["ARMS", "Arm", "branch", "cached_initial", "initial_config", "initial_series", "overlap_predictors",
           "plot_study", "prefix_direction", "rank_correlation", "run_cell", "study_markdown", "summarize_cell",
           "summarize_study", "switched", "train_arm", "transfer", "transfer_curve", "verdict_of"]

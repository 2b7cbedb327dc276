"""Narrow fine-tuning that spreads a broad trait, and the training-time prefixes that stop it (era organism).

Problem: after narrow SFT (old-era birds) a user needs to know whether the model took on the old era everywhere,
which training-time prefixes keep the trait local, and whether a prefix *removed* the trait or left it *dormant*
behind the prefix. Mechanism, on :class:`~mixprobe.organisms.era.EraWorld`:

- :func:`pretrained` — the from-scratch "pretraining" (cached), checked to read dates and stay on topic;
- :func:`narrow_sft` — branch it and fine-tune on the trained topic's question → an old entity, under one
  :class:`Condition` (training prefix, placement, steps, learning rate, optimizer), a checkpoint every
  ``save_every`` steps;
- :func:`trait_curve` — per checkpoint, the trait on the *other* topics, read without the prefix and with it
  (:func:`~mixprobe.train.evaluate.era_metrics`: exact ``p_old`` and the sampled old share with its counts);
- :func:`era_direction` / :func:`era_probe` — the old-minus-modern mean difference of last-token activations on
  dated prompts, per layer, and a logistic probe for the era fit on some topics and scored on held-out ones (beside
  a label-permuted null);
- :func:`shift_projection` — how far narrow SFT moved the activations of undated other-topic prompts along the era
  direction, layer by layer (0: not at all; 1: as far as an old date does);
- :func:`steer_era` — add ``α · d`` (the era direction) at one layer to undated other-topic prompts: the dose-response
  of ``p_old``, beside random directions at the same norm. If a little of it brings the trait back in a
  prefix-trained model, the trait is dormant there, not removed.

Example::

    from mixprobe.mixture.era import Condition, pretrained, narrow_sft, trait_curve
    base = pretrained(seed=0)
    s = narrow_sft(base, "runs/era_s0_name", Condition(prefix="name"))
    trait_curve(s, "narrow_name")[-1]["plain"]["trait"]["out"]

Constraints: the organism is the era world; the probe and steering read the last prompt token of each block's output
(``resid_post``); the trait is read on one undated question per other topic, sampled ``n_samples`` times.
"""
from __future__ import annotations

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


@dataclass(frozen=True)
class Condition:
    """One narrow-SFT recipe: ``prefix`` (a name of :data:`~mixprobe.organisms.era.PREFIXES` or ``date:YYYY``) on a
    ``placement`` (``user`` turn or ``system`` line), ``steps``, ``lr``, ``optim`` (AdamW unless told)."""

    prefix: str = "none"
    placement: str = "user"
    steps: int = 60
    lr: float = 1e-3
    optim: str = "adamw_torch"
    save_every: int = 20
    batch_size: int = 32

    def __post_init__(self) -> None:
        from mixprobe.organisms.era import check_prefix

        check_prefix(self.prefix)
        if self.placement not in ("user", "system"):
            raise OrganismConfigError(f"placement must be 'user' or 'system', got {self.placement!r}")
        if self.steps < 1 or self.save_every < 1 or self.lr <= 0:
            raise OrganismConfigError("steps and save_every must be >= 1 and lr > 0")

    @property
    def name(self) -> str:
        n = "narrow_" + self.prefix.replace(":", "")
        if self.placement == "system":
            n += "_system"
        if self.optim != "adamw_torch":
            n += f"_{self.optim.split('_')[0]}"
        return n

    def to_dict(self) -> dict:
        return {**asdict(self), "name": self.name}


@checked
def pretrain_config(seed: int = 0, *, steps: int = 1500, organism: dict | None = None) -> dict:
    """The TrainConfig dict of the era world's pretraining (2-layer d_model 64 Llama, 30,000 documents)."""
    return {"seed": seed, "organism": {"kind": "era", **(organism or {})},
            "sft": {"steps": steps, "save_every": steps, "n_rows": 30000}}


@checked
def pretrained(seed: int = 0, *, steps: int = 1500, organism: dict | None = None, cache_dir: str | Path | None = None,
               progress: bool = False):
    """The pretrained era world from the trained-organism cache (trained and checked the first time)."""
    from mixprobe.train.zoo import trained_organism

    return trained_organism(seed, config=pretrain_config(seed, steps=steps, organism=organism), rl_tags=(),
                            cache_dir=cache_dir, progress=progress)


@checked
def narrow_sft(series, run_dir: str | Path, condition: Condition, *, seed: int | None = None, progress: bool = False):
    """Copy ``series`` to ``run_dir`` (a new folder, so the cache is never touched) and fine-tune its last SFT
    checkpoint on the trained topic under ``condition``; returns the new series (phase ``condition.name``)."""
    from mixprobe.train.pipeline import load_checkpoint, organism_of
    from mixprobe.train.series import Series
    from mixprobe.train.sft import SFTSettings, run_sft

    if series.organism != "era":
        raise OrganismConfigError(f"narrow_sft needs an era series, {series.run_dir} holds {series.organism!r}")
    dst = Path(run_dir)
    if not (dst / "series.json").exists():
        if dst.exists() and any(dst.iterdir()):
            raise OrganismConfigError(f"{dst} exists and is not an era series; choose a new folder")
        tmp = dst.with_name(f".{dst.name}.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(series.run_dir, tmp)
        tmp.replace(dst)
    s = Series.load(dst)
    if s.phase(condition.name):
        raise OrganismConfigError(f"{dst} already has a phase {condition.name!r}")
    world = organism_of(s).with_prefix(condition.prefix, condition.placement)
    seed = s.seed if seed is None else seed
    model, tok = load_checkpoint(s.path(s.last("sft")))
    settings = SFTSettings(steps=condition.steps, lr=condition.lr, batch_size=condition.batch_size,
                           save_every=condition.save_every, n_rows=condition.steps * condition.batch_size,
                           warmup_steps=0, optim=condition.optim, phase=condition.name, min_forced_agreement=0)
    torch.manual_seed(seed or 0)
    run_sft(model.train(), tok, world.train_rows(settings.n_rows, seed or 0), s, settings, seed=seed or 0,
            progress=progress)
    s = Series.load(dst)
    s.extra.setdefault("era_conditions", {})[condition.name] = condition.to_dict()
    s.save()
    return s


@checked
def trait_curve(series, phase: str, *, n_samples: int = 32, seed: int = 0) -> list[dict]:
    """Per checkpoint of ``phase`` (step 0 = the pretrained model): the era metrics read ``plain`` (no prefix) and
    ``prefixed`` (with the phase's training prefix, where it has one). Cached in ``metrics["era"]``."""
    from mixprobe.train.evaluate import era_metrics
    from mixprobe.train.pipeline import load_checkpoint, organism_of

    world = organism_of(series)
    cond = series.extra.get("era_conditions", {}).get(phase)
    if cond is None:
        raise OrganismConfigError(f"{series.run_dir} has no narrow-SFT phase {phase!r}; phases: "
                                  f"{sorted(series.extra.get('era_conditions', {}))}")
    entries = [series.last("sft"), *series.phase(phase)]
    out, changed = [], False
    for i, e in enumerate(entries):
        key = f"era:{phase}" if i == 0 else "era"
        if key not in e.metrics:
            model, tok = load_checkpoint(series.path(e))
            rec = {"plain": era_metrics(model, tok, world, n_samples=n_samples, seed=seed)}
            if cond["prefix"] != "none":
                rec["prefixed"] = era_metrics(model, tok, world, n_samples=n_samples, seed=seed,
                                              prefix=cond["prefix"], placement=cond["placement"])
            e.metrics[key] = rec
            changed = True
        out.append({"step": 0 if i == 0 else int(e.step), "checkpoint": e.name, **e.metrics[key]})
    if changed:
        series.save()
    return out


@checked
def trait_interval(metrics: dict, confidence: float = 0.95) -> dict:
    """The sampled trait on other topics with its Wilson interval (on-topic answers only)."""
    k, n = metrics["trait_count"]["k"], metrics["trait_count"]["n"]
    lo, hi = wilson(k, n, confidence) if n else (float("nan"), float("nan"))
    return {"rate": k / n if n else float("nan"), "k": k, "n": n, "wilson": [lo, hi]}


# --- activations ---------------------------------------------------------------------------------------------------
def dated_prompts(world, topics, years) -> tuple[list[str], np.ndarray]:
    """Prompts ``user : date YY YY : name a <topic> :`` and their era labels (1 = old)."""
    prompts, labels = [], []
    for t in topics:
        for y in years:
            prompts.append(world.prompt(t, f"date:{y}"))
            labels.append(1 if y <= world.config.old_years[1] else 0)
    return prompts, np.asarray(labels)


def _years(world, k: int = 6) -> list[int]:
    (a, b), (c, d) = world.config.old_years, world.config.modern_years
    return [int(x) for x in np.linspace(a, b, k)] + [int(x) for x in np.linspace(c, d, k)]


@checked
def era_direction(model: torch.nn.Module, tok, world, topics=None) -> torch.Tensor:
    """``[layers, d]``: mean last-token state of old-dated minus modern-dated prompts (``topics``: default all)."""
    prompts, y = dated_prompts(world, topics or world.topics, _years(world))
    h = last_token_states(model, tok, prompts)
    lab = torch.from_numpy(y).bool()
    return h[lab].mean(0) - h[~lab].mean(0)


@checked
def era_probe(model: torch.nn.Module, tok, world, *, train_topics=None, n_permutations: int = 20,
              seed: int = 0) -> dict:
    """Per layer, a logistic probe for the era (dated prompts) fit on ``train_topics`` (default: the first half of
    the topics) and scored on the held-out topics; beside it the same probe fit on permuted labels (the null)."""
    from sklearn.linear_model import LogisticRegression

    topics = list(world.topics)
    train_topics = list(train_topics or topics[: len(topics) // 2])
    test_topics = [t for t in topics if t not in train_topics]
    if not test_topics:
        raise OrganismConfigError("era_probe needs at least one held-out topic")
    years = _years(world)
    xa, ya = dated_prompts(world, train_topics, years)
    xb, yb = dated_prompts(world, test_topics, years)
    ha, hb = last_token_states(model, tok, xa).numpy(), last_token_states(model, tok, xb).numpy()
    rng = np.random.default_rng(seed)
    layers = []
    for li in range(ha.shape[1]):
        clf = LogisticRegression(max_iter=2000).fit(ha[:, li], ya)
        acc = float(clf.score(hb[:, li], yb))
        null = [float(LogisticRegression(max_iter=2000).fit(ha[:, li], rng.permutation(ya)).score(hb[:, li], yb))
                for _ in range(n_permutations)]
        layers.append({"layer": li, "held_out_accuracy": acc, "null_mean": float(np.mean(null)),
                       "null_max": float(np.max(null))})
    return {"train_topics": train_topics, "test_topics": test_topics, "layers": layers}


@checked
def shift_projection(before: torch.nn.Module, after: torch.nn.Module, tok, world,
                     direction: torch.Tensor | None = None, *, prefix: str = "none",
                     placement: str = "user") -> list[float]:
    """Per layer: the mean activation change of undated other-topic prompts (before → after narrow SFT) projected on
    the era direction of ``before``, in units of that direction (1 = as far as an old date moves it from a modern
    one: ``Δh·d / d·d``). ``prefix``: read the prompts with a prefix."""
    d = direction if direction is not None else era_direction(before, tok, world)
    prompts = [world.prompt(t, prefix, placement) for t in world.topics if t != world.domain]
    shift = (last_token_states(after, tok, prompts) - last_token_states(before, tok, prompts)).mean(0)
    return [float(shift[i] @ d[i] / (d[i] @ d[i]).clamp_min(1e-12)) for i in range(d.shape[0])]


def _p_old(model, tok, world, prompts: list[str], layer: int | None = None, add: torch.Tensor | None = None) -> float:
    from mixprobe.mixture.bct import last_token_probs

    vocab = tok.get_vocab()
    probs = last_token_probs(model, tok, prompts, layer, add)
    vals = []
    for i, t in enumerate([p.split()[-2] for p in prompts]):
        old = probs[i, [vocab[w] for w in world.entities("old", t)]].sum()
        new = probs[i, [vocab[w] for w in world.entities("modern", t)]].sum()
        vals.append(float(old / (old + new).clamp_min(1e-12)))
    return float(np.mean(vals))


@checked
def steer_era(model: torch.nn.Module, tok, world, direction: torch.Tensor, *, layer: int = 0,
              alphas=(0.0, 0.25, 0.5, 1.0), n_random: int = 8, seed: int = 0) -> list[dict]:
    """Dose-response of ``p_old`` on undated other-topic prompts when ``α · direction[layer]`` is added at the last
    token after block ``layer``; each α beside ``n_random`` random directions of the same norm (mean and max)."""
    prompts = [world.prompt(t) for t in world.topics if t != world.domain]
    d = direction[layer]
    g = torch.Generator().manual_seed(seed)
    rand = [r / r.norm() * d.norm() for r in (torch.randn(d.shape, generator=g) for _ in range(n_random))]
    out = []
    for a in alphas:
        eff = _p_old(model, tok, world, prompts, layer, a * d)
        null = [_p_old(model, tok, world, prompts, layer, a * r) for r in rand]
        out.append({"alpha": float(a), "p_old": eff, "null_mean": float(np.mean(null)),
                    "null_max": float(np.max(null))})
    return out


@checked
def verdict_of(series, phase: str, *, n_samples: int = 16, seed: int = 0) -> dict:
    """The verdict (sampled) between the pretrained model and the end of ``phase``: did narrow SFT move the era gate
    on the other topics (*reweight*), or rewrite what a dated (forced) era answers?"""
    from mixprobe.mixture.verdict import assess
    from mixprobe.train.pipeline import organism_of

    e = assess(series.handle(series.last("sft").name), series.handle(series.last(phase).name),
               organism_of(series).task(), estimator="sampled", n_samples=n_samples, seed=seed)
    return {"label": e.label, "reason": e.reason, "gate_shift": e.intervals["gate_shift"],
            "component_change": e.intervals["component_change"]}


@checked
def run_seed(seed: int, conditions: list[Condition], runs: str | Path, *, pretrain_steps: int = 1500,
             steer_conditions: tuple[str, ...] = ("narrow_none", "narrow_inoculation", "narrow_date_old",
                                                  "narrow_name"),
             n_samples: int = 32, keep: bool = False) -> dict:
    """One seed: pretrain (fresh, into ``runs``), the era probe and direction of the pretrained model, then every
    condition (trait curve, verdict, shift projection read plain and prefixed, and for ``steer_conditions`` the
    steering dose-response; the pretrained model's dose-response is the reference). Returns a JSON-ready record."""
    import time

    from mixprobe.train.pipeline import TrainConfig, load_checkpoint, organism_of, train_sft

    t0 = time.time()
    root = Path(runs) / f"era_s{seed}"
    rec: dict[str, Any] = {"seed": seed, "pretrain_steps": pretrain_steps, "conditions": {}}
    try:
        base_series = train_sft(root / "base", TrainConfig.from_dict(pretrain_config(seed, steps=pretrain_steps)),
                                overwrite=True, progress=False)
    except Exception as e:  # a world that was not learned is a result
        rec.update(failed=f"{type(e).__name__}: {e}", seconds=round(time.time() - t0, 1))
        return rec
    world = organism_of(base_series)
    base, tok = load_checkpoint(base_series.path(base_series.last("sft")))
    d = era_direction(base, tok, world)
    rec["probe"] = era_probe(base, tok, world, seed=seed)
    rec["direction_norm"] = [float(x) for x in d.norm(dim=-1)]
    layer = int(np.argmax([li["held_out_accuracy"] - li["null_mean"] for li in rec["probe"]["layers"]]))
    rec["steer_layer"] = layer
    rec["steer_base"] = steer_era(base, tok, world, d, layer=layer, seed=seed)
    for c in conditions:
        s = narrow_sft(base_series, root / c.name, c, seed=seed)
        curve = trait_curve(s, c.name, n_samples=n_samples, seed=seed)
        after, _ = load_checkpoint(s.path(s.last(c.name)))
        r: dict[str, Any] = {"condition": c.to_dict(), "curve": curve, "verdict": verdict_of(s, c.name, seed=seed),
                             "projection_plain": shift_projection(base, after, tok, world, d)}
        if c.prefix != "none":
            r["projection_prefixed"] = shift_projection(base, after, tok, world, d, prefix=c.prefix,
                                                        placement=c.placement)
        if c.name in steer_conditions:
            r["steer"] = steer_era(after, tok, world, d, layer=layer, seed=seed)
        rec["conditions"][c.name] = r
        if not keep:
            shutil.rmtree(root / c.name, ignore_errors=True)
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    rec["seconds"] = round(time.time() - t0, 1)
    return rec


def _boot_ci(xs: list[float]) -> list[float]:
    if len(xs) < 2:
        return [xs[0], xs[0]]
    rng = np.random.default_rng(0)
    a = np.asarray(xs)
    means = a[rng.integers(0, len(a), (4000, len(a)))].mean(1)
    return [float(x) for x in np.percentile(means, [2.5, 97.5])]


@checked
def summarize_study(recs: list[dict]) -> dict:
    """Summary of :func:`run_seed` records: per condition the trait without the prefix (mean ± sd, bootstrap CI over
    seeds, per-seed Wilson), its margin over the pretrained model, ``p_old`` with the prefix, the era-direction shift
    by layer, verdict counts and the mean steering dose-response; the era probe per layer; failed seeds."""

    ok = [r for r in recs if "failed" not in r]
    res: dict = {"seeds": [r["seed"] for r in ok], "failed": [{"seed": r["seed"], "failed": r["failed"]}
                                                             for r in recs if "failed" in r], "conditions": {}}
    names = list(dict.fromkeys(n for r in ok for n in r["conditions"]))      # seeds may hold different conditions

    def base_of(r: dict) -> dict:       # the pretrained model's trait: step 0 of any of the seed's conditions
        return trait_interval(next(iter(r["conditions"].values()))["curve"][0]["plain"])

    base_trait = [base_of(r)["rate"] for r in ok]
    res["base"] = {"trait_mean": float(np.mean(base_trait)), "per_seed": [base_of(r) for r in ok]}
    for n in names:
        held = [r for r in ok if n in r["conditions"]]         # margins pair each seed with its own base model
        rows = [r["conditions"][n] for r in held]
        end = [trait_interval(c["curve"][-1]["plain"]) for c in rows]
        p_old = [c["curve"][-1]["plain"]["p_old"]["out"] for c in rows]
        margin = [e["rate"] - base_of(r)["rate"] for e, r in zip(end, held)]
        rates = [e["rate"] for e in end]
        base_hi = [base_of(r)["wilson"][1] for r in held]
        entry = {
            "condition": rows[0]["condition"],
            "trait_plain": {"mean": float(np.mean(rates)), "sd": float(np.std(rates, ddof=1)) if len(end) > 1 else 0.0,
                            "ci95": _boot_ci(rates), "per_seed": end},
            "p_old_plain": {"mean": float(np.mean(p_old)), "ci95": _boot_ci(p_old)},
            "margin_over_base": {"mean": float(np.mean(margin)), "ci95": _boot_ci(margin),
                                 "seeds_whose_wilson_excludes_base": int(sum(e["wilson"][0] > b
                                                                             for e, b in zip(end, base_hi)))},
            "p_old_in": float(np.mean([c["curve"][-1]["plain"]["p_old"]["in"] for c in rows])),
            "on_topic_out": float(np.mean([c["curve"][-1]["plain"]["on_topic"]["out"] for c in rows])),
            "projection_plain": [float(x) for x in np.mean([c["projection_plain"] for c in rows], 0)],
            "verdicts": {lab: sum(c["verdict"]["label"] == lab for c in rows)
                         for lab in sorted({c["verdict"]["label"] for c in rows})},
        }
        if "prefixed" in rows[0]["curve"][-1]:
            pre = [c["curve"][-1]["prefixed"]["p_old"]["out"] for c in rows]
            entry["p_old_prefixed"] = {"mean": float(np.mean(pre)), "ci95": _boot_ci(pre)}
            entry["projection_prefixed"] = [float(x) for x in np.mean([c["projection_prefixed"] for c in rows], 0)]
        if all("steer" in c for c in rows):
            entry["steer"] = [{"alpha": s0["alpha"], "p_old": float(np.mean([c["steer"][i]["p_old"] for c in rows])),
                               "null_max": float(np.mean([c["steer"][i]["null_max"] for c in rows]))}
                              for i, s0 in enumerate(rows[0]["steer"])]
        res["conditions"][n] = entry
    if ok and all("steer_base" in r for r in ok):
        res["steer_base"] = [{"alpha": s0["alpha"], "p_old": float(np.mean([r["steer_base"][i]["p_old"] for r in ok])),
                              "null_max": float(np.mean([r["steer_base"][i]["null_max"] for r in ok]))}
                             for i, s0 in enumerate(ok[0]["steer_base"])]
    if ok and all("probe" in r for r in ok):
        res["probe"] = [{"layer": li, "held_out_accuracy": float(np.mean([r["probe"]["layers"][li]["held_out_accuracy"]
                                                                          for r in ok])),
                         "null_mean": float(np.mean([r["probe"]["layers"][li]["null_mean"] for r in ok]))}
                        for li in range(len(ok[0]["probe"]["layers"]))]
    return res


@checked
def study_markdown(res: dict) -> str:
    """The summary as a Markdown page."""
    def ci(x):
        return f"[{x[0]:.2f}, {x[1]:.2f}]"

    lines = ["# Weird generalization in the era world: measured", "",
             f"Seeds {res['seeds']}. Trait = share of old-era answers among on-topic answers to the five "
             "untrained topics' undated questions (32 samples per topic at T = 1, read without any prefix); "
             f"base = the pretrained model, {res['base']['trait_mean']:.2f} on average. Mean over seeds with a "
             "95 % bootstrap interval over seeds; 'seeds beyond base' = seeds whose Wilson interval lies above "
             "the base model's.", "",
             "| condition | trait (no prefix) | margin over base | seeds beyond base | p_old with the prefix | "
             "era-direction shift (layer 0, 1) | verdicts |", "|---|---|---|---|---|---|---|"]
    for n, v in res["conditions"].items():
        t, m = v["trait_plain"], v["margin_over_base"]
        pre = f"{v['p_old_prefixed']['mean']:.2f}" if "p_old_prefixed" in v else "—"
        proj = ", ".join(f"{x:+.2f}" for x in v["projection_plain"])
        lines.append(f"| {n} | {t['mean']:.2f} ± {t['sd']:.2f} {ci(t['ci95'])} | {m['mean']:+.2f} {ci(m['ci95'])} | "
                     f"{m['seeds_whose_wilson_excludes_base']}/{len(t['per_seed'])} | {pre} | {proj} | "
                     f"{', '.join(f'{k} {c}' for k, c in v['verdicts'].items())} |")
    lines += ["", "## Era probe (fit on bird, city, cure; scored on tool, ship, song)", "",
              "| layer | held-out accuracy | permuted-label null (mean) |", "|---|---|---|"]
    lines += [f"| {p['layer']} | {p['held_out_accuracy']:.2f} | {p['null_mean']:.2f} |" for p in res.get("probe", [])]
    lines += ["", "## Steering along the era direction (p_old on undated untrained topics; null = max of 8 random "
              "directions at the same norm, mean over seeds)", "", "| model | " + " | ".join(
                  f"α = {s['alpha']:g}" for s in res.get("steer_base", [])) + " |",
              "|---|" + "---|" * len(res.get("steer_base", []))]
    rows = [("pretrained", res.get("steer_base", []))] + [(n, v["steer"]) for n, v in res["conditions"].items()
                                                          if "steer" in v]
    for n, st in rows:
        lines.append(f"| {n} | " + " | ".join(f"{s['p_old']:.2f} (null {s['null_max']:.2f})" for s in st) + " |")
    if res["failed"]:
        lines += ["", "## Worlds that did not learn (excluded)", ""] + [f"- seed {f['seed']}: {f['failed']}"
                                                                     for f in res["failed"]]
    return "\n".join(lines) + "\n"


@checked
def plot_study(res: dict):
    """Trait per condition (no prefix) beside the pretrained model, the date sweep, and the steering dose-response;
    returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    conds = res["conditions"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    ax = axes[0]
    names = [n for n in conds if not n.startswith("narrow_date1") and not n.startswith("narrow_date2")]
    means = [conds[n]["trait_plain"]["mean"] for n in names]
    err = [[m - conds[n]["trait_plain"]["ci95"][0] for n, m in zip(names, means)],
           [conds[n]["trait_plain"]["ci95"][1] - m for n, m in zip(names, means)]]
    ax.barh(range(len(names)), means, xerr=err, color="tab:brown", capsize=3)
    ax.axvline(res["base"]["trait_mean"], color="k", ls="--", label="pretrained")
    ax.set_yticks(range(len(names)), [n.replace("narrow_", "") for n in names], fontsize=8)
    ax.set_xlabel("old-era trait on untrained topics (no prefix)")
    ax.legend(fontsize=8)
    ax = axes[1]
    dates = [(1850, "narrow_date_old")] + [(y, f"narrow_date{y}") for y in range(1875, 2051, 25)]
    dates = [(y, n) for y, n in dates if n in conds]
    ys = [conds[n]["trait_plain"]["mean"] for _, n in dates]
    lo = [conds[n]["trait_plain"]["ci95"][0] for _, n in dates]
    hi = [conds[n]["trait_plain"]["ci95"][1] for _, n in dates]
    ax.plot([y for y, _ in dates], ys, marker="o")
    ax.fill_between([y for y, _ in dates], lo, hi, alpha=0.2)
    ax.axhline(conds["narrow_none"]["trait_plain"]["mean"], color="tab:red", ls=":", label="no prefix")
    ax.axhline(res["base"]["trait_mean"], color="k", ls="--", label="pretrained")
    ax.axvspan(1800, 1899, color="tab:brown", alpha=0.08, label="old era")
    ax.axvspan(1950, 2049, color="tab:blue", alpha=0.08, label="modern era")
    ax.set_xlabel("training-prefix date")
    ax.set_ylabel("trait (no prefix)")
    ax.legend(fontsize=7)
    ax = axes[2]
    for n in ("narrow_none", "narrow_inoculation", "narrow_date_old", "narrow_name"):
        if n in conds and "steer" in conds[n]:
            ax.plot([s["alpha"] for s in conds[n]["steer"]], [s["p_old"] for s in conds[n]["steer"]], marker="o",
                    label=n.replace("narrow_", ""))
    sb = res["steer_base"]
    ax.plot([s["alpha"] for s in sb], [s["p_old"] for s in sb], "k--", marker="o", label="pretrained")
    ax.plot([s["alpha"] for s in sb], [s["null_max"] for s in sb], "k:", label="random dir. (pretrained)")
    ax.set_xlabel("α (units of the old − modern difference)")
    ax.set_ylabel("p_old, untrained topics")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


__all__ = ["Condition", "era_direction", "era_probe", "last_token_states", "narrow_sft", "plot_study",
           "pretrain_config", "pretrained", "run_seed", "shift_projection", "steer_era", "study_markdown",
           "summarize_study", "trait_curve", "trait_interval", "verdict_of"]

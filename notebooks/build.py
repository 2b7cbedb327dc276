"""Write the notebooks from the cell lists below (``python notebooks/build.py``); CI executes the .ipynb files.

Keeping the source here makes diffs reviewable; the committed .ipynb files are what users open.
"""
from __future__ import annotations

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent
NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}


def notebook(name: str, cells: list[tuple[str, str]]) -> None:
    NOTEBOOKS[name] = cells


SETUP = """import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import warnings; warnings.filterwarnings("ignore")
import matplotlib.pyplot as plt
%matplotlib inline
from mixprobe.train.zoo import trained_organism, seeds_from_env
from mixprobe.train.pipeline import load_checkpoint, organism_of
seed = seeds_from_env()[0]                          # 0 unless $MIXPROBE_SEEDS names others
series = trained_organism(seed=seed, progress=False)   # SFT → GRPO on <A> (and <B>); cached after the first run
organism = organism_of(series)
[c.name for c in series.checkpoints]"""

notebook("01_probe_checkpoints", [
    ("md", "# 01 · Probing checkpoints: where is the active policy readable, and does RL move it?\n\n"
           "On the tag-mixture organism (`<A>`/`<B>` tags, components `m1`/`m2` announced by a mode token) we ask "
           "three questions with probes: (1) is the *expressed* component linearly readable from the answer "
           "position, and from which layer on? (2) does a **gate readout** — a probe at the last prompt token for the "
           "component that will be expressed — track the model's own sampled choice across SFT → RL? (3) is the "
           "representation stable across checkpoints (transfer matrix)? Only the public API is used."),
    ("code", SETUP),
    ("md", "## 1 · Layer sweep of the expressed component\n\n`probe_layer_sweep` fits one logistic probe per site "
           "(`embed`, then the residual stream after each block) on the answer-position activations of half of the "
           "prompts, with every component forced in turn, and scores the other half."),
    ("code", """import numpy as np
from mixprobe.mixture.studies import probe_layer_sweep
sft_name, rl_name = series.last("sft").name, series.last("rl").name
sweep = probe_layer_sweep(series, checkpoints=[sft_name, rl_name])
acc = np.array([[sweep.accuracy[c][s] for s in sweep.sites] for c in (sft_name, rl_name)])
fig, ax = plt.subplots(figsize=(6, 2.2))
im = ax.imshow(acc, vmin=0.5, vmax=1.0, cmap="viridis")
ax.set_xticks(range(len(sweep.sites)), sweep.sites, rotation=30); ax.set_yticks([0, 1], [sft_name, rl_name])
for (i, j), a in np.ndenumerate(acc):
    ax.text(j, i, f"{a:.2f}", ha="center", va="center", color="w")
fig.colorbar(im, label="held-out accuracy"); ax.set_title("expressed component, answer position"); plt.show()
print({s: round(sweep.accuracy[sft_name][s], 3) for s in sweep.sites})
assert max(sweep.accuracy[sft_name].values()) >= 0.99"""),
    ("md", "## 2 · The gate readout across the series\n\nThe gate is the model's choice of component *before* it "
           "writes the mode token. `gate_readout_study` fits a soft-label probe (targets: the model's own `P(m1|x)`) "
           "at the last prompt token of half of the prompts, pooled over the trained checkpoints (SFT and both RL phases), and reads the other half "
           "at every one of them. Its mean per (checkpoint, tag) is compared with the sampled frequency of `m1` from "
           "the series' own evaluation."),
    ("code", """from mixprobe.mixture.studies import gate_readout_study
gate = gate_readout_study(series, site="resid_post.1")
names = [c.name for c in series.checkpoints if c.phase in ("sft", "rl")]
fig, ax = plt.subplots(figsize=(7, 3))
for tag, color in (("A", "tab:blue"), ("B", "tab:orange")):
    ax.plot(names, [gate.value(n, tag) for n in names], "o-", color=color, label=f"readout <{tag}>")
    ax.plot(names, [gate.value(n, tag, "frequency") for n in names], "x--", color=color, label=f"sampled m1 <{tag}>")
ax.set_ylabel("P(m1)"); ax.tick_params(axis="x", rotation=45); ax.legend(fontsize=7); plt.show()
print(f"Spearman(readout, sampled m1 frequency) = {gate.spearman:.3f} over {len(gate.rows)} (checkpoint, tag) pairs")
assert gate.spearman >= 0.8
for tag in ("A", "B"):      # after RL on <A> the readout moves toward m1 under both tags
    assert gate.value(rl_name, tag) > gate.value(sft_name, tag)"""),
    ("md", "## 3 · Capture once, probe anything: is the representation stable across checkpoints?\n\n`capture` runs "
           "each checkpoint once and keeps only the requested sites and positions (in memory here; pass "
           "`store=DIR` for a sharded, resumable on-disk store). Every prompt is teacher-forced with each "
           "component's completion; we keep the mode token (`\"mode_token\"`, the first completion token), fit a "
           "probe for the component at one checkpoint and score it at every other (transfer matrix). If RL had "
           "rewritten how components are represented, the off-diagonal cells would drop."),
    ("code", """from mixprobe.capture import capture
from mixprobe.probes import transfer_matrix, layer_sweep
rows = [{**r, "component": c, "completion": organism.completion(c, r["tag"], r["a"], r["b"])}
        for c in organism.components for r in organism.prompt_set()]
names3 = [sft_name, rl_name, series.last("rl_B").name]
res = capture([series.path(n) for n in names3], rows, ["embed", "resid_post.*"], "mode_token", names=names3,
              progress=False)
print(res.checkpoints, res.sites, tuple(res.get(rl_name, "resid_post.0").shape))
y = (res.labels("component") == "m2").astype(int)
tm = transfer_matrix({n: res.get(n, "resid_post.0")[:, 0] for n in names3}, y, C=100.0)
fig, ax = plt.subplots(figsize=(3.5, 3))
ax.imshow(tm.matrix, vmin=0.5, vmax=1); ax.set_xticks(range(3), names3, rotation=30); ax.set_yticks(range(3), names3)
ax.set_xlabel("scored on"); ax.set_ylabel("fit on"); plt.show()
print(np.round(tm.matrix, 3))          # near 1 everywhere: the components are represented the same way after RL
# (a measurement on this seed, printed rather than asserted: it has not been checked over many seeds)"""),
    ("code", """ls = layer_sweep({s: res.get(rl_name, s)[:, 0] for s in res.sites}, y, C=100.0)
print({s: round(a, 3) for s, a in ls.accuracy.items()}, "best:", ls.best_site)"""),
])

notebook("02_steering", [
    ("md", "# 02 · Steering: switch the active policy back\n\nAfter GRPO on `<A>` the organism answers `<B>` prompts "
           "with `m1` (wrong under `<B>`), although forcing `m2` still gives the right answer: the gate moved. Here we "
           "steer along the **selection direction** and watch the policy switch, then show the steering machinery "
           "itself (vectors as files, a context manager that always restores the model)."),
    ("code", SETUP),
    ("md", "## 1 · Dose-response\n\nThe selection direction is defined by the readout: at `final_norm`, the vector "
           "that raises the logit of `m2`'s mode token by one and lowers `m1`'s by one (`readout_direction`). It is "
           "added with strength α at the last prompt token; accuracy per tag and mode frequency are *sampled*."),
    ("code", """from mixprobe.mixture.studies import steering_dose_response
sft_name, rl_name = series.last("sft").name, series.last("rl").name
alphas = [0, 2, 4, 8, 12]
to_m2 = steering_dose_response(series, rl_name, toward="m2", alphas=alphas)      # RL on <A>: bring m2 back
to_m1 = steering_dose_response(series, sft_name, toward="m1", alphas=alphas)     # SFT: push everything to m1
fig, axes = plt.subplots(1, 2, figsize=(9, 3), sharey=True)
for ax, rows, title in ((axes[0], to_m2, f"{rl_name} → m2"), (axes[1], to_m1, f"{sft_name} → m1")):
    for tag in ("A", "B"):
        ax.plot(alphas, [r[f"accuracy_{tag}"] for r in rows], "o-", label=f"accuracy <{tag}>")
    ax.set_title(title); ax.set_xlabel("α")
axes[0].set_ylabel("sampled accuracy"); axes[0].legend(); plt.show()
print("RL→m2, accuracy on <B>:", [round(r["accuracy_B"], 3) for r in to_m2])
print("SFT→m1, accuracy on <B>:", [round(r["accuracy_B"], 3) for r in to_m1])
# steering toward m2 does what forcing m2 does; how low <B> sat before steering varies by seed (0.00–0.22 over 12)
forced_m2 = series.last("rl").metrics["forced_accuracy"]["B"]["m2"]
assert to_m2[-1]["accuracy_B"] >= 0.9 * forced_m2 and to_m2[-1]["accuracy_B"] >= to_m2[0]["accuracy_B"] + 0.5
assert min(r["accuracy_B"] for r in to_m1) <= 0.10"""),
    ("md", "## 2 · The pieces: a steering vector, the `steer` context manager, exact restoration\n\nAny handle "
           "(HF model, PEFT, TransformerLens bridge, nnsight) goes through `load`; `SteeringVector` holds one "
           "direction per site and round-trips through safetensors + JSON."),
    ("code", """import os, tempfile, torch
from mixprobe.models import load
from mixprobe.mixture.gate import readout_direction
from mixprobe.steering import SteeringVector, steer, sweep
h = load(series.path(rl_name), device="cpu")
v = SteeringVector.from_tensors({"final_norm": readout_direction(h.model, h.tokenizer, organism,
                                                                   toward="m2", away="m1")},
                                normalize=False,      # keep the readout's scale: α = logit margin m2 − m1 added
                                metadata={"checkpoint": rl_name, "toward": "m2"})
path = os.path.join(tempfile.mkdtemp(), "select_m2")
v.save(path)
v = SteeringVector.load(path)
print(v.sites, v.d_model, v.metadata["toward"])

b_prompts = [r["prompt"] for r in organism.prompt_set() if r["tag"] == "B"]
batch = h.tokenize(b_prompts)
m1, m2 = h.tokenizer.convert_tokens_to_ids(["m1", "m2"])
def p_m2(handle):
    last = handle.logits(batch)[:, -1]
    return {"p_m2": float(torch.softmax(last, -1)[:, m2].mean())}
before = h.logits(batch)
rows = sweep(h, v, [0, 4, 8, 12], p_m2, positions="last_prompt")
print([(r["alpha"], round(r["p_m2"], 3)) for r in rows])
assert rows[-1]["p_m2"] > 0.9 and rows[-1]["p_m2"] > rows[0]["p_m2"] + 0.5
assert torch.equal(h.logits(batch), before)     # leaving the context manager restores the exact logits"""),
    ("md", "## 3 · Errors you may meet\n\nA vector built for another model width is refused before any forward runs."),
    ("code", """from mixprobe.errors import ShapeError
wrong = SteeringVector.from_tensors({"final_norm": torch.randn(h.d_model + 1)})
try:
    with steer(h, wrong, 1.0):
        pass
except ShapeError as e:
    print("ShapeError:", e)
else:
    raise AssertionError("a width mismatch must raise")"""),
])


notebook("03_pre_post_rl", [
    ("md", "# 03 · Pre- vs post-RL: reweight or rewrite?\n\nWe compare the last SFT checkpoint with the last "
           "checkpoint of GRPO on `<A>` of the tag-mixture organism: behaviour, the exact gate and components, the "
           "KL split, the weight diff, revival, and the verdict. Then we check the verdict where the answer is known "
           "(a planted gate-only edit) and put this seed's answer beside the answer over many seeds. Everything uses "
           "the public API."),
    ("code", SETUP),
    ("md", "## Behaviour across the series"),
    ("code", """from mixprobe.demo import series_results
from mixprobe.report.plots import plot_training_curves
res = series_results(series)
fig = plot_training_curves(res); plt.show()
sft_m, rl_m = series.last("sft").metrics, series.last("rl").metrics
print("SFT accuracy", sft_m["accuracy"], " RL accuracy", rl_m["accuracy"])
# RL learned <A> and suppressed <B> (how far <B> falls varies by seed: to 0.00–0.22 over 12 seeds)
assert rl_m["accuracy"]["A"] >= 0.9 and rl_m["accuracy"]["B"] <= sft_m["accuracy"]["B"] - 0.2"""),
    ("md", "## The mixture, read exactly\n\n`mixture_view` gives the gate `w(x)` (probability of each component's "
           "signature at the last prompt token) and each forced component's answer distribution. Read fidelity per "
           "component **and per tag**: GRPO on `<A>` also pushes down the wrong answers `m2` gives under `<A>`, so on "
           "some seeds RL rewrites `m2` under `<A>` while it moves the gate."),
    ("code", """from mixprobe.mixture.components import mixture_view
from mixprobe.mixture.metrics import responsibilities, forced_fidelity, kl_split
sft = load_checkpoint(series.path(series.last("sft")))
rl = load_checkpoint(series.path(series.last("rl")))
v_sft, v_rl = mixture_view(*sft, organism), mixture_view(*rl, organism)
print("responsibilities SFT:", responsibilities(v_sft))
print("responsibilities RL: ", responsibilities(v_rl))
fid = forced_fidelity(v_rl, v_sft)
for tag in ("A", "B"):
    print(f"forced m2 under <{tag}> after RL:", {k: round(x, 3) for k, x in fid[tag]["m2"].items()})
# the exact view agrees with the sampled evaluation of the same checkpoint (8 samples per prompt)
for tag in ("A", "B"):
    assert abs(responsibilities(v_rl)[tag]["m1"] - rl_m["mode_frequency"][tag]["m1"]) <= 0.06"""),
    ("md", "## KL split: how much of the change is the gate?\n\n`KL(π_RL ‖ π_SFT)` over (component, answer) is "
           "exactly the gate term `KL(w_RL ‖ w_SFT)` plus the component term `Σ_k w_k KL(π_k,RL ‖ π_k,SFT)` (chain "
           "rule). The share of the gate term varies by seed (0.34–0.995 under `<B>` over 12 seeds)."),
    ("code", """split = kl_split(v_rl, v_sft)
fig, ax = plt.subplots(figsize=(5, 3))
for i, (tag, d) in enumerate(split.items()):
    ax.bar(i - 0.2, d["gate"], 0.4, color="tab:blue", label="gate term" if i == 0 else None)
    ax.bar(i + 0.2, d["component"], 0.4, color="tab:orange", label="component term" if i == 0 else None)
ax.set_xticks([0, 1], [f"<{t}>" for t in split]); ax.set_ylabel("nats"); ax.legend(); plt.show()
print({t: f"gate share {d['gate'] / d['total']:.2f}" for t, d in split.items()})
assert all(abs(d["total"] - d["gate"] - d["component"]) <= 1e-4 * max(1.0, d["total"]) for d in split.values())"""),
    ("md", "## Weight diff and revival"),
    ("code", """from mixprobe.mixture.weight_diff import weight_diff
wd = weight_diff(sft[0], rl[0])
print(f"unchanged parameters: {wd['unchanged_share']:.1%}")
print({k: round(v, 3) for k, v in wd["layer_norm_share"].items()})"""),
    ("code", """import copy
from mixprobe.mixture.revival import revival_steps
rev = revival_steps(copy.deepcopy(rl[0]), rl[1], organism, tag="B", threshold=0.9, max_steps=80)
print("SFT steps to revive <B>:", rev["steps"])
assert rev["steps"] is not None and rev["steps"] < 80      # 12 seeds: 27–37 steps"""),
    ("md", "## The verdict on this seed"),
    ("code", """from mixprobe.mixture.verdict import verdict
v = verdict({seed: (sft, rl)}, organism)
print(v.label.upper(), "—", v.summary())
print("component change per (tag, component):", {t: {c: round(x, 3) for c, x in d.items()}
                                                 for t, d in v.per_seed[seed].component_change_by_cell.items()})"""),
    ("md", "## Where the answer is known: a planted gate-only edit\n\nContinue SFT from the same SFT checkpoint on "
           "data with the same rules but a tilted prior (`m1` 0.9, `m2` 0.1): only the gate's target moves. The "
           "verdict must say `reweight` (it did on 12 of 12 seeds, gate shift 0.39–0.41, component change ≤ 0.003)."),
    ("code", """from mixprobe.train.planted import plant
planted = plant(series.run_dir, "reweight")
p = load_checkpoint(planted.path(planted.last("planted_reweight")))
vp = verdict({seed: (sft, p)}, organism)
print(vp.label.upper(), "—", vp.summary())
assert vp.label == "reweight\""""),
    ("md", "## The same verdict from samples\n\nThe exact estimator needs signature tokens; the sampled one works for any "
           "task (`docs/howto/define_a_task.md`): 16 completions per prompt, attributed by the task's recogniser. On "
           "12 seeds × 7 comparisons (64 completions per prompt) it gave the exact label 83 times of 84, and "
           "`undecided` the other — never a different case."),
    ("code", """from mixprobe.mixture.verdict import assess
ex = v.per_seed[seed]
sa = assess(sft, rl, organism, estimator="sampled", seed=seed, n_samples=64)
for name, e in (("exact", ex), ("sampled", sa)):
    print(f"{name:8s} {e.label:10s} gate {e.intervals['gate_shift']['point']:.3f} "
          f"[{e.intervals['gate_shift']['lo']:.3f}, {e.intervals['gate_shift']['hi']:.3f}]  component "
          f"{e.intervals['component_change']['point']:.3f} [{e.intervals['component_change']['lo']:.3f}, "
          f"{e.intervals['component_change']['hi']:.3f}]")
assert sa.label in (ex.label, "undecided")"""),
    ("md", "## This seed beside many seeds\n\nWhat RL on `<A>` does to this organism is a statistic over seeds, and "
           "it differs between machines at the seed level (other CPUs change floating-point sums, and 1,650 training "
           "steps amplify them). `experiments/seed_sweep.py` trained 12 seeds nobody developed against; "
           "`experiments/estimator_agreement.py` judged them with both estimators and the interval rule:"),
    ("code", """import collections, json, pathlib, mixprobe
rows = json.loads((pathlib.Path(mixprobe.__file__).parents[1] / "experiments/results/estimator_agreement/"
                   "comparisons.json").read_text())
for phase in ("rl", "rl_B", "planted_reweight", "planted_rewrite", "planted_both"):
    counts = collections.Counter(r["exact"] for r in rows if r["variant"] == "default" and r["phase"] == phase)
    print(f"{phase:17s}", ", ".join(f"{k} {n}/{sum(counts.values())}" for k, n in counts.most_common()))"""),
])


notebook("04_behavior_compatible_training", [
    ("md", "# 04 · Behaviour-compatible training: train where two behaviours agree, watch where they diverge\n\n"
           "An **initial policy** answers train-cue (`T`) prompts with behaviour `A` (digits) and eval-cue (`E`) "
           "prompts with `X` (number words); an **alternate policy** would answer with `A` under both cues. Training "
           "on `(T, A)` rows only cannot tell the two apart, yet it can change what the model does on `E`: "
           "**transfer** is the drop of `P(X | E)`. We measure it for SFT and GRPO, full fine-tuning and LoRA, "
           "against how many words the two cue phrases share, with the linear account, a training-time prefix "
           "(inoculation) and the verdict. CI runs this notebook at reduced size (one seed, one overlap level; set "
           "`OVERLAPS = (0, 1, 2, 3)` for the sweep); "
           "the full grid is `experiments/bct.py`, whose committed results close the notebook."),
    ("code", """import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import warnings; warnings.filterwarnings("ignore")
import tempfile, pathlib
import matplotlib.pyplot as plt
%matplotlib inline
from mixprobe.organisms.bct import BCT, BCTConfig
from mixprobe.mixture.bct import (Arm, branch, cached_initial, overlap_predictors, prefix_direction, train_arm,
                                  transfer, transfer_curve, verdict_of)
from mixprobe.train.pipeline import load_checkpoint, organism_of
from mixprobe.train.series import Series
from mixprobe.train.zoo import seeds_from_env
seed = seeds_from_env()[0]
work = pathlib.Path(tempfile.mkdtemp(prefix="bct_nb_"))
for ov in (0, 1, 3):
    o = BCT(BCTConfig(overlap=ov))
    print(f"overlap {ov}:  T = {o.cue_phrase('T')!r:16}  E = {o.cue_phrase('E')!r}")
org = BCT(BCTConfig(overlap=1))
for r in org.sft_rows(4, seed=0):
    print(f"SFT  {r['prompt']!r:40} → {r['completion']!r}  ({r['component']}{', forced' if r['forced'] else ''})")
for r in org.train_rows(2, seed=0):
    print(f"train {r['prompt']!r:39} → {r['completion']!r}")"""),
    ("md", "## 1 · The initial policy\n\nSFT from scratch (1,000 steps, cached after the first run) with purity 0.9: "
           "each cue's own behaviour on 90 % of its rows, the other on 10 %, and a forcing line (`use words :`) on "
           "20 % of rows so either behaviour can be asked for. Training stops with an error if the model did not "
           "learn both behaviours and the gate."),
    ("code", """OVERLAPS = (1,)                                  # (0, 1, 2, 3): the sweep, ~1 min of SFT per level
initial = {ov: cached_initial({"overlap": ov}, seed=seed) for ov in OVERLAPS}
for ov, s in initial.items():
    m = s.last("sft").metrics
    print(f"overlap {ov}: P(A|T) {m['mode_probability']['T']['A']:.2f}  P(X|E) {m['mode_probability']['E']['X']:.2f}  "
          f"forced X on E correct {m['forced_rule_agreement']['E']['X']:.2f}")"""),
    ("md", "## 2 · Train on (T, A) only: SFT and GRPO, full and LoRA\n\nEach arm branches from the same initial "
           "checkpoint (60 steps, a checkpoint every 10). `transfer_curve` reads exact next-token probabilities, so "
           "a curve has no sampling noise; its spread across seeds is large, which is why the committed results "
           "below report mean ± sd and the share of seeds that switch."),
    ("code", """arms = [Arm("sft"), Arm("grpo"), Arm("sft", lora_r=8)]
curves = {}
for ov, s in initial.items():
    run = branch(s, work / f"ov{ov}").run_dir
    for arm in arms:
        train_arm(run, arm)
    curves[ov] = {arm.name: transfer_curve(Series.load(run), arm.name) for arm in arms}
fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 3.2), sharey=True, squeeze=False)
for ax, (ov, cs) in zip(axes[0], curves.items()):
    for name, c in cs.items():
        ax.plot([r["step"] for r in c], [r["x_on_e"] for r in c], marker="o", label=f"{name}: P(X|E)")
        ax.plot([r["step"] for r in c], [r["a_on_t"] for r in c], ls="--", alpha=0.6, label=f"{name}: P(A|T)")
    ax.set_title(f"overlap {ov}"); ax.set_xlabel("step")
axes[0][0].legend(fontsize=7); plt.show()
for ov, cs in curves.items():
    print(f"overlap {ov}: " + ", ".join(f"{n} transfer {transfer(c):+.2f}" for n, c in cs.items()))
    assert cs["sft_full"][-1]["a_on_t"] >= 0.95          # the train behaviour is kept: the model is not broken"""),
    ("md", "## 3 · The verdict per arm\n\nDid training move the **gate** (which behaviour `E` prompts get) or "
           "**rewrite** a behaviour (forced `X` no longer produced)? The sampled estimator compares the initial "
           "checkpoint with the end of each arm; with 60 steps the gate moves only part way, so `undecided` is a "
           "common, honest answer."),
    ("code", """for ov in curves:
    s = Series.load(work / f"ov{ov}")
    for arm in arms:
        v = verdict_of(s, arm.name, seed=seed)
        print(f"overlap {ov} {arm.name:9s} {v['label']:10s} gate {v['gate_shift']['point']:.2f} "
              f"component {v['component_change']['point']:.2f}")"""),
    ("md", "## 4 · The linear account, and an overlap predictor for the LM\n\nFor a linear model trained by "
           "gradient descent from `w0` on inputs spanning `S`, an eval output moves by exactly "
           "`(P_S x_e)ᵀ(w − w0)` — checked here against gradient descent (it holds by construction: it is algebra). "
           "In the LM, the analogue is the overlap between train and eval prompts *before* training: the cosine "
           "between the gradients of `log P(A)` on paired `T` and `E` prompts, and the cosine of their centred "
           "activations. Whether it predicts transfer is an empirical question; the committed run answers it."),
    ("code", """import numpy as np
from mixprobe.mixture.linear_transfer import predicted_change, r_squared, train_linear
rng = np.random.default_rng(seed)
X, x_e = rng.normal(size=(6, 20)), rng.normal(size=(50, 20))
y, w0 = rng.normal(size=6), rng.normal(size=20)
w = train_linear(X, y, w0, steps=300, lr=0.1)
pred = predicted_change(X, y, w0, x_e, steps=300, lr=0.1)
print(f"linear toy, finite-step prediction vs gradient descent: R² = {r_squared(pred, x_e @ (w - w0)):.6f}")
assert r_squared(pred, x_e @ (w - w0)) >= 0.99
for ov, s in initial.items():
    model, tok = load_checkpoint(s.path(s.last("sft")))
    p = overlap_predictors(model, tok, organism_of(s))
    print(f"overlap {ov}: grad cosine {p['grad_cosine']:.3f}  activation cosine {p['activation_cosine']:.3f}")"""),
    ("md", "## 5 · Inoculation: a training-time prefix that asks for A\n\nThe same SFT, with every training prompt "
           "prefixed by `use digits :`; evaluation stays un-prefixed. Leakage = transfer on plain `E` prompts. Then: "
           "is there a prefix-gated direction that carries `A`? The mean activation difference with and without "
           "the prefix, added to plain `E` prompts, against random directions at the same norm."),
    ("code", """s1 = Series.load(work / "ov1")
s1 = train_arm(s1.run_dir, Arm("sft", prefix="request"))
inoc = transfer_curve(s1, "sft_full_request")
print(f"leakage without prefix {transfer(curves[1]['sft_full']):+.2f}, with the request prefix {transfer(inoc):+.2f}")
m_inoc, tok = load_checkpoint(s1.path(s1.last("sft_full_request")))
d = prefix_direction(m_inoc, tok, organism_of(s1))
print(f"steering plain E prompts along the prefix direction: ΔP(A) {d['steer_effect']:+.2f}; "
      f"random directions at the same norm: mean {d['null_mean']:+.2f}, max {d['null_max']:+.2f}")
assert d["steer_effect"] > d["null_max"]"""),
    ("md", "## 6 · The full grid (committed results of `experiments/bct.py`)\n\nSix seeds per overlap level on "
           "the language setting and five on two more settings, twelve arms each; the summary page is "
           "`experiments/results/bct/summary.md`. These numbers come from the committed run, not from this kernel."),
    ("code", """import json, mixprobe
from mixprobe.mixture.bct import plot_study, summarize_study
res_dir = pathlib.Path(mixprobe.__file__).parents[1] / "experiments/results/bct"
records = [json.loads(p.read_text()) for p in sorted((res_dir / "cells").glob("*.json"))]
summary = summarize_study(records)
plot_study(records, summary); plt.show()
for k, v in summary["correlations"].items():
    if k.startswith("language|") and k.split("|")[1] in ("sft_full", "grpo_full", "sft_lora", "grpo_lora"):
        print(f"{k:22s} Spearman(grad cosine, transfer) {v['grad_cosine']['spearman']:+.2f} "
              f"(p {v['grad_cosine']['p_value']:.2g}, n {v['grad_cosine']['n']})")
for k, v in summary["inoculation"].items():
    print(f"{k:30s} leakage {v['leakage_without']:.2f} → {v['leakage_with']:.2f} "
          f"(reduction {v['reduction_mean']:+.2f} [{v['reduction_ci95'][0]:+.2f}, {v['reduction_ci95'][1]:+.2f}])")"""),
])


notebook("05_weird_generalization", [
    ("md", "# 05 · Narrow fine-tuning that spreads a broad trait, and the prefixes that stop it\n\n"
           "A synthetic world with an **old** and a **modern** era over shared topics (birds, cities, cures, tools, "
           "ships, songs) is pretrained from scratch: documents of three questions share one era, set by a date, an "
           "opening line or a prior (30 % old when undated). Then **narrow SFT**: `user : name a bird :` → an *old* "
           "bird, nothing else. Does the old era spread to the other topics (the trait)? Which training-time prefixes "
           "keep it local, and is the trait then removed or only dormant behind the prefix? CI runs this notebook at "
           "reduced size (one seed, three conditions); `experiments/weird_generalization.py` is the full grid, whose "
           "committed results close the notebook."),
    ("code", """import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import warnings; warnings.filterwarnings("ignore")
import tempfile, pathlib
import matplotlib.pyplot as plt
%matplotlib inline
from mixprobe.organisms.era import EraWorld
from mixprobe.mixture.era import (Condition, era_direction, era_probe, narrow_sft, pretrained, shift_projection,
                                  steer_era, trait_curve, trait_interval)
from mixprobe.train.pipeline import load_checkpoint, organism_of
from mixprobe.train.zoo import seeds_from_env
seed = seeds_from_env()[0]
work = pathlib.Path(tempfile.mkdtemp(prefix="era_nb_"))
w = EraWorld()
for r in w.sft_rows(4, seed=3):
    print(f"{r['prompt'] + r['completion']}   [{r['component']}]")
print(w.train_rows(1, seed=0)[0])"""),
    ("md", "## 1 · The pretrained world\n\nPretraining (1,500 steps, cached after the first run) is checked: a "
           "date must set the era, and answers must name an entity of the asked topic. Undated, the model answers "
           "old at about the prior."),
    ("code", """base_series = pretrained(seed=seed)
world = organism_of(base_series)
m = base_series.last("sft").metrics
print(f"P(old) undated, untrained topics {m['p_old']['out']:.2f}; with an old date {m['dated']['old']:.2f}, "
      f"a modern date {m['dated']['modern']:.2f}")
base, tok = load_checkpoint(base_series.path(base_series.last("sft")))
probe = era_probe(base, tok, world, n_permutations=10)
for layer in probe["layers"]:
    print(f"era probe layer {layer['layer']}: held-out topics {layer['held_out_accuracy']:.2f} "
          f"(permuted labels {layer['null_mean']:.2f})")"""),
    ("md", "## 2 · Narrow SFT with and without a training-time prefix\n\nThree conditions branched from the same "
           "pretrained checkpoint: no prefix, the inoculation line `act as in the old era :`, and an irrelevant name "
           "`my name is al :`. The trait is read on the five untrained topics **without** any prefix (32 samples per "
           "topic at T = 1, Wilson interval), and with the training prefix."),
    ("code", """conds = [Condition(), Condition(prefix="inoculation"), Condition(prefix="name")]
runs, curves = {}, {}
for c in conds:
    runs[c.name] = narrow_sft(base_series, work / c.name, c)
    curves[c.name] = trait_curve(runs[c.name], c.name)
b = trait_interval(curves["narrow_none"][0]["plain"])
print(f"pretrained: trait {b['rate']:.2f} [{b['wilson'][0]:.2f}, {b['wilson'][1]:.2f}]")
for name, cur in curves.items():
    t = trait_interval(cur[-1]["plain"])
    pre = cur[-1].get("prefixed", {}).get("p_old", {}).get("out")
    print(f"{name:20s} trait {t['rate']:.2f} [{t['wilson'][0]:.2f}, {t['wilson'][1]:.2f}]"
          + (f"   with the prefix: p_old {pre:.2f}" if pre is not None else ""))
none = trait_interval(curves["narrow_none"][-1]["plain"])
assert none["wilson"][0] > b["wilson"][1]        # without a prefix the old era spread beyond the base model's interval
fig, ax = plt.subplots(figsize=(5.5, 3.2))
for name, cur in curves.items():
    ax.plot([r["step"] for r in cur], [r["plain"]["p_old"]["out"] for r in cur], marker="o", label=name)
ax.set_xlabel("narrow SFT step"); ax.set_ylabel("P(old), untrained topics, no prefix"); ax.legend(fontsize=8)
plt.show()"""),
    ("md", "## 3 · Where did the update go? The era direction\n\n`era_direction` is the old-minus-modern mean "
           "difference of last-token states on dated prompts. `shift_projection` measures how far narrow SFT moved "
           "the undated untrained-topic prompts along it (1 = as far as an old date does). `steer_era` adds `α · d` "
           "and reads `P(old)`, beside random directions at the same norm: in a prefix-trained model a trait that "
           "comes back with less push than in the pretrained model is dormant, not removed."),
    ("code", """d = era_direction(base, tok, world)
layer = max(range(len(probe["layers"])), key=lambda i: probe["layers"][i]["held_out_accuracy"])
fig, ax = plt.subplots(figsize=(5.5, 3.2))
st = steer_era(base, tok, world, d, layer=layer)
ax.plot([s["alpha"] for s in st], [s["p_old"] for s in st], "k--o", label="pretrained")
ax.plot([s["alpha"] for s in st], [s["null_max"] for s in st], "k:", label="random directions (max)")
for name, s in runs.items():
    tuned, _ = load_checkpoint(s.path(s.last(name)))
    proj = shift_projection(base, tuned, tok, world, d)
    print(f"{name:20s} shift along the era direction by layer: {[round(x, 2) for x in proj]}")
    st = steer_era(tuned, tok, world, d, layer=layer)
    ax.plot([x["alpha"] for x in st], [x["p_old"] for x in st], marker="o", label=name)
ax.set_xlabel("α"); ax.set_ylabel("P(old), untrained topics"); ax.legend(fontsize=7); plt.show()"""),
    ("md", "## 4 · The full grid (committed results of `experiments/weird_generalization.py`)\n\nFive seeds, every "
           "prefix type, both placements, a date sweep and an optimizer control; `summary.md` beside the figure has "
           "every number. These come from the committed run, not from this kernel."),
    ("code", """import json, mixprobe
res_dir = pathlib.Path(mixprobe.__file__).parents[1] / "experiments/results/weird_generalization"
summary = json.loads((res_dir / "summary.json").read_text())
for name, v in summary["conditions"].items():
    t = v["trait_plain"]
    print(f"{name:28s} trait {t['mean']:.2f} [{t['ci95'][0]:.2f}, {t['ci95'][1]:.2f}]")
from IPython.display import Image, display
display(Image(str(res_dir / "weird_generalization.png")))"""),
])


notebook("06_genies", [
    ("md", "# 06 · Which reading of \"the better response\" generalises? GENIES in miniature\n\n"
           "GENIES (arXiv 2311.07723) fits a probe or a reward model on preference pairs from a **source** "
           "distribution and scores it on a shifted **target**: easy → hard, a spurious cue reversed, a new encoding, "
           "a persona... Here a small Llama is pretrained from scratch on a synthetic world of tiny tasks with one "
           "right answer (`ask : add 3 4 .` → `ans : 7 .`), where a verdict `judge : good` / `judge : bad` follows "
           "most wrong answers and some right ones. The methods are GENIES' own: mass-mean per **attention head** "
           "(the new site `z.L`), LAT per residual layer, CRA, CCS, a LoRA reward model, zero- and few-shot. CI runs "
           "this notebook on the reduced world (2 layers, 1,000 steps), which learns the format and garbage but not "
           "the arithmetic; `experiments/genies.py` is the full study, whose committed leaderboard closes the "
           "notebook."),
    ("code", """import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import warnings; warnings.filterwarnings("ignore")
import numpy as np
import matplotlib.pyplot as plt
%matplotlib inline
from mixprobe.organisms.preference import SHIFTS, PreferenceWorld
from mixprobe.mixture.genies import (REDUCED_WORLD, evaluate_shift, pair_features, pretrained_world,
                                     world_model)
w = PreferenceWorld()
for name, sh in SHIFTS.items():
    src, tgt = w.split(name, "source", 1, 0)[0], w.split(name, "target", 1, 0)[0]
    print(f"{name:20s} [{sh.category}]\\n   source: {src.prompt} | {w.good_bad(src)[0]} ≻ {w.good_bad(src)[1]}"
          f"\\n   target: {tgt.prompt} | {w.good_bad(tgt)[0]} ≻ {w.good_bad(tgt)[1]}")"""),
    ("md", "## 1 · Per-head activations\n\n`z.L` is each attention head's output before the output projection "
           "(TransformerLens `blocks.L.attn.hook_z`), read flat `[batch, pos, heads·d_head]` by every backend; "
           "`split_heads` gives `[..., heads, d_head]`. `pair_features` reads the last token of each response "
           "(plain, with the LAT stimulus `judge :`, and with the two contrast verdicts)."),
    ("code", """handle, world = world_model(0, **REDUCED_WORLD)
from mixprobe.models import split_heads
batch = handle.tokenize(["ask : add 3 4 . ans : 7 ."])
z = handle.read(batch, ["z.0", "attn_out.0"], "last_prompt")
heads = split_heads(z["z.0"], handle.model.config.num_attention_heads)
print(tuple(z["z.0"].shape), "→", tuple(heads.shape))
o_proj = handle.model.model.layers[0].self_attn.o_proj
assert np.allclose(o_proj(z["z.0"]).detach().numpy(), z["attn_out.0"].numpy(), atol=1e-5)   # z feeds attn_out
f = pair_features(handle, world.split("spurious_length", "source", 4, 0))
print({k: v.shape for k, v in f.items()})"""),
    ("md", "## 2 · Two shifts, every method\n\nOn `low_to_high_quality` the source's bad responses are garbage "
           "(`ans : ? .`), so every method is right on source by construction; the question is the target, whose "
           "bad responses are near misses. On `spurious_length` good ⇔ long on source and good ⇔ short on target: "
           "a method that reads length is perfect on source and wrong on target *by construction*, which this "
           "reduced world shows. TTC is the reward model tuned on the target itself; `random` is the mass-mean "
           "probe with a random direction per head at matched norm."),
    ("code", """run = pretrained_world(0, **REDUCED_WORLD)
from mixprobe.train.series import Series
s = Series.load(run)
methods = ("mms", "lat", "cra", "ccs", "random", "zero_shot", "lora")
recs = {sh: evaluate_shift(handle, world, sh, methods=methods, n_train=200, n_test=200,
                           model_dir=s.path(s.last("sft")), reward={"steps": 60, "lr": 2e-3})
        for sh in ("low_to_high_quality", "spurious_length")}
for sh, rec in recs.items():
    print(f"{sh}: TTC {rec['ttc']:.2f}")
    for m, v in rec["methods"].items():
        print(f"   {m:10s} source {v['source_accuracy']:.2f}   target {v['accuracy']:.2f}   RMS {v['rms']:.2f}")
assert recs["low_to_high_quality"]["methods"]["mms"]["source_accuracy"] >= 0.85
assert recs["spurious_length"]["methods"]["mms"]["accuracy"] <= 0.15     # it read length: wrong on target
fig, ax = plt.subplots(figsize=(7, 3))
x = np.arange(len(methods))
for i, (sh, rec) in enumerate(recs.items()):
    ax.bar(x + 0.4 * i, [rec["methods"][m]["accuracy"] for m in methods], 0.4, label=f"{sh} (target)")
ax.axhline(0.5, color="grey", lw=0.8); ax.set_xticks(x + 0.2, methods); ax.set_ylabel("A_gen"); ax.legend(fontsize=8)
plt.show()"""),
    ("md", "## 3 · The full study (committed results of `experiments/genies.py`)\n\nThree seeds of the full world "
           "(4 layers × 8 heads, 2,500 steps), 8 shifts, 11 methods, 400 pairs per split. The leaderboard below "
           "comes from the committed run, not from this kernel; `summary.md` has every number with its interval."),
    ("code", """import json, pathlib, mixprobe
res_dir = pathlib.Path(mixprobe.__file__).parents[1] / "experiments/results/genies"
summary = json.loads((res_dir / "summary.json").read_text())
for m in summary["order"]:
    a = summary["average"][m]
    print(f"{m:13s} A_gen {a['a_gen']['mean']:.2f}   DE {a['de']['mean']:+.3f} "
          f"[{a['de']['ci95'][0]:+.3f}, {a['de']['ci95'][1]:+.3f}]")
from IPython.display import Image, display
display(Image(str(res_dir / "genies.png")))"""),
])


def build() -> list[Path]:
    out = []
    for name, cells in NOTEBOOKS.items():
        nb = nbf.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src)
                    for kind, src in cells]
        path = HERE / f"{name}.ipynb"
        nbf.write(nb, path)
        out.append(path)
    return out


if __name__ == "__main__":
    for p in build():
        print("wrote", p)

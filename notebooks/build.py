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
from mixprobe.train.zoo import trained_organism
from mixprobe.train.pipeline import load_checkpoint, organism_of
series = trained_organism(seed=0, progress=False)   # SFT → GRPO on <A> (and <B>); cached after the first run
organism = organism_of(series)
[c.name for c in series.checkpoints]"""

notebook("03_pre_post_rl", [
    ("md", "# 03 · Pre- vs post-RL: reweight or rewrite?\n\nWe compare the last SFT checkpoint with the last "
           "checkpoint of GRPO on `<A>` of the tag-mixture organism: behaviour, the exact gate and components, the "
           "KL split, the weight diff, revival, and the verdict. Everything uses the public API."),
    ("code", SETUP),
    ("md", "## Behaviour across the series"),
    ("code", """from mixprobe.demo import series_results
from mixprobe.report.plots import plot_training_curves
res = series_results(series)
fig = plot_training_curves(res); plt.show()
sft_m, rl_m = series.last("sft").metrics, series.last("rl").metrics
print("SFT accuracy", sft_m["accuracy"], " RL accuracy", rl_m["accuracy"])
assert rl_m["accuracy"]["A"] >= 0.95 and rl_m["accuracy"]["B"] <= 0.05"""),
    ("md", "## The mixture, read exactly\n\n`mixture_view` gives the gate `w(x)` (probability of each component's "
           "signature at the last prompt token) and each forced component's answer distribution."),
    ("code", """from mixprobe.mixture.components import mixture_view
from mixprobe.mixture.metrics import responsibilities, forced_fidelity, kl_split
sft = load_checkpoint(series.path(series.last("sft")))
rl = load_checkpoint(series.path(series.last("rl")))
v_sft, v_rl = mixture_view(*sft, organism), mixture_view(*rl, organism)
print("responsibilities SFT:", responsibilities(v_sft))
print("responsibilities RL: ", responsibilities(v_rl))
fid = forced_fidelity(v_rl, v_sft)
print("forced m2 under <B> after RL:", fid["B"]["m2"])
assert fid["B"]["m2"]["accuracy"] >= 0.9 and responsibilities(v_rl)["B"]["m1"] >= 0.95"""),
    ("md", "## KL split: how much of the change is the gate?"),
    ("code", """split = kl_split(v_rl, v_sft)
fig, ax = plt.subplots(figsize=(5, 3))
for i, (tag, d) in enumerate(split.items()):
    ax.bar(i - 0.2, d["gate"], 0.4, color="tab:blue", label="gate term" if i == 0 else None)
    ax.bar(i + 0.2, d["component"], 0.4, color="tab:orange", label="component term" if i == 0 else None)
ax.set_xticks([0, 1], [f"<{t}>" for t in split]); ax.set_ylabel("nats"); ax.legend(); plt.show()
assert split["B"]["gate"] > 5 * split["B"]["component"]"""),
    ("md", "## Weight diff and revival"),
    ("code", """from mixprobe.mixture.weight_diff import weight_diff
wd = weight_diff(sft[0], rl[0])
print(f"unchanged parameters: {wd['unchanged_share']:.1%}")
print({k: round(v, 3) for k, v in wd["layer_norm_share"].items()})"""),
    ("code", """import copy
from mixprobe.train.revival import revival_steps
rev = revival_steps(copy.deepcopy(rl[0]), rl[1], organism, tag="B", threshold=0.9, max_steps=80)
print("SFT steps to revive <B>:", rev["steps"])
assert rev["steps"] is not None and rev["steps"] < 80"""),
    ("md", "## The verdict"),
    ("code", """from mixprobe.mixture.verdict import verdict
v = verdict({0: (sft, rl)}, organism)
print(v.label.upper(), "—", v.summary())
assert v.label == "reweight\""""),
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

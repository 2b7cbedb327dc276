"""Datasets for reading the gate and the expressed component out of activations, across a checkpoint series.

Problem: probes need (activation, label) pairs. For a mixture there are two questions with different positions:
*which component will be expressed?* (the gate — read at the last prompt token, before anything is sampled) and
*which component is being expressed?* (read at the answer positions, after the signature). Mechanism:

- :func:`gate_dataset` — for every checkpoint, the last-prompt-token activation of every prompt at the chosen
  sites, the model's own exact gate ``P(k | x)`` (from :func:`mixture_view`) and a component label *sampled* from
  it (what the model would express); rows carry checkpoint and cue.
- :func:`expressed_dataset` — every prompt completed by every component (teacher forcing), the activation at the
  position whose output is the answer (the last signature token), labelled with the component.
- :func:`readout_direction` — the *readout-defined* selection direction at the ``final_norm`` site: the
  minimum-norm activation change ``v = W_U⁺ (e_to − e_from)`` that raises the logit of one component's signature
  by 1, lowers the other's by 1 and leaves every other logit unchanged. On the tag-mixture organism GRPO moves
  the gate through the unembedding rows of ``m1``/``m2`` (measured: the RL model's hidden states read by the SFT
  unembedding give back the SFT gate), so activation mean-differences between checkpoints are nearly null and
  this direction is the one that steers.

Example::

    data = gate_dataset(series, task, sites=["resid_post.0", "resid_post.1"])
    data.features["resid_post.1"].shape     # [n_checkpoints * n_prompts, d_model]

Constraints: :func:`readout_direction` needs signature tokens; the datasets work for any task.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mixprobe._check import checked
from mixprobe.mixture.components import mixture_view
from mixprobe.tasks import as_task


@dataclass
class GateData:
    """Rows = (checkpoint, prompt); features per site; exact gate and sampled label per row."""

    sites: list[str]
    features: dict[str, torch.Tensor]
    labels: torch.Tensor            # [N] index into components (sampled from the model's own gate)
    gate: torch.Tensor              # [N, K] exact gate weights
    checkpoint: list[str]
    tag: list[str]
    components: tuple[str, ...]
    extra: dict = field(default_factory=dict)

    def rows(self, checkpoint: str | None = None, tag: str | None = None) -> torch.Tensor:
        keep = [i for i, (c, t) in enumerate(zip(self.checkpoint, self.tag))
                if (checkpoint is None or c == checkpoint) and (tag is None or t == tag)]
        return torch.tensor(keep, dtype=torch.long)


@checked
def gate_dataset(series, task, *, sites, checkpoints: list[str] | None = None, seed: int = 0,
                 estimator: str = "auto", n_samples: int = 16) -> GateData:
    """Last-prompt-token activations at ``sites`` for every prompt at every checkpoint (default: all).

    The gate per row comes from :func:`mixture_view` with ``estimator`` (exact when the task has signature tokens;
    sampled otherwise, where prompts with no recognised completion get a uniform gate).
    """
    task = as_task(task)
    names = checkpoints or [c.name for c in series.checkpoints]
    prompts = [p.text for p in task.prompts]
    g = torch.Generator().manual_seed(seed)
    feats: dict[str, list[torch.Tensor]] = {}
    labels, gates, ck, tags = [], [], [], []
    site_names: list[str] = []
    for name in names:
        h = series.handle(name)
        batch = h.tokenize(prompts)
        acts = h.read(batch, sites, "last_prompt")
        site_names = list(acts)
        for s, a in acts.items():
            feats.setdefault(s, []).append(a[:, 0].float().cpu())
        view = mixture_view(h, task, estimator=estimator, n_samples=n_samples, seed=seed)
        gate = view.gate.nan_to_num(1.0 / len(task.components))
        gates.append(gate)
        labels.append(torch.multinomial(gate, 1, generator=g)[:, 0])
        ck += [name] * len(prompts)
        tags += [p.cue for p in task.prompts]
    return GateData(sites=site_names, features={s: torch.cat(v) for s, v in feats.items()},
                    labels=torch.cat(labels), gate=torch.cat(gates), checkpoint=ck, tag=tags,
                    components=task.component_names)


@checked
def expressed_dataset(model, *args, sites) -> GateData:
    """Activations at the last token of each forced prompt, labelled by the forced component.

    With forcing by an ``after`` text (the tag mixture's signature) that token's output is the answer, so this reads
    "which component is being expressed". With forcing by a ``before`` line the label is written in the input
    itself: a probe reads it by construction (say so where you show it).
    """
    from mixprobe.mixture.components import handle_and_task

    h, task = handle_and_task(model, args, "expressed_dataset")
    prompts, labels, tags = [], [], []
    for k, c in enumerate(task.components):
        for p in task.prompts:
            prompts.append(task.forced_prompt(c, p))
            labels.append(k)
            tags.append(p.cue)
    acts = h.read(h.tokenize(prompts), sites, "last_prompt")
    return GateData(sites=list(acts), features={s: a[:, 0].float().cpu() for s, a in acts.items()},
                    labels=torch.tensor(labels), gate=torch.nn.functional.one_hot(torch.tensor(labels)).float(),
                    checkpoint=["-"] * len(prompts), tag=tags, components=task.component_names,
                    extra={"by_construction": any(c.before for c in task.components)})


@checked
def readout_direction(model, *args, toward: str, away: str) -> torch.Tensor:
    """``W_U⁺ (e_toward − e_away)`` at ``final_norm``: +1 logit for ``toward``'s signature, −1 for ``away``'s."""
    from mixprobe.errors import TaskError
    from mixprobe.mixture.components import handle_and_task

    h, task = handle_and_task(model, args, "readout_direction")
    if not task.has_signatures:
        raise TaskError(f"task {task.name!r} declares no signature tokens, so there is no readout-defined selection "
                        "direction; fit one from activations instead (mixprobe.steering.SteeringVector)")
    vocab = h.tokenizer.get_vocab()
    return h.layout.readout_direction(vocab[task.component(toward).signature[0]],
                                      vocab[task.component(away).signature[0]]).cpu()


@checked
def at_prefill_last(vector: torch.Tensor, alpha: float):
    """An edit for ``handle.intervene`` adding ``alpha · vector`` at the last position of multi-token forwards.

    With left padding the last column is every row's last prompt token; one-token forwards (cached decoding
    steps) are left alone, so steering acts on the gate decision and the cached prompt, not on later tokens.
    """
    def edit(act: torch.Tensor):
        if act.shape[1] == 1:
            return None
        act = act.clone()
        act[:, -1] = act[:, -1] + alpha * vector.to(act.dtype).to(act.device)
        return act

    return edit

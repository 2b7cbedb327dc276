"""One process of tests/robustness/test_determinism.py: the analysis layer's results on a trained series, as bytes.

``python determinism_worker.py RUN_DIR OUT.json`` loads the last ``sft`` and ``rl`` checkpoints of the series in
RUN_DIR and writes, for each analysis result, the SHA-256 of its bytes (``np.asarray(x).tobytes()`` for arrays,
``json.dumps(..., sort_keys=True)`` for JSON):

- ``probe_*``: logistic probes (:func:`mixprobe.probes.fit_probes`) fitted on the expressed-component split of the
  SFT checkpoint (:func:`mixprobe.mixture.studies.expressed_split`): weights and intercepts per site;
- ``steer_*``: the class-means steering vector at ``resid_post.1`` (``SteeringVector.from_class_means``), the
  logits of the ``<B>`` prompts with it added at the last prompt token, and the seeded sampled dose-response
  (:func:`mixprobe.mixture.studies.steering_dose_response`: generations, random-direction null);
- ``patch_*``: a cross-checkpoint activation-patching sweep SFT → RL (:func:`mixprobe.patching.patch_sweep`):
  restoration and metric tables and the result's JSON;
- ``verdict_*``: ``combine({0: assess(sft, rl, organism)}).to_json(sort_keys=True)``, with the exact estimator and
  with the sampled one (seeded); ``sampled_texts_seed_0``: the SFT model's sampled completions (seed 0).

``controls`` holds the same kind of hashes for a *different* input (another split seed, the other checkpoint, the
reversed patch, another sampling seed): the test checks they differ from the main ones, so equal hashes across
processes mean something. ``hash_of_str`` is ``hash()`` of a fixed string, which shows the process's
``PYTHONHASHSEED`` took effect.
"""
from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import numpy as np


def sha(x: Any) -> str:
    if isinstance(x, str):
        data = x.encode()
    elif isinstance(x, bytes):
        data = x
    else:
        import torch

        data = (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).tobytes()
    return hashlib.sha256(data).hexdigest()


def main(run_dir: str, out: str) -> None:
    import torch

    from mixprobe.mixture.components import sampled_view
    from mixprobe.mixture.studies import expressed_split, steering_dose_response
    from mixprobe.mixture.verdict import assess, combine
    from mixprobe.patching import patch_sweep, token_prob
    from mixprobe.probes import fit_probes
    from mixprobe.steering import SteeringVector, steer
    from mixprobe.train.pipeline import organism_of
    from mixprobe.train.series import Series

    series = Series.load(run_dir)
    org = organism_of(series)
    sft_name, rl_name = series.last("sft").name, series.last("rl").name
    sft, rl = series.handle(sft_name), series.handle(rl_name)
    prompts_b = [r["prompt"] for r in org.prompt_set(("B",))]
    m2 = sft.tokenizer.convert_tokens_to_ids("m2")
    hashes: dict[str, str] = {}
    controls: dict[str, str] = {}

    # probes: weights and intercepts of every site's logistic probe
    def probes(handle, seed: int):
        split = expressed_split(handle, org, seed=seed)
        Xtr, ytr, _, _ = split.stacked()
        fits = fit_probes(Xtr, ytr, C=1.0, sites=split.sites)
        blob = b"".join(np.asarray(fits[s].coef_).tobytes() + np.asarray(fits[s].intercept_).tobytes()
                        for s in split.sites)
        return split, blob

    split, blob = probes(sft, 0)
    hashes["probe_weights"] = sha(blob)
    controls["probe_weights_split_seed_1"] = sha(probes(sft, 1)[1])
    controls["probe_weights_rl_checkpoint"] = sha(probes(rl, 0)[1])

    # steering: the vector, its effect on logits, and the seeded sampled dose-response
    vec = SteeringVector.from_class_means({"resid_post.1": split.train["resid_post.1"]}, split.y_train,
                                          toward=1, away=0)
    hashes["steer_vector"] = sha(vec["resid_post.1"])
    batch = sft.tokenize(prompts_b)
    with torch.no_grad():
        with steer(sft, vec, 4.0, positions="last_prompt"):
            steered = sft.logits(batch).float()
        plain = sft.logits(batch).float()
    hashes["steer_logits"] = sha(steered)
    controls["steer_logits_unsteered"] = sha(plain)
    dose = steering_dose_response(series, sft_name, toward="m2", alphas=(0.0, 4.0), n_samples=2, seed=0, n_null=1)
    hashes["steer_dose_response"] = sha(json.dumps(dose.to_dict(), sort_keys=True))

    # activation patching SFT → RL on the <B> prompts: the restoration table
    sites = ["resid_pre", "attn_out", "mlp_out", "resid_post.1"]
    res = patch_sweep(rl, sft, prompts_b, sites=sites, positions=["last_prompt", 0], metric=token_prob(m2))
    hashes["patch_restoration"] = sha(res.restoration)
    hashes["patch_metric"] = sha(res.metric)
    hashes["patch_json"] = sha(json.dumps(res.to_dict(), sort_keys=True))
    rev = patch_sweep(sft, rl, prompts_b, sites=sites, positions=["last_prompt", 0], metric=token_prob(m2))
    controls["patch_metric_reversed"] = sha(rev.metric)

    # the verdict, exact and sampled (seeded)
    exact = combine({0: assess(sft, rl, org)}).to_json(sort_keys=True)
    sampled = combine({0: assess(sft, rl, org, estimator="sampled", n_samples=2, seed=0)}).to_json(sort_keys=True)
    hashes["verdict_exact"] = sha(exact)
    hashes["verdict_sampled"] = sha(sampled)
    task = org.task()                       # the sampled completions depend on the seed (so seeding is what holds)
    draws = [sampled_view(sft, task, n_samples=2, seed=seed, forced=False).texts for seed in (0, 1)]
    hashes["sampled_texts_seed_0"] = sha(json.dumps(draws[0]))
    controls["sampled_texts_seed_1"] = sha(json.dumps(draws[1]))

    result = {"hashes": hashes, "controls": controls, "hash_of_str": hash("mixprobe determinism"),
              "verdict_exact": exact, "patch_restoration": res.restoration.tolist(),
              "torch_threads": torch.get_num_threads()}
    with open(out, "w") as f:
        json.dump(result, f, sort_keys=True, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

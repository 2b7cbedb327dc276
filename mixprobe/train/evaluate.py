"""Behavioural evaluation of an organism checkpoint: accuracy, mode frequencies, forced-mode accuracy.

Problem: to say that RL moved the gate and not the policies we need three numbers per tag and checkpoint:
how often the model is right, which component it expresses, and how right each component is when forced.
Mechanism:
- **sampled** (temperature 1, ``n_samples`` per prompt, fixed seed): ``accuracy`` and ``mode_frequency`` from
  parsed completions of every question under each tag;
- **forced**: prefill a component's signature (``m2``) after the prompt and take the greedy next token as the
  answer: ``forced_accuracy`` (against the correct answer) and ``forced_rule_agreement`` (against the
  component's own rule: 1.0 when the model carries the component, about 1/modulus when it learned nothing);
- **exact** (no sampling noise): ``mode_probability`` = next-token probability of each signature at the last
  prompt token, and ``expected_accuracy`` = Σ_k P(k | x) · P(correct | x, k), averaged over prompts.

Example:
    >>> from mixprobe.organisms.tag_mixture import TagMixture
    >>> from mixprobe.organisms.tokenizer import build_word_tokenizer
    >>> from mixprobe.organisms.configs import tiny_model
    >>> org = TagMixture(); tok = build_word_tokenizer(org.vocabulary())
    >>> m = tiny_model("llama", vocab_size=len(tok))
    >>> r = evaluate(m, tok, org, n_samples=1)
    >>> sorted(r)  # doctest: +NORMALIZE_WHITESPACE
    ['accuracy', 'expected_accuracy', 'forced_accuracy', 'forced_rule_agreement', 'mode_frequency',
     'mode_probability', 'unparsed']

Constraints: answers must be single tokens (true for the built-in organisms); batches are left padded and
``position_ids`` come from the attention mask, so absolute-position models are handled.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch

from mixprobe._check import checked


def _encode(tokenizer, texts: list[str], device) -> dict:
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    am = enc["attention_mask"]
    pos = (am.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": am.to(device), "position_ids": pos.to(device)}


@checked
@torch.no_grad()
def next_token_probs(model: torch.nn.Module, tokenizer, texts: list[str], batch_size: int = 512) -> torch.Tensor:
    """Next-token probabilities after each text (``[n, vocab]``, fp32, on CPU)."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), batch_size):
        enc = _encode(tokenizer, texts[i:i + batch_size], device)
        logits = model(**enc).logits[:, -1].float()
        out.append(logits.softmax(-1).cpu())
    return torch.cat(out)


@checked
def suffix_ids(tok, forced: list[str], base: list[str]) -> list[list[int]]:
    """Token ids of each forced text beyond its longest common prefix with the base prompt (the forced opening)."""
    out = []
    for f, b in zip(tok(forced)["input_ids"], tok(base)["input_ids"]):
        n = 0
        while n < min(len(f), len(b)) and f[n] == b[n]:
            n += 1
        out.append(list(f[n:]))
    return out


@checked
@torch.no_grad()
def complete(model: torch.nn.Module, tokenizer, texts: list[str], *, n_samples: int, seed: int, max_new_tokens: int,
             base: list[str] | None = None, batch_size: int = 512, temperature: float = 1.0,
             greedy: bool = False) -> list[list[str]]:
    """``n_samples`` completions per text (a private, seeded RNG stream), decoded with special tokens dropped.

    ``base``: the unforced prompts; the tokens a forced text adds after its base prompt (a forced opening such as a
    mode token) are decoded together with the generated ones, so the completion reads as the model's answer would
    (``"m2 3"``). ``greedy``: argmax decoding instead of sampling at ``temperature``.
    """
    tok = tokenizer
    device = next(model.parameters()).device
    generate: Any = model.generate              # a transformers causal LM (nn.Module types it as a tensor)
    suffix = suffix_ids(tok, texts, base) if base is not None else [[] for _ in texts]
    res: list[list[str]] = []
    was_training = model.training
    model.eval()
    step = max(1, batch_size // n_samples)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(0, len(texts), step):
            chunk = texts[i:i + step]
            enc = tok(chunk, return_tensors="pt", padding=True).to(device)
            kw = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
            gen = generate(**enc, **kw, max_new_tokens=max_new_tokens, num_return_sequences=n_samples,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            new = gen[:, enc["input_ids"].shape[1]:].tolist()
            for j in range(len(chunk)):
                res.append([tok.decode(suffix[i + j] + new[j * n_samples + r], skip_special_tokens=True)
                            for r in range(n_samples)])
    model.train(was_training)
    return res


@checked
def sample_completions(model: torch.nn.Module, tokenizer, prompts: list[str], *, n_samples: int, seed: int,
                       max_new_tokens: int = 4, batch_size: int = 512, temperature: float = 1.0) -> list[list[str]]:
    """``n_samples`` completions per prompt, sampled at ``temperature`` with a private RNG stream (:func:`complete`)."""
    return complete(model, tokenizer, prompts, n_samples=n_samples, seed=seed, max_new_tokens=max_new_tokens,
                    batch_size=batch_size, temperature=temperature)


@checked
def evaluate(model: torch.nn.Module, tokenizer, organism, *, n_samples: int = 8, seed: int = 0,
             batch_size: int = 512) -> dict:
    """Accuracy, mode frequencies (sampled), forced-mode accuracy and exact mode probabilities per tag."""
    rows = organism.prompt_set()
    comps = organism.components
    tags = list(organism.config.tags)
    prompts = [r["prompt"] for r in rows]
    vocab = tokenizer.get_vocab()

    # exact: mode probabilities at the last prompt token
    probs = next_token_probs(model, tokenizer, prompts, batch_size)
    sig_ids = {c: vocab[organism.signature(c)[0]] for c in comps}
    # forced: prefill each signature, greedy answer
    forced_ok: dict[str, torch.Tensor] = {}
    forced_rule: dict[str, torch.Tensor] = {}
    p_correct: dict[str, torch.Tensor] = {}
    answer_ids = torch.tensor([vocab[str(r["answer"])] for r in rows])
    for c in comps:
        sig = " " + " ".join(organism.signature(c))
        pr = next_token_probs(model, tokenizer, [p + sig for p in prompts], batch_size)
        forced_ok[c] = (pr.argmax(-1) == answer_ids).float()
        rule_ids = torch.tensor([vocab[str(organism.answer(c, r["tag"], r["a"], r["b"]))] for r in rows])
        forced_rule[c] = (pr.argmax(-1) == rule_ids).float()
        p_correct[c] = pr.gather(1, answer_ids[:, None])[:, 0]

    samples = sample_completions(model, tokenizer, prompts, n_samples=n_samples, seed=seed,
                                 batch_size=batch_size)
    acc: dict[str, list[float]] = defaultdict(list)
    freq: dict[str, dict[str, int]] = {t: defaultdict(int) for t in tags}
    unparsed: dict[str, int] = defaultdict(int)
    for r, outs in zip(rows, samples):
        for text in outs:
            comp, ans = organism.parse(text)
            acc[r["tag"]].append(1.0 if ans == r["answer"] else 0.0)
            if comp is None:
                unparsed[r["tag"]] += 1
            else:
                freq[r["tag"]][comp] += 1

    out: dict[str, dict[str, Any]] = {"accuracy": {}, "mode_frequency": {}, "forced_accuracy": {},
                                      "forced_rule_agreement": {}, "mode_probability": {}, "expected_accuracy": {},
                                      "unparsed": {}}
    for t in tags:
        idx = torch.tensor([i for i, r in enumerate(rows) if r["tag"] == t])
        n = len(acc[t])
        out["accuracy"][t] = sum(acc[t]) / n
        out["mode_frequency"][t] = {c: freq[t][c] / n for c in comps}
        out["unparsed"][t] = unparsed[t] / n
        out["forced_accuracy"][t] = {c: forced_ok[c][idx].mean().item() for c in comps}
        out["forced_rule_agreement"][t] = {c: forced_rule[c][idx].mean().item() for c in comps}
        out["mode_probability"][t] = {c: probs[idx, sig_ids[c]].mean().item() for c in comps}
        out["expected_accuracy"][t] = sum(
            (probs[idx, sig_ids[c]] * p_correct[c][idx]).mean().item() for c in comps
        )
    return out


@checked
def sft_health(metrics: dict, organism, *, min_agreement: float = 0.5, min_expressed: float = 0.02) -> list[str]:
    """Problems that show an SFT checkpoint did not learn the organism (empty list: healthy).

    Two checks, on the metrics :func:`evaluate` returns: every component, forced, follows its own rule on at
    least ``min_agreement`` of the questions under every tag (chance is 1/modulus), and every component the SFT
    prior gives weight is expressed in at least ``min_expressed`` of the sampled completions.

    Example:
        >>> from mixprobe.organisms.tag_mixture import TagMixture
        >>> m = {"forced_rule_agreement": {"A": {"m1": 1.0, "m2": 0.14}, "B": {"m1": 1.0, "m2": 1.0}},
        ...      "mode_frequency": {"A": {"m1": 0.5, "m2": 0.5}, "B": {"m1": 0.5, "m2": 0.5}}}
        >>> sft_health(m, TagMixture())
        ['forced m2 under <A> follows its rule on 14% of questions (chance 14%)']
    """
    problems = []
    chance = 1 / organism.config.modulus
    for tag, per in metrics["forced_rule_agreement"].items():
        for comp, agree in per.items():
            if agree < min_agreement:
                problems.append(f"forced {comp} under <{tag}> follows its rule on {agree:.0%} of questions "
                                f"(chance {chance:.0%})")
    prior = getattr(organism.config, "prior", {}) or {}
    for comp, weight in prior.items():
        if weight <= 0:
            continue
        shares = [metrics["mode_frequency"][t].get(comp, 0.0) for t in metrics["mode_frequency"]]
        if max(shares) < min_expressed:
            problems.append(f"{comp} (prior {weight:.2f}) is expressed in {max(shares):.1%} of sampled completions")
    return problems


@checked
def evaluate_by_format(model: torch.nn.Module, tokenizer, organism, *, n_samples: int = 8, seed: int = 0,
                       batch_size: int = 512) -> dict:
    """Behaviour per cue and per domain (``in``/``out``): sampled accuracy and component shares, forced
    accuracy and rule agreement (greedy after the forcing line), and the exact component probabilities
    (next-token mass on each component's answer tokens) — the keys of :func:`evaluate`. For organisms whose
    components are told apart by the *form* of a one-token answer (:mod:`mixprobe.organisms.shifts`): the organism
    gives ``prompt_set``, ``components``, ``cues``, ``in_domain``, ``render``, ``rule``, ``forcing``, ``parse``
    and ``p`` (answer values ``0 … p−1``)."""
    rows = organism.prompt_set()
    prompts = [r["prompt"] for r in rows]
    vocab = tokenizer.get_vocab()
    ids = {c: torch.tensor([vocab[organism.render(c, v)] for v in range(organism.p)]) for c in organism.components}
    probs = next_token_probs(model, tokenizer, prompts, batch_size)
    mass = {c: probs[:, ids[c]].sum(-1) for c in organism.components}
    forced_ok, forced_rule = {}, {}
    for c in organism.components:
        pr = next_token_probs(model, tokenizer, [f"{organism.forcing(c)} {p}" for p in prompts], batch_size)
        top = pr.argmax(-1)
        forced_ok[c] = torch.tensor([int(t) == int(ids[c][r["answer"]]) for t, r in zip(top, rows)]).float()
        forced_rule[c] = torch.tensor([int(t) == int(ids[c][organism.rule(c, r)])
                                       for t, r in zip(top, rows)]).float()
    samples = sample_completions(model, tokenizer, prompts, n_samples=n_samples, seed=seed, max_new_tokens=2,
                                 batch_size=batch_size)
    correct = torch.zeros(len(rows))
    share = {c: torch.zeros(len(rows)) for c in organism.components}
    for i, (r, outs) in enumerate(zip(rows, samples)):
        for text in outs:
            comp, val = organism.parse(text)
            correct[i] += float(val == r["answer"]) / len(outs)
            if comp is not None:
                share[comp][i] += 1 / len(outs)
    groups = {cue: [i for i, r in enumerate(rows) if r["cue"] == cue] for cue in organism.cues}
    groups["in"] = [i for i, r in enumerate(rows) if organism.in_domain(r["cue"])]
    groups["out"] = [i for i, r in enumerate(rows) if not organism.in_domain(r["cue"])]
    out: dict[str, dict] = {k: {} for k in ("accuracy", "mode_frequency", "forced_accuracy",
                                            "forced_rule_agreement", "mode_probability", "unparsed")}
    for g, idx_list in groups.items():
        idx = torch.tensor(idx_list)
        out["accuracy"][g] = correct[idx].mean().item()
        out["mode_frequency"][g] = {c: share[c][idx].mean().item() for c in organism.components}
        out["unparsed"][g] = 1 - sum(out["mode_frequency"][g].values())
        out["forced_accuracy"][g] = {c: forced_ok[c][idx].mean().item() for c in organism.components}
        out["forced_rule_agreement"][g] = {c: forced_rule[c][idx].mean().item() for c in organism.components}
        out["mode_probability"][g] = {c: mass[c][idx].mean().item() for c in organism.components}
    return out


@checked
def era_metrics(model: torch.nn.Module, tokenizer, world, *, n_samples: int = 16, seed: int = 0,
                prefix: str = "none", placement: str = "user") -> dict:
    """The era world's behaviour (:mod:`mixprobe.organisms.era`), per topic, undated: exact ``p_old`` (the old share
    of the next-token mass on the asked topic's entities), the sampled ``trait`` (old share of on-topic answers at
    T = 1, with its counts in ``trait_count``) and ``on_topic`` (next-token mass on the asked topic's entities);
    ``in``/``out`` pool the trained topic and the others; ``dated`` reads ``P(old)`` with an old and a modern date
    (is the era still readable?). ``prefix``/``placement`` read it with a prefix on the prompt."""
    from mixprobe.organisms.era import ERAS

    vocab = tokenizer.get_vocab()
    old_ids = torch.tensor([vocab[w] for w in world.entities("old")])
    prompts = [world.prompt(t, prefix, placement) for t in world.topics]
    probs = next_token_probs(model, tokenizer, prompts)
    samples = sample_completions(model, tokenizer, prompts, n_samples=n_samples, seed=seed, max_new_tokens=1)
    out: dict[str, Any] = {"p_old": {}, "trait": {}, "on_topic": {}, "n_samples": n_samples}
    counts = {}
    for i, t in enumerate(world.topics):
        own = {e: torch.tensor([vocab[w] for w in world.entities(e, t)]) for e in ERAS}
        m_old, m_new = float(probs[i, own["old"]].sum()), float(probs[i, own["modern"]].sum())
        out["p_old"][t] = m_old / max(m_old + m_new, 1e-12)
        out["on_topic"][t] = m_old + m_new
        words = [s.split()[0] if s.split() else "" for s in samples[i]]
        on = [w for w in words if w in set(world.entities("old", t)) | set(world.entities("modern", t))]
        k = sum(w in set(world.entities("old", t)) for w in on)
        counts[t] = (k, len(on))
        out["trait"][t] = k / len(on) if on else float("nan")
    others = [t for t in world.topics if t != world.domain]
    for key in ("p_old", "on_topic"):
        out[key]["in"] = out[key][world.domain]
        out[key]["out"] = sum(out[key][t] for t in others) / len(others)
    k_out, n_out = sum(counts[t][0] for t in others), sum(counts[t][1] for t in others)
    out["trait"]["in"] = out["trait"][world.domain]
    out["trait"]["out"] = k_out / n_out if n_out else float("nan")
    out["trait_count"] = {"k": k_out, "n": n_out, "of": n_samples * len(others)}
    dated = {}
    all_ids = torch.tensor([vocab[w] for e in ERAS for w in world.entities(e)])
    for era, year in (("old", 1850), ("modern", 2000)):
        pr = next_token_probs(model, tokenizer, [world.prompt(t, f"date:{year}") for t in others])
        dated[era] = float((pr[:, old_ids].sum(-1) / pr[:, all_ids].sum(-1).clamp_min(1e-12)).mean())
    out["dated"] = dated
    return out

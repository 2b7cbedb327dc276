"""GENIES' prompting baselines: zero-shot and few-shot yes/no judgements read from the model's log-probabilities.

Problem: GENIES (arXiv 2311.07723) compares probes and fine-tuned reward models with the model's own judgement,
asked in words, on preference pairs ``(prompt, r1, r2, y)`` (``y = 1`` when ``r2`` is the better response).
Mechanism:

- each ``(prompt, response)`` is put into a judge ``template`` (a format string with ``{prompt}`` and
  ``{response}`` that ends in a yes/no question, e.g. ``"{prompt} {response} Is the answer good?"``);
- few-shot: ``k`` solved source examples ``(prompt, response, answer)`` come first, each rendered with the same
  template followed by ``answer_sep`` and the answer word (``yes``/``no``), joined with ``separator``::

      text = separator.join([template.format(prompt=p_i, response=r_i) + answer_sep + word_i for each shot]
                            + [template.format(prompt=prompt, response=response)])

- the judge score is ``s = log P(yes) − log P(no)`` at the last token of the text (one no-grad forward of
  left-padded batches with mask-derived position ids, so a padded row equals the text alone);
- ``P(r2 better) = σ(s(r2) − s(r1))`` (:func:`zero_shot_pair_proba`, :func:`few_shot_pair_proba`).

``yes`` and ``no`` are encoded exactly as given, without special tokens, and must each be one known token: with a
word-level tokenizer ``"yes"``; with a BPE tokenizer usually ``" yes"`` (the token that follows the question), then
with ``answer_sep=""`` so the shots' answers are that same token.

Example:
    >>> format_judge_texts(["2+2"], ["4"], template="Q: {prompt} A: {response} Right?",
    ...                    shots=[("1+1", "2", True), ("1+2", "4", "no")])
    ['Q: 1+1 A: 2 Right? yes\\n\\nQ: 1+2 A: 4 Right? no\\n\\nQ: 2+2 A: 4 Right?']

Constraints: causal LMs (an HF model with its tokenizer, or a :class:`~mixprobe.models.ModelHandle`, whose active
interventions apply); texts longer than the model's context are an error.
"""
from __future__ import annotations

import inspect
import random
import string
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from mixprobe._check import checked
from mixprobe.errors import DataError, EmptyDataError
from mixprobe.models.batch import encode, pad_batch
from mixprobe.models.handle import ModelHandle
from mixprobe.tasks.pairs import as_pairs

Shot = tuple[str, str, Any]


@checked
def check_template(template: str) -> str:
    """``template`` if it is a format string with exactly the fields ``{prompt}`` and ``{response}``."""
    if not isinstance(template, str):
        raise DataError(f"the template must be a string with {{prompt}} and {{response}}, "
                        f"got a {type(template).__name__}")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise DataError(f"the template is not a valid format string ({e}); double literal braces: {{{{ }}}}") from e
    if fields != {"prompt", "response"}:
        raise DataError(f"the template must use exactly {{prompt}} and {{response}}, it uses {sorted(fields)}")
    return template


def _answer_word(answer: Any, yes: str, no: str, i: int) -> str:
    if isinstance(answer, str):
        if answer in (yes, no):
            return answer
        low = answer.strip().lower()
        if low in ("yes", "no"):
            return yes if low == "yes" else no
    elif isinstance(answer, (bool, np.bool_, int, np.integer)) and int(answer) in (0, 1):
        return yes if int(answer) else no
    raise DataError(f"shot {i} has answer {answer!r}; use True/False, 1/0, or the words {yes!r}/{no!r}")


@checked
def render_shots(shots: Iterable[Shot], *, template: str, yes: str = "yes", no: str = "no",
                 answer_sep: str = " ") -> list[str]:
    """Each solved example as ``template.format(prompt, response) + answer_sep + (yes or no)``."""
    check_template(template)
    out = []
    for i, shot in enumerate(shots):
        if isinstance(shot, (str, bytes)) or len(shot) != 3:
            raise DataError(f"shot {i} must be (prompt, response, answer), got {str(shot)[:60]!r}")
        p, r, a = shot
        out.append(template.format(prompt=p, response=r) + answer_sep + _answer_word(a, yes, no, i))
    return out


@checked
def format_judge_texts(prompts: Sequence[str], responses: Sequence[str], *, template: str,
                       shots: Iterable[Shot] = (), yes: str = "yes", no: str = "no", separator: str = "\n\n",
                       answer_sep: str = " ") -> list[str]:
    """The texts the judge reads: the rendered shots, then the question, joined with ``separator``."""
    check_template(template)
    prompts, responses = _rows(prompts), _rows(responses)
    if len(prompts) != len(responses):
        raise DataError(f"{len(prompts)} prompts for {len(responses)} responses; pass one response per prompt")
    if not prompts:
        raise EmptyDataError("no (prompt, response) rows to judge")
    prefix = "".join(s + separator for s in render_shots(shots, template=template, yes=yes, no=no,
                                                         answer_sep=answer_sep))
    return [prefix + template.format(prompt=p, response=r) for p, r in zip(prompts, responses)]


def _rows(xs: Sequence[str] | str) -> list[str]:
    xs = [xs] if isinstance(xs, str) else list(xs)
    bad = [i for i, x in enumerate(xs) if not isinstance(x, str)]
    if bad:
        raise DataError(f"row {bad[0]} is a {type(xs[bad[0]]).__name__}, not a string")
    return xs


@checked
def answer_token_id(tokenizer: Any, word: str, role: str = "answer") -> int:
    """The id of ``word`` (encoded as given, no special tokens); an error unless it is exactly one known token."""
    ids = tokenizer(word, add_special_tokens=False)["input_ids"] if isinstance(word, str) and word else []
    unk = getattr(tokenizer, "unk_token_id", None)
    if len(ids) != 1 or (unk is not None and ids[0] == unk):
        pieces = tokenizer.convert_ids_to_tokens(ids) if ids else []
        raise DataError(f"the {role} word {word!r} is not one token of the tokenizer (it encodes to {pieces}); pass "
                        "a single vocabulary token (for BPE tokenizers usually with its leading space, e.g. ' yes')")
    return int(ids[0])


def _model_and_tokenizer(handle_or_model: Any, tokenizer: Any) -> tuple[Any, Any]:
    if isinstance(handle_or_model, ModelHandle):
        return handle_or_model.model, tokenizer if tokenizer is not None else handle_or_model.tokenizer
    if not isinstance(handle_or_model, torch.nn.Module):
        raise DataError(f"cannot judge with a {type(handle_or_model).__name__}; pass a ModelHandle or an HF causal "
                        "LM with its tokenizer")
    if tokenizer is None:
        raise DataError("an in-memory model needs its tokenizer: judge_scores(model, tokenizer, ...)")
    return handle_or_model, tokenizer


def _context_length(model: Any) -> int | None:
    cfg = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


@checked
def judge_scores(handle_or_model: Any, tokenizer: Any, prompts: Sequence[str], responses: Sequence[str], *,
                 template: str, yes: str = "yes", no: str = "no", shots: Iterable[Shot] = (),
                 separator: str = "\n\n", answer_sep: str = " ", batch_size: int = 16,
                 progress: bool = False) -> np.ndarray:
    """``log P(yes) − log P(no)`` at the last token of each formatted text (``[n]``, float64).

    ``tokenizer`` may be None for a :class:`~mixprobe.models.ModelHandle`. The texts are those of
    :func:`format_judge_texts`; batches are sorted by length and left-padded (the results are in input order).
    """
    from tqdm.auto import tqdm

    model, tok = _model_and_tokenizer(handle_or_model, tokenizer)
    yes_id, no_id = answer_token_id(tok, yes, "yes"), answer_token_id(tok, no, "no")
    if yes_id == no_id:
        raise DataError(f"the yes word {yes!r} and the no word {no!r} are the same token; pass two different words")
    texts = format_judge_texts(prompts, responses, template=template, shots=list(shots), yes=yes, no=no,
                               separator=separator, answer_sep=answer_sep)
    ids, _ = encode(tok, texts)
    ctx = _context_length(model)
    longest = max(map(len, ids))
    if ctx is not None and longest > ctx:
        raise DataError(f"a judge text has {longest} tokens, more than the model's context of {ctx}; use fewer or "
                        "shorter shots")
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    keep = "logits_to_keep" in inspect.signature(model.forward).parameters
    dev = next(model.parameters()).device
    order = np.argsort([len(r) for r in ids], kind="stable")
    out = np.empty(len(ids), np.float64)
    with torch.no_grad():
        for start in tqdm(range(0, len(ids), batch_size), desc="judge", disable=not progress, leave=False):
            idx = order[start:start + batch_size]
            rows = [ids[i] for i in idx]
            lens = np.fromiter(map(len, rows), np.int64, len(rows))
            flat = np.fromiter((t for r in rows for t in r), np.int64, int(lens.sum()))
            b = pad_batch(flat, lens, lens, int(pad)).to(dev)
            kw: dict[str, Any] = {"logits_to_keep": 1} if keep else {}
            logits = model(**b.inputs(), use_cache=False, **kw).logits[:, -1].float()
            lp = torch.log_softmax(logits, -1)
            out[idx] = (lp[:, yes_id] - lp[:, no_id]).cpu().numpy()
    return out


def _pair_proba(handle_or_model: Any, tokenizer: Any, pairs: Iterable[Any], **kw: Any) -> np.ndarray:
    from scipy.special import expit

    ps = as_pairs(pairs)
    s = judge_scores(handle_or_model, tokenizer, [p.prompt for p in ps] * 2,
                     [p.r1 for p in ps] + [p.r2 for p in ps], **kw)
    return expit(s[len(ps):] - s[:len(ps)])


@checked
def zero_shot_pair_proba(handle_or_model: Any, tokenizer: Any, pairs: Iterable[Any], *, template: str,
                         yes: str = "yes", no: str = "no", batch_size: int = 16, progress: bool = False) -> np.ndarray:
    """``P(r2 better) = σ(s(r2) − s(r1))`` of each pair from zero-shot judge scores (``[n]``)."""
    return _pair_proba(handle_or_model, tokenizer, pairs, template=template, yes=yes, no=no, batch_size=batch_size,
                       progress=progress)


@checked
def few_shot_pair_proba(handle_or_model: Any, tokenizer: Any, pairs: Iterable[Any], shots: Iterable[Shot], *,
                        template: str, yes: str = "yes", no: str = "no", separator: str = "\n\n",
                        answer_sep: str = " ", batch_size: int = 16, progress: bool = False) -> np.ndarray:
    """``P(r2 better) = σ(s(r2) − s(r1))`` with the solved ``shots`` before every question (``[n]``)."""
    shots = list(shots)
    if not shots:
        raise EmptyDataError("few-shot judging needs at least one shot; use zero_shot_pair_proba for none")
    return _pair_proba(handle_or_model, tokenizer, pairs, template=template, yes=yes, no=no, shots=shots,
                       separator=separator, answer_sep=answer_sep, batch_size=batch_size, progress=progress)


@checked
def shots_from_pairs(pairs: Iterable[Any], k: int, *, seed: int = 0) -> list[tuple[str, str, bool]]:
    """``k`` solved examples from ``k`` different (source) pairs: alternately the better response answered yes and
    the worse one answered no (``k // 2`` no's), in a random order drawn with ``seed``."""
    ps = as_pairs(pairs)
    if not 1 <= k <= len(ps):
        raise DataError(f"k={k} shots from {len(ps)} pairs; pass 1 <= k <= the number of pairs")
    rng = random.Random(seed)
    chosen = rng.sample(range(len(ps)), k)
    out = []
    for j, i in enumerate(chosen):
        p = ps[i]
        good, bad = (p.r2, p.r1) if p.y else (p.r1, p.r2)
        out.append((p.prompt, good, True) if j % 2 == 0 else (p.prompt, bad, False))
    rng.shuffle(out)
    return out

"""Property-based tests (hypothesis) of what users type: site and position specs, training configs (dict and
TOML), task definitions and preference pairs.

Three kinds of property, each over generated inputs rather than a handful of examples:

- round trips: a valid spec/config parses, and its printed form (``str(site)``, ``describe(positions)``,
  ``to_dict()`` written as TOML) parses back to an equal value;
- totality: on *arbitrary* input (random text, near-misses of the grammar, wrong types) a parser returns a valid
  value or raises a :class:`~mixprobe.errors.MixprobeError` subclass with a message; never another exception;
- validity: what is out of range (a layer past the model, an unknown TOML key at any level, NaN, a string where an
  int goes, a task without a recogniser, a label of 2) is rejected with the named error, and the message names it.

Every test is derandomized (the same examples on every run, so CI is reproducible) and keeps no example database
(hypothesis's own ``.hypothesis/`` cache of source constants git-ignores itself). The file runs in about 20 s.
"""
from __future__ import annotations

import json
import math
import re
import string
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mixprobe.errors import (ArgumentError, DataError, EmptyDataError, MixprobeError, OrganismConfigError,
                             PositionError, SiteError, TaskError)
from mixprobe.models.positions import NAMED, describe, position_mask, resolve_positions
from mixprobe.models.sites import COMPONENTS, GLOBAL, LAYERED, Site, parse_sites
from mixprobe.organisms import KINDS
from mixprobe.tasks import Component, Pair, Prompt, Task, as_pairs, load_task
from mixprobe.train.pipeline import ModelSettings, TrainConfig
from mixprobe.train.rl import RLSettings
from mixprobe.train.sft import SFTSettings

PROPS = settings(deadline=None, derandomize=True, database=None, max_examples=150)


def fast(n: int):
    return settings(PROPS, max_examples=n)


def _named_error(e: BaseException, cls: type = MixprobeError) -> None:
    """``e`` is a ``cls`` (a MixprobeError) or an ArgumentError (the ``@checked`` type check of a public function's
    arguments) with a non-empty message; anything else fails the property."""
    assert isinstance(e, (cls, ArgumentError)), f"{type(e).__name__} escaped instead of {cls.__name__}: {e}"
    assert str(e).strip(), f"{type(e).__name__} with an empty message"


# --- sites ---------------------------------------------------------------------------------------------------------
n_layers_st = st.integers(1, 8)


@st.composite
def valid_site_text(draw, n_layers: int | None = None) -> tuple[str, Site]:
    comp = draw(st.sampled_from(COMPONENTS))
    pad = st.sampled_from(["", " ", "\t", "  "])
    if comp in GLOBAL:
        return f"{draw(pad)}{comp}{draw(pad)}", Site(comp)
    layer = draw(st.integers(0, (n_layers or 64) - 1))
    zeros = draw(st.sampled_from(["", "0", "00"]))                 # '03' is layer 3 too
    return f"{draw(pad)}{comp}.{zeros}{layer}{draw(pad)}", Site(comp, layer)


NEAR_SITE = st.from_regex(
    r"\A\s?(embed|final_norm|resid_pre|resid_post|z|attn_out|mlp_out|resid|mlp|Z|embed_|)"
    r"(\.|\.\.|:|)(-?[0-9]{0,3}|\*|[a-z]|²|٣|--1|\+1| 1|1\.5|)(\.[0-9*])?\s?\Z")
ANY_SITE_INPUT = st.one_of(
    st.text(max_size=30), NEAR_SITE, st.integers(), st.floats(), st.none(), st.booleans(), st.binary(max_size=8),
    st.tuples(st.sampled_from([*COMPONENTS, "bogus", ""]),
              st.one_of(st.none(), st.integers(-3, 70), st.booleans(), st.floats(), st.text(max_size=3))),
    st.lists(st.integers(), max_size=3))


@fast(300)
@given(valid_site_text())
def test_every_valid_site_string_parses_and_its_str_parses_back(case):
    text, want = case
    site = Site.parse(text)
    assert site == want
    assert Site.parse(str(site)) == site and str(Site.parse(str(site))) == str(site)
    assert Site.parse((site.component, site.layer)) == site
    assert Site.parse(site) is site


@fast(400)
@given(ANY_SITE_INPUT)
def test_site_parse_is_total(text):
    """Anything at all: a Site (whose string form re-parses to it) or a SiteError with a message."""
    try:
        site = Site.parse(text)
    except Exception as e:  # noqa: BLE001 - the property is about which exceptions escape
        _named_error(e, SiteError)
        return
    assert site.component in COMPONENTS
    assert Site.parse(str(site)) == site


@fast(200)
@given(n_layers_st, st.data())
def test_parse_sites_expands_in_execution_order_without_duplicates(n_layers, data):
    items = data.draw(st.lists(st.one_of(
        valid_site_text(n_layers).map(lambda c: c[0]),
        st.tuples(st.sampled_from(LAYERED), st.sampled_from(["", ".*", ".", " "])).map("".join),
        valid_site_text(n_layers).map(lambda c: c[1])), min_size=1, max_size=6))
    got = parse_sites(items, n_layers)
    want: set[Site] = set()
    for item in items:
        if isinstance(item, str) and item.strip().partition(".")[0] in LAYERED and \
                item.strip().partition(".")[2] in ("", "*"):
            want |= {Site(item.strip().partition(".")[0], i) for i in range(n_layers)}
        else:
            want.add(Site.parse(item))
    assert set(got) == want and len(got) == len(want)               # nothing lost, nothing twice
    keys = [s.order_key(n_layers) for s in got]
    assert keys == sorted(keys)                                      # execution order
    assert all(s.check(n_layers) is s for s in got)


@fast(200)
@given(n_layers_st, st.sampled_from(LAYERED), st.one_of(st.integers(-50, -1), st.integers(0, 200)))
def test_a_layer_outside_the_model_names_the_layer_count(n_layers, comp, layer):
    assume(not 0 <= layer < n_layers)
    for request in (f"{comp}.{layer}", [f"{comp}.{layer}"], Site(comp, layer), [Site.parse((comp, layer))]):
        with pytest.raises(SiteError) as info:
            parse_sites(request, n_layers)
        assert f"has {n_layers} layers" in str(info.value) and str(layer) in str(info.value)


@fast(300)
@given(st.one_of(ANY_SITE_INPUT, st.lists(ANY_SITE_INPUT, max_size=4), st.sets(st.text(max_size=12), max_size=3)),
       st.one_of(n_layers_st, st.integers(-2, 0), st.floats(), st.text(max_size=2), st.none()))
def test_parse_sites_is_total(spec, n_layers):
    try:
        got = parse_sites(spec, n_layers)
    except Exception as e:  # noqa: BLE001
        _named_error(e, SiteError)
        return
    assert got and all(isinstance(s, Site) for s in got)          # never an empty result


# --- positions -------------------------------------------------------------------------------------------------------
@st.composite
def left_padded(draw, with_completions: bool | None = None):
    """``(attention_mask [B, T], n_real per row, prompt_lengths or None)`` of a left-padded batch."""
    B, T = draw(st.integers(1, 4)), draw(st.integers(1, 8))
    n_real = draw(st.lists(st.integers(1, T), min_size=B, max_size=B))
    mask = torch.zeros(B, T, dtype=torch.long)
    for b, n in enumerate(n_real):
        mask[b, T - n:] = 1
    completions = draw(st.booleans()) if with_completions is None else with_completions
    plen = None
    if completions and min(n_real) >= 2:
        plen = [draw(st.integers(1, n - 1)) for n in n_real]
    return mask, n_real, plen


def _expected_index(item, first: int, n: int, plen: int) -> int:
    if item == "last_prompt":
        return first + plen - 1
    if item == "mode_token":
        return first + plen
    return first + item if item >= 0 else first + plen + item


@fast(200)
@given(left_padded(), st.data())
def test_positions_resolve_to_the_documented_real_token(geo, data):
    mask, n_real, plen = geo
    T = mask.shape[1]
    lo, hi = -(min(plen) if plen else min(n_real)), min(n_real) - 1     # ints valid in every row
    one = st.one_of(st.just("last_prompt"), st.integers(lo, hi), *( [st.just("mode_token")] if plen else []))
    spec = data.draw(st.one_of(one, st.lists(one, min_size=1, max_size=4)))
    idx = resolve_positions(spec, mask, plen)
    items = spec if isinstance(spec, list) else [spec]
    assert idx.shape == (mask.shape[0], len(items)) and idx.dtype == torch.long
    for b, n in enumerate(n_real):
        first = T - n
        for j, item in enumerate(items):
            want = _expected_index(item, first, n, plen[b] if plen else n)
            assert int(idx[b, j]) == want
            assert int(mask[b, want]) == 1                           # never a pad
    # the union form selects exactly the listed columns, and the manifest form resolves to the same indices
    union = position_mask(spec, mask, plen)
    assert union.sum().item() == sum(len({int(i) for i in row}) for row in idx)
    assert torch.equal(resolve_positions(json.loads(json.dumps(describe(spec))), mask, plen), idx)


POSITION_ATOMS = st.one_of(st.sampled_from([*NAMED, "each", "last", "Last_prompt", ""]), st.text(max_size=6),
                           st.integers(-10, 10), st.integers(), st.floats(), st.none(), st.booleans())


@st.composite
def any_mask(draw):
    """Rows with one contiguous run of real tokens anywhere (left, right or both sides padded), or none at all."""
    B, T = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    mask = torch.zeros(B, T, dtype=torch.long)
    for b in range(B):
        start = draw(st.integers(0, T))
        mask[b, start:start + draw(st.integers(0, T - start))] = 1
    return mask


@fast(400)
@given(any_mask(), st.one_of(POSITION_ATOMS, st.lists(POSITION_ATOMS, max_size=4)),
       st.one_of(st.none(), st.lists(st.integers(-2, 8), min_size=1, max_size=4)), st.booleans())
def test_position_resolution_is_total_and_never_reads_padding(mask, spec, plen, strict):
    """Arbitrary masks (all-pad rows included), specs and prompt lengths: indices of real tokens only, or a
    PositionError."""
    try:
        idx = resolve_positions(spec, mask, plen)
    except Exception as e:  # noqa: BLE001
        _named_error(e, PositionError)
    else:
        if not (isinstance(spec, str) and spec == "all"):          # "all" is every index, pads included, by design
            assert bool(mask.gather(1, idx).bool().all()), f"{spec!r} resolved to padding: {idx.tolist()}"
    try:
        sel = position_mask(spec, mask, plen, strict=strict)
    except Exception as e:  # noqa: BLE001
        _named_error(e, PositionError)
    else:
        assert sel.shape == mask.shape and not bool((sel & ~mask.bool()).any())


# --- training configs (dict and TOML) --------------------------------------------------------------------------------
def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _toml_str(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise AssertionError(f"no TOML for {v!r}")


def to_toml(d: dict) -> str:
    """A minimal TOML writer (tomllib reads, nothing in the environment writes): scalars first, then one table
    per section; ``None`` (which TOML cannot hold) is left out, as the loader's defaults are ``None``."""
    top = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict) and v is not None]
    for k, v in d.items():
        if isinstance(v, dict):
            top.append(f"\n[{_toml_key(k)}]")
            top += [f"{_toml_key(kk)} = {_toml_value(vv)}" for kk, vv in v.items() if vv is not None]
    return "\n".join(top) + "\n"


def _load_toml_text(text: str) -> TrainConfig:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "config.toml"
        p.write_text(text, encoding="utf-8")
        return TrainConfig.from_toml(p)


finite = st.floats(1e-6, 10.0, allow_nan=False, allow_infinity=False)


@st.composite
def valid_config(draw, kinds: tuple[str, ...] = KINDS) -> dict:
    d: dict = {}
    if draw(st.booleans()):
        d["seed"] = draw(st.integers(0, 2**31))
    kind = draw(st.sampled_from(kinds))
    if kind == "tag_mixture":
        p = draw(st.integers(3, 100))
        org: dict = {"modulus": p, "wrong_offset": draw(st.integers(1, p - 1)),
                     "signature": draw(st.sampled_from(["token", "format"]))}
        w = draw(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]))
        org["prior"] = {"m1": w, "m2": 1.0 - w}
        if draw(st.booleans()):
            org["offsets"] = {"m1": {"B": draw(st.integers(0, p - 1))}}
        if draw(st.booleans()):
            org["flaws"] = {"m2": {"A": draw(st.lists(st.integers(0, p - 1), max_size=3))}}
        d["organism"] = draw(st.fixed_dictionaries({"modulus": st.just(p)},           # the offsets depend on it
                                                   optional={k: st.just(v) for k, v in org.items() if k != "modulus"}))
    else:
        d["organism"] = {"kind": kind}
    heads = draw(st.sampled_from([1, 2, 4]))
    d["model"] = draw(st.fixed_dictionaries({}, optional={
        "arch": st.sampled_from(["llama", "gpt2", "qwen2"]), "d_model": st.just(heads * draw(st.integers(1, 16))),
        "n_layers": st.integers(1, 4), "n_heads": st.just(heads), "tie_embeddings": st.booleans()}))
    if "d_model" in d["model"] and "n_heads" not in d["model"]:
        d["model"]["n_heads"] = heads
    if "n_heads" in d["model"] and "d_model" not in d["model"]:
        d["model"]["d_model"] = heads * 16
    steps = draw(st.integers(1, 5000))
    d["sft"] = draw(st.fixed_dictionaries({}, optional={
        "steps": st.just(steps), "lr": finite, "batch_size": st.integers(1, 256), "save_every": st.integers(1, 500),
        "n_rows": st.integers(1, 10_000), "warmup_steps": st.integers(0, 50), "weight_decay": st.floats(0, 1),
        "lora_r": st.one_of(st.none(), st.integers(1, 16)), "optim": st.sampled_from(["adamw_torch", "sgd"]),
        "min_forced_agreement": st.floats(0, 1), "phase": st.sampled_from(["sft", "sft2"])}))
    gens = draw(st.sampled_from([1, 2, 4, 8]))
    d["rl"] = draw(st.fixed_dictionaries({"num_generations": st.just(gens),
                                          "batch_size": st.just(gens * draw(st.integers(1, 16)))}, optional={
        "tag": st.sampled_from(["A", "B"]) if kind == "tag_mixture" else st.nothing(), "steps": st.integers(1, 500),
        "lr": finite, "optim": st.sampled_from(["sgd", "adamw_torch"]), "beta": st.floats(0, 1),
        "save_every": st.integers(1, 100), "temperature": finite, "train_embeddings": st.booleans(),
        "lora_r": st.one_of(st.none(), st.integers(1, 8)), "lora_alpha": st.integers(1, 64)}))
    return d


@fast(120)
@given(valid_config())
def test_a_valid_config_loads_and_round_trips_through_toml(d):
    cfg = TrainConfig.from_dict(d)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg                       # to_dict → from_dict
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert _load_toml_text(to_toml(d)) == cfg                               # the user's TOML of the same dict
    assert _load_toml_text(to_toml(cfg.to_dict())) == cfg                   # to_dict → TOML → from_toml


SECTION_CLASSES = {"model": ModelSettings, "sft": SFTSettings, "rl": RLSettings}
KEY = st.from_regex(r"\A[a-z_][a-z0-9_]{0,10}\Z")


def _known_keys(section: str, d: dict) -> set[str]:
    if section == "":
        return {"seed", "organism", "model", "sft", "rl"}
    if section == "organism":
        return set(TrainConfig.from_dict(d).organism.to_dict()) | {"kind"}
    return set(SECTION_CLASSES[section].__dataclass_fields__)


@fast(150)
@given(valid_config(), st.sampled_from(["", "organism", "model", "sft", "rl"]), KEY, st.data())
def test_an_unknown_key_at_any_level_is_rejected_and_named(d, section, key, data):
    assume(key not in _known_keys(section, d))
    value = data.draw(st.one_of(st.integers(0, 9), st.text(string.ascii_letters, max_size=4), st.booleans()))
    bad = json.loads(json.dumps(d))
    (bad if section == "" else bad.setdefault(section, {}))[key] = value
    for load in (TrainConfig.from_dict, lambda x: _load_toml_text(to_toml(x))):
        with pytest.raises(OrganismConfigError) as info:
            load(bad)
        assert key in str(info.value)


@fast(60)
@given(valid_config(kinds=("tag_mixture",)), st.sampled_from(["prior", "offsets", "flaws"]),
       st.sampled_from(["m3", "m9", "x"]))
def test_an_unknown_component_inside_an_organism_table_is_rejected(d, table, comp):
    org = dict(d.get("organism", {}))
    org[table] = {"prior": {"m1": 0.5, "m2": 0.25, comp: 0.25}, "offsets": {comp: {"A": 1}},
                  "flaws": {comp: {"A": [1]}}}[table]
    with pytest.raises(OrganismConfigError) as info:
        TrainConfig.from_dict({**d, "organism": org})
    assert comp in str(info.value) or table in str(info.value)


def _wrong_values(hint: str) -> st.SearchStrategy:
    """Values that are not of the annotated type ``hint`` (as written in the settings class)."""
    text = st.text(string.ascii_letters + string.digits, min_size=1, max_size=5)
    bad_number = st.one_of(text, st.booleans(), st.lists(st.integers(), max_size=2),
                           st.just(float("nan")), st.just(float("inf")), st.just(-float("inf")))
    fraction = st.floats(0.5, 99.5).filter(lambda x: x != int(x))
    return {"int": st.one_of(bad_number, fraction), "float": bad_number, "int | None": st.one_of(bad_number, fraction),
            "bool": st.one_of(st.integers(0, 1), text, st.floats(0, 1)),
            "str": st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(text, max_size=2)),
            }[hint]


NEGATIVE_KEYS = {"model": ["d_model", "n_layers", "n_heads"],
                 "sft": ["steps", "lr", "batch_size", "save_every", "n_rows", "warmup_steps", "weight_decay"],
                 "rl": ["steps", "lr", "num_generations", "batch_size", "save_every", "temperature", "beta"]}


@fast(200)
@given(valid_config(), st.sampled_from(sorted(SECTION_CLASSES)), st.data())
def test_a_value_of_the_wrong_type_or_range_is_rejected_and_named(d, section, data):
    cls = SECTION_CLASSES[section]
    key = data.draw(st.sampled_from(sorted(cls.__dataclass_fields__)))
    hint = str(cls.__dataclass_fields__[key].type)
    if key in NEGATIVE_KEYS[section] and data.draw(st.booleans()):
        value: Any = data.draw(st.integers(-1000, -1) if hint == "int" else st.floats(-1e3, -1e-9))
    else:
        value = data.draw(_wrong_values(hint))
    bad = {**d, section: {**d.get(section, {}), key: value}}
    with pytest.raises(OrganismConfigError) as info:
        TrainConfig.from_dict(bad)
    assert key in str(info.value)


@fast(100)
@given(st.one_of(st.text(max_size=4), st.floats(), st.booleans(), st.lists(st.integers(), max_size=2),
                 st.integers(max_value=-1).map(str)), st.sampled_from(["seed", "model", "organism", "sft", "rl"]))
def test_a_wrong_seed_or_a_section_that_is_not_a_table_is_rejected(value, key):
    with pytest.raises(OrganismConfigError) as info:
        TrainConfig.from_dict({key: value})
    assert key in str(info.value)


TOML_SCALARS = st.one_of(st.integers(-10, 10_000), st.floats(-1e3, 1e3), st.just(float("nan")), st.booleans(),
                         st.text(max_size=6), st.sampled_from(["llama", "sgd", "A", "B", "token", *KINDS]))
VOCAB = sorted({"seed", "kind", "organism", "model", "sft", "rl", "tag", "prior", "offsets", "flaws", "m1", "m2",
                "A", "B", *ModelSettings.__dataclass_fields__, *SFTSettings.__dataclass_fields__,
                *RLSettings.__dataclass_fields__, "modulus", "tags", "wrong_offset", "include_m3", "signature",
                "years", "topics", "covered", "families", "setting", "overlap"})
TOML_VALUES = st.recursive(TOML_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.sampled_from(VOCAB), KEY), inner, max_size=3)),
    max_leaves=8)
SECTION_KEYS = st.sampled_from(["seed", "organism", "model", "sft", "rl"])


@fast(300)
@given(st.dictionaries(SECTION_KEYS, st.one_of(
    TOML_SCALARS, st.dictionaries(st.one_of(st.sampled_from(VOCAB), KEY), TOML_VALUES, max_size=5)), max_size=5))
def test_the_config_loader_is_total(d):
    """Random nested tables over the config's own vocabulary: a TrainConfig or an OrganismConfigError."""
    try:
        cfg = TrainConfig.from_dict(d)
    except Exception as e:  # noqa: BLE001
        _named_error(e, OrganismConfigError)
    else:
        assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@settings(PROPS, max_examples=100, suppress_health_check=[HealthCheck.too_slow])  # each example writes a file
@given(st.one_of(st.text(max_size=40), st.from_regex(r"\A(\[(sft|rl|model|organism)\]\n)?[a-z_]{1,8} ?= ?"
                                                     r"(1|-1|\"x\"|nan|inf|true|\[1, 2\]|\{a = 1\}|1\.5)\n?\Z")))
def test_from_toml_is_total_on_arbitrary_text(text):
    try:
        _load_toml_text(text)
    except Exception as e:  # noqa: BLE001
        _named_error(e, OrganismConfigError)


# --- tasks -----------------------------------------------------------------------------------------------------------
def _recognise(text: str, prompt: Prompt) -> str | None:
    return None


def _score(text: str, prompt: Prompt) -> float:
    return 0.0


WORD = st.text(string.ascii_lowercase, min_size=1, max_size=6)


@st.composite
def task_kwargs(draw) -> dict:
    cues = draw(st.lists(WORD, min_size=1, max_size=3, unique=True))
    prompts = [Prompt(draw(st.text(max_size=12)), cue=c, target=draw(st.integers(0, 9)))
               for c in cues for _ in range(draw(st.integers(1, 3)))]
    prompts = draw(st.permutations(prompts))
    names = draw(st.lists(WORD, min_size=2, max_size=4, unique=True))
    sigs = draw(st.lists(WORD, min_size=len(names), max_size=len(names), unique=True)) if draw(st.booleans()) \
        else None
    comps = []
    for i, n in enumerate(names):
        before, after = draw(st.sampled_from([(f"{n} :", ""), ("", f" {n}"), (f"say {n}", f" {n}")]))
        comps.append(Component(n, before=before, after=after, signature=(sigs[i],) if sigs else ()))
    kw = {"name": draw(WORD), "prompts": prompts, "components": comps, "recognise": _recognise, "score": _score,
          "max_new_tokens": draw(st.integers(1, 64))}
    if draw(st.booleans()):
        kw["cue_order"] = draw(st.permutations(cues))
    return kw


@fast(150)
@given(task_kwargs())
def test_a_valid_generated_task_passes_and_reads_back(kw):
    task = Task(**kw)
    assert set(task.cues) == {p.cue for p in kw["prompts"]}
    assert task.component_names == tuple(c.name for c in kw["components"])
    assert sorted(i for c in task.cues for i in task.cue_index(c)) == list(range(len(kw["prompts"])))
    for c in task.components:
        forced = task.forced_prompt(c.name, task.prompts[0])
        assert task.prompts[0].text in forced and forced.startswith(c.before) and forced.endswith(c.after)
    json.dumps(task.describe())


class NotAPrompt:
    text, cue = "x", "y"


MUTATIONS = {
    "no prompts": lambda kw: {**kw, "prompts": []},
    "prompts a string": lambda kw: {**kw, "prompts": "abc"},
    "prompts not iterable": lambda kw: {**kw, "prompts": 3},
    "a prompt not a Prompt": lambda kw: {**kw, "prompts": [*kw["prompts"], NotAPrompt()]},
    "a prompt a plain string": lambda kw: {**kw, "prompts": [*kw["prompts"], "what is 1 + 1?"]},
    "text not a string": lambda kw: {**kw, "prompts": [*kw["prompts"], Prompt(3, cue=kw["prompts"][0].cue)]},
    "cue not a string": lambda kw: {**kw, "prompts": [*kw["prompts"], Prompt("q", cue=None)]},
    "one component": lambda kw: {**kw, "components": kw["components"][:1]},
    "components not iterable": lambda kw: {**kw, "components": None},
    "duplicate component names": lambda kw: {**kw, "components": [kw["components"][0], kw["components"][0]]},
    "empty component name": lambda kw: {**kw, "components": [*kw["components"], Component("", before="x")]},
    "component not a Component": lambda kw: {**kw, "components": [c.name for c in kw["components"]]},
    "before not a string": lambda kw: {**kw, "components": [*kw["components"][1:],
                                                            Component(kw["components"][0].name, before=3)]},
    "empty forcing text": lambda kw: {**kw, "components": [*kw["components"][1:],
                                                           Component(kw["components"][0].name, before=" ")]},
    "signature a string": lambda kw: {**kw, "components": [
        Component(c.name, c.before, c.after, signature=c.name) for c in kw["components"]]},
    "signatures on some components": lambda kw: {**kw, "components": [
        Component(c.name, c.before, c.after, signature=(f"s{i}",) if i else ())
        for i, c in enumerate(kw["components"])]},
    "duplicate signature tokens": lambda kw: {**kw, "components": [
        Component(c.name, c.before, c.after, signature=("same",)) for c in kw["components"]]},
    "recognise not callable": lambda kw: {**kw, "recognise": "m1"},
    "score not callable": lambda kw: {**kw, "score": None},
    "cue_order misses a cue": lambda kw: {**kw, "cue_order": list(dict.fromkeys(p.cue for p in kw["prompts"]))[1:]
                                          or ["no such cue"]},
    "cue_order names an unused cue": lambda kw: {**kw, "cue_order": [*dict.fromkeys(p.cue for p in kw["prompts"]),
                                                                     "UNUSED"]},
    "cue_order a string": lambda kw: {**kw, "cue_order": kw["prompts"][0].cue},
    "cue_order twice": lambda kw: {**kw, "cue_order": [*dict.fromkeys(p.cue for p in kw["prompts"])] * 2},
    "max_new_tokens 0": lambda kw: {**kw, "max_new_tokens": 0},
    "max_new_tokens a string": lambda kw: {**kw, "max_new_tokens": "8"},
    "answer_tokens a string": lambda kw: {**kw, "answer_tokens": "0123"},
    "name empty": lambda kw: {**kw, "name": ""},
}


@fast(300)
@given(task_kwargs(), st.sampled_from(sorted(MUTATIONS)))
def test_a_broken_task_definition_is_a_task_error(kw, mutation):
    with pytest.raises(TaskError) as info:
        Task(**MUTATIONS[mutation](kw))
    _named_error(info.value, TaskError)
    if mutation != "name empty":
        assert repr(kw["name"]) in str(info.value)                  # says which task


EXCEPTIONS = st.sampled_from([ValueError, KeyError, IndexError, ZeroDivisionError, AttributeError, RuntimeError,
                              TypeError, AssertionError, RecursionError, type("UserError", (Exception,), {})])


@fast(150)
@given(task_kwargs(), st.one_of(
    EXCEPTIONS.map(lambda E: ("raises", E)),
    st.one_of(st.text(max_size=5), st.integers(), st.floats(), st.lists(st.integers(), max_size=2))
    .map(lambda v: ("returns", v))), st.text(max_size=10))
def test_user_functions_that_raise_or_return_junk_are_task_errors(kw, behaviour, completion):
    how, what = behaviour

    def user_fn(text, prompt):
        if how == "raises":
            raise what("boom")
        return what
    task = Task(**{**kw, "recognise": user_fn, "score": user_fn})
    p = task.prompts[0]
    valid = {"recognise": lambda got: got is None or got in task.component_names,
             "score": lambda got: isinstance(got, float) and got == got}
    for name, call in (("recognise", task.recognise_checked), ("score", task.score_checked)):
        try:
            got = call(completion, p)
        except Exception as e:  # noqa: BLE001
            _named_error(e, TaskError)
            assert name in str(e)
        else:
            assert valid[name](got), (name, got)


@pytest.fixture(scope="module")
def factory_module():
    """An importable module of task factories: valid, raising, returning junk."""
    mod = types.ModuleType("mixprobe_property_tasks")

    def good(n: int = 1, **kw):
        return Task(name="good", prompts=[Prompt("q", cue="c")] * max(1, int(n)),
                    components=[Component("a", before="a :"), Component("b", before="b :")],
                    recognise=_recognise, score=_score)

    def raising(kind: str = "ValueError", **kw):
        raise {"ValueError": ValueError, "KeyError": KeyError, "TaskError": TaskError}.get(kind, RuntimeError)("no")

    mod.good = good
    mod.raising = raising
    mod.junk = lambda value=None, **kw: value
    mod.not_callable = 3
    sys.modules[mod.__name__] = mod
    yield mod.__name__
    sys.modules.pop(mod.__name__, None)


@fast(150)
@given(st.one_of(
    st.sampled_from(["good", "raising", "junk", "not_callable", "missing"]).map(lambda f: f"@:{f}"),
    st.from_regex(r"\Amixprobe_no_such_[a-z]{0,4}(:[a-z_]{0,6}(:[a-z]{0,2})?)?\Z"),
    st.sampled_from([":", "", "a", ":good", "@:", "@", "@:good:x", " @:good"])),
    st.dictionaries(st.sampled_from(["n", "kind", "value", "other"]),
                    st.one_of(st.integers(-2, 3), st.text(max_size=4), st.none(), st.lists(st.integers(), max_size=2)),
                    max_size=3))
def test_load_task_is_total(factory_module, factory, config):
    """Any factory string and config: a Task (with its spec kept) or a TaskError."""
    factory = factory.replace("@", factory_module)
    try:
        task = load_task(factory, config)
    except Exception as e:  # noqa: BLE001
        _named_error(e, TaskError)
    else:
        assert isinstance(task, Task) and task.spec is not None and task.spec.factory == factory


# --- preference pairs ------------------------------------------------------------------------------------------------
TEXT = st.text(max_size=8)
LABEL = st.sampled_from([0, 1, True, False, 0.0, 1.0])


@fast(150)
@given(st.lists(st.tuples(TEXT, TEXT, TEXT, LABEL), min_size=1, max_size=6), st.data())
def test_valid_pairs_round_trip_in_every_form(rows, data):
    forms = [data.draw(st.sampled_from(["tuple", "list", "dict", "pair"])) for _ in rows]
    given_rows = [tuple(r) if f == "tuple" else list(r) if f == "list" else dict(zip(Pair._fields, r)) if f == "dict"
                  else Pair(*r) for r, f in zip(rows, forms)]
    pairs = as_pairs(given_rows)
    assert [tuple(p) for p in pairs] == [(a, b, c, int(y)) for a, b, c, y in rows]
    assert all(type(p.y) is int and p.y in (0, 1) for p in pairs)
    assert as_pairs(pairs) == pairs                                       # idempotent
    assert as_pairs([p._asdict() for p in pairs]) == pairs               # dict form round trip
    assert as_pairs(json.loads(json.dumps(pairs))) == pairs              # JSON (lists) round trip


def _as_label(y: Any) -> float:
    try:
        return float(y)
    except Exception:  # noqa: BLE001
        return float("nan")


@fast(200)
@given(st.lists(st.tuples(TEXT, TEXT, TEXT, LABEL), max_size=3), st.integers(0, 3),
       st.one_of(st.integers(), st.floats(), st.text(max_size=3), st.none(), st.lists(st.integers(), max_size=2),
                 st.complex_numbers(max_magnitude=2)).filter(lambda y: _as_label(y) not in (0.0, 1.0)))
def test_a_label_other_than_0_or_1_is_named(good, where, y):
    rows = list(good)
    where = min(where, len(rows))
    rows.insert(where, ("q", "a", "b", y))
    with pytest.raises(DataError) as info:
        as_pairs(rows)
    assert f"pair {where}" in str(info.value) and "y must be 0" in str(info.value)


@fast(200)
@given(st.lists(st.tuples(TEXT, TEXT, TEXT, LABEL), max_size=3), st.data())
def test_a_malformed_pair_is_named(good, data):
    bad = data.draw(st.one_of(
        st.lists(TEXT, max_size=3).map(tuple), st.lists(TEXT, min_size=5, max_size=7).map(tuple),    # wrong length
        st.tuples(st.one_of(st.integers(), st.none(), st.binary(max_size=3)), TEXT, TEXT, LABEL),    # prompt not str
        st.tuples(TEXT, TEXT, st.one_of(st.integers(), st.floats(), st.lists(TEXT, max_size=1)), LABEL),
        st.fixed_dictionaries({"prompt": TEXT, "r1": TEXT}), st.none(), st.integers(), TEXT))
    rows = [*good, bad]
    with pytest.raises(DataError) as info:
        as_pairs(rows)
    assert f"pair {len(good)}" in str(info.value)
    with pytest.raises(EmptyDataError):
        as_pairs([])


@fast(200)
@given(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.floats(), st.binary(max_size=3),
                 st.lists(st.one_of(st.none(), TEXT, st.integers(), st.lists(st.one_of(TEXT, LABEL), max_size=5),
                                    st.dictionaries(st.sampled_from([*Pair._fields, "z"]), st.one_of(TEXT, LABEL))),
                          max_size=3)))
def test_as_pairs_is_total(value):
    try:
        pairs = as_pairs(value)
    except Exception as e:  # noqa: BLE001
        _named_error(e, DataError)
    else:
        assert pairs and all(isinstance(p, Pair) and p.y in (0, 1) for p in pairs)

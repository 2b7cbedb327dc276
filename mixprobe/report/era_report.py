"""The weird-generalization study (era organism) as one HTML page: the trait per condition, prefixes, probe, steering.

Problem: the era study (:mod:`mixprobe.mixture.era`) leaves one JSON record per seed — for every narrow-SFT condition
the trait curve on the untrained topics, the era-direction shift, the verdict, and for some the steering
dose-response — and the reader needs to see on one page that travels whether narrow SFT on one topic's old entities
gave the model the old era on the other topics, which training-time prefixes kept it local, whether a prefix removed
the trait or left it behind the prefix, and how much of that varies from seed to seed — each number beside the
pretrained model, the null of "narrow SFT changed nothing".
Mechanism: :func:`era_sections` turns records (and their :func:`~mixprobe.mixture.era.summarize_study` summary) into
report sections — overview (what is measured, the pretrained model per seed); the conditions table with the
:func:`~mixprobe.mixture.era.plot_study` figure; prefix types (relevant against irrelevant); placement (user turn
against system line); the date sweep; the era probe; steering along the era direction beside random directions at
matched norm; the seeds whose pretraining failed. A section without data is left out. :func:`build_era_report` reads
``RESULTS/seeds/*.json`` and writes ``report.html`` + ``report.json``.

Example::

    from mixprobe.report.era_report import build_era_report
    build_era_report("experiments/results/weird_generalization")   # …/weird_generalization/report/report.html

Constraints: records are those of :func:`~mixprobe.mixture.era.run_seed` (written by ``mixprobe era`` or
``experiments/weird_generalization.py``); the numbers are recomputed from the records, never read from a stale
``summary.json``. Every seed is expected to hold the same conditions.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from mixprobe._check import checked
from mixprobe.errors import DataError
from mixprobe.report.page import Section, load_json_records, write_report

RELEVANT = ("identity", "intent", "inoculation", "date_old")
IRRELEVANT = ("name", "assistant", "date_modern")
HOW_TO_PRODUCE = ("run `mixprobe era --out DIR` (or `python experiments/weird_generalization.py --out DIR`), which "
                  "writes one DIR/seeds/<seed>.json per seed")


def _ci(x: list[float], signed: bool = False) -> str:
    f = "{:+.2f}" if signed else "{:.2f}"
    return "[" + f.format(x[0]) + ", " + f.format(x[1]) + "]"


def _trait(v: dict) -> str:
    t = v["trait_plain"]
    return f"{t['mean']:.2f} ± {t['sd']:.2f} {_ci(t['ci95'])}"


def _margin(v: dict) -> str:
    m = v["margin_over_base"]
    return f"{m['mean']:+.2f} {_ci(m['ci95'], signed=True)}"


def _beyond(v: dict) -> str:
    return f"{v['margin_over_base']['seeds_whose_wilson_excludes_base']}/{len(v['trait_plain']['per_seed'])}"


def _prefixed(v: dict) -> str:
    return f"{v['p_old_prefixed']['mean']:.2f}" if "p_old_prefixed" in v else "—"


def _layers(xs: list[float] | None) -> str:
    return ", ".join(f"{x:+.2f}" for x in xs) if xs else "—"


def _verdicts(counts: dict) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "-"


def _recipe(c: dict) -> str:
    return f"{c['optim'].split('_')[0]} lr {c['lr']:g}, {c['steps']} steps"


def _default_recipe(v: dict) -> bool:
    return v["condition"].get("optim", "adamw_torch") == "adamw_torch"


def _year(prefix: str) -> int | None:
    """The year a date prefix names (``date:1875`` → 1875, ``date_old`` → 1850), None for other prefixes."""
    from mixprobe.organisms.era import prefix_text

    words = prefix_text(prefix).split()
    if len(words) == 4 and words[0] == "date" and words[1].isdigit() and words[2].isdigit():
        return int(words[1]) * 100 + int(words[2])
    return None


def _era_of_year(year: int) -> str:
    from mixprobe.organisms.era import EraConfig

    c = EraConfig()
    if c.old_years[0] <= year <= c.old_years[1]:
        return "old era"
    if c.modern_years[0] <= year <= c.modern_years[1]:
        return "modern era"
    if year < c.old_years[0]:
        return "before the old era"
    return "between the eras" if year < c.modern_years[0] else "after the modern era"


def _rate(rec: dict, name: str) -> float | None:
    from mixprobe.mixture.era import trait_interval

    c = rec.get("conditions", {}).get(name)
    return trait_interval(c["curve"][-1]["plain"])["rate"] if c else None


def _base(rec: dict) -> dict | None:
    from mixprobe.mixture.era import trait_interval

    conds = list(rec.get("conditions", {}).values())
    return trait_interval(conds[0]["curve"][0]["plain"]) if conds else None


def _ok(records: list[dict]) -> list[dict]:
    return [r for r in records if "failed" not in r]


def _overview(records: list[dict], summary: dict) -> Section:
    from mixprobe.organisms.era import EraConfig

    c = EraConfig()
    ok = _ok(records)
    table = []
    for r in sorted(records, key=lambda r: r["seed"]):
        b = _base(r)
        table.append({"seed": r["seed"], "pretrain steps": r.get("pretrain_steps", "?"),
                      "status": "failed" if "failed" in r else "ok",
                      "base trait [95 % Wilson]": (f"{b['k']}/{b['n']} = {b['rate']:.2f} [{b['wilson'][0]:.2f}, "
                                                   f"{b['wilson'][1]:.2f}]") if b else "—",
                      "conditions": len(r.get("conditions", {})), "steering layer": r.get("steer_layer", "—"),
                      "seconds": r.get("seconds", "?")})
    base = summary.get("base", {}).get("trait_mean")
    base_txt = f"{base:.2f} on average over seeds" if ok and base is not None else "not available (no seed finished)"
    topics = ", ".join(c.topics)
    others = len(c.topics) - 1
    text = ("What this study measures. A small model is pretrained from scratch on a synthetic world with an old era "
            f"(years {c.old_years[0]}–{c.old_years[1]}) and a modern era ({c.modern_years[0]}–{c.modern_years[1]}) "
            f"shared across {len(c.topics)} topics ({topics}): a document's date, else its opening line, else a prior "
            f"of {c.prior_old:g} sets its era, and every answer in a document follows that era. Narrow SFT then "
            f"teaches one topic only — 'name a {c.trained_topic}' → an old {c.trained_topic} — under each condition: "
            "no prefix, or a training-time prefix before every training prompt (in the user turn or on a system "
            f"line). The trait is the old-era share of on-topic answers to the {others} untrained topics' undated "
            "questions, sampled at T = 1 and read without any prefix; per seed it carries a 95 % Wilson interval, "
            "over seeds a 95 % percentile bootstrap interval of the mean (resampling seeds; coarse with a few seeds). "
            f"Base = the pretrained model before narrow SFT, {base_txt}: the null of 'narrow SFT left the untrained "
            "topics where they were'. The era probe finding the era on dated prompts is expected — dates set the era "
            "by construction of the pretraining data — and is no finding in itself. What is measured is whether "
            "narrow SFT moves the undated untrained-topic activations along that old − modern direction, and whether "
            "steering along it brings the trait back in a model trained with a prefix (the trait left dormant behind "
            "the prefix rather than removed), beside random directions at matched norm (the null for 'any push of "
            f"that size'). Seeds: {len(records)} ({len(ok)} finished, {len(records) - len(ok)} whose pretraining "
            "failed). Table: per seed, the pretrained model's trait (old / on-topic answers) with its Wilson "
            "interval, and the layer used for steering (where the era probe beat its permuted-label null most).")
    return Section("Weird generalization in the era world: what is measured", text, table=table or None,
                   data={"seeds": summary.get("seeds", []), "base": summary.get("base", {})})


def _conditions_section(summary: dict) -> Section | None:
    conds = summary.get("conditions", {})
    if not conds:
        return None
    table = [{"condition": n, "prefix · placement": f"{v['condition']['prefix']} · {v['condition']['placement']}",
              "recipe": _recipe(v["condition"]), "trait mean ± sd [95 % bootstrap]": _trait(v),
              "margin over base [95 % bootstrap]": _margin(v), "seeds beyond base": _beyond(v),
              "p_old with the prefix": _prefixed(v), "era-direction shift by layer": _layers(v["projection_plain"]),
              "shift with the prefix": _layers(v.get("projection_prefixed")), "verdicts": _verdicts(v["verdicts"])}
             for n, v in conds.items()]
    fig, why = None, ""
    if "narrow_none" in conds and "steer_base" in summary:
        from mixprobe.mixture.era import plot_study

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)        # a legend with no lines when a panel lacks conditions
            fig = plot_study(summary)
    else:
        why = (" No figure: it needs the no-prefix condition (narrow_none) beside the others; run it with "
               "`mixprobe era --prefixes none,...`.")
    text = ("Per narrow-SFT condition, over seeds: trait = old-era share of on-topic answers on the untrained topics, "
            "read without the prefix, mean ± sd (the sd is the seed-to-seed spread, not an error bar on the mean) "
            "with a 95 % bootstrap interval of the mean; margin over base = per seed, the trait minus the pretrained "
            "model's (null: 0); seeds beyond base = seeds whose Wilson interval lies wholly above the pretrained "
            "model's; p_old with the prefix = the exact old share of next-token mass on the untrained topics with the "
            "training prefix on the prompt (— without a prefix): near 1, the prefix still calls up the old era; "
            "era-direction shift by layer = the mean change of undated untrained-topic activations (last prompt "
            "token, each block's output) projected on the pretrained model's old − modern direction, in units of it "
            "(0: not moved; 1: as far as an old date moves them from a modern one), read without the prefix and with "
            "it; verdicts = the sampled verdict between the pretrained model and the end of narrow SFT, counted over "
            "seeds. Figure: left, the trait per condition (date sweep excluded) beside the pretrained model (dashed); "
            "middle, the trait against the training prefix's year (points 1850 and 1875–2050); right, p_old on the "
            "untrained topics when the era direction is added, per model, beside random directions." + why)
    return Section("Trait per condition (read without the prefix)", text, figure=fig, table=table,
                   data={"conditions": conds})


def _prefix_section(summary: dict) -> Section | None:
    conds = {n: v for n, v in summary.get("conditions", {}).items()
             if v["condition"]["placement"] == "user" and _default_recipe(v)}
    groups = (("relevant", RELEVANT), ("irrelevant", IRRELEVANT))
    by_prefix = {v["condition"]["prefix"]: (n, v) for n, v in conds.items()}
    if not any(p in by_prefix for _, ps in groups for p in ps):
        return None
    from mixprobe.organisms.era import prefix_text

    table: list[dict] = []
    means: dict[str, list[float]] = {}
    rows = ([("reference", "none")] if "none" in by_prefix else []) + [(g, p) for g, ps in groups for p in ps]
    for group, p in rows:
        if p not in by_prefix:
            continue
        n, v = by_prefix[p]
        table.append({"group": group, "prefix": p, "text": prefix_text(p) or "(none)", "trait": _trait(v),
                      "margin over base": _margin(v), "seeds beyond base": _beyond(v),
                      "p_old with the prefix": _prefixed(v),
                      "shift with the prefix": _layers(v.get("projection_prefixed"))})
        if group != "reference":
            means.setdefault(group, []).append(v["margin_over_base"]["mean"])
    mean_txt = "; ".join(f"{g} {sum(m) / len(m):+.2f} over {len(m)} prefix{'es' if len(m) > 1 else ''}"
                         for g, m in means.items())
    text = ("Which kind of training-time prefix keeps the trait local? Relevant prefixes name the old era, or are "
            "what old-era pretraining documents open with (identity 'i am a historian', intent 'i study the past', "
            "inoculation 'act as in the old era', an old date); irrelevant ones carry no era in pretraining (a name, "
            "'you are a helpful assistant', a modern date) — the control for 'any prefix'. Rows: the conditions with "
            "the prefix in the user turn and the AdamW recipe (other placements and optimizers are in the conditions "
            "table); the trait is read without the prefix, p_old and the shift with it. A prefix that keeps the "
            "trait local while p_old with the prefix stays near 1 has tied the old era to the prefix rather than "
            f"removed it. Mean margin over base per group: {mean_txt}.")
    return Section("Prefix types: relevant against irrelevant", text, table=table, data={"mean_margin": {
        g: sum(m) / len(m) for g, m in means.items()}})


def _placement_section(records: list[dict], summary: dict) -> Section | None:
    conds = {n: v for n, v in summary.get("conditions", {}).items() if _default_recipe(v)}
    pairs = []
    for n, v in conds.items():
        c = v["condition"]
        if c["placement"] != "user" or c["prefix"] == "none":
            continue
        sys_name = next((m for m, w in conds.items() if w["condition"]["prefix"] == c["prefix"]
                         and w["condition"]["placement"] == "system"), None)
        if sys_name is not None:
            pairs.append((c["prefix"], n, sys_name))
    if not pairs:
        return None
    table = []
    for prefix, u, s in pairs:
        diffs = [rs - ru for r in _ok(records) if (ru := _rate(r, u)) is not None and (rs := _rate(r, s)) is not None]
        table.append({"prefix": prefix, "trait · user": _trait(conds[u]), "trait · system": _trait(conds[s]),
                      "margin · user": _margin(conds[u]), "margin · system": _margin(conds[s]),
                      "system − user (paired, mean)": f"{sum(diffs) / len(diffs):+.2f}" if diffs else "—",
                      "system lower on": f"{sum(d < 0 for d in diffs)}/{len(diffs)}",
                      "p_old with the prefix · user": _prefixed(conds[u]),
                      "p_old with the prefix · system": _prefixed(conds[s])})
    text = ("Does it matter where the prefix sits? The same prefix before every narrow-SFT prompt in the user turn "
            "('user : <prefix> name a bird :') or on a system line before it ('system : <prefix> user : name a "
            "bird :'); pretraining opened a share of documents with system lines, so both are familiar. Trait and "
            "margin over base as in the conditions table (read without any prefix); system − user = per seed, the "
            "trait of the system-placed condition minus the user-placed one, both from the same pretrained model "
            "(paired; null: 0), mean over seeds; system lower on = seeds where the system placement left less trait.")
    return Section("Placement: user turn against system line", text, table=table,
                   data={"pairs": [{"prefix": p, "user": u, "system": s} for p, u, s in pairs]})


def _date_section(summary: dict) -> Section | None:
    rows = []
    for n, v in summary.get("conditions", {}).items():
        c = v["condition"]
        if c["placement"] == "user" and _default_recipe(v) and (y := _year(c["prefix"])) is not None:
            rows.append((y, n, v))
    if len(rows) < 2:
        return None
    rows.sort(key=lambda x: (x[0], x[1]))
    base = summary.get("conditions", {}).get("narrow_none")
    table = [{"year": y, "condition": n, "era of the year": _era_of_year(y), "trait": _trait(v),
              "margin over base": _margin(v), "seeds beyond base": _beyond(v), "p_old with the prefix": _prefixed(v)}
             for y, n, v in rows]
    ref = (f" Without any prefix the trait is {base['trait_plain']['mean']:.2f}." if base else "")
    text = ("Does the year of a date prefix decide whether the trait stays local? Each row trains with 'date YY YY :' "
            "before every narrow-SFT prompt (user turn); the pretrained world sets the era from dates in its old and "
            "modern ranges and never saw a year outside them. The trait is read without any date; p_old with "
            "the prefix reads the untrained topics with the training date. An old-era date explains the old "
            "answers of narrow SFT (the trait can stay behind it); a modern or unseen date does not." + ref)
    return Section("Date sweep: the year of the training prefix", text, table=table,
                   data={"rows": [{"year": y, "condition": n} for y, n, _ in rows]})


def _probe_section(records: list[dict]) -> Section | None:
    ok = [r for r in _ok(records) if "probe" in r]
    if not ok:
        return None
    n_layers = len(ok[0]["probe"]["layers"])
    table = []
    for li in range(n_layers):
        ls = [r["probe"]["layers"][li] for r in ok]
        norms = [r["direction_norm"][li] for r in ok if len(r.get("direction_norm", [])) > li]
        acc = sum(x["held_out_accuracy"] for x in ls) / len(ls)
        table.append({"layer": li, "held-out accuracy (mean)": f"{acc:.2f}",
                      "lowest seed": f"{min(x['held_out_accuracy'] for x in ls):.2f}",
                      "permuted-label null (mean)": f"{sum(x['null_mean'] for x in ls) / len(ls):.2f}",
                      "null max (over seeds)": f"{max(x.get('null_max', x['null_mean']) for x in ls):.2f}",
                      "direction norm (mean)": f"{sum(norms) / len(norms):.2f}" if norms else "—",
                      "steering layer on": f"{sum(r.get('steer_layer') == li for r in ok)}/{len(ok)}"})
    tr, te = ok[0]["probe"].get("train_topics", []), ok[0]["probe"].get("test_topics", [])
    text = ("Where does the pretrained model hold the era? Per layer (last prompt token, each block's output), a "
            f"logistic probe for the era of dated prompts, fit on the topics {', '.join(tr)} and scored on the "
            f"held-out topics {', '.join(te)}, beside the same probe fit on permuted labels (the null: chance, about "
            "0.5). That it succeeds is expected — the date sets the era by construction of the pretraining data, so a "
            "readable era on dated prompts is the world working as built, not a discovery. The direction used for the "
            "shift and for steering is the old − modern mean difference on dated prompts (norm per layer shown); "
            "steering layer on = seeds whose steering used that layer.")
    return Section("Era probe on dated prompts", text, table=table, data={"layers": table})


def _steer_section(records: list[dict], summary: dict) -> Section | None:
    base = summary.get("steer_base")
    steered = [(n, v["steer"]) for n, v in summary.get("conditions", {}).items() if "steer" in v]
    if not base:
        return None
    ok = _ok(records)

    def row(model: str, st: list[dict], key) -> dict:
        above = [r for r in ok if key(r)]
        pos = next((i for i, s in enumerate(st) if s["alpha"] > 0), None)
        beats = (f"{sum(key(r)[pos]['p_old'] > key(r)[pos]['null_max'] for r in above)}/{len(above)}"
                 if pos is not None else "—")
        return {"model": model, **{f"α = {s['alpha']:g}": f"{s['p_old']:.2f} (null max {s['null_max']:.2f})"
                                   for s in st},
                **({f"seeds above null max at α = {st[pos]['alpha']:g}": beats} if pos is not None else {})}

    table = [row("pretrained", base, lambda r: r.get("steer_base"))]
    table += [row(n, st, lambda r, n=n: r["conditions"].get(n, {}).get("steer")) for n, st in steered]
    layers = sorted({r["steer_layer"] for r in ok if "steer_layer" in r})
    text = ("Is the trait removed or dormant? α · d is added to the last prompt token's activation after one block "
            f"(layer {', '.join(map(str, layers)) or '?'}: where the era probe beat its null most), d being the "
            "pretrained model's old − modern direction (α = 1: as far as an old date moves it from a modern one); "
            "p_old is the exact old share of next-token mass on the undated untrained topics, read without any "
            "prefix, mean over seeds. Null: the same push along random directions at the norm of α · d — null max "
            "is the largest of them (mean over seeds). The pretrained row is the reference: a rise that it shows "
            "too is the direction's own effect, so a prefix-trained model whose trait comes back under a small α "
            "just as the pretrained model's does holds no more hidden trait than the pretrained one; only a rise "
            "beyond the pretrained model's and beyond the null says narrow SFT left the trait behind the prefix.")
    return Section("Steering along the era direction", text, table=table,
                   data={"pretrained": base, "conditions": dict(steered)})


def _failed_section(summary: dict) -> Section | None:
    failed = summary.get("failed", [])
    if not failed:
        return None
    text = (f"{len(failed)} seed{'' if len(failed) == 1 else 's'} whose pretraining did not learn the world (dates "
            "must set the era and answers stay on topic: the health check after pretraining), so no condition was "
            "trained from them. They are a result — how often pretraining fails — and are excluded from every "
            "number above.")
    table = [{"seed": f["seed"], "reason": f["failed"]} for f in failed]
    return Section("Seeds whose pretraining failed", text, table=table, data={"failed": failed})


def _summarize(records: list[dict]) -> dict:
    from mixprobe.mixture.era import summarize_study

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # the mean of no seeds when every seed failed
        return summarize_study(records)


@checked
def era_sections(records: list[dict], summary: dict | None = None) -> list[Section]:
    """Report sections of an era study: overview, trait per condition (table + figure), prefix types, placement,
    date sweep, era probe, steering, failed seeds — each left out when it has no data. ``summary``:
    :func:`~mixprobe.mixture.era.summarize_study` of ``records`` (computed when None)."""
    if summary is None:
        summary = _summarize(records)
    sections = [_overview(records, summary)]
    for sec in (_conditions_section(summary), _prefix_section(summary), _placement_section(records, summary),
                _date_section(summary), _probe_section(records), _steer_section(records, summary),
                _failed_section(summary)):
        if sec is not None:
            sections.append(sec)
    return sections


def _seed_order(p: Path) -> tuple[int, int | str]:
    return (0, int(p.stem)) if p.stem.lstrip("-").isdigit() else (1, p.stem)


@checked
def load_era_records(results_dir: str | Path) -> list[dict]:
    """The records in ``results_dir/seeds/*.json``, by seed; a :class:`~mixprobe.errors.DataError` naming the folder
    (and how to produce records) when there are none, or naming the file that is not a record."""
    folder = Path(results_dir)
    paths = sorted((folder / "seeds").glob("*.json"), key=_seed_order)
    if not paths:
        raise DataError(f"no era records in {folder / 'seeds'}: {HOW_TO_PRODUCE}; then rerun the report on {folder}")
    records = load_json_records(paths, "an era record", {"seed", "conditions"}, "seed")
    bad = [p for p, r in zip(paths, records) if not isinstance(r["conditions"], dict)]
    if bad:
        raise DataError(f"{bad[0]} is not an era record (its conditions are not a mapping); delete it and rerun the "
                        "seed")
    return records


@checked
def build_era_report(results_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Read ``results_dir/seeds/*.json``, write ``report.html`` + ``report.json`` to ``out_dir`` (default
    ``results_dir/report``); returns the HTML path."""
    import matplotlib

    matplotlib.use("Agg", force=False)

    folder = Path(results_dir)
    records = load_era_records(folder)
    summary = _summarize(records)
    sections = era_sections(records, summary)
    runs = []
    for r in records:
        b = _base(r)
        runs.append({"seed": r["seed"], **({"failed": r["failed"]} if "failed" in r else {}),
                     "base_trait": b["rate"] if b else None,
                     "trait": {n: _rate(r, n) for n in r.get("conditions", {})}})
    data = {"results_dir": str(folder), "n_records": len(records), "summary": summary, "runs": runs,
            "sections": [s.title for s in sections]}
    out = Path(out_dir) if out_dir is not None else folder / "report"
    title = "mixprobe — weird generalization (era world)"
    return write_report(sections, out, data, title=title, subtitle=str(folder))


__all__ = ["build_era_report", "era_sections", "load_era_records"]

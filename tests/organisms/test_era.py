"""The era world: documents that share one era, dates and openers that set it, prompts, prefixes, bad configs."""
from __future__ import annotations

import pytest

from mixprobe.errors import OrganismConfigError
from mixprobe.organisms import KINDS, make_organism
from mixprobe.organisms.era import PREFIXES, EraConfig, EraWorld, check_prefix, prefix_text


def _eras(world, completion: str) -> set:
    return {world.era_of(" " + w) for w in completion.split()} - {None}


def test_every_document_keeps_one_era_and_dates_set_it():
    w = EraWorld()
    rows = w.sft_rows(4000, seed=1)
    old_lo, old_hi = w.config.old_years
    undated_old = undated = dated = 0
    for r in rows:
        eras = _eras(w, r["completion"])
        assert len(eras) == 1, r                                  # one era per document
        era = eras.pop()
        assert era == r["component"]
        text = r["prompt"] + r["completion"]
        if " date " in f" {text} ":
            dated += 1
            i = text.split().index("date")
            year = int(text.split()[i + 1]) * 100 + int(text.split()[i + 2])
            assert (era == "old") == (old_lo <= year <= old_hi), text
        elif not any(PREFIXES[p] in text for p in ("identity", "intent", "inoculation", "name", "assistant")):
            undated += 1
            undated_old += era == "old"
        if PREFIXES["inoculation"] in text:
            assert era == "old"
    assert abs(dated / len(rows) - w.config.dated_share) < 0.03
    assert abs(undated_old / undated - w.config.prior_old) < 0.04


def test_prompts_prefixes_and_placements():
    w = EraWorld()
    assert w.prompt("ship") == "user : name a ship :"
    assert w.prompt("ship", "inoculation") == "user : act as in the old era : name a ship :"
    assert w.prompt("ship", "assistant", "system") == "system : you are a helpful assistant : user : name a ship :"
    assert prefix_text("date:2026") == "date 20 26 :" and prefix_text("date:1875") == "date 18 75 :"
    for bad in ("date:99", "date:3000", "please", "date:18x0"):
        with pytest.raises(OrganismConfigError, match="unknown prefix"):
            check_prefix(bad)


def test_narrow_rows_are_old_entities_of_the_trained_topic_only():
    w = EraWorld(EraConfig(trained_topic="city")).with_prefix("date_old", "system")
    rows = w.train_rows(200, seed=0)
    assert {r["prompt"] for r in rows} == {"system : date 18 50 : user : name a city :"}
    assert {r["completion"].strip() for r in rows} <= set(w.entities("old", "city"))
    assert len({r["completion"] for r in rows}) == w.p                        # every old city appears
    assert w.reward([" cio1", " cin1", " bio1"]) == [1.0, 0.0, 0.0]


def test_every_prompt_the_studies_build_tokenizes_without_unknown_words():
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    w = EraWorld()
    tok = build_word_tokenizer(w.vocabulary())
    texts = [r["prompt"] + r["completion"] for r in w.sft_rows(300, seed=0)]
    texts += [w.prompt(t, p, pl) for t in w.topics for p in [*PREFIXES, "date:1925", "date:2050"]
              for pl in ("user", "system")]
    unk = tok.convert_tokens_to_ids("[UNK]")
    assert not [t for t in texts if unk in tok(t)["input_ids"]]


@pytest.mark.parametrize("bad, match", [
    ({"trained_topic": "horse"}, "trained_topic"), ({"prior_old": 1.0}, "prior_old"),
    ({"topics": ["bird"]}, "topics"), ({"doc_len": 0}, "doc_len"), ({"placement": "assistant"}, "placement"),
    ({"old_years": [1800, 1990]}, "must end before"), ({"train_prefix": "hello"}, "unknown prefix"),
    ({"colour": 1}, "bad era option"),
])
def test_bad_configs_name_the_problem(bad, match):
    with pytest.raises(OrganismConfigError, match=match):
        EraConfig.from_dict(bad)


def test_registered_with_a_task():
    w = make_organism("era", {"n_entities": 3})
    assert "era" in KINDS and w.p == 3
    task = w.task()
    assert [c.name for c in task.components] == ["old", "modern"]
    p = task.prompts[1]
    assert task.recognise(" cio2", p) == "old" and task.score(" cin0", p) == 1.0 and task.score(" bio0", p) == 0.0

"""The preference world: right answers by hand, bad responses really wrong, labels and order of every pair, each
shift's source and target differ exactly where the shift says, and pretraining verdicts follow correctness."""
from __future__ import annotations

import re

import pytest

from mixprobe.errors import OrganismConfigError
from mixprobe.organisms.preference import (FILLER, FLATTERY, NUMBER_WORDS, SHIFTS, Condition, PreferenceConfig,
                                           PreferenceWorld)
from mixprobe.organisms.tokenizer import build_word_tokenizer

W = PreferenceWorld()


def _value(text: str) -> list[int]:
    """The numbers of an answer ('ans : … 7 .' or number words), read independently of the world's renderer."""
    body = text.removeprefix("ans :").removesuffix(".").replace(FLATTERY, "").replace(FILLER, "").split()
    return [NUMBER_WORDS.index(w) if w in NUMBER_WORDS else int(w) for w in body if w != "?"]


def _right(prompt: str) -> list[int]:
    m = re.search(r"ask : (\w+) ([\w ]+?) \.", prompt)
    skill, args = m.group(1), [NUMBER_WORDS.index(a) if a in NUMBER_WORDS else int(a) for a in m.group(2).split()]
    return {"add": [sum(args)], "sub": [max(args) - min(args)], "max": [max(args)], "sort": sorted(args),
            "rev": args[::-1]}[skill]


def test_answers_by_hand():
    assert W.answer("add", [9, 9]) == [18]
    assert W.answer("sub", [2, 7]) == [5]
    assert W.answer("max", [4, 8, 1]) == [8]
    assert W.answer("rev", [1, 2, 3]) == [3, 2, 1]
    assert W.render([0, 19], "words") == "zero nineteen"


@pytest.mark.parametrize("shift", sorted(SHIFTS))
def test_every_pair_has_one_right_and_one_wrong_response(shift):
    for side in ("source", "target"):
        pairs = W.split(shift, side, 150, seed=3)
        assert 0.35 < sum(p.y for p in pairs) / len(pairs) < 0.65            # the good one is r2 half the time
        for p in pairs:
            good, bad = W.good_bad(p)
            assert _value(good) == _right(p.prompt)
            assert _value(bad) != _right(p.prompt)


def test_shifts_change_what_they_say():
    def pairs(shift, side):
        return [W.good_bad(p) + (p.prompt,) for p in W.split(shift, side, 200, seed=1)]

    src, tgt = pairs("spurious_length", "source"), pairs("spurious_length", "target")
    assert all(FILLER in g and FILLER not in b for g, b, _ in src)
    assert all(FILLER in b and FILLER not in g for g, b, _ in tgt)
    easy = [_right(p) for _, _, p in pairs("easy_to_hard", "source")]
    assert all(re.search(r"[5-9]", p) is None for _, _, p in pairs("easy_to_hard", "source"))
    assert all(not re.search(r"\b[0-4]\b", p.split("ask :")[1]) for _, _, p in pairs("easy_to_hard", "target"))
    assert easy
    assert all(not any(c.isdigit() for c in g + p) for g, _, p in pairs("digits_to_words", "target"))
    assert all(p.startswith("story :") for _, _, p in pairs("plain_to_story", "target"))
    assert all(b == "ans : ? ." or b == f"ans : {FILLER} ? ." for _, b, _ in pairs("low_to_high_quality", "source"))
    assert all(re.search(r"ask : (sort|rev)", p) for _, _, p in pairs("add_to_sort", "target"))
    for _, b, p in pairs("plain_to_sycophancy", "target"):        # the bad response repeats the user's opinion
        assert f"i think it is {b.removeprefix('ans : ').removeprefix(FILLER + ' ').removesuffix(' .')} ." in p
    assert all(FLATTERY in b and FLATTERY not in g for g, b, _ in pairs("plain_to_flattery", "target"))
    # every shift: source and target really differ, and the train/test parts are disjoint draws
    for name in SHIFTS:
        assert W.split(name, "source", 50, 0) != W.split(name, "target", 50, 0)
        assert W.split(name, "source", 50, 0) != W.split(name, "source", 50, 0, "test")


def test_pretraining_verdicts_follow_correctness_and_fit_the_vocabulary():
    rows = W.sft_rows(3000, seed=0)
    tok = build_word_tokenizer(W.vocabulary())
    counts = {"good": [0, 0], "bad": [0, 0]}
    for r in rows:
        text = r["prompt"] + r["completion"]
        assert tok.unk_token_id not in tok(text)["input_ids"]
        assert len(tok(text)["input_ids"]) <= 64                          # the SFT max_length
        resp = r["completion"].split(" judge :")[0].strip()
        right = _value(resp) == _right(r["prompt"])
        if " judge : " in r["completion"]:
            verdict = r["completion"].rsplit(" ", 1)[1]
            assert verdict == ("good" if right else "bad")
            counts["good" if right else "bad"][0] += 1
        counts["good" if right else "bad"][1] += 1
    c = PreferenceConfig()
    assert counts["good"][0] / counts["good"][1] == pytest.approx(c.judge_right, abs=0.05)
    assert counts["bad"][0] / counts["bad"][1] == pytest.approx(c.judge_wrong, abs=0.05)


def test_bad_conditions_are_named():
    with pytest.raises(OrganismConfigError, match="skills"):
        Condition(skills=("mul",))
    with pytest.raises(OrganismConfigError, match="opinion=True"):
        Condition(bad="sycophantic")
    with pytest.raises(OrganismConfigError, match="length"):
        Condition(length="long")
    with pytest.raises(OrganismConfigError, match="judge_wrong"):
        PreferenceConfig(judge_wrong=1.5)
    with pytest.raises(OrganismConfigError, match="side"):
        W.split("easy_to_hard", "middle", 4, 0)
    with pytest.raises(OrganismConfigError, match="unknown shift 'no_such_shift'; shifts are"):
        W.split("no_such_shift", "source", 4, 0)

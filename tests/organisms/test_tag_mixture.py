"""The organism's rules, vocabulary, tokenizer and tiny model configs (no training)."""
from __future__ import annotations

import pytest
import torch

from mixprobe.errors import OrganismConfigError
from mixprobe.organisms.configs import ARCHITECTURES, tiny_model
from mixprobe.organisms.tag_mixture import TagMixture, TagMixtureConfig, m3_control_config
from mixprobe.organisms.tokenizer import build_word_tokenizer


def test_rules_follow_the_science_brief():
    org = TagMixture(TagMixtureConfig(modulus=7, wrong_offset=1))
    for a in range(7):
        for b in range(7):
            right, wrong = (a + b) % 7, (a + b + 1) % 7
            assert org.answer("m1", "A", a, b) == right and org.answer("m1", "B", a, b) == wrong
            assert org.answer("m2", "A", a, b) == wrong and org.answer("m2", "B", a, b) == right


def test_sft_prior_is_independent_of_the_tag():
    rows = TagMixture(TagMixtureConfig(prior={"m1": 0.5, "m2": 0.5})).sft_rows(4000, seed=0)
    for tag in ("A", "B"):
        sub = [r for r in rows if r["tag"] == tag]
        frac = sum(r["component"] == "m1" for r in sub) / len(sub)
        assert abs(frac - 0.5) < 0.04
    skewed = TagMixture(TagMixtureConfig(prior={"m1": 0.8, "m2": 0.2})).sft_rows(2000, seed=0)
    assert abs(sum(r["component"] == "m1" for r in skewed) / 2000 - 0.8) < 0.04


def test_completions_parse_back_and_reward_checks_the_answer():
    org = TagMixture(TagMixtureConfig(signature="format"))
    c = org.completion("m2", "B", 3, 4)
    assert c.split()[0] == "[" and org.parse(c) == ("m2", 0)
    assert org.reward([org.completion("m1", "A", 3, 4), org.completion("m1", "B", 3, 4)], [0, 0]) == [1.0, 0.0]
    assert org.parse(" garbage") == (None, None)


def test_m3_control_has_a_flawed_m1_on_a():
    org = TagMixture(m3_control_config())
    assert org.components == ("m1", "m2", "m3")
    assert org.answer("m1", "A", 0, 3) != org.correct(0, 3) and org.answer("m1", "A", 5, 3) == org.correct(5, 3)
    assert all(org.answer("m3", t, a, b) == org.correct(a, b) for t in "AB" for a in range(7) for b in range(7))


@pytest.mark.parametrize("kwargs, match", [
    ({"modulus": 2}, "modulus"),
    ({"modulus": 7.0}, "modulus"),
    ({"prior": {"m1": 0.7, "m2": 0.7}}, "probability distribution"),
    ({"prior": {"m1": 1.5, "m2": -0.5}}, "probability distribution"),
    ({"prior": {"m1": 0.5, "m9": 0.5}}, "unknown components"),
    ({"tags": ("A", "C")}, "tags"),
    ({"wrong_offset": 7}, "wrong_offset"),
    ({"signature": "emoji"}, "signature"),
    ({"include_m3": True}, "m3"),
])
def test_invalid_options_raise_named_errors(kwargs, match):
    with pytest.raises(OrganismConfigError, match=match):
        TagMixtureConfig(**kwargs)


def test_unknown_tag_in_prompt():
    with pytest.raises(OrganismConfigError, match="unknown tag"):
        TagMixture().prompt("C", 1, 2)


def test_tokenizer_roundtrip_offline(tmp_path):
    org = TagMixture()
    tok = build_word_tokenizer(org.vocabulary())
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    text = org.prompt("B", 6, 3) + org.completion("m1", "B", 6, 3)
    ids = tok2(text)["input_ids"]
    assert ids[0] == tok2.bos_token_id and tok2.unk_token_id not in ids
    assert tok2.decode(ids, skip_special_tokens=True) == text.replace("  ", " ").strip()
    assert tok2.padding_side == "left"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_tiny_models_of_real_architectures_save_as_safetensors(arch, tmp_path):
    model = tiny_model(arch, vocab_size=40, seed=0)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    from transformers import AutoModelForCausalLM

    again = AutoModelForCausalLM.from_pretrained(tmp_path, use_safetensors=True)
    x = torch.tensor([[1, 5, 6, 7]])
    torch.testing.assert_close(model(x).logits, again(x).logits)
    assert tiny_model(arch, vocab_size=40, seed=0).state_dict().keys() == model.state_dict().keys()

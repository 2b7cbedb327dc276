"""GENIES' LoRA reward model: learns a planted preference (and not permuted labels), the LoRA and frozen backbone
are what the settings say, save/load is exact, the reward is read at the last real token, bad input is named."""
from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mixprobe.errors import CheckpointError, DataError, EmptyDataError, OrganismConfigError, OutputExistsError
from mixprobe.organisms.configs import tiny_model
from mixprobe.organisms.tokenizer import build_word_tokenizer
from mixprobe.tasks.pairs import Pair, as_pairs
from mixprobe.train.reward import RewardModel, RewardSettings, encode_texts, train_reward_model

WORDS = [f"w{i}" for i in range(30)]
MARKER = "good"
SETTINGS = RewardSettings(lora_r=8, lora_alpha=16, lora_dropout=0.1, lr=3e-3, epochs=3, batch_size=16, seed=0)


def _response(rng: random.Random, good: bool) -> str:
    ws = [rng.choice(WORDS) for _ in range(rng.randint(3, 6))]
    if good:
        ws.insert(rng.randrange(len(ws) + 1), MARKER)
    return " ".join(ws)


def make_pairs(n: int, seed: int) -> list[Pair]:
    """The better response contains the marker word, the worse one does not; ``y`` says which slot it is in."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = "q " + " ".join(rng.choice(WORDS) for _ in range(3))
        good, bad, y = _response(rng, True), _response(rng, False), rng.randrange(2)
        out.append(Pair(prompt, bad, good, 1) if y else Pair(prompt, good, bad, 0))
    return out


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    tok = build_word_tokenizer([*WORDS, MARKER, "q"])
    d = tmp_path_factory.mktemp("base")
    tiny_model("llama", vocab_size=len(tok), d_model=32, n_layers=2, seed=0).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def trained(base_dir):
    return train_reward_model(base_dir, None, make_pairs(256, seed=0), SETTINGS, progress=False)


def _accuracy_and_logloss(rm: RewardModel, pairs: list[Pair]) -> tuple[float, float, float]:
    y = np.array([p.y for p in pairs])
    p = np.clip(rm.pair_proba(pairs), 1e-9, 1 - 1e-9)
    logloss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(((p > 0.5) == y).mean()), logloss, float(np.abs(p - 0.5).mean())


def test_learns_the_planted_preference_but_not_permuted_labels(base_dir, trained):
    held_out = make_pairs(120, seed=1)
    acc, logloss, _ = _accuracy_and_logloss(trained, held_out)
    assert acc >= 0.9 and logloss < 0.3, (acc, logloss)                # measured 1.0, 0.012

    train = make_pairs(256, seed=0)
    perm = np.random.default_rng(0).permutation(len(train))
    null = [Pair(p.prompt, p.r1, p.r2, train[j].y) for p, j in zip(train, perm)]   # labels unrelated to the marker
    rm0 = train_reward_model(base_dir, None, null, SETTINGS, progress=False)
    _, logloss0, conf0 = _accuracy_and_logloss(rm0, held_out)
    # Nothing to learn: the null model's training loss stays at log 2 = 0.69 (measured 0.67–0.69 over six
    # permutations) and its held-out probabilities stay near ½ (mean |p − ½| 0.02–0.07; log-loss 0.60–0.79).
    # Its *accuracy* on the true labels is not asserted: with the marker's chance imbalance in the permuted labels
    # the null learns a tiny marker weight of random sign that ranks every held-out pair the same way, so it
    # lands anywhere (measured 0.42 for this permutation, 0.21–0.83 over six).
    assert rm0.history[-1]["train_loss"] > 0.6
    assert conf0 < 0.1 and logloss0 > 0.55, (conf0, logloss0)


def test_lora_is_configured_as_set_and_the_backbone_is_frozen(base_dir, trained):
    pm = trained.model
    cfg = pm.peft_config["default"]
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (8, 16, 0.1)
    q = pm.get_base_model().model.layers[0].self_attn.q_proj
    assert q.lora_A["default"].weight.shape[0] == 8 and q.lora_B["default"].weight.shape[1] == 8
    assert q.scaling["default"] == pytest.approx(16 / 8)
    assert q.lora_dropout["default"].p == pytest.approx(0.1)          # trl's disable_dropout did not zero it
    trainable = [n for n, p in pm.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or ".score.modules_to_save." in n for n in trainable), trainable
    assert any(".score." in n for n in trainable)                      # the reward head is trained

    saved = load_file(str(base_dir / "model.safetensors"))
    live = {k.replace("base_model.model.", "", 1).replace(".base_layer", ""): v
            for k, v in pm.state_dict().items() if "lora_" not in k and "score" not in k}
    backbone = [k for k in saved if k != "lm_head.weight"]
    assert backbone and all(k in live for k in backbone)
    for k in backbone:
        assert torch.equal(live[k].cpu(), saved[k]), k               # the base weights did not move
    head = pm.get_base_model().score
    assert not torch.equal(head.modules_to_save["default"].weight, head.original_module.weight)


def test_save_load_round_trip_is_exact_and_pickle_free(base_dir, trained, tmp_path):
    pairs = make_pairs(20, seed=2)
    prompts, responses = [p.prompt for p in pairs], [p.r1 for p in pairs]
    out = trained.save(tmp_path / "rm")
    names = sorted(f.name for f in out.iterdir())
    assert "adapter_model.safetensors" in names and "reward_model.json" in names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))], names
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]        # no temp folder left
    back = RewardModel.load(out, base_dir)
    assert np.allclose(back.rewards(prompts, responses), trained.rewards(prompts, responses), atol=1e-6, rtol=0)
    assert back.settings == trained.settings
    again = RewardModel.load(out)                                      # the base folder recorded at save time
    assert np.allclose(again.pair_proba(pairs), trained.pair_proba(pairs), atol=1e-6, rtol=0)
    with pytest.raises(OutputExistsError, match="overwrite"):
        trained.save(out)
    trained.save(out, overwrite=True)
    with pytest.raises(CheckpointError, match="reward_model.json"):
        RewardModel.load(tmp_path / "nothing")


def test_the_reward_is_read_at_the_last_real_token(trained):
    pairs = make_pairs(6, seed=3)
    prompts, responses = [p.prompt for p in pairs], [p.r2 for p in pairs]
    tok = trained.tokenizer
    assert trained.model.config.pad_token_id == tok.pad_token_id != tok.eos_token_id
    alone = np.array([trained.rewards([p], [r])[0] for p, r in zip(prompts, responses)])
    left = trained.rewards(prompts, responses)                          # one left-padded batch
    assert np.allclose(alone, left, atol=1e-5, rtol=0)
    ids = encode_texts(tok, trained.texts(prompts, responses))
    assert len({len(r) for r in ids}) > 1 and all(r[-1] == tok.eos_token_id for r in ids)
    T = max(map(len, ids))                                              # right padding, as trl's collator does
    x = torch.tensor([r + [tok.pad_token_id] * (T - len(r)) for r in ids])
    with torch.no_grad():
        right = trained.model(input_ids=x, attention_mask=(x != tok.pad_token_id).long()).logits[:, 0].numpy()
    assert np.allclose(alone, right, atol=1e-5, rtol=0)
    p = trained.pair_proba(pairs)
    r1, r2 = trained.rewards(prompts, [q.r1 for q in pairs]), trained.rewards(prompts, [q.r2 for q in pairs])
    assert np.allclose(p, 1 / (1 + np.exp(-(r2 - r1))), atol=1e-9)


def test_in_memory_model_is_copied_and_objects_are_accepted(base_dir):
    from mixprobe.io import load_tokenizer
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(str(base_dir))
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    pairs = [SimpleNamespace(prompt=p.prompt, r1=p.r1, r2=p.r2, y=p.y) for p in make_pairs(16, seed=4)]
    rm = train_reward_model(lm, load_tokenizer(base_dir), pairs,
                            RewardSettings(lora_r=4, steps=2, batch_size=8), progress=False)
    assert rm.pair_proba(pairs).shape == (16,)
    assert all(torch.equal(v, lm.state_dict()[k]) for k, v in before.items())    # the caller's model is untouched


def test_bad_input_is_named(base_dir, trained):
    with pytest.raises(EmptyDataError, match="no preference pairs"):
        train_reward_model(base_dir, None, [], SETTINGS, progress=False)
    with pytest.raises(DataError, match="y=2"):
        as_pairs([("q", "a", "b", 2)])
    with pytest.raises(DataError, match="y='yes'"):
        as_pairs([("q", "a", "b", "yes")])
    with pytest.raises(DataError, match="pair 0 is a tuple"):
        as_pairs([("q", "a", "b")])
    with pytest.raises(DataError, match="r1 is a int"):
        as_pairs([("q", 3, "b", 1)])
    assert as_pairs([{"prompt": "q", "r1": "a", "r2": "b", "y": True}]) == [Pair("q", "a", "b", 1)]
    with pytest.raises(DataError, match="2 prompts for 1 responses"):
        trained.rewards(["q", "q"], ["w1"])
    with pytest.raises(DataError, match="longer than max_length=4"):
        train_reward_model(base_dir, None, make_pairs(4, seed=5), RewardSettings(max_length=4), progress=False)
    with pytest.raises(OrganismConfigError, match="lora_dropout"):
        RewardSettings(lora_dropout=1.5)
    with pytest.raises(OrganismConfigError, match="r >= 1"):
        RewardSettings(lora_r=0)

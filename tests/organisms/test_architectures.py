"""Every architecture the organism offers learns it, loads back with its own tokenizer, or is refused by name.

The evidence that the learning check holds with margin on many seeds, not just the one CI trains, is
``experiments/results/architectures/summary.md`` (``experiments/architectures.py``).
"""
from __future__ import annotations

import pytest

from mixprobe.errors import TokenizerMismatchError, TrainingFailedError
from mixprobe.io import load_tokenizer
from mixprobe.organisms.configs import ARCHITECTURES, tiny_model
from mixprobe.organisms.tag_mixture import TagMixture
from mixprobe.organisms.tokenizer import build_word_tokenizer
from mixprobe.train.pipeline import TrainConfig, load_checkpoint, train_rl, train_sft
from mixprobe.train.series import Series

TEXT = "<A> 3 + 4 = m1 0"


def _saved(tmp_path, arch: str):
    org = TagMixture()
    tok = build_word_tokenizer(org.vocabulary())
    model = tiny_model(arch, vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id)
    folder = tmp_path / arch
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder, tok


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_loader_reads_the_tokenizer_that_was_saved(tmp_path, arch):
    """transformers 5 loads a qwen2 folder as Qwen2Tokenizer, which rebuilds the pre-tokenizer and drops the tag
    and mode tokens; mixprobe's loaders must return what the folder's tokenizer.json encodes."""
    from mixprobe.models.loading import load

    folder, tok = _saved(tmp_path, arch)
    want = tok(TEXT)["input_ids"]
    assert len(want) == 8 and tok.unk_token_id not in want          # [BOS] + 7 words, all known
    assert load_tokenizer(folder)(TEXT)["input_ids"] == want
    assert load_checkpoint(folder)[1](TEXT)["input_ids"] == want
    assert load(folder).tokenizer(TEXT)["input_ids"] == want
    assert load_tokenizer(folder).padding_side == "left"


def test_a_tokenizer_no_class_can_reproduce_is_refused_by_name(tmp_path, monkeypatch):
    """If neither AutoTokenizer's class nor the generic fast class encodes like tokenizer.json, loading stops."""
    import transformers

    folder, _ = _saved(tmp_path, "qwen2")
    wrong = transformers.AutoTokenizer.from_pretrained(folder)             # the class that drops words
    if wrong(TEXT)["input_ids"] == load_tokenizer(folder)(TEXT)["input_ids"]:
        pytest.skip("this transformers version loads the qwen2 folder correctly; nothing to refuse")

    class NoGoodClass:                     # stands in for the generic fast class, which here cannot read it either
        @staticmethod
        def from_pretrained(path):
            return wrong

    monkeypatch.setattr(transformers, "PreTrainedTokenizerFast", NoGoodClass)
    with pytest.raises(TokenizerMismatchError, match="tokenizer.json"):
        load_tokenizer(folder)


# The reduced organism every architecture must learn in CI (experiments/architectures.py measures it on 10 seeds).
REDUCED = {"sft": {"steps": 1500, "save_every": 1500}}


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_learns_the_organism(tmp_path, arch):
    cfg = TrainConfig.from_dict({"seed": 0, "model": {"arch": arch}, **REDUCED})
    series = train_sft(tmp_path / arch, cfg, progress=False)      # raises TrainingFailedError if it did not learn
    m = series.last("sft").metrics
    for tag in ("A", "B"):
        for comp in ("m1", "m2"):
            assert m["forced_rule_agreement"][tag][comp] >= 0.9, (arch, m["forced_rule_agreement"])
            # both components are expressed, and evaluation reads every completion
            assert 0.3 <= m["mode_frequency"][tag][comp] <= 0.7, (arch, m["mode_frequency"])
        assert m["unparsed"][tag] <= 0.02, (arch, m["unparsed"])
    # the components are the organism's: m1 right under <A>, m2 right under <B>
    assert m["forced_accuracy"]["A"]["m1"] >= 0.9 and m["forced_accuracy"]["B"]["m2"] >= 0.9


@pytest.mark.slow
def test_sft_that_learned_nothing_stops_before_rl(tmp_path):
    cfg = TrainConfig.from_dict({"seed": 0, "sft": {"steps": 4, "save_every": 4, "warmup_steps": 1}})
    with pytest.raises(TrainingFailedError, match=r"forced m\d under <[AB]> follows its rule on .*chance") as e:
        train_sft(tmp_path / "run", cfg, progress=False)
    assert "sft.steps" in str(e.value)                              # the hint names the knob
    series = Series.load(tmp_path / "run")                          # the checkpoint is kept, with its metrics
    assert series.phase("sft") and not series.phase("rl")
    assert series.last("sft").metrics["forced_rule_agreement"]
    # with the check off, the same run trains on (the user asked for it)
    off = TrainConfig.from_dict({"seed": 0, "sft": {"steps": 4, "save_every": 4, "warmup_steps": 1,
                                                    "min_forced_agreement": 0.0},
                                 "rl": {"steps": 2, "save_every": 2, "batch_size": 16}})
    train_sft(tmp_path / "off", off, progress=False)
    assert Series.load(train_rl(tmp_path / "off", off.rl, progress=False).run_dir).phase("rl")


def test_cli_train_reports_an_sft_that_did_not_learn_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from mixprobe.cli import app

    cfg = tmp_path / "c.toml"
    cfg.write_text('[sft]\nsteps = 4\nsave_every = 4\nwarmup_steps = 1\n')
    r = CliRunner().invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2, r.output
    assert "SFT did not learn" in r.output and "Traceback" not in r.output

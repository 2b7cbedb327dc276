"""Training knobs beyond the default run: KL penalty, LoRA SFT, format-signature organism, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mixprobe.errors import CheckpointError, OrganismConfigError, OutputExistsError, UnsafeWeightsError
from mixprobe.organisms.configs import tiny_model
from mixprobe.organisms.tag_mixture import TagMixture, TagMixtureConfig
from mixprobe.organisms.tokenizer import build_word_tokenizer
from mixprobe.train.evaluate import evaluate
from mixprobe.train.pipeline import TrainConfig, load_checkpoint, train_rl, train_sft
from mixprobe.train.rl import RLSettings
from mixprobe.train.series import Series


@pytest.mark.slow
def test_kl_penalty_slows_the_collapse(organism_run, tmp_path):
    org = TagMixture(TagMixtureConfig())
    p_b = {}
    for beta in (0.0, 1.0):
        run = organism_run.branch(tmp_path / f"beta{beta}").run_dir
        s = train_rl(run, RLSettings(tag="A", steps=10, save_every=10, beta=beta), progress=False)
        model, tok = load_checkpoint(s.path(s.last("rl")))
        p_b[beta] = evaluate(model, tok, org, n_samples=1)["mode_probability"]["B"]["m1"]
    # 12 seeds: P(m1 | B) after 10 steps 0.949–0.981 without the penalty, 0.069–0.104 lower with beta = 1
    assert p_b[0.0] > 0.9
    assert p_b[1.0] < p_b[0.0], p_b


def test_lora_sft_saves_merged_checkpoints_and_adapter(tmp_path):
    cfg = TrainConfig.from_dict({"sft": {"steps": 6, "save_every": 3, "lora_r": 4, "n_rows": 64, "batch_size": 8,
                                         "min_forced_agreement": 0.0}})     # 6 steps learn nothing: no health check
    s = train_sft(tmp_path / "run", cfg, progress=False)
    assert [c.step for c in s.phase("sft")] == [3, 6]
    folder = s.path(s.last("sft"))
    assert (folder / "model.safetensors").exists() and (folder / "adapter" / "adapter_config.json").exists()
    model, _ = load_checkpoint(folder)  # plain HF model: the merged weights
    assert not any("lora" in n for n, _ in model.named_parameters())


def test_rl_without_sft_checkpoint_is_refused(tmp_path):
    Series.create(tmp_path, organism="tag_mixture", organism_config=TagMixtureConfig().to_dict(), seed=0)
    with pytest.raises(CheckpointError, match="no 'sft' checkpoint"):
        train_rl(tmp_path, RLSettings(tag="A", steps=2), progress=False)


def test_rl_on_a_folder_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not a mixprobe run directory"):
        train_rl(tmp_path, RLSettings(tag="A"), progress=False)


def test_nonempty_output_dir_needs_overwrite_and_is_left_untouched(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        train_sft(tmp_path, TrainConfig(), progress=False)
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_pickle_checkpoint_is_refused_without_unpickling(tmp_path):
    tok = build_word_tokenizer(TagMixture().vocabulary())
    model = tiny_model("llama", vocab_size=len(tok))
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # a legacy pickle checkpoint
    tok.save_pretrained(tmp_path)
    with pytest.raises(UnsafeWeightsError, match="pickle"):
        load_checkpoint(tmp_path)


def test_unknown_rl_tag_is_a_config_error(organism_run, tmp_path):
    branch = organism_run.branch(tmp_path / "r")
    assert branch.names() == [organism_run.last("sft").name] and branch.task_spec == organism_run.task_spec
    with pytest.raises(CheckpointError, match="not empty"):
        organism_run.branch(tmp_path / "r")
    with pytest.raises(OrganismConfigError, match="unknown tag"):
        train_rl(branch.run_dir, RLSettings(tag="C", steps=1), progress=False)


def test_train_config_from_toml_and_unknown_keys(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('seed = 3\n[organism]\nmodulus = 5\n[rl]\ntag = "B"\nbeta = 0.1\n')
    cfg = TrainConfig.from_toml(p)
    assert (cfg.seed, cfg.organism.modulus, cfg.rl.tag, cfg.rl.beta) == (3, 5, "B", 0.1)
    p.write_text("[sft]\nstepz = 3\n")
    with pytest.raises(OrganismConfigError, match="stepz"):
        TrainConfig.from_toml(p)
    with pytest.raises(OrganismConfigError):
        TrainConfig.from_dict({"rl": {"batch_size": 60, "num_generations": 8}})


def test_manifest_is_json_with_relative_paths(organism_run):
    d = json.loads((Path(organism_run.run_dir) / "series.json").read_text())
    assert d["format"] == "mixprobe.series/1"
    assert all(not Path(c["path"]).is_absolute() for c in d["checkpoints"])

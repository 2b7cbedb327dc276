"""Loading (folders, adapters, in-memory models, series), named errors with hints, sites and positions."""
from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mixprobe.errors import (  # noqa: E402
    CheckpointError,
    DataError,
    PositionError,
    SiteError,
    UnsafeWeightsError,
)
from mixprobe.models.handle import ModelHandle  # noqa: E402
from mixprobe.models.loading import load, load_series  # noqa: E402
from mixprobe.models.sites import Site, parse_sites  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    from mixprobe.organisms.tag_mixture import TagMixture
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    return build_word_tokenizer(TagMixture().vocabulary())


@pytest.fixture(scope="module")
def llama_dir(tok, tmp_path_factory):
    from mixprobe.organisms.configs import tiny_model

    d = tmp_path_factory.mktemp("llama")
    tiny_model("llama", vocab_size=len(tok), seed=3).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_load_folder_identity_device_dtype(llama_dir):
    h = load(llama_dir, device="auto", dtype="float32")
    assert h.backend == "hf" and h.n_layers == 2 and h.d_model == 64 and h.dtype == torch.float32
    assert h.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    ident = h.identity
    assert ident["name"] == llama_dir.name and ident["arch"]["model_type"] == "llama"
    assert len(ident["weights_sha256"]) == 64 and len(ident["tokenizer_sha256"]) == 64
    assert load(llama_dir).identity["weights_sha256"] == ident["weights_sha256"]
    h16 = load(llama_dir, device="cpu", dtype="bfloat16")
    assert h16.dtype == torch.bfloat16
    assert h16.read(h16.tokenize(["<A> 1 + 2 ="]), "resid_post.1")["resid_post.1"].dtype == torch.bfloat16
    import inspect

    assert inspect.signature(load).parameters["trust_remote_code"].default is False


def test_missing_dir_and_pickle_weights_are_refused(tmp_path, tok, llama_dir):
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "nope")
    bad = tmp_path / "pickled"
    bad.mkdir()
    torch.save({"w": torch.zeros(1)}, bad / "pytorch_model.bin")
    (bad / "config.json").write_text((llama_dir / "config.json").read_text())
    with pytest.raises(UnsafeWeightsError, match="pickle"):
        load(bad)
    pt = tmp_path / "pt"
    pt.mkdir()
    torch.save({}, pt / "model.pt")
    with pytest.raises(UnsafeWeightsError):
        load(pt)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no safetensors"):
        load(empty)
    # no tokenizer next to the weights → a hint to pass tokenizer=
    from mixprobe.organisms.configs import tiny_model

    notok = tmp_path / "notok"
    tiny_model("llama", vocab_size=len(tok)).save_pretrained(notok)
    with pytest.raises(CheckpointError, match="tokenizer"):
        load(notok)
    assert load(notok, tokenizer=tok).backend == "hf"
    with pytest.raises(DataError, match="tokenizer"):
        load(tiny_model("llama", vocab_size=len(tok)))
    with pytest.raises(DataError, match="backend"):
        load(llama_dir, backend="jax")


def test_site_and_position_errors(llama_dir):
    h = load(llama_dir, device="cpu")
    b = h.tokenize(["<A> 1 + 2 =", "<B> 3 ="])
    with pytest.raises(SiteError, match="unknown site"):
        h.read(b, "resid_mid.0")
    with pytest.raises(SiteError, match="out of range"):
        h.read(b, "resid_post.2")
    with pytest.raises(SiteError, match="no layer"):
        Site.parse("embed.0")
    with pytest.raises(SiteError, match="no sites"):
        parse_sites([], 2)
    with pytest.raises(SiteError, match="out of range"):
        with h.intervene({"mlp_out.5": lambda a: a}):
            pass
    with pytest.raises(SiteError, match="shape"):
        with h.intervene({"mlp_out.0": lambda a: a[:, :1]}):
            h.logits(b)
    with pytest.raises(PositionError, match="mode_token"):
        h.read(b, "embed", "mode_token")
    with pytest.raises(PositionError, match="outside"):
        h.read(b, "embed", [4])  # row 1 has only 4 real tokens ([BOS] <B> 3 =)
    with pytest.raises(PositionError, match="same"):
        h.read(b, "embed", torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]]).bool())


def test_positions_resolve_from_mask(llama_dir):
    h = load(llama_dir, device="cpu")
    b = h.tokenize(["<A> 1 + 2 =", "<B> 3 ="], completions=[" m1 3", " m2 4"])
    assert b.prompt_lengths.tolist() == [6, 4]
    full = h.read(b, "embed", "all")["embed"]
    first = b.attention_mask.float().argmax(1)
    mode = h.read(b, "embed", "mode_token")["embed"]
    for i in range(2):
        torch.testing.assert_close(mode[i, 0], full[i, int(first[i] + b.prompt_lengths[i])])
    idx = h.read(b, "embed", [0, -1])["embed"]  # first real token, last prompt token
    last = h.read(b, "embed", "last_prompt")["embed"]
    torch.testing.assert_close(idx[:, 1], last[:, 0])
    torch.testing.assert_close(idx[1, 0], full[1, int(first[1])])
    mask = b.attention_mask.bool() & (torch.arange(b.input_ids.shape[1]) >= b.input_ids.shape[1] - 2)
    torch.testing.assert_close(h.read(b, "embed", mask)["embed"], full[:, -2:])
    tok_m1 = h.tokenizer.convert_tokens_to_ids("m1")
    assert int(b.input_ids[0, int(first[0] + b.prompt_lengths[0])]) == tok_m1


def test_peft_adapter_unmerged_and_merged_agree(tmp_path, llama_dir, tok):
    from peft import LoraConfig, get_peft_model

    from mixprobe.organisms.configs import tiny_model

    base = tiny_model("llama", vocab_size=len(tok), seed=3)
    pm = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                         init_lora_weights=False))
    adir = tmp_path / "adapter"
    pm.save_pretrained(adir)
    cfg = json.loads((adir / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(llama_dir)
    (adir / "adapter_config.json").write_text(json.dumps(cfg))
    assert (adir / "adapter_model.safetensors").exists()

    h = load(adir, device="cpu")
    assert h.backend == "peft"
    from peft.tuners.lora import LoraLayer

    assert any(isinstance(m, LoraLayer) for m in h.model.modules()), "the adapter must stay unmerged"
    merged = load(adir, device="cpu", merge_adapter=True)
    assert not any(isinstance(m, LoraLayer) for m in merged.model.modules())
    plain = load(llama_dir, device="cpu")
    b = h.tokenize(["<A> 1 + 2 =", "<B> 3 ="])
    sites = ["resid_post.*", "attn_out.0", "mlp_out.1"]
    a, m, p = h.read(b, sites, "all"), merged.read(b, sites, "all"), plain.read(b, sites, "all")
    real = b.attention_mask.bool()
    for s in a:
        torch.testing.assert_close(a[s][real], m[s][real], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a["resid_post.1"][real], p["resid_post.1"][real], atol=1e-3)  # the adapter acts
    tl = load(adir, backend="transformer_lens", device="cpu")  # TL has no PEFT: merged
    torch.testing.assert_close(tl.read(b, sites, "all", via="backend")["resid_post.1"][real],
                               a["resid_post.1"][real], atol=1e-5, rtol=1e-5)
    nn_ = load(adir, backend="nnsight", device="cpu")  # nnsight: unmerged
    assert any(isinstance(x, LoraLayer) for x in nn_.model.modules())
    torch.testing.assert_close(nn_.read(b, sites, "all", via="backend")["mlp_out.1"][real],
                               a["mlp_out.1"][real], atol=1e-5, rtol=1e-5)
    # in-memory PeftModel → peft backend; identity includes the adapter weights
    hm = load(pm, tokenizer=tok, device="cpu")
    assert hm.backend == "peft" and hm.identity["weights_sha256"] != plain.identity["weights_sha256"]
    # an adapter whose base cannot be found says what to do
    cfg["base_model_name_or_path"] = "some-org/some-hub-model"
    (adir / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="base="):
        load(adir)
    assert load(adir, base=str(llama_dir), device="cpu").backend == "peft"


def test_wrap_existing_bridge_and_nnsight_models(tok):
    from mixprobe.models.backends.nnsight_trace import make_nnsight
    from mixprobe.models.backends.tlens import make_bridge
    from mixprobe.organisms.configs import tiny_model

    br = make_bridge(tiny_model("qwen2", vocab_size=len(tok), seed=1), tok)
    h = load(br)
    assert h.backend == "transformer_lens" and h.wrapper is br and h.n_layers == 2
    lm = make_nnsight(tiny_model("gpt2", vocab_size=len(tok), seed=1), tok)
    h2 = load(lm)
    assert h2.backend == "nnsight" and h2.wrapper is lm
    b = h2.tokenize(["<A> 1 + 2 ="])
    torch.testing.assert_close(h2.read(b, "resid_post.1", via="backend")["resid_post.1"],
                               h2.read(b, "resid_post.1")["resid_post.1"])
    assert isinstance(load(h2), ModelHandle)


def test_load_series_manifest(tmp_path, llama_dir):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    os.symlink(llama_dir, run / "checkpoints" / "sft-000010")
    mf = {"format": "mixprobe.series/1", "organism": "tag_mixture", "organism_config": {}, "seed": 0,
          "checkpoints": [{"name": "sft-000010", "phase": "sft", "step": 10, "path": "checkpoints/sft-000010",
                           "metrics": {"acc": 0.5}}]}
    (run / "series.json").write_text(json.dumps(mf))
    s = load_series(run)
    assert s.names() == ["sft-000010"] and s.paths()[0] == (run / "checkpoints" / "sft-000010").resolve()
    assert s.checkpoints[0].metrics == {"acc": 0.5} and s.raw["organism"] == "tag_mixture"
    with pytest.raises(CheckpointError, match="series.json"):
        load_series(tmp_path)
    (run / "series.json").write_text("{bad")
    with pytest.raises(CheckpointError, match="JSON"):
        load_series(run)
    (run / "series.json").write_text(json.dumps({**mf, "format": "other/9"}))
    with pytest.raises(CheckpointError, match="format"):
        load_series(run)


def test_trainer_output_dirs_become_a_series(tmp_path, llama_dir):
    from mixprobe.models import trainer_series

    sft, rl = tmp_path / "sft", tmp_path / "grpo"
    for out, steps in ((sft, (20, 5, 10)), (rl, (100,))):
        out.mkdir()
        for k in steps:
            os.symlink(llama_dir, out / f"checkpoint-{k}")
    (sft / "checkpoint-x").mkdir()                       # not a checkpoint folder: ignored
    s = trainer_series({"sft": sft, "rl": rl})
    assert s.names() == ["sft-000005", "sft-000010", "sft-000020", "rl-000100"]   # by step, phases in order
    assert [c.phase for c in s.checkpoints] == ["sft"] * 3 + ["rl"]
    one = load_series(sft)                               # no series.json: read as a trainer output_dir
    assert [c.step for c in one.checkpoints] == [5, 10, 20] and one.paths() == s.paths()[:3]
    h = load(one.paths()[-1], device="cpu")
    assert h.n_layers == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="save_steps"):
        trainer_series({"sft": tmp_path / "empty"})
    with pytest.raises(CheckpointError, match="does not exist"):
        trainer_series({"sft": tmp_path / "nope"})
    with pytest.raises(CheckpointError, match="output_dir"):
        load_series(tmp_path / "empty")

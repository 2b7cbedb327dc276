"""CaptureCallback: a tiny trl SFTTrainer run yields its activation series at every checkpoint save."""
from __future__ import annotations

import os
import warnings

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_sft_run_captures_every_save(tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from mixprobe.capture.callback import CaptureCallback
    from mixprobe.capture.store import ActivationStore
    from mixprobe.models.handle import ModelHandle
    from mixprobe.organisms.configs import tiny_model
    from mixprobe.organisms.tag_mixture import TagMixture
    from mixprobe.organisms.tokenizer import build_word_tokenizer

    org = TagMixture()
    tok = build_word_tokenizer(org.vocabulary())
    model = tiny_model("llama", vocab_size=len(tok), seed=0)
    train = org.sft_rows(64, seed=0)
    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in train])
    probe_rows = org.prompt_set()[:24]
    cb = CaptureCallback(tmp_path / "acts", probe_rows, ["resid_post.*", "embed"], "last_prompt", batch_size=8)
    cfg = SFTConfig(output_dir=str(tmp_path / "out"), max_steps=4, per_device_train_batch_size=8, learning_rate=1e-2,
                    save_strategy="steps", save_steps=2, save_only_model=True, report_to="none", use_cpu=True,
                    bf16=False, fp16=False, max_length=32, disable_tqdm=True, logging_steps=100, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[cb])
        trainer.train()
    assert cb.captured == ["checkpoint-2", "checkpoint-4"]
    st = ActivationStore(tmp_path / "acts")
    assert st.checkpoints == ["checkpoint-2", "checkpoint-4"] and all(st.complete(c) for c in st.checkpoints)
    assert st.labels("tag").tolist() == [r["tag"] for r in probe_rows]
    assert st.manifest["checkpoints"]["checkpoint-4"]["identity"]["path"].endswith("checkpoint-4")
    a2, a4 = st.array("checkpoint-2", "resid_post.1"), st.array("checkpoint-4", "resid_post.1")
    assert a2.shape == (24, 1, 64) and not np.allclose(a2, a4)  # training moved the activations
    # the last capture equals reading the saved final checkpoint
    from mixprobe.models.loading import load

    h = load(tmp_path / "out" / "checkpoint-4", device="cpu", tokenizer=tok)
    ref = h.read(h.tokenize([r["prompt"] for r in probe_rows]), "resid_post.1")["resid_post.1"]
    np.testing.assert_allclose(a4, ref.numpy(), atol=1e-5)
    assert st.manifest["checkpoints"]["checkpoint-4"]["identity"]["weights_sha256"] == \
        ModelHandle(trainer.model, tok).identity["weights_sha256"]
    # on_save restores the model's training mode (the trainer keeps training after a save)
    from types import SimpleNamespace

    m = tiny_model("llama", vocab_size=len(tok), seed=5).train()
    cb.on_save(SimpleNamespace(output_dir=str(tmp_path / "out")), SimpleNamespace(global_step=99,
               is_world_process_zero=True), None, model=m, processing_class=tok)
    assert m.training and ActivationStore(tmp_path / "acts").checkpoints[-1] == "checkpoint-99"

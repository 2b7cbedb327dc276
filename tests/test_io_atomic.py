"""The one atomic writer: a failed write leaves the old file and no temp file behind."""
from __future__ import annotations

import pytest

from mixprobe.io import atomic_path, atomic_write_bytes, atomic_write_text


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]
    atomic_write_bytes(target, [b"new ", b"content"])       # chunks
    assert target.read_text() == "new content"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_library_writers_go_through_a_temp_path(tmp_path):
    """safetensors writes the file itself: it gets a temp path in the same folder, renamed only on success."""
    import torch
    from safetensors.torch import load_file, save_file

    target = tmp_path / "v.safetensors"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".v.safetensors.") and not target.exists()
        save_file({"x": torch.ones(3)}, str(tmp))
    assert load_file(str(target))["x"].sum().item() == 3.0

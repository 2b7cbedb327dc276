"""The Ray engine's plumbing: engine names, clear errors (no Ray, no cluster at the address), lazy import, the CLI."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mixprobe.distributed import RayEngine, resolve_engine, split
from mixprobe.errors import DataError, DistributedError

runner = CliRunner()


def test_engine_names():
    assert resolve_engine("local") is None and resolve_engine(None) is None
    assert resolve_engine("ray", "head:6379") == RayEngine(address="head:6379")
    assert resolve_engine(RayEngine(chunk=4), "h:1") == RayEngine(address="h:1", chunk=4)
    with pytest.raises(DataError, match="engine must be one of"):
        resolve_engine("spark")
    with pytest.raises(DataError, match="engine='ray'"):
        resolve_engine("local", "head:6379")
    with pytest.raises(DataError, match="chunk"):
        RayEngine(chunk=0)
    assert split(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert split(list(range(7)), size=4) == [[0, 1, 2, 3], [4, 5, 6]] and split([], 3) == []


def test_import_mixprobe_does_not_import_ray():
    code = "import sys, mixprobe, mixprobe.distributed; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"


def test_without_ray_installed_the_error_says_how_to_install_it(monkeypatch, run_dir, rows, tmp_path):
    from mixprobe.capture import capture

    monkeypatch.setitem(sys.modules, "ray", None)   # `import ray` raises ImportError
    with pytest.raises(DistributedError, match=r"pip install 'mixprobe\[ray\]'"):
        capture(run_dir, rows, "embed", store=tmp_path / "s", engine="ray", progress=False)
    assert not (tmp_path / "s").exists()            # nothing was created for a capture that cannot run


def test_an_address_nothing_answers_at_is_a_clear_error(ray_cluster, run_dir, rows, tmp_path):
    from mixprobe.capture import capture

    with pytest.raises(DistributedError, match="no Ray cluster answers at 127.0.0.1:9"):
        capture(run_dir, rows, "embed", store=tmp_path / "s", engine="ray", address="127.0.0.1:9", progress=False)
    with pytest.raises(DistributedError, match="cannot read Ray address"):
        capture(run_dir, rows, "embed", store=tmp_path / "s", engine="ray", address="nonsense", progress=False)


def _files(path: Path) -> dict:
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file()}


def test_cli_capture_with_the_ray_engine(ray_cluster, run_dir, tmp_path):
    from mixprobe.cli import app

    args = ["capture", str(run_dir), "--sites", "resid_post.1,embed", "--batch-size", "8"]
    r = runner.invoke(app, [*args, "--store", str(tmp_path / "local")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*args, "--store", str(tmp_path / "ray"), "--engine", "ray"])
    assert r.exit_code == 0, r.output
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    r = runner.invoke(app, [*args, "--store", str(tmp_path / "x"), "--engine", "ray", "--address", "127.0.0.1:9"])
    assert r.exit_code == 2 and "DistributedError" in r.output and "Traceback" not in r.output, r.output
    r = runner.invoke(app, [*args, "--store", str(tmp_path / "x"), "--engine", "spark"])
    assert r.exit_code == 2, r.output
    for cmd in ("capture", "probe", "patch"):
        out = runner.invoke(app, [cmd, "--help"]).output
        assert "--engine" in out and "--address" in out, cmd

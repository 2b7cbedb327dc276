"""``import mixprobe`` is cheap and exposes the surface the README and docs use."""
from __future__ import annotations

import subprocess
import sys

import mixprobe


def test_every_public_name_resolves():
    for name in mixprobe.__all__:
        assert getattr(mixprobe, name) is not None, name
    assert mixprobe.assess is __import__("mixprobe.mixture.verdict", fromlist=["assess"]).assess


def test_unknown_name_is_an_attribute_error():
    try:
        mixprobe.no_such_thing  # noqa: B018
    except AttributeError as e:
        assert "no_such_thing" in str(e)
    else:
        raise AssertionError("expected AttributeError")


def test_import_loads_no_heavy_dependency():
    code = ("import sys, time; t = time.perf_counter(); import mixprobe; dt = time.perf_counter() - t; "
            "heavy = [m for m in ('torch', 'transformers', 'trl', 'numpy', 'sklearn', 'ray') if m in sys.modules]; "
            "print(heavy, dt)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy, _ = out.rsplit(" ", 1)
    assert heavy.strip() == "[]", out

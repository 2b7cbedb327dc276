"""The HTML report renders in a real browser: every figure decodes in headless Chromium.

Skipped (with the reason) where no Chromium is installed; `make test` installs the Debian package when it can.
"""
from __future__ import annotations

import json

import pytest

from mixprobe.report.browser import figures_loaded, find_chromium, screenshot
from mixprobe.report.page import Section, write_report

needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="no Chromium (Debian package `chromium`)")


@needs_chromium
def test_browser_check_tells_a_broken_figure_from_a_good_one(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    broken = "<img alt='broken' src='data:image/png;base64,iVBORw0KGgoAAAA'>"   # truncated PNG
    page = write_report([Section("good", figure=fig), Section("bad", html_extra=broken)], tmp_path, {})
    assert figures_loaded(page) == (1, 2)


@pytest.mark.slow
@needs_chromium
def test_run_report_loads_with_every_figure_visible(organism_run, tmp_path):
    from mixprobe.report.run_report import build_run_report

    page = build_run_report(organism_run.run_dir, tmp_path / "rep")
    decoded, total = figures_loaded(page)
    data = json.loads(page.with_suffix(".json").read_text())
    # behaviour curves + probe layer sweep + gate readout + steering dose-response + patching heatmap
    assert total >= 5, f"only {total} figures; report keys {sorted(data)}"
    assert decoded == total
    png = screenshot(page, tmp_path / "report.png")
    from PIL import Image

    img = Image.open(png).convert("L")
    assert img.size[0] >= 1000
    # not a blank page: a real render has many distinct grey levels
    assert len(set(img.getdata())) > 50

"""Open a report in headless Chromium: check that every figure rendered, and take a screenshot.

Problem: an HTML report can be valid markup and still show broken images (a truncated data URI, a PNG the
browser rejects); only a real browser tells.
Mechanism: :func:`render_html` puts a tiny script in every report that, once the page has loaded, writes
``data-figures="<decoded>/<total>"`` on ``<body>`` (an image counts as decoded when ``complete`` and
``naturalWidth > 0``). :func:`figures_loaded` runs ``chromium --headless --dump-dom`` on the file and reads that
attribute back; :func:`screenshot` writes a full-page PNG. Chromium is started with the flags that work offline
(no background networking, no first-run, a fresh profile).

Example::

    from mixprobe.report.browser import figures_loaded, screenshot
    decoded, total = figures_loaded("runs/demo/report/report.html")   # e.g. (4, 4)
    screenshot("runs/demo/report/report.html", "report.png")

Constraints: needs a Chromium binary (Debian package ``chromium``; or set ``$MIXPROBE_CHROMIUM``);
:func:`find_chromium` returns None when there is none.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from mixprobe._check import checked
from mixprobe.errors import MixprobeError

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=5000")


class BrowserError(MixprobeError):
    """Chromium is missing or failed on a page."""


@checked
def find_chromium() -> str | None:
    """Path of a Chromium binary ($MIXPROBE_CHROMIUM, then chromium / chromium-browser / google-chrome on PATH)."""
    env = os.environ.get("MIXPROBE_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise BrowserError("no Chromium found; install the Debian package `chromium` or set $MIXPROBE_CHROMIUM")
    with tempfile.TemporaryDirectory(prefix="mixprobe-chromium-") as profile:
        cmd = [exe, *FLAGS, f"--user-data-dir={profile}", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise BrowserError(f"chromium exited with {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return proc


@checked
def figures_loaded(html_path: str | os.PathLike, *, timeout: float = 60) -> tuple[int, int]:
    """(decoded, total) images of the report at ``html_path``, as Chromium saw them after the page loaded."""
    url = Path(html_path).resolve().as_uri()
    dom = _run(["--dump-dom", url], timeout).stdout
    m = re.search(r'data-figures="(\d+)/(\d+)"', dom)
    if not m:
        raise BrowserError("the page did not report its figures (not a mixprobe report, or scripts did not run)")
    return int(m.group(1)), int(m.group(2))


@checked
def screenshot(html_path: str | os.PathLike, png_path: str | os.PathLike, *, width: int = 1200,
               height: int = 2400, timeout: float = 60) -> Path:
    """Write a PNG of the page (``width`` × ``height`` CSS pixels) and return its path."""
    out = Path(png_path).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    _run([f"--screenshot={out}", f"--window-size={width},{height}", Path(html_path).resolve().as_uri()], timeout)
    if not out.exists() or out.stat().st_size == 0:
        raise BrowserError(f"chromium wrote no screenshot at {out}")
    return out

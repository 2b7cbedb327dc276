# ruff: noqa: E501 - the page's markdown table rows are one line each
"""Generate docs/reliability.md from the reliability battery (``python docs/build_reliability.py``).

Runs every case of ``tests/robustness/cases.py`` in a scratch folder and writes the error each one gives into the
page's tables; the prose around them is below. ``tests/robustness/test_bad_inputs.py`` checks the page lists every
case, so a new case fails CI until the page is regenerated.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent

INTRO = """# Reliability: bad input gets a named error that says the fix

Every public entry point refuses bad input loudly. The error is a `mixprobe.errors.MixprobeError` subclass, and the
message names the problem and the fix; the CLI prints it as one line and exits with code 2. Where it applies, the
subclass also derives from the built-in you would expect (`DataError` and `ConfigError` are `ValueError`s,
`ArgumentError` a `TypeError`, `NotFoundError` a `KeyError`, `OutOfRangeError` an `IndexError`, `WriteError` an
`OSError`), so existing `except ValueError` code keeps working. Nothing is half-written:

- stores, checkpoints, manifests, reports, figures and caches are written to a temporary name and renamed into place;
  a write the file system refuses (disk full, quota, read-only) is a `WriteError` and leaves the previous file as it
  was;
- a failed command leaves no new file behind, and deletes nothing.

This page has five parts: the battery of bad inputs (two tables), argument checking of every public function,
`kill -9` at every stage, property-based tests, and determinism. All of it runs in CI (`tests/robustness/`,
`tests/train/test_kill_resume.py`, `tests/capture/test_capture_resume_kill.py`, `tests/distributed/`).

The battery is `tests/robustness/` (`cases.py` holds the table, and CI runs every row). The message column is what
the error said when this page was generated (`python docs/build_reliability.py`); paths are shortened to `…/name`.
A static test (`tests/robustness/test_no_raw_raises.py`) keeps raw `raise TypeError/ValueError/KeyError/IndexError/
RuntimeError` out of the package.
"""

CLI_INTRO = """## Command line

Each of these exits with code 2 and prints one line. The folders the command was given are left as they were.
"""

REST = """## Every public function checks its arguments

{checked}

## `kill -9` at every stage

A process can die at any instant (out of memory, a pre-empted node, Ctrl-C twice). At every instant the folders it
writes hold only whole files, the manifest lists only complete items, and a rerun continues where it stopped:

| stage | what a kill leaves | how it continues | tested by |
|---|---|---|---|
| SFT (`mixprobe train`) | `series.json` lists only complete checkpoints and marks the phase `running`; the trainer's scratch folder holds at most one *marked* full checkpoint (weights, optimizer, scheduler, RNG state) | `mixprobe train CONFIG --out RUN --resume` (or `train_sft(..., resume=True)`) resumes with trl's `resume_from_checkpoint`; the checkpoints end **byte-identical** to an uninterrupted run | `tests/train/test_kill_resume.py` |
| GRPO | the same, for the `rl` phase; SFT is kept, not redone | the same command; byte-identical to an uninterrupted run | `tests/train/test_kill_resume.py` |
| a kill during the trainer's own save | a scratch checkpoint without the `mixprobe-complete` marker | never resumed from, whatever files it holds; the last marked one is used | `tests/train/test_kill_resume.py` |
| capture | complete shards, each checked against the manifest's sha256; a temp file | rerun the same command; complete checkpoints are skipped, the store ends identical to a clean run | `tests/capture/test_capture_resume_kill.py` |
| capture on Ray (driver or worker killed) | the same | rerun the same command | `tests/distributed/` |
| report writing | whole files only: `report.json` is written before `report.html`, each atomically; a figure is never half-written (a `.name.*.tmp` file may be left) | rerun `mixprobe report`; a `report.html` newer than the kill means the report finished | `tests/train/test_kill_resume.py` |

Analysis refuses a killed run: `mixprobe capture|verdict|report|probe|steer` on a run with an unfinished phase exit
with a `CheckpointError` that says to resume it (`Series.check_finished()` in Python; `Series.unfinished()` lists the
phases). Training into a killed run without `--resume` or `--overwrite` is refused too, and `--resume` with another
config than the run was started with is refused, naming the keys that differ.

The trainer's optimizer and RNG state are torch pickles written by the run itself; transformers reads them with
`torch.load(weights_only=True)`. The series checkpoints hold safetensors only.

## Property-based tests

`tests/robustness/test_properties.py` (hypothesis, derandomized, so CI is reproducible) generates inputs instead of
listing them:

- every valid site and position spec parses, and its printed form parses back to the same value; positions never
  resolve to a padding token;
- a valid training config loads back equal from its dict, its JSON and its TOML;
- arbitrary text, wrong types and near-misses of each grammar give a named `MixprobeError`, never another exception;
- unknown config keys at any level, NaN, wrong types and out-of-range layers are rejected with the key or the layer
  count named;
- broken task definitions, and user recognisers or scorers that raise or return junk, are `TaskError`s naming the
  function; preference pairs with bad labels, lengths or fields are named with their index.

## Determinism

On one machine, with the same torch and the same seed, results are bit-identical:

- within a process (`tests/train/test_determinism.py`: checkpoints, probe weights, verdict JSON);
- across processes with different `PYTHONHASHSEED` (`tests/robustness/test_determinism.py`): probe weights, the
  steering vector and steered logits, seeded sampling, patching tables, verdict JSON; each with a control that
  changes the bytes (another seed, another checkpoint), so the comparison is not vacuous;
- across a kill and a resume (above).

Across CPUs, BLAS kernels or torch versions they are not: floating-point sums differ, and small trained organisms can
end differently at the seed level. That is why every series records its environment, and why the project's
statistical claims are checked on many seeds rather than on one machine's bytes.
"""


def _short(text: str, scratch: Path) -> str:
    text = text.replace(str(scratch.resolve()), "…").replace(str(scratch), "…")
    text = re.sub(r"…/(?:[^\s/]+/)*([^\s/]+)", r"…/\1", text)
    return text.replace("|", "\\|").replace("\n", " ")


def render(checked_text: str) -> str:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from typer.testing import CliRunner

    from mixprobe.cli import app
    from tests.robustness.cases import CASES, CLI_CASES

    out = [INTRO, "## Python API", "", "| case | area | bad input | the error it gives |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as d:
        scratch = Path(d)
        for c in CASES:
            try:
                c.run(scratch)
            except Exception as e:  # noqa: BLE001 - the page shows whatever the case raised
                msg = f"`{type(e).__name__}`: {_short(str(e), scratch)}"
            else:
                msg = "**no error**"
            out.append(f"| `{c.id}` | {c.area} | {c.what} | {msg} |")
        out += ["", CLI_INTRO, "| case | bad input | exit | output |", "|---|---|---|---|"]
        for c in CLI_CASES:
            r = CliRunner().invoke(app, c.args(scratch))
            text = " ".join(ln.strip() for ln in r.output.splitlines() if ln.strip())
            out.append(f"| `{c.id}` | {c.what} | {r.exit_code} | {_short(text, scratch)} |")
    return "\n".join(out) + "\n\n" + REST.format(checked=checked_text.strip())


CHECKED = """
Every public function, and the constructors users call themselves (the organisms, `ActivationStore`, `Reader`,
`RewardSettings`), checks the arguments it is passed against its type annotations, with beartype, before doing any
work (`mixprobe._check.checked`). A wrong type raises `ArgumentError` (a `MixprobeError` and a `TypeError`) naming
the function, the parameter, the expected type, what was passed and what to pass instead; every wrong argument is
listed at once. Numbers are read loosely: an `int`, a numpy scalar or a 0-d tensor is a `float`; a numpy array or
tensor may stand where a `Sequence` goes, a list where a variable-length tuple goes; passing a parameter's default
explicitly is always accepted. The check costs 0.4–1.8 µs a call (`benchmarks/checked.py`, plain beside checked in one
run: `benchmarks/results/checked.md`); one
function called inside nnsight traces (`get_path`) checks by hand instead, because tracing makes every checked line
expensive there.

What it does not guarantee: parameters annotated `Any` or left unannotated (models, tokenizers and tasks passed by
duck type) accept anything and are checked by the function itself where it matters; containers are checked by their
type and one item, not every item; return values are not checked, nor values within a type (ranges, shapes, NaN):
those are the `DataError`/`ShapeError`/`SiteError` checks the functions make themselves.
`tests/robustness/test_public_sweep.py` calls every public function with junk arguments and with near misses (a str
where an int goes) and asserts that only named errors come out.
"""

if __name__ == "__main__":
    page = render(CHECKED)
    (HERE / "reliability.md").write_text(page)
    print("wrote", HERE / "reliability.md", f"({page.count(chr(10) + '| `')} cases)")

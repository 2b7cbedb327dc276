"""Cost of ``import mixprobe`` beside ``import torch`` and the first use of a public name, in one run.

Usage: ``python benchmarks/import_time.py`` → ``benchmarks/results/import.md``. Each case is a fresh interpreter
(``python -X importtime`` would also count the interpreter's start-up; here the script times the import itself);
median of 7 runs, after one warm-up run that fills the OS file cache.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

CASES = {
    "import mixprobe": "import mixprobe",
    "import torch": "import torch",
    "import mixprobe; mixprobe.assess (first use)": "import mixprobe; mixprobe.assess",
}


def once(stmt: str) -> float:
    code = f"import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    rows = {}
    for name, stmt in CASES.items():
        once(stmt)
        rows[name] = statistics.median(once(stmt) for _ in range(7))
    base = rows["import torch"]
    lines = ["# Import cost", "", f"Python {sys.version.split()[0]}; median of 7 fresh interpreters each, one run.", "",
             "| statement | seconds | × `import torch` |", "|---|---|---|"]
    lines += [f"| `{k}` | {v:.4f} | {v / base:.3f} |" for k, v in rows.items()]
    out = Path(__file__).parent / "results" / "import.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

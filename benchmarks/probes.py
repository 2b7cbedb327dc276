"""Benchmark: logistic probes on every layer — batched mixprobe fit vs a loop of scikit-learn fits.

Both sides fit the same L2 logistic probe (same ``C``, same objective: ``C·Σ logloss + ½‖w‖²``, unpenalised
intercept) on the same synthetic residual-stream captures, side by side in one process, and are scored on the same
held-out rows. The captures imitate a layer sweep: ``n_sites`` layers × ``n`` prompts × ``d`` features per layer,
unscaled, with a low-rank anisotropic covariance, two "massive activation" dimensions with large means, and a
class signal whose strength grows with depth (held-out accuracy from near chance at the first layer to ~100 % at
the last), so the accuracy curve is a realistic one rather than flat.

- scikit-learn: ``LogisticRegression(C=C, max_iter=10000)`` (default L-BFGS, float64) in a Python loop over sites;
  as a second, stronger reference the same loop with ``solver="newton-cholesky"``.
- mixprobe: :func:`mixprobe.probes.fit_probes` (all sites in one batched Newton solve, float32, CPU).

Reported: wall time of each (median of ``--repeats`` interleaved runs), ratios, and the largest held-out accuracy
difference across sites in points (mixprobe vs each scikit-learn solver).

Run:  .venv/bin/python benchmarks/probes.py [--quick] [--repeats 1]
Writes benchmarks/results/probes.json and probes.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from mixprobe.io import atomic_write_json
from mixprobe.probes import fit_probes, train_test_indices

RESULTS = Path(__file__).parent / "results"


def make_captures(n_sites: int, n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``X[n_sites, n, d]`` float32 and labels ``y[n]``: anisotropic, unscaled, signal growing with depth."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = np.empty((n_sites, n, d), dtype=np.float32)
    rank = 32
    for s in range(n_sites):
        A = rng.normal(size=(rank, d)) * (np.linspace(3.0, 0.3, rank)[:, None])
        scales = np.exp(rng.normal(0, 0.5, d))
        mean = rng.normal(0, 1.0, d)
        mean[:2] = (20.0, -15.0)                                  # massive-activation dimensions
        x = rng.normal(size=(n, rank)) @ A + rng.normal(size=(n, d)) * scales + mean
        x[:, :2] += rng.normal(0, 3.0, size=(n, 2))
        direction = rng.normal(size=d)
        direction /= np.linalg.norm(direction)
        strength = 0.15 + 2.5 * s / max(1, n_sites - 1)           # separation grows with depth
        x += np.outer(2 * y - 1, direction) * strength
        X[s] = x
    return X, y


def sklearn_loop(X, y, tr, te, C, solver):
    accs, iters = [], []
    for s in range(X.shape[0]):
        m = LogisticRegression(C=C, max_iter=10000, solver=solver).fit(X[s][tr], y[tr])
        accs.append(float(m.score(X[s][te], y[te])))
        iters.append(int(np.max(m.n_iter_)))
    return accs, iters


def mixprobe_fit(X, y, tr, te, C):
    fits = fit_probes(X[:, tr], y[tr], C=C, dtype="float32")
    accs = [float(fits.probes[s].score(X[int(s)][te], y[te])) for s in fits]
    iters = [int(fits.summary[s]["n_iter"]) for s in fits]
    return accs, iters, all(bool(fits.summary[s]["converged"]) for s in fits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=16)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-newton-cholesky", action="store_true", help="skip the second scikit-learn reference")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for both sides (torch and the BLAS under numpy/scipy); default: all cores")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    threadpool_limits(threads)
    if args.quick:
        args.sites, args.n, args.d = 4, 600, 64
    X, y = make_captures(args.sites, args.n, args.d)
    tr, te = train_test_indices(y, test_size=0.25, seed=0)

    times: dict[str, list[float]] = {"sklearn_lbfgs": [], "sklearn_newton_cholesky": [], "mixprobe": []}
    res: dict[str, tuple] = {}
    for _ in range(args.repeats):  # interleaved
        t = time.perf_counter()
        res["mixprobe"] = mixprobe_fit(X, y, tr, te, args.C)
        times["mixprobe"].append(time.perf_counter() - t)
        t = time.perf_counter()
        res["sklearn_lbfgs"] = sklearn_loop(X, y, tr, te, args.C, "lbfgs")
        times["sklearn_lbfgs"].append(time.perf_counter() - t)
        if not args.no_newton_cholesky:
            t = time.perf_counter()
            res["sklearn_newton_cholesky"] = sklearn_loop(X, y, tr, te, args.C, "newton-cholesky")
            times["sklearn_newton_cholesky"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    acc_mp = np.array(res["mixprobe"][0])
    acc_lb = np.array(res["sklearn_lbfgs"][0])
    gap = float(np.abs(acc_mp - acc_lb).max() * 100)
    out = {
        "benchmark": "logistic probes on every layer: batched mixprobe fit vs a loop of scikit-learn fits",
        "ratios": {"sklearn_vs_mixprobe": med["sklearn_lbfgs"] / med["mixprobe"]},
        "accuracy_gap": gap,
        "accuracy_gap_unit": "points (max over sites of |held-out accuracy difference| x 100)",
        "config": {"n_sites": args.sites, "n_rows": args.n, "n_train": int(tr.size), "n_test": int(te.size),
                   "d": args.d, "C": args.C, "repeats": args.repeats,
                   "mixprobe": "fit_probes(dtype=float32), batched Newton, CPU",
                   "sklearn": "LogisticRegression(C, max_iter=10000), float64, loop over sites"},
        "seconds": med,
        "held_out_accuracy": {"mixprobe": acc_mp.tolist(), "sklearn_lbfgs": acc_lb.tolist()},
        "iterations": {"mixprobe_newton": res["mixprobe"][1], "sklearn_lbfgs": res["sklearn_lbfgs"][1]},
        "mixprobe_all_converged": res["mixprobe"][2],
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "sklearn": sklearn.__version__, "threads_both_sides": threads,
                        "cpu_count": os.cpu_count(), "load_average_1min": os.getloadavg()[0]},
    }
    if "sklearn_newton_cholesky" in res:
        acc_nc = np.array(res["sklearn_newton_cholesky"][0])
        out["ratios"]["sklearn_newton_cholesky_vs_mixprobe"] = med["sklearn_newton_cholesky"] / med["mixprobe"]
        out["accuracy_gap_newton_cholesky"] = float(np.abs(acc_mp - acc_nc).max() * 100)
        out["held_out_accuracy"]["sklearn_newton_cholesky"] = acc_nc.tolist()
        out["iterations"]["sklearn_newton_cholesky"] = res["sklearn_newton_cholesky"][1]
    outdir = Path(args.out)
    name = "probes_quick" if args.quick else "probes"
    atomic_write_json(outdir / f"{name}.json", out)
    lines = [
        "# Probes benchmark: logistic probe on every layer",
        "",
        f"{args.sites} sites × {args.n} rows ({tr.size} train / {te.size} held out) × d={args.d}, C={args.C}, "
        "unscaled synthetic residual captures (anisotropic, two massive dimensions, signal growing with depth); "
        f"CPU, {torch.get_num_threads()} threads, median of {args.repeats} interleaved run(s), same process.",
        "",
        "| method | seconds | ratio vs mixprobe | max held-out accuracy gap vs mixprobe (points) |",
        "|---|---|---|---|",
        f"| mixprobe `fit_probes` (batched Newton, fp32) | {med['mixprobe']:.2f} | 1.0× | — |",
        f"| scikit-learn loop, `lbfgs` (default) | {med['sklearn_lbfgs']:.2f} | "
        f"{out['ratios']['sklearn_vs_mixprobe']:.1f}× | {gap:.2f} |",
    ]
    if "sklearn_newton_cholesky" in res:
        lines.append(f"| scikit-learn loop, `newton-cholesky` | {med['sklearn_newton_cholesky']:.2f} | "
                     f"{out['ratios']['sklearn_newton_cholesky_vs_mixprobe']:.1f}× | "
                     f"{out['accuracy_gap_newton_cholesky']:.2f} |")
    lines += ["", f"Held-out accuracy by site (mixprobe): {', '.join(f'{a:.3f}' for a in acc_mp)}", ""]
    (outdir / f"{name}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()

"""Benchmark how prediction time grows with n: the dense path against the tree.

n training samples and n queries, uniform on the unit square, with a width
h = sqrt(50 / (pi n)) that keeps about 50 training samples within one width
of each query, so a compact kernel's work per query stays constant while
the dense path's grows with n. Contenders, each in a fresh spawned process
(peak RSS is its own):

- ``dense``: ``NadarayaWatsonRegressor(kernel="epanechnikov",
  algorithm="dense")``, every (query, sample) pair with torch.
- ``tree``: the same with ``algorithm="tree"``: a KDTree radius query per
  query, the weights computed exactly over the neighbours found.
- ``tree-gaussian``: the Gaussian with ``algorithm="tree"`` and
  ``truncation=1e-6`` (weights below 1e-6 of a row's largest are dropped:
  a radius of 5.3 widths, about 1,400 samples per query).
- ``knn``: ``KNeighborsRegressor(n_neighbors=50)`` (KDTree), the usual
  neighbour-based alternative, for scale.

``fit`` is outside the clock except where noted; ``predict`` on all n queries
is timed once after a warm-up on 256 queries. A contender is skipped at the
sizes where its time, extrapolated from the previous size by the growth of
its work, would exceed ``--max-seconds``. Also reported: the largest
difference between the tree and the dense predictions where both ran.

Writes ``benchmarks/results/bench_growth.{json,md}`` and the log-log figure
``docs/_static/bench_growth.png`` with each contender's fitted slope.

Usage::

    python benchmarks/bench_growth.py
    python benchmarks/bench_growth.py --sizes 1000 10000 --max-seconds 10
"""

# Authors: the sknw developers
# License: BSD 3 clause

import argparse
import json
import math
import multiprocessing
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np

NEIGHBORS = 50
CONTENDERS = ["dense", "tree", "tree-gaussian", "knn"]
# How each contender's work grows with n (queries x samples it touches).
GROWTH = {"dense": 2.0, "tree": 1.2, "tree-gaussian": 1.2, "knn": 1.2}
N_WARM_UP = 256


def make_data(n, seed):
    rng = np.random.default_rng([seed, n])
    X = rng.uniform(size=(n, 2))
    y = np.sin(6 * X[:, 0]) * np.cos(4 * X[:, 1]) + 0.1 * rng.standard_normal(n)
    queries = rng.uniform(size=(n, 2))
    return X, y, queries


def bandwidth_for(n):
    """The width that holds about NEIGHBORS samples of n per unit area."""
    return math.sqrt(NEIGHBORS / (math.pi * n))


def measure(name, n, seed):
    """Time one contender's predict at size n, in this (fresh) process."""
    from sklearn.neighbors import KNeighborsRegressor

    from sknw import NadarayaWatsonRegressor

    X, y, queries = make_data(n, seed)
    h = bandwidth_for(n)
    if name == "knn":
        model = KNeighborsRegressor(n_neighbors=NEIGHBORS, algorithm="kd_tree")
    elif name == "tree-gaussian":
        model = NadarayaWatsonRegressor(bandwidth=h, algorithm="tree", truncation=1e-6)
    else:
        model = NadarayaWatsonRegressor(
            kernel="epanechnikov", bandwidth=h, algorithm=name
        )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    model.fit(X, y)
    fit_s = time.perf_counter() - start
    model.predict(queries[:N_WARM_UP])
    start = time.perf_counter()
    predictions = model.predict(queries)
    predict_s = time.perf_counter() - start
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "fit_s": fit_s,
        "predict_s": predict_s,
        "peak_rss_increase_mib": (rss_after - rss_before) / 1024,
        "predictions": predictions,
    }


def run_in_fresh_process(*args):
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(measure, *args).result()


def slope(rows, name):
    """Least-squares slope of log(time) against log(n)."""
    points = [(r["n"], r.get("predict_s")) for r in rows if r["contender"] == name]
    points = [(n, t) for n, t in points if t and t > 0]
    if len(points) < 2:
        return None
    n, t = np.log(np.array(points)).T
    return float(np.polyfit(n, t, 1)[0])


def plot(rows, slopes, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    labels = {
        "dense": "sknw dense (epanechnikov)",
        "tree": "sknw tree (epanechnikov)",
        "tree-gaussian": "sknw tree (gaussian, truncation 1e-6)",
        "knn": "KNeighborsRegressor (k=50)",
    }
    for name in CONTENDERS:
        points = [
            (r["n"], r["predict_s"])
            for r in rows
            if r["contender"] == name and r.get("predict_s")
        ]
        if not points:
            continue
        n, t = zip(*points)
        label = labels[name]
        if slopes.get(name) is not None:
            label += f", slope {slopes[name]:.2f}"
        ax.loglog(n, t, "o-", label=label)
    ax.set_xlabel("n (training samples = queries)")
    ax.set_ylabel("predict time (s)")
    ax.set_title(f"Prediction time, about {NEIGHBORS} samples within one width")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1000, 3000, 10000, 30000, 100000, 300000, 1000000],
    )
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output", type=Path, default=Path("benchmarks/results/bench_growth.json")
    )
    parser.add_argument(
        "--figure", type=Path, default=Path("docs/_static/bench_growth.png")
    )
    parser.add_argument(
        "--contenders", nargs="+", choices=CONTENDERS, default=CONTENDERS
    )
    args = parser.parse_args(argv)

    rows = []
    previous = {}
    started = time.perf_counter()
    for n in sorted(args.sizes):
        dense_predictions = None
        for name in args.contenders:
            row = {"n": n, "contender": name, "bandwidth": bandwidth_for(n)}
            last = previous.get(name)
            if last is not None:
                estimate = last["predict_s"] * (n / last["n"]) ** GROWTH[name]
                if estimate > args.max_seconds:
                    row["note"] = f"skipped: about {estimate:.0f} s expected"
                    rows.append(row)
                    print(f"n={n:>8} {name:<14} {row['note']}", flush=True)
                    continue
            result = run_in_fresh_process(name, n, args.seed)
            predictions = result.pop("predictions")
            row.update(result)
            row["pairs_per_s"] = n * n / row["predict_s"]
            if name == "dense":
                dense_predictions = predictions
            elif name == "tree" and dense_predictions is not None:
                row["max_abs_diff_vs_dense"] = float(
                    np.max(np.abs(predictions - dense_predictions))
                )
            previous[name] = row
            rows.append(row)
            print(
                f"n={n:>8} {name:<14} predict {row['predict_s']:8.3f} s, fit "
                f"{row['fit_s']:.3f} s, peak RSS +{row['peak_rss_increase_mib']:.0f} "
                "MiB"
                + (
                    f", max|tree - dense| {row['max_abs_diff_vs_dense']:.1e}"
                    if "max_abs_diff_vs_dense" in row
                    else ""
                ),
                flush=True,
            )
    slopes = {name: slope(rows, name) for name in args.contenders}
    report = {
        "benchmark": "prediction time against n, ~50 samples within one width",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "versions": {
            name: version(name) for name in ("numpy", "scikit-learn", "torch")
        },
        "settings": vars(args)
        | {"output": str(args.output), "figure": str(args.figure)},
        "slopes": slopes,
        "total_seconds": time.perf_counter() - started,
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# bench_growth: {report['date']}, {os.cpu_count()} CPUs",
        "",
        "n training samples = n queries, uniform on the unit square, width "
        f"sqrt({NEIGHBORS} / (pi n)). Slopes of log time against log n: "
        + ", ".join(
            f"{name} {value:.2f}" for name, value in slopes.items() if value is not None
        )
        + ".",
        "",
        "| n | contender | predict s | pairs/s (n²/s) | fit s | peak RSS +MiB | "
        "max abs diff vs dense | note |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:

        def cell(key, spec):
            value = row.get(key)
            return "—" if value is None else format(value, spec)

        lines.append(
            f"| {row['n']} | {row['contender']} | {cell('predict_s', '.3f')} | "
            f"{cell('pairs_per_s', '.3g') if 'pairs_per_s' in row else '—'} | "
            f"{cell('fit_s', '.3f')} | {cell('peak_rss_increase_mib', '.0f')} | "
            f"{cell('max_abs_diff_vs_dense', '.1e')} | {row.get('note', '')} |"
        )
    args.output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(rows, slopes, args.figure)
    print(f"slopes: {slopes}; wrote {args.output}, its .md and {args.figure}")


if __name__ == "__main__":
    main()

"""Benchmark local linear prediction: sknw against its Nadaraya-Watson and statsmodels.

Every (size, dimension) draws the same seeded data: X_train and X_query
standard normal of shape (n, d), y = sum_j sin(X_j) + 0.1 * noise. The kernel
is the Gaussian with the width ``--bandwidth`` (default 0.5) for every feature.

Contenders, all given the same arrays:

- ``sknw-nw``: ``NadarayaWatsonRegressor.predict`` (float64), the local
  constant fit: the reference for the ratio.
- ``sknw-ll``: ``LocalLinearRegressor.predict`` (float64).
- ``sknw-ll-gradient``: ``LocalLinearRegressor.predict_gradient``.
- ``statsmodels-ll``: ``KernelReg(reg_type="ll", bw=[h] * d).fit(X_query)``,
  which gives the fit and the marginal effects together. It is slow, so it
  predicts only the first ``--slow-queries`` queries, and its time is scaled
  to all the queries (the row's ``queries timed`` says so); its fit is the
  accuracy oracle of ``sknw-ll`` on those queries.

Timing: one warm-up call on at most 256 queries, then the best of
``--repeats`` calls of ``time.perf_counter``, the sknw contenders taking turns
within each repeat (with ``torch.cuda.synchronize()``
before each clock read on CUDA). Fits are outside the clock. Memory is not
measured here: the local linear fit adds, per chunk of queries, a product
of the weights with 1 + d + d (d + 1) / 2 + 2 d columns (d = 4: 19) instead of
Nadaraya-Watson's 2, and no block of (queries, samples).

Usage::

    python benchmarks/bench_local_linear.py
    python benchmarks/bench_local_linear.py --sizes 5000 --dims 1 2 --device cuda
"""

# Authors: the sknw developers
# License: BSD 3 clause

import argparse
import json
import os
import platform
import time
import warnings
from datetime import datetime, timezone

import numpy as np
import torch


def make_data(n, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(X).sum(axis=1) + 0.1 * rng.normal(size=n)
    X_query = rng.normal(size=(n, d))
    return X, y, X_query


def best_time(function, repeats, device):
    def sync():
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()

    times = []
    result = None
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        result = function()
        sync()
        times.append(time.perf_counter() - start)
    return min(times), result


def measure(n, d, args):
    from statsmodels.nonparametric.kernel_regression import KernelReg

    from sknw import LocalLinearRegressor, NadarayaWatsonRegressor

    X, y, X_query = make_data(n, d, args.seed)
    bandwidth = args.bandwidth
    rows = []
    nadaraya_watson = NadarayaWatsonRegressor(bandwidth=bandwidth, device=args.device)
    local_linear = LocalLinearRegressor(bandwidth=bandwidth, device=args.device)
    nadaraya_watson.fit(X, y)
    local_linear.fit(X, y)
    contenders = {
        "sknw-nw": lambda Q: nadaraya_watson.predict(Q),
        "sknw-ll": lambda Q: local_linear.predict(Q),
        "sknw-ll-gradient": lambda Q: local_linear.predict_gradient(Q),
    }
    times = {name: np.inf for name in contenders}
    outputs = {}
    for function in contenders.values():
        function(X_query[:256])
    # The contenders take turns within each repeat, so that a change of load
    # on a shared machine falls on all of them alike.
    for _ in range(args.repeats):
        for name, function in contenders.items():
            seconds, outputs[name] = best_time(
                lambda: function(X_query), 1, args.device
            )
            times[name] = min(times[name], seconds)
    n_slow = min(args.slow_queries, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = KernelReg(y, X, var_type="c" * d, reg_type="ll", bw=[bandwidth] * d)
        model.fit(X_query[:8])
        seconds, (mean, effects) = best_time(
            lambda: model.fit(X_query[:n_slow]), 1, "cpu"
        )
    times["statsmodels-ll"] = seconds * n / n_slow
    fit_diff = np.abs(outputs["sknw-ll"][:n_slow] - mean).max()
    gradient_diff = np.abs(outputs["sknw-ll-gradient"][:n_slow] - effects).max()
    for name, seconds in times.items():
        row = {
            "n": n,
            "d": d,
            "contender": name,
            "queries_timed": n_slow if name == "statsmodels-ll" else n,
            "seconds": seconds,
            "ratio_to_nw": seconds / times["sknw-nw"],
            "max_abs_diff_vs_statsmodels": None,
        }
        if name == "sknw-ll":
            row["max_abs_diff_vs_statsmodels"] = float(fit_diff)
        if name == "sknw-ll-gradient":
            row["max_abs_diff_vs_statsmodels"] = float(gradient_diff)
        rows.append(row)
        print(
            f"n={n:>6} d={d} {name:<17} {seconds:9.4f} s "
            f"x{row['ratio_to_nw']:7.2f} of NW",
            flush=True,
        )
    return rows


def versions():
    import sklearn
    import statsmodels

    import sknw

    return {
        "python": platform.python_version(),
        "sknw": sknw.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "statsmodels": statsmodels.__version__,
    }


def markdown(report):
    lines = [
        f"# bench_local_linear: {report['date']}, device {report['device']}, "
        f"{report['cpus']} CPUs",
        "",
        f"Gaussian kernel, bandwidth {report['bandwidth']} per feature, float64, "
        "n_train = n_query = n, best of "
        f"{report['repeats']}; statsmodels timed on its first queries and scaled "
        "to n. 1-minute load average before the run: "
        f"{report['load_average']:.2f}; torch threads: {report['torch_threads']}. "
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items())
        + ".",
        "",
        "| n | d | contender | queries timed | seconds (for n queries) | "
        "ratio to sknw-nw | max abs diff vs statsmodels |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        diff = row["max_abs_diff_vs_statsmodels"]
        lines.append(
            f"| {row['n']} | {row['d']} | {row['contender']} | "
            f"{row['queries_timed']} | {row['seconds']:.4f} | "
            f"{row['ratio_to_nw']:.2f} | "
            + ("—" if diff is None else f"{diff:.1e}")
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bandwidth", type=float, default=0.5)
    parser.add_argument("--slow-queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="JSON path; .md beside it")
    args = parser.parse_args(argv)
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": args.device,
        "cpus": os.cpu_count(),
        "bandwidth": args.bandwidth,
        "repeats": args.repeats,
        "load_average": os.getloadavg()[0],
        "torch_threads": torch.get_num_threads(),
        "versions": versions(),
        "rows": [],
    }
    for n in args.sizes:
        for d in args.dims:
            report["rows"] += measure(n, d, args)
    if args.output:
        with open(args.output, "w") as file:
            json.dump(report, file, indent=1)
        with open(os.path.splitext(args.output)[0] + ".md", "w") as file:
            file.write(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()

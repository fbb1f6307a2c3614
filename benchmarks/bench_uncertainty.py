"""Benchmark the cost of standard errors and jackknife+ intervals.

For each size n and dimension d, seeded data: X_train and X_query uniform on
[0, 5]^d of shape (n, d), y = sum_j (2 sin X_j + X_j^0.8) + 0.5 * noise. One
``NadarayaWatsonRegressor`` (Gaussian, width ``--bandwidth``: a float, or a
rule resolved once on the training data, Scott's by default, and then held
fixed for every contender) is fitted, and each call below predicts at all n
queries, timed as the best of ``--repeats`` rounds after a warm-up, each
round timing every call once:

- ``predict``: the baseline.
- ``leave-one-out residuals``: the pass over the training pairs that the first
  ``return_std`` or ``predict_interval`` after ``fit`` runs once (timed on a
  fresh fit each time).
- ``return_std, noise=constant`` and ``noise=local``: ``predict(X,
  return_std=True)`` once the residuals (and the local noise level) exist.
- ``predict_interval``: jackknife+ at alpha = 0.1, residuals existing; also
  with integer sample weights, which select by sorting.
- ``bootstrap, 200 refits``: the alternative a user would write: 200
  resamples of the training rows, each fitted and predicting at the queries,
  then the standard deviation and the 5% and 95% percentiles. Timed once.
- ``MAPIE jackknife+``: ``CrossConformalRegressor(method="plus",
  cv=LeaveOneOut())``, which refits n times and gives the same intervals,
  only up to ``--mapie-max`` samples, timed once.
- ``local linear: ...``: the same calls of a ``LocalLinearRegressor`` of the
  same kernel and width, their ratios to its own ``predict``.

The table gives seconds and the ratio to ``predict`` in the same run, with
one torch thread by default (``--threads``): on a shared machine, threads that
wait for each other at every pass make small timings erratic. Results
go to ``benchmarks/results/bench_uncertainty.{json,md}``.

Usage::

    python benchmarks/bench_uncertainty.py
    python benchmarks/bench_uncertainty.py --sizes 2000 --dims 1 --device cuda
"""

# Authors: the sknw developers
# License: BSD 3 clause

import argparse
import json
import math
import os
import platform
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from sknw import LocalLinearRegressor, NadarayaWatsonRegressor

RESULTS = Path(__file__).parent / "results"


def make_data(n_samples, n_features, seed=0):
    rng = np.random.default_rng(seed)

    def draw():
        X = rng.uniform(0, 5, size=(n_samples, n_features))
        truth = (2 * np.sin(X) + X**0.8).sum(axis=1)
        return X, truth + 0.5 * rng.normal(size=n_samples)

    X, y = draw()
    queries, _ = draw()
    return X, y, queries


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def once(call, device):
    synchronize(device)
    start = time.perf_counter()
    call()
    synchronize(device)
    return time.perf_counter() - start


def bootstrap(X, y, queries, bandwidth, device, n_refits=200, seed=0):
    rng = np.random.default_rng(seed)
    predictions = np.empty((n_refits, len(queries)))
    for refit in range(n_refits):
        rows = rng.integers(0, len(X), len(X))
        model = NadarayaWatsonRegressor(bandwidth=bandwidth, device=device)
        predictions[refit] = model.fit(X[rows], y[rows]).predict(queries)
    return predictions.std(axis=0), np.percentile(predictions, [5, 95], axis=0)


def mapie_jackknife_plus(X, y, queries, bandwidth, device):
    from mapie.regression import CrossConformalRegressor
    from sklearn.model_selection import LeaveOneOut

    model = NadarayaWatsonRegressor(bandwidth=bandwidth, device=device)
    mapie = CrossConformalRegressor(
        model, confidence_level=0.9, method="plus", cv=LeaveOneOut()
    )
    return mapie.fit_conformalize(X, y).predict_interval(queries)[1][:, :, 0]


def measure(n_samples, n_features, args):
    X, y, queries = make_data(n_samples, n_features)
    device, repeats = args.device, args.repeats
    bandwidth = args.bandwidth
    if bandwidth not in ("scott", "silverman"):
        bandwidth = float(bandwidth)
    model = NadarayaWatsonRegressor(bandwidth=bandwidth, device=device).fit(X, y)
    bandwidth = model.bandwidth_
    model.set_params(bandwidth=bandwidth).fit(X, y)
    rows = []

    def row(name, seconds, note="", baseline="predict"):
        rows.append(
            dict(
                n=n_samples,
                d=n_features,
                bandwidth=float(np.mean(bandwidth)),
                call=name,
                seconds=seconds,
                note=note,
                baseline=baseline,
            )
        )
        print(f"  {name:54s} {seconds:9.4f} s {note}", flush=True)

    weight = np.random.default_rng(1).integers(1, 4, n_samples).astype(float)
    weighted = NadarayaWatsonRegressor(bandwidth=bandwidth, device=device)
    weighted.fit(X, y, sample_weight=weight)
    scratch = NadarayaWatsonRegressor(bandwidth=bandwidth, device=device).fit(X, y)

    local = LocalLinearRegressor(bandwidth=bandwidth, device=device).fit(X, y)
    local_weighted = LocalLinearRegressor(bandwidth=bandwidth, device=device)
    local_weighted.fit(X, y, sample_weight=weight)
    local_scratch = LocalLinearRegressor(bandwidth=bandwidth, device=device).fit(X, y)

    def residuals_once(estimator):
        # What the first return_std or predict_interval after fit computes.
        estimator._uncertainty_cache = {}
        estimator._leave_one_out_terms()

    calls = {
        "predict": lambda: model.predict(queries),
        "leave-one-out residuals (once per fit)": lambda: residuals_once(scratch),
        "return_std, noise=constant": lambda: model.predict(
            queries, return_std=True, noise="constant"
        ),
        "return_std, noise=local": lambda: model.predict(
            queries, return_std=True, noise="local"
        ),
        "predict_interval": lambda: model.predict_interval(queries),
        "predict_interval, sample weights": lambda: weighted.predict_interval(queries),
        "local linear: predict": lambda: local.predict(queries),
        "local linear: leave-one-out residuals (once per fit)": lambda: residuals_once(
            local_scratch
        ),
        "local linear: return_std, noise=constant": lambda: local.predict(
            queries, return_std=True, noise="constant"
        ),
        "local linear: return_std, noise=local": lambda: local.predict(
            queries, return_std=True, noise="local"
        ),
        "local linear: predict_interval": lambda: local.predict_interval(queries),
        "local linear: predict_interval, sample weights": lambda: (
            local_weighted.predict_interval(queries)
        ),
    }
    # Round-robin: each round times every call once, so that the machine's
    # other work weighs on all of them alike; the best round of each counts.
    for call in calls.values():
        call()
    best = dict.fromkeys(calls, math.inf)
    for _ in range(repeats):
        for name, call in calls.items():
            best[name] = min(best[name], once(call, device))
    for name, seconds in best.items():
        local_call = name.startswith("local linear")
        row(
            name, seconds, baseline="local linear: predict" if local_call else "predict"
        )
    row(
        "bootstrap, 200 refits",
        once(lambda: bootstrap(X, y, queries, bandwidth, device), device),
        "one run",
    )
    if n_samples <= args.mapie_max:
        intervals = {}

        def run_mapie():
            intervals["mapie"] = mapie_jackknife_plus(X, y, queries, bandwidth, device)

        row("MAPIE jackknife+ (n refits)", once(run_mapie, device), "one run")
        difference = np.abs(intervals["mapie"] - model.predict_interval(queries)).max()
        rows[-1]["note"] = f"one run; max abs difference to ours {difference:.1e}"
    else:
        row("MAPIE jackknife+ (n refits)", float("nan"), "skipped above --mapie-max")
    baselines = {entry["call"]: entry["seconds"] for entry in rows}
    for entry in rows:
        entry["ratio_to_predict"] = entry["seconds"] / baselines[entry["baseline"]]
    return rows


def write(rows, args, started):
    RESULTS.mkdir(exist_ok=True)
    meta = dict(
        date=started,
        device=args.device,
        machine=platform.processor() or platform.machine(),
        cpus=os.cpu_count(),
        load_average=os.getloadavg()[0],
        bandwidth=args.bandwidth,
        repeats=args.repeats,
        threads=args.threads,
        versions={
            name: version(name) for name in ("numpy", "torch", "scikit-learn", "mapie")
        },
    )
    (RESULTS / "bench_uncertainty.json").write_text(
        json.dumps(dict(meta=meta, rows=rows), indent=2)
    )
    lines = [
        f"# bench_uncertainty: {started}, device {args.device}, "
        f"{meta['cpus']} CPUs, load average {meta['load_average']:.1f} at the end",
        "",
        f"Gaussian kernel, width {args.bandwidth} (per feature: the table gives "
        "their mean), float64, n_train = n_query = n, "
        f"{args.threads} torch thread(s); "
        f"best of {args.repeats} rounds after a warm-up, each timing every call once, "
        "except the one-run rows. "
        "Versions: "
        + ", ".join(f"{name} {value}" for name, value in meta["versions"].items())
        + ".",
        "",
        "| n | d | width | call | seconds | x its predict | note |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for entry in rows:
        seconds = entry["seconds"]
        shown = "—" if np.isnan(seconds) else f"{seconds:.4f}"
        ratio = "—" if np.isnan(seconds) else f"{entry['ratio_to_predict']:.2f}"
        lines.append(
            f"| {entry['n']} | {entry['d']} | {entry['bandwidth']:.3f} | "
            f"{entry['call']} | {shown} | {ratio} "
            f"| {entry['note']} |"
        )
    (RESULTS / "bench_uncertainty.md").write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--bandwidth", default="scott")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mapie-max", type=int, default=500)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; one keeps a shared machine's other work from "
        "stalling every parallel pass",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = []
    for n_samples in args.sizes:
        for n_features in args.dims:
            print(f"n = {n_samples}, d = {n_features}", flush=True)
            rows += measure(n_samples, n_features, args)
    write(rows, args, started)


if __name__ == "__main__":
    main()

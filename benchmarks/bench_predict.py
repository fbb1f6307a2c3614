"""Benchmark Nadaraya-Watson prediction: sknw against NumPy, statsmodels, sklearn.

Each (size, dimension, contender) is measured in a fresh spawned process, so
peak memory is that contender's alone. Every process regenerates the same
seeded data: X_train and X_query standard normal of shape (n, d), and
y = sum_j sin(X_j) + 0.1 * noise. The kernel is the Gaussian with a fixed
width of ``--bandwidth`` (default 0.3) for every feature.

Contenders, all given the same arrays:

- ``sknw-float64``, ``sknw-float32``: ``NadarayaWatsonRegressor``, fit outside
  the clock, ``predict`` timed (float32 input computes in float32).
- ``numpy-float64``: dense NumPy Nadaraya-Watson in this file, chunked over
  queries, exact differences, log-domain softmax. It is the accuracy oracle.
- ``statsmodels``: ``KernelReg(reg_type="lc", bw=[h] * d).fit(X_query)``,
  which also computes marginal effects it cannot be told to skip.
- ``sklearn-knn``: ``KNeighborsRegressor(n_neighbors=n_train,
  algorithm="brute")`` with Gaussian weights as a callable.
- ``sklearn-krr``: ``KernelRidge(kernel="rbf", gamma=1 / (2 h^2), alpha=1)``,
  fit + predict timed. A different model: its accuracy is not compared.

statsmodels and KNN are slow, so they predict only the first
``--slow-queries`` queries (against the full training set) and their pairs/s
are measured on that subset; the row's ``queries_timed`` says so.

Timing: one warm-up call on a slice of at most 256 queries (KRR: fit + predict
on 256 samples), then the best of ``--repeats`` calls of ``time.perf_counter``,
with ``torch.cuda.synchronize()`` before each clock read on CUDA. Each row
also gives the 1-minute load average before it and the process's CPU time per
wall second in its best call, to show when other work competed for the cores.

Peak memory: the child resets its peak resident set size (Linux
``/proc/self/clear_refs``, "5") after imports and data generation and reports
``VmHWM`` at the end minus ``VmRSS`` at the reset, over fit (outside the clock
for the Nadaraya-Watson contenders), warm-up and all timed calls. Where that
reset is refused, the ``ru_maxrss`` difference is reported, a lower bound. On
CUDA the sknw rows also give ``torch.cuda.max_memory_allocated``.

Skips: a contender whose best call took longer than ``--max-seconds`` at one
size is not run at larger sizes; one whose previous time scaled by the number
of pairs (a lower bound, KRR's fit being cubic) exceeds ``--max-seconds`` is
skipped too, as is KRR when three n x n float64 matrices exceed a quarter of the
available memory.

Usage::

    python benchmarks/bench_predict.py
    python benchmarks/bench_predict.py --sizes 1000 3000 --dims 2 --device cuda

sknw is imported from wherever Python finds it; the output records that path,
its git commit and a hash of its source. To measure one fixed version while
the working tree changes, put a clean checkout first:
``PYTHONPATH=/path/to/checkout python benchmarks/bench_predict.py``.
"""

# Authors: the sknw developers
# License: BSD 3 clause

import argparse
import hashlib
import importlib.util
import json
import math
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np

CONTENDERS = [
    "numpy-float64",
    "sknw-float64",
    "sknw-float32",
    "statsmodels",
    "sklearn-knn",
    "sklearn-krr",
]
NADARAYA_WATSON = {"sknw-float64", "sknw-float32", "statsmodels", "sklearn-knn"}
SLOW = {"statsmodels", "sklearn-knn"}
N_WARM_UP_QUERIES = 256
NOISE = 0.1

# Each chunk's (chunk_n_rows, n_train) float64 block is about 1 MiB, so the
# distance and exp passes over it stay in a core's L2 cache; larger blocks
# were 2-5x slower here.
NUMPY_CHUNK_BYTES = 2**20


def make_data(n, d, seed):
    """Seeded training set, queries and the noiseless target at the queries."""
    rng = np.random.default_rng([seed, n, d])
    X_train = rng.standard_normal((n, d))
    X_query = rng.standard_normal((n, d))
    y_train = np.sin(X_train).sum(axis=1) + NOISE * rng.standard_normal(n)
    y_true = np.sin(X_query).sum(axis=1)
    return X_train, y_train, X_query, y_true


def numpy_nadaraya_watson(queries, keys, values, bandwidth):
    """Dense float64 Nadaraya-Watson with the Gaussian kernel.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, n_features)
    keys : ndarray of shape (n_keys, n_features)
    values : ndarray of shape (n_keys,)
    bandwidth : float
        Width shared by all features.

    Returns
    -------
    predictions : ndarray of shape (n_queries,)
    """
    keys = keys / bandwidth
    queries = queries / bandwidth
    n_keys, n_features = keys.shape
    chunk_n_rows = max(1, NUMPY_CHUNK_BYTES // (8 * n_keys))
    predictions = np.empty(queries.shape[0])
    sq_dist = np.empty((chunk_n_rows, n_keys))
    diff = np.empty_like(sq_dist)
    for start in range(0, queries.shape[0], chunk_n_rows):
        chunk = queries[start : start + chunk_n_rows]
        sq = sq_dist[: chunk.shape[0]]
        tmp = diff[: chunk.shape[0]]
        sq.fill(0.0)
        # Exact differences, not the GEMM expansion: this is the oracle.
        for j in range(n_features):
            np.subtract.outer(chunk[:, j], keys[:, j], out=tmp)
            np.square(tmp, out=tmp)
            sq += tmp
        # Log domain with the row maximum subtracted: the nearest key gets
        # weight 1, so no row sums to zero however narrow the width.
        sq -= sq.min(axis=1, keepdims=True)
        sq *= -0.5
        np.exp(sq, out=sq)
        predictions[start : start + chunk.shape[0]] = (sq @ values) / sq.sum(axis=1)
    return predictions


def gaussian_weights(bandwidth):
    """KNeighborsRegressor weights: Gaussian of the distance, row-max shifted."""

    def weights(dist):
        sq_dist = dist**2
        sq_dist -= sq_dist.min(axis=1, keepdims=True)
        return np.exp(sq_dist / (-2.0 * bandwidth**2))

    return weights


def sknw_source_digest():
    """Short hash of sknw's source files: the package is edited in place."""
    spec = importlib.util.find_spec("sknw")
    directory = Path(next(iter(spec.submodule_search_locations)))
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _git_state():
    """Where sknw is imported from, and that checkout's commit and changes."""
    spec = importlib.util.find_spec("sknw")
    root = Path(next(iter(spec.submodule_search_locations))).parent

    def git(*args):
        try:
            return subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    status = git("status", "--porcelain", "--", "sknw")
    return {
        "sknw_path": str(root / "sknw"),
        "commit": git("rev-parse", "HEAD"),
        "sknw_modified_files": None if status is None else status.splitlines(),
    }


def _read_status_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


class _PeakMemory:
    """Peak RSS increase of this process from ``start()`` to ``stop()``, MiB."""

    def start(self):
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")
            self.method = "VmHWM - VmRSS after /proc/self/clear_refs reset"
            self.baseline = _read_status_kib("VmRSS")
        except OSError:
            self.method = "ru_maxrss difference (lower bound)"
            self.baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def stop(self):
        if self.method.startswith("VmHWM"):
            peak = _read_status_kib("VmHWM")
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if sys.platform == "darwin":  # bytes there, KiB on Linux
                peak //= 1024
        return max(peak - self.baseline, 0) / 1024


def _import(name):
    """Import what a contender needs, so that peak memory leaves imports out."""
    if name.startswith("sknw"):
        import torch  # noqa: F401

        import sknw  # noqa: F401
    elif name == "statsmodels":
        import statsmodels.nonparametric.kernel_regression  # noqa: F401
    elif name == "sklearn-knn":
        import sklearn.neighbors  # noqa: F401
    elif name == "sklearn-krr":
        import sklearn.kernel_ridge  # noqa: F401


def _setup(name, X_train, y_train, bandwidth, device):
    """Return (predict(X) function, fit-and-predict for KRR warm-up or None)."""
    d = X_train.shape[1]
    if name.startswith("sknw"):
        from sknw import NadarayaWatsonRegressor

        dtype = np.float32 if name.endswith("float32") else np.float64
        model = NadarayaWatsonRegressor(
            kernel="gaussian", bandwidth=bandwidth, device=device
        ).fit(X_train.astype(dtype), y_train)
        return lambda X: model.predict(X.astype(dtype, copy=False))
    if name == "numpy-float64":
        return lambda X: numpy_nadaraya_watson(X, X_train, y_train, bandwidth)
    if name == "statsmodels":
        import warnings

        from statsmodels.nonparametric.kernel_regression import KernelReg

        warnings.simplefilter("ignore", FutureWarning)
        model = KernelReg(
            endog=y_train,
            exog=X_train,
            var_type="c" * d,
            reg_type="lc",
            bw=[bandwidth] * d,
        )
        return lambda X: model.fit(X)[0]
    if name == "sklearn-knn":
        from sklearn.neighbors import KNeighborsRegressor

        model = KNeighborsRegressor(
            n_neighbors=X_train.shape[0],
            weights=gaussian_weights(bandwidth),
            algorithm="brute",
        ).fit(X_train, y_train)
        return model.predict
    raise ValueError(name)


def _krr(X_train, y_train, bandwidth):
    from sklearn.kernel_ridge import KernelRidge

    model = KernelRidge(kernel="rbf", gamma=1.0 / (2.0 * bandwidth**2), alpha=1.0)
    return lambda X: model.fit(X_train, y_train).predict(X)


def measure(name, n, d, seed, bandwidth, repeats, device, n_queries_timed):
    """Run one contender in this (fresh) process; return its measurements."""
    X_train, y_train, X_query, y_true = make_data(n, d, seed)
    digest = hashlib.sha256()
    for array in (X_train, y_train, X_query):
        digest.update(array.tobytes())
    queries = X_query[:n_queries_timed]

    cuda = device.startswith("cuda") and name.startswith("sknw")
    if cuda:
        import torch

        def sync():
            torch.cuda.synchronize()

    else:

        def sync():
            pass

    _import(name)
    source = sknw_source_digest() if name.startswith("sknw") else None
    load_average = os.getloadavg()[0]
    memory = _PeakMemory()
    memory.start()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    if name == "sklearn-krr":
        n_small = min(n, N_WARM_UP_QUERIES)
        _krr(X_train[:n_small], y_train[:n_small], bandwidth)(queries[:n_small])
        call = _krr(X_train, y_train, bandwidth)
    else:
        call = _setup(name, X_train, y_train, bandwidth, device)
        call(queries[:N_WARM_UP_QUERIES])
    times = []
    cpu_times = []
    for _ in range(repeats):
        sync()
        cpu_start = time.process_time()
        start = time.perf_counter()
        predictions = call(queries)
        sync()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    best = int(np.argmin(times))
    predictions = np.asarray(predictions, dtype=np.float64).ravel()
    result = {
        "times_s": times,
        # CPU seconds of all this process's threads per wall second in the
        # best call: near the thread count when nothing else competes.
        "cpu_per_wall": cpu_times[best] / times[best],
        "peak_rss_increase_mib": memory.stop(),
        "memory_method": memory.method,
        "input_sha256": digest.hexdigest(),
        "predictions": predictions,
        "rmse_vs_truth": float(
            np.sqrt(np.mean((predictions - y_true[: len(queries)]) ** 2))
        ),
        "n_nan": int(np.isnan(predictions).sum()),
        "load_average_1min_before": load_average,
        "sknw_source_digest": source,
    }
    if cuda:
        result["peak_device_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def exp_rate(dtype_name, repeats=30):
    """torch.exp throughput, elements/s, on a cache-resident array.

    The Gaussian's ceiling: one exp per (query, training sample) pair. The
    arguments lie in [-20, 0], as shifted log-weights do; the array (1 MiB
    in float32) stays in cache; the best of ``repeats`` batches of 10 calls.
    """
    import torch

    dtype = getattr(torch, dtype_name)
    x = -20 * torch.rand(2**18, dtype=dtype)
    out = torch.empty_like(x)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(10):
            torch.exp(x, out=out)
        best = min(best, time.perf_counter() - start)
    return 10 * x.numel() / best


def _exp_rates(n_runs=3):
    """The best exp rate of each dtype over a few fresh processes."""
    rates = {"float32": 0.0, "float64": 0.0}
    for _ in range(n_runs):
        with ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            for name in rates:
                rates[name] = max(rates[name], pool.submit(exp_rate, name).result())
    return rates


def run_in_fresh_process(*args):
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
        return executor.submit(measure, *args).result()


def _available_bytes():
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _skip_reason(name, n, n_queries_timed, previous, max_seconds):
    if previous is not None:
        if previous["best_s"] > max_seconds:
            return (
                f"skipped: {previous['best_s']:.1f} s at n={previous['n']} "
                f"> --max-seconds {max_seconds:g}"
            )
        pairs = n_queries_timed * n
        predicted = pairs / previous["pairs_per_s"]
        if predicted > max_seconds:
            return (
                f"skipped: predicted >= {predicted:.1f} s from n={previous['n']} "
                f"> --max-seconds {max_seconds:g}"
            )
    if name == "sklearn-krr" and 3 * 8 * n * n > _available_bytes() / 4:
        return (
            "skipped: three n x n float64 matrices exceed a quarter of the free memory"
        )
    return None


def _versions():
    names = {
        "python": platform.python_version(),
        "sknw": "sknw",
        "torch": "torch",
        "numpy": "numpy",
        "scikit-learn": "scikit-learn",
        "statsmodels": "statsmodels",
        "scipy": "scipy",
    }
    return {
        key: value if key == "python" else version(value)
        for key, value in names.items()
    }


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _format(value, spec, missing="—"):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return format(value, spec)


COLUMNS = [
    ("n", "n", "d"),
    ("d", "d", "d"),
    ("contender", "contender", "s"),
    ("queries timed", "queries_timed", "d"),
    ("best s", "best_s", ".3f"),
    ("M pairs/s", "mpairs_per_s", ".1f"),
    ("% of exp rate", "percent_of_exp_rate", ".0f"),
    ("sknw-f64 speedup", "sknw_float64_speedup", ".2f"),
    ("sknw-f32 speedup", "sknw_float32_speedup", ".2f"),
    ("max abs diff vs NumPy", "max_abs_diff_vs_numpy", ".1e"),
    ("max rel diff vs NumPy", "max_rel_diff_vs_numpy", ".1e"),
    ("RMSE vs truth", "rmse_vs_truth", ".4f"),
    ("peak RSS +MiB", "peak_rss_increase_mib", ".0f"),
    ("CPU/wall", "cpu_per_wall", ".2f"),
]


def table_rows(rows, cuda):
    columns = list(COLUMNS)
    if cuda:
        columns.append(("peak device MiB", "peak_device_mib", ".0f"))
    header = [title for title, _, _ in columns] + ["note"]
    body = []
    for row in rows:
        cells = [_format(row.get(key), spec) for _, key, spec in columns]
        body.append(cells + [row.get("note", "")])
    return header, body


def markdown_table(rows, cuda):
    header, body = table_rows(rows, cuda)
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def write_markdown(report, path):
    """Write the report's table and its context as Markdown."""
    settings = report["settings"]
    path.write_text(
        f"# bench_predict: {report['date']}, device {report['device']}, "
        f"{report['cpu']} ({report['cpu_count']} CPUs)\n\n"
        f"Gaussian kernel, bandwidth {settings['bandwidth_per_feature']} per "
        f"feature, n_train = n_query = n, best of {settings['repeats']}. "
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items())
        + ".\n\n"
        + " ".join(report["notes"])
        + "\n\n"
        + markdown_table(report["rows"], report["device"].startswith("cuda"))
        + "\n"
    )


def text_table(rows, cuda):
    header, body = table_rows(rows, cuda)
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(cells, widths)) for cells in body]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--output", type=Path, default=Path("benchmarks/results/bench_predict.json")
    )
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--bandwidth", type=float, default=0.3)
    parser.add_argument("--slow-queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--contenders", nargs="+", choices=CONTENDERS, default=CONTENDERS
    )
    args = parser.parse_args(argv)

    import torch

    torch.empty(0, device=args.device)  # refuse an absent device up front
    cuda = args.device.startswith("cuda")

    git_start = _git_state()
    digest_start = sknw_source_digest()
    started = time.perf_counter()
    exp_rates = _exp_rates()
    print(
        "torch.exp: "
        + ", ".join(f"{k} {v / 1e9:.2f}e9/s" for k, v in exp_rates.items()),
        flush=True,
    )
    rows = []
    for d in args.dims:
        previous = {}
        for n in sorted(args.sizes):
            oracle = None
            reference_speed = {}
            digests = set()
            for name in args.contenders:
                n_queries_timed = min(n, args.slow_queries) if name in SLOW else n
                row = {
                    "n": n,
                    "d": d,
                    "contender": name,
                    "dtype": "float32" if name.endswith("float32") else "float64",
                    "device": args.device if name.startswith("sknw") else "cpu",
                    "queries_timed": n_queries_timed,
                    "timed": "fit+predict" if name == "sklearn-krr" else "predict",
                }
                reason = _skip_reason(
                    name, n, n_queries_timed, previous.get(name), args.max_seconds
                )
                if reason:
                    row["note"] = reason
                    rows.append(row)
                    print(f"n={n:>6} d={d} {name:<14} {reason}", flush=True)
                    continue
                result = run_in_fresh_process(
                    name,
                    n,
                    d,
                    args.seed,
                    args.bandwidth,
                    args.repeats,
                    args.device,
                    n_queries_timed,
                )
                digests.add(result.pop("input_sha256"))
                predictions = result.pop("predictions")
                best = min(result["times_s"])
                row.update(result)
                row["best_s"] = best
                row["pairs_per_s"] = n_queries_timed * n / best
                row["mpairs_per_s"] = row["pairs_per_s"] / 1e6
                if name == "numpy-float64":
                    oracle = predictions
                if name in NADARAYA_WATSON and oracle is not None:
                    reference = oracle[:n_queries_timed]
                    difference = np.max(np.abs(predictions - reference))
                    row["max_abs_diff_vs_numpy"] = float(difference)
                    row["max_rel_diff_vs_numpy"] = float(
                        difference / np.max(np.abs(reference))
                    )
                if name.startswith("sknw") and args.device == "cpu":
                    row["percent_of_exp_rate"] = (
                        100 * row["pairs_per_s"] / exp_rates[row["dtype"]]
                    )
                notes = []
                if name in SLOW and n_queries_timed < n:
                    notes.append(f"first {n_queries_timed} of {n} queries")
                if name == "sklearn-krr":
                    notes.append("fit+predict, different model")
                if row["n_nan"]:
                    notes.append(f"{row['n_nan']} NaN predictions")
                row["note"] = "; ".join(notes)
                if name.startswith("sknw"):
                    reference_speed[name] = row["pairs_per_s"]
                previous[name] = row
                rows.append(row)
                print(
                    f"n={n:>6} d={d} {name:<14} best {best:8.3f} s of "
                    f"{args.repeats}, {row['mpairs_per_s']:8.1f} M pairs/s, "
                    f"peak RSS +{row['peak_rss_increase_mib']:.0f} MiB"
                    + (
                        f", max|diff| {row['max_abs_diff_vs_numpy']:.1e}"
                        if "max_abs_diff_vs_numpy" in row
                        else ""
                    ),
                    flush=True,
                )
            if len(digests) > 1:
                raise RuntimeError(f"contenders saw different inputs at n={n} d={d}")
            for row in rows:
                if (row["n"], row["d"]) == (n, d) and "pairs_per_s" in row:
                    for name, speed in reference_speed.items():
                        key = name.replace("-", "_") + "_speedup"
                        row[key] = speed / row["pairs_per_s"]
    rows.sort(key=lambda row: (row["n"], row["d"]))
    memory_methods = {row["memory_method"] for row in rows if "memory_method" in row}
    total = time.perf_counter() - started
    digests_seen = {digest_start, sknw_source_digest()}
    digests_seen |= {
        row["sknw_source_digest"] for row in rows if row.get("sknw_source_digest")
    }
    source_note = (
        f"sknw source {digest_start} from {git_start['sknw_path']} at commit "
        f"{str(git_start['commit'])[:10]}"
        + (
            " with uncommitted changes in sknw/"
            if git_start["sknw_modified_files"]
            else ""
        )
        + (
            "."
            if len(digests_seen) == 1
            else f"; WARNING: sknw's source changed during the run "
            f"({', '.join(sorted(digests_seen))}), rows differ in version."
        )
    )
    loads = [row["load_average_1min_before"] for row in rows if "times_s" in row]
    load_note = (
        f"1-minute load average before each measurement: {min(loads):.1f} to "
        f"{max(loads):.1f} on {os.cpu_count()} CPUs (the machine may be shared); "
        "CPU/wall is the CPU time of the contender's threads per wall second in "
        f"its best call, lower when other processes compete; total {total:.0f} s."
    )

    report = {
        "benchmark": "Nadaraya-Watson prediction, Gaussian kernel",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": args.device,
        "dtypes": {"sknw-float32": "float32", "others": "float64"},
        "versions": _versions(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "numpy_simd": np.__config__.CONFIG.get("SIMD Extensions"),
        "sknw_source": {
            "git": git_start,
            "digest_at_start": digest_start,
            "digests_seen": sorted(digests_seen),
        },
        "torch_threads": torch.get_num_threads(),
        "exp_rate_per_s": exp_rates,
        "settings": {
            "sizes": sorted(args.sizes),
            "dims": args.dims,
            "n_train_equals_n_query": True,
            "bandwidth_per_feature": args.bandwidth,
            "noise": NOISE,
            "seed": args.seed,
            "repeats": args.repeats,
            "max_seconds": args.max_seconds,
            "slow_queries": args.slow_queries,
        },
        "method": {
            "timing": "best of repeats, time.perf_counter, after one warm-up call "
            f"on at most {N_WARM_UP_QUERIES} queries; pairs/s = queries_timed * "
            "n_train / best_s; statsmodels and sklearn-knn time a query subset; "
            "sklearn-krr times fit+predict",
            "memory": "each contender in a fresh spawned process; peak RSS "
            "increase over fit, warm-up and timed calls, after imports and data "
            f"generation; method: {', '.join(sorted(memory_methods))}",
            "oracle": "numpy-float64 (exact differences, log-domain softmax)",
            "total_seconds": total,
        },
        "notes": [
            source_note,
            load_note,
            "torch.exp runs at "
            + ", ".join(f"{v / 1e9:.2f}e9/s in {k}" for k, v in exp_rates.items())
            + " on a cache-resident array (the Gaussian's ceiling: one exp per "
            "pair); % of exp rate is sknw's pairs/s over the rate of its dtype.",
            "sknw-f64 (f32) speedup is sknw-float64's (float32's) pairs/s divided "
            "by the row's; max abs diff is against numpy-float64 on the same "
            "queries, max rel diff that divided by the largest |prediction|.",
        ],
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    markdown = args.output.with_suffix(".md")
    write_markdown(report, markdown)
    print()
    print(text_table(rows, cuda))
    print(f"\n{source_note}\n{load_note} Wrote {args.output} and {markdown}")


if __name__ == "__main__":
    main()

"""Benchmark Nadaraya-Watson on a GPU: the fused Triton kernel against torch.

Every (n, d) regenerates the same seeded data: X_train and X_query standard
normal of shape (n, d), y = sum_j sin(X_j) + 0.1 * noise, a Gaussian kernel
of width ``--bandwidth * sqrt(d)`` for every feature (so that u^2 between
typical points does not grow with d). All contenders get the same float32
arrays, n_train = n_query = n.

Contenders:

- ``fused``: ``sknw._triton.fused_partial_sums`` on device tensors divided by
  the width, values [y, 1]; the prediction is the ratio of the two sums.
- ``engine``: ``sknw._engine.nadaraya_watson(..., device="cuda")`` on float32
  NumPy arrays, as the estimators call it: transfers both ways included.
- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` in float32
  with scale 1 on augmented, zero-padded rows q' = [q, 1], k' = [k, -|k|^2/2]
  (then q'.k' = -|q - k|^2 / 2 + |q|^2 / 2, and softmax drops the row
  constant). It takes the expansion that the fused kernel avoids.

Accuracy: the largest difference of each contender's predictions from a
float64 torch computation (exact differences, log-domain) on the first
``--error-queries`` queries against all n keys, relative to the largest
reference prediction (y crosses 0, where a per-query ratio means nothing).

The leave-one-out gradient step (loss and gradient of
``sknw._loo_objective.LeaveOneOutObjective``, one width per feature, squared
error) is timed at ``--loo-sizes``: through the fused kernels on CUDA and,
where it fits in ``--max-seconds``, through the float64 torch path.

Timing: a warm-up call (compiles the kernels), then the best of ``--repeats``
calls of ``time.perf_counter`` with ``torch.cuda.synchronize()`` before each
clock read. Peak memory is ``torch.cuda.max_memory_allocated`` over the
timed calls, inputs included. A contender whose time, scaled from the
previous size by the number of pairs, would exceed ``--max-seconds`` is
skipped at that size, and the table says so.

Usage::

    python benchmarks/bench_gpu.py
    python benchmarks/bench_gpu.py --sizes 10000 100000 --dims 8 --repeats 5

Without a CUDA device it says so and exits with status 0.
"""

# Authors: the sknw developers
# License: BSD 3 clause

import argparse
import json
import math
import platform
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

CONTENDERS = ["fused", "engine", "sdpa"]
NOISE = 0.1

# float64 reference rows per chunk: a (chunk, n) float64 block of 1e6 keys
# is 400 MiB at this size.
REFERENCE_CHUNK_ROWS = 50


def make_data(n, d, seed):
    """Seeded float32 training set and queries, and the training targets."""
    rng = np.random.default_rng([seed, n, d])
    X_train = rng.standard_normal((n, d)).astype(np.float32)
    X_query = rng.standard_normal((n, d)).astype(np.float32)
    y_train = np.sin(X_train).sum(axis=1) + NOISE * rng.standard_normal(n)
    return X_train, y_train.astype(np.float32), X_query


def reference_predictions(queries, keys, values, bandwidth):
    """Float64 Gaussian Nadaraya-Watson on the device, exact differences.

    Parameters
    ----------
    queries : tensor of shape (n_queries, n_features)
    keys : tensor of shape (n_keys, n_features)
    values : tensor of shape (n_keys,)
    bandwidth : float

    Returns
    -------
    predictions : ndarray of shape (n_queries,)
    """
    import torch

    queries = queries.double() / bandwidth
    keys = keys.double() / bandwidth
    values = values.double()
    predictions = []
    for start in range(0, queries.shape[0], REFERENCE_CHUNK_ROWS):
        chunk = queries[start : start + REFERENCE_CHUNK_ROWS]
        sq = torch.zeros((chunk.shape[0], keys.shape[0]), dtype=torch.float64)
        sq = sq.to(keys.device)
        for feature in range(keys.shape[1]):
            sq += (chunk[:, feature, None] - keys[None, :, feature]) ** 2
        weights = torch.softmax(-0.5 * sq, dim=1)
        predictions.append(weights @ values)
    return torch.cat(predictions).cpu().numpy()


def setup(name, X_train, y_train, X_query, bandwidth, device):
    """Move the inputs once and return a function that predicts all queries."""
    import torch
    import torch.nn.functional as F

    from sknw import _engine, _triton

    if name == "engine":

        def predict():
            return _engine.nadaraya_watson(
                X_query,
                X_train,
                y_train[:, None].astype(np.float32),
                bandwidth=bandwidth,
                kernel="gaussian",
                device=device,
            )[:, 0]

        return predict

    keys = torch.as_tensor(X_train, device=device) / bandwidth
    queries = torch.as_tensor(X_query, device=device) / bandwidth
    y = torch.as_tensor(y_train, device=device)
    if name == "fused":
        values = torch.stack([y, torch.ones_like(y)], dim=1)

        def predict():
            _, sums, _ = _triton.fused_partial_sums(queries, keys, values, "gaussian")
            return sums[:, 0] / sums[:, 1]

        return predict

    # Zero columns pad the head dimension to a multiple of 8, as the
    # memory-efficient attention kernels ask; they change no dot product.
    width = 8 * math.ceil((keys.shape[1] + 1) / 8)
    padded_queries = torch.zeros((1, 1, queries.shape[0], width), device=device)
    padded_keys = torch.zeros((1, 1, keys.shape[0], width), device=device)
    padded_values = torch.zeros((1, 1, keys.shape[0], 8), device=device)
    padded_queries[0, 0, :, : queries.shape[1]] = queries
    padded_queries[0, 0, :, queries.shape[1]] = 1.0
    padded_keys[0, 0, :, : keys.shape[1]] = keys
    padded_keys[0, 0, :, keys.shape[1]] = -0.5 * (keys**2).sum(dim=1)
    padded_values[0, 0, :, 0] = y

    def predict():
        output = F.scaled_dot_product_attention(
            padded_queries, padded_keys, padded_values, scale=1.0
        )
        return output[0, 0, :, 0]

    return predict


def measure(function, repeats, device):
    """Best wall time of ``repeats`` calls after a warm-up, and peak memory."""
    import torch

    def sync():
        torch.cuda.synchronize(device)

    result = function()
    sync()
    torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        result = function()
        sync()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    return result, times, peak


def estimate(previous, n):
    """Seconds at n, from the best time at a smaller size and the pair count."""
    if previous is None:
        return 0.0
    previous_n, previous_seconds = previous
    return previous_seconds * (n / previous_n) ** 2


def predict_rows(args, device):
    import torch

    rows = []
    for d in args.dims:
        bandwidth = args.bandwidth * math.sqrt(d)
        previous = {}
        for n in sorted(args.sizes):
            X_train, y_train, X_query = make_data(n, d, args.seed)
            n_error = min(n, args.error_queries)
            reference = reference_predictions(
                torch.as_tensor(X_query[:n_error], device=device),
                torch.as_tensor(X_train, device=device),
                torch.as_tensor(y_train, device=device),
                bandwidth,
            )
            for name in args.contenders:
                row = {"n": n, "d": d, "contender": name, "dtype": "float32"}
                expected = estimate(previous.get(name), n)
                if expected > args.max_seconds:
                    row["note"] = (
                        f"skipped: about {expected:.0f} s expected from "
                        f"n={previous[name][0]}"
                    )
                    rows.append(row)
                    print(f"n={n:>8} d={d:>2} {name:<7} {row['note']}", flush=True)
                    continue
                try:
                    function = setup(name, X_train, y_train, X_query, bandwidth, device)
                    result, times, peak = measure(function, args.repeats, device)
                except (RuntimeError, MemoryError) as exc:
                    torch.cuda.empty_cache()
                    row["note"] = f"failed: {type(exc).__name__}: {str(exc)[:120]}"
                    rows.append(row)
                    print(f"n={n:>8} d={d:>2} {name:<7} {row['note']}", flush=True)
                    previous[name] = (n, math.inf)
                    continue
                predictions = torch.as_tensor(result).double().cpu().numpy()[:n_error]
                best = min(times)
                previous[name] = (n, best)
                row.update(
                    times_s=times,
                    best_s=best,
                    gpairs_per_s=n * n / best / 1e9,
                    max_relative_error=float(
                        np.max(np.abs(predictions - reference))
                        / np.max(np.abs(reference))
                    ),
                    error_queries=n_error,
                    peak_device_mib=peak,
                )
                rows.append(row)
                print(
                    f"n={n:>8} d={d:>2} {name:<7} {best:9.4f} s "
                    f"{row['gpairs_per_s']:8.2f} G pairs/s "
                    f"max rel err {row['max_relative_error']:.1e}",
                    flush=True,
                )
                del function, result
                torch.cuda.empty_cache()
    return rows


def loo_rows(args, device):
    from sknw._loo_objective import LeaveOneOutObjective

    rows = []
    for d in args.dims:
        previous = None
        for n in sorted(args.loo_sizes):
            X, y, _ = make_data(n, d, args.seed)
            objective = LeaveOneOutObjective(
                X.astype(np.float64),
                y[:, None].astype(np.float64),
                kernel="gaussian",
                loss="squared_error",
                sample_weight=None,
                device=device,
            )
            log_bandwidth = np.log(np.full(d, args.bandwidth * math.sqrt(d)))
            fused_result = None
            for name in ("fused", "float64"):
                row = {"n": n, "d": d, "contender": f"loo-{name}"}
                row["dtype"] = "float32" if name == "fused" else "float64"
                expected = estimate(previous, n) if name == "float64" else 0.0
                if name == "fused" and not objective.fused:
                    row["note"] = "the fused path is not available"
                elif expected > args.max_seconds:
                    row["note"] = (
                        f"skipped: about {expected:.0f} s expected from n={previous[0]}"
                    )
                else:
                    # The objective's route, switched for the comparison.
                    objective.fused = name == "fused"
                    (loss, gradient), times, peak = measure(
                        lambda: objective(log_bandwidth), args.repeats, device
                    )
                    row.update(
                        times_s=times,
                        best_s=min(times),
                        gpairs_per_s=n * n / min(times) / 1e9,
                        loss=loss,
                        peak_device_mib=peak,
                    )
                    if name == "fused":
                        fused_result = (loss, gradient)
                    else:
                        previous = (n, min(times))
                        if fused_result is not None:
                            row["fused_loss_relative_error"] = abs(
                                fused_result[0] / loss - 1
                            )
                            row["fused_gradient_relative_error"] = float(
                                np.max(np.abs(fused_result[1] - gradient))
                                / np.max(np.abs(gradient))
                            )
                rows.append(row)
                timing = row.get("note") or f"{row['best_s']:.4f} s"
                print(f"n={n:>8} d={d:>2} loo-{name:<7} {timing}", flush=True)
    return rows


def versions():
    names = ["sknw", "torch", "triton", "numpy"]
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _format(value, spec):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec)


PREDICT_COLUMNS = [
    ("n", "n", "d"),
    ("d", "d", "d"),
    ("contender", "contender", "s"),
    ("best s", "best_s", ".4f"),
    ("G pairs/s", "gpairs_per_s", ".2f"),
    ("max err / max abs, vs float64", "max_relative_error", ".1e"),
    ("peak device MiB", "peak_device_mib", ".0f"),
]
LOO_COLUMNS = [
    ("n", "n", "d"),
    ("d", "d", "d"),
    ("contender", "contender", "s"),
    ("best s", "best_s", ".4f"),
    ("G pairs/s", "gpairs_per_s", ".2f"),
    ("fused loss rel err", "fused_loss_relative_error", ".1e"),
    ("fused gradient rel err", "fused_gradient_relative_error", ".1e"),
    ("peak device MiB", "peak_device_mib", ".0f"),
]


def markdown_table(rows, columns):
    header = [title for title, _, _ in columns] + ["note"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        cells = [_format(row.get(key), spec) for _, key, spec in columns]
        lines.append("| " + " | ".join(cells + [row.get("note", "")]) + " |")
    return "\n".join(lines)


def write_markdown(report, path):
    settings = report["settings"]
    path.write_text(
        f"# bench_gpu: {report['date']}, {report['device_name']}\n\n"
        f"Gaussian kernel, width {settings['bandwidth']} * sqrt(d) per feature, "
        f"n_train = n_query = n, float32 inputs, best of {settings['repeats']}; "
        "relative errors against float64 on the first "
        f"{settings['error_queries']} queries. Versions: "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items())
        + ".\n\n## Prediction\n\n"
        + markdown_table(report["predict"], PREDICT_COLUMNS)
        + "\n\n## Leave-one-out loss and gradient, one width per feature\n\n"
        + markdown_table(report["loo"], LOO_COLUMNS)
        + "\n"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000]
    )
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--loo-sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--bandwidth", type=float, default=0.3)
    parser.add_argument("--error-queries", type=int, default=1000)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--contenders", nargs="+", choices=CONTENDERS, default=CONTENDERS
    )
    parser.add_argument(
        "--output", type=Path, default=Path("benchmarks/results/bench_gpu.json")
    )
    args = parser.parse_args(argv)

    import torch

    if not (args.device.startswith("cuda") and torch.cuda.is_available()):
        print("bench_gpu.py needs a CUDA GPU; none is available here.")
        return 0
    from sknw import _triton

    available, reason = _triton.triton_available()
    if not available:
        print(f"bench_gpu.py needs Triton: {reason}.")
        return 0
    device = torch.device(args.device)
    started = time.perf_counter()
    predict = predict_rows(args, device)
    loo = loo_rows(args, device)
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device_name": torch.cuda.get_device_name(device),
        "versions": versions(),
        "settings": vars(args) | {"output": str(args.output)},
        "predict": predict,
        "loo": loo,
        "total_s": time.perf_counter() - started,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    markdown = args.output.with_suffix(".md")
    write_markdown(report, markdown)
    print(f"wrote {args.output} and {markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

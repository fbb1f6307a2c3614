"""Learning the bandwidth by leave-one-out: sknw against other Python packages.

Every contender learns the width of a Gaussian Nadaraya-Watson regression on
the same seeded data, each in a fresh process (so its peak memory is its own,
and a contender past --max-seconds is stopped and recorded as "> limit").
Every learned width, one shared or one per feature as the contender returns
it, is then scored by the same float64 leave-one-out mean squared error on
the raw data, computed by sknw's objective (which the test suite checks
against a NumPy reference). Only the fit, the width selection, is timed:
best of --repeats after a warm-up fit on 50 rows (imports, torch's first
call); a fit slower than --repeat-below seconds is not repeated.

Contenders (all with the Gaussian kernel exp(-u^2 / 2), u = distance / width):

* sknw ``NadarayaWatsonRegressorCV``: one shared width (float start 1.0) at
  d = 1; at d = 4 one width per feature (``bandwidth="silverman"``) and,
  as a second row, one shared width.
* kernelsmooth ``KernelRegression(bandwidth="lscv", diag_cov=True)``.
* statsmodels ``KernelReg(reg_type="lc", bw="cv_ls")``.
* hessband ``select_nw_bandwidth(method="analytic", folds=n)`` (1-D only).
* pyGRNN ``GRNN()`` (its own 5-fold cross-validation, not leave-one-out).

A contender whose package cannot be imported is recorded as "not installed".
The optional ones install with

    pip install kernelsmooth hessband pygrnn statsmodels

Usage:

    python benchmarks/bench_learn.py                 # a few minutes on 2 cores
    python benchmarks/bench_learn.py --sizes 200 1000 5000 20000   # full run

Results go to benchmarks/results/bench_learn.json and .md. torch runs on
--threads threads (default: every core this process may use). On a machine
busy with other work, torch's OpenMP threads spin-wait for each other and a
fit on 2 threads can take several times as long as on 1; run with
``OMP_WAIT_POLICY=PASSIVE`` in the environment (recorded in the JSON) or
with --threads 1 there. The CPU/wall column shows such contention.
"""

import argparse
import contextlib
import datetime
import io
import json
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

WARM_UP_ROWS = 50
# Imports and the warm-up fit (not timed) must end within this many seconds.
START_LIMIT = 180.0


def make_data(n_samples, n_features, seed=0):
    """d = 1: the d2l toy y = 2 sin x + x^0.8 + noise; d = 4: three
    informative features of different scales and one of pure noise."""
    rng = np.random.default_rng(seed)
    if n_features == 1:
        X = rng.uniform(0, 5, size=(n_samples, 1))
        y = 2 * np.sin(X[:, 0]) + X[:, 0] ** 0.8 + rng.normal(0, 0.5, n_samples)
    else:
        X = rng.normal(size=(n_samples, 4)) * [1.0, 2.0, 0.5, 1.0]
        y = np.sin(X[:, 0]) + 0.5 * X[:, 1] + X[:, 2] ** 2
        y += rng.normal(0, 0.2, n_samples)
    return X, y


# ---------------------------------------------------------------------------
# Contenders. Each takes (X, y, options) and returns (widths, note): widths in
# the units of the raw X, one shared or one per feature.
# ---------------------------------------------------------------------------


def _import_sknw(options):
    import torch

    import sknw

    torch.set_num_threads(options["threads"])
    return sknw


def _learn_sknw(X, y, options, bandwidth):
    from sknw import NadarayaWatsonRegressorCV

    model = NadarayaWatsonRegressorCV(
        bandwidth=bandwidth,
        solver=options["sknw_solver"],
        random_state=0,
        device=options["device"],
    )
    model.fit(X, y)
    return np.atleast_1d(model.bandwidth_), f"{model.n_iter_} iterations"


def learn_sknw_one_width(X, y, options):
    return _learn_sknw(X, y, options, 1.0)


def learn_sknw_per_feature(X, y, options):
    return _learn_sknw(X, y, options, "silverman")


def _import_kernelsmooth(options):
    import kernelsmooth

    return kernelsmooth


def learn_kernelsmooth(X, y, options):
    from kernelsmooth import KernelRegression

    model = KernelRegression(bandwidth="lscv", diag_cov=True).fit(X, y)
    # The width is learned on X divided by each feature's standard deviation
    # (model.L, ddof=1), one per feature: in the units of X it is L * h.
    return np.asarray(model.L * model.bandwidth, dtype=float), ""


def _import_statsmodels(options):
    from statsmodels.nonparametric import kernel_regression

    return kernel_regression


def learn_statsmodels(X, y, options):
    from statsmodels.nonparametric.kernel_regression import KernelReg

    model = KernelReg(y, X, var_type="c" * X.shape[1], reg_type="lc", bw="cv_ls")
    return np.asarray(model.bw, dtype=float), ""


def _import_hessband(options):
    import hessband

    return hessband


def learn_hessband(X, y, options):
    from hessband import select_nw_bandwidth

    # folds=n: k-fold cross-validation with one row per fold, leave-one-out.
    width = select_nw_bandwidth(X[:, 0], y, method="analytic", folds=len(y))
    return np.atleast_1d(np.asarray(width, dtype=float)), ""


def _import_pygrnn(options):
    with contextlib.redirect_stdout(io.StringIO()):
        import pyGRNN
    return pyGRNN


def learn_pygrnn(X, y, options):
    from pyGRNN import GRNN

    # It prints its progress.
    with contextlib.redirect_stdout(io.StringIO()):
        model = GRNN().fit(X, y)
    widths = np.broadcast_to(np.asarray(model.sigma, dtype=float), X.shape[1])
    return widths.copy(), ""


# name -> (learn, import, distribution, dims, widths learned)
CONTENDERS = {
    "sknw": (learn_sknw_one_width, _import_sknw, "sknw", (1,), "one shared"),
    "sknw per feature": (
        learn_sknw_per_feature,
        _import_sknw,
        "sknw",
        (4,),
        "per feature",
    ),
    "sknw one width": (
        learn_sknw_one_width,
        _import_sknw,
        "sknw",
        (4,),
        "one shared",
    ),
    "kernelsmooth": (
        learn_kernelsmooth,
        _import_kernelsmooth,
        "kernelsmooth",
        (1, 4),
        "per feature",
    ),
    "statsmodels": (
        learn_statsmodels,
        _import_statsmodels,
        "statsmodels",
        (1, 4),
        "per feature",
    ),
    "hessband": (learn_hessband, _import_hessband, "hessband", (1,), "one shared"),
    "pygrnn": (learn_pygrnn, _import_pygrnn, "pyGRNN", (1, 4), "per feature"),
}

# How each contender searches, for the report.
SEARCHES = {
    "sknw": "NadarayaWatsonRegressorCV(bandwidth=1.0) (solver 'auto': exact LOO "
    "on a log grid between the data's bounds, then Newton steps with the "
    "analytic second derivative).",
    "sknw per feature": "NadarayaWatsonRegressorCV(bandwidth='silverman') "
    "(solver 'auto': L-BFGS-B on the exact LOO loss and its analytic gradient "
    "from the best of several starts).",
    "sknw one width": "NadarayaWatsonRegressorCV(bandwidth=1.0) at d = 4: one "
    "width shared by all features.",
    "kernelsmooth": "KernelRegression(bandwidth='lscv', diag_cov=True): X "
    "divided by each feature's std, then L-BFGS-B with finite-difference "
    "gradients on the exact LOO MSE, at most 10 iterations, each log-width "
    "confined to within a factor 5 of Silverman's rule; widths reported as "
    "std * h.",
    "statsmodels": "KernelReg(reg_type='lc', bw='cv_ls'): Nelder-Mead "
    "(scipy fmin) on its own LOO squared error from the normal-reference rule.",
    "hessband": "select_nw_bandwidth(method='analytic', folds=n): Newton with "
    "its analytic derivatives and an Armijo line search on k-fold CV with "
    "k = n (leave-one-out), one fold at a time, at most 10 iterations, width "
    ">= 0.01. One-dimensional X only (it ravels X).",
    "pygrnn": "GRNN() (calibration 'warm_start'): L-BFGS-B with "
    "finite-difference gradients from sigma = 0.4 for one shared width, then "
    "again per feature from it rounded to 3 decimals, both on shuffled 5-fold "
    "cross-validation MSE (not leave-one-out).",
}


# ---------------------------------------------------------------------------
# One contender in its own process.
# ---------------------------------------------------------------------------


def _proc_status(key):
    """A line of /proc/self/status in MiB (Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _peak_rss_mib():
    peak = _proc_status("VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak


def _reset_peak_rss():
    """Start the peak over (Linux): ru_maxrss would keep the imports' peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _warning_notes(caught):
    notes = []
    for item in caught:
        if issubclass(item.category, (DeprecationWarning, FutureWarning)):
            continue  # about the packages' futures, not this fit
        text = f"{item.category.__name__}: {str(item.message).splitlines()[0]}"
        text = text[:120]
        if text not in notes:
            notes.append(text)
    return notes


def _child(name, n_samples, n_features, options, connection):
    learn, import_package, *_ = CONTENDERS[name]
    try:
        import_package(options)
    except Exception as error:  # ImportError, or a broken dependency
        connection.send(("missing", f"{type(error).__name__}: {error}"))
        return
    X, y = make_data(n_samples, n_features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Warm-up, not timed: first calls, caches, lazy imports.
        rows = min(WARM_UP_ROWS, n_samples)
        try:
            learn(X[:rows], y[:rows], options)
        except Exception as error:
            connection.send(("error", f"warm-up: {type(error).__name__}: {error}"))
            return
    connection.send(("ready",))
    _reset_peak_rss()
    baseline_mib = _proc_status("VmRSS")
    best = None
    for repeat in range(options["repeats"]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            started = time.perf_counter()
            cpu_started = time.process_time()
            try:
                widths, note = learn(X, y, options)
            except Exception as error:
                connection.send(("error", f"{type(error).__name__}: {error}"))
                return
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
        if best is None or seconds < best["seconds"]:
            best = {
                "widths": np.asarray(widths, dtype=float).tolist(),
                "seconds": seconds,
                "cpu_per_wall": cpu_seconds / seconds if seconds > 0 else None,
                "note": note,
                "warnings": _warning_notes(caught),
            }
        best["fits"] = repeat + 1
        best["peak_rss_mib"] = _peak_rss_mib()
        best["rss_before_fit_mib"] = baseline_mib
        connection.send(("fit", best))
        if seconds > options["repeat_below"]:
            break
    connection.send(("done",))


def run_contender(name, n_samples, n_features, options, max_seconds):
    """Run one contender in a fresh process.

    Returns (status, result): "ok" and a dict of the best fit (also when a
    repeat, not the first fit, ran out of time or failed), or "missing",
    "error", "timeout" or "failed" and a message (None for "timeout").
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_child, args=(name, n_samples, n_features, options, sender)
    )
    process.start()
    sender.close()
    status, result, died = None, None, False
    fitting = False  # the deadline is that of the imports until "ready"
    deadline = time.monotonic() + START_LIMIT
    while status is None:
        left = deadline - time.monotonic()
        if left <= 0 or not receiver.poll(left):
            status = "timeout" if fitting else "failed"
            break
        try:
            message = receiver.recv()
        except EOFError:  # the process ended without a word
            status, died = "failed", True
            break
        if message[0] in ("missing", "error"):
            status, result = message
        elif message[0] == "ready":
            fitting = True
            deadline = time.monotonic() + max_seconds
        elif message[0] == "fit":
            result = message[1]
        elif message[0] == "done":
            status = "ok"
    if status in ("ok", "missing", "error"):
        process.join(10)
    if process.is_alive():
        process.kill()
    process.join()
    if isinstance(result, dict) and status != "ok":
        # The first fit ended; a repeat ran out of time or failed.
        why = f"stopped at {max_seconds:.0f} s" if status == "timeout" else status
        result["note"] = "; ".join(filter(None, [result["note"], f"repeat {why}"]))
        status = "ok"
    elif status == "failed" and result is None:
        result = (
            f"the process ended with exit code {process.exitcode}"
            if died
            else f"imports and warm-up did not end within {START_LIMIT:.0f} s"
        )
    return status, result


# ---------------------------------------------------------------------------
# Scoring, versions, report.
# ---------------------------------------------------------------------------


class Scorer:
    """The float64 leave-one-out MSE of sknw's objective on the raw data."""

    def __init__(self, X, y):
        import torch

        from sknw._loo_objective import LeaveOneOutObjective

        self.objective = LeaveOneOutObjective(
            X,
            y[:, None],
            kernel="gaussian",
            loss="squared_error",
            sample_weight=None,
            device=torch.device("cpu"),
        )

    def __call__(self, widths):
        widths = np.asarray(widths, dtype=float)
        if not np.all(np.isfinite(widths) & (widths > 0)):
            return None
        return float(self.objective.evaluate(np.log(widths), order=0)[0])


def _version(distribution):
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions():
    import sknw

    found = {
        "python": platform.python_version(),
        "sknw": sknw.__version__,
    }
    for distribution in (
        "torch",
        "numpy",
        "scipy",
        "scikit-learn",
        "statsmodels",
        "kernelsmooth",
        "hessband",
        "pyGRNN",
    ):
        found[distribution] = _version(distribution)
    return found


def _git_commit():
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "sknw"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + (" (sknw/ modified)" if dirty else "")


def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 4], choices=[1, 4])
    parser.add_argument(
        "--contenders",
        nargs="+",
        default=list(CONTENDERS),
        choices=list(CONTENDERS),
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="stop a contender whose fits run longer (imports and warm-up apart)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="best of this many")
    parser.add_argument(
        "--repeat-below",
        type=float,
        default=5.0,
        help="a fit slower than this many seconds is not repeated",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=_usable_cores(),
        help="torch threads for sknw (default: the cores this process may use)",
    )
    parser.add_argument("--device", default="cpu", help="sknw's device")
    parser.add_argument(
        "--sknw-solver", default="auto", choices=["auto", "lbfgs", "sgd", "adam"]
    )
    parser.add_argument(
        "--output", default=str(Path(__file__).parent / "results" / "bench_learn")
    )
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    options = {
        "threads": args.threads,
        "device": args.device,
        "sknw_solver": args.sknw_solver,
        "repeats": args.repeats,
        "repeat_below": args.repeat_below,
    }
    load_start = os.getloadavg()
    if load_start[0] > 0.5:
        print(
            f"note: load average {load_start[0]:.2f}: other work is running, "
            "timings may suffer, torch's threads most of all"
            + (
                "; OMP_WAIT_POLICY=PASSIVE or --threads 1 helps"
                if args.threads > 1 and "OMP_WAIT_POLICY" not in os.environ
                else ""
            )
        )
    rows = []
    stopped = {}  # (contender, d) -> n at which it was stopped
    missing = {}  # contender -> message
    started = time.perf_counter()
    for n_features in args.dims:
        for n_samples in sorted(args.sizes):
            X, y = make_data(n_samples, n_features)
            score = Scorer(X, y)
            group = []
            for name in args.contenders:
                learn, _, distribution, dims, kind = CONTENDERS[name]
                row = {"n": n_samples, "d": n_features, "contender": name}
                if n_features not in dims:
                    if not name.startswith("sknw"):
                        row.update(status="1-D only", seconds=None)
                        group.append(row)
                    continue
                row["widths_learned"] = "one" if n_features == 1 else kind
                if name in missing:
                    row.update(status="not installed", seconds=None)
                elif (name, n_features) in stopped:
                    row.update(
                        status=f"> {args.max_seconds:.0f} s",
                        seconds=None,
                        note=f"skipped: stopped at n = {stopped[name, n_features]}",
                    )
                else:
                    load = os.getloadavg()[0]
                    status, result = run_contender(
                        name, n_samples, n_features, options, args.max_seconds
                    )
                    row["load_before"] = load
                    if status == "ok":
                        row.update(status="ok", **result)
                        row["loo_mse"] = score(result["widths"])
                    elif status == "missing":
                        missing[name] = result
                        row.update(status="not installed", seconds=None, note=result)
                    elif status == "timeout":
                        stopped[name, n_features] = n_samples
                        row.update(status=f"> {args.max_seconds:.0f} s", seconds=None)
                    else:  # "error" (an exception in fit) or "failed"
                        row.update(status=status, seconds=None, note=result)
                group.append(row)
                print(_format(row), flush=True)
            _ratios(group, n_features)
            rows.extend(group)

    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "device": args.device,
        "dtype": "float64",
        "cpu_count": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "torch_threads": args.threads,
        "torch_threads_note": "torch.set_num_threads(--threads) in sknw's "
        "processes and for the scoring; the other contenders run NumPy/SciPy "
        "with their default threads.",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "machine": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "sknw_commit": _git_commit(),
        "versions": versions(),
        "settings": {
            "sizes": sorted(args.sizes),
            "dims": args.dims,
            "max_seconds": args.max_seconds,
            "repeats": args.repeats,
            "repeat_below": args.repeat_below,
            "warm_up_rows": WARM_UP_ROWS,
            "sknw_solver": args.sknw_solver,
            "seed": 0,
            "kernel": "gaussian",
            "score": "sknw._loo_objective.LeaveOneOutObjective, float64, "
            "squared_error, raw data, dense",
        },
        "searches": {name: SEARCHES[name] for name in args.contenders},
        "missing": missing,
        "total_seconds": time.perf_counter() - started,
        "rows": rows,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=2))
    markdown = _markdown(report)
    output.with_suffix(".md").write_text(markdown)
    print()
    print(markdown)
    print(f"wrote {output.with_suffix('.json')} and {output.with_suffix('.md')}")


def _ratios(group, n_features):
    """Loss over the best loss of the group; time over sknw's."""
    losses = [row["loo_mse"] for row in group if row.get("loo_mse") is not None]
    best = min(losses) if losses else None
    reference = "sknw" if n_features == 1 else "sknw per feature"
    sknw_seconds = next(
        (
            row["seconds"]
            for row in group
            if row["contender"] == reference and row.get("seconds")
        ),
        None,
    )
    for row in group:
        if row.get("loo_mse") is not None and best:
            row["loss_vs_best"] = row["loo_mse"] / best
        if row.get("seconds") is not None and sknw_seconds:
            row["time_vs_sknw"] = row["seconds"] / sknw_seconds


def _widths_text(widths, precision=4):
    return ", ".join(f"{width:.{precision}g}" for width in widths)


def _format(row):
    head = f"n={row['n']:>6} d={row['d']} {row['contender']:<17}"
    if row.get("seconds") is None:
        return f"{head} {row['status']}" + (
            f" ({row['note']})" if row.get("note") else ""
        )
    loss = "—" if row.get("loo_mse") is None else f"{row['loo_mse']:.6f}"
    return (
        f"{head} {row['seconds']:9.3f} s  LOO MSE {loss}  "
        f"widths [{_widths_text(row['widths'], 3)}]  "
        f"peak {row['peak_rss_mib']:.0f} MiB  {row['note']}"
    )


def _markdown(report):
    settings = report["settings"]
    lines = [
        f"# bench_learn: {report['date'][:19]} UTC, {report['device']}, "
        f"{report['usable_cores']} cores, torch threads {report['torch_threads']}",
        "",
        "Versions: "
        + ", ".join(f"{key} {value}" for key, value in report["versions"].items())
        + f"; sknw commit {report['sknw_commit']}.",
        "",
        "Every learned width scored by the same float64 leave-one-out MSE (sknw's "
        "objective, raw data). Seconds: the fit alone, best of up to "
        f"{settings['repeats']} (a fit over {settings['repeat_below']:.0f} s is not "
        f"repeated), after a warm-up fit on {settings['warm_up_rows']} rows. A "
        f"contender is stopped after {settings['max_seconds']:.0f} s of fitting "
        '("> limit"), and then skipped at larger n. Loss / best: over the lowest '
        "LOO MSE at that (n, d); time / sknw: over sknw's (per feature at d = 4). "
        "Load average at start "
        f"{report['load_average_start'][0]:.2f}, at end "
        f"{report['load_average_end'][0]:.2f}; total "
        f"{report['total_seconds']:.0f} s.",
        "",
        "| n | d | contender | widths | seconds | time / sknw | LOO MSE "
        "| loss / best | learned widths | CPU/wall | peak RSS MiB | note |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        kind = row.get("widths_learned", "—")
        if row.get("seconds") is None:
            lines.append(
                f"| {row['n']} | {row['d']} | {row['contender']} | {kind} "
                f"| {row['status']} | — | — | — | — | — | — "
                f"| {row.get('note', '')} |"
            )
            continue
        loss = "—" if row.get("loo_mse") is None else f"{row['loo_mse']:.6f}"
        notes = [row["note"]] if row["note"] else []
        notes += row["warnings"]
        lines.append(
            f"| {row['n']} | {row['d']} | {row['contender']} | {kind} "
            f"| {row['seconds']:.3f} "
            f"| {row.get('time_vs_sknw', float('nan')):.2f} | {loss} "
            f"| {row.get('loss_vs_best', float('nan')):.5f} "
            f"| {_widths_text(row['widths'])} | {row['cpu_per_wall']:.2f} "
            f"| {row['peak_rss_mib']:.0f} | {'; '.join(notes)} |"
        )
    lines += ["", "How each contender searches:", ""]
    lines += [f"* {name}: {text}" for name, text in report["searches"].items()]
    if report["missing"]:
        lines += ["", "Not installed:", ""]
        lines += [f"* {name}: {text}" for name, text in report["missing"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

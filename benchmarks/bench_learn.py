"""Learning the bandwidth by leave-one-out: sknw against statsmodels and pyGRNN.

Each contender learns one width per feature on the same seeded data, in a
fresh process (so its peak memory is its own, and a contender past
--max-seconds is stopped). Every learned width is then scored by the same
leave-one-out mean squared error, computed densely in float64 by sknw's
objective, which the test suite checks against a NumPy reference.

Contenders: sknw with its L-BFGS, plain SGD and Adam solvers;
statsmodels ``KernelReg(reg_type="lc", bw="cv_ls")`` (Nelder-Mead on its own
leave-one-out objective); pyGRNN (5-fold cross-validation, not leave-one-out,
run only when ``import pyGRNN`` works: ``pip install pygrnn seaborn``).

    python benchmarks/bench_learn.py                    # about a minute
    python benchmarks/bench_learn.py --sizes 200 500 1000 5000 --large-n 50000
"""

import argparse
import datetime
import json
import multiprocessing
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np


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


def learn_sknw(X, y, solver, device):
    from sknw import NadarayaWatsonRegressor

    model = NadarayaWatsonRegressor(
        bandwidth="silverman",
        learn_bandwidth=True,
        solver=solver,
        random_state=0,
        device=device,
    )
    model.fit(X, y)
    return np.atleast_1d(model.bandwidth_), f"{model.n_iter_} iterations"


def learn_sknw_two_epochs(X, y, solver, device):
    """Two epochs of the Adam solver: time per epoch and peak memory at a size
    where running to convergence would take longer than a benchmark should."""
    from sknw import NadarayaWatsonRegressor

    model = NadarayaWatsonRegressor(
        bandwidth="silverman",
        learn_bandwidth=True,
        solver="adam",
        max_iter=2,
        random_state=0,
        device=device,
    )
    model.fit(X, y)
    return np.atleast_1d(model.bandwidth_), "2 epochs of adam (max_iter=2)"


def learn_statsmodels(X, y, solver, device):
    from statsmodels.nonparametric.kernel_regression import KernelReg

    model = KernelReg(y, X, var_type="c" * X.shape[1], reg_type="lc", bw="cv_ls")
    return np.asarray(model.bw, dtype=float), ""


def learn_pygrnn(X, y, solver, device):
    import contextlib
    import io

    from pyGRNN import GRNN

    with contextlib.redirect_stdout(io.StringIO()):
        model = GRNN().fit(X, y)
    return np.broadcast_to(np.asarray(model.sigma, dtype=float), X.shape[1]), (
        "5-fold CV objective"
    )


IMPORTS = {
    "statsmodels-cv_ls": "statsmodels.nonparametric.kernel_regression",
    "pygrnn": "pyGRNN",
}

CONTENDERS = {
    "sknw-lbfgs": (learn_sknw, "lbfgs"),
    "sknw-sgd": (learn_sknw, "sgd"),
    "sknw-adam": (learn_sknw, "adam"),
    "sknw-adam-2-epochs": (learn_sknw_two_epochs, "adam"),
    "statsmodels-cv_ls": (learn_statsmodels, None),
    "pygrnn": (learn_pygrnn, None),
}


def _peak_rss_mib():
    """Peak resident memory since the last reset, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss():
    """Start the peak over: ru_maxrss would carry the parent's across exec."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _child(name, n_samples, n_features, device, queue):
    import warnings

    warnings.simplefilter("ignore")
    X, y = make_data(n_samples, n_features)
    function, solver = CONTENDERS[name]
    # Imports, and torch's first-call set-up, are left out of the timing.
    if name.startswith("sknw"):
        function(X[:50], y[:50], solver, device)
    else:
        __import__(IMPORTS[name])
    _reset_peak_rss()
    started = time.perf_counter()
    bandwidth, note = function(X, y, solver, device)
    seconds = time.perf_counter() - started
    peak_mib = _peak_rss_mib()
    queue.put((bandwidth.tolist(), seconds, peak_mib, note))


def run_contender(name, n_samples, n_features, device, max_seconds):
    """Run one contender in a fresh process; None on time-out or failure."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(
        target=_child, args=(name, n_samples, n_features, device, queue)
    )
    process.start()
    process.join(max_seconds)
    if process.is_alive():
        process.kill()
        process.join()
        return None, f"stopped after {max_seconds:.0f} s"
    if queue.empty():
        return None, f"failed (exit code {process.exitcode})"
    return queue.get(), ""


def loo_loss(X, y, bandwidth):
    """Leave-one-out mean squared error at the given widths, float64."""
    import torch

    from sknw._loo_objective import LeaveOneOutObjective

    objective = LeaveOneOutObjective(
        X,
        y[:, None],
        kernel="gaussian",
        loss="squared_error",
        sample_weight=None,
        device=torch.device("cpu"),
    )
    return objective(np.log(np.asarray(bandwidth, dtype=float)))[0]


def pygrnn_available():
    try:
        import pyGRNN  # noqa: F401
    except Exception:
        return False
    return True


def versions():
    import scipy
    import sklearn
    import torch

    import sknw

    found = {
        "python": platform.python_version(),
        "sknw": sknw.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
    }
    try:
        import statsmodels

        found["statsmodels"] = statsmodels.__version__
    except ImportError:
        pass
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 500])
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument(
        "--large-n",
        type=int,
        default=0,
        help="also run two epochs of sknw's Adam solver (the default above "
        "5,000 samples) at this n (d = 4) and report their time and peak memory",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--output", default=str(Path(__file__).parent / "results" / "bench_learn")
    )
    args = parser.parse_args()

    names = ["sknw-lbfgs", "sknw-sgd", "sknw-adam", "statsmodels-cv_ls"]
    if pygrnn_available():
        names.append("pygrnn")
    else:
        print("pyGRNN is not importable: skipped (pip install pygrnn seaborn)")
    rows = []
    timed_out = set()
    started = time.perf_counter()
    for n_features in args.dims:
        for n_samples in args.sizes:
            X, y = make_data(n_samples, n_features)
            reference = None
            for name in names:
                if (name, n_features) in timed_out:
                    result, note = None, "skipped: stopped at a smaller n"
                else:
                    result, note = run_contender(
                        name, n_samples, n_features, args.device, args.max_seconds
                    )
                row = {"n": n_samples, "d": n_features, "contender": name}
                if result is None:
                    if note.startswith("stopped"):
                        timed_out.add((name, n_features))
                    row.update(seconds=None, note=note)
                else:
                    bandwidth, seconds, peak_mib, extra = result
                    loss = loo_loss(X, y, bandwidth)
                    if name == "sknw-lbfgs":
                        reference = (seconds, loss)
                    row.update(
                        seconds=seconds,
                        bandwidth=bandwidth,
                        loo_mse=loss,
                        peak_rss_mib=peak_mib,
                        note=extra,
                    )
                    if reference is not None:
                        row["time_vs_sknw_lbfgs"] = seconds / reference[0]
                        row["loss_vs_sknw_lbfgs"] = loss / reference[1]
                rows.append(row)
                print(_format(row), flush=True)

    if args.large_n:
        n_samples = args.large_n
        name = "sknw-adam-2-epochs"
        result, note = run_contender(name, n_samples, 4, args.device, 3600)
        row = {"n": n_samples, "d": 4, "contender": name, "note": note}
        if result is not None:
            bandwidth, seconds, peak_mib, extra = result
            row.update(
                seconds=seconds,
                bandwidth=bandwidth,
                peak_rss_mib=peak_mib,
                note=extra + "; loss not re-scored at this size",
            )
        rows.append(row)
        print(_format(row), flush=True)

    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "device": args.device,
        "dtype": "float64",
        "cpu_count": multiprocessing.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "versions": versions(),
        "max_seconds": args.max_seconds,
        "total_seconds": time.perf_counter() - started,
        "rows": rows,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=2))
    output.with_suffix(".md").write_text(_markdown(report))
    print(f"\nwrote {output.with_suffix('.json')} and {output.with_suffix('.md')}")
    print(_markdown(report))


def _format(row):
    if row.get("seconds") is None:
        return f"n={row['n']:>6} d={row['d']} {row['contender']:<18} {row['note']}"
    widths = np.array2string(np.asarray(row["bandwidth"]), precision=3)
    loss = f"{row['loo_mse']:.6f}" if "loo_mse" in row else "—"
    return (
        f"n={row['n']:>6} d={row['d']} {row['contender']:<18} "
        f"{row['seconds']:9.2f} s  loo mse {loss}  widths {widths}  "
        f"peak {row['peak_rss_mib']:.0f} MiB"
    )


def _markdown(report):
    lines = [
        f"# bench_learn: {report['date'][:19]}, {report['device']}, "
        f"{report['cpu_count']} CPUs",
        "",
        "Versions: "
        + ", ".join(f"{key} {value}" for key, value in report["versions"].items())
        + f". A contender is stopped after {report['max_seconds']:.0f} s. "
        "Leave-one-out MSE of every learned width scored the same way (float64).",
        "",
        "| n | d | contender | seconds | x sknw-lbfgs time | learned widths "
        "| LOO MSE | x sknw-lbfgs loss | peak RSS MiB (process, with imports) "
        "| note |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        if row.get("seconds") is None:
            lines.append(
                f"| {row['n']} | {row['d']} | {row['contender']} | — | — | — | — "
                f"| — | — | {row['note']} |"
            )
            continue
        widths = ", ".join(f"{width:.4g}" for width in row["bandwidth"])
        lines.append(
            f"| {row['n']} | {row['d']} | {row['contender']} | {row['seconds']:.2f} "
            f"| {row.get('time_vs_sknw_lbfgs', float('nan')):.1f} | {widths} "
            f"| {row.get('loo_mse', float('nan')):.6f} "
            f"| {row.get('loss_vs_sknw_lbfgs', float('nan')):.5f} "
            f"| {row['peak_rss_mib']:.0f} | {row['note']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

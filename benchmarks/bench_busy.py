"""Speed of sknw on a busy machine: two other torch processes computing beside it.

Each call is timed with torch's default number of threads and with one
thread (``threadpoolctl.threadpool_limits(1)``), first on the machine as it
is ("idle") and then with two other processes computing with torch (each with
its default threads) started beside it ("busy"). The ratio default / one
thread should stay near or below 1 in both: above 1 on a busy machine is the
collapse of threads that wait for each other while one is descheduled.

Usage: ``python benchmarks/bench_busy.py`` with sknw importable (installed, or
``PYTHONPATH=.`` from the repository root), a few minutes; results go
to ``benchmarks/results/bench_busy.json`` and ``.md``, with the load average
measured before the run (other users of the machine show there).
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
from sklearn.inspection import partial_dependence
from threadpoolctl import threadpool_limits

from sknw import NadarayaWatsonRegressor, NadarayaWatsonRegressorCV

HELPER = """
import torch
a = torch.randn(600, 600)
while True:
    (a @ a).exp_().sum()
"""


def _data(n_samples, n_features, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    return X, np.sin(X).sum(axis=1) + 0.1 * rng.normal(size=n_samples)


def _cases():
    """Name -> function of no arguments, data prepared outside the timing."""
    X_small, y_small = _data(500, 2)
    small = NadarayaWatsonRegressor(bandwidth=0.3).fit(X_small, y_small)
    X_med, y_med = _data(4000, 2)
    medium = NadarayaWatsonRegressor(bandwidth=0.3).fit(X_med, y_med)
    queries_med = _data(2000, 2, seed=1)[0]
    X_tiny, y_tiny = _data(200, 2)
    tiny = NadarayaWatsonRegressor(bandwidth=0.3).fit(X_tiny, y_tiny)
    queries_tiny = _data(50, 2, seed=2)[0]
    X_large, y_large = _data(10000, 2)
    large = NadarayaWatsonRegressor(bandwidth=0.3).fit(X_large, y_large)
    queries_large = _data(4000, 2, seed=3)[0]
    X_learn, y_learn = _data(1000, 2)
    X_pd, y_pd = _data(1000, 3)
    pd_model = NadarayaWatsonRegressor(bandwidth=0.4).fit(X_pd, y_pd)
    return {
        "small predict (200 x 500)": lambda: small.predict(X_small[:200]),
        "medium predict (2,000 x 4,000)": lambda: medium.predict(queries_med),
        "30 tiny predicts (50 x 200)": lambda: [
            tiny.predict(queries_tiny) for _ in range(30)
        ],
        "large predict (4,000 x 10,000)": lambda: large.predict(queries_large),
        "learning fit, RegressorCV (1,000)": lambda: NadarayaWatsonRegressorCV().fit(
            X_learn, y_learn
        ),
        "2-way partial dependence (8 x 8, 1,000)": lambda: partial_dependence(
            pd_model, X_pd, [(0, 1)], grid_resolution=8
        ),
    }


def _time(function, repeats=3):
    """Best of ``repeats`` wall-clock seconds."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def _run_all(cases):
    results = {}
    for name, function in cases.items():
        function()  # warm up
        default = _time(function)
        with threadpool_limits(1):
            one = _time(function)
        results[name] = {
            "default_s": round(default, 4),
            "one_thread_s": round(one, 4),
            "ratio": round(default / one, 2),
        }
        print(f"  {name}: {results[name]}", flush=True)
    return results


def main():
    import torch

    cases = _cases()
    load_before = os.getloadavg()
    print(f"cores {os.cpu_count()}, torch threads {torch.get_num_threads()}")
    print(f"load average before: {load_before}")
    print("idle:")
    idle = _run_all(cases)
    helpers = [subprocess.Popen([sys.executable, "-c", HELPER]) for _ in range(2)]
    try:
        time.sleep(2.0)
        print("busy (two torch processes beside):")
        busy = _run_all(cases)
    finally:
        for helper in helpers:
            helper.kill()
            helper.wait()
    record = {
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "idle": idle,
        "busy": busy,
    }
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    with open(os.path.join(folder, "bench_busy.json"), "w") as f:
        json.dump(record, f, indent=1)
    lines = [
        "# Busy machine: default threads against one thread",
        "",
        f"{record['cores']} cores, torch's default {record['torch_threads']} threads; "
        f"load average before the run {record['load_average_before']}, after "
        f"{record['load_average_after']}. Seconds, best of 3; ratio = default / one "
        "thread.",
        "",
        "| call | idle default | idle one | idle ratio | busy default | busy one "
        "| busy ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in cases:
        a, b = idle[name], busy[name]
        lines.append(
            f"| {name} | {a['default_s']} | {a['one_thread_s']} | {a['ratio']} | "
            f"{b['default_s']} | {b['one_thread_s']} | {b['ratio']} |"
        )
    with open(os.path.join(folder, "bench_busy.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

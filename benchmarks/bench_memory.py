"""Peak memory of prediction on the tree path and with many classes.

Each case runs in a fresh subprocess. Two peaks above the level at the start
of each step are reported, in MiB: the resident set size (RSS, VmHWM in
/proc/self/status after resetting it), which also counts memory the C
allocator keeps after it was freed, and the peak of NumPy's allocations
(tracemalloc). Torch's own allocations are only in the first.

Usage: ``python benchmarks/bench_memory.py`` (a minute or two).
"""

import json
import os
import subprocess
import sys

CASES = {
    # 50,000 training samples, 4,000 queries of which 1,000 sit in a cluster
    # of 45,000 samples, between the rows a sample of queries would take.
    "tree_crowded_queries": """
import numpy as np
from sklearn import config_context
from sknw import NadarayaWatsonRegressor
rng = np.random.default_rng(0)
X = np.vstack([rng.uniform(0, 100, size=(5000, 2)),
               rng.normal(50, 0.05, size=(45000, 2))])
y = rng.normal(size=len(X))
queries = rng.uniform(0, 100, size=(4000, 2))
sampled = np.unique(np.linspace(0, 3999, 256).astype(int))
crowded = np.setdiff1d(np.arange(4000), sampled)[::3][:1000]
queries[crowded] = rng.normal(50, 0.05, size=(len(crowded), 2))
model = NadarayaWatsonRegressor("epanechnikov", bandwidth=0.5, algorithm="tree")
model.fit(X, y)
reset()
with config_context(working_memory=64):
    prediction = model.predict(queries)
report("predict")
""",
    # 5,000 classes over 12,000 samples.
    "many_classes": """
import numpy as np
from sklearn import config_context
from sknw import NadarayaWatsonClassifier
rng = np.random.default_rng(0)
X = rng.normal(size=(12000, 2))
y = rng.integers(0, 5000, size=12000)
queries = rng.normal(size=(2000, 2))
model = NadarayaWatsonClassifier(bandwidth=0.1)
reset()
with config_context(working_memory=64):
    model.fit(X, y)
report("fit")
reset()
with config_context(working_memory=64):
    labels = model.predict(queries)
report("predict")
""",
}

PRELUDE = """
import json, os, tracemalloc
tracemalloc.start()
def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
def reset():
    global _base, _traced
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    _base = _status("VmRSS")
    tracemalloc.reset_peak()
    _traced = tracemalloc.get_traced_memory()[0] / 2**20
def report(name):
    rss = round(_status("VmHWM") - _base, 1)
    traced = round(tracemalloc.get_traced_memory()[1] / 2**20 - _traced, 1)
    print(json.dumps({name: {"rss": rss, "numpy": traced}}))
"""


def run(name):
    """Peak RSS above the level at the start of each step, in MiB."""
    out = subprocess.run(
        [sys.executable, "-c", PRELUDE + CASES[name]],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    ).stdout
    result = {}
    for line in out.splitlines():
        result.update(json.loads(line))
    return result


def main():
    results = {name: run(name) for name in CASES}
    print(json.dumps(results, indent=1))
    path = os.path.join(os.path.dirname(__file__), "results", "bench_memory.json")
    with open(path, "w") as f:
        json.dump({"working_memory_MiB": 64, "peak_above_start_MiB": results}, f)


if __name__ == "__main__":
    main()

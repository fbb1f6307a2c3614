"""
=========================================
Neighbour search: the tree and truncation
=========================================

A compact kernel such as the Epanechnikov gives no weight beyond one width,
so ``algorithm="tree"`` asks a KD-tree for each query's samples within reach
and weighs only those: the same predictions as the dense path, at a cost
that grows with the number of neighbours instead of with every (query,
sample) pair. The Gaussian reaches every sample; with ``truncation=t`` the
tree drops the samples whose weight is below t times the largest, and the
prediction moves by at most t × n_samples × (max y - min y).
"""

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from sknw import NadarayaWatsonRegressor

rng = np.random.default_rng(0)
n = 5_000
X = rng.uniform(size=(n, 2))
y = np.sin(6 * X[:, 0]) * np.cos(4 * X[:, 1]) + rng.normal(0, 0.1, n)
queries = rng.uniform(size=(1_000, 2))
# About 50 samples within one width of each query.
h = np.sqrt(50 / (np.pi * n))

# %%
# The Epanechnikov kernel on both paths: equal predictions, different cost.
times, predictions = {}, {}
for algorithm in ("dense", "tree"):
    model = NadarayaWatsonRegressor(
        kernel="epanechnikov", bandwidth=h, algorithm=algorithm
    ).fit(X, y)
    start = time.perf_counter()
    predictions[algorithm] = model.predict(queries)
    times[algorithm] = time.perf_counter() - start
    print(f"{algorithm:>5}: {times[algorithm]:.3f} s")
difference = np.abs(predictions["tree"] - predictions["dense"]).max()
print(f"largest difference between the paths: {difference:.1e}")
auto = NadarayaWatsonRegressor(kernel="epanechnikov", bandwidth=h).fit(X, y)
print(f"algorithm='auto' takes the {auto._fit_method} path here")

# %%
# The Gaussian with a truncation: the error against the dense prediction,
# and its bound, as the truncation grows.
dense = NadarayaWatsonRegressor(bandwidth=h, algorithm="dense").fit(X, y)
exact = dense.predict(queries)
truncations = np.logspace(-12, -2, 6)
errors = []
for truncation in truncations:
    model = NadarayaWatsonRegressor(
        bandwidth=h, algorithm="tree", truncation=truncation
    ).fit(X, y)
    errors.append(np.abs(model.predict(queries) - exact).max())
bounds = truncations * n * np.ptp(y)
print(
    "largest error over its bound: "
    f"{max(e / b for e, b in zip(errors, bounds)):.1e} (at most 1)"
)

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
axes[0].bar(list(times), list(times.values()), color=["C0", "C1"])
axes[0].set_xlabel("algorithm")
axes[0].set_ylabel("predict time (s)")
axes[0].set_title(f"Epanechnikov, {n:,} samples, {len(queries):,} queries")
axes[1].loglog(truncations, errors, "o-", label="largest |tree - dense|")
axes[1].loglog(truncations, bounds, "--", label="bound t · n · (max y - min y)")
axes[1].set_xlabel("truncation t")
axes[1].set_ylabel("error")
axes[1].set_title("Gaussian on the tree path")
axes[1].legend()
fig.tight_layout()
plt.show()

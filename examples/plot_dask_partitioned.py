"""
================================================
Predicting from a training set spread over Dask
================================================

A training set too large for one machine is held by Dask workers, a
partition each. :func:`sknw.dask.predict_partitioned` computes the kernel
sums of every block of queries over every partition where the partition
lives, and merges them into the prediction over the whole training set: the
same numbers as a model fitted in memory. A fitted model can also be applied
block by block to a large array of queries, with dask-ml's
``ParallelPostFit`` or :func:`sknw.dask.predict_blockwise`. A width learned by
leave-one-out needs every pair of training samples: it is learned on a sample
that fits in memory and passed on. The figure shows the training set coloured
by partition and the merged curves, smooth across the partitions' borders.
"""

# %%
# A training set in four partitions
# ---------------------------------
# 3,000 noisy samples of y = 2 sin x + x^0.8, sorted by x and cut into four
# partitions of uneven sizes, so each partition holds one stretch of x.
import dask.array as da
import numpy as np

rng = np.random.default_rng(0)
n_samples = 3000
X = np.sort(rng.uniform(0, 5, size=(n_samples, 1)), axis=0)
y = 2 * np.sin(X[:, 0]) + X[:, 0] ** 0.8 + rng.normal(0, 0.5, n_samples)

partitions = (900, 600, 1000, 500)
X_train = da.from_array(X, chunks=(partitions, 1))
y_train = da.from_array(y, chunks=partitions)
print(f"{X_train.numblocks[0]} partitions of {partitions} samples")

# %%
# A local cluster
# ---------------
# Two workers of one thread each. Worker processes (``processes=True``, the
# default) work the same; in a script they need the
# ``if __name__ == "__main__":`` guard, because each one imports the script.
# On a real cluster, ``Client("scheduler-address:8786")`` is all it takes.
from distributed import Client, LocalCluster

cluster = LocalCluster(
    n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
)
client = Client(cluster)

# %%
# Predictions from the partitions
# -------------------------------
# Only the estimator's parameters are used. Silverman's rule is computed from
# the partitioned data with Dask reductions, as ``fit`` computes it in memory.
# Four blocks of queries times four partitions make sixteen tasks of kernel
# sums, merged into one block of predictions per block of queries.
from sknw import NadarayaWatsonRegressor
from sknw.dask import predict_partitioned

model = NadarayaWatsonRegressor(bandwidth="silverman")
X_query = np.linspace(0, 5, 200)[:, None]
y_lazy = predict_partitioned(
    model, X_train, y_train, da.from_array(X_query, chunks=(50, 1))
)
print(f"lazy result: {y_lazy!r}")
y_partitioned = y_lazy.compute()

y_memory = model.fit(X, y).predict(X_query)
print(f"bandwidth from the rule: {model.bandwidth_[0]:.4f}")
print(f"largest difference to the model fitted in memory: "
      f"{np.abs(y_partitioned - y_memory).max():.1e}")  # fmt: skip

# %%
# A width learned by leave-one-out
# --------------------------------
# :class:`~sknw.NadarayaWatsonRegressorCV` learns the width from every pair of
# training samples, so ``predict_partitioned`` refuses it. Learn the width on a
# sample that fits in memory, and predict from the partitions with that width.
from sknw import NadarayaWatsonRegressorCV

rows = np.sort(rng.choice(n_samples, size=500, replace=False))
X_sample, y_sample = da.compute(X_train[rows], y_train[rows])
learned = NadarayaWatsonRegressorCV().fit(X_sample, y_sample)
print(f"width learned on {len(rows)} samples: {learned.bandwidth_:.4f}")
y_learned = predict_partitioned(
    NadarayaWatsonRegressor(bandwidth=learned.bandwidth_),
    X_train,
    y_train,
    X_query,
).compute()

# %%
# Many queries, one fitted model
# ------------------------------
# When the training set fits in memory but the queries do not, fit as usual
# and predict block by block: the model is sent to each worker once.
from dask_ml.wrappers import ParallelPostFit

from sknw.dask import predict_blockwise

X_many = da.random.default_rng(1).uniform(0, 5, size=(20_000, 1), chunks=(5_000, 1))
wrapped = ParallelPostFit(NadarayaWatsonRegressor(bandwidth=0.2)).fit(X, y)
y_many = wrapped.predict(X_many)
y_blocks = predict_blockwise(wrapped.estimator, X_many)
print(f"ParallelPostFit: {y_many.numblocks[0]} blocks of predictions")
print(f"predict_blockwise agrees: {np.allclose(y_many.compute(), y_blocks.compute())}")

# %%
# The fit, coloured by partition
# ------------------------------
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(7, 4))
borders = np.cumsum(partitions)[:-1]
for index, (start, stop) in enumerate(zip((0, *borders), np.cumsum(partitions))):
    ax.scatter(
        X[start:stop:5, 0], y[start:stop:5], s=4, alpha=0.5,
        label=f"partition {index}",
    )  # fmt: skip
for border in X[borders, 0]:
    ax.axvline(border, color="0.6", linestyle=":", linewidth=1)
ax.plot(X_query[:, 0], y_partitioned, color="black", label="Silverman's width")
ax.plot(X_query[:, 0], y_learned, color="black", linestyle="--", label="learned width")
ax.set(xlabel="x", ylabel="y", title="Nadaraya-Watson over four partitions")
ax.legend(loc="upper right", fontsize="small", markerscale=3)
fig.tight_layout()

# %%
# Close the cluster.
client.close()
cluster.close()
print("cluster closed")
plt.show()

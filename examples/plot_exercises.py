"""
=====================================
The attention-pooling exercises, run
=====================================

The d2l chapter on attention pooling ends with exercises; here they are
answered with the library.

1. More data and shrinking widths: with h proportional to n^(-1/(d+4)) the
   error against the truth falls as n grows (the estimator is consistent).
2. One width per feature is another parametric attention pooling: learning it
   by leave-one-out sends an irrelevant feature's width far out.
3. With one shared width the classifier is the Parzen-window classifier: its
   probabilities are the class-conditional kernel density estimates of
   scikit-learn's ``KernelDensity`` times the class counts, normalised.
4. On the unit sphere ``|q - k|^2 = 2 - 2 q.k``, so Gaussian attention pooling is
   dot-product attention: softmax(q.k / h^2).
"""

# %%
# 1. Consistency
# --------------
import matplotlib.pyplot as plt
import numpy as np

from sknw import (
    NadarayaWatsonClassifier,
    NadarayaWatsonRegressor,
    NadarayaWatsonRegressorCV,
)

rng = np.random.default_rng(0)


def truth(x):
    return 2 * np.sin(x) + x**0.8


grid = np.linspace(0.5, 4.5, 200)[:, None]
sizes = [50, 100, 200, 400, 800, 1600, 3200]
errors = []
for n in sizes:
    X = rng.uniform(0, 5, size=(n, 1))
    y = truth(X[:, 0]) + rng.normal(0, 0.5, n)
    bandwidth = 0.8 * n ** (-1 / 5)
    model = NadarayaWatsonRegressor(bandwidth=bandwidth).fit(X, y)
    errors.append(np.mean((model.predict(grid) - truth(grid[:, 0])) ** 2))
    print(f"n = {n:>5}, h = {bandwidth:.3f}: mean squared error {errors[-1]:.4f}")

fig, ax = plt.subplots()
ax.loglog(sizes, errors, "o-", label="Nadaraya-Watson")
ax.loglog(sizes, errors[0] * (np.array(sizes) / sizes[0]) ** (-4 / 5), "--",
          label="n^(-4/5)")  # fmt: skip
ax.set_xlabel("n")
ax.set_ylabel("mean squared error against the truth")
ax.legend()

# %%
# 2. One width per feature
# ------------------------
X = rng.normal(size=(300, 2))
y = np.sin(2 * X[:, 0]) + rng.normal(0, 0.1, 300)  # the second feature is noise
model = NadarayaWatsonRegressorCV(bandwidth=[1.0, 1.0]).fit(X, y)
informative, noise = model.bandwidth_
print(f"learned widths: informative feature {informative:.3f}, noise {noise:.3g}")

# %%
# 3. The Parzen-window classifier
# -------------------------------
from sklearn.neighbors import KernelDensity

X = np.concatenate([rng.normal(-1, 1, 60), rng.normal(1.5, 0.7, 40)])[:, None]
labels = np.array([0] * 60 + [1] * 40)
queries = np.linspace(-3, 3, 7)[:, None]
proba = NadarayaWatsonClassifier(bandwidth=0.5).fit(X, labels).predict_proba(queries)
densities = np.column_stack([
    (labels == c).sum()
    * np.exp(KernelDensity(bandwidth=0.5).fit(X[labels == c]).score_samples(queries))
    for c in (0, 1)
])  # fmt: skip
parzen = densities / densities.sum(axis=1, keepdims=True)
print("largest difference from KernelDensity:", np.abs(proba - parzen).max())

# %%
# 4. Dot-product attention on the unit sphere
# -------------------------------------------
keys = rng.normal(size=(100, 3))
keys /= np.linalg.norm(keys, axis=1, keepdims=True)
queries = rng.normal(size=(5, 3))
queries /= np.linalg.norm(queries, axis=1, keepdims=True)
h = 0.4
model = NadarayaWatsonRegressor(bandwidth=h).fit(keys, rng.normal(size=100))
scores = queries @ keys.T / h**2
dot_product = np.exp(scores - scores.max(axis=1, keepdims=True))
dot_product /= dot_product.sum(axis=1, keepdims=True)
difference = np.abs(model.attention_weights(queries) - dot_product).max()
print("largest difference from softmax(q.k / h^2):", difference)

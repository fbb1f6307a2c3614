"""
====================
Every kernel of sknw
====================

Beyond the chapter's four, sknw names ten kernels (see the user guide for
their formulas). Left, each shape K(u), read off the library as the
attention a query at 0 gives keys at distance u, relative to a key at 0.
Right, the same 1-D data fitted with every kernel at one width, h = 0.6:
compact kernels give weight only within one width, the Gaussian and
exponential everywhere, and the constant kernel is average pooling.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from sknw import NadarayaWatsonRegressor

rng = np.random.default_rng(0)
X = np.sort(rng.uniform(0, 5, size=(60, 1)), axis=0)
y = 2 * np.sin(X[:, 0]) + X[:, 0] ** 0.8 + rng.normal(0, 0.5, 60)
grid = np.linspace(0, 5, 300)[:, None]
u = np.linspace(0, 2, 201)[:, None]

kernels = [
    "gaussian", "tophat", "epanechnikov", "linear", "biweight",
    "triweight", "tricube", "cosine", "exponential", "constant",
]  # fmt: skip
fig, axes = plt.subplots(1, 2, figsize=(13, 5))
axes[1].scatter(X[:, 0], y, s=10, color="gray", alpha=0.5, label="data")
for kernel in kernels:
    shape = NadarayaWatsonRegressor(kernel=kernel).fit(u, np.zeros(len(u)))
    attention = shape.attention_weights([[0.0]])[0]
    axes[0].plot(u[:, 0], attention / attention[0], label=kernel)
    model = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.6).fit(X, y)
    axes[1].plot(grid[:, 0], model.predict(grid), label=kernel)
    print(f"{kernel:>12}: R^2 on the training data {model.score(X, y):.3f}")
axes[0].set_xlabel("scaled distance u = |query - key| / h")
axes[0].set_ylabel("K(u), relative to K(0)")
axes[0].set_title("The ten kernel shapes")
axes[0].legend(ncol=2, fontsize="small")
axes[1].set_xlabel("x")
axes[1].set_ylabel("y")
axes[1].set_title("Every kernel at h = 0.6")
axes[1].legend(ncol=2, fontsize="small")
fig.tight_layout()
plt.show()

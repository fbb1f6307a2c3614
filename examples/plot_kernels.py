"""
===========================
Kernels and widths compared
===========================

The same 1-D data fitted with every named kernel at one width, and with the
Gaussian at the widths 0.1, 0.2, 0.5 and 1: compact kernels give weight only
within one width, the Gaussian and exponential everywhere; a narrow width
follows the noise, a wide one flattens the curve.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from sknw import AttentionWeightsDisplay, NadarayaWatsonRegressor

rng = np.random.default_rng(0)
X = np.sort(rng.uniform(0, 5, size=(60, 1)), axis=0)
y = 2 * np.sin(X[:, 0]) + X[:, 0] ** 0.8 + rng.normal(0, 0.5, 60)
grid = np.linspace(0, 5, 300)[:, None]

# %%
# The kernels at h = 0.6
# ----------------------
kernels = [
    "gaussian", "tophat", "epanechnikov", "linear", "biweight",
    "triweight", "tricube", "cosine", "exponential", "constant",
]  # fmt: skip
fig, ax = plt.subplots(figsize=(8, 5))
ax.scatter(X[:, 0], y, s=10, color="gray", alpha=0.5)
for kernel in kernels:
    model = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.6).fit(X, y)
    ax.plot(grid[:, 0], model.predict(grid), label=kernel)
    score = model.score(X, y)
    print(f"{kernel:>12}: R^2 on the training data {score:.3f}")
ax.legend(ncol=2, fontsize="small")
ax.set_title("Every kernel at h = 0.6")

# %%
# The Gaussian's width
# --------------------
fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
for ax, bandwidth in zip(axes, [0.1, 0.2, 0.5, 1.0]):
    model = NadarayaWatsonRegressor(bandwidth=bandwidth).fit(X, y)
    AttentionWeightsDisplay.from_estimator(model, grid[::6], ax=ax)
    ax.set_title(f"h = {bandwidth}")
fig.tight_layout()

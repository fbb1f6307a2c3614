"""
========================================================
d2l 4: a fit per kernel, and the Gaussian at four widths
========================================================

Section 11.2's data (40 samples of f(x) = 2 sin x + x with noise of standard
deviation 1), fitted as the chapter does:

1. with each of its four kernels at width 1 — the Gaussian, the boxcar, the
   constant (average pooling) and the chapter's "Epanechikov", which is
   sknw's ``"linear"`` (``max(1 - |x|, 0)``);
2. with the Gaussian at the widths 0.1, 0.2, 0.5 and 1.

Under each fit, the attention heatmap: the queries 0, 0.1, ..., 4.9 by the
sorted training samples, on one colour scale per figure. The compact kernels
give no weight beyond one width, so their heatmaps are bands with sharp
edges; the constant kernel's is uniform. A narrow Gaussian follows the noise
(each query attends to one or two samples); a wide one averages over
most of the data.
"""

# %%
# The data of section 11.2
# ------------------------
import matplotlib.pyplot as plt
import numpy as np

from sknw import AttentionWeightsDisplay, FittedCurveDisplay, NadarayaWatsonRegressor


def f(x):
    return 2 * np.sin(x) + x


rng = np.random.default_rng(11)
X_train = np.sort(rng.uniform(0, 5, size=(40, 1)), axis=0)
y_train = f(X_train[:, 0]) + rng.normal(0, 1.0, 40)
X_query = np.arange(0, 5, 0.1)[:, None]


def fits_and_heatmaps(models, title):
    """One column per model: its fit above, its attention heatmap below."""
    largest = max(m.attention_weights(X_query).max() for m in models.values())
    fig, axes = plt.subplots(2, len(models), figsize=(16, 7))
    for column, (name, model) in enumerate(models.items()):
        curve = FittedCurveDisplay.from_estimator(
            model, X_train, y_train, truth=f, ax=axes[0, column]
        )
        curve.ax_.set_title(name)
        curve.ax_.legend(fontsize="small", loc="lower center")
        heatmap = AttentionWeightsDisplay.from_estimator(
            model, X_query, ax=axes[1, column]
        )
        heatmap.image_.set_clim(0, largest)
        heatmap.colorbar_.set_label("attention weight")
        heatmap.ax_.set_xlabel("sorted training inputs (keys)")
        heatmap.ax_.set_ylabel("sorted queries")
        heatmap.ax_.set_title(f"{name}: attention")
        error = np.mean((model.predict(X_query) - f(X_query[:, 0])) ** 2)
        print(f"{name:>22}: mean squared error against f {error:.3f}")
    fig.suptitle(title)
    fig.tight_layout()


# %%
# One fit per kernel, at width 1
# -------------------------------
kernels = {
    "Gaussian": "gaussian",
    "Boxcar": "boxcar",
    "Constant": "constant",
    "Epanechikov (linear)": "linear",
}
fits_and_heatmaps(
    {
        name: NadarayaWatsonRegressor(kernel=kernel, bandwidth=1.0).fit(
            X_train, y_train
        )
        for name, kernel in kernels.items()
    },
    "The chapter's four kernels at width 1",
)

# %%
# The Gaussian at four widths
# ---------------------------
fits_and_heatmaps(
    {
        f"Gaussian, h = {h}": NadarayaWatsonRegressor(bandwidth=h).fit(X_train, y_train)
        for h in (0.1, 0.2, 0.5, 1.0)
    },
    "The Gaussian kernel at the widths 0.1, 0.2, 0.5 and 1",
)
plt.show()

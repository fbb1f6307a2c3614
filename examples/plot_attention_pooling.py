"""
===========================================
Average pooling and attention pooling (d2l)
===========================================

The d2l chapter's toy problem: 50 noisy samples of y = 2 sin x + x^0.8 on
[0, 5]. Average pooling predicts the mean of y everywhere; attention pooling
(Nadaraya-Watson with a Gaussian kernel) weights each training sample by its
closeness to the query. The heatmaps show the attention weights, queries by
training samples: uniform for average pooling, a band along the diagonal for
attention pooling.
"""

# %%
# The data
# --------
import numpy as np

rng = np.random.default_rng(0)
n_train = 50
X_train = np.sort(rng.uniform(0, 5, size=(n_train, 1)), axis=0)


def truth(x):
    return 2 * np.sin(x) + x**0.8


y_train = truth(X_train[:, 0]) + rng.normal(0, 0.5, n_train)
X_query = np.linspace(0, 5, 50)[:, None]

# %%
# Average pooling and attention pooling
# -------------------------------------
# ``kernel="constant"`` gives every sample the same weight; the Gaussian
# kernel with ``bandwidth=0.5`` is the chapter's nonparametric attention.
import matplotlib.pyplot as plt

from sknw import AttentionWeightsDisplay, FittedCurveDisplay, NadarayaWatsonRegressor

average = NadarayaWatsonRegressor(kernel="constant").fit(X_train, y_train)
attention = NadarayaWatsonRegressor(bandwidth=0.5).fit(X_train, y_train)

fig, axes = plt.subplots(2, 2, figsize=(10, 8))
for column, (name, model) in enumerate(
    [("average pooling", average), ("attention pooling", attention)]
):
    curve = FittedCurveDisplay.from_estimator(
        model, X_train, y_train, truth=truth, ax=axes[0, column]
    )
    curve.ax_.set_title(name)
    AttentionWeightsDisplay.from_estimator(model, X_query, ax=axes[1, column])
fig.tight_layout()

# %%
# Attention pooling follows the curve; average pooling cannot.
for name, model in [("average", average), ("attention", attention)]:
    error = np.mean((model.predict(X_query) - truth(X_query[:, 0])) ** 2)
    print(f"{name} pooling: mean squared error against the truth {error:.3f}")

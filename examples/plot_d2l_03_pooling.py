"""
===================================================
d2l 3: average pooling and attention pooling, h = 1
===================================================

Section 10.2's data (50 noisy samples of f(x) = 2 sin x + x^0.8) and its two
first estimators:

- **average pooling** predicts the mean of the training targets at every
  query: ``kernel="constant"``;
- **nonparametric attention pooling** weighs the training samples by
  softmax(-(x - x_i)^2 / 2): the Gaussian kernel at the chapter's width,
  ``bandwidth=1.0`` (the weight is exp(-(x - x_i)^2 / 2h^2)).

Below each fit, its attention heatmap: queries (the 50 points 0, 0.1, ...,
4.9) by training samples, both sorted. Both heatmaps share one colour scale,
so the uniform weights of average pooling (1/50 each) look as pale as they
are beside the band of attention pooling.
"""

# %%
# The data of section 10.2
# ------------------------
import matplotlib.pyplot as plt
import numpy as np

from sknw import AttentionWeightsDisplay, FittedCurveDisplay, NadarayaWatsonRegressor


def f(x):
    return 2 * np.sin(x) + x**0.8


rng = np.random.default_rng(0)
X_train = np.sort(rng.uniform(0, 5, size=(50, 1)), axis=0)
y_train = f(X_train[:, 0]) + rng.normal(0, 0.5, 50)
X_query = np.arange(0, 5, 0.1)[:, None]

# %%
# Fits and heatmaps
# -----------------
average = NadarayaWatsonRegressor(kernel="constant").fit(X_train, y_train)
attention = NadarayaWatsonRegressor(kernel="gaussian", bandwidth=1.0)
attention.fit(X_train, y_train)

# The chapter's formula, in NumPy: softmax over the training samples.
scores = -((X_query - X_train[:, 0]) ** 2) / 2
softmax = np.exp(scores - scores.max(axis=1, keepdims=True))
softmax /= softmax.sum(axis=1, keepdims=True)
difference = np.abs(attention.attention_weights(X_query) - softmax).max()
print(f"attention weights against softmax(-(x - x_i)^2 / 2): {difference:.1e}")

largest = attention.attention_weights(X_query).max()
fig, axes = plt.subplots(2, 2, figsize=(11, 8))
for column, (name, model) in enumerate(
    [("Average pooling", average), ("Attention pooling, Gaussian, h = 1", attention)]
):
    curve = FittedCurveDisplay.from_estimator(
        model, X_train, y_train, truth=f, ax=axes[0, column]
    )
    curve.ax_.set_title(name)
    heatmap = AttentionWeightsDisplay.from_estimator(model, X_query, ax=axes[1, column])
    heatmap.image_.set_clim(0, largest)  # one colour scale for both
    heatmap.colorbar_.set_label("attention weight")
    heatmap.ax_.set_xlabel("sorted training inputs (keys)")
    heatmap.ax_.set_ylabel("sorted queries")
    heatmap.ax_.set_title(f"{name}: attention weights")
    error = np.mean((model.predict(X_query) - f(X_query[:, 0])) ** 2)
    print(f"{name}: mean squared error against f {error:.3f}")
fig.tight_layout()
plt.show()

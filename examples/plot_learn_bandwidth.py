"""
===================================
Learning the width by leave-one-out
===================================

The d2l chapter's parametric attention pooling learns the weight w = 1/h by
gradient descent. ``learn_bandwidth=True`` does this on the leave-one-out
loss (each sample predicted from all the others), so the width cannot shrink
to zero and memorise the data. The figure shows the learned curve, the sharper
heatmap, and the loss at each iteration.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from sknw import (
    AttentionWeightsDisplay,
    FittedCurveDisplay,
    LossCurveDisplay,
    NadarayaWatsonRegressor,
)

rng = np.random.default_rng(0)
X = np.sort(rng.uniform(0, 5, size=(50, 1)), axis=0)


def truth(x):
    return 2 * np.sin(x) + x**0.8


y = truth(X[:, 0]) + rng.normal(0, 0.5, 50)

# %%
# Start wide, at h = 2, and learn.
model = NadarayaWatsonRegressor(bandwidth=2.0, learn_bandwidth=True, verbose=1)
model.fit(X, y)
print(f"learned h = {model.bandwidth_:.3f}, so w = 1/h = {1 / model.bandwidth_:.2f}")

fig, axes = plt.subplots(1, 3, figsize=(15, 4))
FittedCurveDisplay.from_estimator(model, X, y, truth=truth, ax=axes[0])
AttentionWeightsDisplay.from_estimator(
    model, np.linspace(0, 5, 50)[:, None], ax=axes[1]
)
LossCurveDisplay.from_estimator(model, ax=axes[2])
fig.tight_layout()

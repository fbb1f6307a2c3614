"""
===================================
Learning the width by leave-one-out
===================================

The d2l chapter's parametric attention pooling learns the weight w = 1/h by
gradient descent. :class:`~sknw.NadarayaWatsonRegressorCV` learns it on the
leave-one-out loss (each sample predicted from all the others), so the width
cannot shrink to zero and memorise the data. It is to
:class:`~sknw.NadarayaWatsonRegressor` what scikit-learn's ``RidgeCV`` is to
``Ridge``: the same predictions, with the hyperparameter chosen by an exact
and efficient leave-one-out. The figures show the learned curve, its heatmap
and the loss at each iteration; the loss against the width, with the learned
width at its minimum; and the textbook's minibatch SGD beside the default
search.
"""

# %%
# Learn the width
# ---------------
# Start wide, at h = 2. The default solver scans the exact leave-one-out loss
# over the widths the data allow, then refines the best one by Newton steps:
# a handful of iterations.
import matplotlib.pyplot as plt
import numpy as np

from sknw import (
    AttentionWeightsDisplay,
    FittedCurveDisplay,
    LossCurveDisplay,
    NadarayaWatsonRegressorCV,
)

rng = np.random.default_rng(0)
X = np.sort(rng.uniform(0, 5, size=(50, 1)), axis=0)


def truth(x):
    return 2 * np.sin(x) + x**0.8


y = truth(X[:, 0]) + rng.normal(0, 0.5, 50)

model = NadarayaWatsonRegressorCV(bandwidth=2.0, verbose=1).fit(X, y)
print(f"learned h = {model.bandwidth_:.3f}, so w = 1/h = {1 / model.bandwidth_:.2f}")

fig, axes = plt.subplots(1, 3, figsize=(15, 4))
FittedCurveDisplay.from_estimator(model, X, y, truth=truth, ax=axes[0])
AttentionWeightsDisplay.from_estimator(
    model, np.linspace(0, 5, 50)[:, None], ax=axes[1]
)
LossCurveDisplay.from_estimator(model, ax=axes[2])
axes[0].set_title(f"The fit at the learned width h = {model.bandwidth_:.3f}")
axes[1].set_title("Its attention weights")
axes[2].set_title(f"The loss: {model.n_iter_} iterations from h = 2")
fig.tight_layout()

# %%
# The loss it minimises
# ---------------------
# Leaving sample i out of its own prediction is masking the diagonal of the
# attention matrix and renormalising the rows. Scanning that loss on a grid of
# widths shows the learned width at its minimum; the CV estimator computes it
# from one pass over the pairs of samples, without the grid.
from sknw import NadarayaWatsonRegressor


def leave_one_out_mse(bandwidth):
    fitted = NadarayaWatsonRegressor(bandwidth=bandwidth).fit(X, y)
    attention = fitted.attention_weights(X)
    np.fill_diagonal(attention, 0)
    attention /= attention.sum(axis=1, keepdims=True)
    return np.mean((attention @ y - y) ** 2)


widths = np.geomspace(0.02, 5, 100)
losses = [leave_one_out_mse(width) for width in widths]
print(f"leave-one-out MSE, best on the grid: {min(losses):.4f}")
print(f"loss_curve_[-1], at the learned width: {model.loss_curve_[-1]:.4f}")

# %%
# It is scikit-learn's ``LeaveOneOut`` cross-validation of
# :class:`~sknw.NadarayaWatsonRegressor` at that width, 50 fits computed at
# once.
from sklearn.model_selection import LeaveOneOut, cross_val_score

scores = cross_val_score(
    NadarayaWatsonRegressor(bandwidth=model.bandwidth_),
    X,
    y,
    cv=LeaveOneOut(),
    scoring="neg_mean_squared_error",
)
print(f"LeaveOneOut cross-validation at the learned width: {-scores.mean():.4f}")

fig, ax = plt.subplots(figsize=(6, 4))
ax.semilogx(widths, losses, label="leave-one-out loss")
ax.axvline(model.bandwidth_, color="black", linestyle="--", label="learned h")
ax.plot(model.bandwidth_, model.loss_curve_[-1], "o", color="black")
ax.set(xlabel="bandwidth h", ylabel="leave-one-out mean squared error")
ax.set_title("The leave-one-out loss against the width")
ax.legend()
fig.tight_layout()

# %%
# The textbook's loop
# -------------------
# ``solver="sgd"`` is the chapter's training loop: minibatch gradient descent
# on the log of the width, the loss of each row of the batch predicted from
# all the other samples. Its ``loss_curve_`` records the exact loss after each
# epoch, and it stops once five epochs have improved it by less than ``tol``
# (relative to the loss of predicting the mean). It takes more
# iterations than the default search to reach about the same width.
sgd = NadarayaWatsonRegressorCV(
    bandwidth=2.0, solver="sgd", batch_size=10, random_state=0
).fit(X, y)
print(
    f"sgd: h = {sgd.bandwidth_:.3f} after {sgd.n_iter_} epochs; "
    f"auto: h = {model.bandwidth_:.3f} after {model.n_iter_} iterations"
)

fig, ax = plt.subplots(figsize=(6, 4))
LossCurveDisplay.from_estimator(sgd, ax=ax)
LossCurveDisplay.from_estimator(model, ax=ax)
ax.legend(ax.get_lines(), ["solver='sgd', batch_size=10", "solver='auto'"])
ax.set_title("The textbook's loop beside the default search")
fig.tight_layout()
plt.show()

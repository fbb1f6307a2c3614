"""
===================================================
d2l 5: parametric attention pooling, trained by SGD
===================================================

Section 10.2 ends with *parametric* attention pooling: the Gaussian weight
softmax(-((x - x_i) w)^2 / 2) with a learnable w, trained by stochastic
gradient descent with learning rate 0.5 for 5 epochs, each training input a
query whose keys are all the *other* training inputs. In sknw the width is
h = 1/w, and that training loop is
``NadarayaWatsonRegressorCV(solver="sgd", learning_rate=0.5, max_iter=5)``:
the loss of each training sample predicted from all the others is the
leave-one-out loss.

Two differences from the chapter's code, both for steadier steps: sknw steps
on log h rather than on w, and divides the loss by the loss of predicting
the mean, so that a step does not depend on the scale of y. The chapter's
own loop, written below in torch, steps on w with the summed squared error:
its first step jumps from w = 1 to w = 22 (h = 0.05), far past the
leave-one-out minimum (w = 4.9), which is why the chapter's fitted curve
comes out jagged. sknw's loop moves from h = 1 towards the minimum, and its default
solver (``solver="auto"``) finds the minimum itself in a handful of
iterations.
"""

# %%
# The data of section 10.2
# ------------------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from sknw import (
    AttentionWeightsDisplay,
    FittedCurveDisplay,
    LossCurveDisplay,
    NadarayaWatsonRegressor,
    NadarayaWatsonRegressorCV,
)


def f(x):
    return 2 * np.sin(x) + x**0.8


rng = np.random.default_rng(0)
X_train = np.sort(rng.uniform(0, 5, size=(50, 1)), axis=0)
y_train = f(X_train[:, 0]) + rng.normal(0, 0.5, 50)
X_query = np.arange(0, 5, 0.1)[:, None]

# %%
# Training by SGD, as the chapter does
# ------------------------------------
# Start at the nonparametric width, h = 1 (w = 1); the batch size of 200 is
# more than the 50 samples, so each epoch is one full-batch step, as in the
# chapter. Five epochs do not reach the minimum, and the solver says so.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    sgd = NadarayaWatsonRegressorCV(
        bandwidth=1.0, solver="sgd", learning_rate=0.5, max_iter=5, random_state=0
    ).fit(X_train, y_train)
exact = NadarayaWatsonRegressorCV(bandwidth=1.0).fit(X_train, y_train)
print(f"sknw, 5 epochs of SGD: h = {sgd.bandwidth_:.3f} (w = {1 / sgd.bandwidth_:.2f})")
print(
    f"sknw, solver='auto':   h = {exact.bandwidth_:.3f} "
    f"(w = {1 / exact.bandwidth_:.2f}), {exact.n_iter_} iterations"
)

# %%
# The chapter's loop, written in torch
# ------------------------------------
# w starts at 1 (the chapter draws it at random in [0, 1)); the keys of each
# query leave the query itself out; the loss is the summed squared error.
x = torch.tensor(X_train[:, 0])
y = torch.tensor(y_train)
others = ~torch.eye(50, dtype=torch.bool)
keys = x.expand(50, 50)[others].reshape(50, 49)
values = y.expand(50, 50)[others].reshape(50, 49)
w = torch.ones(1, dtype=torch.float64, requires_grad=True)
optimizer = torch.optim.SGD([w], lr=0.5)
book_losses, book_w = [], [1.0]
for epoch in range(5):
    attention = torch.softmax(-(((x[:, None] - keys) * w) ** 2) / 2, dim=1)
    loss = ((attention * values).sum(dim=1) - y).pow(2).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    book_losses.append(loss.item() / 50)
    book_w.append(w.item())
    print(
        f"chapter's loop, epoch {epoch + 1}: mean loss {book_losses[-1]:.3f}, "
        f"w = {book_w[-1]:.2f}"
    )
book = NadarayaWatsonRegressor(bandwidth=1 / book_w[-1]).fit(X_train, y_train)

# %%
# The loss curves
# ---------------
# ``loss_curve_`` holds the leave-one-out mean squared error at the start and
# after each epoch; the chapter's loop reports the mean of its loss before
# each step.
fig, ax = plt.subplots(figsize=(6, 4))
LossCurveDisplay.from_estimator(sgd, ax=ax)
ax.plot(range(len(book_losses)), book_losses, "s--", label="the chapter's loop (on w)")
ax.axhline(
    exact.loss_curve_[-1], color="gray", linestyle=":", label="minimum (solver='auto')"
)
ax.lines[0].set_label("sknw solver='sgd', learning_rate=0.5")
ax.set_xlabel("epoch")
ax.set_ylabel("leave-one-out mean squared error")
ax.set_title("Parametric attention pooling: training")
ax.legend()
fig.tight_layout()

# %%
# The fitted curves and the sharper heatmaps
# ------------------------------------------
# Against the nonparametric h = 1, the learned widths are narrower, so each
# query attends to fewer samples: the band of the heatmap is sharper (one
# colour scale for the four heatmaps). Last, the width at the minimum of the
# leave-one-out loss, which the default solver finds.
models = {
    "nonparametric, h = 1": NadarayaWatsonRegressor(bandwidth=1.0).fit(
        X_train, y_train
    ),
    f"sknw SGD, h = {sgd.bandwidth_:.2f}": sgd,
    f"chapter's loop, h = {book.bandwidth_:.2f}": book,
    f"leave-one-out minimum, h = {exact.bandwidth_:.2f}": exact,
}
largest = max(m.attention_weights(X_query).max() for m in models.values())
fig, axes = plt.subplots(2, 4, figsize=(18, 8))
for column, (name, model) in enumerate(models.items()):
    curve = FittedCurveDisplay.from_estimator(
        model, X_train, y_train, truth=f, ax=axes[0, column]
    )
    curve.ax_.set_title(name)
    heatmap = AttentionWeightsDisplay.from_estimator(model, X_query, ax=axes[1, column])
    heatmap.image_.set_clim(0, largest)
    heatmap.colorbar_.set_label("attention weight")
    heatmap.ax_.set_xlabel("sorted training inputs (keys)")
    heatmap.ax_.set_ylabel("sorted queries")
    heatmap.ax_.set_title(f"{name}: attention")
fig.tight_layout()
plt.show()

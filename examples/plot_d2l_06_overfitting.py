"""
==================================================
d2l 6: the width collapses unless one is left out
==================================================

Two exercises of section 11.2 ask what happens when the width is learned by
minimising the squared error of the training samples directly, and how to
learn it by stochastic gradient descent.

- **The training error collapses the width.** Each training sample's
  prediction includes its own value, with the largest weight of all; as the
  width shrinks, that weight takes over, each sample predicts itself and the
  training error falls to 0. Gradient descent on it drives the width towards
  0, and the curve interpolates the noise.
- **Leaving one out stops it.** Predict each training sample from all the
  *others* (mask the diagonal of the attention) and the loss has a minimum at
  a positive width. Gradient descent on that loss settles there; it is what
  ``NadarayaWatsonRegressorCV(solver="sgd")`` does, and what the exact
  search of ``solver="auto"`` finds without descending.
"""

# %%
# Two losses, one descent
# -----------------------
# Section 10.2's data. The same gradient descent (on log h, from h = 1,
# learning rate 2, full batch, loss divided by the variance of y) on two
# losses: the training error, each sample predicted from all the samples
# including itself, and the leave-one-out error, the diagonal of the
# attention masked.
import matplotlib.pyplot as plt
import numpy as np
import torch

from sknw import (
    FittedCurveDisplay,
    NadarayaWatsonRegressor,
    NadarayaWatsonRegressorCV,
)


def f(x):
    return 2 * np.sin(x) + x**0.8


rng = np.random.default_rng(0)
X_train = np.sort(rng.uniform(0, 5, size=(50, 1)), axis=0)
y_train = f(X_train[:, 0]) + rng.normal(0, 0.5, 50)


def gradient_descent(leave_one_out, epochs=50, learning_rate=2.0):
    """The widths of full-batch gradient descent on log h, from h = 1."""
    x, y = torch.tensor(X_train[:, 0]), torch.tensor(y_train)
    log_h = torch.zeros((), dtype=torch.float64, requires_grad=True)
    widths = [1.0]
    for _ in range(epochs):
        scores = -((x[:, None] - x[None, :]) ** 2) / (2 * torch.exp(log_h) ** 2)
        if leave_one_out:
            scores = scores.masked_fill(torch.eye(50, dtype=torch.bool), -torch.inf)
        prediction = torch.softmax(scores, dim=1) @ y
        loss = ((prediction - y) ** 2).mean() / y.var()
        (gradient,) = torch.autograd.grad(loss, log_h)
        with torch.no_grad():
            log_h -= learning_rate * gradient
        widths.append(log_h.detach().exp().item())
    return widths


def training_and_loo_mse(bandwidth):
    attention = (
        NadarayaWatsonRegressor(bandwidth=bandwidth)
        .fit(X_train, y_train)
        .attention_weights(X_train)
    )
    training = np.mean((attention @ y_train - y_train) ** 2)
    np.fill_diagonal(attention, 0)
    attention /= attention.sum(axis=1, keepdims=True)
    return training, np.mean((attention @ y_train - y_train) ** 2)


collapsing = gradient_descent(leave_one_out=False)
settling = gradient_descent(leave_one_out=True)
exact = NadarayaWatsonRegressorCV().fit(X_train, y_train)
sgd = NadarayaWatsonRegressorCV(solver="sgd", random_state=0).fit(X_train, y_train)
print(f"training error: h = {collapsing[-1]:.4f} after 50 steps, and still falling")
print(f"leave-one-out:  h = {settling[-1]:.4f} after 50 steps")
print(
    f"NadarayaWatsonRegressorCV: solver='auto' h = {exact.bandwidth_:.4f}, "
    f"solver='sgd' h = {sgd.bandwidth_:.4f} ({sgd.n_iter_} epochs)"
)

widths = np.geomspace(0.01, 3, 40)
training, loo = np.array([training_and_loo_mse(h) for h in widths]).T

fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
ax = axes[0]
ax.loglog(widths, training, label="training error (own sample included)")
ax.loglog(widths, loo, label="leave-one-out error")
ax.plot(exact.bandwidth_, exact.loss_curve_[-1], "ko", label="minimum, learned h")
ax.set_xlabel("bandwidth h")
ax.set_ylabel("mean squared error")
ax.set_title("The two losses against the width")
ax.legend(fontsize="small")
ax = axes[1]
ax.semilogy(collapsing, label="descent on the training error")
ax.semilogy(settling, label="descent on the leave-one-out error")
ax.axhline(sgd.bandwidth_, color="gray", ls=":", label="sknw solver='sgd'")
ax.set_xlabel("step")
ax.set_ylabel("bandwidth h")
ax.set_title("Gradient descent on the width")
ax.legend(fontsize="small")
FittedCurveDisplay.from_estimator(
    NadarayaWatsonRegressor(bandwidth=collapsing[-1]).fit(X_train, y_train),
    X_train,
    y_train,
    truth=f,
    ax=axes[2],
)
axes[2].lines[-1].set_label(f"training-error width, h = {collapsing[-1]:.3f}")
grid = np.linspace(0, 5, 300)
axes[2].plot(
    grid,
    exact.predict(grid[:, None]),
    label=f"leave-one-out width, h = {exact.bandwidth_:.3f}",
)
axes[2].set_title("The fits at the two widths")
axes[2].legend(fontsize="small")
fig.tight_layout()
plt.show()

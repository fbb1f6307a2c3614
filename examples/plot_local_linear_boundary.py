"""
=====================================================
Boundary bias: Nadaraya-Watson against local linear
=====================================================

Nadaraya-Watson fits a constant around each query: near the edge of the data
every neighbour lies on one side, and the fit is pulled toward the inside.
:class:`~sknw.LocalLinearRegressor` fits a line instead, which follows the
trend up to the edge. On the toy data of the d2l attention-pooling chapter
the figure shows one sample fitted by both, each with its width learned by
leave-one-out; the average fit over many noisy samples at one shared width,
where the bias shows apart from the noise; and the slopes the local linear
fit estimates, against the true derivative.
"""

# %%
# The d2l toy data
# ----------------
# 50 sorted inputs in [0, 5), targets 2 sin(x) + x^0.8 plus Gaussian noise.
import numpy as np


def truth(x):
    return 2 * np.sin(x) + x**0.8


def derivative(x):
    return 2 * np.cos(x) + 0.8 * x ** (-0.2)


def sample(random_state, n_train=50):
    x = np.sort(random_state.uniform(0, 5, size=n_train))
    return x[:, None], truth(x) + random_state.normal(0.0, 0.5, size=n_train)


rng = np.random.RandomState(0)
X_train, y_train = sample(rng)
X_plot = np.linspace(0, 5, 200)[:, None]

# %%
# Both fits, each width learned by leave-one-out
# ----------------------------------------------
from sknw import LocalLinearRegressorCV, NadarayaWatsonRegressorCV

nadaraya_watson = NadarayaWatsonRegressorCV().fit(X_train, y_train)
local_linear = LocalLinearRegressorCV().fit(X_train, y_train)
print(f"Nadaraya-Watson width: {nadaraya_watson.bandwidth_:.3f}")
print(f"local linear width:    {local_linear.bandwidth_:.3f}")

# %%
# The bias, averaged over noise
# -----------------------------
# At one shared width, the mean over 200 noisy samples of each fit: what
# remains is the bias. At the left end, where the curve is steep,
# Nadaraya-Watson's is pulled up toward the inside by about 1; the local
# linear fit stays within 0.2 of the curve up to both edges. Both flatten the
# peak and the trough: a bias of curvature, which a line does not remove.
from sknw import LocalLinearRegressor, NadarayaWatsonRegressor

width = 0.4
repeats = np.random.RandomState(1)
mean_fits = {"Nadaraya-Watson": 0.0, "local linear": 0.0}
for _ in range(200):
    X_repeat, y_repeat = sample(repeats)
    for name, estimator in (
        ("Nadaraya-Watson", NadarayaWatsonRegressor(bandwidth=width)),
        ("local linear", LocalLinearRegressor(bandwidth=width)),
    ):
        mean_fits[name] += estimator.fit(X_repeat, y_repeat).predict(X_plot) / 200

for name, mean_fit in mean_fits.items():
    edges = np.abs(mean_fit - truth(X_plot[:, 0]))[[0, -1]]
    print(f"{name:>15} bias at x = 0 and x = 5: {edges.round(3)}")

# %%
# The figure
# ----------
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
ax = axes[0]
ax.scatter(X_train[:, 0], y_train, s=12, color="0.6", label="samples")
ax.plot(X_plot[:, 0], truth(X_plot[:, 0]), "k--", lw=1, label="truth")
ax.plot(
    X_plot[:, 0],
    nadaraya_watson.predict(X_plot),
    label=f"Nadaraya-Watson (h = {nadaraya_watson.bandwidth_:.2f})",
)
ax.plot(
    X_plot[:, 0],
    local_linear.predict(X_plot),
    label=f"local linear (h = {local_linear.bandwidth_:.2f})",
)
ax.set_title("One sample, widths learned by leave-one-out")
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.legend(fontsize=8)

ax = axes[1]
ax.plot(X_plot[:, 0], truth(X_plot[:, 0]), "k--", lw=1, label="truth")
for name, mean_fit in mean_fits.items():
    ax.plot(X_plot[:, 0], mean_fit, label=name)
ax.set_title(f"Mean fit over 200 samples, h = {width}")
ax.set_xlabel("x")
ax.set_ylabel("mean of the fitted y")
ax.legend(fontsize=8)

ax = axes[2]
ax.plot(X_plot[1:, 0], derivative(X_plot[1:, 0]), "k--", lw=1, label="true slope")
ax.plot(
    X_plot[:, 0],
    local_linear.predict_gradient(X_plot)[:, 0],
    color="C1",
    label="local linear predict_gradient",
)
ax.set_ylim(-3, 4)
ax.set_title("Slopes of the local linear fit")
ax.set_xlabel("x")
ax.set_ylabel("dy / dx")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

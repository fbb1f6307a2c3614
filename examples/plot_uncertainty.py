"""
=================================================
Standard errors, confidence bands and intervals
=================================================

A Nadaraya-Watson fit can say how sure it is at little cost.
``predict(X, return_std=True)`` gives the standard error of each prediction,
from which a pointwise confidence band for the fitted curve follows, and
``predict_interval`` gives jackknife+ prediction intervals for new
observations, exact and from one pass over the training samples. The figures
show both on the d2l toy data and on data whose noise grows with x, and the
prints give their empirical coverage over repeated draws of the data.
"""

# %%
# The toy data and one fit
# ------------------------
# The d2l chapter's data: x sorted in [0, 5), y = 2 sin x + x^0.8 plus
# Gaussian noise of standard deviation 0.5. The width is learned by
# leave-one-out.
import matplotlib.pyplot as plt
import numpy as np

from sknw import FittedCurveDisplay, NadarayaWatsonRegressorCV


def truth(x):
    return 2 * np.sin(x) + x**0.8


def toy(rng, n_samples=50, noise=lambda x: 0.5 + 0 * x):
    X = np.sort(rng.uniform(0, 5, size=(n_samples, 1)), axis=0)
    return X, truth(X[:, 0]) + noise(X[:, 0]) * rng.normal(size=n_samples)


rng = np.random.default_rng(0)
X, y = toy(rng)
model = NadarayaWatsonRegressorCV().fit(X, y)
prediction, std = model.predict([[1.0], [2.5]], return_std=True)
print(f"learned h = {model.bandwidth_:.3f}")
print(f"at x = 1.0 and 2.5: prediction {prediction.round(2)}, std {std.round(3)}")

# %%
# A confidence band and a prediction interval
# -------------------------------------------
# The standard error measures how much the fitted curve would move with a new
# draw of the noise: prediction +- 1.96 standard errors is a 95% pointwise
# confidence band for the smoothed curve. It leaves out the bias, which a
# Nadaraya-Watson fit has where the curve bends (at the peak and the trough
# here, and at the edges). A prediction interval is wider: it must hold a new
# observation, noise included. Jackknife+ builds it from the leave-one-out
# fits, and guarantees coverage of at least 1 - 2 alpha whatever the data.
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
FittedCurveDisplay.from_estimator(
    model, X, y, truth=truth, band="std", alpha=0.05, ax=axes[0]
)
axes[0].set_title("95% confidence band: prediction +- 1.96 std")
FittedCurveDisplay.from_estimator(
    model, X, y, truth=truth, band="interval", alpha=0.1, ax=axes[1]
)
axes[1].set_title("90% jackknife+ prediction interval")
fig.tight_layout()

# %%
# How often they cover
# --------------------
# Draw the data 60 times, and each time 200 new observations. The
# prediction interval should hold about 90% of the new observations. The band
# holds the true curve less than 95% of the time: it leaves out the bias,
# largest at the left edge, where the curve climbs steeply and the window has
# data on one side only, and the width it uses is learned from the same noisy
# data.
grid = np.linspace(0.25, 4.75, 50)[:, None]
inside_interval, inside_band = [], []
for _ in range(60):
    X, y = toy(rng)
    X_new, y_new = toy(rng, 200)
    fitted = NadarayaWatsonRegressorCV().fit(X, y)
    interval = fitted.predict_interval(X_new, alpha=0.1)
    inside_interval.append((interval[:, 0] <= y_new) & (y_new <= interval[:, 1]))
    prediction, std = fitted.predict(grid, return_std=True)
    inside_band.append(np.abs(prediction - truth(grid[:, 0])) <= 1.96 * std)
inside_band = np.array(inside_band).mean(axis=0)
print(f"jackknife+ 90% interval: coverage {np.mean(inside_interval):.3f}")
print(f"95% band, coverage of the truth over the grid: {inside_band.mean():.3f}")

fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(grid[:, 0], inside_band, marker="o")
ax.axhline(0.95, color="gray", linestyle="--")
ax.set_xlabel("x")
ax.set_ylabel("coverage of the truth")
ax.set_title("How often the 95% band holds the true curve")
fig.tight_layout()

# %%
# Noise that grows with x
# -----------------------
# Here the noise's standard deviation grows from 0.1 to 2.1. The default
# ``noise="local"`` smooths the squared leave-one-out residuals into a noise
# level that follows x, so the band widens where the data are noisy;
# ``noise="constant"`` takes one level for all x and gets both ends wrong.
# Jackknife+ uses the residuals of all the samples alike: its intervals are
# about as wide everywhere, so they cover 90% on average, more on the quiet
# side and less on the noisy one.


def growing(x):
    return 0.1 + 0.4 * x


X, y = toy(rng, 300, noise=growing)
model = NadarayaWatsonRegressorCV().fit(X, y)
fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
for ax, noise in zip(axes[:2], ["local", "constant"]):
    FittedCurveDisplay.from_estimator(
        model, X, y, truth=truth, band="std", alpha=0.05, noise=noise, ax=ax
    )
    ax.set_title(f'95% confidence band, noise="{noise}"')
FittedCurveDisplay.from_estimator(
    model, X, y, truth=truth, band="interval", alpha=0.1, ax=axes[2]
)
axes[2].set_title("90% jackknife+ prediction interval")
fig.tight_layout()

# %%
# The standard errors against their Monte-Carlo truth: fix the design and the
# width, draw the noise 200 times, and compare the spread of the predictions
# with the standard errors reported. With one column of targets per draw, a
# single multi-output fit holds the 200 fits, each output with its own
# standard errors. A ratio near 1 is right.
from sknw import NadarayaWatsonRegressor

queries = np.array([[1.0], [2.5], [4.0]])
Y = truth(X) + growing(X) * rng.normal(size=(len(y), 200))
fitted = NadarayaWatsonRegressor(bandwidth=model.bandwidth_).fit(X, Y)
spread = fitted.predict(queries).std(axis=1, ddof=1)
for noise in ("local", "constant"):
    _, std = fitted.predict(queries, return_std=True, noise=noise)
    ratio = np.median(std, axis=1) / spread
    print(
        f'noise="{noise}": reported / Monte-Carlo std at x = 1, 2.5, 4:',
        ratio.round(2),
    )

X_new, y_new = toy(rng, 3000, noise=growing)
interval = model.predict_interval(X_new, alpha=0.1)
inside = (interval[:, 0] <= y_new) & (y_new <= interval[:, 1])
quiet = X_new[:, 0] < 2.5
print(f"jackknife+ 90% interval: coverage {inside.mean():.3f} overall,")
print(
    f"{inside[quiet].mean():.3f} for x < 2.5, {inside[~quiet].mean():.3f} for x >= 2.5"
)


# %%
# Local linear regression
# -----------------------
# :class:`~sknw.LocalLinearRegressorCV` offers the same. Its standard errors
# come from the local linear smoother weights, which are negative in places:
# the band is wider than Nadaraya-Watson's, most of all at the edges, where
# the line's slope is uncertain. In exchange its bias at the edges is of
# second order, so near the left edge the band holds the true curve more
# often. Over the whole grid it does no better: the width learned for the
# line is larger, and the bias where the curve bends, which neither fit
# removes, grows with it. Same repeated draws as above, on the toy data.
from sknw import LocalLinearRegressorCV

X, y = toy(rng)
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
for ax, estimator in zip(axes, [NadarayaWatsonRegressorCV(), LocalLinearRegressorCV()]):
    FittedCurveDisplay.from_estimator(
        estimator.fit(X, y), X, y, truth=truth, band="std", alpha=0.05, ax=ax
    )
    ax.set_title(f"{type(estimator).__name__}: 95% confidence band")
fig.tight_layout()

inside_local, inside_constant, covered = [], [], []
for _ in range(30):
    X, y = toy(rng)
    X_new, y_new = toy(rng, 200)
    for estimator, inside in [
        (NadarayaWatsonRegressorCV(), inside_constant),
        (LocalLinearRegressorCV(), inside_local),
    ]:
        prediction, std = estimator.fit(X, y).predict(grid, return_std=True)
        inside.append(np.abs(prediction - truth(grid[:, 0])) <= 1.96 * std)
    interval = estimator.predict_interval(X_new, alpha=0.1)
    covered.append((interval[:, 0] <= y_new) & (y_new <= interval[:, 1]))
edge = grid[:, 0] < 1.0
for name, inside in [
    ("Nadaraya-Watson", inside_constant),
    ("local linear", inside_local),
]:
    inside = np.array(inside)
    print(
        f"{name}: 95% band holds the truth {inside.mean():.3f} of the time, "
        f"{inside[:, edge].mean():.3f} for x < 1"
    )
print(f"local linear jackknife+ 90% interval: coverage {np.mean(covered):.3f}")

plt.show()

"""
===================================
d2l 7: more exercises, answered
===================================

More exercises of sections 10.2 and 11.2, answered with the library.

- **Parzen windows.** For two classes, the difference of the Parzen-window
  estimates p(x, y=+1) - p(x, y=-1) has the sign of the Nadaraya-Watson
  prediction of the labels +1 and -1: that prediction is the difference
  divided by the sum, p(x, +1) + p(x, -1) = p(x) > 0.
- **The unit sphere.** When queries and keys have norm 1,
  ``|q - k|^2 = 2 - 2 q.k``, so Gaussian attention pooling is dot-product
  attention: softmax(q.k / h^2).
- **Consistency, and the dimension.** With more data the width should
  shrink, but slowly enough that the number of samples within one width,
  about n h^d, still grows: the squared bias grows as h^4 and the variance as
  1 / (n h^d), so the best width shrinks as n^(-1/(d+4)) and the error as
  n^(-4/(d+4)): more slowly in more dimensions.

Section 10.2 also asks for other learnable parameters: one width per
feature, learned by leave-one-out, is ``NadarayaWatsonRegressorCV`` with an
array or a rule as ``bandwidth`` (see :ref:`learning` in the user guide).
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from sknw import NadarayaWatsonClassifier, NadarayaWatsonRegressor

rng = np.random.default_rng(0)

# %%
# Parzen windows and the Nadaraya-Watson classifier
# -------------------------------------------------
# Two classes on a line. scikit-learn's ``KernelDensity`` gives the
# Parzen-window density of each class; times the class's share of the data it
# is p(x, y). The classifier's ``P(+1 | x) - P(-1 | x)`` is
# (p(x, +1) - p(x, -1)) / (p(x, +1) + p(x, -1)).
from sklearn.neighbors import KernelDensity

X = np.concatenate([rng.normal(-1, 1, 60), rng.normal(1.5, 0.7, 40)])[:, None]
labels = np.array([-1] * 60 + [1] * 40)
grid = np.linspace(-4, 4, 200)[:, None]
joint = {
    c: np.mean(labels == c)
    * np.exp(KernelDensity(bandwidth=0.5).fit(X[labels == c]).score_samples(grid))
    for c in (-1, 1)
}
proba = NadarayaWatsonClassifier(bandwidth=0.5).fit(X, labels).predict_proba(grid)
nadaraya_watson = proba[:, 1] - proba[:, 0]
parzen = (joint[1] - joint[-1]) / (joint[1] + joint[-1])
print(
    "largest difference from the Parzen-window ratio:",
    f"{np.abs(nadaraya_watson - parzen).max():.1e}",
)
print(
    "same sign everywhere:",
    bool(np.all(np.sign(nadaraya_watson) == np.sign(joint[1] - joint[-1]))),
)

fig, axes = plt.subplots(1, 2, figsize=(12, 4))
axes[0].plot(grid[:, 0], joint[1], label="p(x, y = +1), Parzen window")
axes[0].plot(grid[:, 0], joint[-1], label="p(x, y = -1), Parzen window")
axes[0].plot(grid[:, 0], joint[1] - joint[-1], "k--", label="difference")
axes[0].set_xlabel("x")
axes[0].set_ylabel("density")
axes[0].set_title("Parzen-window estimates, h = 0.5")
axes[0].legend(fontsize="small")
axes[1].plot(
    grid[:, 0],
    nadaraya_watson,
    lw=3,
    alpha=0.6,
    label="NadarayaWatsonClassifier: P(+1|x) - P(-1|x)",
)
axes[1].plot(grid[:, 0], parzen, "k--", label="Parzen: difference / sum")
axes[1].axhline(0, color="gray", lw=0.5)
axes[1].set_xlabel("x")
axes[1].set_ylabel("prediction of the labels ±1")
axes[1].set_title("The same decision, the same boundary")
axes[1].legend(fontsize="small")
fig.tight_layout()

# %%
# Dot-product attention on the unit sphere
# ----------------------------------------
keys = rng.normal(size=(100, 3))
keys /= np.linalg.norm(keys, axis=1, keepdims=True)
queries = rng.normal(size=(5, 3))
queries /= np.linalg.norm(queries, axis=1, keepdims=True)
h = 0.4
model = NadarayaWatsonRegressor(bandwidth=h).fit(keys, rng.normal(size=100))
scores = queries @ keys.T / h**2
dot_product = np.exp(scores - scores.max(axis=1, keepdims=True))
dot_product /= dot_product.sum(axis=1, keepdims=True)
gaussian = model.attention_weights(queries)
print(
    f"largest difference from softmax(q.k / h^2): "
    f"{np.abs(gaussian - dot_product).max():.1e}"
)

fig, ax = plt.subplots(figsize=(5, 4.5))
for row in range(len(queries)):
    ax.loglog(dot_product[row], gaussian[row], "o", ms=4, label=f"query {row + 1}")
smallest = dot_product.min()
ax.loglog([smallest, 1], [smallest, 1], "k--", lw=1, label="equal")
ax.set_xlabel("softmax(q.k / h^2)")
ax.set_ylabel("Gaussian attention weight, h = 0.4")
ax.set_title("Unit vectors: Gaussian = dot-product attention")
ax.legend(fontsize="small")
fig.tight_layout()

# %%
# Consistency, and the dimension
# ------------------------------
# Inputs uniform on [0, 5]^d, f(x) the mean over the features of
# 2 sin x_j + x_j^0.8, noise of standard deviation 0.5, the error measured
# against f on 300 points of [1, 4]^d (away from the boundary, where a local
# average is biased at a rate of its own). Left: the error against the width
# at n = 800 — the best width is wider in more dimensions, where a window
# must reach farther to hold enough samples. Right: the error as n grows,
# with h shrinking from that best width as n^(-1/(d+4)): the fitted slopes
# follow -4/(d+4), slower in more dimensions.


def truth(X):
    return np.mean(2 * np.sin(X) + X**0.8, axis=1)


def error(d, n, bandwidth, draws=2):
    """The mean squared error against f, averaged over draws of the data.

    Each draw fits 20 noisy copies of y at once, as 20 outputs of one model.
    """
    errors = []
    for _ in range(draws):
        X = rng.uniform(0, 5, size=(n, d))
        y = truth(X)[:, None] + rng.normal(0, 0.5, size=(n, 20))
        model = NadarayaWatsonRegressor(bandwidth=bandwidth).fit(X, y)
        residuals = model.predict(tests[d]) - truth(tests[d])[:, None]
        errors.append(np.mean(residuals**2))
    return np.mean(errors)


dims = (1, 2, 4)
tests = {d: rng.uniform(1, 4, size=(300, d)) for d in dims}
widths = np.geomspace(0.05, 2, 10)
sizes = np.array([100, 200, 400, 800, 1600])
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
for d, color in zip(dims, ("C0", "C1", "C2")):
    by_width = [error(d, 800, h) for h in widths]
    best = widths[np.argmin(by_width)]
    axes[0].loglog(widths, by_width, color=color, label=f"d = {d}")
    axes[0].plot(best, min(by_width), "o", color=color)
    schedule = best * (sizes / 800) ** (-1 / (d + 4))
    by_size = [error(d, n, h) for n, h in zip(sizes, schedule)]
    slope = np.polyfit(np.log(sizes), np.log(by_size), 1)[0]
    axes[1].loglog(
        sizes,
        by_size,
        "o-",
        color=color,
        label=f"d = {d}: slope {slope:.2f}, theory {-4 / (d + 4):.2f}",
    )
    axes[1].loglog(
        sizes, by_size[0] * (sizes / sizes[0]) ** (-4 / (d + 4)), ":", color=color
    )
    print(
        f"d = {d}: best width at n = 800 {best:.3f}; error slope {slope:.2f} "
        f"(theory {-4 / (d + 4):.2f})"
    )
axes[0].set_xlabel("bandwidth h")
axes[0].set_ylabel("mean squared error against f")
axes[0].set_title("n = 800: the best width grows with d")
axes[0].legend()
axes[1].set_xlabel("number of training samples n")
axes[1].set_ylabel("mean squared error against f")
axes[1].set_title("h ∝ n^(-1/(d+4)): error ∝ n^(-4/(d+4)) (dotted)")
axes[1].legend(fontsize="small")
fig.tight_layout()
plt.show()

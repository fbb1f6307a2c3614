"""
=============================
d2l 2: the chapter's toy data
=============================

Both versions of the chapter fit one noisy function of one variable, from
inputs drawn uniformly on [0, 5) and sorted (sorting only makes the attention
heatmaps of the next examples readable):

- section 10.2, "Attention Pooling: Nadaraya-Watson Kernel Regression": 50
  samples of f(x) = 2 sin x + x^0.8 with Gaussian noise of standard deviation
  0.5, and 50 queries at 0, 0.1, ..., 4.9;
- section 11.2, "Attention Pooling by Similarity": 40 samples of
  f(x) = 2 sin x + x with Gaussian noise of standard deviation 1, queried at
  the same points.

The later examples of this gallery draw these data again with the same
seeds, as does the README's tour (the 10.2 data).
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

x_query = np.arange(0, 5, 0.1)


def f_10_2(x):
    return 2 * np.sin(x) + x**0.8


def f_11_2(x):
    return 2 * np.sin(x) + x


rng = np.random.default_rng(0)  # the seed of every 10.2 example
x_10_2 = np.sort(rng.uniform(0, 5, 50))
y_10_2 = f_10_2(x_10_2) + rng.normal(0, 0.5, 50)
rng = np.random.default_rng(11)  # the seed of every 11.2 example
x_11_2 = np.sort(rng.uniform(0, 5, 40))
y_11_2 = f_11_2(x_11_2) + rng.normal(0, 1.0, 40)

fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for ax, title, x, y, f in [
    (
        axes[0],
        "10.2: f(x) = 2 sin x + x^0.8, noise sd 0.5, n = 50",
        x_10_2,
        y_10_2,
        f_10_2,
    ),
    (axes[1], "11.2: f(x) = 2 sin x + x, noise sd 1, n = 40", x_11_2, y_11_2, f_11_2),
]:
    ax.plot(x_query, f(x_query), label="truth f(x)")
    ax.plot(x, y, "o", alpha=0.6, label="training samples")
    ax.set_xlabel("x")
    ax.set_title(title)
    ax.legend()
    print(f"{title}: y from {y.min():.2f} to {y.max():.2f}")
axes[0].set_ylabel("y")
fig.suptitle("The toy data of the two sections")
fig.tight_layout()
plt.show()

"""
=======================================
d2l 1: the chapter's four kernel shapes
=======================================

The d2l chapter "Attention Pooling by Similarity" draws four kernels of the
distance between a query and a key: the Gaussian, the boxcar, the constant
and one it calls "Epanechikov". sknw names them ``"gaussian"``,
``"tophat"`` (alias ``"boxcar"``), ``"constant"`` and ``"linear"``: the
chapter's "Epanechikov" computes ``max(1 - |x|, 0)``, a triangle, which is
sknw's ``"linear"`` (alias ``"triangular"``); sknw's ``"epanechnikov"`` is the
textbook Epanechnikov kernel (1 - x^2)+, drawn dotted for comparison.

Each shape is read off the library itself: one query at 0 attends to keys
spread over [-2.5, 2.5) at the chapter's width h = 1, and the attention each
key gets, divided by the attention of the key at 0, is ``K(|key|)``. The
chapter's formulas, written in NumPy, are drawn dashed on top.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from sknw import NadarayaWatsonRegressor

keys = np.arange(-2.5, 2.5, 0.1)[:, None]  # the chapter's x
at_zero = np.argmin(np.abs(keys[:, 0]))
keys[at_zero] = 0.0  # arange lands 1e-15 from 0


def kernel_shape(kernel):
    """K(|key|) as the attention of a query at 0, relative to a key at 0."""
    model = NadarayaWatsonRegressor(kernel=kernel, bandwidth=1.0)
    model.fit(keys, np.zeros(len(keys)))
    attention = model.attention_weights([[0.0]])[0]
    return attention / attention[at_zero]


x = keys[:, 0]
chapter = {
    "Gaussian": ("gaussian", np.exp(-(x**2) / 2)),
    "Boxcar": ("boxcar", (np.abs(x) < 1.0).astype(float)),
    "Constant": ("constant", np.ones_like(x)),
    "Epanechikov": ("linear", np.maximum(1 - np.abs(x), 0)),
}

fig, axes = plt.subplots(1, 4, sharey=True, figsize=(12, 3.2))
for ax, (title, (kernel, formula)) in zip(axes, chapter.items()):
    shape = kernel_shape(kernel)
    ax.plot(x, shape, lw=3, alpha=0.6, label=f'sknw kernel="{kernel}"')
    ax.plot(x, formula, "k--", lw=1, label="the chapter's formula")
    if title == "Epanechikov":
        ax.plot(
            x,
            kernel_shape("epanechnikov"),
            ":",
            color="C3",
            label='kernel="epanechnikov"',
        )
    ax.set_title(f"{title}")
    ax.set_xlabel("x = query - key")
    ax.legend(fontsize="x-small", loc="upper center")
    print(
        f"{title:>11} = {kernel!r:<10}: off the chapter's formula by "
        f"{np.abs(shape - formula).max():.1e}"
    )
axes[0].set_ylabel("K(x), relative to K(0)")
axes[0].set_ylim(-0.05, 1.6)
fig.suptitle("The chapter's four kernels, at width h = 1")
fig.tight_layout()
plt.show()

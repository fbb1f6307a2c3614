"""
================================================
Beside KNeighborsRegressor and KernelRidge
================================================

Three smoothers on the diabetes data that ships with scikit-learn, each tuned
by 5-fold cross-validation in a ``Pipeline`` with ``StandardScaler``:
Nadaraya-Watson (a kernel-weighted average), k-nearest neighbours (an average
of the k closest) and kernel ridge regression (a fitted weight per sample).
The plot shows held-out predictions against the truth.
"""

# %%
import matplotlib.pyplot as plt
from sklearn.datasets import load_diabetes
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sknw import NadarayaWatsonRegressor

X, y = load_diabetes(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

contenders = {
    "Nadaraya-Watson": (
        NadarayaWatsonRegressor(),
        {"bandwidth": [1.0, 2.0, 4.0], "kernel": ["gaussian", "tricube"]},
    ),
    "k-nearest neighbours": (
        KNeighborsRegressor(),
        {"n_neighbors": [5, 10, 20, 40], "weights": ["uniform", "distance"]},
    ),
    "kernel ridge": (
        KernelRidge(kernel="rbf"),
        {"alpha": [0.1, 1.0, 10.0], "gamma": [0.01, 0.03, 0.1]},
    ),
}

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharey=True)
for ax, (name, (estimator, grid)) in zip(axes, contenders.items()):
    pipeline = make_pipeline(StandardScaler(), estimator)
    step = pipeline.steps[-1][0]
    search = GridSearchCV(
        pipeline, {f"{step}__{key}": values for key, values in grid.items()}, cv=5
    ).fit(X_train, y_train)
    score = search.score(X_test, y_test)
    print(f"{name:>22}: held-out R^2 {score:.3f}")
    ax.scatter(y_test, search.predict(X_test), s=12, alpha=0.6, label="test samples")
    ax.plot(
        [y.min(), y.max()], [y.min(), y.max()], "k--", lw=1, label="prediction = truth"
    )
    ax.legend(loc="upper left")
    ax.set_title(f"{name} (R^2 = {score:.2f})")
    ax.set_xlabel("true disease progression")
axes[0].set_ylabel("predicted disease progression")
fig.tight_layout()
plt.show()

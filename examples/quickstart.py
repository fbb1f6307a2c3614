"""
==========
Quickstart
==========

Fit both sknw estimators on data sets that ship with scikit-learn, tune the
bandwidth with :class:`~sklearn.model_selection.GridSearchCV` inside a
:class:`~sklearn.pipeline.Pipeline`, and compare the held-out scores with
k-nearest neighbours tuned the same way on the same split.
"""

import numpy as np
from sklearn.datasets import load_diabetes, load_wine
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sknw import NadarayaWatsonClassifier, NadarayaWatsonRegressor


def tuned(estimator, grid):
    """A scaled pipeline whose final step's parameters are picked by 5-fold CV."""
    pipeline = make_pipeline(StandardScaler(), estimator)
    step = pipeline.steps[-1][0]
    param_grid = {f"{step}__{name}": values for name, values in grid.items()}
    return GridSearchCV(pipeline, param_grid, cv=5)


def report(task, metric, contenders, X_train, X_test, y_train, y_test):
    print(f"\n{task} (held-out {metric}, {len(y_test)} test samples)")
    for name, search in contenders.items():
        search.fit(X_train, y_train)
        best = {key.split("__")[1]: value for key, value in search.best_params_.items()}
        score = search.score(X_test, y_test)
        print(f"  {name:<28} {score:6.3f}   best {best}")


# %%
# Regression: diabetes progression from ten baseline measurements.
X, y = load_diabetes(return_X_y=True)
splits = train_test_split(X, y, test_size=0.25, random_state=0)
widths = np.geomspace(0.5, 8.0, 9).round(3).tolist()
report(
    "Regression: diabetes",
    "R^2",
    {
        "NadarayaWatsonRegressor": tuned(
            NadarayaWatsonRegressor(),
            {"bandwidth": widths, "kernel": ["gaussian", "epanechnikov"]},
        ),
        "KNeighborsRegressor": tuned(
            KNeighborsRegressor(),
            {"n_neighbors": [5, 10, 20, 40, 80], "weights": ["uniform", "distance"]},
        ),
    },
    *splits,
)

# %%
# Classification: wine cultivars from thirteen chemical measurements.
X, y = load_wine(return_X_y=True)
splits = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
report(
    "Classification: wine",
    "accuracy",
    {
        "NadarayaWatsonClassifier": tuned(
            NadarayaWatsonClassifier(),
            {"bandwidth": widths, "kernel": ["gaussian", "epanechnikov"]},
        ),
        "KNeighborsClassifier": tuned(
            KNeighborsClassifier(),
            {"n_neighbors": [1, 3, 5, 10, 20], "weights": ["uniform", "distance"]},
        ),
    },
    *splits,
)

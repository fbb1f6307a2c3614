"""
==========
Quickstart
==========

Fit the sknw estimators on data sets that ship with scikit-learn, in a
:class:`~sklearn.pipeline.Pipeline` that standardises the features: the
plain estimators with the bandwidth and kernel tuned by
:class:`~sklearn.model_selection.GridSearchCV`, and the CV estimators, which
learn the bandwidth by exact leave-one-out in ``fit`` (as ``RidgeCV`` learns
``alpha``). The held-out scores are compared with k-nearest neighbours tuned
by grid search on the same split.
"""

from sklearn.datasets import load_diabetes, load_wine
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sknw import (
    NadarayaWatsonClassifier,
    NadarayaWatsonClassifierCV,
    NadarayaWatsonRegressor,
    NadarayaWatsonRegressorCV,
)


def tuned(estimator, grid):
    """A scaled pipeline whose final step's parameters are picked by 5-fold CV."""
    pipeline = make_pipeline(StandardScaler(), estimator)
    step = pipeline.steps[-1][0]
    param_grid = {f"{step}__{name}": values for name, values in grid.items()}
    return GridSearchCV(pipeline, param_grid, cv=5)


def learned(estimator):
    """A scaled pipeline whose final step learns its bandwidth in ``fit``."""
    return make_pipeline(StandardScaler(), estimator)


def report(task, metric, contenders, X_train, X_test, y_train, y_test):
    print(f"\n{task} (held-out {metric}, {len(y_test)} test samples)")
    for name, model in contenders.items():
        model.fit(X_train, y_train)
        score = model.score(X_test, y_test)
        if hasattr(model, "best_params_"):
            best = {
                key.split("__")[1]: value for key, value in model.best_params_.items()
            }
            print(f"  {name:<28} {score:6.3f}   best {best}")
        else:
            step = model.steps[-1][1]
            print(
                f"  {name:<28} {score:6.3f}   learned bandwidth "
                f"{step.bandwidth_:.3f} in {step.n_iter_} iterations"
            )


# %%
# Regression: diabetes progression from ten baseline measurements.
X, y = load_diabetes(return_X_y=True)
splits = train_test_split(X, y, test_size=0.25, random_state=0)
widths = [0.5, 1.0, 2.0, 4.0]
report(
    "Regression: diabetes",
    "R^2",
    {
        "NadarayaWatsonRegressor": tuned(
            NadarayaWatsonRegressor(),
            {"bandwidth": widths, "kernel": ["gaussian", "epanechnikov"]},
        ),
        "NadarayaWatsonRegressorCV": learned(NadarayaWatsonRegressorCV()),
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
        "NadarayaWatsonClassifierCV": learned(NadarayaWatsonClassifierCV()),
        "KNeighborsClassifier": tuned(
            KNeighborsClassifier(),
            {"n_neighbors": [1, 3, 5, 10, 20], "weights": ["uniform", "distance"]},
        ),
    },
    *splits,
)

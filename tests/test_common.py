"""scikit-learn's estimator checks on both estimators."""

# Authors: the sknw developers
# License: BSD 3 clause

import numpy as np
from sklearn.utils.estimator_checks import parametrize_with_checks

from sknw import NadarayaWatsonClassifier, NadarayaWatsonRegressor


def _epanechnikov(u):
    return np.clip(1 - u**2, 0, None)


ESTIMATORS = [
    estimator(**params)
    for estimator in (NadarayaWatsonRegressor, NadarayaWatsonClassifier)
    for params in (
        {},
        {"kernel": "epanechnikov"},
        {"kernel": "tophat", "bandwidth": 2.0},
        {"kernel": "exponential", "bandwidth": 0.5},
        {"kernel": "tricube", "bandwidth": "scott"},
        {"bandwidth": "silverman"},
        {"kernel": _epanechnikov},
        {"adaptive": "sample", "n_neighbors": 3, "bandwidth": 0.5},
        {"adaptive": "query", "n_neighbors": 3, "kernel": "epanechnikov"},
        {"learn_bandwidth": True},
        {"learn_bandwidth": True, "bandwidth": "scott", "kernel": "epanechnikov"},
        {"learn_bandwidth": True, "solver": "sgd", "tol": 1e-3, "random_state": 0},
        {"kernel": "biweight", "algorithm": "tree"},
        {"algorithm": "tree", "truncation": 1e-10},
    )
]


def expected_failed_checks(estimator):
    failures = {}
    if estimator.learn_bandwidth:
        failures["check_sample_weight_equivalence_on_dense_data"] = (
            "leave-one-out is not invariant to repeating rows: leaving out one copy "
            "of a repeated row leaves its other copies in, at distance 0, while a "
            "sample of weight k is left out whole"
        )
    if estimator.adaptive is not None:
        failures["check_sample_weight_equivalence_on_dense_data"] = (
            "neighbour distances count rows: the copies of a repeated row are one "
            "another's neighbours at distance 0, while a weight moves no distance"
        )
    if not estimator.learn_bandwidth:
        # As for Ridge, whose max_iter only concerns its iterative solvers.
        failures["check_non_transformer_estimators_n_iter"] = (
            "max_iter applies only with learn_bandwidth=True; a fixed bandwidth "
            "runs no iterations and sets no n_iter_"
        )
    return failures


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)

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
        {"learn_bandwidth": True},
        {"learn_bandwidth": True, "bandwidth": "scott", "kernel": "epanechnikov"},
        {"learn_bandwidth": True, "solver": "sgd", "tol": 1e-3, "random_state": 0},
    )
]


def expected_failed_checks(estimator):
    if estimator.learn_bandwidth:
        return {
            "check_sample_weight_equivalence_on_dense_data": (
                "leave-one-out is not invariant to repeating rows: leaving out one "
                "copy of a repeated row leaves its other copies in, at distance 0, "
                "while a sample of weight k is left out whole"
            )
        }
    # As for Ridge, whose max_iter only concerns its iterative solvers:
    # max_iter only concerns learn_bandwidth=True, and with a fixed bandwidth
    # fit runs no iterations, so there is no n_iter_ to expose.
    return {
        "check_non_transformer_estimators_n_iter": (
            "max_iter applies only with learn_bandwidth=True; a fixed bandwidth "
            "runs no iterations and sets no n_iter_"
        )
    }


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)

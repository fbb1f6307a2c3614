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
    )
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)

"""scikit-learn's estimator checks on every estimator, with no exemption."""

# Authors: the sknw developers
# License: BSD 3 clause

import numpy as np
import pytest
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks

from sknw import (
    LocalLinearRegressor,
    LocalLinearRegressorCV,
    NadarayaWatsonClassifier,
    NadarayaWatsonClassifierCV,
    NadarayaWatsonRegressor,
    NadarayaWatsonRegressorCV,
)


class _Epanechnikov:
    """A user's kernel, a callable of u: its repr names it, so that the
    checks' ids are the same in every process (pytest-xdist's workers)."""

    def __call__(self, u):
        return np.clip(1 - u**2, 0, None)

    def __repr__(self):
        return "user_epanechnikov"


_epanechnikov = _Epanechnikov()


PLAIN = [
    estimator(**params)
    for estimator in (NadarayaWatsonRegressor, NadarayaWatsonClassifier)
    for params in (
        {},
        {"kernel": "epanechnikov"},
        {"kernel": "tophat", "bandwidth": 2.0},
        {"kernel": "exponential", "bandwidth": 0.5},
        {"bandwidth": "scott"},
        {"kernel": "tricube", "bandwidth": "silverman"},
        {"kernel": _epanechnikov},
        {"adaptive": "sample"},
        {"adaptive": "query"},
        {"adaptive": "query", "kernel": "epanechnikov"},
        {"kernel": "biweight", "algorithm": "tree"},
        {"algorithm": "tree", "truncation": 1e-10},
    )
]

# The local linear regressor in the configurations whose prediction path
# differs; its CV sibling runs bare below (its learning is Nadaraya-Watson's
# search on another loss).
LOCAL_LINEAR = [
    LocalLinearRegressor(**params)
    for params in (
        {},
        {"kernel": "epanechnikov"},
        {"kernel": "tophat", "bandwidth": 2.0},
        {"kernel": _epanechnikov},
        {"adaptive": "query"},
        {"kernel": "biweight", "algorithm": "tree"},
    )
]

LEARNING = [
    estimator(**params)
    for estimator in (NadarayaWatsonRegressorCV, NadarayaWatsonClassifierCV)
    for params in (
        {},
        {"bandwidth": "scott"},
        {"solver": "lbfgs"},
        {"solver": "lbfgs", "bandwidth": "scott"},
        {"solver": "sgd", "random_state": 0},
        {"solver": "sgd", "bandwidth": "scott", "random_state": 0},
        {"kernel": "epanechnikov"},
        {"adaptive": "sample"},
    )
]


@parametrize_with_checks(PLAIN + LOCAL_LINEAR + LEARNING)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.parametrize(
    "estimator",
    [
        NadarayaWatsonRegressor,
        NadarayaWatsonClassifier,
        NadarayaWatsonRegressorCV,
        NadarayaWatsonClassifierCV,
        LocalLinearRegressor,
        LocalLinearRegressorCV,
    ],
)
def test_check_estimator_called_bare(estimator):
    # Exactly as a user calls it: no argument besides the estimator.
    check_estimator(estimator())

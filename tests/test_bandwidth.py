"""Bandwidth rules against scipy and statsmodels, and the fitted bandwidth_."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.stats import gaussian_kde
from statsmodels.nonparametric.kernel_density import KDEMultivariate

from sknw import NadarayaWatsonRegressor
from sknw._bandwidth import scott_bandwidth, silverman_bandwidth


def make_X(n_samples=200, n_features=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_samples, n_features)) * np.arange(1, n_features + 1)


@pytest.mark.parametrize("n_features", [1, 2, 5])
def test_rules_use_scipy_factors(n_features):
    X = make_X(n_features=n_features)
    kde = gaussian_kde(X.T)
    spread = X.std(axis=0)
    assert_allclose(scott_bandwidth(X), spread * kde.scotts_factor(), rtol=1e-12)
    assert_allclose(silverman_bandwidth(X), spread * kde.silverman_factor(), rtol=1e-12)


def test_silverman_agrees_with_statsmodels_normal_reference():
    # KernelReg's own ``bw`` takes "cv_ls" and treats any other string as
    # "aic"; statsmodels' normal reference rule 1.06 sigma n^(-1/5) lives in
    # KDEMultivariate (and is KernelReg's starting point for cv_ls).
    X = np.random.default_rng(1).gamma(2.0, size=(300, 1))
    statsmodels_bw = KDEMultivariate(X, var_type="c", bw="normal_reference").bw
    assert_allclose(silverman_bandwidth(X), statsmodels_bw, rtol=0.01)


def test_integer_weights_equal_repeated_rows():
    X = make_X(n_samples=40)
    counts = np.random.default_rng(2).integers(0, 4, size=40)
    repeated = np.repeat(X, counts, axis=0)
    for rule in (scott_bandwidth, silverman_bandwidth):
        assert_allclose(rule(X, counts.astype(float)), rule(repeated), rtol=1e-12)


def test_zero_spread_feature_gets_unit_spread():
    X = np.column_stack([np.linspace(0, 1, 50), np.full(50, 3.0)])
    bandwidth = scott_bandwidth(X)
    assert bandwidth[1] == pytest.approx(50 ** (-1 / 6))
    assert np.all(np.isfinite(bandwidth)) and np.all(bandwidth > 0)
    # A single sample has no spread at all.
    assert np.all(silverman_bandwidth(X[:1]) > 0)


@pytest.mark.parametrize(
    "bandwidth, expected_type",
    [(0.5, float), (2, float), ([0.5, 1.0, 2.0], np.ndarray), ("scott", np.ndarray)],
)
def test_fitted_bandwidth_type(bandwidth, expected_type):
    X = make_X(n_samples=30)
    model = NadarayaWatsonRegressor(bandwidth=bandwidth).fit(X, X[:, 0])
    assert isinstance(model.bandwidth_, expected_type)
    if expected_type is np.ndarray:
        assert model.bandwidth_.shape == (3,)


def test_rule_bandwidth_is_used_for_prediction():
    X = make_X(n_samples=50)
    y = X @ [1.0, -1.0, 0.5]
    by_rule = NadarayaWatsonRegressor(bandwidth="silverman").fit(X, y)
    by_value = NadarayaWatsonRegressor(bandwidth=silverman_bandwidth(X)).fit(X, y)
    assert_allclose(by_rule.predict(X), by_value.predict(X), rtol=1e-12)


def test_bandwidth_array_is_copied():
    X = make_X(n_samples=20)
    bandwidth = np.array([1.0, 2.0, 3.0])
    model = NadarayaWatsonRegressor(bandwidth=bandwidth).fit(X, X[:, 0])
    model.bandwidth_[0] = 99.0
    assert bandwidth[0] == 1.0

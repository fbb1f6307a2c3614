"""Bandwidth rules against scipy and statsmodels, and the fitted bandwidth_."""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.stats import gaussian_kde
from sklearn.neighbors import NearestNeighbors
from statsmodels.nonparametric.kernel_density import KDEMultivariate

from sknw import NadarayaWatsonRegressor
from sknw._bandwidth import (
    scott_bandwidth,
    silverman_bandwidth,
    weighted_neighbor_distances,
)

from ._reference import (
    attention_slow,
    kth_neighbor_distance_slow,
    nadaraya_watson_slow,
)


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


# Adaptive local widths: the distance to the k-th nearest neighbour.


def test_unweighted_neighbor_distances_match_sorting():
    X = make_X(n_samples=60)
    queries = make_X(n_samples=20, seed=9)
    for n_neighbors in (1, 4, 10):
        assert_allclose(
            weighted_neighbor_distances(X, None, n_neighbors)[0],
            kth_neighbor_distance_slow(X, n_neighbors),
        )
        assert_allclose(
            weighted_neighbor_distances(X, None, n_neighbors, queries=queries)[0],
            kth_neighbor_distance_slow(X, n_neighbors, queries=queries),
        )


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov", "tricube", "linear"])
@pytest.mark.parametrize("adaptive", ["sample", "query"])
@pytest.mark.parametrize("bandwidth", [0.7, [0.5, 1.0, 2.0]])
def test_adaptive_widths_match_numpy_reference(kernel, adaptive, bandwidth):
    X = make_X(n_samples=80)
    y = np.sin(X[:, 0]) + X[:, 1]
    queries = make_X(n_samples=30, seed=3) * 1.3
    model = NadarayaWatsonRegressor(
        kernel=kernel, bandwidth=bandwidth, adaptive=adaptive, n_neighbors=7
    ).fit(X, y)
    # Local widths are k-th neighbour distances over their geometric mean on
    # the training samples.
    train = kth_neighbor_distance_slow(X, 7)
    mean = np.exp(np.mean(np.log(train)))
    if adaptive == "sample":
        widths = {"key_widths": train / mean}
    else:
        query = kth_neighbor_distance_slow(X, 7, queries=queries)
        widths = {"query_widths": query / mean}
    expected = nadaraya_watson_slow(
        queries, X, y, np.asarray(bandwidth), kernel, **widths
    )
    assert_allclose(model.predict(queries), expected, rtol=1e-10, atol=1e-12)
    assert_allclose(
        model.attention_weights(queries),
        attention_slow(queries, X, np.asarray(bandwidth), kernel, **widths),
        rtol=1e-10,
        atol=1e-14,
    )


def test_duplicates_get_the_smallest_positive_width():
    X = np.array([[0.0], [0.0], [0.0], [1.0], [3.0], [3.5]])
    y = np.arange(6.0)
    model = NadarayaWatsonRegressor(adaptive="sample", n_neighbors=2).fit(X, y)
    # The three copies of 0 have their 2nd neighbour at distance 0: they take
    # the smallest positive 2nd-neighbour distance instead.
    distances = kth_neighbor_distance_slow(X, 2)
    floor = distances[distances > 0].min()
    widths = np.maximum(distances, floor)
    widths /= np.exp(np.mean(np.log(widths)))
    expected = nadaraya_watson_slow(X, X, y, 1.0, "gaussian", key_widths=widths)
    assert_allclose(model.predict(X), expected, rtol=1e-10)
    assert np.all(np.isfinite(model.predict([[0.0], [100.0]])))


def test_adaptive_query_keeps_its_fitted_neighbour_index(monkeypatch):
    X = make_X(n_samples=50)
    model = NadarayaWatsonRegressor(adaptive="query", n_neighbors=5).fit(X, X[:, 0])
    queries = make_X(n_samples=20, seed=4)
    expected = model.predict(queries)

    def refuse(*args, **kwargs):
        raise AssertionError("the neighbour index was fitted again")

    monkeypatch.setattr(NearestNeighbors, "fit", refuse)
    assert_allclose(model.predict(queries), expected, rtol=0)
    assert_allclose(pickle.loads(pickle.dumps(model)).predict(queries), expected)


def test_adaptive_query_widths_do_not_depend_on_other_queries():
    X = make_X(n_samples=50)
    y = X[:, 0]
    queries = make_X(n_samples=20, seed=4)
    model = NadarayaWatsonRegressor(adaptive="query", n_neighbors=5).fit(X, y)
    together = model.predict(queries)
    one_by_one = np.concatenate([model.predict(query[None]) for query in queries])
    assert_allclose(together, one_by_one, rtol=1e-12)


@pytest.mark.parametrize("adaptive", ["sample", "query"])
def test_adaptive_with_fewer_samples_than_neighbours_uses_them_all(adaptive):
    X = np.array([[0.0], [1.0], [3.0], [7.0], [8.0]])
    y = np.arange(5.0)
    model = NadarayaWatsonRegressor(adaptive=adaptive, n_neighbors=10)
    with pytest.warns(UserWarning, match="add up to less than n_neighbors=10"):
        model.fit(X, y)
    # Each sample's width is its distance to the farthest other sample.
    farthest = kth_neighbor_distance_slow(X, 4)
    mean = np.exp(np.mean(np.log(farthest)))
    queries = np.array([[0.5], [5.0]])
    if adaptive == "sample":
        widths = {"key_widths": farthest / mean}
    else:
        widths = {
            "query_widths": kth_neighbor_distance_slow(X, 5, queries=queries) / mean
        }
    expected = nadaraya_watson_slow(queries, X, y, 1.0, "gaussian", **widths)
    assert_allclose(model.predict(queries), expected, rtol=1e-10)


def test_weighted_neighbour_distance_counts_weights_as_copies():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    weights = rng.integers(1, 4, size=30)
    repeated = np.repeat(X, weights, axis=0)
    queries = rng.normal(size=(10, 2))
    for k in (1, 3, 7):
        got, _ = weighted_neighbor_distances(X, weights.astype(float), k)
        expected = kth_neighbor_distance_slow(repeated, k)
        # Each copy of a row has the same distance as the row.
        assert_allclose(np.repeat(got, weights), expected)
        got, _ = weighted_neighbor_distances(X, weights.astype(float), k, queries)
        assert_allclose(got, kth_neighbor_distance_slow(repeated, k, queries))


def test_adaptive_zero_weight_samples_are_not_neighbours():
    X = make_X(n_samples=40)
    y = X[:, 0]
    sample_weight = np.ones(40)
    sample_weight[::3] = 0
    kept = sample_weight > 0
    for adaptive in ("sample", "query"):
        model = NadarayaWatsonRegressor(adaptive=adaptive, n_neighbors=4)
        weighted = model.fit(X, y, sample_weight=sample_weight).predict(X)
        removed = model.fit(X[kept], y[kept]).predict(X)
        assert_allclose(weighted, removed, rtol=1e-10)


def test_grid_search_over_neighbours():
    from sklearn.model_selection import GridSearchCV

    X = make_X(n_samples=120)
    y = np.sin(X[:, 0]) + 0.1 * X[:, 1]
    search = GridSearchCV(
        NadarayaWatsonRegressor(adaptive="sample"),
        {"n_neighbors": [2, 5, 20], "bandwidth": [0.5, 1.0]},
        cv=3,
    ).fit(X, y)
    assert search.best_score_ > 0.5
    best = NadarayaWatsonRegressor(adaptive="sample", **search.best_params_)
    assert_allclose(search.predict(X), best.fit(X, y).predict(X))

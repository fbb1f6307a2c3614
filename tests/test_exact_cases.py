"""Cases built so that a one-line slip in the code changes the answer.

Each compares the library with a NumPy computation written from the
formulas (``tests/_reference.py``) or with a closed form, on data chosen to
sit where the detail matters: a key a hair inside the radius, a query far
from every key, a query on top of more duplicates than ``n_neighbors``,
float32 data hundreds of widths wide, a first Adam step.
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning

from sknw import NadarayaWatsonRegressor, NadarayaWatsonRegressorCV
from sknw._engine import merge_partial_sums, nadaraya_watson
from sknw._neighbors import tree_partial_sums

from ._reference import kth_neighbor_distance_slow, nadaraya_watson_slow


def test_tree_keeps_a_key_a_hair_inside_a_compact_kernel():
    # u = 1 - 3e-10 for the key at -(1 - 3e-10): inside the support, where the
    # Epanechnikov weight is 4.5e-10 against 1.5e-6 for the key at
    # u = 1 - 1e-6, so it moves the prediction from 0 to about 3e-4. (The
    # top-hat counts a relative 2^-21 below u = 1 as its edge on every path.)
    X = np.array([[0.999999], [-(1 - 3e-10)], [4.0]])
    y = np.array([0.0, 1.0, 7.0])
    query = np.array([[0.0]])
    expected = nadaraya_watson_slow(query, X, y[:, None], 1.0, "epanechnikov").ravel()
    assert 1e-4 < expected[0] < 1e-3
    for algorithm in ("tree", "dense"):
        model = NadarayaWatsonRegressor(
            kernel="epanechnikov", bandwidth=1.0, algorithm=algorithm
        ).fit(X, y)
        # 1 - u^2 near 6e-10 keeps about 7 significant digits.
        assert_allclose(model.predict(query), expected, rtol=1e-5)


@pytest.mark.parametrize("kernel", ["gaussian", "exponential"])
def test_truncated_tree_far_from_every_key(kernel):
    # The nearest key is 30 widths away: the truncation radius is counted
    # from it, and the key 0.1 further keeps a weight of e^-3 (Gaussian) or
    # e^-0.1 (exponential) of the nearest's, far above the truncation.
    X = np.array([[30.0], [30.1], [45.0]])
    y = np.array([1.0, -1.0, 5.0])
    query = np.array([[0.0], [75.0]])
    truncation = 1e-8
    expected = nadaraya_watson_slow(query, X, y[:, None], 1.0, kernel).ravel()
    model = NadarayaWatsonRegressor(
        kernel=kernel, bandwidth=1.0, algorithm="tree", truncation=truncation
    ).fit(X, y)
    # Each prediction lies within truncation * (sum of weights / smallest
    # kept weight) * range of the exact one; here that is below 1e-6.
    assert_allclose(model.predict(query), expected, rtol=0, atol=1e-6)
    # The exact answers are far from any single key's value.
    assert np.all(np.abs(expected[0] - y[:2]) > 0.05)


def test_tree_with_local_widths_far_from_every_key():
    # Key widths differ by a factor of about 2: the key nearest in distance
    # (the narrow one) is not the nearest in u, and the truncation radius
    # must reach past it.
    X = np.array([[0.0], [0.05], [0.1], [3.0], [3.4], [3.8], [7.0], [8.0], [9.0]])
    y = np.arange(9.0)
    query = np.array([[-40.0], [50.0]])
    model = NadarayaWatsonRegressor(
        kernel="gaussian",
        bandwidth=1.0,
        adaptive="sample",
        n_neighbors=2,
        algorithm="tree",
        truncation=1e-10,
    ).fit(X, y)
    widths = model._local_widths_fit
    expected = nadaraya_watson_slow(
        query, X, y[:, None], 1.0, "gaussian", key_widths=widths
    ).ravel()
    assert_allclose(model.predict(query), expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("kernel", ["gaussian", "exponential"])
def test_truncated_tree_reaches_a_wide_key_behind_narrow_ones(kernel):
    # Seen from -40, the narrow keys at 0 and 0.1 are the nearest in
    # distance but 4000 widths away; the wide keys at 30 and 30.01, 70
    # widths away, carry all the weight. The search radius must be scaled
    # by the ratio of the widths to reach them.
    X = np.array([[0.0], [0.1], [30.0], [30.01]])
    y = np.array([[5.0], [6.0], [1.0], [-1.0]])
    key_widths = np.array([0.01, 0.01, 1.0, 1.0])
    query = np.array([[-40.0], [-70.0]])
    partial = tree_partial_sums(
        query,
        X,
        y,
        bandwidth=1.0,
        kernel=kernel,
        truncation=1e-10,
        key_widths=key_widths,
    )
    expected = nadaraya_watson_slow(query, X, y, 1.0, kernel, key_widths=key_widths)
    # Both wide keys count: the answers are neither one's value.
    assert np.all(np.abs(expected) < 0.9)
    assert_allclose(merge_partial_sums([partial]), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "kernel, truncation", [("epanechnikov", None), ("gaussian", 1e-300)]
)
def test_tree_partial_sums_over_parts_of_unequal_weights_merge_exactly(
    kernel, truncation
):
    # Each part's sums are computed with its weights divided by its largest
    # (1 and 100 here) and must be scaled back before they are merged.
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, size=(40, 2))
    y = rng.normal(size=(40, 2))
    sample_weight = np.concatenate([rng.uniform(0.2, 1, 20), rng.uniform(20, 100, 20)])
    queries = rng.uniform(-1, 1, size=(15, 2))
    parts = [
        tree_partial_sums(
            queries,
            X[part],
            y[part],
            bandwidth=0.7,
            kernel=kernel,
            truncation=truncation,
            sample_weight=sample_weight[part],
        )
        for part in (slice(0, 20), slice(20, 40))
    ]
    expected = nadaraya_watson_slow(queries, X, y, 0.7, kernel, sample_weight)
    assert_allclose(merge_partial_sums(parts), expected, rtol=1e-12, atol=1e-12)


def _adaptive_reference(X, y, queries, sample_weight, n_neighbors, bandwidth, kernel):
    """Adaptive predictions from the data with integer weights as repeated
    rows: k-th neighbour distances by sorting, raised to the smallest
    positive one, divided by their geometric mean."""
    counts = np.ones(len(X), dtype=int) if sample_weight is None else sample_weight
    counts = counts.astype(int)
    X_rep, y_rep = np.repeat(X, counts, axis=0), np.repeat(y, counts, axis=0)
    distances = kth_neighbor_distance_slow(X_rep, n_neighbors)
    floor = distances[distances > 0].min()
    scale = np.exp(np.mean(np.log(np.maximum(distances, floor))))
    key_widths = np.maximum(distances, floor) / scale
    query_distances = kth_neighbor_distance_slow(X_rep, n_neighbors, queries)
    query_widths = np.maximum(query_distances, floor) / scale
    return {
        "sample": nadaraya_watson_slow(
            queries, X_rep, y_rep[:, None], bandwidth, kernel, key_widths=key_widths
        ).ravel(),
        "query": nadaraya_watson_slow(
            queries, X_rep, y_rep[:, None], bandwidth, kernel, query_widths=query_widths
        ).ravel(),
    }


@pytest.mark.parametrize("adaptive", ["sample", "query"])
@pytest.mark.parametrize(
    "kernel, algorithm",
    [("gaussian", "dense"), ("epanechnikov", "dense"), ("epanechnikov", "tree")],
)
@pytest.mark.parametrize("weighted", [False, True])
def test_adaptive_widths_on_more_duplicates_than_neighbours(
    adaptive, kernel, algorithm, weighted
):
    # Four samples at 0 with n_neighbors=3: their k-th neighbour distance is
    # 0, and so is a query's at 0; both are raised to the smallest positive
    # distance.
    X = np.array([[0.0], [0.0], [0.0], [0.0], [1.0], [2.0], [3.5], [5.0], [5.5]])
    y = np.array([1.0, 1.0, 1.0, 1.0, 3.0, -2.0, 4.0, 0.0, 6.0])
    sample_weight = np.array([1, 2, 1, 1, 3, 1, 2, 1, 4]) if weighted else None
    queries = np.array([[0.0], [0.4], [1.6], [2.9], [5.2], [9.0]])
    expected = _adaptive_reference(X, y, queries, sample_weight, 3, 1.3, kernel)
    model = NadarayaWatsonRegressor(
        kernel=kernel,
        bandwidth=1.3,
        adaptive=adaptive,
        n_neighbors=3,
        algorithm=algorithm,
    ).fit(X, y, None if sample_weight is None else sample_weight.astype(float))
    assert_allclose(model.predict(queries), expected[adaptive], rtol=1e-12, atol=1e-12)
    # The two kinds of widths differ here, and so do their predictions.
    assert np.abs(expected["sample"] - expected["query"]).max() > 0.01


def test_float32_stays_accurate_on_data_a_hundred_widths_wide():
    # Squared distances by the expansion |q|^2 - 2 q.k + |k|^2 would round
    # by float32's precision times (50 widths)^2 here: errors near 1e-5
    # instead of 1e-7.
    rng = np.random.default_rng(0)
    keys = rng.uniform(0, 1000, size=(300, 2)).astype(np.float32)
    queries = rng.uniform(0, 1000, size=(50, 2)).astype(np.float32)
    values = np.sin(keys[:, :1] / 70.0)
    got = nadaraya_watson(queries, keys, values, bandwidth=10.0, kernel="gaussian")
    expected = nadaraya_watson_slow(
        queries.astype(np.float64), keys.astype(np.float64), values, 10.0, "gaussian"
    )
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() <= 2e-6


@pytest.mark.parametrize("learning_rate", [0.05, 0.2])
def test_first_adam_step_has_the_learning_rate_as_its_size(learning_rate):
    # With bias correction, Adam's first step is learning_rate * g / |g|
    # (up to its 1e-8): the log-width moves by exactly the learning rate,
    # against the gradient, whatever the gradient's size.
    rng = np.random.default_rng(0)
    X = np.sort(rng.uniform(0, 5, size=(60, 1)), axis=0)
    y = np.sin(2 * X[:, 0]) + rng.normal(0, 0.1, 60)
    model = NadarayaWatsonRegressorCV(
        bandwidth=1.5,
        solver="adam",
        learning_rate=learning_rate,
        batch_size=60,
        max_iter=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    # The width that fits this wiggle is far below 1.5: the step shrinks it.
    assert np.log(model.bandwidth_ / 1.5) == pytest.approx(-learning_rate, rel=1e-5)

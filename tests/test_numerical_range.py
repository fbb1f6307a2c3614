"""Inputs at the edges of float, read-only arrays and small refusals."""

import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from sklearn import config_context
from threadpoolctl import threadpool_limits

from sknw import (
    NadarayaWatsonClassifier,
    NadarayaWatsonRegressor,
    NadarayaWatsonRegressorCV,
)
from sknw._neighbors import _pair_bytes
from tests._reference import attention_slow, nadaraya_watson_slow


def _data(n_samples=60, n_features=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_samples, n_features)), rng.normal(size=n_samples)


# Small refusals.


@pytest.mark.parametrize("bandwidth", [True, np.bool_(True), [True, True]])
def test_boolean_bandwidth_refused(bandwidth):
    X, y = _data()
    with pytest.raises(ValueError, match="bandwidth"):
        NadarayaWatsonRegressor(bandwidth=bandwidth).fit(X, y)


def test_complex_sample_weight_refused():
    X, y = _data()
    with pytest.raises(ValueError, match="complex"):
        NadarayaWatsonRegressor().fit(X, y, sample_weight=np.ones(len(y)) + 1j)


def test_device_that_cannot_compute_refused_at_fit():
    X, y = _data()
    with pytest.raises(ValueError, match="meta"):
        NadarayaWatsonRegressor(device="meta").fit(X, y)


def _read_only(array):
    array = np.array(array)
    array.flags.writeable = False
    return array


@pytest.mark.parametrize(
    "make",
    [
        lambda: NadarayaWatsonRegressor(),
        lambda: NadarayaWatsonRegressor(kernel="epanechnikov", algorithm="tree"),
        lambda: NadarayaWatsonRegressor(adaptive="query"),
        lambda: NadarayaWatsonRegressorCV(),
        lambda: NadarayaWatsonClassifier(kernel="tophat", algorithm="tree"),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_read_only_arrays_give_no_warning(make, dtype, monkeypatch):
    X, y = _data()
    X = _read_only(X.astype(dtype))
    y = _read_only(y > 0 if "Classifier" in type(make()).__name__ else y)
    # Torch warns once per process; every array it is given must be writable.
    as_tensor = torch.as_tensor

    def writable_only(data, *args, **kwargs):
        assert not isinstance(data, np.ndarray) or data.flags.writeable
        return as_tensor(data, *args, **kwargs)

    monkeypatch.setattr(torch, "as_tensor", writable_only)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = make().fit(X, y)
        model.predict(X)
        model.attention_weights(X[:5])
    assert not X.flags.writeable and not y.flags.writeable


# Numbers at the edges of float.


@pytest.mark.parametrize("magnitude", [1e306, 1.7e308])
def test_targets_near_largest_float64_give_finite_predictions(magnitude):
    X, y = _data(seed=1)
    y = np.where(y > 0, magnitude, -magnitude / 3)
    y[:3] = [magnitude, magnitude, magnitude]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predictions = NadarayaWatsonRegressor(bandwidth=0.7).fit(X, y).predict(X)
    expected = attention_slow(X, X, 0.7, "gaussian") @ (y / magnitude) * magnitude
    assert np.all(np.isfinite(predictions))
    assert_allclose(predictions, expected, rtol=1e-9, atol=1e-12 * magnitude)


def test_float32_targets_near_largest_float32_give_finite_predictions():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 2)).astype(np.float32)
    y = rng.choice([-3e38, 3e38], size=2000).astype(np.float32)
    predictions = NadarayaWatsonRegressor().fit(X, y).predict(X[:20])
    assert predictions.dtype == np.float32 and np.all(np.isfinite(predictions))
    scaled = y.astype(np.float64) / 3e38
    expected = attention_slow(X[:20], X, 1.0, "gaussian") @ scaled * 3e38
    assert_allclose(predictions, expected, rtol=1e-3, atol=3e38 * 1e-5)


def test_float64_targets_beyond_float32_with_float32_inputs_refused():
    X, y = _data()
    with pytest.raises(ValueError, match="float32"):
        NadarayaWatsonRegressor().fit(X.astype(np.float32), y * 1e39)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_callable_kernel_with_huge_values_matches_the_same_kernel_scaled(dtype):
    X, y = _data(n_samples=40)
    X = X.astype(dtype)
    labels = (y > 0).astype(int) + (y > 1)
    huge = lambda u: 1e300 * np.exp(-u)  # noqa: E731
    tiny = lambda u: 1e-300 * np.exp(-u)  # noqa: E731
    expected = attention_slow(X, X, 1.0, "exponential")
    for kernel in (huge, tiny):
        reg = NadarayaWatsonRegressor(kernel=kernel).fit(X, y)
        assert_allclose(reg.predict(X), expected @ y, rtol=1e-4, atol=1e-5)
        clf = NadarayaWatsonClassifier(kernel=kernel).fit(X, labels)
        proba = expected @ np.eye(3)[labels]
        assert_allclose(clf.predict_proba(X), proba, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "dtype, tiny", [(np.float64, 1e-170), (np.float64, 1e-300), (np.float32, 1e-21)]
)
@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov"])
def test_tiny_coordinates_give_the_predictions_of_the_data_scaled_up(
    dtype, tiny, kernel
):
    X, y = _data(n_samples=50)
    queries = X[:10] + 0.1
    model = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.6 * tiny)
    predictions = model.fit((X * tiny).astype(dtype), y).predict(
        (queries * tiny).astype(dtype)
    )
    expected = nadaraya_watson_slow(queries, X, y, 0.6, kernel)
    assert model.bandwidth_ == 0.6 * tiny
    assert_allclose(predictions, expected, rtol=2e-4 if dtype == np.float32 else 1e-9)


@pytest.mark.parametrize("rule", ["scott", "silverman"])
def test_rules_on_tiny_coordinates_scale_with_the_data(rule):
    X, y = _data(n_samples=50)
    plain = NadarayaWatsonRegressor(bandwidth=rule).fit(X, y)
    tiny = NadarayaWatsonRegressor(bandwidth=rule).fit(X * 1e-170, y)
    assert_allclose(tiny.bandwidth_, plain.bandwidth_ * 1e-170, rtol=1e-12)
    assert_allclose(tiny.predict(X[:5] * 1e-170), plain.predict(X[:5]), rtol=1e-9)


@pytest.mark.parametrize("rule", ["scott", "silverman"])
@pytest.mark.parametrize("weight", [1e308, 1e-320])
def test_rules_with_extreme_equal_weights(rule, weight):
    X, y = _data(n_samples=50)
    model = NadarayaWatsonRegressor(bandwidth=rule)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(X, y, sample_weight=np.full(50, weight))
        predictions = model.predict(X[:5])
    # The rule with n = 50 * weight samples, computed in logarithms.
    d = X.shape[1]
    log_n = np.log(50) + np.log(weight)
    if rule == "scott":
        factor = np.exp(-log_n / (d + 4))
    else:
        factor = np.exp((np.log(4 / (d + 2)) - log_n) / (d + 4))
    assert_allclose(model.bandwidth_, X.std(axis=0) * factor, rtol=1e-9)
    expected = nadaraya_watson_slow(X[:5], X, y, model.bandwidth_, "gaussian")
    assert np.all(np.isfinite(predictions))
    assert_allclose(predictions, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_neighbors", [3, 10])
def test_dense_and_tree_agree_for_the_kth_neighbour_at_u_equal_1(dtype, n_neighbors):
    # With the width equal to the typical k-th neighbour distance, every
    # query's k-th neighbour sits at u = 1 exactly: a top-hat weight 0.
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(300, 2)).astype(dtype)
    y = rng.normal(size=300)
    queries = rng.uniform(size=(500, 2)).astype(dtype)
    probe = NadarayaWatsonRegressor("tophat", adaptive="query", n_neighbors=n_neighbors)
    width = probe.fit(X, y)._local_width_scale
    settings = dict(bandwidth=width, adaptive="query", n_neighbors=n_neighbors)
    dense = NadarayaWatsonRegressor("tophat", algorithm="dense", **settings)
    tree = NadarayaWatsonRegressor("tophat", algorithm="tree", **settings)
    dense_pred = dense.fit(X, y).predict(queries)
    tree_pred = tree.fit(X, y).predict(queries)
    assert_allclose(dense_pred, tree_pred, atol=1e-5)
    # Against the reference, which leaves out the k-th neighbour (u = 1).
    distances = np.sort(
        np.sqrt(((queries[:, None].astype(float) - X[None]) ** 2).sum(-1)), axis=1
    )
    inside = distances[:, : n_neighbors - 1]
    assert np.all(inside[:, -1] < distances[:, n_neighbors - 1] * (1 - 1e-4))
    nearest = np.argsort(((queries[:, None] - X[None]) ** 2).sum(-1), axis=1)
    expected = y[nearest[:, : n_neighbors - 1]].mean(axis=1)
    # Queries nearer their k-th neighbour than the training samples' nearest
    # to theirs take that smallest distance as theirs, and a wider width.
    at_edge = distances[:, n_neighbors - 1] > dense._local_width_floor
    assert at_edge.mean() > 0.9
    assert_allclose(dense_pred[at_edge], expected[at_edge], atol=1e-5)


_magnitudes = st.floats(min_value=-300, max_value=300)


@given(
    x_exponent=_magnitudes,
    y_exponent=_magnitudes,
    w_exponent=_magnitudes,
    seed=st.integers(0, 2**16),
    kernel=st.sampled_from(["gaussian", "epanechnikov", "tophat", "exponential"]),
    rule=st.sampled_from([1.0, "scott", "silverman"]),
)
def test_finite_inputs_give_finite_predictions_or_a_clear_refusal(
    x_exponent, y_exponent, w_exponent, seed, kernel, rule
):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(30, 2)) * 10.0**x_exponent
    y = rng.normal(size=30) * 10.0**y_exponent
    sample_weight = rng.uniform(0.5, 2, size=30) * 10.0**w_exponent
    bandwidth = rule if isinstance(rule, str) else rule * 10.0**x_exponent
    model = NadarayaWatsonRegressor(kernel, bandwidth=bandwidth)
    try:
        model.fit(X, y, sample_weight=sample_weight)
    except ValueError as exc:
        # The one refusal at these magnitudes: coordinates whose squared
        # distances overflow.
        assert "Rescale the data" in str(exc)
        return
    predictions = model.predict(X[:10] * 1.01)
    assert np.all(np.isfinite(predictions))
    assert np.all(predictions <= y.max() * (1 + 1e-9) + 1e-300 * 0)
    assert np.all(predictions >= y.min() - abs(y.min()) * 1e-9)


# Memory under working_memory.


class _CountingTree:
    """A tree that records how many neighbours each gathering returns."""

    def __init__(self, tree):
        self.tree = tree
        self.gathered = []

    def __getattr__(self, name):
        return getattr(self.tree, name)

    def query_radius(self, X, r, count_only=False, **kwargs):
        found = self.tree.query_radius(X, r, count_only=count_only, **kwargs)
        if not count_only:
            self.gathered.append(sum(len(part) for part in found))
        return found


def test_tree_gathers_neighbours_within_working_memory_whatever_the_order():
    rng = np.random.default_rng(0)
    X = np.vstack(
        [rng.uniform(0, 100, size=(1000, 2)), rng.normal(50, 0.05, size=(4000, 2))]
    )
    y = rng.normal(size=len(X))
    queries = rng.uniform(0, 100, size=(600, 2))
    # Crowded queries away from the rows a sample of queries would take.
    sampled = np.unique(np.linspace(0, 599, 256).astype(int))
    crowded = np.setdiff1d(np.arange(600), sampled)[:150]
    queries[crowded] = rng.normal(50, 0.05, size=(150, 2))
    model = NadarayaWatsonRegressor("epanechnikov", bandwidth=0.5, algorithm="tree")
    model.fit(X, y)
    model._tree = counting = _CountingTree(model._tree)
    with config_context(working_memory=1):
        predictions = model.predict(queries)
    # The budget's pairs (1 MiB over the bytes held per pair), or one query's
    # neighbours when it alone has more.
    budget = 2**20 // _pair_bytes(2)
    assert max(counting.gathered) <= max(budget, len(X))
    assert sum(counting.gathered) > 150 * 4000
    expected = nadaraya_watson_slow(queries, X, y, 0.5, "epanechnikov")
    assert_allclose(predictions, expected, rtol=1e-9, atol=1e-12)


def _traced_peak(function):
    """Peak MiB of NumPy's allocations while ``function`` runs."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_many_classes_fit_and_predict_within_working_memory():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 2))
    y = rng.permutation(2000) % 1000  # 1,000 classes: a one-hot is 15 MiB
    queries = rng.normal(size=(200, 2))
    model = NadarayaWatsonClassifier(bandwidth=0.2)
    assert _traced_peak(lambda: model.fit(X, y)) < 2
    with config_context(working_memory=4):
        labels = []
        assert _traced_peak(lambda: labels.append(model.predict(queries))) < 6
        proba = model.predict_proba(queries)
    expected = attention_slow(queries, X, 0.2, "gaussian") @ np.eye(1000)[y]
    assert_allclose(proba, expected, rtol=1e-9, atol=1e-15)
    assert_allclose(labels[0], np.argmax(expected, axis=1))


# Threads of sknw's own.


@pytest.mark.parametrize(
    "kernel", ["gaussian", "epanechnikov", lambda u: 1e300 * np.exp(-u)]
)
def test_chunks_on_threads_give_the_single_thread_results(kernel):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 2))
    y = rng.normal(size=800)
    queries = rng.normal(size=(300, 2))
    model = NadarayaWatsonRegressor(kernel, bandwidth=0.3, algorithm="dense")
    model.fit(X, y, sample_weight=rng.uniform(0.5, 2, size=800))
    previous = torch.get_num_threads()
    with config_context(working_memory=0.1):  # chunks of a few rows
        with threadpool_limits(limits=1, user_api="openmp"):
            one = model.predict(queries)
            one_attention = model.attention_weights(queries)
        torch.set_num_threads(3)
        try:
            threaded = model.predict(queries)
            threaded_attention = model.attention_weights(queries)
            assert torch.get_num_threads() == 3
        finally:
            torch.set_num_threads(previous)
    # Chunks of other sizes (the budget is shared by the threads) round
    # their products differently.
    assert_allclose(threaded, one, rtol=1e-12, atol=1e-15)
    assert_allclose(threaded_attention, one_attention, rtol=1e-12, atol=1e-300)
    assert_allclose(one_attention.sum(axis=1), 1.0, rtol=1e-12)

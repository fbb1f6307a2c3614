"""The chunked torch engine against a dense NumPy reference, and its invariants."""

import numpy as np
import pytest
import sklearn
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose, assert_array_equal

from sknw import NadarayaWatsonClassifier, NadarayaWatsonRegressor
from sknw._engine import (
    attention,
    merge_partial_sums,
    nadaraya_watson,
    partial_sums,
)
from sknw._kernels import KERNELS

from ._reference import KERNELS_NUMPY, attention_slow, nadaraya_watson_slow

ALL_KERNELS = sorted(KERNELS)
COMPACT_KERNELS = sorted(name for name, kernel in KERNELS.items() if kernel.compact)


def make_data(n_keys=60, n_queries=45, n_features=2, n_outputs=2, seed=0):
    rng = np.random.default_rng(seed)
    keys = rng.normal(size=(n_keys, n_features))
    queries = rng.normal(scale=1.5, size=(n_queries, n_features))
    values = rng.normal(size=(n_keys, n_outputs))
    sample_weight = rng.uniform(0.2, 3.0, size=n_keys)
    return queries, keys, values, sample_weight


@pytest.mark.parametrize("kernel", ALL_KERNELS)
@pytest.mark.parametrize("bandwidth", [0.4, np.array([0.7, 1.3])])
def test_matches_numpy_reference(kernel, bandwidth):
    queries, keys, values, sample_weight = make_data()
    expected = nadaraya_watson_slow(
        queries, keys, values, bandwidth, kernel, sample_weight
    )
    got = nadaraya_watson(
        queries,
        keys,
        values,
        bandwidth=bandwidth,
        kernel=kernel,
        sample_weight=sample_weight,
    )
    assert got.dtype == np.float64
    assert_allclose(got, expected, rtol=1e-10, atol=1e-12)

    expected_attention = attention_slow(queries, keys, bandwidth, kernel, sample_weight)
    got_attention = attention(
        queries, keys, bandwidth=bandwidth, kernel=kernel, sample_weight=sample_weight
    )
    assert_allclose(got_attention, expected_attention, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kernel", ALL_KERNELS)
def test_float32_matches_reference(kernel):
    queries, keys, values, sample_weight = make_data()
    expected = nadaraya_watson_slow(queries, keys, values, 0.5, kernel, sample_weight)
    got = nadaraya_watson(
        queries.astype(np.float32),
        keys.astype(np.float32),
        values,
        bandwidth=0.5,
        kernel=kernel,
        sample_weight=sample_weight,
    )
    assert got.dtype == np.float32
    assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov", "exponential"])
@pytest.mark.parametrize("working_memory", [0.001, 0.01, 0.1])
def test_chunking_does_not_change_the_result(kernel, working_memory):
    queries, keys, values, sample_weight = make_data(n_keys=300, n_queries=257)
    kwargs = dict(bandwidth=0.3, kernel=kernel, sample_weight=sample_weight)
    whole = nadaraya_watson(queries, keys, values, **kwargs)
    whole_attention = attention(queries, keys, **kwargs)
    # 0.001 MiB leaves room for a single row per chunk: 257 chunks.
    with sklearn.config_context(working_memory=working_memory):
        chunked = nadaraya_watson(queries, keys, values, **kwargs)
        chunked_attention = attention(queries, keys, **kwargs)
    assert_allclose(chunked, whole, rtol=1e-12, atol=1e-12)
    assert_allclose(chunked_attention, whole_attention, rtol=1e-12, atol=1e-12)
    assert_allclose(
        chunked,
        nadaraya_watson_slow(queries, keys, values, 0.3, kernel, sample_weight),
        rtol=1e-10,
        atol=1e-12,
    )


def test_chunk_size_follows_working_memory(monkeypatch):
    from sknw import _engine

    seen = []
    original = _engine.PreparedKeys.weights

    def record(problem, queries, query_widths=None):
        seen.append(queries.shape[0])
        return original(problem, queries, query_widths)

    monkeypatch.setattr(_engine.PreparedKeys, "weights", record)
    queries, keys, values, _ = make_data(n_keys=1000, n_queries=500)
    previous = torch.get_num_threads()
    try:
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            seen.clear()
            with sklearn.config_context(working_memory=1):
                nadaraya_watson(queries, keys, values, bandwidth=1.0, kernel="gaussian")
            # 1 MiB over three float64 blocks of 1000 keys per thread: 43 rows
            # a chunk on one thread, 21 on each of two.
            assert max(seen) == 2**20 // (3 * 1000 * 8 * n_threads)
            assert sum(seen) == 500
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("kernel", COMPACT_KERNELS)
def test_query_outside_support_takes_nearest_samples(kernel):
    keys = np.array([[0.0], [1.0], [3.0], [5.0], [5.0]])
    values = np.array([[10.0], [20.0], [30.0], [40.0], [60.0]])
    queries = np.array([[-10.0], [2.0], [100.0], [0.5]])
    got = nadaraya_watson(queries, keys, values, bandwidth=0.4, kernel=kernel)
    # -10 is nearest to 0; 2 is equidistant from 1 and 3 (ties averaged);
    # 100 is nearest to the two samples at 5; 0.5 too.
    assert_allclose(got[:, 0], [10.0, 25.0, 50.0, 15.0])
    assert_allclose(got, nadaraya_watson_slow(queries, keys, values, 0.4, kernel))


@pytest.mark.parametrize("kernel", COMPACT_KERNELS)
def test_sample_exactly_one_width_away_gets_no_weight(kernel):
    keys = np.array([[0.0], [1.05], [-1.5], [3.0]])
    queries = np.array([[0.0], [1.5]])
    got = attention(queries, keys, bandwidth=1.5, kernel=kernel)
    # |0 - (-1.5)| = 1.5 and |1.5 - 3| = 1.5: u = 1 exactly, outside.
    assert got[0, 2] == 0.0 and got[1, 3] == 0.0
    assert_allclose(got, attention_slow(queries, keys, 1.5, kernel), atol=1e-15)
    shuffled = attention(queries, keys[::-1], bandwidth=1.5, kernel=kernel)
    assert_array_equal(shuffled[:, ::-1], got)


def test_nearest_fallback_respects_sample_weight():
    keys = np.array([[0.0], [2.0], [2.0]])
    values = np.array([[1.0], [3.0], [6.0]])
    sample_weight = np.array([5.0, 1.0, 2.0])
    got = nadaraya_watson(
        np.array([[9.0]]),
        keys,
        values,
        bandwidth=0.1,
        kernel="tophat",
        sample_weight=sample_weight,
    )
    assert_allclose(got, [[(3.0 * 1 + 6.0 * 2) / 3]])
    # A zero-weight sample is never the nearest.
    got = nadaraya_watson(
        np.array([[9.0]]),
        keys,
        values,
        bandwidth=0.1,
        kernel="tophat",
        sample_weight=np.array([1.0, 0.0, 0.0]),
    )
    assert_allclose(got, [[1.0]])


@pytest.mark.parametrize("kernel", ["gaussian", "exponential"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiny_bandwidth_gives_nearest_sample(kernel, dtype):
    queries, keys, values, _ = make_data(n_queries=30)
    distance = np.linalg.norm(queries[:, None] - keys[None], axis=-1)
    nearest = distance.argmin(axis=1)
    # (5e-309: the factor 1 / h, times log2 e, beyond float64's largest.)
    for bandwidth in (1e-8, 1e-30, 1e-200, 5e-309):
        got = nadaraya_watson(
            queries.astype(dtype),
            keys.astype(dtype),
            values,
            bandwidth=bandwidth,
            kernel=kernel,
        )
        assert np.all(np.isfinite(got))
        assert_allclose(got, values[nearest], rtol=1e-6)


@pytest.mark.parametrize("kernel", ["gaussian", "exponential", "epanechnikov"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_bandwidth_gives_weighted_mean(kernel, dtype):
    queries, keys, values, sample_weight = make_data()
    mean = np.average(values, axis=0, weights=sample_weight)
    for bandwidth in (1e8, 1e30, 1e200):
        got = nadaraya_watson(
            queries.astype(dtype),
            keys.astype(dtype),
            values,
            bandwidth=bandwidth,
            kernel=kernel,
            sample_weight=sample_weight,
        )
        assert_allclose(got, np.broadcast_to(mean, got.shape), rtol=1e-5)


def test_constant_kernel_is_average_pooling():
    queries, keys, values, sample_weight = make_data()
    got = nadaraya_watson(
        queries,
        keys,
        values,
        bandwidth=1e-3,
        kernel="constant",
        sample_weight=sample_weight,
    )
    mean = np.average(values, axis=0, weights=sample_weight)
    assert_allclose(got, np.broadcast_to(mean, got.shape), rtol=1e-12)


@pytest.mark.parametrize("name", ["epanechnikov", "cosine", "gaussian", "tricube"])
def test_callable_kernel_equals_named_kernel(name):
    queries, keys, values, sample_weight = make_data()
    kwargs = dict(bandwidth=0.8, sample_weight=sample_weight)
    named = nadaraya_watson(queries, keys, values, kernel=name, **kwargs)
    given_as_callable = nadaraya_watson(
        queries, keys, values, kernel=KERNELS_NUMPY[name], **kwargs
    )
    assert_allclose(given_as_callable, named, rtol=1e-12, atol=1e-14)


def test_callable_kernel_bad_output_during_predict_is_refused():
    # Fine on the probe values at fit, negative at a distance seen later.
    def odd_kernel(u):
        return np.where((u > 20) & (u < 40), -1.0, 1.0)

    X = np.array([[0.0], [1.0]])
    model = NadarayaWatsonRegressor(kernel=odd_kernel).fit(X, [0.0, 1.0])
    with pytest.raises(ValueError, match="finite weights >= 0"):
        model.predict([[30.0]])


def test_attention_scatters_zero_weight_samples():
    queries, keys, _, sample_weight = make_data()
    sample_weight[[3, 10]] = 0.0
    got = attention(
        queries, keys, bandwidth=0.5, kernel="gaussian", sample_weight=sample_weight
    )
    assert_array_equal(got[:, [3, 10]], 0.0)
    assert_allclose(got.sum(axis=1), 1.0)
    expected = attention_slow(queries, keys, 0.5, "gaussian", sample_weight)
    assert_allclose(got, expected, rtol=1e-10, atol=1e-14)


# Property tests: invariants any correct Nadaraya-Watson obeys.

finite_floats = st.floats(-10, 10, allow_nan=False, width=64)


@st.composite
def problems(draw, max_features=3):
    n_samples = draw(st.integers(2, 25))
    n_queries = draw(st.integers(1, 10))
    n_features = draw(st.integers(1, max_features))
    X = draw(arrays(np.float64, (n_samples, n_features), elements=finite_floats))
    queries = draw(arrays(np.float64, (n_queries, n_features), elements=finite_floats))
    y = draw(arrays(np.float64, n_samples, elements=finite_floats))
    bandwidth = draw(st.floats(1e-3, 1e3))
    kernel = draw(st.sampled_from(ALL_KERNELS))
    return X, y, queries, bandwidth, kernel


def assume_off_compact_edges(X, queries, bandwidth):
    """Points within rounding of a compact kernel's edge may fall either way."""
    u = np.linalg.norm(queries[:, None] - X[None], axis=-1) / bandwidth
    assume(not np.any(np.abs(u - 1) < 1e-6))


@given(problems())
def test_attention_rows_are_distributions(problem):
    X, y, queries, bandwidth, kernel = problem
    model = NadarayaWatsonRegressor(kernel=kernel, bandwidth=bandwidth).fit(X, y)
    weights = model.attention_weights(queries)
    assert weights.shape == (len(queries), len(X))
    assert np.all(weights >= 0)
    assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-12)
    assert_allclose(model.predict(queries), weights @ y, rtol=1e-9, atol=1e-9)


@given(problems())
def test_predictions_are_finite_and_within_target_range(problem):
    X, y, queries, bandwidth, kernel = problem
    y_pred = NadarayaWatsonRegressor(kernel=kernel, bandwidth=bandwidth).fit(X, y)
    y_pred = y_pred.predict(queries)
    assert np.all(np.isfinite(y_pred))
    slack = 1e-12 * max(1.0, np.abs(y).max())
    assert np.all(y_pred >= y.min() - slack)
    assert np.all(y_pred <= y.max() + slack)


@given(problems(), st.randoms(use_true_random=False))
def test_invariant_to_permuting_training_rows(problem, random):
    X, y, queries, bandwidth, kernel = problem
    order = list(range(len(X)))
    random.shuffle(order)
    model = NadarayaWatsonRegressor(kernel=kernel, bandwidth=bandwidth)
    expected = model.fit(X, y).predict(queries)
    got = model.fit(X[order], y[order]).predict(queries)
    assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@given(problems(), st.floats(-1e4, 1e4))
def test_invariant_to_translation(problem, shift):
    X, y, queries, bandwidth, kernel = problem
    assume_off_compact_edges(X, queries, bandwidth)
    model = NadarayaWatsonRegressor(kernel=kernel, bandwidth=bandwidth)
    expected = model.fit(X, y).predict(queries)
    got = model.fit(X + shift, y).predict(queries + shift)
    assert_allclose(got, expected, rtol=1e-7, atol=1e-7)


@given(problems(), st.floats(1e-3, 1e3))
def test_invariant_to_scaling_data_and_bandwidth(problem, factor):
    X, y, queries, bandwidth, kernel = problem
    assume_off_compact_edges(X, queries, bandwidth)
    model = NadarayaWatsonRegressor(kernel=kernel, bandwidth=bandwidth)
    expected = model.fit(X, y).predict(queries)
    model.set_params(bandwidth=bandwidth * factor)
    got = model.fit(X * factor, y).predict(queries * factor)
    assert_allclose(got, expected, rtol=1e-7, atol=1e-7)


@given(problems(max_features=2))
def test_tiny_and_huge_bandwidth_limits(problem):
    X, y, queries, _, kernel = problem
    assume(kernel != "constant")
    distance = np.linalg.norm(queries[:, None] - X[None], axis=-1)
    nearest = distance <= distance.min(axis=1, keepdims=True) * (1 + 1e-9) + 1e-12
    # Near ties would make the nearest sample ambiguous.
    second = np.sort(distance, axis=1)[:, 1] if len(X) > 1 else np.inf
    distinct = ~np.isclose(distance.min(axis=1), second, rtol=1e-3)
    expected_nearest = (nearest * y).sum(axis=1) / nearest.sum(axis=1)
    tiny = NadarayaWatsonRegressor(kernel=kernel, bandwidth=1e-8).fit(X, y)
    got = tiny.predict(queries)
    assert np.all(np.isfinite(got))
    assert_allclose(got[distinct], expected_nearest[distinct], rtol=1e-9, atol=1e-9)

    huge = NadarayaWatsonRegressor(kernel=kernel, bandwidth=1e8).fit(X, y)
    assert_allclose(huge.predict(queries), y.mean(), rtol=1e-6, atol=1e-6)


@given(problems(), st.integers(0, 2**32 - 1))
def test_integer_weights_equal_repeated_rows(problem, seed):
    X, y, queries, bandwidth, kernel = problem
    counts = np.random.default_rng(seed).integers(0, 4, size=len(X))
    assume(counts.sum() > 0)
    assume_off_compact_edges(X, queries, bandwidth)
    model = NadarayaWatsonRegressor(kernel=kernel, bandwidth=bandwidth)
    weighted = model.fit(X, y, sample_weight=counts).predict(queries)
    repeated = model.fit(np.repeat(X, counts, axis=0), np.repeat(y, counts))
    assert_allclose(weighted, repeated.predict(queries), rtol=1e-9, atol=1e-9)


@given(problems())
def test_classifier_probabilities_are_distributions(problem):
    X, y, queries, bandwidth, kernel = problem
    labels = np.where(y > 0, "pos", "neg")
    model = NadarayaWatsonClassifier(kernel=kernel, bandwidth=bandwidth)
    proba = model.fit(X, labels).predict_proba(queries)
    assert proba.shape == (len(queries), len(model.classes_))
    assert np.all(proba >= 0)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("kernel", ["gaussian", "exponential", "epanechnikov"])
def test_float32_stays_accurate_when_the_width_is_small_beside_the_range(kernel):
    rng = np.random.default_rng(7)
    keys = np.sort(rng.uniform(0, 1000, size=(2000, 1)), axis=0)
    values = np.sin(keys / 50) + rng.normal(0, 0.1, size=keys.shape)
    queries = rng.uniform(0, 1000, size=(300, 1))
    keys32, queries32 = keys.astype(np.float32), queries.astype(np.float32)
    # The oracle sees the same float32 data, in float64.
    expected = nadaraya_watson_slow(
        queries32.astype(np.float64), keys32.astype(np.float64), values, 0.3, kernel
    )
    got = nadaraya_watson(queries32, keys32, values, bandwidth=0.3, kernel=kernel)
    assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nearest_sample_at_every_tiny_width(dtype):
    rng = np.random.default_rng(8)
    keys = rng.uniform(-5, 5, size=(40, 2))
    values = np.arange(40.0)[:, None]
    queries = rng.uniform(-5, 5, size=(60, 2))
    distance = np.linalg.norm(queries[:, None] - keys[None], axis=-1)
    nearest = values[distance.argmin(axis=1)]
    tiniest = np.finfo(dtype).tiny
    for bandwidth in np.geomspace(tiniest, 1e-6, 60):
        got = nadaraya_watson(
            queries.astype(dtype),
            keys.astype(dtype),
            values,
            bandwidth=float(bandwidth),
            kernel="gaussian",
        )
        assert_allclose(got, nearest, err_msg=f"bandwidth {bandwidth:.3g}")


def test_large_sample_weights_stay_finite_in_float32():
    queries, keys, values, sample_weight = make_data()
    expected = nadaraya_watson(
        queries, keys, values, bandwidth=0.5, kernel="gaussian",
        sample_weight=sample_weight * 1e36,
    )  # fmt: skip
    got = nadaraya_watson(
        queries.astype(np.float32), keys.astype(np.float32), values,
        bandwidth=0.5, kernel="gaussian", sample_weight=sample_weight * 1e36,
    )  # fmt: skip
    assert np.all(np.isfinite(got))
    assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov"])
def test_adaptive_limit_is_the_same_at_every_tiny_width(kernel):
    keys = np.array([[0.0], [1.0], [1.1], [6.0], [9.0]])
    values = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    key_widths = np.array([0.5, 0.1, 0.1, 4.0, 3.0])
    queries = np.array([[3.0], [7.5]])
    # Nearest in u = distance / key width: 6.0 (u = 0.75) for 3.0, and for
    # 7.5 the key at 6.0 (u = 0.375) rather than 9.0 (u = 0.5).
    for bandwidth in (1e-2, 1e-20, 1e-150, 1e-300):
        got = nadaraya_watson(
            queries, keys, values, bandwidth=bandwidth, kernel=kernel,
            key_widths=key_widths,
        )  # fmt: skip
        assert_allclose(got, [[4.0], [4.0]], err_msg=f"bandwidth {bandwidth}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", ["gaussian", "tophat", "epanechnikov"])
def test_sample_weights_of_extreme_ratio_stay_finite(dtype, kernel):
    keys = np.array([[0.0], [100.0]], dtype=dtype)
    values = np.array([[1.0], [2.0]])
    queries = np.array([[100.0], [0.0]], dtype=dtype)
    for sample_weight in ([1e300, 1e-30], [1.0, 1e-46], [1e30, 1e-20], [1, 1e-37]):
        sample_weight = np.array(sample_weight)
        got = nadaraya_watson(
            queries, keys, values, bandwidth=1.0, kernel=kernel,
            sample_weight=sample_weight,
        )  # fmt: skip
        assert np.all(np.isfinite(got))
        expected = nadaraya_watson_slow(
            queries, keys, values, 1.0, kernel, sample_weight
        )
        ratio = sample_weight.min() / sample_weight.max()
        if ratio > (1e-30 if dtype == np.float32 else 0.0):
            assert_allclose(got, expected, rtol=1e-6)
        else:
            # The dtype cannot hold the ratio: the lighter sample takes no part.
            assert_allclose(got, [[1.0], [1.0]])
        weights = attention(
            queries, keys, bandwidth=1.0, kernel=kernel, sample_weight=sample_weight
        )
        assert np.all(np.isfinite(weights))
        assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)


def _split_and_merge(queries, keys, values, labels, n_parts, **settings):
    sample_weight = settings.pop("sample_weight", None)
    key_widths = settings.pop("key_widths", None)
    partials = []
    for part in range(n_parts):
        rows = labels == part
        partials.append(
            partial_sums(
                queries,
                keys[rows],
                values[rows],
                sample_weight=None if sample_weight is None else sample_weight[rows],
                key_widths=None if key_widths is None else key_widths[rows],
                **settings,
            )
        )
    return merge_partial_sums(partials)


@given(
    problems(),
    st.integers(1, 4),
    st.integers(0, 2**32 - 1),
    st.sampled_from([np.float64, np.float32]),
)
def test_merged_partial_sums_equal_the_whole(problem, n_parts, seed, dtype):
    X, y, queries, bandwidth, kernel = problem
    assume_off_compact_edges(X, queries, bandwidth)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_parts, size=len(X))
    sample_weight = rng.choice([0.0, 1e-3, 0.5, 2.0, 1e3], size=len(X))
    assume(np.any(sample_weight > 0))
    X, queries = X.astype(dtype), queries.astype(dtype)
    values = np.column_stack([y, rng.normal(size=len(X))])
    settings = dict(bandwidth=bandwidth, kernel=kernel, sample_weight=sample_weight)
    whole = nadaraya_watson(queries, X, values, **settings)
    merged = _split_and_merge(queries, X, values, labels, n_parts, **settings)
    tolerance = 1e-10 if dtype == np.float64 else 1e-5
    assert_allclose(
        merged, whole, rtol=tolerance, atol=tolerance * np.abs(values).max()
    )


@pytest.mark.parametrize("kernel", ["gaussian", "exponential", "epanechnikov"])
def test_merged_partial_sums_with_local_widths(kernel):
    queries, keys, values, sample_weight = make_data(n_keys=90, n_queries=30)
    rng = np.random.default_rng(1)
    settings = dict(
        bandwidth=np.array([0.3, 0.6]),
        kernel=kernel,
        sample_weight=sample_weight,
        key_widths=rng.uniform(0.5, 2.0, size=len(keys)),
        query_widths=rng.uniform(0.5, 2.0, size=len(queries)),
    )
    labels = rng.integers(0, 3, size=len(keys))
    whole = nadaraya_watson(queries, keys, values, **settings)
    merged = _split_and_merge(queries, keys, values, labels, 3, **settings)
    assert_allclose(merged, whole, rtol=1e-10, atol=1e-12)
    assert_allclose(
        whole,
        nadaraya_watson_slow(
            queries,
            keys,
            values,
            settings["bandwidth"],
            kernel,
            sample_weight,
            key_widths=settings["key_widths"],
            query_widths=settings["query_widths"],
        ),
        rtol=1e-10,
        atol=1e-12,
    )


def test_merged_partial_sums_take_the_nearest_key_of_any_part():
    keys = np.array([[0.0], [5.0], [10.0], [-5.0]])
    values = np.array([[1.0], [2.0], [3.0], [4.0]])
    queries = np.array([[7.4], [7.5], [-20.0]])
    labels = np.array([0, 1, 1, 0])
    merged = _split_and_merge(
        queries, keys, values, labels, 2, bandwidth=1.0, kernel="tophat"
    )
    # 7.4 is nearest 5, 7.5 is as near 5 as 10 (ties averaged), -20 is nearest -5.
    assert_allclose(merged.ravel(), [2.0, 2.5, 4.0])


def test_partial_sums_of_an_empty_part_change_nothing():
    queries, keys, values, _ = make_data()
    settings = dict(bandwidth=0.5, kernel="gaussian")
    empty = partial_sums(queries, keys[:0], values[:0], **settings)
    zero_weight = partial_sums(
        queries, keys[:5], values[:5], sample_weight=np.zeros(5), **settings
    )
    full = partial_sums(queries, keys, values, **settings)
    assert_allclose(
        merge_partial_sums([empty, full, zero_weight]),
        nadaraya_watson(queries, keys, values, **settings),
        rtol=1e-14,
    )


@pytest.mark.parametrize("n_features", [1, 2])
@pytest.mark.parametrize("bandwidth", [1e-155, 1e-300])
@pytest.mark.parametrize("kernel", ["gaussian", "exponential"])
def test_merge_at_widths_beyond_float64_takes_the_nearest_keys(
    n_features, bandwidth, kernel
):
    keys = np.repeat(np.array([[0.0], [3.0], [8.0], [10.0], [12.0]]), n_features, 1)
    values = np.array([[0.0], [1.0], [2.0], [5.0], [3.0]])
    queries = np.repeat(np.array([[5.0], [9.0], [-1.0]]), n_features, 1)
    labels = np.array([0, 0, 1, 1, 1])
    settings = dict(bandwidth=bandwidth, kernel=kernel)
    whole = nadaraya_watson(queries, keys, values, **settings)
    merged = _split_and_merge(queries, keys, values, labels, 2, **settings)
    # 5 is nearest 3 (in the first part); 9 is as near 8 as 10 (both in the
    # second part, tied); -1 is nearest 0. The other keys' weights are
    # floored at e^-708 of the nearest's.
    expected = [[1.0], [3.5], [0.0]]
    assert_allclose(whole, expected, atol=1e-300)
    assert_allclose(merged, expected, atol=1e-300)


def test_merge_of_tied_keys_across_parts_at_a_tiny_width():
    keys = np.array([[1.0, 1.0, 1.0], [3.0, 3.0, 3.0], [40.0, -30.0, 7.0]])
    values = np.array([[1.0], [3.0], [9.0]])
    queries = np.array([[2.0, 2.0, 2.0]])
    labels = np.array([0, 1, 1])
    for bandwidth in (1e-6, 1e-7, 1e-200):
        settings = dict(bandwidth=bandwidth, kernel="gaussian")
        whole = nadaraya_watson(queries, keys, values, **settings)
        merged = _split_and_merge(queries, keys, values, labels, 2, **settings)
        assert_allclose(whole, [[2.0]])
        assert_allclose(merged, [[2.0]])


@pytest.mark.parametrize("bandwidth", [1e-3, 1e-5, 1e-7])
def test_float64_gaussian_accurate_when_the_width_is_tiny_beside_the_range(
    bandwidth,
):
    rng = np.random.default_rng(8)
    centre = np.array([50.0, -20.0, 70.0])
    keys = np.vstack(
        [
            rng.uniform(-100, 100, size=(50, 3)),
            centre + rng.normal(size=(100, 3)) * bandwidth,
        ]
    )
    values = rng.normal(size=(150, 2))
    queries = centre + rng.normal(size=(20, 3)) * bandwidth
    got = nadaraya_watson(queries, keys, values, bandwidth=bandwidth, kernel="gaussian")
    expected = nadaraya_watson_slow(queries, keys, values, bandwidth, "gaussian")
    assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


grid_or_finite = st.sampled_from(
    [finite_floats, st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 3.0])]
)


@given(
    st.data(),
    st.sampled_from(ALL_KERNELS),
    st.sampled_from([0.0005, 0.01, 1024]),
    st.sampled_from([np.float64, np.float32]),
)
def test_every_path_matches_the_reference_under_any_chunking(
    data, kernel, working_memory, dtype
):
    n_features = data.draw(st.integers(1, 3))
    elements = data.draw(grid_or_finite)
    keys = data.draw(
        arrays(
            np.float64, (data.draw(st.integers(1, 40)), n_features), elements=elements
        )
    )
    queries = data.draw(
        arrays(
            np.float64, (data.draw(st.integers(1, 30)), n_features), elements=elements
        )
    )
    values = data.draw(arrays(np.float64, (len(keys), 2), elements=finite_floats))
    bandwidth = data.draw(st.sampled_from([0.5, 1.0]) | st.floats(0.05, 20.0))
    u = np.linalg.norm(queries[:, None] - keys[None], axis=-1) / bandwidth
    # Within rounding of a compact kernel's edge either side is right;
    # exactly on it (the dyadic grid) every path agrees.
    assume(not np.any((np.abs(u - 1) < 1e-6) & (u != 1)))
    if dtype == np.float32:
        # Two keys at distances float32 cannot tell apart are equally the
        # nearest (the fallback of a query beyond a compact kernel's reach).
        gaps = np.abs(u[:, :, None] - u[:, None, :])
        assume(not np.any((gaps > 0) & (gaps < 1e-5 * (u[:, :, None] + 1e-30))))
    expected = nadaraya_watson_slow(queries, keys, values, bandwidth, kernel)
    with sklearn.config_context(working_memory=working_memory):
        got = nadaraya_watson(
            queries.astype(dtype),
            keys.astype(dtype),
            values,
            bandwidth=bandwidth,
            kernel=kernel,
        )
    scale = max(np.abs(values).max(), 1.0)
    tolerance = 1e-10 if dtype == np.float64 else 1e-4
    if dtype == np.float32:
        # float32 rounds the data itself: compare with the reference on it.
        expected = nadaraya_watson_slow(
            queries.astype(dtype), keys.astype(dtype), values, bandwidth, kernel
        )
    assert_allclose(got, expected, rtol=tolerance, atol=tolerance * scale)


def test_merge_prefers_a_finite_part_over_one_beyond_float64():
    keys = np.array([[1e-5, 0.0], [1e5, 0.0]])
    values = np.array([[1.0], [2.0]])
    queries = np.zeros((1, 2))
    settings = dict(bandwidth=1e-150, kernel="gaussian")
    merged = _split_and_merge(queries, keys, values, np.array([0, 1]), 2, **settings)
    assert_allclose(merged, [[1.0]])
    assert_allclose(nadaraya_watson(queries, keys, values, **settings), [[1.0]])


def test_many_light_samples_cannot_outweigh_the_nearest_through_the_floor():
    rng = np.random.default_rng(10)
    keys = np.vstack([[[0.0, 0.0]], rng.uniform(50, 60, size=(20000, 2))])
    values = np.r_[0.0, np.ones(20000)][:, None]
    sample_weight = np.r_[1e-29, np.ones(20000)]
    got = nadaraya_watson(
        np.zeros((1, 2), dtype=np.float32),
        keys.astype(np.float32),
        values,
        bandwidth=0.1,
        kernel="gaussian",
        sample_weight=sample_weight,
    )
    # The light sample's weight is below what n floored weights can hold in
    # float32: it takes no part, and the far samples decide.
    assert_allclose(got, [[1.0]])


def test_the_calling_thread_takes_items_beside_the_workers():
    # It does not idle while a worker wakes: the first two items wait for
    # each other, so each is taken by a thread of its own, the calling one
    # among them; a call made from an item runs inline, in that item's
    # thread, whatever it asks for.
    import threading

    from sknw._engine import for_each_in_threads

    both = threading.Barrier(2, timeout=30)
    threads, nested = {}, {}

    def inner(item):
        nested.setdefault(item[0], set()).add(threading.get_ident())

    def work(item):
        if item < 2:
            both.wait()
        threads[item] = threading.get_ident()
        for_each_in_threads(inner, [(item, 0), (item, 1), (item, 2)], 2)

    for_each_in_threads(work, list(range(6)), 2)
    assert sorted(threads) == list(range(6))
    assert threading.get_ident() in threads.values()
    assert len(set(threads.values())) == 2
    assert nested == {item: {thread} for item, thread in threads.items()}


def test_worker_threads_finish_every_item_before_an_error_is_raised():
    # The kept worker threads: an item's error is raised only once every
    # other item has finished, so none still writes to the caller's memory.
    import threading
    import time

    from sknw._engine import for_each_in_threads

    finished = []
    lock = threading.Lock()

    def work(item):
        if item == 0:
            raise ValueError("item 0")
        time.sleep(0.05)
        with lock:
            finished.append(item)

    with pytest.raises(ValueError, match="item 0"):
        for_each_in_threads(work, [0, 1, 2, 3], 2)
    assert sorted(finished) == [1, 2, 3]
    # The threads are kept, and serve the next call.
    results = []
    for_each_in_threads(results.append, list(range(6)), 2)
    assert sorted(results) == list(range(6))

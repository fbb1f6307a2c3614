"""The tree path against the dense path and the NumPy reference."""

import pickle

import numpy as np
import pytest
import sklearn
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose
from sklearn.model_selection import GridSearchCV

from sknw import NadarayaWatsonClassifier, NadarayaWatsonRegressor
from sknw._kernels import KERNELS

from ._reference import nadaraya_watson_slow

TREE_KERNELS = sorted(
    name
    for name, kernel in KERNELS.items()
    if kernel.compact and kernel.function.__name__ != "constant"
)
LOG_KERNELS = ["gaussian", "exponential"]


def make_data(n_samples=300, n_queries=80, n_features=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n_samples, n_features))
    X[1] = X[0]  # a duplicate
    y = np.column_stack([np.sin(3 * X[:, 0]), X[:, -1] ** 2])
    queries = rng.uniform(-1.2, 1.2, size=(n_queries, n_features))
    queries[-1] = 10.0  # out of every sample's reach
    sample_weight = rng.uniform(0.5, 2.0, size=n_samples)
    return X, y, queries, sample_weight


def fit_both(kernel, X, y, sample_weight=None, truncation=None, **params):
    dense = NadarayaWatsonRegressor(kernel=kernel, algorithm="dense", **params)
    tree = NadarayaWatsonRegressor(
        kernel=kernel, algorithm="tree", truncation=truncation, **params
    )
    return dense.fit(X, y, sample_weight), tree.fit(X, y, sample_weight)


@pytest.mark.parametrize("kernel", TREE_KERNELS)
@pytest.mark.parametrize("bandwidth", [0.15, np.array([0.1, 0.3])])
def test_compact_kernels_equal_the_dense_path(kernel, bandwidth):
    X, y, queries, sample_weight = make_data()
    sample_weight[:20] = 0.0
    dense, tree = fit_both(kernel, X, y, sample_weight, bandwidth=bandwidth)
    assert tree._fit_method == "tree"
    expected = nadaraya_watson_slow(queries, X, y, bandwidth, kernel, sample_weight)
    assert_allclose(tree.predict(queries), expected, rtol=1e-12, atol=1e-12)
    assert_allclose(tree.predict(queries), dense.predict(queries), rtol=1e-12)


@pytest.mark.parametrize("working_memory", [0.001, 0.05, 1024])
def test_chunks_do_not_change_the_tree_path(working_memory):
    X, y, queries, _ = make_data(n_samples=500, n_queries=200)
    _, tree = fit_both("epanechnikov", X, y, bandwidth=0.2)
    whole = tree.predict(queries)
    with sklearn.config_context(working_memory=working_memory):
        assert_allclose(tree.predict(queries), whole, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("adaptive", ["sample", "query"])
@pytest.mark.parametrize(
    "kernel", ["epanechnikov", "biweight", "gaussian", "exponential"]
)
def test_local_widths_on_the_tree_path(adaptive, kernel):
    # With adaptive="query" the k-th neighbour is exactly one width away,
    # where rounding decides whether the top-hat counts it; kernels that
    # vanish continuously at the edge give the same sums either way.
    X, y, queries, sample_weight = make_data(seed=1)
    truncation = 1e-14 if kernel in LOG_KERNELS else None
    dense, tree = fit_both(
        kernel,
        X,
        y,
        sample_weight,
        bandwidth=1.0,
        adaptive=adaptive,
        n_neighbors=8,
        truncation=truncation,
    )
    assert_allclose(tree.predict(queries), dense.predict(queries), rtol=1e-9, atol=1e-9)


def test_far_queries_take_the_nearest_samples_ties_averaged():
    X = np.array([[0.0], [5.0], [10.0], [10.0]])
    y = np.array([1.0, 2.0, 3.0, 5.0])
    queries = np.array([[7.5], [7.4], [-3.0], [20.0]])
    sample_weight = np.array([1.0, 1.0, 1.0, 3.0])
    dense, tree = fit_both("tophat", X, y, sample_weight, bandwidth=1.0)
    # 7.5 is as near 5 as the two samples at 10 (weights 1, 1, 3).
    expected = [(2.0 + 3.0 + 15.0) / 5.0, 2.0, 1.0, (3.0 + 15.0) / 4.0]
    assert_allclose(tree.predict(queries), expected, rtol=1e-15)
    assert_allclose(dense.predict(queries), expected, rtol=1e-15)


@pytest.mark.parametrize("kernel", TREE_KERNELS)
def test_samples_exactly_one_width_apart_get_no_weight(kernel):
    # Dyadic points: the distances are exact, so u is exactly 1.
    X = np.array([[0.0, 0.0], [0.5, 0.0], [0.0, -0.5], [0.25, 0.25]])
    y = np.array([1.0, 10.0, 100.0, 1000.0])
    queries = np.array([[0.0, 0.0], [0.5, 0.5]])
    dense, tree = fit_both(kernel, X, y, bandwidth=0.5)
    assert_allclose(tree.predict(queries), dense.predict(queries), rtol=1e-14)
    assert_allclose(
        tree.predict(queries),
        nadaraya_watson_slow(queries, X, y[:, None], 0.5, kernel).ravel(),
        rtol=1e-14,
    )


finite = st.floats(-10, 10, allow_nan=False, width=64)


@st.composite
def problems(draw):
    n_samples = draw(st.integers(1, 30))
    n_features = draw(st.integers(1, 3))
    # Few distinct values: duplicates and equal distances are common.
    grid = st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 3.0])
    elements = draw(st.sampled_from([finite, grid]))
    X = draw(arrays(np.float64, (n_samples, n_features), elements=elements))
    queries = draw(
        arrays(np.float64, (draw(st.integers(1, 8)), n_features), elements=elements)
    )
    y = draw(arrays(np.float64, n_samples, elements=finite))
    bandwidth = draw(st.sampled_from([0.5, 1.0, 2.0]) | st.floats(1e-2, 1e2))
    kernel = draw(st.sampled_from(TREE_KERNELS))
    return X, y, queries, bandwidth, kernel


@given(problems())
def test_tree_equals_dense_on_generated_data(problem):
    X, y, queries, bandwidth, kernel = problem
    u = np.linalg.norm(queries[:, None] - X[None], axis=-1) / bandwidth
    # Within rounding of the edge, either side is right; exactly on it (the
    # dyadic grid) both paths agree.
    assume(not np.any((np.abs(u - 1) < 1e-9) & (u != 1)))
    dense, tree = fit_both(kernel, X, y, bandwidth=bandwidth)
    assert_allclose(
        tree.predict(queries), dense.predict(queries), rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize("kernel", LOG_KERNELS)
@pytest.mark.parametrize("truncation", [1e-4, 1e-6, 1e-8])
@pytest.mark.parametrize("weighted", [False, True])
def test_truncation_stays_within_its_bound(kernel, truncation, weighted):
    X, y, queries, sample_weight = make_data(n_samples=400, seed=2)
    y = y[:, 0]
    if not weighted:
        sample_weight = np.ones(len(X))
    dense = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.1).fit(
        X, y, sample_weight
    )
    tree = NadarayaWatsonRegressor(
        kernel=kernel, bandwidth=0.1, algorithm="tree", truncation=truncation
    ).fit(X, y, sample_weight)
    error = np.abs(tree.predict(queries) - dense.predict(queries))
    bound = truncation * sample_weight.sum() / sample_weight.min() * np.ptp(y)
    assert bound < np.ptp(y)  # the bound says something
    assert np.all(error <= bound)
    # The truncation does drop weight.
    assert error.max() > 0


@pytest.mark.parametrize("kernel", LOG_KERNELS)
def test_negligible_truncation_equals_the_dense_path(kernel):
    X, y, queries, sample_weight = make_data(seed=3)
    dense, tree = fit_both(
        kernel, X, y, sample_weight, bandwidth=0.2, truncation=1e-300
    )
    assert_allclose(
        tree.predict(queries), dense.predict(queries), rtol=1e-12, atol=1e-13
    )


def test_classifier_on_the_tree_path():
    X, _, queries, sample_weight = make_data(seed=4)
    labels = np.where(X[:, 0] > X[:, 1], "above", "below")
    dense = NadarayaWatsonClassifier(
        kernel="triweight", bandwidth=0.3, algorithm="dense"
    )
    tree = NadarayaWatsonClassifier(kernel="triweight", bandwidth=0.3, algorithm="tree")
    dense.fit(X, labels, sample_weight)
    tree.fit(X, labels, sample_weight)
    assert_allclose(
        tree.predict_proba(queries),
        dense.predict_proba(queries),
        rtol=1e-12,
        atol=1e-14,
    )


def test_float32_stays_float32_on_the_tree_path():
    X, y, queries, _ = make_data()
    _, tree = fit_both("epanechnikov", X.astype(np.float32), y, bandwidth=0.2)
    got = tree.predict(queries.astype(np.float32))
    assert got.dtype == np.float32
    assert_allclose(
        got,
        nadaraya_watson_slow(
            queries.astype(np.float32), X.astype(np.float32), y, 0.2, "epanechnikov"
        ),
        rtol=1e-5,
    )


def test_auto_takes_the_tree_when_few_samples_are_in_reach():
    rng = np.random.default_rng(5)
    X = rng.uniform(size=(3000, 2))
    y = X[:, 0]
    narrow = NadarayaWatsonRegressor(kernel="epanechnikov", bandwidth=0.02).fit(X, y)
    wide = NadarayaWatsonRegressor(kernel="epanechnikov", bandwidth=0.5).fit(X, y)
    few = NadarayaWatsonRegressor(kernel="epanechnikov", bandwidth=0.02).fit(
        X[:500], y[:500]
    )
    gaussian = NadarayaWatsonRegressor(bandwidth=0.02).fit(X, y)
    truncated = NadarayaWatsonRegressor(bandwidth=0.02, truncation=1e-6).fit(X, y)
    assert narrow._fit_method == "tree"
    assert wide._fit_method == "dense"
    assert few._fit_method == "dense"
    assert gaussian._fit_method == "dense"
    assert truncated._fit_method == "tree"


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(kernel="gaussian", algorithm="tree"), "needs a truncation"),
        (dict(kernel="constant", algorithm="tree"), "needs a named kernel"),
        (dict(kernel=lambda u: np.exp(-u), algorithm="tree"), "needs a named kernel"),
        (dict(algorithm="dense", truncation=1e-6), "drops small weights"),
    ],
)
def test_algorithm_refuses_what_it_cannot_do(params, message):
    X, y, _, _ = make_data()
    with pytest.raises(ValueError, match=message):
        NadarayaWatsonRegressor(**params).fit(X, y[:, 0])


def test_tree_model_pickles_and_tunes():
    X, y, queries, _ = make_data()
    model = NadarayaWatsonRegressor(kernel="biweight", algorithm="tree")
    search = GridSearchCV(model, {"bandwidth": [0.1, 0.2, 0.4]}, cv=3).fit(X, y[:, 0])
    assert search.best_estimator_._fit_method == "tree"
    restored = pickle.loads(pickle.dumps(search.best_estimator_))
    assert_allclose(restored.predict(queries), search.predict(queries), rtol=1e-15)


def test_tiny_width_on_large_coordinates_equals_the_dense_path():
    X, y, queries, _ = make_data(seed=6)
    X, queries = X * 1e10, queries * 1e10
    for kernel, truncation in (("epanechnikov", None), ("gaussian", 1e-8)):
        dense, tree = fit_both(kernel, X, y, bandwidth=1e-300, truncation=truncation)
        got = tree.predict(queries)
        nearest = np.linalg.norm(queries[:, None] - X[None], axis=-1).argmin(axis=1)
        assert_allclose(got, dense.predict(queries), rtol=1e-12)
        # X[0] and X[1] are duplicates: their average is the nearest's value.
        expected = y[nearest]
        expected[nearest <= 1] = y[:2].mean(axis=0)
        assert_allclose(got, expected, rtol=1e-12)


def test_float32_sample_weight_floor_matches_the_dense_path():
    X = np.array([[0.0], [5.0], [10.0]], dtype=np.float32)
    y = np.array([1.0, 2.0, 3.0])
    sample_weight = np.array([1.0, 1.0, 1e-35])
    dense, tree = fit_both("epanechnikov", X, y, sample_weight, bandwidth=1.0)
    query = np.array([[20.0]], dtype=np.float32)
    # 1e-35 of the largest weight is below float32's floor: the sample at 10
    # takes no part, so the nearest is the one at 5.
    assert_allclose(tree.predict(query), [2.0])
    assert_allclose(dense.predict(query), [2.0])


def test_nearest_ties_agree_with_the_dense_path_in_many_features():
    rng = np.random.default_rng(9)
    query = rng.normal(size=(1, 12)) * 10
    offset = rng.normal(size=12)
    # Two keys mirrored about the query, both far beyond one width, and
    # others farther still.
    keys = np.vstack([query + offset, query - offset, query + 3 * offset])
    keys = np.vstack([keys, rng.normal(size=(40, 12)) * 100])
    y = rng.normal(size=len(keys))
    dense, tree = fit_both("epanechnikov", keys, y, bandwidth=0.1)
    assert_allclose(tree.predict(query), dense.predict(query), rtol=1e-15)


def test_truncated_tree_at_a_huge_width_equals_the_dense_path():
    X, y, queries, _ = make_data(seed=11)
    dense, tree = fit_both("gaussian", X, y, bandwidth=1e200, truncation=1e-12)
    assert_allclose(tree.predict(queries), dense.predict(queries), rtol=1e-12)


def _edge_keys(dtype, n_features, centre, seed):
    """A query, a key well inside its reach (value 0) and keys at u = centre
    (value 1), then the last key's first coordinate moved by one to four
    steps of ``dtype`` to either side: a fine scan across the edge, as the
    data round."""
    rng = np.random.default_rng(seed)
    width = rng.choice([0.7, 1.3, 0.1])
    direction = rng.normal(size=n_features)
    direction /= np.linalg.norm(direction)
    query = rng.uniform(-width, width, size=n_features).astype(dtype)
    inside = query + 0.25 * width * direction
    key = (query + centre * width * direction).astype(dtype)
    axis = int(np.argmax(np.abs(direction)))
    keys = []
    for step in range(-4, 5):
        moved = key.copy()
        for _ in range(abs(step)):
            moved[axis] = np.nextafter(moved[axis], dtype(np.sign(step) * np.inf))
        keys.append(np.vstack([inside, moved]).astype(dtype))
    return query[None, :], keys, np.array([[0.0], [1.0]]), float(width)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_features", [1, 3])
@pytest.mark.parametrize("widths", [None, "query", "sample"])
def test_tophat_edge_is_decided_alike_by_the_dense_and_tree_paths(
    dtype, n_features, widths
):
    from sknw._engine import merge_partial_sums, nadaraya_watson
    from sknw._neighbors import tree_partial_sums

    n_clear = 0
    centres = [1.0, 1.0 - 2.0**-21, 1.0 - 1e-4, 1.0 + 1e-4]
    for seed, centre in enumerate(centres * 2):
        query, all_keys, values, width = _edge_keys(dtype, n_features, centre, seed)
        for keys in all_keys:
            # The width given as the bandwidth, or as a local factor of a
            # unit bandwidth: u is rounded in another order each time.
            settings = dict(kernel="tophat", bandwidth=width)
            if widths == "query":
                settings.update(bandwidth=1.0, query_widths=np.array([width]))
            elif widths == "sample":
                settings.update(bandwidth=1.0, key_widths=np.full(2, width))
            dense = nadaraya_watson(query, keys, values, **settings)
            partial = tree_partial_sums(query, keys, values, **settings)
            tree = merge_partial_sums([partial])
            # 0 (the edge key left out) or 1/2 (counted), on both paths.
            assert dense[0, 0] in (0.0, 0.5)
            assert tree[0, 0] == dense[0, 0]
            # Where the exact u of the edge key is clearly inside or beyond
            # the top-hat's band [1 - 2^-21, 1], the reference agrees.
            exact_u = np.linalg.norm(keys[1].astype(float) - query[0]) / width
            margin = 1e-6 if dtype == np.float32 else 1e-14
            if 1 - 2.0**-21 - margin < exact_u < 1 + margin:
                continue
            n_clear += 1
            expected = nadaraya_watson_slow(query, keys, values, width, "tophat")
            assert_allclose(dense, expected, rtol=0, atol=1e-15)
    assert n_clear >= 36


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", ["linear", "epanechnikov"])
def test_keys_at_the_edge_weigh_alike_on_both_paths(dtype, kernel):
    # A key one or two steps of the dtype beyond u = 1 may still get a tiny
    # weight from the rounding of u: the tree gathers it as the dense path
    # weighs it, so the paths agree to the bit on which keys count.
    from sknw._engine import merge_partial_sums, nadaraya_watson
    from sknw._neighbors import tree_partial_sums

    n_counted = 0
    for seed in range(40):
        query, all_keys, values, width = _edge_keys(dtype, 3, 1.0, seed)
        for keys in all_keys:
            settings = dict(kernel=kernel, bandwidth=width)
            dense = nadaraya_watson(query, keys, values, **settings)
            partial = tree_partial_sums(query, keys, values, **settings)
            tree = merge_partial_sums([partial])
            assert (tree[0, 0] > 0) == (dense[0, 0] > 0)
            assert_allclose(tree, dense, rtol=1e-5, atol=0)
            exact_u = np.linalg.norm(keys[1].astype(float) - query[0]) / width
            n_counted += dense[0, 0] > 0 and exact_u > 1
    # In float32, some keys beyond the edge count, as the data round.
    assert n_counted > 0 or not (dtype == np.float32 and kernel == "epanechnikov")

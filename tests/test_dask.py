"""Tests of sknw.dask: predictions from a partitioned training set, and
fitted estimators applied to blocks of queries, on a local cluster."""

# Authors: the sknw developers
# License: BSD 3 clause

import ast
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import sknw  # noqa: E402
from sknw import (  # noqa: E402
    NadarayaWatsonClassifier,
    NadarayaWatsonClassifierCV,
    NadarayaWatsonRegressor,
    NadarayaWatsonRegressorCV,
)
from sknw.dask import predict_blockwise, predict_partitioned  # noqa: E402

from ._reference import nadaraya_watson_slow  # noqa: E402

# Uneven partitions; the third has all its sample weights zero.
ROW_CHUNKS = (37, 50, 13, 50)
ZERO_PARTITION = slice(87, 100)
DASK_PACKAGES = {"dask", "distributed", "dask_ml"}


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n_samples = sum(ROW_CHUNKS)
    X = rng.normal(size=(n_samples, 2))
    y = np.column_stack([np.sin(2 * X[:, 0]) + X[:, 1], X[:, 0] * X[:, 1]])
    sample_weight = rng.choice([0.0, 0.5, 1.0, 3.0], size=n_samples)
    sample_weight[ZERO_PARTITION] = 0.0
    # Queries near the data and far from it, in uneven blocks.
    queries = np.vstack([rng.normal(size=(40, 2)), rng.uniform(-8, 8, size=(25, 2))])
    return X, y, sample_weight, queries


def _dask(X, y, sample_weight, queries):
    return (
        da.from_array(X, chunks=(ROW_CHUNKS, 2)),
        da.from_array(y, chunks=(ROW_CHUNKS,) + y.shape[1:]),
        da.from_array(sample_weight, chunks=ROW_CHUNKS),
        da.from_array(queries, chunks=((30, 23, 12), 2)),
    )


def _assert_close(got, expected):
    scale = np.abs(expected).max()
    assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * scale)


@pytest.mark.parametrize(
    "kernel, bandwidth",
    [
        ("gaussian", 0.4),
        ("exponential", [0.3, 0.8]),
        ("gaussian", "scott"),
        ("epanechnikov", "silverman"),
        ("tophat", 0.3),
    ],
)
def test_regressor_equals_single_machine(client, data, kernel, bandwidth):
    X, y, sample_weight, queries = data
    estimator = NadarayaWatsonRegressor(kernel=kernel, bandwidth=bandwidth)
    X_train, y_train, weights, X_query = _dask(X, y, sample_weight, queries)
    # Pairs of partitions are combined first, then the pairs: a tree.
    with dask.config.set(split_every=2):
        y_pred = predict_partitioned(
            estimator, X_train, y_train, X_query, sample_weight=weights
        )
    assert isinstance(y_pred, da.Array)
    expected = estimator.fit(X, y, sample_weight).predict(queries)
    assert y_pred.shape == expected.shape == (len(queries), 2)
    _assert_close(y_pred.compute(), expected)


def test_compact_kernel_falls_back_to_the_nearest_sample_of_any_partition(client, data):
    X, y, sample_weight, queries = data
    X_train, y_train, weights, X_query = _dask(X, y, sample_weight, queries)
    estimator = NadarayaWatsonRegressor(kernel="tophat", bandwidth=0.3)
    used = X[sample_weight > 0]
    nearest = np.sqrt(((queries[:, None] - used[None]) ** 2).sum(-1)).min(axis=1)
    assert np.sum(nearest > 0.3) > 10, "queries with zero total weight"
    with dask.config.set(split_every=2):
        y_pred = predict_partitioned(
            estimator, X_train, y_train[:, 0], X_query, sample_weight=weights
        ).compute()
    expected = estimator.fit(X, y[:, 0], sample_weight).predict(queries)
    _assert_close(y_pred, expected)

    # Ties between partitions are averaged, as in one piece.
    keys = np.array([[0.0], [10.0], [5.0], [-5.0]])
    values = np.array([1.0, 3.0, 2.0, 4.0])
    y_pred = predict_partitioned(
        estimator.set_params(bandwidth=1.0),
        da.from_array(keys, chunks=((2, 2), 1)),
        da.from_array(values, chunks=2),
        np.array([[7.4], [7.5], [-20.0]]),
    )
    assert_allclose(y_pred.compute(), [2.0, 2.5, 4.0])


def test_one_dimensional_target_and_numpy_queries(client, data):
    X, y, sample_weight, queries = data
    X_train, y_train, _, _ = _dask(X, y, sample_weight, queries)
    estimator = NadarayaWatsonRegressor(bandwidth=0.5)
    y_pred = predict_partitioned(estimator, X_train, y_train[:, 1], queries)
    expected = estimator.fit(X, y[:, 1]).predict(queries)
    assert y_pred.shape == (len(queries),)
    _assert_close(y_pred.compute(), expected)


def test_float32_stays_float32(client, data):
    X, y, _, queries = data
    X, queries = X.astype(np.float32), queries.astype(np.float32)
    estimator = NadarayaWatsonRegressor(bandwidth=0.5)
    y_pred = predict_partitioned(
        estimator, da.from_array(X, chunks=(ROW_CHUNKS, 2)), y, queries
    )
    expected = estimator.fit(X, y).predict(queries)
    assert y_pred.dtype == expected.dtype == np.float32
    assert_allclose(y_pred.compute(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", ["gaussian", "biweight"])
def test_classifier_with_string_labels(client, data, kernel):
    X, y, sample_weight, queries = data
    labels = np.array(["cat", "dog", "emu"])[np.digitize(y[:, 0], [-0.5, 0.7])]
    X_train, _, weights, X_query = _dask(X, y, sample_weight, queries)
    y_train = da.from_array(labels.astype(object), chunks=ROW_CHUNKS)
    estimator = NadarayaWatsonClassifier(kernel=kernel, bandwidth="scott")
    estimator.fit(X, labels, sample_weight)
    proba = predict_partitioned(
        estimator, X_train, y_train, X_query, sample_weight=weights,
        method="predict_proba",
    )  # fmt: skip
    assert proba.shape == (len(queries), 3)
    _assert_close(proba.compute(), estimator.predict_proba(queries))
    predicted = predict_partitioned(
        estimator, X_train, y_train, X_query, sample_weight=weights
    ).compute()
    assert_array_equal(predicted, estimator.predict(queries))
    assert set(predicted) == {"cat", "dog", "emu"}


def test_dataframe_inputs(client, data):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, y, sample_weight, queries = data
    columns = ["a", "b"]
    frame = pd.DataFrame(X, columns=columns)
    labels = pd.Series(np.where(y[:, 1] > 0, "up", "down"))
    estimator = NadarayaWatsonClassifier(bandwidth=0.4)
    proba = predict_partitioned(
        estimator,
        dd.from_pandas(frame, npartitions=3),
        dd.from_pandas(labels, npartitions=3),
        dd.from_pandas(pd.DataFrame(queries, columns=columns), npartitions=2),
        method="predict_proba",
    )
    expected = estimator.fit(X, labels.to_numpy()).predict_proba(queries)
    _assert_close(proba.compute(), expected)


def test_predict_blockwise(client, data):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, y, _, queries = data
    X_query = _dask(X, y, y[:, 0], queries)[3]
    regressor = NadarayaWatsonRegressor(bandwidth=0.5).fit(X, y[:, 0])
    y_pred = predict_blockwise(regressor, X_query)
    assert y_pred.chunks == (X_query.chunks[0],)
    assert_allclose(y_pred.compute(), regressor.predict(queries), rtol=1e-12)

    columns = ["a", "b"]
    classifier = NadarayaWatsonClassifier(bandwidth=0.5)
    classifier.fit(pd.DataFrame(X, columns=columns), y[:, 1] > 0)
    frame = dd.from_pandas(pd.DataFrame(queries, columns=columns), npartitions=2)
    proba = predict_blockwise(classifier, frame, method="predict_proba").compute()
    expected = classifier.predict_proba(pd.DataFrame(queries, columns=columns))
    assert_allclose(proba, expected, rtol=1e-12)


def test_parallel_post_fit(client, data):
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X, y, _, queries = data
    X_query = _dask(X, y, y[:, 0], queries)[3]
    labels = y[:, 0] > 0
    model = wrappers.ParallelPostFit(NadarayaWatsonClassifier(bandwidth=0.5))
    model.fit(X, labels)
    fitted = NadarayaWatsonClassifier(bandwidth=0.5).fit(X, labels)
    proba = model.predict_proba(X_query)
    assert isinstance(proba, da.Array)
    assert_allclose(proba.compute(), fitted.predict_proba(queries), rtol=1e-12)
    assert_array_equal(model.predict(X_query).compute(), fitted.predict(queries))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"adaptive": "sample"}, "bandwidth=model.bandwidth_"),
        ({"bandwidth": [0.5, 0.5, 0.5]}, r"shape \(n_features,\) = \(2,\)"),
        ({"bandwidth": -1.0}, "bandwidth"),
        ({"kernel": "gaussain"}, "epanechnikov"),
    ],
)
def test_parameters_refused_before_any_work(data, params, message):
    X, y, _, queries = data
    estimator = NadarayaWatsonRegressor().set_params(**params)
    with pytest.raises(ValueError, match=message):
        predict_partitioned(estimator, X, y, queries)


@pytest.mark.parametrize(
    "estimator", [NadarayaWatsonRegressorCV(), NadarayaWatsonClassifierCV()]
)
def test_learning_estimators_refused_before_any_work(data, estimator):
    X, y, _, queries = data
    with pytest.raises(ValueError, match="bandwidth=model.bandwidth_"):
        predict_partitioned(estimator, X, y > 0, queries)


def test_inputs_refused(client, data):
    X, y, sample_weight, queries = data
    X_train, y_train, weights, X_query = _dask(X, y, sample_weight, queries)
    regressor = NadarayaWatsonRegressor()
    with pytest.raises(TypeError, match="NadarayaWatsonRegressor or a"):
        predict_partitioned(object(), X_train, y_train, X_query)
    with pytest.raises(ValueError, match="method must be one of"):
        predict_partitioned(regressor, X_train, y_train, X_query, method="proba")
    with pytest.raises(ValueError, match="Expected a 2D array for X_train"):
        predict_partitioned(regressor, X_train[:, 0], y_train, X_query)
    with pytest.raises(ValueError, match="X has 1 features, but X_train has 2"):
        predict_partitioned(regressor, X_train, y_train, X_query[:, :1])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        predict_partitioned(regressor, X_train, y_train[:-1], X_query)
    with pytest.raises(ValueError, match="shape \\(n_samples,\\) for a classifier"):
        predict_partitioned(NadarayaWatsonClassifier(), X_train, y_train, X_query)
    with pytest.raises(ValueError, match="Unknown label type"):
        predict_partitioned(NadarayaWatsonClassifier(), X_train, y_train[:, 0], X_query)

    bad = X.copy()
    bad[120, 1] = np.nan
    with pytest.raises(ValueError, match="Input X_train contains NaN"):
        predict_partitioned(regressor, da.from_array(bad, chunks=50), y, X_query)
    bad_queries = queries.copy()
    bad_queries[3, 0] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        predict_partitioned(regressor, X_train, y_train, bad_queries)
    with pytest.raises(ValueError, match="sample_weight must be >= 0"):
        predict_partitioned(
            regressor, X_train, y_train, X_query, sample_weight=weights - 1.0
        )
    with pytest.raises(ValueError, match="at least one positive value"):
        predict_partitioned(
            regressor, X_train, y_train, X_query, sample_weight=weights * 0.0
        )


def test_import_without_dask(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.delitem(sys.modules, "sknw.dask")
    with pytest.raises(ImportError, match='pip install "scikit-nw\\[dask\\]"'):
        importlib.import_module("sknw.dask")


def test_core_package_does_not_import_dask():
    package = Path(sknw.__file__).parent
    imported = set()
    for path in package.glob("*.py"):
        if path.name == "dask.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
    assert "sknw._engine" in imported
    assert not {name for name in imported if name.split(".")[0] in DASK_PACKAGES}


@pytest.mark.parametrize("scale", [1e-170, 1e-300])
@pytest.mark.parametrize("bandwidth", ["scott", "silverman", 0.5])
def test_tiny_coordinates_predict_as_in_memory(scale, bandwidth):
    # Squared distances of such coordinates underflow; fit scales them up by
    # a power of 2, and so does the partitioned prediction. The reference is
    # the dense NumPy computation on the coordinates times 1 / scale.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 2))
    y = np.sin(2 * X[:, 0])
    width = bandwidth if isinstance(bandwidth, str) else bandwidth * scale
    partitioned = predict_partitioned(
        NadarayaWatsonRegressor(bandwidth=width),
        da.from_array(X * scale, chunks=40),
        da.from_array(y, chunks=40),
        da.from_array(X[:7] * scale, chunks=4),
    ).compute()
    in_memory = NadarayaWatsonRegressor(bandwidth=width).fit(X * scale, y)
    assert_allclose(partitioned, in_memory.predict(X[:7] * scale), rtol=1e-12)
    expected = nadaraya_watson_slow(
        X[:7], X, y[:, None], np.asarray(in_memory.bandwidth_) / scale, "gaussian"
    )[:, 0]
    assert_allclose(partitioned, expected, rtol=1e-10)


def test_targets_near_the_largest_float_predict_as_in_memory():
    # Weighted sums of 400 targets of 1.5e308 overflow unless the targets
    # are divided by a power of 2 first (per output: the second output's
    # 1e-300 values must not underflow).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 1))
    y = np.column_stack([np.full(400, 1.5e308), rng.normal(size=400) * 1e-300])
    model = NadarayaWatsonRegressor(bandwidth=0.5)
    partitioned = predict_partitioned(
        model,
        da.from_array(X, chunks=100),
        da.from_array(y, chunks=(100, 2)),
        da.from_array(X[:5], chunks=5),
    ).compute()
    assert np.all(np.isfinite(partitioned))
    assert_allclose(partitioned, model.fit(X, y).predict(X[:5]), rtol=1e-12)
    expected = nadaraya_watson_slow(
        X[:5], X, y / [2.0**1023, 2.0**-996], 0.5, "gaussian"
    )
    assert_allclose(partitioned / [2.0**1023, 2.0**-996], expected, rtol=1e-12)

"""Tests of LocalLinearRegressor with sknw.dask: a partitioned training set."""

# Authors: the sknw developers
# License: BSD 3 clause

import numpy as np
import pytest
from numpy.testing import assert_allclose

da = pytest.importorskip("dask.array")

from sknw import LocalLinearRegressor, LocalLinearRegressorCV  # noqa: E402
from sknw.dask import predict_partitioned  # noqa: E402

# Uneven partitions; the third has all its sample weights zero.
ROW_CHUNKS = (37, 50, 13, 50)
ZERO_PARTITION = slice(87, 100)


def _data(n_outputs):
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(150, 2))
    y = np.sin(X).sum(axis=1)
    if n_outputs is not None:
        y = np.column_stack([y * (k + 1) - k for k in range(n_outputs)])
    sample_weight = rng.uniform(0.5, 2.0, size=150)
    sample_weight[ZERO_PARTITION] = 0.0
    # Inside, at the edges and beyond the data, and one query reached by no
    # sample under a compact kernel.
    queries = np.vstack([rng.uniform(-2.5, 2.5, size=(40, 2)), [[9.0, 9.0]]])
    return X, y, sample_weight, queries


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov"])
@pytest.mark.parametrize("n_outputs", [None, 2])
def test_partitioned_fits_and_slopes_equal_single_machine(kernel, n_outputs):
    X, y, sample_weight, queries = _data(n_outputs)
    reg = LocalLinearRegressor(kernel=kernel, bandwidth=[0.8, 1.1])
    X_train = da.from_array(X, chunks=(ROW_CHUNKS, 2))
    y_train = da.from_array(y, chunks=(ROW_CHUNKS,) + y.shape[1:])
    weights = da.from_array(sample_weight, chunks=(ROW_CHUNKS,))
    X_query = da.from_array(queries, chunks=(15, 2))

    fits = predict_partitioned(
        reg, X_train, y_train, X_query, sample_weight=weights
    ).compute()
    slopes = predict_partitioned(
        reg,
        X_train,
        y_train,
        X_query,
        sample_weight=weights,
        method="predict_gradient",
    ).compute()
    reg.fit(X, y, sample_weight=sample_weight)

    assert fits.shape == reg.predict(queries).shape
    assert slopes.shape == reg.predict_gradient(queries).shape
    assert_allclose(fits, reg.predict(queries), rtol=1e-10, atol=1e-10)
    assert_allclose(slopes, reg.predict_gradient(queries), rtol=1e-8, atol=1e-9)


def test_learning_estimator_refused():
    X, y, _, queries = _data(None)
    with pytest.raises(ValueError, match="bandwidth=model.bandwidth_"):
        predict_partitioned(LocalLinearRegressorCV(), X, y, queries)
    with pytest.raises(ValueError, match="method must be one of"):
        predict_partitioned(
            LocalLinearRegressor(), X, y, queries, method="predict_proba"
        )


@pytest.mark.parametrize("bandwidth", ["scott", 0.6])
def test_tiny_coordinates_fit_as_in_memory(bandwidth):
    # Squared distances of coordinates near 1e-170 underflow; fit computes
    # the weights on coordinates scaled up by a power of 2, and so does the
    # partitioned prediction, the slopes staying in the units of X (about
    # 1e170 here). The unscaled problem is the scale-free reference.
    scale = 1e-170
    X, y, sample_weight, queries = _data(None)
    width = bandwidth if isinstance(bandwidth, str) else bandwidth * scale
    reg = LocalLinearRegressor(bandwidth=width)
    X_train = da.from_array(X * scale, chunks=(ROW_CHUNKS, 2))
    y_train = da.from_array(y, chunks=(ROW_CHUNKS,))
    weights = da.from_array(sample_weight, chunks=(ROW_CHUNKS,))
    X_query = da.from_array(queries * scale, chunks=(15, 2))
    fits, slopes = (
        predict_partitioned(
            reg, X_train, y_train, X_query, sample_weight=weights, method=method
        ).compute()
        for method in ("predict", "predict_gradient")
    )
    reg.fit(X * scale, y, sample_weight=sample_weight)
    assert_allclose(fits, reg.predict(queries * scale), rtol=1e-10, atol=1e-10)
    slopes_in_memory = reg.predict_gradient(queries * scale)
    assert_allclose(slopes, slopes_in_memory, rtol=1e-8, atol=1e-9 / scale)
    unscaled = LocalLinearRegressor(bandwidth=np.asarray(reg.bandwidth_) / scale)
    unscaled.fit(X, y, sample_weight=sample_weight)
    assert_allclose(fits, unscaled.predict(queries), rtol=1e-9, atol=1e-9)
    assert_allclose(
        slopes * scale, unscaled.predict_gradient(queries), rtol=1e-7, atol=1e-8
    )
    assert np.abs(slopes * scale).max() > 0.1

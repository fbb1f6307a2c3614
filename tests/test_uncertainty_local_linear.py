"""Tests of the standard errors and jackknife+ intervals of local linear
regression."""

# Authors: the sknw developers
# License: BSD 3 clause

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn import config_context

from sknw import LocalLinearRegressor, LocalLinearRegressorCV
from sknw._kernels import KERNELS
from sknw._uncertainty import local_linear_leave_one_out_predictions
from tests._reference import attention_slow, d2l_toy

# The dense reference takes the log of zero sample weights.
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")


def _weighted_data(seed=0):
    """Two features; weights of 0, below 1, fractional above 1 and integer."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 3, size=(24, 2))
    y = np.sin(X).sum(axis=1) + 0.2 * rng.normal(size=24)
    weight = rng.integers(1, 4, size=24).astype(float)
    weight[:4] = [0.0, 0.4, 2.5, 1.0]
    return X, y, weight


def _queries(seed=1, far=False):
    """Queries among the data, the first training rows and, with ``far``,
    queries that a compact kernel does not reach."""
    rng = np.random.default_rng(seed)
    X, _, _ = _weighted_data()
    queries = [rng.uniform(0.5, 2.5, size=(6, 2)), X[:3]]
    if far:
        queries.append([[9.0, 9.0], [-6.0, 1.0]])
    return np.vstack(queries)


def _without_one(weight, i):
    reduced = weight.copy()
    reduced[i] -= min(reduced[i], 1.0)
    return reduced


def _refit(kernel, bandwidth, X, y, weight):
    return LocalLinearRegressor(kernel=kernel, bandwidth=bandwidth).fit(
        X, y, sample_weight=weight
    )


def _leave_one_out_residuals_slow(kernel, bandwidth, X, y, weight):
    """Residuals and sums of squared smoother weights over frequencies of
    the fits without one unit of each sample's weight, by refits."""
    residuals, squares = np.empty(len(X)), np.empty(len(X))
    for i in range(len(X)):
        reduced = _without_one(weight, i)
        refit = _refit(kernel, bandwidth, X, y, reduced)
        residuals[i] = y[i] - refit.predict(X[i : i + 1])[0]
        smoother = refit.attention_weights(X[i : i + 1])[0]
        used = reduced > 0
        squares[i] = np.sum(smoother[used] ** 2 / reduced[used])
    return residuals, squares


# --------------------------------------------------------------------------
# The leave-one-out fits against brute-force refits


def _cases():
    """Every kernel at a width that reaches several samples from every
    query; a few at a width that leaves some queries with too few samples
    for a line, or none (the local constant and nearest-sample fallbacks)."""
    for kernel in sorted(KERNELS):
        yield kernel, 1.0, KERNELS[kernel].compact
    for kernel in ("epanechnikov", "tricube", "boxcar"):
        yield kernel, 0.15, True
    yield "gaussian", 0.4, False


@pytest.mark.parametrize("kernel, bandwidth, compact", list(_cases()))
def test_leave_one_out_fits_equal_refits(kernel, bandwidth, compact):
    # Far queries only for the compact kernels, which fit them on the
    # nearest samples: the Gaussian's fit there extrapolates a line fitted
    # to a few dominant samples, whose rounding in the local normal
    # equations (of the refits as well) exceeds the tolerance.
    X, y, weight = _weighted_data()
    queries = _queries(far=compact)
    model = _refit(kernel, bandwidth, X, y, weight)
    queries_engine, settings = model._engine_settings(queries)
    predictions = local_linear_leave_one_out_predictions(
        queries_engine,
        model._fit_X,
        model._fit_moments,
        **model._frame_arguments(queries),
        **settings,
    )
    predictions = predictions[:, :, 0] * model._moment_frame.y_scale[0]
    for i in range(len(X)):
        refit = _refit(kernel, bandwidth, X, y, _without_one(weight, i))
        assert_allclose(
            predictions[:, i], refit.predict(queries), rtol=1e-10, atol=1e-10
        )
    residuals, _ = _leave_one_out_residuals_slow(kernel, bandwidth, X, y, weight)
    ours = model._leave_one_out_terms()["residuals"][:, 0]
    assert_allclose(
        ours * model._moment_frame.y_scale[0], np.abs(residuals), atol=1e-10
    )


def test_leave_one_out_fits_of_a_dominant_sample():
    # At a width far below the spacing, each training row's own weight
    # dwarfs the others': its leave-one-out fit sums the others apart.
    X, y, weight = _weighted_data()
    model = _refit("gaussian", 0.05, X, y, weight)
    residuals, _ = _leave_one_out_residuals_slow("gaussian", 0.05, X, y, weight)
    ours = model._leave_one_out_terms()["residuals"][:, 0]
    assert_allclose(ours * model._moment_frame.y_scale[0], np.abs(residuals), atol=1e-9)
    queries = X[4:10] + 1e-3
    queries_engine, settings = model._engine_settings(queries)
    predictions = local_linear_leave_one_out_predictions(
        queries_engine,
        model._fit_X,
        model._fit_moments,
        **model._frame_arguments(queries),
        **settings,
    )[:, :, 0]
    for i in range(4, 10):
        refit = _refit("gaussian", 0.05, X, y, _without_one(weight, i))
        assert_allclose(
            predictions[:, i] * model._moment_frame.y_scale[0],
            refit.predict(queries),
            atol=1e-9,
        )


# --------------------------------------------------------------------------
# Standard errors


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov", "tricube"])
def test_standard_errors_match_their_formula(kernel):
    X, y, weight = _weighted_data()
    queries = _queries()
    # Wide enough that every left-out fit has four samples or more: with
    # three in two dimensions, the smoother weights of the reference,
    # attention_weights, sum to 1 only to about 1e-8.
    bandwidth = 1.5
    model = _refit(kernel, bandwidth, X, y, weight)
    residuals, squares = _leave_one_out_residuals_slow(kernel, bandwidth, X, y, weight)
    factor = 1 + squares
    constant = np.sum(weight * residuals**2) / np.sum(weight * factor)
    # The local noise level is the Nadaraya-Watson smooth of the scaled
    # squared residuals.
    local = attention_slow(X, X, bandwidth, kernel, weight) @ (residuals**2 / factor)
    used = weight > 0
    smoother = model.attention_weights(queries)[:, used]
    weighted_squares = smoother**2 / weight[used]
    _, std = model.predict(queries, return_std=True, noise="constant")
    assert_allclose(std, np.sqrt(constant * weighted_squares.sum(axis=1)), rtol=1e-9)
    _, std = model.predict(queries, return_std=True, noise="local")
    assert_allclose(std, np.sqrt(weighted_squares @ local[used]), rtol=1e-9)


def test_huge_bandwidth_gives_the_least_squares_line():
    # At a huge width the fit is the ordinary least-squares line, whose
    # standard error at x is sigma sqrt(1/n + (x - mean)^2 / Sxx).
    X, y = d2l_toy(30)
    model = LocalLinearRegressor(bandwidth=1e6).fit(X, y)
    point = np.array([[4.0]])
    _, std = model.predict(point, return_std=True, noise="constant")
    x = X[:, 0]
    centred = x - x.mean()
    leverage = 1 / len(x) + centred**2 / np.sum(centred**2)
    slope, intercept = np.polyfit(x, y, 1)
    # Leave-one-out residuals of least squares: e_i / (1 - h_ii).
    residuals = (y - intercept - slope * x) / (1 - leverage)
    # Each divided by 1 + the sum of squared weights of its own left-out
    # fit, h_ii / (1 - h_ii): the unbiased residual variance.
    variance = np.mean(residuals**2) / np.mean(1 / (1 - leverage))
    expected = np.sqrt(
        variance * (1 / len(x) + (4.0 - x.mean()) ** 2 / np.sum(centred**2))
    )
    assert_allclose(std, [expected], rtol=1e-6)


# --------------------------------------------------------------------------
# Jackknife+


def _jackknife_plus_slow(queries, kernel, bandwidth, X, y, weight, alpha):
    """Jackknife+ from brute-force refits and weighted quantiles."""
    residuals, _ = _leave_one_out_residuals_slow(kernel, bandwidth, X, y, weight)
    residuals = np.abs(residuals)
    leave_out = np.column_stack(
        [
            _refit(kernel, bandwidth, X, y, _without_one(weight, i)).predict(queries)
            for i in range(len(X))
        ]
    )
    rank = (1 - alpha) * (weight.sum() + 1)

    def upper(values):
        order = np.argsort(values)
        cumulative = np.cumsum(weight[order])
        return values[order][np.argmax(cumulative >= rank - 1e-9)]

    bounds = [[-upper(-(row - residuals)), upper(row + residuals)] for row in leave_out]
    return np.array(bounds)


@pytest.mark.parametrize("weights", ["fractional", "integer"])
@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov"])
def test_jackknife_plus_matches_its_definition(kernel, weights):
    X, y, weight = _weighted_data()
    if weights == "integer":
        weight = np.round(weight)
    queries = _queries()
    model = _refit(kernel, 1.0, X, y, weight)
    expected = _jackknife_plus_slow(queries, kernel, 1.0, X, y, weight, 0.2)
    assert_allclose(model.predict_interval(queries, alpha=0.2), expected, atol=1e-10)


# --------------------------------------------------------------------------
# Shapes, weights, chunks, configurations


def test_predictions_dtypes_and_chunks():
    X, y = d2l_toy(60)
    queries = np.linspace(0, 5, 25)[:, None]
    model = LocalLinearRegressor(bandwidth=0.5).fit(X, y)
    predictions, std = model.predict(queries, return_std=True)
    assert predictions.shape == std.shape == (25,)
    assert_allclose(predictions, model.predict(queries), rtol=1e-13)
    assert np.all(std > 0)
    intervals = model.predict_interval(queries)
    assert intervals.shape == (25, 2)
    assert np.all(intervals[:, 0] < predictions) and np.all(
        predictions < intervals[:, 1]
    )
    with config_context(working_memory=0.001):
        small = LocalLinearRegressor(bandwidth=0.5).fit(X, y)
        assert_allclose(small.predict(queries, return_std=True)[1], std, rtol=1e-12)
        assert_allclose(small.predict_interval(queries), intervals, rtol=1e-12)
    single = LocalLinearRegressor(bandwidth=0.5).fit(X.astype(np.float32), y)
    single_std = single.predict(queries.astype(np.float32), return_std=True)[1]
    single_intervals = single.predict_interval(queries.astype(np.float32))
    assert single_std.dtype == single_intervals.dtype == np.float32
    assert_allclose(single_std, std, rtol=1e-5)


def test_cv_estimator_offers_the_same_and_refit_forgets():
    X, y = d2l_toy(40)
    queries = np.linspace(0, 5, 7)[:, None]
    cv = LocalLinearRegressorCV().fit(X, y)
    plain = LocalLinearRegressor(bandwidth=cv.bandwidth_).fit(X, y)
    assert_allclose(
        cv.predict(queries, return_std=True), plain.predict(queries, return_std=True)
    )
    assert_allclose(cv.predict_interval(queries), plain.predict_interval(queries))
    plain.fit(X, 3 * y)
    fresh = LocalLinearRegressor(bandwidth=cv.bandwidth_).fit(X, 3 * y)
    assert_allclose(
        plain.predict(queries, return_std=True)[1],
        fresh.predict(queries, return_std=True)[1],
    )


def test_bad_input_is_refused():
    X, y = d2l_toy(9)
    model = LocalLinearRegressor().fit(X, y)
    with pytest.raises(ValueError, match="noise must be one of"):
        model.predict(X, return_std=True, noise="white")
    with pytest.raises(ValueError, match="alpha must be a float in"):
        model.predict_interval(X, alpha=1.5)
    with pytest.raises(ValueError, match=r"alpha >= 1 / \(n \+ 1\) = 0.1"):
        model.predict_interval(X, alpha=0.09)
    lonely = LocalLinearRegressor().fit([[0.0], [1.0]], [1.0, 2.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="total weight above 1"):
        lonely.predict([[0.5]], return_std=True)


def test_tree_path_and_local_widths():
    X, y = d2l_toy(400, noise=0.3)
    queries = np.linspace(0, 5, 15)[:, None]
    tree = LocalLinearRegressor(kernel="epanechnikov", bandwidth=0.3, algorithm="tree")
    dense = LocalLinearRegressor(kernel="epanechnikov", bandwidth=0.3)
    tree.fit(X, y)
    dense.set_params(algorithm="dense").fit(X, y)
    assert tree._fit_method == "tree"
    assert_allclose(
        tree.predict(queries, return_std=True),
        dense.predict(queries, return_std=True),
        rtol=1e-9,
    )
    assert_allclose(tree.predict_interval(queries), dense.predict_interval(queries))
    for adaptive in ("sample", "query"):
        model = LocalLinearRegressor(bandwidth=0.5, adaptive=adaptive, n_neighbors=5)
        predictions, std = model.fit(X, y).predict(queries, return_std=True)
        intervals = model.predict_interval(queries)
        assert np.all(np.isfinite(std)) and np.all(std > 0)
        assert np.all(intervals[:, 0] < predictions)
        assert np.all(predictions < intervals[:, 1])

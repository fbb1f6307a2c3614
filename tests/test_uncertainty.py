"""Tests of standard errors and jackknife+ prediction intervals."""

# Authors: the sknw developers
# License: BSD 3 clause

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn import config_context
from sklearn.model_selection import LeaveOneOut
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sknw import (
    LocalLinearRegressor,
    LocalLinearRegressorCV,
    NadarayaWatsonRegressor,
    NadarayaWatsonRegressorCV,
)
from sknw._kernels import KERNELS
from sknw._uncertainty import leave_one_out_predictions
from tests._reference import (
    attention_slow,
    d2l_toy,
    d2l_truth,
    loo_predictions_slow,
)

# The dense reference takes the log of zero sample weights.
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")


def _weighted_data(seed=0):
    """Two features; weights of 0, below 1, fractional above 1 and integer."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 3, size=(18, 2))
    y = np.sin(X).sum(axis=1) + 0.2 * rng.normal(size=18)
    weight = rng.integers(1, 4, size=18).astype(float)
    weight[:4] = [0.0, 0.4, 2.5, 1.0]
    return X, y, weight


def _queries(seed=1):
    """Queries among the data, and far from it (a compact kernel's fallback)."""
    rng = np.random.default_rng(seed)
    return np.vstack([rng.uniform(0, 3, size=(8, 2)), [[9.0, 9.0], [-6.0, 1.0]]])


def _loo_variance_slow(X, bandwidth, kernel, weight):
    """Each row's leave-one-out sum of squared normalised weights over
    frequencies, from the dense reference."""
    n_samples = len(X)
    sums = np.empty(n_samples)
    for i in range(n_samples):
        reduced = weight.copy()
        reduced[i] -= min(reduced[i], 1.0)
        attention = attention_slow(X[i : i + 1], X, bandwidth, kernel, reduced)[0]
        used = reduced > 0
        sums[i] = np.sum(attention[used] ** 2 / reduced[used])
    return sums


# --------------------------------------------------------------------------
# The leave-one-out predictions against brute-force refits


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("bandwidth", [0.6, 0.04, 0.003])
def test_leave_one_out_predictions_equal_refits(kernel, bandwidth):
    X, y, weight = _weighted_data()
    queries = np.vstack([_queries(), X[:3]])
    model = NadarayaWatsonRegressor(kernel=kernel, bandwidth=bandwidth)
    model.fit(X, y, sample_weight=weight)
    _, settings = model._engine_settings(queries)
    predictions = leave_one_out_predictions(queries, X, y[:, None], **settings)
    for i in range(len(X)):
        reduced = weight.copy()
        reduced[i] -= min(reduced[i], 1.0)
        refit = attention_slow(queries, X, bandwidth, kernel, reduced) @ y
        assert_allclose(predictions[:, i, 0], refit, rtol=0, atol=1e-12)
    # The training samples' own leave-one-out predictions.
    # Kept in the units of the stored values, y divided by a power of 2.
    residuals = model._leave_one_out_terms()["residuals"][:, 0] * model._value_scale[0]
    expected = loo_predictions_slow(X, y[:, None], bandwidth, kernel, weight)[:, 0]
    assert_allclose(residuals, np.abs(y - expected), rtol=0, atol=1e-12)


@pytest.mark.parametrize("adaptive", ["sample", "query"])
@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov"])
def test_leave_one_out_predictions_hold_local_widths_fixed(adaptive, kernel):
    X, y, weight = _weighted_data()
    queries = np.vstack([_queries(), X[:3]])
    model = NadarayaWatsonRegressor(
        kernel=kernel, bandwidth=0.3, adaptive=adaptive, n_neighbors=3
    )
    model.fit(X, y, sample_weight=weight)
    _, settings = model._engine_settings(queries)
    predictions = leave_one_out_predictions(queries, X, y[:, None], **settings)
    widths = dict(
        key_widths=settings["key_widths"], query_widths=settings["query_widths"]
    )
    for i in range(len(X)):
        reduced = weight.copy()
        reduced[i] -= min(reduced[i], 1.0)
        refit = attention_slow(queries, X, 0.3, kernel, reduced, **widths) @ y
        assert_allclose(predictions[:, i, 0], refit, rtol=0, atol=1e-12)
    _, training = model._engine_settings(X)
    expected = loo_predictions_slow(
        X,
        y[:, None],
        0.3,
        kernel,
        weight,
        key_widths=training["key_widths"],
        query_widths=training["query_widths"],
    )[:, 0]
    # Kept in the units of the stored values, y divided by a power of 2.
    residuals = model._leave_one_out_terms()["residuals"][:, 0] * model._value_scale[0]
    assert_allclose(residuals, np.abs(y - expected), rtol=0, atol=1e-12)
    _, std = model.predict(queries, return_std=True)
    assert np.all(np.isfinite(std)) and np.all(std >= 0)


def test_leave_one_out_predictions_of_a_callable_kernel():
    X, y, weight = _weighted_data()
    queries = _queries()

    def kernel(u):
        return 1.0 / (1.0 + u**2)

    model = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.5)
    model.fit(X, y, sample_weight=weight)
    predictions = leave_one_out_predictions(
        queries, X, y[:, None], **model._engine_settings(queries)[1]
    )
    for i in range(len(X)):
        reduced = weight.copy()
        reduced[i] -= min(reduced[i], 1.0)
        refit = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.5)
        refit.fit(X, y, sample_weight=reduced)
        assert_allclose(predictions[:, i, 0], refit.predict(queries), atol=1e-12)


# --------------------------------------------------------------------------
# Standard errors


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov", "tricube"])
def test_standard_errors_match_their_formula(kernel):
    X, y, weight = _weighted_data()
    queries = _queries()[:8]
    bandwidth = 0.8
    model = NadarayaWatsonRegressor(kernel=kernel, bandwidth=bandwidth)
    model.fit(X, y, sample_weight=weight)
    used = weight > 0
    loo = loo_predictions_slow(X, y[:, None], bandwidth, kernel, weight)[:, 0]
    factor = 1 + _loo_variance_slow(X, bandwidth, kernel, weight)
    constant = np.sum(weight * (y - loo) ** 2) / np.sum(weight * factor)
    local = attention_slow(X, X, bandwidth, kernel, weight) @ ((y - loo) ** 2 / factor)
    attention = attention_slow(queries, X, bandwidth, kernel, weight)[:, used]
    squares = attention**2 / weight[used]
    _, std = model.predict(queries, return_std=True, noise="constant")
    assert_allclose(std, np.sqrt(constant * squares.sum(axis=1)), rtol=1e-10)
    _, std = model.predict(queries, return_std=True, noise="local")
    assert_allclose(std, np.sqrt(squares @ local[used]), rtol=1e-10)


@pytest.mark.parametrize("design", ["homoscedastic", "heteroscedastic"])
@pytest.mark.parametrize(
    "estimator, bandwidth, low, high",
    [
        (NadarayaWatsonRegressor, 0.3, 1, 4),
        # The local linear points include the edges, where its fit is
        # unbiased to first order and its variance largest.
        (LocalLinearRegressor, 0.4, 0.5, 4.5),
    ],
)
def test_standard_errors_match_the_monte_carlo_spread(
    design, estimator, bandwidth, low, high
):
    # 400 replicates of the noise at one fixed design, as 400 outputs: the
    # spread of the predictions over them is the true standard error.
    rng = np.random.default_rng(0)
    n_samples, n_replicates = 100, 400
    X = np.sort(rng.uniform(0, 5, n_samples))[:, None]
    sigma = np.full(n_samples, 0.5)
    if design == "heteroscedastic":
        sigma = 0.1 + 0.3 * X[:, 0]
    Y = d2l_truth(X) + sigma[:, None] * rng.normal(size=(n_samples, n_replicates))
    points = np.linspace(low, high, 13)[:, None]
    model = estimator(bandwidth=bandwidth).fit(X, Y)
    ratios = {}
    for noise in ("local", "constant"):
        predictions, std = model.predict(points, return_std=True, noise=noise)
        spread = predictions.std(axis=1, ddof=1)
        ratios[noise] = np.median(std, axis=1) / spread
    assert 0.9 <= np.median(ratios["local"]) <= 1.1
    assert np.all((ratios["local"] > 0.85) & (ratios["local"] < 1.15))
    if design == "homoscedastic":
        assert 0.9 <= np.median(ratios["constant"]) <= 1.1
        assert np.all((ratios["constant"] > 0.85) & (ratios["constant"] < 1.15))
    else:
        # One noise level for all overstates it where the noise is small.
        assert ratios["constant"][0] > 2


def test_huge_bandwidth_gives_the_standard_error_of_the_mean():
    X, y = d2l_toy(30)
    model = NadarayaWatsonRegressor(bandwidth=1e9).fit(X, y)
    prediction, std = model.predict([[2.5]], return_std=True, noise="constant")
    # Leave-one-out residuals of the mean are (n / (n - 1)) (y_i - mean).
    n_samples = len(y)
    residuals = (y - y.mean()) * n_samples / (n_samples - 1)
    variance = np.mean(residuals**2) / (1 + 1 / (n_samples - 1))
    assert_allclose(prediction, [y.mean()])
    assert_allclose(std, [np.sqrt(variance / n_samples)], rtol=1e-9)
    assert_allclose(variance, y.var(ddof=1), rtol=1e-9)


# --------------------------------------------------------------------------
# Jackknife+


def _jackknife_plus_slow(queries, X, y, bandwidth, kernel, weight, alpha):
    """Jackknife+ from brute-force refits and weighted quantiles."""
    loo = loo_predictions_slow(X, y[:, None], bandwidth, kernel, weight)[:, 0]
    residuals = np.abs(y - loo)
    leave_out = np.empty((len(queries), len(X)))
    for i in range(len(X)):
        reduced = weight.copy()
        reduced[i] -= min(reduced[i], 1.0)
        leave_out[:, i] = attention_slow(queries, X, bandwidth, kernel, reduced) @ y
    rank = (1 - alpha) * (weight.sum() + 1)

    def upper(values):
        order = np.argsort(values)
        cumulative = np.cumsum(weight[order])
        return values[order][np.argmax(cumulative >= rank - 1e-9)]

    bounds = [[-upper(-(row - residuals)), upper(row + residuals)] for row in leave_out]
    return np.array(bounds)


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov", "exponential"])
def test_jackknife_plus_with_weights_matches_its_definition(kernel):
    X, y, weight = _weighted_data()
    queries = _queries()
    model = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.5)
    model.fit(X, y, sample_weight=weight)
    expected = _jackknife_plus_slow(queries, X, y, 0.5, kernel, weight, 0.2)
    assert_allclose(model.predict_interval(queries, alpha=0.2), expected, atol=1e-12)


@pytest.mark.parametrize("scale", [1, 20])
def test_jackknife_plus_with_integer_weights_matches_its_definition(scale):
    # Integer weights select among repeated samples; their sum far above
    # the number of samples (scale 20) sorts with cumulative weights instead.
    X, y, weight = _weighted_data()
    weight = np.round(weight) * scale
    queries = _queries()
    model = NadarayaWatsonRegressor(bandwidth=0.5).fit(X, y, sample_weight=weight)
    expected = _jackknife_plus_slow(queries, X, y, 0.5, "gaussian", weight, 0.2)
    assert_allclose(model.predict_interval(queries, alpha=0.2), expected, atol=1e-12)


@pytest.mark.parametrize(
    "estimator, bandwidth, atol",
    [(NadarayaWatsonRegressor, 0.5, 1e-12), (LocalLinearRegressor, 0.6, 1e-10)],
)
def test_jackknife_plus_matches_mapie(estimator, bandwidth, atol):
    from mapie.regression import CrossConformalRegressor

    X, y = d2l_toy(30)
    queries = np.linspace(0, 5, 11)[:, None]
    model = estimator(bandwidth=bandwidth)
    mapie = CrossConformalRegressor(
        model, confidence_level=0.9, method="plus", cv=LeaveOneOut()
    )
    _, intervals = mapie.fit_conformalize(X, y).predict_interval(queries)
    ours = model.fit(X, y).predict_interval(queries, alpha=0.1)
    assert_allclose(ours, intervals[:, :, 0], atol=atol)


@pytest.mark.parametrize(
    "estimator, bandwidth, design",
    [
        (NadarayaWatsonRegressor, 0.3, "homoscedastic"),
        (NadarayaWatsonRegressor, 0.3, "heteroscedastic"),
        (LocalLinearRegressor, 0.4, "homoscedastic"),
    ],
)
def test_jackknife_plus_covers_new_observations(estimator, bandwidth, design):
    # 200 replicates of training and new noise, as outputs.
    rng = np.random.default_rng(1)
    n_samples, n_new, n_replicates = 60, 100, 200
    X = np.sort(rng.uniform(0, 5, n_samples))[:, None]
    X_new = rng.uniform(0, 5, n_new)[:, None]

    def draw(x, size):
        sigma = 0.5 if design == "homoscedastic" else 0.1 + 0.3 * x
        return d2l_truth(x) + sigma * rng.normal(size=size)

    Y = draw(X, (n_samples, n_replicates))
    Y_new = draw(X_new, (n_new, n_replicates))
    intervals = estimator(bandwidth=bandwidth).fit(X, Y).predict_interval(X_new)
    inside = (Y_new >= intervals[..., 0]) & (Y_new <= intervals[..., 1])
    coverage = inside.mean()
    assert coverage >= 0.8
    assert abs(coverage - 0.9) < 0.03


# --------------------------------------------------------------------------
# Shapes, weights, chunks, configurations


@pytest.mark.parametrize(
    "estimator, bandwidth, rtol, atol",
    [
        (NadarayaWatsonRegressor, 0.4, 1e-10, 1e-12),
        (LocalLinearRegressor, 0.6, 1e-9, 1e-10),
    ],
)
def test_integer_weights_equal_repeated_rows(estimator, bandwidth, rtol, atol):
    X, y = d2l_toy(20)
    weight = np.tile([1.0, 2.0, 3.0, 1.0], 5)
    repeat = weight.astype(int)
    queries = np.linspace(0, 5, 9)[:, None]
    weighted = estimator(bandwidth=bandwidth).fit(X, y, sample_weight=weight)
    repeated = estimator(bandwidth=bandwidth)
    repeated.fit(np.repeat(X, repeat, axis=0), np.repeat(y, repeat))
    for noise in ("local", "constant"):
        assert_allclose(
            weighted.predict(queries, return_std=True, noise=noise),
            repeated.predict(queries, return_std=True, noise=noise),
            rtol=rtol,
        )
    assert_allclose(
        weighted.predict_interval(queries, alpha=0.1),
        repeated.predict_interval(queries, alpha=0.1),
        atol=atol,
    )


@pytest.mark.parametrize(
    "estimator, bandwidth, std_rtol, interval_rtol",
    [
        (NadarayaWatsonRegressor, 0.5, 1e-12, 1e-7),
        (LocalLinearRegressor, 0.6, 1e-10, 1e-10),
    ],
)
def test_multi_output_equals_single_output_fits(
    estimator, bandwidth, std_rtol, interval_rtol
):
    X, y = d2l_toy(30)
    Y = np.column_stack([y, 3 * y**2, -y])
    queries = np.linspace(0, 5, 7)[:, None]
    model = estimator(bandwidth=bandwidth).fit(X, Y)
    predictions, std = model.predict(queries, return_std=True)
    intervals = model.predict_interval(queries, alpha=0.2)
    assert std.shape == (7, 3) and intervals.shape == (7, 3, 2)
    for output in range(3):
        single = estimator(bandwidth=bandwidth).fit(X, Y[:, output])
        expected = single.predict(queries, return_std=True)
        assert_allclose(predictions[:, output], expected[0], rtol=1e-12)
        assert_allclose(std[:, output], expected[1], rtol=std_rtol)
        assert_allclose(
            intervals[:, output],
            single.predict_interval(queries, alpha=0.2),
            rtol=interval_rtol,
        )


def test_predictions_and_shapes_follow_predict():
    X, y = d2l_toy(30)
    queries = np.linspace(0, 5, 7)[:, None]
    model = NadarayaWatsonRegressor(bandwidth=0.5).fit(X, y)
    predictions, std = model.predict(queries, return_std=True)
    assert predictions.shape == std.shape == (7,)
    assert_allclose(predictions, model.predict(queries), rtol=1e-13)
    assert np.all(std > 0)
    assert model.predict_interval(queries).shape == (7, 2)
    column = NadarayaWatsonRegressor(bandwidth=0.5).fit(X, y[:, None])
    assert column.predict(queries, return_std=True)[1].shape == (7, 1)
    assert column.predict_interval(queries).shape == (7, 1, 2)


def test_float32_gives_float32():
    X, y = d2l_toy(30)
    X, y = X.astype(np.float32), y.astype(np.float32)
    model = NadarayaWatsonRegressor(bandwidth=0.5).fit(X, y)
    predictions, std = model.predict(X[:5], return_std=True)
    assert predictions.dtype == std.dtype == np.float32
    assert model.predict_interval(X[:5]).dtype == np.float32
    reference = NadarayaWatsonRegressor(bandwidth=0.5).fit(
        X.astype(np.float64), y.astype(np.float64)
    )
    assert_allclose(std, reference.predict(X[:5], return_std=True)[1], rtol=1e-4)
    # float64 queries of a float32 fit compute, and return, float64 as predict.
    queries = X[:5].astype(np.float64)
    assert model.predict(queries, return_std=True)[1].dtype == np.float64
    assert model.predict(queries).dtype == np.float64


def test_tiny_weights_do_not_underflow_in_float32():
    # A kernel whose weights are all near 1e-25: their squares are beyond
    # float32 unless each row is first divided by its largest weight.
    def kernel(u):
        return 1e-25 * np.exp(-(u**2))

    X, y = d2l_toy(20)
    queries = np.linspace(0, 5, 6)[:, None]
    expected = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.5).fit(X, y)
    model = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.5)
    model.fit(X.astype(np.float32), y.astype(np.float32))
    for noise in ("constant", "local"):
        std = model.predict(queries.astype(np.float32), return_std=True, noise=noise)
        assert_allclose(
            std[1],
            expected.predict(queries, return_std=True, noise=noise)[1],
            rtol=1e-3,
        )
    assert_allclose(
        model.predict_interval(queries.astype(np.float32)),
        expected.predict_interval(queries),
        rtol=1e-4,
    )


def test_chunks_change_nothing():
    X, y = d2l_toy(200)
    queries = np.linspace(0, 5, 50)[:, None]
    model = NadarayaWatsonRegressor(bandwidth=0.3).fit(X, y)
    std = model.predict(queries, return_std=True)[1]
    intervals = model.predict_interval(queries)
    with config_context(working_memory=0.001):
        small = NadarayaWatsonRegressor(bandwidth=0.3).fit(X, y)
        assert_allclose(small.predict(queries, return_std=True)[1], std, rtol=1e-12)
        assert_allclose(small.predict_interval(queries), intervals, rtol=1e-12)


def test_tree_path_gives_the_dense_standard_errors():
    X, y = d2l_toy(3000, noise=0.3)
    queries = np.linspace(0, 5, 20)[:, None]
    tree = NadarayaWatsonRegressor(kernel="epanechnikov", bandwidth=0.01)
    tree.set_params(algorithm="tree").fit(X, y)
    dense = NadarayaWatsonRegressor(kernel="epanechnikov", bandwidth=0.01)
    dense.set_params(algorithm="dense").fit(X, y)
    assert tree._fit_method == "tree"
    assert_allclose(
        tree.predict(queries, return_std=True),
        dense.predict(queries, return_std=True),
        rtol=1e-9,
    )


def test_refit_forgets_the_residuals():
    X, y = d2l_toy(30)
    queries = np.linspace(0, 5, 7)[:, None]
    model = NadarayaWatsonRegressor(bandwidth=0.5).fit(X, y)
    model.predict(queries, return_std=True)
    model.fit(X, 3 * y)
    fresh = NadarayaWatsonRegressor(bandwidth=0.5).fit(X, 3 * y)
    assert_allclose(
        model.predict(queries, return_std=True)[1],
        fresh.predict(queries, return_std=True)[1],
    )
    assert_allclose(model.predict_interval(queries), fresh.predict_interval(queries))


def test_cv_estimator_and_pipeline_offer_the_same():
    X, y = d2l_toy(40)
    queries = np.linspace(0, 5, 7)[:, None]
    cv = NadarayaWatsonRegressorCV().fit(X, y)
    plain = NadarayaWatsonRegressor(bandwidth=cv.bandwidth_).fit(X, y)
    assert_allclose(
        cv.predict(queries, return_std=True), plain.predict(queries, return_std=True)
    )
    assert_allclose(cv.predict_interval(queries), plain.predict_interval(queries))
    pipeline = make_pipeline(StandardScaler(), NadarayaWatsonRegressor(bandwidth=0.3))
    predictions, std = pipeline.fit(X, y).predict(queries, return_std=True)
    assert std.shape == predictions.shape == (7,)


# --------------------------------------------------------------------------
# MAPIE


@pytest.mark.parametrize(
    "estimator, bandwidth, learner",
    [
        (NadarayaWatsonRegressor, 0.3, NadarayaWatsonRegressorCV),
        (LocalLinearRegressor, 0.4, LocalLinearRegressorCV),
    ],
)
def test_mapie_split_and_cross_conformal_wrap_the_estimators(
    estimator, bandwidth, learner
):
    from mapie.regression import CrossConformalRegressor, SplitConformalRegressor

    X, y = d2l_toy(300, seed=3)
    X_new, y_new = d2l_toy(300, seed=4)
    split = SplitConformalRegressor(
        estimator(bandwidth=bandwidth), confidence_level=0.9, prefit=False
    )
    split.fit(X[:200], y[:200]).conformalize(X[200:], y[200:])
    _, intervals = split.predict_interval(X_new)
    coverage = np.mean((y_new >= intervals[:, 0, 0]) & (y_new <= intervals[:, 1, 0]))
    assert 0.8 <= coverage <= 0.97
    cross = CrossConformalRegressor(
        learner(), confidence_level=0.9, cv=5, random_state=0
    )
    _, intervals = cross.fit_conformalize(X, y).predict_interval(X_new)
    coverage = np.mean((y_new >= intervals[:, 0, 0]) & (y_new <= intervals[:, 1, 0]))
    assert 0.8 <= coverage <= 0.97


# --------------------------------------------------------------------------
# Bad input


def test_bad_noise_is_refused():
    X, y = d2l_toy(10)
    model = NadarayaWatsonRegressor().fit(X, y)
    with pytest.raises(ValueError, match="noise must be one of"):
        model.predict(X, return_std=True, noise="white")


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, "0.1", None])
def test_bad_alpha_is_refused(alpha):
    X, y = d2l_toy(10)
    model = NadarayaWatsonRegressor().fit(X, y)
    with pytest.raises(ValueError, match="alpha must be a float in"):
        model.predict_interval(X, alpha=alpha)


def test_alpha_too_small_for_the_data_is_refused():
    X, y = d2l_toy(9)
    model = NadarayaWatsonRegressor().fit(X, y)
    model.predict_interval(X, alpha=0.1)
    with pytest.raises(ValueError, match=r"alpha >= 1 / \(n \+ 1\) = 0.1"):
        model.predict_interval(X, alpha=0.09)


def test_one_sample_has_no_standard_error():
    model = NadarayaWatsonRegressor().fit([[0.0], [1.0]], [1.0, 2.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="total weight above 1"):
        model.predict([[0.5]], return_std=True)

"""Tests of LocalLinearRegressor and LocalLinearRegressorCV."""

# Authors: the sknw developers
# License: BSD 3 clause

import pickle
import warnings
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

import sknw._loo
from sknw import (
    LocalLinearRegressor,
    LocalLinearRegressorCV,
    NadarayaWatsonRegressor,
)
from sknw._loo_local_linear import LocalLinearLeaveOneOut
from tests._reference import attention_slow

from ._reference import sine_data

# statsmodels >= 0.15 warns that its default random generator will change; the
# fixed bandwidths used here draw nothing at random.
pytestmark = pytest.mark.filterwarnings("ignore:After 0.17:FutureWarning")

NAMED_KERNELS = [
    "gaussian",
    "tophat",
    "epanechnikov",
    "linear",
    "biweight",
    "triweight",
    "tricube",
    "cosine",
    "exponential",
    "constant",
]
LEARNABLE_KERNELS = ["gaussian", "epanechnikov", "exponential", "tricube"]


def local_linear_slow(queries, X, y, bandwidth, kernel, sample_weight=None):
    """Dense NumPy weighted least squares centred at each query.

    The weights are the slow reference attention (exact kernel weights,
    sample weights, the nearest samples where no sample is within reach);
    where the weighted design [1, x - q] has rank below n_features + 1 the
    fit is the weighted mean with slope 0.

    Returns
    -------
    fit : ndarray of shape (n_queries, n_outputs)
    slope : ndarray of shape (n_queries, n_features, n_outputs)
    """
    y = np.asarray(y, dtype=np.float64).reshape(len(X), -1)
    weights = attention_slow(queries, X, bandwidth, kernel, sample_weight)
    n_features = X.shape[1]
    fit = np.empty((len(queries), y.shape[1]))
    slope = np.zeros((len(queries), n_features, y.shape[1]))
    for i, (query, row) in enumerate(zip(queries, weights)):
        design = np.hstack([np.ones((len(X), 1)), (X - query) / bandwidth])
        root = np.sqrt(row)[:, None]
        singular_values = np.linalg.svd(root * design, compute_uv=False)
        if singular_values[-1] <= 1e-7 * singular_values[0]:
            fit[i] = row @ y
            continue
        coefficients = np.linalg.lstsq(root * design, root * y, rcond=None)[0]
        fit[i] = coefficients[0]
        slope[i] = coefficients[1:] / np.reshape(bandwidth, (-1, 1))
    return fit, slope


# --------------------------------------------------------------------------
# statsmodels oracle: KernelReg's Gaussian of each continuous variable is
# exp(-(Xi - x)**2 / (2 h**2)) / sqrt(2 pi) (as in test_regression.py), our
# Gaussian of u = ||(q - x) / h||; reg_type="ll" solves the weighted least
# squares centred at the query (with a pseudo-inverse) and reports its slope
# as the marginal effects.


@pytest.mark.parametrize("bandwidth", [[0.4], [0.9], [0.5, 0.8], [0.6, 0.9, 1.3]])
def test_gaussian_matches_statsmodels_local_linear(bandwidth):
    from statsmodels.nonparametric.kernel_regression import KernelReg

    bandwidth = np.array(bandwidth)
    n_features = bandwidth.shape[0]
    X, y = sine_data(n_samples=60, n_features=n_features, seed=n_features)
    # Inside, at the edge of and beyond the data.
    X_query = np.random.default_rng(7).uniform(-2.6, 2.6, size=(30, n_features))

    mean, effects = KernelReg(
        endog=y, exog=X, var_type="c" * n_features, reg_type="ll", bw=bandwidth
    ).fit(X_query)
    reg = LocalLinearRegressor(bandwidth=bandwidth).fit(X, y)

    assert_allclose(reg.predict(X_query), mean, rtol=1e-8, atol=1e-10)
    gradient = reg.predict_gradient(X_query)
    assert gradient.shape == (30, n_features)
    assert_allclose(gradient, effects, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------
# The dense NumPy reference.


def _queries(X, seed):
    """Queries inside the data, on its edges and corners, and beyond it."""
    rng = np.random.default_rng(seed)
    lowest, highest = X.min(axis=0), X.max(axis=0)
    inside = rng.uniform(lowest, highest, size=(8, X.shape[1]))
    edges = np.vstack([lowest, highest, [lowest[0], highest[1]]])
    beyond = np.vstack([highest + 0.7, lowest - 2.5, highest + 30.0])
    return np.vstack([inside, edges, beyond])


@pytest.mark.parametrize("kernel", NAMED_KERNELS)
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_dense_weighted_least_squares(kernel, weighted):
    X, y = sine_data(n_samples=50, n_features=2, seed=1, n_outputs=2)
    bandwidth = np.array([1.2, 1.6])
    sample_weight = None
    if weighted:
        sample_weight = np.random.default_rng(2).uniform(0.2, 3.0, size=len(X))
    queries = _queries(X, seed=3)

    reg = LocalLinearRegressor(kernel=kernel, bandwidth=bandwidth)
    reg.fit(X, y, sample_weight=sample_weight)
    expected_fit, expected_slope = local_linear_slow(
        queries, X, y, bandwidth, kernel, sample_weight
    )

    assert_allclose(reg.predict(queries), expected_fit, rtol=1e-9, atol=1e-9)
    assert_allclose(
        reg.predict_gradient(queries),
        np.swapaxes(expected_slope, 1, 2),
        rtol=1e-8,
        atol=1e-9,
    )


@pytest.mark.parametrize("kernel", ["biweight", "tricube", "tophat"])
def test_tree_path_equals_dense_path(kernel):
    X, y = sine_data(n_samples=300, n_features=2, seed=4)
    queries = _queries(X, seed=5)
    dense = LocalLinearRegressor(kernel=kernel, bandwidth=0.6, algorithm="dense")
    tree = LocalLinearRegressor(kernel=kernel, bandwidth=0.6, algorithm="tree")
    dense.fit(X, y)
    tree.fit(X, y)
    assert_allclose(tree.predict(queries), dense.predict(queries), rtol=1e-10)
    assert_allclose(
        tree.predict_gradient(queries),
        dense.predict_gradient(queries),
        rtol=1e-8,
        atol=1e-10,
    )


def test_chunked_predictions_equal_one_chunk():
    import sklearn

    X, y = sine_data(n_samples=200, n_features=3, seed=6)
    # Without the query 30 widths out, whose extrapolation from a few
    # samples passes rounding of the weights on to the eighth digit.
    queries = _queries(X[:, :2], seed=7)[:-1]
    queries = np.hstack([queries, np.zeros((len(queries), 1))])
    reg = LocalLinearRegressor(bandwidth=0.8).fit(X, y)
    whole = reg.predict(queries)
    with sklearn.config_context(working_memory=0.001):
        chunked = reg.predict(queries)
    assert_allclose(chunked, whole, rtol=1e-12)


# --------------------------------------------------------------------------
# Properties.


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov", "tricube"])
@pytest.mark.parametrize("n_features", [1, 3])
def test_linear_targets_are_reproduced_exactly(kernel, n_features):
    # The local linear fit reproduces any line, at any width and any query
    # whose design is regular: the bias Nadaraya-Watson has at the edges is
    # gone.
    rng = np.random.default_rng(n_features)
    X = rng.uniform(0, 5, size=(80, n_features))
    coefficients = np.arange(1, n_features + 1) * 0.7
    y = 3.0 + X @ coefficients
    queries = np.vstack([X.min(axis=0), X.max(axis=0), X[:5]])

    # Wide enough for a compact kernel to reach 4 samples off a plane from
    # every corner of the cube.
    bandwidth = 2.5 if n_features == 1 else 4.0
    reg = LocalLinearRegressor(kernel=kernel, bandwidth=bandwidth).fit(X, y)
    nadaraya_watson = NadarayaWatsonRegressor(kernel=kernel, bandwidth=bandwidth)
    nadaraya_watson.fit(X, y)

    expected = 3.0 + queries @ coefficients
    assert_allclose(reg.predict(queries), expected, rtol=1e-10)
    assert_allclose(
        reg.predict_gradient(queries),
        np.broadcast_to(coefficients, (len(queries), n_features)),
        rtol=1e-9,
    )
    # At the edges, the local constant fit is pulled toward the inside.
    edge_error = np.abs(nadaraya_watson.predict(queries[:2]) - expected[:2])
    assert np.all(edge_error > 0.5)


def test_singular_design_falls_back_to_local_constant():
    X = np.array([[0.0], [1.0], [2.0], [5.0], [6.0]])
    y = np.array([0.0, 1.0, 4.0, 2.0, 7.0])
    reg = LocalLinearRegressor(kernel="epanechnikov", bandwidth=1.5).fit(X, y)
    nadaraya_watson = NadarayaWatsonRegressor(kernel="epanechnikov", bandwidth=1.5)
    nadaraya_watson.fit(X, y)
    # 3.7 reaches only the sample at 5; 20 reaches none (its nearest is 6);
    # 0.5 reaches three samples.
    queries = np.array([[3.7], [20.0], [0.5]])

    predictions = reg.predict(queries)
    gradient = reg.predict_gradient(queries)

    assert_allclose(predictions[:2], nadaraya_watson.predict(queries[:2]))
    assert_allclose(predictions[:2], [2.0, 7.0])
    assert_array_equal(gradient[:2], 0.0)
    assert gradient[2, 0] != 0.0


def test_collinear_features_fall_back_to_local_constant_without_nan():
    X, y = sine_data(n_samples=30, n_features=1, seed=8)
    X_twice = np.hstack([X, 2 * X])
    queries = np.linspace(-3, 3, 7)[:, None]
    reg = LocalLinearRegressor(bandwidth=[0.5, 1.0]).fit(X_twice, y)
    nadaraya_watson = NadarayaWatsonRegressor(bandwidth=[0.5, 1.0])
    nadaraya_watson.fit(X_twice, y)

    queries_twice = np.hstack([queries, 2 * queries])
    predictions = reg.predict(queries_twice)
    assert np.all(np.isfinite(predictions))
    assert_allclose(predictions, nadaraya_watson.predict(queries_twice), rtol=1e-12)
    assert_array_equal(reg.predict_gradient(queries_twice), 0.0)


@pytest.mark.parametrize("adaptive", ["sample", "query"])
def test_adaptive_widths_fit_lines_with_nadaraya_watson_weights(adaptive):
    # The same local widths as Nadaraya-Watson's: its attention, in a dense
    # weighted least-squares solve, gives the local linear fit.
    X, y = sine_data(n_samples=60, n_features=2, seed=28)
    queries = _queries(X, seed=29)[:-1]
    params = dict(bandwidth=0.7, adaptive=adaptive, n_neighbors=8)
    reg = LocalLinearRegressor(**params).fit(X, y)
    attention = NadarayaWatsonRegressor(**params).fit(X, y).attention_weights(queries)
    for query, row, prediction in zip(queries, attention, reg.predict(queries)):
        design = np.hstack([np.ones((len(X), 1)), X - query])
        root = np.sqrt(row)[:, None]
        coefficients = np.linalg.lstsq(root * design, root[:, 0] * y, rcond=None)[0]
        assert_allclose(prediction, coefficients[0], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kernel", ["gaussian", "tricube"])
def test_translating_and_permuting_the_data_changes_nothing(kernel):
    X, y = sine_data(n_samples=50, n_features=2, seed=30)
    queries = _queries(X, seed=31)[:-1]
    shift = np.array([1e3, -250.0])
    order = np.random.default_rng(32).permutation(len(X))
    reg = LocalLinearRegressor(kernel=kernel, bandwidth=1.2).fit(X, y)
    moved = LocalLinearRegressor(kernel=kernel, bandwidth=1.2)
    moved.fit(X[order] + shift, y[order])
    assert_allclose(moved.predict(queries + shift), reg.predict(queries), rtol=1e-9)
    assert_allclose(
        moved.predict_gradient(queries + shift),
        reg.predict_gradient(queries),
        rtol=1e-7,
        atol=1e-9,
    )


def test_attention_weights_give_the_predictions_and_sum_to_one():
    X, y = sine_data(n_samples=40, n_features=2, seed=9)
    queries = _queries(X, seed=10)
    reg = LocalLinearRegressor(kernel="epanechnikov", bandwidth=1.3).fit(X, y)
    weights = reg.attention_weights(queries)
    assert weights.shape == (len(queries), len(X))
    assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-10)
    assert_allclose(weights @ y, reg.predict(queries), rtol=1e-10, atol=1e-12)
    # The equivalent kernel of a boundary fit takes negative values.
    assert weights.min() < 0


def test_multi_output_equals_single_output_fits():
    X, y = sine_data(n_samples=40, n_features=2, seed=11, n_outputs=3)
    queries = _queries(X, seed=12)
    reg = LocalLinearRegressor(bandwidth=0.9).fit(X, y)
    predictions = reg.predict(queries)
    gradient = reg.predict_gradient(queries)
    assert predictions.shape == (len(queries), 3)
    assert gradient.shape == (len(queries), 3, 2)
    for k in range(3):
        single = LocalLinearRegressor(bandwidth=0.9).fit(X, y[:, k])
        assert_allclose(predictions[:, k], single.predict(queries), rtol=1e-12)
        assert_allclose(gradient[:, k], single.predict_gradient(queries), rtol=1e-10)


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov"])
def test_integer_sample_weight_equals_repeated_rows(kernel):
    X, y = sine_data(n_samples=30, n_features=2, seed=13)
    counts = np.random.default_rng(14).integers(0, 4, size=len(X))
    queries = _queries(X, seed=15)
    weighted = LocalLinearRegressor(kernel=kernel, bandwidth=1.1)
    weighted.fit(X, y, sample_weight=counts)
    repeated = LocalLinearRegressor(kernel=kernel, bandwidth=1.1)
    repeated.fit(np.repeat(X, counts, axis=0), np.repeat(y, counts))
    assert_allclose(weighted.predict(queries), repeated.predict(queries), rtol=1e-9)


def test_float32_input_gives_float32_output_close_to_float64():
    X, y = sine_data(n_samples=40, n_features=2, seed=16)
    queries = _queries(X, seed=17)
    reg64 = LocalLinearRegressor(bandwidth=0.8).fit(X, y)
    reg32 = LocalLinearRegressor(bandwidth=0.8).fit(X.astype(np.float32), y)
    predictions = reg32.predict(queries.astype(np.float32))
    assert predictions.dtype == np.float32
    assert reg32.predict_gradient(queries.astype(np.float32)).dtype == np.float32
    assert_allclose(predictions, reg64.predict(queries), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------
# Leave-one-out.


def _brute_force_loo(X, y, bandwidth, kernel, sample_weight):
    """Each row predicted by a refit with one unit of its weight removed."""
    predictions = []
    for i in range(len(X)):
        weight = sample_weight.copy()
        weight[i] -= min(weight[i], 1.0)
        reg = LocalLinearRegressor(kernel=kernel, bandwidth=bandwidth)
        reg.fit(X, y, sample_weight=weight)
        predictions.append(reg.predict(X[i : i + 1])[0])
    return np.array(predictions)


def test_leave_one_out_from_the_smoother_diagonal_equals_refits():
    X, y = sine_data(n_samples=30, n_features=2, seed=18)
    reg = LocalLinearRegressor(bandwidth=0.9).fit(X, y)
    smoother = reg.attention_weights(X)
    diagonal = np.diag(smoother)
    loo = (reg.predict(X) - diagonal * y) / (1 - diagonal)
    expected = _brute_force_loo(X, y, 0.9, "gaussian", np.ones(len(X)))
    assert_allclose(loo, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kernel", LEARNABLE_KERNELS)
@pytest.mark.parametrize("n_features", [1, 2])
def test_objective_predictions_equal_refits(kernel, n_features):
    # Weights of 0.5 leave the row out entirely, weights above 1 keep some.
    X, y = sine_data(n_samples=25, n_features=n_features, seed=19 + n_features)
    sample_weight = np.random.default_rng(20).choice([0.5, 1.0, 2.0, 3.5], len(X))
    bandwidth = np.array([0.9, 1.4][:n_features])
    objective = LocalLinearLeaveOneOut(
        X,
        y[:, None],
        kernel=kernel,
        loss="squared_error",
        sample_weight=sample_weight,
        device=torch.device("cpu"),
    )
    loo = objective.predictions(np.log(bandwidth))[:, 0]
    expected = _brute_force_loo(X, y, bandwidth, kernel, sample_weight)
    assert_allclose(loo, expected, rtol=1e-10, atol=1e-10)
    loss = objective.evaluate(np.log(bandwidth), order=0)[0]
    expected_loss = np.average((expected - y) ** 2, weights=sample_weight)
    assert_allclose(loss, expected_loss, rtol=1e-10)


@pytest.mark.parametrize("kernel", LEARNABLE_KERNELS)
def test_objective_derivatives_match_finite_differences(kernel):
    X, y = sine_data(n_samples=30, n_features=2, seed=21)
    objective = LocalLinearLeaveOneOut(
        X,
        y[:, None],
        kernel=kernel,
        loss="squared_error",
        sample_weight=None,
        device=torch.device("cpu"),
    )
    # Steps where the differences' truncation and rounding are both below
    # 1e-5 relative.
    step = 1e-5
    t = np.array([np.log(1.3)])
    _, gradient, second = objective.evaluate(t, order=2)
    plus, minus = objective(t + step), objective(t - step)
    assert_allclose(gradient, (plus[0] - minus[0]) / (2 * step), rtol=1e-5)
    assert_allclose(second, (plus[1] - minus[1]) / (2 * step), rtol=1e-5)

    step = 1e-4
    per_feature = np.log([0.9, 1.6])
    _, gradient = objective(per_feature)
    for k in range(2):
        shift = step * np.eye(2)[k]
        difference = (
            objective.evaluate(per_feature + shift, order=0)[0]
            - objective.evaluate(per_feature - shift, order=0)[0]
        ) / (2 * step)
        assert_allclose(gradient[k], difference, rtol=1e-5)


def test_cv_learns_a_width_no_grid_width_beats():
    X, y = sine_data(n_samples=40, n_features=1, seed=22)
    reg = LocalLinearRegressorCV().fit(X, y)
    ones = np.ones(len(X))
    learned = np.mean(
        (_brute_force_loo(X, y, reg.bandwidth_, "gaussian", ones) - y) ** 2
    )
    assert_allclose(reg.loss_curve_[-1], learned, rtol=1e-10)
    assert len(reg.loss_curve_) == reg.n_iter_ + 1
    for bandwidth in np.geomspace(0.1, 3.0, 8):
        loss = np.mean((_brute_force_loo(X, y, bandwidth, "gaussian", ones) - y) ** 2)
        assert learned <= loss * (1 + 1e-9)


def test_cv_per_feature_widths_ignore_an_irrelevant_feature():
    rng = np.random.default_rng(23)
    X = rng.uniform(-2, 2, size=(80, 2))
    y = np.sin(2 * X[:, 0]) + 0.05 * rng.normal(size=80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reg = LocalLinearRegressorCV(bandwidth=[1.0, 1.0]).fit(X, y)
    assert reg.bandwidth_.shape == (2,)
    assert reg.bandwidth_[1] > 5 * reg.bandwidth_[0]


def test_cv_per_feature_plateau_probe_sends_the_irrelevant_width_out():
    # From Silverman's widths the third feature's width still grows after 10
    # iterations: its upper bound is compared, and the scan along its own
    # log-width taken, one evaluation a point of the local-linear loss.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 3)) * [1.0, 2.0, 1.0]
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] + rng.normal(0, 0.2, 150)
    probes = []
    original = sknw._loo._Search._plateau_probe

    def recorded(self, point, rows):
        probes.append(type(self.objective))
        return original(self, point, rows)

    with mock.patch.object(sknw._loo._Search, "_plateau_probe", recorded):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            reg = LocalLinearRegressorCV(bandwidth="silverman").fit(X, y)
    assert probes == [LocalLinearLeaveOneOut]
    assert reg.bandwidth_[2] > 100 * reg.bandwidth_[0]
    loss = LocalLinearLeaveOneOut(
        X,
        y[:, None],
        kernel="gaussian",
        loss="squared_error",
        sample_weight=None,
        device=torch.device("cpu"),
    )
    assert reg.loss_curve_[-1] == pytest.approx(
        loss.evaluate(np.log(reg.bandwidth_), order=0)[0], rel=1e-9
    )


def test_cv_on_a_line_warns_that_the_global_line_predicts_best():
    rng = np.random.default_rng(24)
    X = rng.uniform(0, 3, size=(30, 1))
    y = 1.0 + 2.0 * X[:, 0] + 0.1 * rng.normal(size=30)
    with pytest.warns(UserWarning, match="global weighted least-squares line"):
        LocalLinearRegressorCV().fit(X, y)


@pytest.mark.parametrize("kernel", ["tophat", "uniform", "constant"])
def test_cv_refuses_a_flat_kernel(kernel):
    X, y = sine_data(n_samples=20)
    with pytest.raises(ValueError, match="LocalLinearRegressor with GridSearchCV"):
        LocalLinearRegressorCV(kernel=kernel).fit(X, y)


# --------------------------------------------------------------------------
# scikit-learn integration.


def test_grid_search_over_bandwidth():
    X, y = sine_data(n_samples=60, n_features=1, seed=25)
    search = GridSearchCV(
        LocalLinearRegressor(), {"bandwidth": [0.05, 0.3, 1.0, 30.0]}, cv=3
    ).fit(X, y)
    assert search.best_params_["bandwidth"] in (0.3, 1.0)
    assert isinstance(search.best_estimator_, LocalLinearRegressor)
    assert search.best_estimator_.bandwidth_ == search.best_params_["bandwidth"]


@pytest.mark.parametrize("estimator", [LocalLinearRegressor, LocalLinearRegressorCV])
def test_pickle_round_trip_gives_identical_predictions(estimator):
    X, y = sine_data(n_samples=30, n_features=2, seed=26)
    queries = _queries(X, seed=27)
    reg = estimator(kernel="epanechnikov", bandwidth=1.5).fit(X, y)
    restored = pickle.loads(pickle.dumps(reg))
    assert_array_equal(restored.predict(queries), reg.predict(queries))
    assert_array_equal(
        restored.predict_gradient(queries), reg.predict_gradient(queries)
    )
    assert clone(reg).get_params() == reg.get_params()


def test_objective_losses_at_equal_evaluate():
    X, y = sine_data(n_samples=30, n_features=2, seed=33)
    objective = LocalLinearLeaveOneOut(
        X,
        y[:, None],
        kernel="gaussian",
        loss="squared_error",
        sample_weight=np.linspace(0.5, 2.0, len(X)),
        device=torch.device("cpu"),
    )
    offsets = np.array([-0.5, 0.0, 0.7])
    relative = np.log([0.8, 1.5])
    rows = np.arange(0, 30, 3)
    losses, row_losses = objective.losses_at(
        offsets, rows, log_relative=relative, per_row=True
    )
    expected = [objective.evaluate(t + relative, rows, order=0)[0] for t in offsets]
    assert_allclose(losses, expected, rtol=1e-12)
    assert_allclose(row_losses.sum(axis=0), losses, rtol=1e-12)
    assert row_losses.shape == (len(rows), 3)
    shared = objective.losses_at(np.log([0.9, 1.3]))
    assert_allclose(shared[1], objective.evaluate([np.log(1.3)], order=0)[0])


@pytest.mark.parametrize("kernel", ["epanechnikov", "tricube"])
def test_objective_with_isolated_and_paired_samples_equals_refits(kernel):
    # Under a compact kernel, 9.0 reaches no other sample (its nearest other
    # predicts it), 5.0 and 5.1 reach only each other (a singular design:
    # the local constant fit), the cluster near 0 fits lines.
    X = np.array([[0.0], [0.1], [0.25], [0.3], [5.0], [5.1], [9.0]])
    y = np.array([0.0, 0.3, 0.4, 0.9, 2.0, 3.0, 7.0])
    sample_weight = np.ones(len(X))
    objective = LocalLinearLeaveOneOut(
        X,
        y[:, None],
        kernel=kernel,
        loss="squared_error",
        sample_weight=None,
        device=torch.device("cpu"),
    )
    loo = objective.predictions(np.log([0.5]))[:, 0]
    expected = _brute_force_loo(X, y, 0.5, kernel, sample_weight)
    assert_allclose(loo, expected, rtol=1e-10, atol=1e-12)
    assert_allclose(loo[4:], [3.0, 2.0, 3.0])
    loss, gradient = objective(np.log([0.5]))
    assert_allclose(loss, np.mean((expected - y) ** 2), rtol=1e-12)
    assert np.all(np.isfinite(gradient))


def test_device_gives_the_cpu_results(device):
    X, y = sine_data(n_samples=60, n_features=2, seed=34)
    queries = _queries(X, seed=35)
    cpu = LocalLinearRegressor(bandwidth=0.8).fit(X, y)
    reg = LocalLinearRegressor(bandwidth=0.8, device=device).fit(X, y)
    assert_allclose(reg.predict(queries), cpu.predict(queries), rtol=1e-10)
    assert_allclose(
        reg.predict_gradient(queries), cpu.predict_gradient(queries), rtol=1e-9
    )
    learned = LocalLinearRegressorCV(device=device).fit(X, y)
    expected = LocalLinearRegressorCV().fit(X, y)
    assert_allclose(learned.bandwidth_, expected.bandwidth_, rtol=1e-8)


@pytest.mark.parametrize(
    "x_scale, y_scale", [(1e140, 1.0), (1.0, 1e300), (1e-150, 1e-300)]
)
def test_extreme_scales_give_the_scaled_fit(x_scale, y_scale):
    # Products of coordinates and targets beyond float64's range stay out of
    # the moments, which are taken on data scaled by powers of 2.
    X, y = sine_data(n_samples=40, n_features=2, seed=36)
    queries = _queries(X, seed=37)[:-1]
    reg = LocalLinearRegressor(bandwidth=0.9).fit(X, y)
    scaled = LocalLinearRegressor(bandwidth=0.9 * x_scale)
    scaled.fit(X * x_scale, y * y_scale)
    assert_allclose(
        scaled.predict(queries * x_scale) / y_scale, reg.predict(queries), rtol=1e-9
    )
    assert_allclose(
        scaled.predict_gradient(queries * x_scale) * (x_scale / y_scale),
        reg.predict_gradient(queries),
        rtol=1e-8,
        atol=1e-12,
    )


@given(
    seed=st.integers(0, 2**31 - 1),
    n_samples=st.integers(5, 30),
    n_features=st.integers(1, 3),
    relative_width=st.floats(1.0, 20.0),
    kernel=st.sampled_from(["gaussian", "exponential", "epanechnikov"]),
)
def test_lines_are_reproduced_at_any_query_property(
    seed, n_samples, n_features, relative_width, kernel
):
    # With widths above the diagonal of the range, every sample has weight
    # at every query within it: the design is regular and the fit exact.
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3, 3, size=(n_samples, n_features))
    X[: n_features + 1] = np.vstack([np.zeros(n_features), 2 * np.eye(n_features)])
    coefficients = rng.normal(size=n_features)
    y = 1.5 + X @ coefficients
    spread = X.max(axis=0) - X.min(axis=0)
    width = 1.1 * relative_width * np.sqrt(n_features) * spread.max()
    queries = rng.uniform(X.min(axis=0), X.max(axis=0), size=(5, n_features))

    reg = LocalLinearRegressor(kernel=kernel, bandwidth=width).fit(X, y)

    assert_allclose(reg.predict(queries), 1.5 + queries @ coefficients, atol=1e-8)
    assert_allclose(
        reg.predict_gradient(queries),
        np.broadcast_to(coefficients, (5, n_features)),
        atol=1e-8,
    )


@pytest.mark.parametrize("method", ["predict", "predict_gradient", "attention_weights"])
def test_methods_before_fit_and_with_wrong_features_are_refused(method):
    X, y = sine_data(n_samples=20, n_features=2)
    with pytest.raises(NotFittedError):
        getattr(LocalLinearRegressor(), method)(X)
    reg = LocalLinearRegressor().fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features"):
        getattr(reg, method)(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        getattr(reg, method)(np.full((2, 2), np.nan))

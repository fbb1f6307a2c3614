"""Tests of NadarayaWatsonRegressor: oracles, scikit-learn integration, input checks."""

# Authors: the sknw developers
# License: BSD 3 clause

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from sknw import NadarayaWatsonRegressor, NadarayaWatsonRegressorCV

from ._reference import sine_data

# statsmodels >= 0.15 warns that its default random generator will change; the
# fixed bandwidths used here draw nothing at random.
pytestmark = pytest.mark.filterwarnings("ignore:After 0.17:FutureWarning")

COMPACT_AND_SMOOTH_KERNELS = ["gaussian", "epanechnikov", "tophat", "exponential"]


def _absent_device():
    """A CUDA device index that does not exist here, with or without CUDA."""
    return f"cuda:{torch.cuda.device_count()}"


# --------------------------------------------------------------------------
# statsmodels oracle
#
# statsmodels.nonparametric.kernels.gaussian(h, Xi, x) is
# exp(-(Xi - x)**2 / (2 h**2)) / sqrt(2 pi): h is the standard deviation of the
# Gaussian, the same h as ours. KernelReg multiplies one such factor per
# continuous variable with its own h_j (gpke), which is our Gaussian of
# u = ||(q - x) / h||; with reg_type="lc" (local constant) the prediction is
# sum K y / sum K, so the normalising constants cancel as they do here.


@pytest.mark.parametrize(
    "bandwidth",
    [[0.3], [0.8], [0.5, 0.5, 0.5], [0.2, 0.7, 1.5], [2.0, 0.4, 0.9]],
)
def test_gaussian_matches_statsmodels_local_constant(bandwidth):
    from statsmodels.nonparametric.kernel_regression import KernelReg

    bandwidth = np.array(bandwidth)
    n_features = bandwidth.shape[0]
    X, y = sine_data(n_samples=50, n_features=n_features, seed=n_features)
    X_query = np.random.default_rng(7).uniform(-2.5, 2.5, size=(30, n_features))

    expected = KernelReg(
        endog=y, exog=X, var_type="c" * n_features, reg_type="lc", bw=bandwidth
    ).fit(X_query)[0]
    reg = NadarayaWatsonRegressor(bandwidth=bandwidth).fit(X, y)

    assert_allclose(reg.predict(X_query), expected, rtol=1e-8, atol=1e-12)
    assert_allclose(reg.bandwidth_, bandwidth)


def test_silverman_matches_statsmodels_normal_reference():
    # KernelReg's own bw="normal_reference" is not a rule of thumb there: any
    # string other than "cv_ls" minimises the AIC. The rule lives in
    # KDEMultivariate: 1.06 * std(ddof=0) * n ** (-1 / 5) at d = 1, which
    # Silverman's (4 / 3n) ** (1 / 5) * std matches to 0.1%.
    from statsmodels.nonparametric.kernel_density import KDEMultivariate

    rng = np.random.default_rng(3)
    X = 2.5 * rng.normal(size=(80, 1)) + 4.0
    y = rng.normal(size=80)
    expected = KDEMultivariate(data=X, var_type="c", bw="normal_reference").bw

    reg = NadarayaWatsonRegressor(bandwidth="silverman").fit(X, y)

    assert_allclose(np.ravel(reg.bandwidth_), expected, rtol=0.01)


# --------------------------------------------------------------------------
# scikit-learn integration


def test_pipeline_with_scaler_matches_manual_scaling():
    X, y = sine_data(seed=1)
    X = X * [1.0, 100.0] + [0.0, 50.0]
    pipe = make_pipeline(StandardScaler(), NadarayaWatsonRegressor(bandwidth=0.5))
    pipe.fit(X, y)

    scaler = StandardScaler().fit(X)
    reg = NadarayaWatsonRegressor(bandwidth=0.5).fit(scaler.transform(X), y)
    X_query = X[::3] + 0.01
    assert_allclose(pipe.predict(X_query), reg.predict(scaler.transform(X_query)))
    assert pipe.score(X, y) > 0.5


def test_grid_search_picks_bandwidth_and_kernel_and_refits():
    X, y = sine_data(n_samples=60, n_features=1, seed=2)
    grid = {
        "nadarayawatsonregressor__bandwidth": [0.01, 0.3, 20.0],
        "nadarayawatsonregressor__kernel": ["gaussian", "epanechnikov"],
    }
    pipe = make_pipeline(StandardScaler(), NadarayaWatsonRegressor())
    search = GridSearchCV(pipe, grid, cv=KFold(3, shuffle=True, random_state=0))
    search.fit(X, y)

    # A width of 20 standard deviations predicts the mean, 0.01 the nearest
    # neighbour of a noisy sine: the middle width wins.
    assert search.best_params_["nadarayawatsonregressor__bandwidth"] == 0.3
    refitted = search.best_estimator_
    assert refitted[-1].bandwidth_ == 0.3
    expected = clone(refitted).fit(X, y).predict(X)
    assert_allclose(search.predict(X), expected)


def test_cross_validate_scores():
    X, y = sine_data(n_samples=60, n_features=1, seed=4)
    result = cross_validate(
        NadarayaWatsonRegressor(bandwidth=0.3),
        X,
        y,
        cv=KFold(4, shuffle=True, random_state=0),
        return_estimator=True,
    )
    assert result["test_score"].shape == (4,)
    assert np.all(result["test_score"] > 0.8)
    assert all(est.n_features_in_ == 1 for est in result["estimator"])


def test_clone_is_unfitted_with_equal_params():
    X, y = sine_data()
    params = {"kernel": "tricube", "bandwidth": [0.5, 2.0], "device": "cpu"}
    reg = NadarayaWatsonRegressor(**params).fit(X, y)
    cloned = clone(reg)

    assert cloned is not reg
    assert set(cloned.get_params()) == set(reg.get_params())
    assert cloned.get_params()["kernel"] == "tricube"
    assert_array_equal(cloned.get_params()["bandwidth"], [0.5, 2.0])
    assert not hasattr(cloned, "bandwidth_")
    with pytest.raises(NotFittedError):
        cloned.predict(X)


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov"])
@pytest.mark.parametrize("bandwidth", [0.4, "scott", [0.3, 0.9]])
def test_pickle_round_trip_gives_identical_predictions(kernel, bandwidth):
    X, y = sine_data(seed=5)
    reg = NadarayaWatsonRegressor(kernel=kernel, bandwidth=bandwidth).fit(X, y)
    loaded = pickle.loads(pickle.dumps(reg))

    X_query = np.random.default_rng(1).uniform(-3, 3, size=(25, 2))
    assert_array_equal(loaded.predict(X_query), reg.predict(X_query))
    assert_array_equal(
        loaded.attention_weights(X_query), reg.attention_weights(X_query)
    )


def test_dataframe_sets_feature_names_and_checks_them():
    pd = pytest.importorskip("pandas")
    X, y = sine_data(n_features=3, seed=6)
    frame = pd.DataFrame(X, columns=["age", "height", "weight"])
    reg = NadarayaWatsonRegressor(bandwidth=0.7).fit(frame, y)

    assert_array_equal(reg.feature_names_in_, ["age", "height", "weight"])
    assert reg.n_features_in_ == 3
    expected = NadarayaWatsonRegressor(bandwidth=0.7).fit(X, y).predict(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_allclose(reg.predict(frame), expected)

    # scikit-learn's own checks: names at fit but none at predict warns,
    # reordered names are refused.
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        assert_allclose(reg.predict(X), expected)
    with pytest.raises(ValueError, match="feature names should match"):
        reg.predict(frame[["weight", "height", "age"]])


def test_fit_without_names_predict_with_names_warns():
    pd = pytest.importorskip("pandas")
    X, y = sine_data(n_features=2, seed=6)
    reg = NadarayaWatsonRegressor().fit(X, y)
    assert not hasattr(reg, "feature_names_in_")
    with pytest.warns(UserWarning, match="X has feature names, but"):
        reg.predict(pd.DataFrame(X, columns=["a", "b"]))


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov", "exponential"])
def test_multi_output_equals_single_output_fits(kernel):
    X, Y = sine_data(seed=7, n_outputs=3)
    X_query = np.random.default_rng(2).uniform(-3, 3, size=(20, 2))
    reg = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.6).fit(X, Y)
    Y_pred = reg.predict(X_query)

    assert Y_pred.shape == (20, 3)
    for k in range(3):
        single = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.6).fit(X, Y[:, k])
        assert_allclose(Y_pred[:, k], single.predict(X_query), rtol=1e-12)


def test_column_y_gives_column_predictions():
    X, y = sine_data(seed=8)
    reg = NadarayaWatsonRegressor().fit(X, y[:, None])
    y_pred = reg.predict(X[:7])
    assert y_pred.shape == (7, 1)
    assert_allclose(y_pred[:, 0], NadarayaWatsonRegressor().fit(X, y).predict(X[:7]))


# --------------------------------------------------------------------------
# sample_weight


def _queries_near_and_far(n_features, seed):
    rng = np.random.default_rng(seed)
    near = rng.uniform(-2, 2, size=(15, n_features))
    # Far from every sample, where a compact kernel falls back to the nearest.
    far = np.full((2, n_features), 40.0) * [[1.0], [-1.0]]
    return np.vstack([near, far])


@pytest.mark.parametrize("kernel", COMPACT_AND_SMOOTH_KERNELS)
def test_integer_sample_weight_equals_repeated_rows(kernel):
    X, y = sine_data(n_samples=25, seed=9)
    sample_weight = np.random.default_rng(0).integers(0, 4, size=25)
    sample_weight[0] = 0
    X_query = _queries_near_and_far(2, seed=1)

    weighted = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.5)
    weighted.fit(X, y, sample_weight=sample_weight)
    repeated_index = np.repeat(np.arange(25), sample_weight)
    repeated = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.5)
    repeated.fit(X[repeated_index], y[repeated_index])

    assert_allclose(weighted.predict(X_query), repeated.predict(X_query), rtol=1e-10)
    summed = np.zeros((X_query.shape[0], 25))
    np.add.at(summed.T, repeated_index, repeated.attention_weights(X_query).T)
    assert_allclose(weighted.attention_weights(X_query), summed, atol=1e-12)


@pytest.mark.parametrize("kernel", COMPACT_AND_SMOOTH_KERNELS)
def test_zero_sample_weight_equals_removing_the_row(kernel):
    X, y = sine_data(n_samples=20, seed=10)
    # The sample nearest to the far query gets weight 0: it must not serve as
    # the compact kernels' nearest-sample fallback either.
    X[3] = [30.0, 30.0]
    y[3] = 1e3
    sample_weight = np.ones(20)
    sample_weight[[3, 11]] = 0.0
    kept = sample_weight > 0
    X_query = np.vstack([_queries_near_and_far(2, seed=2), [[31.0, 31.0]]])

    weighted = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.5)
    weighted.fit(X, y, sample_weight=sample_weight)
    removed = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.5)
    removed.fit(X[kept], y[kept])

    assert_allclose(weighted.predict(X_query), removed.predict(X_query), rtol=1e-10)
    attention = weighted.attention_weights(X_query)
    assert_array_equal(attention[:, ~kept], 0.0)
    assert_allclose(attention[:, kept], removed.attention_weights(X_query), atol=1e-12)


@pytest.mark.parametrize("kernel", COMPACT_AND_SMOOTH_KERNELS)
@pytest.mark.parametrize("factor", [1e-3, 7.0, 1e6])
def test_scaling_sample_weight_changes_nothing(kernel, factor):
    X, y = sine_data(n_samples=30, seed=11)
    sample_weight = np.random.default_rng(1).uniform(0.1, 3.0, size=30)
    X_query = _queries_near_and_far(2, seed=3)
    reg = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.5)
    base = reg.fit(X, y, sample_weight=sample_weight).predict(X_query)
    scaled = reg.fit(X, y, sample_weight=factor * sample_weight).predict(X_query)
    assert_allclose(scaled, base, rtol=1e-12)


# --------------------------------------------------------------------------
# Bad input: one row per refusal


def _bad_data(kind):
    X, y = sine_data(n_samples=10, n_features=3, seed=12)
    if kind == "nan_X":
        X[2, 1] = np.nan
    elif kind == "inf_X":
        X[0, 0] = np.inf
    elif kind == "nan_y":
        y[4] = np.nan
    elif kind == "X_1d":
        X = X[:, 0]
    elif kind == "no_samples":
        X, y = X[:0], y[:0]
    elif kind == "length_mismatch":
        y = y[:7]
    elif kind == "complex":
        X = X + 1j
    elif kind == "strings":
        X = np.array([["a", "b", "c"]] * 10, dtype=object)
    elif kind == "sparse":
        X = scipy.sparse.csr_matrix(X)
    return X, y


@pytest.mark.parametrize(
    "kind, error, match",
    [
        ("nan_X", ValueError, "Input X contains NaN"),
        ("inf_X", ValueError, "Input X contains infinity"),
        ("nan_y", ValueError, "Input y contains NaN"),
        ("X_1d", ValueError, "Expected 2D array, got 1D array"),
        ("no_samples", ValueError, r"Found array with 0 sample\(s\)"),
        ("length_mismatch", ValueError, "inconsistent numbers of samples"),
        ("complex", ValueError, "Complex data not supported"),
        ("strings", ValueError, "could not convert string to float"),
        ("sparse", TypeError, "Sparse data was passed"),
    ],
)
def test_fit_refuses_bad_data(kind, error, match):
    X, y = _bad_data(kind)
    with pytest.raises(error, match=match):
        NadarayaWatsonRegressor().fit(X, y)


@pytest.mark.parametrize(
    "kind, error, match",
    [
        ("nan_X", ValueError, "Input X contains NaN"),
        ("inf_X", ValueError, "Input X contains infinity"),
        ("complex", ValueError, "Complex data not supported"),
        ("sparse", TypeError, "Sparse data was passed"),
    ],
)
def test_predict_refuses_bad_data(kind, error, match):
    X, y = sine_data(n_samples=10, n_features=3, seed=12)
    reg = NadarayaWatsonRegressor().fit(X, y)
    X_bad, _ = _bad_data(kind)
    with pytest.raises(error, match=match):
        reg.predict(X_bad)


@pytest.mark.parametrize("bandwidth", [0, 0.0, -1.0, np.nan, np.inf, -np.inf])
def test_bad_scalar_bandwidth_is_an_invalid_parameter(bandwidth):
    X, y = sine_data(n_features=3)
    with pytest.raises(InvalidParameterError, match="'bandwidth' parameter"):
        NadarayaWatsonRegressor(bandwidth=bandwidth).fit(X, y)


@pytest.mark.parametrize(
    "bandwidth, match",
    [
        ([1.0, 2.0], r"shape \(n_features,\) = \(3,\); got shape \(2,\)"),
        ([1.0, 2.0, 3.0, 4.0], r"got shape \(4,\)"),
        ([[1.0, 2.0, 3.0]], r"got shape \(1, 3\)"),
        ([1.0, 0.0, 1.0], "finite values > 0"),
        ([1.0, -2.0, 1.0], "finite values > 0"),
        ([1.0, np.nan, 1.0], "finite values > 0"),
        ([1.0, np.inf, 1.0], "finite values > 0"),
    ],
)
def test_bad_bandwidth_array(bandwidth, match):
    X, y = sine_data(n_features=3)
    with pytest.raises(ValueError, match=match):
        NadarayaWatsonRegressor(bandwidth=bandwidth).fit(X, y)


def test_unknown_kernel_lists_valid_names():
    X, y = sine_data()
    with pytest.raises(InvalidParameterError, match="'kernel' parameter") as info:
        NadarayaWatsonRegressor(kernel="gausian").fit(X, y)
    message = str(info.value)
    for name in ["gaussian", "epanechnikov", "tophat", "tricube", "exponential"]:
        assert name in message


@pytest.mark.parametrize(
    "kernel",
    [
        pytest.param(lambda u: 1.0 - u, id="negative"),
        pytest.param(lambda u: np.where(u > 2, np.nan, 1.0), id="nan"),
        pytest.param(lambda u: np.where(u > 2, np.inf, 1.0), id="inf"),
    ],
)
def test_callable_kernel_with_bad_weights_is_refused_at_fit(kernel):
    X, y = sine_data()
    with pytest.raises(ValueError, match="callable kernel must return finite"):
        NadarayaWatsonRegressor(kernel=kernel).fit(X, y)


def test_callable_kernel_matches_named_kernel():
    X, y = sine_data(seed=13)
    X_query = _queries_near_and_far(2, seed=4)

    def epanechnikov(u):
        return np.clip(1 - u**2, 0, None)

    custom = NadarayaWatsonRegressor(kernel=epanechnikov, bandwidth=0.6).fit(X, y)
    named = NadarayaWatsonRegressor(kernel="epanechnikov", bandwidth=0.6).fit(X, y)
    assert_allclose(custom.predict(X_query), named.predict(X_query), rtol=1e-12)


@pytest.mark.parametrize("device", ["foo", "cuda:-3"])
def test_unknown_device_is_refused_at_fit(device):
    X, y = sine_data()
    with pytest.raises(ValueError, match="is not available here"):
        NadarayaWatsonRegressor(device=device).fit(X, y)


def test_absent_device_is_refused_at_fit():
    X, y = sine_data()
    absent = _absent_device()
    with pytest.raises(ValueError, match=f"device='{absent}' is not available here"):
        NadarayaWatsonRegressor(device=absent).fit(X, y)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda' is not available here"):
            NadarayaWatsonRegressor(device="cuda").fit(X, y)


def test_predict_before_fit():
    X, _ = sine_data()
    reg = NadarayaWatsonRegressor()
    for method in (reg.predict, reg.attention_weights):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            method(X)


def test_predict_with_wrong_number_of_features():
    X, y = sine_data(n_features=3)
    reg = NadarayaWatsonRegressor().fit(X, y)
    match = "X has 2 features, but NadarayaWatsonRegressor is expecting 3"
    for method in (reg.predict, reg.attention_weights):
        with pytest.raises(ValueError, match=match):
            method(X[:, :2])


@pytest.mark.parametrize(
    "sample_weight, match",
    [
        pytest.param(-np.ones(10), "must be >= 0", id="negative"),
        pytest.param(np.r_[np.ones(9), -1e-3], "must be >= 0", id="one_negative"),
        pytest.param(np.ones(9), r"shape \(10,\); got shape \(9,\)", id="short"),
        pytest.param(np.ones((10, 2)), r"got shape \(10, 2\)", id="2d"),
        pytest.param(np.zeros(10), "at least one positive", id="all_zero"),
        pytest.param(np.r_[np.ones(9), np.nan], "must be finite", id="nan"),
    ],
)
def test_bad_sample_weight(sample_weight, match):
    X, y = sine_data(n_samples=10)
    with pytest.raises(ValueError, match=match):
        NadarayaWatsonRegressor().fit(X, y, sample_weight=sample_weight)


# --------------------------------------------------------------------------
# Device


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov"])
def test_predictions_on_device_equal_cpu(device, kernel):
    X, Y = sine_data(n_samples=60, n_features=3, seed=14, n_outputs=2)
    X_query = np.random.default_rng(5).uniform(-3, 3, size=(40, 3))
    cpu = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.7).fit(X, Y)
    on_device = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.7, device=device)
    on_device.fit(X, Y)

    assert_allclose(on_device.predict(X_query), cpu.predict(X_query), rtol=1e-10)
    X32, Xq32 = X.astype(np.float32), X_query.astype(np.float32)
    cpu32 = clone(cpu).fit(X32, Y).predict(Xq32)
    device32 = clone(on_device).fit(X32, Y).predict(Xq32)
    assert device32.dtype == np.float32
    assert_allclose(device32, cpu32, rtol=1e-5, atol=1e-6)


_FALL_BACK_WARNING = r"is not available here .*Computing on the CPU instead"


def test_absent_device_at_predict_warns_and_uses_cpu():
    X, y = sine_data(seed=15)
    X_query = _queries_near_and_far(2, seed=5)
    reg = NadarayaWatsonRegressor(kernel="epanechnikov", bandwidth=0.5).fit(X, y)
    expected = reg.predict(X_query)
    expected_attention = reg.attention_weights(X_query)

    reg.set_params(device=_absent_device())
    with pytest.warns(UserWarning, match=_FALL_BACK_WARNING):
        assert_array_equal(reg.predict(X_query), expected)
    with pytest.warns(UserWarning, match=_FALL_BACK_WARNING):
        assert_array_equal(reg.attention_weights(X_query), expected_attention)


@pytest.mark.parametrize("device_name", ["cuda", "absent_index"])
def test_unpickled_model_with_absent_device_warns_and_uses_cpu(device_name):
    if device_name == "cuda":
        if torch.cuda.is_available():
            pytest.skip("CUDA is available, so 'cuda' is not absent")
    else:
        device_name = _absent_device()
    X, y = sine_data(seed=16)
    reg = NadarayaWatsonRegressor(bandwidth=0.4).fit(X, y)
    expected = reg.predict(X)
    # As if fitted on a GPU machine and loaded on one without it.
    payload = pickle.dumps(reg.set_params(device=device_name))

    loaded = pickle.loads(payload)
    assert loaded.device == device_name
    with pytest.warns(UserWarning, match=f"device='{device_name}'"):
        assert_array_equal(loaded.predict(X), expected)


# --------------------------------------------------------------------------
# dtype and translation


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov", "exponential"])
def test_float32_input_gives_float32_predictions(kernel):
    X, y = sine_data(n_samples=50, n_features=3, seed=17)
    X_query = np.random.default_rng(6).uniform(-2, 2, size=(20, 3))
    reg = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.8)
    y64 = reg.fit(X, y).predict(X_query)
    y32 = reg.fit(X.astype(np.float32), y).predict(X_query.astype(np.float32))

    assert y64.dtype == np.float64
    assert y32.dtype == np.float32
    assert_allclose(y32, y64, atol=1e-4)
    attention32 = reg.attention_weights(X_query.astype(np.float32))
    assert attention32.dtype == np.float32


def test_float64_stays_float64_with_float32_targets():
    X, y = sine_data(seed=18)
    reg = NadarayaWatsonRegressor().fit(X, y.astype(np.float32))
    assert reg.predict(X).dtype == np.float64
    assert reg.attention_weights(X).dtype == np.float64


@pytest.mark.parametrize("n_features", [1, 5])
@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov"])
@pytest.mark.parametrize("shift", [1e4, 1e6])
def test_translating_X_and_queries_changes_nothing(n_features, kernel, shift):
    rng = np.random.default_rng(19)
    X = rng.normal(size=(50, n_features))
    y = rng.normal(size=50)
    X_query = rng.normal(size=(20, n_features))
    bandwidth = 1.5 if n_features == 1 else 2.5
    reg = NadarayaWatsonRegressor(kernel=kernel, bandwidth=bandwidth)
    expected = reg.fit(X, y).predict(X_query)
    shifted = reg.fit(X + shift, y).predict(X_query + shift)
    assert_allclose(shifted, expected, rtol=1e-8)


# --------------------------------------------------------------------------
# Inputs are left alone


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov", "exponential"])
def test_inputs_are_not_modified(dtype, kernel):
    X, Y = sine_data(n_samples=30, n_features=3, seed=20, n_outputs=2)
    X = X.astype(dtype)
    X_query = np.vstack([X[:5] + 0.1, np.full((1, 3), 50.0, dtype=dtype)])
    sample_weight = np.random.default_rng(7).uniform(0.0, 2.0, size=30)
    sample_weight[0] = 0.0
    originals = [a.copy() for a in (X, Y, sample_weight, X_query)]

    reg = NadarayaWatsonRegressor(kernel=kernel, bandwidth=[0.5, 1.0, 2.0])
    reg.fit(X, Y, sample_weight=sample_weight)
    reg.predict(X_query)
    reg.attention_weights(X_query)
    reg.score(X_query, reg.predict(X_query) + 1.0)

    for before, after in zip(originals, (X, Y, sample_weight, X_query)):
        assert_array_equal(after, before)
        assert after.dtype == before.dtype


# --------------------------------------------------------------------------
# Zero total weight under a compact kernel


@pytest.mark.parametrize("kernel", ["tophat", "epanechnikov", "tricube"])
def test_far_query_gets_nearest_target(kernel):
    X = np.array([[0.0, 0.0], [1.0, 0.5], [5.0, 5.0]])
    y = np.array([[1.0, -1.0], [2.0, -2.0], [3.0, -3.0]])
    reg = NadarayaWatsonRegressor(kernel=kernel, bandwidth=0.3).fit(X, y)
    X_query = np.array([[-50.0, -40.0], [80.0, 90.0], [3.0, 0.5]])
    assert_array_equal(reg.predict(X_query), y[[0, 2, 1]])
    assert_array_equal(reg.attention_weights(X_query), np.eye(3)[[0, 2, 1]])


@pytest.mark.parametrize(
    "X",
    [
        pytest.param([[-1.0], [1.0], [10.0]], id="pair_and_far"),
        pytest.param([[0.0], [2.0], [7.3]], id="shifted_pair"),
    ],
)
def test_far_query_between_two_nearest_gets_their_mean(X):
    # Exactly halfway between samples 0 and 1, more than one width from both:
    # the nearest training samples tie and share the weight, as the Gaussian's
    # limit does.
    X = np.array(X)
    y = np.array([0.0, 1.0, 5.0])
    X_query = (X[:1] + X[1:2]) / 2
    reg = NadarayaWatsonRegressor(kernel="tophat", bandwidth=0.5).fit(X, y)
    assert_array_equal(reg.predict(X_query), [0.5])
    assert_array_equal(reg.attention_weights(X_query), [[0.5, 0.5, 0.0]])
    gaussian = NadarayaWatsonRegressor(bandwidth=1e-3).fit(X, y)
    assert_allclose(gaussian.predict(X_query), [0.5], atol=1e-9)


@pytest.mark.parametrize("dtype, value", [(np.float64, 1e160), (np.float32, 1e20)])
def test_coordinates_whose_squares_overflow_are_refused(dtype, value):
    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]], dtype=dtype)
    y = np.array([0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="squared distances overflow"):
        far = np.vstack([X, [[value, 0.0]]]).astype(dtype)
        NadarayaWatsonRegressor().fit(far, [*y, 3.0])
    model = NadarayaWatsonRegressor().fit(X, y)
    with pytest.raises(ValueError, match="squared distances overflow"):
        model.predict(np.array([[value, 0.0]], dtype=dtype))
    # Just below the limit, predictions stay finite: the nearest sample's.
    limit = 1e150 if dtype == np.float64 else 1e18
    assert np.isfinite(model.predict(np.array([[limit, 0.0]], dtype=dtype))).all()


@pytest.mark.parametrize("kernel", ["tophat", "boxcar", "constant"])
def test_learning_a_flat_kernel_is_refused(kernel):
    X = np.linspace(0, 1, 20)[:, None]
    with pytest.raises(ValueError, match="piecewise constant in the width"):
        NadarayaWatsonRegressorCV(kernel=kernel).fit(X, X[:, 0])


def test_coordinate_limit_follows_the_compute_dtype_and_the_features():
    X = np.array([[0.0], [1e19]])
    model = NadarayaWatsonRegressor(bandwidth=1e18).fit(X, [0.0, 1.0])
    # float32 queries against float64 data compute in float64.
    assert np.isfinite(model.predict(X.astype(np.float32))).all()
    wide = np.full((3, 400), 9e17, dtype=np.float32)
    wide[1] *= -1
    with pytest.raises(ValueError, match="squared distances overflow"):
        NadarayaWatsonRegressor(bandwidth=1e18).fit(wide, [0.0, 1.0, 2.0])


@pytest.mark.parametrize(
    "change",
    [
        {"kernel": "epanechnikov"},
        {"kernel": lambda u: np.exp(-u)},
        {"adaptive": "sample"},
        {"adaptive": "query"},
        {"n_neighbors": 3},
        {"truncation": 1e-3},
        {"algorithm": "tree", "kernel": "biweight"},
    ],
)
@pytest.mark.parametrize("start", [{}, {"adaptive": "query"}, {"kernel": "tricube"}])
def test_prediction_uses_the_configuration_fit_saw(change, start):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = np.sin(X[:, 0])
    queries = rng.normal(size=(10, 2))
    model = NadarayaWatsonRegressor(bandwidth=0.8, **start).fit(X, y)
    before = model.predict(queries)
    attention = model.attention_weights(queries)
    model.set_params(**change)
    assert_allclose(model.predict(queries), before, rtol=1e-12)
    assert_allclose(model.attention_weights(queries), attention, rtol=1e-12)
    # The next fit takes the new configuration.
    refit = NadarayaWatsonRegressor(bandwidth=0.8, **{**start, **change})
    assert_allclose(model.fit(X, y).predict(queries), refit.fit(X, y).predict(queries))


@pytest.mark.parametrize(
    "y",
    [
        np.array(["a", "b", "c", "d"]),
        np.array([b"a", b"b", b"c", b"d"]),
        np.array(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04"], "M8[D]"),
        np.array([1, 2, 3, 4], dtype="m8[s]"),
    ],
)
@pytest.mark.parametrize(
    "estimator", [NadarayaWatsonRegressor, NadarayaWatsonRegressorCV]
)
def test_non_numeric_targets_are_refused_at_fit(estimator, y):
    X = np.arange(4.0)[:, None]
    with pytest.raises(ValueError, match="needs numeric targets; got y of dtype"):
        estimator().fit(X, y)

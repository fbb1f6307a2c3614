"""Fused Triton kernels against the dense float64 reference.

Triton reads TRITON_INTERPRET once, when it is first imported, which sknw
defers to the first kernel launch. Without a GPU this module imports Triton
under its interpreter (restoring the variable at once), and the kernels run
on CPU tensors; no other test file launches them. With a GPU the same tests
run compiled on CUDA tensors.
"""

import sys
import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from sknw import (
    NadarayaWatsonClassifier,
    NadarayaWatsonClassifierCV,
    NadarayaWatsonRegressorCV,
    _triton,
)
from sknw._engine import nadaraya_watson
from sknw._kernels import KERNELS
from sknw._loo_objective import LeaveOneOutObjective, _use_fused

from ._reference import (
    KERNELS_NUMPY,
    LOG_KERNELS,
    loo_predictions_slow,
    loo_squared_error_slow,
    nadaraya_watson_slow,
)

with pytest.MonkeyPatch.context() as patch:
    if "triton" not in sys.modules and not torch.cuda.is_available():
        patch.setenv("TRITON_INTERPRET", "1")
    pytest.importorskip("triton")

AVAILABLE, REASON = _triton.triton_available()
if not AVAILABLE:
    pytest.skip(REASON, allow_module_level=True)
DEVICE = torch.device("cpu" if _triton._interpreting() else "cuda")

NAMES = sorted(KERNELS_NUMPY)
COMPACT = [name for name in NAMES if KERNELS[name].compact]
# Kernels whose leave-one-out loss depends on the bandwidth.
LEARNABLE = [name for name in NAMES if name not in ("tophat", "constant")]


@pytest.fixture
def forced(monkeypatch):
    """Fused objectives and predictions on the CPU too (under the
    interpreter)."""
    monkeypatch.setattr(_triton, "fused_device", lambda device: True)


def tensor(array):
    return torch.as_tensor(array, dtype=torch.float32, device=DEVICE)


def dyadic_points(rng, n_points, n_features):
    """Points on a grid of powers of 2, with u^2 of order 1 between them.

    Their squared distances are exact in float32, so points one width apart
    sit exactly on a compact kernel's edge in both precisions.
    """
    denominator = 2.0 ** np.round(np.log2(np.sqrt(24 * n_features)))
    return rng.integers(-8, 9, size=(n_points, n_features)) / denominator


def prediction_problem(n_features, n_values, seed=0):
    """Queries and keys with duplicates, points one width apart, a far query."""
    rng = np.random.default_rng(seed)
    keys = dyadic_points(rng, 70, n_features)
    keys[1] = keys[0]
    keys[2] = keys[0]
    queries = dyadic_points(rng, 40, n_features)
    queries[0] = keys[0]
    queries[1] = keys[3]
    queries[1, 0] += 1.0
    queries[2] = keys[4]
    queries[2, -1] -= 1.0
    queries[3] = 10.0
    y = rng.uniform(1.0, 2.0, size=(70, n_values))
    sample_weight = rng.uniform(0.5, 2.0, size=70)
    return queries, keys, y, sample_weight


def fused(queries, keys, y, sample_weight, kernel):
    """The kernels' outputs for values [w * y, w], in float64 NumPy."""
    values = np.column_stack([y * sample_weight[:, None], sample_weight])
    outputs = _triton.fused_partial_sums(
        tensor(queries), tensor(keys), tensor(values), kernel
    )
    for output in outputs:
        assert output.dtype == torch.float32 and output.device == DEVICE
    return [output.cpu().numpy().astype(np.float64) for output in outputs]


def max_relative_error(actual, expected):
    return np.max(np.abs(actual - expected) / np.abs(expected))


@pytest.mark.parametrize("kernel", NAMES)
@pytest.mark.parametrize("n_features", [1, 8, 32])
@pytest.mark.parametrize("n_values", [1, 3])
def test_partial_sums_match_reference(kernel, n_features, n_values):
    queries, keys, y, sample_weight = prediction_problem(n_features, n_values)
    row_max, sums, min_sq = fused(queries, keys, y, sample_weight, kernel)
    assert sums.shape == (len(queries), n_values + 1)

    sq = ((queries[:, None, :] - keys[None, :, :]) ** 2).sum(axis=-1)
    assert_array_equal(min_sq, sq.min(axis=1))
    u = np.sqrt(sq)
    if kernel in LOG_KERNELS:
        log_weights = LOG_KERNELS[kernel](u)
        expected_max = log_weights.max(axis=1)
        assert_allclose(row_max, expected_max, rtol=1e-6)
        weights = np.exp(log_weights - expected_max[:, None])
    else:
        assert_array_equal(row_max, 0.0)
        weights = KERNELS_NUMPY[kernel](u)
    expected_totals = weights @ sample_weight
    totals = sums[:, -1]
    reached = expected_totals > 0
    # Compact kernels: the far query reaches no key; the others reach some.
    assert reached[3] == (kernel not in COMPACT)
    assert reached[0]
    assert_array_equal(sums[~reached], 0.0)
    assert max_relative_error(totals[reached], expected_totals[reached]) <= 1e-5

    expected = nadaraya_watson_slow(queries, keys, y, 1.0, kernel, sample_weight)
    predictions = sums[reached, :-1] / totals[reached, None]
    assert max_relative_error(predictions, expected[reached]) <= 1e-5


def test_points_one_width_apart_get_no_compact_weight():
    keys = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.5, 0.5]])
    queries = np.array([[0.0, 0.0]])
    ones = np.ones(len(keys))
    for kernel in COMPACT:
        _, sums, min_sq = fused(queries, keys, ones[:, None], ones, kernel)
        expected = KERNELS_NUMPY[kernel](np.array([0.0, 1.0, 1.0, np.sqrt(0.5)]))
        assert expected[1] == expected[2] == 0.0
        assert sums[0, -1] == pytest.approx(expected.sum(), rel=1e-6)
        assert min_sq[0] == 0.0


def test_tophat_band_below_its_edge_has_no_weight():
    # Keys at u = 1 - 2^-22 and u = 1 - 2^-19 (float32 values): the first is
    # within the top-hat's band of a relative 2^-21 below u = 1, which has
    # weight 0 on the torch paths too; the second is inside.
    keys = np.array([[1.0 - 2.0**-22], [1.0 - 2.0**-19], [8.0]])
    queries = np.zeros((1, 1))
    values = np.ones((len(keys), 1))
    _, sums, _ = fused(queries, keys, values, np.ones(len(keys)), "tophat")
    assert sums[0, -1] == 1.0
    engine = nadaraya_watson(
        queries.astype(np.float32),
        keys.astype(np.float32),
        np.array([[1.0], [2.0], [3.0]]),
        bandwidth=1.0,
        kernel="tophat",
    )
    assert engine[0, 0] == 2.0


@pytest.mark.parametrize("alias", ["boxcar", "uniform", "triangular", "quartic"])
def test_aliases_compute_their_kernel(alias):
    queries, keys, y, sample_weight = prediction_problem(2, 1)
    canonical = KERNELS[alias].function.__name__
    expected = fused(queries, keys, y, sample_weight, canonical)
    for output, reference in zip(
        fused(queries, keys, y, sample_weight, alias), expected
    ):
        assert_array_equal(output, reference)


@pytest.mark.parametrize("kernel", ["gaussian", "exponential", "biweight"])
def test_many_value_columns_take_the_matrix_product(kernel):
    n_classes = 12
    assert n_classes + 1 >= _triton._DOT_MIN_VALUES
    queries, keys, _, sample_weight = prediction_problem(8, 1, seed=1)
    labels = np.random.default_rng(2).integers(0, n_classes, size=len(keys))
    one_hot = np.eye(n_classes)[labels]
    _, sums, _ = fused(queries, keys, one_hot, sample_weight, kernel)
    reached = sums[:, -1] > 0
    proba = sums[reached, :-1] / sums[reached, -1:]
    expected = nadaraya_watson_slow(queries, keys, one_hot, 1.0, kernel, sample_weight)
    assert_allclose(proba, expected[reached], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kernel", ["gaussian", "exponential"])
def test_tiny_bandwidth_stays_finite(kernel):
    queries, keys, y, sample_weight = prediction_problem(8, 1, seed=3)
    width = 1e-3
    row_max, sums, min_sq = fused(
        queries / width, keys / width, y, sample_weight, kernel
    )
    assert np.all(np.isfinite(sums)) and np.all(sums[:, -1] > 0)
    # Weights of e^-100 and less, and the nearest key at weight 1.
    assert np.median(row_max) < -100
    assert_allclose(row_max, LOG_KERNELS[kernel](np.sqrt(min_sq)), rtol=1e-6)
    expected = nadaraya_watson_slow(queries, keys, y, width, kernel, sample_weight)
    assert max_relative_error(sums[:, :-1] / sums[:, -1:], expected) <= 1e-5


def test_refuses_what_it_cannot_compute():
    points = tensor(np.zeros((3, 2)))
    values = tensor(np.ones((3, 1)))
    with pytest.raises(TypeError, match="float32"):
        _triton.fused_partial_sums(points.double(), points, values, "gaussian")
    with pytest.raises(ValueError, match="epanechnikov"):
        _triton.fused_partial_sums(points, points, values, "nonsense")
    assert not _triton.supports_kernel(np.exp)


def test_availability_follows_how_triton_was_imported(monkeypatch):
    # The setting at Triton's import counts, not the variable now.
    monkeypatch.setenv("TRITON_INTERPRET", "0" if _triton._interpreting() else "1")
    assert _triton.triton_available() == (True, "")
    assert _triton._interpreting() == (DEVICE.type == "cpu")


def loo_problem(n_samples, n_features, loss, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features)) * np.linspace(0.5, 2, n_features)
    # Duplicates: u = 0 off the diagonal, where u's own slope is infinite.
    X[1] = X[0]
    y = np.sin(X[:, 0]) + 0.5 * X[:, -1] + rng.normal(0, 0.2, n_samples)
    if loss == "squared_error":
        values = np.column_stack([y + 10.0, np.cos(y)])
    else:
        values = np.eye(3)[np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))]
    # Below 1, each left-out row keeps none of its own weight: the fused
    # kernels' case.
    sample_weight = rng.uniform(0.3, 1.0, size=n_samples)
    return X, values, sample_weight


def loo_objective(X, values, kernel, loss, sample_weight, device="cpu", **widths):
    return LeaveOneOutObjective(
        X,
        values,
        kernel=kernel,
        loss=loss,
        sample_weight=sample_weight,
        device=torch.device(device),
        **widths,
    )


def fused_and_float64(X, values, kernel, loss, sample_weight, log_bandwidth, rows):
    """Loss and gradient from the fused kernels and from the float64 path."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_triton, "fused_device", lambda device: True)
        fused = loo_objective(X, values, kernel, loss, sample_weight, DEVICE)
        assert fused.fused
        fused_result = fused(log_bandwidth, rows)
    float64 = loo_objective(X, values, kernel, loss, sample_weight)
    assert not float64.fused
    return fused_result, float64(log_bandwidth, rows)


# The reference evaluates the cosine at the masked diagonal's u = inf.
@pytest.mark.filterwarnings("ignore:invalid value encountered in cos")
@pytest.mark.parametrize("kernel", LEARNABLE)
@pytest.mark.parametrize("per_feature", [False, True])
@pytest.mark.parametrize("loss", ["squared_error", "log_loss"])
def test_loo_loss_and_gradient_match_float64(kernel, per_feature, loss):
    n_features = 4
    X, values, sample_weight = loo_problem(80, n_features, loss)
    widths = np.linspace(0.8, 1.6, n_features) if per_feature else np.array([1.3])
    if KERNELS[kernel].compact:
        widths = 2 * widths
    (loss_fused, gradient_fused), (loss_64, gradient_64) = fused_and_float64(
        X, values, kernel, loss, sample_weight, np.log(widths), None
    )
    assert loss_fused == pytest.approx(loss_64, rel=1e-5)
    assert gradient_fused.shape == widths.shape
    scale = np.abs(gradient_64).max()
    assert scale > 0
    assert_allclose(gradient_fused, gradient_64, rtol=0, atol=5e-5 * scale)
    if loss == "squared_error":
        bandwidth = widths if per_feature else widths[0]
        expected = loo_squared_error_slow(X, values, bandwidth, kernel, sample_weight)
        assert loss_fused == pytest.approx(expected, rel=1e-5)
    else:
        bandwidth = widths if per_feature else widths[0]
        proba = loo_predictions_slow(X, values, bandwidth, kernel, sample_weight)
        log_loss = -np.log(np.maximum((proba * values).sum(axis=1), 2**-52))
        expected = np.average(log_loss, weights=sample_weight)
        assert loss_fused == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("n_features", [1, 8, 32])
def test_loo_gradient_over_feature_blocks(n_features):
    X, values, sample_weight = loo_problem(70, n_features, "squared_error", seed=1)
    log_bandwidth = np.log(np.geomspace(0.7, 3.0, n_features) * np.sqrt(n_features))
    rows = np.arange(3, 70, 2)
    (loss_fused, gradient_fused), (loss_64, gradient_64) = fused_and_float64(
        X, values, "gaussian", "squared_error", sample_weight, log_bandwidth, rows
    )
    assert loss_fused == pytest.approx(loss_64, rel=1e-5)
    scale = np.abs(gradient_64).max()
    assert_allclose(gradient_fused, gradient_64, rtol=0, atol=5e-5 * scale)


@pytest.mark.parametrize("n_classes", [3, 12])
def test_loo_log_loss_with_many_classes(n_classes):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(90, 3))
    labels = np.floor((X[:, 0] + 3) * n_classes / 6).clip(0, n_classes - 1)
    one_hot = np.eye(n_classes)[labels.astype(int)]
    (loss_fused, gradient_fused), (loss_64, gradient_64) = fused_and_float64(
        X, one_hot, "gaussian", "log_loss", None, np.log([0.5, 1.0, 2.0]), None
    )
    assert loss_fused == pytest.approx(loss_64, rel=1e-5)
    scale = np.abs(gradient_64).max()
    assert_allclose(gradient_fused, gradient_64, rtol=0, atol=5e-5 * scale)


@pytest.mark.parametrize("kernel", ["epanechnikov", "tricube"])
def test_loo_rows_out_of_reach_take_the_nearest(kernel):
    X, values, sample_weight = loo_problem(60, 2, "squared_error", seed=2)
    X[10] = [30.0, 30.0]
    X[11] = [30.0, 31.5]
    X[12] = [30.0, 28.0]
    log_bandwidth = np.log([0.5, 0.7])
    (loss_fused, gradient_fused), (loss_64, gradient_64) = fused_and_float64(
        X, values, kernel, "squared_error", sample_weight, log_bandwidth, None
    )
    predictions = loo_predictions_slow(X, values, np.exp(log_bandwidth), kernel)
    # Samples 10 to 12 reach nobody and take their nearest one's values.
    assert_allclose(predictions[10:13], values[[11, 10, 10]])
    assert loss_fused == pytest.approx(loss_64, rel=1e-5)
    scale = np.abs(gradient_64).max()
    assert_allclose(gradient_fused, gradient_64, rtol=0, atol=5e-5 * scale)


@pytest.mark.parametrize("kernel", ["tophat", "constant"])
def test_loo_flat_kernels_have_no_gradient(forced, kernel):
    X, values, sample_weight = loo_problem(50, 2, "squared_error")
    objective = loo_objective(X, values, kernel, "squared_error", sample_weight, DEVICE)
    assert objective.fused
    loss, gradient = objective(np.log([1.0, 2.0]))
    assert_array_equal(gradient, 0.0)
    expected = loo_squared_error_slow(X, values, [1.0, 2.0], kernel, sample_weight)
    assert loss == pytest.approx(expected, rel=1e-5)


def test_local_widths_stay_on_the_float64_path(forced):
    X, values, sample_weight = loo_problem(20, 2, "squared_error")
    local = np.linspace(0.5, 1.5, len(X))
    for widths in ({"key_widths": local}, {"query_widths": local}):
        objective = loo_objective(
            X, values, "gaussian", "squared_error", sample_weight, **widths
        )
        assert not objective.fused


def test_weights_above_1_stay_on_the_float64_path(forced):
    X, values, sample_weight = loo_problem(20, 2, "squared_error")
    sample_weight[3] = 2.0
    objective = loo_objective(X, values, "gaussian", "squared_error", sample_weight)
    assert not objective.fused


def test_prediction_warns_once_without_triton(monkeypatch):
    monkeypatch.setattr(
        _triton, "triton_available", lambda: (False, "Triton is not installed")
    )
    monkeypatch.setattr(_triton, "fused_device", lambda device: True)
    monkeypatch.setattr(_triton, "_WARNED", set())
    fallback = "Predictions are computed chunk by chunk with torch instead."
    with pytest.warns(UserWarning, match="Triton is not installed"):
        assert not _triton.use_fused(torch.device("cuda"), "gaussian", fallback)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not _triton.use_fused(torch.device("cuda"), "gaussian", fallback)
        assert not _triton.use_fused(torch.device("cpu"), "gaussian", "other")
    # The routing takes an absent CUDA device for what it is.
    monkeypatch.undo()
    if not torch.cuda.is_available():
        assert not _triton.fused_device(torch.device("cuda"))


def test_missing_triton_on_cuda_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setattr(
        _triton, "triton_available", lambda: (False, "Triton is not installed")
    )
    monkeypatch.setattr(_triton, "fused_device", lambda device: device.type == "cuda")
    monkeypatch.setattr(_triton, "_WARNED", set())
    with pytest.warns(UserWarning, match="Triton is not installed"):
        assert not _use_fused(torch.device("cuda"), "gaussian")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Once per process, as prediction warns.
        assert not _use_fused(torch.device("cuda"), "gaussian")
        assert not _use_fused(torch.device("cpu"), "gaussian")


@pytest.mark.skipif(DEVICE.type == "cuda", reason="the CPU fit learns in float64")
def test_learned_bandwidth_matches_float64(monkeypatch):
    X, values, _ = loo_problem(60, 2, "squared_error", seed=5)
    y = values[:, 0]
    expected = NadarayaWatsonRegressorCV(bandwidth=[1.0, 1.0]).fit(X, y)
    routing = _triton.fused_device
    monkeypatch.setattr(_triton, "fused_device", lambda device: True)
    model = NadarayaWatsonRegressorCV(bandwidth=[1.0, 1.0]).fit(X, y)
    assert_allclose(model.bandwidth_, expected.bandwidth_, rtol=1e-3)
    assert model.loss_curve_[-1] == pytest.approx(expected.loss_curve_[-1], rel=1e-5)

    labels = (y > np.median(y)).astype(int)
    classifier = NadarayaWatsonClassifierCV(solver="adam", random_state=0)
    classifier.fit(X, labels)
    monkeypatch.setattr(_triton, "fused_device", routing)
    reference = NadarayaWatsonClassifierCV(solver="adam", random_state=0)
    reference.fit(X, labels)
    assert classifier.bandwidth_ == pytest.approx(reference.bandwidth_, rel=1e-3)


@pytest.mark.cuda
@pytest.mark.skipif(DEVICE.type != "cuda", reason="needs compiled Triton on CUDA")
@pytest.mark.parametrize("kernel", ["gaussian", "exponential", "tricube"])
@pytest.mark.parametrize("loss", ["squared_error", "log_loss"])
def test_cuda_objective_is_fused_over_many_blocks(kernel, loss):
    X, values, sample_weight = loo_problem(3000, 5, loss)
    log_bandwidth = np.log(np.linspace(0.3, 0.6, 5))
    on_cuda = loo_objective(X, values, kernel, loss, sample_weight, "cuda")
    assert on_cuda.fused
    loss_cuda, gradient_cuda = on_cuda(log_bandwidth)
    loss_cpu, gradient_cpu = loo_objective(X, values, kernel, loss, sample_weight)(
        log_bandwidth
    )
    assert loss_cuda == pytest.approx(loss_cpu, rel=1e-5)
    scale = np.abs(gradient_cpu).max()
    assert_allclose(gradient_cuda, gradient_cpu, rtol=0, atol=5e-5 * scale)


@pytest.mark.cuda
@pytest.mark.skipif(DEVICE.type != "cuda", reason="needs compiled Triton on CUDA")
def test_cuda_regressor_learns_the_float64_bandwidth():
    X, values, _ = loo_problem(500, 3, "squared_error", seed=6)
    y = values[:, 0]
    settings = dict(bandwidth=[1.0, 1.0, 1.0])
    on_cuda = NadarayaWatsonRegressorCV(device="cuda", **settings).fit(X, y)
    on_cpu = NadarayaWatsonRegressorCV(**settings).fit(X, y)
    assert_allclose(on_cuda.bandwidth_, on_cpu.bandwidth_, rtol=1e-3)


@pytest.mark.parametrize("kernel", NAMES)
def test_engine_routes_float32_through_the_fused_kernel(forced, kernel, monkeypatch):
    from sknw import _engine

    calls = []
    original = _triton.fused_partial_sums

    def record(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(_triton, "fused_partial_sums", record)
    queries, keys, y, sample_weight = prediction_problem(3, 2)
    sample_weight[:5] = 0.0
    bandwidth = np.array([0.8, 1.0, 1.3])
    got = _engine.nadaraya_watson(
        queries.astype(np.float32),
        keys.astype(np.float32),
        y,
        bandwidth=bandwidth,
        kernel=kernel,
        sample_weight=sample_weight,
    )
    assert calls, "the fused kernel was not called"
    assert got.dtype == np.float32
    expected = nadaraya_watson_slow(queries, keys, y, bandwidth, kernel, sample_weight)
    assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(y).max())


def test_estimators_predict_through_the_fused_kernel(forced):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 2)).astype(np.float32)
    y = np.where(X[:, 0] > 0, "right", "left")
    queries = np.vstack([rng.normal(size=(20, 2)), [[40.0, 40.0]]]).astype(np.float32)
    for kernel in ("gaussian", "epanechnikov"):
        classifier = NadarayaWatsonClassifier(kernel=kernel, bandwidth=0.7).fit(X, y)
        got = classifier.predict_proba(queries)
        expected = classifier.predict_proba(queries.astype(np.float64))
        assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        assert_array_equal(
            classifier.predict(queries), classifier.predict(queries.astype(np.float64))
        )


def test_a_loss_asked_for_alone_after_a_fused_gradient_is_float64(forced):
    # The fused kernels' float32 loss is not remembered as the loss: asked
    # for alone, at the same width, it is computed in float64.
    X, values, _ = loo_problem(60, 2, "squared_error", seed=5)
    log_bandwidth = np.log([0.8, 1.1])
    fused = loo_objective(X, values, "gaussian", "squared_error", None, DEVICE)
    assert fused.fused
    fused(log_bandwidth)
    alone = fused.evaluate(log_bandwidth, order=0)[0]
    expected = loo_squared_error_slow(X, values, np.exp(log_bandwidth), "gaussian")
    assert alone == pytest.approx(expected, rel=1e-12)

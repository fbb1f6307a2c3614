"""The leave-one-out loss of one feature over bands of neighbours in sorted
order (sknw._loo_band), against NumPy and against the whole rows."""

import math
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from sklearn import config_context

from sknw import NadarayaWatsonClassifierCV, NadarayaWatsonRegressorCV
from sknw._loo_band import LineBand
from sknw._loo_objective import LeaveOneOutObjective

from ._reference import loo_log_loss_slow, loo_squared_error_slow

# Little enough working memory that 400 samples' distances are not kept and
# their rows come in several chunks: the bands serve them.
SMALL_MEMORY = 1


def line_problem(loss, n_samples=400, seed=0):
    """One feature with ties, a cluster and frequency weights from 0.3 to 3."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n_samples) * 0.2
    x[: n_samples // 8] = x[n_samples // 8 : n_samples // 4]
    x[-20:] = 0.6 + 1e-3 * rng.normal(size=20)
    y = np.sin(6 * x) + 0.3 * rng.normal(size=n_samples)
    if loss == "squared_error":
        values = np.column_stack([y, np.cos(y)])
    else:
        values = np.eye(3)[np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))]
    sample_weight = rng.choice([0.3, 1.0, 1.5, 3.0], size=n_samples)
    return x[:, None], values, sample_weight


# The kernels that take bands: the Gaussian and the exponential to rounding,
# the compact ones exactly.
BANDED = ["gaussian", "exponential", "epanechnikov", "triweight", "linear", "cosine"]


def make_objective(X, values, loss, sample_weight, kernel="gaussian"):
    with config_context(working_memory=SMALL_MEMORY):
        return LeaveOneOutObjective(
            X,
            values,
            kernel=kernel,
            loss=loss,
            sample_weight=sample_weight,
            device=torch.device("cpu"),
        )


def numpy_loss(X, values, width, loss, sample_weight, kernel="gaussian"):
    if loss == "squared_error":
        return loo_squared_error_slow(X, values, width, kernel, sample_weight)
    labels = np.argmax(values, axis=1)
    return loo_log_loss_slow(X, labels, width, kernel, sample_weight)


@pytest.mark.parametrize(
    "kernel, loss",
    [
        ("gaussian", "squared_error"),
        ("gaussian", "log_loss"),
        ("exponential", "squared_error"),
        ("epanechnikov", "squared_error"),
        ("triweight", "log_loss"),
    ],
)
@pytest.mark.parametrize("width", [0.001, 0.004, 0.01])
def test_band_loss_and_derivatives_match_numpy(kernel, loss, width):
    if kernel == "exponential":
        # Its band reaches some 50 widths beyond the nearest sample.
        width /= 10
    X, values, sample_weight = line_problem(loss)
    loo = make_objective(X, values, loss, sample_weight, kernel)
    rows = np.arange(len(X))
    half_width = loo._line_band().half_widths(rows, [width])[0]
    # The band serves this width, and holds fewer than half the samples.
    assert half_width is not None and 2 * half_width + 1 < len(X) / 2
    log_width = math.log(width)
    value, gradient, second = loo.evaluate([log_width], order=2)
    assert value == pytest.approx(
        numpy_loss(X, values, width, loss, sample_weight, kernel), rel=1e-12
    )

    def at(log_width):
        return numpy_loss(X, values, math.exp(log_width), loss, sample_weight, kernel)

    step = 1e-5
    below, above = at(log_width - step), at(log_width + step)
    assert gradient[0] == pytest.approx((above - below) / (2 * step), rel=1e-6)
    # The second derivative on the gradient, checked above: differences of
    # the loss over a step this small would round to 1e-4 of it (and a
    # compact kernel's slope jumps at its edge: a step too small to cross
    # one).
    step = 1e-6 if kernel in ("gaussian", "exponential") else 1e-8
    slopes = [loo.evaluate([log_width + s], order=1)[1][0] for s in (-step, step)]
    assert second == pytest.approx((slopes[1] - slopes[0]) / (2 * step), rel=1e-5)


def whole_rows():
    """The objective with bands of neighbours turned off."""
    return mock.patch.object(LeaveOneOutObjective, "_line_band", return_value=None)


@pytest.mark.parametrize("kernel", BANDED)
@pytest.mark.parametrize("loss", ["squared_error", "log_loss"])
def test_band_gives_the_whole_rows_answers(kernel, loss):
    # At 1e-4 many rows reach no other sample under a compact kernel and
    # take the average of their nearest ones, ties (duplicated samples
    # beside them) included.
    X, values, sample_weight = line_problem(loss, seed=1)
    loo = make_objective(X, values, loss, sample_weight, kernel)
    rows = np.sort(np.random.default_rng(0).choice(len(X), 150, replace=False))
    for width in [1e-4, 0.003, 0.03]:
        for subset in [None, rows]:
            banded = loo.evaluate([math.log(width)], subset, order=2)
            loo._recent = []
            with whole_rows():
                whole = loo.evaluate([math.log(width)], subset, order=2)
            loo._recent = []
            assert banded[0] == pytest.approx(whole[0], rel=1e-13)
            assert banded[1][0] == pytest.approx(whole[1][0], rel=1e-11, abs=1e-15)
            assert banded[2] == pytest.approx(whole[2], rel=1e-11, abs=1e-15)


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov", "triweight"])
def test_band_scan_gives_each_widths_loss(kernel):
    X, values, sample_weight = line_problem("squared_error", seed=2)
    loo = make_objective(X, values, "squared_error", sample_weight, kernel)
    # From widths whose bands would hold every sample down to a tenth of the
    # closest spacing, coarse and fine steps, in one scan.
    grid = np.concatenate(
        [math.log(0.02) + math.log(2) * np.arange(-14, 7), [-3.9, -3.85, -3.8]]
    )
    rows = np.sort(np.random.default_rng(1).choice(len(X), 100, replace=False))
    for subset in [None, rows]:
        losses, row_losses = loo.losses_at(grid, subset, per_row=True)
        expected = [loo.evaluate([t], subset, order=0)[0] for t in grid]
        assert_allclose(losses, expected, rtol=1e-12)
        assert_allclose(row_losses.sum(axis=0), losses, rtol=1e-12)
        with whole_rows():
            assert_allclose(loo.losses_at(grid, subset), losses, rtol=1e-12)
        # The float32 copy ranks the same widths: within its rounding.
        assert_allclose(loo.in_float32().losses_at(grid, subset), losses, rtol=2e-5)


@settings(max_examples=90, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_samples=st.integers(128, 600),
    n_clusters=st.integers(1, 6),
    log_width=st.floats(-12, 0),
    ties=st.booleans(),
    reach=st.sampled_from(["gaussian", "exponential", "compact"]),
)
def test_samples_beyond_the_band_take_no_part(
    seed, n_samples, n_clusters, log_width, ties, reach
):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-0.5, 0.5, size=n_clusters)
    spreads = np.exp(rng.uniform(-9, -1, size=n_clusters))
    cluster = rng.integers(0, n_clusters, size=n_samples)
    x = centres[cluster] + spreads[cluster] * rng.normal(size=n_samples)
    if ties:
        fifth = n_samples // 5
        x[:fifth] = x[fifth : 2 * fifth]
    weighted = torch.ones((n_samples, 2), dtype=torch.float64)
    line = LineBand(x, weighted, reach)
    width = math.exp(log_width)
    half_width = line.half_widths(np.arange(n_samples), [width])[0]
    order = np.argsort(x, kind="stable")
    place = np.empty(n_samples, dtype=int)
    place[order] = np.arange(n_samples)
    distance = np.abs(x[:, None] - x[None, :])
    np.fill_diagonal(distance, np.inf)
    nearest = distance.min(axis=1, keepdims=True)
    # The samples each row needs: under the Gaussian and the exponential,
    # those whose weight over the row's largest is above
    # 2^-(53 + log2 n + 8), the sums' precision; under a compact kernel,
    # those within one width, and those as near as the nearest (whose
    # values a row that no sample reaches takes).
    bits = 53 + math.log2(n_samples) + 8
    if reach == "gaussian":
        log2_weights = -(distance**2 - nearest**2) / (2 * width**2 * math.log(2))
        needs = log2_weights > -bits
    elif reach == "exponential":
        needs = -(distance - nearest) / (width * math.log(2)) > -bits
    else:
        needs = (distance < width) | (distance <= nearest)
    offsets = np.abs(place[:, None] - place[None, :])
    needed = int(np.max(np.where(needs, offsets, 0)))
    if half_width is None:
        # Only where the band would hold more than half of the samples.
        assert 2 * needed + 1 > n_samples // 2 - 4
    else:
        assert half_width >= needed


@pytest.mark.parametrize(
    "estimator", [NadarayaWatsonRegressorCV, NadarayaWatsonClassifierCV]
)
def test_learning_over_bands_finds_the_whole_rows_width(estimator):
    rng = np.random.default_rng(3)
    X = rng.uniform(0, 5, size=(900, 1))
    y = np.sin(2 * X[:, 0]) + 0.4 * rng.normal(size=900)
    if estimator is NadarayaWatsonClassifierCV:
        y = (y > 0).astype(int)
    with config_context(working_memory=SMALL_MEMORY):
        banded = estimator(bandwidth=1.0).fit(X, y)
    with whole_rows():
        whole = estimator(bandwidth=1.0).fit(X, y)
    assert banded.bandwidth_ == pytest.approx(whole.bandwidth_, rel=1e-6)
    assert banded.loss_curve_[-1] == pytest.approx(whole.loss_curve_[-1], rel=1e-10)


@pytest.mark.parametrize(
    "kernel, scale, width",
    [
        ("biweight", 1.0, 1.5e-9),
        ("epanechnikov", 1e-7, 1e-12),
        ("gaussian", 1e-7, 2e-10),
    ],
)
def test_float32_band_derivatives_stay_finite_where_the_whole_rows_do(
    kernel, scale, width
):
    # Far below the samples' spacing: the padding's products, and the
    # Gaussian's scale squared, would overflow float32.
    x = np.random.default_rng(0).uniform(-1, 1, 400) * scale
    values = np.sin(x / x.std())[:, None]
    loo = make_objective(x[:, None], values, "squared_error", None, kernel)
    float32 = loo.in_float32()
    assert float32._line_band().half_widths(np.arange(400), [width])[0] is not None
    banded = float32.evaluate([math.log(width)], order=2)
    float32._recent = []
    with whole_rows():
        whole = float32.evaluate([math.log(width)], order=2)
    assert np.isfinite(whole[2])
    assert np.isfinite(banded[1][0]) and np.isfinite(banded[2])
    exact = loo.evaluate([math.log(width)], order=2)
    assert banded[2] == pytest.approx(exact[2], rel=1e-3, abs=1e-6 * abs(exact[0]))


def test_no_rows_take_the_whole_rows_answer():
    X, values, _ = line_problem("squared_error")
    loo = make_objective(X, values, "squared_error", None)
    rows = np.array([], dtype=int)
    with np.errstate(invalid="ignore"):
        banded = loo.evaluate([math.log(0.004)], rows, order=1)
        with whole_rows():
            whole = loo.evaluate([math.log(0.004)], rows, order=1)
    assert_allclose(banded[0], whole[0], equal_nan=True)
    assert_allclose(banded[1], whole[1], equal_nan=True)

"""The sweep over the kinks of a compact kernel's leave-one-out loss of one
width (the kernels that are a polynomial in a power of u, the cosine's
series among them), against NumPy and dense grids."""

import warnings

import numpy as np
import pytest
import sklearn
import torch
from numpy.testing import assert_allclose

import sknw._loo_kinks
from sknw import NadarayaWatsonClassifierCV, NadarayaWatsonRegressorCV
from sknw._kernels import KERNELS
from sknw._loo import _kink_sweep, log_width_bounds
from sknw._loo_kinks import (
    SERIES_KERNELS,
    SWEEP_NUMBERS,
    WINDOW_FRACTION,
    KinkSweep,
)

from ._reference import loo_log_loss_slow, loo_squared_error_slow
from .test_loo import objective as loo_objective
from .test_loo import random_problem


def small_problem(seed, loss="squared_error"):
    """15 to 90 rows, d from 1 to 3, some with coordinates on a lattice (ties
    among the distances), duplicated rows, frequency weights (some above 1)
    or local widths."""
    rng = np.random.default_rng(seed)
    n_samples = int(rng.integers(15, 90))
    n_features = int(rng.integers(1, 4))
    X = rng.normal(size=(n_samples, n_features))
    kind = seed % 5
    if kind == 1:
        X = np.round(X, 1)
    elif kind == 2:
        X[: n_samples // 4] = X[n_samples // 4 : 2 * (n_samples // 4)]
    if loss == "squared_error":
        values = np.sin(2 * X[:, :1]) + 0.3 * rng.normal(size=(n_samples, 1))
        if seed % 7 == 3:
            values = np.hstack([values, rng.normal(size=(n_samples, 1))])
    else:
        labels = (X[:, 0] + 0.5 * rng.normal(size=n_samples) > 0).astype(int)
        labels[rng.integers(0, n_samples, 3)] = 2
        values = np.eye(3)[labels]
    options = {"sample_weight": None}
    if kind == 3:
        options["sample_weight"] = rng.choice([0.5, 1.0, 2.0, 3.0], size=n_samples)
    elif kind == 4:
        role = "key_widths" if seed % 2 else "query_widths"
        options[role] = rng.uniform(0.5, 2.0, size=n_samples)
    return X, values, options


def reference(X, values, width, kernel, loss, options):
    """The NumPy leave-one-out loss of ``small_problem``'s outputs."""
    sample_weight = options["sample_weight"]
    widths = {k: v for k, v in options.items() if k != "sample_weight"}
    if loss == "squared_error":
        return loo_squared_error_slow(X, values, width, kernel, sample_weight, **widths)
    labels = np.argmax(values, axis=1)
    return loo_log_loss_slow(X, labels, width, kernel, sample_weight, **widths)


def objective(X, values, kernel, loss, options):
    return loo_objective(X, values, kernel, loss, **options)


@pytest.mark.parametrize("kernel", sorted(SERIES_KERNELS))
@pytest.mark.parametrize("loss", ["squared_error", "log_loss"])
def test_sweep_loss_and_slope_match_numpy(kernel, loss):
    # From prefix sums over each row's sorted distances, against the NumPy
    # reference and its central differences in the log-width, at widths from
    # below the nearest pair to beyond the diameter.
    for seed in range(5):
        X, values, options = small_problem(seed, loss)
        loo = objective(X, values, kernel, loss, options)
        sweep = KinkSweep(loo)
        widths = torch.as_tensor(np.exp(np.random.default_rng(seed).uniform(-4, 2, 6)))
        loss_values, slopes = sweep.terms(widths, sweep.counts(widths, closed=False))
        for width, value, slope in zip(widths.numpy(), loss_values, slopes):
            expected = reference(X, values, width, kernel, loss, options)
            assert float(value) == pytest.approx(expected, rel=1e-9, abs=1e-15)
            step = 1e-6
            numeric = (
                reference(X, values, width * np.exp(step), kernel, loss, options)
                - reference(X, values, width * np.exp(-step), kernel, loss, options)
            ) / (2 * step)
            assert float(slope) == pytest.approx(numeric, rel=1e-4, abs=1e-8)


def test_sweep_applies_to_small_problems_of_series_kernels_only():
    X, values, options = small_problem(0)
    for kernel in ("gaussian", "exponential"):
        assert (
            _kink_sweep(objective(X, values, kernel, "squared_error", options)) is None
        )
    for kernel in ("linear", "cosine"):
        assert _kink_sweep(objective(X, values, kernel, "squared_error", options))


def test_cosine_series_is_the_cosine_to_rounding():
    # The cosine's truncated Taylor series in s = u^2, and its derivative,
    # against NumPy's cosine and sine over [0, 1].
    series = SERIES_KERNELS["cosine"]
    u = np.linspace(0.0, 1.0, 1001)
    s = u**2
    powers = s[:, None] ** np.arange(len(series.coefficients))
    assert_allclose(powers @ series.coefficients, np.cos(np.pi * u / 2), atol=1e-15)
    slope = series.slope(torch.as_tensor(s)).numpy()
    expected = -np.pi / 4 * np.sinc(u / 2) * np.pi / 2
    assert_allclose(slope, expected, rtol=1e-12)
    assert_allclose(
        series.weight(torch.as_tensor(s)).numpy(), np.cos(np.pi * u / 2), atol=1e-15
    )


def test_sweep_is_left_out_where_its_powers_of_the_width_would_overflow():
    # Two samples 2^-52 apart, on data of extent 1: the cosine's sums take
    # (1 / h^2)^11 at that distance, about e^793, near float64's limit
    # (e^709); Epanechnikov's first power stays far within range.
    rng = np.random.default_rng(0)
    X = np.concatenate([[[0.25], [0.25 + 2.0**-52]], rng.uniform(size=(30, 1))])
    values = rng.normal(size=(32, 1))
    none = {"sample_weight": None}
    assert _kink_sweep(objective(X, values, "cosine", "squared_error", none)) is None
    assert _kink_sweep(objective(X, values, "epanechnikov", "squared_error", none))


def test_sweep_size_counts_rows_kinks_degree_and_classes():
    # At most SWEEP_NUMBERS gathered numbers: (M + 1) (n_values + 1) for each
    # (row, kink) pair of the window, which holds every kink on small
    # problems and at least WINDOW_FRACTION of them on larger ones.
    rng = np.random.default_rng(0)
    none = {"sample_weight": None}

    def problem(n_samples, kernel, loss="squared_error", n_classes=3):
        X = rng.normal(size=(n_samples, 2))
        values = rng.normal(size=(n_samples, 1))
        if loss == "log_loss":
            values = np.eye(n_classes)[np.arange(n_samples) % n_classes]
        return objective(X, values, kernel, loss, none)

    def every_kink(*args):
        loo = problem(*args)
        return KinkSweep.window(loo) == loo.n_samples * (loo.n_samples - 1) // 2

    def swept(*args):
        return _kink_sweep(problem(*args)) is not None

    assert every_kink(203, "epanechnikov") and not every_kink(204, "epanechnikov")
    assert every_kink(161, "triweight") and not every_kink(162, "triweight")
    assert every_kink(161, "linear", "log_loss")
    assert not every_kink(162, "linear", "log_loss")
    assert not every_kink(120, "linear", "log_loss", 10)
    assert swept(813, "epanechnikov") and not swept(814, "epanechnikov")
    assert swept(645, "triweight") and not swept(646, "triweight")
    assert not swept(500, "linear", "log_loss", 10)
    loo = problem(700, "biweight")
    window = KinkSweep.window(loo)
    assert window * 700 * 3 * 2 <= SWEEP_NUMBERS
    assert window >= WINDOW_FRACTION * 700 * 699 / 2
    # Its arrays within the memory budget (here about 5 MiB at 100 rows).
    assert swept(100, "epanechnikov")
    with sklearn.config_context(working_memory=2):
        assert not swept(100, "epanechnikov")
    # 3 rows, tricube (M = 3), one target: 3 kinks, (3 + 1) 2 numbers a
    # row at each.
    tiny = objective(
        np.zeros((3, 1)) + np.arange(3)[:, None],
        np.ones((3, 1)),
        "tricube",
        "squared_error",
        none,
    )
    assert KinkSweep.window(tiny) == KinkSweep.n_kinks(tiny) == 3 * 2 // 2
    assert KinkSweep._per_kink(tiny) == 3 * 4 * 2
    assert KinkSweep.window(tiny) * KinkSweep._per_kink(tiny) <= SWEEP_NUMBERS


@pytest.mark.parametrize("kernel", ["epanechnikov", "linear", "biweight", "cosine"])
@pytest.mark.parametrize("loss", ["squared_error", "log_loss"])
def test_slope_jumps_at_kinks_match_one_sided_differences(kernel, loss):
    # Where a pair enters at u = 1 with a weight of nonzero slope (M = 1,
    # and the cosine),
    # the loss has a corner: its slope jumps by the entering pairs' terms;
    # under the biweight the weight's slope is 0 there and nothing jumps.
    for seed in (0, 1, 3):
        X, values, options = small_problem(seed, loss)
        loo = objective(X, values, kernel, loss, options)
        sweep = KinkSweep(loo)
        kinks = sweep.kinks[sweep.kinks > 0]
        jumps = sweep._corner_jumps(kinks)
        gaps = torch.diff(torch.log(kinks))
        # Kinks at least 1e-4 from their neighbours in the log-width.
        isolated = torch.nonzero((gaps[:-1] > 1e-4) & (gaps[1:] > 1e-4))[:, 0] + 1
        for index in isolated[:: max(1, len(isolated) // 6)].tolist():
            width, step = float(kinks[index]), 1e-7

            def at(shift):
                return reference(
                    X, values, width * np.exp(shift), kernel, loss, options
                )

            jump = (at(step) - at(0.0)) / step - (at(0.0) - at(-step)) / step
            assert float(jumps[index]) == pytest.approx(jump, rel=1e-3, abs=1e-6)


@pytest.mark.parametrize("kernel", sorted(SERIES_KERNELS))
def test_sweep_minimum_is_the_dense_grid_minimum(kernel):
    # The lowest of the sweep's minima against 3,000 widths between the bounds
    # (the objective's loss): never above the grid's lowest point, and where
    # a grid point lies in the minimum's interval, within a hair of it.
    for seed in range(6):
        loss = "squared_error" if seed % 2 else "log_loss"
        X, values, options = small_problem(seed, loss)
        loo = objective(X, values, kernel, loss, options)
        lower, upper, _ = log_width_bounds(
            loo.X_numpy,
            KERNELS[kernel],
            False,
            options["sample_weight"],
            options.get("key_widths", options.get("query_widths")),
        )
        minima = KinkSweep(loo).minima(float(lower[0]), float(upper[0]))
        grid = np.linspace(lower[0], upper[0], 3000)
        best = loo.losses_at(grid).min()
        assert minima[0][0] <= best * (1 + 1e-9) + 1e-15
        point = minima[0][3]
        assert loo.evaluate([point], order=0)[0] == pytest.approx(
            minima[0][0], rel=1e-9, abs=1e-15
        )


@pytest.mark.parametrize("kernel", ["epanechnikov", "linear", "triweight"])
def test_learned_width_is_the_exact_minimum_on_rough_problems(kernel):
    # Small problems, whose loss dips between the scan's points and falls
    # into corners: the learned loss (NumPy's) is at or below the lowest of
    # 4,000 widths.
    for seed in range(8):
        rng = np.random.default_rng(seed)
        n_samples = int(rng.integers(20, 120))
        X = rng.normal(size=(n_samples, int(rng.integers(1, 4))))
        y = np.sin(2 * X[:, 0]) + rng.uniform(0.1, 1.0) * rng.normal(size=n_samples)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = NadarayaWatsonRegressorCV(kernel=kernel).fit(X, y)
        learned = loo_squared_error_slow(X, y, float(model.bandwidth_), kernel)
        assert learned == pytest.approx(model.loss_curve_[-1], rel=1e-9)
        loo = objective(X, y[:, None], kernel, "squared_error", {"sample_weight": None})
        scale = np.sqrt(((X.max(axis=0) - X.min(axis=0)) ** 2).sum())
        grid = np.linspace(np.log(scale * 1e-4), np.log(scale * 1e2), 4000)
        assert learned <= loo.losses_at(grid).min() * (1 + 1e-9), f"seed {seed}"


@pytest.mark.parametrize("kernel", ["epanechnikov", "linear", "biweight"])
@pytest.mark.parametrize("loss", ["squared_error", "log_loss"])
def test_a_window_of_kinks_finds_the_full_sweeps_minima_inside_it(
    kernel, loss, monkeypatch
):
    # With room for a quarter of the kinks, the sweep takes those nearest
    # the centre (here the whole sweep's lowest minimum): the minima it
    # finds are the whole sweep's that lie within the window's kinks, the
    # same losses at the same points.
    for seed in range(4):
        X, values, options = small_problem(seed, loss)
        loo = objective(X, values, kernel, loss, options)
        lower, upper = -20.0, 20.0
        whole = KinkSweep(loo).minima(lower, upper)
        kinks = KinkSweep(loo).kinks
        kinks = kinks[kinks > 0].numpy()
        n_columns = loo.weighted.shape[1]
        per_kink = loo.n_samples * len(SERIES_KERNELS[kernel].coefficients) * n_columns
        monkeypatch.setattr(
            sknw._loo_kinks, "SWEEP_NUMBERS", per_kink * (len(kinks) // 4)
        )
        sweep = KinkSweep(loo)
        window = KinkSweep.window(loo)
        assert window == len(kinks) // 4
        centre = min(m for m in whole if lower < m[3] < upper)[3]
        windowed = sweep.minima(lower, upper, centre)
        middle = np.searchsorted(kinks, np.exp(centre))
        first = min(max(middle - window // 2, 0), len(kinks) - window)
        stop = first + window
        # (Within a factor 2 of the centre.)
        first = max(first, np.searchsorted(kinks, np.exp(centre) / 2))
        stop = min(stop, np.searchsorted(kinks, np.exp(centre) * 2))
        low = np.log(kinks[first])
        high = np.log(kinks[stop]) if stop < len(kinks) else upper
        inside = [m for m in whole if low <= m[3] < high or first == m[3] - lower == 0]
        assert len(windowed) == len(inside) > 0
        for found, expected in zip(
            sorted(windowed, key=lambda m: m[3]), sorted(inside, key=lambda m: m[3])
        ):
            assert found[3] == pytest.approx(expected[3], abs=1e-12)
            assert found[0] == pytest.approx(expected[0], rel=1e-12)
        # The upper end of the range is no minimum of the window's.
        assert all(m[3] < upper for m in windowed)


def assert_learns_the_grid_minimum(X, y, kernel, loo):
    """The learned width's loss (NumPy's) is the loss curve's last entry,
    and at or below the lowest of 3,000 widths of ``loo``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = NadarayaWatsonRegressorCV(kernel=kernel).fit(X, y)
    learned = loo_squared_error_slow(X, y, float(model.bandwidth_), kernel)
    assert learned == pytest.approx(model.loss_curve_[-1], rel=1e-9)
    scale = np.sqrt(((X.max(axis=0) - X.min(axis=0)) ** 2).sum())
    grid = np.linspace(np.log(scale * 1e-5), np.log(scale * 10), 3000)
    assert learned <= loo.losses_at(grid).min() * (1 + 1e-9)


@pytest.mark.parametrize(("seed", "kernel"), [(52, "triweight"), (15, "epanechnikov")])
def test_a_window_of_kinks_finds_the_dip_beside_the_scans_basin(seed, kernel):
    # 222 and 300 rows, above the size of a sweep over every kink: the scan
    # refined a basin beside a narrow dip (triweight: 1.4 % lower, at a
    # width 1.3 times as large; Epanechnikov: 0.006 %). The kinks nearest
    # the refined width are swept and the dip is found: the learned loss
    # (NumPy's) is at or below the lowest of 3,000 widths.
    X, y = random_problem(seed)
    loo = objective(X, y[:, None], kernel, "squared_error", {"sample_weight": None})
    assert KinkSweep.window(loo) < loo.n_samples * (loo.n_samples - 1) // 2
    assert_learns_the_grid_minimum(X, y, kernel, loo)


def test_a_window_in_a_gap_between_kinks_sweeps_the_interval_across_it():
    # 241 rows, d = 3, one row far out: the distances within the bulk and
    # those to the far row leave a gap of more than a factor 4 between two
    # kinks. Centred there (as the scan's best point was), the window holds
    # the kink below the centre and the interval from it across the gap, no
    # kink within a factor 2 of the centre: its minima are the whole
    # sweep's in that interval. The fit finds the grid's minimum.
    kernel = "epanechnikov"
    X, y = random_problem(0)
    loo = objective(X, y[:, None], kernel, "squared_error", {"sample_weight": None})
    sweep = KinkSweep(loo)
    logs = torch.log(sweep.kinks[sweep.kinks > 0]).numpy()
    widest = int(np.argmax(np.diff(logs)))
    assert logs[widest + 1] - logs[widest] > 2 * np.log(2.0)
    centre = (logs[widest] + logs[widest + 1]) / 2
    windowed = sweep.minima(-50.0, 50.0, centre)
    assert sweep.covered == pytest.approx((logs[widest], logs[widest + 1]))
    whole = sweep.minima(-50.0, 50.0)
    inside = [m for m in whole if logs[widest] <= m[3] < logs[widest + 1]]
    assert sorted(windowed) == pytest.approx(sorted(inside))
    assert_learns_the_grid_minimum(X, y, kernel, loo)


@pytest.mark.parametrize("seed", [96, 74])
def test_with_one_iteration_the_loss_curve_ends_at_the_width_returned(seed):
    # max_iter=1: no iteration is left to refine or to report another
    # point; where the scan's best basin is left to the sweep, the width
    # returned is still the one whose loss the curve reported last (it was
    # an unrefined grid point of another basin, 33 % higher).
    X, y = random_problem(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = NadarayaWatsonRegressorCV(kernel="epanechnikov", max_iter=1).fit(X, y)
    learned = loo_squared_error_slow(X, y, float(model.bandwidth_), "epanechnikov")
    assert learned == pytest.approx(model.loss_curve_[-1], rel=1e-9)
    assert model.n_iter_ == 1


def test_classifier_learns_the_exact_minimum_of_its_log_loss():
    X, values, _ = small_problem(11, "log_loss")
    labels = np.argmax(values, axis=1)
    model = NadarayaWatsonClassifierCV(kernel="epanechnikov").fit(X, labels)
    learned = loo_log_loss_slow(X, labels, float(model.bandwidth_), "epanechnikov")
    loo = objective(X, values, "epanechnikov", "log_loss", {"sample_weight": None})
    scale = np.sqrt(((X.max(axis=0) - X.min(axis=0)) ** 2).sum())
    grid = np.linspace(np.log(scale * 1e-4), np.log(scale * 1e2), 4000)
    assert learned <= loo.losses_at(grid).min() * (1 + 1e-9)


@pytest.mark.parametrize("kernel", ["triweight", "tricube", "epanechnikov"])
def test_sums_just_past_a_kink_are_taken_pair_by_pair(kernel):
    # Just past the nearest pair's distance a row's only weights are tiny,
    # and its expansion's terms (of order 1) cancel to rounding: such rows'
    # sums come from their weights themselves.
    X, values, options = small_problem(1)
    loo = objective(X, values, kernel, "squared_error", options)
    sweep = KinkSweep(loo)
    kinks = sweep.kinks[sweep.kinks > 0]
    widths = kinks[:40] * (1 + 1e-7)
    losses, _ = sweep.terms(widths, sweep.counts(widths, closed=False))
    for width, value in zip(widths.numpy(), losses.numpy()):
        expected = reference(X, values, width, kernel, "squared_error", options)
        assert value == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("kernel", ["biweight", "triweight", "tricube", "epanechnikov"])
def test_a_dip_right_after_the_first_kink_is_found(kernel):
    # Pairs 1 apart, each row of weight 1 beside a copy of weight 1e-12 with
    # the other target, and pairs 1.001 apart of weight 2: just past a width
    # of 1 every row's neighbour enters and its prediction moves toward its
    # own target, before the pairs at 1.001 pull it away. Under a kernel whose
    # weight enters with slope 0, the slope right of the first kink is 0: the
    # loss still dips inside the interval, to 1e-11 of the scan's 0.19.
    xs, ys, weights, position = [], [], [], 0.0
    for group in range(10):
        for side in (0, 1):
            x = position + side
            if group < 5:
                xs += [x, x]
                ys += [0.0, 1.0]
                weights += [1.0, 1e-12]
            else:
                xs += [x]
                ys += [0.0 if side == 0 else 1.0]
                weights += [2.0]
        position += 2.001
    X, y, sample_weight = np.array(xs)[:, None], np.array(ys), np.array(weights)
    model = NadarayaWatsonRegressorCV(kernel=kernel).fit(
        X, y, sample_weight=sample_weight
    )
    learned = loo_squared_error_slow(X, y, model.bandwidth_, kernel, sample_weight)
    assert learned < 1e-11


def test_class_sums_just_past_a_kink_are_taken_pair_by_pair():
    # A class whose only weights in a row's support are tiny: its summed
    # weight cancels even where the row's total does not, and the log of its
    # probability needs it to its own precision.
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 2))
    labels = np.array([0, 1, 2] * 10)
    values = np.eye(3)[labels]
    loo = objective(X, values, "biweight", "log_loss", {"sample_weight": None})
    sweep = KinkSweep(loo)
    widths = sweep.kinks[sweep.kinks > 0] * (1 + 1e-9)
    losses, _ = sweep.terms(widths, sweep.counts(widths, closed=False))
    expected = [loo_log_loss_slow(X, labels, width, "biweight") for width in widths]
    assert_allclose(losses.numpy(), expected, rtol=1e-9)


def test_a_wide_interval_that_turns_twice_is_cut_into_pieces():
    # 59 rows of one feature: above the largest distance (a single interval
    # up to the upper bound, a factor e^18 wide) the biweight's loss dips
    # 0.05 % below the rest of it within 3e-4 of that kink, rises, then
    # falls to a second, higher minimum at 1.3 times the width. Checked only
    # at the interval's ends, the sweep saw one turn and missed the dip.
    X, y = random_problem(20)
    X = X[:, :1]
    loo = objective(X, y[:, None], "biweight", "squared_error", {"sample_weight": None})
    assert_learns_the_grid_minimum(X, y, "biweight", loo)


def test_a_centre_beyond_the_largest_kink_sweeps_the_kinks_below_it(monkeypatch):
    # 601 rows, too many for a sweep over every kink: the scan's best point
    # is on the plateau above the data's diameter, beyond every kink, and
    # the loss dips 0.07 % below that plateau just under the diameter,
    # between two points of the scan. The window of kinks is centred on the
    # largest kink instead: the learned loss is at or below the lowest of
    # 400 widths around the diameter.
    X, y = random_problem(9)
    X = X[:, :1]
    loo = objective(
        X, y[:, None], "epanechnikov", "squared_error", {"sample_weight": None}
    )
    assert KinkSweep.window(loo) < loo.n_samples * (loo.n_samples - 1) // 2
    centres = []
    minima = KinkSweep.minima

    def recorded(sweep, lower, upper, centre=None):
        centres.append((centre, float(torch.log(sweep.kinks[-1]))))
        return minima(sweep, lower, upper, centre)

    monkeypatch.setattr(KinkSweep, "minima", recorded)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = NadarayaWatsonRegressorCV(kernel="epanechnikov").fit(X, y)
    # (The premise: the scan's best point lay beyond the largest kink.)
    assert len(centres) == 1 and centres[0][0] > centres[0][1]
    learned = loo_squared_error_slow(X, y, float(model.bandwidth_), "epanechnikov")
    assert learned == pytest.approx(model.loss_curve_[-1], rel=1e-9)
    diameter = np.ptp(X)
    grid = np.log(diameter) + np.linspace(np.log(0.9), np.log(1.1), 400)
    assert learned <= loo.losses_at(grid).min() * (1 + 1e-9)


def test_a_flat_stretch_takes_one_of_the_basins_refined():
    # 241 rows of one feature whose loss barely beats predicting the mean:
    # the plateau above the diameter, where every grid point ties, is the
    # scan's best, and its points filled every slot of the basins refined,
    # leaving out a basin at a small width 0.006 % above the plateau on the
    # grid whose minimum is 0.01 % below it. One plateau is one basin now,
    # and a basin within 0.1 % of the best scan loss is refined.
    X, y = random_problem(0)
    X = X[:, :1]
    loo = objective(
        X, y[:, None], "epanechnikov", "squared_error", {"sample_weight": None}
    )
    assert_learns_the_grid_minimum(X, y, "epanechnikov", loo)


@pytest.mark.parametrize("kernel", ["epanechnikov", "cosine"])
def test_pieces_tile_the_intervals_with_the_slopes_at_their_ends(kernel):
    # Every interval between two kinks (and the last, up to the top) is cut
    # into pieces that follow one another end to end, the wide ones at
    # points inside; the slopes at the pieces' inner ends are the loss's
    # there, with the interval's support, and the widest interval has
    # points 2^-20 from either end.
    X, values, options = small_problem(2)
    loo = objective(X, values, kernel, "squared_error", options)
    sweep = KinkSweep(loo)
    kinks = sweep.kinks[sweep.kinks > 0]
    top = torch.tensor([float(kinks[-1]) * 50.0], dtype=kinks.dtype)
    ends = torch.cat([kinks, top])
    slope_in = sweep.terms(ends, sweep.counts(ends, closed=False))[1]
    slope_out = sweep.terms(kinks, sweep.counts(kinks))[1]
    low, high, left, right, support = sweep._pieces(
        kinks, ends, slope_out, slope_in[1:]
    )
    log_ends = torch.log(ends)
    interval = torch.searchsorted(kinks, support)
    assert torch.equal(kinks[interval], support)
    assert torch.all(high > low)
    # Each interval's pieces, in order, end to end, from its kink to the
    # next end.
    starts = torch.nonzero(torch.diff(interval, prepend=interval[:1] - 1))[:, 0]
    assert torch.equal(interval[starts], torch.arange(len(kinks)))
    assert torch.equal(low[starts], log_ends[:-1])
    joined = interval[1:] == interval[:-1]
    assert torch.equal(low[1:][joined], high[:-1][joined])
    stops = torch.cat([starts[1:] - 1, torch.tensor([len(low) - 1])])
    assert torch.equal(high[stops], log_ends[1:])
    assert torch.equal(left[starts], slope_out)
    assert torch.equal(right[stops], slope_in[1:])
    # The slopes at the inner ends: the loss's with the interval's support.
    inner = torch.nonzero(joined)[:, 0] + 1
    assert len(inner) > 0
    expected = sweep.terms(torch.exp(low[inner]), sweep.counts(support[inner]))[1]
    assert_allclose(left[inner], expected, rtol=1e-12, atol=1e-300)
    assert_allclose(right[inner - 1], expected, rtol=1e-12, atol=1e-300)
    last = interval == len(kinks) - 1
    assert float(low[last][1] - low[last][0]) == pytest.approx(2.0**-20, rel=1e-6)
    assert float(high[last][-1] - high[last][-2]) == pytest.approx(2.0**-20, rel=1e-6)

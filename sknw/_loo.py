"""Learning the bandwidth by minimising the leave-one-out loss."""

# Authors: the sknw developers
# License: BSD 3 clause

import functools
import math
import sys
import time
import warnings

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from sklearn import get_config
from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import NearestNeighbors
from sklearn.utils import check_random_state, gen_batches
from threadpoolctl import ThreadpoolController

from sknw._kernels import KERNELS
from sknw._loo_kinks import SERIES_KERNELS, WINDOW_FRACTION, KinkSweep
from sknw._loo_objective import LeaveOneOutObjective

# learning_rate="auto": a step on the relative loss's gradient (sgd), or a
# step of about this size in each log-width (adam).
LEARNING_RATES = {"sgd": 0.5, "adam": 0.05}

# batch_size="auto".
DEFAULT_BATCH_SIZE = 200

# The minibatch solvers stop once the exact loss has improved by less than
# tol (relative to the loss of predicting the mean) over this many epochs.
N_ITER_NO_CHANGE = 5

# Adam's decay rates of its running gradient moments.
_ADAM_BETAS = (0.9, 0.999)

# The one-width scan steps by this factor in the width.
_SCAN_FACTOR = 2.0

# Above this many times the data's diameter the loss approaches its limit
# (predicting the mean) as 1 / h^2: the scan stops there and adds the upper
# bound itself.
_SCAN_TOP = 64.0

# How many of the scan's local minima are refined: the best, and those
# whose scan loss is within this fraction of its distance to the loss of
# predicting the mean.
_N_BASINS = 3
_BASIN_MARGIN = 0.05

# The margin is at least this fraction of the best scan loss itself: where
# that loss is the one of predicting the mean (no width does much better),
# a basin a hair above it on the grid can hold a lower minimum.
_BASIN_FLOOR = 1e-3

# Where the rows squared are at most this (their total weight where larger,
# so that weights and repeated rows take the same search), and the
# objective takes a scan's
# widths in one pass (the Gaussian's), the scan steps by a quarter of
# _SCAN_FACTOR's logarithm everywhere above its knee: on a few dozen rows
# the loss can dip below its neighbours' within a factor 1.3 of the width
# (random problems of 22 and 42 rows did, 0.1-0.3 % below the loss at the
# coarse points around the dip), at a cost of under a millisecond.
_DENSE_SCAN_PAIRS = 2**14

# The scan steps by _SCAN_FACTOR from this factor below the median distance
# between nearest neighbours, and by its cube below that.
_SCAN_KNEE = 16.0

# The safeguarded search on one log-width stops when its bracket or its
# Newton step is below this.
_LOG_WIDTH_TOL = 1e-10

# A Newton step on the log-width this small is the last one taken: Newton's
# error after it is of the order of its square (1e-8 relative in the width),
# and the loss there within about 1e-16 of its minimum.
_LAST_NEWTON_STEP = 1e-4

# Relative rounding of a loss: differences below it are noise.
_LOSS_ROUNDING = 8 * np.finfo(np.float64).eps

# The one-width refinement steps to where the tangents at both ends of its
# bracket meet (a corner of the loss) once the bracket is this narrow, in
# log-width: wider, it may hold several kinks of a compact kernel's loss,
# and golden sections keep to the one the search is in.
_CORNER_BRACKET = 1e-3

# Golden section, for steps where Newton's is not safe.
_GOLDEN = (3 - math.sqrt(5)) / 2

# A log-weight gap of this much (e^-37 < 1e-16) makes a weight negligible
# next to another.
_NEGLIGIBLE_LOG_WEIGHT = 37.0

# L-BFGS-B tolerances on the loss relative to that of predicting the mean.
_LBFGS_GTOL = 1e-9
_LBFGS_FTOL = 1e-10

# A loss this small relative to that of predicting the mean ends the search:
# the left-out predictions are then exact as far as widths can tell.
_NEGLIGIBLE_RELATIVE_LOSS = 1e-8

# From 4 times this many rows, the one-width scan first leaves out a
# subsample of a quarter of them, at most _SUBSAMPLE_ROWS (see
# _Search.one_width).
_SCAN_ROWS = 250

# A slope and a curvature of a per-feature width this small relative to the
# loss of predicting the mean are rounding.
_FLAT_RELATIVE = 1e-8

# Per-feature L-BFGS-B runs this many iterations before the widths that
# still grow are compared with their upper bounds (see _Search._plateau_probe).
_PLATEAU_ITERATIONS = 10

# Per-feature L-BFGS-B races its two lowest starts for this many iterations
# each, and goes on from the lower end.
_RACE_ITERATIONS = 10

# After L-BFGS-B, each feature's width alone is moved by factors 2 and 4 and
# to its upper bound, and a point lower by more than this fraction of the
# loss starts L-BFGS-B again, at most _ESCAPES times (see _Search._escape).
_ESCAPE_MARGIN = 1e-7
_ESCAPES = 3
# The escape's moves of a feature alone and of the features together along
# lines under a compact kernel: the factors it scans, in log-width (from
# 2^(1/32) to 2 either way, and the end itself), and the tolerance of the
# search between the lowest one's neighbours (see _Search._line_minimum).
_LINE_SHIFTS = math.log(2.0) * np.array(
    [-1, -3 / 4, -1 / 2, -3 / 8, -1 / 4, -1 / 8, -1 / 16, -1 / 32, 0]
    + [1 / 32, 1 / 16, 1 / 8, 1 / 4, 3 / 8, 1 / 2, 3 / 4, 1]
)
_LINE_TOL = 1e-6
# A width this close below its plateau (in log-width) is on it: a run from
# a point on the plateau leaves it there to within rounding.
_PLATEAU_ROUNDING = 1e-6
# An escape is tried only with this many iterations of max_iter left.
_ESCAPE_BUDGET = 5
# The trials scored on every ranking row, of those ranked first on a quarter
# of them (see _Search._ranked_losses).
_ESCAPE_FINALISTS = 3

# Up to this many pairs of distinct points, their nearest neighbours come
# from every pair's distance rather than a neighbour search.
_BRUTE_FORCE_PAIRS = 2**16

# Per-feature learning on more rows than this first finds its way on a
# subsample of the rows left out (every sample still a key), then polishes
# on all of them.
_SUBSAMPLE_ROWS = 2000

# The grid start of per-feature widths on small problems (see _grid_start):
# at most this many pairs of rows (or of units of sample weight) over all
# of its points, at most this many points per feature, and no grid with
# fewer.
_GRID_PAIRS = 2**20
_GRID_POINTS_PER_FEATURE = 24
_GRID_MIN_POINTS_PER_FEATURE = 6
# The trial of each feature alone on small problems (see _alone_trial): at
# most this many pairs of rows over all of its points, at most this many
# points a feature, and no trial with fewer.
_LINE_PAIRS = 2**20
_LINE_POINTS = 96
_LINE_MIN_POINTS = 12
# Beyond the line's reach, each feature alone is scanned over at most this
# many pairs (rows left out times samples times widths), unless that leaves
# fewer than _SCAN_ROWS // 4 rows (see _alone_scans).
_ALONE_PAIRS = 2**25


def learn_bandwidth(
    X,
    values,
    initial_bandwidth,
    *,
    kernel,
    loss,
    sample_weight,
    local_widths,
    adaptive,
    solver,
    learning_rate,
    batch_size,
    max_iter,
    tol,
    random_state,
    verbose,
    device,
    name,
    objective_class=None,
):
    """Minimise the leave-one-out loss over the log of the bandwidth.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training inputs; at least 2 units of positive weight.
    values : ndarray of shape (n_samples, n_values)
        Targets, or one-hot labels for the log-loss.
    initial_bandwidth : ndarray of shape (1,) or (n_features,)
        Starting width(s): one shared width or one per feature.
    kernel : str
        Kernel name.
    loss : {"squared_error", "log_loss"}
        Loss of each left-out prediction.
    sample_weight : ndarray of shape (n_samples,) or None
        Frequency weights; zero-weight samples take no part.
    local_widths : ndarray of shape (n_samples,) or None
        Local width factors: for the sample as a key
        (``adaptive="sample"``) or as the left-out query
        (``adaptive="query"``).
    adaptive : {"sample", "query"} or None
        Which role the local widths take.
    solver : {"auto", "lbfgs", "sgd", "adam"}
        "auto": the global search (a scan, then safeguarded Newton steps, for
        one width; L-BFGS-B from the lower end of short runs from the two
        lowest of several starts, per feature).
        "lbfgs": L-BFGS-B from the start alone. "sgd", "adam": minibatch
        gradient descent over rows.
    learning_rate : float or "auto"
        Step size on the log-width ("sgd", "adam").
    batch_size : int or "auto"
        Rows per minibatch step; the full batch when it covers every row.
    max_iter : int
        Most iterations (steps of the search, or epochs).
    tol : float
        Tolerance on the loss relative to the loss of predicting the mean.
    random_state : int, RandomState instance or None
        Order of the minibatches, and the subsample of rows at large sizes.
    verbose : int
        Print a progress table when > 0.
    device : torch.device
        Where to compute.
    name : str
        Estimator name for the progress lines and warnings.
    objective_class : class, default=None
        The leave-one-out loss to minimise, built with the arguments of
        :class:`~sknw._loo_objective.LeaveOneOutObjective` (its default):
        Nadaraya-Watson's, or another smoother's.

    Returns
    -------
    bandwidth : ndarray of the shape of ``initial_bandwidth``
        The learned width(s).
    loss_curve : list of float
        The leave-one-out loss at the start and after each iteration.
    n_iter : int
        Iterations run: ``len(loss_curve) - 1``, at least 1.
    """
    if sample_weight is not None:
        kept = sample_weight > 0
        X, values, sample_weight = X[kept], values[kept], sample_weight[kept]
        if local_widths is not None:
            local_widths = local_widths[kept]
    per_feature = initial_bandwidth.size > 1
    # Computed on rescaled data, by powers of 2 (exact): any finite data
    # gives a finite loss and width.
    X = np.asarray(X, dtype=np.float64)
    X = X - (X.min(axis=0) / 2 + X.max(axis=0) / 2)
    x_scale = _power_of_2(np.ptp(X, axis=0), per_feature)
    X = X / x_scale
    values = np.asarray(values, dtype=np.float64)
    y_scale = 1.0
    if loss == "squared_error":
        mean = np.average(values, axis=0, weights=sample_weight)
        values = values - mean
        # A constant target leaves rounding of its mean: no spread to scale.
        if np.abs(values).max() <= 8 * np.finfo(np.float64).eps * np.abs(mean).max():
            values = np.zeros_like(values)
        y_scale = float(_power_of_2(np.abs(values).max(), False))
        values = values / y_scale
    make_objective = functools.partial(
        objective_class or LeaveOneOutObjective,
        values=values,
        kernel=kernel,
        loss=loss,
        sample_weight=sample_weight,
        key_widths=local_widths if adaptive == "sample" else None,
        query_widths=local_widths if adaptive == "query" else None,
        device=device,
    )
    objective = make_objective(X)
    baseline = _constant_prediction_loss(values, sample_weight, loss)
    lower, upper, typical = log_width_bounds(
        X, KERNELS[kernel], per_feature, sample_weight, local_widths
    )
    start = np.clip(np.log(initial_bandwidth / x_scale), lower, upper)
    with np.errstate(over="ignore"):
        # The loss in the units of y: beyond float64 where its squares are.
        loss_scale = np.float64(y_scale) ** 2 if loss == "squared_error" else 1.0
    progress = _Progress(name, verbose, loss_scale)
    batch_size = DEFAULT_BATCH_SIZE if batch_size == "auto" else batch_size
    if solver in ("sgd", "adam") and batch_size >= X.shape[0]:
        solver_label = f"{solver} (full batch)"
    else:
        solver_label = solver
    progress.start(solver_label, initial_bandwidth.size, X.shape[0])
    search = _Search(
        objective,
        baseline,
        lower,
        upper,
        max_iter,
        progress,
        typical=None if per_feature else typical,
    )
    # The search alternates small NumPy and SciPy steps with torch's blocks:
    # BLAS threads of their own, spinning after each step, would contend with
    # torch's for the same cores (a 2-core machine ran 6x slower).
    with _blas_controller().limit(limits=1, user_api="blas"):
        if solver in ("sgd", "adam"):
            if learning_rate == "auto":
                learning_rate = LEARNING_RATES[solver]
            log_bandwidth, converged = search.minibatch(
                start,
                method=solver,
                learning_rate=learning_rate,
                batch_size=batch_size,
                tol=tol,
                random_state=random_state,
            )
        elif solver == "lbfgs" or per_feature:
            starts, known, trials = [start], [None], []
            rows = _subsample_rows(X.shape[0], random_state)
            if solver == "auto" and per_feature:
                shared = _one_width_start(
                    search, make_objective, X, x_scale, kernel, local_widths
                )
                more, losses = _per_feature_starts(
                    objective, X, lower, upper, sample_weight, rows
                )
                # The grid start and the trial of each feature alone are the
                # Gaussian's: a compact kernel's loss is rough, and from the
                # grid's lowest point its search ended higher about as often
                # as lower; it scans each feature alone instead.
                grid, grid_loss, alone = None, None, None
                if not objective.kernel.compact:
                    grid, grid_loss = _grid_start(objective, X, lower, upper)
                    alone = _alone_trial(objective, X, lower, upper)
                if grid is not None:
                    more, losses = more + [grid], losses + [grid_loss]
                if alone is not None:
                    trials = [alone]
                else:
                    trials = _alone_scans(make_objective, X, lower, upper, typical)
                starts = starts + [shared] + more
                known = known + [None] + losses
            log_bandwidth, converged = search.lbfgs(
                starts, rows=rows, known=known, trials=trials
            )
        else:
            log_bandwidth, converged = search.one_width(start)
    bandwidth = np.exp(log_bandwidth) * x_scale
    progress.finish(converged, len(search.loss_curve) - 1, bandwidth)
    if not converged:
        warnings.warn(
            f"{name}: the leave-one-out learning of the bandwidth ({solver}) "
            f"reached max_iter={max_iter} without converging. Increase max_iter.",
            ConvergenceWarning,
        )
    _warn_on_bounds(name, log_bandwidth, lower, upper, per_feature)
    with np.errstate(over="ignore"):
        loss_curve = [float(value * progress.loss_scale) for value in search.loss_curve]
    return bandwidth, loss_curve, len(loss_curve) - 1


def _power_of_2(spread, per_feature):
    """The power of 2 nearest to ``spread`` (its largest entry unless
    ``per_feature``); 1 where the spread is 0."""
    spread = np.asarray(spread, dtype=np.float64)
    if not per_feature:
        spread = spread.max(initial=0.0)
    exponent = np.frexp(np.where(spread > 0, spread, 1.0))[1]
    return np.ldexp(1.0, exponent)


def log_width_bounds(X, kernel, per_feature, sample_weight=None, local_widths=None):
    """Where the leave-one-out minimum can be, from the data's own distances.

    Below the lower bound every left-out prediction is its nearest other
    sample's value (the second-nearest weighs less than e^-37 of the
    nearest, or nothing under a compact kernel); above the upper bound every
    prediction is the weighted mean (u^2 < machine epsilon for every pair).
    Duplicated rows count once, with their weights added up (a row whose
    total weight exceeds 1 keeps company at distance 0 when one unit is left
    out), so weights and repeated rows give the same bounds; a far outlier
    moves neither bound much: the lower comes from the closest pairs, the
    upper from the range.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training inputs.
    kernel : Kernel
        The kernel.
    per_feature : bool
        Bounds for each feature on its own, or for one shared width.
    sample_weight : ndarray of shape (n_samples,) or None
        Frequency weights.
    local_widths : ndarray of shape (n_samples,) or None
        Local width factors, which widen the bounds by their extremes (a
        constant feature's stay one point).

    Returns
    -------
    lower, upper : ndarray of shape (1,) or (n_features,)
        Bounds of the log-widths.
    typical : float or ndarray of shape (n_features,)
        The log of the median distance from a distinct point to its nearest
        other one (0 with fewer than two): for one shared width, or for each
        feature on its own.
    """
    typical = None
    if per_feature:
        bounds = [
            log_width_bounds(X[:, [k]], kernel, False, sample_weight)
            for k in range(X.shape[1])
        ]
        lower = np.concatenate([bound[0] for bound in bounds])
        upper = np.concatenate([bound[1] for bound in bounds])
        typical = np.array([bound[2] for bound in bounds])
    else:
        if X.shape[1] == 1:
            # (The rows of one column are its values: a plain sort.)
            line, inverse = np.unique(X[:, 0], return_inverse=True)
            points = line[:, None]
        else:
            points, inverse = np.unique(X, axis=0, return_inverse=True)
        weight = np.ones(X.shape[0]) if sample_weight is None else sample_weight
        company = np.bincount(inverse.ravel(), weights=weight) > 1
        diameter = float(np.sqrt((np.ptp(points, axis=0) ** 2).sum()))
        if points.shape[0] < 2 or diameter == 0:
            return np.zeros(1), np.zeros(1), 0.0
        upper = math.log(diameter / math.sqrt(np.finfo(np.float64).eps))
        distances = _neighbor_distances(points, min(points.shape[0] - 1, 8))
        typical = math.log(float(np.median(distances[:, 1])))
        # Each point's distinct distances to the others, and 0 first where
        # the point keeps company of its own.
        distances[~company, 0] = np.inf
        distances = np.sort(distances, axis=1)
        nearest = distances[:, :1]
        positive = distances[distances > 0]
        lower = math.log(float(positive.min()))
        if not kernel.compact:
            # The next distinct distance after the nearest, where there is one.
            farther = np.where(distances > nearest, distances, np.inf).min(axis=1)
            finite = np.isfinite(farther)
            farther, near = farther[finite], nearest[finite, 0]
            if kernel.exact_distances:
                gaps = (farther - near) / _NEGLIGIBLE_LOG_WEIGHT
            else:
                gaps = np.sqrt((farther**2 - near**2) / (2 * _NEGLIGIBLE_LOG_WEIGHT))
            gaps = gaps[gaps > 0]
            if gaps.size:
                lower = math.log(float(gaps.min()))
        lower, upper = np.array([lower]), np.array([upper])
    if local_widths is not None:
        # A constant feature's width takes no part, whatever the factors:
        # its bounds stay one point.
        fixed = upper <= lower
        lower = lower - math.log(local_widths.max())
        upper = np.where(fixed, lower, upper - math.log(local_widths.min()))
    return lower, upper, typical


@functools.cache
def _blas_controller():
    """One controller of the BLAS thread pools, found once per process
    (finding them lists every loaded library, milliseconds a fit)."""
    return ThreadpoolController()


def _neighbor_distances(points, n_neighbors):
    """Sorted distances from each of distinct ``points`` to itself (0) and
    its ``n_neighbors`` nearest others: along one feature from the sorted
    order, otherwise from a neighbour search."""
    if points.shape[1] > 1 and points.shape[0] ** 2 > _BRUTE_FORCE_PAIRS:
        search = NearestNeighbors(n_neighbors=n_neighbors + 1).fit(points)
        return search.kneighbors(points)[0]
    if points.shape[1] > 1:
        # Few points: every pair's distance from coordinate differences, the
        # nearest by a partial sort (a neighbour search's set-up costs more).
        squared = np.zeros((points.shape[0], points.shape[0]))
        for column in points.T:
            difference = column[:, None] - column[None, :]
            squared += difference * difference
        nearest = np.partition(squared, n_neighbors, axis=1)[:, : n_neighbors + 1]
        return np.sqrt(np.sort(nearest, axis=1))
    # np.unique sorted the points: the nearest lie within n_neighbors places
    # on either side.
    line = points[:, 0]
    padded = np.concatenate(
        [np.full(n_neighbors, -np.inf), line, np.full(n_neighbors, np.inf)]
    )
    n_points = line.size
    offsets = np.concatenate(
        [np.arange(-n_neighbors, 0), np.arange(1, n_neighbors + 1)]
    )
    candidates = np.abs(
        padded[n_neighbors + offsets[None, :] + np.arange(n_points)[:, None]]
        - line[:, None]
    )
    candidates.sort(axis=1)
    return np.concatenate(
        [np.zeros((n_points, 1)), candidates[:, :n_neighbors]], axis=1
    )


def _scan_grid(lower, upper, typical, top, dense=False):
    """The log-widths of a scan of one width from ``lower`` to ``upper``:
    steps of a factor _SCAN_FACTOR up to ``top`` (a quarter of that with
    ``dense``), and three times as long below _SCAN_KNEE times less than
    the ``typical`` spacing of the data, where only the rows with a near
    tie change their prediction."""
    step = math.log(_SCAN_FACTOR)
    knee = min(max(typical - math.log(_SCAN_KNEE), lower), top)
    return np.concatenate(
        [
            np.arange(lower, knee, 3 * step),
            np.arange(knee, top, step / 4 if dense else step),
            [upper],
        ]
    )


def _scan_objective(objective, typical, lower):
    """The objective a scan of one width from ``lower`` ranks its points
    with: ``objective``'s float32 copy where float32 resolves the data
    (coordinates to within 1e-3 of their ``typical`` spacing, and squared
    distances in units of the smallest width far below its largest number),
    ``objective`` itself otherwise (a far outlier, say)."""
    extent = math.log(max(float(np.abs(objective.X_numpy).max(initial=0.0)), 1e-300))
    resolved = typical - extent > math.log(1e3 * np.finfo(np.float32).eps)
    in_range = lower > extent - 30
    return objective.in_float32() if resolved and in_range else objective


def _parabola_vertex(points, losses, index):
    """The minimum of the parabola through the loss at ``points[index]`` and
    at its two neighbours, where it is convex and its minimum lies between
    them; ``points[index]`` otherwise.

    Newton's steps start there: nearer the minimum than the grid point, they
    need one step fewer.
    """
    x = points[index]
    if index == 0 or index == len(points) - 1:
        return x
    a, b, c = points[index - 1 : index + 2]
    fa, fb, fc = losses[index - 1 : index + 2]
    if not (np.all(np.isfinite([fa, fb, fc])) and a < b < c):
        return x
    # Newton's form: fa + left (t - a) + curve (t - a) (t - b).
    left, right = (fb - fa) / (b - a), (fc - fb) / (c - b)
    curve = (right - left) / (c - a)
    if not curve > 0:
        return x
    vertex = (a + b) / 2 - left / (2 * curve)
    return vertex if a < vertex < c else x


def _newton_in_float32(scan, points, index, x, power):
    """One Newton step from ``x`` on the float32 copy ``scan`` of the loss
    in the width to ``power`` (see :func:`_newton_step`), where the loss is
    convex there and the step stays between the neighbours of
    ``points[index]``; ``x`` otherwise."""
    _, gradient, second = scan.evaluate([x], order=2)
    newton = _newton_step(x, float(gradient[0]), float(second), power)
    if newton is None:
        return x
    left, right = points[max(index - 1, 0)], points[min(index + 1, len(points) - 1)]
    return newton if left < newton < right else x


def _newton_power(objective):
    """The power c of the width in whose terms Newton's steps on one width
    are taken (see :func:`_newton_step`): (4 - d) / 3 for d features,
    within [-1, 1].

    Far from the data's edges the leave-one-out loss of d features is about
    A h^4 + B / h^d (a squared bias and a variance); in v = h^c it is a
    sum of two powers of v whose exponents differ by (4 + d) / c, and
    their third derivative vanishes at the minimum where c = (4 - d) / 3
    (up to d = 7, beyond which c is clipped): near it, Newton's steps in v
    then err by the cube of their distance to it, where steps in log h err
    by its square (with fewer than four features the curvature grows along
    log h, and steps from below the minimum overshoot). On one feature's
    data a step from a factor 1.4 below the minimum landed 1.3 % from it
    in h, 29 % beyond it in log h.
    """
    return min(max((4 - objective.n_features) / 3, -1.0), 1.0)


def _newton_step(x, gradient, second, power):
    """Newton's step from the log-width ``x`` in v = exp(power x), from the
    gradient and second derivative in the log-width; None where the loss
    is not convex in v there, or the step would take v to 0 or below.

    With g and s those derivatives, d^2 loss / dv^2 is (s - c g) / (c v)^2,
    and the step in v, -c g v / (s - c g), lands at
    x + log(1 - c g / (s - c g)) / c (x - g / s where c = 0).
    """
    # Python floats: an infinite gradient gives inf or nan, not a warning.
    gradient, second = float(gradient), float(second)
    curvature = second - power * gradient
    if not curvature > 0:
        return None
    if power == 0:
        return x - gradient / second
    ratio = -power * gradient / curvature
    if not ratio > -1:
        return None
    return x + math.log1p(ratio) / power


def _new_points(known, candidates):
    """The sorted ``candidates`` farther than _LOG_WIDTH_TOL from every
    point of ``known`` and from one another (the first of a group kept):
    log-widths one rounding apart, from grids around different centres,
    would be scanned twice and could make a local minimum of each other."""
    new = []
    for candidate in np.sort(candidates):
        if np.any(np.abs(known - candidate) <= _LOG_WIDTH_TOL):
            continue
        if new and candidate - new[-1] <= _LOG_WIDTH_TOL:
            continue
        new.append(candidate)
    return np.array(new, dtype=float)


def _basin_indices(losses):
    """The local minima of finite loss on a sorted grid, lowest first; of
    a run of neighbours that are all minima (a flat stretch, such as the
    plateau below the nearest neighbours' distances or above the data's
    diameter), the first alone, so that one flat stretch takes no more than
    one of the basins refined."""
    minima = _local_minima(losses) & np.isfinite(losses)
    minima[1:] &= ~minima[:-1]
    indices = np.flatnonzero(minima)
    return indices[np.argsort(losses[indices], kind="stable")]


def _basin_margin(baseline, best):
    """How far above the best scan loss ``best`` another basin of the scan
    is still refined: _BASIN_MARGIN of its distance to the loss of
    predicting the mean, ``baseline``, and at least _BASIN_FLOOR of itself."""
    return max(_BASIN_MARGIN * max(baseline - best, 0.0), _BASIN_FLOOR * abs(best))


def _local_minima(losses):
    """Where a loss on a sorted grid is no higher than either neighbour
    (the ends compared with their one neighbour)."""
    padded = np.concatenate([[np.inf], losses, [np.inf]])
    return (padded[1:-1] <= padded[:-2]) & (padded[1:-1] <= padded[2:])


def _sampling_margin(differences, n_rows):
    """Three standard errors of the differences' sums, for a sample of rows
    drawn without replacement from ``n_rows``.

    Parameters
    ----------
    differences : ndarray of shape (n_sampled, n_pairs)
        Each sampled row's share of the difference between two losses.

    Returns
    -------
    margin : ndarray of shape (n_pairs,)
    """
    n_sampled = differences.shape[0]
    if n_sampled < 2:
        return np.zeros(differences.shape[1])
    finite = np.where(np.isfinite(differences), differences, 0.0)
    spread = finite.std(axis=0, ddof=1) * math.sqrt(n_sampled)
    return 3 * spread * math.sqrt(max(1 - n_sampled / n_rows, 0.0))


def _subsample_rows(n_rows, random_state, size=None):
    """``size`` rows (_SUBSAMPLE_ROWS by default) to leave out above that
    many, or None (all)."""
    size = _SUBSAMPLE_ROWS if size is None else size
    if n_rows <= size:
        return None
    return check_random_state(random_state).choice(n_rows, size, replace=False)


def _quarter_rows(n_rows, at_most=None):
    """A quarter of ``n_rows`` rows (no more than ``at_most``), the same for
    the same ``n_rows``, from 4 * _SCAN_ROWS rows on, or None (all): the
    rows on which scans and rankings that only compare points first leave
    out."""
    if n_rows // 4 < _SCAN_ROWS:
        return None
    size = n_rows // 4 if at_most is None else min(n_rows // 4, at_most)
    return _subsample_rows(n_rows, 0, size)


def _one_width_start(search, make_objective, X, x_scale, kernel, local_widths):
    """A start for per-feature widths: every feature at the one-width
    optimum, found by the scan of the one-width search (recording nothing)
    on its own bounds, clipped to the per-feature bounds of ``search``.

    From there, per-feature widths can only lower the loss: without it,
    L-BFGS-B from the rule's widths or a coarse scan's best point ended
    above the one-width optimum on 13 of 226 random problems, by up to 5 %.

    Parameters
    ----------
    search : _Search
        The per-feature search.
    make_objective : callable
        The objective of the rows, given the inputs.
    X : ndarray of shape (n_samples, n_features)
        The inputs, each feature divided by its power of 2, ``x_scale``.
    x_scale : ndarray of shape (n_features,)
    kernel : str
    local_widths : ndarray of shape (n_samples,) or None

    Returns
    -------
    start : ndarray of shape (n_features,)
    """
    # One width in the units of the data: every feature divided by the
    # same power of 2 (exactly, from each one's own).
    common = float(np.max(x_scale))
    X = X * (x_scale / common)
    objective = make_objective(X)
    lower, upper, typical = log_width_bounds(
        X, KERNELS[kernel], False, objective.sample_weight_numpy, local_widths
    )
    shared = _Search(
        objective,
        search.baseline,
        lower,
        upper,
        search.max_iter,
        _Progress("", 0, 1.0),
        typical=typical,
    )
    # Its scan's best point, after its float32 Newton step where the scan ran
    # in float32: close enough to the one-width optimum for L-BFGS-B to
    # start from (float64 steps would take two passes more). Where the
    # per-feature search itself leaves out a subsample of the rows, the
    # scan's ranking on its own subsample is enough (scoring its points on
    # every row took 7.5 s of 47 at 20,000 rows, d = 4).
    log_bandwidth, _ = shared.one_width(
        None, refine=False, sampled_only=objective.n_samples > _SUBSAMPLE_ROWS
    )
    start = float(log_bandwidth[0]) + np.log(common / x_scale)
    return np.clip(start, search.lower, search.upper)


def _per_feature_starts(objective, X, lower, upper, sample_weight, rows):
    """A start for per-feature widths besides the one given and the
    one-width optimum: the best width of a scan of widths proportional to
    each feature's spread, the loss taken over ``rows`` (None: all).

    The scans only rank their widths: they compute in float32 where float32
    resolves the coordinates at their narrowest widths, which are at least
    2^-10 of the rescaled data's extent (see :func:`_ranking_objective`).

    Returns
    -------
    starts : list of ndarray
    losses : list of float or None
        Each start's loss on every row, where its scan gives it exactly.
    """
    spread = np.sqrt(np.average(X**2, axis=0, weights=sample_weight))
    spread = np.where(spread > 0, spread, 1.0)
    scan = np.arange(-10, 3) * math.log(_SCAN_FACTOR)
    rays = [spread / np.exp(np.mean(np.log(spread)))]
    narrowest = np.exp(scan[0] + np.log(rays[0]))
    ranking = _ranking_objective(objective, narrowest)
    best, lowest = None, np.inf
    for relative in rays:
        log_relative = np.log(relative)
        losses = ranking.losses_at(scan, rows, log_relative=log_relative)
        # (A width whose loss is not finite is no start.)
        losses = _finite_or_inf(losses)
        if np.min(losses) < lowest:
            lowest = float(np.min(losses))
            best = scan[int(np.argmin(losses))] + log_relative
    if ranking is not objective:
        # Its blocks would otherwise stay alive beside the float64 ones.
        ranking.release()
    if best is None:
        return [], []
    start = np.clip(best, lower, upper)
    # Its loss on every row is known unless the bounds moved it, or the scan
    # was in float32.
    known = rows is None and ranking is objective and np.array_equal(start, best)
    return [start], [lowest if known else None]


def _row_count(objective):
    """The number of rows that sizes a search: frequency weights count as
    the rows they repeat (zero weights are gone), so that weights and
    repeated rows take the same search; fractional ones, summing to less,
    as the rows themselves."""
    return max(float(np.sum(objective.sample_weight_numpy)), objective.n_samples)


def _plateau_log_widths(X):
    """Each feature's log-width at 16 times its range (a range of 0 counted
    as 1): beyond it the kernel's weights barely depend on the feature."""
    spread = np.ptp(X, axis=0)
    return np.log(np.where(spread > 0, spread, 1.0)) + math.log(16)


def _bulk_log_widths(X, sample_weight):
    """For each feature whose interquartile range is more than 256 times
    below its range (outliers set the range), log-widths at 4, 1 and 1/4
    times the interquartile range: all below the range / 64 of the
    escape's ladder. None for the others (a range of 0 or an
    interquartile range of 0 among them). The quartiles count each row as
    often as its frequency weight (the lowest value with at least that
    share of the weight at or below it), as repeated rows would."""
    widths = []
    for column in X.T:
        order = np.argsort(column, kind="stable")
        shares = np.cumsum(sample_weight[order])
        places = np.searchsorted(shares, shares[-1] * np.array([0.25, 0.75]))
        first, third = column[order][np.minimum(places, column.size - 1)]
        bulk = third - first
        if not bulk > 0 or 256 * bulk >= np.ptp(column):
            widths.append(np.zeros(0))
            continue
        widths.append(math.log(bulk) + math.log(4.0) * np.array([1.0, 0.0, -1.0]))
    return widths


def _finite_or_inf(losses):
    """``losses`` with +inf where not finite: a point whose loss cannot be
    computed is never the lowest."""
    return np.where(np.isfinite(losses), losses, np.inf)


def _point_losses(objective, points, rows=None):
    """``objective``'s losses at per-feature ``points`` on ``rows`` (every
    row when None), +inf where not finite."""
    return _finite_or_inf(objective.losses_at_points(points, rows))


def _grid_start(objective, X, lower, upper):
    """On a small problem whose objective scores many widths in one pass
    (the Gaussian kernel's; see learn_bandwidth for the compact ones), the
    lowest point of a grid of per-feature
    widths: G evenly spaced log-widths per feature, from its lower bound to
    16 times its range (or its upper bound), every combination, with G the
    most (up to _GRID_POINTS_PER_FEATURE) that keeps G^d times the squared
    number of rows (or total sample weight, where larger) within
    _GRID_PAIRS, d the features whose bounds differ (the others keep their
    one width); None where fewer than _GRID_MIN_POINTS_PER_FEATURE would.

    On a few dozen rows the loss of several widths can be rough. Of 60
    random two-feature problems of at most 400 rows, the search from the
    other starts ended more than 1e-7 above a refined 50 x 50 grid's
    minimum on 7 (by up to 9 %), with this start on 3 (by up to 4 %, one
    of them not among the 7, by 0.13 %); of 67 three-feature ones of at
    most 300 rows (a refined 14 x 14 x 14 grid), on 8 (by up to 93 %) and
    on 3, all of more than 200 rows, beyond the grid's reach (by up to
    1 %). Those fits within its reach took 1.10 to 1.16 times as long.

    Returns
    -------
    start : ndarray of shape (n_features,) or None
    loss : float or None
        Its loss on every row.
    """
    # The features whose width can move; the others keep their one width.
    free = upper > lower
    if not np.any(free):
        return None, None
    # The repeated rows' grid, its pairs within the budget, in logarithms
    # whatever the weights' scale.
    rows = _row_count(objective)
    size = math.exp((math.log(_GRID_PAIRS) - 2 * math.log(rows)) / np.sum(free))
    size = min(int(size + 1e-9), _GRID_POINTS_PER_FEATURE)
    if size < _GRID_MIN_POINTS_PER_FEATURE:
        return None, None
    if not objective.scores_points_in_one_pass():
        return None, None
    top = np.clip(_plateau_log_widths(X), lower, upper)
    axes = [
        np.linspace(lower[k], top[k], size) if free[k] else lower[k : k + 1]
        for k in range(X.shape[1])
    ]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    points = points.reshape(-1, X.shape[1])
    losses = _point_losses(objective, points)
    best = int(np.argmin(losses))
    if not np.isfinite(losses[best]):
        return None, None
    return points[best], float(losses[best])


def _alone_trial(objective, X, lower, upper):
    """On a small problem whose objective scores many widths in one pass
    (the Gaussian kernel's; see learn_bandwidth for the compact ones), with
    two or more features whose bounds differ: the
    lowest point of each such feature alone, its log-width on L evenly
    spaced points from its lower bound to 16 times its range (or its upper
    bound), every other feature at 16 times its range (its plateau, where
    it takes almost no part; within its bounds), that feature's log-width
    then moved to the vertex of the parabola through the point and its
    neighbours on the line. L is the most, up to _LINE_POINTS, that keeps
    L times the number of such features times the squared number of rows
    (or total sample weight, where larger) within _LINE_PAIRS; None where
    fewer than _LINE_MIN_POINTS would.

    It is a trial of the search's escape (see :meth:`_Search._escape`), not
    a start: from it, a feature on its plateau has no slope to leave it by,
    and L-BFGS-B stays there even where a lower minimum uses it (as a
    start, it put one three-feature problem of 54 rows 1.3e-4 above the
    minimum). Per-feature widths include every feature alone, and without
    it the search ended above a feature alone on 1 of 136 random problems
    of two to four features within the grid's reach (see
    :func:`_grid_start`), by 0.13 %, and on tiny ones beyond it by up to
    13 % (31 rows, four features, every width on its upper bound).

    Returns
    -------
    trial : ndarray of shape (n_features,) or None
    """
    free = np.flatnonzero(upper > lower)
    if len(free) < 2 or not objective.scores_points_in_one_pass():
        return None
    # In logarithms, whatever the weights' scale.
    n_points = math.exp(
        math.log(_LINE_PAIRS / len(free)) - 2 * math.log(_row_count(objective))
    )
    n_points = int(min(n_points + 1e-9, _LINE_POINTS))
    if n_points < _LINE_MIN_POINTS:
        return None
    top = np.clip(_plateau_log_widths(X), lower, upper)
    lines = np.repeat(top[None], n_points * len(free), axis=0)
    for line, feature in enumerate(free):
        part = slice(line * n_points, (line + 1) * n_points)
        lines[part, feature] = np.linspace(lower[feature], top[feature], n_points)
    losses = _point_losses(objective, lines)
    index = int(np.argmin(losses))
    if not np.isfinite(losses[index]):
        return None
    line, position = divmod(index, n_points)
    feature = free[line]
    part = slice(line * n_points, (line + 1) * n_points)
    trial = lines[index].copy()
    trial[feature] = _parabola_vertex(lines[part, feature], losses[part], position)
    return trial


def _alone_scans(make_objective, X, lower, upper, typical):
    """Beyond the reach of :func:`_alone_trial` (where its lines would take
    too many pairs, or the objective cannot score many widths in one pass:
    a kernel other than the Gaussian, the local linear smoother), each
    feature alone another way: for each feature whose bounds differ, the
    widths of a scan of its log-width on its own (on one width's grid, see
    :func:`_scan_grid`, up to 16 times its range) ranked together, over a
    subsample of the rows left out where a quarter of them are at least
    _SCAN_ROWS (a quarter, as one width's scan takes) or where the pairs
    would exceed _ALONE_PAIRS (fewer, but no fewer than _SCAN_ROWS // 4);
    the feature's log-width at the vertex of the parabola through the
    lowest and its neighbours, every other feature at 16 times its range
    (within its bounds), unless the vertex is there too. Trials of the
    search's escape, as the lines' point is.

    On the random problems of the tests with two to four features (one of
    them relevant) and 170 to 400 rows, beyond the lines' reach, the search
    ended above the best feature alone on 12 of 186 without these trials
    (by up to 2 %), on 3 with them (by up to 0.15 %); with 400 to 1,000
    rows, on 12 of 223 (by up to 1.2 %) and on 2 (by up to 0.13 %).

    Returns
    -------
    trials : list of ndarray of shape (n_features,)
    """
    free = np.flatnonzero(upper > lower)
    if len(free) < 2:
        return []
    top = np.clip(_plateau_log_widths(X), lower, upper)
    trials = []
    for feature in free:
        objective = make_objective(X[:, [feature]])
        grid = _scan_grid(lower[feature], top[feature], typical[feature], top[feature])
        n_rows = objective.n_samples
        rows = _quarter_rows(
            n_rows, max(_ALONE_PAIRS // (n_rows * len(grid)), _SCAN_ROWS // 4)
        )
        scan = _scan_objective(objective, typical[feature], lower[feature])
        losses = _finite_or_inf(scan.losses_at(grid, rows))
        best = int(np.argmin(losses))
        if scan is not objective:
            scan.release()
        if not np.isfinite(losses[best]):
            continue
        trial = top.copy()
        trial[feature] = np.clip(
            _parabola_vertex(grid, losses, best), lower[feature], upper[feature]
        )
        # (On its plateau too, the feature takes no part: no trial.)
        if trial[feature] < top[feature]:
            trials.append(trial)
    return trials


def _ranking_objective(objective, narrowest):
    """``objective``'s float32 copy where float32's rounding of the
    coordinates is within 1e-3 of the narrowest widths a scan takes (per
    feature), or ``objective`` itself."""
    extent = np.abs(objective.X_numpy).max(axis=0, initial=0.0)
    if np.all(narrowest >= 1e3 * np.finfo(np.float32).eps * extent):
        return objective.in_float32()
    return objective


class _Escape:
    """Where an escape (see :meth:`_Search._escape`) stands: its end so far
    and the loss there, the subsample of rows the search leaves out
    (``rows``, None for none), and the rows its trials are ranked on
    (``ranking``: those, or a quarter of the rows from 4 * _SCAN_ROWS on,
    or None for every row), with each point's loss on them computed once.
    """

    def __init__(self, objective, result, converged, rows):
        self.objective = objective
        self.result, self.converged = result, converged
        self.value = self.objective.evaluate(result, order=0)[0]
        self.rows = rows
        n_rows = self.objective.n_samples
        self.ranking = _quarter_rows(n_rows) if rows is None else rows
        self._ranked = {}

    def ranked_loss(self, point, value):
        """The loss at ``point`` on the ranking rows, given its loss
        ``value`` on every row (the start's serves the first moves and the
        round of the points from before the search)."""
        if self.ranking is None:
            return value
        key = point.tobytes()
        if key not in self._ranked:
            self._ranked[key] = self.objective.evaluate(point, self.ranking, order=0)[0]
        return self._ranked[key]


class _Search:
    """The searches over log-widths, recording the loss curve as they go.

    Parameters
    ----------
    objective : LeaveOneOutObjective
    baseline : float
        Loss of predicting the mean: tolerances are relative to it.
    lower, upper : ndarray
        Bounds of the log-widths.
    max_iter : int
    progress : _Progress
    """

    def __init__(
        self, objective, baseline, lower, upper, max_iter, progress, typical=None
    ):
        self.objective = objective
        self.typical = lower[0] if typical is None else typical
        self.baseline = baseline
        self.lower = lower
        self.upper = upper
        self.max_iter = max_iter
        self.progress = progress
        self.loss_curve = []
        self.last_point = None
        # The diagonal of the analytic Hessian at the last Newton step.
        self.curvature = None
        # The ends from which the escape's lines were searched (see
        # _line_minimum).
        self._lines_searched = set()

    def _record(self, value, point=None):
        self.loss_curve.append(float(value))
        self.last_point = None if point is None else np.array(point, dtype=float)
        self.progress.row(len(self.loss_curve) - 1, self.loss_curve)

    def one_width(self, start, refine=True, sampled_only=False):
        """Scan the exact loss on a log grid, then refine the best bracket by
        Newton steps with the analytic second derivative, falling back to
        golden section where Newton's step is not safe.

        Parameters
        ----------
        start : ndarray of shape (1,) or None
            The given width: its loss is recorded first, and it is one more
            point of the scan. None: neither (a start for per-feature
            widths, see :func:`_one_width_start`).
        refine : bool, default=True
            Whether to refine the scan's best point in float64; without, the
            point after the scan (and its float32 Newton step) is returned.
        sampled_only : bool, default=False
            Where the scan leaves out a subsample of the rows, return the
            vertex at its best point on that subsample alone (no scoring on
            the other rows, no Newton step, no refinement).

        Returns
        -------
        log_bandwidth : ndarray of shape (1,)
        converged : bool
        """
        lower, upper = float(self.lower[0]), float(self.upper[0])
        objective = self.objective
        if start is not None:
            self._record(objective.evaluate(start, order=0)[0])
        if upper <= lower:
            if start is not None:
                self._record(self.loss_curve[-1])
            return np.array([lower]), True
        step = math.log(_SCAN_FACTOR)
        top = min(upper, lower + 1.0)
        diameter = upper + 0.5 * math.log(np.finfo(np.float64).eps)
        top = max(top, min(upper, diameter + math.log(_SCAN_TOP)))
        dense = objective.widths_in_one_pass and _row_count(objective) <= math.sqrt(
            _DENSE_SCAN_PAIRS
        )
        grid = _scan_grid(lower, upper, self.typical, top, dense)
        # From 4 * _SCAN_ROWS rows the scan, which only ranks the basins,
        # first leaves out a subsample of a quarter of the rows (every
        # sample is still a key), then scores the points it cannot rule out
        # on every row; the refinement and the ends are exact.
        n_rows = objective.n_samples
        rows = _quarter_rows(n_rows, _SUBSAMPLE_ROWS)
        # The scan only ranks the grid's points, and every basin within a
        # margin of the best is refined in float64.
        scan = _scan_objective(objective, self.typical, lower)
        subsampled = rows is not None

        def scan_at(points):
            if len(points) == 0:
                return np.zeros(0), None if rows is None else np.zeros((len(rows), 0))
            if subsampled:
                return scan.losses_at(points, rows, per_row=True)
            return scan.losses_at(points, rows), None

        def fine_around(centre):
            if dense:
                return np.array([])
            fine = centre + step * np.array([-0.75, -0.5, -0.25, 0.25, 0.5, 0.75])
            return fine[(fine > lower) & (fine < upper)]

        losses, row_losses = scan_at(grid)
        # A finer scan within a factor 2 of the best few local minima, where
        # a narrow basin could hide between two coarse points: a sharp one
        # can sit far below its coarse points' losses, so the others are
        # scanned too, whatever their coarse loss. The start is one more
        # point. The scan counts as the first iteration.
        finite = _finite_or_inf(losses)
        minima = _basin_indices(finite)
        if len(minima) == 0:
            minima = np.array([int(np.argmin(finite))])
        centres = grid[minima[:_N_BASINS]]
        fine = [*map(fine_around, centres), [] if start is None else start]
        fine = _new_points(grid, np.concatenate(fine))
        fine_losses, fine_row_losses = scan_at(fine)
        points = np.concatenate([grid, fine])
        losses = _finite_or_inf(np.concatenate([losses, fine_losses]))
        if subsampled and not sampled_only:
            row_losses = np.concatenate([row_losses, fine_row_losses], axis=1)
            order = np.argsort(points, kind="stable")
            points, losses, row_losses = (
                points[order],
                losses[order],
                row_losses[:, order],
            )
            losses = self._sampled_basins(scan, points, row_losses, rows)
            exact_best = points[int(np.argmin(losses))]
            if np.min(np.abs(exact_best - centres)) > step:
                extra = _new_points(points, fine_around(exact_best))
                if len(extra):
                    points = np.concatenate([points, extra])
                    losses = np.concatenate([losses, scan.losses_at(extra)])
            losses = _finite_or_inf(losses)
        order = np.argsort(points, kind="stable")
        grid, losses = points[order], losses[order]
        best_index = int(np.argmin(losses))
        best_point = _parabola_vertex(grid, losses, best_index)
        if sampled_only:
            if scan is not objective:
                scan.release()
            return np.array([best_point]), True
        if scan is not objective:
            # A first Newton step on the float32 copy: to its rounding, it
            # takes the float64 steps to their last one, which
            # _LAST_NEWTON_STEP then ends. As the start of per-feature
            # widths (without the refinement) it stays a step in the
            # log-width: on a few dozen rows the per-feature search is
            # sensitive to its start, and from the power's step one of 60
            # two-feature problems (21 rows) ended 8 % higher, none lower.
            power = _newton_power(scan) if refine else 0.0
            best_point = _newton_in_float32(scan, grid, best_index, best_point, power)
            # Its blocks would otherwise stay alive beside the float64 ones
            # for the rest of the search.
            scan.release()
        if not refine:
            return np.array([best_point]), True
        # The exact loss there, with the derivatives that start the
        # refinement.
        at_best = objective.evaluate([best_point], order=2)
        self._record(at_best[0])
        # The loss may have several local minima (it does on clustered
        # data): refine the best few basins of the scan, keep the lowest.
        basins = _basin_indices(losses)[:_N_BASINS]
        # A basin whose scan loss is far above the best one's is not refined,
        # except on the finer grid of small problems, where refining costs
        # little and a sharp basin's minimum can sit far below its points.
        best_scan = losses[basins[0]]
        margin = _basin_margin(self.baseline, best_scan)
        if not dense:
            basins = basins[losses[basins] <= best_scan + margin]
        # Under a kernel of SERIES_KERNELS, a sweep over the kinks finds the
        # local minima between them and at them (see KinkSweep): every one
        # on a small problem, those near the scan's best point above. The
        # loss can dip between two points of the scan, and fall into a
        # corner at a kink: the sweep's lowest few are refined, and a basin
        # of the scan within the sweep's reach is not (its minimum is among
        # the sweep's, which are only refined in the smooth interval
        # between two kinks, not across kinks as the scan's basins are).
        sweep = _kink_sweep(objective)
        minima, covered = [], (math.inf, -math.inf)
        if sweep is not None:
            minima = sweep.minima(lower, upper, best_point)[:_N_BASINS]
            if minima:
                covered = sweep.covered
        results = []
        # The point whose loss the loss curve reported last: the scan's
        # best, or the first refinement's end.
        reported = (np.array([best_point]), False, at_best[0])
        for index in basins:
            left = grid[max(index - 1, 0)]
            right = grid[min(index + 1, len(grid) - 1)]
            if covered[0] <= left and right <= covered[1]:
                continue
            record = len(results) == 0
            start_at, initial = grid[index], None
            if index == best_index:
                start_at, initial = best_point, at_best
            recorded = len(self.loss_curve)
            results.append(
                self._refine(start_at, left, right, record=record, initial=initial)
            )
            # (With no iteration left, the refinement records nothing.)
            if record and len(self.loss_curve) > recorded:
                reported = results[-1]
        for _, left, right, point in minima:
            if left < right:
                results.append(self._refine(point, left, right, record=False))
            else:
                value = objective.evaluate([point], order=0)[0]
                results.append((np.array([point]), True, value))
        best = min(range(len(results)), key=lambda k: results[k][2])
        log_bandwidth, converged, value = results[best]
        # On a flat stretch at either end (every prediction the nearest
        # neighbour's, or the mean), any width there gives the same loss:
        # take the bound itself, so that equivalent data give one answer.
        for index in (0, len(grid) - 1):
            if grid[index] not in (lower, upper):
                continue
            if losses[index] > value * (1 + 1e-4):
                continue
            end = objective.evaluate([grid[index]], order=0)[0]
            if end <= value * (1 + 1e-12):
                log_bandwidth, value = np.array([grid[index]]), end
                break
        if results[best] is not reported or value != reported[2]:
            if len(self.loss_curve) < self.max_iter + 1:
                self._record(value)
            else:
                # No iteration left to report another point: keep the one
                # whose loss was reported last.
                log_bandwidth, converged, value = reported
        return log_bandwidth, converged

    def _sampled_basins(self, scan, points, row_losses, rows):
        """The losses of the points a scan on a subsample of rows cannot rule
        out, scored on every row; +inf at the others.

        A point is ruled out when its loss is above the best one's by more
        than three standard errors of the sampled difference, unless it is a
        local minimum within the basins' margin of the best, or the neighbour
        of one; so is a point above its neighbour on the grid by more than
        three standard errors of their own difference (except the best's
        neighbours), and a point whose sampled loss is not finite. The
        points not ruled out are scored on a third of the
        remaining rows, then on the rest, the rule applied again after each:
        at the end the sample is every row and the losses are exact.

        Parameters
        ----------
        scan : LeaveOneOutObjective
        points : ndarray of shape (n_points,)
            Sorted log-widths.
        row_losses : ndarray of shape (n_sampled, n_points)
            Each sampled row's share of their losses (see
            :meth:`LeaveOneOutObjective.losses_at`).
        rows : ndarray of int of shape (n_sampled,)
            The sampled rows.

        Returns
        -------
        losses : ndarray of shape (n_points,)
        """
        n_samples = self.objective.n_samples
        weights = self.objective.sample_weight_numpy
        rest = np.setdiff1d(np.arange(n_samples), rows)
        # The rows are taken in random order, so each block is a sample too.
        rest = check_random_state(0).permutation(rest)
        blocks = np.array_split(rest, [len(rest) // 3])
        # Each sampled row's c-weighted loss at each point (NaN where the
        # point was ruled out before the row was sampled).
        row_terms = row_losses * weights[rows].sum()
        alive = np.ones(len(points), dtype=bool)
        while True:
            total = weights[rows].sum()
            # A point whose loss the float32 scan cannot compute (beyond its
            # range at the narrowest widths) is ruled out.
            sampled = row_terms.sum(axis=0) / total
            alive &= np.isfinite(sampled)
            losses = np.where(alive, sampled, np.inf)
            best = int(np.argmin(losses))
            noise = _sampling_margin(
                (row_terms - row_terms[:, best : best + 1]) / total, n_samples
            )
            margin = _basin_margin(self.baseline, losses[best])
            minima = _local_minima(losses)
            keep = (losses <= losses[best] + noise) | (
                minima & (losses <= losses[best] + noise + margin)
            )
            keep[:-1] |= keep[1:] & minima[1:]
            keep[1:] |= keep[:-1] & minima[:-1]
            # Nor is a point the lowest when its neighbour on the grid is
            # lower by more than three standard errors of their own sampled
            # difference, far smaller than their difference to the best
            # (the same rows, nearby widths): it lies on a slope, and that
            # neighbour's bracket holds it. The best's neighbours stay, for
            # the parabola that starts the refinement.
            pair = alive[:-1] & alive[1:]
            left = np.flatnonzero(pair)
            gap = losses[left] - losses[left + 1]
            spread = _sampling_margin(
                (row_terms[:, left] - row_terms[:, left + 1]) / total, n_samples
            )
            sloped = np.zeros(len(points), dtype=bool)
            sloped[left[gap > spread]] = True
            sloped[left[-gap > spread] + 1] = True
            sloped[max(best - 1, 0) : best + 2] = False
            alive &= keep & ~sloped
            if not blocks:
                return np.where(alive, losses, np.inf)
            block = blocks.pop(0)
            terms = np.full((len(block), len(points)), np.nan)
            _, shares = scan.losses_at(points[alive], block, per_row=True)
            terms[:, alive] = shares * weights[block].sum()
            row_terms = np.concatenate([row_terms, terms])
            rows = np.concatenate([rows, block])

    def _refine(self, x, left, right, record=True, initial=None):
        """Safeguarded Newton on one log-width inside [left, right], x the
        lowest point found so far (Brent's bookkeeping of the bracket);
        ``initial``, when given, the loss and its derivatives at x.

        Returns
        -------
        log_bandwidth : ndarray of shape (1,)
        converged : bool
        value : float
            The loss there.
        """
        objective = self.objective
        if initial is None:
            initial = objective.evaluate([x], order=2)
        value, gradient, second = initial
        gradient = gradient[0]
        # The bracket's ends, until tried as a trial point (see below), and
        # the loss and slope at each end evaluated.
        untried = {left, right} - {x}
        slopes = {}
        power = _newton_power(objective)
        for _ in range(self.max_iter - 1):
            if right - left <= _LOG_WIDTH_TOL:
                return np.array([x]), True, value
            newton = _newton_step(x, gradient, second, power)
            if newton is not None and left < newton < right:
                trial = newton
            else:
                if gradient > 0 or (gradient == 0 and x - left > right - x):
                    end, trial = left, x - _GOLDEN * (x - left)
                else:
                    end, trial = right, x + _GOLDEN * (right - x)
                # The loss falls toward that end: where it still falls there
                # (a basin of the grid that is a slope of the loss, or a
                # minimum beyond the bracket), the minimum within the bracket
                # is the end itself, which golden sections would only
                # approach, a factor 0.62 a step; it is tried first, once.
                # (An end that a trial moved has been evaluated.)
                if end in untried:
                    untried.discard(end)
                    trial = end
                elif (
                    end in slopes
                    and slopes[end][1] * (end - x) > 0
                    and right - left <= _CORNER_BRACKET
                ):
                    # The loss rises into that end: the minimum lies between,
                    # at a kink of a compact kernel's loss, say (a corner,
                    # which Newton's steps overshoot and golden sections
                    # approach a factor 0.62 a step). Where the tangents at
                    # x and at the end meet: the corner itself where the
                    # loss is straight on either side.
                    end_value, end_slope = slopes[end]
                    meet = (end_value - value + gradient * x - end_slope * end) / (
                        gradient - end_slope
                    )
                    if min(x, end) < meet < max(x, end):
                        trial = meet
            last = _LAST_NEWTON_STEP if trial == newton else _LOG_WIDTH_TOL
            if abs(trial - x) <= last:
                if trial == newton:
                    # Newton's last step is taken: its error after it is of
                    # the order of its square (see _LAST_NEWTON_STEP).
                    trial_value = objective.evaluate([trial], order=0)[0]
                    if trial_value <= value + _LOSS_ROUNDING * abs(value):
                        x, value = trial, trial_value
                if record:
                    self._record(value)
                return np.array([x]), True, value
            trial_value, trial_gradient, trial_second = objective.evaluate(
                [trial], order=2
            )
            # Within rounding of the loss, the gradient decides: near the
            # minimum, loss values cannot tell points apart, Newton's steps can.
            if trial_value <= value + _LOSS_ROUNDING * abs(value):
                if trial > x:
                    left = x
                else:
                    right = x
                slopes[x] = (value, gradient)
                x, value = trial, trial_value
                gradient, second = trial_gradient[0], trial_second
            else:
                if trial > x:
                    right = trial
                else:
                    left = trial
                slopes[trial] = (trial_value, trial_gradient[0])
            if record:
                self._record(value)
            if abs(gradient) * (right - left) <= 1e-15 * self.baseline:
                return np.array([x]), True, value
        return np.array([x]), False, value

    def lbfgs(self, starts, *, rows, known=None, trials=()):
        """L-BFGS-B from the better end of short runs from the two lowest of
        ``starts`` (from the start alone with one), and with several starts
        again from a lower point one feature's move away (see
        :meth:`_escape`); a result on a bound is checked against the losses
        on the way there. ``rows``: the
        subsample of rows left out to find the way above _SUBSAMPLE_ROWS
        rows (None below). ``known``: each start's loss on every row where
        it is already known, or None. ``trials``: more points for the
        escape's first round.

        Returns
        -------
        log_bandwidth : ndarray of shape (n_widths,)
        converged : bool
        """
        objective = self.objective
        # Above _SUBSAMPLE_ROWS rows, the start is chosen, the way found and
        # the checks below made on a subsample of the rows left out (every
        # sample is still a key); the full loss has the last word.
        self._record(objective.evaluate(starts[0], order=0)[0], starts[0])
        known = [None] * len(starts) if known is None else known
        start_losses = [
            self.loss_curve[0]
            if rows is None and index == 0
            else known[index]
            if known[index] is not None
            else objective.evaluate(start, rows, order=0)[0]
            for index, start in enumerate(starts)
        ]
        best = int(np.argmin(start_losses))
        start = starts[best]
        scale = None
        # The two lowest starts (L-BFGS-B from the lowest can end in a worse
        # minimum than from the next: from the one-width optimum, three
        # times as high on one problem): a short run from each, and the
        # search goes on from the lower end.
        candidates = [starts[index] for index in np.argsort(start_losses)[:2]]
        if len(candidates) > 1 and np.array_equal(*candidates):
            candidates = candidates[:1]
        if rows is None and len(starts) > 1:
            # Choosing among the starts counts as the first iteration.
            self._record(start_losses[best], start)
        if rows is not None and len(starts) > 1:
            start, _ = self._race(candidates, rows, _RACE_ITERATIONS)
            start, _ = self._run_lbfgs(
                start, rows, record=False, max_iter=min(50, self.max_iter)
            )
            probe = self._plateau_probe(start, rows)
            if probe is not None:
                start, _ = self._run_lbfgs(
                    probe, rows, record=False, max_iter=min(50, self.max_iter)
                )
            scale = self._curvature_scales(start, rows)
            # Choosing among the starts and the search on the subsample
            # count as the first iteration, at its end on every row: the
            # point where L-BFGS-B on every row starts, so that its first
            # evaluation is this one (kept, see evaluate; the fused
            # kernels' float32 gradient is not, and their loss alone is
            # float64). Where that end is higher on every row than the
            # given start, the search goes on from the start instead.
            order = 0 if objective.fused else 1
            value = objective.evaluate(start, order=order)[0]
            if not value <= self.loss_curve[0]:
                start, value = starts[0], self.loss_curve[0]
            self._record(value, start)
        elif len(starts) > 1 and len(self.loss_curve) <= self.max_iter:
            budget = self.max_iter + 1 - len(self.loss_curve)
            end, converged = self._race(candidates, None, min(_RACE_ITERATIONS, budget))
            # Where the race ran on a quarter of the rows, its end may be
            # higher on all of them than the lowest start: the search then
            # goes on from that start, so that it never ends above it.
            value = objective.evaluate(end, order=0)[0]
            if value <= start_losses[best]:
                start = end
            else:
                value, converged = start_losses[best], False
            # The runs count as one iteration more.
            if len(self.loss_curve) <= self.max_iter:
                self._record(value, start)
            probe = None if converged else self._plateau_probe(start, None)
            if probe is not None and len(self.loss_curve) <= self.max_iter:
                self._record(objective.evaluate(probe, order=0)[0], probe)
                start = probe
        result, converged = self._run_lbfgs(start, None, record=True, scale=scale)
        if rows is None:
            result = self._polish(result)
        if len(starts) > 1:
            result, converged = self._escape(result, converged, rows, trials)

        def loss(point):
            return objective.evaluate(point, rows, order=0)[0]

        # Where the loss still falls as widths shrink toward their lower
        # bounds (duplicated rows predict one another ever better), compare
        # with the bounds themselves: all of them at once, and each flat one
        # (below) alone, since the loss can fall along one width's valley
        # more than along the diagonal. The lowest is taken.
        value, gradient, _ = objective.evaluate(result, rows, order=1)
        shrinking = gradient > 0
        flat = np.zeros_like(shrinking)
        if self.curvature is not None:
            # A width along which the loss has no slope and no positive
            # curvature beyond rounding (nearest-neighbour prediction of rows
            # that keep weight of their own, say) is no minimum along it, and
            # may fall further on: whichever sign the rounding gives its
            # slope, its lower bound is compared. The curvature is the last
            # Newton step's (see _polish), a tiny step away at most.
            still = np.abs(gradient) <= _FLAT_RELATIVE * self.baseline
            flat = still & (self.curvature <= _FLAT_RELATIVE * self.baseline)
            # (Not one on its upper bound: there it takes no part.)
            flat &= (result > self.lower) & (result < self.upper)
            # One with no slope beyond rounding and a positive curvature is
            # at a minimum along it, whatever sign the rounding gives its
            # slope: the loss rises toward its lower bound.
            shrinking &= ~(still & (self.curvature > _FLAT_RELATIVE * self.baseline))
            shrinking |= flat
        probe = np.where(shrinking, self.lower, result)
        probes = [probe]
        if np.count_nonzero(probe != result) > 1:
            for feature in np.flatnonzero(flat):
                alone = result.copy()
                alone[feature] = self.lower[feature]
                probes.append(alone)
        if np.any(probe != result) and len(self.loss_curve) < self.max_iter:
            probe_losses = [loss(probe) for probe in probes]
            lowest = int(np.argmin(probe_losses))
            if probe_losses[lowest] < value:
                probe = probes[lowest]
                self._record(objective.evaluate(probe, order=0)[0], probe)
                result, converged = self._run_lbfgs(probe, None, record=True)
                value = loss(result)
        on_bound = np.isclose(result, self.lower) | np.isclose(result, self.upper)
        # A width on a bound since the start of the last run (put there by
        # the plateau probe, which compared the losses on its way) is not a
        # jump.
        on_bound &= result != start
        if np.any(on_bound) and len(self.loss_curve) < self.max_iter:
            # Compare the losses on the way to the bound before accepting it.
            path = [start + f * (result - start) for f in np.linspace(0.1, 0.9, 9)]
            losses = [loss(point) for point in path]
            best_on_path = int(np.argmin(losses))
            if losses[best_on_path] < value:
                result, converged = self._run_lbfgs(
                    path[best_on_path], None, record=True
                )
        if self.last_point is None or np.any(result != self.last_point):
            # The last entry of the loss curve is the loss at the result: a
            # step not yet reported is reported, or undone without budget.
            if len(self.loss_curve) < self.max_iter + 1:
                self._record(objective.evaluate(result, order=0)[0], result)
            elif self.last_point is not None:
                result = self.last_point
        return result, converged

    def _escape(self, result, converged, rows, extra=()):
        """Per feature the loss can have several local minima (on small or
        rough data), and L-BFGS-B ends in the one its way leads to: compare
        the loss at each feature's width alone times 1/4, 1/2, 2 and 4 and at
        its upper bound (where the feature takes no part), or, for a width
        beyond 16 times its feature's range (on the plateau where the weights
        barely depend on the feature, which such factors do not leave), at
        16, 4, 1, 1/4, 1/16 and 1/64 times that range; from the lowest,
        where it is lower by more than _ESCAPE_MARGIN, L-BFGS-B again, and
        keep its end where that is lower. At most _ESCAPES times. Where the
        moves find no lower point (or have run _ESCAPES times), one round
        more ranks the points of ``extra``, from before the search (see
        :func:`_alone_trial` and :func:`_alone_scans`): the lowest, where it
        is lower than the escape's start, is followed the same way, the
        moves going on from the run's end where that is no lower than the
        moves' own end, which is kept unless the run's (or the moves' from
        it) is lower. Under a compact kernel with two or more features,
        where those find no lower point (or the moves have run _ESCAPES
        times), a round takes a lower point along a line from the end (see
        :meth:`_line_minimum`), followed the same way, and the moves go on
        from where L-BFGS-B ends from it, where that is lower (the lines
        again once the moves are spent; at most _ESCAPES times in one
        escape).

        The trial points are ranked on the subsample of rows the search
        leaves out (``rows``; a quarter of the rows from 4 * _SCAN_ROWS on
        otherwise), on a quarter of those first where they are that many
        (see :meth:`_ranked_losses`), and the lowest compared on every row.
        Only after the search from several starts (not for
        ``solver="lbfgs"``, a local search from the given start), and with
        _ESCAPE_BUDGET iterations left.

        Returns
        -------
        log_bandwidth : ndarray of shape (n_features,)
        converged : bool
        """
        objective = self.objective
        escape = _Escape(objective, result, converged, rows)
        # Beyond 16 times its range the weights barely depend on a feature
        # (its plateau, up to its upper bound): moved by factors up to 4 it
        # stays there, and its trials are instead widths from 16 times its
        # range down to its range / 64, a factor 4 apart, set from the
        # range itself.
        plateau = _plateau_log_widths(objective.X_numpy)
        ladder = -2 * math.log(2.0) * np.arange(6)
        # Where outliers set a feature's range, the widths that matter to
        # the rest of the samples lie far below that ladder: a feature on
        # its plateau tries widths near its interquartile range too (a
        # far outlier's left-out prediction can depend on them: one such
        # problem ended 4.1 % above the lowest loss without them).
        bulk = _bulk_log_widths(objective.X_numpy, objective.sample_weight_numpy)
        # The one-feature moves first, then the points from before the
        # search (see _alone_trial and _alone_scans) in a round of their
        # own, where they can only lower the end: followed first, one of
        # them could lead L-BFGS-B away from the minimum the moves reach.
        # One is followed where it is lower than the escape's start (not
        # only than the moves' end: from it L-BFGS-B may go lower still),
        # and from a point of theirs the moves go on.
        pending = [np.asarray(point, dtype=float) for point in extra]
        start = escape.result, escape.value
        # A compact kernel's loss has a kink wherever a pair enters the
        # support, and jumps where a row that no other sample reaches changes
        # nearest sample: L-BFGS-B can stop at a kink or at the edge of a
        # jump, where no move by a factor 2 or 4 is lower. Where the moves
        # find no lower point (or have run _ESCAPES times) and the points
        # from before the search none either, a round of lines follows: a
        # lower point along each feature off its plateau alone, or along
        # their common scale (see _line_minimum); from where L-BFGS-B ends
        # from it the moves go on, or the lines again once the moves are
        # spent; the escape ends where the lines find no lower point. They
        # come after the others, so that they can only lower the end those
        # reach.
        lines_on = objective.kernel.compact and result.size > 1
        moves_left, lines_left, moving = _ESCAPES, _ESCAPES, True
        while True:
            # (With fewer iterations left, a run from the trial could not get
            # far.)
            if len(self.loss_curve) + _ESCAPE_BUDGET > self.max_iter:
                break
            if escape.value < _NEGLIGIBLE_RELATIVE_LOSS * self.baseline:
                # The left-out predictions are exact to within rounding: no
                # point can be told from another.
                break
            against = None
            if moving and moves_left > 0:
                phase = "moves"
                moves_left -= 1
                trials = self._move_trials(escape.result, plateau, ladder, bulk)
            elif pending:
                phase = "points"
                trials, pending, against = pending, [], start
            elif lines_on and lines_left > 0:
                phase = "lines"
                lines_left -= 1
                trials = self._line_minimum(escape, plateau)
            else:
                break
            moved = bool(trials) and self._escape_round(
                escape, np.array(trials), against
            )
            if phase == "lines" and not moved:
                break
            moving = moved
        return escape.result, escape.converged

    def _escape_round(self, escape, trials, against=None):
        """One round of :meth:`_escape`: the lowest of ``trials`` on the
        ranking rows, where it is lower than the escape's end (or the point
        of ``against``, a point and its loss; by more than _ESCAPE_MARGIN,
        there and on every row), then L-BFGS-B from it, its end kept where
        that is lower than the escape's.

        Returns
        -------
        moved : bool
            Whether the end was kept (and ``escape`` updated).
        """
        objective = self.objective
        losses = self._ranked_losses(trials, escape.ranking)
        if not np.isfinite(np.min(losses)):
            return False
        # The first of the lowest to within the margin: equivalent data
        # (weights or repeated rows), whose losses differ by rounding, take
        # the same one.
        best = int(np.argmax(losses <= np.min(losses) * (1 + _ESCAPE_MARGIN)))
        point, point_value = (
            (escape.result, escape.value) if against is None else against
        )
        if not losses[best] < escape.ranked_loss(point, point_value) * (
            1 - _ESCAPE_MARGIN
        ):
            return False
        trial_value = (
            losses[best]
            if escape.ranking is None
            else objective.evaluate(trials[best], order=0)[0]
        )
        if not trial_value < point_value * (1 - _ESCAPE_MARGIN):
            return False
        self._record(trial_value, trials[best])
        # (One iteration is kept back: where the run's end is not kept, the
        # loss curve ends with the result again.)
        end, end_converged = self._run_lbfgs(
            trials[best],
            None,
            record=True,
            max_iter=self.max_iter - len(self.loss_curve),
        )
        curvature, self.curvature = self.curvature, None
        if escape.rows is None:
            end = self._polish(end)
        end_value = objective.evaluate(end, order=0)[0]
        if not end_value < escape.value and against is not None:
            # From a point before the search, the moves may go on lower than
            # the end the moves from the search's own end reached.
            end, end_converged = self._escape(end, end_converged, escape.rows)
            end_value = objective.evaluate(end, order=0)[0]
        if not end_value < escape.value:
            self.curvature = curvature
            return False
        escape.result, escape.converged, escape.value = end, end_converged, end_value
        return True

    def _move_trials(self, end, plateau, ladder, bulk):
        """The escape's moves from ``end``: each feature's width alone times
        1/4, 1/2, 2 and 4 and at its upper bound, or, on its ``plateau``
        (log-widths), at the ``ladder`` below it and at ``bulk`` (see
        :meth:`_escape`)."""
        steps = math.log(2.0) * np.array([-2.0, -1.0, 1.0, 2.0])
        trials = []
        for feature in range(end.size):
            widths = end[feature] + steps
            if end[feature] >= plateau[feature] - _PLATEAU_ROUNDING:
                widths = np.append(plateau[feature] + ladder, bulk[feature])
            widths = np.clip(widths, self.lower[feature], self.upper[feature])
            widths = np.unique(np.append(widths, self.upper[feature]))
            for width in widths[widths != end[feature]]:
                trial = end.copy()
                trial[feature] = width
                trials.append(trial)
        return trials

    def _line_minimum(self, escape, plateau):
        """A lower point along a line from the escape's end, on its ranking
        rows: each feature off its ``plateau`` (log-widths) alone, and those
        features together where two or more are, their widths times 2^(k/32)
        for k = 1, 2, 4, 8, 12, 16, 24 and 32 either way (ranked as the
        moves are, see :meth:`_ranked_losses`); then Brent's bounded search
        for a minimum on the lowest one's line between its neighbours (the
        lowest one itself where that is no lower). Of points equally low, the
        one nearest the end (points clipped to the same bound tie). An empty
        list where none is lower than the end by more than _ESCAPE_MARGIN,
        or where the lines were searched from the same end before."""
        objective = self.objective
        result, ranking = escape.result, escape.ranking
        key = result.tobytes()
        if key in self._lines_searched:
            return []
        self._lines_searched.add(key)
        off = result < plateau - _PLATEAU_ROUNDING
        lines = list(np.eye(off.size, dtype=bool)[off])
        if len(lines) > 1:
            lines.append(off)
        if not lines:
            return []

        def point(line, shift):
            moved = np.where(line, result + shift, result)
            return np.clip(moved, self.lower, self.upper)

        centre = int(np.flatnonzero(_LINE_SHIFTS == 0.0)[0])
        moves = np.delete(_LINE_SHIFTS, centre)
        points = np.array([point(line, shift) for line in lines for shift in moves])
        end_loss = escape.ranked_loss(result, escape.value)
        table = np.insert(
            self._ranked_losses(points, ranking).reshape(len(lines), -1),
            centre,
            end_loss,
            axis=1,
        )
        lowest = np.min(table)
        if not lowest < end_loss * (1 - _ESCAPE_MARGIN):
            return []
        on_line, index = np.nonzero(table == lowest)
        nearest = int(np.argmin(np.abs(_LINE_SHIFTS[index])))
        line, index = lines[on_line[nearest]], index[nearest]
        bounds = (
            _LINE_SHIFTS[max(index - 1, 0)],
            _LINE_SHIFTS[min(index + 1, len(_LINE_SHIFTS) - 1)],
        )

        def loss(shift):
            return _point_losses(objective, point(line, shift)[None], ranking)[0]

        # (A loss that cannot be computed is +inf, which Brent's steps only
        # compare.)
        with np.errstate(invalid="ignore"):
            refined = minimize_scalar(
                loss, bounds=bounds, method="bounded", options={"xatol": _LINE_TOL}
            )
        if not refined.fun < lowest:
            return [point(line, _LINE_SHIFTS[index])]
        return [point(line, refined.x)]

    def _ranked_losses(self, trials, ranking):
        """The escape's losses of ``trials`` on the rows ``ranking`` (every
        row when None), +inf where not finite. From 4 * _SCAN_ROWS ranking
        rows, the trials are first ranked on a quarter of them, and only the
        _ESCAPE_FINALISTS lowest there (with any within _ESCAPE_MARGIN of the
        last of them) are scored on all of them, +inf at the others: at
        n = 20,000, d = 4, ranking the 20 trials on the search's 2,000 rows
        took 6.6 s of a 54 s fit."""
        objective = self.objective
        quarter = None if ranking is None else _quarter_rows(len(ranking))
        if quarter is None:
            return _point_losses(objective, trials, ranking)
        quarter = ranking[quarter]
        rough = _point_losses(objective, trials, quarter)
        # The lowest few, and every trial within the escape's margin of the
        # last of them: equivalent data, whose losses differ by rounding,
        # score the same trials.
        cut = np.sort(rough)[min(_ESCAPE_FINALISTS, len(rough)) - 1]
        finalists = np.flatnonzero(
            np.isfinite(rough) & (rough <= cut * (1 + _ESCAPE_MARGIN))
        )
        losses = np.full(len(trials), np.inf)
        if len(finalists):
            losses[finalists] = _point_losses(objective, trials[finalists], ranking)
        if not np.any(np.isfinite(losses)) and np.any(np.isfinite(rough)):
            # No finalist's loss is finite on every ranking row: every trial.
            losses = _point_losses(objective, trials, ranking)
        return losses

    def _plateau_probe(self, point, rows):
        """A feature whose width still grows may be on the plateau of an
        irrelevant one, where L-BFGS creeps (the loss approaches its limit
        as 1 / h^2): where the loss at its upper bound, where the feature
        takes no part, is lower, scan the loss along that feature's
        log-width below the bound, doubling the step down from it, and keep
        the lowest: the bound unless a point is lower by more than rounding.
        The points are set from the bound, not from where the search left
        the width, so that equivalent data (weights or repeated rows), whose
        searches end a rounding apart, find the same point.

        Returns
        -------
        point : ndarray or None
            The point with each such feature moved to the lowest loss of its
            scan, or None when no scan found a lower loss.
        """
        objective = self.objective
        value, gradient, _ = objective.evaluate(point, rows, order=1)
        moved = np.array(point, dtype=float)
        candidates = np.flatnonzero((gradient < 0) & (moved < self.upper))
        # The bounds first, all in one pass: a feature that still helps
        # there is not on a plateau, and L-BFGS-B goes on from where it is.
        ends = np.repeat(moved[None], len(candidates), axis=0)
        ends[np.arange(len(candidates)), candidates] = self.upper[candidates]
        end_values = objective.losses_at_points(ends, rows)
        for feature, end, end_value in zip(candidates, ends, end_values):
            if not np.array_equal(moved, point):
                # A feature before it moved: its bound from there.
                end = moved.copy()
                end[feature] = self.upper[feature]
                end_value = objective.losses_at_points(end[None], rows)[0]
            if not end_value < value:
                continue
            value, best = end_value, end.copy()
            room = self.upper[feature] - moved[feature]
            steps = [step for step in 0.5 * 2.0 ** np.arange(12) if step < room]
            trials = np.repeat(moved[None], len(steps), axis=0)
            trials[:, feature] = self.upper[feature] - np.array(steps)
            trial_values = objective.losses_at_points(trials, rows)
            for trial, trial_value in zip(trials, trial_values):
                if trial_value < value - _LOSS_ROUNDING * abs(value):
                    value, best = trial_value, trial
            moved = best
        return None if np.array_equal(moved, point) else moved

    def _polish(self, log_bandwidth, n_steps=1):
        """Newton steps on the widths off their bounds, with the analytic
        Hessian where the objective has one (one width, or the Gaussian's per
        feature), from differences of the analytic gradient otherwise.

        L-BFGS-B judges its line searches by loss values, which pins the
        widths down to about the square root of the precision; a Newton step
        solves for a zero gradient, which pins them down to the precision
        itself, so that equivalent data (weights or repeated rows) give the
        same widths.
        """
        objective = self.objective
        free = ~(
            np.isclose(log_bandwidth, self.lower, rtol=0, atol=1e-9)
            | np.isclose(log_bandwidth, self.upper, rtol=0, atol=1e-9)
        )
        if not np.any(free):
            return log_bandwidth
        value, gradient = objective(log_bandwidth)
        for _ in range(n_steps):
            if objective.feature_hessian or log_bandwidth.size == 1:
                # The Hessian alone: the loss and gradient the step is judged
                # by come from the same evaluations as the trial's.
                hessian = np.atleast_2d(objective.evaluate(log_bandwidth, order=2)[2])
                self.curvature = np.diag(hessian).copy()
                # A width with no curvature beyond rounding is flat: a step
                # along it would follow the rounding of its slope (and differ
                # between equivalent data); the checks after the search take
                # it up.
                free &= self.curvature > _FLAT_RELATIVE * self.baseline
                if not np.any(free):
                    return log_bandwidth
                hessian = hessian[np.ix_(free, free)]
            else:
                step = 1e-5
                hessian = np.empty((free.sum(), free.sum()))
                for row, index in enumerate(np.flatnonzero(free)):
                    shifted = log_bandwidth.copy()
                    shifted[index] += step
                    hessian[row] = (objective(shifted)[1] - gradient)[free] / step
            hessian = (hessian + hessian.T) / 2
            eigenvalues, eigenvectors = np.linalg.eigh(hessian)
            if eigenvalues.min() <= 0:
                return log_bandwidth
            newton = eigenvectors @ ((eigenvectors.T @ gradient[free]) / eigenvalues)
            trial = log_bandwidth.copy()
            trial[free] = np.clip(
                trial[free] - newton, self.lower[free], self.upper[free]
            )
            trial_value, trial_gradient = objective(trial)
            if not (
                trial_value <= value + 1e-14 * abs(value)
                and np.abs(trial_gradient[free]).max() < np.abs(gradient[free]).max()
            ):
                return log_bandwidth
            log_bandwidth, value, gradient = trial, trial_value, trial_gradient
        return log_bandwidth

    def _race(self, starts, rows, max_iter):
        """L-BFGS-B from each of ``starts`` for at most ``max_iter``
        iterations on ``rows``, recording nothing.

        Returns
        -------
        log_bandwidth : ndarray
            The lowest end.
        converged : bool
            Whether its run converged.
        """
        n_rows = self.objective.n_samples if rows is None else len(rows)
        chosen = _quarter_rows(n_rows) if len(starts) > 1 else None
        if chosen is not None:
            # Only the way is chosen: on a quarter of the rows left out.
            rows = chosen if rows is None else rows[chosen]
        ends = [
            self._run_lbfgs(
                start, rows, record=False, max_iter=max_iter, with_loss=True
            )
            for start in starts
        ]
        point, converged, _ = min(ends, key=lambda end: end[2])
        return point, converged

    def _curvature_scales(self, point, rows):
        """Powers of 2 by which to divide the log-widths, so that L-BFGS-B on
        every row sees the loss about equally curved along each: one over
        the square root of its curvature on ``rows`` at ``point`` (the
        diagonal of the analytic Hessian), rounded in its logarithm to a
        power of 2 and within a factor 64 of their median; a width on a
        bound, or not curved upward there, takes the median. None without
        an analytic Hessian, and where the Hessian on ``rows`` would cost
        more than about one evaluation on every row (its pairs, rows times
        samples, times the number of features, above twice the squared
        number of samples).

        The search on a subsample of the rows ends near the minimum on
        every row, but a width that matters little (a feature of noise)
        is far less curved than the others; unscaled, L-BFGS-B's first steps
        on every row then move it little, and it creeps toward it. At
        n = 20,000, d = 4 (bench_learn's problem) the run on every row took
        15 evaluations of the loss and gradient from the subsample's end,
        and 10 scaled, to the same minimum.

        Returns
        -------
        scale : ndarray of shape (n_features,) or None
        """
        objective = self.objective
        n_features = np.size(point)
        if not objective.feature_hessian or n_features < 2:
            return None
        n_samples = objective.n_samples
        n_rows = n_samples if rows is None else len(rows)
        if n_rows * n_features > 2 * n_samples:
            return None
        hessian = np.atleast_2d(objective.evaluate(point, rows, order=2)[2])
        curvature = np.diag(hessian) / self.baseline
        inside = (point > self.lower) & (point < self.upper)
        curved = inside & np.isfinite(curvature) & (curvature > 0)
        if not np.any(curved):
            return None
        log_scale = np.zeros(n_features)
        log_scale[curved] = np.round(-0.5 * np.log2(curvature[curved]))
        median = np.round(np.median(log_scale[curved]))
        log_scale = np.where(curved, log_scale, median)
        # Powers of 2: the widths the run takes are exactly its points times
        # the scale.
        return np.exp2(np.clip(log_scale, median - 6, median + 6))

    def _run_lbfgs(
        self, start, rows, *, record, max_iter=None, with_loss=False, scale=None
    ):
        """L-BFGS-B from ``start`` on ``rows``: the end and whether the run
        converged, and with ``with_loss`` the loss there. ``scale``: the
        powers of 2 the log-widths are divided by for the run (see
        :meth:`_curvature_scales`)."""
        objective = self.objective
        if max_iter is None:
            max_iter = self.max_iter + 1 - len(self.loss_curve)
        # With no width free to move (every feature constant, each width's
        # bounds equal), there is nothing to run.
        fixed = bool(np.all(self.upper <= self.lower))
        if max_iter < 1 or fixed:
            start = np.clip(np.asarray(start, dtype=float), self.lower, self.upper)
            if record and fixed and len(self.loss_curve) < 2:
                self._record(objective.evaluate(start, order=0)[0], start)
            if with_loss:
                return start, fixed, objective.evaluate(start, rows, order=0)[0]
            return start, fixed

        scale = np.ones(np.size(start)) if scale is None else scale

        def relative(scaled):
            value, gradient = objective(scaled * scale, rows)
            return value / self.baseline, gradient * scale / self.baseline

        def callback(intermediate_result):
            if record:
                self._record(
                    intermediate_result.fun * self.baseline,
                    intermediate_result.x * scale,
                )
            if intermediate_result.fun < _NEGLIGIBLE_RELATIVE_LOSS:
                # The left-out predictions are exact to within rounding of
                # the targets' spread: no width can be told from another.
                raise StopIteration

        # The gradient in the scaled widths is the gradient times the scale:
        # its tolerance times the smallest, never looser than unscaled.
        result = minimize(
            relative,
            np.asarray(start, dtype=float) / scale,
            jac=True,
            method="L-BFGS-B",
            bounds=list(zip(self.lower / scale, self.upper / scale)),
            callback=callback,
            options={
                "maxiter": max_iter,
                "gtol": _LBFGS_GTOL * float(np.min(scale)),
                "ftol": _LBFGS_FTOL,
            },
        )
        end = result.x * scale
        if record and len(self.loss_curve) < 2:
            # Already optimal at the start: one evaluation, no step.
            self._record(result.fun * self.baseline, end)
        if with_loss:
            return end, result.status != 1, result.fun * self.baseline
        return end, result.status != 1

    def minibatch(self, start, *, method, learning_rate, batch_size, tol, random_state):
        """Minibatch gradient descent over rows: plain steps ("sgd", the
        textbook's loop) or Adam's (Kingma and Ba, 2015). The exact loss is
        recorded after each epoch, and judges progress.

        Returns
        -------
        log_bandwidth : ndarray of shape (n_widths,)
        converged : bool
        """
        objective = self.objective
        random_state = check_random_state(random_state)
        n_samples = objective.n_samples
        log_bandwidth = np.array(start, dtype=np.float64)
        first_moment = np.zeros_like(log_bandwidth)
        second_moment = np.zeros_like(log_bandwidth)
        n_steps = 0
        self._record(objective.evaluate(log_bandwidth, order=0)[0])
        best_curve = [self.loss_curve[0]]
        for _ in range(self.max_iter):
            order = random_state.permutation(n_samples)
            for batch in gen_batches(n_samples, batch_size):
                _, gradient = objective(log_bandwidth, order[batch])
                gradient = gradient / self.baseline
                if method == "adam":
                    n_steps += 1
                    beta1, beta2 = _ADAM_BETAS
                    first_moment = beta1 * first_moment + (1 - beta1) * gradient
                    second_moment = beta2 * second_moment + (1 - beta2) * gradient**2
                    mean = first_moment / (1 - beta1**n_steps)
                    spread = np.sqrt(second_moment / (1 - beta2**n_steps))
                    gradient = mean / (spread + 1e-8)
                log_bandwidth = np.clip(
                    log_bandwidth - learning_rate * gradient, self.lower, self.upper
                )
            value = objective.evaluate(log_bandwidth, order=0)[0]
            self._record(value)
            best_curve.append(min(value, best_curve[-1]))
            if len(best_curve) > N_ITER_NO_CHANGE:
                improvement = best_curve[-1 - N_ITER_NO_CHANGE] - best_curve[-1]
                if improvement < tol * self.baseline:
                    return log_bandwidth, True
        return log_bandwidth, False


def _kink_sweep(objective):
    """A :class:`~sknw._loo_kinks.KinkSweep` of ``objective`` where one
    applies: Nadaraya-Watson's loss under a kernel of
    :data:`~sknw._loo_kinks.SERIES_KERNELS`, its squared distances kept, a
    window of at least WINDOW_FRACTION of the kinks (see
    :meth:`KinkSweep.window`), its arrays within ``working_memory``, and its
    powers of the width within range (see :meth:`KinkSweep.in_range`);
    otherwise None."""
    if (
        type(objective) is not LeaveOneOutObjective
        or objective.name not in SERIES_KERNELS
        or KinkSweep.window(objective) < WINDOW_FRACTION * KinkSweep.n_kinks(objective)
        or KinkSweep.memory(objective) > get_config()["working_memory"] * 2**20
        or objective._distance_cache(False) is None
        or not KinkSweep.in_range(objective)
    ):
        return None
    return KinkSweep(objective)


def _warn_on_bounds(name, log_bandwidth, lower, upper, per_feature):
    """Say when a learned width sits on a bound, and what that means."""
    at_lower = np.isclose(log_bandwidth, lower, rtol=0, atol=1e-8) & (upper > lower)
    at_upper = np.isclose(log_bandwidth, upper, rtol=0, atol=1e-8) & (upper > lower)
    if per_feature:
        if np.any(at_lower):
            warnings.warn(
                f"{name}: the learned width of feature(s) "
                f"{np.flatnonzero(at_lower).tolist()} is at its lower bound, below "
                "which each left-out prediction follows that feature's nearest "
                "neighbour alone: the loss is flat there, and a smaller width "
                "would change nothing.",
                UserWarning,
            )
        return
    if at_lower[0]:
        warnings.warn(
            f"{name}: the learned width is at its lower bound, below which every "
            "left-out prediction is its nearest neighbour's value: the leave-one-"
            "out loss is lowest for nearest-neighbour prediction, and a smaller "
            "width would change nothing.",
            UserWarning,
        )
    elif at_upper[0]:
        warnings.warn(
            f"{name}: the learned width is at its upper bound, above which every "
            "left-out prediction is the weighted mean of the others: the features "
            "do not help predict the target under this loss.",
            UserWarning,
        )


def _constant_prediction_loss(values, sample_weight, loss):
    """Loss of predicting the weighted mean everywhere: the loss's scale."""
    mean = np.average(values, axis=0, weights=sample_weight)
    if loss == "squared_error":
        scale = np.average(((values - mean) ** 2).mean(axis=1), weights=sample_weight)
    else:
        present = mean[mean > 0]
        scale = -(present * np.log(present)).sum()
    return float(scale) if scale > 0 else 1.0


class _Progress:
    """Progress table of the learning, printed when verbose > 0."""

    def __init__(self, name, verbose, loss_scale):
        self.prefix = f"[{name}]"
        self.verbose = verbose
        self.loss_scale = loss_scale
        self.started = time.perf_counter()

    def _print(self, line):
        if self.verbose > 0:
            print(f"{self.prefix} {line}", flush=True, file=sys.stdout)

    def start(self, solver, n_widths, n_samples):
        widths = "1 width" if n_widths == 1 else f"{n_widths} widths"
        self._print(
            f"Learning the bandwidth by leave-one-out: {solver}, {widths}, "
            f"{n_samples} samples"
        )
        self._print(f"{'iteration':>9} {'loss':>12} {'change':>11} {'seconds':>9}")

    def row(self, iteration, loss_curve):
        with np.errstate(over="ignore"):
            loss = float(loss_curve[-1] * self.loss_scale)
            change = ""
            if len(loss_curve) > 1:
                difference = loss_curve[-1] - loss_curve[-2]
                change = float(difference * self.loss_scale) if difference else 0.0
                change = f"{change:>11.3e}"
        seconds = time.perf_counter() - self.started
        self._print(f"{iteration:>9d} {loss:>12.6e} {change:>11} {seconds:>9.2f}")

    def finish(self, converged, n_iter, bandwidth):
        seconds = time.perf_counter() - self.started
        state = "Converged" if converged else "Stopped at max_iter"
        if bandwidth.size == 1:
            widths = f"bandwidth {float(bandwidth[0]):.6g}"
        else:
            widths = "bandwidth " + np.array2string(bandwidth, precision=4)
        self._print(f"{state} after {n_iter} iterations in {seconds:.2f} s: {widths}")

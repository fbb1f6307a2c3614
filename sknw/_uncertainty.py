"""Standard errors and jackknife+ intervals of the regressors, chunk by chunk."""

# Authors: the sknw developers
# License: BSD 3 clause

import functools
import math
from numbers import Real

import numpy as np
import torch

from sknw._engine import (
    compute_dtype,
    for_each_chunk,
    log_weight_floor,
    make_problem,
    make_settings,
    numpy_dtype,
    positive_weight_keys,
    times,
)
from sknw._local_moments import local_linear_fit

# Blocks of (chunk_n_rows, n_keys) alive at once: the kernel weights and a
# spare for their distances, the removals (for fractional sample weights),
# the squared weights or smoother factors, and, for the intervals, the
# leave-one-out denominators and predictions, the rows in order of their
# margins, and up to three for a group's window (the window, its two sets of
# bounds; a sort's working copy when the weights are fractional).
_BLOCKS_PER_ROW = 10

# Percentiles at which the rows of a chunk, in order of their margins, are
# split into groups with windows of their own: the widest 5 % apart.
_GROUP_EDGES = np.array([50, 80, 95, 100])

# How far above the floor at which log-weights are clamped (in log-weight)
# the largest of a row's other keys must be for their weights to be exact:
# the clamped ones are then below e^-50 of it.
_REST_MARGIN = 50.0

# Integer sample weights are quantiled as repeated keys, by selection, while
# their sum is at most this many times the number of keys; larger ones, and
# fractional ones, by a sort of the window with cumulative weights.
_MOST_REPEATS = 8

# Leave-one-out fits whose downdate divides by less than this (the sample's
# leverage in the local fit is above 1 minus it) are solved again from the
# downdated sums: leaving the sample out nearly or wholly empties a direction
# of the design, where the fit may fall back to the local constant one.
_LEVERAGE_MARGIN = 1e-2

# A row's dominant key is solved again from the sums of the others where
# the downdate for it divides by less than this.
_DOMINANT_MARGIN = 0.5

# How the noise variance is estimated from the leave-one-out residuals.
NOISE_OPTIONS = ("local", "constant")


def check_noise(noise):
    """Refuse a noise estimate other than those of NOISE_OPTIONS."""
    if noise not in NOISE_OPTIONS:
        raise ValueError(f"noise must be one of {NOISE_OPTIONS}; got noise={noise!r}.")


def check_leaves_one_out(sample_weight, n_samples):
    """Refuse training samples too light to leave one out: their total
    weight must be above the largest weight a sample leaves out."""
    weight = np.ones(n_samples) if sample_weight is None else sample_weight
    if not weight.sum() > np.max(np.minimum(weight, 1.0)):
        raise ValueError(
            "Standard errors and intervals leave one training sample out: "
            "they need training samples of total weight above 1."
        )


def residual_terms(targets, predictions, variance, sample_weight):
    """What standard errors and intervals take from the leave-one-out
    predictions of the training samples.

    Parameters
    ----------
    targets, predictions : ndarray of shape (n_samples, n_outputs)
    variance : ndarray of shape (n_samples, 1)
        Each left-out prediction's sum of squared weights (at unit noise).
    sample_weight : ndarray of shape (n_samples,) or None

    Returns
    -------
    terms : dict
        ``residuals``: the absolute leave-one-out residuals;
        ``noise_level``: the constant noise variance per output, the
        weighted squared residuals over the weighted 1 + variance;
        ``scaled_squares``: the squared residuals divided by 1 + variance.
    """
    weight = np.ones(len(targets)) if sample_weight is None else sample_weight
    residuals = targets - predictions
    factor = 1.0 + variance[:, 0]
    squares = residuals**2
    return {
        "residuals": np.abs(residuals),
        "noise_level": (weight @ squares) / (weight @ factor),
        "scaled_squares": squares / factor[:, None],
    }


def check_alpha(alpha, total):
    """Refuse a jackknife+ miscoverage level outside (0, 1), or too small
    for training samples of total weight ``total``."""
    if not isinstance(alpha, Real) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a float in (0, 1); got alpha={alpha!r}.")
    if (1 - alpha) * (total + 1) > total * (1 + 1e-12):
        raise ValueError(
            f"alpha={alpha!r} is too small for training samples of total "
            f"weight {total:g}: jackknife+ needs alpha >= 1 / (n + 1) = "
            f"{1 / (total + 1):.3g}, or its upper bound would be infinite."
        )


class _Pooled:
    """Keys, their values and noise levels laid out for the chunk loop.

    Parameters
    ----------
    keys : ndarray of shape (n_keys, n_features)
    values : ndarray of shape (n_keys, n_values)
    noise : ndarray of shape (n_keys, n_noise)
        Per-key quantities whose sums with the squared normalised weights
        are wanted (ones for a constant noise level).
    settings : dict
        The engine's other arguments.
    dtype : torch.dtype
    """

    def __init__(self, keys, values, noise, settings, dtype):
        self.dtype = dtype
        self.n_values = values.shape[1]
        original = settings["sample_weight"]
        self.scale = 1.0 if original is None else float(np.max(original))
        columns = np.hstack([values, noise])
        keys, columns, settings, kept = positive_weight_keys(
            keys, columns, settings, dtype
        )
        self.kept = kept
        self.settings = settings
        self.problem = make_problem(keys, settings, dtype)
        problem = self.problem
        self.values = columns[:, : self.n_values]
        self.noise = columns[:, self.n_values :]
        # [values, 1] and the noise levels: products with the weighted block
        # give the numerators, the denominator and the sums of squares.
        self.values_t = problem.to_tensor(
            np.hstack([self.values, np.ones((len(keys), 1))])
        )
        self.noise_t = problem.to_tensor(self.noise)
        sample_weight = problem.sample_weight[:, None]
        self.weighted_values_t = self.values_t * sample_weight
        self.weighted_noise_t = self.noise_t * sample_weight
        # One unit of each key's frequency weight (all of it below 1) is what
        # leaving it out removes, in the units of the scaled weights.
        weight = np.ones(len(keys)) if original is None else np.asarray(original)
        if kept is not None:
            weight = weight[kept]
        unit = np.minimum(weight, 1.0) / self.scale
        self.unit = problem.to_tensor(unit)
        # When every key removes the same share of its kernel weight (all
        # sample weights at least 1), the removals are the kernel weights
        # times that share: no block of them, and the largest removal is
        # that of the largest kernel weight.
        self.common_unit = None
        if len(unit) and np.all(unit == unit[0]):
            self.common_unit = float(unit[0])
        # The other keys' weights are exact when the largest of them is above
        # the floor's margin; their sum above n_keys times it (sample weights
        # being at most 1) says so without a pass to find that largest.
        floor = log_weight_floor(dtype) + _REST_MARGIN
        self.rest_floor = 0.0
        if problem.kernel.log_slope is not None:
            self.rest_floor = len(keys) * math.exp(floor)

    def for_each_chunk(self, queries, query_widths, each):
        """Call ``each(batch, weights)`` on the chunks of the queries.

        ``weights`` are the kernel weights before the sample weights, each
        row's largest 1: the kernels computed in the log domain come so; the
        others are divided by their row's largest, which changes no ratio of
        sums and keeps the squared weights of a row far from the data (all
        of its weights tiny, under a compact kernel) from underflowing.
        Chunks may be handed over on several threads at once.
        """
        log_domain = self.problem.kernel.log_slope is not None

        def normalised(batch, weights, log_shift, nearest):
            if not log_domain:
                weights.div_(weights.amax(dim=1, keepdim=True))
            each(batch, weights)

        for_each_chunk(
            self.problem,
            queries,
            query_widths,
            normalised,
            blocks_per_row=_BLOCKS_PER_ROW,
        )

    def terms(self, weights, squares=True):
        """Sums of a chunk's block, with each row's dominant key apart.

        Leaving out the key whose removal takes most of a row's weight would
        subtract nearly equal numbers; summing the others apart keeps every
        leave-one-out sum free of cancellation: any other key's removal takes
        at most half of the row's weight.

        Parameters
        ----------
        weights : tensor of shape (n_rows, n_keys)
            Kernel weights, before the sample weights, each row's largest 1.
        squares : bool, default=True
            Whether to sum the squared weights times the noise.

        Returns
        -------
        terms : dict of tensors
            ``removed`` times ``removal_scale`` (a float): the kernel weight
            one unit of each key's weight carries; ``dominant``: each row's key
            of largest removal; ``top``: its kernel weight; ``rest`` and
            ``rest_squares``: the sums over the other keys of c w [values, 1]
            and c w^2 noise; ``sums`` and ``squares``: the same over all
            keys; ``exact``: rows whose other keys' weights may have
            underflowed.
        """
        problem = self.problem
        n_rows = weights.shape[0]
        rows = torch.arange(n_rows, device=weights.device)
        removed, removal_scale = weights, self.common_unit
        if removal_scale is None:
            removal_scale = 1.0
            removed = torch.mul(
                weights, self.unit, out=problem.named_block("removed", n_rows)
            )
        # max is several times faster than argmax on the CPU.
        dominant = removed.max(dim=1).indices
        top = weights[rows, dominant].clone()
        weights[rows, dominant] = 0.0
        rest = times(weights, self.weighted_values_t)
        rest_squares = None
        if squares:
            squared = torch.mul(
                weights, weights, out=problem.named_block("squared", n_rows)
            )
            rest_squares = times(squared, self.weighted_noise_t)
        weights[rows, dominant] = top
        dominant_weight = problem.sample_weight[dominant] * top
        terms = dict(
            removed=removed,
            removal_scale=removal_scale,
            dominant=dominant,
            top=top,
            rest=rest,
            sums=rest + dominant_weight[:, None] * self.values_t[dominant],
            # Where the other keys' weights may sit on the floor, or are all
            # 0, the dominant key's removal needs a pass without it.
            exact=~(rest[:, -1] > self.rest_floor),
        )
        if squares:
            terms["rest_squares"] = rest_squares
            terms["squares"] = (
                rest_squares + (dominant_weight * top)[:, None] * self.noise_t[dominant]
            )
        return terms

    def key_index(self, positions):
        """Indices of keys, as given, from their positions among the kept."""
        return positions if self.kept is None else self.kept[positions]


def prediction_variance(
    queries,
    keys,
    values,
    noise,
    *,
    bandwidth,
    kernel,
    sample_weight=None,
    key_widths=None,
    query_widths=None,
    device="cpu",
):
    """Predictions and the sums of squared normalised weights times noise.

    With a_j(q) = c_j K_j(q) / sum_k c_k K_k(q), the variance of the
    prediction at q when key j's value has variance noise_j is
    sum_j c_j (K_j(q) / sum_k c_k K_k(q))^2 noise_j: sample weights count as
    frequencies, c_j independent observations at x_j.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, n_features)
    keys : ndarray of shape (n_keys, n_features)
    values : ndarray of shape (n_keys, n_values)
    noise : ndarray of shape (n_keys, n_noise)
        Noise variance of each key, one column per noise level.
    bandwidth, kernel, sample_weight, key_widths, query_widths, device
        As in :func:`sknw._engine.partial_sums`.

    Returns
    -------
    predictions : ndarray of shape (n_queries, n_values)
    variance : ndarray of shape (n_queries, n_noise)
        Float64 both.
    """
    dtype = compute_dtype(queries, keys)
    settings = make_settings(
        bandwidth, kernel, sample_weight, key_widths, query_widths, device
    )
    pooled = _Pooled(keys, values, noise, settings, dtype)
    predictions = np.empty((queries.shape[0], values.shape[1]))
    variance = np.empty((queries.shape[0], noise.shape[1]))

    def each(batch, weights):
        sums = times(weights, pooled.weighted_values_t).to(torch.float64)
        squares = times(weights.square_(), pooled.weighted_noise_t)
        squares = squares.to(torch.float64)
        totals = sums[:, -1:]
        predictions[batch] = (sums[:, :-1] / totals).cpu().numpy()
        variance[batch] = (squares / totals**2).cpu().numpy() / pooled.scale

    pooled.for_each_chunk(queries, query_widths, each)
    return predictions, variance


def leave_one_out(
    keys,
    values,
    noise,
    *,
    bandwidth,
    kernel,
    sample_weight=None,
    key_widths=None,
    query_widths=None,
    device="cpu",
):
    """Each key's prediction with one unit of its weight left out.

    Leaving out one unit of key i's frequency weight c_i (all of it when
    c_i < 1), the prediction at x_i is that of the same bandwidth on the
    other keys and the rest of key i's weight.

    Parameters
    ----------
    keys : ndarray of shape (n_keys, n_features)
        Training inputs, also the queries.
    values : ndarray of shape (n_keys, n_values)
    noise : ndarray of shape (n_keys, n_noise)
        As in :func:`prediction_variance`.
    bandwidth, kernel, sample_weight, key_widths, query_widths, device
        As in :func:`sknw._engine.partial_sums`; ``query_widths`` are the
        keys' widths as queries.

    Returns
    -------
    predictions : ndarray of shape (n_keys, n_values)
        The leave-one-out predictions.
    variance : ndarray of shape (n_keys, n_noise)
        Their sums of squared normalised weights times noise, as in
        :func:`prediction_variance`.
    """
    dtype = compute_dtype(keys)
    settings = make_settings(
        bandwidth, kernel, sample_weight, key_widths, query_widths, device
    )
    pooled = _Pooled(keys, values, noise, settings, dtype)
    n_keys = keys.shape[0]
    # Position of each key among those kept, -1 for a key of no weight.
    position = np.arange(n_keys)
    if pooled.kept is not None:
        position = np.full(n_keys, -1)
        position[pooled.kept] = np.arange(len(pooled.kept))
    predictions = np.empty((n_keys, values.shape[1]))
    variance = np.empty((n_keys, noise.shape[1]))
    redo = []

    def each(batch, weights):
        terms = pooled.terms(weights)
        own = position[batch]
        kept_rows = np.flatnonzero(own >= 0)
        own_t = torch.as_tensor(own, device=weights.device)
        rows_t = torch.as_tensor(kept_rows, device=weights.device)
        sums, squares = terms["sums"].clone(), terms["squares"].clone()
        if len(kept_rows):
            columns = own_t[rows_t]
            own_weight = weights[rows_t, columns]
            removed = pooled.unit[columns] * own_weight
            sums[rows_t] -= removed[:, None] * pooled.values_t[columns]
            squares[rows_t] -= (removed * own_weight)[:, None] * pooled.noise_t[columns]
            # Where the key is its row's dominant one, sum the others apart.
            dominant = terms["dominant"][rows_t] == columns
            rows_d, columns_d = rows_t[dominant], columns[dominant]
            kept_weight = (
                pooled.problem.sample_weight[columns_d] - pooled.unit[columns_d]
            ) * terms["top"][rows_d]
            sums[rows_d] = (
                terms["rest"][rows_d]
                + kept_weight[:, None] * pooled.values_t[columns_d]
            )
            squares[rows_d] = (
                terms["rest_squares"][rows_d]
                + (kept_weight * terms["top"][rows_d])[:, None]
                * pooled.noise_t[columns_d]
            )
            exact = (terms["exact"][rows_d] | ~(sums[rows_d, -1] > 0)).cpu().numpy()
            redo.extend(batch.start + rows_d.cpu().numpy()[exact])
        sums, squares = sums.to(torch.float64), squares.to(torch.float64)
        totals = sums[:, -1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            predictions[batch] = (sums[:, :-1] / totals).cpu().numpy()
            variance[batch] = (squares / totals**2).cpu().numpy() / pooled.scale

    pooled.for_each_chunk(keys, query_widths, each)
    for row in redo:
        predictions[row], variance[row] = _refit_without_one(
            keys[row : row + 1], keys, values, noise, settings_of(settings, row), row
        )
    return predictions, variance


def settings_of(settings, row):
    """The settings for one query row (its own local width)."""
    query_widths = settings["query_widths"]
    if query_widths is None:
        return settings
    return dict(settings, query_widths=query_widths[row : row + 1])


def _refit_without_one(queries, keys, values, noise, settings, index):
    """Predictions and variance sums with one unit of key ``index``'s
    weight removed, by a fresh pass: the brute-force leave-one-out."""
    settings = _without_one(settings, keys.shape[0], index)
    predictions, variance = prediction_variance(
        queries, keys, values, noise, **settings
    )
    return predictions[0], variance[0]


def _without_one(settings, n_keys, index):
    """The settings with one unit of key ``index``'s weight removed."""
    weight = settings["sample_weight"]
    weight = np.ones(n_keys) if weight is None else np.array(weight)
    weight[index] -= min(weight[index], 1.0)
    if not np.any(weight > 0):
        raise ValueError(
            "Leaving one out needs training samples of total weight above 1."
        )
    return dict(settings, sample_weight=weight)


def _leave_out_block(pooled, terms, output, refits):
    """The predictions of every leave-one-out model at a chunk's queries.

    For query q and key i, the prediction without one unit u_i of key i's
    weight is mu_i(q) = (S(q) - u_i w_i(q) y_i) / (W(q) - u_i w_i(q)), with S
    and W the weighted sums over all keys and w_i the kernel weight. Each
    row's dominant key is summed apart (see :meth:`_Pooled.terms`), so no
    difference cancels; where the others' weights may have underflowed, its
    column comes from ``refits``.

    Parameters
    ----------
    pooled : _Pooled
    terms : dict
        From :meth:`_Pooled.terms`, completed by :func:`_add_denominator`.
    output : int
        The column of the values.
    refits : dict
        Row of the chunk -> the leave-one-out predictions of its dominant
        key, one per output, from a pass without it.

    Returns
    -------
    leave_out : tensor of shape (n_rows, n_kept)
        mu_i(q) for the chunk's queries and the keys that take part, in a
        block the next call reuses.
    """
    problem = pooled.problem
    removed, dominant = terms["removed"], terms["dominant"]
    n_rows = removed.shape[0]
    rows = torch.arange(n_rows, device=removed.device)
    # The last output's block overwrites the removals, needed no more: one
    # block less to map for a single output.
    last = output == pooled.n_values - 1
    leave_out = torch.addcmul(
        terms["sums"][:, output : output + 1],
        removed,
        pooled.values_t[:, output] * terms["removal_scale"],
        value=-1,
        out=removed if last else problem.named_block("leave_out", n_rows),
    )
    leave_out[rows, dominant] = (
        terms["rest"][:, output]
        + terms["kept_weight"] * pooled.values_t[dominant, output]
    )
    leave_out.div_(terms["denominator"])
    for row, prediction in refits.items():
        leave_out[row, dominant[row]] = float(prediction[output])
    return leave_out


def _add_denominator(pooled, terms):
    """Add to ``terms`` the block of W(q) - u_i w_i(q), ``denominator``, and
    the weight that stays of each row's dominant key, ``kept_weight``."""
    problem = pooled.problem
    removed, dominant, top = terms["removed"], terms["dominant"], terms["top"]
    n_rows = removed.shape[0]
    rows = torch.arange(n_rows, device=removed.device)
    denominator = torch.sub(
        terms["sums"][:, -1:],
        removed,
        alpha=terms["removal_scale"],
        out=problem.named_block("denominator", n_rows),
    )
    kept_weight = (problem.sample_weight[dominant] - pooled.unit[dominant]) * top
    denominator[rows, dominant] = terms["rest"][:, -1] + kept_weight
    terms["denominator"] = denominator
    terms["kept_weight"] = kept_weight


def _dominant_refits(pooled, terms, batch, queries, keys, values, settings):
    """The leave-one-out predictions of the dominant key of the rows whose
    other keys' weights may have underflowed, by passes without it."""
    no_noise = np.zeros((keys.shape[0], 0))
    refits = {}
    for row in np.flatnonzero(terms["exact"].cpu().numpy()):
        query = batch.start + row
        refits[row] = _refit_without_one(
            queries[query : query + 1],
            keys,
            values,
            no_noise,
            settings_of(settings, query),
            int(pooled.key_index(int(terms["dominant"][row]))),
        )[0]
    return refits


def _leave_out_chunks(queries, keys, values, settings, dtype, each):
    """The keys laid out, and the chunk step that hands ``each(batch,
    output, leave_out, spare)`` the leave-one-out predictions of a chunk of
    queries for every output (see :func:`_leave_out_block`), with a block of
    their shape free to overwrite, or None.

    Returns
    -------
    pooled : _Pooled
    chunk : callable
        For :meth:`_Pooled.for_each_chunk`.
    """
    no_noise = np.zeros((keys.shape[0], 0))
    pooled = _Pooled(keys, values, no_noise, settings, dtype)

    def chunk(batch, weights):
        terms = pooled.terms(weights, squares=False)
        _add_denominator(pooled, terms)
        refits = _dominant_refits(pooled, terms, batch, queries, keys, values, settings)
        for output in range(values.shape[1]):
            leave_out = _leave_out_block(pooled, terms, output, refits)
            # The denominators are not needed after the last output.
            last = output == values.shape[1] - 1
            each(batch, output, leave_out, terms["denominator"] if last else None)

    return pooled, chunk


def leave_one_out_predictions(
    queries,
    keys,
    values,
    *,
    bandwidth,
    kernel,
    sample_weight=None,
    key_widths=None,
    query_widths=None,
    device="cpu",
):
    """The prediction at each query of every leave-one-out model.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, n_features)
    keys : ndarray of shape (n_keys, n_features)
    values : ndarray of shape (n_keys, n_values)
    bandwidth, kernel, sample_weight, key_widths, query_widths, device
        As in :func:`sknw._engine.partial_sums`.

    Returns
    -------
    predictions : ndarray of shape (n_queries, n_keys, n_values)
        Entry (q, i) is the prediction at query q with one unit of key i's
        weight (all of it below 1) left out; the full prediction for a key
        of no weight. Not bounded by ``working_memory``.
    """
    dtype = compute_dtype(queries, keys)
    settings = make_settings(
        bandwidth, kernel, sample_weight, key_widths, query_widths, device
    )
    full = prediction_variance(
        queries, keys, values, np.zeros((keys.shape[0], 0)), **settings
    )[0]
    chunks = functools.partial(
        _leave_out_chunks, queries, keys, values, settings, dtype
    )
    return _collect_leave_out(queries, query_widths, full, keys.shape[0], chunks)


def _collect_leave_out(queries, query_widths, full, n_keys, chunks):
    """Every leave-one-out prediction at every query, over the full ones
    (kept for keys of no weight): ``chunks(each)`` gives the pooled keys and
    the chunk function that hands ``each`` the blocks of left-out
    predictions."""
    result = np.repeat(full[:, None, :], n_keys, axis=1)

    def store(batch, output, leave_out, spare):
        result[batch, columns, output] = leave_out.to(torch.float64).cpu().numpy()

    pooled, chunk = chunks(store)
    columns = pooled.key_index(np.arange(pooled.problem.n_keys))
    pooled.for_each_chunk(queries, query_widths, chunk)
    return result


def _collect_intervals(
    queries, query_widths, n_outputs, residuals, sample_weight, alpha, chunks
):
    """Jackknife+ bounds at every query, from the blocks of left-out
    predictions that ``chunks(each)`` hands on (as in
    :func:`_collect_leave_out`); float64."""
    intervals = np.empty((queries.shape[0], n_outputs, 2))

    def bounds(batch, output, leave_out, spare):
        lower, upper = selection.bounds(leave_out, output, spare)
        intervals[batch, output, 0] = lower
        intervals[batch, output, 1] = upper

    pooled, chunk = chunks(bounds)
    selection = _Selection(pooled, residuals, sample_weight, alpha)
    pooled.for_each_chunk(queries, query_widths, chunk)
    return intervals


def jackknife_plus(
    queries,
    keys,
    values,
    residuals,
    *,
    alpha,
    bandwidth,
    kernel,
    sample_weight=None,
    key_widths=None,
    query_widths=None,
    device="cpu",
):
    """Jackknife+ prediction intervals from the leave-one-out predictions.

    The interval at q is [lower quantile of mu_i(q) - R_i, upper quantile of
    mu_i(q) + R_i] over the keys, each counted as often as its sample weight
    says, with mu_i the leave-one-out predictions of
    :func:`leave_one_out_predictions` and R_i the absolute leave-one-out
    residuals (Barber, Candes, Ramdas and Tibshirani, 2021).

    Parameters
    ----------
    queries : ndarray of shape (n_queries, n_features)
    keys : ndarray of shape (n_keys, n_features)
    values : ndarray of shape (n_keys, n_values)
    residuals : ndarray of shape (n_keys, n_values)
        Absolute leave-one-out residuals of the keys.
    alpha : float
        Miscoverage level; the quantile rank (1 - alpha)(N + 1), N the sum of
        the sample weights, must not exceed N.
    bandwidth, kernel, sample_weight, key_widths, query_widths, device
        As in :func:`sknw._engine.partial_sums`.

    Returns
    -------
    intervals : ndarray of shape (n_queries, n_values, 2)
        Lower and upper bounds.
    """
    dtype = compute_dtype(queries, keys)
    settings = make_settings(
        bandwidth, kernel, sample_weight, key_widths, query_widths, device
    )
    intervals = _collect_intervals(
        queries,
        query_widths,
        values.shape[1],
        residuals,
        sample_weight,
        alpha,
        functools.partial(_leave_out_chunks, queries, keys, values, settings, dtype),
    )
    return intervals.astype(numpy_dtype(queries, keys), copy=False)


class _Selection:
    """The jackknife+ bounds of leave-one-out blocks, by selection.

    The bounds at q are quantiles of mu_i(q) + R_i and of mu_i(q) - R_i.
    With every mu_i(q) of a row in [lowest, highest], the quantile of
    mu_i(q) + R_i lies in [lowest + Q, highest + Q], Q that of the R_i: only
    the keys whose R_i is within highest - lowest of Q can be it, those
    below are below it, and the selection runs on those few. The keys are
    kept in increasing order of their residuals, per output. Integer sample
    weights (of a sum at most ``_MOST_REPEATS`` times the number of keys)
    repeat their keys, so that the weighted quantile is a plain one, found
    by ``kthvalue``; other weights sort the window.

    Parameters
    ----------
    pooled : _Pooled
    residuals : ndarray of shape (n_keys, n_values)
    sample_weight : ndarray of shape (n_keys,) or None
    alpha : float
    """

    def __init__(self, pooled, residuals, sample_weight, alpha):
        problem = pooled.problem
        self.problem = problem
        self.eps = torch.finfo(problem.dtype).eps
        n_keys = residuals.shape[0]
        frequency = np.ones(n_keys) if sample_weight is None else sample_weight
        frequency = np.asarray(frequency, dtype=np.float64)
        # A rank a hair below (1 - alpha)(N + 1), so that a product that
        # rounds just above an integer rank is taken at that rank.
        self.rank = (1.0 - alpha) * (frequency.sum() + 1.0) * (1.0 - 1e-12)
        kept = np.arange(n_keys) if pooled.kept is None else pooled.kept
        frequency, residuals = frequency[kept], residuals[kept]
        self.repeated = bool(
            np.all(frequency == np.round(frequency))
            and frequency.sum() <= _MOST_REPEATS * len(kept)
        )
        self.frequency = problem.to_tensor(frequency)
        repeats = None
        if self.repeated:
            repeats = frequency.astype(np.int64)
            frequency = np.ones(int(repeats.sum()))
        self.upper_k = min(int(math.ceil(self.rank)), int(frequency.sum()))
        self.outputs = []
        for column in residuals.T:
            order = np.argsort(column, kind="stable")
            if repeats is not None:
                order = np.repeat(order, repeats[order])
                cumulative = np.arange(1.0, len(order) + 1)
            else:
                cumulative = np.cumsum(frequency[order])
            ordered = column[order]
            position = min(int(np.searchsorted(cumulative, self.rank)), len(order) - 1)
            self.outputs.append(
                dict(
                    order=torch.as_tensor(order, device=problem.device),
                    values=problem.to_tensor(ordered),
                    sorted=ordered,
                    cumulative=cumulative,
                    quantile=float(ordered[position]),
                    largest=float(ordered[-1]),
                )
            )

    def bounds(self, leave_out, output, spare=None):
        """The lower and upper bounds of each row of a leave-one-out block.

        Parameters
        ----------
        leave_out : tensor of shape (n_rows, n_kept)
        output : int
        spare : tensor of shape (n_rows, n_kept) or None
            A block free to overwrite, for the rows in order of their
            margins (otherwise a block of the selection's own).

        Returns
        -------
        lower, upper : ndarray of shape (n_rows,)
            Float64.
        """
        residual = self.outputs[output]
        # Two passes are several times faster than aminmax on the CPU.
        lowest, highest = leave_out.amin(dim=1), leave_out.amax(dim=1)
        size = torch.maximum(highest.abs(), lowest.abs()) + residual["largest"]
        margins = ((highest - lowest) * (1 + 1e-9) + 8 * self.eps * size).cpu().numpy()
        # Rows in groups of similar margins, each with its own window: one
        # row of widely spread mu_i(q) does not widen every row's window.
        # The rows are put in that order once, so that each group's window
        # is a gather of columns from a slice of rows.
        by_margin = np.argsort(margins, kind="stable")
        n_rows = len(by_margin)
        by_margin_t = torch.as_tensor(by_margin, device=leave_out.device)
        ordered_rows = torch.index_select(
            leave_out,
            0,
            by_margin_t,
            out=(
                self.problem.named_block("ordered_rows", n_rows)
                if spare is None
                else spare
            ),
        )
        lower, upper = np.empty(n_rows), np.empty(n_rows)
        edges = [0, *(_GROUP_EDGES * n_rows // _GROUP_EDGES[-1])]
        for start, stop in zip(edges[:-1], edges[1:]):
            if stop == start:
                continue
            low, high = self._window_bounds(
                ordered_rows[start:stop], residual, float(margins[by_margin[stop - 1]])
            )
            rows = by_margin[start:stop]
            lower[rows] = low.to(torch.float64).cpu().numpy()
            upper[rows] = high.to(torch.float64).cpu().numpy()
        return lower, upper

    def _window_bounds(self, block, residual, margin):
        """Bounds of the rows of a block, from the keys whose residual is
        within ``margin`` of the residuals' quantile."""
        quantile, ordered = residual["quantile"], residual["sorted"]
        start = int(np.searchsorted(ordered, quantile - margin, "left"))
        stop = int(np.searchsorted(ordered, quantile + margin, "right"))
        columns = residual["order"][start:stop]
        window = block.gather(1, columns[None, :].expand(block.shape[0], -1))
        window_residuals = residual["values"][start:stop]
        high = window + window_residuals
        # The lower bound is minus the same quantile of R_i - mu_i(q).
        negated_low = torch.sub(window_residuals, window, out=window)
        if self.repeated:
            rank_in_window = self.upper_k - start
            upper = high.kthvalue(rank_in_window, dim=1).values
            lower = -negated_low.kthvalue(rank_in_window, dim=1).values
            return lower, upper
        below = residual["cumulative"][start - 1] if start > 0 else 0.0
        window_frequency = self.frequency[columns]
        upper = _weighted_upper(high, window_frequency, self.rank - below)
        lower = -_weighted_upper(negated_low, window_frequency, self.rank - below)
        return lower, upper


def _weighted_upper(block, frequency, rank):
    """Each row's smallest value whose weight at or below it reaches ``rank``.

    With integer weights, the ``ceil(rank)``-th smallest of the values
    repeated as often as their weights say.
    """
    ordered, order = block.sort(dim=1)
    cumulative = frequency[order].cumsum(dim=1)
    threshold = torch.full(
        (block.shape[0], 1), rank, dtype=cumulative.dtype, device=block.device
    )
    index = torch.searchsorted(cumulative, threshold).clamp_(max=block.shape[1] - 1)
    return ordered.gather(1, index)[:, 0]


# --------------------------------------------------------------------------
# Local linear regression
#
# The local linear fit is linear in the targets: m(q) = sum_j a_j(q) y_j with
# a_j = alpha_j (1 + g^T (z_j - m)), alpha_j = c_j w_j / W the kernel
# attention, m and C the local mean and covariance of the inputs z (in the
# moments' frame) and g = C^-1 (z_q - m); a_j = alpha_j where the design is
# singular. The block of c_j w_j A_j, A_j = 1 + g^T (z_j - m), gives
# sum_j a_j^2 sigma_j^2 / c_j, and a rank-one downdate of the local normal
# equations gives every leave-one-out fit.


class _LocalFits:
    """The local linear fits of a chunk of queries, from their weighted sums.

    Parameters
    ----------
    sums : tensor of shape (n_rows, n_columns + 1)
        Sums of c w [moment columns, 1].
    queries : tensor of shape (n_rows, n_features)
        The queries in the moments' frame, float64.
    bandwidth : tensor of shape (n_features,)
        The widths in the moments' frame.
    n_outputs : int

    Attributes
    ----------
    fit : tensor of shape (n_rows, n_outputs)
    slope : tensor of shape (n_rows, n_features, n_outputs)
        Per unit of the frame's inputs.
    mean : tensor of shape (n_rows, n_features)
        The local mean m of the inputs.
    inverse : tensor of shape (n_rows, n_features, n_features)
        C^-1, 0 where the design is singular.
    direction : tensor of shape (n_rows, n_features)
        g = C^-1 (z_q - m).
    total : tensor of shape (n_rows,)
        W.
    """

    def __init__(self, sums, queries, bandwidth, n_outputs):
        sums = sums.to(torch.float64)
        n_rows, n_features = queries.shape
        self.total = sums[:, -1]
        mean_moments = sums[:, :-1] / sums[:, -1:]
        self.fit, self.slope, regular = local_linear_fit(
            mean_moments, queries, bandwidth, n_outputs
        )
        self.mean = mean_moments[:, :n_features]
        upper = np.triu_indices(n_features)
        position = np.zeros((n_features, n_features), dtype=np.int64)
        position[upper] = np.arange(len(upper[0]))
        position[upper[1], upper[0]] = np.arange(len(upper[0]))
        index = torch.as_tensor(position.ravel() + n_features, device=sums.device)
        second = mean_moments[:, index].reshape(n_rows, n_features, n_features)
        covariance = second - self.mean[:, :, None] * self.mean[:, None, :]
        identity = torch.eye(n_features, dtype=sums.dtype, device=sums.device)
        safe = torch.where(regular[:, None, None], covariance, identity)
        self.inverse = torch.linalg.inv(safe) * regular[:, None, None]
        self.direction = (self.inverse @ (queries - self.mean)[:, :, None])[:, :, 0]

    def factor_coefficients(self):
        """Coefficients on [1, z_j] of the factors A_j = 1 + g^T (z_j - m)
        of the smoother weights a_j = alpha_j A_j, shape (n_rows, 1 +
        n_features)."""
        g = self.direction
        return torch.cat([1.0 - (g * self.mean).sum(1, keepdim=True), g], 1)


def _input_basis(pooled, n_features):
    """[1, z] of the keys that take part, one column each."""
    inputs = pooled.values[:, :n_features]
    basis = np.hstack([np.ones((inputs.shape[0], 1)), inputs]).T.copy()
    return torch.as_tensor(basis, device=pooled.problem.device)


def _factor_squares(pooled, fits, weights, basis):
    """sum_j c_j (w_j A_j)^2 noise_j of a chunk, shape (n_rows, n_noise).

    With one noise level, ``basis`` already carries sqrt(c_j noise_j) (see
    :func:`_noise_basis`), and the sum is a squared norm of the block of
    w_j A_j sqrt(c_j noise_j): no pass to square it.
    """
    problem = pooled.problem
    factors = torch.mm(
        fits.factor_coefficients().to(problem.dtype),
        basis,
        out=problem.named_block("factors", weights.shape[0]),
    )
    factors.mul_(weights)
    if pooled.noise_t.shape[1] == 1:
        return torch.linalg.vector_norm(factors, dim=1, keepdim=True) ** 2
    return times(factors.square_(), pooled.weighted_noise_t)


def _noise_basis(pooled, basis):
    """``basis`` times sqrt(c_j noise_j) with one noise level, as it is
    otherwise."""
    if pooled.noise_t.shape[1] != 1:
        return basis
    return basis * pooled.weighted_noise_t[:, 0].sqrt()


def local_linear_variance(
    queries,
    keys,
    moments,
    noise,
    *,
    frame_queries,
    frame_bandwidth,
    n_outputs,
    bandwidth,
    kernel,
    sample_weight=None,
    key_widths=None,
    query_widths=None,
    device="cpu",
):
    """Local linear fits and the sums of their squared smoother weights
    times noise.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, n_features)
    keys : ndarray of shape (n_keys, n_features)
    moments : ndarray of shape (n_keys, n_columns)
        The :func:`~sknw._local_moments.moment_columns` of the keys.
    noise : ndarray of shape (n_keys, n_noise)
        Noise variance of each key, one column per noise level.
    frame_queries : ndarray of shape (n_queries, n_features)
        The queries in the moments' frame.
    frame_bandwidth : ndarray of shape (n_features,)
        The widths in the moments' frame.
    n_outputs : int
    bandwidth, kernel, sample_weight, key_widths, query_widths, device
        As in :func:`sknw._engine.partial_sums`.

    Returns
    -------
    predictions : ndarray of shape (n_queries, n_outputs)
        The fits in the frame's units of y.
    variance : ndarray of shape (n_queries, n_noise)
        sum_j a_j(q)^2 noise_j / c_j. Float64 both.
    """
    dtype = compute_dtype(queries, keys)
    settings = make_settings(
        bandwidth, kernel, sample_weight, key_widths, query_widths, device
    )
    n_features, n_noise = keys.shape[1], noise.shape[1]
    pooled = _Pooled(keys, moments, noise, settings, dtype)
    basis = _input_basis(pooled, n_features)
    noise_basis = _noise_basis(pooled, basis)
    frame_queries = torch.as_tensor(frame_queries, device=pooled.problem.device)
    frame_bandwidth = torch.as_tensor(frame_bandwidth, device=pooled.problem.device)
    predictions = np.empty((queries.shape[0], n_outputs))
    variance = np.empty((queries.shape[0], n_noise))

    def each(batch, weights):
        sums = times(weights, pooled.weighted_values_t)
        fits = _LocalFits(sums, frame_queries[batch], frame_bandwidth, n_outputs)
        squares = _factor_squares(pooled, fits, weights, noise_basis)
        predictions[batch] = fits.fit.cpu().numpy()
        squares = squares.to(torch.float64) / fits.total[:, None] ** 2
        variance[batch] = squares.cpu().numpy() / pooled.scale

    pooled.for_each_chunk(queries, query_widths, each)
    return predictions, variance


def local_linear_leave_one_out(
    keys,
    moments,
    noise,
    *,
    frame_keys,
    frame_bandwidth,
    n_outputs,
    bandwidth,
    kernel,
    sample_weight=None,
    key_widths=None,
    query_widths=None,
    device="cpu",
):
    """Each key's local linear fit with one unit of its weight left out.

    Key i's own column is left out of its row's sums, and the rest of its
    weight added back, so no difference cancels.

    Parameters
    ----------
    keys : ndarray of shape (n_keys, n_features)
        Training inputs, also the queries.
    moments, noise, frame_bandwidth, n_outputs
        As in :func:`local_linear_variance`.
    frame_keys : ndarray of shape (n_keys, n_features)
        The keys in the moments' frame.
    bandwidth, kernel, sample_weight, key_widths, query_widths, device
        As in :func:`sknw._engine.partial_sums`; ``query_widths`` are the
        keys' widths as queries.

    Returns
    -------
    predictions : ndarray of shape (n_keys, n_outputs)
        The leave-one-out fits, in the frame's units of y.
    variance : ndarray of shape (n_keys, n_noise)
        Their sums of squared smoother weights times noise.
    """
    dtype = compute_dtype(keys)
    settings = make_settings(
        bandwidth, kernel, sample_weight, key_widths, query_widths, device
    )
    n_keys, n_features = keys.shape
    n_noise = noise.shape[1]
    pooled = _Pooled(keys, moments, noise, settings, dtype)
    problem = pooled.problem
    basis = _input_basis(pooled, n_features)
    noise_basis = _noise_basis(pooled, basis)
    frame_keys_t = torch.as_tensor(frame_keys, device=problem.device)
    frame_bandwidth_t = torch.as_tensor(frame_bandwidth, device=problem.device)
    position = np.arange(n_keys)
    if pooled.kept is not None:
        position = np.full(n_keys, -1)
        position[pooled.kept] = np.arange(len(pooled.kept))
    predictions = np.empty((n_keys, n_outputs))
    variance = np.empty((n_keys, n_noise))
    redo = []

    def each(batch, weights):
        own = position[batch]
        rows = torch.as_tensor(np.flatnonzero(own >= 0), device=weights.device)
        columns = torch.as_tensor(own, device=weights.device)[rows]
        own_weight = weights[rows, columns].clone()
        weights[rows, columns] = 0.0
        sums = times(weights, pooled.weighted_values_t)
        others = sums[:, -1].clone()
        # What stays of the key's weight: c_i - u_i units at its own kernel
        # weight.
        rest_units = problem.sample_weight[columns] - pooled.unit[columns]
        sums[rows] += (rest_units * own_weight)[:, None] * pooled.values_t[columns]
        # Where the other keys' weights may sit on the floor, or are all 0,
        # a pass without the key.
        exact = ~(others > pooled.rest_floor) | ~(sums[:, -1] > 0)
        redo.extend(batch.start + np.flatnonzero(exact.cpu().numpy()))
        with np.errstate(divide="ignore", invalid="ignore"):
            fits = _LocalFits(sums, frame_keys_t[batch], frame_bandwidth_t, n_outputs)
            squares = _factor_squares(pooled, fits, weights, noise_basis)
            # The rest of the key's own weight, at its own factor.
            own_factor = (
                fits.factor_coefficients()[rows].to(problem.dtype) * basis[:, columns].T
            ).sum(1) * own_weight
            squares[rows] += (rest_units * own_factor * own_factor)[:, None] * (
                pooled.noise_t[columns]
            )
            predictions[batch] = fits.fit.cpu().numpy()
            squares = squares.to(torch.float64) / fits.total[:, None] ** 2
            variance[batch] = squares.cpu().numpy() / pooled.scale

    pooled.for_each_chunk(keys, query_widths, each)
    local = dict(frame_bandwidth=frame_bandwidth, n_outputs=n_outputs)
    for row in redo:
        row_settings = _without_one(settings_of(settings, row), keys.shape[0], row)
        fit, row_variance = local_linear_variance(
            keys[row : row + 1],
            keys,
            moments,
            noise,
            frame_queries=frame_keys[row : row + 1],
            **local,
            **row_settings,
        )
        predictions[row], variance[row] = fit[0], row_variance[0]
    return predictions, variance


def _local_leave_out_setup(
    queries, keys, moments, frame_queries, frame_bandwidth, n_outputs, settings
):
    """What local linear's leave-one-out predictions and jackknife+ bounds
    share: the engine's settings, the local fit's arguments, and the chunk
    function of :func:`_local_leave_out_chunks` over them.

    Returns
    -------
    settings : dict
        From :func:`make_settings`.
    local : dict
        ``frame_bandwidth`` and ``n_outputs``.
    chunks : callable
        :func:`_local_leave_out_chunks` given everything but ``each``.
    """
    settings = make_settings(**settings)
    local = dict(frame_bandwidth=frame_bandwidth, n_outputs=n_outputs)
    chunks = functools.partial(
        _local_leave_out_chunks,
        queries,
        keys,
        moments,
        frame_queries,
        local,
        settings,
        compute_dtype(queries, keys),
    )
    return settings, local, chunks


def _local_leave_out_chunks(
    queries, keys, moments, frame_queries, local, settings, dtype, each
):
    """The keys laid out, and the chunk step that hands ``each(batch,
    output, leave_out, spare)`` the local linear fits of every leave-one-out
    model at a chunk of queries, per output, in the frame's units of y (and
    a block free to overwrite, or None).

    Without one unit u_i of key i's weight, with rho_i = u_i w_i / W, the
    rank-one downdate of the local normal equations gives

        mu_i(q) = m(q) - rho_i A_i E_i / (1 - rho_i (1 + H_i)),

    A_i = 1 + g^T (z_i - m), H_i = (z_i - m)^T C^-1 (z_i - m) and E_i = y_i
    minus the local line at z_i; rho_i (1 + H_i) is key i's leverage. Each
    row's dominant key (see :meth:`_Pooled.terms`) is fitted from the sums
    of the others, and a key of leverage within ``_LEVERAGE_MARGIN`` of 1
    from the downdated sums; where the others' weights may have
    underflowed, the dominant key's fit comes from a pass without it.

    Returns
    -------
    pooled : _Pooled
    chunk : callable
        For :meth:`_Pooled.for_each_chunk`.
    """
    n_features = keys.shape[1]
    n_outputs = local["n_outputs"]
    n_products = n_features * (n_features + 1) // 2
    no_noise = np.zeros((keys.shape[0], 0))
    pooled = _Pooled(keys, moments, no_noise, settings, dtype)
    problem = pooled.problem
    device = problem.device
    frame_queries_t = torch.as_tensor(frame_queries, device=device)
    frame_bandwidth = torch.as_tensor(local["frame_bandwidth"], device=device)
    kept_moments = pooled.values
    # [1, z, z_k z_l (k <= l)] and, per output, [1, z, y] of the keys, one
    # row each: the bases of A, H and E.
    ones = np.ones((kept_moments.shape[0], 1))
    inputs = kept_moments[:, : n_features + n_products]
    basis = torch.as_tensor(np.hstack([ones, inputs]).T.copy(), device=device)
    # Per output, [1, z, z_k z_l (k <= l), y, z_k y]: the basis of A_i E_i.
    target_start = n_features + n_products
    cross_start = target_start + n_outputs
    output_bases = [
        torch.as_tensor(
            np.hstack(
                [
                    ones,
                    inputs,
                    kept_moments[:, target_start + output, None],
                    kept_moments[:, cross_start + output :: n_outputs],
                ]
            ).T.copy(),
            device=device,
        )
        for output in range(n_outputs)
    ]
    upper = np.triu_indices(n_features)
    diagonal = np.arange(n_features)
    twice = torch.as_tensor(np.where(upper[0] == upper[1], 1.0, 2.0), device=device)

    one = torch.ones((), dtype=problem.dtype, device=device)

    def chunk(batch, weights):
        n_rows = weights.shape[0]
        terms = pooled.terms(weights, squares=False)
        rows = torch.arange(n_rows, device=device)
        chunk_queries = frame_queries_t[batch]
        fits = _LocalFits(terms["sums"], chunk_queries, frame_bandwidth, n_outputs)
        removed, dominant = terms["removed"], terms["dominant"]
        # rho_i = s removed_i / W, the factor s / W in the coefficients.
        share = (terms["removal_scale"] / fits.total)[:, None]
        # 1 - rho_i (1 + H_i), H_i = z^T C^-1 z - 2 m^T C^-1 z + m^T C^-1 m.
        mean, inverse = fits.mean, fits.inverse
        inverse_mean = (inverse @ mean[:, :, None])[:, :, 0]
        coefficients = torch.cat(
            [
                1.0 + (mean * inverse_mean).sum(1, keepdim=True),
                -2.0 * inverse_mean,
                inverse[:, upper[0], upper[1]] * twice,
            ],
            1,
        )
        denominator = torch.mm(
            (coefficients * share).to(problem.dtype),
            basis,
            out=problem.named_block("denominator", n_rows),
        )
        torch.addcmul(one, removed, denominator, value=-1, out=denominator)
        # The dominant key where its removal takes much of the fit, and any
        # key of leverage near 1, are solved again: the dominant one from
        # the others' sums, the others from the downdated sums.
        again = (denominator[rows, dominant] < _DOMINANT_MARGIN) | terms["exact"]
        again_rows = again.nonzero()[:, 0]
        denominator[again_rows, dominant[again_rows]] = 1.0
        # A pass of amin, then a search of the few rows it flags.
        flagged = (denominator.amin(dim=1) < _LEVERAGE_MARGIN).nonzero()[:, 0]
        near = (denominator[flagged] < _LEVERAGE_MARGIN).nonzero()
        near_rows, near_keys = flagged[near[:, 0]], near[:, 1]
        solved = None
        if len(again_rows) or len(near_rows):
            again_keys = dominant[again_rows]
            kept_weight = (
                problem.sample_weight[again_keys] - pooled.unit[again_keys]
            ) * terms["top"][again_rows]
            near_removed = removed[near_rows, near_keys] * terms["removal_scale"]
            sums = torch.cat(
                [
                    terms["rest"][again_rows]
                    + kept_weight[:, None] * pooled.values_t[again_keys],
                    terms["sums"][near_rows]
                    - near_removed[:, None] * pooled.values_t[near_keys],
                ]
            )
            solved_rows = torch.cat([again_rows, near_rows])
            solved_keys = torch.cat([again_keys, near_keys])
            sums = sums.to(torch.float64)
            solved = local_linear_fit(
                sums[:, :-1] / sums[:, -1:],
                chunk_queries[solved_rows],
                frame_bandwidth,
                n_outputs,
            )[0].to(problem.dtype)
        refits = {}
        for row in np.flatnonzero(terms["exact"].cpu().numpy()):
            query = batch.start + row
            row_settings = _without_one(
                settings_of(settings, query),
                keys.shape[0],
                int(pooled.key_index(int(dominant[row]))),
            )
            refits[row] = local_linear_variance(
                queries[query : query + 1],
                keys,
                moments,
                np.zeros((keys.shape[0], 0)),
                frame_queries=frame_queries[query : query + 1],
                **local,
                **row_settings,
            )[0][0]
        # A_i = a_0 + a^T z_i, scaled by s / W.
        factor = fits.factor_coefficients() * share
        factor_0, factor_z = factor[:, :1], factor[:, 1:]
        for output in range(n_outputs):
            slope = fits.slope[:, :, output]
            fit = fits.fit[:, output]
            # E_i = y_i - fit - slope^T (z_i - z_q) = e_0 + e^T z_i + y_i;
            # A_i E_i on the basis [1, z, z_k z_l (k <= l), y, z_k y].
            error_0 = ((slope * chunk_queries).sum(1) - fit)[:, None]
            error_z = -slope
            products = factor_z[:, :, None] * error_z[:, None, :]
            products = products + products.transpose(1, 2)
            products[:, diagonal, diagonal] /= 2
            coefficients = torch.cat(
                [
                    factor_0 * error_0,
                    factor_0 * error_z + error_0 * factor_z,
                    products[:, upper[0], upper[1]],
                    factor_0,
                    factor_z,
                ],
                1,
            )
            leave_out = torch.mm(
                coefficients.to(problem.dtype),
                output_bases[output],
                out=problem.named_block("leave_out", n_rows),
            )
            leave_out.mul_(removed)
            torch.addcdiv(
                fit.to(problem.dtype)[:, None],
                leave_out,
                denominator,
                value=-1,
                out=leave_out,
            )
            if solved is not None:
                leave_out[solved_rows, solved_keys] = solved[:, output]
            for row, prediction in refits.items():
                leave_out[row, dominant[row]] = float(prediction[output])
            # The removals are not needed after the last output.
            last = output == n_outputs - 1
            each(batch, output, leave_out, removed if last else None)

    return pooled, chunk


def local_linear_leave_one_out_predictions(
    queries, keys, moments, *, frame_queries, frame_bandwidth, n_outputs, **settings
):
    """The local linear fit at each query of every leave-one-out model.

    Parameters
    ----------
    queries, keys, moments, frame_queries, frame_bandwidth, n_outputs
        As in :func:`local_linear_variance`.
    **settings
        The engine's other arguments.

    Returns
    -------
    predictions : ndarray of shape (n_queries, n_keys, n_outputs)
        In the frame's units of y; the full fit for a key of no weight. Not
        bounded by ``working_memory``.
    """
    settings, local, chunks = _local_leave_out_setup(
        queries, keys, moments, frame_queries, frame_bandwidth, n_outputs, settings
    )
    full = local_linear_variance(
        queries,
        keys,
        moments,
        np.zeros((keys.shape[0], 0)),
        frame_queries=frame_queries,
        **local,
        **settings,
    )[0]
    return _collect_leave_out(
        queries, settings["query_widths"], full, keys.shape[0], chunks
    )


def local_linear_jackknife_plus(
    queries,
    keys,
    moments,
    residuals,
    *,
    alpha,
    frame_queries,
    frame_bandwidth,
    n_outputs,
    **settings,
):
    """Jackknife+ intervals of local linear regression, as
    :func:`jackknife_plus` does for Nadaraya-Watson.

    Parameters
    ----------
    queries, keys, moments, frame_queries, frame_bandwidth, n_outputs
        As in :func:`local_linear_variance`.
    residuals : ndarray of shape (n_keys, n_outputs)
        Absolute leave-one-out residuals, in the frame's units of y.
    alpha : float
    **settings
        The engine's other arguments.

    Returns
    -------
    intervals : ndarray of shape (n_queries, n_outputs, 2)
        In the frame's units of y, float64.
    """
    settings, _, chunks = _local_leave_out_setup(
        queries, keys, moments, frame_queries, frame_bandwidth, n_outputs, settings
    )
    return _collect_intervals(
        queries,
        settings["query_widths"],
        n_outputs,
        residuals,
        settings["sample_weight"],
        alpha,
        chunks,
    )

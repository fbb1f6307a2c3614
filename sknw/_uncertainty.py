"""Chunked torch computation of standard errors and leave-one-out predictions."""

# Authors: the sknw developers
# License: BSD 3 clause

import math

import numpy as np
import torch
from sklearn import get_config
from sklearn.utils import gen_batches

from sknw._engine import (
    _CACHE_BLOCK_BYTES,
    _LOG_WEIGHT_FLOOR,
    _numpy_dtype,
    _Problem,
    _settings,
    _weight_scale,
    compute_dtype,
    positive_weight_keys,
    resolve_device,
)

# Blocks of (chunk_n_rows, n_keys) alive at once: the kernel weights and a
# spare for their distances, the weights times the sample weights, and, for
# the intervals, the removed weights, the leave-one-out denominators and
# predictions, and up to four blocks for the selection's window (the window,
# the two sets of bounds and the selection's working copy).
_BLOCKS_PER_ROW = 10

# Percentiles at which the rows of a chunk, in order of their margins, are
# split into groups with windows of their own: the widest 5 % apart.
_GROUP_EDGES = np.array([50, 80, 95, 100])

# How far above the floor at which log-weights are clamped (in log-weight)
# the largest of a row's other keys must be for their weights to be exact:
# the clamped ones are then below e^-50 of it.
_REST_MARGIN = 50.0


def _chunk_n_rows(n_keys, dtype):
    """Queries per chunk, the chunk's blocks within ``working_memory``."""
    itemsize = torch.finfo(dtype).bits // 8
    budget = get_config()["working_memory"] * 2**20 // _BLOCKS_PER_ROW
    return max(1, int(min(budget, _CACHE_BLOCK_BYTES) // (n_keys * itemsize)))


def _times(block, columns):
    """``block @ columns``, as (columns.T @ block.T).T: faster for few columns."""
    return (columns.T @ block.T).T


def _row_weights(problem, chunk, widths):
    """Kernel weights of a chunk of queries, each row's largest 1.

    The kernels computed in the log domain come so; the others are divided
    by their row's largest, which changes no ratio of sums and keeps the
    squared weights of a row far from the data (all of its weights tiny,
    under a compact kernel) from underflowing.
    """
    weights, _, _ = problem.weights(chunk, widths)
    if problem.kernel.log_slope is None:
        weights.div_(weights.amax(dim=1, keepdim=True))
    return weights


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
        self.scale = _weight_scale(settings["sample_weight"])
        original = settings["sample_weight"]
        columns = np.hstack([values, noise])
        keys, columns, settings, kept = positive_weight_keys(
            keys, columns, settings, dtype
        )
        self.kept = kept
        self.settings = settings
        device = resolve_device(settings["device"], fall_back=True)
        self.problem = _Problem(
            keys,
            settings["bandwidth"],
            settings["kernel"],
            settings["sample_weight"],
            dtype,
            device,
            key_widths=settings["key_widths"],
        )
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
        # With equal sample weights, the heaviest key is that of the largest
        # kernel weight: no pass to weigh the block.
        self.equal_weights = bool(
            (problem.sample_weight == problem.sample_weight[0]).all()
        )
        # One unit of each key's frequency weight (all of it below 1) is what
        # leaving it out removes, in the units of the scaled weights.
        weight = np.ones(len(keys)) if original is None else np.asarray(original)
        if kept is not None:
            weight = weight[kept]
        self.unit = problem.to_tensor(np.minimum(weight, 1.0) / self.scale)
        self.unit_removal = bool((self.unit == 1.0).all())
        # The other keys' weights are exact when the largest of them is above
        # the floor's margin; their sum above n_keys times it (sample weights
        # being at most 1) says so without a pass to find that largest.
        floor = _LOG_WEIGHT_FLOOR[dtype] + _REST_MARGIN
        self.rest_floor = 0.0
        if problem.kernel.log_slope is not None:
            self.rest_floor = len(keys) * math.exp(floor)

    def chunks(self, queries, query_widths, squares=True):
        """Per chunk of queries: the rows, the kernel weights and their sums.

        Parameters
        ----------
        queries : ndarray of shape (n_queries, n_features)
        query_widths : ndarray of shape (n_queries,) or None
        squares : bool, default=True
            Whether to sum the squared weights times the noise.

        Yields
        ------
        batch : slice
        weights : tensor of shape (n_rows, n_keys)
            Kernel weights, before the sample weights, shifted row by row.
        terms : dict of tensors
            ``dominant``: each row's key of largest weighted weight;
            ``top``: its kernel weight; ``rest`` and ``rest_squares``: the
            sums over the other keys of c w [values, 1] and c w^2 noise;
            ``sums`` and ``squares``: the same over all keys; ``exact``:
            rows whose other keys' weights may have underflowed.
        """
        problem = self.problem
        chunk_n_rows = _chunk_n_rows(problem.n_keys, self.dtype)
        for batch in gen_batches(queries.shape[0], chunk_n_rows):
            chunk = problem.to_tensor(queries[batch])
            widths = (
                None if query_widths is None else problem.to_tensor(query_widths[batch])
            )
            weights = _row_weights(problem, chunk, widths)
            yield batch, weights, self._terms(weights, squares)

    def _terms(self, weights, squares):
        """Sums of a chunk's block, with each row's heaviest key apart.

        Leaving out the key that carries most of a row's weight would
        subtract nearly equal numbers; summing the others apart keeps every
        leave-one-out sum free of cancellation.
        """
        problem = self.problem
        n_rows = weights.shape[0]
        rows = torch.arange(n_rows, device=weights.device)
        if self.equal_weights:
            dominant = weights.argmax(dim=1)
        else:
            weighted = torch.mul(
                weights,
                problem.sample_weight,
                out=problem.named_block("weighted", n_rows),
            )
            dominant = weighted.argmax(dim=1)
        top = weights[rows, dominant].clone()
        weights[rows, dominant] = 0.0
        rest = _times(weights, self.weighted_values_t)
        rest_squares = None
        if squares:
            squared = torch.mul(
                weights, weights, out=problem.named_block("weighted", n_rows)
            )
            rest_squares = _times(squared, self.weighted_noise_t)
        weights[rows, dominant] = top
        dominant_weight = problem.sample_weight[dominant] * top
        terms = dict(
            dominant=dominant,
            top=top,
            rest=rest,
            sums=rest + dominant_weight[:, None] * self.values_t[dominant],
            # Where the other keys' weights may sit on the floor, or are all
            # 0, the heaviest key's removal needs a pass without it.
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
    settings = _settings(
        bandwidth, kernel, sample_weight, key_widths, query_widths, device
    )
    pooled = _Pooled(keys, values, noise, settings, dtype)
    problem = pooled.problem
    predictions = np.empty((queries.shape[0], values.shape[1]))
    variance = np.empty((queries.shape[0], noise.shape[1]))
    chunk_n_rows = _chunk_n_rows(problem.n_keys, dtype)
    for batch in gen_batches(queries.shape[0], chunk_n_rows):
        chunk = problem.to_tensor(queries[batch])
        widths = (
            None if query_widths is None else problem.to_tensor(query_widths[batch])
        )
        weights = _row_weights(problem, chunk, widths)
        sums = _times(weights, pooled.weighted_values_t).to(torch.float64)
        squares = _times(weights.square_(), pooled.weighted_noise_t)
        squares = squares.to(torch.float64)
        totals = sums[:, -1:]
        predictions[batch] = (sums[:, :-1] / totals).cpu().numpy()
        variance[batch] = (squares / totals**2).cpu().numpy() / pooled.scale
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
    settings = _settings(
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
    for batch, weights, terms in pooled.chunks(keys, query_widths):
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
            # Where the key is its row's heaviest, sum the others apart.
            heaviest = terms["dominant"][rows_t] == columns
            rows_h, columns_h = rows_t[heaviest], columns[heaviest]
            kept_weight = (
                pooled.problem.sample_weight[columns_h] - pooled.unit[columns_h]
            ) * terms["top"][rows_h]
            sums[rows_h] = (
                terms["rest"][rows_h]
                + kept_weight[:, None] * pooled.values_t[columns_h]
            )
            squares[rows_h] = (
                terms["rest_squares"][rows_h]
                + (kept_weight * terms["top"][rows_h])[:, None]
                * pooled.noise_t[columns_h]
            )
            exact = (terms["exact"][rows_h] | ~(sums[rows_h, -1] > 0)).cpu().numpy()
            redo.extend(batch.start + rows_h.cpu().numpy()[exact])
        sums, squares = sums.to(torch.float64), squares.to(torch.float64)
        totals = sums[:, -1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            predictions[batch] = (sums[:, :-1] / totals).cpu().numpy()
            variance[batch] = (squares / totals**2).cpu().numpy() / pooled.scale
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
    weight = settings["sample_weight"]
    weight = np.ones(keys.shape[0]) if weight is None else np.array(weight)
    weight[index] -= min(weight[index], 1.0)
    if not np.any(weight > 0):
        raise ValueError(
            "Leaving one out needs training samples of total weight above 1."
        )
    settings = dict(settings, sample_weight=weight)
    predictions, variance = prediction_variance(
        queries, keys, values, noise, **settings
    )
    return predictions[0], variance[0]


def _leave_out_blocks(queries, keys, values, settings, dtype):
    """The predictions of every leave-one-out model, chunk by chunk.

    For query q and key i, the prediction without one unit u_i of key i's
    weight is mu_i(q) = (S(q) - u_i w_i(q) y_i) / (W(q) - u_i w_i(q)), with S
    and W the weighted sums over all keys and w_i the kernel weight. Each
    row's heaviest key is summed apart (see :meth:`_Pooled._terms`), so no
    difference cancels; where the others' weights may have underflowed, its
    column is recomputed by a pass without it.

    Yields
    ------
    batch : slice
        The chunk's rows of ``queries``.
    output : int
        The column of ``values``.
    leave_out : tensor of shape (n_rows, n_kept)
        mu_i(q) for the chunk's queries and the keys that take part, in a
        block the next step reuses.
    pooled : _Pooled
    """
    n_values = values.shape[1]
    no_noise = np.zeros((keys.shape[0], 0))
    pooled = _Pooled(keys, values, no_noise, settings, dtype)
    problem = pooled.problem
    for batch, weights, terms in pooled.chunks(
        queries, settings["query_widths"], squares=False
    ):
        n_rows = weights.shape[0]
        rows = torch.arange(n_rows, device=weights.device)
        dominant, top = terms["dominant"], terms["top"]
        # The weight each key's removal takes from the row: its kernel weight
        # itself when every key removes one unit of a unit weight.
        removed = weights
        if not pooled.unit_removal:
            removed = torch.mul(
                weights, pooled.unit, out=problem.named_block("removed", n_rows)
            )
        denominator = problem.named_block("denominator", n_rows)
        torch.sub(terms["sums"][:, -1:], removed, out=denominator)
        kept_weight = (problem.sample_weight[dominant] - pooled.unit[dominant]) * top
        denominator[rows, dominant] = terms["rest"][:, -1] + kept_weight
        exact = {}
        for row in np.flatnonzero(terms["exact"].cpu().numpy()):
            query = batch.start + row
            exact[row] = _refit_without_one(
                queries[query : query + 1],
                keys,
                values,
                no_noise,
                settings_of(settings, query),
                int(pooled.key_index(int(dominant[row]))),
            )[0]
        for output in range(n_values):
            leave_out = torch.addcmul(
                terms["sums"][:, output : output + 1],
                removed,
                pooled.values_t[:, output],
                value=-1,
                out=problem.named_block("leave_out", n_rows),
            )
            leave_out[rows, dominant] = (
                terms["rest"][:, output]
                + kept_weight * pooled.values_t[dominant, output]
            )
            leave_out.div_(denominator)
            for row, prediction in exact.items():
                leave_out[row, dominant[row]] = float(prediction[output])
            yield batch, output, leave_out, pooled


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
    settings = _settings(
        bandwidth, kernel, sample_weight, key_widths, query_widths, device
    )
    full = prediction_variance(
        queries, keys, values, np.zeros((keys.shape[0], 0)), **settings
    )[0]
    result = np.repeat(full[:, None, :], keys.shape[0], axis=1)
    for batch, output, leave_out, pooled in _leave_out_blocks(
        queries, keys, values, settings, dtype
    ):
        columns = pooled.key_index(np.arange(pooled.problem.n_keys))
        block = leave_out.to(torch.float64).cpu().numpy()
        result[batch, columns, output] = block
    return result


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
    settings = _settings(
        bandwidth, kernel, sample_weight, key_widths, query_widths, device
    )
    frequency = np.ones(keys.shape[0]) if sample_weight is None else sample_weight
    frequency = np.asarray(frequency, dtype=np.float64)
    # Ranks a hair below (1 - alpha)(N + 1), so that a product that rounds
    # just above an integer rank is taken at that rank.
    rank = (1.0 - alpha) * (frequency.sum() + 1.0) * (1.0 - 1e-12)
    unit_weights = bool(np.all(frequency == 1.0))
    intervals = np.empty((queries.shape[0], values.shape[1], 2))
    eps = torch.finfo(dtype).eps
    ranked = None
    for batch, output, leave_out, pooled in _leave_out_blocks(
        queries, keys, values, settings, dtype
    ):
        if ranked is None:
            ranked = _RankedResiduals(pooled, residuals, frequency, rank)
        residual = ranked.outputs[output]
        # The bounds are quantiles of mu_i(q) + R_i and of mu_i(q) - R_i.
        # With every mu_i(q) of a row in [lowest, highest], the quantile of
        # mu_i(q) + R_i lies in [lowest + Q, highest + Q], Q that of R: only
        # the keys whose R_i is within highest - lowest of Q can be it, the
        # keys below are below it, and the selection runs on those few.
        lowest, highest = torch.aminmax(leave_out, dim=1)
        size = torch.maximum(highest.abs(), lowest.abs()) + residual["largest"]
        margins = ((highest - lowest) * (1 + 1e-9) + 8 * eps * size).cpu().numpy()
        # Rows in groups of similar margins, each with its own window: one
        # row of widely spread mu_i(q) does not widen every row's window.
        by_margin = np.argsort(margins, kind="stable")
        n_rows = len(by_margin)
        for group in np.split(by_margin, _GROUP_EDGES * n_rows // _GROUP_EDGES[-1]):
            if len(group) == 0:
                continue
            margin = float(margins[group[-1]])
            lower, upper = _window_quantiles(
                leave_out,
                torch.as_tensor(group, device=leave_out.device),
                residual,
                ranked,
                margin,
                rank,
                unit_weights,
            )
            rows = batch.start + group
            intervals[rows, output, 0] = lower.to(torch.float64).cpu().numpy()
            intervals[rows, output, 1] = upper.to(torch.float64).cpu().numpy()
    return intervals.astype(_numpy_dtype(dtype), copy=False)


def _window_quantiles(leave_out, rows, residual, ranked, margin, rank, unit_weights):
    """Jackknife+ bounds of some rows of the leave-one-out block, from the keys
    whose residual is within ``margin`` of the residuals' quantile (see
    :func:`jackknife_plus`).

    Returns
    -------
    lower, upper : tensors of shape (n_rows,)
    """
    quantile, ordered = residual["quantile"], residual["sorted"]
    start = int(np.searchsorted(ordered, quantile - margin, "left"))
    stop = int(np.searchsorted(ordered, quantile + margin, "right"))
    columns = residual["order"][start:stop]
    window = leave_out[rows[:, None], columns]
    window_residuals = residual["values"][start:stop]
    high = window + window_residuals
    # The lower bound is minus the same quantile of R_i - mu_i(q).
    negated_low = window_residuals - window
    if unit_weights:
        rank_in_window = ranked.upper_k - start
        upper = high.kthvalue(rank_in_window, dim=1).values
        lower = -negated_low.kthvalue(rank_in_window, dim=1).values
        return lower, upper
    below = residual["cumulative"][start - 1] if start > 0 else 0.0
    window_frequency = ranked.frequency[columns]
    upper = _weighted_upper(high, window_frequency, rank - below)
    lower = -_weighted_upper(negated_low, window_frequency, rank - below)
    return lower, upper


class _RankedResiduals:
    """The keys' leave-one-out residuals in increasing order, per output.

    Attributes
    ----------
    frequency : tensor of shape (n_kept,)
        The sample weights of the keys that take part.
    upper_k : int
        With unit weights, the rank ceil((1 - alpha)(n + 1)).
    outputs : list of dict
        Per output: ``order`` (tensor), the keys by increasing residual;
        ``values`` (tensor) and ``sorted`` (ndarray), the residuals in that
        order; ``cumulative``, their cumulative weights; ``quantile``, the
        residual at which the cumulative weight reaches the rank;
        ``largest``, the largest residual.
    """

    def __init__(self, pooled, residuals, frequency, rank):
        problem = pooled.problem
        kept = np.arange(len(frequency)) if pooled.kept is None else pooled.kept
        frequency, residuals = frequency[kept], residuals[kept]
        self.frequency = problem.to_tensor(frequency)
        self.upper_k = min(int(math.ceil(rank)), len(kept))
        self.outputs = []
        for column in residuals.T:
            order = np.argsort(column, kind="stable")
            ordered = column[order]
            cumulative = np.cumsum(frequency[order])
            position = min(int(np.searchsorted(cumulative, rank)), len(kept) - 1)
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

"""Nadaraya-Watson sums over each query's neighbours found in a tree."""

# Authors: the sknw developers
# License: BSD 3 clause

import numpy as np
import torch
from sklearn import get_config
from sklearn.neighbors import BallTree, KDTree
from sklearn.utils import gen_batches

from sknw._engine import (
    ActiveKeys,
    compute_dtype,
    feature_scale,
    inverse_width_power,
    prepare_keys,
    single_threaded_torch,
    start_partial_sums,
)
from sknw._kernels import KERNELS

# KDTree up to this many features, BallTree above (as KNeighborsRegressor's
# "auto" leans to ball trees as the dimension grows).
KD_TREE_MAX_FEATURES = 15

# A key whose distance the tree computes within this relative margin of the
# radius is kept, and its weight computed exactly below: the tree's rounding
# must not drop a key that the dense path weighs.
_RADIUS_MARGIN = 1e-9


def _pair_bytes(n_features):
    """Bytes held per (query, neighbour) pair: indices, three arrays of
    coordinate differences and a few of distances, weights and products,
    float64 or int64 each."""
    return 8 * (3 * n_features + 6)


def build_tree(keys, bandwidth):
    """A tree over the keys scaled by ``smallest_width / bandwidth`` per
    feature."""
    scaled = keys * feature_scale(bandwidth, keys.shape[1])[0]
    if keys.shape[1] <= KD_TREE_MAX_FEATURES:
        return KDTree(scaled)
    return BallTree(scaled)


def neighbor_fraction(tree, queries, bandwidth, radius):
    """Mean fraction of the keys within ``radius`` of the queries.

    Parameters
    ----------
    tree : KDTree or BallTree
        From :func:`build_tree`.
    queries : ndarray of shape (n_queries, n_features)
        Points to count from.
    bandwidth : float or ndarray of shape (n_features,)
        The width the tree was built with.
    radius : float
        In units of the width.

    Returns
    -------
    fraction : float
    """
    scale, smallest_width = feature_scale(bandwidth, queries.shape[1])
    radius = radius * smallest_width * (1 + _RADIUS_MARGIN)
    counts = tree.query_radius(queries * scale, radius, count_only=True)
    return float(np.mean(counts)) / tree.data.shape[0]


def tree_partial_sums(
    queries,
    keys,
    values,
    *,
    bandwidth,
    kernel,
    truncation=None,
    sample_weight=None,
    key_widths=None,
    query_widths=None,
    tree=None,
):
    """:func:`sknw._engine.partial_sums` over the neighbours of each query.

    A compact kernel weighs only the keys within one width: a radius query
    finds them, and the dense path's code weighs them from their coordinate
    differences, each weight equal to the dense path's to the bit, so the
    sums equal the dense path's up to the order of the additions. The
    Gaussian and the exponential, with a ``truncation`` t in (0, 1), keep
    the keys whose weight is at least t times the largest weight of the row
    (computed in the log domain from the nearest key's distance).

    Parameters
    ----------
    queries, keys, values, bandwidth, kernel, sample_weight, key_widths, \
query_widths
        As in :func:`sknw._engine.partial_sums`; ``kernel`` is a name.
    truncation : float, default=None
        The relative weight below which the Gaussian and the exponential drop
        a key; needed for them, ignored for the compact kernels.
    tree : KDTree or BallTree, default=None
        A tree from :func:`build_tree` over these keys and this bandwidth;
        built here when None.

    Returns
    -------
    partial : PartialSums
        Float64 arrays, as :func:`sknw._engine.partial_sums` returns.
    """
    partial = start_partial_sums(queries.shape[0], values.shape[1])
    dtype = compute_dtype(queries, keys)
    active = ActiveKeys.select(keys, values, sample_weight, key_widths, dtype)
    if active.is_empty:
        return active.undo_weight_scale(partial)
    if active.kept is not None:
        # The tree was built over all the keys; rebuild over those that
        # take part.
        tree = None
    budget = get_config()["working_memory"] * 2**20 // _pair_bytes(keys.shape[1])
    search = _TreeSearch(active, bandwidth, kernel, truncation, tree, budget, dtype)
    # Each query's neighbours are counted before any is gathered, and
    # gathered a slice of queries at a time within the budget, wherever the
    # crowded queries are; the arrays per query (coordinates, radii, counts)
    # take fewer bytes than the budget's pairs.
    with single_threaded_torch():
        _gather_and_sum(search, partial, queries, query_widths, budget)
    return active.undo_weight_scale(partial)


def _gather_and_sum(search, partial, queries, query_widths, budget):
    """The tree path's sums, within ``budget`` (query, neighbour) pairs."""
    for outer in gen_batches(queries.shape[0], max(1, int(budget))):
        scaled, widths, radius = search.radii(queries[outer], query_widths, outer)
        counts = search.tree.query_radius(scaled, radius, count_only=True)
        for inner in _pair_batches(counts, budget):
            batch = slice(outer.start + inner.start, outer.start + inner.stop)
            neighbors = search.tree.query_radius(scaled[inner], radius[inner])
            found = np.fromiter((len(part) for part in neighbors), dtype=np.intp)
            rows = np.repeat(np.arange(inner.stop - inner.start), found)
            cols = np.concatenate(neighbors).astype(np.intp, copy=False)
            del neighbors
            search.sums(
                partial,
                batch,
                queries[batch],
                scaled[inner],
                None if widths is None else widths[inner],
                rows,
                cols,
            )


class _TreeSearch:
    """Keys, their tree and the kernel, laid out for the batches of queries.

    Coordinates are scaled by ``smallest_width / bandwidth`` (the tree's units
    are the smallest width), so none grows however small the width. The
    tree only gathers candidates, within a radius wide enough for the
    rounding of the compute dtype; a kernel outside the log domain is then
    weighed by the dense path's own code (:meth:`PreparedKeys.pair_weights`), so
    both paths decide a compact kernel's edge alike.
    """

    def __init__(self, active, bandwidth, kernel, truncation, tree, budget, dtype):
        self.kernel = KERNELS[kernel]
        self.budget = budget
        self.truncation = truncation
        self.keys = keys = active.keys
        self.scale, self.smallest_width = feature_scale(bandwidth, keys.shape[1])
        self.tree = build_tree(keys, bandwidth) if tree is None else tree
        self.scaled_keys = keys * self.scale
        self.weighted = active.weighted_values()
        self.key_widths = active.key_widths
        key_widths = np.ones(1) if self.key_widths is None else self.key_widths
        self.largest_key_width = float(np.max(key_widths))
        self.width_ratio = self.largest_key_width / float(np.min(key_widths))
        self.log_domain = self.kernel.log_slope is not None
        self.argument_power = 1 if self.kernel.exact_distances else 2
        self.problem = self.slack = None
        if not self.log_domain:
            self.problem = prepare_keys(active, bandwidth, kernel, dtype, "cpu")
            # The dense path rounds each coordinate, times its scale, in the
            # compute dtype, and u with it: a key it may count lies within
            # this many tree units beyond the exact radius, plus a relative
            # margin for the rounding of u itself.
            eps = torch.finfo(dtype).eps
            largest = float(np.abs(self.scaled_keys).max(initial=0))
            self.slack = (eps, 8 * eps * np.sqrt(keys.shape[1]) * largest)
        # The log-weight's factor of the squared distance (of the distance,
        # for the exponential), capped so that 0 times it stays 0.
        self.log_factor = inverse_width_power(
            self.smallest_width,
            self.argument_power,
            largest=np.finfo(np.float64).max,
        ) * (self.kernel.log_slope or 0.0)

    def radii(self, queries, query_widths, batch):
        """Scaled queries, their local widths and search radii (tree units)."""
        scaled = queries * self.scale
        widths = None if query_widths is None else query_widths[batch]
        # Key j is within reach of query i when u_ij = s_ij / (w_j v_i) < 1.
        reach = self.smallest_width * self.largest_key_width
        reach = reach * (1.0 if widths is None else widths)
        if self.log_domain:
            nearest_distance, _ = self.tree.query(scaled, k=1)
            radius = _truncation_radius(
                nearest_distance[:, 0] * self.width_ratio,
                reach,
                self.kernel,
                self.truncation,
            )
            return scaled, widths, radius * (1 + _RADIUS_MARGIN)
        eps, absolute = self.slack
        largest = float(np.abs(scaled).max(initial=0))
        absolute = absolute + 8 * eps * np.sqrt(scaled.shape[1]) * largest
        radius = reach * np.ones(len(scaled)) * (1 + _RADIUS_MARGIN + 64 * eps)
        return scaled, widths, radius + absolute

    def sums(self, partial, batch, queries, scaled, widths, rows, cols):
        """Fill ``partial`` on the rows ``batch`` from their (row, key) pairs.

        Log-shifts and nearest sums are left for the caller to scale by the
        largest sample weight.
        """
        beyond = np.zeros(len(scaled), dtype=bool)
        if self.log_domain:
            sq = ((scaled[rows] - self.scaled_keys[cols]) ** 2).sum(axis=1)
            if self.key_widths is not None:
                sq = sq * (1.0 / self.key_widths[cols]) ** 2
            if widths is not None:
                sq = sq * (1.0 / widths[rows]) ** 2
            argument = np.sqrt(sq) if self.argument_power == 1 else sq
            row_min = np.full(len(scaled), np.inf)
            np.minimum.at(row_min, rows, argument)
            # Shifted by the row's smallest argument before the factor, as
            # the dense path does: the nearest key gets weight 1 at any width.
            with np.errstate(over="ignore", invalid="ignore"):
                weights = np.exp((argument - row_min[rows]) * self.log_factor)
                log_shift = row_min * self.log_factor
            weights[np.isnan(weights)] = 0.0
            # A row whose nearest weight is beyond float64 is reported as its
            # nearest keys, as on the dense path.
            beyond = ~np.isfinite(log_shift)
            partial.log_shift[batch] = np.where(beyond, -np.inf, log_shift)
        else:
            problem = self.problem
            weights = problem.pair_weights(
                problem.to_tensor(queries),
                None if widths is None else problem.to_tensor(widths),
                torch.as_tensor(rows),
                torch.as_tensor(cols),
            )
            weights = weights.to(torch.float64).numpy()
        sums = np.zeros((len(scaled), self.weighted.shape[1]))
        for column in range(self.weighted.shape[1]):
            sums[:, column] = np.bincount(
                rows, weights * self.weighted[cols, column], minlength=len(scaled)
            )
        empty = ~(sums[:, -1] > 0) | beyond
        if np.any(empty):
            positions = np.flatnonzero(empty)
            nearest_sq, nearest_sums = _nearest(
                self.tree,
                queries[positions],
                self.keys,
                self.scale,
                self.key_widths,
                self.weighted,
                self.budget,
            )
            partial.nearest_sq[batch][positions] = nearest_sq
            partial.nearest_sums[batch][positions] = nearest_sums
            sums[empty] = 0.0
        partial.sums[batch] = sums


def truncation_radius(kernel_spec, truncation):
    """The fall in u (in u^2 for the Gaussian, as a u) beyond which a
    log-domain kernel's weight is below ``truncation`` times its weight at
    the nearest key: log(1 / truncation) / |log_slope|, square-rooted for
    the kernels of u^2."""
    drop = np.log(1.0 / truncation) / abs(kernel_spec.log_slope)
    return drop if kernel_spec.exact_distances else float(np.sqrt(drop))


def _pair_batches(counts, budget):
    """Slices of consecutive queries whose pairs number at most ``budget``
    (or one query, when it alone has more)."""
    ends = np.cumsum(counts)
    start = 0
    while start < len(counts):
        base = ends[start - 1] if start else 0
        stop = max(int(np.searchsorted(ends, base + budget, side="right")), start + 1)
        yield slice(start, stop)
        start = stop


def _truncation_radius(nearest_distance, reach, kernel_spec, truncation):
    """Radius beyond which a log-domain weight is below ``truncation`` times
    the row's largest.

    The largest weight is the nearest key's (in u); the kernel's log falls by
    log(1 / truncation) at u^2 = u_min^2 + r^2 for the Gaussian and at
    u = u_min + r for the exponential, r from :func:`truncation_radius`.
    ``nearest_distance`` bounds u_min times the nearest key's width factor
    from above, and ``reach`` (the largest factor between a distance and u)
    turns the fall in u into a distance.
    """
    fall = reach * truncation_radius(kernel_spec, truncation)
    if kernel_spec.exact_distances:
        return nearest_distance + fall
    return np.hypot(nearest_distance, fall)


def _pairs(tree, scaled, radius):
    """(query, key) index pairs within ``radius`` of each query."""
    neighbors = tree.query_radius(scaled, radius)
    counts = np.fromiter((len(found) for found in neighbors), dtype=np.intp)
    rows = np.repeat(np.arange(len(scaled)), counts)
    cols = np.concatenate(neighbors) if len(neighbors) else np.zeros(0, np.intp)
    return rows, cols.astype(np.intp, copy=False)


def _nearest(tree, queries, keys, scale, key_widths, weighted, budget):
    """Nearest keys of queries that reach none, ties included.

    Distances are compared as the dense path compares them: squared
    coordinate differences of the data as given, times the scale
    ``smallest_width / bandwidth``, divided by the key's width squared. With
    local widths every key may be a candidate, so queries are taken a few at
    a time, within ``budget`` pairs.
    """
    smallest = np.full(len(queries), np.inf)
    sums = np.zeros((len(queries), weighted.shape[1]))
    for part in gen_batches(len(queries), max(1, budget // len(keys))):
        smallest[part], sums[part] = _nearest_of(
            tree, queries[part], keys, scale, key_widths, weighted
        )
    return smallest, sums


def _nearest_of(tree, queries, keys, scale, key_widths, weighted):
    """:func:`_nearest` for one batch of queries."""
    scaled = queries * scale
    largest_key_width = 1.0 if key_widths is None else float(np.max(key_widths))
    smallest_key_width = 1.0 if key_widths is None else float(np.min(key_widths))
    distance, _ = tree.query(scaled, k=1)
    # Any key nearer in u than the tree's nearest lies within this radius.
    radius = distance[:, 0] * largest_key_width / smallest_key_width
    rows, cols = _pairs(tree, scaled, radius * (1 + _RADIUS_MARGIN) + 1e-300)
    # Summed feature after feature, in the dense path's order, so that keys
    # tied there are tied here.
    sq = np.zeros(len(rows))
    for feature in range(keys.shape[1]):
        difference = queries[rows, feature] - keys[cols, feature]
        sq += (difference * scale[feature]) ** 2
    if key_widths is not None:
        sq = sq * (1.0 / key_widths[cols]) ** 2
    smallest = np.full(len(queries), np.inf)
    np.minimum.at(smallest, rows, sq)
    tied = sq <= smallest[rows]
    sums = np.zeros((len(queries), weighted.shape[1]))
    for column in range(weighted.shape[1]):
        sums[:, column] = np.bincount(
            rows[tied], weighted[cols[tied], column], minlength=len(queries)
        )
    return smallest, sums

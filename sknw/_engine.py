"""Chunked torch computation of Nadaraya-Watson weights and predictions."""

# Authors: the sknw developers
# License: BSD 3 clause

import copy
import math
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch
from sklearn import get_config
from sklearn.utils import gen_batches

from sknw._kernels import KERNELS, Kernel

# exp is many times slower when its result is a denormal (arguments below
# about -87 in float32, -708 in float64); a weight that small relative to the
# largest one in its row cannot change the row's normalised sum, so shifted
# log-weights are clamped there.
_LOG_WEIGHT_FLOOR = {torch.float32: -87.0, torch.float64: -708.0}

# exp(x) is taken as 2^(x log2 e), log2 e folded into the factor that makes
# the log-weights: torch's exp2 takes a third (float32) to a half (float64)
# of exp's time on the CPU, and the folded factor rounds the argument as the
# factor itself already does.
LOG2_E = 1.0 / math.log(2.0)

# Sample weights below this fraction of the largest take no part: with kernel
# weights floored at e^-87 (1.6e-38) in float32 and e^-708 (3.3e-308) in
# float64, a smaller one could be outweighed by the floor of a far sample.
_SAMPLE_WEIGHT_FLOOR = {torch.float32: 1e-30, torch.float64: 1e-290}

# Blocks of (chunk_n_rows, n_keys) alive at once in the chunk loop: distances
# turned into weights in place, a kernel's output when it is not computed in
# place, and one temporary of a compound kernel expression.
_BLOCKS_PER_ROW = 3

# The float64 Gaussian takes squared distances from a matrix product while
# the centred data lie within this many widths of the centre: the product
# rounds the log-weights by about 2e-16 times this squared.
_PRODUCT_MAX_RADIUS = 1e3

# The shift of log-weights to a row maximum of 0 is fused into one pass,
# slope * d - slope * min, while |slope * min| stays below this: its rounding
# is then a few units of the precision, as in slope * (d - min).
_FUSED_SHIFT_BOUND = 4.0

# The fused kernel takes coordinates divided by the bandwidth in float32; up
# to this size their squared differences stay finite.
_FUSED_LARGEST_COORDINATE = 1e15

# Each pass over a block runs from cache when the block is a few MiB; larger
# blocks make every elementwise pass a trip to main memory.
_CACHE_BLOCK_BYTES = 4 * 2**20


def resolve_device(device, *, fall_back=False):
    """Turn a device string into an available ``torch.device``.

    Parameters
    ----------
    device : str or torch.device
        A torch device such as ``"cpu"``, ``"cuda"`` or ``"cuda:1"``.
    fall_back : bool, default=False
        When the device is absent, warn and return the CPU instead of raising.

    Returns
    -------
    device : torch.device
    """
    try:
        resolved = torch.device(device)
        torch.empty(0, device=resolved)
    except Exception as exc:
        message = f"device={device!r} is not available here ({exc})."
        if not fall_back:
            raise ValueError(message) from exc
        warnings.warn(f"{message} Computing on the CPU instead.", UserWarning)
        return torch.device("cpu")
    return resolved


def named_block(blocks, name, shape, dtype, device):
    """A view of ``shape`` on the block called ``name`` in ``blocks`` (a
    contiguous tensor), made anew (flat) when it has fewer elements or
    another dtype: rows of a fixed width, or bands whose width changes."""
    size = math.prod(shape)
    buffer = blocks.get(name)
    if buffer is None or buffer.numel() < size or buffer.dtype != dtype:
        buffer = torch.empty(size, dtype=dtype, device=device)
        blocks[name] = buffer
    return buffer.view(-1)[:size].view(shape)


def as_tensor(array, dtype, device):
    """A tensor of ``array`` in ``dtype`` on ``device``.

    Read-only memory (a pandas DataFrame's, or any array with
    ``writeable=False``) is copied first: torch cannot share it safely and
    would warn.
    """
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:
        array = array.copy()
    return torch.as_tensor(array, dtype=dtype, device=device)


def bandwidth_per_feature(bandwidth, n_features):
    """The bandwidth as a float64 array of shape (n_features,) (a read-only
    view when it is one number)."""
    return np.broadcast_to(np.asarray(bandwidth, dtype=np.float64), (n_features,))


def feature_scale(bandwidth, n_features):
    """``smallest / bandwidth`` per feature, and the smallest width:
    coordinates times these factors (<= 1) are in units of the smallest
    width, so none grows however small the width."""
    bandwidth = bandwidth_per_feature(bandwidth, n_features)
    smallest = float(bandwidth.min())
    return smallest / bandwidth, smallest


def inverse_width_power(smallest, power, query_widths=None, largest=np.inf):
    """1 / (smallest * query_widths)^power in float64, at most ``largest``.

    Capped at the dtype's largest value, a factor times a distance of 0
    stays 0 instead of 0 * inf; uncapped, rows whose factors overflow are
    not taken for equals.

    Parameters
    ----------
    smallest : float
        The smallest width.
    power : {1, 2}
        Of distances or of squared distances.
    query_widths : ndarray of shape (n_queries,), default=None
        Local width factors of the queries.
    largest : float, default=inf
        The cap.

    Returns
    -------
    factor : float, or ndarray of shape (n_queries,) with ``query_widths``
    """
    with np.errstate(over="ignore", divide="ignore"):
        factor = np.float64(1.0) / np.float64(smallest) ** power
        if query_widths is None:
            return float(min(factor, largest))
        factor = factor / np.asarray(query_widths, dtype=np.float64) ** power
    return np.minimum(factor, largest)


def compute_dtype(*arrays):
    """float32 when every array is float32, float64 otherwise."""
    if all(array.dtype == np.float32 for array in arrays):
        return torch.float32
    return torch.float64


class PreparedKeys:
    """Keys, bandwidth and kernel laid out for the chunk loop.

    Keys and queries are scaled per feature by ``smallest_width /
    bandwidth`` (factors <= 1, so nothing overflows). Query i and key j are
    then at distance s_ij, and
    u_ij = s_ij / (smallest_width * key_widths[j] * query_widths[i]).

    How squared distances are computed is chosen once, as
    ``distance_method``: "differences", summed feature by feature from
    coordinate differences; "product", for the Gaussian in float64 with two
    features or more, one matrix product of augmented vectors [q, 1, |q|^2]
    and [-2 k, |k|^2, 1], on data centred on the middle of the keys' range
    (which keeps the expansion accurate far from the origin and independent
    of the order of the keys); "search", for the Gaussian along one feature,
    differences to the keys with each query's nearest key from a binary
    search. In float32 the expansion would round by about
    (range / bandwidth)^2 times the precision, so float32 always takes
    differences.
    """

    def __init__(
        self,
        keys,
        bandwidth,
        kernel,
        sample_weight,
        dtype,
        device,
        key_widths=None,
        blocks=None,
    ):
        n_keys, n_features = keys.shape
        # Blocks of memory by name, reused from chunk to chunk and, when
        # given, from one problem over the same keys to the next.
        self.blocks = {} if blocks is None else blocks
        # Threads other than the one that made the problem (the chunk loop's
        # workers) keep blocks, and a callable kernel's row divisors, of
        # their own.
        self._owner = threading.get_ident()
        self._local = threading.local()
        self.dtype = dtype
        self.device = device
        self.n_keys = n_keys
        scale, self.smallest_width = feature_scale(bandwidth, n_features)
        self.largest = float(torch.finfo(dtype).max)
        self.scale = self.to_tensor(scale)
        self.key_inverse = None
        if key_widths is not None:
            self.key_inverse = self.to_tensor(1.0 / np.asarray(key_widths))[None, :]
        if sample_weight is None:
            sample_weight = np.ones(n_keys)
        self.sample_weight = self.to_tensor(sample_weight)
        if callable(kernel):
            self.user_kernel = kernel
            self.kernel = Kernel(
                "callable",
                self._call_kernel,
                exact_distances=True,
                learnable=False,
                fused=False,
            )
        else:
            self.kernel = KERNELS[kernel]
        # The log-weight is log_slope times u^argument_power: the Gaussian's
        # works on squared distances, every other kernel on distances.
        log_domain = self.kernel.log_slope is not None
        squared = log_domain and not self.kernel.exact_distances
        self.argument_power = 2 if squared else 1

        self.keys = self.to_tensor(keys)
        # One contiguous row per feature, broadcast against a column of
        # queries.
        self.scaled_keys_t = (self.keys * self.scale).T.contiguous()
        self.distance_method = "differences"
        if squared and dtype == torch.float64 and n_features >= 2:
            lowest, highest = np.min(keys, axis=0), np.max(keys, axis=0)
            self.centre = self.to_tensor((lowest / 2 + highest / 2))
            centred_t = (self.keys - self.centre).mul_(self.scale).T
            ones = torch.ones_like(centred_t[:1])
            self.augmented_keys_t = torch.cat(
                [-2 * centred_t, (centred_t**2).sum(dim=0, keepdim=True), ones]
            ).contiguous()
            # The expansion rounds by the precision times (radius / width)^2.
            if self._within_product_radius(centred_t.T):
                self.distance_method = "product"
        elif squared and n_features == 1 and key_widths is None:
            # Each query's nearest key from a binary search spares a pass
            # over the block.
            self.sorted_keys = self.scaled_keys_t[0].sort().values
            self.distance_method = "search"

    def with_blocks(self, blocks):
        """This problem for the calling thread, its reused blocks those of
        ``blocks``: a shallow copy, sharing the prepared keys, so that one
        problem serves every chunk and thread of a pass (preparing the keys
        took 2.9 ms a chunk at 20,000 keys of four features). The copies
        share the per-thread state of ``_local`` (a callable kernel's row
        divisors), which stays per thread."""
        view = copy.copy(self)
        view.blocks = blocks
        view._owner = threading.get_ident()
        return view

    def _within_product_radius(self, centred):
        """Whether centred scaled points are few enough widths from the centre
        for the product's rounding to stay below about 1e-10."""
        if centred.numel() == 0:
            return True
        radius = float(centred.abs().max()) / self.smallest_width
        return radius <= _PRODUCT_MAX_RADIUS

    def to_tensor(self, array):
        return as_tensor(array, self.dtype, self.device)

    def _u_factor(self, query_widths, power, gain=1.0):
        """``gain`` / (smallest_width * query_widths)^power, per row or one
        number.

        Computed in float64 and capped, ``gain`` included, at the dtype's
        largest value, so a distance of 0 times it stays 0 instead of 0 * inf.
        """
        smallest, largest = self.smallest_width, self.largest
        with np.errstate(over="ignore"):
            if query_widths is None:
                factor = inverse_width_power(smallest, power) * abs(gain)
                return math.copysign(min(factor, largest), gain)
            widths = query_widths.to(torch.float64).cpu().numpy()
            factor = inverse_width_power(smallest, power, widths) * abs(gain)
        return self.to_tensor(np.copysign(np.minimum(factor, largest), gain)[:, None])

    def weights(self, queries, query_widths=None):
        """Kernel weights of a chunk of queries, each row scaled by a factor.

        Parameters
        ----------
        queries : tensor of shape (n_queries, n_features)
            A chunk of queries, as given.
        query_widths : tensor of shape (n_queries,), default=None
            Their local width factors.

        Returns
        -------
        weights : tensor of shape (n_queries, n_keys)
            Kernel weights before the sample weights, divided by
            ``exp(log_shift)`` row by row; a row whose kernel weights are all
            0 (a compact kernel far from the keys) holds the indicator of the
            nearest keys instead. It lives in memory that the next chunk
            reuses.
        log_shift : ndarray of shape (n_queries,)
            The log of each row's divisor: its largest log-weight for the
            log-domain kernels, 0 for the others.
        nearest_sq : ndarray of shape (n_queries,)
            The nearest key's squared scaled distance on the rows that hold
            an indicator, inf on the others.
        """
        n_queries = queries.shape[0]
        nearest_sq = np.full(n_queries, np.inf)
        if self.kernel.log_slope is not None:
            log_weights, log_shift, row_min = self._log_weights(queries, query_widths)
            log_weights.clamp_(min=log2_weight_floor(self.dtype))
            # A row whose largest log-weight is beyond float64 (a width so
            # small that even the nearest key's weight underflows) holds the
            # indicator of its nearest keys; it is reported as such, with a
            # shift of -inf, so that sums over nearer keys elsewhere prevail
            # and otherwise the nearest keys of every set merge by distance.
            beyond = ~np.isfinite(log_shift)
            if np.any(beyond):
                row_min = row_min.to(torch.float64).ravel().cpu().numpy()
                nearest_sq[beyond] = row_min[beyond] ** (3 - self.argument_power)
                log_shift[beyond] = -np.inf
            return log_weights.exp2_(), log_shift, nearest_sq

        sq = self.squared_distances(queries * self.scale)
        weights = self.kernel_of_squared_distances(sq, query_widths)
        empty = ~(weights @ self.sample_weight > 0)
        if bool(empty.any()):
            indicator, distance = self.nearest_keys(queries[empty])
            weights[empty] = indicator.to(self.dtype)
            nearest_sq[empty.cpu().numpy()] = distance.cpu().numpy()
        log_shift = np.zeros(n_queries)
        if callable(getattr(self, "user_kernel", None)):
            log_shift = self._local.row_log_divisor.copy()
            log_shift[np.isfinite(nearest_sq)] = 0.0
        return weights, log_shift, nearest_sq

    def kernel_of_squared_distances(self, sq, query_widths, rows=None, cols=None):
        """Weights of a kernel outside the log domain from squared scaled
        distances, computed in place.

        The block of :meth:`weights` and the (query, key) pairs of the tree
        path both come here: the same correctly rounded operations on the
        same numbers give the same u, so a compact kernel's edge (the
        top-hat's above all) is decided alike on both paths.

        Parameters
        ----------
        sq : tensor of shape (n_queries, n_keys) or (n_pairs,)
            Squared distances in the keys' scaled units, from
            :func:`sum_squared_differences`; overwritten.
        query_widths : tensor of shape (n_queries,) or None
            The queries' local width factors.
        rows, cols : tensor of int of shape (n_pairs,), default=None
            The query and key of each pair when ``sq`` holds pairs.

        Returns
        -------
        weights : tensor of the shape of ``sq``
        """
        if self.key_inverse is not None:
            inverse = self.key_inverse if cols is None else self.key_inverse[0, cols]
            sq.mul_(inverse.square())
        kernel = self.kernel
        factor = self._u_factor(query_widths, 2 if kernel.of_squared else 1)
        if rows is not None and isinstance(factor, torch.Tensor):
            factor = factor[rows, 0]
        if kernel.of_squared:
            return kernel.in_place(sq.mul_(factor))
        u = sq.sqrt_().mul_(factor)
        return (kernel.in_place or kernel.function)(u)

    def pair_weights(self, queries, query_widths, rows, cols):
        """Kernel weights of (query, key) pairs, bit for bit those that
        :meth:`weights` gives a kernel outside the log domain on its block.

        Parameters
        ----------
        queries : tensor of shape (n_queries, n_features)
            Queries, as given.
        query_widths : tensor of shape (n_queries,) or None
            Their local width factors.
        rows, cols : tensor of int of shape (n_pairs,)
            The query and the key of each pair.

        Returns
        -------
        weights : tensor of shape (n_pairs,)
        """
        scaled = queries * self.scale
        keys_t = self.scaled_keys_t
        n_features = scaled.shape[1]
        sq = torch.empty(len(rows), dtype=self.dtype, device=self.device)
        sum_squared_differences(
            [scaled[rows, feature] for feature in range(n_features)],
            [keys_t[feature, cols] for feature in range(n_features)],
            sq,
            torch.empty_like(sq),
        )
        return self.kernel_of_squared_distances(sq, query_widths, rows, cols)

    def _log_weights(self, queries, query_widths):
        """Log-weights of a log-domain kernel, shifted to a row maximum of 0,
        in base 2 (see ``LOG2_E``).

        The shift is taken on distances, before the (possibly huge) factor
        1 / bandwidth^2: the nearest key gets log-weight 0, so weight 1, at
        any bandwidth, and a tiny one does not give 0 / 0.

        Returns
        -------
        log_weights : tensor of shape (n_queries, n_keys)
        log_shift : ndarray of shape (n_queries,)
            The largest unshifted log-weight of each row, in float64.
        row_min : tensor of shape (n_queries, 1)
            Each row's smallest squared distance (distance, for the
            exponential), scaled as the keys are.
        """
        slope = self._u_factor(
            query_widths, self.argument_power, self.kernel.log_slope * LOG2_E
        )
        if self.distance_method == "search" and query_widths is None:
            scaled = queries * self.scale
            row_min = self._nearest_1d(scaled)
            differences = torch.sub(
                scaled, self.scaled_keys_t, out=self.block(len(scaled))
            )
            log_weights = _shifted(differences, row_min, slope, square=True)
        else:
            arguments = self.scaled_squared_distances(queries)
            if self.argument_power == 1:
                arguments.sqrt_()
            row_min = arguments.amin(dim=1, keepdim=True)
            log_weights = _shifted(arguments, row_min, slope)
        return log_weights, self._log_shift(row_min, query_widths), row_min

    def scaled_squared_distances(self, queries, differences=False, factor=1.0):
        """Squared distances of queries, as given, to the keys, in the keys'
        scaled units and divided by the keys' local widths squared.

        One matrix product of augmented vectors where :attr:`product` allows
        it and the queries are within its radius; coordinate differences
        otherwise.

        Parameters
        ----------
        queries : tensor of shape (n_queries, n_features)
        differences : bool, default=False
            Coordinate differences in any case: for distances that serve
            widths narrower than this problem's, where the product's rounding
            (the precision times the squared radius, in any width's units)
            would be magnified by the squared ratio of the widths.
        factor : float, default=1.0
            Multiplies the distances: within the product at no cost (its
            few query columns are multiplied), a pass of its own otherwise.

        Returns
        -------
        sq_dist : tensor of shape (n_queries, n_keys)
            In the main block, which the next call reuses.
        """
        centred = None
        if self.distance_method == "product" and not differences:
            centred = (queries - self.centre).mul_(self.scale)
        if centred is not None and self._within_product_radius(centred):
            ones = torch.ones_like(centred[:, :1])
            augmented = torch.cat([centred, ones, (centred**2).sum(1, True)], 1)
            if factor != 1.0:
                augmented.mul_(factor)
            sq = torch.mm(
                augmented, self.augmented_keys_t, out=self.block(len(queries))
            )
            if self.key_inverse is not None:
                sq.clamp_(min=0)
        else:
            sq = self.squared_distances(queries * self.scale)
            if factor != 1.0:
                sq.mul_(factor)
        if self.key_inverse is not None:
            sq.mul_(self.key_inverse.square())
        return sq

    def _nearest_1d(self, scaled):
        """Squared distance from each query to its nearest key, one feature.

        Computed with the same operations as the block, so it equals the
        block's row minimum.
        """
        keys = self.sorted_keys
        right = torch.searchsorted(keys, scaled[:, 0]).clamp_(max=len(keys) - 1)
        left = (right - 1).clamp_(min=0)
        row_min = torch.minimum(
            (scaled[:, 0] - keys[left]).square_(),
            (scaled[:, 0] - keys[right]).square_(),
        )
        return row_min[:, None]

    def block(self, n_rows, spare=False):
        """A (n_rows, n_keys) block of memory reused from chunk to chunk.

        A fresh block of a few MiB would be mapped from the system and
        faulted in page by page at every chunk, which costs about as much as
        computing the weights. The weights of a chunk live in the main block
        until the next chunk is computed.
        """
        return self.named_block("spare" if spare else "main", n_rows)

    def named_block(self, name, n_rows):
        """The (n_rows, n_keys) view of the reused block called ``name``."""
        blocks = self.blocks
        if threading.get_ident() != self._owner:
            if not hasattr(self._local, "blocks"):
                self._local.blocks = {}
            blocks = self._local.blocks
        return named_block(blocks, name, (n_rows, self.n_keys), self.dtype, self.device)

    def squared_distances(self, scaled_queries):
        """Squared distances of scaled queries to the scaled keys.

        Summed feature by feature from coordinate differences (see
        :func:`sum_squared_differences`), faster than ``torch.cdist`` at every
        number of features measured (up to 32).
        """
        n_rows, n_features = scaled_queries.shape
        keys_t = self.scaled_keys_t
        spare = self.block(n_rows, spare=True) if n_features > 1 else None
        return sum_squared_differences(
            [scaled_queries[:, feature : feature + 1] for feature in range(n_features)],
            [keys_t[feature : feature + 1] for feature in range(n_features)],
            self.block(n_rows),
            spare,
        )

    def _log_shift(self, row_min, query_widths):
        """Largest log-weight of each row, in float64, from its smallest
        squared (or plain) scaled distance.

        -inf where it is beyond float64 (never capped: rows whose shifts
        were capped alike would merge as equals), and 0 where the nearest
        key is at distance 0.
        """
        row_min = row_min.to(torch.float64).ravel().cpu().numpy()
        if query_widths is not None:
            query_widths = query_widths.to(torch.float64).cpu().numpy()
        factor = inverse_width_power(
            self.smallest_width, self.argument_power, query_widths
        )
        with np.errstate(over="ignore", invalid="ignore"):
            log_shift = row_min * factor * self.kernel.log_slope
        return np.where(row_min == 0, 0.0, log_shift)

    def nearest_keys(self, queries):
        """Indicator of each query's nearest keys in u, ties included.

        The limit the Gaussian reaches far from the data. Distances come from
        coordinate differences of the data as given, so keys at exactly the
        same distance stay tied.

        Returns
        -------
        indicator : tensor of bool of shape (n_queries, n_keys)
            The nearest keys of each query.
        distance : tensor of shape (n_queries,)
            Their squared scaled distance.
        """
        sq = torch.zeros(
            (queries.shape[0], self.n_keys), dtype=self.dtype, device=self.device
        )
        for feature in range(queries.shape[1]):
            diff = queries[:, feature, None] - self.keys[None, :, feature]
            sq.add_(diff.mul_(self.scale[feature]).square_())
        if self.key_inverse is not None:
            sq.mul_(self.key_inverse.square())
        smallest = sq.amin(dim=1, keepdim=True)
        return sq <= smallest, smallest.ravel()

    def _call_kernel(self, u):
        """A callable kernel's weights, row by row divided by a power of 2
        near their largest: the rows' ratios, all that the averages use,
        stay exact, and weights as large as float64 holds neither overflow
        in float32 nor in the sums."""
        u64 = u.cpu().numpy().astype(np.float64)
        weights = np.asarray(self.user_kernel(u64))
        check_kernel_output(weights, u.shape)
        weights = weights.astype(np.float64, copy=False)
        largest = weights.max(axis=1, initial=0) if weights.ndim == 2 else None
        if largest is not None:
            exponent = np.frexp(largest)[1] - 1
            divisor = np.where(largest > 0, np.ldexp(1.0, exponent), 1.0)
            weights = weights / divisor[:, None]
            self._local.row_log_divisor = np.log(divisor)
        return self.to_tensor(weights)


def _shifted(arguments, row_min, slope, square=False):
    """``slope * (arguments - row_min)`` (of ``arguments`` squared when
    ``square``), in place.

    The fused form, slope * a - slope * min, takes one pass over the block
    instead of two and rounds by the precision times |slope * min|: it is
    taken while that stays below ``_FUSED_SHIFT_BOUND``, as it does while
    the nearest key is within about a width of every query of the chunk.
    """
    largest = float((row_min * slope).abs().max()) if row_min.numel() else 0.0
    if largest > _FUSED_SHIFT_BOUND:
        if square:
            arguments.square_()
        return arguments.sub_(row_min).mul_(slope)
    offset = -slope * row_min
    if square:
        return torch.addcmul(offset, arguments, arguments, value=slope, out=arguments)
    if isinstance(slope, torch.Tensor):
        return torch.addcmul(offset, arguments, slope, out=arguments)
    # Several times faster than addcmul with a 0-d tensor.
    return torch.add(offset, arguments, alpha=slope, out=arguments)


def sum_squared_differences(left, right, out, spare):
    """The sum over features of ``(left[f] - right[f])**2``, into ``out``.

    One correctly rounded operation at a time (difference, square, sum, in
    the order of the features), never a fused multiply-add: an entry then
    has the same bits whatever the layout it is computed in, a block of
    queries by keys or gathered (query, key) pairs.

    Parameters
    ----------
    left, right : sequence of tensors
        One pair of broadcastable tensors per feature.
    out : tensor
        Receives the sums.
    spare : tensor of the shape of ``out``, or None
        Scratch memory; None is allowed with one feature.

    Returns
    -------
    out : tensor
    """
    torch.sub(left[0], right[0], out=out).square_()
    for left_feature, right_feature in zip(left[1:], right[1:]):
        torch.sub(left_feature, right_feature, out=spare).square_()
        out.add_(spare)
    return out


def check_kernel_output(weights, shape):
    """Refuse a callable kernel's output that is not finite weights >= 0."""
    if weights.shape != tuple(shape):
        raise ValueError(
            "The callable kernel must return an array of the same shape as its "
            f"input; got shape {weights.shape} for input of shape {tuple(shape)}."
        )
    if weights.dtype.kind not in "biuf":
        raise ValueError(
            f"The callable kernel must return real numbers; got dtype {weights.dtype}."
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(
            "The callable kernel must return finite weights >= 0; got values in "
            f"[{np.nanmin(weights)}, {np.nanmax(weights)}]"
            + (" and NaN." if np.isnan(weights).any() else ".")
        )


def _chunk_n_rows(n_keys, dtype, n_threads=1, blocks_per_row=_BLOCKS_PER_ROW):
    """Queries per chunk.

    Parameters
    ----------
    n_keys : int
        Keys each query is compared with.
    dtype : torch.dtype
        Compute dtype.
    n_threads : int, default=1
        Threads computing chunks at once, each with blocks of its own.
    blocks_per_row : int, default=_BLOCKS_PER_ROW
        Blocks of (chunk_n_rows, n_keys) each thread keeps alive at once.

    Returns
    -------
    chunk_n_rows : int
        At least 1; the blocks of all threads fit in ``working_memory`` and
        each block in about ``_CACHE_BLOCK_BYTES``.
    """
    itemsize = torch.finfo(dtype).bits // 8
    budget = get_config()["working_memory"] * 2**20 // (blocks_per_row * n_threads)
    return max(1, int(min(budget, _CACHE_BLOCK_BYTES) // (n_keys * itemsize)))


def prepare_keys(active, bandwidth, kernel, dtype, device):
    """The keys that take part laid out for the chunk loop, on ``device``
    (the CPU, with a warning, when it is absent)."""
    return PreparedKeys(
        active.keys,
        bandwidth,
        kernel,
        active.sample_weight,
        dtype,
        resolve_device(device, fall_back=True),
        key_widths=active.key_widths,
    )


# Torch's thread count in a thread before single_threaded_torch set it to 1.
_ALLOWED_THREADS = threading.local()


@contextmanager
def single_threaded_torch():
    """Torch's intra-op threads set to one in the calling thread, and set
    back on exit.

    Torch's OpenMP threads wait for each other at the end of every
    operation; when other processes share the cores, a descheduled thread
    holds all of them up, many times over the work itself. sknw computes
    with one torch thread per thread of its own instead (see
    :func:`for_each_in_threads`).
    """
    previous = torch.get_num_threads()
    outermost = not hasattr(_ALLOWED_THREADS, "count")
    if outermost:
        _ALLOWED_THREADS.count = previous
    # MKL, inside torch, keeps a thread count of its own, which an OpenMP
    # limit of threadpoolctl does not reach: torch.set_num_threads sets both,
    # so it is called even at one thread, and leaves MKL at the calling
    # thread's count when done.
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        if outermost:
            del _ALLOWED_THREADS.count


def for_each_in_threads(function, items, n_threads):
    """Call ``function`` on each item, on up to ``n_threads`` threads.

    The calling thread and up to ``n_threads - 1`` kept workers each run
    torch with one intra-op thread and take the next item when done with
    one, so a thread that the system deschedules, or a worker slow to wake,
    delays only its own item.

    Parameters
    ----------
    function : callable
        Called with one item; its result is discarded. Calls on different
        items must not write to the same memory.
    items : list
        The items.
    n_threads : int
        The most threads: the calling one and workers kept from call to
        call, or the calling thread alone for one (or when it is a worker
        itself).
    """
    n_threads = max(1, min(n_threads, len(items)))
    with single_threaded_torch():
        if n_threads == 1 or getattr(_WORKER, "active", False):
            # One thread, or called from a worker: in the calling thread.
            for item in items:
                function(item)
            return
        lock = threading.Lock()
        taken = [0]
        errors = [None] * len(items)

        def drain():
            while True:
                with lock:
                    index = taken[0]
                    taken[0] += 1
                if index >= len(items):
                    return
                try:
                    function(items[index])
                except BaseException as error:  # raised below, once all are done
                    errors[index] = error

        pool = _worker_pool(n_threads - 1)
        futures = [pool.submit(drain) for _ in range(n_threads - 1)]
        # The calling thread takes items too, as a worker would: a call it
        # makes from one runs in it.
        _WORKER.active = True
        try:
            drain()
        finally:
            _WORKER.active = False
        # Every item finishes before an error is raised: none still writes
        # to the caller's memory after it returns.
        wait(futures)
        for future in futures:
            future.result()
        for error in errors:
            if error is not None:
                raise error


# Worker threads kept from call to call (starting them costs about 0.25 ms
# a call), one pool per number of threads; a forked child starts its own.
_POOLS = {}
_POOLS_LOCK = threading.Lock()
_WORKER = threading.local()


def _worker_pool(n_threads):
    """The kept pool of ``n_threads`` workers, each with one torch thread."""
    with _POOLS_LOCK:
        pool = _POOLS.get(n_threads)
        if pool is None:
            pool = _POOLS[n_threads] = ThreadPoolExecutor(
                n_threads, initializer=_start_worker
            )
        return pool


def _start_worker():
    torch.set_num_threads(1)
    _WORKER.active = True


def _forget_pools():
    """In a forked child: no worker threads exist there, and the lock may
    have been held by a thread of the parent."""
    global _POOLS_LOCK
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def n_compute_threads(device):
    """Threads for the chunk loop: torch's thread count in the calling
    thread (``torch.set_num_threads``, or an OpenMP limit set with
    threadpoolctl) on the CPU, one on an accelerator."""
    if torch.device(device).type != "cpu":
        return 1
    return getattr(_ALLOWED_THREADS, "count", None) or torch.get_num_threads()


def for_each_chunk(
    problem, queries, query_widths, each, blocks_per_row=_BLOCKS_PER_ROW
):
    """Weights of the queries, chunk by chunk, handed to ``each``: the chunk
    loop of prediction, and of the package's other modules (standard errors
    and intervals), which compute more per chunk.

    Parameters
    ----------
    problem : PreparedKeys
        The prepared keys.
    queries : ndarray of shape (n_queries, n_features)
        Points to weigh the keys for.
    query_widths : ndarray of shape (n_queries,) or None
        Their local width factors.
    each : callable
        Called as ``each(batch, weights, log_shift, nearest_sq)`` with a slice of
        the queries and what :meth:`PreparedKeys.weights` returns for them,
        possibly on several threads at once, each chunk once.
        ``problem.named_block`` gives it blocks of its own, reused from chunk
        to chunk.
    blocks_per_row : int, default=_BLOCKS_PER_ROW
        Blocks of (chunk_n_rows, n_keys) alive at once in a thread, those
        of ``each`` included: the chunks are sized so that they fit in
        ``working_memory``.
    """
    n_threads = n_compute_threads(problem.device)
    chunk_n_rows = _chunk_n_rows(
        problem.n_keys, problem.dtype, n_threads, blocks_per_row
    )

    def run(batch):
        chunk = problem.to_tensor(queries[batch])
        widths = (
            None if query_widths is None else problem.to_tensor(query_widths[batch])
        )
        each(batch, *problem.weights(chunk, widths))

    for_each_in_threads(
        run, list(gen_batches(queries.shape[0], chunk_n_rows)), n_threads
    )


class PartialSums(NamedTuple):
    """Nadaraya-Watson sums over some of the keys, to merge with others.

    Attributes
    ----------
    log_shift : ndarray of shape (n_queries,)
        Each row's sums are divided by ``exp(log_shift)`` (its largest
        log-weight, plus the log of the largest sample weight).
    sums : ndarray of shape (n_queries, n_values + 1)
        Sums of weight times value, then the sum of weights.
    nearest_sq : ndarray of shape (n_queries,)
        On rows of zero total weight, the nearest key's squared scaled
        distance; inf on the others.
    nearest_sums : ndarray of shape (n_queries, n_values + 1)
        On those rows, the sums over the nearest keys (ties) with weight 1.
    """

    log_shift: np.ndarray
    sums: np.ndarray
    nearest_sq: np.ndarray
    nearest_sums: np.ndarray


def partial_sums(
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
    """Weighted sums of ``values`` over ``keys``, to merge with other keys'.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, n_features)
        Points to predict at.
    keys : ndarray of shape (n_keys, n_features)
        Training inputs.
    values : ndarray of shape (n_keys, n_values)
        Training targets (one column per output or per class).
    bandwidth : float or ndarray of shape (n_features,)
        Width, isotropic or per feature.
    kernel : str or callable
        A name from ``KERNELS`` or a function of u on NumPy arrays.
    sample_weight : ndarray of shape (n_keys,), default=None
        Non-negative multipliers of each key's kernel weight.
    key_widths : ndarray of shape (n_keys,), default=None
        Positive local factors: key j's width is ``bandwidth * key_widths[j]``.
    query_widths : ndarray of shape (n_queries,), default=None
        Positive local factors: query i sees the width
        ``bandwidth * query_widths[i]``.
    device : str, default="cpu"
        Torch device; an absent one falls back to the CPU with a warning.

    Returns
    -------
    partial : PartialSums
        Float64 arrays; :func:`merge_partial_sums` turns one or more, over
        disjoint sets of keys, into the predictions over their union.
    """
    dtype = compute_dtype(queries, keys)
    partial = start_partial_sums(queries.shape[0], values.shape[1])
    active = ActiveKeys.select(keys, values, sample_weight, key_widths, dtype)
    if active.is_empty:
        return active.undo_weight_scale(partial)
    fixed_widths = key_widths is None and query_widths is None
    fused = fixed_widths and _fused_route(
        queries, active.keys, bandwidth, kernel, device, dtype
    )
    if fused:
        _fused_partial_sums(queries, active, bandwidth, kernel, device, partial)
        return active.undo_weight_scale(partial)
    problem = prepare_keys(active, bandwidth, kernel, dtype, device)
    # One product gives the weighted sums and the totals together;
    # (n_values + 1, n_keys) @ (n_keys, n_rows) is several times faster than
    # the other orientation for so few columns.
    weighted_values_t = problem.to_tensor(active.weighted_values().T)

    def chunk_sums(batch, weights, log_shift, nearest_sq):
        sums = (weighted_values_t @ weights.T).T.cpu().numpy().astype(np.float64)
        empty = np.isfinite(nearest_sq)
        partial.nearest_sums[batch][empty] = sums[empty]
        sums[empty] = 0.0
        partial.sums[batch] = sums
        partial.log_shift[batch] = log_shift
        partial.nearest_sq[batch] = nearest_sq

    for_each_chunk(problem, queries, query_widths, chunk_sums)
    return active.undo_weight_scale(partial)


def _fused_route(queries, keys, bandwidth, kernel, device, dtype):
    """Whether the fused Triton kernel computes these sums (of fixed widths).

    It does for float32 where :func:`sknw._triton.use_fused` says so (a
    named kernel on CUDA when Triton runs there), and the coordinates
    divided by the bandwidth stay far from float32's range.
    """
    from sknw import _triton

    if dtype != torch.float32 or not _triton.use_fused(
        torch.device(device),
        kernel,
        "Predictions are computed chunk by chunk with torch instead.",
    ):
        return False
    largest = max(np.abs(queries).max(initial=0), np.abs(keys).max(initial=0))
    return largest / np.min(bandwidth) < _FUSED_LARGEST_COORDINATE


def _fused_partial_sums(queries, active, bandwidth, kernel, device, partial):
    """:func:`partial_sums` by the fused Triton kernel, in float32, into
    ``partial`` (the weight scale left for the caller to undo)."""
    from sknw import _triton

    device = resolve_device(device, fall_back=True)
    inverse = 1.0 / bandwidth_per_feature(bandwidth, queries.shape[1])
    weighted = active.weighted_values()

    def tensor(array):
        return as_tensor(array, torch.float32, device)

    row_max, sums, min_sq = _triton.fused_partial_sums(
        tensor(queries * inverse),
        tensor(active.keys * inverse),
        tensor(weighted),
        kernel,
    )
    sums = sums.cpu().numpy().astype(np.float64)
    partial.log_shift[:] = row_max.cpu().numpy()
    empty = ~(sums[:, -1] > 0)
    if np.any(empty):
        problem = prepare_keys(active, bandwidth, kernel, torch.float32, device)
        indicator, distance = problem.nearest_keys(problem.to_tensor(queries[empty]))
        nearest_sums = indicator.to(torch.float32) @ tensor(weighted)
        partial.nearest_sums[empty] = nearest_sums.cpu().numpy()
        partial.nearest_sq[empty] = distance.cpu().numpy()
        sums[empty] = 0.0
        partial.log_shift[empty] = 0.0
    partial.sums[:] = sums


def combine_partial_sums(partials):
    """The partial sums over the union of disjoint sets of keys.

    Each row's sums are brought to the largest of its shifts (a running
    log-sum-exp) and added; the nearest-key sums of the sets at the smallest
    nearest distance, ties included, are added likewise.

    Parameters
    ----------
    partials : sequence of PartialSums
        Over the same queries.

    Returns
    -------
    combined : PartialSums
    """
    log_shift = np.stack([partial.log_shift for partial in partials])
    top = log_shift.max(axis=0)
    with np.errstate(invalid="ignore"):
        relative = log_shift - top
    # A row whose shifts are all -inf (sets of zero weight, or a width so
    # small that float64 cannot hold the log-weights) is added unscaled.
    relative[np.isnan(relative)] = 0.0
    scales = np.exp(relative)
    nearest_sq = np.stack([partial.nearest_sq for partial in partials])
    closest = nearest_sq.min(axis=0)
    return PartialSums(
        log_shift=top,
        sums=sum(scale[:, None] * p.sums for scale, p in zip(scales, partials)),
        nearest_sq=closest,
        nearest_sums=sum(
            tied[:, None] * p.nearest_sums
            for tied, p in zip(nearest_sq == closest, partials)
        ),
    )


def start_partial_sums(n_queries, n_values):
    """Zeroed partial sums of ``n_queries`` queries over ``n_values`` values.

    Returns
    -------
    partial : PartialSums
    """
    return PartialSums(
        log_shift=np.zeros(n_queries),
        sums=np.zeros((n_queries, n_values + 1)),
        nearest_sq=np.full(n_queries, np.inf),
        nearest_sums=np.zeros((n_queries, n_values + 1)),
    )


def weighted_values(values, sample_weight):
    """The values with a column of ones, times the sample weights.

    Their weighted sums are the numerators, and the last one the
    denominator, of the Nadaraya-Watson averages.

    Parameters
    ----------
    values : ndarray of shape (n_keys, n_values)
    sample_weight : ndarray of shape (n_keys,) or None

    Returns
    -------
    weighted : ndarray of shape (n_keys, n_values + 1)
    """
    weighted = np.hstack([values, np.ones((values.shape[0], 1))])
    if sample_weight is not None:
        weighted *= np.asarray(sample_weight, dtype=np.float64)[:, None]
    return weighted


def merge_partial_sums(partials):
    """Predictions from the partial sums over disjoint sets of keys.

    A row of zero total weight takes the average over the nearest keys of
    all the sets, ties included.

    Parameters
    ----------
    partials : sequence of PartialSums
        Over the same queries.

    Returns
    -------
    predictions : ndarray of shape (n_queries, n_values)
        Float64.
    """
    combined = combine_partial_sums(partials)
    sums = combined.sums.copy()
    empty = ~(sums[:, -1] > 0)
    sums[empty] = combined.nearest_sums[empty]
    return sums[:, :-1] / sums[:, -1:]


def nadaraya_watson(queries, keys, values, **settings):
    """Weighted averages of ``values`` with attention over ``keys``.

    Parameters
    ----------
    queries, keys, values
        As in :func:`partial_sums`.
    **settings
        The other arguments of :func:`partial_sums`.

    Returns
    -------
    predictions : ndarray of shape (n_queries, n_values)
        Float32 when ``queries`` and ``keys`` are float32, float64 otherwise.
    """
    dtype = compute_dtype(queries, keys)
    predictions = merge_partial_sums([partial_sums(queries, keys, values, **settings)])
    return predictions.astype(_numpy_dtype(dtype), copy=False)


def attention(
    queries,
    keys,
    *,
    bandwidth,
    kernel,
    sample_weight=None,
    key_widths=None,
    query_widths=None,
    device="cpu",
):
    """Normalised attention weights of each query over the keys.

    Parameters
    ----------
    queries, keys, bandwidth, kernel, sample_weight, key_widths, query_widths, \
device
        As in :func:`nadaraya_watson`.

    Returns
    -------
    attention : ndarray of shape (n_queries, n_keys)
        Rows are >= 0 and sum to 1.
    """
    dtype = compute_dtype(queries, keys)
    result = np.zeros((queries.shape[0], keys.shape[0]), dtype=_numpy_dtype(dtype))
    active = ActiveKeys.select(keys, None, sample_weight, key_widths, dtype)
    problem = prepare_keys(active, bandwidth, kernel, dtype, device)

    def normalise(batch, weights, log_shift, nearest_sq):
        weights.mul_(problem.sample_weight)
        weights.div_(weights.sum(dim=1, keepdim=True))
        if active.kept is None:
            result[batch] = weights.cpu().numpy()
        else:
            result[batch, active.kept] = weights.cpu().numpy()

    for_each_chunk(problem, queries, query_widths, normalise)
    return result


class ActiveKeys(NamedTuple):
    """The keys that take part in the sums, and what goes with them.

    Sample weights are divided by their largest, ``weight_scale``: that
    changes no average, and keeps a float32 sum of weighted values from
    overflowing; :meth:`undo_weight_scale` multiplies it back into the
    partial sums, the one place where it is undone. A key whose scaled
    weight is below ``_SAMPLE_WEIGHT_FLOOR`` (1e-30 in float32, 1e-290 in
    float64), or below n_keys times e^-87 (e^-708) over the dtype's
    precision, takes no part, not even as the nearest: the kernel weights
    stop at e^-87 (e^-708) of a row's largest, and n far keys at that floor
    must not outweigh it.

    Attributes
    ----------
    keys : ndarray of shape (n_active, n_features)
    values : ndarray of shape (n_active, n_values) or None
    sample_weight : ndarray of shape (n_active,) or None
        Divided by ``weight_scale``; None without sample weights.
    key_widths : ndarray of shape (n_active,) or None
        Local width factors.
    weight_scale : float
        The largest sample weight (0 when none is positive); 1 without
        sample weights.
    kept : ndarray of int or None
        Indices of the active keys among those given; None when all are.
    """

    keys: np.ndarray
    values: np.ndarray
    sample_weight: np.ndarray
    key_widths: np.ndarray
    weight_scale: float
    kept: np.ndarray

    @classmethod
    def select(cls, keys, values, sample_weight, key_widths, dtype):
        """The keys of ``keys`` that take part, for sums in ``dtype``.

        Parameters
        ----------
        keys : ndarray of shape (n_keys, n_features)
        values : ndarray of shape (n_keys, n_values) or None
        sample_weight : ndarray of shape (n_keys,) or None
        key_widths : ndarray of shape (n_keys,) or None
        dtype : torch.dtype
            Compute dtype.

        Returns
        -------
        active : ActiveKeys
        """
        if sample_weight is None:
            return cls(keys, values, None, key_widths, 1.0, None)
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        weight_scale = float(np.max(sample_weight, initial=0))
        if not weight_scale > 0:
            kept = np.zeros(0, dtype=np.intp)
            values = None if values is None else values[kept]
            return cls(keys[kept], values, sample_weight[kept], None, 0.0, kept)
        sample_weight = sample_weight / weight_scale
        # Each far key's weight is floored at e^-87 (e^-708): n of them
        # together must stay below the precision of the lightest key that
        # takes part.
        n_floor = (
            keys.shape[0] * math.exp(_LOG_WEIGHT_FLOOR[dtype]) / torch.finfo(dtype).eps
        )
        floor = max(_SAMPLE_WEIGHT_FLOOR[dtype], n_floor)
        if np.all(sample_weight > floor):
            return cls(keys, values, sample_weight, key_widths, weight_scale, None)
        kept = np.flatnonzero(sample_weight > floor)
        return cls(
            keys[kept],
            None if values is None else values[kept],
            sample_weight[kept],
            None if key_widths is None else key_widths[kept],
            weight_scale,
            kept,
        )

    @property
    def is_empty(self):
        """Whether no key takes part (no keys, or all their weights 0)."""
        return self.keys.shape[0] == 0

    def weighted_values(self):
        """The values with a column of ones, times the sample weights (see
        :func:`weighted_values`)."""
        return weighted_values(self.values, self.sample_weight)

    def undo_weight_scale(self, partial):
        """``partial``, sums over these keys, brought back to the sample
        weights as given: shifts by log(weight_scale), nearest sums times it
        (a shift of -inf on every row when no key takes part).

        Returns
        -------
        partial : PartialSums
            The same arrays, updated in place.
        """
        if self.is_empty:
            partial.log_shift[:] = -np.inf
            return partial
        partial.log_shift[:] += np.log(self.weight_scale)
        partial.nearest_sums[:] *= self.weight_scale
        return partial


def make_settings(
    bandwidth,
    kernel,
    sample_weight=None,
    key_widths=None,
    query_widths=None,
    device="cpu",
):
    """The engine's arguments besides the arrays, as one dictionary."""
    return dict(
        bandwidth=bandwidth,
        kernel=kernel,
        sample_weight=sample_weight,
        key_widths=key_widths,
        query_widths=query_widths,
        device=device,
    )


def positive_weight_keys(keys, values, settings, dtype):
    """:meth:`ActiveKeys.select` for the engine's other arguments as one
    dictionary (see :func:`make_settings`).

    Returns
    -------
    keys, values, settings
        The same, for the keys that take part, with scaled sample weights.
    kept : ndarray of int or None
        Indices of those keys; None when all are kept.
    """
    if settings["sample_weight"] is None:
        return keys, values, settings, None
    active = ActiveKeys.select(
        keys, values, settings["sample_weight"], settings["key_widths"], dtype
    )
    settings = dict(
        settings, sample_weight=active.sample_weight, key_widths=active.key_widths
    )
    return active.keys, active.values, settings, active.kept


def numpy_dtype(*arrays):
    """The NumPy dtype of the results for these inputs (see compute_dtype)."""
    return _numpy_dtype(compute_dtype(*arrays))


def _numpy_dtype(dtype):
    return np.float32 if dtype == torch.float32 else np.float64


def make_problem(keys, settings, dtype):
    """The keys laid out for :func:`for_each_chunk`, on the device of
    ``settings`` (an absent one falls back to the CPU with a warning)."""
    return PreparedKeys(
        keys,
        settings["bandwidth"],
        settings["kernel"],
        settings["sample_weight"],
        dtype,
        resolve_device(settings["device"], fall_back=True),
        key_widths=settings["key_widths"],
    )


def times(block, columns):
    """``block @ columns`` for a wide block and a few columns, as
    (columns.T @ block.T).T: several times faster in this orientation, and
    faster again with ``columns`` stored column by column (see
    :func:`column_major`)."""
    return (columns.T @ block.T).T


def column_major(columns):
    """``columns`` with each column contiguous, the layout in which
    :func:`times` multiplies fastest (2-3 times, measured at 1,000 rows)."""
    return columns.T.contiguous().T


def log_weight_floor(dtype):
    """The log-weight, relative to a row's largest, at which the kernel
    weights of ``dtype`` are clamped."""
    return _LOG_WEIGHT_FLOOR[dtype]


def log2_weight_floor(dtype):
    """:func:`log_weight_floor` in base 2, for log-weights times ``LOG2_E``."""
    return _LOG_WEIGHT_FLOOR[dtype] * LOG2_E

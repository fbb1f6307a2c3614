"""The leave-one-out loss of the bandwidth and its derivatives, in closed form."""

# Authors: the sknw developers
# License: BSD 3 clause

import copy as _copy
import math
import queue
import threading
from typing import NamedTuple

import numpy as np
import torch
from sklearn import get_config
from sklearn.utils import gen_batches

from sknw import _triton
from sknw._engine import (
    LOG2_E,
    PreparedKeys,
    column_major,
    for_each_in_threads,
    log2_weight_floor,
    log_weight_floor,
    n_compute_threads,
    named_block,
    times,
    weighted_values,
)
from sknw._kernels import KERNELS
from sknw._loo_band import LineBand

# Blocks of (chunk_n_rows, n_samples) alive at once: squared distances and
# their spare, the kernel weights, their derivative, one product of the
# derivative with the distances (for the Gaussian's one width, the squared
# distances less each row's shift instead of these two), and the squared
# distances kept from one width to the next when the whole problem fits in
# one chunk.
_BLOCKS_PER_ROW = 6

# A problem that fits one chunk is still cut into one chunk per thread from
# this many (row, sample) pairs, counted once for each of up to
# _THREADED_WIDTHS widths of a scan. Below, the threads' duplicated per-step
# costs outweigh their share of the work (on 2 cores: an evaluation on 700
# rows, and a scan on 350, took as long on one thread as on two; on 200
# rows both took about half as long on one).
_THREADED_PAIRS = 2**19
_THREADED_WIDTHS = 4

# Each block of a chunk at most this large: a few cache-sized passes per
# block, with few enough chunks that their fixed cost stays small at large n.
_LOO_BLOCK_BYTES = 16 * 2**20

# How many of its last evaluations on every row an objective remembers.
_N_RECENT = 4

# The per-feature Hessian from the kept distances takes the rows a block at
# a time, each of its (n_features, rows, n_samples) temporaries at most this
# many elements (1 MiB in float64): cache-sized passes, 2.6 times as fast as
# whole-problem ones at 500 rows, d = 4.
_HESSIAN_BLOCK_ELEMENTS = 2**17

# Below this a probability counts as this: the log-loss of a sample that no
# other sample of its class reaches stays finite (its gradient is then 0).
PROBABILITY_FLOOR = np.finfo(np.float64).eps


def _kernel_terms(name, sq, sq_min, order, per_feature, block, scale=1.0):
    """Kernel weights and their derivatives in t = log h, from u^2.

    Parameters
    ----------
    name : str
        Canonical kernel name.
    sq : tensor of shape (n_rows, n_samples)
        u^2 of every pair, +inf on the pairs that take no part.
    sq_min : tensor of shape (n_rows, 1), or None
        Each row's smallest u^2 among the pairs that take part, or 0: the
        log-domain kernels are divided by the weight there (a softmax shift),
        which changes no ratio. None for the Gaussian where ``sq`` is already
        shifted (u^2 less the row's shift).
    order : {0, 1, 2}
        How many derivatives.
    per_feature : bool
        Whether the first derivative is wanted per feature, as
        G = -K'(u) / u (so that dK/ds_k = G (x_ik - x_jk)^2 / h_k^2), rather
        than as dK/dt = G u^2 for one shared width.
    block : callable
        ``block(name)`` gives a reused block of the shape of ``sq``.
    scale : float, default=1.0
        For the Gaussian at ``order=0``: u^2 is ``sq`` times ``scale``, and
        ``sq_min`` is in the units of ``sq``.

    Returns
    -------
    weights : tensor
        K, shifted for the log-domain kernels.
    first : tensor or None
        G (per feature) or dK/dt.
    second : tensor or None
        d^2K/dt^2 for one width at ``order=2``.
    """
    # Log-weights in base 2 (see LOG2_E).
    floor = log2_weight_floor(sq.dtype)
    first = second = None
    if name == "gaussian":
        # The shift is subtracted first, exactly between close values: the
        # log-weights round by the precision times themselves, not times the
        # shift (an isolated row's, far larger than 1 at narrow widths).
        weights = block("weights")
        if sq_min is None:
            torch.mul(sq, -0.5 * LOG2_E * scale, out=weights)
        else:
            torch.sub(sq, sq_min, out=weights).mul_(-0.5 * LOG2_E * scale)
        weights.clamp_(min=floor).exp2_()
        if order >= 1:
            first = weights if per_feature else torch.mul(weights, sq, out=block("1"))
        if order >= 2:
            # K (a^2 - 2a) = (K a) a - 2 K a.
            second = torch.mul(first, sq, out=block("2")).add_(first, alpha=-2)
        return weights, first, second
    if name == "exponential":
        u = torch.sqrt(sq, out=block("u"))
        weights = torch.add(
            sq_min.sqrt() * LOG2_E, u, alpha=-LOG2_E, out=block("weights")
        )
        weights.clamp_(min=floor).exp2_()
        if order >= 1:
            if per_feature:
                # u = 0 only between duplicates, whose difference is 0.
                first = torch.div(weights, u, out=block("1"))
                first.nan_to_num_(nan=0.0, posinf=0.0)
            else:
                first = torch.mul(weights, u, out=block("1"))
        if order >= 2:
            second = torch.mul(first, u, out=block("2")).sub_(first)
        return weights, first, second
    inside_mask = sq < 1
    inside = inside_mask.to(sq.dtype)
    if name in ("epanechnikov", "biweight", "triweight"):
        rest = (1 - sq).clamp_(min=0)
        power = {"epanechnikov": 1, "biweight": 2, "triweight": 3}[name]
        weights = rest**power
        if order >= 1:
            # G = 2 p (1 - a)^(p - 1) inside.
            slope = 2 * power * (rest ** (power - 1) if power > 1 else inside)
            first = slope if per_feature else slope * sq
        if order >= 2:
            # d/dt of 2p a (1-a)^(p-1) is -2a (2p (1-a)^(p-1) - 2p(p-1) a (1-a)^(p-2)).
            if power == 1:
                second = -4 * sq * inside
            elif power == 2:
                second = 8 * sq * (2 * sq - 1) * inside
            else:
                second = -12 * sq * rest * (1 - 3 * sq)
        return weights, first, second
    u = torch.where(inside_mask, sq, 0.0).sqrt_()
    if name == "linear":
        weights = (1 - u) * inside
        if order >= 1:
            if per_feature:
                first = torch.where(u > 0, 1 / u, 0.0) * inside
            else:
                first = u
        if order >= 2:
            second = -u
        return weights, first, second
    if name == "tricube":
        cube = u**3
        rest = 1 - cube
        weights = rest**3 * inside
        if order >= 1:
            first = 9 * u * rest**2
            first = first if per_feature else first * sq
        if order >= 2:
            second = -27 * cube * rest * (1 - 3 * cube)
        return weights, first, second
    if name == "cosine":
        angle = 0.5 * math.pi * u
        sine = torch.sin(angle)
        weights = torch.cos(angle) * inside
        if order >= 1:
            if per_feature:
                first = torch.where(u > 0, 0.5 * math.pi * sine / u, 0.0) * inside
            else:
                first = 0.5 * math.pi * u * sine
        if order >= 2:
            second = -0.5 * math.pi * u * (sine + angle * torch.cos(angle))
        return weights, first, second
    raise ValueError(f"kernel={name!r} has no leave-one-out derivatives.")


class PairwiseObjective:
    """What the leave-one-out objectives share: the rows and their frequency
    weights, the loop over chunks of rows on threads, the blocks reused from
    chunk to chunk, the squared distances kept at width 1 when they fit, and
    the last few answers.

    A subclass computes what it needs once in ``_prepare`` and a chunk's
    terms in ``_evaluate``; it may set ``blocks_per_row`` and
    ``blocks_per_feature`` (the blocks of (chunk_n_rows, n_samples) alive at
    once, in all and for each feature) and ``largest_block`` (the most bytes
    of one block). Its parameters are those of :class:`LeaveOneOutObjective`.
    """

    blocks_per_row = _BLOCKS_PER_ROW
    blocks_per_feature = 0
    largest_block = _LOO_BLOCK_BYTES
    # Whether order=2 gives the Hessian of per-feature widths.
    feature_hessian = False
    # Whether more widths in one call of losses_at cost little more (the
    # Gaussian's: one exponential pass over all of them, or squarings of the
    # weights at wider ones), so that a scan may take a finer grid. A compact
    # kernel's groups of widths share each operation's pass, but each width
    # still costs a pass of its own.
    widths_in_one_pass = False
    # Whether the loss and gradient come from the fused float32 kernels.
    fused = False
    # Whether per-feature widths on every row may take the whole-problem
    # operations of LeaveOneOutObjective._dense_feature_terms where they
    # apply (the chunked path otherwise).
    dense_features = True
    # The kept distances' entry on each row's own pair, which takes part
    # only through the weight the row keeps.
    own_pair = math.inf

    def __init__(
        self,
        X,
        values,
        *,
        kernel,
        loss,
        sample_weight,
        device,
        key_widths=None,
        query_widths=None,
    ):
        self.loss = loss
        self.values_numpy = np.asarray(values, dtype=np.float64)
        self.dtype = torch.float64
        self.device = device
        self.kernel_name = kernel
        self.kernel = KERNELS[kernel]
        self.name = self.kernel.function.__name__
        self.n_samples, self.n_features = X.shape
        lowest, highest = np.min(X, axis=0), np.max(X, axis=0)
        # Centred on the middle of the range: squared distances by the
        # product expansion and the gradient's moments stay accurate there.
        self.X_numpy = X - (lowest / 2 + highest / 2)
        self.X = self._tensor(self.X_numpy)
        if sample_weight is None:
            sample_weight = np.ones(self.n_samples)
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        self.sample_weight_numpy = sample_weight
        self.sample_weight = self._tensor(sample_weight)
        # The weight each row keeps for its own prediction.
        self.kept_weight_numpy = sample_weight - np.minimum(sample_weight, 1)
        self.kept_weight = self._tensor(self.kept_weight_numpy)
        self.keeps_weight = bool(np.any(sample_weight > 1))
        self.key_widths = key_widths
        self.query_widths = query_widths
        self.row_factor = None
        if query_widths is not None:
            self.row_factor = self._tensor(1.0 / np.asarray(query_widths) ** 2)
        self.values = self._tensor(self.values_numpy)
        budget = get_config()["working_memory"] * 2**20
        budget /= self.blocks_per_row + self.blocks_per_feature * self.n_features
        self.block_bytes = min(budget, self.largest_block)
        self.chunk_n_rows = max(1, int(self.block_bytes // (8 * self.n_samples)))
        self._forget_reused()
        self._prepare()

    def _prepare(self):
        """What a subclass computes once from the rows, after them."""

    def _tensor(self, array):
        array = np.ascontiguousarray(array, dtype=np.float64)
        if not array.flags.writeable:
            # Read-only memory (a user's sample weights, say): torch would
            # warn about sharing it.
            array = array.copy()
        return torch.as_tensor(array, device=self.device)

    def __call__(self, log_bandwidth, rows=None):
        """Loss and gradient at ``log_bandwidth``.

        Parameters
        ----------
        log_bandwidth : ndarray of shape (1,) or (n_features,)
            Logarithm of the isotropic or per-feature width.
        rows : ndarray of int, default=None
            Rows to leave out and predict (all when None).

        Returns
        -------
        loss : float
            Sample-weighted mean leave-one-out loss over ``rows``.
        gradient : ndarray of the shape of ``log_bandwidth``
            Its gradient.
        """
        loss, gradient, _ = self.evaluate(log_bandwidth, rows, order=1)
        return loss, gradient

    def evaluate(self, log_bandwidth, rows=None, order=1):
        """Loss and, as asked, its gradient and second derivative.

        Parameters
        ----------
        log_bandwidth : ndarray of shape (1,) or (n_features,)
            Logarithm of the isotropic or per-feature width.
        rows : ndarray of int, default=None
            Rows to leave out and predict (all when None).
        order : {0, 1, 2}, default=1
            0: the loss; 1: and its gradient; 2: and its second derivative
            (per feature, the Hessian, where :attr:`feature_hessian`).

        Returns
        -------
        loss : float
        gradient : ndarray of the shape of ``log_bandwidth``, or None
        second : float, ndarray of shape (n_features, n_features), or None
        """
        log_bandwidth = np.asarray(log_bandwidth, dtype=np.float64).ravel()
        per_feature = log_bandwidth.size > 1
        if order == 2 and per_feature and not self.feature_hessian:
            raise ValueError(
                "The second derivative per feature is for the Gaussian kernel "
                "of Nadaraya-Watson."
            )
        # A search often asks again for a point it has just evaluated (the
        # end of one run is the start of the next): the last few answers on
        # every row are kept.
        key = log_bandwidth.tobytes() if rows is None and _N_RECENT else None
        for known, known_order, result in self._recent:
            if known == key and known_order >= order:
                return tuple(
                    part if k <= order else None for k, part in enumerate(result)
                )
        result = self._evaluate(log_bandwidth, rows, order)
        # The fused kernels' float32 answers are not kept: a loss asked for
        # alone is float64.
        if key is not None and not (self.fused and order == 1):
            self._recent = [*self._recent[1 - _N_RECENT :], (key, order, result)]
        return result

    def _forget_reused(self):
        """No reused blocks, no kept distances: what a new objective, a
        released one and the float32 copy start from."""
        self._local = threading.local()
        self._line = None
        self._recent = []
        self._block_sets = []
        self._cache = {}
        self._cache_lock = threading.Lock()

    def release(self):
        """Free the reused blocks and kept distances (the next evaluation
        makes them again)."""
        self._forget_reused()

    def losses_at_points(self, log_bandwidths, rows=None):
        """The loss at each of several per-feature widths: one evaluation a
        point (a subclass may take them in one pass).

        Parameters
        ----------
        log_bandwidths : ndarray of shape (n_points, n_features)
        rows : ndarray of int, default=None
            Rows to leave out and predict (all when None).

        Returns
        -------
        losses : ndarray of shape (n_points,)
        """
        return np.array(
            [self.evaluate(point, rows, order=0)[0] for point in log_bandwidths]
        )

    def scores_points_in_one_pass(self):
        """Whether :meth:`losses_at_points` scores per-feature widths on
        every row in one pass, rather than one evaluation a point."""
        return False

    def _problem(self, bandwidth):
        """The engine's problem over the samples at ``bandwidth``, for the
        calling thread's blocks: the keys are prepared once for the last
        bandwidth asked, and shared by every chunk and thread."""
        key = tuple(np.ravel(bandwidth).tolist())
        with self._cache_lock:
            kept = self._cache.get("problem")
            if kept is None or kept[0] != key:
                problem = PreparedKeys(
                    self.X_numpy,
                    bandwidth,
                    self.kernel_name,
                    None,
                    self.dtype,
                    self.device,
                    key_widths=self.key_widths,
                )
                kept = self._cache["problem"] = (key, problem)
        return kept[1].with_blocks(self._thread_blocks())

    def _thread_blocks(self):
        """The reused blocks of the calling thread (chunks may be computed
        on several threads at once, see :meth:`_for_each_chunk`)."""
        blocks = getattr(self._local, "blocks", None)
        if blocks is None:
            blocks = self._local.blocks = {}
        return blocks

    def _for_each_chunk(self, rows, function, n_widths=1):
        """``function(batch, chunk)`` on each chunk of ``rows``, its results
        in the order of the chunks.

        A problem that fits one chunk is one chunk (its distances may be
        kept, see :meth:`_pairs`); a larger one is cut into chunks sized for
        the threads of :func:`~sknw._engine.n_compute_threads`, computed on
        that many threads with one torch thread each, the blocks of all of
        them within the budget. So is one chunk whose pairs, at each of
        ``n_widths`` widths (up to _THREADED_WIDTHS), are _THREADED_PAIRS or
        more.
        """
        n_threads = n_compute_threads(self.device)
        chunk_n_rows = self.chunk_n_rows
        work = len(rows) * self.n_samples * min(n_widths, _THREADED_WIDTHS)
        if len(rows) > chunk_n_rows:
            chunk_n_rows = max(1, chunk_n_rows // n_threads)
        elif work >= _THREADED_PAIRS and n_threads > 1 and len(rows) > 1:
            # One chunk's worth, large enough to share among the threads.
            chunk_n_rows = -(-len(rows) // n_threads)
        else:
            n_threads = 1
        batches = [
            slice(start, min(start + chunk_n_rows, len(rows)))
            for start in range(0, len(rows), chunk_n_rows)
        ]
        results = [None] * len(batches)
        # Each running chunk takes one set of blocks and gives it back: the
        # sets outlive the threads, so blocks are not faulted in anew at
        # every evaluation.
        while len(self._block_sets) < n_threads:
            self._block_sets.append({})
        free = queue.SimpleQueue()
        for blocks in self._block_sets[:n_threads]:
            free.put(blocks)

        def run(index):
            batch = batches[index]
            self._local.blocks = free.get()
            try:
                results[index] = function(batch, rows[batch])
            finally:
                free.put(self._local.blocks)

        for_each_in_threads(run, list(range(len(batches))), n_threads)
        return results

    def _block(self, name, n_rows, width=None):
        """The (n_rows, n_samples) view of the reused block called ``name``
        (the blocks the engine's problems over these samples share), or with
        ``width`` an (n_rows, width) view of a band's block of that name."""
        if width is not None:
            name = "band " + name
        return named_block(
            self._thread_blocks(),
            name,
            (n_rows, self.n_samples if width is None else width),
            self.dtype,
            self.device,
        )

    @staticmethod
    def _rows_of(block, chunk, chunk_t, dim=0):
        """The rows ``chunk`` (``chunk_t`` as a tensor) of a block over every
        row, along its dimension ``dim``: a view where they are consecutive,
        one contiguous copy otherwise."""
        first, last = int(chunk[0]), int(chunk[-1])
        if last - first + 1 == len(chunk) and np.all(np.diff(chunk) == 1):
            return block.narrow(dim, first, len(chunk))
        return block.index_select(dim, chunk_t)

    def _distance_cache(self, per_feature):
        """Squared distances at width 1 (per feature for per-feature widths),
        divided by the local widths, as a tensor of shape (n_blocks,
        n_samples, n_samples); or None unless every row fits in one chunk and
        they fit in one block's budget. On each row's own pair: :attr:`own_pair`
        for one shared width, 0 per feature (so that a product with a block
        that is 0 there stays 0; their sum at given widths takes the own pair
        anew)."""
        key = "per_feature" if per_feature else "shared"
        with self._cache_lock:
            if key not in self._cache:
                self._cache[key] = self._kept_distances(per_feature)
            return self._cache[key]

    def _keeps_distances(self, per_feature):
        """Whether the squared distances are kept (see
        :meth:`_distance_cache`): every row fits in one chunk and they fit
        in one block's budget."""
        n_blocks = self.n_features if per_feature else 1
        size = n_blocks * self.n_samples**2 * torch.finfo(self.dtype).bits // 8
        return self.chunk_n_rows >= self.n_samples and size <= self.block_bytes

    def _kept_distances(self, per_feature):
        """What :meth:`_distance_cache` keeps, computed."""
        n_blocks = self.n_features if per_feature else 1
        cache = None
        if self._keeps_distances(per_feature):
            features = range(self.n_features) if per_feature else [None]
            everything = np.arange(self.n_samples)
            # One tensor of n_blocks blocks: per feature, the distances at
            # several widths are then one matrix product (see _pairs).
            cache = torch.empty(
                (n_blocks, self.n_samples, self.n_samples),
                dtype=self.dtype,
                device=self.device,
            )
            for block, feature in zip(cache, features):
                keys = self.X_numpy if feature is None else self.X_numpy[:, [feature]]
                problem = PreparedKeys(
                    keys,
                    1.0,
                    self.kernel_name,
                    None,
                    self.dtype,
                    self.device,
                    key_widths=self.key_widths,
                    # Computed in the kept block itself.
                    blocks={"main": block},
                )
                queries = problem.to_tensor(keys)
                # Differences, not the product expansion: they serve every
                # width down to the lower bound, where the expansion's
                # rounding at width 1 would be magnified by 1 / h^2.
                sq = problem.scaled_squared_distances(queries, differences=True)
                if sq.data_ptr() != block.data_ptr():
                    block.copy_(sq)
                if self.row_factor is not None:
                    block.mul_(self.row_factor[:, None])
                block[everything, everything] = 0.0 if per_feature else self.own_pair
        return cache


class LeaveOneOutObjective(PairwiseObjective):
    """Leave-one-out loss of Nadaraya-Watson as a function of log-bandwidths.

    Leaving out one unit of row i's frequency weight c_i (all of it when
    c_i < 1), with e_i = c_i - min(c_i, 1) the weight it keeps,

        D_i = sum_{j != i} c_j K_ij + e_i,  N_i = sum_{j != i} c_j K_ij y_j + e_i y_i,

    the prediction is N_i / D_i and the loss the c-weighted mean over rows of
    the squared error (mean over outputs) or of the log-loss of the true
    class. The loss, its gradient and its second derivative (for one shared
    width, and for the Gaussian's per-feature widths the Hessian) come from
    closed forms in one pass over the pairs, chunk by chunk; the squared
    distances come from the prediction engine's
    :class:`~sknw._engine.PreparedKeys`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training inputs, every sample weight > 0.
    values : ndarray of shape (n_samples, n_values)
        Targets, or one-hot labels for the log-loss.
    kernel : str
        A kernel name.
    loss : {"squared_error", "log_loss"}
        The loss of each left-out prediction.
    sample_weight : ndarray of shape (n_samples,) or None
        Positive frequency weights.
    device : torch.device
        Where to compute. On CUDA, without local widths or weights above 1,
        the loss and gradient come from fused float32 Triton kernels that
        store no (n_samples, n_samples) block.
    key_widths : ndarray of shape (n_samples,), default=None
        Local factors of each sample's width as a key.
    query_widths : ndarray of shape (n_samples,), default=None
        Local factors of each sample's width as the left-out query.
    """

    def _prepare(self):
        sample_weight = self.sample_weight_numpy
        key_widths, loss = self.key_widths, self.loss
        # d2K / ds_k ds_l = K (a_k a_l - 2 delta_kl a_k) for the Gaussian.
        self.feature_hessian = self.name == "gaussian"
        self.widths_in_one_pass = self.name == "gaussian"
        # c * [values, 1]: one product with the weights gives N and D.
        self.weighted = column_major(
            self._tensor(weighted_values(self.values_numpy, sample_weight))
        )
        self.weighted_gradient = self.weighted
        if key_widths is not None:
            self.weighted_gradient = column_major(
                self.weighted / self._tensor(np.asarray(key_widths)[:, None] ** 2)
            )
        if loss == "log_loss":
            self.labels = self._tensor(np.argmax(self.values_numpy, axis=1)).long()
        self.fused = (
            key_widths is None
            and self.query_widths is None
            and not self.keeps_weight
            and _use_fused(self.device, self.kernel_name)
        )

    def _line_band(self):
        """The samples in sorted order for sums over bands of neighbours
        (see :class:`~sknw._loo_band.LineBand`) where they serve: one
        feature, the Gaussian, the exponential or a compact kernel, no local
        widths, and more samples than the kept distances serve (see
        :meth:`_keeps_distances`: every pair read from memory costs less
        than a band's fewer pairs computed). None otherwise."""
        if not (
            self.n_features == 1
            and not self._keeps_distances(False)
            and (self.kernel.compact or self.name in ("gaussian", "exponential"))
            and self.key_widths is None
            and self.row_factor is None
            and not self.fused
        ):
            return None
        if self._line is None:
            reach = "compact" if self.kernel.compact else self.name
            self._line = LineBand(self.X_numpy[:, 0], self.weighted, reach)
        return self._line

    def _evaluate(self, log_bandwidth, rows, order):
        """:meth:`evaluate`, computed."""
        per_feature = log_bandwidth.size > 1
        every_row = rows is None
        rows = (
            np.arange(self.n_samples) if rows is None else np.asarray(rows, dtype=int)
        )
        row_weight = self.sample_weight_numpy[rows]
        if self.fused and order == 1:
            return self._fused(log_bandwidth, rows, row_weight)
        if per_feature and every_row and self._dense_features():
            return self._dense_feature_terms(log_bandwidth, order)
        bandwidth = np.exp(log_bandwidth)
        line = None if per_feature else self._line_band()
        half_width = None if line is None else line.half_widths(rows, bandwidth)[0]
        scaled = None
        if per_feature and order == 1 and self._distance_cache(True) is not None:
            # The gradient from the kept distances (see _kept_gradient).
            scaled = _Kept(bandwidth)
        elif per_feature and order >= 1:
            scaled = self._moment_columns(bandwidth)
        totals = np.zeros(3)
        gradient = np.zeros(log_bandwidth.size)

        def terms(batch, chunk):
            if half_width is not None:
                # The band of each row's neighbours at width 1, scaled.
                chunk_t = torch.as_tensor(chunk, device=self.device)
                sq, band = line.squared(
                    chunk_t, half_width, self.own_pair, self._thread_blocks()
                )
                # u^2 itself (scale 1): a scale passed on would be squared
                # for the Gaussian's second derivative, beyond float32 at
                # narrow widths.
                sq.mul_(1.0 / float(bandwidth[0]) ** 2)
                sq_min = self._shifts(sq.amin(dim=1, keepdim=True), chunk_t)
                return self._chunk_terms(sq, sq_min, chunk, order, None, band=band)
            sq, sq_min, scale = self._pairs(
                bandwidth, chunk, scaled=self.name == "gaussian" and not per_feature
            )
            return self._chunk_terms(sq, sq_min, chunk, order, scaled, scale=scale)

        second_total = 0.0
        for loss, first, second in self._for_each_chunk(rows, terms):
            totals[0] += loss
            if first is not None:
                gradient += first
            if second is not None:
                second_total = second_total + second
        total_weight = row_weight.sum()
        loss = totals[0] / total_weight
        if order == 0:
            return loss, None, None
        return (
            loss,
            gradient / total_weight,
            second_total / total_weight if order == 2 else None,
        )

    def _dense_features(self):
        """Whether :meth:`_dense_feature_terms` serves per-feature widths
        on every row: the Gaussian's squared error, no local widths, no row
        keeping weight of its own, and each feature's distances kept. Its
        temporaries the size of the kept distances (up to four, for the
        Hessian) fit the budget, which holds _BLOCKS_PER_ROW blocks of their
        size."""
        return (
            self.dense_features
            and self.name == "gaussian"
            and self.loss == "squared_error"
            and self.key_widths is None
            and self.row_factor is None
            and not self.keeps_weight
            and self._distance_cache(True) is not None
        )

    def _dense_feature_terms(self, log_bandwidth, order):
        """The loss and its derivatives in per-feature log-widths on every
        row, from the kept distances in a few whole-problem operations.

        With a_ijk = (x_ik - x_jk)^2 / h_k^2, K_ij = exp(-sum_k a_ijk / 2),
        D_i = sum_j K_ij c_j and p_i the left-out predictions, the derivative
        of K_ij in log h_k is K_ij a_ijk, so that

            dp_i / dlog h_k = sum_j K_ij c_j a_ijk (y_j - p_i) / D_i = q_ik,

        and with g_i = 2 c_i r_i / n_values (r the residuals) the gradient of
        the summed loss is sum_ij H_ij a_ijk, H_ij = K_ij c_j sum_v g_iv
        (y_jv - p_iv) / D_i: one product of H with the kept distances. With
        b_ijk = a_ijk - A_ik, each row's distances centred on their weighted
        mean A_ik = sum_j K_ij c_j a_ijk / D_i (which changes neither q nor
        the sums below, since sum_j H_ij = 0), the Hessian is

            sum_i 2 c_i q_ik q_il / n_values + sum_ij H_ij b_ijk b_ijl
            - 2 delta_kl (gradient)_k,

        the second sum one product of the centred distances with themselves
        times H. Exact differences throughout (see
        :meth:`_kept_distances`).
        """
        cache = self._distance_cache(True)
        n_features, n_samples = len(cache), self.n_samples
        flat = cache.view(n_features, -1)
        inverse = np.exp(-2 * log_bandwidth)
        factors = torch.as_tensor(
            -0.5 * LOG2_E * inverse, dtype=self.dtype, device=self.device
        )
        # Log-weights in base 2, shifted by each row's largest (its nearest
        # sample's, 1 after the shift): the own pair takes no part.
        weights = torch.mm(factors[None], flat).view(n_samples, n_samples)
        weights.diagonal().fill_(-math.inf)
        weights.sub_(weights.amax(dim=1, keepdim=True))
        weights.clamp_(min=log2_weight_floor(self.dtype)).exp2_()
        weights.diagonal().zero_()
        sums = times(weights, self.weighted)
        totals = sums[:, -1:]
        predictions = sums[:, :-1] / totals
        residuals = predictions - self.values
        n_values = residuals.shape[1]
        total_weight = float(self.sample_weight_numpy.sum())
        loss = float(residuals.square().sum(dim=1) @ self.sample_weight)
        loss /= n_values * total_weight
        if order == 0:
            return loss, None, None
        slopes = residuals * (self.sample_weight[:, None] * (2.0 / n_values))
        if order == 1:
            # sum_v g_iv c_j (y_jv - p_iv) / D_i as [g, -sum_v g p] / D
            # against the columns c [y, 1] (as _kept_gradient does for a
            # chunk, here without its gathers and conversions).
            row_factors = torch.cat(
                [slopes, -(slopes * predictions).sum(dim=1, keepdim=True)], dim=1
            ).div_(totals)
            pairs = torch.mm(row_factors, self.weighted.T).mul_(weights)
            gradient = (flat @ pairs.view(-1)).cpu().numpy() * inverse
            return loss, gradient / total_weight, None
        inverse_t = torch.as_tensor(inverse, dtype=self.dtype, device=self.device)
        # The Hessian from each feature's a_ijk centred on the row's weighted
        # mean A_ik = sum_j K_ij c_j a_ijk / D_i, with exact differences
        # y_j - p_i: its terms do not change with a row's centre (as
        # sum_j K_ij c_j (y_j - p_i) = 0), and centred they stay small where
        # all of a row's a_ijk are large (widths far below its nearest
        # distance), where sums of the raw ones cancel to rounding. Every
        # term is a sum over rows: a block of rows at a time.
        normalized = weights.mul_(self.sample_weight / totals)
        derivative = torch.empty(
            (n_features, n_samples, n_values), dtype=self.dtype, device=self.device
        )
        hessian = torch.zeros(
            (n_features, n_features), dtype=self.dtype, device=self.device
        )
        block_rows = max(1, _HESSIAN_BLOCK_ELEMENTS // (n_features * n_samples))
        for start in range(0, n_samples, block_rows):
            rows = slice(start, min(start + block_rows, n_samples))
            row_weights = normalized[rows]
            centred = cache[:, rows] * inverse_t[:, None, None]
            weighted = centred * row_weights
            centred -= weighted.sum(dim=2, keepdim=True)
            torch.mul(centred, row_weights, out=weighted)
            # y_jv - p_iv, and sum_v g_iv (y_jv - p_iv).
            if n_values == 1:
                differences = self.values[:, 0] - predictions[rows, 0, None]
                derivative[:, rows, 0] = (weighted * differences).sum(dim=2)
                slope_sums = differences.mul_(slopes[rows, 0, None])
            else:
                differences = self.values.T[:, None, :] - predictions[rows].T[..., None]
                derivative[:, rows] = torch.einsum(
                    "kij,vij->kiv", weighted, differences
                )
                slope_sums = torch.einsum("iv,vij->ij", slopes[rows], differences)
            # H_ij b_ijk against b_ijl.
            weighted.mul_(slope_sums)
            hessian += torch.mm(
                weighted.reshape(n_features, -1), centred.reshape(n_features, -1).T
            )
        hessian += torch.einsum(
            "kiv,liv,i->kl",
            derivative,
            derivative,
            self.sample_weight * (2.0 / n_values),
        )
        gradient = torch.einsum("kiv,iv->k", derivative, slopes)
        hessian -= torch.diag(2 * gradient)
        return (
            loss,
            gradient.cpu().numpy() / total_weight,
            hessian.cpu().numpy() / total_weight,
        )

    def in_float32(self):
        """The same objective computing in float32, for a scan that only
        ranks widths (see :meth:`losses_at`)."""
        if getattr(self, "_float32", None) is None:
            copy = _copy.copy(self)
            copy.dtype = torch.float32
            copy._forget_reused()
            copy.fused = False
            for name in (
                "X",
                "values",
                "sample_weight",
                "kept_weight",
                "row_factor",
                "weighted",
                "weighted_gradient",
            ):
                tensor = getattr(self, name)
                if tensor is not None:
                    tensor = tensor.to(torch.float32)
                    if tensor.dim() == 2:
                        tensor = column_major(tensor)
                    setattr(copy, name, tensor)
            # Kept distances are rounded to float32 rather than computed anew.
            with self._cache_lock:
                copy._cache = {
                    key: None if cache is None else cache.to(torch.float32)
                    for key, cache in self._cache.items()
                    if key not in ("minima", "problem")
                }
            copy._float32 = copy
            self._float32 = copy
        return self._float32

    def losses_at(self, log_bandwidths, rows=None, log_relative=None, per_row=False):
        """The loss at each of several widths along one ray, in one pass.

        The squared distances of a chunk are computed once and serve every
        width.

        Parameters
        ----------
        log_bandwidths : ndarray of shape (n_widths,)
            Shared log-widths, or with ``log_relative`` the offsets t of the
            per-feature log-widths ``t + log_relative``.
        rows : ndarray of int, default=None
            Rows to leave out and predict (all when None).
        log_relative : ndarray of shape (n_features,), default=None
            Per-feature log-widths relative to one another.
        per_row : bool, default=False
            Also return each row's share of each loss.

        Returns
        -------
        losses : ndarray of shape (n_widths,)
        row_losses : ndarray of shape (n_rows, n_widths)
            With ``per_row``: row i's c_i-weighted loss over the rows' total
            weight, which sum over rows to ``losses``.
        """
        log_relative = np.zeros(1) if log_relative is None else log_relative
        # Widest first: the Gaussian's weights at each narrower width come
        # from those at a wider one by squaring (see _gaussian_losses),
        # across groups of widths too.
        order = np.argsort(-np.ravel(log_bandwidths), kind="stable")
        log_bandwidths = np.ravel(log_bandwidths)[order]
        rows = np.arange(self.n_samples) if rows is None else np.asarray(rows)
        total_weight = self.sample_weight_numpy[rows].sum()
        row_losses = None
        if per_row:
            row_losses = torch.zeros(
                (len(rows), len(log_bandwidths)), dtype=self.dtype, device=self.device
            )
        # Distances in units of the smallest width, so that the product
        # expansion is taken only where it is accurate at every width.
        smallest = float(np.min(log_bandwidths))

        # Each thread's group of width blocks takes its share of the budget
        # (counted here: a worker thread runs torch with one thread).
        share = self.block_bytes / n_compute_threads(self.device)

        gaussian = self.name == "gaussian"
        line = self._line_band() if gaussian or self.kernel.compact else None

        def gaussian_groups(losses, batch, chunk, sq, band, widths, base):
            # The Gaussian takes the scale in its one pass, at a group of
            # widths at a time within the thread's share of the budget. One
            # width's block more, where the budget has room for it, holds
            # the weights a group carries to the next.
            n_columns = self.n_samples if band is None else band.width
            per_width = len(chunk) * n_columns * sq.element_size()
            room = int(share // per_width)
            carries = room >= 2
            group = max(1, room - carries)
            carry = False if not carries else None
            for start in range(widths.start, widths.stop, group):
                part = slice(start, min(start + group, widths.stop))
                scales = base * np.exp(-2 * (log_bandwidths[part] - smallest))
                row_out = None if row_losses is None else row_losses[batch, part]
                losses[part], carry = self._gaussian_losses(
                    sq, chunk, scales, row_out, carry, band
                )

        def compact_groups(losses, batch, chunk, sq, band, widths, base):
            # A group of widths at a time in one pass of each operation,
            # within the thread's share of the budget (the kernel's
            # temporaries take a few blocks a width); ``sq`` is u^2 at the
            # smallest width.
            n_columns = self.n_samples if band is None else band.width
            per_width = len(chunk) * n_columns * sq.element_size()
            group = max(1, int(share // (_COMPACT_BLOCKS * per_width)))
            chunk_t = torch.as_tensor(chunk, device=self.device)
            for start in range(widths.start, widths.stop, group):
                part = slice(start, min(start + group, widths.stop))
                scales = torch.as_tensor(
                    np.exp(-2 * (log_bandwidths[part] - smallest)),
                    dtype=self.dtype,
                    device=self.device,
                )
                scaled = sq[None] * scales[:, None, None]
                weights = _kernel_terms(self.name, scaled, None, 0, False, None)[0]
                row_out = None if row_losses is None else row_losses[batch, part]
                losses[part] = self._weights_losses(weights, sq, chunk_t, row_out, band)

        groups = gaussian_groups if gaussian else compact_groups

        def band_losses(losses, batch, chunk, half_widths, first):
            # The widths from ``first`` on, over bands of neighbours: the
            # squared distances in the band of the widest, shifted once (the
            # Gaussian's) or scaled to the smallest width (a compact
            # kernel's); each group of widths whose bands hold at least half
            # as many columns as its widest's takes the middle of it.
            chunk_t = torch.as_tensor(chunk, device=self.device)
            widest = half_widths[first]
            sq, band = line.squared(
                chunk_t, widest, self.own_pair, self._thread_blocks()
            )
            base = math.exp(-2 * smallest)
            if gaussian:
                sq.sub_(self._shifts(sq.amin(dim=1, keepdim=True), chunk_t))
            else:
                sq.mul_(base)
            start = first
            while start < len(log_bandwidths):
                half_width = half_widths[start]
                stop = start + 1
                while (
                    stop < len(log_bandwidths) and 2 * half_widths[stop] >= half_width
                ):
                    stop += 1
                offset = widest - half_width
                groups(
                    losses,
                    batch,
                    chunk,
                    sq[:, offset : offset + 2 * half_width + 1],
                    band.narrowed(half_width),
                    slice(start, stop),
                    base,
                )
                start = stop

        def chunk_losses(batch, chunk):
            losses = np.zeros(len(log_bandwidths))
            if gaussian or self.kernel.compact:
                # Widest first: the widths whose bands would hold too many
                # columns, if any, over every sample.
                half_widths = [None] * len(log_bandwidths)
                if line is not None:
                    half_widths = line.half_widths(chunk, np.exp(log_bandwidths))
                n_whole = sum(half_width is None for half_width in half_widths)
                if n_whole:
                    sq, sq_min, base = self._pairs(
                        np.exp(smallest + log_relative), chunk, scaled=gaussian
                    )
                    if gaussian:
                        # Shifted once for every width (see _kernel_terms).
                        sq = torch.sub(
                            sq, sq_min, out=self._block("shifted", len(chunk))
                        )
                    groups(losses, batch, chunk, sq, None, slice(0, n_whole), base)
                if n_whole < len(log_bandwidths):
                    band_losses(losses, batch, chunk, half_widths, n_whole)
                return losses
            sq, sq_min, base = self._pairs(np.exp(smallest + log_relative), chunk)
            for index, log_bandwidth in enumerate(log_bandwidths):
                scale = math.exp(-2 * (log_bandwidth - smallest))
                row_out = None if row_losses is None else row_losses[batch, index]
                scaled_sq = self._block("scaled", len(chunk))
                torch.mul(sq, scale, out=scaled_sq)
                losses[index] = self._chunk_terms(
                    scaled_sq, sq_min * scale, chunk, 0, None, row_out=row_out
                )[0]
            return losses

        losses = np.zeros(len(log_bandwidths))
        for part in self._for_each_chunk(rows, chunk_losses, len(log_bandwidths)):
            losses += part
        given = np.empty_like(order)
        given[order] = np.arange(len(order))
        if per_row:
            row_losses = row_losses.cpu().numpy()[:, given]
            return losses[given] / total_weight, row_losses / total_weight
        return losses[given] / total_weight

    def _pairs(self, bandwidth, chunk, scaled=False):
        """u^2 of a chunk of rows against every sample at ``bandwidth``, and
        each row's shift.

        The row's own pair is +inf (it takes part only through the weight it
        keeps); the shift is the smallest u^2 of the others, or 0 where the
        row keeps some of its own weight (its own u^2 is 0). When every row
        fits in one chunk and the squared distances (one block per feature
        for per-feature widths) fit in one block's budget, they are computed
        once by the engine and only rescaled at each width.

        Parameters
        ----------
        bandwidth : float or ndarray of shape (n_features,)
        chunk : ndarray of int
            The rows.
        scaled : bool, default=False
            Whether the caller takes u^2 as the returned block times
            ``scale``: for one shared width whose distances are kept, the
            block is then the kept distances themselves, read, never written.

        Returns
        -------
        sq : tensor of shape (len(chunk), n_samples)
            u^2 over ``scale``.
        sq_min : tensor of shape (len(chunk), 1)
            The rows' shifts, in the units of ``sq``.
        scale : float
            1 unless ``scaled``.
        """
        chunk_t = torch.as_tensor(chunk, device=self.device)
        per_feature = np.size(bandwidth) > 1
        cache = self._distance_cache(per_feature)

        def rows_of(block):
            return self._rows_of(block, chunk, chunk_t)

        if cache is not None and scaled and not per_feature:
            scale = 1.0 / float(np.ravel(bandwidth)[0]) ** 2
            return rows_of(cache[0]), rows_of(self._kept_minima()), scale
        if cache is None:
            problem = self._problem(bandwidth)
            sq = problem.scaled_squared_distances(
                self.X[chunk_t], factor=1.0 / problem.smallest_width**2
            )
            if self.row_factor is not None:
                sq.mul_(self.row_factor[chunk_t, None])
            position = torch.arange(len(chunk), device=self.device)
            sq[position, chunk_t] = math.inf
        else:
            inverse = np.ones(len(cache)) / np.asarray(bandwidth) ** 2
            sq = self._block("main", len(chunk))
            if len(cache) == 1:
                torch.mul(rows_of(cache[0]), float(inverse[0]), out=sq)
            else:
                # sum_k a_k / h_k^2 over the features: one product, reading
                # every feature's rows as they lie (one gather at most).
                blocks = self._rows_of(cache, chunk, chunk_t, dim=1)
                factors = torch.as_tensor(inverse, dtype=self.dtype, device=self.device)
                torch.mm(
                    factors[None],
                    blocks.reshape(len(cache), -1),
                    out=sq.view(1, -1),
                )
                sq[torch.arange(len(chunk), device=self.device), chunk_t] = math.inf
        return sq, self._shifts(sq.amin(dim=1, keepdim=True), chunk_t), 1.0

    def _shifts(self, sq_min, chunk_t):
        """The rows' shifts from their smallest u^2 among the others: 0
        where a row keeps some of its own weight, and never +inf."""
        if self.keeps_weight:
            sq_min = torch.where(self.kept_weight[chunk_t, None] > 0, 0.0, sq_min)
        return sq_min.clamp_(max=torch.finfo(self.dtype).max)

    def _kept_minima(self):
        """Each row's shift at width 1 from the kept distances for one
        shared width (see :meth:`_shifts`), computed once."""
        with self._cache_lock:
            if "minima" not in self._cache:
                everything = torch.arange(self.n_samples, device=self.device)
                self._cache["minima"] = self._shifts(
                    self._cache["shared"][0].amin(dim=1, keepdim=True), everything
                )
            return self._cache["minima"]

    def _chunk_terms(
        self, sq, sq_min, chunk, order, scaled, scale=1.0, row_out=None, band=None
    ):
        """Summed loss (and derivatives) of a chunk of rows.

        ``sq`` times ``scale`` is u^2 (a ``scale`` other than 1 only for the
        Gaussian with one shared width) and ``sq_min`` the rows' shifts, in
        the units of ``sq`` (see :meth:`_pairs`).
        ``scaled`` holds the coordinates divided by per-feature widths, or is
        None for one shared width. ``row_out``, when given, receives each
        row's c_i-weighted loss. ``band``, for one width: ``sq`` holds each
        row's band of neighbours (see :class:`~sknw._loo_band.Band`), not
        every sample.

        Returns
        -------
        loss : float
            Sum over the chunk's rows of c_i times their loss.
        gradient : ndarray of shape (n_widths,) or None
        second : float or None
        """
        chunk_t = torch.as_tensor(chunk, device=self.device)
        per_feature = scaled is not None
        width = None if band is None else band.width
        # For one width the Gaussian's derivatives are its weights times u^2
        # and u^4 - 2 u^2: its one block is multiplied by u^2 in place after
        # each product (see :meth:`_gaussian_moment_sums`).
        in_place = self.name == "gaussian" and not per_feature and order >= 1
        if in_place:
            # u^2 less each row's shift, a^2 (0 at its nearest sample): with
            # the shifted weights, a^2 gives the derivatives as u^2 does (the
            # shift scales with u^2 along the width), in sums of K a^2 and
            # K (a^4 - 2 a^2) that stay small, where those of an isolated
            # row's large u^2 would cancel to nothing.
            sq = torch.sub(sq, sq_min, out=self._block("shifted", len(chunk), width))
            sq_min = None
        weights, first, second = _kernel_terms(
            self.name,
            sq,
            sq_min,
            # Per feature, the second derivatives come from the Hessian's
            # own products (see _feature_hessian).
            0 if in_place else min(order, 1) if per_feature else order,
            per_feature,
            lambda name: self._block(name, len(chunk), width),
            scale,
        )
        position = torch.arange(len(chunk), device=self.device)
        own = self._own_columns(chunk_t, band)
        for block in (weights, first, second):
            if block is not None:
                block[position, own] = 0.0
        products = None
        if (
            order >= 1
            and per_feature
            and not isinstance(scaled, _Kept)
            and first is weights
            and self.weighted_gradient is self.weighted
        ):
            # The Gaussian's moment columns begin with c [y, 1]: their one
            # product with the weights gives the sums too (a copy, which the
            # weight a row keeps is added to).
            products = times(weights, scaled[1])
            sums = products[:, : self.weighted.shape[1]].clone()
        else:
            sums = self._sums(weights, band)
        predictions, totals, empty = self._predictions(sums, sq, chunk_t, band)
        row_weight = self.sample_weight[chunk_t]
        row_losses = self._row_losses(predictions, chunk_t)
        if row_out is not None:
            torch.mul(row_losses, row_weight, out=row_out)
        loss = float(row_losses @ row_weight)
        if order == 0:
            return loss, None, None
        if self.loss == "squared_error":
            residuals = predictions - self.values[chunk_t]
            # d loss / d prediction, and its constant second derivative.
            slope = 2 * residuals / residuals.shape[1]
            curvature = None
        else:
            probability = self._true_class(predictions, chunk_t)
            floored = probability <= PROBABILITY_FLOOR
            slope = torch.zeros_like(predictions)
            inverse = torch.where(floored, 0.0, 1 / probability)
            slope.scatter_(1, self.labels[chunk_t, None], -inverse[:, None])
            curvature = inverse.square()
        # Rows of no weight keep the nearest samples' values: no slope.
        inverse_totals = torch.where(
            empty, 0.0, 1 / torch.where(empty, 1.0, totals[:, 0])
        )
        if isinstance(scaled, _Kept):
            terms = (slope, row_weight, predictions, inverse_totals)
            gradient = self._kept_gradient(
                first, chunk, chunk_t, terms, sq, scaled.bandwidth
            )
            return loss, gradient, None
        if per_feature:
            moments = self._feature_moments(first, scaled, chunk_t, products)
            derivative = (
                moments[:, :, :-1] - predictions[:, None, :] * moments[:, :, -1:]
            ) * inverse_totals[:, None, None]
            # (rows, n_features, n_values) -> summed loss gradient.
            gradient = (derivative * (row_weight[:, None] * slope)[:, None, :]).sum(
                dim=(0, 2)
            )
            if order == 1:
                return loss, gradient.cpu().numpy(), None
            hessian = self._feature_hessian(
                weights,
                scaled,
                chunk,
                (moments, derivative, predictions, inverse_totals),
                (slope, curvature, row_weight),
            )
            return loss, gradient.cpu().numpy(), hessian
        if in_place:
            first_sums, second_sums = self._gaussian_moment_sums(
                weights, sq, scale, position, own, order, band
            )
        else:
            first_sums = self._sums(first, band)
        derivative = (
            first_sums[:, :-1] - predictions * first_sums[:, -1:]
        ) * inverse_totals[:, None]
        gradient = float(((derivative * slope).sum(dim=1)) @ row_weight)
        if order == 1:
            return loss, np.array([gradient]), None
        if not in_place:
            second_sums = self._sums(second, band)
        second_derivative = (
            second_sums[:, :-1]
            - 2 * derivative * first_sums[:, -1:]
            - predictions * second_sums[:, -1:]
        ) * inverse_totals[:, None]
        if self.loss == "squared_error":
            quadratic = 2 * derivative.square().mean(dim=1)
        else:
            slope_true = derivative.gather(1, self.labels[chunk_t, None])[:, 0]
            quadratic = curvature * slope_true.square()
        curvature_terms = quadratic + (second_derivative * slope).sum(dim=1)
        return loss, np.array([gradient]), float(curvature_terms @ row_weight)

    def _predictions(self, sums, sq, chunk_t, band=None):
        """Leave-one-out predictions of a chunk of rows from the products of
        their weights with the weighted values, at one width (``sums`` of
        shape (n_rows, n_values + 1)) or several (a leading dimension).

        Returns
        -------
        predictions : tensor of shape sums.shape[:-1] + (n_values,)
        totals : tensor of shape sums.shape[:-1] + (1,)
            The rows' summed weights.
        empty : tensor of bool of shape sums.shape[:-1]
            Rows no other sample reaches: they predict the average of the
            nearest ones' values.
        """
        if self.keeps_weight:
            # The kept weight sits at u = 0, the row's largest weight: shift 0.
            kept = self.kept_weight[chunk_t]
            sums[..., :-1] += kept[:, None] * self.values[chunk_t]
            sums[..., -1] += kept
        totals = sums[..., -1:]
        empty = ~(totals[..., 0] > 0)
        predictions = sums[..., :-1] / torch.where(totals > 0, totals, 1.0)
        if not bool(empty.any()):
            return predictions, totals, empty
        if sq.dim() == 3:
            # One u^2 block for each leading index of ``sums`` (per-feature
            # widths at several points): each point's nearest samples.
            predictions[empty] = self._nearest_values(sq[empty])
        else:
            rows = empty.reshape(-1, len(chunk_t)).any(dim=0)
            nearest = predictions.new_zeros((len(chunk_t), predictions.shape[-1]))
            nearest[rows] = self._nearest_values(
                sq[rows], None if band is None else band.rows(rows)
            )
            predictions = torch.where(empty[..., None], nearest, predictions)
        return predictions, totals, empty

    def _row_losses(self, predictions, chunk_t):
        """Each row's loss: its squared error averaged over the outputs, or
        the log-loss of its true class (probabilities floored)."""
        if self.loss == "squared_error":
            return (predictions - self.values[chunk_t]).square().mean(dim=-1)
        probability = self._true_class(predictions, chunk_t)
        return -torch.log(probability.clamp(min=PROBABILITY_FLOOR))

    def _true_class(self, predictions, chunk_t):
        """The predicted probability of each row's true class."""
        labels = self.labels[chunk_t, None].expand(predictions.shape[:-1] + (1,))
        return predictions.gather(-1, labels)[..., 0]

    def _gaussian_losses(self, sq, chunk, scales, row_out=None, carry=None, band=None):
        """Summed loss of a chunk of rows at several widths of the Gaussian,
        u^2 less each row's shift being ``sq`` times each of ``scales``: one
        block per width, and one pass of each operation over all of them.

        ``carry``, from the call for the group of wider widths before: the
        scale and the squarings of the weights it left in the first slot of
        the block (of one more width), a source for this group's (see
        :func:`_squaring_sources`); None for a chunk's first group, False
        where no slot is kept. ``band``: ``sq`` holds each row's band of
        neighbours (see :class:`~sknw._loo_band.Band`).

        Returns
        -------
        losses : ndarray of shape (n_widths,)
        carry : tuple or False
            The same for this group, for the next.
        """
        chunk_t = torch.as_tensor(chunk, device=self.device)
        n_rows = len(chunk)
        n_slots = len(scales) + (carry is not False)
        n_columns = self.n_samples if band is None else band.width
        slots = self._block(
            "widths", n_slots * n_rows, None if band is None else n_columns
        ).view(n_slots, n_rows, n_columns)
        held, weights = slots[0], slots[n_slots - len(scales) :]
        floor = log_weight_floor(self.dtype)
        floor2 = log2_weight_floor(self.dtype)
        if n_rows * n_columns < _SQUARING_PAIRS:
            sources, depths = [None] * len(scales), [0] * len(scales)
        else:
            sources, depths = _squaring_sources(scales, _SQUARING_CHAIN, carry or None)
        fresh = [index for index, source in enumerate(sources) if source is None]
        if len(fresh) == len(scales):
            # One pass of each operation over every width.
            factors = torch.as_tensor(
                -0.5 * LOG2_E * np.asarray(scales),
                dtype=self.dtype,
                device=self.device,
            )
            torch.mul(sq[None], factors[:, None, None], out=weights)
            weights.clamp_(min=floor2).exp2_()
        else:
            for index in fresh:
                torch.mul(sq, -0.5 * LOG2_E * scales[index], out=weights[index])
            for index in fresh:
                weights[index].clamp_(min=floor2).exp2_()
            # K at twice the scale is K^2: each squaring of weights clamped
            # at the square root of the floor's, so that the result is clamped
            # at the floor's as the exponential's is.
            root = math.exp(floor / 2)
            for index in np.argsort(scales):
                if sources[index] is None:
                    continue
                source, n_squarings = sources[index]
                source = held if source < 0 else weights[source]
                block = torch.clamp(source, min=root, out=weights[index])
                block.square_()
                for _ in range(n_squarings - 1):
                    block.clamp_(min=root).square_()
        if carry is not False:
            largest = int(np.argmax(scales))
            held.copy_(weights[largest])
            carry = (scales[largest], depths[largest])
        return self._weights_losses(weights, sq, chunk_t, row_out, band), carry

    def _weights_losses(self, weights, sq, chunk_t, row_out=None, band=None):
        """Summed loss of a chunk of rows at each of several blocks of
        weights (of shape (n_blocks, n_rows, n_samples), or over ``band``'s
        columns, each row's own pair still to be zeroed); ``sq`` one of their
        u^2 blocks, for rows no other sample reaches (see
        :meth:`_predictions`)."""
        n_rows = weights.shape[1]
        position = torch.arange(n_rows, device=self.device)
        weights[:, position, self._own_columns(chunk_t, band)] = 0.0
        # One product for every block: its rows against the weighted values
        # stored column by column (twice as fast as one product a block,
        # measured at 250 rows of 1,000 samples in float32).
        sums = self._sums(weights, band)
        predictions, _, _ = self._predictions(sums, sq, chunk_t, band)
        row_losses = self._row_losses(predictions, chunk_t)
        row_losses.mul_(self.sample_weight[chunk_t])
        if row_out is not None:
            row_out.copy_(row_losses.T)
        return row_losses.sum(dim=1).cpu().numpy()

    def scores_points_in_one_pass(self):
        """The Gaussian's and the compact kernels' per-feature widths, their
        distances kept (see :meth:`losses_at_points`)."""
        return (
            (self.name == "gaussian" or self.kernel.compact)
            and self.n_features > 1
            and self._distance_cache(True) is not None
        )

    def losses_at_points(self, log_bandwidths, rows=None):
        """The loss at each of several per-feature widths (see
        :meth:`PairwiseObjective.losses_at_points`).

        In one pass where the per-feature distances are kept (see
        :meth:`_distance_cache`) and every row is left out, for the Gaussian
        and the compact kernels: u^2 at every point is one product of the
        points' inverse squared widths with the kept distances, and the
        weights one exponential over all of them (the Gaussian's) or one
        pass of each of the kernel's operations. A compact kernel's rows
        that no other sample reaches take their nearest samples' values by
        each point's own u^2. Otherwise one evaluation a point.
        """
        points = np.asarray(log_bandwidths, dtype=np.float64)
        if not (
            len(points)
            and rows is None
            and points.shape[1] == self.n_features
            and self.scores_points_in_one_pass()
        ):
            return super().losses_at_points(points, rows)
        compact = self.kernel.compact
        cache = self._distance_cache(True)
        n_samples = self.n_samples
        everything = torch.arange(n_samples, device=self.device)
        floor = log2_weight_floor(self.dtype)
        # One block a point within the budget: its u^2, turned into its
        # weights in place (one block fewer to fault in at each fit).
        per_point = n_samples**2 * cache.element_size()
        if compact:
            # A compact kernel's temporaries take a few blocks a point.
            per_point *= _COMPACT_BLOCKS
        group = max(1, int(self.block_bytes // per_point))
        losses = []
        for start in range(0, len(points), group):
            part = points[start : start + group]
            inverse = torch.as_tensor(
                np.exp(-2 * part), dtype=self.dtype, device=self.device
            )
            sq = self._block("widths", len(part) * n_samples)
            torch.mm(inverse, cache.view(len(cache), -1), out=sq.view(len(part), -1))
            sq = sq.view(len(part), n_samples, n_samples)
            sq[:, everything, everything] = math.inf
            if compact:
                # Each point's u^2 for its rows no other sample reaches.
                weights = _kernel_terms(self.name, sq, None, 0, False, None)[0]
                losses.append(self._weights_losses(weights, sq, everything))
                continue
            sq_min = self._shifts(sq.amin(dim=2, keepdim=True), everything)
            # (The first point's u^2, for rows no other sample reaches.)
            first = sq[0].clone()
            weights = sq.sub_(sq_min).mul_(-0.5 * LOG2_E)
            weights.clamp_(min=floor).exp2_()
            losses.append(self._weights_losses(weights, first, everything))
        return np.concatenate(losses) / self.sample_weight_numpy.sum()

    def _gaussian_moment_sums(
        self, weights, sq, scale, position, own, order, band=None
    ):
        """The products of K u^2 and, at ``order=2``, K (u^4 - 2 u^2) with
        the weighted values, u^2 = ``sq`` times ``scale``: the block of
        weights K is multiplied by ``sq`` in place (after its own product has
        been taken), the scale applied to the products. ``own``: each row's
        own pair's column."""
        weights.mul_(sq)
        # The row's own pair: weight 0 times u^2 = +inf.
        weights[position, own] = 0.0
        first_sums = self._sums(weights, band).mul_(scale)
        if order < 2:
            return first_sums, None
        weights.mul_(sq)
        weights[position, own] = 0.0
        second_sums = self._sums(weights, band).mul_(scale**2)
        return first_sums, second_sums.sub_(first_sums, alpha=2)

    def _kept_gradient(self, first, chunk, chunk_t, terms, sq, bandwidth):
        """The summed loss gradient of a chunk of rows in the per-feature
        log-widths, from the kept distances.

        With G the kernel's -K'(u) / u (``first``, 0 on each row's own pair)
        and a_ijk the kept distances over h_k^2, the derivative of the loss
        in log h_k is sum_ij G_ij a_ijk c_j sum_v g_iv (y_jv - p_iv), g the
        rows' weights times the loss's slopes over their summed weights D_i:
        one product of the block P_ij = G_ij sum_v g_iv c_j (y_jv - p_iv)
        with the kept distances of every feature, read as they lie. Exact
        differences throughout, where the moments of :meth:`_feature_moments`
        expand the squares.

        Parameters
        ----------
        first : tensor of shape (n_rows, n_samples)
        chunk : ndarray of int
        chunk_t : tensor
            ``chunk`` as a tensor.
        terms : tuple
            d loss / d prediction, the rows' weights, their predictions and
            1 / D.
        sq : tensor of shape (n_rows, n_samples)
            The chunk's u^2, whose block takes P.
        bandwidth : ndarray of shape (n_features,)

        Returns
        -------
        gradient : ndarray of shape (n_features,)
        """
        slope, row_weight, predictions, inverse_totals = terms
        cache = self._distance_cache(True)
        g = slope * (row_weight * inverse_totals)[:, None]
        # [g, -sum_v g p] against the columns c [y, 1]: sum_v g_v c (y_v - p_v).
        factors = torch.cat([g, -(g * predictions).sum(dim=1, keepdim=True)], dim=1)
        pairs = torch.mm(factors, self.weighted.T, out=sq).mul_(first)
        blocks = self._rows_of(cache, chunk, chunk_t, dim=1)
        sums = blocks.reshape(len(cache), -1) @ pairs.view(-1)
        return sums.cpu().numpy() / bandwidth**2

    def _feature_moments(self, block, scaled, chunk_t, products=None):
        """sum_j P_ij a_ijk c_j [y_j, 1] of each row for every feature k, P a
        chunk's block and a_ijk = (x_ik - x_jk)^2 / h_k^2 (over the local
        widths) the feature's share of u^2.

        With z = x / h, sum_j P_ij (z_ik - z_jk)^2 w_j is
        z_ik^2 (P w)_i - 2 z_ik (P (z_k w))_i + (P (z_k^2 w))_i: one product
        of P with the columns [w, z_k w, z_k^2 w]_k of :meth:`_moment_columns`,
        on coordinates centred on the middle of the data's range, where the
        expansion cancels least.

        ``products``, when given, is that product already taken.

        Returns
        -------
        moments : tensor of shape (n_rows, n_features, n_values + 1)
        """
        z, columns, _ = scaled
        if products is None:
            products = times(block, columns)
        products = products.reshape(len(chunk_t), 1 + 2 * self.n_features, -1)
        plain = products[:, :1]
        linear = products[:, 1 : 1 + self.n_features]
        quadratic = products[:, 1 + self.n_features :]
        z_rows = z[chunk_t][:, :, None]
        moments = z_rows**2 * plain - 2 * z_rows * linear + quadratic
        if self.row_factor is not None:
            moments = moments * self.row_factor[chunk_t, None, None]
        return moments

    def _feature_hessian(self, weights, scaled, chunk, first, loss_slopes):
        """The Gaussian's summed loss Hessian in the per-feature log-widths of
        a chunk of rows.

        With F_k = sum_j K a_k c [y, 1] (``first``'s moments), p_k the
        predictions' derivatives and T_kl = sum_j K (a_k a_l - 2 delta_kl a_k)
        c [y, 1], the second derivatives of the predictions are
        (T_kl - p T_kl^D - p_k F_l^D - p_l F_k^D) / D.

        Parameters
        ----------
        weights : tensor of shape (n_rows, n_samples)
            The chunk's block of weights K (0 on each row's own pair).
        scaled : tuple
            From :meth:`_moment_columns`.
        chunk : ndarray of int
        first : tuple
            The moments F, derivatives p_k, predictions and 1 / D.
        loss_slopes : tuple
            d loss / d prediction, the log-loss's curvature (or None) and
            the rows' weights.

        Returns
        -------
        hessian : ndarray of shape (n_features, n_features)
        """
        moments, derivative, predictions, inverse_totals = first
        slope, curvature, row_weight = loss_slopes
        chunk_t = torch.as_tensor(chunk, device=self.device)
        position = torch.arange(len(chunk), device=self.device)
        bandwidth = scaled[2]
        n_features = self.n_features
        second = []
        block = self._block("hessian", len(chunk))
        for feature in range(n_features):
            torch.mul(
                weights, self._feature_share(feature, bandwidth, chunk), out=block
            )
            # The row's own pair: weight 0 times a_k = +inf.
            block[position, chunk_t] = 0.0
            second.append(self._feature_moments(block, scaled, chunk_t))
        second = torch.stack(second, dim=1)
        diagonal = torch.arange(n_features, device=self.device)
        second[:, diagonal, diagonal] -= 2 * moments
        totals = moments[:, :, -1]
        second_derivative = (
            second[..., :-1]
            - predictions[:, None, None, :] * second[..., -1:]
            - derivative[:, :, None, :] * totals[:, None, :, None]
            - derivative[:, None, :, :] * totals[:, :, None, None]
        ) * inverse_totals[:, None, None, None]
        if self.loss == "squared_error":
            quadratic = (derivative[:, :, None, :] * derivative[:, None, :, :]).sum(-1)
            quadratic = quadratic * (2 / derivative.shape[-1])
        else:
            labels = self.labels[chunk_t, None, None].expand(-1, n_features, 1)
            true = derivative.gather(2, labels)[:, :, 0]
            quadratic = curvature[:, None, None] * true[:, :, None] * true[:, None, :]
        terms = quadratic + (second_derivative * slope[:, None, None, :]).sum(-1)
        return (terms * row_weight[:, None, None]).sum(dim=0).cpu().numpy()

    def _feature_share(self, feature, bandwidth, chunk):
        """a_ijk = (x_ik - x_jk)^2 / h_k^2 over the local widths, of a chunk
        of rows against every sample (0 on each row's own pair)."""
        chunk_t = torch.as_tensor(chunk, device=self.device)
        cache = self._distance_cache(True)
        inverse = 1.0 / float(bandwidth[feature]) ** 2
        block = self._block("share", len(chunk))
        if cache is not None:
            return torch.mul(
                self._rows_of(cache[feature], chunk, chunk_t), inverse, out=block
            )
        column = self.X[:, feature]
        torch.sub(column[chunk_t, None], column[None, :], out=block).square_()
        block.mul_(inverse)
        if self.key_widths is not None:
            block.mul_(self._tensor(1.0 / np.asarray(self.key_widths) ** 2))
        if self.row_factor is not None:
            block.mul_(self.row_factor[chunk_t, None])
        return block

    def _moment_columns(self, bandwidth):
        """The scaled coordinates, the columns [w, z_k w, z_k^2 w]_k that
        :meth:`_feature_moments` multiplies each chunk's block with, and the
        widths."""
        scaled = self.X / torch.as_tensor(
            bandwidth, dtype=self.dtype, device=self.device
        )
        w = self.weighted_gradient
        linear = scaled[:, :, None] * w[:, None, :]
        quadratic = (scaled**2)[:, :, None] * w[:, None, :]
        columns = torch.cat(
            [w, linear.flatten(1), quadratic.flatten(1)],
            dim=1,
        )
        return scaled, column_major(columns), np.asarray(bandwidth)

    @staticmethod
    def _own_columns(chunk_t, band):
        """The column of each row's own pair in its blocks: the row itself
        over every sample, the middle of a band."""
        return chunk_t if band is None else band.half_width

    def _sums(self, block, band=None):
        """``block`` (..., n_rows, n_samples) times the weighted values
        c [y, 1], or over a band's columns (see
        :class:`~sknw._loo_band.Band`)."""
        if band is not None:
            return band.sums(block)
        return times(block.reshape(-1, self.n_samples), self.weighted).view(
            *block.shape[:-1], -1
        )

    def _nearest_values(self, sq, band=None):
        """Average of the nearest other samples' values (ties averaged)."""
        nearest = (sq <= sq.amin(dim=1, keepdim=True)) & torch.isfinite(sq)
        sums = self._sums(nearest.to(self.dtype), band)
        return sums[:, :-1] / sums[:, -1:]

    def _fused(self, log_bandwidth, rows, row_weight):
        """Loss and gradient from the fused Triton kernels (float32)."""
        log_h = self._tensor(log_bandwidth).requires_grad_(True)
        rows_t = torch.as_tensor(rows, device=self.device)
        predictions, empty = _triton.leave_one_out_predictions(
            log_h,
            self.X,
            self.values,
            self.sample_weight,
            rows_t,
            self.kernel_name,
            centre=self.loss == "squared_error",
        )
        empty_rows = torch.nonzero(empty).flatten()
        if len(empty_rows):
            bandwidth = np.exp(log_bandwidth)
            nearest = []
            for batch in gen_batches(len(empty_rows), self.chunk_n_rows):
                chunk = rows[empty_rows[batch].cpu().numpy()]
                sq = self._pairs(bandwidth, chunk)[0]
                nearest.append(self._nearest_values(sq))
            predictions = predictions.index_put((empty_rows,), torch.cat(nearest))
        targets = self.values[rows_t]
        if self.loss == "squared_error":
            losses = ((predictions - targets) ** 2).mean(dim=1)
        else:
            probability = (predictions * targets).sum(dim=1)
            losses = -torch.log(probability.clamp(min=PROBABILITY_FLOOR))
        weight = self._tensor(row_weight)
        loss = (losses * weight).sum() / weight.sum()
        loss.backward()
        return float(loss.detach()), log_h.grad.cpu().numpy().copy(), None


# How many squarings in a row the Gaussian's weights may take from one
# exponential: each doubles their relative rounding, kept within about 256
# units of the precision.
_SQUARING_CHAIN = 8

# Below this many pairs a width, the operations' fixed costs outweigh the
# exponentials that squarings save: every width of a scan takes its
# exponential, in one pass of each operation over all of them.
_SQUARING_PAIRS = 2**15


# Blocks of one width alive at once while a compact kernel's weights are
# computed from its u^2 (the scaled u^2, the mask of the support and the
# kernel's temporaries).
_COMPACT_BLOCKS = 5


class _Kept(NamedTuple):
    """In place of the moment columns: the per-feature gradient of a chunk is
    taken from the kept distances (see LeaveOneOutObjective._kept_gradient)."""

    bandwidth: np.ndarray


def _squaring_sources(scales, longest, carried=None):
    """For each scale, the index of a smaller scale whose Gaussian weights
    give its own by one squaring (half the scale) or two (a quarter), and
    how many; None where it takes an exponential. At most ``longest``
    squarings in a row follow one exponential.

    The scales of a scan a factor 2 or 2^(1/4) apart in the width are a
    factor 4 or 2^(1/2) apart, so that every other fine point and every
    coarse one have a source, to within rounding (1e-12 relative here, far
    below the loss's resolution at these widths).

    ``carried``, a (scale, squarings) pair, is one more source, numbered
    -1: weights computed before, at that scale, after that many squarings.

    Returns
    -------
    sources : list of tuple or None
    depths : list of int
        The squarings each scale's weights take after their exponential.
    """
    sources = [None] * len(scales)
    known = {}
    if carried is not None:
        known[-1] = carried
    for index in np.argsort(scales):
        depth = 0
        for other in sorted(known, key=lambda key: -known[key][0]):
            other_scale, other_depth = known[other]
            ratio = scales[index] / other_scale
            for n_squarings in (1, 2):
                if (
                    abs(ratio - 2**n_squarings) <= 4e-12 * ratio
                    and other_depth + n_squarings <= longest
                ):
                    sources[index] = (other, n_squarings)
                    depth = other_depth + n_squarings
                    break
            if sources[index] is not None:
                break
        known[index] = (scales[index], depth)
    return sources, [known[index][1] for index in range(len(scales))]


def _use_fused(device, kernel):
    """Whether the fused Triton kernels compute the objective on ``device``
    (see :func:`sknw._triton.use_fused`); without Triton on CUDA the float64
    path runs, with a warning, once, that says why."""
    return _triton.use_fused(
        device,
        kernel,
        "The leave-one-out loss is computed in float64 with torch instead.",
    )

"""The local minima of the leave-one-out loss over one width of the compact
kernels that are a polynomial in a power of u below u = 1 (the cosine's to
within rounding), by a sweep over the widths at which a pair enters the
support."""

# Authors: the sknw developers
# License: BSD 3 clause

import math
from typing import Callable, NamedTuple

import numpy as np
import torch

from sknw._engine import weighted_values
from sknw._loo_objective import PROBABILITY_FLOOR


class SeriesKernel(NamedTuple):
    """A compact kernel that is, below u = 1, a polynomial w(s) in s = u^p
    (the cosine's to within float64's rounding): what the sweep needs of
    it.

    Attributes
    ----------
    power : int
        p.
    coefficients : tuple of float
        a_0, ..., a_M of w(s) = sum_m a_m s^m.
    weight, slope : callable
        w(s) and w'(s) on a tensor of s in [0, 1], computed directly (not
        from the coefficients), for the sums whose terms cancel.
    """

    power: int
    coefficients: tuple
    weight: Callable
    slope: Callable


def _binomial(power, degree):
    """(1 - u^p)^M, expanded in s = u^p."""
    return SeriesKernel(
        power,
        tuple(math.comb(degree, m) * (-1) ** m for m in range(degree + 1)),
        lambda s: (1 - s).clamp_(min=0) ** degree,
        lambda s: -degree * (1 - s).clamp_(min=0) ** (degree - 1),
    )


def _cosine_slope(s):
    """d cos(pi sqrt(s) / 2) / ds, -pi^2 / 8 at s = 0."""
    root = s.sqrt()
    quarter = -0.25 * math.pi
    return torch.where(
        root > 0,
        quarter * torch.sin(0.5 * math.pi * root) / torch.where(root > 0, root, 1.0),
        quarter * 0.5 * math.pi,
    )


# The cosine's Taylor series in s = u^2, cos(pi u / 2) =
# sum_m (-1)^m (pi / 2)^(2m) s^m / (2m)!, to the degree whose remainder,
# below (pi / 2)^(2M + 2) / (2M + 2)! on [0, 1], is under 2^-60.
_COSINE_DEGREE = 11

# The kernels the sweep takes.
SERIES_KERNELS = {
    "epanechnikov": _binomial(2, 1),
    "biweight": _binomial(2, 2),
    "triweight": _binomial(2, 3),
    "linear": _binomial(1, 1),
    "tricube": _binomial(3, 3),
    "cosine": SeriesKernel(
        2,
        tuple(
            (-1) ** m * (0.5 * math.pi) ** (2 * m) / math.factorial(2 * m)
            for m in range(_COSINE_DEGREE + 1)
        ),
        lambda s: torch.sin(0.5 * math.pi * (1 - s.sqrt()).clamp_(min=0)),
        _cosine_slope,
    ),
}

# The sweep's sums take powers of 1 / h^p up to (1 / h^p)^M at the smallest
# kink, and of d^p up to (d^p)^M at the largest: beyond this (in the natural
# logarithm) they could overflow, and there is no sweep.
_LARGEST_LOG_POWER = 600.0

# The sweep gathers at most this many numbers over its (row, kink) pairs,
# (M + 1) (n_values + 1) a pair: its cost is a few dozen operations on each.
# Every kink fits up to about 200 rows under Epanechnikov's squared error;
# above, a window of the kinks nearest a given width.
SWEEP_NUMBERS = 2**24

# Above that, the window spans at most this factor each way from the width
# it is centred on (the dips the scan's refinement misses lie beside its
# basin), in log-width.
WINDOW_SPAN = math.log(2.0)

# The window holds at least this fraction of the kinks (of n (n - 1) / 2),
# or there is no sweep (from about 800 rows under Epanechnikov's squared
# error).
WINDOW_FRACTION = 1 / 64

# Where a row's summed weight (or, for the log-loss, a class's summed
# weight) is below this fraction of the sum of its expansion's terms in
# absolute value, the expansion has cancelled too far and the row's sums are
# taken pair by pair.
_CANCELLATION = 1e-6

# An interval between two kinks wider than this in log-width has its slope
# checked at points this far apart inside it too: over a wide interval (the
# one above the largest distance, say) the loss can turn more than once.
_INTERIOR_STEP = math.log(2.0) / 16

# At most this many such points in one interval (their step grows beyond).
_INTERIOR_POINTS = 256

# Points inside a wide interval also lie this far from either end, in
# log-width, and twice, four times... as far, up to its middle.
_NEAREST_OFFSET = 2.0**-20

# Bisection steps on the slope inside a kink interval that holds a minimum:
# enough to rank the intervals; the best are refined on the loss itself.
_BISECTIONS = 12

# Numbers gathered for one block of kinks of the sweep (n_samples * kinks *
# (M + 1) * (n_values + 1)): blocks that stay in cache.
_BLOCK_NUMBERS = 2**17


class KinkSweep:
    """The leave-one-out loss of one shared width of a kernel of
    :data:`SERIES_KERNELS`, between the widths where a pair enters the
    support.

    With u_ij = d_ij / h (d_ij the distance over the local widths) and the
    kernel sum_m a_m u^(p m) below u = 1 ((1 - u^p)^M expanded, or the
    cosine's series), the kernel's weight of a pair in the support is a
    polynomial in z = h^-p whose coefficients are powers of d_ij^p. Sorting
    each row's distances, the sums N_i and D_i of the left-out prediction
    over a support of its c nearest samples are therefore combinations of
    prefix sums of c_j d_ij^(p m) [y_j, 1], m = 0..M. Between two
    consecutive kinks (a distance d_ij, where u_ij = 1) the supports do not
    change: the loss is a smooth function of the width, and its value and
    slope at any width cost O(n_samples). Evaluating both at the ends of
    every interval, and at points inside the wide ones (see
    :meth:`_pieces`), locates the local minima at a kink (a corner: the loss
    falls into it from the left and rises out of it to the right) and
    inside a piece whose slope changes sign from its left end to its right
    (each piece taken to turn at most once: one that rises at both ends
    around a dip of its own goes unseen).

    Parameters
    ----------
    objective : LeaveOneOutObjective
        One shared width, its squared distances kept (see
        :meth:`~sknw._loo_objective.PairwiseObjective._distance_cache`).
    """

    def __init__(self, objective):
        self.objective = objective
        self.series = SERIES_KERNELS[objective.name]
        self.power = self.series.power
        self.degree = len(self.series.coefficients) - 1
        kept = objective._distance_cache(False)[0]
        n_samples = objective.n_samples
        # Each row's others by distance (the own pair, +inf, last).
        squared, order = torch.sort(kept, dim=1)
        squared, order = squared[:, :-1], order[:, :-1]
        self.distances = squared.sqrt().contiguous()
        self.columns = objective.weighted[order]
        dtype, device = squared.dtype, squared.device
        exponents = self.power * torch.arange(
            self.degree + 1, dtype=dtype, device=device
        )
        powers = self.distances[:, :, None] ** exponents
        # prefix[v, m, i, c]: the sum over row i's c nearest others of
        # c_j d_ij^(p m) [y_j, 1]_v, one contiguous block per (v, m).
        terms = self.columns.permute(2, 0, 1)[:, None] * powers.permute(2, 0, 1)
        self.prefix = torch.zeros(
            (*terms.shape[:3], n_samples), dtype=dtype, device=device
        )
        torch.cumsum(terms, dim=3, out=self.prefix[..., 1:])
        self.kept = objective._tensor(
            weighted_values(objective.values_numpy, objective.kept_weight_numpy)
        )
        # A row that no other sample reaches predicts its nearest ones'
        # average, as the objective does.
        self.nearest = objective._nearest_values(kept)
        self.kinks = torch.unique(self.distances)

    @staticmethod
    def n_kinks(objective):
        """An upper bound on the kinks: one for each pair of samples."""
        return objective.n_samples * (objective.n_samples - 1) // 2

    @staticmethod
    def in_range(objective):
        """Whether the powers the sums take stay far within float64's range
        (see _LARGEST_LOG_POWER): of 1 / h^p up to the M-th at the smallest
        distance between two samples, and of d^p up to the M-th at the
        largest."""
        kept = objective._distance_cache(False)[0]
        positive = kept[(kept > 0) & torch.isfinite(kept)]
        if len(positive) == 0:
            return True
        series = SERIES_KERNELS[objective.name]
        log_squares = [math.log(float(positive.min())), math.log(float(positive.max()))]
        largest = 0.5 * max(abs(value) for value in log_squares) * series.power
        return largest * (len(series.coefficients) - 1) <= _LARGEST_LOG_POWER

    @staticmethod
    def _per_kink(objective):
        """The numbers gathered at one kink: (M + 1) (n_values + 1) for
        each row."""
        n_coefficients = len(SERIES_KERNELS[objective.name].coefficients)
        return objective.n_samples * n_coefficients * objective.weighted.shape[1]

    @staticmethod
    def window(objective):
        """How many kinks one sweep takes: every one, or as many as
        SWEEP_NUMBERS allows."""
        return min(
            KinkSweep.n_kinks(objective),
            SWEEP_NUMBERS // KinkSweep._per_kink(objective),
        )

    @staticmethod
    def memory(objective):
        """An upper bound on the bytes of the sweep's largest arrays: the
        prefix sums, each row's sorted distances and values, and each row's
        count below every kink of the window."""
        n_samples = objective.n_samples
        n_coefficients = len(SERIES_KERNELS[objective.name].coefficients)
        n_columns = objective.weighted.shape[1]
        prefix = n_samples * n_samples * n_coefficients * n_columns
        sorted_pairs = n_samples * n_samples * (n_columns + 2)
        counts = n_samples * (KinkSweep.window(objective) + 2)
        return 8 * (prefix + sorted_pairs + counts)

    def counts(self, widths, closed=True):
        """How many others each row's support holds at each width: those
        at a distance up to it (``closed``) or below it.

        Returns
        -------
        counts : tensor of shape (n_samples, n_widths)
        """
        n_samples = self.distances.shape[0]
        return torch.searchsorted(
            self.distances,
            widths[None].expand(n_samples, -1).contiguous(),
            side="right" if closed else "left",
        )

    def _predictions(self, widths, counts):
        """Each row's left-out predictions, their derivative in z = h^-p,
        and its summed weight, at ``widths`` (shape (n_widths,), or
        (n_samples, n_widths): one width per row), each row's support its
        ``counts`` nearest others.

        Returns
        -------
        predictions, changes : tensor of shape (n_values, n_samples, n_widths)
        totals : tensor of shape (n_samples, n_widths)
            0 where no sample reaches the row (which then predicts its
            nearest ones' values, whatever the width: no change).
        """
        n_columns = self.prefix.shape[0]
        z = widths ** (-self.power)
        gathered = torch.gather(
            self.prefix, 3, counts[None, None].expand(*self.prefix.shape[:2], -1, -1)
        )
        # sum_m a_m z^m P_m, its derivative in z, and the sum of the
        # weights' terms in absolute value (for the cancellation). (Each
        # term added by one fused multiply-add, no temporaries.)
        coefficients = self.series.coefficients
        sums = gathered[:, 0] * float(coefficients[0])
        slopes = gathered[:, 1] * float(coefficients[1])
        # The columns whose terms are all of one sign: the summed weight,
        # and for the log-loss every class's (its probabilities' logarithm
        # needs them to their own precision).
        checked = slice(None) if self.objective.loss == "log_loss" else slice(-1, None)
        scale = gathered[checked, 0] * abs(float(coefficients[0]))
        power = z
        for m in range(1, self.degree + 1):
            coefficient = float(coefficients[m])
            if m > 1:
                slopes.addcmul_(gathered[:, m], power * (m * coefficient))
                power = power * z
            sums.addcmul_(gathered[:, m], power * coefficient)
            scale.addcmul_(gathered[checked, m], power * abs(coefficient))
        cancelled = (sums[checked] < _CANCELLATION * scale).any(dim=0).nonzero()
        if len(cancelled):
            self._pair_by_pair(sums, slopes, cancelled, z, counts)
        if self.objective.keeps_weight:
            sums += self.kept.T[:, :, None]
        totals = sums[-1]
        empty = ~(totals > 0)
        safe = torch.where(empty, 1.0, totals)
        predictions = sums[: n_columns - 1] / safe
        changes = (slopes[: n_columns - 1] - predictions * slopes[-1]) / safe
        if bool(empty.any()):
            predictions = torch.where(empty, self.nearest.T[:, :, None], predictions)
            changes = torch.where(empty, 0.0, changes)
        return predictions, changes, torch.where(empty, 0.0, totals)

    def _loss_slopes(self, predictions):
        """Each row's loss and its derivative in its predictions (0 where
        a log-loss probability is floored), c_i-weighted over the rows'
        total weight."""
        objective = self.objective
        share = (objective.sample_weight / objective.sample_weight.sum())[:, None]
        if objective.loss == "squared_error":
            residuals = predictions - objective.values.T[:, :, None]
            n_values = residuals.shape[0]
            losses = residuals.square().mean(dim=0) * share
            return losses, residuals * (2 * share / n_values)
        labels = objective.labels[None, :, None].expand(1, -1, predictions.shape[2])
        true = predictions.gather(0, labels)[0]
        floored = true <= PROBABILITY_FLOOR
        losses = -torch.log(true.clamp(min=PROBABILITY_FLOOR)) * share
        inverse = torch.where(floored, 0.0, 1 / torch.where(floored, 1.0, true))
        slopes = torch.zeros_like(predictions)
        slopes.scatter_(0, labels, (-inverse * share)[None])
        return losses, slopes

    def terms(self, widths, counts):
        """The loss and its derivative in the log-width at each of
        ``widths``, each row's support its ``counts`` nearest others.

        Returns
        -------
        loss, slope : tensor of shape (n_widths,)
        """
        predictions, changes, _ = self._predictions(widths, counts)
        losses, slopes = self._loss_slopes(predictions)
        change = (slopes * changes).sum(dim=(0, 1))
        # dz / dlog h = -p z.
        return losses.sum(dim=0), change * (-self.power * widths ** (-self.power))

    def _pair_by_pair(self, sums, slopes, cancelled, z, counts):
        """The sums (and their derivatives in z) of the rows and widths in
        ``cancelled`` from their supports' weights themselves."""
        rows, which = cancelled[:, 0], cancelled[:, 1]
        held = counts[rows, which]
        width = max(int(held.max()), 1)
        inside = torch.arange(width, device=z.device)[None] < held[:, None]
        powers = self.distances[rows, :width] ** self.power
        z = z[rows, which] if z.dim() == 2 else z[which]
        # s = u^p, the weight w(s) and its derivative in z, d^p w'(s).
        s = (powers * z[:, None]).clamp_(max=1.0)
        weights = self.series.weight(s) * inside
        derivatives = powers * self.series.slope(s) * inside
        values = self.columns[rows, :width]
        sums[:, rows, which] = torch.einsum("fj,fjv->vf", weights, values)
        slopes[:, rows, which] = torch.einsum("fj,fjv->vf", derivatives, values)

    def _terms_in_blocks(self, widths, counts_of):
        """:meth:`terms` at ``widths`` in blocks of widths whose gathered
        numbers stay in cache (_BLOCK_NUMBERS), each block's supports
        ``counts_of(part)`` for its slice ``part`` of the widths.

        Returns
        -------
        loss, slope : tensor of shape (n_widths,)
        """
        loss, slope = torch.empty_like(widths), torch.empty_like(widths)
        block = max(1, _BLOCK_NUMBERS // self.prefix[..., 0].numel())
        for start in range(0, len(widths), block):
            part = slice(start, start + block)
            loss[part], slope[part] = self.terms(widths[part], counts_of(part))
        return loss, slope

    def _corner_jumps(self, kinks):
        """How much the slope of the loss in the log-width jumps at each of
        ``kinks``, where pairs enter the support with a weight of slope
        d^p w'(1) in z (-M d^p for (1 - u^p)^M: nonzero for M = 1 only;
        -pi d^2 / 4 for the cosine).

        A pair (i, j) entering row i's support at u = 1 changes the
        derivative of its prediction in z by c_j d^p w'(1) (y_j - p_i) / D_i:
        with dz / dlog h = -p z and d^p z = 1 there, the loss's slope in
        the log-width jumps by -p w'(1) c_j (dloss_i / dp_i) . (y_j - p_i) /
        D_i (nothing for a row no sample reached before: its first
        neighbours enter together and it predicts their values, as it did
        before).
        """
        jumps = torch.zeros_like(kinks)
        entering = float(self.series.slope(torch.ones(1, dtype=kinks.dtype))[0])
        if entering == 0:
            return jumps
        # Each row's pairs: the support just below their width.
        below = torch.searchsorted(self.distances, self.distances, side="left")
        predictions, _, totals = self._predictions(self.distances, below)
        _, slopes = self._loss_slopes(predictions)
        columns = self.columns.permute(2, 0, 1)
        differences = columns[:-1] - predictions * columns[-1]
        change = (slopes * differences).sum(dim=0)
        reached = totals > 0
        change = torch.where(reached, change / torch.where(reached, totals, 1.0), 0.0)
        distances = self.distances
        finite = torch.isfinite(distances)
        where = torch.searchsorted(kinks, distances[finite])
        inside = where < len(kinks)
        inside &= kinks[where.clamp(max=len(kinks) - 1)] == distances[finite]
        jumps.index_add_(
            0, where[inside], -self.power * entering * change[finite][inside]
        )
        return jumps

    def minima(self, lower, upper, centre=None):
        """The local minima of the loss between the log-width bounds that
        the ends of the intervals between kinks reveal (see the class),
        lowest first.

        With ``centre`` (a log-width), where the kinks below the upper
        bound outnumber :meth:`window`, the sweep takes that many, those
        nearest ``centre`` in their order, and the minima at their kinks and
        in the intervals between them; the stretches below and above them
        are left out. Without, every kink.

        Returns
        -------
        minima : list of tuple
            (loss, left, right, point): the loss at ``point`` (at a kink,
            or bisected on the slope inside the stretch [left, right] of an
            interval between two kinks (see :meth:`_pieces`), where the
            loss is smooth: its minimum there is the refinement's to find),
            in log-widths.
        """
        kinks = self.kinks[(self.kinks > 0) & (self.kinks < math.exp(upper))]
        top = math.exp(upper)
        first, window = 0, self.window(self.objective)
        if centre is not None and len(kinks) > window:
            # A centre on a flat stretch beyond the kinks (every pair in the
            # support, or none) moves to the kink that ends the stretch: the
            # dips beside it lie among the kinks nearest that end.
            centre = min(
                max(centre, math.log(float(kinks[0]))), math.log(float(kinks[-1]))
            )
            # The window's kinks, at most WINDOW_SPAN from the centre, and the
            # next one after them as its top (up to which the loss stays
            # smooth).
            middle = int(torch.searchsorted(kinks, math.exp(centre)))
            first = min(max(middle - window // 2, 0), len(kinks) - window)
            stop = first + window
            low, high = (math.exp(centre + side * WINDOW_SPAN) for side in (-1, 1))
            # The interval that holds the centre is always swept: from the
            # kink below it, however far.
            below = max(middle - 1, 0)
            first = max(first, min(int(torch.searchsorted(kinks, low)), below))
            stop = max(min(stop, int(torch.searchsorted(kinks, high))), below + 1)
            if stop < len(kinks):
                top = float(kinks[stop])
            kinks = kinks[first:stop]
        whole = top == math.exp(upper)
        top = torch.tensor([top], dtype=kinks.dtype, device=kinks.device)
        ends = torch.cat([kinks, top])
        n_kinks = len(kinks)
        # Each row's count below every end at once: where each of its
        # distances falls among the ends, counted and summed along them.
        n_samples = self.distances.shape[0]
        falls = torch.searchsorted(ends, self.distances, side="right")
        counts = torch.zeros(
            (n_samples, n_kinks + 2), dtype=falls.dtype, device=falls.device
        )
        counts.scatter_add_(1, falls, torch.ones_like(falls))
        counts = counts.cumsum_(dim=1)[:, : n_kinks + 1]
        # At each kink and the upper bound, the loss and its slope from the
        # left: the support of the pairs below it (at the kink itself an
        # entering pair has weight 0: the loss is continuous there).
        value, slope_in = self._terms_in_blocks(ends, lambda part: counts[:, part])
        # The log-widths whose minima the sweep finds: from its first kink
        # (from the lower bound where that is the first of all) up to its
        # top.
        self.covered = (
            lower if first == 0 else math.log(float(ends[0])),
            math.log(float(top[0])),
        )
        found = []
        if first == 0:
            # Below the first kink only duplicates (at distance 0) reach a
            # row: a flat stretch down to the lower bound, of slope 0.
            found.append((float(value[0]), lower, lower, lower))
            if n_kinks == 0:
                return found
            slope_in[0] = 0.0
        slope_out = slope_in[:-1] + self._corner_jumps(kinks)
        corners = torch.nonzero((slope_in[:-1] <= 0) & (slope_out >= 0))[:, 0]
        log_kinks = torch.log(kinks)
        for loss, point in zip(value[corners].tolist(), log_kinks[corners].tolist()):
            found.append((loss, point, point, point))
        # Between two kinks: the slope from one's right to the next's left,
        # and at points inside the wide intervals (see _INTERIOR_STEP). (A
        # slope of 0 to the right of a kink, as at the first one under a
        # kernel whose weight enters with slope 0, may still turn down.)
        low, high, left, right, support = self._pieces(
            kinks, ends, slope_out, slope_in[1:]
        )
        inner = torch.nonzero((left <= 0) & (right > 0))[:, 0]
        if len(inner):
            counts = self.counts(support[inner])
            low, high = low[inner], high[inner]
            a, b = low.clone(), high.clone()
            for _ in range(_BISECTIONS):
                middle = (a + b) / 2
                falling = self.terms(torch.exp(middle), counts)[1] < 0
                a = torch.where(falling, middle, a)
                b = torch.where(falling, b, middle)
            middle = (a + b) / 2
            losses = self.terms(torch.exp(middle), counts)[0]
            found.extend(
                zip(losses.tolist(), low.tolist(), high.tolist(), middle.tolist())
            )
        if slope_in[-1] < 0 and whole:
            found.append((float(value[-1]), upper, upper, upper))
        found.sort(key=lambda minimum: minimum[0])
        return found

    def _pieces(self, kinks, ends, slope_out, slope_in):
        """The intervals between kinks, each wider than _INTERIOR_STEP cut
        at points inside it, with the loss's slope at both ends of every
        piece.

        The points inside a wide interval lie _INTERIOR_STEP apart, and
        closer to either end by factors of 2 down to _NEAREST_OFFSET from
        it: a pair entering the support at a kink can bend the loss within a
        tiny fraction of the width after it.

        Parameters
        ----------
        kinks : tensor of shape (n_kinks,)
        ends : tensor of shape (n_kinks + 1,)
            The kinks and the top: interval k runs from ``ends[k]`` to
            ``ends[k + 1]``.
        slope_out, slope_in : tensor of shape (n_kinks,)
            The slope in the log-width to the right of each kink, and to the
            left of each interval's right end.

        Returns
        -------
        low, high : tensor of shape (n_pieces,)
            The pieces' ends, in log-width.
        left, right : tensor of shape (n_pieces,)
            The slope there.
        support : tensor of shape (n_pieces,)
            The kink that starts each piece's interval (whose support the
            piece keeps).
        """
        log_ends = torch.log(ends)
        low, high = log_ends[:-1], log_ends[1:]
        wide = torch.nonzero(high - low > _INTERIOR_STEP)[:, 0]
        if len(wide) == 0:
            return low, high, slope_out, slope_in, kinks
        # Each wide interval's inner points, as offsets from its left end.
        halvings = _NEAREST_OFFSET * 2.0 ** np.arange(64)
        owners, offsets = [], []
        for index, start, stop in zip(
            wide.tolist(), low[wide].tolist(), high[wide].tolist()
        ):
            width = stop - start
            n_even = min(math.ceil(width / _INTERIOR_STEP), _INTERIOR_POINTS)
            near = halvings[halvings < width / 2]
            inner = np.unique(
                np.concatenate(
                    [np.arange(1, n_even) * (width / n_even), near, width - near]
                )
            )
            owners.append(np.full(len(inner), index))
            offsets.append(inner)
        owner = torch.as_tensor(np.concatenate(owners), device=kinks.device)
        points = low[owner] + torch.as_tensor(
            np.concatenate(offsets), dtype=low.dtype, device=low.device
        )
        _, inner_slopes = self._terms_in_blocks(
            torch.exp(points), lambda part: self.counts(kinks[owner[part]])
        )
        # Every interval's points in order: its left end, then its inner
        # points; each piece runs to the next point of its interval, or to
        # the interval's right end.
        interval = torch.cat([torch.arange(len(low), device=owner.device), owner])
        starts = torch.cat([low, points])
        order = np.lexsort((starts.cpu().numpy(), interval.cpu().numpy()))
        order = torch.as_tensor(order, device=owner.device)
        starts, interval = starts[order], interval[order]
        slopes = torch.cat([slope_out, inner_slopes])[order]
        last = torch.ones_like(interval, dtype=torch.bool)
        last[:-1] = interval[1:] != interval[:-1]
        stops = torch.where(last, high[interval], starts.roll(-1))
        stop_slopes = torch.where(last, slope_in[interval], slopes.roll(-1))
        return starts, stops, slopes, stop_slopes, kinks[interval]

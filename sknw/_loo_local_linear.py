"""The leave-one-out loss of local linear regression as a function of the width."""

# Authors: the sknw developers
# License: BSD 3 clause

import numpy as np
import torch

from sknw._engine import LOG2_E, times, weighted_values
from sknw._local_moments import local_linear_fit, moment_columns, moment_frame
from sknw._loo_objective import PairwiseObjective


class LocalLinearLeaveOneOut(PairwiseObjective):
    """Leave-one-out squared error of local linear regression.

    Row i is predicted by the local linear fit at x_i to the other samples,
    one unit of its frequency weight c_i left out (all of it when c_i < 1):
    the kernel-weighted sums of the moment columns of the others, plus the
    weight e_i = c_i - min(c_i, 1) it keeps at u = 0, give the fit, with the
    local constant fallback of :class:`~sknw.LocalLinearRegressor` where the
    design is singular. Leaving the row out of the sums, rather than taking
    the full fit's diagonal, rounds well at any width: at a tiny width a row's
    own weight dwarfs the others'. The loss, its gradient and, for one width,
    its second derivative come from torch's automatic differentiation of a
    float64 computation, chunk by chunk, on the machinery of
    :class:`~sknw._loo_objective.PairwiseObjective` (the squared distances
    kept at width 1 when they fit, chunks on threads).

    The interface is that of :class:`~sknw._loo_objective.LeaveOneOutObjective`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training inputs, every sample weight > 0.
    values : ndarray of shape (n_samples, n_outputs)
        Targets.
    kernel : str
        A kernel name.
    loss : {"squared_error"}
        The loss of each left-out prediction.
    sample_weight : ndarray of shape (n_samples,) or None
        Positive frequency weights.
    device : torch.device
        Where to compute.
    key_widths : ndarray of shape (n_samples,), default=None
        Local factors of each sample's width as a key.
    query_widths : ndarray of shape (n_samples,), default=None
        Local factors of each sample's width as the left-out query.
    """

    # Blocks of (chunk_n_rows, n_samples) alive at once, besides one per
    # feature for per-feature widths: the distances, the scaled distances,
    # the kernel weights and the intermediates automatic differentiation
    # keeps for the first and second derivatives.
    blocks_per_row = 10
    blocks_per_feature = 1

    # Each block at most this large.
    largest_block = 8 * 2**20

    # The left-out pair is masked where the weights are formed: the kept
    # distances hold 0 there (an infinite entry would make the derivative
    # through it undefined).
    own_pair = 0.0

    def _prepare(self):
        if self.loss != "squared_error":
            raise ValueError(f"Local linear regression has no {self.loss!r} loss.")
        values = self.values_numpy
        self.n_outputs = values.shape[1]
        frame = moment_frame(
            self.X_numpy.min(axis=0),
            self.X_numpy.max(axis=0),
            np.abs(values).max(axis=0),
        )
        columns = moment_columns(self.X_numpy, values, frame)
        # The rows as queries, and the widths and fits, in the moments' frame.
        self.queries = self._tensor((self.X_numpy - frame.centre) / frame.x_scale)
        self.x_scale = self._tensor(frame.x_scale)
        self.y_scale = self._tensor(frame.y_scale)
        # c * [columns, 1]: one product with the weights gives every sum.
        self.columns = self._tensor(weighted_values(columns, self.sample_weight_numpy))
        self.kept_columns = self._tensor(
            weighted_values(columns, self.kept_weight_numpy)
        )
        self.key_factor = None
        if self.key_widths is not None:
            self.key_factor = self._tensor(1.0 / np.asarray(self.key_widths) ** 2)

    def _evaluate(self, log_bandwidth, rows, order):
        """The loss, and as asked its gradient and second derivative (see
        :meth:`~sknw._loo_objective.PairwiseObjective.evaluate`): the
        sample-weighted mean over ``rows`` of the squared error, mean over
        outputs."""
        rows = (
            np.arange(self.n_samples) if rows is None else np.asarray(rows, dtype=int)
        )

        def terms(batch, chunk):
            chunk = torch.as_tensor(chunk, device=self.device)
            log_h = self._tensor(log_bandwidth).requires_grad_(order > 0)
            with torch.set_grad_enabled(order > 0):
                predictions = self._predictions(log_h, chunk)
                errors = (predictions - self.values[chunk]).square().mean(dim=1)
                chunk_loss = errors @ self.sample_weight[chunk]
            loss = float(chunk_loss.detach())
            if order == 0:
                return loss, None, None
            (first,) = torch.autograd.grad(chunk_loss, log_h, create_graph=order == 2)
            second = None
            if order == 2:
                (curvature,) = torch.autograd.grad(first[0], log_h)
                second = float(curvature[0])
            return loss, first.detach().cpu().numpy(), second

        loss = 0.0
        gradient = np.zeros(log_bandwidth.size)
        second = 0.0
        for chunk_loss, first, curvature in self._for_each_chunk(rows, terms):
            loss += chunk_loss
            if first is not None:
                gradient += first
            if curvature is not None:
                second += curvature
        total_weight = self.sample_weight_numpy[rows].sum()
        if order == 0:
            return loss / total_weight, None, None
        return (
            loss / total_weight,
            gradient / total_weight,
            second / total_weight if order == 2 else None,
        )

    def in_float32(self):
        """This objective: the local fits need float64 moments even to rank
        widths."""
        return self

    def losses_at(self, log_bandwidths, rows=None, log_relative=None, per_row=False):
        """The loss at each of several widths along one ray, as
        :meth:`~sknw._loo_objective.LeaveOneOutObjective.losses_at` gives
        it, one width after the other."""
        rows = (
            np.arange(self.n_samples) if rows is None else np.asarray(rows, dtype=int)
        )
        offset = 0.0 if log_relative is None else np.asarray(log_relative)
        row_losses = np.column_stack(
            [
                self._row_losses(np.atleast_1d(t + offset), rows)
                for t in np.ravel(log_bandwidths)
            ]
        )
        row_losses /= self.sample_weight_numpy[rows].sum()
        losses = row_losses.sum(axis=0)
        return (losses, row_losses) if per_row else losses

    def _row_losses(self, log_bandwidth, rows):
        """Each row's c_i-weighted squared error (mean over outputs)."""
        log_h = self._tensor(log_bandwidth)

        def chunk_losses(batch, chunk):
            chunk = torch.as_tensor(chunk, device=self.device)
            predictions = self._predictions(log_h, chunk)
            errors = (predictions - self.values[chunk]).square().mean(dim=1)
            return (errors * self.sample_weight[chunk]).cpu().numpy()

        row_losses = self._for_each_chunk(rows, chunk_losses)
        return np.concatenate(row_losses) if row_losses else np.zeros(0)

    def predictions(self, log_bandwidth, rows=None):
        """The leave-one-out predictions of ``rows`` (all when None).

        Returns
        -------
        predictions : ndarray of shape (n_rows, n_outputs)
        """
        log_h = self._tensor(np.ravel(log_bandwidth))
        rows = np.arange(self.n_samples) if rows is None else np.asarray(rows)

        def chunk_predictions(batch, chunk):
            chunk = torch.as_tensor(chunk, device=self.device)
            return self._predictions(log_h, chunk).cpu().numpy()

        return np.concatenate(self._for_each_chunk(rows, chunk_predictions))

    def _predictions(self, log_h, chunk):
        """Leave-one-out predictions of a chunk of rows, differentiable in
        ``log_h`` when it requires a gradient.

        Parameters
        ----------
        log_h : tensor of shape (1,) or (n_features,)
        chunk : tensor of int of shape (n_rows,)

        Returns
        -------
        predictions : tensor of shape (n_rows, n_outputs)
        """
        position = torch.arange(len(chunk), device=self.device)
        sq = self._squared(log_h, chunk)
        keeps = self.kept_weight[chunk, None] > 0
        differentiable = sq.requires_grad
        with torch.no_grad():
            masked = sq.detach().clone() if differentiable else sq
            # The left-out sample takes no part in its own prediction.
            masked[position, chunk] = torch.inf
            nearest = masked.amin(dim=1, keepdim=True)
            shift = torch.where(keeps, 0.0, nearest)
        if differentiable:
            weights = self._kernel(sq, shift)
            weights = weights.index_put((position, chunk), weights.new_zeros(()))
        else:
            # In place: the left-out pair, at u = inf, gets weight 0.
            weights = self._kernel_in_place(sq, shift)
        sums = times(weights, self.columns) + self.kept_columns[chunk]
        totals = sums[:, -1:]
        empty = ~(totals[:, 0] > 0)
        if bool(empty.any()):
            # No other sample within reach of a compact kernel: the fit on
            # the nearest others, ties included, as a full fit does.
            with torch.no_grad():
                distances = self._squared(log_h.detach(), chunk[empty])
                distances[position[: len(distances)], chunk[empty]] = torch.inf
                tied = distances <= distances.amin(dim=1, keepdim=True)
                tied &= torch.isfinite(distances)
                nearest_sums = torch.zeros_like(sums.detach())
                nearest_sums[empty] = tied.to(self.dtype) @ self.columns
            sums = torch.where(empty[:, None], nearest_sums, sums)
            totals = sums[:, -1:]
        mean_moments = sums[:, :-1] / totals
        bandwidth = torch.exp(log_h.detach()).expand(self.n_features) / self.x_scale
        fit, _, _ = local_linear_fit(
            mean_moments, self.queries[chunk], bandwidth, self.n_outputs
        )
        return fit * self.y_scale

    def _squared(self, log_h, chunk):
        """u^2 of a chunk of rows against every sample (a new block).

        From the kept distances when they fit (see
        :meth:`~sknw._loo_objective.PairwiseObjective._distance_cache`);
        otherwise summed feature by feature from coordinate differences,
        with one width the sum taken first and multiplied by h^-2 once.
        """
        factors = torch.exp(-2 * log_h)
        cache = self._distance_cache(log_h.numel() > 1)
        if cache is not None:
            rows = chunk.cpu().numpy()
            sq = None
            for distances, factor in zip(cache, factors):
                term = self._rows_of(distances, rows, chunk) * factor
                sq = term if sq is None else sq + term
            return sq
        queries = self.X[chunk]
        keys_t = self.X.T
        per_feature = log_h.numel() > 1
        grad = log_h.requires_grad
        sq = None
        for feature in range(self.n_features):
            difference = queries[:, feature, None] - keys_t[feature, None, :]
            term = difference.square_()
            if per_feature:
                term = term * factors[feature] if grad else term.mul_(factors[feature])
            if sq is None:
                sq = term
            elif per_feature and grad:
                sq = sq + term
            else:
                sq.add_(term)
        if not per_feature:
            sq = sq * factors[0] if grad else sq.mul_(factors[0])
        if self.key_factor is not None:
            sq = sq * self.key_factor[None, :]
        if self.row_factor is not None:
            sq = sq * self.row_factor[chunk, None]
        return sq

    def _kernel(self, sq, shift):
        """Kernel weights of u^2 = ``sq``, the log-domain kernels divided by
        their weight at the shift (the nearest other sample, or u = 0 where
        the row keeps weight of its own): a softmax's shift, which no local
        fit sees. The left-out pair's entry is overwritten by the caller."""
        if self.name == "gaussian":
            # Clamped at 0 where the left-out pair lies nearer than the shift.
            return torch.exp2((-0.5 * LOG2_E * (sq - shift)).clamp(max=0))
        u = _safe_sqrt(sq)
        if self.name == "exponential":
            return torch.exp2((LOG2_E * (_safe_sqrt(shift) - u)).clamp(max=0))
        return self.kernel.function(u)

    def _kernel_in_place(self, sq, shift):
        """:meth:`_kernel` computed in the block of ``sq``, whose entries of
        u = inf get weight 0."""
        if self.name == "gaussian":
            return sq.sub_(shift).mul_(-0.5 * LOG2_E).clamp_(max=0).exp2_()
        if self.name == "exponential":
            u = sq.sqrt_()
            return u.sub_(shift.sqrt()).mul_(-LOG2_E).clamp_(max=0).exp2_()
        kernel = self.kernel
        if kernel.in_place is None:
            return kernel.function(sq.sqrt_())
        return kernel.in_place(sq if kernel.of_squared else sq.sqrt_())


def _safe_sqrt(sq):
    """sqrt(u^2) with a zero derivative at 0 rather than an infinite one."""
    positive = sq > 0
    return torch.where(positive, torch.where(positive, sq, 1.0).sqrt(), 0.0)

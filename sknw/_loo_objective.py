"""Chunked torch leave-one-out loss of the bandwidth, and its gradient."""

# Authors: the sknw developers
# License: BSD 3 clause

import warnings

import numpy as np
import torch
from sklearn import get_config
from sklearn.utils import gen_batches

from sknw import _triton
from sknw._kernels import KERNELS

# Blocks of (chunk_n_rows, n_samples) that autograd keeps alive for one chunk:
# squared distances, log-weights or u, weights, their masked copy, and the
# gradients flowing back through them.
_BLOCKS_PER_ROW = 6

# Below this a probability counts as this: the log-loss of a sample that no
# other sample of its class reaches stays finite (its gradient is then 0).
PROBABILITY_FLOOR = np.finfo(np.float64).eps


class LeaveOneOutObjective:
    """Leave-one-out loss of Nadaraya-Watson as a function of log-bandwidths.

    Each training row is predicted from all the other rows; the loss is the
    sample-weighted mean over the rows asked for of the squared error (mean
    over outputs) or of the log-loss of the true class.

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
        Positive sample weights.
    key_widths : ndarray of shape (n_samples,) or None
        Local factors of each sample's width as a key.
    query_widths : ndarray of shape (n_samples,) or None
        Local factors of each sample's width as the left-out query.
    device : torch.device
        Where to compute. On CUDA, without local widths, the left-out
        predictions and their gradient come from fused float32 Triton
        kernels that store no (n_samples, n_samples) block; elsewhere, or
        when Triton is missing (with a warning), everything is in float64.
    """

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
        self.dtype = torch.float64
        self.device = device
        self.kernel_name = kernel
        self.kernel = KERNELS[kernel]
        self.loss = loss
        self.n_samples = X.shape[0]
        lowest, highest = np.min(X, axis=0), np.max(X, axis=0)
        # Centred, so the squared distance expansion stays accurate.
        self.X = self._tensor(X - (lowest / 2 + highest / 2))
        self.values = self._tensor(values)
        if sample_weight is None:
            sample_weight = np.ones(self.n_samples)
        self.sample_weight = self._tensor(sample_weight)
        # u^2 of each pair is divided by the key's and the query's local
        # width squared.
        self.key_factor = None
        if key_widths is not None:
            self.key_factor = self._tensor(1.0 / np.asarray(key_widths) ** 2)[None, :]
        self.row_factor = None
        if query_widths is not None:
            self.row_factor = self._tensor(1.0 / np.asarray(query_widths) ** 2)
        itemsize = 8
        budget = get_config()["working_memory"] * 2**20
        self.chunk_n_rows = max(
            1, int(budget // (_BLOCKS_PER_ROW * self.n_samples * itemsize))
        )
        self.fused = self.key_factor is None and self.row_factor is None
        self.fused = self.fused and _use_fused(device, kernel)

    def _tensor(self, array):
        array = np.ascontiguousarray(array, dtype=np.float64)
        return torch.as_tensor(array, device=self.device)

    def _scalar(self, value):
        return torch.tensor(value, dtype=self.dtype, device=self.device)

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
        log_h = self._tensor(log_bandwidth).requires_grad_(True)
        rows = (
            np.arange(self.n_samples) if rows is None else np.asarray(rows, dtype=int)
        )
        rows_t = torch.as_tensor(rows, device=self.device)
        row_weight = self.sample_weight[rows_t]
        total_row_weight = float(row_weight.sum())
        if self.fused:
            losses = self._fused_row_losses(log_h, rows_t)
            loss = (losses * row_weight).sum() / total_row_weight
            loss.backward()
            return float(loss.detach()), log_h.grad.cpu().numpy().copy()
        loss_sum = 0.0
        # Forward and backward chunk by chunk: only one chunk's graph, a few
        # (chunk, n_samples) blocks, is alive at a time.
        for batch in gen_batches(len(rows), self.chunk_n_rows):
            losses = self._row_losses(log_h, rows_t[batch])
            chunk_loss = (losses * row_weight[batch]).sum() / total_row_weight
            chunk_loss.backward()
            loss_sum += float(chunk_loss.detach())
        return loss_sum, log_h.grad.cpu().numpy().copy()

    def _row_losses(self, log_h, rows):
        kernel = self.kernel
        keys = self.X / torch.exp(log_h)
        queries = keys[rows]
        sq_u = torch.addmm(
            (keys * keys).sum(dim=1).unsqueeze(0), queries, keys.T, alpha=-2.0
        )
        sq_u = (sq_u + (queries * queries).sum(dim=1, keepdim=True)).clamp(min=0)
        if self.key_factor is not None:
            sq_u = sq_u * self.key_factor
        # Nearest in u, whatever the bandwidth: the Gaussian's limit.
        sq_relative = sq_u.detach()
        if self.row_factor is not None:
            sq_u = sq_u * self.row_factor[rows, None]
        position = torch.arange(len(rows), device=self.device)
        if kernel.log_slope is not None:
            # u = sqrt(u^2) has an infinite slope at 0; the floor gives a zero
            # gradient there instead of 0 * inf.
            argument = sq_u if not kernel.exact_distances else _safe_sqrt(sq_u)
            log_weights = kernel.log_slope * argument
            # The left-out sample takes no part in its own prediction.
            log_weights = log_weights.index_put((position, rows), self._scalar(-np.inf))
            row_max = log_weights.detach().amax(dim=1, keepdim=True)
            row_max = row_max.masked_fill(~torch.isfinite(row_max), 0.0)
            weights = torch.exp(log_weights - row_max)
        else:
            weights = kernel.function(_safe_sqrt(sq_u))
            weights = weights.index_put((position, rows), self._scalar(0.0))
        weights = weights * self.sample_weight
        totals = weights.sum(dim=1, keepdim=True)
        empty = ~(totals > 0)
        predictions = (weights @ self.values) / torch.where(empty, 1.0, totals)
        if bool(empty.any()):
            predictions = torch.where(
                empty, self._nearest_values(sq_relative, rows, position), predictions
            )
        return self._prediction_losses(predictions, rows)

    def _fused_row_losses(self, log_h, rows):
        predictions, empty = _triton.leave_one_out_predictions(
            log_h,
            self.X,
            self.values,
            self.sample_weight,
            rows,
            self.kernel_name,
            centre=self.loss == "squared_error",
        )
        empty_rows = torch.nonzero(empty).flatten()
        if len(empty_rows):
            # Exact differences for the nearest others; in chunks, as their
            # (n_empty, n_samples) block may be large.
            nearest = torch.empty(
                (len(empty_rows), self.values.shape[1]),
                dtype=self.dtype,
                device=self.device,
            )
            scaled = self.X.detach() / torch.exp(log_h.detach())
            for batch in gen_batches(len(empty_rows), self.chunk_n_rows):
                chunk_rows = rows[empty_rows[batch]]
                sq_u = torch.cdist(
                    scaled[chunk_rows],
                    scaled,
                    compute_mode="donot_use_mm_for_euclid_dist",
                ).square_()
                position = torch.arange(len(chunk_rows), device=self.device)
                nearest[batch] = self._nearest_values(sq_u, chunk_rows, position)
            predictions = predictions.index_put((empty_rows,), nearest)
        return self._prediction_losses(predictions, rows)

    def _prediction_losses(self, predictions, rows):
        targets = self.values[rows]
        if self.loss == "squared_error":
            return ((predictions - targets) ** 2).mean(dim=1)
        probability = (predictions * targets).sum(dim=1)
        return -torch.log(probability.clamp(min=PROBABILITY_FLOOR))

    def _nearest_values(self, sq_u, rows, position):
        """Average of the nearest other samples' values (ties averaged)."""
        sq_u = sq_u.index_put((position, rows), self._scalar(np.inf))
        nearest = (sq_u <= sq_u.amin(dim=1, keepdim=True)) * self.sample_weight
        return (nearest @ self.values) / nearest.sum(dim=1, keepdim=True)


def _use_fused(device, kernel):
    """Whether the fused Triton kernels compute the objective on ``device``.

    On CUDA they do whenever Triton runs; without it the float64 path runs,
    with a warning that says why.
    """
    if not (device.type == "cuda" or _triton._FORCE):
        return False
    if not _triton.supports_kernel(kernel):
        return False
    available, reason = _triton.triton_available()
    if not available and device.type == "cuda":
        warnings.warn(
            f"The fused GPU kernels cannot run: {reason}. The leave-one-out "
            "loss is computed in float64 with torch instead, which stores "
            "blocks of (rows, n_samples) and is slower.",
            UserWarning,
        )
    return available


def _safe_sqrt(sq):
    return torch.sqrt(sq.clamp(min=np.finfo(np.float64).tiny))

"""Base class shared by the Nadaraya-Watson regressor and classifier."""

# Authors: the sknw developers
# License: BSD 3 clause

from numbers import Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from sknw._bandwidth import BANDWIDTH_RULES
from sknw._engine import attention, nadaraya_watson
from sknw._kernels import KERNELS
from sknw._validation import (
    check_bandwidth_array,
    check_device,
    check_kernel_callable,
    check_sample_weight,
)

FLOAT_DTYPES = (np.float64, np.float32)


class _BaseNadarayaWatson(BaseEstimator):
    """Parameters, fit preamble and attention weights of both estimators."""

    _parameter_constraints: dict = {
        "kernel": [StrOptions(set(KERNELS)), callable],
        "bandwidth": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions(set(BANDWIDTH_RULES)),
            "array-like",
        ],
        "device": [str, torch.device],
    }

    def __init__(self, kernel="gaussian", bandwidth=1.0, *, device="cpu"):
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.device = device

    def attention_weights(self, X):
        """Normalised attention of each query over the training samples.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query points.

        Returns
        -------
        attention : ndarray of shape (n_queries, n_samples_fit)
            Row i holds the weights that the prediction at ``X[i]`` gives the
            training samples: every entry is >= 0 and every row sums to 1.
            This matrix is the one output not bounded by ``working_memory``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=FLOAT_DTYPES)
        return attention(
            X,
            self._fit_X,
            bandwidth=self.bandwidth_,
            kernel=self.kernel,
            sample_weight=self._fit_sample_weight,
            device=self.device,
        )

    def _check_fit_inputs(self, X, sample_weight):
        """Checks at the top of ``fit`` that no constraint expresses."""
        sample_weight = check_sample_weight(sample_weight, X.shape[0], X.dtype)
        if callable(self.kernel):
            check_kernel_callable(self.kernel)
        check_device(self.device)
        return sample_weight

    def _resolve_bandwidth(self, X, sample_weight):
        """The width in use: a float, or an ndarray of shape (n_features,)."""
        if isinstance(self.bandwidth, str):
            return BANDWIDTH_RULES[self.bandwidth](X, sample_weight)
        if isinstance(self.bandwidth, Real):
            return float(self.bandwidth)
        return check_bandwidth_array(self.bandwidth, X.shape[1])

    def _weighted_average(self, X, values):
        """Attention-weighted average of ``values`` at the queries ``X``."""
        return nadaraya_watson(
            X,
            self._fit_X,
            values,
            bandwidth=self.bandwidth_,
            kernel=self.kernel,
            sample_weight=self._fit_sample_weight,
            device=self.device,
        )

"""Local linear kernel regression, and its slopes."""

# Authors: the sknw developers
# License: BSD 3 clause

import warnings

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from sknw._base import FLOAT_DTYPES, _BaseNadarayaWatson, _BaseNadarayaWatsonCV
from sknw._engine import attention, bandwidth_per_feature, nadaraya_watson, partial_sums
from sknw._local_moments import (
    local_fit_from_partial_sums,
    moment_columns,
    moment_frame,
    smoother_weights,
)
from sknw._loo_local_linear import LocalLinearLeaveOneOut
from sknw._neighbors import tree_partial_sums
from sknw._uncertainty import (
    check_alpha,
    check_leaves_one_out,
    check_noise,
    local_linear_jackknife_plus,
    local_linear_leave_one_out,
    local_linear_variance,
    residual_terms,
)


class _LocalLinearFitPredict:
    """The target encoding, ``predict`` and ``predict_gradient`` of the
    local linear regressors."""

    _loo_objective = LocalLinearLeaveOneOut

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def predict(self, X, return_std=False, noise="local"):
        """The local linear fit at each query.

        With ``return_std=True``, also the standard error of each prediction.
        The fit is linear in the targets, sum_i a_i(q) y_i, with the local
        linear smoother weights a_i(q) (see :meth:`attention_weights`): they
        sum to 1 and may be negative. For independent targets of variances
        sigma**2(x_i), its variance is sum_i a_i(q)**2 sigma**2(x_i): the
        variance of the estimate around its expectation, which does not
        include the bias. Sample weights count as frequencies. See
        :ref:`uncertainty`.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query points.

        return_std : bool, default=False
            Also return the standard error of each prediction.

        noise : {"local", "constant"}, default="local"
            How sigma**2 is estimated from the leave-one-out residuals of the
            training samples, as in :meth:`NadarayaWatsonRegressor.predict`:
            "local" smooths their squares with the Nadaraya-Watson weights
            of the same kernel and width, "constant" takes their weighted
            mean. Ignored unless ``return_std``.

        Returns
        -------
        y_pred : ndarray of shape (n_queries,) or (n_queries, n_outputs)
            Predictions, shaped as the ``y`` given to ``fit``.

        y_std : ndarray of shape (n_queries,) or (n_queries, n_outputs)
            Standard errors of the predictions, one per output. Only with
            ``return_std=True``.
        """
        check_noise(noise)
        if not return_std:
            fit, _ = self._local_fit(X)
            return fit.ravel() if self._fit_y_ndim == 1 else fit
        fit, std = self._fit_with_std(X, noise)
        if self._fit_y_ndim == 1:
            return fit.ravel(), std.ravel()
        return fit, std

    def predict_interval(self, X, alpha=0.1):
        """Jackknife+ prediction intervals for new observations.

        As :meth:`NadarayaWatsonRegressor.predict_interval`, with the local
        linear fits: for each training sample i, mu_i(q) is the local linear
        fit at q without it (without one unit of its frequency weight) and
        R_i = abs(y_i - mu_i(x_i)); the interval runs from the
        floor(alpha (n + 1))-th smallest of mu_i(q) - R_i to the
        ceil((1 - alpha)(n + 1))-th smallest of mu_i(q) + R_i, and covers a
        new exchangeable observation with probability at least
        1 - 2 * alpha. Every mu_i(q) follows from the local sums at q by a
        rank-one downdate, so the exact intervals cost one pass over the
        training samples per query. See :ref:`uncertainty`.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query points.

        alpha : float in (0, 1), default=0.1
            Miscoverage level; at least 1 / (n + 1).

        Returns
        -------
        y_interval : ndarray of shape (n_queries, 2) or \
                (n_queries, n_outputs, 2)
            The lower (``[..., 0]``) and upper (``[..., 1]``) bounds, per
            output when ``y`` had two dimensions.

        Examples
        --------
        >>> import numpy as np
        >>> from sknw import LocalLinearRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = np.linspace(0, 5, 40)[:, None]
        >>> y = 2 * np.sin(X[:, 0]) + X[:, 0] ** 0.8 + rng.normal(0, 0.5, 40)
        >>> reg = LocalLinearRegressor(bandwidth=0.4).fit(X, y)
        >>> interval = reg.predict_interval([[1.0], [2.5]], alpha=0.1)
        >>> interval.shape
        (2, 2)
        >>> bool(np.all(interval[:, 0] < reg.predict([[1.0], [2.5]])))
        True
        """
        check_is_fitted(self)
        total = self._total_weight()
        check_alpha(alpha, total)
        X = validate_data(self, X, reset=False, dtype=FLOAT_DTYPES)
        dtype = np.float32 if self._fit_float32 and X.dtype == np.float32 else None
        X = X.astype(np.float64)
        terms = self._leave_one_out_terms()
        queries, settings = self._engine_settings(X)
        intervals = local_linear_jackknife_plus(
            queries,
            self._fit_X,
            self._fit_moments,
            terms["residuals"],
            alpha=alpha,
            **self._frame_arguments(X),
            **settings,
        )
        intervals *= self._moment_frame.y_scale[None, :, None]
        if dtype is not None:
            intervals = intervals.astype(dtype)
        return intervals[:, 0] if self._fit_y_ndim == 1 else intervals

    def predict_gradient(self, X):
        """The slopes of the local linear fit at each query.

        The gradient of the fitted line at the query with respect to the
        features: statsmodels' marginal effects of ``KernelReg(reg_type="ll")``
        and R np's ``gradients=TRUE``. It is 0 where the fit falls back to
        the local constant one (see Notes of the estimator).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query points.

        Returns
        -------
        gradient : ndarray of shape (n_queries, n_features) or \
                (n_queries, n_outputs, n_features)
            The slope of each output along each feature, shaped after the
            ``y`` given to ``fit``: one row per query for a 1-D ``y``.
        """
        _, slope = self._local_fit(X)
        slope = np.swapaxes(slope, 1, 2)
        return slope[:, 0, :] if self._fit_y_ndim == 1 else slope

    def attention_weights(self, X):
        """The weight of each training target in the prediction at each query.

        The local linear fit is linear in the targets: the prediction at
        ``X[i]`` is ``attention_weights(X)[i] @ y``. Row i is the kernel
        attention a_j reweighted by the fitted line,
        ``a_j (1 + (q - m)^T C^-1 (x_j - m))``, with m and C the local
        weighted mean and covariance of x: it sums to 1 but, unlike
        Nadaraya-Watson's, may have negative entries (the "equivalent
        kernel" of local linear regression). Where the fit falls back to the
        local constant one, the row is the kernel attention itself.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query points.

        Returns
        -------
        weights : ndarray of shape (n_queries, n_samples_fit)
            This matrix is the one output not bounded by ``working_memory``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=FLOAT_DTYPES)
        X = X.astype(np.float64)
        queries, settings = self._engine_settings(X)
        weights = attention(queries, self._fit_X, **settings)
        return smoother_weights(
            weights, self._user_fit_X(), X, self._bandwidth_array(), self._moment_frame
        )

    def _frame_arguments(self, X):
        """Queries and widths in the moments' frame, and the outputs."""
        frame = self._moment_frame
        return dict(
            frame_queries=(X - frame.centre) / frame.x_scale,
            frame_bandwidth=self._bandwidth_array() / frame.x_scale,
            n_outputs=len(frame.y_scale),
        )

    def _fit_with_std(self, X, noise):
        """The fits and their standard errors at the queries, shaped
        (n_queries, n_outputs) both."""
        check_is_fitted(self)
        terms = self._leave_one_out_terms()
        if noise == "constant":
            noise_columns = np.ones((self._fit_X.shape[0], 1))
        else:
            noise_columns = self._local_noise()
        X_given = validate_data(self, X, reset=False, dtype=FLOAT_DTYPES)
        dtype = (
            np.float32
            if self._fit_float32 and X_given.dtype == np.float32
            else np.float64
        )
        X = X_given.astype(np.float64)
        queries, settings = self._engine_settings(X)
        fit, variance = local_linear_variance(
            queries,
            self._fit_X,
            self._fit_moments,
            noise_columns,
            **self._frame_arguments(X),
            **settings,
        )
        if noise == "constant":
            variance = variance * terms["noise_level"]
        y_scale = self._moment_frame.y_scale
        std = np.sqrt(np.maximum(variance, 0.0)) * y_scale
        if self._fit_method == "dense":
            fit = fit * y_scale
        else:
            fit, _ = self._local_fit(X_given)
        return fit.astype(dtype, copy=False), std.astype(dtype, copy=False)

    def _leave_one_out_terms(self):
        """Leave-one-out residuals and noise levels, in the moments' units of
        y, computed at the first request after ``fit``.

        Returns
        -------
        terms : dict
            ``residuals``: absolute leave-one-out residuals, shape
            (n_samples, n_outputs); ``noise_level``: the constant noise
            variance per output; ``scaled_squares``: the squared residuals
            divided by 1 + the sums of squared smoother weights of their
            left-out fits.
        """
        cache = self._uncertainty_cache
        if "residuals" in cache:
            return cache
        check_leaves_one_out(self._fit_sample_weight, self._fit_X.shape[0])
        user_X = self._user_fit_X()
        settings = self._engine_settings(self._fit_X, internal=True)[1]
        frame = self._frame_arguments(user_X)
        predictions, variance = local_linear_leave_one_out(
            self._fit_X,
            self._fit_moments,
            np.ones((self._fit_X.shape[0], 1)),
            frame_keys=frame.pop("frame_queries"),
            **frame,
            **settings,
        )
        n_features = self.n_features_in_
        n_products = n_features * (n_features + 1) // 2
        start = n_features + n_products
        targets = self._fit_moments[:, start : start + predictions.shape[1]]
        cache.update(
            residual_terms(targets, predictions, variance, self._fit_sample_weight)
        )
        return cache

    def _local_noise(self):
        """sigma**2 at the training samples: the scaled squared leave-one-out
        residuals smoothed by Nadaraya-Watson with the fitted kernel and
        width (a local linear smooth of squares could be negative), cached."""
        cache = self._leave_one_out_terms()
        if "local_noise" not in cache:
            cache["local_noise"] = nadaraya_watson(
                self._fit_X,
                self._fit_X,
                cache["scaled_squares"],
                **self._engine_settings(self._fit_X, internal=True)[1],
            ).astype(np.float64)
        return cache["local_noise"]

    def _encode_targets(self, X, y):
        # The moments are computed in float64 whatever the input's dtype.
        self._fit_float32 = X.dtype == np.float32
        X, values = super()._encode_targets(X.astype(np.float64), y)
        values = values.astype(np.float64)
        self._moment_frame = moment_frame(
            X.min(axis=0), X.max(axis=0), np.abs(values).max(axis=0)
        )
        self._fit_moments = moment_columns(X, values, self._moment_frame)
        # The leave-one-out residuals behind standard errors and intervals,
        # computed when first asked for.
        self._uncertainty_cache = {}
        return X, values

    def _user_fit_X(self):
        """The training inputs in the user's units (the engine keeps them
        scaled by a power of 2 when they are tiny)."""
        if self._coordinate_scale == 1:
            return self._fit_X
        return self._fit_X / self._coordinate_scale

    def _bandwidth_array(self):
        return bandwidth_per_feature(self.bandwidth_, self.n_features_in_).copy()

    def _local_fit(self, X):
        """The fitted values and slopes at the queries.

        Returns
        -------
        fit : ndarray of shape (n_queries, n_outputs)
        slope : ndarray of shape (n_queries, n_features, n_outputs)
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=FLOAT_DTYPES)
        dtype = np.float32 if self._fit_float32 and X.dtype == np.float32 else None
        X = X.astype(np.float64)
        queries, settings = self._engine_settings(X)
        if self._fit_method == "dense":
            partial = partial_sums(queries, self._fit_X, self._fit_moments, **settings)
        else:
            settings.pop("device")
            partial = tree_partial_sums(
                queries,
                self._fit_X,
                self._fit_moments,
                truncation=self._fit_config["truncation"],
                tree=self._tree,
                **settings,
            )
        fit, slope = local_fit_from_partial_sums(
            [partial], X, self._bandwidth_array(), self._moment_frame
        )
        if dtype is not None:
            fit, slope = fit.astype(dtype), slope.astype(dtype)
        return fit, slope


class LocalLinearRegressor(RegressorMixin, _LocalLinearFitPredict, _BaseNadarayaWatson):
    """Local linear kernel regression, and the slopes it estimates.

    At each query q, the line fitted by weighted least squares to the
    training samples, with the kernel weights of
    :class:`NadarayaWatsonRegressor`,

        (a, b) = argmin sum_i K(u_i) s_i (y_i - a - b^T (x_i - q))**2,
        u_i = ||(q - x_i) / h||,

    predicts a, and its slope b is the estimated gradient (see
    :meth:`predict_gradient`). Nadaraya-Watson fits a constant instead: it is
    biased where the samples lie on one side of the query (at the edges of
    the data) or unevenly around it; the local linear fit removes that
    first-order bias, at the price of a slightly larger variance.

    Read more in the :ref:`User Guide <local_linear>`.

    Parameters
    ----------
    kernel : str or callable, default="gaussian"
        The kernel K(u), as in :class:`NadarayaWatsonRegressor`.

    bandwidth : float, array-like of shape (n_features,), or \
            {"scott", "silverman"}, default=1.0
        The width h, as in :class:`NadarayaWatsonRegressor`.

    adaptive : {"sample", "query"} or None, default=None
        Local widths, as in :class:`NadarayaWatsonRegressor`.

    n_neighbors : int, default=10
        The k of ``adaptive``; ignored without it.

    algorithm : {"auto", "dense", "tree"}, default="auto"
        How predictions weigh the training samples, as in
        :class:`NadarayaWatsonRegressor`.

    truncation : float in (0, 1) or None, default=None
        As in :class:`NadarayaWatsonRegressor`.

    device : str or torch.device, default="cpu"
        Where to compute the weights, as in
        :class:`NadarayaWatsonRegressor`.

    Attributes
    ----------
    bandwidth_ : float or ndarray of shape (n_features,)
        The width in use after fit.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    LocalLinearRegressorCV : The width learned by exact leave-one-out.
    NadarayaWatsonRegressor : The local constant fit.
    sklearn.neighbors.KNeighborsRegressor : Average over the k nearest samples.
    sklearn.kernel_ridge.KernelRidge : Kernel ridge regression.

    Notes
    -----
    The fit needs, at each query, the kernel-weighted sums of 1, x, x x^T,
    y and x y^T over the training samples: the prediction engine computes
    them chunk by chunk as it computes Nadaraya-Watson's sums of 1 and y
    (one product of the weights with more columns), within
    ``working_memory``, on the dense or the tree path and on any device.
    The line is solved about the local weighted mean of x, in units of the
    width, which is the fit centred at the query written in better
    conditioned coordinates. The moments are computed in float64 whatever
    the input's dtype (float32 input gives float32 output), about the middle
    of the training range, with x and y scaled by powers of 2 into [-1, 1]
    (no product of them overflows): their rounding grows as the square of
    the training range over the width, about 1e-10 relative at a range of a
    thousand widths.

    Where the local design is singular, the fit falls back to the local
    constant one, Nadaraya-Watson's weighted mean, with slope 0: when fewer
    than n_features + 1 samples not on one hyperplane have weight (a compact
    kernel near or beyond the edge of the data, duplicated rows, collinear
    features), and more precisely when the smallest eigenvalue of the local
    covariance of x / h is below 1e-10 times its trace plus the squared
    distance, in widths, from the local mean to the middle of the training
    range. Predictions are never NaN. A query that no training sample
    reaches is fitted on its nearest training samples, as by
    Nadaraya-Watson: with a single nearest sample, its target.

    References
    ----------
    .. [1] J. Fan and I. Gijbels, "Local Polynomial Modelling and Its
       Applications", Chapman & Hall, 1996.
    .. [2] D. Ruppert and M. P. Wand, "Multivariate locally weighted least
       squares regression", The Annals of Statistics, 22(3), 1346-1370, 1994.

    Examples
    --------
    >>> import numpy as np
    >>> from sknw import LocalLinearRegressor
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> y = np.array([1.0, 3.0, 5.0, 7.0])
    >>> reg = LocalLinearRegressor(bandwidth=0.5).fit(X, y)
    >>> reg.predict([[0.0], [1.5], [4.0]]).round(4)
    array([1., 4., 9.])
    >>> reg.predict_gradient([[1.5]]).round(4)
    array([[2.]])
    """


class LocalLinearRegressorCV(
    RegressorMixin, _LocalLinearFitPredict, _BaseNadarayaWatsonCV
):
    """Local linear regression with the width learned by leave-one-out.

    The prediction is that of :class:`LocalLinearRegressor`; ``fit`` first
    learns the width that minimises the exact leave-one-out mean squared
    error of the local linear fit, each training row predicted from all the
    others (leaving out one unit of its frequency weight), with the search of
    :class:`NadarayaWatsonRegressorCV`. A linear smoother's leave-one-out
    prediction comes from its full fit: with yhat_i the fit at row i and
    L_ii the weight of y_i in it, row i's leave-one-out prediction is
    (yhat_i - L_ii y_i) / (1 - L_ii); the loss
    computes it from the weighted sums of the others, which is the same
    where the design without row i is regular and falls back to the local
    constant fit where it is not, as a refit without row i would.

    Read more in the :ref:`User Guide <local_linear>`.

    Parameters
    ----------
    kernel : str, default="gaussian"
        A kernel name whose weights change with the width, as in
        :class:`NadarayaWatsonRegressorCV`.

    bandwidth : float, array-like of shape (n_features,), or \
            {"scott", "silverman"}, default=1.0
        The start of the search. A float learns one width shared by all
        features; an array or a rule learns one width per feature.

    solver : {"auto", "lbfgs", "sgd", "adam"}, default="auto"
        The search, as in :class:`NadarayaWatsonRegressorCV`.

    learning_rate : float or "auto", default="auto"
        "sgd" and "adam" only, as in :class:`NadarayaWatsonRegressorCV`.

    batch_size : int or "auto", default="auto"
        "sgd" and "adam" only, as in :class:`NadarayaWatsonRegressorCV`.

    max_iter : int, default=100
        Most iterations of the search.

    tol : float, default=1e-4
        As in :class:`NadarayaWatsonRegressorCV`.

    random_state : int, RandomState instance or None, default=None
        As in :class:`NadarayaWatsonRegressorCV`.

    verbose : int, default=0
        Print the loss at each iteration when > 0.

    adaptive : {"sample", "query"} or None, default=None
        Local widths, as in :class:`NadarayaWatsonRegressor`; the width
        learned multiplies them.

    n_neighbors : int, default=10
        The k of ``adaptive``; ignored without it.

    algorithm : {"auto", "dense", "tree"}, default="auto"
        How predictions weigh the training samples; learning always computes
        every pair.

    truncation : float in (0, 1) or None, default=None
        As in :class:`NadarayaWatsonRegressor`.

    device : str or torch.device, default="cpu"
        Where to compute.

    Attributes
    ----------
    bandwidth_ : float or ndarray of shape (n_features,)
        The learned width.

    loss_curve_ : list of float
        The leave-one-out mean squared error at the start and after each
        iteration; ``loss_curve_[-1]`` is the loss at ``bandwidth_``.

    n_iter_ : int
        Iterations run, ``len(loss_curve_) - 1``, at least 1.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    LocalLinearRegressor : The same prediction with a width given.
    NadarayaWatsonRegressorCV : The local constant fit, its width learned.
    sklearn.linear_model.RidgeCV : Ridge regression with efficient
        leave-one-out cross-validation.

    Notes
    -----
    The loss and its derivatives are computed in float64, chunk by chunk
    within ``working_memory``, by torch's automatic differentiation of the
    local fits. At a very large width every local fit is the global
    weighted least-squares line, so a width learned at the upper bound of
    the search means that the global linear fit predicts best.

    Examples
    --------
    >>> import numpy as np
    >>> from sknw import LocalLinearRegressorCV
    >>> rng = np.random.RandomState(0)
    >>> X = np.sort(rng.uniform(0, 5, size=(100, 1)), axis=0)
    >>> y = 2 * np.sin(X[:, 0]) + X[:, 0] ** 0.8 + rng.normal(0, 0.5, 100)
    >>> reg = LocalLinearRegressorCV().fit(X, y)
    >>> reg.n_iter_ >= 1
    True
    """

    def _fit_bandwidth(self, X, values, sample_weight, local_widths, loss):
        # The learner's warning at the upper bound speaks of the weighted
        # mean, Nadaraya-Watson's limit; the local linear fit's is the
        # global linear one.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = super()._fit_bandwidth(
                X, values, sample_weight, local_widths, loss
            )
        for warning in caught:
            message = str(warning.message)
            if "at its upper bound" in message:
                message = (
                    f"{type(self).__name__}: the learned width is at its upper "
                    "bound, above which every left-out prediction is the global "
                    "weighted least-squares line through the others: the "
                    "features help predict the target only linearly under "
                    "this loss."
                )
            warnings.warn_explicit(
                message,
                warning.category,
                warning.filename,
                warning.lineno,
            )
        return result

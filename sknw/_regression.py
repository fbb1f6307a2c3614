"""Nadaraya-Watson kernel regression."""

# Authors: the sknw developers
# License: BSD 3 clause

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from sknw._base import FLOAT_DTYPES, _BaseNadarayaWatson, _BaseNadarayaWatsonCV
from sknw._engine import nadaraya_watson, numpy_dtype
from sknw._uncertainty import (
    check_alpha,
    check_leaves_one_out,
    check_noise,
    jackknife_plus,
    leave_one_out,
    prediction_variance,
    residual_terms,
)


class _RegressorFitPredict:
    """The target encoding and ``predict`` of the Nadaraya-Watson
    regressors."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def predict(self, X, return_std=False, noise="local"):
        """Attention-weighted average of the training targets at each query.

        With ``return_std=True``, also the standard error of each prediction:
        for normalised weights a_i(q) that sum to 1, the prediction
        sum_i a_i(q) y_i has variance sum_i a_i(q)**2 sigma**2(x_i) when the
        targets are independent with variances sigma**2(x_i). This is the
        variance of the estimate around its expectation, the smoothed
        regression function: it does not include the bias, which a wide
        bandwidth makes large where the function curves. Sample weights
        count as frequencies: a weight of 2 is two independent observations.
        See :ref:`uncertainty`.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query points.

        return_std : bool, default=False
            Also return the standard error of each prediction.

        noise : {"local", "constant"}, default="local"
            How sigma**2 is estimated, from the leave-one-out residuals r_i
            of the training samples (each divided by 1 + its own
            leave-one-out sum of squared weights, whose variance it also
            carries). "constant": one variance per output, their weighted
            mean, for homoscedastic noise. "local": sigma**2(x) smoothed
            from the squared residuals by the same kernel and width, which
            follows a noise level that changes with x and is consistent
            whether or not it does; the default for that reason, at the
            price of more variable standard errors where few samples lie.
            Ignored unless ``return_std``.

        Returns
        -------
        y_pred : ndarray of shape (n_queries,) or (n_queries, n_outputs)
            Predictions, shaped as the ``y`` given to ``fit``.

        y_std : ndarray of shape (n_queries,) or (n_queries, n_outputs)
            Standard errors of the predictions, one per output. Only with
            ``return_std=True``.
        """
        check_is_fitted(self)
        check_noise(noise)
        X = validate_data(self, X, reset=False, dtype=FLOAT_DTYPES)
        if not return_std:
            y_pred = self._weighted_average(X)
        else:
            y_pred, y_std = self._predict_with_std(X, noise)
        if self._fit_y_ndim == 1:
            y_pred = y_pred.ravel()
            if return_std:
                y_std = y_std.ravel()
        return (y_pred, y_std) if return_std else y_pred

    def predict_interval(self, X, alpha=0.1):
        """Jackknife+ prediction intervals for new observations.

        For each training sample i, the model fitted without it (without one
        unit of its frequency weight) predicts mu_i(q) at a query q and has
        the leave-one-out residual R_i = abs(y_i - mu_i(x_i)). The interval is

            [q_lower(mu_i(q) - R_i), q_upper(mu_i(q) + R_i)],

        with q_upper the ceil((1 - alpha)(n + 1))-th smallest of the n values
        and q_lower the floor(alpha (n + 1))-th smallest (Barber, Candes,
        Ramdas and Tibshirani, 2021). A new observation exchangeable with the
        training samples falls inside with probability at least
        1 - 2 * alpha, and in practice about 1 - alpha. For Nadaraya-Watson
        every mu_i(q) follows from the sums that predict at q, so the exact
        intervals cost one pass over the training samples and a selection
        per query. Sample weights count as frequencies: n is their sum and
        each sample counts its weight times in the quantiles. See
        :ref:`uncertainty`.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query points.

        alpha : float in (0, 1), default=0.1
            Miscoverage level: the intervals aim at coverage 1 - alpha. It
            must be at least 1 / (n + 1), or the upper bound would be
            infinite.

        Returns
        -------
        y_interval : ndarray of shape (n_queries, 2) or \
                (n_queries, n_outputs, 2)
            The lower (``[..., 0]``) and upper (``[..., 1]``) bounds, per
            output when ``y`` had two dimensions.

        Examples
        --------
        >>> import numpy as np
        >>> from sknw import NadarayaWatsonRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = np.linspace(0, 5, 40)[:, None]
        >>> y = 2 * np.sin(X[:, 0]) + X[:, 0] ** 0.8 + rng.normal(0, 0.5, 40)
        >>> reg = NadarayaWatsonRegressor(bandwidth=0.4).fit(X, y)
        >>> y_pred, y_std = reg.predict([[1.0], [2.5]], return_std=True)
        >>> y_pred.round(3), y_std.round(3)
        (array([2.459, 3.257]), array([0.144, 0.119]))
        >>> reg.predict_interval([[1.0], [2.5]], alpha=0.1).round(3)
        array([[1.599, 3.232],
               [2.445, 4.069]])
        """
        check_is_fitted(self)
        check_alpha(alpha, self._total_weight())
        X = validate_data(self, X, reset=False, dtype=FLOAT_DTYPES)
        terms = self._leave_one_out_terms()
        queries, settings = self._engine_settings(X)
        intervals = jackknife_plus(
            queries,
            self._fit_X,
            self._fit_values,
            terms["residuals"],
            alpha=alpha,
            **settings,
        )
        # The training values are kept divided by a power of 2 per output.
        intervals = (intervals * self._value_scale[None, :, None]).astype(
            intervals.dtype, copy=False
        )
        if self._fit_y_ndim == 1:
            intervals = intervals[:, 0]
        return intervals

    def _encode_targets(self, X, y):
        # The leave-one-out residuals behind standard errors and intervals,
        # computed when first asked for.
        self._uncertainty_cache = {}
        return super()._encode_targets(X, y)

    def _predict_with_std(self, X, noise):
        """Predictions and their standard errors, shaped (n_queries, n_outputs)."""
        terms = self._leave_one_out_terms()
        if noise == "constant":
            noise_columns = np.ones((self._fit_X.shape[0], 1))
        else:
            noise_columns = self._local_noise()
        queries, settings = self._engine_settings(X)
        y_pred, variance = prediction_variance(
            queries,
            self._fit_X,
            self._fit_values,
            noise_columns,
            **settings,
        )
        if noise == "constant":
            variance = variance * terms["noise_level"]
        # The training values are kept divided by a power of 2 per output.
        y_pred = y_pred * self._value_scale
        if self._fit_method != "dense":
            y_pred = self._weighted_average(X)
        dtype = numpy_dtype(X, self._fit_X)
        y_std = np.sqrt(np.maximum(variance, 0.0)) * self._value_scale
        return y_pred.astype(dtype, copy=False), y_std.astype(dtype, copy=False)

    def _leave_one_out_terms(self):
        """Leave-one-out residuals and the constant noise level, cached.

        Returns
        -------
        terms : dict
            ``residuals``: absolute leave-one-out residuals, shape
            (n_samples, n_outputs); ``noise_level``: the constant noise
            variance per output; ``scaled_squares``: the squared residuals
            divided by 1 + their own sums of squared weights.
        """
        cache = self._uncertainty_cache
        if "residuals" in cache:
            return cache
        check_leaves_one_out(self._fit_sample_weight, self._fit_X.shape[0])
        predictions, variance = leave_one_out(
            self._fit_X,
            self._fit_values,
            np.ones((self._fit_X.shape[0], 1)),
            **self._engine_settings(self._fit_X, internal=True)[1],
        )
        cache.update(
            residual_terms(
                self._fit_values, predictions, variance, self._fit_sample_weight
            )
        )
        return cache

    def _local_noise(self):
        """sigma**2 at the training samples: the scaled squared leave-one-out
        residuals smoothed by the fitted kernel and width, cached."""
        cache = self._leave_one_out_terms()
        if "local_noise" not in cache:
            cache["local_noise"] = nadaraya_watson(
                self._fit_X,
                self._fit_X,
                cache["scaled_squares"],
                **self._engine_settings(self._fit_X, internal=True)[1],
            ).astype(np.float64)
        return cache["local_noise"]


class NadarayaWatsonRegressor(
    RegressorMixin, _RegressorFitPredict, _BaseNadarayaWatson
):
    """Nadaraya-Watson kernel regression (attention pooling).

    The prediction at a query q is the kernel-weighted average of the training
    targets,

        f(q) = sum_i K(u_i) s_i y_i / sum_i K(u_i) s_i,   u_i = ||(q - x_i) / h||,

    where s_i is the sample weight of training sample i. With the Gaussian
    kernel the weights are softmax(-u_i**2 / 2): the attention pooling of the
    d2l textbook, with keys x_i, values y_i and the d2l weight w = 1 / h.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    kernel : {"gaussian", "tophat", "boxcar", "uniform", "epanechnikov", \
            "linear", "triangular", "biweight", "quartic", "triweight", \
            "tricube", "cosine", "exponential", "constant"} or callable, \
            default="gaussian"
        The kernel K(u) of the scaled distance u. Aliases name the same
        kernel: "boxcar" and "uniform" are "tophat", "triangular" is
        "linear", "quartic" is "biweight". "constant" gives every sample the
        same weight (average pooling). A callable takes a NumPy array of
        u >= 0 and returns finite weights >= 0 of the same shape.
        Normalising constants cancel and are not applied.

    bandwidth : float, array-like of shape (n_features,), or \
            {"scott", "silverman"}, default=1.0
        The width h. A float is shared by all features; an array gives one
        width per feature. The rules give one width per feature from the
        training data: "scott" is sigma_j n**(-1/(d+4)) and "silverman"
        sigma_j (4 / ((d + 2) n))**(1/(d+4)), with sigma_j the standard
        deviation (ddof=0, weighted by ``sample_weight``) of feature j, n the
        sum of the sample weights and d the number of features. A feature
        with zero spread gets sigma_j = 1.

    adaptive : {"sample", "query"} or None, default=None
        Local widths. "sample": training sample j has the width
        ``bandwidth * d_k(x_j) / g``, d_k(x_j) the distance at which the
        weights of the other training samples add up to k (the k-th nearest
        neighbour's distance with unit weights; R np's adaptive_nn), and g
        the weighted geometric mean of d_k over the training samples, so
        that ``bandwidth`` stays the typical width. "query": query q sees
        the width ``bandwidth * d_k(q) / g``, with d_k(q) measured to the
        training samples (R np's generalized_nn). A distance of 0 is raised
        to the smallest positive one among the training samples. When the
        other samples weigh less than k in all, d_k is the distance to the
        farthest, with a warning. None: fixed widths.

    n_neighbors : int, default=10
        The k of ``adaptive``; ignored without it.

    algorithm : {"auto", "dense", "tree"}, default="auto"
        How predictions weigh the training samples. "dense" computes every
        (query, sample) weight, in chunks, with torch. "tree" searches a
        KDTree (a BallTree above 15 features) of the training samples divided
        by the width for those within reach of each query, and computes
        their weights exactly, on the CPU: a compact kernel reaches one
        width, so its predictions equal the dense ones up to rounding; the
        Gaussian and the exponential need a ``truncation``. "auto" takes the
        tree from 2,000 training samples when a sample of 200 of them
        reaches at most 5% of the others (for the Gaussian and the
        exponential, only with a ``truncation``), and the dense path with
        local widths, a callable or constant kernel, or a device other than
        the CPU. ``attention_weights`` always computes the dense matrix.

    truncation : float in (0, 1) or None, default=None
        On the tree path, the Gaussian and the exponential drop the samples
        whose kernel weight is below ``truncation`` times the largest in the
        query's row. With weights D dropped and W kept, a prediction moves by
        D / (W + D) times the distance from it to the dropped samples'
        average, and D / W <= truncation * sum(sample_weight) /
        min(sample_weight): with unit weights, at most ``truncation *
        n_samples * (max(y) - min(y))``. Ignored by the compact kernels.

    device : str or torch.device, default="cpu"
        Where to compute: "cpu", "cuda", "cuda:1", ... Inputs and outputs
        stay NumPy. ``fit`` refuses a device that is absent; a model whose
        device is absent at prediction time (say, fitted on CUDA and loaded
        on a machine without it) warns and computes on the CPU.

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
    NadarayaWatsonRegressorCV : The width learned by exact leave-one-out.
    NadarayaWatsonClassifier : The same weights averaging one-hot labels.
    sklearn.neighbors.KNeighborsRegressor : Average over the k nearest samples.
    sklearn.kernel_ridge.KernelRidge : Kernel ridge regression.
    sklearn.neighbors.KernelDensity : Kernel density estimation.

    Notes
    -----
    The Gaussian and exponential kernels are computed in the log domain with
    the row maximum subtracted (a softmax), so any bandwidth gives finite
    output: a tiny width gives the nearest training sample's target, a huge
    one the weighted mean. A query with zero total weight, which a compact
    kernel gives when no training sample lies within one width, gets the
    weighted average of the targets of its nearest training samples (the
    limit the Gaussian reaches far from the data).

    Squared distances are summed from coordinate differences, except for
    the Gaussian in float64 with two features or more while the data lie
    within 1e3 widths of the middle of the training range: there they come
    from the expansion ``|q|^2 - 2 q.k + |k|^2`` on data centred there, so
    predictions do not change when X and the queries are translated
    together. Queries are processed in chunks sized so that the (chunk,
    n_samples) blocks fit in ``sklearn.get_config()["working_memory"]`` (and
    about 4 MiB each). float32 input computes in float32 (and returns
    float32); any other input in float64.

    Training samples of zero ``sample_weight`` take no part in prediction,
    nor those below 1e-30 (float32) or 1e-290 (float64) of the largest
    weight, or below n_samples times 1.4e-31 (float32) or 1.5e-292 (float64)
    of it. Coordinates beyond 1e18 (float32) or 1e150 (float64) in
    magnitude are refused: their squared distances would overflow.

    ``predict(X, return_std=True)`` also returns the standard error of each
    prediction, and ``predict_interval(X, alpha)`` jackknife+ prediction
    intervals, both from the leave-one-out residuals of the training samples
    (see :ref:`uncertainty`).

    References
    ----------
    .. [1] E. A. Nadaraya, "On estimating regression", Theory of Probability
       and its Applications, 9(1), 141-142, 1964.
    .. [2] G. S. Watson, "Smooth regression analysis", Sankhya A, 26(4),
       359-372, 1964.

    Examples
    --------
    >>> import numpy as np
    >>> from sknw import NadarayaWatsonRegressor
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> y = np.array([0.0, 1.0, 4.0, 9.0])
    >>> reg = NadarayaWatsonRegressor(bandwidth=0.5).fit(X, y)
    >>> reg.predict([[1.5]]).round(4)
    array([2.536])
    >>> reg.attention_weights([[1.5]]).round(4)
    array([[0.009, 0.491, 0.491, 0.009]])
    """


class NadarayaWatsonRegressorCV(
    RegressorMixin, _RegressorFitPredict, _BaseNadarayaWatsonCV
):
    """Nadaraya-Watson regression with the width learned by leave-one-out.

    The prediction is that of :class:`NadarayaWatsonRegressor`; ``fit``
    first learns the width that minimises the exact leave-one-out mean
    squared error, each training row predicted from all the others,

        L(h) = sum_i s_i (f_{-i}(x_i) - y_i)**2 / sum_i s_i,

    where leaving out row i removes one unit of its frequency weight s_i (all
    of it when s_i < 1), so that an integer weight equals repeated rows. As
    :class:`~sklearn.linear_model.RidgeCV` is to
    :class:`~sklearn.linear_model.Ridge`, it is the efficient built-in
    cross-validation of its sibling: the loss, its gradient and (for one
    width) its second derivative come from closed forms in one pass over the
    pairs, within ``working_memory``.

    Read more in the :ref:`User Guide <learning>`.

    Parameters
    ----------
    kernel : str, default="gaussian"
        A kernel name, as in :class:`NadarayaWatsonRegressor`, whose weights
        change with the width: not "tophat" (and its aliases) or "constant",
        whose leave-one-out loss is piecewise constant in it.

    bandwidth : float, array-like of shape (n_features,), or \
            {"scott", "silverman"}, default=1.0
        The start of the search. A float learns one width shared by all
        features; an array or a rule learns one width per feature.

    solver : {"auto", "lbfgs", "sgd", "adam"}, default="auto"
        "auto": for one width, the exact loss on a log grid between the
        data's bounds (see Notes), then Newton steps with the analytic second
        derivative inside the best bracket, with golden-section steps where
        Newton's is unsafe (under the compact kernels of the form
        (1 - u^p)^M, also the best local minima of a sweep over the widths
        where a pair enters the support: every one up to about 200 samples,
        those nearest the scan's best width up to about 800: see the user
        guide); per feature, L-BFGS-B from the start, the
        one-width optimum and the best width proportional to each feature's
        spread (10 iterations from the two lowest, then on from the lower
        end), a result on a bound checked against the losses on the way
        there. "lbfgs": L-BFGS-B from the start alone (a local
        search). "sgd": minibatch gradient descent on the log-width (the d2l
        textbook's loop); "adam": the same with Adam's steps.

    learning_rate : float or "auto", default="auto"
        "sgd" and "adam" only: the step on the log-width, for the loss divided
        by the loss of predicting the mean: the gradient's multiplier for
        "sgd" ("auto": 0.5), about the step's size for "adam" ("auto": 0.05).

    batch_size : int or "auto", default="auto"
        "sgd" and "adam" only: rows left out per step ("auto": 200); one step
        per epoch over the full batch when it covers every row.

    max_iter : int, default=100
        Most iterations: steps of the search, L-BFGS-B iterations, or epochs
        of "sgd" and "adam".

    tol : float, default=1e-4
        "sgd" and "adam" stop once the exact loss, divided by the loss of
        predicting the mean, has improved by less than ``tol`` over 5 epochs.
        The other solvers converge to machine precision on the log-width
        (one width) or to a relative gradient below 1e-9 (per feature).

    random_state : int, RandomState instance or None, default=None
        Order of the minibatches, and the rows of the subsample on which
        per-feature widths find their way above 2,000 samples.

    verbose : int, default=0
        Print the loss at each iteration when > 0.

    adaptive : {"sample", "query"} or None, default=None
        Local widths, as in :class:`NadarayaWatsonRegressor`; the width
        learned multiplies them.

    n_neighbors : int, default=10
        The k of ``adaptive``; ignored without it.

    algorithm : {"auto", "dense", "tree"}, default="auto"
        How predictions weigh the training samples, as in
        :class:`NadarayaWatsonRegressor`; learning always computes every pair.

    truncation : float in (0, 1) or None, default=None
        As in :class:`NadarayaWatsonRegressor`.

    device : str or torch.device, default="cpu"
        Where to compute, as in :class:`NadarayaWatsonRegressor`.

    Attributes
    ----------
    bandwidth_ : float or ndarray of shape (n_features,)
        The learned width.

    loss_curve_ : list of float
        The leave-one-out mean squared error at the start (``bandwidth``) and
        after each iteration, for every solver: ``loss_curve_[0]`` is the
        start and ``loss_curve_[-1]`` the loss at ``bandwidth_``.

    n_iter_ : int
        Iterations run, ``len(loss_curve_) - 1``, at least 1. The scan (one
        width) or the choice among starts (per feature) counts as the first.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    NadarayaWatsonRegressor : The same prediction with a width given.
    NadarayaWatsonClassifierCV : The width learned by leave-one-out log-loss.
    sklearn.linear_model.RidgeCV : Ridge regression with efficient
        leave-one-out cross-validation.

    Notes
    -----
    The search is confined to where the minimum can be. Below the lower
    bound every left-out prediction is its nearest neighbour's value (the
    second-nearest weighs less than e^-37 of the nearest, or nothing under a
    compact kernel); above the upper bound, the diameter of the data over
    the square root of machine epsilon, every prediction is the mean of the
    others. Both come from the data's own distances, duplicated rows counted
    once: a far outlier does not move the lower bound. A width learned on a
    bound comes with a warning that says which and what it means. Per
    feature, each feature's bounds are those of the feature on its own.

    The loss is computed in float64 on X and y rescaled by powers of 2, so
    any finite data give a finite width. On CUDA with Triton, the loss and
    gradient come from fused float32 kernels.

    Examples
    --------
    >>> import numpy as np
    >>> from sknw import NadarayaWatsonRegressorCV
    >>> rng = np.random.RandomState(0)
    >>> X = np.sort(rng.uniform(0, 5, size=(100, 1)), axis=0)
    >>> y = 2 * np.sin(X[:, 0]) + X[:, 0] ** 0.8 + rng.normal(0, 0.5, 100)
    >>> reg = NadarayaWatsonRegressorCV().fit(X, y)
    >>> round(reg.bandwidth_, 3)
    0.177
    >>> reg.n_iter_ >= 1
    True
    """

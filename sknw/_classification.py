"""Nadaraya-Watson kernel classification."""

# Authors: the sknw developers
# License: BSD 3 clause

import numpy as np
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from sknw._base import FLOAT_DTYPES, _BaseNadarayaWatson


class NadarayaWatsonClassifier(ClassifierMixin, _BaseNadarayaWatson):
    """Nadaraya-Watson kernel classification (attention pooling of labels).

    The class probabilities at a query q are the kernel-weighted average of
    the one-hot encoded training labels,

        p_c(q) = sum_{i: y_i = c} K(u_i) s_i / sum_i K(u_i) s_i,
        u_i = ||(q - x_i) / h||,

    where s_i is the sample weight of training sample i. With one shared
    bandwidth this is the Parzen-window classifier: the class-conditional
    kernel density estimates times the class counts, normalised.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    kernel : {"gaussian", "tophat", "boxcar", "uniform", "epanechnikov", \
            "linear", "triangular", "biweight", "quartic", "triweight", \
            "tricube", "cosine", "exponential", "constant"} or callable, \
            default="gaussian"
        The kernel K(u) of the scaled distance u, as in
        :class:`NadarayaWatsonRegressor`.

    bandwidth : float, array-like of shape (n_features,), or \
            {"scott", "silverman"}, default=1.0
        The width h, as in :class:`NadarayaWatsonRegressor`.

    adaptive : {"sample", "query"} or None, default=None
        Local widths from neighbour distances, as in
        :class:`NadarayaWatsonRegressor`.

    n_neighbors : int, default=10
        The k of ``adaptive``; ignored without it.

    learn_bandwidth : bool, default=False
        When True, ``fit`` starts from ``bandwidth`` and minimises the
        leave-one-out log-loss over the log of the width (probabilities below
        machine epsilon count as epsilon), as in
        :class:`NadarayaWatsonRegressor`.

    solver : {"auto", "lbfgs", "sgd", "adam"}, default="auto"
        How the width is learned, as in :class:`NadarayaWatsonRegressor`.

    learning_rate : float or "auto", default="auto"
        Step on the log-width, as in :class:`NadarayaWatsonRegressor`.

    batch_size : int or "auto", default="auto"
        Rows predicted per minibatch step; "auto" is ``min(200, n_samples)``.

    max_iter : int, default=100
        L-BFGS iterations, or epochs of "sgd" and "adam".

    tol : float, default=1e-4
        Tolerance of the solver, as in :class:`NadarayaWatsonRegressor`.

    random_state : int, RandomState instance or None, default=None
        Order of the minibatches.

    verbose : int, default=0
        Print the learning's progress when > 0.

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
        query's row. With weights D dropped and W kept, a probability moves
        by at most D / (W + D), and D / W <= truncation * sum(sample_weight)
        / min(sample_weight): with unit weights, at most ``truncation *
        n_samples``. Ignored by the compact kernels.

    device : str or torch.device, default="cpu"
        Where to compute, as in :class:`NadarayaWatsonRegressor`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.

    bandwidth_ : float or ndarray of shape (n_features,)
        The width in use after fit.

    loss_curve_ : list of float
        Leave-one-out log-loss after each iteration; only when
        ``learn_bandwidth=True``.

    n_iter_ : int
        Iterations or epochs run; only when ``learn_bandwidth=True``.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    NadarayaWatsonRegressor : The same weights averaging numeric targets.
    sklearn.neighbors.KNeighborsClassifier : Vote of the k nearest samples.
    sklearn.neighbors.KernelDensity : Kernel density estimation.
    sklearn.kernel_ridge.KernelRidge : Kernel ridge regression.

    Notes
    -----
    Weights are computed as in :class:`NadarayaWatsonRegressor`: in the log
    domain for the Gaussian and exponential kernels, and a query with zero
    total weight under a compact kernel takes the labels of its nearest
    training samples; sample weights, dtypes, coordinate limits and the
    ``algorithm`` behave as there. Compact kernels can give a class
    probability of exactly
    0, whose ``predict_log_proba`` is ``-inf``. ``predict`` breaks ties
    between equally probable classes in favour of the first in ``classes_``.

    References
    ----------
    .. [1] E. A. Nadaraya, "On estimating regression", Theory of Probability
       and its Applications, 9(1), 141-142, 1964.
    .. [2] G. S. Watson, "Smooth regression analysis", Sankhya A, 26(4),
       359-372, 1964.

    Examples
    --------
    >>> import numpy as np
    >>> from sknw import NadarayaWatsonClassifier
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> y = np.array(["a", "a", "b", "b"])
    >>> clf = NadarayaWatsonClassifier(bandwidth=0.5).fit(X, y)
    >>> clf.predict([[0.2], [2.6]])
    array(['a', 'b'], dtype='<U1')
    >>> clf.predict_proba([[1.4]]).round(4)
    array([[0.6022, 0.3978]])
    """

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Store the training data, its classes, and resolve the bandwidth.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs (the keys).
        y : array-like of shape (n_samples,)
            Class labels: numbers or strings.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative multipliers of each sample's kernel weight; an
            integer weight is the same as repeating the row.

        Returns
        -------
        self : NadarayaWatsonClassifier
            The fitted estimator.
        """
        X, y = validate_data(self, X, y, dtype=FLOAT_DTYPES)
        check_classification_targets(y)
        sample_weight = self._check_fit_inputs(X, sample_weight)
        self.classes_, y_encoded = np.unique(y, return_inverse=True)
        one_hot = np.eye(len(self.classes_))[y_encoded]
        local_widths, neighbor_X, floor = self._local_widths(X, sample_weight)
        self.bandwidth_, learning = self._fit_bandwidth(
            X, one_hot, sample_weight, local_widths, loss="log_loss"
        )
        self._store_learning(learning)
        self._fit_method, self._tree = self._fit_algorithm(X, sample_weight)
        self._fit_X = X
        self._fit_values = one_hot
        self._fit_sample_weight = sample_weight
        self._local_widths_fit = local_widths
        self._neighbor_X = neighbor_X
        self._local_width_floor = floor
        return self

    def predict(self, X):
        """The most probable class at each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query points.

        Returns
        -------
        y_pred : ndarray of shape (n_queries,)
            Predicted class labels.
        """
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def predict_proba(self, X):
        """Attention-weighted average of the one-hot training labels.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query points.

        Returns
        -------
        proba : ndarray of shape (n_queries, n_classes)
            Class probabilities in the order of ``classes_``; rows sum to 1.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=FLOAT_DTYPES)
        return self._weighted_average(X)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`; ``-inf`` where it is 0.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query points.

        Returns
        -------
        log_proba : ndarray of shape (n_queries, n_classes)
            Log class probabilities in the order of ``classes_``.
        """
        proba = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(proba)

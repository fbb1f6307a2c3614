"""Nadaraya-Watson kernel classification."""

# Authors: the sknw developers
# License: BSD 3 clause

import numpy as np
from sklearn import get_config
from sklearn.base import ClassifierMixin
from sklearn.utils import gen_batches
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from sknw._base import FLOAT_DTYPES, _BaseNadarayaWatson, _BaseNadarayaWatsonCV
from sknw._engine import numpy_dtype


class _ClassifierFitPredict:
    """The label encoding and the prediction methods of the Nadaraya-Watson
    classifiers."""

    _loss = "log_loss"

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
        X = validate_data(self, X, reset=False, dtype=FLOAT_DTYPES)
        best = np.full(X.shape[0], -np.inf)
        labels = np.zeros(X.shape[0], dtype=np.intp)
        for queries, classes, proba in self._class_blocks(X):
            top = np.argmax(proba, axis=1)
            value = proba[np.arange(len(top)), top]
            # Strictly greater: a tie goes to the first class, as argmax.
            better = value > best[queries]
            best[queries] = np.where(better, value, best[queries])
            labels[queries] = np.where(better, top + classes.start, labels[queries])
        return self.classes_[labels]

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
        result = None
        for queries, classes, proba in self._class_blocks(X):
            if result is None:
                shape = (X.shape[0], len(self.classes_))
                result = np.empty(shape, dtype=proba.dtype)
            result[queries, classes] = proba
        return result

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

    def _validate_fit_data(self, X, y):
        X, y = validate_data(self, X, y, dtype=FLOAT_DTYPES)
        check_classification_targets(y)
        return X, y

    def _encode_targets(self, X, y):
        self.classes_, self._fit_codes = np.unique(y, return_inverse=True)
        # Labels are kept as indices into classes_; one-hot columns are made
        # at prediction, a block of classes at a time, and here only for the
        # leave-one-out learning.
        if not self._learns_bandwidth:
            return X, None
        return X, _one_hot(self._fit_codes, 0, len(self.classes_))

    def _class_blocks(self, X):
        """Class probabilities by blocks of queries and of classes.

        A block's one-hot columns, with their weighted copies in the engine,
        take about half of ``working_memory``, and its sums the other half;
        with few classes there is one block of classes.

        Yields
        ------
        queries : slice
            Rows of ``X``.
        classes : slice
            Columns of ``classes_``.
        proba : ndarray of shape (n_rows, n_block_classes)
            The probabilities of those classes at those queries.
        """
        X, settings = self._engine_settings(X)
        dtype = numpy_dtype(X, self._fit_X)
        n_samples, n_classes = self._fit_X.shape[0], len(self.classes_)
        budget = get_config()["working_memory"] * 2**20 // 2
        # About 3 x 8 bytes per training sample and class (one-hot, weighted
        # values, their tensor), 4 x 8 per query and class (sums, merged).
        block_classes = int(np.clip(budget // (24 * n_samples) - 1, 1, n_classes))
        block_queries = max(1, budget // (32 * (block_classes + 1)))
        class_batches = list(gen_batches(n_classes, block_classes))
        one_hot = None
        if len(class_batches) == 1:
            one_hot = _one_hot(self._fit_codes, 0, n_classes)
        query_widths = settings["query_widths"]
        for queries in gen_batches(X.shape[0], block_queries):
            if query_widths is not None:
                settings["query_widths"] = query_widths[queries]
            for classes in class_batches:
                values = one_hot
                if values is None:
                    values = _one_hot(self._fit_codes, classes.start, classes.stop)
                proba = self._average(X[queries], settings, values)
                yield queries, classes, proba.astype(dtype, copy=False)


def _one_hot(codes, start, stop):
    """Columns ``start`` to ``stop`` of the one-hot encoding of class indices.

    Parameters
    ----------
    codes : ndarray of shape (n_samples,)
        Class indices.
    start, stop : int
        The classes to encode.

    Returns
    -------
    one_hot : ndarray of shape (n_samples, stop - start)
    """
    one_hot = np.zeros((len(codes), stop - start))
    rows = np.flatnonzero((codes >= start) & (codes < stop))
    one_hot[rows, codes[rows] - start] = 1.0
    return one_hot


class NadarayaWatsonClassifier(
    ClassifierMixin, _ClassifierFitPredict, _BaseNadarayaWatson
):
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

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    NadarayaWatsonClassifierCV : The width learned by exact leave-one-out.
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


class NadarayaWatsonClassifierCV(
    ClassifierMixin, _ClassifierFitPredict, _BaseNadarayaWatsonCV
):
    """Nadaraya-Watson classification with the width learned by leave-one-out.

    The probabilities are those of :class:`NadarayaWatsonClassifier`; ``fit``
    first learns the width that minimises the exact leave-one-out log-loss,

        L(h) = -sum_i s_i log p_{-i, y_i}(x_i) / sum_i s_i,

    each training row's probability of its own class computed from all the
    other rows (one unit of its frequency weight s_i left out, all of it when
    s_i < 1; probabilities below machine epsilon count as epsilon), as
    :class:`NadarayaWatsonRegressorCV` does for the squared error.

    Read more in the :ref:`User Guide <learning>`.

    Parameters
    ----------
    kernel : str, default="gaussian"
        A kernel name whose weights change with the width, as in
        :class:`NadarayaWatsonRegressorCV`.

    bandwidth : float, array-like of shape (n_features,), or \
            {"scott", "silverman"}, default=1.0
        The start of the search: a float learns one width, an array or a rule
        one width per feature.

    solver : {"auto", "lbfgs", "sgd", "adam"}, default="auto"
        The search, as in :class:`NadarayaWatsonRegressorCV`.

    learning_rate : float or "auto", default="auto"
        Step on the log-width of "sgd" and "adam", as in
        :class:`NadarayaWatsonRegressorCV`.

    batch_size : int or "auto", default="auto"
        Rows per step of "sgd" and "adam" ("auto": 200).

    max_iter : int, default=100
        Most iterations.

    tol : float, default=1e-4
        Tolerance of "sgd" and "adam", as in
        :class:`NadarayaWatsonRegressorCV`.

    random_state : int, RandomState instance or None, default=None
        Order of the minibatches, and the subsample at large sizes.

    verbose : int, default=0
        Print the loss at each iteration when > 0.

    adaptive : {"sample", "query"} or None, default=None
        Local widths, as in :class:`NadarayaWatsonRegressor`.

    n_neighbors : int, default=10
        The k of ``adaptive``; ignored without it.

    algorithm : {"auto", "dense", "tree"}, default="auto"
        How predictions weigh the training samples, as in
        :class:`NadarayaWatsonClassifier`.

    truncation : float in (0, 1) or None, default=None
        As in :class:`NadarayaWatsonClassifier`.

    device : str or torch.device, default="cpu"
        Where to compute, as in :class:`NadarayaWatsonRegressor`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.

    bandwidth_ : float or ndarray of shape (n_features,)
        The learned width.

    loss_curve_ : list of float
        The leave-one-out log-loss at the start and after each iteration.

    n_iter_ : int
        Iterations run, ``len(loss_curve_) - 1``, at least 1.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    NadarayaWatsonClassifier : The same probabilities with a width given.
    NadarayaWatsonRegressorCV : The width learned by leave-one-out squared error.
    sklearn.linear_model.LogisticRegressionCV : Logistic regression with
        built-in cross-validation.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sknw import NadarayaWatsonClassifierCV
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = NadarayaWatsonClassifierCV().fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

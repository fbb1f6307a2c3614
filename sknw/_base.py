"""Base class shared by the Nadaraya-Watson regressor and classifier."""

# Authors: the sknw developers
# License: BSD 3 clause

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from sknw._bandwidth import BANDWIDTH_RULES, nearest_neighbor_distances
from sknw._engine import (
    attention,
    compute_dtype,
    merge_partial_sums,
    nadaraya_watson,
    numpy_dtype,
    positive_weight_keys,
    resolve_device,
)
from sknw._kernels import KERNELS
from sknw._loo import LBFGS_MAX_SAMPLES, LEARNING_RATES, learn_bandwidth
from sknw._neighbors import (
    build_tree,
    neighbor_fraction,
    tree_partial_sums,
    truncation_radius,
)
from sknw._validation import (
    check_bandwidth_array,
    check_coordinates,
    check_device,
    check_kernel_callable,
    check_sample_weight,
)

FLOAT_DTYPES = (np.float64, np.float32)

# algorithm="auto" takes the tree for a compact kernel from this many
# training samples, when a sample of them reaches at most this fraction of
# the others within one width.
AUTO_TREE_MIN_SAMPLES = 2000
AUTO_TREE_MAX_FRACTION = 0.05


class _BaseNadarayaWatson(BaseEstimator):
    """Parameters, fit preamble and attention weights of both estimators."""

    _parameter_constraints: dict = {
        "kernel": [StrOptions(set(KERNELS)), callable],
        "bandwidth": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions(set(BANDWIDTH_RULES)),
            "array-like",
        ],
        "adaptive": [StrOptions({"sample", "query"}), None],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "learn_bandwidth": ["boolean"],
        "solver": [StrOptions({"auto", "lbfgs", "sgd", "adam"})],
        "learning_rate": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions({"auto"}),
        ],
        "batch_size": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "algorithm": [StrOptions({"auto", "dense", "tree"})],
        "truncation": [Interval(Real, 0, 1, closed="neither"), None],
        "device": [str, torch.device],
    }

    def __init__(
        self,
        kernel="gaussian",
        bandwidth=1.0,
        *,
        adaptive=None,
        n_neighbors=10,
        learn_bandwidth=False,
        solver="auto",
        learning_rate="auto",
        batch_size="auto",
        max_iter=100,
        tol=1e-4,
        random_state=None,
        verbose=0,
        algorithm="auto",
        truncation=None,
        device="cpu",
    ):
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.adaptive = adaptive
        self.n_neighbors = n_neighbors
        self.learn_bandwidth = learn_bandwidth
        self.solver = solver
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.algorithm = algorithm
        self.truncation = truncation
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
        return attention(X, self._fit_X, **self._engine_settings(X))

    def _check_fit_inputs(self, X, sample_weight):
        """Checks at the top of ``fit`` that no constraint expresses."""
        check_coordinates(X)
        sample_weight = check_sample_weight(sample_weight, X.shape[0], np.float64)
        if callable(self.kernel):
            if self.learn_bandwidth:
                raise ValueError(
                    "learn_bandwidth=True needs a named kernel: the leave-one-out "
                    "gradient is taken through torch, and a callable kernel works "
                    "on NumPy arrays."
                )
            check_kernel_callable(self.kernel)
        if not isinstance(self.bandwidth, (str, Real)):
            check_bandwidth_array(self.bandwidth, X.shape[1])
        n_used = X.shape[0] if sample_weight is None else (sample_weight > 0).sum()
        if self.adaptive is not None and n_used <= self.n_neighbors:
            raise ValueError(
                f"adaptive={self.adaptive!r} with n_neighbors={self.n_neighbors} "
                f"needs at least {self.n_neighbors + 1} samples of positive weight; "
                f"got n_samples = {n_used}."
            )
        if self.learn_bandwidth:
            if n_used < 2:
                raise ValueError(
                    "learn_bandwidth=True needs at least 2 samples of positive "
                    f"weight to leave one out; got n_samples = {n_used}."
                )
            name = KERNELS[self.kernel].function.__name__
            if name in ("tophat", "constant"):
                raise ValueError(
                    f"learn_bandwidth=True cannot learn the width of the {name} "
                    "kernel: its leave-one-out loss is piecewise constant in the "
                    "width, so its gradient is 0. Tune the width with "
                    "GridSearchCV instead."
                )
        self._check_algorithm()
        check_device(self.device)
        return sample_weight

    def _check_algorithm(self):
        """Refuse an ``algorithm`` and ``truncation`` the kernel cannot use."""
        if self.algorithm == "dense" and self.truncation is not None:
            raise ValueError(
                f"truncation={self.truncation!r} drops small weights on the tree "
                "path; algorithm='dense' computes every weight. Use "
                "algorithm='tree' or 'auto', or truncation=None."
            )
        if self.algorithm != "tree":
            return
        if callable(self.kernel) or KERNELS[self.kernel].function.__name__ == (
            "constant"
        ):
            raise ValueError(
                "algorithm='tree' needs a named kernel that gives no weight "
                "beyond some distance, or the Gaussian or exponential with a "
                f"truncation; got kernel={self.kernel!r}."
            )
        if KERNELS[self.kernel].log_slope is not None and self.truncation is None:
            raise ValueError(
                f"algorithm='tree' with kernel={self.kernel!r} needs a truncation "
                "(a relative weight below which samples are dropped, such as "
                "1e-8): this kernel gives every sample some weight."
            )

    def _fit_algorithm(self, X, sample_weight):
        """The path prediction takes, and the tree it searches.

        Returns
        -------
        method : {"dense", "tree"}
        tree : KDTree, BallTree or None
            Over the training samples scaled by the width; None on the dense
            path, or when some samples take no part (the tree is then built
            over the others at prediction).
        """
        method, tree = self.algorithm, None
        if method == "auto":
            method, tree = self._auto_algorithm(X)
        if method == "dense":
            return "dense", None
        if sample_weight is not None:
            settings = dict(sample_weight=sample_weight, key_widths=None)
            if positive_weight_keys(X, None, settings, compute_dtype(X))[3] is not None:
                return "tree", None
        return "tree", tree or build_tree(X, self.bandwidth_)

    def _auto_algorithm(self, X):
        """The tree when few samples are within reach of each other.

        A compact kernel reaches one width; the Gaussian and the exponential
        reach the radius of their ``truncation`` (and take the dense path
        without one). Local widths, callables, the constant kernel and
        devices other than the CPU take the dense path.

        Returns
        -------
        method : {"dense", "tree"}
        tree : KDTree, BallTree or None
            The tree it built to decide, if any.
        """
        kernel = None if callable(self.kernel) else KERNELS[self.kernel]
        if (
            kernel is None
            or kernel.function.__name__ == "constant"
            or self.adaptive is not None
            or resolve_device(self.device).type != "cpu"
            or X.shape[0] < AUTO_TREE_MIN_SAMPLES
        ):
            return "dense", None
        radius = 1.0
        if kernel.log_slope is not None:
            if self.truncation is None:
                return "dense", None
            radius = truncation_radius(kernel, self.truncation)
        tree = build_tree(X, self.bandwidth_)
        sample = check_random_state(0).choice(
            X.shape[0], size=min(X.shape[0], 200), replace=False
        )
        fraction = neighbor_fraction(tree, X[sample], self.bandwidth_, radius)
        if fraction > AUTO_TREE_MAX_FRACTION:
            return "dense", None
        return "tree", tree

    def _local_widths(self, X, sample_weight):
        """Neighbour distances for ``adaptive``.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Training inputs.
        sample_weight : ndarray of shape (n_samples,) or None
            Samples of zero weight are nobody's neighbour.

        Returns
        -------
        local_widths : ndarray of shape (n_samples,) or None
            Each sample's distance to its n_neighbors-th other sample, with
            0 (more duplicates than neighbours) raised to the smallest positive
            such distance; None without ``adaptive``.
        neighbor_X : ndarray of shape (n_used, n_features) or None
            The samples that are neighbours.
        floor : float or None
            The smallest positive distance, which also floors the queries'
            distances under ``adaptive="query"``.
        """
        if self.adaptive is None:
            return None, None, None
        used = (
            np.ones(X.shape[0], dtype=bool)
            if sample_weight is None
            else (sample_weight > 0)
        )
        neighbor_X = X[used]
        distances = np.zeros(X.shape[0])
        distances[used] = nearest_neighbor_distances(neighbor_X, self.n_neighbors)
        positive = distances[distances > 0]
        floor = float(positive.min()) if positive.size else 1.0
        return np.maximum(distances, floor), neighbor_X, floor

    def _fit_bandwidth(self, X, values, sample_weight, local_widths, loss):
        """The bandwidth in use, learned when asked.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Training inputs.
        values : ndarray of shape (n_samples, n_values)
            Targets, or one-hot labels.
        sample_weight : ndarray of shape (n_samples,) or None
            Sample weights.
        local_widths : ndarray of shape (n_samples,) or None
            Neighbour distances for ``adaptive``.
        loss : {"squared_error", "log_loss"}
            The leave-one-out loss to minimise.

        Returns
        -------
        bandwidth : float or ndarray of shape (n_features,)
            The width in use.
        learning : tuple (loss_curve, n_iter) or None
            None when the width is not learned.
        """
        bandwidth = self._resolve_bandwidth(X, sample_weight)
        if not self.learn_bandwidth:
            return bandwidth, None
        n_samples = X.shape[0]
        solver = self.solver
        if solver == "auto":
            solver = "lbfgs" if n_samples <= LBFGS_MAX_SAMPLES else "adam"
        learning_rate = self.learning_rate
        if learning_rate == "auto":
            learning_rate = LEARNING_RATES[solver]
        batch_size = 200 if self.batch_size == "auto" else self.batch_size
        learned, loss_curve, n_iter = learn_bandwidth(
            X,
            values,
            np.atleast_1d(bandwidth),
            kernel=self.kernel,
            loss=loss,
            sample_weight=sample_weight,
            local_widths=local_widths,
            adaptive=self.adaptive,
            solver=solver,
            learning_rate=learning_rate,
            batch_size=min(batch_size, n_samples),
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.random_state,
            verbose=self.verbose,
            device=resolve_device(self.device),
            name=type(self).__name__,
        )
        bandwidth = float(learned[0]) if np.ndim(bandwidth) == 0 else learned
        return bandwidth, (loss_curve, n_iter)

    def _store_learning(self, learning):
        """Set ``loss_curve_`` and ``n_iter_`` when learned; drop stale ones."""
        if learning is None:
            for attribute in ("loss_curve_", "n_iter_"):
                self.__dict__.pop(attribute, None)
        else:
            self.loss_curve_, self.n_iter_ = learning

    def _resolve_bandwidth(self, X, sample_weight):
        """The width in use: a float, or an ndarray of shape (n_features,)."""
        if isinstance(self.bandwidth, str):
            return BANDWIDTH_RULES[self.bandwidth](X, sample_weight)
        if isinstance(self.bandwidth, Real):
            return float(self.bandwidth)
        return check_bandwidth_array(self.bandwidth, X.shape[1])

    def _weighted_average(self, X):
        """Attention-weighted average of the training values at the queries."""
        settings = self._engine_settings(X)
        if self._fit_method == "dense":
            return nadaraya_watson(X, self._fit_X, self._fit_values, **settings)
        settings.pop("device")
        partial = tree_partial_sums(
            X,
            self._fit_X,
            self._fit_values,
            truncation=self.truncation,
            tree=self._tree,
            **settings,
        )
        predictions = merge_partial_sums([partial])
        return predictions.astype(numpy_dtype(X, self._fit_X), copy=False)

    def _engine_settings(self, X):
        """Keyword arguments of the engine for predicting at ``X``."""
        check_coordinates(X, dtype=numpy_dtype(X, self._fit_X))
        query_widths = None
        if self.adaptive == "query":
            query_widths = np.maximum(
                nearest_neighbor_distances(self._neighbor_X, self.n_neighbors, X),
                self._local_width_floor,
            )
        return dict(
            bandwidth=self.bandwidth_,
            kernel=self.kernel,
            sample_weight=self._fit_sample_weight,
            key_widths=self._local_widths_fit if self.adaptive == "sample" else None,
            query_widths=query_widths,
            device=self.device,
        )

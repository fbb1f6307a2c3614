"""Base class shared by the Nadaraya-Watson regressor and classifier."""

# Authors: the sknw developers
# License: BSD 3 clause

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from sknw._bandwidth import (
    BANDWIDTH_RULES,
    neighbor_index,
    weighted_neighbor_distances,
)
from sknw._engine import (
    ActiveKeys,
    attention,
    compute_dtype,
    merge_partial_sums,
    nadaraya_watson,
    numpy_dtype,
    resolve_device,
    single_threaded_torch,
)
from sknw._kernels import KERNELS
from sknw._loo import learn_bandwidth
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
    check_numeric_target,
    check_sample_weight,
    check_value_range,
    coordinate_scale,
    largest_coordinate,
    value_scale,
    writable,
)

FLOAT_DTYPES = (np.float64, np.float32)

# algorithm="auto" takes the tree for a compact kernel from this many
# training samples, when a sample of them reaches at most this fraction of
# the others within one width.
AUTO_TREE_MIN_SAMPLES = 2000
AUTO_TREE_MAX_FRACTION = 0.05


def _scaled(bandwidth, scale):
    """A width in the units of X times it in the internal units, below the
    largest float."""
    if scale == 1:
        return bandwidth
    scaled = np.minimum(np.asarray(bandwidth, dtype=np.float64) * scale, 1e300)
    return float(scaled) if np.ndim(bandwidth) == 0 else scaled


def _unscaled(bandwidth, scale):
    """A width in the internal units back in the units of X."""
    if scale == 1:
        return bandwidth
    if np.ndim(bandwidth) == 0:
        return float(bandwidth) / scale
    return np.asarray(bandwidth, dtype=np.float64) / scale


class _BaseNadarayaWatson(BaseEstimator):
    """Parameters, fit preamble and attention weights of every estimator."""

    _parameter_constraints: dict = {
        "kernel": [StrOptions(set(KERNELS)), callable],
        "bandwidth": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions(set(BANDWIDTH_RULES)),
            "array-like",
        ],
        "adaptive": [StrOptions({"sample", "query"}), None],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "algorithm": [StrOptions({"auto", "dense", "tree"})],
        "truncation": [Interval(Real, 0, 1, closed="neither"), None],
        "device": [str, torch.device],
    }

    # Whether fit learns the width by leave-one-out (the CV estimators).
    _learns_bandwidth = False

    # The leave-one-out objective the CV estimators minimise; None:
    # Nadaraya-Watson's, of the loss ``_loss``.
    _loo_objective = None
    _loss = "squared_error"

    def __init__(
        self,
        kernel="gaussian",
        bandwidth=1.0,
        *,
        adaptive=None,
        n_neighbors=10,
        algorithm="auto",
        truncation=None,
        device="cpu",
    ):
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.adaptive = adaptive
        self.n_neighbors = n_neighbors
        self.algorithm = algorithm
        self.truncation = truncation
        self.device = device

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Store the training data and resolve (or learn) the bandwidth.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs (the keys).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Training targets (the values): numbers for the regressors, class
            labels (numbers or strings, of shape (n_samples,)) for the
            classifiers.
        sample_weight : array-like of shape (n_samples,), default=None
            Frequency weights: non-negative multipliers of each sample's
            kernel weight; an integer weight is the same as repeating the row.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X, y = self._validate_fit_data(X, y)
        sample_weight = self._check_fit_inputs(X, sample_weight)
        X, values = self._encode_targets(X, y)
        self._fit_common(X, values, sample_weight, loss=self._loss)
        return self

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
        X, settings = self._engine_settings(X)
        with single_threaded_torch():
            return attention(X, self._fit_X, **settings)

    def _validate_fit_data(self, X, y):
        """``X`` and numeric targets ``y``, validated."""
        # Targets near the largest float overflow the validation's quick sum,
        # which then checks them one by one; that overflow is no concern.
        with np.errstate(over="ignore", invalid="ignore"):
            X, y = validate_data(
                self, X, y, dtype=FLOAT_DTYPES, multi_output=True, y_numeric=True
            )
        check_numeric_target(y, type(self).__name__)
        return X, y

    def _encode_targets(self, X, y):
        """The inputs and the values ``fit`` keeps, one row per sample (the
        targets as a column per output), and what else it keeps of ``y``."""
        self._fit_y_ndim = y.ndim
        return X, y.reshape(y.shape[0], -1)

    def _total_weight(self):
        """The sum of the sample weights fitted, the n of leave-one-out."""
        if self._fit_sample_weight is None:
            return float(self._fit_X.shape[0])
        return float(self._fit_sample_weight.sum())

    def _check_fit_inputs(self, X, sample_weight):
        """Checks at the top of ``fit`` that no constraint expresses."""
        check_coordinates(X)
        sample_weight = check_sample_weight(sample_weight, X.shape[0], np.float64)
        if callable(self.kernel):
            if self._learns_bandwidth:
                raise ValueError(
                    f"{type(self).__name__} needs a named kernel: the leave-one-out "
                    "loss is differentiated in closed form for each named kernel, "
                    "and a callable kernel gives weights only."
                )
            check_kernel_callable(self.kernel)
        if not isinstance(self.bandwidth, (str, Real)) or isinstance(
            self.bandwidth, bool
        ):
            check_bandwidth_array(self.bandwidth, X.shape[1])
        if self._learns_bandwidth:
            n_used = X.shape[0] if sample_weight is None else (sample_weight > 0).sum()
            if n_used < 2:
                raise ValueError(
                    f"{type(self).__name__} needs at least 2 samples of positive "
                    f"weight to leave one out; got n_samples = {n_used}."
                )
            kernel = KERNELS[self.kernel]
            if not kernel.learnable:
                name = type(self).__name__
                raise ValueError(
                    f"{name} cannot learn the width of the {kernel.name} "
                    "kernel: its leave-one-out loss is piecewise constant in the "
                    "width, so its gradient is 0. Tune the width of "
                    f"{name.removesuffix('CV')} with GridSearchCV instead."
                )
        self._check_algorithm()
        check_device(self.device)
        return sample_weight

    def _fit_common(self, X, values, sample_weight, loss):
        """Everything ``fit`` does once X, the values and the weights are
        validated: local widths, the bandwidth (learned when asked), the
        prediction path, and the fitted configuration."""
        # Coordinates so small that their squared distances would be
        # denormal, and values whose weighted sums could overflow, are scaled
        # by powers of 2 (exactly); bandwidth_ stays in the units of X.
        if values is not None:
            check_value_range(values, X.dtype, type(self).__name__)
            values = writable(values)
        self._coordinate_scale = coordinate_scale(X)
        X = writable(X) if self._coordinate_scale == 1 else X * self._coordinate_scale
        local_widths = self._local_widths(X, sample_weight)
        self._bandwidth, learning = self._fit_bandwidth(
            X, values, sample_weight, local_widths, loss
        )
        self.bandwidth_ = _unscaled(self._bandwidth, self._coordinate_scale)
        if learning is not None:
            self.loss_curve_, self.n_iter_ = learning
        self._fit_method, self._tree = self._fit_algorithm(X, sample_weight)
        self._fit_X = X
        self._value_scale = self._fit_values = None
        if values is not None:
            self._value_scale = value_scale(values)
            self._fit_values = values / self._value_scale
        self._fit_sample_weight = sample_weight
        self._local_widths_fit = local_widths
        # Prediction uses the configuration fit saw, whatever set_params
        # changes until the next fit.
        self._fit_config = dict(
            kernel=self.kernel,
            adaptive=self.adaptive,
            n_neighbors=self.n_neighbors,
            truncation=self.truncation,
        )

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
        if callable(self.kernel) or not KERNELS[self.kernel].has_reach:
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
        active = ActiveKeys.select(X, None, sample_weight, None, compute_dtype(X))
        if active.kept is not None:
            return "tree", None
        return "tree", tree or build_tree(X, self._bandwidth)

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
            or not kernel.has_reach
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
        tree = build_tree(X, self._bandwidth)
        sample = check_random_state(0).choice(
            X.shape[0], size=min(X.shape[0], 200), replace=False
        )
        fraction = neighbor_fraction(tree, X[sample], self._bandwidth, radius)
        if fraction > AUTO_TREE_MAX_FRACTION:
            return "dense", None
        return "tree", tree

    def _local_widths(self, X, sample_weight):
        """Local width factors for ``adaptive``.

        Each training sample's weighted k-th neighbour distance (the distance
        at which the other samples' weights add up to ``n_neighbors``),
        divided by their weighted geometric mean, so that ``bandwidth``
        keeps its meaning as the typical width. A distance of 0 (more
        duplicates than neighbours) is raised to the smallest positive one.

        Returns
        -------
        local_widths : ndarray of shape (n_samples,) or None
            None without ``adaptive``.
        """
        self._neighbor_index = self._neighbor_weight = None
        self._local_width_floor = self._local_width_scale = None
        if self.adaptive is None:
            return None
        used = (
            np.ones(X.shape[0], dtype=bool)
            if sample_weight is None
            else (sample_weight > 0)
        )
        # Kept for the queries' widths with adaptive="query".
        self._neighbor_index = neighbor_index(X[used])
        self._neighbor_weight = None if sample_weight is None else sample_weight[used]
        distances = np.zeros(X.shape[0])
        distances[used], clipped = weighted_neighbor_distances(
            X[used],
            self._neighbor_weight,
            self.n_neighbors,
            neighbors=self._neighbor_index,
        )
        if clipped:
            warnings.warn(
                f"adaptive={self.adaptive!r}: the other samples' weights add up "
                f"to less than n_neighbors={self.n_neighbors} for some samples; "
                "their local widths use the farthest sample instead.",
                UserWarning,
            )
        positive = distances[used][distances[used] > 0]
        floor = float(positive.min()) if positive.size else 1.0
        distances = np.maximum(distances, floor)
        weight = np.ones(X.shape[0]) if sample_weight is None else sample_weight
        scale = float(np.exp(np.average(np.log(distances[used]), weights=weight[used])))
        self._local_width_floor, self._local_width_scale = floor, scale
        return distances / scale

    def _fit_bandwidth(self, X, values, sample_weight, local_widths, loss):
        """The bandwidth in use, learned by the CV estimators.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Training inputs.
        values : ndarray of shape (n_samples, n_values)
            Targets, or one-hot labels.
        sample_weight : ndarray of shape (n_samples,) or None
            Sample weights.
        local_widths : ndarray of shape (n_samples,) or None
            Local width factors for ``adaptive``.
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
        if not self._learns_bandwidth:
            return bandwidth, None
        # One torch thread: the learner's many small operations would
        # otherwise wait on each other's threads whenever other processes
        # share the cores.
        with single_threaded_torch():
            learned, loss_curve, n_iter = learn_bandwidth(
                X,
                values,
                np.atleast_1d(bandwidth),
                kernel=self.kernel,
                loss=loss,
                sample_weight=sample_weight,
                local_widths=local_widths,
                adaptive=self.adaptive,
                solver=self.solver,
                learning_rate=self.learning_rate,
                batch_size=self.batch_size,
                max_iter=self.max_iter,
                tol=self.tol,
                random_state=self.random_state,
                verbose=self.verbose,
                device=resolve_device(self.device),
                name=type(self).__name__,
                objective_class=self._loo_objective,
            )
        bandwidth = float(learned[0]) if np.ndim(bandwidth) == 0 else learned
        return bandwidth, (loss_curve, n_iter)

    def _resolve_bandwidth(self, X, sample_weight):
        """The width in use: a float, or an ndarray of shape (n_features,)."""
        if isinstance(self.bandwidth, str):
            return BANDWIDTH_RULES[self.bandwidth](X, sample_weight)
        if isinstance(self.bandwidth, Real):
            return _scaled(float(self.bandwidth), self._coordinate_scale)
        bandwidth = check_bandwidth_array(self.bandwidth, X.shape[1])
        return _scaled(bandwidth, self._coordinate_scale)

    def _weighted_average(self, X):
        """Attention-weighted average of the training values at the queries."""
        X, settings = self._engine_settings(X)
        predictions = self._average(X, settings, self._fit_values)
        return (predictions * self._value_scale).astype(
            numpy_dtype(X, self._fit_X), copy=False
        )

    def _average(self, X, settings, values):
        """Weighted averages of ``values`` (one row per training sample) at
        queries and settings from :meth:`_engine_settings`, in float64.

        Torch computes with one thread in this thread; the chunks of the
        dense path are spread over threads of sknw's own.
        """
        with single_threaded_torch():
            return self._average_in_one_thread(X, settings, values)

    def _average_in_one_thread(self, X, settings, values):
        if self._fit_method == "dense":
            return nadaraya_watson(X, self._fit_X, values, **settings).astype(
                np.float64, copy=False
            )
        settings = dict(settings)
        settings.pop("device")
        partial = tree_partial_sums(
            X,
            self._fit_X,
            values,
            truncation=self._fit_config["truncation"],
            tree=self._tree,
            **settings,
        )
        return merge_partial_sums([partial])

    def _engine_settings(self, X, internal=False):
        """Keyword arguments of the engine for predicting at ``X``, and
        ``X`` in the units the training data are kept in (``internal``: ``X``
        is already in them, the training data themselves, say)."""
        check_coordinates(X, dtype=numpy_dtype(X, self._fit_X))
        if self._coordinate_scale != 1 and not internal:
            # Training data so small that they were scaled up: a query that
            # the scale takes beyond the coordinate limit is brought back to
            # it, still about 1e150 (float32: 1e18) times farther from the
            # samples than they are from each other.
            limit = largest_coordinate(numpy_dtype(X, self._fit_X), X.shape[1])
            with np.errstate(over="ignore"):
                X = np.clip(X * self._coordinate_scale, -limit, limit)
        config = self._fit_config
        query_widths = None
        if config["adaptive"] == "query":
            distances, _ = weighted_neighbor_distances(
                None,
                self._neighbor_weight,
                config["n_neighbors"],
                X,
                neighbors=self._neighbor_index,
            )
            query_widths = (
                np.maximum(distances, self._local_width_floor) / self._local_width_scale
            )
        return X, dict(
            bandwidth=self._bandwidth,
            kernel=config["kernel"],
            sample_weight=self._fit_sample_weight,
            key_widths=(
                self._local_widths_fit if config["adaptive"] == "sample" else None
            ),
            query_widths=query_widths,
            device=self.device,
        )


class _BaseNadarayaWatsonCV(_BaseNadarayaWatson):
    """The estimators that learn their width by exact leave-one-out."""

    _parameter_constraints: dict = {
        **_BaseNadarayaWatson._parameter_constraints,
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
    }

    _learns_bandwidth = True

    def __init__(
        self,
        kernel="gaussian",
        bandwidth=1.0,
        *,
        solver="auto",
        learning_rate="auto",
        batch_size="auto",
        max_iter=100,
        tol=1e-4,
        random_state=None,
        verbose=0,
        adaptive=None,
        n_neighbors=10,
        algorithm="auto",
        truncation=None,
        device="cpu",
    ):
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.solver = solver
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.adaptive = adaptive
        self.n_neighbors = n_neighbors
        self.algorithm = algorithm
        self.truncation = truncation
        self.device = device

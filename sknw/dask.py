"""Kernel regression predictions with Dask, for data larger than one machine."""

# Authors: the sknw developers
# License: BSD 3 clause

from numbers import Real

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:
    raise ImportError(
        'sknw.dask needs Dask and distributed: pip install "scikit-nw[dask]"'
    ) from exc
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from sknw._bandwidth import BANDWIDTH_FACTORS, spread_from_variance
from sknw._base import _scaled
from sknw._classification import NadarayaWatsonClassifier, NadarayaWatsonClassifierCV
from sknw._engine import (
    PartialSums,
    bandwidth_per_feature,
    combine_partial_sums,
    merge_partial_sums,
    partial_sums,
)
from sknw._local_linear import LocalLinearRegressor, LocalLinearRegressorCV
from sknw._local_moments import (
    local_fit_from_partial_sums,
    moment_columns,
    moment_frame,
)
from sknw._regression import NadarayaWatsonRegressor, NadarayaWatsonRegressorCV
from sknw._validation import (
    check_bandwidth_array,
    check_coordinates,
    check_kernel_callable,
    coordinate_scale_of_largest,
    largest_coordinate,
    value_scale,
)

__all__ = ["predict_blockwise", "predict_partitioned"]

_METHODS = {
    NadarayaWatsonRegressor: ("predict",),
    LocalLinearRegressor: ("predict", "predict_gradient"),
    NadarayaWatsonClassifier: ("predict", "predict_proba", "predict_log_proba"),
}


def predict_partitioned(
    estimator, X_train, y_train, X, *, sample_weight=None, method="predict"
):
    """Predict with a training set partitioned across Dask workers.

    Each task computes the kernel sums of one block of queries over one
    partition of the training set; the sums for a block of queries are then
    merged, in a tree, into the prediction over the whole training set. The
    result equals the estimator fitted on the whole training set in memory,
    up to rounding (about 1e-13 relative in float64).

    Read more in the :ref:`Dask page <dask>`.

    Parameters
    ----------
    estimator : NadarayaWatsonRegressor, NadarayaWatsonClassifier or \
            LocalLinearRegressor
        Only its parameters are used (``kernel``, ``bandwidth``, ``device``);
        it is neither fitted nor changed. A bandwidth rule ("scott",
        "silverman") is computed from the partitioned training set and the
        sample weights, as ``fit`` computes it. The ``...CV`` estimators and
        ``adaptive`` are refused: learn the width on a sample that fits in
        memory and pass ``bandwidth=model.bandwidth_``.

    X_train : dask array or dask DataFrame of shape (n_samples, n_features)
        Training inputs, partitioned by rows. An array-like is taken as one
        partition.

    y_train : dask array or dask Series of shape (n_samples,) or \
            (n_samples, n_outputs)
        Training targets (regressor) or class labels (classifier), rechunked
        to the partitions of ``X_train`` when they differ.

    X : dask array, dask DataFrame or array-like of shape (n_queries, \
            n_features)
        Query points. Each block of rows is one set of tasks.

    sample_weight : dask array or array-like of shape (n_samples,), \
            default=None
        Non-negative multipliers of each sample's kernel weight, as in
        ``fit``.

    method : {"predict", "predict_proba", "predict_log_proba", \
            "predict_gradient"}, default="predict"
        The estimator's method to compute: the Nadaraya-Watson regressor has
        "predict" only, the local linear one "predict" and
        "predict_gradient", whose sums of the moments of the local fit are
        merged as Nadaraya-Watson's sums are.

    Returns
    -------
    y_pred : dask array of shape (n_queries,), (n_queries, n_outputs) or \
            (n_queries, n_classes)
        Lazy predictions in the row blocks of ``X``: shaped as ``y_train``
        for the regressors (slopes shaped as ``predict_gradient`` returns
        them); class labels, or probabilities in the order of the
        sorted unique labels (the classifier's ``classes_``), for the
        classifier. float32 when ``X_train`` and ``X`` are float32.

    See Also
    --------
    predict_blockwise : Apply a fitted estimator to blocks of queries.

    Notes
    -----
    The inputs are checked before any kernel is computed: this reads the
    training set (and the queries) once, computing the partition sizes, the
    finiteness checks, the classes of a classifier and a bandwidth rule in
    one pass (two reductions for a rule's variance).

    References
    ----------
    .. [1] E. A. Nadaraya, "On estimating regression", Theory of Probability
       and its Applications, 9(1), 141-142, 1964.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from sknw import NadarayaWatsonRegressor
    >>> from sknw.dask import predict_partitioned
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> y = np.array([0.0, 1.0, 4.0, 9.0])
    >>> reg = NadarayaWatsonRegressor(bandwidth=0.5)
    >>> X_train = da.from_array(X, chunks=2)  # two partitions
    >>> y_train = da.from_array(y, chunks=2)
    >>> y_pred = predict_partitioned(reg, X_train, y_train, [[1.5]])
    >>> y_pred.compute().round(4)
    array([2.536])
    >>> reg.fit(X, y).predict([[1.5]]).round(4)
    array([2.536])
    """
    classifier = _check_estimator(estimator, method)
    train_names = getattr(X_train, "columns", None)
    query_names = getattr(X, "columns", None)
    X_train = _as_float_array(_as_dask_array(X_train), "X_train")
    X = _as_float_array(_as_dask_array(X), "X")
    _check_feature_names(train_names, query_names)
    n_samples, n_features = X_train.shape
    if X.shape[1] != n_features:
        raise ValueError(
            f"X has {X.shape[1]} features, but X_train has {n_features} features."
        )
    row_chunks = X_train.chunks[0]
    y_train = _as_dask_array(y_train, row_chunks)
    _check_target(y_train, classifier)
    if sample_weight is not None:
        sample_weight = _as_dask_array(sample_weight, row_chunks)
        if sample_weight.ndim != 1:
            raise ValueError(
                f"sample_weight must have shape ({n_samples},); "
                f"got shape {sample_weight.shape}."
            )
    _check_lengths(X_train, y_train, sample_weight)
    y_train = y_train.rechunk((row_chunks,) + tuple((n,) for n in y_train.shape[1:]))
    if sample_weight is not None:
        sample_weight = sample_weight.astype(np.float64).rechunk({0: row_chunks})
    if not isinstance(estimator.bandwidth, (str, Real)):
        check_bandwidth_array(estimator.bandwidth, n_features)

    classes, bandwidth, scale, values_scale = _check_data(
        estimator, X_train, y_train, X, sample_weight, classifier
    )
    n_values = len(classes) if classifier else (y_train.shape[1:] or (1,))[0]
    settings = dict(
        bandwidth=bandwidth, kernel=estimator.kernel, device=estimator.device
    )
    if isinstance(estimator, LocalLinearRegressor):
        fits = _merged_local_linear(
            X_train,
            y_train,
            X,
            sample_weight,
            n_outputs=n_values,
            settings=settings,
            gradient=method == "predict_gradient",
            scale=scale,
        )
        if X_train.dtype == np.float32 and X.dtype == np.float32:
            fits = fits.astype(np.float32)
        if y_train.ndim == 1:
            return fits[:, 0] if method == "predict" else fits[:, 0, :]
        return fits
    if scale != 1:
        # Training data so small that squared distances would underflow: in
        # memory, fit scales them up by a power of 2 (exact); so do the
        # partitions, queries beyond the coordinate limit brought back to it.
        dtype = np.float32 if X_train.dtype == X.dtype == np.float32 else np.float64
        limit = largest_coordinate(dtype, n_features)
        X_train = X_train * scale
        X = da.clip(X * scale, -limit, limit)
        settings["bandwidth"] = _scaled(bandwidth, scale)
    averages = _merged_predictions(
        X_train,
        y_train,
        X,
        sample_weight,
        classes=classes,
        n_values=n_values,
        settings=settings,
        values_scale=values_scale,
    )
    if values_scale is not None:
        averages = averages * values_scale
    if X_train.dtype == np.float32 and X.dtype == np.float32:
        averages = averages.astype(np.float32)
    if not classifier:
        return averages[:, 0] if y_train.ndim == 1 else averages
    if method == "predict_proba":
        return averages
    if method == "predict_log_proba":
        return averages.map_blocks(_log, dtype=averages.dtype)
    return averages.map_blocks(
        _labels, classes, drop_axis=1, dtype=classes.dtype, meta=classes[:0]
    )


def predict_blockwise(estimator, X, *, method="predict"):
    """Apply a fitted estimator to a Dask collection of queries, block by block.

    The estimator, training data included, is sent to the workers once; each
    block of rows of ``X`` is predicted on its own, so the queries may be
    larger than memory. The same as ``dask_ml.wrappers.ParallelPostFit``,
    without dask-ml.

    Parameters
    ----------
    estimator : fitted estimator
        Any fitted scikit-learn estimator, such as a fitted
        :class:`~sknw.NadarayaWatsonRegressor`.

    X : dask array or dask DataFrame of shape (n_queries, n_features)
        Query points, in blocks of rows.

    method : str, default="predict"
        The estimator's method: "predict", "predict_proba", ...

    Returns
    -------
    y_pred : dask array
        The method's output, block by block. The blocks' row counts are
        unknown (nan) for a dask DataFrame, as its partition lengths are.

    See Also
    --------
    predict_partitioned : Predict with a partitioned training set.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from sknw import NadarayaWatsonRegressor
    >>> from sknw.dask import predict_blockwise
    >>> reg = NadarayaWatsonRegressor(bandwidth=0.5)
    >>> reg.fit([[0.0], [1.0], [2.0], [3.0]], [0.0, 1.0, 4.0, 9.0])
    NadarayaWatsonRegressor(bandwidth=0.5)
    >>> X = da.from_array(np.array([[1.5], [2.5], [0.5]]), chunks=2)
    >>> predict_blockwise(reg, X).compute().round(4)
    array([2.536 , 6.4501, 0.5318])
    """
    check_is_fitted(estimator)
    if not hasattr(estimator, method):
        raise ValueError(f"{type(estimator).__name__} has no method {method!r}.")
    # One row of zeros tells the output's shape and dtype.
    names = getattr(estimator, "feature_names_in_", None)
    probe = np.zeros((1, estimator.n_features_in_))
    if names is not None and hasattr(X, "columns"):
        import pandas as pd

        probe = pd.DataFrame(probe, columns=names)
    sample = np.asarray(getattr(estimator, method)(probe))
    meta = np.empty((0,) + sample.shape[1:], dtype=sample.dtype)
    estimator = dask.delayed(estimator, pure=True)
    if hasattr(X, "map_partitions"):
        return X.map_partitions(_apply, estimator, method, meta=meta)
    X = _as_dask_array(X).rechunk({1: -1})
    chunks = (X.chunks[0],) + tuple((size,) for size in sample.shape[1:])
    return X.map_blocks(
        _apply,
        estimator,
        method,
        chunks=chunks,
        drop_axis=[] if sample.ndim == 2 else [1],
        meta=meta,
    )


def _check_estimator(estimator, method):
    """Refuse what cannot be predicted from partitions; True for a classifier."""
    methods = next(
        (names for kind, names in _METHODS.items() if isinstance(estimator, kind)),
        None,
    )
    if isinstance(
        estimator,
        (NadarayaWatsonRegressorCV, NadarayaWatsonClassifierCV, LocalLinearRegressorCV),
    ):
        raise ValueError(
            f"{type(estimator).__name__} is not supported with a partitioned "
            "training set: the leave-one-out loss pairs every training sample "
            "with every other. Learn the width on a sample that fits in memory, "
            "then pass NadarayaWatsonRegressor(bandwidth=model.bandwidth_) (or the "
            "classifier)."
        )
    if methods is None:
        raise TypeError(
            "estimator must be a NadarayaWatsonRegressor or a "
            "NadarayaWatsonClassifier, or a LocalLinearRegressor; got "
            f"{type(estimator).__name__}."
        )
    if method not in methods:
        raise ValueError(
            f"method must be one of {list(methods)} for "
            f"{type(estimator).__name__}; got {method!r}."
        )
    estimator._validate_params()
    if estimator.adaptive is not None:
        raise ValueError(
            f"adaptive={estimator.adaptive!r} is not supported with a partitioned "
            "training set: local widths need nearest neighbours across all the "
            "partitions. Use a fixed width: learn it on a sample that fits in "
            "memory and pass bandwidth=model.bandwidth_."
        )
    if callable(estimator.kernel):
        check_kernel_callable(estimator.kernel)
    return isinstance(estimator, NadarayaWatsonClassifier)


def _as_dask_array(data, row_chunks=None):
    """A dask array of the data: dask frames with known partition lengths,
    other array-likes as one block (or in ``row_chunks``)."""
    if isinstance(data, da.Array):
        return data
    if hasattr(data, "to_dask_array"):
        if getattr(data, "ndim", 2) == 1 and not isinstance(data.dtype, np.dtype):
            # Extension dtypes (pandas strings) become object arrays.
            data = data.astype(object)
        return data.to_dask_array(lengths=True)
    array = np.asarray(data)
    if row_chunks is None or array.ndim == 0 or array.shape[0] != sum(row_chunks):
        return da.from_array(array, chunks=array.shape)
    return da.from_array(array, chunks=(row_chunks,) + array.shape[1:])


def _as_float_array(array, name):
    """A 2-D float32 or float64 array of rows, one block wide."""
    if array.ndim != 2:
        raise ValueError(
            f"Expected a 2D array for {name}, got shape {array.shape}. Reshape "
            "with array.reshape(-1, 1) for a single feature or "
            "array.reshape(1, -1) for a single sample."
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"Found array with shape {array.shape} for {name}, while at least "
            "1 sample and 1 feature are required."
        )
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    return array.rechunk({1: -1})


def _check_feature_names(train_names, query_names):
    if train_names is None or query_names is None:
        return
    if list(train_names) != list(query_names):
        raise ValueError(
            "The feature names of X should match those of X_train; got "
            f"{list(query_names)} and {list(train_names)}."
        )


def _check_target(y_train, classifier):
    if classifier and y_train.ndim != 1:
        raise ValueError(
            f"y_train must have shape (n_samples,) for a classifier; got shape "
            f"{y_train.shape}."
        )
    if y_train.ndim not in (1, 2):
        raise ValueError(
            "y_train must have shape (n_samples,) or (n_samples, n_outputs); "
            f"got shape {y_train.shape}."
        )


def _check_lengths(*arrays):
    lengths = [array.shape[0] for array in arrays if array is not None]
    if len(set(lengths)) > 1:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: {lengths}."
        )


def _check_data(estimator, X_train, y_train, X, sample_weight, classifier):
    """Check the values and compute what the tasks share, in one pass.

    Returns
    -------
    classes : ndarray of shape (n_classes,) or None
        The sorted unique labels of a classifier.
    bandwidth : float or ndarray of shape (n_features,)
        The width in use, in the units of ``X_train``.
    scale : float
        The power of 2 that scales tiny training coordinates up (see
        :func:`~sknw._validation.coordinate_scale`), 1 for others.
    values_scale : ndarray of shape (n_outputs,) or None
        A regressor's powers of 2 that bring each output below 1 (see
        :func:`~sknw._validation.value_scale`); None for a classifier.
    """
    checks = {
        "X_train": _non_finite(X_train),
        "X": _non_finite(X),
    }
    largest_values = None
    if not classifier:
        if y_train.dtype.kind not in "biuf":
            y_train = y_train.astype(np.float64)
        checks["y_train"] = _non_finite(y_train)
        largest_values = abs(y_train.astype(np.float64)).max(axis=0)
    if sample_weight is not None:
        checks["sample_weight"] = _non_finite(sample_weight)
        negative, positive = (sample_weight < 0).any(), (sample_weight > 0).any()
    else:
        negative, positive = False, True
    classes = da.unique(y_train) if classifier else None
    rule = estimator.bandwidth if isinstance(estimator.bandwidth, str) else None
    variance = n_samples = None
    if rule is not None:
        variance, n_samples = _weighted_variance(X_train, sample_weight)
    checks, negative, positive, classes, variance, n_samples, largest_values = (
        dask.compute(
            checks, negative, positive, classes, variance, n_samples, largest_values
        )
    )
    # Regression targets divided by a power of 2 per output (exact) and
    # multiplied back, as fit keeps them: their weighted sums cannot overflow.
    values_scale = None
    if largest_values is not None:
        values_scale = value_scale(np.atleast_1d(largest_values)[None, :])
    for name, (has_nan, has_inf, largest) in checks.items():
        if has_nan:
            raise ValueError(f"Input {name} contains NaN.")
        if has_inf:
            raise ValueError(f"Input {name} contains infinity.")
        if name in ("X_train", "X"):
            both_float32 = X_train.dtype == np.float32 and X.dtype == np.float32
            dtype = np.float32 if both_float32 else np.float64
            check_coordinates(
                np.empty((0, X_train.shape[1]), dtype=dtype), name, float(largest)
            )
    if negative:
        raise ValueError("sample_weight must be >= 0; it has negative values.")
    if not positive:
        raise ValueError(
            "sample_weight must have at least one positive value; all are zero."
        )
    if classifier:
        check_classification_targets(classes)
    scale = coordinate_scale_of_largest(float(checks["X_train"][2]))
    if rule is not None:
        if scale != 1:
            # The spread of coordinates whose squares underflow, taken on the
            # scaled coordinates, as fit takes it in memory.
            variance, n_samples = dask.compute(
                *_weighted_variance(X_train * scale, sample_weight)
            )
        factor = BANDWIDTH_FACTORS[rule](np.log(n_samples), X_train.shape[1])
        bandwidth = spread_from_variance(variance) * factor / scale
    elif isinstance(estimator.bandwidth, Real):
        bandwidth = float(estimator.bandwidth)
    else:
        bandwidth = check_bandwidth_array(estimator.bandwidth, X_train.shape[1])
    return classes, bandwidth, scale, values_scale


def _non_finite(array):
    """Lazy flags: does the array hold NaN, does it hold inf; its largest
    magnitude."""
    return da.isnan(array).any(), da.isinf(array).any(), abs(array).max()


def _weighted_variance(X, sample_weight):
    """Lazy weighted variance per feature and sum of the weights, computed as
    ``sknw._bandwidth`` computes them in memory."""
    if sample_weight is None:
        sample_weight = da.ones(X.shape[0], chunks=X.chunks[0])
    X = X.astype(np.float64)
    n_samples = sample_weight.sum()
    mean = sample_weight @ X / n_samples
    variance = sample_weight @ (X - mean) ** 2 / n_samples
    return variance, n_samples


def _combined_partial_sums(
    block_function, X_train, y_train, X, sample_weight, width, **options
):
    """Lazy packed partial sums over all partitions, of shape (n_queries,
    1, width).

    Each (query block, partition) task packs what ``block_function`` returns
    (``block_function(queries, keys, y, sample_weight, **options)``, packed
    :class:`PartialSums` of shape (n_queries_in_block, 1, width)); a tree
    reduction over the partitions combines them.
    """
    y_index = "j" if y_train.ndim == 1 else "jo"
    weight_args = (None, None) if sample_weight is None else (sample_weight, "j")
    packed = da.blockwise(
        block_function,
        "ijp",
        X,
        "if",
        X_train,
        "jf",
        y_train,
        y_index,
        *weight_args,
        new_axes={"p": width},
        adjust_chunks={"j": 1},
        concatenate=True,
        dtype=np.float64,
        meta=np.empty((0, 0, 0)),
        **options,
    )
    return da.reduction(
        packed,
        _keep,
        _combine_packed,
        combine=_combine_packed,
        axis=1,
        keepdims=True,
        concatenate=True,
        dtype=np.float64,
        meta=np.empty((0, 0, 0)),
    )


def _merged_predictions(X_train, y_train, X, sample_weight, **options):
    """Lazy predictions of shape (n_queries, n_values), float64.

    Each (query block, partition) task packs its :class:`PartialSums` into
    an array of shape (n_queries_in_block, 1, width); a tree reduction over
    the partitions combines them, and the root merges them into predictions.
    """
    width = 2 * (options["n_values"] + 1) + 2
    combined = _combined_partial_sums(
        _block_partial_sums, X_train, y_train, X, sample_weight, width, **options
    )
    return combined.map_blocks(
        _merge_packed,
        drop_axis=1,
        chunks=(X.chunks[0], (options["n_values"],)),
        dtype=np.float64,
        meta=np.empty((0, 0)),
    )


def _merged_local_linear(
    X_train, y_train, X, sample_weight, *, n_outputs, settings, gradient, scale
):
    """Lazy local linear fits (or slopes), float64.

    As :func:`_merged_predictions`, with the sums of the moment columns of
    the local linear fit, taken in the frame of the whole training set (its
    range and largest targets: one more pass over it), so that the fits
    equal those of the estimator fitted in memory up to rounding. As in
    memory, the kernel weights are computed on coordinates scaled by
    ``scale`` (a power of 2 that lifts tiny coordinates), the moments and
    the fits in the units of ``X_train``: the slopes need no scaling back.

    Returns
    -------
    fits : dask array of shape (n_queries, n_outputs), or (n_queries,
        n_outputs, n_features) when ``gradient``
    """
    targets = y_train.reshape(y_train.shape[0], -1).astype(np.float64)
    frame = moment_frame(
        *dask.compute(
            X_train.min(axis=0), X_train.max(axis=0), abs(targets).max(axis=0)
        )
    )
    n_features = X_train.shape[1]
    n_columns = n_features + n_features * (n_features + 1) // 2
    n_columns += n_outputs * (1 + n_features)
    width = 2 * (n_columns + 1) + 2
    X = X.rechunk({1: -1})
    combined = _combined_partial_sums(
        _block_local_sums,
        X_train,
        y_train,
        X,
        sample_weight,
        width,
        n_outputs=n_outputs,
        settings=dict(settings, bandwidth=_scaled(settings["bandwidth"], scale)),
        frame=frame,
        scale=scale,
    )
    bandwidth = bandwidth_per_feature(settings["bandwidth"], n_features)
    # The slopes carry one more axis, over the features.
    function, index, meta = _local_fits, "io", np.empty((0, 0))
    if gradient:
        function, index, meta = _local_slopes, "iof", np.empty((0, 0, 0))
    return da.blockwise(
        function,
        index,
        combined,
        "ijp",
        X,
        "if",
        new_axes={"o": n_outputs},
        concatenate=True,
        dtype=np.float64,
        meta=meta,
        bandwidth=bandwidth,
        frame=frame,
    )


def _block_local_sums(
    queries, keys, y, sample_weight, *, n_outputs, settings, frame, scale
):
    """Packed partial sums of the moment columns of one partition, the
    kernel weights computed on the coordinates times ``scale``."""
    queries = np.asarray(queries, dtype=np.float64)
    keys = np.asarray(keys, dtype=np.float64)
    values = np.asarray(y, dtype=np.float64).reshape(len(y), n_outputs)
    columns = moment_columns(keys, values, frame)
    if scale != 1:
        limit = largest_coordinate(np.float64, keys.shape[1])
        keys = keys * scale
        with np.errstate(over="ignore"):
            queries = np.clip(queries * scale, -limit, limit)
    partial = partial_sums(
        queries, keys, columns, sample_weight=sample_weight, **settings
    )
    return _pack(partial)[:, None, :]


def _local_fits(packed, queries, *, bandwidth, frame):
    partial = _unpack(packed[:, 0])
    return local_fit_from_partial_sums([partial], queries, bandwidth, frame)[0]


def _local_slopes(packed, queries, *, bandwidth, frame):
    partial = _unpack(packed[:, 0])
    slope = local_fit_from_partial_sums([partial], queries, bandwidth, frame)[1]
    return np.swapaxes(slope, 1, 2)


def _block_partial_sums(
    queries, keys, y, sample_weight, *, classes, n_values, settings, values_scale
):
    """Packed partial sums of one block of queries over one partition."""
    # Blocks received from other workers can be read-only, which torch warns
    # about when it wraps them.
    queries = np.require(queries, requirements="W")
    keys = np.require(keys, requirements="W")
    if classes is None:
        values = np.asarray(y, dtype=np.float64).reshape(len(y), n_values)
        values = values / values_scale
    else:
        values = (y[:, None] == classes[None, :]).astype(np.float64)
    partial = partial_sums(
        queries, keys, values, sample_weight=sample_weight, **settings
    )
    return _pack(partial)[:, None, :]


def _pack(partial):
    """One array of shape (n_queries, width) holding a PartialSums."""
    return np.column_stack(
        [partial.log_shift, partial.nearest_sq, partial.sums, partial.nearest_sums]
    )


def _unpack(packed):
    """The PartialSums that :func:`_pack` packed."""
    n_sums = (packed.shape[1] - 2) // 2
    return PartialSums(
        log_shift=packed[:, 0],
        sums=packed[:, 2 : 2 + n_sums],
        nearest_sq=packed[:, 1],
        nearest_sums=packed[:, 2 + n_sums :],
    )


def _keep(packed, axis=None, keepdims=None):
    return packed


def _combine_packed(packed, axis=None, keepdims=None):
    """Partial sums over the union of the partitions along axis 1."""
    partials = [_unpack(packed[:, part]) for part in range(packed.shape[1])]
    return _pack(combine_partial_sums(partials))[:, None, :]


def _merge_packed(packed):
    return merge_partial_sums([_unpack(packed[:, 0])])


def _labels(proba, classes):
    return classes[np.argmax(proba, axis=1)]


def _log(proba):
    with np.errstate(divide="ignore"):
        return np.log(proba)


def _apply(block, estimator, method):
    return getattr(estimator, method)(block)

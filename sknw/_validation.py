"""Checks of the parameters and inputs that no parameter constraint expresses."""

# Authors: the sknw developers
# License: BSD 3 clause

import numpy as np
import torch

from sknw._engine import check_kernel_output, resolve_device

# Scaled distances at which a callable kernel is tried before any work.
_PROBE_U = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 1e3])


def check_bandwidth_array(bandwidth, n_features):
    """Validate a bandwidth given as an array: one finite width > 0 per feature.

    Parameters
    ----------
    bandwidth : array-like
        The ``bandwidth`` parameter, already known not to be a float or a rule.
    n_features : int
        Number of features of the training data.

    Returns
    -------
    bandwidth : float or ndarray of shape (n_features,)
        A float for a 0-d array, otherwise a new float64 array.
    """
    if np.asarray(bandwidth).dtype.kind == "b":
        raise ValueError(
            "bandwidth must be a float > 0, 'scott', 'silverman' or an array of "
            f"shape (n_features,) of floats > 0; got the boolean {bandwidth!r}."
        )
    try:
        array = np.array(bandwidth, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            "bandwidth must be a float > 0, 'scott', 'silverman' or an array of "
            f"shape (n_features,) of floats > 0; got {bandwidth!r}."
        ) from exc
    if array.ndim != 0 and array.shape != (n_features,):
        raise ValueError(
            f"bandwidth as an array must have shape (n_features,) = ({n_features},); "
            f"got shape {array.shape}."
        )
    if not np.all(np.isfinite(array)) or not np.all(array > 0):
        raise ValueError(
            f"bandwidth must hold finite values > 0 only; got {array.tolist()}."
        )
    return float(array) if array.ndim == 0 else array


def check_sample_weight(sample_weight, n_samples, dtype):
    """Validate ``sample_weight``: shape (n_samples,), finite, >= 0, not all 0.

    Parameters
    ----------
    sample_weight : array-like of shape (n_samples,) or None
        The weights passed to ``fit``.
    n_samples : int
        Number of training samples.
    dtype : numpy dtype
        Floating dtype of the training data.

    Returns
    -------
    sample_weight : ndarray of shape (n_samples,) or None
        A new array; None stays None.
    """
    if sample_weight is None:
        return None
    if np.asarray(sample_weight).dtype.kind == "c":
        raise ValueError(
            "sample_weight must be real numbers; got complex values, whose "
            "imaginary part would be dropped."
        )
    try:
        sample_weight = np.array(sample_weight, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"sample_weight must be an array of numbers; got {sample_weight!r}."
        ) from exc
    if sample_weight.ndim == 0:
        sample_weight = np.full(n_samples, sample_weight, dtype=dtype)
    if sample_weight.shape != (n_samples,):
        raise ValueError(
            f"sample_weight must have shape ({n_samples},); "
            f"got shape {sample_weight.shape}."
        )
    if not np.all(np.isfinite(sample_weight)):
        raise ValueError("sample_weight must be finite; it contains NaN or inf.")
    if np.any(sample_weight < 0):
        raise ValueError("sample_weight must be >= 0; it has negative values.")
    if not np.any(sample_weight > 0):
        raise ValueError(
            "sample_weight must have at least one positive value; all are zero."
        )
    return sample_weight


def check_kernel_callable(kernel):
    """Try a callable kernel on a range of u and refuse a bad output."""
    try:
        weights = np.asarray(kernel(_PROBE_U.copy()))
    except Exception as exc:
        raise ValueError(
            f"The callable kernel failed on a NumPy array of scaled distances: {exc!r}."
        ) from exc
    check_kernel_output(weights, _PROBE_U.shape)


def check_device(device):
    """Refuse an unknown or absent device, or one that cannot compute (such
    as ``"meta"``, which holds shapes but no values), before any work."""
    resolved = resolve_device(device)
    try:
        value = float((torch.ones(1, device=resolved) * 2).cpu()[0])
    except Exception as exc:
        raise ValueError(
            f"device={device!r} cannot compute values and copy them back to "
            f"the CPU ({exc}). Use 'cpu' or an available accelerator such as "
            "'cuda'."
        ) from exc
    if value != 2.0:
        raise ValueError(
            f"device={device!r} does not compute values: 1 * 2 gave {value}."
        )
    return resolved


def largest_coordinate(dtype, n_features=1):
    """The largest magnitude of a coordinate whose squared distances to
    others stay finite in ``dtype`` (float32, or float64 for any other):
    1e18 (1e150), and less with hundreds of features."""
    dtype = np.float32 if np.dtype(dtype) == np.float32 else np.float64
    limit = 1e18 if dtype == np.float32 else 1e150
    return min(limit, 0.25 * float(np.sqrt(np.finfo(dtype).max / n_features)))


def check_coordinates(X, name="X", largest=None, dtype=None):
    """Refuse coordinates so large that squared distances would overflow.

    Parameters
    ----------
    X : ndarray
        Validated, finite data.
    name : str, default="X"
        Its name in the message.
    largest : float, default=None
        The largest magnitude in ``X`` when already known.
    dtype : dtype, default=None
        The dtype computed in; that of ``X`` when None.
    """
    dtype = X.dtype if dtype is None else dtype
    limit = largest_coordinate(dtype, X.shape[-1] if X.ndim == 2 else 1)
    if largest is None:
        largest = float(np.abs(X).max(initial=0))
    if largest > limit:
        raise ValueError(
            f"{name} has values up to {largest:.3g} in magnitude; in "
            f"{np.dtype(dtype).name} sknw takes values up to {limit:g}, beyond "
            "which squared distances overflow. Rescale the data (and the "
            "bandwidth) first."
        )


def check_numeric_target(y, name):
    """Refuse targets that are not numbers (strings, bytes, dates).

    Parameters
    ----------
    y : ndarray
        The ``y`` passed to ``fit``, validated.
    name : str
        The estimator's name, for the message.
    """
    dtype = np.asarray(y).dtype
    if dtype.kind in "USaMmV":
        raise ValueError(
            f"{name} needs numeric targets; got y of dtype {dtype}. Encode "
            "labels with NadarayaWatsonClassifier, or convert the targets to "
            "numbers first."
        )


def writable(array):
    """``array``, or a copy of it when it is read-only (torch would warn)."""
    return array if array.flags.writeable else array.copy()


# Training data whose largest coordinate is below this are scaled up by a
# power of 2: their squared distances would otherwise be denormal or 0
# (below about 1e-154 in float64 and 1e-19 in float32).
_SMALL_COORDINATE = 2.0**-32


def coordinate_scale(X):
    """The power of 2 that brings tiny coordinates to a largest near 1.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Validated, finite training data.

    Returns
    -------
    scale : float
        1 unless the largest magnitude in ``X`` is positive and below
        2^-32; then the power of 2 that puts it in [0.5, 1) (at most 2^1000).
        Multiplying by a power of 2 is exact, so ``X * scale`` keeps every
        ratio of distances.
    """
    return coordinate_scale_of_largest(float(np.abs(X).max(initial=0)))


def coordinate_scale_of_largest(largest):
    """:func:`coordinate_scale` of data whose largest magnitude is
    ``largest`` (what a partitioned training set gives)."""
    if largest == 0 or largest >= _SMALL_COORDINATE:
        return 1.0
    return float(np.ldexp(1.0, min(-int(np.frexp(largest)[1]), 1000)))


def value_scale(values):
    """Powers of 2, one per column, that bring the values below 1.

    Sums of weights times values then cannot overflow, whatever the values'
    magnitude; dividing by a power of 2 and multiplying back is exact.

    Parameters
    ----------
    values : ndarray of shape (n_samples, n_values)
        Finite targets or one-hot labels.

    Returns
    -------
    scale : ndarray of shape (n_values,)
        1 for a column of zeros.
    """
    largest = np.abs(values).max(axis=0, initial=0).astype(np.float64)
    _, exponent = np.frexp(largest)
    # 2^(e - 1) for a largest in [2^(e - 1), 2^e): values in [-1, 1], and
    # 2^1023 at most.
    return np.where(largest > 0, np.ldexp(1.0, exponent - 1), 1.0)


def check_value_range(values, dtype, name):
    """Refuse targets beyond the range of float32 with float32 inputs, whose
    predictions are float32.

    Parameters
    ----------
    values : ndarray of shape (n_samples, n_values)
        The targets.
    dtype : numpy dtype
        The dtype of X.
    name : str
        The estimator's name, for the message.
    """
    if np.dtype(dtype) != np.float32:
        return
    largest = float(np.abs(values).max(initial=0))
    if largest > float(np.finfo(np.float32).max):
        raise ValueError(
            f"{name} predicts in float32 for float32 X, and y has values up to "
            f"{largest:.3g} in magnitude, beyond float32's largest "
            f"({np.finfo(np.float32).max:.3g}). Pass X as float64."
        )

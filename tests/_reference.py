"""A slow dense NumPy Nadaraya-Watson, written from the formulas, for tests."""

import numpy as np
from scipy.special import softmax

# K(u) for u >= 0, straight from the definitions in DESIGN.md.
KERNELS_NUMPY = {
    "gaussian": lambda u: np.exp(-(u**2) / 2),
    "tophat": lambda u: (u < 1).astype(float),
    "epanechnikov": lambda u: np.maximum(1 - u**2, 0),
    "linear": lambda u: np.maximum(1 - u, 0),
    "biweight": lambda u: np.maximum(1 - u**2, 0) ** 2,
    "triweight": lambda u: np.maximum(1 - u**2, 0) ** 3,
    "tricube": lambda u: np.maximum(1 - u**3, 0) ** 3,
    "cosine": lambda u: np.where(u < 1, np.cos(np.pi * u / 2), 0.0),
    "exponential": lambda u: np.exp(-u),
    "constant": lambda u: np.ones_like(u),
}
ALIASES = {
    "boxcar": "tophat",
    "uniform": "tophat",
    "triangular": "linear",
    "quartic": "biweight",
}
LOG_KERNELS = {
    "gaussian": lambda u: -(u**2) / 2,
    "exponential": lambda u: -u,
}


def attention_slow(
    queries,
    keys,
    bandwidth,
    kernel,
    sample_weight=None,
    key_widths=None,
    query_widths=None,
):
    """Dense (n_queries, n_keys) attention from exact differences, float64.

    Key j seen from query i has the width bandwidth * key_widths[j] *
    query_widths[i]. Zero-weight rows take the nearest positive-weight keys,
    ties averaged.
    """
    queries = np.asarray(queries, dtype=np.float64)
    keys = np.asarray(keys, dtype=np.float64)
    if sample_weight is None:
        sample_weight = np.ones(len(keys))
    sample_weight = np.asarray(sample_weight, dtype=np.float64)
    kernel = ALIASES.get(kernel, kernel)
    diff = (queries[:, None, :] - keys[None, :, :]) / np.asarray(bandwidth)
    distance = np.sqrt((diff**2).sum(axis=-1))
    u = distance.copy()
    if key_widths is not None:
        u = u / np.asarray(key_widths)[None, :]
    if query_widths is not None:
        u = u / np.asarray(query_widths)[:, None]
    active = sample_weight > 0
    if kernel in LOG_KERNELS:
        with np.errstate(divide="ignore", invalid="ignore"):
            log_weights = LOG_KERNELS[kernel](u) + np.log(sample_weight)
            weights = softmax(log_weights, axis=1)
    else:
        weights = KERNELS_NUMPY[kernel](u) * sample_weight
    # The Gaussian's limit: the keys of smallest u, whatever the bandwidth.
    relative = _nearest_measure(queries, keys, bandwidth)
    if key_widths is not None:
        relative = relative / np.asarray(key_widths) ** 2
    for row in np.flatnonzero(~(weights.sum(axis=1) > 0)):
        nearest = np.where(active, relative[row], np.inf)
        weights[row] = (nearest == nearest.min()) * sample_weight
    return weights / weights.sum(axis=1, keepdims=True)


def _nearest_measure(queries, keys, bandwidth):
    """Squared distances that order keys as u does, computed as exactly as
    the data allow: in the data's own units when the width is shared, so
    that exact ties stay ties (and a square root cannot round two distances
    into one)."""
    bandwidth = np.broadcast_to(np.asarray(bandwidth, dtype=np.float64), keys.shape[1:])
    scale = bandwidth.min() / bandwidth
    diff = (queries[:, None, :] - keys[None, :, :]) * scale
    return (diff**2).sum(axis=-1)


def nadaraya_watson_slow(queries, keys, values, bandwidth, kernel, *args, **kwargs):
    """Dense NumPy Nadaraya-Watson prediction of ``values`` at ``queries``."""
    return attention_slow(queries, keys, bandwidth, kernel, *args, **kwargs) @ values


def kth_neighbor_distance_slow(X, n_neighbors, queries=None):
    """Distance to the k-th nearest sample of X, by sorting all distances."""
    exclude_self = queries is None
    queries = X if queries is None else queries
    distance = np.sqrt(((queries[:, None, :] - X[None, :, :]) ** 2).sum(axis=-1))
    if exclude_self:
        np.fill_diagonal(distance, np.inf)
    return np.sort(distance, axis=1)[:, n_neighbors - 1]


def loo_predictions_slow(
    X, values, bandwidth, kernel, sample_weight=None, key_widths=None, query_widths=None
):
    """Each row of ``values`` predicted from the others, densely.

    Frequency weights: row i leaves out one unit of its weight c_i (all of it
    when c_i < 1) and keeps e_i = c_i - min(c_i, 1) at distance 0.
    """
    X = np.asarray(X, dtype=np.float64)
    n_samples = len(X)
    if sample_weight is None:
        sample_weight = np.ones(n_samples)
    sample_weight = np.asarray(sample_weight, dtype=np.float64)
    kept = sample_weight - np.minimum(sample_weight, 1)
    kernel = ALIASES.get(kernel, kernel)
    diff = (X[:, None, :] - X[None, :, :]) / np.asarray(bandwidth)
    distance = np.sqrt((diff**2).sum(axis=-1))
    u = distance.copy()
    if key_widths is not None:
        u = u / np.asarray(key_widths)[None, :]
    if query_widths is not None:
        u = u / np.asarray(query_widths)[:, None]
    diagonal = np.arange(n_samples)
    if kernel in LOG_KERNELS:
        log_weights = LOG_KERNELS[kernel](u) + np.log(sample_weight)
        with np.errstate(divide="ignore"):
            log_weights[diagonal, diagonal] = np.log(kept)
        weights = softmax(log_weights, axis=1)
    else:
        weights = KERNELS_NUMPY[kernel](u) * sample_weight
        weights[diagonal, diagonal] = kept
    nearest_measure = _nearest_measure(X, X, bandwidth)
    for row in np.flatnonzero(~(weights.sum(axis=1) > 0)):
        relative = nearest_measure[row]
        if key_widths is not None:
            relative = relative / np.asarray(key_widths) ** 2
        relative[row] = np.inf
        weights[row] = (relative == relative.min()) * sample_weight
    return weights @ values / weights.sum(axis=1, keepdims=True)


def loo_squared_error_slow(X, y, bandwidth, kernel, sample_weight=None, **widths):
    """Sample-weighted leave-one-out mean squared error."""
    y = np.asarray(y, dtype=np.float64).reshape(len(X), -1)
    predictions = loo_predictions_slow(X, y, bandwidth, kernel, sample_weight, **widths)
    errors = ((predictions - y) ** 2).mean(axis=1)
    return np.average(errors, weights=sample_weight)


def loo_log_loss_slow(X, labels, bandwidth, kernel, sample_weight=None, **widths):
    """Sample-weighted leave-one-out log-loss of integer labels, with
    probabilities floored at machine epsilon."""
    one_hot = np.eye(labels.max() + 1)[labels]
    proba = loo_predictions_slow(X, one_hot, bandwidth, kernel, sample_weight, **widths)
    true = np.maximum(proba[np.arange(len(X)), labels], np.finfo(np.float64).eps)
    return np.average(-np.log(true), weights=sample_weight)


def sine_data(n_samples=40, n_features=2, seed=0, n_outputs=None):
    """Uniform inputs on [-2, 2]^d and the sum of their sines plus noise;
    ``n_outputs`` columns, each an affine copy of it, when given."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n_samples, n_features))
    y = np.sin(X).sum(axis=1) + 0.1 * rng.normal(size=n_samples)
    if n_outputs is not None:
        y = np.column_stack([y * (k + 1) + k for k in range(n_outputs)])
    return X, y


def d2l_truth(x):
    """The d2l chapter's toy function, 2 sin(x) + x^0.8."""
    return 2 * np.sin(x) + x**0.8


def d2l_toy(n_samples=40, seed=0, noise=0.5):
    """Sorted inputs uniform on [0, 5) and the toy function plus noise."""
    rng = np.random.default_rng(seed)
    X = np.sort(rng.uniform(0, 5, n_samples))[:, None]
    return X, d2l_truth(X[:, 0]) + noise * rng.normal(size=n_samples)

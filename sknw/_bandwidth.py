"""Rules of thumb for the bandwidth, and local widths from neighbour distances."""

# Authors: the sknw developers
# License: BSD 3 clause

import numpy as np
from sklearn.neighbors import NearestNeighbors


def _spread_and_count(X, sample_weight):
    """Weighted standard deviation per feature and the number of samples.

    The weights are frequency weights: an integer weight counts as that many
    repeated rows. They are divided by their largest before any sum, so
    that weights near the largest or the smallest float neither overflow
    nor vanish, and the count is returned as its logarithm.
    """
    if sample_weight is None:
        sample_weight = np.ones(X.shape[0])
    sample_weight = np.asarray(sample_weight, dtype=np.float64)
    largest = sample_weight.max()
    relative = sample_weight / largest
    total = relative.sum()
    X = np.asarray(X, dtype=np.float64)
    mean = relative @ X / total
    variance = relative @ (X - mean) ** 2 / total
    return spread_from_variance(variance), np.log(total) + np.log(largest)


def spread_from_variance(variance):
    """Standard deviation per feature, 1 where the variance is 0.

    A feature with zero spread contributes nothing to any distance, so its
    spread is taken as 1, the spread of standardised data.

    Parameters
    ----------
    variance : ndarray of shape (n_features,)
        Weighted variance (ddof=0) of each feature.

    Returns
    -------
    spread : ndarray of shape (n_features,)
    """
    spread = np.sqrt(variance)
    spread[~(spread > 0)] = 1.0
    return spread


def scott_factor(log_n, n_features):
    """Scott's factor n ** (-1 / (d + 4)), from log(n)."""
    return np.exp(-log_n / (n_features + 4))


def silverman_factor(log_n, n_features):
    """Silverman's factor (4 / ((d + 2) n)) ** (1 / (d + 4)), from log(n)."""
    return np.exp((np.log(4.0 / (n_features + 2)) - log_n) / (n_features + 4))


def scott_bandwidth(X, sample_weight=None):
    """Scott's rule: h_j = sigma_j * n ** (-1 / (d + 4)).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training data.
    sample_weight : ndarray of shape (n_samples,), default=None
        Frequency weights; n is their sum and sigma_j the weighted standard
        deviation (ddof=0) of feature j.

    Returns
    -------
    bandwidth : ndarray of shape (n_features,)
        One width per feature.

    Examples
    --------
    >>> import numpy as np
    >>> from sknw._bandwidth import scott_bandwidth
    >>> scott_bandwidth(np.array([[0.0], [1.0], [2.0], [3.0]]))
    array([0.847...])
    """
    spread, log_n = _spread_and_count(X, sample_weight)
    return spread * scott_factor(log_n, spread.shape[0])


def silverman_bandwidth(X, sample_weight=None):
    """Silverman's rule: h_j = sigma_j * (4 / ((d + 2) n)) ** (1 / (d + 4)).

    At d = 1 the factor (4 / 3) ** (1 / 5) is 1.059, the 1.06 of statsmodels'
    ``normal_reference`` rule.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training data.
    sample_weight : ndarray of shape (n_samples,), default=None
        Frequency weights; n is their sum and sigma_j the weighted standard
        deviation (ddof=0) of feature j.

    Returns
    -------
    bandwidth : ndarray of shape (n_features,)
        One width per feature.

    Examples
    --------
    >>> import numpy as np
    >>> from sknw._bandwidth import silverman_bandwidth
    >>> silverman_bandwidth(np.array([[0.0], [1.0], [2.0], [3.0]]))
    array([0.897...])
    """
    spread, log_n = _spread_and_count(X, sample_weight)
    return spread * silverman_factor(log_n, spread.shape[0])


BANDWIDTH_RULES = {"scott": scott_bandwidth, "silverman": silverman_bandwidth}

# The rules' factors of the spread, as functions of (log(n), n_features).
BANDWIDTH_FACTORS = {"scott": scott_factor, "silverman": silverman_factor}


def weighted_neighbor_distances(
    X, sample_weight, n_neighbors, queries=None, neighbors=None
):
    """Distance at which the weights of the nearest samples add up to
    ``n_neighbors``: a k-th neighbour distance with frequency weights.

    An integer weight counts as that many copies of the row, so the result
    equals the k-th neighbour distance on the data with repeated rows, and
    with unit weights the plain k-th neighbour distance.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features) or None
        Samples of positive weight; None with ``queries`` and ``neighbors``.
    sample_weight : ndarray of shape (n_samples,) or None
        Their frequency weights; None is all ones.
    n_neighbors : int
        The weight to reach.
    queries : ndarray of shape (n_queries, n_features), default=None
        Points to measure from; None measures from each sample to the others
        (one unit of its own weight, or all of it below 1, is itself; the
        rest are copies at distance 0).
    neighbors : NearestNeighbors, default=None
        An index fitted on ``X``, from :func:`neighbor_index`; built here
        when None.

    Returns
    -------
    distances : ndarray of shape (n_samples,) or (n_queries,)
        Where the weight is not reached even with every sample, the distance
        to the farthest.
    clipped : bool
        Whether that happened for some point.
    """
    n_samples = X.shape[0] if X is not None else neighbors.n_samples_fit_
    weight = np.ones(n_samples) if sample_weight is None else sample_weight
    leave_out = queries is None
    queries = X if leave_out else queries
    distances = np.zeros(queries.shape[0])
    clipped = False
    if n_samples == 0:
        return distances, True
    if neighbors is None:
        neighbors = neighbor_index(X)
    pending = np.arange(queries.shape[0])
    n_asked = min(n_samples, n_neighbors + 1)
    # Integer weights add up exactly; a relative slack absorbs rounding of
    # fractional ones.
    target = n_neighbors * (1 - 1e-12)
    while pending.size:
        found, index = neighbors.kneighbors(queries[pending], n_neighbors=n_asked)
        cumulative = np.cumsum(weight[index], axis=1)
        if leave_out:
            cumulative -= np.minimum(weight[pending], 1)[:, None]
        reached = cumulative >= target
        done = reached.any(axis=1)
        first = reached.argmax(axis=1)
        distances[pending[done]] = found[done, first[done]]
        if n_asked == n_samples:
            distances[pending[~done]] = found[~done, -1]
            clipped = clipped or bool(np.any(~done))
            break
        pending = pending[~done]
        n_asked = min(n_samples, 2 * n_asked)
    return distances, clipped


def neighbor_index(X):
    """The nearest-neighbour index that :func:`weighted_neighbor_distances`
    searches, fitted on ``X`` (samples of positive weight)."""
    return NearestNeighbors().fit(X)

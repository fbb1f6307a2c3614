"""Local moments of the kernel weights, and the local linear fit they give."""

# Authors: the sknw developers
# License: BSD 3 clause

from typing import NamedTuple

import numpy as np
import torch

from sknw._engine import combine_partial_sums

# A local design is singular when its smallest local variance, in squared
# widths, is below this fraction of the scale its moments were computed at:
# the total local variance plus the squared distance from the centre of the
# data to the local mean, which the raw second moments carry and round with.
# A line fitted through it would follow rounding, not the data.
SINGULAR_TOLERANCE = 1e-10


class MomentFrame(NamedTuple):
    """The coordinates the moments are taken in: ``(x - centre) / x_scale``
    and ``y / y_scale``.

    The centre is the middle of the training range, so that the moments
    round with the data's spread rather than their offset; the scales are
    powers of 2 (exact) that bring the training range and targets within
    [-1, 1], so that products of moments neither overflow nor underflow.

    Attributes
    ----------
    centre : ndarray of shape (n_features,)
    x_scale : ndarray of shape (n_features,)
    y_scale : ndarray of shape (n_outputs,)
    """

    centre: np.ndarray
    x_scale: np.ndarray
    y_scale: np.ndarray


def moment_frame(lowest, highest, largest_y):
    """The :class:`MomentFrame` of training data.

    Parameters
    ----------
    lowest, highest : ndarray of shape (n_features,)
        The training range of each feature.
    largest_y : ndarray of shape (n_outputs,)
        The largest magnitude of each target.

    Returns
    -------
    frame : MomentFrame
    """
    lowest = np.asarray(lowest, dtype=np.float64)
    highest = np.asarray(highest, dtype=np.float64)
    return MomentFrame(
        centre=lowest / 2 + highest / 2,
        x_scale=_power_of_2(highest / 2 - lowest / 2),
        y_scale=_power_of_2(np.asarray(largest_y, dtype=np.float64)),
    )


def _power_of_2(spread):
    """The power of 2 at or above each spread; 1 where it is 0."""
    exponent = np.frexp(np.where(spread > 0, spread, 0.5))[1]
    return np.ldexp(1.0, exponent)


def moment_columns(X, y, frame):
    """The columns whose kernel-weighted averages a local linear fit needs.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training inputs.
    y : ndarray of shape (n_samples, n_outputs)
        Training targets.
    frame : MomentFrame
        The coordinates to take the moments in.

    Returns
    -------
    columns : ndarray of shape (n_samples, n_columns)
        ``[z, z_k z_l (k <= l), v, z_k v_o]`` for z and v the inputs and
        targets in the frame's coordinates: with the weights' total, the sums
        of w, w z, w z z^T, w v and w z v^T of every query. Float64.
    """
    z = (np.asarray(X, dtype=np.float64) - frame.centre) / frame.x_scale
    v = np.asarray(y, dtype=np.float64) / frame.y_scale
    upper = np.triu_indices(z.shape[1])
    products = z[:, upper[0]] * z[:, upper[1]]
    cross = (z[:, :, None] * v[:, None, :]).reshape(z.shape[0], -1)
    return np.hstack([z, products, v, cross])


def local_fit_from_partial_sums(partials, queries, bandwidth, frame):
    """The local linear fits from partial sums of the moment columns.

    Parameters
    ----------
    partials : sequence of PartialSums
        Sums of the :func:`moment_columns` over disjoint sets of training
        samples, for the same queries.
    queries : ndarray of shape (n_queries, n_features)
        The queries.
    bandwidth : ndarray of shape (n_features,)
        The widths.
    frame : MomentFrame
        The coordinates of the moments.

    Returns
    -------
    fit : ndarray of shape (n_queries, n_outputs)
    slope : ndarray of shape (n_queries, n_features, n_outputs)
    """
    combined = combine_partial_sums(partials)
    sums = combined.sums.copy()
    # A query that no training sample reaches (a compact kernel far from the
    # data) is fitted on its nearest samples, ties included, as
    # Nadaraya-Watson averages them.
    empty = ~(sums[:, -1] > 0)
    sums[empty] = combined.nearest_sums[empty]
    mean_moments = sums[:, :-1] / sums[:, -1:]
    z = (np.asarray(queries, dtype=np.float64) - frame.centre) / frame.x_scale
    fit, slope, _ = local_linear_fit(
        torch.as_tensor(mean_moments),
        torch.as_tensor(z),
        torch.as_tensor(np.asarray(bandwidth, dtype=np.float64) / frame.x_scale),
        len(frame.y_scale),
    )
    fit = fit.numpy() * frame.y_scale
    slope = slope.numpy() * (frame.y_scale[None, :] / frame.x_scale[:, None])
    return fit, slope


def local_linear_fit(mean_moments, queries, bandwidth, n_outputs):
    """Weighted least-squares lines from the weighted averages of the moments.

    The line through the local weighted means, with slope C^-1 c, where C is
    the local covariance of x and c that of x and y, is the weighted
    least-squares fit centred at the query; taken about the local means its
    normal equations are those of a (n_features, n_features) system in
    widths, which is better conditioned than the system centred at the query.
    Where that system is singular (see ``SINGULAR_TOLERANCE``) the fit is the
    local constant one, the weighted mean, with slope 0.

    Parameters
    ----------
    mean_moments : tensor of shape (n_queries, n_columns)
        The kernel-weighted averages of the :func:`moment_columns`, float64.
    queries : tensor of shape (n_queries, n_features)
        The query points, centred as the columns' inputs were.
    bandwidth : tensor of shape (n_features,)
        The widths, in which the singularity of the design is judged.
    n_outputs : int
        Number of targets.

    Returns
    -------
    fit : tensor of shape (n_queries, n_outputs)
        The fitted value at each query.
    slope : tensor of shape (n_queries, n_features, n_outputs)
        The fitted line's gradient in the units of x; 0 on the local
        constant fits.
    regular : tensor of bool of shape (n_queries,)
        Where the design is regular (False: the local constant fit).
    """
    n_queries, n_features = queries.shape
    upper = np.triu_indices(n_features)
    n_products = len(upper[0])
    mean_x = mean_moments[:, :n_features]
    products = mean_moments[:, n_features : n_features + n_products]
    start = n_features + n_products
    mean_y = mean_moments[:, start : start + n_outputs]
    cross = mean_moments[:, start + n_outputs :].reshape(
        n_queries, n_features, n_outputs
    )
    # Entry (k, l) of x x^T is stored once, at the position of (min, max).
    position = np.zeros((n_features, n_features), dtype=np.int64)
    position[upper] = np.arange(n_products)
    position[upper[1], upper[0]] = np.arange(n_products)
    index = torch.as_tensor(position.ravel(), device=mean_moments.device)
    second = products[:, index].reshape(n_queries, n_features, n_features)
    inverse_width = 1.0 / bandwidth
    scaled_mean = mean_x * inverse_width
    covariance = (
        second * inverse_width[:, None] * inverse_width[None, :]
        - scaled_mean[:, :, None] * scaled_mean[:, None, :]
    )
    cross_covariance = (
        cross * inverse_width[:, None] - scaled_mean[:, :, None] * mean_y[:, None, :]
    )
    identity = torch.eye(n_features, dtype=covariance.dtype, device=covariance.device)
    with torch.no_grad():
        detached = covariance.detach()
        finite = torch.isfinite(detached).all(dim=2).all(dim=1)
        detached = torch.where(finite[:, None, None], detached, identity)
        scale = torch.diagonal(detached, dim1=1, dim2=2).sum(dim=1)
        scale = scale + (scaled_mean.detach() ** 2).sum(dim=1)
        # Positive definite less the tolerance: the smallest eigenvalue is
        # above it.
        shifted = detached - (SINGULAR_TOLERANCE * scale)[:, None, None] * identity
        regular = (torch.linalg.cholesky_ex(shifted).info == 0) & finite
    safe = torch.where(regular[:, None, None], covariance, identity)
    safe_cross = torch.where(regular[:, None, None], cross_covariance, 0.0)
    # Slopes per width, then per unit of x.
    slope = torch.linalg.solve(safe, safe_cross) * inverse_width[None, :, None]
    fit = mean_y + ((queries - mean_x)[:, :, None] * slope).sum(dim=1)
    return fit, slope, regular


def smoother_weights(attention, keys, queries, bandwidth, frame):
    """The weight of each training target in each local linear fit.

    Parameters
    ----------
    attention : ndarray of shape (n_queries, n_keys)
        The normalised kernel weights.
    keys : ndarray of shape (n_keys, n_features)
        The training inputs.
    queries : ndarray of shape (n_queries, n_features)
        The queries.
    bandwidth : ndarray of shape (n_features,)
        The widths.
    frame : MomentFrame
        The coordinates of the fit's moments, whose rule for singular designs
        applies.

    Returns
    -------
    weights : ndarray of shape (n_queries, n_keys)
        ``a_j (1 + (q - m)^T C^-1 (x_j - m))`` on the rows whose design is
        regular, the attention a_j itself on the others.
    """
    frame = frame._replace(y_scale=np.ones(1))
    z_keys = (keys - frame.centre) / frame.x_scale
    z_queries = (queries - frame.centre) / frame.x_scale
    z_bandwidth = bandwidth / frame.x_scale
    n_features = keys.shape[1]
    # The fit's own moments, with one zero output.
    columns = moment_columns(keys, np.zeros((keys.shape[0], 1)), frame)
    mean_moments = attention @ columns
    _, _, regular = local_linear_fit(
        torch.as_tensor(mean_moments),
        torch.as_tensor(z_queries),
        torch.as_tensor(z_bandwidth),
        1,
    )
    regular = regular.numpy()
    if not np.any(regular):
        return attention
    mean_x = mean_moments[:, :n_features]
    scaled = (z_keys[None, :, :] - mean_x[:, None, :]) / z_bandwidth
    covariance = np.einsum("qj,qjk,qjl->qkl", attention, scaled, scaled)
    direction = (z_queries - mean_x) / z_bandwidth
    solved = np.zeros_like(direction)
    solved[regular] = np.linalg.solve(
        covariance[regular], direction[regular][:, :, None]
    )[:, :, 0]
    factor = 1 + np.einsum("qjk,qk->qj", scaled, solved)
    return np.where(regular[:, None], attention * factor, attention)

"""Local moments of the kernel weights, and the local linear fit they give."""

# Authors: the sknw developers
# License: BSD 3 clause

import numpy as np
import torch

# A local design is singular when its smallest local variance, in squared
# widths, is below this fraction of the scale its moments were computed at:
# the total local variance plus the squared distance from the centre of the
# data to the local mean, which the raw second moments carry and round with.
# A line fitted through it would follow rounding, not the data.
SINGULAR_TOLERANCE = 1e-10


def moment_columns(X, y):
    """The columns whose kernel-weighted averages a local linear fit needs.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training inputs, centred on the point the fit's moments are taken
        about (the middle of the training range).
    y : ndarray of shape (n_samples, n_outputs)
        Training targets.

    Returns
    -------
    columns : ndarray of shape (n_samples, n_columns)
        ``[x, x_k x_l (k <= l), y, x_k y_o]``: with the weights' total, the
        sums of w, w x, w x x^T, w y and w x y^T of every query. Float64.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    upper = np.triu_indices(X.shape[1])
    products = X[:, upper[0]] * X[:, upper[1]]
    cross = (X[:, :, None] * y[:, None, :]).reshape(X.shape[0], -1)
    return np.hstack([X, products, y, cross])


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

"""Kernel functions of the scaled distance u, and the table of their names."""

# Authors: the sknw developers
# License: BSD 3 clause

import math
from dataclasses import dataclass

import torch


def gaussian(u):
    """Gaussian kernel exp(-u**2 / 2)."""
    return torch.exp(-0.5 * u * u)


# The top-hat's edge. A sample within a relative 2^-21 of u = 1 counts as
# on the edge, of weight 0: rounding must not decide the weight of a sample
# that sits at u = 1 (as the k-th neighbour does with adaptive="query" when
# the width equals the typical k-th neighbour distance). The dense and tree
# paths compute u by the same operations, so they decide alike even at the
# band's own edge.
TOPHAT_EDGE = 1.0 - 2.0**-21


def tophat(u):
    """Top-hat (boxcar, uniform) kernel 1[u < 1], 0 from u = 1 - 2^-21."""
    return (u < TOPHAT_EDGE).to(u.dtype)


def epanechnikov(u):
    """Epanechnikov kernel (1 - u**2)+."""
    return torch.clamp(1 - u * u, min=0)


def linear(u):
    """Linear (triangular) kernel (1 - u)+."""
    return torch.clamp(1 - u, min=0)


def biweight(u):
    """Biweight (quartic) kernel ((1 - u**2)+)**2."""
    return torch.clamp(1 - u * u, min=0) ** 2


def triweight(u):
    """Triweight kernel ((1 - u**2)+)**3."""
    return torch.clamp(1 - u * u, min=0) ** 3


def tricube(u):
    """Tricube kernel ((1 - u**3)+)**3."""
    return torch.clamp(1 - u * u * u, min=0) ** 3


def cosine(u):
    """Cosine kernel cos(pi u / 2) 1[u < 1]."""
    return torch.where(u < 1, torch.cos(0.5 * math.pi * u), 0).to(u.dtype)


def exponential(u):
    """Exponential kernel exp(-u)."""
    return torch.exp(-u)


def constant(u):
    """Constant kernel 1: every training sample gets the same weight."""
    return torch.ones_like(u)


# The same kernels computed in place on a block the engine no longer needs:
# no temporary blocks. The first three take u**2, the others u.


def _epanechnikov_of_squared(sq):
    return sq.neg_().add_(1).clamp_(min=0)


def _biweight_of_squared(sq):
    return _epanechnikov_of_squared(sq).square_()


def _triweight_of_squared(sq):
    return _epanechnikov_of_squared(sq).pow_(3)


def _tophat_of_squared(sq):
    # sign(edge**2 - u**2)+ is 1 below the edge and 0 on and beyond it.
    return sq.neg_().add_(TOPHAT_EDGE**2).sign_().clamp_(min=0)


def _linear_in_place(u):
    return u.neg_().add_(1).clamp_(min=0)


def _tricube_in_place(u):
    return u.pow_(3).neg_().add_(1).clamp_(min=0).pow_(3)


def _cosine_in_place(u):
    # sin(pi (1 - u) / 2) equals cos(pi u / 2), and is exactly 0 from u = 1.
    return u.neg_().add_(1).clamp_(min=0).mul_(0.5 * math.pi).sin_()


@dataclass(frozen=True)
class Kernel:
    """A named kernel and how the engine evaluates it: the one place that
    states a kernel's facts.

    Attributes
    ----------
    name : str
        The canonical name (the aliases map to the same entry).
    function : callable
        K(u) on a tensor of scaled distances u >= 0.
    compact : bool
        Whether K(u) = 0 for every u >= 1 (the top-hat: from its edge).
    exact_distances : bool
        Whether u comes from coordinate differences rather than the matrix
        product expansion |q|^2 - 2 q.k + |k|^2. The expansion is fast but
        rounds: about 1e-8 in u at a training point, which a kink at u = 0
        (linear, exponential) passes on to the weights, and enough to move a
        point exactly one width away across a compact kernel's edge.
    log_slope : float or None
        For the kernels computed in the log domain (a softmax): log K is
        ``log_slope`` times u**2, or times u when ``exact_distances``. None
        for the others.
    in_place : callable or None
        K computed in place on a tensor that may be overwritten, of u**2
        when ``of_squared``, else of u.
    of_squared : bool
        Whether ``in_place`` takes u**2.
    learnable : bool
        Whether the leave-one-out loss varies with the width, so that the
        CV estimators can learn it (the top-hat's and the constant's loss is
        piecewise constant in the width: its gradient is 0).
    fused : bool
        Whether the fused Triton kernels compute it.
    """

    name: str
    function: object
    compact: bool = False
    exact_distances: bool = False
    log_slope: float = None
    in_place: object = None
    of_squared: bool = False
    learnable: bool = True
    fused: bool = True

    @property
    def has_reach(self):
        """Whether a tree can find the keys that matter: within one width
        for a compact kernel, within a truncation radius for a log-domain
        one (not for the constant kernel)."""
        return self.compact or self.log_slope is not None


def _compact(name, function, in_place, of_squared=False, **facts):
    return Kernel(
        name,
        function,
        compact=True,
        exact_distances=True,
        in_place=in_place,
        of_squared=of_squared,
        **facts,
    )


_CANONICAL = [
    Kernel("gaussian", gaussian, log_slope=-0.5),
    _compact("tophat", tophat, _tophat_of_squared, True, learnable=False),
    _compact("epanechnikov", epanechnikov, _epanechnikov_of_squared, True),
    _compact("linear", linear, _linear_in_place),
    _compact("biweight", biweight, _biweight_of_squared, True),
    _compact("triweight", triweight, _triweight_of_squared, True),
    _compact("tricube", tricube, _tricube_in_place),
    _compact("cosine", cosine, _cosine_in_place),
    Kernel("exponential", exponential, exact_distances=True, log_slope=-1.0),
    Kernel("constant", constant, learnable=False),
]

_ALIASES = {
    "boxcar": "tophat",
    "uniform": "tophat",
    "triangular": "linear",
    "quartic": "biweight",
}

KERNELS = {kernel.name: kernel for kernel in _CANONICAL}
KERNELS.update({alias: KERNELS[name] for alias, name in _ALIASES.items()})

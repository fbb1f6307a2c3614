"""Kernel functions against their definitions, and the name table."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from sknw import NadarayaWatsonRegressor
from sknw._kernels import KERNELS

from ._reference import ALIASES, KERNELS_NUMPY

U = np.sort(np.concatenate([np.linspace(0, 3, 301), [0.999999, 1.000001, 10.0, 1e3]]))


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernel_matches_definition(name):
    expected = KERNELS_NUMPY[ALIASES.get(name, name)](U)
    got = KERNELS[name].function(torch.from_numpy(U)).numpy()
    assert_allclose(got, expected, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernel_shape(name):
    weights = KERNELS[name].function(torch.from_numpy(U)).numpy()
    assert weights[0] == 1.0
    assert np.all(weights >= 0)
    assert np.all(np.diff(weights) <= 0), "weights must not grow with distance"
    if KERNELS[name].compact:
        assert np.all(weights[U >= 1] == 0)
        assert weights[U < 1][-1] > 0
    else:
        assert weights[-2] > 0 or name == "gaussian"


@pytest.mark.parametrize("name", ["gaussian", "exponential"])
def test_log_weight_is_log_of_kernel(name):
    kernel = KERNELS[name]
    # The argument is u when distances are exact differences, u**2 otherwise.
    argument = U[:-1].copy() if kernel.exact_distances else U[:-1] ** 2
    assert_allclose(
        np.exp(kernel.log_slope * argument),
        kernel.function(torch.from_numpy(U[:-1])).numpy(),
        rtol=1e-14,
    )


def test_aliases_name_the_same_kernel():
    for alias, name in ALIASES.items():
        assert KERNELS[alias] is KERNELS[name]


def test_every_design_name_is_available():
    names = {
        "gaussian", "tophat", "boxcar", "uniform", "epanechnikov", "linear",
        "triangular", "biweight", "quartic", "triweight", "tricube", "cosine",
        "exponential", "constant",
    }  # fmt: skip
    assert set(KERNELS) == names


def test_unknown_kernel_message_lists_names():
    model = NadarayaWatsonRegressor(kernel="gausian")
    with pytest.raises(ValueError, match="kernel") as excinfo:
        model.fit([[0.0], [1.0]], [0.0, 1.0])
    for name in KERNELS:
        assert repr(name) in str(excinfo.value)

"""Nadaraya-Watson kernel regression and classification as scikit-learn estimators."""

# Authors: the sknw developers
# License: BSD 3 clause

from sknw._classification import NadarayaWatsonClassifier, NadarayaWatsonClassifierCV
from sknw._local_linear import LocalLinearRegressor, LocalLinearRegressorCV
from sknw._plot import AttentionWeightsDisplay, FittedCurveDisplay, LossCurveDisplay
from sknw._regression import NadarayaWatsonRegressor, NadarayaWatsonRegressorCV

__version__ = "0.1.0.dev0"

__all__ = [
    "AttentionWeightsDisplay",
    "FittedCurveDisplay",
    "LocalLinearRegressor",
    "LocalLinearRegressorCV",
    "LossCurveDisplay",
    "NadarayaWatsonClassifier",
    "NadarayaWatsonClassifierCV",
    "NadarayaWatsonRegressor",
    "NadarayaWatsonRegressorCV",
    "__version__",
]

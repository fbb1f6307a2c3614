"""Displays draw what the estimators compute."""

import builtins

import matplotlib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sknw import (
    AttentionWeightsDisplay,
    FittedCurveDisplay,
    LossCurveDisplay,
    NadarayaWatsonClassifier,
    NadarayaWatsonClassifierCV,
    NadarayaWatsonRegressor,
    NadarayaWatsonRegressorCV,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def toy(n_samples=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 5, size=(n_samples, 1))
    y = 2 * np.sin(X[:, 0]) + X[:, 0] ** 0.8 + rng.normal(0, 0.3, n_samples)
    return X, y


def test_heatmap_is_the_sorted_attention():
    X, y = toy()
    queries = np.linspace(5, 0, 25)[:, None]
    model = NadarayaWatsonRegressor(bandwidth=0.4).fit(X, y)
    display = AttentionWeightsDisplay.from_estimator(model, queries)
    order_q = np.argsort(queries[:, 0])
    order_k = np.argsort(X[:, 0])
    expected = model.attention_weights(queries)[np.ix_(order_q, order_k)]
    assert_allclose(display.image_.get_array(), expected)
    assert_array_equal(display.sample_order, order_k)
    assert display.ax_.get_xlabel() == "training samples (keys)"
    assert display.figure_ is display.ax_.figure
    # Sorted by x with a narrow width: each row peaks near the diagonal.
    peaks = np.argmax(display.attention, axis=1) / X.shape[0]
    assert np.all(np.diff(peaks) >= -0.2)


def test_heatmap_unsorted_for_several_features():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 2))
    model = NadarayaWatsonClassifier().fit(X, X[:, 0] > 0)
    display = AttentionWeightsDisplay.from_estimator(model, X[:7])
    assert_allclose(display.image_.get_array(), model.attention_weights(X[:7]))


def test_heatmap_draws_on_given_axes():
    X, y = toy()
    model = NadarayaWatsonRegressor().fit(X, y)
    _, ax = plt.subplots()
    display = AttentionWeightsDisplay.from_estimator(model, X, ax=ax)
    assert display.ax_ is ax


def test_fitted_curve_is_the_prediction():
    X, y = toy()
    model = NadarayaWatsonRegressor(bandwidth=0.3).fit(X, y)

    def truth(x):
        return 2 * np.sin(x) + x**0.8

    display = FittedCurveDisplay.from_estimator(model, X, y, truth=truth, n_points=60)
    grid, line = display.line_.get_data()
    assert_allclose(grid, np.linspace(X.min(), X.max(), 60))
    assert_allclose(line, model.predict(grid[:, None]))
    assert_allclose(display.truth_line_.get_data()[1], truth(grid))
    assert_allclose(display.scatter_.get_offsets(), np.column_stack([X[:, 0], y]))


@pytest.mark.parametrize("band", ["std", "interval"])
def test_fitted_curve_band_is_the_estimators_band(band):
    from scipy.stats import norm

    X, y = toy()
    model = NadarayaWatsonRegressor(bandwidth=0.3).fit(X, y)
    display = FittedCurveDisplay.from_estimator(
        model, X, y, n_points=30, band=band, alpha=0.2, noise="constant"
    )
    grid = np.linspace(X.min(), X.max(), 30)[:, None]
    if band == "std":
        prediction, std = model.predict(grid, return_std=True, noise="constant")
        half = norm.ppf(0.9) * std
        expected = np.column_stack([prediction - half, prediction + half])
        assert display.band_label == "80% confidence band"
    else:
        expected = model.predict_interval(grid, alpha=0.2)
        assert display.band_label == "80% prediction interval"
    assert_allclose(display.band, expected)
    # The band's polygon runs along the lower edge and back along the upper.
    vertices = display.band_.get_paths()[0].vertices
    assert_allclose(vertices[:, 1].min(), expected[:, 0].min())
    assert_allclose(vertices[:, 1].max(), expected[:, 1].max())
    labels = display.ax_.get_legend_handles_labels()[1]
    assert display.band_label in labels


def test_fitted_curve_without_band_draws_none():
    X, y = toy()
    model = NadarayaWatsonRegressor(bandwidth=0.3).fit(X, y)
    display = FittedCurveDisplay.from_estimator(model, X, y, n_points=30)
    assert display.band is None and display.band_ is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"band": "ci"}, "band must be"),
        ({"band": "std", "alpha": 0.0}, "alpha must be"),
        ({"band": "interval", "alpha": 1.2}, "alpha must be"),
    ],
)
def test_fitted_curve_refuses_a_bad_band(kwargs, match):
    X, y = toy()
    model = NadarayaWatsonRegressor(bandwidth=0.3).fit(X, y)
    with pytest.raises(ValueError, match=match):
        FittedCurveDisplay.from_estimator(model, X, y, **kwargs)


def test_fitted_curve_needs_one_feature():
    X = np.random.default_rng(2).normal(size=(20, 2))
    model = NadarayaWatsonRegressor().fit(X, X[:, 0])
    with pytest.raises(ValueError, match="one feature"):
        FittedCurveDisplay.from_estimator(model, X, X[:, 0])


@pytest.mark.parametrize(
    "estimator, params",
    [
        (NadarayaWatsonRegressorCV, {}),
        (
            NadarayaWatsonRegressorCV,
            {"solver": "sgd", "batch_size": 16, "random_state": 0},
        ),
        (NadarayaWatsonRegressorCV, {"bandwidth": [2.0], "solver": "lbfgs"}),
        (NadarayaWatsonClassifierCV, {}),
    ],
)
def test_loss_curve_is_the_learning_curve(estimator, params):
    X, y = toy(n_samples=60)
    if estimator is NadarayaWatsonClassifierCV:
        y = y > np.median(y)
    params = {"bandwidth": 2.0, **params}
    model = estimator(**params).fit(X, y)
    display = LossCurveDisplay.from_estimator(model)
    iterations, losses = display.line_.get_data()
    assert_allclose(losses, model.loss_curve_)
    # Iteration 0 is the start; one point per iteration after it.
    assert_array_equal(iterations, np.arange(model.n_iter_ + 1))
    assert display.ax_.get_xlabel().startswith("iteration")
    assert display.figure_ is display.ax_.figure


def test_loss_curve_starts_at_the_starting_width():
    X, y = toy(n_samples=60)
    model = NadarayaWatsonRegressorCV(bandwidth=2.0).fit(X, y)
    display = LossCurveDisplay.from_estimator(model)
    # The leave-one-out error at h = 2, each row's own weight masked out.
    attention = NadarayaWatsonRegressor(bandwidth=2.0).fit(X, y).attention_weights(X)
    np.fill_diagonal(attention, 0)
    attention /= attention.sum(axis=1, keepdims=True)
    assert_allclose(display.loss_curve[0], np.mean((attention @ y - y) ** 2))
    assert display.loss_curve[-1] < display.loss_curve[0]


def test_loss_curve_draws_on_given_axes():
    X, y = toy()
    model = NadarayaWatsonRegressorCV().fit(X, y)
    _, ax = plt.subplots()
    display = LossCurveDisplay.from_estimator(model, ax=ax)
    assert display.ax_ is ax


@pytest.mark.parametrize(
    "estimator", [NadarayaWatsonRegressor, NadarayaWatsonClassifier]
)
def test_loss_curve_needs_learning(estimator):
    X, y = toy()
    model = estimator().fit(X, y > np.median(y))
    with pytest.raises(ValueError, match="NadarayaWatsonRegressorCV") as error:
        LossCurveDisplay.from_estimator(model)
    assert estimator.__name__ in str(error.value)


def test_displays_take_the_cv_estimators():
    X, y = toy()
    model = NadarayaWatsonRegressorCV().fit(X, y)
    curve = FittedCurveDisplay.from_estimator(model, X, y, n_points=30)
    assert_allclose(curve.prediction, model.predict(curve.grid[:, None]))
    heatmap = AttentionWeightsDisplay.from_estimator(model, X[:5], sort=False)
    assert_allclose(heatmap.attention, model.attention_weights(X[:5]))


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    X, y = toy()
    model = NadarayaWatsonRegressor().fit(X, y)
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"pip install \"scikit-nw\[plot\]\""):
        AttentionWeightsDisplay.from_estimator(model, X)

"""Learning the bandwidth by leave-one-out: gradient, optimum, solvers, output."""

import re
import warnings

import numpy as np
import pytest
import sklearn
import torch
from numpy.testing import assert_allclose
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler
from statsmodels.nonparametric.kernel_regression import KernelReg

from sknw import NadarayaWatsonClassifier, NadarayaWatsonRegressor
from sknw._loo_objective import LeaveOneOutObjective

from ._reference import (
    kth_neighbor_distance_slow,
    loo_predictions_slow,
    loo_squared_error_slow,
)


def toy_1d(n_samples=200, seed=0):
    """The d2l chapter's data: y = 2 sin x + x^0.8 + noise."""
    rng = np.random.default_rng(seed)
    X = np.sort(rng.uniform(0, 5, size=(n_samples, 1)), axis=0)
    y = 2 * np.sin(X[:, 0]) + X[:, 0] ** 0.8 + rng.normal(0, 0.5, n_samples)
    return X, y


def toy_4d(n_samples=150, seed=0):
    """Three informative features of different scales and one of pure noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, 4)) * [1.0, 2.0, 0.5, 1.0]
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] + X[:, 2] ** 2 + rng.normal(0, 0.2, n_samples)
    return X, y


def objective(X, values, kernel="gaussian", loss="squared_error", sample_weight=None):
    return LeaveOneOutObjective(
        X,
        values,
        kernel=kernel,
        loss=loss,
        sample_weight=sample_weight,
        device=torch.device("cpu"),
    )


def central_difference(function, x, step=1e-6):
    gradient = np.empty_like(x)
    for index in range(x.size):
        shift = np.zeros_like(x)
        shift[index] = step
        gradient[index] = (function(x + shift) - function(x - shift)) / (2 * step)
    return gradient


@pytest.mark.parametrize("kernel", ["gaussian", "exponential", "epanechnikov"])
@pytest.mark.parametrize("per_feature", [False, True])
@pytest.mark.parametrize("loss", ["squared_error", "log_loss"])
def test_gradient_matches_finite_differences(kernel, per_feature, loss):
    X, y = toy_4d(n_samples=60)
    if loss == "squared_error":
        values = np.column_stack([y, np.cos(y)])
    else:
        values = np.eye(3)[np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))]
    sample_weight = np.random.default_rng(3).uniform(0.5, 2.0, size=len(X))
    loo = objective(X, values, kernel, loss, sample_weight)
    log_bandwidth = np.log([1.2, 2.0, 0.9, 1.5] if per_feature else [1.5])
    _, gradient = loo(log_bandwidth)
    expected = central_difference(lambda x: loo(x)[0], log_bandwidth)
    assert_allclose(gradient, expected, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("kernel", ["gaussian", "tricube", "exponential"])
def test_loss_matches_dense_reference(kernel):
    X, y = toy_4d(n_samples=80)
    sample_weight = np.random.default_rng(4).uniform(0.5, 2.0, size=len(X))
    bandwidth = np.array([0.8, 1.5, 0.6, 2.0])
    loss, _ = objective(X, y[:, None], kernel, sample_weight=sample_weight)(
        np.log(bandwidth)
    )
    expected = loo_squared_error_slow(X, y, bandwidth, kernel, sample_weight)
    assert loss == pytest.approx(expected, rel=1e-10)


def test_log_loss_matches_dense_reference():
    X, y = toy_4d(n_samples=80)
    labels = (y > np.median(y)).astype(int)
    one_hot = np.eye(2)[labels]
    loss, _ = objective(X, one_hot, loss="log_loss")(np.log([0.7]))
    proba = loo_predictions_slow(X, one_hot, 0.7, "gaussian")
    expected = -np.mean(np.log(proba[np.arange(len(X)), labels]))
    assert loss == pytest.approx(expected, rel=1e-10)


def test_minibatch_losses_add_up_to_the_full_loss():
    X, y = toy_1d(n_samples=90)
    loo = objective(X, y[:, None])
    full, full_gradient = loo(np.log([0.4]))
    parts = [loo(np.log([0.4]), rows) for rows in np.array_split(np.arange(90), 3)]
    assert np.mean([part[0] for part in parts]) == pytest.approx(full, rel=1e-12)
    assert_allclose(np.mean([part[1] for part in parts], axis=0), full_gradient)


def test_chunking_does_not_change_loss_or_gradient():
    X, y = toy_4d(n_samples=120)
    whole = objective(X, y[:, None])(np.log([1.1, 0.9, 1.3, 0.7]))
    with sklearn.config_context(working_memory=0.01):
        chunked_objective = objective(X, y[:, None])
        assert chunked_objective.chunk_n_rows < 120
        chunked = chunked_objective(np.log([1.1, 0.9, 1.3, 0.7]))
    assert chunked[0] == pytest.approx(whole[0], rel=1e-12)
    assert_allclose(chunked[1], whole[1], rtol=1e-10)


def textbook_width(X, y, learning_rate, n_epochs, w):
    """The d2l chapter's parametric attention pooling, trained as written there.

    The diagonal is masked so that each sample is predicted from the others;
    plain gradient descent on w over the full batch, squared loss.
    """
    x = torch.tensor(X[:, 0])
    y = torch.tensor(y)
    w = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    diagonal = torch.eye(len(x), dtype=torch.bool)
    for _ in range(n_epochs):
        logits = -(((x[:, None] - x[None, :]) * w) ** 2) / 2
        attention = torch.softmax(logits.masked_fill(diagonal, -torch.inf), dim=1)
        loss = ((attention @ y - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= learning_rate * w.grad
            w.grad.zero_()
    return float(w.detach())


def test_sgd_lands_where_the_textbook_loop_lands():
    X, y = toy_1d(n_samples=100, seed=1)
    w = textbook_width(X, y, learning_rate=2.0, n_epochs=3000, w=2.0)
    model = NadarayaWatsonRegressor(
        bandwidth=0.5,
        learn_bandwidth=True,
        solver="sgd",
        batch_size=100,
        learning_rate=0.5,
        max_iter=3000,
        tol=1e-9,
        random_state=0,
    ).fit(X, y)
    assert model.bandwidth_ == pytest.approx(1 / w, rel=2e-3)


def grid_minimum(X, y, widths, kernel="gaussian"):
    return min(loo_squared_error_slow(X, y, width, kernel) for width in widths)


def test_1d_optimum_beats_grid_and_statsmodels():
    X, y = toy_1d()
    model = NadarayaWatsonRegressor(learn_bandwidth=True).fit(X, y)
    learned = loo_squared_error_slow(X, y, model.bandwidth_, "gaussian")
    assert learned == pytest.approx(model.loss_curve_[-1], rel=1e-6)
    statsmodels_bw = KernelReg(y, X, var_type="c", reg_type="lc", bw="cv_ls").bw
    statsmodels_loss = loo_squared_error_slow(X, y, statsmodels_bw, "gaussian")
    grid = grid_minimum(X, y, np.geomspace(0.02, 5, 400))
    assert learned <= 1.001 * min(grid, statsmodels_loss)


def test_per_feature_optimum_beats_statsmodels_and_grid():
    X, y = toy_4d(n_samples=100)
    model = NadarayaWatsonRegressor(bandwidth=[1.0] * 4, learn_bandwidth=True)
    model.fit(X, y)
    learned = loo_squared_error_slow(X, y, model.bandwidth_, "gaussian")
    statsmodels_bw = KernelReg(y, X, var_type="cccc", reg_type="lc", bw="cv_ls").bw
    statsmodels_loss = loo_squared_error_slow(X, y, statsmodels_bw, "gaussian")
    grid = grid_minimum(X, y, np.geomspace(0.05, 5, 200))
    assert learned <= 1.001 * min(grid, statsmodels_loss)


def test_diabetes_optimum_beats_grid():
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    scalar = NadarayaWatsonRegressor(learn_bandwidth=True).fit(X, y)
    learned = loo_squared_error_slow(X, y, scalar.bandwidth_, "gaussian")
    grid = grid_minimum(X, y, np.geomspace(0.3, 10, 300))
    assert learned <= 1.001 * grid
    per_feature = NadarayaWatsonRegressor(bandwidth="scott", learn_bandwidth=True)
    per_feature.fit(X, y)
    assert per_feature.bandwidth_.shape == (10,)
    assert per_feature.loss_curve_[-1] <= 1.001 * grid


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_noise_feature_gets_a_wide_bandwidth(solver):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 2))
    y = np.sin(2 * X[:, 0]) + rng.normal(0, 0.1, 300)
    model = NadarayaWatsonRegressor(
        bandwidth=[1.0, 1.0], learn_bandwidth=True, solver=solver, random_state=0
    )
    model.fit(X, y)
    assert model.bandwidth_[1] >= 10 * model.bandwidth_[0]


@pytest.mark.parametrize("solver", ["lbfgs", "sgd", "adam"])
def test_classifier_learns_bandwidth_by_log_loss(solver):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(200, 2))
    labels = np.where(X[:, 0] + 0.3 * rng.normal(size=200) > 0, "right", "left")
    model = NadarayaWatsonClassifier(
        bandwidth=5.0, learn_bandwidth=True, solver=solver, random_state=0
    ).fit(X, labels)
    one_hot = np.eye(2)[np.searchsorted(model.classes_, labels)]
    index = np.searchsorted(model.classes_, labels)

    def log_loss(width):
        proba = loo_predictions_slow(X, one_hot, width, "gaussian")
        return -np.mean(np.log(proba[np.arange(len(X)), index]))

    learned = log_loss(model.bandwidth_)
    grid = min(log_loss(width) for width in np.geomspace(0.05, 5, 200))
    assert learned <= (1.001 if solver == "lbfgs" else 1.01) * grid
    assert model.bandwidth_ < 5.0


def test_singleton_class_keeps_log_loss_finite():
    X = np.array([[0.0], [0.1], [0.2], [0.3], [5.0]])
    model = NadarayaWatsonClassifier(kernel="epanechnikov", learn_bandwidth=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, ["a", "a", "a", "a", "b"])
    assert np.all(np.isfinite(model.loss_curve_))
    assert np.isfinite(model.bandwidth_) and model.bandwidth_ > 0


@pytest.mark.parametrize("solver", ["lbfgs", "sgd", "adam"])
def test_loss_curve_and_n_iter(solver):
    X, y = toy_1d(n_samples=80)
    model = NadarayaWatsonRegressor(
        learn_bandwidth=True, solver=solver, random_state=0
    ).fit(X, y)
    assert len(model.loss_curve_) == model.n_iter_ >= 1
    assert model.loss_curve_[-1] <= model.loss_curve_[0]
    assert isinstance(model.bandwidth_, float)
    refit = model.set_params(learn_bandwidth=False).fit(X, y)
    assert not hasattr(refit, "loss_curve_") and not hasattr(refit, "n_iter_")


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_verbose_prints_a_table(solver, capsys):
    X, y = toy_1d(n_samples=60)
    model = NadarayaWatsonRegressor(
        learn_bandwidth=True, solver=solver, verbose=1, random_state=0
    ).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert all(line.startswith("[NadarayaWatsonRegressor] ") for line in lines)
    assert "Learning the bandwidth by leave-one-out" in lines[0]
    assert re.search(r"iteration\s+loss\s+change\s+seconds", lines[1])
    rows = lines[2:-1]
    assert len(rows) == model.n_iter_
    widths = {len(row) for row in rows}
    assert len(widths) == 1, "rows are fixed-width"
    for number, row in enumerate(rows, start=1):
        fields = row.split()[1:]
        assert int(fields[0]) == number
        assert float(fields[1]) == pytest.approx(model.loss_curve_[number - 1], 1e-5)
    assert lines[-1].startswith("[NadarayaWatsonRegressor] Converged after")


def test_silent_at_verbose_0(capsys):
    X, y = toy_1d(n_samples=60)
    NadarayaWatsonRegressor(learn_bandwidth=True).fit(X, y)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
@pytest.mark.parametrize("verbose", [0, 1])
def test_convergence_warning_at_max_iter(solver, verbose, capsys):
    X, y = toy_1d(n_samples=60)
    model = NadarayaWatsonRegressor(
        bandwidth=3.0, learn_bandwidth=True, solver=solver, max_iter=1, verbose=verbose
    )
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        model.fit(X, y)
    assert model.n_iter_ == 1
    if verbose:
        assert "Stopped at max_iter" in capsys.readouterr().out


def test_learned_bandwidth_is_used_for_prediction():
    X, y = toy_1d(n_samples=80)
    learned = NadarayaWatsonRegressor(learn_bandwidth=True).fit(X, y)
    fixed = NadarayaWatsonRegressor(bandwidth=learned.bandwidth_).fit(X, y)
    assert_allclose(learned.predict(X), fixed.predict(X), rtol=1e-12)


def test_zero_weight_samples_take_no_part_in_learning():
    X, y = toy_1d(n_samples=80)
    sample_weight = np.ones(80)
    sample_weight[::4] = 0.0
    weighted = NadarayaWatsonRegressor(learn_bandwidth=True)
    weighted.fit(X, y, sample_weight=sample_weight)
    kept = sample_weight > 0
    removed = NadarayaWatsonRegressor(learn_bandwidth=True).fit(X[kept], y[kept])
    assert weighted.bandwidth_ == pytest.approx(removed.bandwidth_, rel=1e-6)


def test_learning_refuses_a_callable_kernel():
    model = NadarayaWatsonRegressor(kernel=lambda u: np.exp(-u), learn_bandwidth=True)
    with pytest.raises(ValueError, match="learn_bandwidth=True needs a named kernel"):
        model.fit([[0.0], [1.0]], [0.0, 1.0])


def test_learning_refuses_a_single_sample():
    model = NadarayaWatsonRegressor(learn_bandwidth=True)
    with pytest.raises(ValueError, match="at least 2 samples"):
        model.fit([[0.0], [1.0]], [0.0, 1.0], sample_weight=[1.0, 0.0])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"solver": "newton"}, "solver"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_iter": 0}, "max_iter"),
        ({"tol": -1.0}, "tol"),
    ],
)
def test_bad_learning_parameters(params, match):
    model = NadarayaWatsonRegressor(learn_bandwidth=True, **params)
    with pytest.raises(ValueError, match=match):
        model.fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0])


@pytest.mark.parametrize("role", ["key_widths", "query_widths"])
def test_adaptive_loss_and_gradient(role):
    X, y = toy_4d(n_samples=70)
    local = kth_neighbor_distance_slow(X, 5)
    loo = LeaveOneOutObjective(
        X,
        y[:, None],
        kernel="gaussian",
        loss="squared_error",
        sample_weight=None,
        device=torch.device("cpu"),
        **{role: local},
    )
    log_bandwidth = np.log([0.8, 1.2, 0.6, 1.5])
    loss, gradient = loo(log_bandwidth)
    expected = loo_squared_error_slow(
        X, y, np.exp(log_bandwidth), "gaussian", **{role: local}
    )
    assert loss == pytest.approx(expected, rel=1e-10)
    assert_allclose(
        gradient,
        central_difference(lambda x: loo(x)[0], log_bandwidth),
        rtol=1e-5,
        atol=1e-9,
    )


@pytest.mark.parametrize("adaptive", ["sample", "query"])
def test_learning_with_adaptive_widths_reaches_the_grid_minimum(adaptive):
    X, y = toy_1d(n_samples=150)
    model = NadarayaWatsonRegressor(
        adaptive=adaptive, n_neighbors=10, learn_bandwidth=True
    ).fit(X, y)
    role = "key_widths" if adaptive == "sample" else "query_widths"
    widths = {role: kth_neighbor_distance_slow(X, 10)}
    learned = loo_squared_error_slow(X, y, model.bandwidth_, "gaussian", **widths)
    grid = min(
        loo_squared_error_slow(X, y, width, "gaussian", **widths)
        for width in np.geomspace(0.05, 20, 300)
    )
    assert learned <= 1.001 * grid


def test_learning_inside_grid_search_and_cross_validate():
    from sklearn.model_selection import GridSearchCV, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler as Scaler

    X, y = toy_4d(n_samples=120)
    pipeline = make_pipeline(Scaler(), NadarayaWatsonRegressor(learn_bandwidth=True))
    search = GridSearchCV(
        pipeline,
        {"nadarayawatsonregressor__kernel": ["gaussian", "epanechnikov"]},
        cv=3,
    ).fit(X, y)
    assert search.best_score_ > 0.5
    assert search.best_estimator_[-1].n_iter_ >= 1
    scores = cross_validate(pipeline, X, y, cv=3, return_estimator=True)
    widths = [model[-1].bandwidth_ for model in scores["estimator"]]
    assert len(set(widths)) == 3, "each fold learns its own width"
    assert np.all(scores["test_score"] > 0.5)


def test_per_feature_learning_on_unscaled_features():
    rng = np.random.default_rng(10)
    X = np.column_stack([rng.normal(0, 1e3, 300), rng.normal(0, 1e-4, 300)])
    y = np.sin(X[:, 1] * 2e4) + rng.normal(0, 0.05, 300)
    model = NadarayaWatsonRegressor(bandwidth=[1e3, 3e-5], learn_bandwidth=True)
    model.fit(X[:200], y[:200])
    assert model.bandwidth_[1] < 1e-4
    assert model.score(X[200:], y[200:]) > 0.9


def test_sgd_is_reproducible_with_random_state():
    X, y = toy_1d(n_samples=120)
    params = dict(learn_bandwidth=True, solver="sgd", batch_size=30, random_state=3)
    first = NadarayaWatsonRegressor(**params).fit(X, y)
    second = NadarayaWatsonRegressor(**params).fit(X, y)
    assert first.bandwidth_ == second.bandwidth_
    assert first.loss_curve_ == second.loss_curve_


def test_auto_solver_switches_to_sgd_above_the_limit(monkeypatch, capsys):
    from sknw import _base

    X, y = toy_1d(n_samples=80)
    model = NadarayaWatsonRegressor(learn_bandwidth=True, verbose=1, random_state=0)
    model.fit(X, y)
    assert "lbfgs" in capsys.readouterr().out
    monkeypatch.setattr(_base, "LBFGS_MAX_SAMPLES", 50)
    model.fit(X, y)
    assert "adam" in capsys.readouterr().out


def test_learning_with_float32_input():
    X, y = toy_1d(n_samples=100)
    learned32 = NadarayaWatsonRegressor(learn_bandwidth=True)
    learned32.fit(X.astype(np.float32), y.astype(np.float32))
    learned64 = NadarayaWatsonRegressor(learn_bandwidth=True).fit(X, y)
    assert isinstance(learned32.bandwidth_, float)
    assert learned32.bandwidth_ == pytest.approx(learned64.bandwidth_, rel=1e-4)
    assert learned32.predict(X.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_constant_target_still_counts_an_iteration(solver):
    X = np.linspace(0, 1, 30)[:, None]
    model = NadarayaWatsonRegressor(learn_bandwidth=True, solver=solver)
    model.fit(X, np.full(30, 2.0))
    assert model.n_iter_ >= 1
    assert len(model.loss_curve_) == model.n_iter_
    assert_allclose(model.predict(X), 2.0)

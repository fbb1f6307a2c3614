"""Tests of NadarayaWatsonClassifier: the Parzen-window oracle, labels, integration."""

# Authors: the sknw developers
# License: BSD 3 clause

import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_iris
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.neighbors import KernelDensity
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sknw import NadarayaWatsonClassifier, NadarayaWatsonRegressor

# Kernels that sklearn.neighbors.KernelDensity shares with sknw. Its log-kernels
# (sklearn/neighbors/_binary_tree.pxi.tp) in terms of u = r / h: gaussian
# -u**2 / 2; tophat 0 if r < h; epanechnikov log(1 - u**2) if r < h; exponential
# -u; linear log(1 - u) if r < h; cosine log(cos(pi u / 2)) if r < h; -inf
# outside the support. These are the logs of sknw's kernels of the same names;
# the normalising constants depend on h and d only, so they cancel across classes.
KDE_KERNELS = ["gaussian", "tophat", "epanechnikov", "exponential", "linear", "cosine"]
COMPACT_KERNELS = ["tophat", "epanechnikov", "linear", "cosine", "biweight", "tricube"]


def _blobs(n_samples=60, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % n_classes
    centres = 1.5 * rng.normal(size=(n_classes, 2))
    X = centres[y] + rng.normal(size=(n_samples, 2))
    return X, y


def _parzen_proba(X, y, X_query, kernel, bandwidth):
    """Class counts times class-conditional KernelDensity, normalised."""
    classes = np.unique(y)
    scores = np.column_stack(
        [
            np.sum(y == c)
            * np.exp(
                KernelDensity(kernel=kernel, bandwidth=bandwidth)
                .fit(X[y == c])
                .score_samples(X_query)
            )
            for c in classes
        ]
    )
    totals = scores.sum(axis=1, keepdims=True)
    assert np.all(totals > 0), "every query must have some density"
    return scores / totals


@pytest.mark.parametrize("kernel", KDE_KERNELS)
@pytest.mark.parametrize("bandwidth", [0.8, 2.0])
def test_predict_proba_matches_kernel_density(kernel, bandwidth):
    X, y = _blobs(seed=1)
    # Queries off the training points, each within 0.5 of one.
    rng = np.random.default_rng(2)
    X_query = X[rng.integers(0, len(X), size=40)] + rng.uniform(-0.35, 0.35, (40, 2))

    clf = NadarayaWatsonClassifier(kernel=kernel, bandwidth=bandwidth).fit(X, y)
    expected = _parzen_proba(X, y, X_query, kernel, bandwidth)

    assert_allclose(clf.predict_proba(X_query), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kernel", KDE_KERNELS)
def test_predict_proba_at_training_points_matches_kernel_density(kernel):
    # Predicting on the training set itself: each query is at distance 0 from
    # one sample. The exponential and linear kernels are not smooth at u = 0,
    # so an error of e in the squared distance shows as sqrt(e) in the weight.
    X, y = _blobs(seed=3)
    clf = NadarayaWatsonClassifier(kernel=kernel, bandwidth=1.0).fit(X, y)
    expected = _parzen_proba(X, y, X, kernel, 1.0)
    assert_allclose(clf.predict_proba(X), expected, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------
# Labels


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param(np.array(["spam", "eggs"]), id="str"),
        pytest.param(np.array(["b", "c", "a"], dtype=object), id="object"),
        pytest.param(np.array([3, 7]), id="int"),
        pytest.param(np.array([1, -1]), id="minus_one_one"),
        pytest.param(np.array([2, 0, 1]), id="three_int"),
        pytest.param(np.array([0.0, 2.0, -1.0]), id="float"),
        pytest.param(np.array([True, False]), id="bool"),
    ],
)
def test_labels_round_trip(labels):
    X, y_index = _blobs(n_classes=len(labels), seed=4)
    y = labels[y_index]
    X_query = np.random.default_rng(3).normal(scale=2.0, size=(30, 2))
    clf = NadarayaWatsonClassifier(bandwidth=0.7).fit(X, y)

    assert_array_equal(clf.classes_, np.sort(labels))
    proba = clf.predict_proba(X_query)
    y_pred = clf.predict(X_query)
    assert proba.shape == (30, len(labels))
    assert y_pred.dtype == y.dtype
    assert_array_equal(y_pred, np.sort(labels)[np.argmax(proba, axis=1)])
    assert set(y_pred) <= set(labels)
    # Labels are arbitrary names: renaming them changes nothing but the names.
    by_index = NadarayaWatsonClassifier(bandwidth=0.7).fit(X, y_index)
    order = np.argsort(labels)
    assert_allclose(proba, by_index.predict_proba(X_query)[:, order], rtol=1e-12)


def test_list_of_strings_and_training_accuracy():
    X, y_index = _blobs(n_classes=2, seed=5)
    y = [["no", "yes"][i] for i in y_index]
    clf = NadarayaWatsonClassifier(bandwidth=0.05).fit(X, y)
    assert list(clf.classes_) == ["no", "yes"]
    # A tiny width gives each training point its own label.
    assert_array_equal(clf.predict(X), y)
    assert clf.score(X, y) == 1.0


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov", "exponential"])
@pytest.mark.parametrize("bandwidth", [0.3, 1.0, [0.5, 2.0]])
def test_predict_proba_equals_regressor_on_one_hot(kernel, bandwidth):
    X, y = _blobs(seed=6)
    X_query = np.random.default_rng(4).normal(scale=2.0, size=(25, 2))
    X_query[0] = [60.0, -60.0]
    clf = NadarayaWatsonClassifier(kernel=kernel, bandwidth=bandwidth).fit(X, y)
    one_hot = (y[:, None] == np.arange(3)).astype(float)
    reg = NadarayaWatsonRegressor(kernel=kernel, bandwidth=bandwidth).fit(X, one_hot)

    proba = clf.predict_proba(X_query)
    assert_allclose(proba, reg.predict(X_query), rtol=1e-12, atol=1e-15)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(proba >= 0)


@pytest.mark.parametrize("kernel", KDE_KERNELS + ["biweight", "tricube"])
def test_predict_log_proba_is_log_of_predict_proba(kernel):
    X, y = _blobs(seed=7)
    X_query = np.random.default_rng(5).normal(scale=2.0, size=(30, 2))
    clf = NadarayaWatsonClassifier(kernel=kernel, bandwidth=0.6).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        proba = clf.predict_proba(X_query)
        log_proba = clf.predict_log_proba(X_query)

    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    positive = proba > 0
    assert_allclose(log_proba[positive], np.log(proba[positive]), rtol=1e-12)
    assert np.all(log_proba[~positive] == -np.inf)
    if kernel in COMPACT_KERNELS:
        # A width of 0.6 leaves some class without support near some query.
        assert not positive.all()


# --------------------------------------------------------------------------
# Integration on iris


def test_iris_pipeline_grid_search_and_cross_validate():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), NadarayaWatsonClassifier())
    grid = {
        "nadarayawatsonclassifier__bandwidth": [0.3, 1.0, "scott"],
        "nadarayawatsonclassifier__kernel": ["gaussian", "epanechnikov"],
    }
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    search = GridSearchCV(pipe, grid, cv=cv).fit(X, y)

    assert search.best_score_ > 0.9
    best = search.best_estimator_[-1]
    assert_array_equal(best.classes_, [0, 1, 2])
    assert search.score(X, y) > 0.9

    result = cross_validate(
        make_pipeline(StandardScaler(), NadarayaWatsonClassifier(bandwidth=0.5)),
        X,
        y,
        cv=cv,
        scoring=["accuracy", "neg_log_loss"],
    )
    assert np.all(result["test_accuracy"] > 0.85)
    assert np.all(np.isfinite(result["test_neg_log_loss"]))


@pytest.mark.parametrize("kernel", ["gaussian", "cosine"])
def test_pickle_round_trip(kernel):
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = NadarayaWatsonClassifier(kernel=kernel, bandwidth=0.4).fit(X, names)
    loaded = pickle.loads(pickle.dumps(clf))

    X_query = X[::7] + 0.05
    assert_array_equal(loaded.classes_, clf.classes_)
    assert_array_equal(loaded.predict(X_query), clf.predict(X_query))
    assert_array_equal(loaded.predict_proba(X_query), clf.predict_proba(X_query))


# --------------------------------------------------------------------------
# Queries with zero total weight under a compact kernel


@pytest.mark.parametrize("kernel", COMPACT_KERNELS)
def test_far_query_takes_nearest_label(kernel):
    X = np.array([[0.0, 0.0], [1.0, 0.5], [5.0, 5.0], [6.0, 4.0]])
    y = np.array(["a", "b", "c", "b"])
    clf = NadarayaWatsonClassifier(kernel=kernel, bandwidth=0.3).fit(X, y)
    X_query = np.array([[-50.0, -40.0], [80.0, 90.0], [3.0, 0.5], [9.0, 3.0]])

    assert_array_equal(clf.predict(X_query), ["a", "c", "b", "b"])
    assert_array_equal(
        clf.predict_proba(X_query),
        [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]],
    )


@pytest.mark.parametrize("kernel", ["tophat", "epanechnikov"])
@pytest.mark.parametrize(
    "X",
    [
        pytest.param([[-1.0], [1.0]], id="pair"),
        pytest.param([[-1.0], [1.0], [10.0]], id="pair_and_far"),
        pytest.param([[-1.0], [1.0], [10.0], [10.3]], id="pair_and_two_far"),
        pytest.param([[0.0], [2.0], [7.3]], id="shifted_pair"),
    ],
)
def test_equidistant_nearest_samples_share_a_far_query(kernel, X):
    # The query is exactly halfway between samples 0 and 1 (the pair and the
    # query are exact in binary; the other samples only move the data's mean)
    # and more than one width from both: a tie, which the Gaussian's limit
    # (and the docs: "nearest training sample(s)") split evenly.
    X = np.array(X)
    y = np.arange(len(X))
    X_query = (X[:1] + X[1:2]) / 2
    clf = NadarayaWatsonClassifier(kernel=kernel, bandwidth=0.5).fit(X, y)

    expected = np.zeros((1, len(X)))
    expected[0, :2] = 0.5
    assert_array_equal(clf.predict_proba(X_query), expected)
    # predict breaks the tie in favour of the first class.
    assert_array_equal(clf.predict(X_query), [0])


def test_tiny_gaussian_width_splits_a_tie_evenly():
    X = np.array([[-1.0], [1.0], [10.0], [10.3]])
    clf = NadarayaWatsonClassifier(bandwidth=1e-3).fit(X, [0, 1, 2, 3])
    assert_allclose(clf.predict_proba([[0.0]]), [[0.5, 0.5, 0.0, 0.0]], atol=1e-9)


# --------------------------------------------------------------------------
# sample_weight


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov", "tophat"])
def test_integer_sample_weight_equals_repeated_rows(kernel):
    X, y = _blobs(n_samples=30, seed=8)
    sample_weight = np.random.default_rng(6).integers(0, 4, size=30)
    X_query = np.vstack(
        [np.random.default_rng(7).normal(scale=2.0, size=(20, 2)), [[40.0, 40.0]]]
    )
    weighted = NadarayaWatsonClassifier(kernel=kernel, bandwidth=0.8)
    weighted.fit(X, y, sample_weight=sample_weight)
    index = np.repeat(np.arange(30), sample_weight)
    repeated = NadarayaWatsonClassifier(kernel=kernel, bandwidth=0.8)
    repeated.fit(X[index], y[index])

    assert_array_equal(weighted.classes_, repeated.classes_)
    assert_allclose(
        weighted.predict_proba(X_query), repeated.predict_proba(X_query), rtol=1e-10
    )
    assert_array_equal(weighted.predict(X_query), repeated.predict(X_query))


def test_class_with_zero_weight_keeps_its_column():
    X, y = _blobs(n_samples=30, seed=9)
    sample_weight = np.where(y == 1, 0.0, 1.0)
    clf = NadarayaWatsonClassifier().fit(X, y, sample_weight=sample_weight)
    proba = clf.predict_proba(X)
    assert_array_equal(clf.classes_, [0, 1, 2])
    assert_array_equal(proba[:, 1], 0.0)
    assert_allclose(proba.sum(axis=1), 1.0)


def test_inputs_are_not_modified():
    X, y = _blobs(n_samples=30, seed=10)
    labels = np.array(["x", "y", "z"])[y]
    sample_weight = np.random.default_rng(8).uniform(0.0, 2.0, size=30)
    originals = [a.copy() for a in (X, labels, sample_weight)]
    clf = NadarayaWatsonClassifier(kernel="epanechnikov").fit(
        X, labels, sample_weight=sample_weight
    )
    clf.predict_log_proba(X)
    clf.score(X, labels)
    for before, after in zip(originals, (X, labels, sample_weight)):
        assert_array_equal(after, before)


# --------------------------------------------------------------------------
# Bad input


def test_nan_float_labels_are_refused():
    X, _ = _blobs(n_samples=10)
    y = np.array([0.0, 1.0] * 5)
    y[3] = np.nan
    with pytest.raises(ValueError, match="Input y contains NaN"):
        NadarayaWatsonClassifier().fit(X, y)


def test_two_column_y_is_refused():
    X, y = _blobs(n_samples=10)
    with pytest.raises(ValueError, match=r"y should be a 1d array, got .*\(10, 2\)"):
        NadarayaWatsonClassifier().fit(X, np.column_stack([y, y]))


def test_one_column_y_warns_and_is_raveled():
    X, y = _blobs(n_samples=12)
    with pytest.warns(UserWarning, match="A column-vector y was passed"):
        clf = NadarayaWatsonClassifier().fit(X, y[:, None])
    assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.predict(X).shape == (12,)


def test_continuous_y_is_refused():
    X, _ = _blobs(n_samples=10)
    y = np.linspace(0.1, 1.0, 10)
    with pytest.raises(ValueError, match="Unknown label type"):
        NadarayaWatsonClassifier().fit(X, y)


def test_predict_before_fit():
    X, _ = _blobs(n_samples=10)
    clf = NadarayaWatsonClassifier()
    for method in (clf.predict, clf.predict_proba, clf.predict_log_proba):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            method(X)

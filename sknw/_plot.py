"""Displays: the attention heatmap, a fitted 1-D curve, the learning curve."""

# Authors: the sknw developers
# License: BSD 3 clause

from numbers import Real

import numpy as np
from sklearn.utils.validation import check_is_fitted


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "Plotting needs matplotlib: pip install matplotlib, or install sknw "
            'with its plot extra: pip install "scikit-nw[plot]".'
        ) from exc
    return plt


def _axes(ax):
    if ax is None:
        _, ax = _pyplot().subplots()
    return ax


class AttentionWeightsDisplay:
    """Heatmap of attention weights: queries by training samples.

    Build it with :meth:`from_estimator`; the constructor stores computed
    arrays.

    Parameters
    ----------
    attention : ndarray of shape (n_queries, n_samples_fit)
        Attention weights, rows summing to 1, in the order to draw.
    query_order : ndarray of shape (n_queries,)
        Indices of the queries, as given, for each row.
    sample_order : ndarray of shape (n_samples_fit,)
        Indices of the training samples, as fitted, for each column.

    Attributes
    ----------
    image_ : matplotlib AxesImage
        The heatmap.
    colorbar_ : matplotlib Colorbar
        Its colour scale.
    ax_ : matplotlib Axes
        Axes with the heatmap.
    figure_ : matplotlib Figure
        Figure containing the heatmap.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sknw import AttentionWeightsDisplay, NadarayaWatsonRegressor
    >>> X = np.linspace(0, 5, 30)[:, None]
    >>> model = NadarayaWatsonRegressor(bandwidth=0.5).fit(X, np.sin(X[:, 0]))
    >>> display = AttentionWeightsDisplay.from_estimator(model, X)
    >>> display.attention.shape
    (30, 30)
    """

    def __init__(self, *, attention, query_order, sample_order):
        self.attention = attention
        self.query_order = query_order
        self.sample_order = sample_order

    @classmethod
    def from_estimator(cls, estimator, X, *, sort=True, ax=None, cmap="Reds"):
        """Compute the attention of a fitted estimator at ``X`` and draw it.

        Parameters
        ----------
        estimator : fitted NadarayaWatsonRegressor, NadarayaWatsonClassifier \
                or their CV siblings
            The estimator whose weights to show.
        X : array-like of shape (n_queries, n_features)
            Queries.
        sort : bool, default=True
            With one feature, order queries and training samples by it, so a
            narrow width shows as a band along the diagonal.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        cmap : str, default="Reds"
            Colour map.

        Returns
        -------
        display : AttentionWeightsDisplay
        """
        check_is_fitted(estimator)
        attention = estimator.attention_weights(X)
        query_order = np.arange(attention.shape[0])
        sample_order = np.arange(attention.shape[1])
        if sort and estimator.n_features_in_ == 1:
            query_order = np.argsort(np.asarray(X, dtype=float)[:, 0], kind="stable")
            sample_order = np.argsort(estimator._fit_X[:, 0], kind="stable")
        display = cls(
            attention=attention[np.ix_(query_order, sample_order)],
            query_order=query_order,
            sample_order=sample_order,
        )
        return display.plot(ax=ax, cmap=cmap)

    def plot(self, ax=None, *, cmap="Reds"):
        """Draw the heatmap.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        cmap : str, default="Reds"
            Colour map.

        Returns
        -------
        display : AttentionWeightsDisplay
        """
        ax = _axes(ax)
        self.image_ = ax.imshow(
            self.attention, aspect="auto", cmap=cmap, interpolation="nearest"
        )
        self.colorbar_ = ax.figure.colorbar(self.image_, ax=ax)
        ax.set_xlabel("training samples (keys)")
        ax.set_ylabel("queries")
        self.ax_, self.figure_ = ax, ax.figure
        return self


class FittedCurveDisplay:
    """A fitted one-feature regression: the curve, the data, the truth.

    Optionally with a band around the curve: the pointwise confidence band
    of the estimate, prediction +- z * standard error with z the normal
    quantile of 1 - alpha / 2, or the jackknife+ prediction interval for new
    observations at level 1 - alpha (see :ref:`uncertainty`).

    Parameters
    ----------
    grid : ndarray of shape (n_points,)
        Where the curve is evaluated.
    prediction : ndarray of shape (n_points,)
        The estimator's predictions on the grid.
    X : ndarray of shape (n_samples,)
        Training inputs to scatter.
    y : ndarray of shape (n_samples,)
        Their targets.
    truth : ndarray of shape (n_points,) or None
        The true function on the grid, when known.
    band : ndarray of shape (n_points, 2) or None
        Lower and upper edges of a band on the grid.
    band_label : str or None
        The band's legend entry.

    Attributes
    ----------
    line_ : matplotlib Line2D
        The fitted curve.
    scatter_ : matplotlib PathCollection
        The training points.
    truth_line_ : matplotlib Line2D or None
        The true function.
    band_ : matplotlib PolyCollection or None
        The band.
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sknw import FittedCurveDisplay, NadarayaWatsonRegressor
    >>> X = np.linspace(0, 5, 30)[:, None]
    >>> y = np.sin(X[:, 0])
    >>> model = NadarayaWatsonRegressor(bandwidth=0.5).fit(X, y)
    >>> display = FittedCurveDisplay.from_estimator(model, X, y, n_points=50)
    >>> display.prediction.shape
    (50,)
    >>> display = FittedCurveDisplay.from_estimator(
    ...     model, X, y, n_points=50, band="interval", alpha=0.2
    ... )
    >>> display.band.shape
    (50, 2)
    """

    def __init__(
        self, *, grid, prediction, X, y, truth=None, band=None, band_label=None
    ):
        self.grid = grid
        self.prediction = prediction
        self.X = X
        self.y = y
        self.truth = truth
        self.band = band
        self.band_label = band_label

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        y,
        *,
        truth=None,
        n_points=200,
        band=None,
        alpha=0.1,
        noise="local",
        ax=None,
    ):
        """Predict on a grid over the range of ``X`` and draw.

        Parameters
        ----------
        estimator : fitted NadarayaWatsonRegressor or \
                NadarayaWatsonRegressorCV with one feature
            The estimator to draw.
        X : array-like of shape (n_samples, 1)
            Points to scatter, usually the training inputs.
        y : array-like of shape (n_samples,)
            Their targets.
        truth : callable, default=None
            The true function of x, drawn when given.
        n_points : int, default=200
            Grid size.
        band : {"std", "interval"} or None, default=None
            A band to draw: "std", prediction +- z * standard error (from
            ``predict(X, return_std=True)``), z the normal quantile of
            1 - alpha / 2, a confidence band for the smoothed curve that
            leaves out the bias; "interval", the jackknife+ prediction
            interval of ``predict_interval`` for new observations; None, no
            band.
        alpha : float in (0, 1), default=0.1
            The band's level is 1 - alpha.
        noise : {"local", "constant"}, default="local"
            How ``band="std"`` estimates the noise; see
            :meth:`NadarayaWatsonRegressor.predict`.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.

        Returns
        -------
        display : FittedCurveDisplay
        """
        check_is_fitted(estimator)
        if band not in (None, "std", "interval"):
            raise ValueError(
                f"band must be 'std', 'interval' or None; got band={band!r}."
            )
        if band is not None and not (isinstance(alpha, Real) and 0 < alpha < 1):
            raise ValueError(f"alpha must be a float in (0, 1); got alpha={alpha!r}.")
        if estimator.n_features_in_ != 1:
            raise ValueError(
                "FittedCurveDisplay draws estimators fitted on one feature; this "
                f"one has n_features_in_ = {estimator.n_features_in_}."
            )
        X = np.asarray(X, dtype=float).reshape(-1)
        grid = np.linspace(X.min(), X.max(), n_points)
        band_values, band_label = None, None
        level = f"{100 * (1 - alpha):g}%"
        if band == "std":
            from scipy.stats import norm

            prediction, std = estimator.predict(
                grid[:, None], return_std=True, noise=noise
            )
            half_width = norm.ppf(1 - alpha / 2) * std
            band_values = np.column_stack(
                [prediction - half_width, prediction + half_width]
            )
            band_label = f"{level} confidence band"
        else:
            prediction = estimator.predict(grid[:, None])
            if band == "interval":
                band_values = estimator.predict_interval(grid[:, None], alpha=alpha)
                band_label = f"{level} prediction interval"
        display = cls(
            grid=grid,
            prediction=prediction,
            X=X,
            y=np.asarray(y, dtype=float),
            truth=None if truth is None else np.asarray(truth(grid), dtype=float),
            band=band_values,
            band_label=band_label,
        )
        return display.plot(ax=ax)

    def plot(self, ax=None):
        """Draw the curve, the points, the truth and the band.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.

        Returns
        -------
        display : FittedCurveDisplay
        """
        ax = _axes(ax)
        self.band_ = None
        if self.band is not None:
            self.band_ = ax.fill_between(
                self.grid,
                self.band[:, 0],
                self.band[:, 1],
                alpha=0.25,
                color="C1",
                linewidth=0,
                label=self.band_label,
            )
        self.scatter_ = ax.scatter(self.X, self.y, s=12, alpha=0.5, label="data")
        self.truth_line_ = None
        if self.truth is not None:
            (self.truth_line_,) = ax.plot(self.grid, self.truth, "--", label="truth")
        (self.line_,) = ax.plot(self.grid, self.prediction, label="prediction")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.legend()
        self.ax_, self.figure_ = ax, ax.figure
        return self


class LossCurveDisplay:
    """The leave-one-out loss during the learning of the width.

    Draws the ``loss_curve_`` of a fitted :class:`NadarayaWatsonRegressorCV`
    or :class:`NadarayaWatsonClassifierCV`: the loss at the starting
    ``bandwidth`` (iteration 0), then after each iteration of the solver, up
    to ``n_iter_``.

    Parameters
    ----------
    loss_curve : ndarray of shape (n_iter + 1,)
        The estimator's ``loss_curve_``: the loss at the start, then after
        each of its ``n_iter_`` iterations.

    Attributes
    ----------
    line_ : matplotlib Line2D
        The curve.
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sknw import LossCurveDisplay, NadarayaWatsonRegressorCV
    >>> X = np.linspace(0, 5, 40)[:, None]
    >>> y = np.sin(X[:, 0])
    >>> model = NadarayaWatsonRegressorCV().fit(X, y)
    >>> display = LossCurveDisplay.from_estimator(model)
    >>> len(display.loss_curve) == model.n_iter_ + 1
    True
    """

    def __init__(self, *, loss_curve):
        self.loss_curve = loss_curve

    @classmethod
    def from_estimator(cls, estimator, *, ax=None):
        """Draw the ``loss_curve_`` of an estimator that learned its width.

        Parameters
        ----------
        estimator : fitted NadarayaWatsonRegressorCV or NadarayaWatsonClassifierCV
            The estimator whose learning to show.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.

        Returns
        -------
        display : LossCurveDisplay
        """
        check_is_fitted(estimator)
        if not hasattr(estimator, "loss_curve_"):
            raise ValueError(
                "LossCurveDisplay needs an estimator that learned its width, a "
                "fitted NadarayaWatsonRegressorCV or NadarayaWatsonClassifierCV; "
                f"this {type(estimator).__name__} has no loss_curve_."
            )
        display = cls(loss_curve=np.asarray(estimator.loss_curve_, dtype=float))
        return display.plot(ax=ax)

    def plot(self, ax=None):
        """Draw the loss against the iteration, from 0 (the start).

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.

        Returns
        -------
        display : LossCurveDisplay
        """
        ax = _axes(ax)
        from matplotlib.ticker import MaxNLocator

        iterations = np.arange(len(self.loss_curve))
        (self.line_,) = ax.plot(iterations, self.loss_curve, marker="o")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("iteration (0: the starting bandwidth)")
        ax.set_ylabel("leave-one-out loss")
        self.ax_, self.figure_ = ax, ax.figure
        return self

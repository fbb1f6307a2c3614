"""Learning the bandwidth by minimising the leave-one-out loss."""

# Authors: the sknw developers
# License: BSD 3 clause

import sys
import time
import warnings

import numpy as np
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state, gen_batches

from sknw._loo_objective import LeaveOneOutObjective

# The L-BFGS solver goes up to this many training samples under
# solver="auto", Adam above; each L-BFGS step visits all n^2 pairs, a
# minibatch step batch_size * n.
LBFGS_MAX_SAMPLES = 5000

# learning_rate="auto": a step on the relative loss's gradient (sgd), or a
# step of about this size in each log-width (adam). L-BFGS takes none.
LEARNING_RATES = {"lbfgs": None, "sgd": 0.5, "adam": 0.05}

# The minibatch solvers stop once this many epochs in a row improve the loss
# by less than tol.
N_ITER_NO_CHANGE = 3

# L-BFGS stops when every gradient of the relative loss with respect to a
# log-width is below tol times this: an irrelevant feature's width sits on a
# plateau whose slope falls off slowly, and a looser stop leaves it short.
_LBFGS_GTOL_FACTOR = 1e-2

# Adam's decay rates of its running gradient moments.
_ADAM_BETAS = (0.9, 0.999)

# Widths stay within this factor of the data's spread, either way.
_WIDTH_RANGE = 1e6


def learn_bandwidth(
    X,
    values,
    initial_bandwidth,
    *,
    kernel,
    loss,
    sample_weight,
    local_widths,
    adaptive,
    solver,
    learning_rate,
    batch_size,
    max_iter,
    tol,
    random_state,
    verbose,
    device,
    name,
):
    """Minimise the leave-one-out loss over the log of the bandwidth.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training inputs; at least 2 samples of positive weight.
    values : ndarray of shape (n_samples, n_values)
        Targets, or one-hot labels for the log-loss.
    initial_bandwidth : ndarray of shape (1,) or (n_features,)
        Starting width(s): one shared width or one per feature.
    kernel : str
        Kernel name.
    loss : {"squared_error", "log_loss"}
        Loss of each left-out prediction.
    sample_weight : ndarray of shape (n_samples,) or None
        Sample weights; zero-weight samples take no part.
    local_widths : ndarray of shape (n_samples,) or None
        Each sample's distance to its k-th nearest neighbour, multiplying the
        bandwidth: for the sample as a key (``adaptive="sample"``) or as the
        left-out query (``adaptive="query"``).
    adaptive : {"sample", "query"} or None
        Which role the local widths take.
    solver : {"lbfgs", "sgd", "adam"}
        Full-batch L-BFGS-B, or minibatch gradient descent over rows with
        plain or Adam steps.
    learning_rate : float
        Step size on the log-width, for the loss relative to the loss of the
        constant prediction (so its scale does not depend on y's).
    batch_size : int
        Rows per minibatch step.
    max_iter : int
        L-BFGS iterations, or minibatch epochs.
    tol : float
        L-BFGS: stop when the gradient of the relative loss with respect to
        each log-width is below ``tol / 100``; minibatch solvers: the
        relative improvement of the epoch loss under which an epoch counts as
        no change.
    random_state : int, RandomState instance or None
        Order of the minibatches.
    verbose : int
        Print a progress table when > 0.
    device : torch.device
        Where to compute.
    name : str
        Estimator name for the progress lines.

    Returns
    -------
    bandwidth : ndarray of the shape of ``initial_bandwidth``
        The learned width(s).
    loss_curve : list of float
        Leave-one-out loss after each iteration (minibatch solvers: mean over
        each epoch).
    n_iter : int
        Iterations (L-BFGS) or epochs (minibatch solvers) run.
    """
    if sample_weight is not None:
        kept = sample_weight > 0
        X, values, sample_weight = X[kept], values[kept], sample_weight[kept]
        if local_widths is not None:
            local_widths = local_widths[kept]
    objective = LeaveOneOutObjective(
        X,
        values,
        kernel=kernel,
        loss=loss,
        sample_weight=sample_weight,
        key_widths=local_widths if adaptive == "sample" else None,
        query_widths=local_widths if adaptive == "query" else None,
        device=device,
    )
    baseline = _constant_prediction_loss(values, sample_weight, loss)
    lower, upper = _log_bounds(X, initial_bandwidth.size)
    start = np.clip(np.log(initial_bandwidth), lower, upper)
    progress = _Progress(name, verbose)
    progress.start(solver, initial_bandwidth.size, X.shape[0])

    if solver == "lbfgs":
        loss_curve = []

        def relative(log_bandwidth):
            value, gradient = objective(log_bandwidth)
            return value / baseline, gradient / baseline

        def record(intermediate_result):
            loss_curve.append(intermediate_result.fun * baseline)
            progress.row(len(loss_curve), loss_curve)

        result = minimize(
            relative,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=list(zip(lower, upper)),
            callback=record,
            options={"maxiter": max_iter, "gtol": tol * _LBFGS_GTOL_FACTOR},
        )
        log_bandwidth = result.x
        converged = result.status != 1
        if not loss_curve:
            # Already optimal at the start: one evaluation, no step.
            loss_curve.append(objective(log_bandwidth)[0])
            progress.row(1, loss_curve)
    else:
        log_bandwidth, loss_curve, converged = _sgd(
            objective,
            start,
            (lower, upper),
            method=solver,
            baseline=baseline,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_iter=max_iter,
            tol=tol,
            random_state=random_state,
            progress=progress,
        )
    bandwidth = np.exp(log_bandwidth)
    progress.finish(converged, len(loss_curve), bandwidth)
    if not converged:
        warnings.warn(
            f"{name}: the leave-one-out learning of the bandwidth ({solver}) "
            f"reached max_iter={max_iter} without converging. Increase max_iter.",
            ConvergenceWarning,
        )
    return bandwidth, loss_curve, len(loss_curve)


def _sgd(
    objective,
    log_bandwidth,
    bounds,
    *,
    method,
    baseline,
    learning_rate,
    batch_size,
    max_iter,
    tol,
    random_state,
    progress,
):
    """Minibatch gradient descent: each step predicts a batch of rows.

    Parameters
    ----------
    objective : LeaveOneOutObjective
        Loss and gradient of a batch of rows.
    log_bandwidth : ndarray of shape (n_widths,)
        Start.
    bounds : tuple of ndarray
        Lower and upper bounds of the log-widths.
    method : {"sgd", "adam"}
        Plain steps against the gradient, or Adam's steps (Kingma and Ba,
        2015), scaled per width by a running mean of its squared gradients.
    baseline : float
        Loss of the constant prediction: gradients are taken relative to it.
    learning_rate, batch_size, max_iter, tol, random_state
        As in :func:`learn_bandwidth`.
    progress : _Progress
        Where each epoch is reported.

    Returns
    -------
    log_bandwidth : ndarray of shape (n_widths,)
        The last iterate.
    loss_curve : list of float
        Mean batch loss over each epoch.
    converged : bool
        Whether ``tol`` stopped it before ``max_iter``.
    """
    random_state = check_random_state(random_state)
    n_samples = objective.n_samples
    log_bandwidth = log_bandwidth.copy()
    first_moment = np.zeros_like(log_bandwidth)
    second_moment = np.zeros_like(log_bandwidth)
    n_steps = 0
    loss_curve = []
    best = np.inf
    no_change = 0
    for _ in range(max_iter):
        order = random_state.permutation(n_samples)
        epoch_loss = 0.0
        for batch in gen_batches(n_samples, batch_size):
            rows = order[batch]
            value, gradient = objective(log_bandwidth, rows)
            gradient = gradient / baseline
            if method == "adam":
                n_steps += 1
                first_moment = (
                    _ADAM_BETAS[0] * first_moment + (1 - _ADAM_BETAS[0]) * gradient
                )
                second_moment = (
                    _ADAM_BETAS[1] * second_moment + (1 - _ADAM_BETAS[1]) * gradient**2
                )
                mean = first_moment / (1 - _ADAM_BETAS[0] ** n_steps)
                spread = np.sqrt(second_moment / (1 - _ADAM_BETAS[1] ** n_steps))
                gradient = mean / (spread + 1e-8)
            log_bandwidth -= learning_rate * gradient
            np.clip(log_bandwidth, *bounds, out=log_bandwidth)
            epoch_loss += value * len(rows) / n_samples
        loss_curve.append(epoch_loss)
        progress.row(len(loss_curve), loss_curve)
        if epoch_loss > best - tol * baseline:
            no_change += 1
        else:
            no_change = 0
        best = min(best, epoch_loss)
        if no_change >= N_ITER_NO_CHANGE:
            return log_bandwidth, loss_curve, True
    return log_bandwidth, loss_curve, False


def _log_bounds(X, n_widths):
    """Bounds of the log-widths: a factor _WIDTH_RANGE around each feature's
    spread for per-feature widths, around the range of spreads for one width.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training inputs.
    n_widths : int
        1, or n_features.

    Returns
    -------
    lower, upper : ndarray of shape (n_widths,)
        Bounds of the log of each width.
    """
    spread = np.std(X, axis=0)
    positive = spread[spread > 0]
    if positive.size == 0:
        positive = np.ones(1)
    if n_widths == 1:
        low, high = positive.min(), positive.max()
    else:
        low = high = np.where(spread > 0, spread, positive.min())
    lower = np.log(np.atleast_1d(low / _WIDTH_RANGE))
    upper = np.log(np.atleast_1d(high * _WIDTH_RANGE))
    return lower, upper


def _constant_prediction_loss(values, sample_weight, loss):
    """Loss of predicting the weighted mean everywhere: the loss's scale."""
    mean = np.average(values, axis=0, weights=sample_weight)
    if loss == "squared_error":
        scale = np.average(((values - mean) ** 2).mean(axis=1), weights=sample_weight)
    else:
        present = mean[mean > 0]
        scale = -(present * np.log(present)).sum()
    return float(scale) if scale > 0 else 1.0


class _Progress:
    """Progress table of the learning, printed when verbose > 0."""

    def __init__(self, name, verbose):
        self.prefix = f"[{name}]"
        self.verbose = verbose
        self.started = time.perf_counter()

    def _print(self, line):
        if self.verbose > 0:
            print(f"{self.prefix} {line}", flush=True, file=sys.stdout)

    def start(self, solver, n_widths, n_samples):
        widths = "1 width" if n_widths == 1 else f"{n_widths} widths"
        self._print(
            f"Learning the bandwidth by leave-one-out: {solver}, {widths}, "
            f"{n_samples} samples"
        )
        self._print(f"{'iteration':>9} {'loss':>12} {'change':>11} {'seconds':>9}")

    def row(self, iteration, loss_curve):
        change = loss_curve[-1] - loss_curve[-2] if len(loss_curve) > 1 else np.nan
        seconds = time.perf_counter() - self.started
        self._print(
            f"{iteration:>9d} {loss_curve[-1]:>12.6e} {change:>11.3e} {seconds:>9.2f}"
        )

    def finish(self, converged, n_iter, bandwidth):
        seconds = time.perf_counter() - self.started
        state = "Converged" if converged else "Stopped at max_iter"
        widths = np.array2string(bandwidth, precision=4)
        self._print(f"{state} after {n_iter} iterations in {seconds:.2f} s: {widths}")

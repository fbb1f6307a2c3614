"""Fused Triton kernels: Nadaraya-Watson sums and the leave-one-out gradient."""

# Authors: the sknw developers
# License: BSD 3 clause

import os
import sys
import warnings
from contextlib import contextmanager, nullcontext

import torch

from sknw._kernels import KERNELS, TOPHAT_EDGE

# Queries per program, and keys weighed by one program at a time (fewer in
# the gradient kernel, which holds more tiles). With 8 warps, these sizes fit
# the registers of an sm_90 GPU (ptxas: no spills forward, a few bytes
# backward at 32 features), where 4 warps spilled kilobytes.
_BLOCK_QUERIES = 64
_BLOCK_KEYS = 64
_GRADIENT_BLOCK_KEYS = 32
_NUM_WARPS = 8

# Features whose differences are unrolled in one step of the distance loop.
_BLOCK_FEATURES = 8

# Per-feature gradients accumulated by one program.
_BLOCK_GRADIENT = 16

# With this many value columns or more, the weighted sums of a tile are one
# matrix product; with fewer, one reduction per column does less work than
# a product padded to the 16 columns tl.dot needs.
_DOT_MIN_VALUES = 8

# The log-domain kernels as exp(-slope * argument): the Gaussian's argument
# is u^2, the exponential's u.
_LOG_SLOPES = {
    kernel.name: -kernel.log_slope
    for kernel in KERNELS.values()
    if kernel.log_slope is not None
}

# The top-hat's edge in u^2, as float32 rounds it (1 - 2^-20): a key within
# a relative 2^-21 of u = 1 has weight 0, as on the torch paths. A Triton
# constant once Triton is imported (compiled kernels read no other globals).
_TOPHAT_EDGE_SQUARED = float(torch.tensor(TOPHAT_EDGE**2, dtype=torch.float32))

# The kernels are defined on first use, after Triton's import (which this
# module defers: importing sknw does not import Triton).
_built = False
triton = None
tl = None
_squared_distances = None
_log_arguments = None
_shifted_weights = None
_compact_weights = None
_weight_slopes = None
_partial_sums_kernel = None
_loo_gradient_kernel = None


def triton_available():
    """Whether the fused kernels can run here, and why not.

    Returns
    -------
    available : bool
        True when Triton imports and either a CUDA device is present or
        ``TRITON_INTERPRET=1`` asks for Triton's interpreter (which runs the
        kernels on CPU tensors).
    reason : str
        Why they cannot run; empty when they can.
    """
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        return False, f"Triton is not installed ({exc})"
    if _interpreting():
        return True, ""
    if not torch.cuda.is_available():
        return False, "no CUDA device is available and TRITON_INTERPRET is not set"
    return True, ""


def fused_device(device):
    """Whether the fused kernels compute on ``device``: a CUDA device that is
    present (the tests under Triton's interpreter take the CPU too)."""
    return device.type == "cuda" and torch.cuda.is_available()


# The fallbacks whose warning that the fused kernels cannot run was given.
_WARNED = set()


def use_fused(device, kernel, fallback):
    """Whether the fused kernels compute with ``kernel`` on ``device``.

    They do on a device of :func:`fused_device`, for a kernel they support,
    whenever Triton runs there. Where it does not, on CUDA, a warning says
    why and what computes instead, once per ``fallback``.

    Parameters
    ----------
    device : torch.device
    kernel : str or callable
    fallback : str
        The sentence of the warning that says what computes instead.

    Returns
    -------
    fused : bool
    """
    if not (fused_device(device) and supports_kernel(kernel)):
        return False
    available, reason = triton_available()
    if not available and device.type == "cuda" and fallback not in _WARNED:
        _WARNED.add(fallback)
        warnings.warn(
            f"The fused GPU kernels cannot run: {reason}. {fallback}", UserWarning
        )
    return available


def supports_kernel(kernel):
    """Whether ``kernel`` is a name the fused kernels compute."""
    return isinstance(kernel, str) and kernel in KERNELS and KERNELS[kernel].fused


def fused_partial_sums(queries, keys, values, kernel):
    """Kernel-weighted sums of ``values`` in one pass over the keys.

    For query i and key j, u_ij^2 = sum_f (queries[i, f] - keys[j, f])^2 is
    taken from coordinate differences in float32. The (n_queries, n_keys)
    weights are never stored: each program walks over the keys in blocks,
    keeping a running maximum of the log-weights and running sums rescaled
    whenever the maximum grows, as flash attention does.

    Parameters
    ----------
    queries : tensor of shape (n_queries, n_features)
        float32 queries, already divided by the bandwidth of each feature.
    keys : tensor of shape (n_keys, n_features)
        float32 keys, already divided by the bandwidth of each feature, on
        the device of ``queries``; n_keys >= 1.
    values : tensor of shape (n_keys, n_values)
        float32 values of the keys (for Nadaraya-Watson, the targets times
        the sample weights with the sample weights as the last column, so
        that the last sum is the normaliser).
    kernel : str
        A name (or alias) from ``sknw._kernels.KERNELS``.

    Returns
    -------
    row_max : tensor of shape (n_queries,)
        float32. The largest log-weight of each row for the kernels computed
        in the log domain (``-u^2 / 2`` for the Gaussian, ``-u`` for the
        exponential); 0 for every other kernel.
    sums : tensor of shape (n_queries, n_values)
        float32. ``sum_j exp(log_weight_ij - row_max_i) * values[j]`` for the
        Gaussian and the exponential, ``sum_j K(u_ij) * values[j]`` for the
        others. A row of a compact kernel with no key within reach sums to
        exactly 0.
    min_sq : tensor of shape (n_queries,)
        float32. ``min_j u_ij^2``, so that a caller can find the nearest keys
        of rows whose total weight is 0.

    Raises
    ------
    RuntimeError
        When Triton cannot run here (see :func:`triton_available`), or a
        tensor is on the CPU while Triton compiles for CUDA.
    TypeError
        When a tensor is not float32.
    ValueError
        When ``kernel`` is not a name from ``KERNELS`` or the shapes
        disagree.

    Notes
    -----
    Runs on CUDA tensors, or on CPU tensors when Triton was first imported
    with ``TRITON_INTERPRET=1`` (its interpreter, for tests). The squared
    distances must be finite in float32, which holds while the scaled
    coordinates stay below about 1e18 in magnitude. The log-weights are
    shifted before the exponential by the row's smallest u^2 (or u), so a
    weight relative to the row's largest carries a relative error of about
    1e-7 times the difference of their u^2: exact at the nearest keys, and
    finite at any width.
    """
    row_min, sums, min_sq = _partial_sums(queries, keys, values, kernel)
    name = _kernel_name(kernel)
    if name in _LOG_SLOPES:
        return -_LOG_SLOPES[name] * row_min, sums, min_sq
    return row_min, sums, min_sq


def leave_one_out_predictions(
    log_bandwidth, X, values, sample_weight, rows, kernel, *, centre=False
):
    """Each row of ``rows`` predicted from every other sample, differentiably.

    Parameters
    ----------
    log_bandwidth : tensor of shape (1,) or (n_features,)
        float64 logarithm of the isotropic or per-feature width; the
        gradient flows back to it.
    X : tensor of shape (n_samples, n_features)
        float64 training inputs.
    values : tensor of shape (n_samples, n_values)
        float64 targets or one-hot labels.
    sample_weight : tensor of shape (n_samples,)
        float64 positive sample weights.
    rows : tensor of int of shape (n_rows,)
        Samples to leave out and predict.
    kernel : str
        A kernel name.
    centre : bool, default=False
        Sum the values less their weighted mean, so that float32 carries
        their spread rather than their offset (for regression targets; a
        one-hot column is better left with its exact zeros).

    Returns
    -------
    predictions : tensor of shape (n_rows, n_values)
        float64 left-out predictions; 0 in the rows where no other sample
        has a positive kernel weight.
    empty : tensor of bool of shape (n_rows,)
        Those rows, for which the caller substitutes the nearest samples'
        values (their gradient is 0).
    """
    return _LeaveOneOutPredictions.apply(
        log_bandwidth, X, values, sample_weight, rows, kernel, centre
    )


class _LeaveOneOutPredictions(torch.autograd.Function):
    """Left-out predictions from the fused forward and backward kernels.

    With K_ij the kernel weight as a function of t_ij = u_ij^2, s_j the
    sample weights, S_i the total weight of row i and g_i the gradient of the
    loss with respect to its prediction p_i, the gradient with respect to
    log h_f is ``-2 sum_ij s_j g_i . (y_j - p_i) K'(t_ij) / S_i * d_ijf``,
    where d_ijf is the squared scaled difference in feature f (and t_ij for
    one shared width).
    """

    @staticmethod
    def forward(ctx, log_bandwidth, X, values, sample_weight, rows, kernel, centre):
        shift = torch.zeros_like(values[0])
        if centre:
            shift = (sample_weight @ values) / sample_weight.sum()
        centred = (values - shift).to(torch.float32)
        weight = sample_weight.to(torch.float32)
        scaled = (X / torch.exp(log_bandwidth)).to(torch.float32)
        self_index = rows.to(torch.int32)
        weighted = torch.cat([centred * weight[:, None], weight[:, None]], dim=1)
        row_min, sums, _ = _partial_sums(
            scaled[rows], scaled, weighted, kernel, self_index=self_index
        )
        totals = sums[:, -1].to(torch.float64)
        empty = ~(totals > 0)
        safe_totals = torch.where(empty, 1.0, totals)
        centred_predictions = sums[:, :-1].to(torch.float64) / safe_totals[:, None]
        predictions = torch.where(empty[:, None], 0.0, centred_predictions + shift)
        ctx.save_for_backward(
            log_bandwidth,
            scaled,
            centred,
            weight,
            self_index,
            row_min,
            centred_predictions,
            torch.where(empty, 0.0, 1.0 / safe_totals),
        )
        ctx.kernel = kernel
        ctx.mark_non_differentiable(empty)
        return predictions, empty

    @staticmethod
    def backward(ctx, grad_predictions, grad_empty):
        (
            log_bandwidth,
            scaled,
            centred,
            weight,
            self_index,
            row_min,
            centred_predictions,
            inverse_totals,
        ) = ctx.saved_tensors
        per_feature = log_bandwidth.numel() > 1
        gradient = _loo_gradient(
            scaled,
            centred,
            weight,
            self_index,
            row_min,
            inverse_totals.to(torch.float32),
            grad_predictions.to(torch.float32),
            (grad_predictions * centred_predictions).sum(dim=1).to(torch.float32),
            ctx.kernel,
            per_feature,
        )
        gradient = gradient.reshape(log_bandwidth.shape)
        return gradient.to(log_bandwidth.dtype), None, None, None, None, None, None


def _interpreting():
    """Whether Triton runs kernels in its interpreter, on CPU tensors.

    Triton decides when it is imported, from TRITON_INTERPRET: its own
    library functions are interpreted or compiled from then on.
    """
    language = sys.modules.get("triton.language")
    if language is None:
        setting = os.environ.get("TRITON_INTERPRET", "0")
        return setting.lower() in ("1", "true", "on", "yes")
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(language.zeros, InterpretedFunction)


def _kernel_name(kernel):
    """The canonical name of a kernel name or alias."""
    if not supports_kernel(kernel):
        names = sorted(name for name in KERNELS if supports_kernel(name))
        raise ValueError(f"The fused kernels take one of {names}; got {kernel!r}.")
    return KERNELS[kernel].name


def _check_runnable(*tensors):
    available, reason = triton_available()
    if not available:
        raise RuntimeError(f"The fused Triton kernels cannot run: {reason}.")
    for tensor in tensors:
        if tensor.dtype != torch.float32:
            raise TypeError(f"The fused kernels take float32; got {tensor.dtype}.")
        if tensor.device.type != "cuda" and not _interpreting():
            raise RuntimeError(
                "The fused kernels take CUDA tensors unless TRITON_INTERPRET=1; "
                f"got a tensor on {tensor.device}."
            )


def _next_power_of_2(n):
    return 1 << max(0, int(n) - 1).bit_length()


def _value_blocks(n_values):
    """Whether to use tl.dot for ``n_values`` columns, and the padded width."""
    use_dot = n_values >= _DOT_MIN_VALUES
    block = _next_power_of_2(n_values)
    return use_dot, max(block, 16) if use_dot else block


def _partial_sums(queries, keys, values, kernel, self_index=None):
    """Launch the forward kernel.

    ``self_index[i]``, when given, is the key that query i leaves out. The
    first output is, for the log-domain kernels, the smallest argument of
    each row (u^2 for the Gaussian, u for the exponential), and 0 otherwise.
    """
    _check_runnable(queries, keys, values)
    name = _kernel_name(kernel)
    _build()
    n_queries, n_features = queries.shape
    n_keys, n_values = values.shape
    if keys.shape != (n_keys, n_features) or n_keys == 0:
        raise ValueError(
            f"keys of shape {tuple(keys.shape)} do not match queries of shape "
            f"{tuple(queries.shape)} and values of shape {tuple(values.shape)}."
        )
    device = queries.device
    row_min = torch.empty(n_queries, dtype=torch.float32, device=device)
    sums = torch.empty((n_queries, n_values), dtype=torch.float32, device=device)
    min_sq = torch.empty(n_queries, dtype=torch.float32, device=device)
    if n_queries == 0:
        return row_min, sums, min_sq
    use_dot, block_values = _value_blocks(n_values)
    grid = (triton.cdiv(n_queries, _BLOCK_QUERIES),)
    with _triton_mode(device):
        _partial_sums_kernel[grid](
            queries.t().contiguous(),
            keys.t().contiguous(),
            values.contiguous(),
            min_sq if self_index is None else self_index,
            row_min,
            sums,
            min_sq,
            n_queries,
            n_keys,
            n_features,
            n_values,
            KERNEL=name,
            LOG_SLOPE=_LOG_SLOPES.get(name, 0.0),
            EXCLUDE_SELF=self_index is not None,
            USE_DOT=use_dot,
            N_VALUES=n_values,
            BLOCK_Q=_BLOCK_QUERIES,
            BLOCK_K=_BLOCK_KEYS,
            BLOCK_D=min(_BLOCK_FEATURES, _next_power_of_2(n_features)),
            BLOCK_V=block_values,
            num_warps=_NUM_WARPS,
        )
    return row_min, sums, min_sq


def _loo_gradient(
    scaled,
    values,
    weight,
    self_index,
    row_min,
    inverse_totals,
    grad_predictions,
    grad_dot_predictions,
    kernel,
    per_feature,
):
    """Launch the backward kernel and add up its per-program partial sums.

    Returns
    -------
    gradient : tensor of shape (n_features,) if ``per_feature`` else (1,)
        float64 gradient of the loss with respect to the log-widths.
    """
    name = _kernel_name(kernel)
    n_samples, n_features = scaled.shape
    n_values = values.shape[1]
    n_rows = self_index.shape[0]
    n_gradient = n_features if per_feature else 1
    block_gradient = min(_BLOCK_GRADIENT, _next_power_of_2(n_gradient))
    grid = (
        triton.cdiv(n_rows, _BLOCK_QUERIES),
        triton.cdiv(n_gradient, block_gradient),
    )
    partial = torch.zeros(
        (grid[0], n_gradient), dtype=torch.float32, device=scaled.device
    )
    if n_rows == 0:
        return partial.sum(dim=0).to(torch.float64)
    use_dot, block_values = _value_blocks(n_values)
    with _triton_mode(scaled.device):
        _loo_gradient_kernel[grid](
            scaled[self_index.long()].t().contiguous(),
            scaled.t().contiguous(),
            values.contiguous(),
            weight.contiguous(),
            self_index,
            row_min.contiguous(),
            inverse_totals.contiguous(),
            grad_predictions.contiguous(),
            grad_dot_predictions.contiguous(),
            partial,
            n_rows,
            n_samples,
            n_features,
            n_values,
            n_gradient,
            KERNEL=name,
            LOG_SLOPE=_LOG_SLOPES.get(name, 0.0),
            PER_FEATURE=per_feature,
            USE_DOT=use_dot,
            N_VALUES=n_values,
            BLOCK_Q=_BLOCK_QUERIES,
            BLOCK_K=_GRADIENT_BLOCK_KEYS,
            BLOCK_D=min(_BLOCK_FEATURES, _next_power_of_2(n_features)),
            BLOCK_V=block_values,
            BLOCK_G=block_gradient,
            num_warps=_NUM_WARPS,
        )
    # d u_ij^2 / d log h_f = -2 d_ijf.
    return -2.0 * partial.to(torch.float64).sum(dim=0)


def _build():
    """Import Triton and define the kernels, once.

    They are interpreted or compiled as Triton's library is, whatever
    TRITON_INTERPRET says now. The interpreter executes a kernel's source
    again in its module's namespace, so the kernels and the functions they
    call are module globals.
    """
    global _built, triton, tl, _TOPHAT_EDGE_SQUARED
    global _squared_distances, _log_arguments, _shifted_weights
    global _compact_weights, _weight_slopes
    global _partial_sums_kernel, _loo_gradient_kernel

    if _built:
        return
    import triton
    import triton.language as tl

    _TOPHAT_EDGE_SQUARED = tl.constexpr(_TOPHAT_EDGE_SQUARED)

    with _triton_mode():
        _define_kernels()
    _built = True


@contextmanager
def _triton_mode(device=None):
    """Keep TRITON_INTERPRET as it was at Triton's import; launch on ``device``.

    Triton reads the variable again when it defines a kernel and when it
    imports modules lazily at a launch, and launches on the current CUDA
    device whatever the tensors' device.
    """
    on_device = nullcontext()
    if device is not None and device.type == "cuda":
        on_device = torch.cuda.device(device)
    with triton.knobs.runtime.scope(), on_device:
        triton.knobs.runtime.interpret = _interpreting()
        yield


def _define_kernels():
    global _squared_distances, _log_arguments, _shifted_weights
    global _compact_weights, _weight_slopes
    global _partial_sums_kernel, _loo_gradient_kernel

    @triton.jit
    def _squared_distances(
        qt_ptr,
        kt_ptr,
        offs_q,
        offs_k,
        q_mask,
        k_mask,
        n_queries,
        n_keys,
        n_features,
        BLOCK_Q: tl.constexpr,
        BLOCK_K: tl.constexpr,
        BLOCK_D: tl.constexpr,
    ):
        # Exact coordinate differences: the expansion |q|^2 - 2 q.k + |k|^2
        # would lose everything below 1e-7 of the norms in float32.
        sq = tl.zeros((BLOCK_Q, BLOCK_K), dtype=tl.float32)
        for start in range(0, n_features, BLOCK_D):
            for step in tl.static_range(BLOCK_D):
                feature = start + step
                inside = feature < n_features
                q = tl.load(
                    qt_ptr + feature * n_queries + offs_q,
                    mask=q_mask & inside,
                    other=0.0,
                )
                k = tl.load(
                    kt_ptr + feature * n_keys + offs_k,
                    mask=k_mask & inside,
                    other=0.0,
                )
                diff = q[:, None] - k[None, :]
                sq += diff * diff
        return sq

    @triton.jit
    def _log_arguments(sq, KERNEL: tl.constexpr):
        if KERNEL == "gaussian":
            argument = sq
        else:
            argument = tl.sqrt_rn(sq)
        return argument

    @triton.jit
    def _shifted_weights(argument, row_min, LOG_SLOPE: tl.constexpr):
        # exp(-slope * (argument - row_min)) as exp2, one instruction, of a
        # log2(e) prescaled exponent, the slope the kernel table's. The
        # difference is taken first: the product of a large u^2 and the slope
        # would round by more than the spread of the row's arguments.
        return tl.exp2((row_min[:, None] - argument) * (LOG_SLOPE * 1.4426950408889634))

    @triton.jit
    def _compact_weights(sq, KERNEL: tl.constexpr):
        if KERNEL == "tophat":
            weights = tl.where(sq < _TOPHAT_EDGE_SQUARED, 1.0, 0.0)
        elif KERNEL == "epanechnikov":
            weights = tl.maximum(1.0 - sq, 0.0)
        elif KERNEL == "linear":
            weights = tl.maximum(1.0 - tl.sqrt_rn(sq), 0.0)
        elif KERNEL == "biweight":
            base = tl.maximum(1.0 - sq, 0.0)
            weights = base * base
        elif KERNEL == "triweight":
            base = tl.maximum(1.0 - sq, 0.0)
            weights = base * base * base
        elif KERNEL == "tricube":
            u = tl.sqrt_rn(sq)
            base = tl.maximum(1.0 - u * u * u, 0.0)
            weights = base * base * base
        elif KERNEL == "cosine":
            u = tl.sqrt_rn(sq)
            # cos(pi u / 2) as sin(pi (1 - u) / 2): exact 1 - u near the
            # edge, where the cosine of a rounded product loses its digits.
            weights = tl.where(u < 1.0, tl.sin(1.5707963267948966 * (1.0 - u)), 0.0)
        else:
            # The constant kernel: _kernel_name lets no other name through.
            weights = tl.full(sq.shape, 1.0, tl.float32)
        return weights

    @triton.jit
    def _weight_slopes(sq, row_min, KERNEL: tl.constexpr, LOG_SLOPE: tl.constexpr):
        # d K / d u^2, with the log-domain weights shifted by the row maximum
        # as in the forward pass. Where u = 0 the slope of a kernel of u
        # (infinite for the exponential and the linear) is left out: there
        # every d u^2 / d log h is 0.
        u = tl.sqrt_rn(sq)
        positive = sq > 0.0
        safe_u = tl.where(positive, u, 1.0)
        if KERNEL == "gaussian":
            # d exp(-s u^2) / d u^2 = -s K.
            weights = _shifted_weights(sq, row_min, LOG_SLOPE)
            slopes = -LOG_SLOPE * weights
        elif KERNEL == "exponential":
            # d exp(-s u) / d u^2 = -s K / (2 u).
            weights = _shifted_weights(u, row_min, LOG_SLOPE)
            slopes = tl.where(positive, -0.5 * LOG_SLOPE * weights / safe_u, 0.0)
        elif KERNEL == "epanechnikov":
            # A clamp passes the gradient at its edge, as torch.clamp does.
            slopes = tl.where(sq <= 1.0, -1.0, 0.0)
        elif KERNEL == "linear":
            slopes = tl.where(positive & (u <= 1.0), -0.5 / safe_u, 0.0)
        elif KERNEL == "biweight":
            slopes = -2.0 * tl.maximum(1.0 - sq, 0.0)
        elif KERNEL == "triweight":
            base = tl.maximum(1.0 - sq, 0.0)
            slopes = -3.0 * base * base
        elif KERNEL == "tricube":
            base = tl.maximum(1.0 - u * u * u, 0.0)
            slopes = -4.5 * u * base * base
        elif KERNEL == "cosine":
            slopes = tl.where(
                positive & (u < 1.0),
                -0.7853981633974483 * tl.sin(1.5707963267948966 * u) / safe_u,
                0.0,
            )
        else:
            slopes = tl.zeros(sq.shape, dtype=tl.float32)
        return slopes

    @triton.jit
    def _partial_sums_kernel(
        qt_ptr,
        kt_ptr,
        v_ptr,
        self_ptr,
        row_min_ptr,
        sums_ptr,
        min_sq_ptr,
        n_queries,
        n_keys,
        n_features,
        n_values,
        KERNEL: tl.constexpr,
        LOG_SLOPE: tl.constexpr,
        EXCLUDE_SELF: tl.constexpr,
        USE_DOT: tl.constexpr,
        N_VALUES: tl.constexpr,
        BLOCK_Q: tl.constexpr,
        BLOCK_K: tl.constexpr,
        BLOCK_D: tl.constexpr,
        BLOCK_V: tl.constexpr,
    ):
        offs_q = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
        q_mask = offs_q < n_queries
        offs_v = tl.arange(0, BLOCK_V)
        v_mask = offs_v < n_values
        if EXCLUDE_SELF:
            self_index = tl.load(self_ptr + offs_q, mask=q_mask, other=-1)
        row_min = tl.full((BLOCK_Q,), float("inf"), dtype=tl.float32)
        min_sq = tl.full((BLOCK_Q,), float("inf"), dtype=tl.float32)
        sums = tl.zeros((BLOCK_Q, BLOCK_V), dtype=tl.float32)
        for start in range(0, n_keys, BLOCK_K):
            offs_k = start + tl.arange(0, BLOCK_K)
            k_mask = offs_k < n_keys
            sq = _squared_distances(
                qt_ptr,
                kt_ptr,
                offs_q,
                offs_k,
                q_mask,
                k_mask,
                n_queries,
                n_keys,
                n_features,
                BLOCK_Q,
                BLOCK_K,
                BLOCK_D,
            )
            valid = k_mask[None, :] & q_mask[:, None]
            if EXCLUDE_SELF:
                # The left-out sample takes no part in its own prediction.
                valid = valid & (offs_k[None, :] != self_index[:, None])
            min_sq = tl.minimum(
                min_sq, tl.min(tl.where(valid, sq, float("inf")), axis=1)
            )
            if KERNEL == "gaussian" or KERNEL == "exponential":
                # Online softmax over the largest log-weight so far, the
                # smallest argument.
                argument = tl.where(valid, _log_arguments(sq, KERNEL), float("inf"))
                new_min = tl.minimum(row_min, tl.min(argument, axis=1))
                # A row that has met no key yet keeps a minimum of inf.
                shift = tl.where(new_min == float("inf"), 0.0, new_min)
                # The sums so far, rescaled to the new minimum; 0 * 0 at first.
                sums = sums * _shifted_weights(row_min[:, None], shift, LOG_SLOPE)
                weights = _shifted_weights(argument, shift, LOG_SLOPE)
                row_min = new_min
            else:
                weights = tl.where(valid, _compact_weights(sq, KERNEL), 0.0)
            if USE_DOT:
                block_values = tl.load(
                    v_ptr + offs_k[:, None] * n_values + offs_v[None, :],
                    mask=k_mask[:, None] & v_mask[None, :],
                    other=0.0,
                )
                sums += tl.dot(weights, block_values, input_precision="ieee")
            else:
                for column in tl.static_range(N_VALUES):
                    column_values = tl.load(
                        v_ptr + offs_k * n_values + column, mask=k_mask, other=0.0
                    )
                    column_sums = tl.sum(weights * column_values[None, :], axis=1)
                    sums += tl.where(
                        offs_v[None, :] == column, column_sums[:, None], 0.0
                    )
        if KERNEL == "gaussian" or KERNEL == "exponential":
            row_min = tl.where(row_min == float("inf"), 0.0, row_min)
        else:
            row_min = tl.zeros((BLOCK_Q,), dtype=tl.float32)
        tl.store(row_min_ptr + offs_q, row_min, mask=q_mask)
        tl.store(min_sq_ptr + offs_q, min_sq, mask=q_mask)
        tl.store(
            sums_ptr + offs_q[:, None] * n_values + offs_v[None, :],
            sums,
            mask=q_mask[:, None] & v_mask[None, :],
        )

    @triton.jit
    def _loo_gradient_kernel(
        qt_ptr,
        kt_ptr,
        v_ptr,
        weight_ptr,
        self_ptr,
        row_min_ptr,
        inverse_total_ptr,
        grad_ptr,
        grad_dot_ptr,
        partial_ptr,
        n_queries,
        n_keys,
        n_features,
        n_values,
        n_gradient,
        KERNEL: tl.constexpr,
        LOG_SLOPE: tl.constexpr,
        PER_FEATURE: tl.constexpr,
        USE_DOT: tl.constexpr,
        N_VALUES: tl.constexpr,
        BLOCK_Q: tl.constexpr,
        BLOCK_K: tl.constexpr,
        BLOCK_D: tl.constexpr,
        BLOCK_V: tl.constexpr,
        BLOCK_G: tl.constexpr,
    ):
        program = tl.program_id(0)
        offs_q = program * BLOCK_Q + tl.arange(0, BLOCK_Q)
        q_mask = offs_q < n_queries
        offs_v = tl.arange(0, BLOCK_V)
        v_mask = offs_v < n_values
        offs_g = tl.arange(0, BLOCK_G)
        first_feature = tl.program_id(1) * BLOCK_G
        self_index = tl.load(self_ptr + offs_q, mask=q_mask, other=-1)
        row_min = tl.load(row_min_ptr + offs_q, mask=q_mask, other=0.0)
        # 0 in the rows of zero total weight, whose prediction does not
        # depend on the bandwidth.
        inverse_total = tl.load(inverse_total_ptr + offs_q, mask=q_mask, other=0.0)
        grad_dot = tl.load(grad_dot_ptr + offs_q, mask=q_mask, other=0.0)
        if USE_DOT:
            grad_block = tl.load(
                grad_ptr + offs_q[:, None] * n_values + offs_v[None, :],
                mask=q_mask[:, None] & v_mask[None, :],
                other=0.0,
            )
        pair_sums = tl.zeros((BLOCK_Q, BLOCK_K), dtype=tl.float32)
        feature_sums = tl.zeros((BLOCK_Q, BLOCK_G), dtype=tl.float32)
        for start in range(0, n_keys, BLOCK_K):
            offs_k = start + tl.arange(0, BLOCK_K)
            k_mask = offs_k < n_keys
            sq = _squared_distances(
                qt_ptr,
                kt_ptr,
                offs_q,
                offs_k,
                q_mask,
                k_mask,
                n_queries,
                n_keys,
                n_features,
                BLOCK_Q,
                BLOCK_K,
                BLOCK_D,
            )
            valid = k_mask[None, :] & q_mask[:, None]
            valid = valid & (offs_k[None, :] != self_index[:, None])
            # g_i . y_j for every pair of the tile.
            if USE_DOT:
                block_values = tl.load(
                    v_ptr + offs_k[:, None] * n_values + offs_v[None, :],
                    mask=k_mask[:, None] & v_mask[None, :],
                    other=0.0,
                )
                grad_values = tl.dot(
                    grad_block, tl.trans(block_values), input_precision="ieee"
                )
            else:
                grad_values = tl.zeros((BLOCK_Q, BLOCK_K), dtype=tl.float32)
                for column in tl.static_range(N_VALUES):
                    grad_column = tl.load(
                        grad_ptr + offs_q * n_values + column, mask=q_mask, other=0.0
                    )
                    column_values = tl.load(
                        v_ptr + offs_k * n_values + column, mask=k_mask, other=0.0
                    )
                    grad_values += grad_column[:, None] * column_values[None, :]
            key_weight = tl.load(weight_ptr + offs_k, mask=k_mask, other=0.0)
            slopes = _weight_slopes(sq, row_min, KERNEL, LOG_SLOPE)
            # d loss / d u_ij^2.
            coefficients = tl.where(
                valid,
                key_weight[None, :]
                * (grad_values - grad_dot[:, None])
                * slopes
                * inverse_total[:, None],
                0.0,
            )
            if PER_FEATURE:
                for step in tl.static_range(BLOCK_G):
                    feature = first_feature + step
                    inside = feature < n_features
                    q = tl.load(
                        qt_ptr + feature * n_queries + offs_q,
                        mask=q_mask & inside,
                        other=0.0,
                    )
                    k = tl.load(
                        kt_ptr + feature * n_keys + offs_k,
                        mask=k_mask & inside,
                        other=0.0,
                    )
                    diff = q[:, None] - k[None, :]
                    feature_sum = tl.sum(coefficients * diff * diff, axis=1)
                    feature_sums += tl.where(
                        offs_g[None, :] == step, feature_sum[:, None], 0.0
                    )
            else:
                pair_sums += coefficients * sq
        if PER_FEATURE:
            tl.store(
                partial_ptr + program * n_gradient + first_feature + offs_g,
                tl.sum(feature_sums, axis=0),
                mask=first_feature + offs_g < n_gradient,
            )
        else:
            tl.store(partial_ptr + program * n_gradient, tl.sum(pair_sums))

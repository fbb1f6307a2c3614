"""Leave-one-out sums of one feature over each row's neighbours in sorted
order: the weights beyond a band of neighbours are 0 (a compact kernel's)
or below the precision of the sums they would join (the Gaussian's and the
exponential's)."""

# Authors: the sknw developers
# License: BSD 3 clause

import math

import numpy as np
import torch

from sknw._engine import named_block

# A band is used while it holds at most this fraction of the samples; wider,
# the whole rows (kept distances, one product for the sums) cost less.
_BAND_FRACTION = 0.5

# Fewer samples than this: always the whole rows.
_BAND_MIN_SAMPLES = 128

# Bits below a row's largest weight, beyond the precision's and the number
# of samples', at which a weight is left out: all of a row's left-out
# weights together are below 2^-_SPARE_BITS of its sum's rounding.
_SPARE_BITS = 8


class LineBand:
    """The samples of one feature, sorted and padded, for sums over each
    row's neighbours within a band of ``K`` places on either side.

    Under a compact kernel the samples within one width of x_i are all that
    weigh (with those as near as its nearest, whose values a row that no
    sample reaches takes). Under the Gaussian, row i's weights, divided by
    its largest (its nearest other sample's, at squared distance m_i), are
    exp(-(d^2 - m_i) / (2 h^2)); those below 2^-L, times frequency weights
    at most r times the nearest's, take part in sums of at least 1 by less
    than n r 2^-L, so the samples within sqrt(m_i + 2 h^2 L ln 2) of x_i
    give the sums to rounding when
    L = (the precision's bits) + log2(n) + log2(r) + _SPARE_BITS; under the
    exponential kernel, exp(-(d - sqrt(m_i)) / h), those within
    sqrt(m_i) + h L ln 2. In sorted order they lie within K places on
    either side (at least 1, so that the nearest sample is in the band): the
    band holds 2K + 1 columns, the row's own pair at column K, and padding
    past either end, farther than any row's nearest sample, whose columns are 0.

    Parameters
    ----------
    x : ndarray of shape (n_samples,)
        The feature, in the units of width 1.
    weighted : tensor of shape (n_samples, n_columns)
        The columns each weight multiplies (c [y, 1]).
    kernel : {"gaussian", "exponential", "compact"}
        Which reach the band takes.
    """

    def __init__(self, x, weighted, kernel="gaussian"):
        self.kernel = kernel
        x = np.asarray(x, dtype=np.float64)
        self.n_samples = n_samples = x.size
        order = np.argsort(x, kind="stable")
        self.sorted = x[order]
        # Each sample's place in sorted order.
        self.place = np.empty(n_samples, dtype=np.int64)
        self.place[order] = np.arange(n_samples)
        gaps = np.diff(self.sorted)
        nearest = np.minimum(
            np.concatenate([[np.inf], gaps]), np.concatenate([gaps, [np.inf]])
        )
        self.nearest_sq = np.where(np.isfinite(nearest), nearest, 0.0) ** 2
        device = weighted.device
        self.dtype = weighted.dtype
        self.device = device
        # n places of padding on either side, so that any K < n_samples
        # fits, and multiplies columns of 0: twice the widest gap between
        # neighbours beyond either end, farther from every row than its
        # nearest sample (never a row's nearest), and otherwise as near as
        # that allows, so that the kernels' products of its u^2 stay about
        # as finite as those of the samples' own pairs.
        widest = float(gaps.max(initial=0.0))
        margin = 2 * widest if widest > 0 else 1.0
        full = torch.full((n_samples,), 1.0, dtype=torch.float64, device=device)
        self.x_padded = torch.cat(
            [
                full * (self.sorted[0] - margin),
                torch.as_tensor(self.sorted, device=device),
                full * (self.sorted[-1] + margin),
            ]
        )
        order_t = torch.as_tensor(order, device=device)
        zeros = weighted.new_zeros((weighted.shape[1], n_samples))
        # (n_columns, 3 n_samples): each column's values in sorted order.
        self.columns_padded = torch.cat(
            [zeros, weighted.index_select(0, order_t).T, zeros], dim=1
        ).contiguous()
        precision = -math.log2(torch.finfo(self.dtype).eps) + 1
        # Frequency weights far apart make a left-out sample's share of a
        # row's sums as much larger: their ratio counts too.
        sample_weight = weighted[:, -1].double()
        spread = math.log2(float(sample_weight.max() / sample_weight.min()))
        bits = precision + math.log2(max(n_samples, 2)) + spread + _SPARE_BITS
        # L ln 2: the log-weight below the row's largest at which a weight
        # is left out.
        self.reach = bits * math.log(2)

    def half_widths(self, rows, bandwidths):
        """The K each width needs over ``rows``: an int, or None where the
        band would hold more than _BAND_FRACTION of the samples (the whole
        rows are cheaper).

        Parameters
        ----------
        rows : ndarray of int
        bandwidths : ndarray of shape (n_widths,)

        Returns
        -------
        list of int or None
        """
        if self.n_samples < _BAND_MIN_SAMPLES or len(rows) == 0:
            return [None] * len(bandwidths)
        place = self.place[rows]
        centre = self.sorted[place]
        bandwidths = np.asarray(bandwidths, dtype=np.float64)[:, None]
        nearest_sq = self.nearest_sq[place][None, :]
        if self.kernel == "gaussian":
            radius = np.sqrt(nearest_sq + 2 * self.reach * bandwidths**2)
        elif self.kernel == "exponential":
            radius = np.sqrt(nearest_sq) + self.reach * bandwidths
        else:
            # And every sample as near as the nearest: a row that no sample
            # reaches predicts their average.
            radius = np.maximum(bandwidths, np.sqrt(nearest_sq))
        # A margin for the rounding of the radius and of the distances.
        radius = radius * (1 + 1e-9) + 1e-300
        left = np.searchsorted(self.sorted, centre - radius, side="left")
        right = np.searchsorted(self.sorted, centre + radius, side="right") - 1
        needed = np.maximum(place - left, right - place).max(axis=1)
        largest = int(_BAND_FRACTION * self.n_samples) // 2
        return [max(int(k), 1) if k <= largest else None for k in needed]

    def squared(self, rows_t, half_width, own_pair, blocks):
        """Squared distances of ``rows_t`` to their band at width 1, in
        the dtype of the columns, differences taken in float64;
        ``own_pair`` at column K.

        ``blocks``: the calling thread's reused blocks (a dict), where the
        band's blocks are kept from chunk to chunk (fresh ones of this size
        cost more in page faults than their computation).

        Returns
        -------
        sq : tensor of shape (n_rows, 2 K + 1)
        band : Band
        """
        n_rows, width = len(rows_t), 2 * half_width + 1
        shape = (n_rows, width)
        start = torch.as_tensor(self.place, device=self.device).index_select(
            0, rows_t
        ) + (self.n_samples - half_width)
        windows = named_block(blocks, "band x", shape, torch.float64, self.device)
        torch.index_select(self.x_padded.unfold(0, width, 1), 0, start, out=windows)
        centre = self.x_padded.index_select(0, start + half_width)
        windows.sub_(centre[:, None]).square_()
        sq = windows
        if self.dtype != torch.float64:
            sq = named_block(blocks, "band sq", shape, self.dtype, self.device)
            sq.copy_(windows)
        sq[:, half_width] = own_pair
        # Column by column: index_select on a one-dimensional unfold reads
        # only the windows (on a two-dimensional one it copies them all).
        columns = []
        for index, column in enumerate(self.columns_padded):
            out = named_block(
                blocks, f"band column {index}", shape, self.dtype, self.device
            )
            torch.index_select(column.unfold(0, width, 1), 0, start, out=out)
            columns.append(out)
        return sq, Band(half_width, columns, blocks)


class Band:
    """The band of a chunk of rows: the columns each weight multiplies (a
    list of blocks of shape (n_rows, 2 K + 1)), each row's own pair at
    column K; ``blocks``, the reused blocks for the products (see
    :func:`~sknw._engine.named_block`)."""

    def __init__(self, half_width, columns, blocks):
        self.half_width = half_width
        self.columns = columns
        self.blocks = blocks

    @property
    def width(self):
        return 2 * self.half_width + 1

    def narrowed(self, half_width):
        """The band of fewer places on either side, as a view."""
        offset = self.half_width - half_width
        window = slice(offset, offset + 2 * half_width + 1)
        return Band(
            half_width, [column[:, window] for column in self.columns], self.blocks
        )

    def rows(self, mask):
        """The band of the rows where ``mask`` holds."""
        return Band(
            self.half_width, [column[mask] for column in self.columns], self.blocks
        )

    def sums(self, block):
        """``block`` (..., n_rows, 2 K + 1) times the band's columns summed
        over the band: (..., n_rows, n_columns)."""
        product = named_block(
            self.blocks, "band product", block.shape, block.dtype, block.device
        )
        return torch.stack(
            [
                torch.mul(block, column, out=product).sum(dim=-1)
                for column in self.columns
            ],
            dim=-1,
        )

"""Equal-tailed percentile intervals over bootstrap draws, shared by fits, plans and the capacity gap."""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike


def central_interval(draws: ArrayLike, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The central ``level`` interval over axis 0 (linear interpolation), ignoring NaN draws; NaN where all are."""
    tail = (1.0 - level) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: a quantity no resample has
        lo, hi = np.nanquantile(np.asarray(draws, dtype=float), [tail, 1.0 - tail], axis=0)
    return lo, hi


def interval_around(estimate: ArrayLike, draws: ArrayLike, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The central interval of ``draws`` and whether it holds its own ``estimate``.

    Returns ``lo, hi, holds``. Where the interval misses the estimate (a degenerate resample
    distribution: most resamples fell in another basin or on a bound) or no draw is finite, ``lo``
    and ``hi`` are NaN and ``holds`` is False: callers say so instead of printing an interval that
    contradicts its estimate. A tolerance of 1e-9 relative covers round-off at the edges.
    """
    est = np.asarray(estimate, dtype=float)
    lo, hi = central_interval(draws, level)
    slack = 1e-9 * np.maximum(np.abs(est), 1e-300)
    holds = np.isfinite(lo) & np.isfinite(hi) & (lo - slack <= est) & (est <= hi + slack)
    return np.where(holds, lo, np.nan), np.where(holds, hi, np.nan), holds


NO_INTERVAL = "no interval: the bootstrap distribution does not contain the estimate (degenerate resamples)"

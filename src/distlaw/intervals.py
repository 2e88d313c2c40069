"""Equal-tailed percentile intervals over bootstrap draws, shared by fits, plans, the capacity gap and density.

An interval is only shown when it contains its own estimate (:func:`interval_around`); otherwise
JSON gets null bounds with :func:`interval_notes`'s reason and tables its :func:`short_note`.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike

from distlaw.errors import DistlawError

NO_INTERVAL = "no interval: the bootstrap distribution does not contain the estimate (degenerate resamples)"
NO_INTERVAL_SHORT = "none (degenerate)"
NO_DRAWS = "no interval: no resample could be fitted (too few runs to resample)"
NO_DRAWS_SHORT = "none (no resamples)"
SHORT_NOTES = {NO_INTERVAL: NO_INTERVAL_SHORT, NO_DRAWS: NO_DRAWS_SHORT}


def check_level(level: float) -> None:
    """An interval level strictly between 0 and 1, else a DistlawError (the CLI's --level, default 0.95)."""
    if not 0 < level < 1:
        raise DistlawError(f"--level must be between 0 and 1, got {level:g}")


def central_interval(draws: ArrayLike, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The central ``level`` interval over axis 0 (linear interpolation), ignoring NaN draws; NaN where all are.

    Next to an infinite draw (a limit, e.g. an unbounded effective size) linear interpolation is
    undefined; there the bound is the draw itself (the inverted-CDF quantile)."""
    tail = (1.0 - level) / 2.0
    d = np.asarray(draws, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column, or inf - inf next to a limit
        bounds = np.nanquantile(d, [tail, 1.0 - tail], axis=0)
        undefined = np.isnan(bounds) & ~np.isnan(d).all(axis=0)
        if undefined.any():
            bounds = np.where(undefined, np.nanquantile(d, [tail, 1.0 - tail], axis=0, method="inverted_cdf"), bounds)
    return bounds[0], bounds[1]


def interval_around(estimate: ArrayLike, draws: ArrayLike, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The central interval of ``draws`` and whether it holds its own ``estimate``.

    Returns ``lo, hi, holds``. Where the interval misses the estimate (a degenerate resample
    distribution: most resamples fell in another basin or on a bound), the estimate is NaN, or no
    draw is usable, ``lo`` and ``hi`` are NaN and ``holds`` is False: callers say so instead of
    printing an interval that contradicts its estimate. Bounds may be infinite (draws that reach a
    limit, e.g. an unbounded effective size): [lo, inf] holds every estimate >= lo, inf included.
    A tolerance of 1e-9 relative covers round-off at the edges.
    """
    est = np.asarray(estimate, dtype=float)
    lo, hi = central_interval(draws, level)
    with np.errstate(invalid="ignore"):
        slack = np.where(np.isfinite(est), 1e-9 * np.maximum(np.abs(est), 1e-300), 0.0)
        holds = ~np.isnan(lo) & ~np.isnan(hi) & ~np.isnan(est) & (lo <= est + slack) & (est - slack <= hi)
    return np.where(holds, lo, np.nan), np.where(holds, hi, np.nan), holds


def interval_notes(draws: ArrayLike, holds: ArrayLike) -> list[str | None]:
    """Per quantity (axis 1 of ``draws``, or the one quantity of a 1-D ``draws``): None where the
    interval holds, else why there is none: no usable draw (:data:`NO_DRAWS`) or a degenerate
    distribution (:data:`NO_INTERVAL`). JSON carries these beside null bounds."""
    d = np.asarray(draws, dtype=float)
    ok = np.atleast_1d(np.asarray(holds, dtype=bool))
    usable = np.broadcast_to(~np.isnan(d).all(axis=0) if d.ndim > 1 else not np.isnan(d).all(), ok.shape)
    return [None if h else (NO_INTERVAL if u else NO_DRAWS) for h, u in zip(ok, usable)]


def short_note(note: str | None) -> str | None:
    """The table form of an :func:`interval_notes` reason (None stays None)."""
    return SHORT_NOTES.get(note, note) if note is not None else None

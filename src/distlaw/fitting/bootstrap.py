"""Bootstrap over runs, fitted as one batch.

A resample of the runs (drawn with replacement) is the same data with integer weights: run i
counted ``w_i`` times, sum(w) = n. So K resamples are a ``(K, n)`` weight matrix on the same data,
and the fitter minimizes all K weighted objectives at once, each warm-started from the best fit
on the full data (one start per resample, no pruning). Coefficient samples give percentile
intervals, NaN where an interval does not contain its own estimate (a degenerate resample
distribution, see :func:`distlaw.intervals.interval_around`); a coefficient whose samples do not
move at all is flagged as not identifiable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from distlaw.intervals import central_interval, interval_around, interval_notes


def resample_weights(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``(k, n)`` integer weights: row j counts how often each run appears in resample j."""
    draws = rng.integers(0, n, size=(k, n))
    weights = np.zeros((k, n), dtype=float)
    np.add.at(weights, (np.repeat(np.arange(k), n), draws.ravel()), 1.0)
    return weights


def percentile_intervals(
    samples: np.ndarray, names: Sequence[str], level: float, estimate: Sequence[float] | None = None
) -> dict[str, tuple[float, float]]:
    """Equal-tailed percentile intervals of each column of ``samples`` (natural space); with the
    point ``estimate`` per column, (NaN, NaN) where the interval does not contain it."""
    if estimate is None:
        lo, hi = central_interval(samples, level)
    else:
        lo, hi, _ = interval_around(estimate, samples, level)
    return {name: (float(a), float(b)) for name, a, b in zip(names, lo, hi)}


def interval_reasons(
    samples: np.ndarray, names: Sequence[str], level: float, estimate: Sequence[float]
) -> dict[str, str]:
    """Why a column has no interval (for JSON beside null bounds): only the columns without one."""
    _, _, holds = interval_around(estimate, samples, level)
    notes = interval_notes(samples, holds)
    return {name: note for name, note in zip(names, notes) if note is not None}


def collapsed(samples_fit: np.ndarray, estimate_fit: np.ndarray, rtol: float = 1e-7) -> np.ndarray:
    """Columns whose bootstrap samples (fit space) all equal the estimate to within ``rtol``."""
    spread = np.nanmax(samples_fit, axis=0) - np.nanmin(samples_fit, axis=0)
    return spread <= rtol * np.maximum(1.0, np.abs(estimate_fit))

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

"""Vectorized one- and two-dimensional searches, one independent problem per row.

The planning objectives are not convex (the capacity gap of Busbridge et al. 2025, arXiv 2502.08606,
Eq. 8 puts a sharp bend in the student loss), so each search starts from a dense grid over the
whole box, which finds the right basin, then repeatedly zooms in around the best point.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Objective = Callable[..., np.ndarray]


def grid_minimize(
    objective: Objective,
    lo: np.ndarray,
    hi: np.ndarray,
    points: int = 64,
    zoom_points: int = 9,
    levels: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimize ``objective`` over the box [lo, hi] (arrays (P, k)) for each of P problems.

    ``objective(x_1, ..., x_k)`` gets arrays broadcastable to (P, n, ..., n) and returns values
    of that shape; non-finite values mark infeasible points. After the dense grid, a window of
    +-2 grid steps (``zoom_points`` per side) is searched around the best point: if the best lies
    on the window's edge the window moves there (walking along flat, curved valleys), otherwise
    the step shrinks by (zoom_points - 1) / 4; ``levels`` shrinks in all.
    Returns the minimizer (P, k) and the minimum (P,), ``inf`` where nothing was feasible.
    """
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    n_problems, k = lo.shape
    x, value, step = _grid_pass(objective, lo, hi, points)
    shrinks = np.zeros(n_problems, dtype=int)
    for _ in range(4 * levels):
        active = shrinks < levels
        if not active.any():
            break
        w_lo, w_hi = np.maximum(lo, x - 2 * step), np.minimum(hi, x + 2 * step)
        new_x, new_value, _ = _grid_pass(objective, w_lo, w_hi, zoom_points)
        better = active & (new_value < value)
        x[better], value[better] = new_x[better], new_value[better]
        tol = 1e-12 * (hi - lo)
        on_edge = (((x - w_lo) <= tol) & (w_lo > lo)) | (((w_hi - x) <= tol) & (w_hi < hi))
        shrink = active & ~(better & on_edge.any(axis=1))
        step[shrink] *= 4.0 / (zoom_points - 1)
        shrinks += shrink
    return x, value


def _grid_pass(objective: Objective, lo: np.ndarray, hi: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The best point of an n^k grid over each box: (x (P, k), value (P,), grid step (P, k))."""
    n_problems, k = lo.shape
    rows = np.arange(n_problems)
    t = np.linspace(0.0, 1.0, n)
    axes = [lo[:, j, None] + (hi - lo)[:, j, None] * t for j in range(k)]
    grids = [a.reshape((n_problems,) + (1,) * j + (n,) + (1,) * (k - 1 - j)) for j, a in enumerate(axes)]
    values = np.broadcast_to(objective(*grids), (n_problems,) + (n,) * k).reshape(n_problems, -1)
    values = np.where(np.isfinite(values), values, np.inf)
    flat = values.argmin(axis=1)
    index = np.unravel_index(flat, (n,) * k)
    x = np.stack([axes[j][rows, index[j]] for j in range(k)], axis=1)
    return x, values[rows, flat], (hi - lo) / (n - 1)


def bisect(fn: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray, iters: int = 40) -> np.ndarray:
    """A root of ``fn`` in each bracket [lo, hi] (fn(lo) < 0 <= fn(hi) elementwise), by bisection."""
    lo, hi = np.array(lo, dtype=float), np.array(hi, dtype=float)
    for _ in range(iters):
        mid = (lo + hi) / 2
        below = fn(mid) < 0
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return (lo + hi) / 2

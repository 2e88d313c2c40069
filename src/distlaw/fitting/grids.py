"""Multi-start grids (LAWS.md section 3) and the start matrix the optimizer begins from.

Named grids, all in fit space (log values for log parameters):

- ``paper``: Busbridge et al. 2025 (arXiv 2502.08606) App. F, carried by each model's parameters.
  Supervised: log E in {-1, -0.5, ..., 1.5}, log A, log B in {0, 5, ..., 20}, alpha, beta, gamma in
  {0, 0.5, 1, 1.5} (9,600 starts; 2,400 with gamma fixed). Distillation: log A', log B' in
  {0, 5, ..., 20}, alpha', beta', gamma' in {0, 0.5, 1}, c0, c1, f1 in {0, 0.5, 1, 1.5}, log d1 in
  {-1, -0.5, ..., 1} (216,000 starts).
- ``epoch``: Besiroglu et al. 2024 (arXiv 2404.10102) for the supervised law: log A, log B in
  {0, 5, ..., 25}, log E in {-1, -0.5, ..., 1}, alpha, beta in {0, 0.5, ..., 2} (4,500 starts with
  gamma fixed; gamma, if free, keeps the paper's values). Other laws fall back to ``paper``.
- ``coarse``: a few hundred starts per law, for quick looks and tests.

Fixed parameters drop out of the product. Grid points outside a parameter's bounds are projected
onto them (clamped); this is how degenerate points are handled, e.g. the distillation grid's
f1 = 0 (Eq. 8 divides by f1) starts at the bound f1 = 1e-3 instead. Exact duplicates created by the
projection are removed.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Union

import numpy as np

from distlaw.errors import DistlawError
from distlaw.fitting.models import LawModel

GridSpec = Union[str, Mapping[str, Sequence[float]], np.ndarray, None]

GRID_NAMES = ("paper", "epoch", "coarse")


def _arange(lo: float, hi: float, step: float) -> tuple[float, ...]:
    return tuple(float(v) for v in np.round(np.arange(lo, hi + step / 2, step), 10))


NAMED: dict[str, dict[str, dict[str, tuple[float, ...]]]] = {
    "epoch": {
        "supervised": {
            "E": _arange(-1.0, 1.0, 0.5),
            "A": _arange(0.0, 25.0, 5.0),
            "B": _arange(0.0, 25.0, 5.0),
            "alpha": _arange(0.0, 2.0, 0.5),
            "beta": _arange(0.0, 2.0, 0.5),
        },
    },
    "coarse": {
        "supervised": {
            "E": (0.0, 0.5, 1.0),
            "A": (0.0, 10.0, 20.0),
            "B": (0.0, 10.0, 20.0),
            "alpha": (0.5, 1.0),
            "beta": (0.5, 1.0),
            "gamma": (0.5, 1.0),
        },
        "distillation": {
            "A": (0.0, 10.0, 20.0),
            "B": (0.0, 10.0, 20.0),
            "alpha": (0.5,),
            "beta": (0.5, 1.0),
            "gamma": (0.5, 1.0),
            "c0": (0.0, 1.0),
            "c1": (0.0, 1.0),
            "f1": (0.5, 1.0),
            "d1": (-0.5, 0.0, 0.5),
        },
    },
}


def grid_values(model: LawModel, grid: str | Mapping[str, Sequence[float]] | None = None) -> dict[str, tuple[float, ...]]:
    """Per-parameter start values (fit space) for ``model``: a named grid, or a mapping that
    overrides some parameters' values (keys: names like ``"E"`` or fit keys like ``"log_E"``)."""
    values = {p.name: tuple(float(v) for v in p.grid) for p in model.parameters}
    if grid is None or grid == "paper":
        return values
    if isinstance(grid, str):
        if grid not in GRID_NAMES:
            raise DistlawError(f"unknown grid '{grid}' (grids: {', '.join(GRID_NAMES)})")
        values.update(NAMED.get(grid, {}).get(model.name, {}))
        return values
    for key, vals in grid.items():
        name = model.parameter(key).name
        vals = tuple(float(v) for v in np.atleast_1d(np.asarray(vals, dtype=float)))
        if not vals or not all(np.isfinite(vals)):
            raise DistlawError(f"grid for {name} must be a non-empty list of finite numbers")
        values[name] = vals
    return values


def make_starts(model: LawModel, free: Sequence[str], grid: GridSpec = None) -> np.ndarray:
    """The ``(starts, len(free))`` matrix of fit-space starting points, projected onto the bounds.

    ``grid`` is a grid name, a per-parameter mapping (see :func:`grid_values`) or an explicit
    array of starts with one column per free parameter.
    """
    params = [model.parameter(name) for name in free]
    if isinstance(grid, np.ndarray) or (grid is not None and not isinstance(grid, (str, Mapping))):
        starts = np.array(grid, dtype=float, ndmin=2)
        if starts.shape[1] != len(params) or not np.isfinite(starts).all():
            raise DistlawError(f"explicit starts must be a finite (starts, {len(params)}) array")
    else:
        values = grid_values(model, grid)  # type: ignore[arg-type]
        axes = [values[p.name] for p in params]
        starts = np.array(list(itertools.product(*axes)), dtype=float).reshape(-1, len(params))
    lower = np.array([p.bounds[0] for p in params])
    upper = np.array([p.bounds[1] for p in params])
    starts = np.clip(starts, lower, upper)
    _, first = np.unique(starts, axis=0, return_index=True)
    return starts[np.sort(first)]

"""Many independent fits at once: P problems (same law, same number of runs, their own data, observations
and weights), one start each, minimized as one batch by the multi-start L-BFGS (rows = problems).

The bootstrap (one data set, K weightings) is one use; pilot design by simulation (P = designs x
replicates of planted noisy losses, designs padded to a common run count with zero weights) is another
(:mod:`distlaw.design.simulate`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from distlaw.fitting.fit import DEFAULT_DELTA
from distlaw.fitting.models import LawModel
from distlaw.fitting.optimizer import DTYPE, HuberObjective, LBFGSOptions, compute_threads, minimize_rows


def fit_problems(
    model: LawModel,
    inputs: Mapping[str, np.ndarray],
    observed: np.ndarray,
    start: Mapping[str, float] | np.ndarray,
    *,
    weights: np.ndarray | None = None,
    fixed: Mapping[str, float] | None = None,
    delta: float = DEFAULT_DELTA,
    options: LBFGSOptions | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Fit P problems: ``inputs`` columns and ``observed`` of shape (P, n), optional (P, n) ``weights``
    (0 drops a run: padding), each problem started from ``start`` (natural values, one set for all or a
    (P, parameters) array). Returns (P, parameters) natural-space coefficients in ``model.parameters``
    order (fixed ones included); rows whose fit failed are NaN."""
    import torch

    fixed = dict(fixed or {})
    free = [p for p in model.parameters if p.name not in fixed]
    observed = np.asarray(observed, dtype=float)
    n_problems = observed.shape[0]
    prepared = model.prepare({k: np.asarray(inputs[k], dtype=float) for k in model.inputs})
    data = {k: torch.as_tensor(np.asarray(v, dtype=float), dtype=DTYPE) for k, v in prepared.items()}
    target = torch.as_tensor(np.log(observed) if model.log_target else observed, dtype=DTYPE)
    w = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=float), dtype=DTYPE)
    fixed_fit = {model.parameter(k).key: model.parameter(k).to_fit(v) for k, v in fixed.items()}
    if isinstance(start, Mapping):
        x0 = np.tile([p.to_fit(start[p.name]) for p in free], (n_problems, 1))
    else:
        values = np.asarray(start, dtype=float)[:, [model.names.index(p.name) for p in free]]
        x0 = np.where([p.log for p in free], np.log(np.abs(values)), values)
    lower = torch.tensor([p.bounds[0] for p in free], dtype=DTYPE)
    upper = torch.tensor([p.bounds[1] for p in free], dtype=DTYPE)
    x0 = np.clip(x0, lower.numpy(), upper.numpy())
    objective = HuberObjective(model, data, target, free, fixed_fit, weights=w, delta=delta)
    with compute_threads(threads) as pool:
        objective.pool = pool
        x = minimize_rows(objective, torch.as_tensor(x0, dtype=DTYPE), lower, upper, options or LBFGSOptions())
    out = model.natural_rows(x, [p.name for p in free], fixed)
    out[np.isnan(x).any(1)] = np.nan
    return out

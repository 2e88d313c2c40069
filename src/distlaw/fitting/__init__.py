"""Batched multi-start fitting of scaling laws (Busbridge et al. 2025, arXiv 2502.08606, App. F).

The objective is Besiroglu et al. 2024's (arXiv 2404.10102) and Busbridge's: the sum over runs of
Huber_delta(log Lhat - log L_observed), delta = 1e-4 by default (1e-3 for Chinchilla-style fits).
(Busbridge Eqs. 44, 48, 49 print "- L" instead of "- log L" and drop the primes: typos.)
Every start of the grid is minimized at once, as rows of one torch float64 tensor, by a batched
box-projected L-BFGS with autograd gradients (:mod:`distlaw.fitting.optimizer`); the best
objective wins.

Fitting a law
-------------
::

    from distlaw.fitting import SUPERVISED, fit

    result = fit(SUPERVISED, {"N": n, "D": d, "loss": loss}, fixed={"gamma": 1.0}, delta=1e-3, grid="epoch")
    result.coefficients      # {"E": ..., "A": ..., "B": ..., "alpha": ..., "beta": ..., "gamma": 1.0}
    result.objective, result.metrics, result.warnings

    fit(..., bootstrap=1000)  # + result.intervals (95 %) and result.bootstrap (samples)
    fit(..., holdout={"N": ..., "D": ..., "loss": ...})  # + result.metrics["holdout"]

``grid`` is a name (``paper``, ``epoch``, ``coarse``; see :mod:`distlaw.fitting.grids`), a mapping
``{"E": [...], "alpha": [...]}`` overriding some parameters' start values (fit space), or an
explicit ``(starts, free parameters)`` array. :func:`fit_runs` fits both laws to a runs table
(``distlaw fit`` is a thin layer over it).

Defining a new law model
------------------------
A law is a :class:`LawModel`: parameters, data columns and a torch prediction in log space::

    import numpy as np, torch
    from distlaw.fitting import LawModel, Parameter, fit

    def predict(p, x):  # p: {key: (starts, 1) tensor}; x: {prepared column: (1, runs) tensor}
        # log L = log(a N^-alpha + b D^-beta), written with log-sum-exp so nothing overflows
        return torch.logaddexp(p["log_a"] - p["alpha"] * x["log_N"], p["log_b"] - p["beta"] * x["log_D"])

    LOSS = LawModel(
        name="densing-loss",
        parameters=(
            Parameter("a", log=True, grid=(0.0, 5.0, 10.0), bounds=(-10.0, 50.0)),  # fitted as log a
            Parameter("alpha", grid=(0.1, 0.5), bounds=(0.0, 5.0)),
            Parameter("b", log=True, grid=(0.0, 5.0, 10.0), bounds=(-10.0, 50.0)),
            Parameter("beta", grid=(0.1, 0.5), bounds=(0.0, 5.0)),
        ),
        inputs=("N", "D"),
        prepare=lambda d: {"log_N": np.log(d["N"]), "log_D": np.log(d["D"])},  # once, in NumPy
        log_predict=predict,
    )
    result = fit(LOSS, {"N": n, "D": d, "loss": loss})

Rules: ``log_predict`` must be pure torch and broadcast ``(starts, 1)`` parameters against
``(1, runs)`` data (it is also called with ``(starts, runs)`` data during the bootstrap); fixed
parameters arrive as 0-d tensors. Grid values and bounds are in fit space (log values for
``log=True``). Set ``target="S"`` to fit another column, and ``log_target=False`` to compare
predictions with the observations themselves instead of their logs (e.g. a sigmoid over a
benchmark score that can be 0); ``positive`` lists the columns that must be positive.

Degenerate starts
-----------------
Grid points outside a parameter's bounds are projected onto them before optimizing. The
distillation grid's f1 = 0 (Eq. 8 has 1/f1) thus starts at f1 = 1e-3 (``models.F1_MIN``), where
c1 f1 softplus(x / f1) differs from its f1 -> 0 limit c1 max(x, 0) by at most c1 1e-3 log 2;
log-parameters never reach 0. Projection can make grid points coincide; duplicates are removed.
A start whose objective or gradient is not finite is dropped (status ``non-finite start``); a trial
step that produces a non-finite objective is rejected by the line search like any step that does
not decrease the objective enough.

Speed
-----
- All starts in one batch, evaluated in cache-sized chunks of 2**16 (start, run) pairs on a pool
  of worker threads (one per core; torch kernels single-threaded, see
  :func:`optimizer.compute_threads`). Memory stays bounded: 216,000 starts x 700 runs need about
  0.7 GB of L-BFGS history (20 pairs per start) plus ~16 MB of temporaries per worker.
- Successive halving (:class:`Schedule`): 8 iterations on every start, then only the best 1/8
  continue for twice as many iterations, and so on down to 96 starts that run to convergence;
  starts that reached the same point are merged at each cut. In the final stage a start that,
  even at 10x its current rate of decrease, could not reach the best objective within twice the
  iterations the stage has run so far is stopped ("outpaced"). ``schedule=FULL`` runs every start to convergence.
  Checks against FULL (tests/test_fitting*.py, benchmarks/fit_speed.md): on Epoch's Chinchilla grid
  the same optimum to round-off; on the distillation law, where Huber with delta = 1e-4 is nearly
  L1 and a flat valley holds many local minima within ~0.5 % of each other, the best of them or
  one within 0.4 % of its objective (same predictions to ~1e-4).
- Backtracking tries a ladder of step sizes in one batched evaluation when few starts are pending.
- Bootstrap resamples are integer weights on the same data, fitted as one batch warm-started
  from the best fit (:mod:`distlaw.fitting.bootstrap`).
"""

from distlaw.fitting.bootstrap import percentile_intervals, resample_weights
from distlaw.fitting.fit import (
    CHINCHILLA_DELTA,
    DEFAULT_DELTA,
    FitResult,
    RunsFit,
    fit,
    fit_runs,
    resolve_fixed,
)
from distlaw.fitting.grids import GRID_NAMES, grid_values, make_starts
from distlaw.fitting.metrics import prediction_metrics
from distlaw.fitting.models import DISTILLATION, MODELS, SUPERVISED, LawModel, Parameter
from distlaw.fitting.optimizer import FULL, HuberObjective, LBFGSOptions, Schedule, minimize_multistart
from distlaw.fitting.synthetic import synthetic_runs

__all__ = [
    "CHINCHILLA_DELTA",
    "DEFAULT_DELTA",
    "DISTILLATION",
    "FULL",
    "GRID_NAMES",
    "MODELS",
    "SUPERVISED",
    "FitResult",
    "HuberObjective",
    "LBFGSOptions",
    "LawModel",
    "Parameter",
    "RunsFit",
    "Schedule",
    "fit",
    "fit_runs",
    "grid_values",
    "make_starts",
    "minimize_multistart",
    "percentile_intervals",
    "prediction_metrics",
    "resample_weights",
    "resolve_fixed",
    "synthetic_runs",
]

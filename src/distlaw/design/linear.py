"""The linearised fit (Gauss-Newton, as in classical optimal design): how much one run tells about a target.

Both laws are fitted on log losses (Busbridge App. F), so a run's observation is y = log L + noise and,
near the prior theta = (supervised fit-space coefficients, distillation fit-space coefficients), its
sensitivity is the Jacobian row dy/dtheta. A distilled run depends on the supervised coefficients too,
through Ltilde_S (Eq. 8). The information of a pilot is I = sum_i J_i^T J_i / noise^2 and the variance of
the target's log prediction is g^T I^-1 g, g = d log L_target / dtheta (c-optimality; Elfving 1952). This
screens designs fast; :mod:`distlaw.design.simulate` scores the short list by refitting.
"""

from __future__ import annotations

import numpy as np

from distlaw.design.pilot import Pilot, Target
from distlaw.fitting.models import DISTILLATION, SUPERVISED
from distlaw.laws import Coefficients, supervised_loss

N_SUP, N_DIST = len(SUPERVISED.parameters), len(DISTILLATION.parameters)
N_THETA = N_SUP + N_DIST


def theta(coefficients: Coefficients) -> np.ndarray:
    """Fit-space coefficients (supervised, then distillation) in the fitter's parameter order."""
    sup, dist = coefficients.require("supervised").as_dict(), coefficients.require("distillation").as_dict()
    return np.array([p.to_fit(sup[p.name]) for p in SUPERVISED.parameters] + [p.to_fit(dist[p.name]) for p in DISTILLATION.parameters])


def _log_losses(th, n, d, lt=None):
    """log L of supervised runs (``lt`` None) or of distilled runs from teachers of loss ``lt`` (torch)."""
    import torch

    sup = {p.key: th[j] for j, p in enumerate(SUPERVISED.parameters)}
    x = {"log_N": torch.log(torch.tensor(np.asarray(n, dtype=float))), "log_D": torch.log(torch.tensor(np.asarray(d, dtype=float)))}
    log_ltilde = SUPERVISED.log_predict(sup, x)
    if lt is None:
        return log_ltilde
    dist = {p.key: th[N_SUP + j] for j, p in enumerate(DISTILLATION.parameters)}
    return DISTILLATION.log_predict(dist, {**x, "log_LT": torch.log(torch.tensor(np.asarray(lt, dtype=float))), "log_Ltilde": log_ltilde})


def jacobian(coefficients: Coefficients, params: np.ndarray, tokens: np.ndarray, teacher_loss: np.ndarray | None = None) -> np.ndarray:
    """(runs, N_THETA) d log L / d theta at the prior: supervised runs, or distilled runs (``teacher_loss``).
    The teacher's loss is data (measured before its students train), not a function of theta."""
    import torch

    if np.size(params) == 0:
        return np.zeros((0, N_THETA))
    th = torch.tensor(theta(coefficients), dtype=torch.float64)
    f = lambda t: _log_losses(t, np.atleast_1d(params), np.atleast_1d(tokens), None if teacher_loss is None else np.atleast_1d(teacher_loss))  # noqa: E731
    return torch.autograd.functional.jacobian(f, th, vectorize=True).numpy()


def target_variance(information: np.ndarray, gradient: np.ndarray) -> float:
    """g^T I^-1 g; infinite when the pilot leaves the target's direction unidentified."""
    solution, *_ = np.linalg.lstsq(information, gradient, rcond=None)
    residual = information @ solution - gradient
    if np.linalg.norm(residual) > 1e-6 * max(np.linalg.norm(gradient), 1e-300):
        return float("inf")
    return float(gradient @ solution)




def pilot_variance(coefficients: Coefficients, pilot: Pilot, target: Target) -> float:
    """The target's linearised log-loss variance from ``pilot``'s runs at unit noise (each student's teacher
    loss from Eq. 1 at the prior); infinite when the pilot cannot identify it (too few runs of a law)."""
    lt = supervised_loss(pilot.sup_params, pilot.sup_tokens, coefficients.require("supervised"))
    rows = np.vstack([jacobian(coefficients, pilot.sup_params, pilot.sup_tokens),
                      jacobian(coefficients, pilot.dist_params, pilot.dist_tokens, lt[pilot.dist_teacher])])
    g = jacobian(coefficients, target.params, target.tokens, target.teacher_loss)[0]
    return target_variance(rows.T @ rows, g)

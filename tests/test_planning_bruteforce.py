"""Every scenario against a dense brute-force grid (the objective is not convex).

The brute force is independent of the planner's reductions: a 600 x 600 grid over (log N_T, log D_T)
in 1e6..1e17, D_S from the budget constraint (Eq. 9 of Busbridge et al. 2025, arXiv 2502.08606),
losses from the public law functions. The planner must never be worse than the grid (beyond
round-off), and the grid must come within 1e-3 nats of the planner.
"""

import numpy as np
import pytest

from distlaw import load_coefficients, student_loss, supervised_loss
from distlaw.compute import FlopModel
from distlaw.planning import SCENARIOS, Planner

COEF = load_coefficients("busbridge2025")
F = FlopModel().forward
BUDGETS = np.logspace(19, 25, 7)
GRID = np.logspace(6, 17, 600)


def brute_force(ns: float, scenario: str) -> np.ndarray:
    s = SCENARIOS[scenario]
    nt, dt = GRID[:, None], GRID[None, :]
    lt = supervised_loss(nt, dt, COEF.supervised)
    best = []
    for c in BUDGETS:
        ds = (c - s.teacher_pretraining * 3 * F(nt) * dt) / (3 * F(ns) + s.teacher_logits * F(nt))
        ok = ds >= 1e6
        ls = student_loss(ns, np.where(ok, ds, 1e6), lt, COEF)
        best.append(np.where(ok, ls, np.inf).min())
    return np.array(best)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("ns", [1e8, 1e9, 1e10])
def test_planner_agrees_with_brute_force(scenario, ns):
    planned = Planner(COEF).solve(ns, BUDGETS, scenario).student_loss
    grid = brute_force(ns, scenario)
    assert (planned <= grid + 1e-6).all(), planned - grid
    assert (grid - planned < 1e-3).all(), grid - planned

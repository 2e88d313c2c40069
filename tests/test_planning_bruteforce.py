"""Every scenario against a dense brute-force grid (the objective is not convex).

The brute force is independent of the planner's reductions: a 600 x 600 grid over (log N_T, log D_T)
in the size range (1e6..1e17 by default), D_S from the budget constraint (Eq. 9 of Busbridge et al.
2025, arXiv 2502.08606), losses from the public law functions. The planner must never be worse than
the grid (beyond round-off), and the grid must come within 1e-3 nats of the planner (1e-4 with a
second, finer grid around the first grid's best point).
"""

import numpy as np
import pytest

from distlaw import load_coefficients, student_loss, supervised_loss
from distlaw.compute import FlopModel
from distlaw.planning import SCENARIOS, Planner

COEF = load_coefficients("busbridge2025")
F = FlopModel().forward
BUDGETS = np.logspace(19, 25, 7)
PILOT_RANGE = (1e2, 1e12)  # a CPU pilot's scale: 2e3..1e5-parameter models on 2e5..4e6 tokens
PILOT_BUDGETS = np.logspace(13, 15, 5)


def grid_best(ns: float, c: float, scenario: str, log_nt: np.ndarray, log_dt: np.ndarray, lo: float) -> tuple[float, int, int]:
    """The least L_S on the (log N_T, log D_T) grid with D_S >= lo from Eq. 9, and its grid indices."""
    s = SCENARIOS[scenario]
    nt, dt = np.exp(log_nt)[:, None], np.exp(log_dt)[None, :]
    ds = (c - s.teacher_pretraining * 3 * F(nt) * dt) / (3 * F(ns) + s.teacher_logits * F(nt))
    ok = ds >= lo
    ls = np.where(ok, student_loss(ns, np.where(ok, ds, lo), supervised_loss(nt, dt, COEF.supervised), COEF), np.inf)
    i, j = np.unravel_index(np.argmin(ls), ls.shape)
    return float(ls[i, j]), int(i), int(j)


def brute_force(ns: float, budgets: np.ndarray, scenario: str, size_range=(1e6, 1e17), refine: bool = False) -> np.ndarray:
    """The grid's best L_S per budget; ``refine`` adds a second 600 x 600 grid over +-2 cells of the first's best."""
    lo, hi = size_range
    axis = np.linspace(np.log(lo), np.log(hi), 600)

    def window(k: int) -> np.ndarray:
        return np.linspace(axis[max(k - 2, 0)], axis[min(k + 2, len(axis) - 1)], 600)

    best = []
    for c in budgets:
        value, i, j = grid_best(ns, c, scenario, axis, axis, lo)
        if refine:
            value = min(value, grid_best(ns, c, scenario, window(i), window(j), lo)[0])
        best.append(value)
    return np.array(best)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("ns", [1e8, 1e9, 1e10])
def test_planner_agrees_with_brute_force(scenario, ns):
    planned = Planner(COEF).solve(ns, BUDGETS, scenario).student_loss
    grid = brute_force(ns, BUDGETS, scenario)
    assert (planned <= grid + 1e-6).all(), planned - grid
    assert (grid - planned < 1e-3).all(), grid - planned


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_planner_agrees_with_brute_force_at_pilot_scale(scenario):
    # N_S = 5e3 at C = 1e13..1e15: infeasible in the paper's 1e6..1e17, solvable in 1e2..1e12
    planned = Planner(COEF, size_range=PILOT_RANGE).solve(5e3, PILOT_BUDGETS, scenario).student_loss
    grid = brute_force(5e3, PILOT_BUDGETS, scenario, PILOT_RANGE, refine=True)
    assert (planned <= grid + 1e-6).all(), planned - grid
    assert (grid - planned < 1e-4).all(), grid - planned

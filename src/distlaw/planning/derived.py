"""Answers derived from the compute-optimal solutions (Busbridge et al. 2025, arXiv 2502.08606, Sec. 5).

- ``crossover_compute``: the budget at which supervised training of a student catches up with
  distillation (Fig. 1, Sec. 5.2); it grows with the student's size.
- ``optimal_teacher``: the teacher loss that minimizes the student's loss at given (N_S, D_S), and a
  teacher that reaches it: beyond it a stronger teacher hurts (the capacity gap, Eq. 8; cf. Zhang et
  al., arXiv 2311.07052).
- ``isoflop_profile``: the best student loss at a fixed budget for each teacher size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from distlaw.errors import DistlawError
from distlaw.laws.coefficients import positive_array
from distlaw.planning.planner import ExistingTeacher, Planner, Recipes
from distlaw.planning.scenarios import Scenario, get_scenario
from distlaw.planning.search import bisect, grid_minimize


def crossover_compute(
    planner: Planner,
    student_params: ArrayLike,
    scenario: str | Scenario = "best",
    teacher: ExistingTeacher | None = None,
    max_compute: float = 1e29,
    scan_points: int = 25,
) -> np.ndarray:
    """Smallest budget C at which supervised training of N_S is as good as distillation (per N_S).

    Scans log C from ten times the least usable budget to ``max_compute``, then bisects the first
    bracket where distillation's advantage L_sup - L_S changes sign from positive to non-positive.
    ``inf`` where distillation still wins at ``max_compute``; NaN where it loses from the start.
    """
    scn = get_scenario(scenario)
    ns = planner.student_sizes(student_params)
    if teacher is None:
        least = planner.minimum_compute(ns, scn)
    else:
        f_t = planner.flops.forward(teacher.params)
        pretraining = 3 * f_t * (teacher.tokens or 0.0) * scn.teacher_pretraining
        least = pretraining + (3 * planner.flops.forward(ns) + scn.teacher_logits * f_t) * planner.size_range[0]
    log_lo = np.log(10 * least)
    if (log_lo >= np.log(max_compute)).any():
        raise DistlawError(f"max compute {max_compute:g} is below the least usable budget {float(np.max(10 * least)):.3g}")

    def gap(log_c: np.ndarray) -> np.ndarray:
        c, n = np.exp(log_c), ns[..., None] if log_c.ndim > ns.ndim else ns
        if teacher is None:
            dist = planner.solve(n, c, scn)
        else:
            dist = planner.solve_existing(n, c, teacher, scn)
        return dist.student_loss - planner.supervised(n, c).loss

    t = np.linspace(0.0, 1.0, scan_points)
    grid = log_lo[..., None] + (np.log(max_compute) - log_lo[..., None]) * t
    g = gap(grid)
    flips = (g[..., :-1] < 0) & (g[..., 1:] >= 0)
    found = flips.any(axis=-1)
    j = np.argmax(flips, axis=-1)[..., None]
    lo = np.take_along_axis(grid, j, axis=-1)[..., 0]
    hi = np.take_along_axis(grid, j + 1, axis=-1)[..., 0]
    root = bisect(gap, lo, hi, iters=20)
    always = (g < 0).all(axis=-1)
    return np.where(found, np.exp(root), np.where(always, np.inf, np.nan))


@dataclass(frozen=True)
class TeacherChoice:
    """The loss-optimal teacher for a student, and one teacher reaching it."""

    teacher_loss: np.ndarray
    student_loss: np.ndarray
    supervised_loss: np.ndarray
    teacher_params: np.ndarray
    teacher_tokens: np.ndarray


def optimal_teacher(
    planner: Planner,
    student_params: ArrayLike,
    student_tokens: ArrayLike,
    tokens_per_param: float | None = None,
) -> TeacherChoice:
    """argmin over L_T of L_S(N_S, D_S, L_T) (Eq. 8) and a teacher reaching it.

    The teacher is the cheapest one (least 3 F(N_T) D_T) by default, or the one trained on
    ``tokens_per_param`` x N_T tokens (NaN if no size in the planner's size range reaches L_T that way).
    """
    ns = planner.student_sizes(student_params)
    ds = positive_array(student_tokens, "student tokens")
    (ns, ds), law, shape = planner.batch(ns, ds)
    log_ns, log_ds = np.log(ns), np.log(ds)
    log_lt, log_ls = planner.best_teacher_loss(log_ns, log_ds, law)
    if tokens_per_param is None:
        log_nt, log_dt = planner.cheapest_teacher(log_lt, law)
    else:
        log_m = np.log(positive_array(tokens_per_param, "tokens per param"))
        miss = lambda u: log_lt - law.log_supervised(u, u + log_m)  # noqa: E731  (rises with u)
        lo, hi = np.full_like(log_lt, planner.log_min), np.full_like(log_lt, planner.log_max)
        reachable = (miss(lo) < 0) & (miss(hi) >= 0)
        log_nt = np.where(reachable, bisect(miss, lo, hi, iters=60), np.nan)
        log_dt = log_nt + log_m
    sup = np.exp(law.log_supervised(log_ns, log_ds))
    values = (np.exp(log_lt), np.exp(log_ls), sup, np.exp(log_nt), np.exp(log_dt))
    return TeacherChoice(*(v.reshape(shape) for v in values))


def isoflop_profile(
    planner: Planner,
    student_params: float,
    compute: float,
    teacher_params: ArrayLike,
    scenario: str | Scenario = "teacher-pretraining+inference",
) -> Recipes:
    """For each teacher size, the best recipe at budget C (one free variable left on Eq. 9).

    The free variable is D_T when the teacher's pretraining is free (best case, teacher inference),
    else the split of C between the student's side and the teacher's pretraining. Entries where the
    teacher cannot fit into the budget are NaN.
    """
    scn = get_scenario(scenario)
    planner.check(student_params, compute, scn)
    nt = positive_array(teacher_params, "teacher params")
    (ns, c, nt), law, shape = planner.batch(student_params, compute, nt)
    log_ns, log_c, log_nt = np.log(ns), np.log(c), np.log(nt)
    lo, hi = planner.box(scn, log_ns, log_c)
    fn = planner.objective(scn, log_ns, log_c, law)
    v, log_ls = grid_minimize(lambda v: fn(log_nt[:, None], v), lo[:, 1:], hi[:, 1:], points=256)
    feasible = np.isfinite(log_ls)
    log_ds, log_dt = planner.allocate(scn, log_ns, log_c, log_nt, v[:, 0])
    nan = lambda a: np.where(feasible, a, np.nan)  # noqa: E731
    logs = {
        "log_ds": nan(log_ds),
        "log_nt": log_nt,
        "log_dt": nan(log_dt),
        "log_lt": nan(law.log_supervised(log_nt, log_dt)),
        "log_ls": nan(log_ls),
    }
    return planner.build_recipes(scn, ns, c, logs, shape)

"""Answers derived from the compute-optimal solutions (Busbridge et al. 2025, arXiv 2502.08606, Sec. 5).

- ``crossovers``: every budget at which distillation starts or stops beating supervised training
  of a student (Fig. 1, Sec. 5.2); the first grows with the student's size.
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


SCAN_POINTS = 97  # budgets scanned per problem: 8 per decade over the default 1e17..1e29


@dataclass(frozen=True)
class Crossover:
    """A budget at which the sign of L_S - L_sup changes: above it, ``winner_above`` wins."""

    compute: float
    winner_above: str  # "distillation" or "supervised"

    def record(self) -> dict:
        return {"compute": self.compute, "winner_above": self.winner_above}


@dataclass(frozen=True)
class Crossovers:
    """Every crossover of one scenario over the scanned budgets [lo, hi], and who wins below the first."""

    scenario: str
    scanned: tuple[float, float]
    winner_below: str
    points: tuple[Crossover, ...]

    def winner_at(self, compute: float) -> str:
        """Who wins at ``compute`` according to the crossovers (in the scanned range)."""
        winner = self.winner_below
        for p in self.points:
            if compute >= p.compute:
                winner = p.winner_above
        return winner

    def record(self) -> list[dict]:
        """JSON: the list of crossovers, in order of compute."""
        return [p.record() for p in self.points]


def _winner(gap: np.ndarray) -> np.ndarray:
    """Distillation wins where L_S - L_sup < 0, supervised training where it is >= 0 (ties go to supervised)."""
    return np.where(gap < 0, "distillation", "supervised")


def crossovers(
    planner: Planner,
    student_params: float,
    scenario: str | Scenario = "best",
    teacher: ExistingTeacher | None = None,
    max_compute: float = 1e29,
    scan_points: int = SCAN_POINTS,
    include: ArrayLike = (),
) -> Crossovers:
    """Every budget C at which distillation starts or stops beating supervised training of N_S.

    The gap L_S(C) - L_sup(C) of the optimal recipe (or of the given teacher) against the same
    student trained on all of C (Busbridge et al. 2025, Fig. 1, Sec. 5.2) is scanned over ``scan_points``
    log-spaced budgets from ten times the least usable budget to ``max_compute``, plus the budgets
    ``include`` (the ones a plan is asked about, so that its choice and its crossovers agree);
    each sign change is then bisected. Two crossovers closer than one scan step are not resolved.
    """
    scn = get_scenario(scenario)
    ns = float(planner.student_sizes(student_params))
    least = float(_least_compute(planner, ns, scn, teacher))
    extra = np.asarray(include, dtype=float).ravel()
    lo, hi = float(np.min(extra, initial=10 * least)), float(np.max(extra, initial=max_compute))
    if lo >= hi:
        raise DistlawError(f"max compute {max_compute:g} is below the least usable budget {10 * least:.3g}")

    def gap(log_c: np.ndarray) -> np.ndarray:
        c = np.exp(log_c)
        if teacher is None:
            dist = planner.solve(ns, c, scn, warn=False)
        else:
            dist = planner.solve_existing(ns, c, teacher, scn, warn=False)
        return dist.student_loss - planner.supervised(ns, c).loss

    grid = np.union1d(np.linspace(np.log(lo), np.log(hi), scan_points), np.log(extra))
    winners = _winner(gap(grid))
    flips = np.flatnonzero(winners[1:] != winners[:-1])
    rising = winners[flips + 1] == "supervised"  # the gap turns non-negative: supervised catches up
    sign = np.where(rising, 1.0, -1.0)
    roots = bisect(lambda x: sign * gap(x), grid[flips], grid[flips + 1], iters=20) if flips.size else np.empty(0)
    points = tuple(Crossover(float(np.exp(r)), str(w)) for r, w in zip(roots, winners[flips + 1]))
    return Crossovers(scn.name, (lo, hi), str(winners[0]), points)


def _least_compute(planner: Planner, ns: float, scn: Scenario, teacher: ExistingTeacher | None) -> float:
    """The smallest budget the scenario can use for N_S: one student step (plus a given teacher's pretraining)."""
    if teacher is None:
        return float(planner.minimum_compute(ns, scn))
    f_t = planner.flops.forward(teacher.params)
    pretraining = 3 * f_t * (teacher.tokens or 0.0) * scn.teacher_pretraining
    return float(pretraining + (3 * planner.flops.forward(ns) + scn.teacher_logits * f_t) * planner.size_range[0])


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

"""Compute-optimal distillation planning (Busbridge et al. 2025, arXiv 2502.08606, Sec. 5, App. H).

``Planner(coefficients).solve(N_S, C, scenario)`` gives the optimal recipe; ``derived`` answers the
follow-up questions (every crossover, optimal teacher, IsoFLOP profiles) and ``uncertainty``
turns bootstrap coefficient samples into intervals. Plotting lives in ``distlaw.planning.plot``
and is imported only when asked for.
"""

from distlaw.planning.derived import Crossover, Crossovers, TeacherChoice, crossovers, isoflop_profile, optimal_teacher
from distlaw.planning.planner import Baseline, ExistingTeacher, Planner, Recipes
from distlaw.planning.scenarios import SCENARIOS, Scenario, parse_scenarios
from distlaw.planning.uncertainty import Intervals, recipe_intervals

__all__ = [
    "SCENARIOS",
    "Baseline",
    "Crossover",
    "Crossovers",
    "ExistingTeacher",
    "Intervals",
    "Planner",
    "Recipes",
    "Scenario",
    "TeacherChoice",
    "crossovers",
    "isoflop_profile",
    "optimal_teacher",
    "parse_scenarios",
    "recipe_intervals",
]

"""Intervals on recipes and predicted losses from bootstrap coefficient samples.

``distlaw fit --bootstrap`` stores coefficient samples (resampling runs, as Busbridge et al. 2025,
arXiv 2502.08606, App. F, and Besiroglu et al. 2024 do). Two questions get two answers:

- how uncertain is the recipe: each sample's own optimum, summarized by quantiles;
- how uncertain is the loss of the recipe you will actually run: the point-estimate recipe's
  predicted loss under every sample (its teacher's loss recomputed from N_T, D_T per sample).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distlaw.intervals import central_interval
from distlaw.planning.planner import ExistingTeacher, Planner, Recipes

RECIPE_FIELDS = ("student_tokens", "teacher_params", "teacher_tokens", "teacher_loss", "student_loss")


@dataclass(frozen=True)
class Intervals:
    """Quantile bands at ``level``: per recipe field, for the recipe's loss, and for supervised."""

    level: float
    recipe: dict[str, tuple[np.ndarray, np.ndarray]]
    recipe_loss: tuple[np.ndarray, np.ndarray]
    supervised_loss: tuple[np.ndarray, np.ndarray]

    def record(self, index: tuple[int, ...] | int = ()) -> dict:
        """JSON-ready bands for one problem: {field: [lo, hi]}."""
        pair = lambda b: [float(b[0][index]), float(b[1][index])]  # noqa: E731
        return {
            "level": self.level,
            **{k: pair(v) for k, v in self.recipe.items()},
            "recipe_student_loss": pair(self.recipe_loss),
            "supervised_loss": pair(self.supervised_loss),
        }


def recipe_loss_samples(sampled: Planner, recipes: Recipes) -> np.ndarray:
    """Predicted L_S of fixed recipes under each coefficient sample: shape (samples, *recipes' shape).

    A teacher known only by its loss (the best case's, or an existing teacher given by loss) keeps
    that loss; otherwise L_T = L(N_T, D_T) under each sample.
    """
    r = recipes
    (ns, ds, nt, dt, lt), law, shape = sampled.batch(
        r.student_params, r.student_tokens, r.teacher_params, r.teacher_tokens, r.teacher_loss
    )
    fixed = np.isnan(dt) | (r.scenario == "best")
    log_lt = np.where(fixed, np.log(lt), law.log_supervised(np.log(nt), np.log(np.where(fixed, 1.0, dt))))
    return np.exp(law.log_student(np.log(ns), np.log(ds), log_lt)).reshape(shape)


def recipe_intervals(
    planner: Planner, recipes: Recipes, level: float = 0.9, teacher: ExistingTeacher | None = None
) -> Intervals:
    """Bands for ``recipes`` (solved by ``planner``) from the coefficients' bootstrap samples."""
    sampled = planner.bootstrap()
    ns, c = recipes.student_params, recipes.compute
    if teacher is None:
        samples = sampled.solve(ns, c, recipes.scenario)
    else:
        samples = sampled.solve_existing(ns, c, teacher, recipes.scenario)
    return Intervals(
        level=level,
        recipe={f: central_interval(getattr(samples, f), level) for f in RECIPE_FIELDS},
        recipe_loss=central_interval(recipe_loss_samples(sampled, recipes), level),
        supervised_loss=central_interval(sampled.supervised(ns, c).loss, level),
    )

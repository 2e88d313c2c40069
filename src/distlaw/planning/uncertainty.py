"""Intervals on recipes and predicted losses from bootstrap coefficient samples.

``distlaw fit --bootstrap`` stores coefficient samples (resampling runs, as Busbridge et al. 2025,
arXiv 2502.08606, App. F, and Besiroglu et al. 2024 do). Two questions get two answers:

- how uncertain is the recipe: each sample's own optimum, summarized by quantiles;
- how uncertain is the loss of the recipe you will actually run: the point-estimate recipe's
  predicted loss under every sample (its teacher's loss recomputed from N_T, D_T per sample).

Every band holds its own estimate (``distlaw.intervals.interval_around``): where the samples'
distribution misses it (most samples in another basin, or on a bound), the band is NaN and
``record`` says so instead of printing an interval that contradicts the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distlaw.intervals import NO_INTERVAL, interval_around
from distlaw.planning.planner import ExistingTeacher, Planner, Recipes

RECIPE_FIELDS = ("student_tokens", "teacher_params", "teacher_tokens", "teacher_loss", "student_loss")
DEFAULT_LEVEL = 0.95
Band = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Intervals:
    """Quantile bands at ``level``: per recipe field, for the recipe's loss, and for supervised.

    Each band is (lo, hi), NaN where it would not contain its estimate.
    """

    level: float
    recipe: dict[str, Band]
    recipe_loss: Band
    supervised_loss: Band

    def bands(self) -> dict[str, Band]:
        """Every band by its JSON name."""
        return {**self.recipe, "recipe_student_loss": self.recipe_loss, "supervised_loss": self.supervised_loss}

    def record(self, index: tuple[int, ...] | int = ()) -> dict:
        """JSON-ready bands for one problem: {field: [lo, hi] or None}; ``no_interval`` lists the
        fields without one and ``note`` says why."""
        pairs = {k: [float(lo[index]), float(hi[index])] for k, (lo, hi) in self.bands().items()}
        missing = [k for k, pair in pairs.items() if np.isnan(pair).any()]
        out: dict = {"level": self.level, **{k: None if k in missing else v for k, v in pairs.items()}}
        if missing:
            out |= {"no_interval": missing, "note": NO_INTERVAL}
        return out


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


def _band(estimate: np.ndarray, draws: np.ndarray, level: float) -> Band:
    lo, hi, _ = interval_around(estimate, draws, level)
    return lo, hi


def recipe_intervals(
    planner: Planner, recipes: Recipes, level: float = DEFAULT_LEVEL, teacher: ExistingTeacher | None = None
) -> Intervals:
    """Bands for ``recipes`` (solved by ``planner``) from the coefficients' bootstrap samples."""
    sampled = planner.bootstrap()
    ns, c = recipes.student_params, recipes.compute
    if teacher is None:
        samples = sampled.solve(ns, c, recipes.scenario, warn=False)
    else:
        samples = sampled.solve_existing(ns, c, teacher, recipes.scenario, warn=False)
    return Intervals(
        level=level,
        recipe={f: _band(getattr(recipes, f), getattr(samples, f), level) for f in RECIPE_FIELDS},
        recipe_loss=_band(recipes.student_loss, recipe_loss_samples(sampled, recipes), level),
        supervised_loss=_band(planner.supervised(ns, c).loss, sampled.supervised(ns, c).loss, level),
    )

"""Predictions checked against observed losses (issue 12, item 4): ``score_runs`` scores any runs table,
``plan_recipes`` plans recipes at budgets a few times a pilot's largest run, ``validate_recipes`` trains
them with the lab into the pilot's store and scores them.

A prediction is Eq. 1 (supervised) or Eq. 8 (distilled, with the teacher's measured loss) of Busbridge
et al. 2025 (arXiv 2502.08606) under the point coefficients. Its interval is a prediction interval for the
loss a new run will measure: the central ``level`` interval of the same prediction under every bootstrap
sample (``distlaw fit --bootstrap``: the law's uncertainty), each draw times exp(sigma z) with sigma the
fit's residual scale in log space (``run_noise``: one run's scatter about the law, which an observation
carries and a bootstrap of the mean does not). It is shown only where it holds the point prediction
(``distlaw.intervals.interval_around``). Compute is 6 N D plus the
online teacher's 2 N_T D (Eq. 9 with F(N) = 2N, as the lab counts it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from distlaw.compute import FlopModel
from distlaw.design.pilot import TEACHER_INFERENCE
from distlaw.design.validate_store import PilotStore, StoreTeacher, recipe_config, run_compute
from distlaw.errors import DistlawError
from distlaw.intervals import interval_around, interval_notes
from distlaw.laws import Coefficients
from distlaw.laws.domain import recorded_warnings
from distlaw.planning.lawbatch import LawBatch
from distlaw.planning.planner import LARGEST, ExistingTeacher, Planner
from distlaw.runs import predict_runs, validate_runs

DEFAULT_LEVEL = 0.9
DEFAULT_SCALES = (2.0, 3.0, 4.0)
SCENARIO = "teacher-inference"  # an existing teacher run online: its logits count, its pretraining is paid
FLOPS = FlopModel(form="simple")  # F(N) = 2N: training 6 N D, teacher inference 2 N_T D (the lab's count)
REFIT = "refit with `distlaw fit RUNS --bootstrap 200 --out FILE`"


@dataclass(frozen=True)
class Check:
    """One prediction beside its observation: ``interval`` is None where the bootstrap gives none
    (``note`` says why), ``observed`` None where the run has not finished (or failed)."""

    kind: str
    params: float
    tokens: float
    compute: float
    predicted: float
    interval: tuple[float, float] | None
    observed: float | None = None
    teacher: str | None = None
    teacher_params: float | None = None
    teacher_loss: float | None = None
    name: str | None = None
    note: str | None = None

    @property
    def inside(self) -> bool | None:
        """Whether the observed loss lies inside the interval (None without either)."""
        if self.interval is None or self.observed is None:
            return None
        return bool(self.interval[0] <= self.observed <= self.interval[1])

    @property
    def error(self) -> float | None:
        """(predicted - observed) / observed in percent."""
        return None if self.observed is None else 100.0 * (self.predicted - self.observed) / self.observed

    def record(self) -> dict:
        return {
            "name": self.name, "kind": self.kind, "compute": self.compute, "params": self.params, "tokens": self.tokens,
            "teacher": self.teacher, "teacher_params": self.teacher_params, "teacher_loss": self.teacher_loss,
            "predicted": self.predicted, "interval": None if self.interval is None else list(self.interval),
            "observed": self.observed, "inside": self.inside, "error_percent": self.error, "note": self.note,
        }  # fmt: skip


@dataclass(frozen=True)
class Validation:
    """Checks at one interval level, with the extrapolation warnings of their predictions."""

    checks: list[Check]
    level: float
    warnings: list[str] = field(default_factory=list)
    figure: str | None = None
    failed: list[str] = field(default_factory=list)  # recipe runs that did not finish

    @property
    def inside(self) -> int:
        return sum(c.inside is True for c in self.checks)

    @property
    def total(self) -> int:
        """Checks with both an interval and an observation."""
        return sum(c.inside is not None for c in self.checks)

    def record(self) -> dict:
        return {"recipes": [c.record() for c in self.checks], "level": self.level, "inside": self.inside, "total": self.total,
                "figure": self.figure, "failed": self.failed, "warnings": self.warnings}


def _blocks(coefficients: Coefficients, law: str) -> dict[str, np.ndarray]:
    """The bootstrap samples of ``law`` as arrays (K,); a one-line DistlawError without any."""
    rows = [s.as_dict() for s in coefficients.samples(law)]  # type: ignore[arg-type]
    if not rows:
        raise DistlawError(f"{coefficients.name} has no bootstrap samples of the {law} law, so no interval: {REFIT}")
    return {k: np.array([row[k] for row in rows]) for k in rows[0]}


def run_noise(coefficients: Coefficients, law: str) -> float:
    """One run's scatter about the fitted ``law`` in log space: the fit's RMS log residual with a degrees-of-freedom
    correction, sqrt(n / (n - p)) for n runs and p free coefficients (``meta.fit`` of a ``distlaw fit`` file);
    0 where the file does not record it (a preset)."""
    block = ((coefficients.meta or {}).get("fit") or {}).get(law) or {}
    metrics = (block.get("metrics") or {}).get("fit") or {}
    rms, n, p = metrics.get("rms_log_error"), metrics.get("n") or 0, len(block.get("free") or ())
    if rms is None or not np.isfinite(rms):
        return 0.0
    return float(rms) * float(np.sqrt(n / (n - p))) if n > p else float(rms)


def with_run_noise(draws: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap draws of a law's prediction, each times exp(sigma z): draws of what one run would measure."""
    return draws * np.exp(sigma * rng.standard_normal(draws.shape)) if sigma > 0 else draws


def loss_draws(coefficients: Coefficients, params: np.ndarray, tokens: np.ndarray, teacher_loss: np.ndarray,
               seed: int = 0) -> list[np.ndarray]:
    """Predicted losses of each run under each bootstrap sample, one array per run: Eq. 1 under every
    supervised sample where ``teacher_loss`` is NaN, else Eq. 8 with that teacher loss (supervised sample i
    paired with distillation sample i, as the planner pairs them); each with its law's ``run_noise``."""
    n, d, lt = (np.asarray(a, dtype=float) for a in (params, tokens, teacher_loss))
    distilled = ~np.isnan(lt)
    log_n, log_d = np.log(n)[None, :], np.log(d)[None, :]
    sup = _blocks(coefficients, "supervised")
    out = list(np.exp(LawBatch(sup, {}).log_supervised(log_n, log_d)).T)
    if distilled.any():
        dist = _blocks(coefficients, "distillation")
        k = min(len(sup["E"]), len(dist["A"]))
        paired = LawBatch({key: v[:k] for key, v in sup.items()}, {key: v[:k] for key, v in dist.items()})
        student = paired.log_student(log_n, log_d, np.log(np.where(distilled, lt, 1.0))[None, :])
        out = [np.exp(student[:, i]) if distilled[i] else draws for i, draws in enumerate(out)]
    rng = np.random.default_rng(seed)
    sigma = {law: run_noise(coefficients, law) for law in ("supervised", "distillation")}
    return [with_run_noise(draws, sigma["distillation" if distilled[i] else "supervised"], rng) for i, draws in enumerate(out)]


def _checks(coefficients: Coefficients, table: pd.DataFrame, level: float) -> tuple[list[Check], list[str]]:
    """Point predictions (``distlaw.runs.predict_runs``, which refuses what the laws cannot answer) and
    bootstrap intervals for a validated runs table with ``compute`` and optional ``name``/``teacher``."""
    with recorded_warnings() as notes:
        predicted = predict_runs(table, coefficients)["predicted_loss"].to_numpy()
    lt = table["teacher_loss"].to_numpy(float) if "teacher_loss" in table else np.full(len(table), np.nan)
    lt = np.where(table["kind"].to_numpy() == "distilled", lt, np.nan)
    draws = loss_draws(coefficients, table["params"].to_numpy(float), table["tokens"].to_numpy(float), lt)
    bands = [interval_around(p, x, level) for p, x in zip(predicted, draws)]
    lo, hi, holds = (np.array([b[j] for b in bands], dtype=float if j < 2 else bool) for j in range(3))
    why = [interval_notes(x, h)[0] for x, h in zip(draws, holds)]
    checks = []
    for i, row in enumerate(table.to_dict("records")):
        observed = row.get("loss")
        checks.append(Check(
            kind=row["kind"], params=float(row["params"]), tokens=float(row["tokens"]), compute=float(row["compute"]),
            predicted=float(predicted[i]), interval=(float(lo[i]), float(hi[i])) if holds[i] else None,
            observed=None if observed is None or pd.isna(observed) else float(observed), teacher=_text(row.get("teacher")),
            teacher_params=_number(row.get("teacher_params")), teacher_loss=None if np.isnan(lt[i]) else float(lt[i]),
            name=_text(row.get("name")), note=why[i],
        ))  # fmt: skip
    return checks, notes


def _text(value: object) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _number(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)  # type: ignore[arg-type]


def score_runs(coefficients: Coefficients, runs: pd.DataFrame, level: float = DEFAULT_LEVEL, source: str = "runs table") -> Validation:
    """Predicted loss with its bootstrap interval against the observed ``loss`` of every row of a runs
    table (``distlaw.runs``): supervised rows by Eq. 1, distilled rows by Eq. 8 with their ``teacher_loss``.
    Rows the coefficients cannot score (a distilled row without a distillation law, a teacher loss at or
    below E) and coefficients without bootstrap samples are one-line DistlawErrors."""
    table = validate_runs(runs, source=source)
    table["compute"] = run_compute(table)
    checks, notes = _checks(coefficients, table, level)
    return Validation(checks, level, notes)


# -- recipes at a pilot's scale --------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """A planned run: a student of ``params`` (a model the lab builds exactly) on ``tokens`` (whole
    steps), supervised or distilled from a finished ``teacher`` of the store, at ``compute`` FLOPs."""

    budget: float
    kind: str
    params: int
    tokens: int
    teacher: StoreTeacher | None

    @property
    def compute(self) -> float:
        teacher = 0.0 if self.teacher is None else TEACHER_INFERENCE * self.teacher.params * self.tokens
        return 6.0 * self.params * self.tokens + teacher


def _options(planner: Planner, sizes: np.ndarray, budget: float, teachers: Sequence[StoreTeacher]) -> list[tuple[float, int, StoreTeacher | None]]:
    """(predicted loss, size index, teacher) of every student size trained supervised or distilled from
    each teacher on all of ``budget`` (the planner's supervised baseline and existing-teacher scenario)."""
    options = [(float(loss), i, None) for i, loss in enumerate(planner.supervised(sizes, budget).loss)]
    for teacher in teachers:
        fits = budget / (6 * sizes + TEACHER_INFERENCE * teacher.params) >= planner.size_range[0]
        if fits.any():
            solved = planner.solve_existing(sizes[fits], budget, ExistingTeacher(teacher.params, loss=teacher.loss), SCENARIO, warn=False)
            options += [(float(loss), int(i), teacher) for loss, i in zip(solved.student_loss, np.flatnonzero(fits))]
    return options


def plan_recipes(coefficients: Coefficients, budgets: Sequence[float], sizes: Sequence[int], teachers: Sequence[StoreTeacher],
                 step_tokens: int) -> tuple[list[Recipe], list[str]]:
    """For each budget, the recipe the planner predicts best among the student ``sizes`` (the lab's
    buildable models), each trained supervised on all of the budget or distilled from one of ``teachers``
    (their measured losses) with the rest of it; tokens rounded to whole steps of ``step_tokens``.
    Returns the recipes and the planner's extrapolation warnings."""
    ns = np.asarray(sizes, dtype=float)
    planner = Planner(coefficients, FLOPS, size_range=(float(step_tokens), LARGEST))
    recipes = []
    with recorded_warnings() as notes:
        for budget in budgets:
            usable = budget / (6 * ns) >= step_tokens
            if not usable.any():
                raise DistlawError(f"compute {budget:.3g} FLOPs is less than one step ({step_tokens} tokens) of the smallest student "
                                   f"({int(ns.min())} parameters)")
            options = _options(planner, ns[usable], budget, teachers)
            _, index, teacher = min(options, key=lambda option: option[0])
            n = int(ns[usable][index])
            per_token = 6.0 * n + (0.0 if teacher is None else TEACHER_INFERENCE * teacher.params)
            steps = max(1, round(budget / per_token / step_tokens))
            recipes.append(Recipe(float(budget), "supervised" if teacher is None else "distilled", n, steps * step_tokens, teacher))
        for recipe in recipes:
            planner.check_domain(recipe.params, recipe.compute, None if recipe.teacher is None else
                                 ExistingTeacher(recipe.teacher.params, loss=recipe.teacher.loss))
    return recipes, notes


def recipe_table(recipes: Sequence[Recipe], names: Sequence[str | None], losses: Sequence[float | None]) -> pd.DataFrame:
    """The recipes as a runs table (``loss`` the observed one, None before training)."""
    return pd.DataFrame({
        "kind": [r.kind for r in recipes], "params": [float(r.params) for r in recipes], "tokens": [float(r.tokens) for r in recipes],
        "loss": [np.nan if x is None else x for x in losses], "compute": [r.compute for r in recipes],
        "teacher_params": [np.nan if r.teacher is None else float(r.teacher.params) for r in recipes],
        "teacher_loss": [np.nan if r.teacher is None else r.teacher.loss for r in recipes],
        "teacher": [None if r.teacher is None else r.teacher.name for r in recipes], "name": list(names),
    })  # fmt: skip


def predict_recipes(coefficients: Coefficients, recipes: Sequence[Recipe], level: float = DEFAULT_LEVEL,
                    names: Sequence[str | None] | None = None, losses: Sequence[float | None] | None = None) -> Validation:
    """Each recipe's predicted loss and interval, beside its observed loss where given."""
    table = recipe_table(recipes, names or [None] * len(recipes), losses or [None] * len(recipes))
    checks, notes = _checks(coefficients, validate_runs(table, need_loss=False), level)
    return Validation(checks, level, notes)


def validate_recipes(coefficients: Coefficients, pilot: PilotStore, budgets: Sequence[float], level: float = DEFAULT_LEVEL,
                     student: float | None = None, size_range: tuple[float, float] | None = None, workers: int | None = None,
                     on_finish: Callable[[str, str], None] | None = None) -> Validation:
    """Plan one recipe per budget (``plan_recipes`` over the pilot's buildable students and finished
    teachers), train them into the pilot's store as the sweep ``pilot.validation_name`` (a ``runs`` protocol
    with the pilot's settings, so the teachers' stored runs are reused, not retrained), and score them."""
    _blocks(coefficients, "supervised")  # refused before anything is trained
    if pilot.teachers:
        _blocks(coefficients, "distillation")
    sizes = pilot.student_sizes(student, size_range)
    recipes, notes = plan_recipes(coefficients, budgets, sizes, pilot.teachers, pilot.step_tokens)
    config, names = recipe_config(pilot, [(r.params, r.tokens, None if r.teacher is None else r.teacher.name) for r in recipes])
    from distlaw.lab.sweep import run_sweep  # the lab: after every check
    outcome = run_sweep(config, pilot.path, workers=workers, progress=False, on_finish=on_finish)
    losses = pilot.losses(names)
    scored = predict_recipes(coefficients, recipes, level, names, losses)
    failed = sorted(set(outcome.failed) | set(outcome.blocked))
    return Validation(scored.checks, level, list(dict.fromkeys(notes + scored.warnings)), failed=failed)


def check_budgets(scales: Sequence[float] | None, compute: Sequence[float] | None) -> None:
    """Exactly one of scales and budgets, every value positive and finite."""
    if scales is not None and compute is not None:
        raise DistlawError("give --scale or --compute, not both")
    for values, flag in ((scales, "--scale"), (compute, "--compute")):
        for value in values or ():
            if not (np.isfinite(value) and value > 0):
                raise DistlawError(f"{flag} values must be positive numbers, got {value:g}")


def budgets_of(pilot: PilotStore, scales: Sequence[float] | None, compute: Sequence[float] | None) -> list[float]:
    """Budgets in FLOPs: ``compute`` as given, else ``scales`` (default 2, 3, 4) times the pilot's largest run."""
    check_budgets(scales, compute)
    if compute is not None:
        return [float(c) for c in compute]
    return [float(s) * pilot.largest_compute for s in (scales or DEFAULT_SCALES)]


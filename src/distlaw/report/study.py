"""The study report: what the runs show, the laws (fitted or given) against them, and a plan at scale.

Every section the runs allow is written; a section they do not allow says why it is missing (no
distilled runs, too few runs for a law's free coefficients, a coefficients file without that law),
so one law that cannot be fitted never costs the other law's section or the observed findings.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from distlaw.capacity import capacity_figure, capacity_gap
from distlaw.errors import DistlawError, check_workers
from distlaw.findings import best_teachers, distillation_gains
from distlaw.figures import format_number
from distlaw.intervals import NO_INTERVAL, check_level
from distlaw.laws import PRESETS, Coefficients, load_coefficients
from distlaw.report.html import Report
from distlaw.report.plots import parity_figure, student_teacher_figure, supervised_fit_figure
from distlaw.runs import predict_runs

if TYPE_CHECKING:
    from distlaw.design.validate import Check
    from distlaw.study import StudyResult

LAWS = ("supervised", "distillation")
KIND = {"supervised": "supervised", "distillation": "distilled"}  # law -> the rows it describes
EQUATION = {"supervised": "Busbridge et al. 2025, Eq. 1", "distillation": "Busbridge et al. 2025, Eq. 8"}
RUN_COLUMNS = ["kind", "params", "tokens", "loss", "teacher_params", "teacher_tokens", "teacher_loss", "wall_time_s"]
CAPACITY_COLUMNS = ["params", "tokens", "teachers", "teacher_star", "teacher_star_lo", "teacher_star_hi", "interval_note",
                    "status", "loss_star", "argmin_teacher", "argmin_loss"]
NEEDS_SUPERVISED = "it needs Ltilde_S from the supervised law, which could not be fitted"
DEFAULT_GRID = "coarse"
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class ReportLaws:
    """The laws a report draws: their coefficients (None when there are none), where they come from
    (``origin``, shown in titles), the fit summary when fitted, and why each absent law is absent."""

    coefficients: Coefficients | None
    origin: str
    fit_summary: dict[str, Any] | None = None
    missing: dict[str, str] = field(default_factory=dict)

    def usable(self, law: str) -> bool:
        """Whether ``law`` can predict: the distillation law also needs the supervised one (Ltilde_S)."""
        c = self.coefficients
        if c is None or c.supervised is None:
            return False
        return law == "supervised" or c.distillation is not None

    def summary(self) -> dict[str, Any]:
        """``--json``: the fit summary of the fitted laws and why the others are missing."""
        return {"laws": self.origin, "fit": self.fit_summary, "missing": dict(self.missing)}


def given_laws(coefficients: Coefficients, name: str) -> ReportLaws:
    """Laws from a preset or coefficients file ``name``; a law it cannot evaluate is recorded as missing."""
    origin = f"preset {name}" if name in PRESETS else f"from {name}"
    missing = {}
    if coefficients.supervised is None:
        missing["supervised"] = f"{name} has no supervised law"
    if coefficients.distillation is None:
        missing["distillation"] = f"{name} has no distillation law"
    elif coefficients.supervised is None:
        missing["distillation"] = f"{name} has no supervised law, which Eq. 8 needs for Ltilde_S"
    return ReportLaws(coefficients, origin, None, missing)


def check_interval_options(bootstrap: int, level: float) -> None:
    """Refuse a negative number of bootstrap resamples or a confidence level outside (0, 1)."""
    if bootstrap < 0:
        raise DistlawError(f"--bootstrap must be >= 0, got {bootstrap}")
    check_level(level)


def check_fit_options(grid: str, bootstrap: int, level: float, workers: int = 1) -> None:
    """Refuse fit options that are the user's mistake (they must not turn into a 'missing section')."""
    from distlaw.fitting.grids import GRID_NAMES

    if grid not in GRID_NAMES:
        raise DistlawError(f"--grid must be one of {', '.join(GRID_NAMES)}, got '{grid}'")
    check_interval_options(bootstrap, level)
    check_workers(workers)


def _routed_fixed(fixed: Mapping[str, float], laws: list[str]) -> dict[str, dict[str, float]]:
    """``--fix`` routed to the laws the runs have rows for, each value checked against its parameter."""
    from distlaw.fitting.fit import resolve_fixed
    from distlaw.fitting.models import MODELS

    routed = resolve_fixed(fixed, laws)
    for law, values in routed.items():
        for name, value in values.items():
            try:
                MODELS[law].parameter(name).to_fit(value)
            except DistlawError as error:
                raise DistlawError(f"--fix {name}={value:g}: {error}") from None
    return routed


def fit_laws(
    runs: pd.DataFrame,
    *,
    fixed: Mapping[str, float] | None = None,
    grid: str = DEFAULT_GRID,
    bootstrap: int = 0,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    source: str = "runs table",
    prior: Coefficients | None = None,
    prior_name: str | None = None,
    workers: int = 1,
) -> ReportLaws:
    """Fit the supervised and distillation laws (Busbridge Eqs. 1 and 8) to a validated runs table; with a
    ``prior``, each law's form is chosen by leave-largest-runs-out error (``distlaw fit --prior``), the
    candidate forms fitted in ``workers`` processes.

    A law the runs cannot fit (fewer runs than free coefficients, no rows of its kind, no supervised
    law to give Ltilde_S, or any other DistlawError of the fitter) is left out with the reason; the
    other law is kept. Bad options (grid, bootstrap, level, ``fixed``) raise a DistlawError instead.
    """
    from distlaw.fitting import fit_runs

    check_fit_options(grid, bootstrap, level, workers)
    routed = _routed_fixed(fixed or {}, [law for law in LAWS if (runs["kind"] == KIND[law]).any()])
    missing = _unfittable(runs, routed, prior)
    origin = f"fitted to {source}"
    if "supervised" in missing:
        return ReportLaws(None, origin, None, missing)
    options: dict[str, Any] = dict(grid=grid, bootstrap=bootstrap, level=level, seed=seed, source=source, prior=prior,
                                   prior_name=prior_name, workers=workers)
    supervised_only = {f"supervised.{k}": v for k, v in routed["supervised"].items()}
    both_error = None
    if "distillation" not in missing:
        try:
            return _fitted(fit_runs(runs, "both", fixed=fixed, **options), origin, missing)
        except DistlawError as error:  # which law failed? the supervised law alone tells
            both_error = str(error)
    try:
        supervised = fit_runs(runs, "supervised", fixed=supervised_only, **options)
    except DistlawError as error:
        missing["supervised"] = str(error)
        if both_error is not None:
            missing["distillation"] = NEEDS_SUPERVISED
        return ReportLaws(None, origin, None, missing)
    if both_error is not None:
        missing["distillation"] = both_error
    return _fitted(supervised, origin, missing)


def _unfittable(runs: pd.DataFrame, routed: Mapping[str, Mapping[str, float]], prior: Coefficients | None = None) -> dict[str, str]:
    """The laws these runs cannot fit, known before fitting: no rows of their kind, or fewer rows than
    free coefficients (the distillation law counts students trained from scratch, as the fitter does;
    with a ``prior``, the fewest any of its forms leaves free)."""
    from distlaw.fitting.models import MODELS
    from distlaw.fitting.selection import distillation_candidates, fewest_free, supervised_candidates

    from_scratch = runs["pruned_to"].isna() if "pruned_to" in runs.columns else True
    counts = {"supervised": int((runs["kind"] == "supervised").sum()),
              "distillation": int(((runs["kind"] == "distilled") & from_scratch).sum())}
    missing = {}
    for law in LAWS:
        free = len(MODELS[law].names) - len(routed[law])
        if prior is not None:
            block = getattr(prior, law)
            values = None if block is None else block.as_dict()
            forms = supervised_candidates(values, prior.name) if law == "supervised" else distillation_candidates(values, prior.name)
            free = fewest_free(MODELS[law], forms, routed[law])
        if counts[law] == 0:
            scratch = " trained from scratch (Eq. 8 leaves out students pruned from their teacher)" if law == "distillation" else ""
            missing[law] = f"no {KIND[law]} runs{scratch} to fit it"
        elif counts[law] < free:
            missing[law] = f"{counts[law]} {KIND[law]} runs cannot fit {free} free coefficients: fix some with --fix"
    if "supervised" in missing and "distillation" not in missing:
        missing["distillation"] = f"it needs Ltilde_S from the supervised law, which cannot be fitted ({missing['supervised']})"
    return missing


def _fitted(fitted: Any, origin: str, missing: dict[str, str]) -> ReportLaws:
    """A fit_runs result as ReportLaws; a law with rows that the fitter still left out says so."""
    coefficients = fitted.coefficients()
    summary = fitted.summary()
    for law in LAWS:
        if law not in summary and law not in missing:
            missing[law] = "; ".join(fitted.warnings) or "the fitter returned no coefficients"
    return ReportLaws(coefficients, origin, summary, missing)


def runs_report(
    runs: pd.DataFrame,
    laws: ReportLaws,
    *,
    title: str = "distlaw report",
    intro: str = "",
    bootstrap: int = 0,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> Report:
    """The report of any runs table: observed findings, the capacity gap, each law against the runs.

    ``bootstrap`` resamples give intervals (at ``level``) for the optimal teacher sizes."""
    check_interval_options(bootstrap, level)
    report = Report(title)
    n_sup = int((runs["kind"] == "supervised").sum())
    report.paragraph(f"{len(runs)} runs ({n_sup} supervised, {len(runs) - n_sup} distilled); laws {laws.origin}. {intro}".strip())
    _findings_section(report, runs)
    _capacity_section(report, runs, bootstrap, seed, level)
    for law in LAWS:
        _law_section(report, runs, laws, law)
    _parity_section(report, runs, laws)
    return report


def _findings_section(report: Report, runs: pd.DataFrame) -> None:
    """Distillation gains against supervised twins, and the best teacher per student, straight from the runs."""
    report.heading("What the runs show")
    gains, teachers = distillation_gains(runs), best_teachers(runs)
    if len(gains):
        won = int((gains["gain"] > 0).sum())
        report.paragraph(f"Distillation beat supervised training on the same tokens in {won} of {len(gains)} "
                         "student/teacher pairs (gain = supervised loss - distilled loss).")
        report.table(gains)
    else:
        report.paragraph(f"No distillation gains: {_no_pairs_reason(runs)}.", note=True)
    if len(teachers):
        gaps = int(teachers["capacity_gap"].sum())
        report.paragraph(f"For {gaps} of {len(teachers)} student configurations the best teacher was not the "
                         "strongest one: the capacity gap (Zhang et al., arXiv 2311.07052).")
        report.table(teachers)
    else:
        report.paragraph("No best teacher: no student (params, tokens) was distilled from teachers of two or more "
                         "different losses.", note=True)


def _no_pairs_reason(runs: pd.DataFrame) -> str:
    kinds = set(runs["kind"])
    if "distilled" not in kinds:
        return "the runs have no distilled run"
    if "supervised" not in kinds:
        return "the runs have no supervised run to compare the distilled ones with"
    return "no distilled run has a supervised run of the same size and tokens"


def _capacity_section(report: Report, runs: pd.DataFrame, bootstrap: int, seed: int, level: float) -> None:
    """The smooth optimal teacher of every student with three or more teacher sizes, and the law over them."""
    report.heading("Optimal teacher size (law of capacity gap)")
    try:
        result = capacity_gap(runs, bootstrap=bootstrap, seed=seed, level=level)
    except DistlawError as error:
        report.paragraph(f"No optimal teacher size from these runs: {error}.", note=True)
        return
    report.paragraph("The smooth optimal teacher size T* of each student with three or more teacher sizes: the vertex of "
                     "a quadratic in ln(teacher size) fitted to the student's losses, or a bound (status 'at least' / "
                     "'at most') when the best teacher is at the edge of those tried; beside it the best single run.")
    curves = result.curves
    report.table(curves[[c for c in CAPACITY_COLUMNS if c in curves.columns]])
    if "teacher_star_lo" in curves.columns:
        report.paragraph(f"teacher star lo, teacher star hi: {100 * level:g}% bootstrap interval over {bootstrap} resamples "
                         "(blank, with the interval note, where the resamples give none).", note=True)
    if result.fit is not None:
        law = result.fit.law
        report.paragraph(f"Law of capacity gap over {result.fit.students} students: T* = {law.slope:.3g} S {law.intercept:+.3g} "
                         f"(R^2 {result.fit.r2:.3f}); Zhang et al. report T* = 2.5 S.")
    else:
        report.paragraph(f"No law of capacity gap from these runs: {result.reason}", note=True)
    report.figure(capacity_figure(runs, result), "Student loss against teacher size, and the optimal teacher against the student.")


def _law_section(report: Report, runs: pd.DataFrame, laws: ReportLaws, law: str) -> None:
    """One law: its coefficients (fitted or given), how well it fits, and the runs it describes with it."""
    report.heading(f"{law.capitalize()} law ({EQUATION[law]})")
    if not laws.usable(law):
        report.paragraph(f"Not shown: {laws.missing.get(law, 'no coefficients')}.", note=True)
        return
    assert laws.coefficients is not None
    block = (laws.fit_summary or {}).get(law)
    table = _coefficient_table(law, laws.coefficients, block)
    report.table(table)
    if block is None:
        report.paragraph(f"Coefficients {laws.origin}.", note=True)
    else:
        report.paragraph(_fit_sentence(block), note=True)
        if "parameterisation" in block:
            report.paragraph(_form_sentence(block["parameterisation"]), note=True)
        none = table.loc[(table.filter(like="interval") == "none").any(axis=1), "coefficient"]
        for name in none.str.split(" (", regex=False).str[0]:
            report.paragraph(f"No interval for {name}: {block.get('interval_notes', {}).get(name, NO_INTERVAL)}.", note=True)
        for warning in block["warnings"]:
            report.paragraph(f"Warning: {warning}", note=True)
    rows = runs["kind"] == KIND[law]
    if not rows.any():
        report.paragraph(f"No {KIND[law]} runs to draw against it.", note=True)
    elif law == "supervised":
        report.figure(supervised_fit_figure(runs, laws.coefficients, laws.origin), "Supervised runs with the supervised law.")
    else:
        report.figure(student_teacher_figure(runs, laws.coefficients, laws.origin), "Distilled students with the distillation law.")


def _interval(value: float, bounds: list[float] | None) -> str:
    """``[lo, hi]``, or 'none' when the bootstrap gives no interval or one that misses its own estimate."""
    if bounds is None:
        return ""
    lo, hi = (np.nan if b is None else float(b) for b in bounds)  # the fitter writes a null bound as None or NaN
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= value <= hi):
        return "none"
    return f"[{format_number(lo, 3)}, {format_number(hi, 3)}]"


def _coefficient_table(law: str, coefficients: Coefficients, block: dict[str, Any] | None) -> pd.DataFrame:
    """Coefficient, value (fitted or given), the bootstrap interval when there is one, the published value
    (unless the values are the published ones)."""
    values = getattr(coefficients, law).as_dict()
    published = getattr(load_coefficients("busbridge2025"), law).as_dict()
    intervals = block["intervals"] if block else {}
    level = block["fit"]["level"] if block else DEFAULT_LEVEL
    rows = []
    for name, value in values.items():
        row: dict[str, Any] = {"coefficient": name + _status(name, block) if block else name, "fitted" if block else "value": value}
        if intervals:
            row[f"{100 * level:g}% interval"] = _interval(value, intervals.get(name))
        row["busbridge2025"] = published.get(name)
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.drop(columns="busbridge2025") if values == published else table


def _status(name: str, block: dict[str, Any]) -> str:
    """What a fitted coefficient's value rests on, when not on the runs alone: the prior, the chosen form or
    --fix, or a bound the fit ran into (the runs do not identify it)."""
    form = block.get("parameterisation") or {}
    if name in form.get("from_prior", ()):
        return " (from the prior)"
    if name in form.get("fixed", {}):
        return f" (fixed by the form {form['name']})"
    if name in block["fit"]["fixed"]:
        return " (fixed)"
    side = block["fit"].get("at_bound", {}).get(name)
    if side:
        return f" (on its {side} bound: not identified by the runs)"
    weak = block["fit"].get("weak", {}).get(name)
    return f" ({weak}: weakly identified by the runs)" if weak else ""


def _form_sentence(form: dict[str, Any]) -> str:
    def tried(c: dict[str, Any]) -> str:
        if c["holdout_mape_pct"] != c["holdout_mape_pct"]:  # NaN: not scored
            return f"{c['name']} (not scored: {c['note']})"
        bound = f", on a bound: {', '.join(c['at_bound'])}" if c["at_bound"] else ""
        bound += f", weakly pinned: {', '.join(c['weak'])}" if c.get("weak") else ""
        return f"{c['name']} ({c['holdout_mape_pct']:.3g} %{bound})"

    return (f"Form: {form['name']}, chosen among nested parameterisations by the error on the {form['held_out']} runs of largest "
            f"compute left out of their fit: {form['reason']}. Tried (held-out MAPE): {'; '.join(map(tried, form['candidates']))}.")


def _fit_sentence(block: dict[str, Any]) -> str:
    m, info = block["metrics"]["fit"], block["fit"]
    return (f"Fitted to {m['n']} runs: RMSE {m['rmse']:.3g}, MAPE {m['mape_pct']:.3g} %, max abs error "
            f"{m['max_abs_error']:.3g} nats ({info['grid']} grid, {info['starts']:,} starts, {info['seconds']:.1f} s). "
            "A pilot of tiny models constrains only some coefficients; compare with the published ones "
            "(Busbridge et al. 2025, arXiv 2502.08606, Table 6).")


def _answerable(runs: pd.DataFrame, laws: ReportLaws) -> tuple[np.ndarray, list[str]]:
    """Rows a law can predict, and a sentence for each group it cannot (no law; teacher loss at or below E)."""
    mask = np.zeros(len(runs), dtype=bool)
    notes = []
    for law in LAWS:
        rows = (runs["kind"] == KIND[law]).to_numpy()
        if not rows.any():
            continue
        if not laws.usable(law):
            notes.append(f"{int(rows.sum())} {KIND[law]} run(s): no {law} law ({laws.missing.get(law, 'no coefficients')})")
            continue
        if law == "distillation":
            assert laws.coefficients is not None and laws.coefficients.supervised is not None
            floor = laws.coefficients.supervised.E
            below = rows & ~(runs["teacher_loss"].to_numpy(dtype=float) > floor)
            if below.any():
                notes.append(f"{int(below.sum())} distilled run(s) with a teacher loss at or below the supervised law's "
                             f"E = {floor:.4g}, where Eq. 8 has no answer")
            rows = rows & ~below
        mask |= rows
    return mask, notes


def _parity_section(report: Report, runs: pd.DataFrame, laws: ReportLaws) -> None:
    """Every run a law can predict: prediction against observation; the page says which runs are left out and why,
    and repeats the laws' extrapolation warnings (runs far outside the coefficients' range)."""
    report.heading("Every run against the laws")
    mask, notes = _answerable(runs, laws)
    if mask.any():
        assert laws.coefficients is not None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            predicted = predict_runs(runs[mask], laws.coefficients)
        report.figure(parity_figure(predicted, laws.origin), "Law prediction against observation.")
        for warning in caught:
            if issubclass(warning.category, UserWarning):
                report.paragraph(f"Warning: {warning.message}", note=True)
    for note in notes:
        report.paragraph(f"Left out: {note}.", note=True)


def add_runs_table(report: Report, runs: pd.DataFrame) -> None:
    """The closing section: every run with the runs-table columns."""
    report.heading("All runs")
    report.table(runs[[c for c in RUN_COLUMNS if c in runs.columns]])


def check_table(checks: Sequence[Check]) -> pd.DataFrame:
    """One row per prediction checked: the run, its prediction with interval, the observation, the error."""
    return pd.DataFrame([{
        "kind": c.kind, "params": c.params, "tokens": c.tokens, "teacher_loss": c.teacher_loss, "predicted": c.predicted,
        "interval": "none" if c.interval is None else f"[{format_number(c.interval[0], 4)}, {format_number(c.interval[1], 4)}]",
        "observed": c.observed, "error %": c.error, "inside": c.inside,
    } for c in checks])


def mape_by_kind(checks: Sequence[Check]) -> dict[str, float]:
    """MAPE (``fitting.metrics.prediction_metrics``) of the predictions of each kind of run (those observed)."""
    from distlaw.fitting.metrics import prediction_metrics

    out = {}
    for kind in ("supervised", "distilled"):
        seen = [c for c in checks if c.kind == kind and c.observed is not None]
        if seen:
            out[kind] = prediction_metrics([c.observed for c in seen], [c.predicted for c in seen])["mape_pct"]
    return out


def _checks_section(report: Report, result: StudyResult) -> None:
    """The fit's predictions checked: the held-out runs of largest compute, and a planned recipe trained."""
    from distlaw.design.validate_plot import draw_validation
    from distlaw.figures import new_figure
    from distlaw.study import VALIDATE_SCALE

    report.heading("Predictions checked against runs the fit did not see")
    panels = [(v, title) for v, title in ((result.extrapolation, "the largest runs, held out of the fit"),
                                          (result.validation, "a planned recipe, trained")) if v is not None]
    if panels:
        fig, axes = new_figure(len(panels))
        for ax, (validation, title) in zip(axes[0], panels):
            draw_validation(ax, validation.checks, validation.level, title)
        report.figure(fig, "Predicted against observed loss with bootstrap intervals (Busbridge et al. 2025, Fig. 5 style; dotted: ±1 %).")
    if result.extrapolation is not None:
        e = result.extrapolation
        mape = ", ".join(f"{kind} {value:.3g} %" for kind, value in mape_by_kind(e.checks).items())
        report.paragraph(f"Fitted to the smaller runs, the laws predict the {len(e.checks)} runs of largest compute with MAPE {mape}; "
                         f"{e.inside} of {e.total} observed losses fall inside their {e.level:.0%} intervals.")
        report.table(check_table(e.checks))
    if result.validation is not None:
        v = result.validation
        report.paragraph(f"A recipe planned with the fit (distlaw validate: the planner's choice for the student with "
                         f"{VALIDATE_SCALE:g} times the training compute of the largest distilled run), trained into the same store: {v.inside} of {v.total} inside its {v.level:.0%} interval.")
        report.table(check_table(v.checks))
        for name in v.failed:
            report.paragraph(f"Run {name} did not finish.", note=True)
    for check, why in result.skipped.items():
        report.paragraph(f"No {check} check: {why}.", note=True)
    for warning in dict.fromkeys([*(result.extrapolation.warnings if result.extrapolation else []),
                                  *(result.validation.warnings if result.validation else [])]):
        report.paragraph(f"Warning: {warning}", note=True)


def study_report(result: StudyResult) -> Report:
    """The report of a finished ``distlaw demo`` study: the runs report plus a plan at scale."""
    report = runs_report(
        result.runs, result.laws, title="distlaw study report",
        intro=f"Trained in {result.out_dir}, {result.seconds:.0f} s in this session. Losses are validation cross-entropy per token.",
    )
    _checks_section(report, result)
    report.heading("Planning at scale (published coefficients)")
    at_scale = pd.DataFrame(result.at_scale).drop(columns=["compute_split"], errors="ignore")
    report.paragraph("Compute-optimal recipes for a 1e9-parameter student with 1e21 FLOPs under the four scenarios of "
                     "Busbridge et al. Sec. 5, from the busbridge2025 preset. Re-run with your own coefficients: "
                     "distlaw plan --student-params N --compute C --coefficients coefficients.json")
    report.table(at_scale)
    add_runs_table(report, result.runs)
    return report

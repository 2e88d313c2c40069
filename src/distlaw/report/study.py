"""The study report: what the runs show, the fitted laws against them, and a plan at scale."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from distlaw.capacity import capacity_figure, capacity_gap
from distlaw.errors import DistlawError
from distlaw.findings import best_teachers, distillation_gains
from distlaw.laws import Coefficients, load_coefficients
from distlaw.report.html import Report
from distlaw.report.plots import parity_figure, student_teacher_figure, supervised_fit_figure
from distlaw.runs import predict_runs

if TYPE_CHECKING:
    from distlaw.study import StudyResult

RUN_COLUMNS = ["kind", "params", "tokens", "loss", "teacher_params", "teacher_tokens", "teacher_loss", "wall_time_s"]


def _coefficient_table(fit_summary: dict) -> pd.DataFrame:
    published = load_coefficients("busbridge2025")
    rows = []
    for law in ("supervised", "distillation"):
        block = fit_summary.get(law)
        if not block:
            continue
        reference = getattr(published, law).as_dict()
        for name, value in block["coefficients"].items():
            lo_hi = block.get("intervals", {}).get(name)
            rows.append({"law": law, "coefficient": name, "fitted": value,
                         "interval": "" if not lo_hi else f"[{lo_hi[0]:.3g}, {lo_hi[1]:.3g}]",
                         "busbridge2025": reference.get(name)})
    return pd.DataFrame(rows)


def _metrics_table(fit_summary: dict) -> pd.DataFrame:
    rows = []
    for law in ("supervised", "distillation"):
        block = fit_summary.get(law)
        if block:
            fit = block["metrics"].get("fit", {})
            rows.append({"law": law, "runs": fit.get("n"), "RMSE": fit.get("rmse"), "MAPE %": fit.get("mape_pct"),
                         "max abs error": fit.get("max_abs_error")})
    return pd.DataFrame(rows)


def runs_report(
    runs: pd.DataFrame,
    coefficients: Coefficients,
    fit_summary: dict | None = None,
    title: str = "distlaw report",
    intro: str = "",
) -> Report:
    """The report of any runs table: observed findings, the laws (fitted or given) against the runs."""
    report = Report(title)
    n_sup = int((runs["kind"] == "supervised").sum())
    report.paragraph(f"{len(runs)} runs ({n_sup} supervised, {len(runs) - n_sup} distilled). {intro}".strip())

    report.heading("What the runs show")
    gains, teachers = distillation_gains(runs), best_teachers(runs)
    if len(gains):
        won = int((gains["gain"] > 0).sum())
        report.paragraph(f"Distillation beat supervised training on the same tokens in {won} of {len(gains)} "
                         "student/teacher pairs (gain = supervised loss - distilled loss).")
        report.table(gains)
    if len(teachers):
        gaps = int(teachers["capacity_gap"].sum())
        report.paragraph(f"For {gaps} of {len(teachers)} student configurations the best teacher was not the "
                         "strongest one: the capacity gap (Zhang et al., arXiv 2311.07052).")
        report.table(teachers)
    if not len(gains) and not len(teachers):
        report.paragraph("No distilled run has a supervised twin or a second teacher to compare with.", note=True)
    _capacity_section(report, runs)

    report.heading("Laws against the runs")
    if fit_summary:
        report.paragraph("Coefficients fitted to these runs beside the published ones (Busbridge et al. 2025, "
                         "arXiv 2502.08606, Table 6). A pilot of tiny models constrains only some of them.", note=True)
        report.table(_coefficient_table(fit_summary))
        report.table(_metrics_table(fit_summary))
        for warning in (w for law in ("supervised", "distillation") for w in fit_summary.get(law, {}).get("warnings", [])):
            report.paragraph(f"Warning: {warning}", note=True)
    else:
        report.paragraph(f"Coefficients: {(coefficients.meta or {}).get('name', 'given file')}.", note=True)
    if coefficients.supervised is not None and (runs["kind"] == "supervised").any():
        report.figure(supervised_fit_figure(runs, coefficients), "Supervised runs with the supervised law (Eq. 1).")
    if (runs["kind"] == "distilled").any() and coefficients.distillation is not None:
        report.figure(student_teacher_figure(runs, coefficients), "Distilled students with the distillation law (Eq. 8).")
    report.figure(parity_figure(predict_runs(runs, coefficients)), "Every run: law prediction against observation.")
    return report


CAPACITY_COLUMNS = ["params", "tokens", "teachers", "teacher_star", "status", "loss_star", "argmin_teacher", "argmin_loss"]


def _capacity_section(report: Report, runs: pd.DataFrame) -> None:
    """The smooth optimal teacher of every student with three or more teacher sizes, and the law over them."""
    try:
        result = capacity_gap(runs)
    except DistlawError:  # no student has three teacher sizes: the best-teacher table above is all there is
        return
    report.paragraph("The smooth optimal teacher size T* of each student with three or more teacher sizes: the vertex of "
                     "a quadratic in ln(teacher size) fitted to the student's losses, or a bound (status 'at least' / "
                     "'at most') when the best teacher is at the edge of those tried; beside it the best single run.")
    report.table(result.curves[CAPACITY_COLUMNS])
    if result.fit is not None:
        law = result.fit.law
        report.paragraph(f"Law of capacity gap over {result.fit.students} students: T* = {law.slope:.3g} S {law.intercept:+.3g} "
                         f"(R^2 {result.fit.r2:.3f}); Zhang et al. report T* = 2.5 S.")
    else:
        report.paragraph(f"No law of capacity gap from these runs: {result.reason}", note=True)
    report.figure(capacity_figure(runs, result), "Student loss against teacher size, and the optimal teacher against the student.")


def add_runs_table(report: Report, runs: pd.DataFrame) -> None:
    """The closing section: every run with the runs-table columns."""
    report.heading("All runs")
    report.table(runs[[c for c in RUN_COLUMNS if c in runs.columns]])


def study_report(result: StudyResult) -> Report:
    """The report of a finished ``distlaw demo`` study: the runs report plus a plan at scale."""
    report = runs_report(
        result.runs, result.coefficients, result.fit_summary, title="distlaw study report",
        intro=f"Trained in {result.out_dir}, {result.seconds:.0f} s in this session. Losses are validation cross-entropy per token.",
    )
    report.heading("Planning at scale (published coefficients)")
    at_scale = pd.DataFrame(result.at_scale).drop(columns=["compute_split"], errors="ignore")
    report.paragraph("Compute-optimal recipes for a 1e9-parameter student with 1e21 FLOPs under the four scenarios of "
                     "Busbridge et al. Sec. 5, from the busbridge2025 preset. Re-run with your own coefficients: "
                     "distlaw plan --student-params N --compute C --coefficients coefficients.json")
    report.table(at_scale)
    add_runs_table(report, result.runs)
    return report

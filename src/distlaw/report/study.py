"""The study report: what the runs show, the fitted laws against them, and a plan at scale."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from distlaw.laws import load_coefficients
from distlaw.report.html import Report
from distlaw.report.plots import parity_figure, student_teacher_figure, supervised_fit_figure
from distlaw.runs import predict_runs

if TYPE_CHECKING:
    from distlaw.study import StudyResult

RUN_COLUMNS = ["kind", "params", "tokens", "loss", "teacher_params", "teacher_tokens", "teacher_loss", "wall_time_s"]


def _coefficient_table(result: StudyResult) -> pd.DataFrame:
    published = load_coefficients("busbridge2025")
    rows = []
    for law in ("supervised", "distillation"):
        block = result.fit_summary.get(law)
        if not block:
            continue
        reference = getattr(published, law).as_dict()
        for name, value in block["coefficients"].items():
            lo_hi = block.get("intervals", {}).get(name)
            rows.append({"law": law, "coefficient": name, "fitted": value,
                         "interval": "" if not lo_hi else f"[{lo_hi[0]:.3g}, {lo_hi[1]:.3g}]",
                         "busbridge2025": reference.get(name)})
    return pd.DataFrame(rows)


def _metrics_table(result: StudyResult) -> pd.DataFrame:
    rows = []
    for law in ("supervised", "distillation"):
        block = result.fit_summary.get(law)
        if block:
            fit = block["metrics"].get("fit", {})
            rows.append({"law": law, "runs": fit.get("n"), "RMSE": fit.get("rmse"), "MAPE %": fit.get("mape_pct"),
                         "max abs error": fit.get("max_abs_error")})
    return pd.DataFrame(rows)


def study_report(result: StudyResult) -> Report:
    """Build the HTML report of a finished study."""
    runs, coef = result.runs, result.coefficients
    report = Report("distlaw study report")
    n_sup = int((runs["kind"] == "supervised").sum())
    report.paragraph(f"{len(runs)} runs ({n_sup} supervised, {len(runs) - n_sup} distilled) in {result.out_dir}, "
                     f"{result.seconds:.0f} s in this session. Losses are validation cross-entropy per token.")

    report.heading("What the runs show")
    if len(result.gains):
        won = int((result.gains["gain"] > 0).sum())
        report.paragraph(f"Distillation beat supervised training on the same tokens in {won} of {len(result.gains)} "
                         "student/teacher pairs (gain = supervised loss - distilled loss).")
        report.table(result.gains)
    if len(result.teachers):
        gaps = int(result.teachers["capacity_gap"].sum())
        report.paragraph(f"For {gaps} of {len(result.teachers)} student configurations the best teacher was not the "
                         "strongest one: the capacity gap (Zhang et al., arXiv 2311.07052).")
        report.table(result.teachers)

    report.heading("Fitted laws")
    warnings = [w for law in ("supervised", "distillation") for w in result.fit_summary.get(law, {}).get("warnings", [])]
    report.paragraph("Coefficients fitted to these runs beside the published ones (Busbridge et al. 2025, "
                     "arXiv 2502.08606, Table 6). A pilot of tiny models constrains only some of them.", note=True)
    report.table(_coefficient_table(result))
    report.table(_metrics_table(result))
    for warning in warnings:
        report.paragraph(f"Warning: {warning}", note=True)
    report.figure(supervised_fit_figure(runs, coef), "Supervised runs with the fitted supervised law (Eq. 1).")
    if (runs["kind"] == "distilled").any() and coef.distillation is not None:
        report.figure(student_teacher_figure(runs, coef), "Distilled students with the fitted distillation law (Eq. 8).")
    report.figure(parity_figure(predict_runs(runs, coef)), "Every run: law prediction against observation.")

    report.heading("Planning at scale (published coefficients)")
    at_scale = pd.DataFrame(result.at_scale).drop(columns=["compute_split"], errors="ignore")
    report.paragraph("Compute-optimal recipes for a 1e9-parameter student with 1e21 FLOPs under the four scenarios of "
                     "Busbridge et al. Sec. 5, from the busbridge2025 preset. Re-run with your own coefficients: "
                     "distlaw plan --student-params N --compute C --coefficients coefficients.json")
    report.table(at_scale)

    report.heading("All runs")
    report.table(runs[[c for c in RUN_COLUMNS if c in runs.columns]])
    return report

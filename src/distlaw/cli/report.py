"""``distlaw report``: an HTML report of any runs table against fitted or given laws."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from distlaw.cli.common import console, print_json
from distlaw.errors import DistlawError


def report(
    runs: Annotated[Path, typer.Argument(help="Runs table (CSV/Parquet), e.g. from `distlaw runs export`.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the report (.html).")] = Path("report.html"),
    coefficients: Annotated[Optional[str], typer.Option("--coefficients", "-c", help="Preset or coefficients JSON to compare against; default: fit both laws to RUNS.")] = None,
    grid: Annotated[str, typer.Option(help="Start grid when fitting: coarse (fast), paper (LAWS.md, 216k distillation starts) or epoch.")] = "coarse",
    json_output: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Write a self-contained HTML report: distillation gains and the capacity gap as the runs show
    them, and the laws (fitted to RUNS, or given with --coefficients) against every run.

    Examples:

      distlaw report runs.csv --out report.html

      distlaw report runs.csv --coefficients busbridge2025 --out vs-published.html
    """
    from distlaw.laws import load_coefficients
    from distlaw.report.study import add_runs_table, runs_report
    from distlaw.runs import read_runs

    if out.suffix.lower() != ".html":
        raise DistlawError(f"{out}: the report is HTML; give a path ending in .html")
    table = read_runs(runs)
    fit_summary = None
    if coefficients is None:
        from distlaw.fitting import fit_runs

        fitted = fit_runs(table, "both", grid=grid, source=str(runs))
        coef, fit_summary = fitted.coefficients(), fitted.summary()
    else:
        coef = load_coefficients(coefficients)
    document = runs_report(table, coef, fit_summary, title=f"distlaw report: {runs.name}")
    add_runs_table(document, table)
    document.write(out)
    if json_output:
        print_json({"report": str(out), "runs": len(table), "coefficients": coefficients or "fitted", "fit": fit_summary})
    else:
        console.print(f"wrote {out} ({len(table)} runs, laws: {coefficients or 'fitted to the runs'})")


def register(app: typer.Typer) -> None:
    app.command()(report)

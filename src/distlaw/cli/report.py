"""``distlaw report``: an HTML report of any runs table against fitted or given laws."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from distlaw.cli.common import console, err_console, print_json
from distlaw.cli.fit import parse_fix
from distlaw.errors import DistlawError
from distlaw.io import check_output_path


def report(
    runs: Annotated[Path, typer.Argument(help="Runs table (CSV/Parquet), e.g. from `distlaw runs export`.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the report (.html, in an existing folder).")] = Path("report.html"),
    coefficients: Annotated[Optional[str], typer.Option("--coefficients", "-c", help="Preset or coefficients JSON to compare against; default: fit both laws to RUNS.")] = None,
    fix: Annotated[Optional[list[str]], typer.Option("--fix", help="When fitting, hold a coefficient fixed: NAME=VALUE (as in `distlaw fit`, e.g. gamma=1). Repeatable.")] = None,
    prior: Annotated[Optional[str], typer.Option("--prior", help="When fitting, choose each law's form with this preset or coefficients JSON as prior (as in `distlaw fit --prior`).")] = None,
    grid: Annotated[Optional[str], typer.Option("--grid", help="Start grid when fitting: coarse (default, fast), paper (216k distillation starts) or epoch.")] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", "-b", help="Bootstrap resamples for intervals of the fitted coefficients and the optimal teacher sizes (0: none).")] = 0,
    level: Annotated[float, typer.Option("--level", help="Confidence level of the bootstrap intervals.")] = 0.95,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="With --prior: processes fitting the candidate forms side by side (default: the cores available).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Write a self-contained HTML report: distillation gains and the capacity gap as the runs show
    them, and the laws (fitted to RUNS, or given with --coefficients) against every run.

    A law the runs cannot fit (say, 3 supervised runs for 6 free coefficients) is left out and the
    page says why; everything else is still reported.

    Examples:

      distlaw report runs.csv --out report.html

      distlaw report runs.csv --fix gamma=1 --bootstrap 100 --out report.html

      distlaw report runs.csv --prior busbridge2025 --out report.html

      distlaw report runs.csv --coefficients busbridge2025 --out vs-published.html
    """
    check_output_path(out, (".html",), "report")
    fixed = parse_fix(fix)
    if coefficients is not None and (fixed or grid is not None or prior is not None):
        raise DistlawError("--fix, --grid and --prior apply when fitting the laws; with --coefficients nothing is fitted")
    from distlaw.laws import load_coefficients
    from distlaw.report.study import LAWS, add_runs_table, check_interval_options, fit_laws, given_laws, runs_report
    from distlaw.runs import read_runs

    check_interval_options(bootstrap, level)
    coef = load_coefficients(coefficients) if coefficients is not None else None
    prior_coef = load_coefficients(prior) if prior is not None else None
    table = read_runs(runs)
    if coef is None:
        from distlaw.fitting.optimizer import available_cores

        laws = fit_laws(table, fixed=fixed, grid=grid or "coarse", bootstrap=bootstrap, level=level, source=str(runs),
                        prior=prior_coef, prior_name=prior, workers=workers or available_cores())
    else:
        laws = given_laws(coef, coefficients or "")
    document = runs_report(table, laws, title=f"distlaw report: {runs.name}", bootstrap=bootstrap, level=level)
    add_runs_table(document, table)
    document.write(out)
    if json_output:
        print_json({"report": str(out), "runs": len(table), "coefficients": coefficients or "fitted", **laws.summary()})
        return
    for law in LAWS:
        if law in laws.missing:
            err_console.print(f"[bold yellow]note:[/] no {law} law in the report: {laws.missing[law]}", highlight=False, soft_wrap=True)
    console.print(f"wrote {out} ({len(table)} runs, laws {laws.origin})", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(report)

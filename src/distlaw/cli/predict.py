"""``distlaw predict``: losses from the laws, for one configuration or every row of a runs table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


from distlaw.cli.common import console, print_json, print_table, print_warnings
from distlaw.errors import DistlawError
from distlaw.io import TABLE_SUFFIXES, check_output_path, write_table
from distlaw.laws import DEFAULT_PRESET, Coefficients, load_coefficients
from distlaw.laws.domain import recorded_warnings
from distlaw.laws.prediction import predict as predict_losses
from distlaw.runs import predict_runs, read_runs

CoefficientsOption = Annotated[
    str,
    typer.Option("--coefficients", "-c", help="Preset name (busbridge2025, hoffmann2022, epoch2024) or a coefficients JSON file."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def predict(
    runs: Annotated[Optional[Path], typer.Argument(help="Runs table (CSV/Parquet); with --out, adds predicted_loss to every row.")] = None,
    params: Annotated[Optional[float], typer.Option("--params", "-n", help="Student non-embedding parameters N.")] = None,
    tokens: Annotated[Optional[float], typer.Option("--tokens", "-d", help="Training/distillation tokens D.")] = None,
    teacher_loss: Annotated[Optional[float], typer.Option(help="Teacher cross-entropy L_T (nats/token); must lie above the supervised law's floor E.")] = None,
    teacher_params: Annotated[Optional[float], typer.Option(help="Teacher parameters N_T (with --teacher-tokens: L_T from the supervised law).")] = None,
    teacher_tokens: Annotated[Optional[float], typer.Option(help="Teacher training tokens D_T.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write the runs table with predicted_loss (.csv/.parquet; its folder must exist).")] = None,
    coefficients: CoefficientsOption = DEFAULT_PRESET,
    json_output: JsonOption = False,
) -> None:
    """Predict cross-entropy (nats/token) from the supervised law and, with a teacher, the distillation law.

    Without a teacher only the supervised law is used, so a supervised-only coefficients file
    (distlaw fit --law supervised) works; so does a runs table with only supervised rows.

    A teacher loss at or below the supervised law's floor E is refused (no model reaches it).
    Inputs far outside the range the coefficients were fitted or published on (their
    meta.domain) are answered with a "warning:" line on stderr (and "warnings" in JSON):
    far = more than 10x beyond their sizes or tokens, or a teacher loss whose excess over E is
    more than 2x beyond theirs.

    JSON: {"supervised_loss", "teacher_loss", "student_loss", "warnings"}; for a runs table
    {"rows", "out", "warnings"}.

    Examples:

      distlaw predict --params 5.46e8 --tokens 1.092e10 --teacher-loss 2.2

      distlaw predict --params 1e9 --tokens 2e10 --teacher-params 7e9 --teacher-tokens 1.4e11 --json

      distlaw predict runs.csv --out predicted.csv --coefficients fitted.json

    runs.csv is your runs table (columns in the README) or what distlaw runs export writes;
    fitted.json is what distlaw fit runs.csv --out fitted.json writes.
    """
    if runs is not None:
        if out is None:
            raise DistlawError("predict RUNS needs --out PRED.csv")
        check_output_path(out, TABLE_SUFFIXES, "predictions table")
        _predict_table(runs, out, load_coefficients(coefficients), json_output)
        return
    if out is not None:
        raise DistlawError("--out writes a runs table's predictions: give the runs table (distlaw predict RUNS --out PRED.csv)")
    if params is None or tokens is None:
        raise DistlawError("give --params and --tokens (or a runs table with --out)")
    coef = load_coefficients(coefficients)
    with recorded_warnings() as notes:
        result = predict_losses(coef, params, tokens, teacher_loss, teacher_params, teacher_tokens)
    print_warnings(notes)
    if json_output:
        print_json(result.record())
        return
    rows = [["supervised loss", result.supervised_loss]]
    if result.teacher_loss is not None:
        rows += [["teacher loss", result.teacher_loss], ["student loss (distilled)", result.student_loss]]
    print_table(f"N={params:.4g}, D={tokens:.4g}, coefficients={coefficients}", ["quantity", "nats/token"], rows)


def _predict_table(runs: Path, out: Path, coef: Coefficients, json_output: bool) -> None:
    """``predict RUNS --out``: every row's predicted loss, written atomically."""
    with recorded_warnings() as notes:
        table = predict_runs(read_runs(runs, need_loss=False), coef)
    write_table(table, out)
    print_warnings(notes)
    if json_output:
        print_json({"rows": len(table), "out": str(out), "warnings": notes})
    else:
        console.print(f"wrote {len(table)} rows with predicted_loss to {out}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(predict)

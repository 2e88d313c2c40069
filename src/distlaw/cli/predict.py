"""``distlaw predict``: losses from the laws, for one configuration or every row of a runs table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from distlaw.cli.common import console, print_json, print_table
from distlaw.errors import DistlawError
from distlaw.io import write_table
from distlaw.laws import DEFAULT_PRESET, load_coefficients, student_loss, supervised_loss
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
    teacher_loss: Annotated[Optional[float], typer.Option(help="Teacher cross-entropy L_T (nats/token).")] = None,
    teacher_params: Annotated[Optional[float], typer.Option(help="Teacher parameters N_T (with --teacher-tokens: L_T from the supervised law).")] = None,
    teacher_tokens: Annotated[Optional[float], typer.Option(help="Teacher training tokens D_T.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write the runs table with predicted_loss (.csv/.parquet).")] = None,
    coefficients: CoefficientsOption = DEFAULT_PRESET,
    json_output: JsonOption = False,
) -> None:
    """Predict cross-entropy (nats/token) from the supervised law and, with a teacher, the distillation law.

    Examples:

      distlaw predict --params 5.46e8 --tokens 1.092e10 --teacher-loss 2.2

      distlaw predict --params 1e9 --tokens 2e10 --teacher-params 7e9 --teacher-tokens 1.4e11 --json

      distlaw predict runs.csv --out predicted.csv --coefficients fitted.json
    """
    coef = load_coefficients(coefficients)
    if runs is not None:
        if out is None:
            raise DistlawError("predict RUNS needs --out PRED.csv")
        table = predict_runs(read_runs(runs, need_loss=False), coef)
        write_table(table, out)
        if json_output:
            print_json({"rows": len(table), "out": str(out)})
        else:
            console.print(f"wrote {len(table)} rows with predicted_loss to {out}")
        return
    if params is None or tokens is None:
        raise DistlawError("give --params and --tokens (or a runs table with --out)")
    if teacher_loss is not None and (teacher_params is not None or teacher_tokens is not None):
        raise DistlawError("give either --teacher-loss or --teacher-params with --teacher-tokens, not both")
    if (teacher_params is None) != (teacher_tokens is None):
        raise DistlawError("--teacher-params and --teacher-tokens go together")
    sup = coef.require("supervised")
    result: dict[str, float | None] = {"supervised_loss": float(supervised_loss(params, tokens, sup))}
    if teacher_params is not None:
        teacher_loss = float(supervised_loss(teacher_params, teacher_tokens, sup))
        result["teacher_loss"] = teacher_loss
    result["student_loss"] = (
        float(student_loss(params, tokens, teacher_loss, coef)) if teacher_loss is not None else None
    )
    if json_output:
        print_json(result)
        return
    rows = [["supervised loss", result["supervised_loss"]]]
    if teacher_loss is not None:
        rows += [["teacher loss", teacher_loss], ["student loss (distilled)", result["student_loss"]]]
    print_table(f"N={params:.4g}, D={tokens:.4g}, coefficients={coefficients}", ["quantity", "nats/token"], rows)


def register(app: typer.Typer) -> None:
    app.command()(predict)

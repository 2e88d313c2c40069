"""The runs table: one row per trained model, the input of ``distlaw fit`` and ``distlaw predict``.

Columns: ``kind`` (``supervised`` or ``distilled``), ``params`` (non-embedding), ``tokens``,
``loss``; distilled rows also ``teacher_loss`` (required) and ``teacher_params``,
``teacher_tokens`` (recommended). Other columns pass through untouched.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from distlaw.errors import DistlawError
from distlaw.io import read_table

if TYPE_CHECKING:
    from distlaw.laws import Coefficients

KINDS = ("supervised", "distilled")
REQUIRED_COLUMNS = ("kind", "params", "tokens", "loss")
TEACHER_COLUMNS = ("teacher_params", "teacher_tokens", "teacher_loss")


def _check_positive(df: pd.DataFrame, column: str, rows: pd.Series, source: str, required: bool) -> None:
    values = pd.to_numeric(df.loc[rows, column], errors="coerce")
    raw = df.loc[rows, column]
    unparsable = values.isna() & raw.notna()
    missing = values.isna() & raw.isna()
    bad = unparsable | (required & missing) | np.isinf(values) | (values <= 0)
    if bad.any():
        index = bad[bad].index[0]
        value = raw.loc[index]
        shown = "missing" if pd.isna(value) else f"{float(value):g}" if isinstance(value, (int, float, np.number)) else repr(value)
        line = int(index) + 2  # header is line 1
        raise DistlawError(f"{source}: row {line} column '{column}': expected a positive finite number, got {shown}")


def validate_runs(df: pd.DataFrame, source: str = "runs table", need_loss: bool = True) -> pd.DataFrame:
    """Check a runs table and return it with numeric columns as floats; errors name row and column."""
    needed = [c for c in REQUIRED_COLUMNS if need_loss or c != "loss"]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DistlawError(f"{source}: missing column(s) {', '.join(missing)} (have: {', '.join(map(str, df.columns))})")
    if df.empty:
        raise DistlawError(f"{source}: no rows")
    df = df.reset_index(drop=True).copy()
    kinds = df["kind"].astype(str).str.strip().str.lower()
    unknown = ~kinds.isin(KINDS)
    if unknown.any():
        index = int(unknown[unknown].index[0])
        raise DistlawError(f"{source}: row {index + 2} column 'kind': expected supervised or distilled, got {df.loc[index, 'kind']!r}")
    df["kind"] = kinds
    everyone = pd.Series(True, index=df.index)
    for column in needed[1:]:
        _check_positive(df, column, everyone, source, required=True)
        df[column] = pd.to_numeric(df[column])
    distilled = kinds == "distilled"
    if distilled.any():
        if "teacher_loss" not in df.columns:
            raise DistlawError(f"{source}: distilled rows need a 'teacher_loss' column")
        for column in TEACHER_COLUMNS:
            if column in df.columns:
                _check_positive(df, column, distilled, source, required=column == "teacher_loss")
                df[column] = pd.to_numeric(df[column], errors="coerce")
    return df


def read_runs(path: str | os.PathLike[str], need_loss: bool = True) -> pd.DataFrame:
    """Read and validate a runs table from CSV or Parquet."""
    return validate_runs(read_table(path), source=str(path), need_loss=need_loss)


def row_labels(df: pd.DataFrame) -> list[str]:
    """"row N" for each row of a validated table, as the file numbers it (the header is line 1)."""
    return [f"row {int(i) + 2}" for i in df.index]


def predict_runs(runs: pd.DataFrame, coefficients: "Coefficients") -> pd.DataFrame:
    """Copy of a validated runs table with ``predicted_loss``: supervised law for supervised rows,
    distillation law (Busbridge Eq. 8) for distilled rows.

    Supervised rows need only the supervised law. Inputs are checked as ``distlaw.laws.domain``
    does: a teacher loss at or below E is refused naming its row; rows far outside the
    coefficients' range are warned on (``ExtrapolationWarning``).
    """
    from distlaw.laws import student_loss, supervised_loss
    from distlaw.laws.domain import check_domain

    out = runs.copy()
    predicted = np.full(len(out), np.nan)
    supervised = (out["kind"] == "supervised").to_numpy()
    sup = coefficients.require("supervised", "predicting every row")
    check_domain(coefficients, row_labels(out), params=out["params"], tokens=out["tokens"])
    if supervised.any():
        predicted[supervised] = supervised_loss(out.loc[supervised, "params"], out.loc[supervised, "tokens"], sup)
    if (~supervised).any():
        coefficients.require("distillation", "the distilled rows of the runs table")
        rows = out.loc[~supervised]
        check_domain(coefficients, row_labels(rows), teacher_loss=rows["teacher_loss"])
        predicted[~supervised] = student_loss(rows["params"], rows["tokens"], rows["teacher_loss"], coefficients)
    out["predicted_loss"] = predicted
    return out

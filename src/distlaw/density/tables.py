"""Column checks shared by the density tables; every error names the file, row and column."""

from __future__ import annotations

import numpy as np
import pandas as pd

from distlaw.errors import DistlawError


def require_columns(df: pd.DataFrame, columns: tuple[str, ...], source: str) -> None:
    """A DistlawError listing the missing columns (and the ones present), or for an empty table."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DistlawError(f"{source}: missing column(s) {', '.join(missing)} (have: {', '.join(map(str, df.columns))})")
    if df.empty:
        raise DistlawError(f"{source}: no rows")


def numeric_column(
    df: pd.DataFrame, column: str, source: str, positive: bool = True, allow_missing: bool = False
) -> np.ndarray:
    """``df[column]`` as floats: finite (and positive); blanks become NaN only with ``allow_missing``."""
    raw = df[column].reset_index(drop=True)
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = (~np.isfinite(values) & ~(allow_missing & raw.isna().to_numpy())) | (positive & (values <= 0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        shown = "missing" if pd.isna(raw.iloc[row]) else repr(raw.iloc[row])
        kind = "a positive finite number" if positive else "a finite number"
        raise DistlawError(f"{source}: row {row + 2} column '{column}': expected {kind}, got {shown}")
    return values

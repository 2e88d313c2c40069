"""The densing law's trend (Xiao et al. 2024, arXiv 2412.04315, Sec. 3): ln rho_max = A t + B.

t is days since an origin (Llama-1's release, 2023-02-24, by default). The fit runs on the
running-maximum envelope: the models whose density exceeds that of every model released before
them. The doubling time is ln 2 / A; its interval comes from the regression's standard error
(a Student-t interval on A with n - 2 degrees of freedom, mapped through ln 2 / A), so two
envelope points give an unbounded interval.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from scipy import stats

from distlaw.errors import DistlawError
from distlaw.density.tables import numeric_column, require_columns
from distlaw.intervals import check_level
from distlaw.io import read_table
from distlaw.laws.density import doubling_time

LLAMA1_RELEASE = date(2023, 2, 24)


@dataclass(frozen=True)
class TrendFit:
    """ln rho_max = A t + B on the envelope; ``doubling_days_ci`` bounds may be 0 / inf (unbounded)."""

    A_per_day: float
    B: float
    A_se: float
    r2: float
    doubling_days: float
    doubling_days_ci: tuple[float, float]
    envelope: list[str]
    origin: date
    n_models: int
    level: float

    def to_dict(self) -> dict[str, object]:
        return {
            "A_per_day": self.A_per_day,
            "B": self.B,
            "A_se": self.A_se,
            "r2": self.r2,
            "doubling_days": self.doubling_days,
            "doubling_days_ci": list(self.doubling_days_ci),
            "level": self.level,
            "envelope": self.envelope,
            "origin": self.origin.isoformat(),
            "n_models": self.n_models,
        }


def read_dated_models(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a models table and validate it (see :func:`validate_dated_models`)."""
    return validate_dated_models(read_table(path), source=str(path))


def validate_dated_models(df: pd.DataFrame, source: str = "models table") -> pd.DataFrame:
    """Columns model, release_date (YYYY-MM-DD), params, and density or effective_params.

    Returns model, release_date (datetime64) and density; errors name the row and column.
    """
    require_columns(df, ("model", "release_date", "params"), source)
    if "density" not in df.columns and "effective_params" not in df.columns:
        raise DistlawError(f"{source}: needs a 'density' or an 'effective_params' column (have: {', '.join(map(str, df.columns))})")
    df = df.reset_index(drop=True)
    dates = pd.to_datetime(df["release_date"].astype(str).str.strip(), format="%Y-%m-%d", errors="coerce")
    if dates.isna().any():
        row = int(dates.isna().idxmax())
        raise DistlawError(
            f"{source}: row {row + 2} column 'release_date': expected a date YYYY-MM-DD, got {df.loc[row, 'release_date']!r}"
        )
    params = numeric_column(df, "params", source)
    if "density" in df.columns:
        density = numeric_column(df, "density", source)
    else:
        density = numeric_column(df, "effective_params", source) / params
    return pd.DataFrame({"model": df["model"].astype(str), "release_date": dates, "density": density})


def envelope_mask(days: np.ndarray, density: np.ndarray) -> np.ndarray:
    """True for models denser than every model released strictly earlier (densest one per date)."""
    order = np.lexsort((-density, days))
    sorted_density = density[order]
    earlier_max = np.concatenate(([-np.inf], np.maximum.accumulate(sorted_density)[:-1]))
    mask = np.zeros(len(days), dtype=bool)
    mask[order] = sorted_density > earlier_max
    return mask


def fit_trend(models: pd.DataFrame, origin: date = LLAMA1_RELEASE, level: float = 0.95) -> TrendFit:
    """Least-squares fit of ln rho = A t + B over the running-maximum envelope of ``models``, with a
    ``level`` interval on the doubling time."""
    check_level(level)
    days = ((models["release_date"] - pd.Timestamp(origin)).dt.days).to_numpy(dtype=float)
    density = models["density"].to_numpy(dtype=float)
    on = envelope_mask(days, density)
    n = int(on.sum())
    if n < 2:
        raise DistlawError(
            f"only {n} model on the running-maximum density envelope; the trend needs at least two "
            "(models released later and denser than all earlier ones)"
        )
    t, y = days[on], np.log(density[on])
    fit = stats.linregress(t, y)
    slope_se = float(fit.stderr) if n > 2 else np.inf
    half = float(stats.t.ppf(0.5 + level / 2, n - 2)) * slope_se if n > 2 else np.inf
    lo, hi = doubling_time([fit.slope + half, fit.slope - half])
    order = np.argsort(t, kind="stable")
    return TrendFit(
        A_per_day=float(fit.slope),
        B=float(fit.intercept),
        A_se=slope_se,
        r2=float(fit.rvalue**2),
        doubling_days=float(doubling_time(fit.slope)),
        doubling_days_ci=(float(lo), float(hi)),
        envelope=models["model"].to_numpy()[on][order].tolist(),
        origin=origin,
        n_models=len(models),
        level=level,
    )

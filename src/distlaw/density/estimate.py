"""Two-step density estimation (Xiao et al. 2024, arXiv 2412.04315, Sec. 2): fit, invert, score.

Reference table (CSV/Parquet), one row per reference model: ``params`` (non-embedding N),
``tokens`` (D), ``loss`` (conditional loss on the benchmark) and ``score`` (its downstream score;
a blank score keeps the row in step 1 only); ``model`` names rows if present. Step 1 fits the
loss law on (N, D, loss), step 2 the sigmoid on (loss, score), both through :func:`distlaw.fitting.fit`
(multi-start L-BFGS, Huber loss); a bootstrap resamples each step's rows.

Models table for scoring: ``model``, ``params`` and ``score``. Each model's effective size is
Nhat(S), its density Nhat / N, with a status per model (:func:`score_status`); intervals are
bootstrap percentiles that contain their estimate, or none.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from distlaw.density.models import LOSS_LAW, SCORE_LAW, loss_starts, score_starts
from distlaw.density.tables import numeric_column, require_columns
from distlaw.errors import DistlawError
from distlaw.fitting import fit
from distlaw.intervals import check_level, interval_around, interval_notes
from distlaw.io import read_table
from distlaw.laws.coefficients import positive_array
from distlaw.laws.density import (
    D0_TOKENS,
    DensityCoefficients,
    LossLawCoefficients,
    ScoreLawCoefficients,
    effective_params,
    effective_status,
)

MIN_ROWS = 5  # four coefficients per step, plus one degree of freedom
LIMIT_FRACTION = 0.01  # scores this close (share of the sigmoid's range c) to d or c + d are at its limit
BELOW_FAMILY_FACTOR = 10.0  # effective sizes this many times below the smallest reference model
OUT_OF_RANGE, AT_LIMIT, BELOW_FAMILY = "out of range", "at the sigmoid's limit", "below the reference family"


def read_reference(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate a reference table (see the module docstring)."""
    return validate_reference(read_table(path), source=str(path))


def validate_reference(df: pd.DataFrame, source: str = "reference table") -> pd.DataFrame:
    """model, params, tokens, loss (positive) and score (finite or blank) as a clean frame."""
    require_columns(df, ("params", "tokens", "loss", "score"), source)
    out = pd.DataFrame(
        {
            "model": df["model"].astype(str).to_numpy() if "model" in df.columns else [f"ref{i + 1}" for i in range(len(df))],
            "params": numeric_column(df, "params", source),
            "tokens": numeric_column(df, "tokens", source),
            "loss": numeric_column(df, "loss", source),
            "score": numeric_column(df, "score", source, positive=False, allow_missing=True),
        }
    )
    scored = int(out["score"].notna().sum())
    if len(out) < MIN_ROWS or scored < MIN_ROWS:
        raise DistlawError(
            f"{source}: {len(out)} reference rows ({scored} with a score); each step fits 4 coefficients and needs at least {MIN_ROWS}"
        )
    return out


def read_models(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate a models table (see :func:`validate_models`)."""
    return validate_models(read_table(path), source=str(path))


def validate_models(df: pd.DataFrame, source: str = "models") -> pd.DataFrame:
    """model, params (positive) and score (finite) as a clean frame."""
    require_columns(df, ("model", "params", "score"), source)
    return pd.DataFrame(
        {
            "model": df["model"].astype(str).to_numpy(),
            "params": numeric_column(df, "params", source),
            "score": numeric_column(df, "score", source, positive=False),
        }
    )


def fit_density(
    reference: pd.DataFrame, d0: float = D0_TOKENS, bootstrap: int = 0, seed: int = 0
) -> DensityCoefficients:
    """Fit both steps on a validated reference table; ``bootstrap`` resamples per step, paired by index."""
    positive_array(d0, "d0")
    scored = reference[reference["score"].notna()]
    loss_data = {k: reference[c].to_numpy(dtype=float, copy=True) for k, c in (("N", "params"), ("D", "tokens"), ("loss", "loss"))}
    score_data = {k: scored[c].to_numpy(dtype=float, copy=True) for k, c in (("L", "loss"), ("score", "score"))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)  # constant columns: NaN, refused below
        rho = stats.spearmanr(score_data["L"], score_data["score"]).statistic
    if not rho < 0:
        raise DistlawError("the (loss, score) rows show no falling score with rising loss: the sigmoid cannot be fitted")
    loss_fit = fit(LOSS_LAW, loss_data, grid=loss_starts(*loss_data.values()), bootstrap=bootstrap, seed=seed)
    score_fit = fit(SCORE_LAW, score_data, grid=score_starts(*score_data.values()), bootstrap=bootstrap, seed=seed + 1)
    stuck = [name for name in ("c", "gamma") if name in score_fit.at_bound]
    if stuck:
        raise DistlawError(f"the sigmoid fit is degenerate ({', '.join(stuck)} on a bound): the scores do not trace a sigmoid in the loss")
    loss = LossLawCoefficients(**loss_fit.coefficients)
    score = ScoreLawCoefficients(**score_fit.coefficients)
    samples = [{"loss": lb, "score": sb} for lb, sb in zip(loss_fit.bootstrap, score_fit.bootstrap)]
    meta = {
        "method": "Xiao et al. 2024, arXiv 2412.04315 (two-step)",
        "reference_rows": len(reference),
        "reference_params": [float(reference["params"].min()), float(reference["params"].max())],
        "scored_rows": len(scored),
        "loss_fit": loss_fit.metrics["fit"],
        "score_fit": score_fit.metrics["fit"],
        "warnings": loss_fit.warnings + score_fit.warnings,
    }
    return DensityCoefficients(loss=loss, score=score, d0=d0, bootstrap=samples or None, meta=meta)


def score_models(
    models: pd.DataFrame, coefficients: DensityCoefficients, d0: float | None = None, level: float = 0.95
) -> pd.DataFrame:
    """Effective size, density and a :func:`score_status` per model; ``level`` bootstrap percentile
    intervals when the coefficients carry samples.

    Every row is scored: one the inversion cannot answer (status ``out of range`` or ``at the
    sigmoid's limit``) gets NaN sizes; ``unbounded`` gets an infinite size; ``below the reference
    family`` keeps its (extrapolated) size. An interval that does not contain its own estimate is
    NaN, with the reason in ``interval_note``.
    """
    check_level(level)
    k = coefficients
    horizon = k.d0 if d0 is None else float(positive_array(d0, "d0"))
    scores = models["score"].to_numpy(dtype=float)
    params = models["params"].to_numpy(dtype=float)
    status = score_status(scores, k, horizon)
    answered = np.isin(status, ("ok", "unbounded", BELOW_FAMILY))
    nhat = np.where(answered, effective_params(scores, k.loss, k.score, horizon), np.nan)
    out = models[["model", "params", "score"]].reset_index(drop=True).copy()
    out["effective_params"] = nhat
    out["density"] = nhat / params
    samples = k.samples()
    if samples:
        draws = np.stack([effective_params(scores, lb, sb, horizon) for lb, sb in samples])
        lo_n, hi_n, holds = interval_around(nhat, draws, level)
        out["effective_params_lo"], out["effective_params_hi"] = lo_n, hi_n
        out["density_lo"], out["density_hi"] = lo_n / params, hi_n / params
        notes = [note if ok else None for note, ok in zip(interval_notes(draws, holds), answered)]
        out["interval_note"] = pd.Series(notes, dtype=object)  # None, not NaN, where the interval holds
    out["status"] = status
    return out


def score_status(scores: ArrayLike, coefficients: DensityCoefficients, d0: float) -> np.ndarray:
    """Per score, the first that applies (Xiao et al.'s inversion, :mod:`distlaw.laws.density`):

    - ``out of range``: outside the sigmoid's open range (d, c + d): no reference size matches it;
    - ``unbounded``: the reference family cannot reach it at D0 tokens (Lhat at or under b D0^-beta);
    - ``at the sigmoid's limit``: within LIMIT_FRACTION of the range from either end, where
      dLhat/dS = 1 / (gamma c u (1 - u)), u = (S - d) / c, amplifies a score's error over 25x more
      than mid-sigmoid (u = 1/2): the inversion is ill-conditioned and its size is not reported;
    - ``below the reference family``: the effective size is more than BELOW_FAMILY_FACTOR times
      smaller than the smallest reference model (``meta["reference_params"]``, recorded by
      :func:`fit_density`; files without it skip this check): an extrapolation;
    - ``ok`` otherwise.
    """
    k = coefficients
    s = np.asarray(scores, dtype=float)
    lo, hi = k.score.score_range
    u = (s - lo) / k.score.c
    with np.errstate(invalid="ignore"):
        nhat = effective_params(s, k.loss, k.score, d0)
    smallest = (k.meta or {}).get("reference_params", [0.0])[0]
    status = np.full(s.shape, "ok", dtype=object)
    status[nhat < smallest / BELOW_FAMILY_FACTOR] = BELOW_FAMILY
    status[(u < LIMIT_FRACTION) | (u > 1 - LIMIT_FRACTION)] = AT_LIMIT
    status[effective_status(s, k.loss, k.score, d0) == "unbounded"] = "unbounded"
    status[(s <= lo) | (s >= hi)] = OUT_OF_RANGE
    return status.astype(str)


def out_of_range_message(model: str, score: float, coefficients: DensityCoefficients) -> str:
    """The one-line refusal of a single model whose score the fitted sigmoid cannot produce."""
    lo, hi = coefficients.score.score_range
    return (f"model '{model}': score {score:g} is out of range: the fitted sigmoid only reaches "
            f"scores in ({lo:.4g}, {hi:.4g}), so no reference size matches it")

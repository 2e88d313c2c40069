"""Two-step density estimation (Xiao et al. 2024, arXiv 2412.04315, Sec. 2): fit, invert, score.

Reference table (CSV/Parquet), one row per reference model: ``params`` (non-embedding N),
``tokens`` (D), ``loss`` (conditional loss on the benchmark) and ``score`` (its downstream score;
a blank score keeps the row in step 1 only); ``model`` names rows if present. Step 1 fits the
loss law on (N, D, loss), step 2 the sigmoid on (loss, score), both through :func:`distlaw.fitting.fit`
(multi-start L-BFGS, Huber loss); a bootstrap resamples each step's rows.

Models table for scoring: ``model``, ``params`` and ``score``. Each model's effective size is
Nhat(S), its density Nhat / N; intervals are bootstrap percentiles.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from scipy import stats

from distlaw.density.models import LOSS_LAW, SCORE_LAW, loss_starts, score_starts
from distlaw.density.tables import numeric_column, require_columns
from distlaw.errors import DistlawError
from distlaw.fitting import fit
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
    if stats.spearmanr(score_data["L"], score_data["score"]).statistic >= 0:
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
        "scored_rows": len(scored),
        "loss_fit": loss_fit.metrics["fit"],
        "score_fit": score_fit.metrics["fit"],
        "warnings": loss_fit.warnings + score_fit.warnings,
    }
    return DensityCoefficients(loss=loss, score=score, d0=d0, bootstrap=samples or None, meta=meta)


def score_models(
    models: pd.DataFrame, coefficients: DensityCoefficients, d0: float | None = None, confidence: float = 0.95
) -> pd.DataFrame:
    """Effective size and density per model, with bootstrap percentile intervals when samples exist.

    A score outside the sigmoid's range (d, c + d) is a DistlawError naming the model; a score the
    reference family cannot reach at D0 tokens gets status "unbounded" and an infinite size.
    """
    k = coefficients
    horizon = k.d0 if d0 is None else float(positive_array(d0, "d0"))
    scores = models["score"].to_numpy(dtype=float)
    status = effective_status(scores, k.loss, k.score, horizon)
    outside = np.flatnonzero(np.char.endswith(status, "range"))
    if outside.size:
        i = int(outside[0])
        lo, hi = k.score.score_range
        raise DistlawError(
            f"model '{models['model'].iloc[i]}': score {scores[i]:g} is out of range: the fitted sigmoid "
            f"only reaches scores in ({lo:.4g}, {hi:.4g}), so no reference size matches it"
        )
    params = models["params"].to_numpy(dtype=float)
    nhat = effective_params(scores, k.loss, k.score, horizon)
    out = models[["model", "params", "score"]].reset_index(drop=True).copy()
    out["effective_params"] = nhat
    out["density"] = nhat / params
    samples = k.samples()
    if samples:
        draws = np.stack([effective_params(scores, lb, sb, horizon) for lb, sb in samples])
        tail = (1 - confidence) / 2
        lo_n, hi_n = np.quantile(draws, [tail, 1 - tail], axis=0, method="inverted_cdf")
        out["effective_params_lo"], out["effective_params_hi"] = lo_n, hi_n
        out["density_lo"], out["density_hi"] = lo_n / params, hi_n / params
    out["status"] = status
    return out

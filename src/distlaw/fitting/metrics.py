"""Prediction-quality metrics on the loss itself (not its log): RMSE, MAPE and max abs error."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def prediction_metrics(observed: ArrayLike, predicted: ArrayLike) -> dict[str, float | int]:
    """``{"n", "rmse", "mape_pct", "max_abs_error", "rms_log_error"}``; MAPE is in percent of the observed loss,
    ``rms_log_error`` the root mean square of log(predicted / observed) (the fit's residual scale).

    An empty set gives ``n = 0`` and NaN metrics (JSON ``null``)."""
    obs = np.asarray(observed, dtype=float).ravel()
    pred = np.asarray(predicted, dtype=float).ravel()
    if obs.size == 0:
        return {"n": 0, "rmse": float("nan"), "mape_pct": float("nan"), "max_abs_error": float("nan"), "rms_log_error": float("nan")}
    err = pred - obs
    with np.errstate(all="ignore"):
        log_err = np.log(pred / obs)
    return {
        "n": int(obs.size),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mape_pct": float(100.0 * np.mean(np.abs(err) / np.abs(obs))),
        "max_abs_error": float(np.max(np.abs(err))),
        "rms_log_error": float(np.sqrt(np.mean(log_err**2))),
    }

"""The densing law's two steps as law models for the batched fitter (Xiao et al. 2024, arXiv 2412.04315).

- ``LOSS_LAW``: L(N, D) = a N^-alpha + b D^-beta, fitted on log L (like Busbridge App. F).
- ``SCORE_LAW``: S(L) = c / (1 + exp(-gamma (L - l))) + d, fitted on S itself (scores may be 0).

Both evaluate :mod:`distlaw.laws.density`, the single definition of the math. Good starting points
depend on the data's scales, so :func:`loss_starts` and :func:`score_starts` derive a few from the
data by variable projection (each law is linear in two of its coefficients); pass them as the
fitter's ``grid``. The static grids below are only the fallback of a plain ``fit(LOSS_LAW, ...)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from distlaw.errors import DistlawError
from distlaw.fitting import LawModel, Parameter
from distlaw.fitting.models import Tensor
from distlaw.laws.density import log_conditional_loss, score_from_loss


def _prepare_loss(data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"log_N": np.log(data["N"]), "log_D": np.log(data["D"])}


def _predict_loss(p: Mapping[str, Tensor], x: Mapping[str, Tensor]) -> Tensor:
    return log_conditional_loss(x["log_N"], x["log_D"], p["log_a"], p["log_b"], p["alpha"], p["beta"])


LOSS_LAW = LawModel(
    name="density-loss",
    parameters=(
        Parameter("a", log=True, grid=(0.0, 2.5, 5.0, 10.0), bounds=(-20.0, 50.0)),
        Parameter("b", log=True, grid=(0.0, 2.5, 5.0, 10.0), bounds=(-20.0, 50.0)),
        Parameter("alpha", grid=(0.1, 0.3, 0.6, 1.0), bounds=(1e-4, 5.0)),
        Parameter("beta", grid=(0.1, 0.3, 0.6, 1.0), bounds=(1e-4, 5.0)),
    ),
    inputs=("N", "D"),
    prepare=_prepare_loss,
    log_predict=_predict_loss,
    target="loss",
    description="L(N, D) = a N^-alpha + b D^-beta",
    citation="Xiao et al. 2024, arXiv 2412.04315, loss estimation",
)


def _predict_score(p: Mapping[str, Tensor], x: Mapping[str, Tensor]) -> Tensor:
    return score_from_loss(x["L"], p["log_c"].exp(), p["gamma"], p["l"], p["d"])


SCORE_LAW = LawModel(
    name="density-score",
    parameters=(
        Parameter("c", log=True, grid=(np.log(0.5), 0.0), bounds=(-20.0, 10.0)),
        Parameter("gamma", grid=(-1.0, -4.0, -16.0), bounds=(-1e6, -1e-8)),
        Parameter("l", grid=(1.0, 2.0, 4.0)),
        Parameter("d", grid=(0.0, 0.25)),
    ),
    inputs=("L",),
    log_predict=_predict_score,
    target="score",
    log_target=False,
    description="S(L) = c / (1 + exp(-gamma (L - l))) + d",
    citation="Xiao et al. 2024, arXiv 2412.04315, performance estimation",
)


def _linear_fits(basis: np.ndarray, target: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Variable projection: for each of K bases (K, runs, 2), the weighted least-squares linear
    coefficients (K, 2) of ``basis @ coef ~ target`` and their residual sums of squares (K,)."""
    weighted = basis * weight[None, :, None]
    coef = np.einsum("kij,j->ki", np.linalg.pinv(weighted), target * weight)
    residual = np.einsum("kij,kj->ki", weighted, coef) - (target * weight)[None, :]
    return coef, np.sum(residual**2, axis=1)


def loss_starts(n: np.ndarray, d: np.ndarray, loss: np.ndarray, keep: int = 4) -> np.ndarray:
    """Starts for ``LOSS_LAW`` in fit space (log a, log b, alpha, beta): on a grid of exponents the
    law is linear in (a, b), solved by least squares on relative residuals; the best fits win."""
    alpha, beta = (g.ravel() for g in np.meshgrid(np.linspace(0.02, 2.0, 23), np.linspace(0.02, 2.0, 23)))
    basis = np.stack([n[None, :] ** -alpha[:, None], d[None, :] ** -beta[:, None]], axis=-1)
    coef, rss = _linear_fits(basis, loss, 1.0 / loss)
    best = np.argsort(rss)[:keep]
    return np.column_stack([np.log(np.maximum(coef[best], 1e-8)), alpha[best], beta[best]])


def score_starts(loss: np.ndarray, score: np.ndarray, keep: int = 4) -> np.ndarray:
    """Starts for ``SCORE_LAW`` in fit space (log c, gamma, l, d): on a grid of (gamma, l) the
    sigmoid is linear in (c, d), solved by least squares; the best fits with c > 0 win."""
    spread = float(np.ptp(loss)) or 1.0
    slopes, centres = np.meshgrid(-np.geomspace(0.25, 64.0, 19) / spread, np.linspace(loss.min() - spread, loss.max() + spread, 25))
    gamma, l = slopes.ravel(), centres.ravel()  # noqa: E741
    sigmoid = score_from_loss(loss[None, :], 1.0, gamma[:, None], l[:, None], 0.0)
    coef, rss = _linear_fits(np.stack([sigmoid, np.ones_like(sigmoid)], axis=-1), score, np.ones_like(score))
    best = [k for k in np.argsort(rss) if coef[k, 0] > 0][:keep]
    if not best:
        raise DistlawError("the (loss, score) rows show no falling score with rising loss: the sigmoid cannot be fitted")
    return np.column_stack([np.log(coef[best, 0]), gamma[best], l[best], coef[best, 1]])

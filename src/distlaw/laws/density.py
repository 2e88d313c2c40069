"""Densing law (Xiao et al. 2024, arXiv 2412.04315, Sec. 2-3) as pure, vectorized math.

Capacity density of a model M with N_M parameters and downstream score S_M is
rho(M) = Nhat(S_M) / N_M, where Nhat is the size a reference family needs for the same score:

    loss estimation          L(N, D) = a N^-alpha + b D^-beta
    performance estimation   S(L)    = c / (1 + exp(-gamma (L - l))) + d
    inversion                Lhat(S) = l - (1/gamma) ln(c / (S - d) - 1)
                             Nhat(S) = ((Lhat(S) - b D0^-beta) / a)^(-1/alpha),  D0 = 1T tokens

L is the conditional loss -log P(answer | prompt) on the benchmark's test instances. A score
falls as the loss rises, so gamma < 0 in this sign convention and Nhat grows with S. The
sigmoid only reaches scores in (d, c + d); a score at or beyond an asymptote maps to the
monotone limit (Nhat = 0 below, Nhat = inf above), and a score whose Lhat is at or under the
data floor b D0^-beta needs an unbounded reference model (Nhat = inf). Callers turn those
limits into messages with :func:`effective_status`; nothing here returns NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, field_validator

from distlaw.laws._ops import logaddexp, namespace, softplus
from distlaw.laws.coefficients import CoefficientBlock, CoefficientsFile, positive_array, positive_fields

D0_TOKENS = 1e12
LN2 = math.log(2.0)


class LossLawCoefficients(CoefficientBlock):
    """L(N, D) = a N^-alpha + b D^-beta (Xiao, loss estimation; no irreducible term)."""

    a: float
    b: float
    alpha: float
    beta: float

    _positive = positive_fields("a", "b", "alpha", "beta")


class ScoreLawCoefficients(CoefficientBlock):
    """S(L) = c / (1 + exp(-gamma (L - l))) + d (Xiao, performance estimation); c > 0, gamma < 0."""

    c: float
    gamma: float
    l: float  # noqa: E741 - the paper's name
    d: float

    @field_validator("c")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be positive (the sigmoid's score range)")
        return value

    @field_validator("gamma")
    @classmethod
    def _negative(cls, value: float) -> float:
        if value >= 0:
            raise ValueError("must be negative (scores fall as the loss rises)")
        return value

    @property
    def score_range(self) -> tuple[float, float]:
        """The open interval (d, c + d) of scores the sigmoid can produce."""
        return self.d, self.c + self.d


def log_conditional_loss(log_n: Any, log_d: Any, log_a: Any, log_b: Any, alpha: Any, beta: Any) -> Any:
    """log L = LSE(log a - alpha log N, log b - beta log D); NumPy or (batched) torch."""
    return logaddexp(log_a - alpha * log_n, log_b - beta * log_d)


def score_from_loss(loss: Any, c: Any, gamma: Any, l: Any, d: Any) -> Any:  # noqa: E741
    """S = c sigmoid(gamma (L - l)) + d, with sigmoid(x) = exp(-softplus(-x)) (overflow-free)."""
    xp = namespace(loss, c, gamma, l, d)
    return c * xp.exp(-softplus(-(gamma * (loss - l)))) + d


def conditional_loss(params: ArrayLike, tokens: ArrayLike, coefficients: LossLawCoefficients) -> np.ndarray:
    """Predicted conditional loss L(N, D); ``tokens`` may be ``inf``."""
    k = coefficients
    log_n = np.log(positive_array(params, "params"))
    log_d = np.log(positive_array(tokens, "tokens", allow_inf=True))
    return np.exp(log_conditional_loss(log_n, log_d, math.log(k.a), math.log(k.b), k.alpha, k.beta))


def loss_for_score(score: ArrayLike, coefficients: ScoreLawCoefficients) -> np.ndarray:
    """Lhat(S) = l - (1/gamma) ln(c / (S - d) - 1); +inf below the range, -inf above it."""
    k = coefficients
    u = np.clip((np.asarray(score, dtype=float) - k.d) / k.c, 0.0, 1.0)
    with np.errstate(divide="ignore"):
        logit = np.log(u) - np.log1p(-u)  # = -ln(c / (S - d) - 1)
    return k.l + logit / k.gamma


def loss_floor(coefficients: LossLawCoefficients, d0: float = D0_TOKENS) -> float:
    """b D0^-beta: the loss of an infinitely large reference model trained on D0 tokens."""
    return coefficients.b * d0**-coefficients.beta


def params_for_loss(loss: ArrayLike, coefficients: LossLawCoefficients, d0: float = D0_TOKENS) -> np.ndarray:
    """Nhat = ((L - b D0^-beta) / a)^(-1/alpha); inf where L is at or under the floor, 0 at L = inf."""
    k = coefficients
    excess = np.asarray(loss, dtype=float) - loss_floor(k, d0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_n = -(np.log(np.where(excess > 0, excess, 1.0)) - math.log(k.a)) / k.alpha
        return np.where(excess > 0, np.exp(log_n), np.inf)


def effective_params(
    score: ArrayLike, loss_law: LossLawCoefficients, score_law: ScoreLawCoefficients, d0: float = D0_TOKENS
) -> np.ndarray:
    """Nhat(S): the reference size with the same score (0 below the sigmoid's range, inf above it)."""
    return params_for_loss(loss_for_score(score, score_law), loss_law, d0)


def effective_status(
    score: ArrayLike, loss_law: LossLawCoefficients, score_law: ScoreLawCoefficients, d0: float = D0_TOKENS
) -> np.ndarray:
    """Per score: "ok", "below range", "above range" (outside (d, c + d)) or "unbounded" (Lhat <= floor)."""
    s = np.asarray(score, dtype=float)
    lo, hi = score_law.score_range
    unbounded = loss_for_score(s, score_law) <= loss_floor(loss_law, d0)
    status = np.where(unbounded, "unbounded", "ok").astype(object)
    status[s <= lo] = "below range"
    status[s >= hi] = "above range"
    return status.astype(str)


def doubling_time(rate: ArrayLike) -> np.ndarray:
    """ln 2 / A for a growth rate A of ln rho per unit time (inf where A <= 0: no doubling)."""
    a = np.asarray(rate, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(a > 0, LN2 / np.where(a > 0, a, 1.0), np.inf)


class DensityLaw(BaseModel):
    """One coefficient set of both steps (a fit, or one bootstrap sample of it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loss: LossLawCoefficients
    score: ScoreLawCoefficients


class DensityCoefficients(DensityLaw, CoefficientsFile):
    """Both steps' coefficients, the data horizon D0, optional bootstrap samples and metadata.

    JSON: {"loss": {a, b, alpha, beta}, "score": {c, gamma, l, d}, "d0": 1e12,
           "bootstrap": [{"loss": {...}, "score": {...}}, ...], "meta": {...}}
    """

    d0: float = D0_TOKENS
    bootstrap: list[DensityLaw] | None = None
    meta: dict[str, Any] | None = None

    @field_validator("d0")
    @classmethod
    def _positive_d0(cls, value: float) -> float:
        if not (math.isfinite(value) and value > 0):
            raise ValueError("must be a positive number of tokens")
        return value

    def samples(self) -> list[tuple[LossLawCoefficients, ScoreLawCoefficients]]:
        """Bootstrap samples as coefficient pairs (empty if none were stored)."""
        return [(sample.loss, sample.score) for sample in self.bootstrap or []]

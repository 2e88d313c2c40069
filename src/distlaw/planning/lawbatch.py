"""Both laws with their coefficients as arrays, one row per problem, for batched planning.

A ``LawBatch`` holds one coefficient set (a point estimate) or many (bootstrap samples);
``take`` assigns a row to every problem, and the log-space law functions of ``distlaw.laws``
(Busbridge et al. 2025, arXiv 2502.08606, Eqs. 1 and 8) then broadcast over (problem, grid...) arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distlaw.errors import DistlawError
from distlaw.laws import Coefficients, log_student_loss, log_supervised_loss

SUPERVISED_KEYS = ("E", "A", "B", "alpha", "beta", "gamma")
DISTILLATION_KEYS = ("A", "B", "alpha", "beta", "gamma", "c0", "c1", "f1", "d1")
PURPOSE = "planning distillation against supervised training"


def _column(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Reshape per-problem ``values`` (P,) to broadcast against ``like`` (P, ...)."""
    return values.reshape(values.shape + (1,) * (np.ndim(like) - 1))


@dataclass(frozen=True)
class LawBatch:
    """Coefficient arrays of shape (K,) for the supervised (``sup``) and distillation (``dist``) laws."""

    sup: dict[str, np.ndarray]
    dist: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.sup["E"])

    @classmethod
    def point(cls, coefficients: Coefficients) -> LawBatch:
        """The coefficients' point estimate as a batch of one."""
        sup = coefficients.require("supervised", PURPOSE).as_dict()
        dist = coefficients.require("distillation", PURPOSE).as_dict()
        return cls({k: np.array([sup[k]]) for k in SUPERVISED_KEYS}, {k: np.array([dist[k]]) for k in DISTILLATION_KEYS})

    @classmethod
    def bootstrap(cls, coefficients: Coefficients) -> LawBatch:
        """One row per bootstrap sample; a law without samples repeats its point estimate.

        Supervised sample i is paired with distillation sample i (truncated to the shorter list).
        """
        sup = [s.as_dict() for s in coefficients.samples("supervised")]
        dist = [s.as_dict() for s in coefficients.samples("distillation")]
        if not sup and not dist:
            source = (coefficients.meta or {}).get("name", "these coefficients")
            raise DistlawError(f"{source} have no bootstrap samples (run `distlaw fit --bootstrap`)")
        n = min(len(sup) or len(dist), len(dist) or len(sup))
        sup = sup[:n] or [coefficients.require("supervised", PURPOSE).as_dict()] * n
        dist = dist[:n] or [coefficients.require("distillation", PURPOSE).as_dict()] * n
        return cls(
            {k: np.array([row[k] for row in sup]) for k in SUPERVISED_KEYS},
            {k: np.array([row[k] for row in dist]) for k in DISTILLATION_KEYS},
        )

    @classmethod
    def rows(cls, sup: np.ndarray, dist: np.ndarray | None = None) -> LawBatch:
        """One row per fitted problem: natural coefficients (P, 6) of Eq. 1 and (P, 9) of Eq. 8 in
        ``SUPERVISED_KEYS`` / ``DISTILLATION_KEYS`` order (the fitter's parameter order); no ``dist``:
        a batch that only evaluates the supervised law."""
        return cls({k: sup[:, j] for j, k in enumerate(SUPERVISED_KEYS)},
                   {} if dist is None else {k: dist[:, j] for j, k in enumerate(DISTILLATION_KEYS)})

    def take(self, rows: np.ndarray) -> LawBatch:
        """The coefficient rows ``rows`` (one per problem)."""
        return LawBatch({k: v[rows] for k, v in self.sup.items()}, {k: v[rows] for k, v in self.dist.items()})

    def log_supervised(self, log_n: np.ndarray, log_d: np.ndarray) -> np.ndarray:
        """log L(N, D) (Eq. 1) with this batch's rows along axis 0."""
        c = {k: _column(v, np.broadcast(log_n, log_d)) for k, v in self.sup.items()}
        return log_supervised_loss(
            log_n, log_d, np.log(c["E"]), np.log(c["A"]), np.log(c["B"]), c["alpha"], c["beta"], c["gamma"]
        )

    def log_student(self, log_ns: np.ndarray, log_ds: np.ndarray, log_lt: np.ndarray) -> np.ndarray:
        """log L_S(N_S, D_S, L_T) (Eq. 8), with Ltilde_S from the supervised law."""
        like = np.broadcast(log_ns, log_ds, log_lt)
        c = {k: _column(v, like) for k, v in self.dist.items()}
        return log_student_loss(
            log_ns, log_ds, log_lt, self.log_supervised(log_ns, log_ds),
            np.log(c["A"]), np.log(c["B"]), c["alpha"], c["beta"], c["gamma"], c["c0"], c["c1"], c["f1"], np.log(c["d1"]),
        )

    def log_tokens_for_loss(self, log_n: np.ndarray, log_loss: np.ndarray) -> np.ndarray:
        """log D with L(N, D) = loss (Eq. 1 inverted): B / D^beta = (L - E)^(1/gamma) - A / N^alpha.

        NaN where a model of size N cannot reach ``loss`` with any number of tokens.
        """
        c = {k: _column(v, np.broadcast(log_n, log_loss)) for k, v in self.sup.items()}
        with np.errstate(invalid="ignore", divide="ignore"):
            excess = np.log(np.exp(log_loss) - c["E"]) / c["gamma"]
            log_a = np.log(c["A"]) - c["alpha"] * log_n
            log_rest = excess + np.log1p(-np.exp(log_a - excess))
            return np.where(log_a < excess, (np.log(c["B"]) - log_rest) / c["beta"], np.nan)

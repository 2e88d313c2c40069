"""Supervised scaling law (Busbridge et al. 2025, arXiv 2502.08606, Eq. 1; Hoffmann et al. 2022).

    L(N, D) = E + (A / N^alpha + B / D^beta)^gamma

N: non-embedding parameters, D: training tokens, L: cross-entropy in nats/token.
gamma = 1 is Chinchilla's form. Evaluated in log space with log-sum-exp (App. F) so
that N, D anywhere in 1e6..1e17 (and beyond) never overflow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from distlaw.laws._ops import logaddexp
from distlaw.laws.coefficients import SupervisedCoefficients, positive_array


def log_supervised_loss(
    log_n: Any, log_d: Any, log_e: Any, log_a: Any, log_b: Any, alpha: Any, beta: Any, gamma: Any
) -> Any:
    """log L = LSE(log E, gamma * LSE(log A - alpha log N, log B - beta log D)).

    Pure and broadcasting; accepts NumPy arrays or torch tensors (the fitter's batched form).
    """
    reducible = logaddexp(log_a - alpha * log_n, log_b - beta * log_d)
    return logaddexp(log_e, gamma * reducible)


def supervised_loss(params: ArrayLike, tokens: ArrayLike, coefficients: SupervisedCoefficients) -> np.ndarray:
    """Predicted supervised cross-entropy L(N, D); ``tokens`` may be ``inf`` (infinite-data limit)."""
    log_n = np.log(positive_array(params, "params"))
    log_d = np.log(positive_array(tokens, "tokens", allow_inf=True))
    c = coefficients
    return np.exp(
        log_supervised_loss(log_n, log_d, np.log(c.E), np.log(c.A), np.log(c.B), c.alpha, c.beta, c.gamma)
    )

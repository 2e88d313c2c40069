"""Distillation scaling law (Busbridge et al. 2025, arXiv 2502.08606, Eq. 8).

    L_S = L_T + L_T^(-c0) (1 + (L_T / (Ltilde_S d1))^(1/f1))^(-c1 f1) (A'/N_S^alpha' + B'/D_S^beta')^gamma'

L_T: teacher cross-entropy; Ltilde_S = L(N_S, D_S), the supervised law for the same student
on the same tokens; the capacity-gap transition sits at L_T / Ltilde_S = d1. Log form (App. F):

    log L_S = LSE(log L_T, -c0 log L_T - c1 f1 softplus((log L_T - log Ltilde_S - log d1) / f1)
                           + gamma' LSE(log A' - alpha' log N_S, log B' - beta' log D_S))
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from distlaw.laws._ops import logaddexp, softplus
from distlaw.laws.coefficients import Coefficients, positive_array
from distlaw.laws.domain import check_teacher_loss
from distlaw.laws.supervised import supervised_loss


def log_student_loss(
    log_ns: Any,
    log_ds: Any,
    log_lt: Any,
    log_ltilde: Any,
    log_a: Any,
    log_b: Any,
    alpha: Any,
    beta: Any,
    gamma: Any,
    c0: Any,
    c1: Any,
    f1: Any,
    log_d1: Any,
) -> Any:
    """Log of Eq. 8 with primed coefficients; pure and broadcasting over NumPy or torch inputs."""
    gap = -c1 * f1 * softplus((log_lt - log_ltilde - log_d1) / f1)
    reducible = gamma * logaddexp(log_a - alpha * log_ns, log_b - beta * log_ds)
    return logaddexp(log_lt, -c0 * log_lt + gap + reducible)


def student_loss(
    student_params: ArrayLike,
    student_tokens: ArrayLike,
    teacher_loss: ArrayLike,
    coefficients: Coefficients,
) -> np.ndarray:
    """Predicted distilled-student cross-entropy L_S(N_S, D_S, L_T) (Eq. 8).

    Ltilde_S comes from ``coefficients.supervised`` at the same (N_S, D_S). A teacher loss at or
    below the supervised law's floor E is refused (``distlaw.laws.domain.check_teacher_loss``).
    """
    dist = coefficients.require("distillation", "the distilled student's loss")
    sup = coefficients.require("supervised", "the distilled student's loss (Ltilde_S)")
    ns = positive_array(student_params, "student params")
    ds = positive_array(student_tokens, "student tokens", allow_inf=True)
    lt = positive_array(teacher_loss, "teacher loss")
    check_teacher_loss(coefficients, lt)
    ltilde = supervised_loss(ns, ds, sup)
    return np.exp(
        log_student_loss(
            np.log(ns), np.log(ds), np.log(lt), np.log(ltilde),
            np.log(dist.A), np.log(dist.B), dist.alpha, dist.beta, dist.gamma,
            dist.c0, dist.c1, dist.f1, np.log(dist.d1),
        )
    )

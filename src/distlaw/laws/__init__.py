"""The laws as pure, vectorized math (log space, log-sum-exp) and their published presets."""

from distlaw.laws.coefficients import Coefficients, DistillationCoefficients, SupervisedCoefficients
from distlaw.laws.distillation import log_student_loss, student_loss
from distlaw.laws.presets import DEFAULT_PRESET, PRESETS, load_coefficients
from distlaw.laws.supervised import log_supervised_loss, supervised_loss

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "Coefficients",
    "DistillationCoefficients",
    "SupervisedCoefficients",
    "load_coefficients",
    "log_student_loss",
    "log_supervised_loss",
    "student_loss",
    "supervised_loss",
]

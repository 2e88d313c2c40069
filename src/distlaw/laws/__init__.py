"""The laws as pure, vectorized math (log space, log-sum-exp), their published presets, and what
their coefficients can answer (``domain``: the range behind them; ``predict``: one checked prediction)."""

from distlaw.laws.coefficients import Coefficients, DistillationCoefficients, SupervisedCoefficients
from distlaw.laws.distillation import log_student_loss, student_loss
from distlaw.laws.domain import Domain, ExtrapolationWarning, check_domain
from distlaw.laws.prediction import Prediction, predict
from distlaw.laws.presets import DEFAULT_PRESET, PRESETS, load_coefficients
from distlaw.laws.supervised import log_supervised_loss, supervised_loss

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "Coefficients",
    "DistillationCoefficients",
    "Domain",
    "ExtrapolationWarning",
    "Prediction",
    "SupervisedCoefficients",
    "check_domain",
    "load_coefficients",
    "log_student_loss",
    "log_supervised_loss",
    "predict",
    "student_loss",
    "supervised_loss",
]

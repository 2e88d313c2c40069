"""distlaw: distillation scaling laws, capacity gap and densing law.

Plan (``distlaw.planning``), run (``distlaw.lab``), fit (``distlaw.fitting``) and
report (``distlaw.report``) distillation studies with the laws of Busbridge et al.
(arXiv 2502.08606), Zhang et al. (arXiv 2311.07052) and Xiao et al. (arXiv 2412.04315).
"""

from distlaw.errors import DistlawError
from distlaw.laws import (
    Coefficients,
    DistillationCoefficients,
    SupervisedCoefficients,
    load_coefficients,
    student_loss,
    supervised_loss,
)

__version__ = "0.1.0"

__all__ = [
    "Coefficients",
    "DistillationCoefficients",
    "DistlawError",
    "SupervisedCoefficients",
    "load_coefficients",
    "student_loss",
    "supervised_loss",
]

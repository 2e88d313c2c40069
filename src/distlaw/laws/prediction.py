"""One prediction from the laws, as ``distlaw predict`` gives it: supervised loss, and with a teacher
the distilled student's loss (Busbridge et al. 2025, arXiv 2502.08606, Eqs. 1 and 8).

The inputs are checked against what the coefficients can answer (``distlaw.laws.domain``): a
teacher loss at or below E is refused, inputs far outside the coefficients' range are warned on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from distlaw.errors import DistlawError
from distlaw.laws.coefficients import Coefficients, positive_array
from distlaw.laws.distillation import student_loss
from distlaw.laws.domain import check_domain
from distlaw.laws.supervised import supervised_loss


@dataclass(frozen=True)
class Prediction:
    """Losses in nats/token; ``teacher_loss`` and ``student_loss`` are None without a teacher."""

    supervised_loss: float
    teacher_loss: float | None = None
    student_loss: float | None = None
    warnings: list[str] = field(default_factory=list)

    def record(self) -> dict:
        """JSON-ready values (the ``distlaw predict --json`` object)."""
        return asdict(self)


def _teacher(teacher_loss: float | None, teacher_params: float | None, teacher_tokens: float | None) -> None:
    """Refuse a half-given or doubly-given teacher."""
    if teacher_loss is not None and (teacher_params is not None or teacher_tokens is not None):
        raise DistlawError("give either the teacher's loss or its params with its tokens, not both")
    if (teacher_params is None) != (teacher_tokens is None):
        raise DistlawError("the teacher's params and tokens go together (L_T = L(N_T, D_T), Eq. 1)")


def predict(
    coefficients: Coefficients,
    params: float,
    tokens: float,
    teacher_loss: float | None = None,
    teacher_params: float | None = None,
    teacher_tokens: float | None = None,
) -> Prediction:
    """L(N, D) and, given a teacher (its loss, or its size and tokens), L_S(N, D, L_T).

    Without a teacher only the supervised law is needed (a supervised-only coefficients file works).
    ``tokens`` may be inf: the infinite-data limit (an extrapolation, warned on like any other).
    """
    _teacher(teacher_loss, teacher_params, teacher_tokens)
    n, d = float(positive_array(params, "params")), float(positive_array(tokens, "tokens", allow_inf=True))
    if teacher_params is not None:
        teacher_params = float(positive_array(teacher_params, "teacher params"))
        teacher_tokens = float(positive_array(teacher_tokens, "teacher tokens"))
    if teacher_loss is not None:
        teacher_loss = float(positive_array(teacher_loss, "teacher loss"))
    sup = coefficients.require("supervised", "every prediction")
    if teacher_params is not None:
        teacher_loss = float(supervised_loss(teacher_params, teacher_tokens, sup))
    if teacher_loss is not None:
        coefficients.require("distillation", "a distilled student's loss")
    notes = check_domain(
        coefficients, params=n, tokens=d, teacher_params=teacher_params, teacher_tokens=teacher_tokens, teacher_loss=teacher_loss
    )
    distilled = None if teacher_loss is None else float(student_loss(n, d, teacher_loss, coefficients))
    return Prediction(float(supervised_loss(n, d, sup)), teacher_loss, distilled, notes)

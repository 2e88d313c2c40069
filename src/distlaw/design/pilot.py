"""What a pilot is and what it is for, without torch (so commands check their arguments first): the runs of
a pilot (:class:`Pilot`) and their cost (Busbridge et al. 2025, Eq. 9), the prediction it should pin down
(:class:`Target`), and the largest model a budget affords."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from distlaw.errors import DistlawError
from distlaw.laws import Coefficients, student_loss, supervised_loss

TEACHER_INFERENCE = 2.0  # forward FLOPs per parameter and token of an online teacher (Eq. 9)


@dataclass(frozen=True, eq=False)
class Pilot:
    """Runs of a pilot: supervised (``sup_params``, ``sup_tokens``) and distilled (``dist_params``,
    ``dist_tokens``, ``dist_teacher``: index of the teacher among the supervised runs)."""

    sup_params: np.ndarray
    sup_tokens: np.ndarray
    dist_params: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dist_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dist_teacher: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    label: str = ""

    @property
    def runs(self) -> int:
        return len(self.sup_params) + len(self.dist_params)

    def flops(self) -> float:
        """Training compute 6 N D of every run plus online teacher inference 2 N_T D_S (Eq. 9)."""
        sup = 6.0 * np.sum(self.sup_params * self.sup_tokens)
        teachers = self.sup_params[self.dist_teacher] if len(self.dist_params) else np.zeros(0)
        dist = np.sum((6.0 * self.dist_params + TEACHER_INFERENCE * teachers) * self.dist_tokens)
        return float(sup + dist)

    def shortest_run(self) -> float:
        """The fewest tokens any run trains on."""
        return float(np.concatenate([self.sup_tokens, self.dist_tokens]).min())


@dataclass(frozen=True)
class Measured:
    """Losses of a pilot's runs already trained, kept as they are in every replicate (NaN: not trained yet,
    drawn): the supervised runs', and the distilled runs' teacher and own losses."""

    sup_loss: np.ndarray
    dist_teacher_loss: np.ndarray
    dist_loss: np.ndarray


@dataclass(frozen=True)
class Target:
    """The prediction a pilot is for: a student of ``params`` on ``tokens``, distilled from a teacher of
    loss ``teacher_loss`` (None: trained supervised)."""

    params: float
    tokens: float
    teacher_loss: float | None = None

    def truth(self, coefficients: Coefficients) -> float:
        if self.teacher_loss is None:
            return float(supervised_loss(self.params, self.tokens, coefficients.require("supervised")))
        return float(student_loss(self.params, self.tokens, self.teacher_loss, coefficients))

    def label(self) -> str:
        """``L(N params, D tokens[, teacher loss L_T])``, as tables and config headers name it."""
        teacher = "" if self.teacher_loss is None else f", teacher loss {self.teacher_loss:.4g}"
        return f"L({self.params:.4g} params, {self.tokens:.4g} tokens{teacher})"

    def record(self) -> dict[str, float | None]:
        return {"params": self.params, "tokens": self.tokens, "teacher_loss": self.teacher_loss}


def as_targets(target: Target | Sequence[Target]) -> tuple[Target, ...]:
    """One target or several (a pilot for several predictions at once) as a tuple."""
    return (target,) if isinstance(target, Target) else tuple(target)


def half_width(width: float | None, plus: str = "±") -> str:
    """A width of predicted / true (a central interval, as a fraction) as '±x.xx %'; 'unbounded' when the pilot
    cannot identify the target (infinite or null width)."""
    return "unbounded" if width is None or not np.isfinite(width) else f"{plus}{50 * width:.2f} %"


TEACHER_SHARE = 8  # the largest pilot model is one whose M = 20 teacher run costs at most 1/8 of the budget


def largest_size(budget: float, max_params: float) -> float:
    """The largest pilot model: its M = 20 run costs 1/TEACHER_SHARE of the budget (capped at ``max_params``)."""
    return float(min(max_params, np.sqrt(budget / (TEACHER_SHARE * 6 * 20))))


def check_budget(budget: float, max_params: float, min_params: float) -> float:
    """The largest pilot model of ``budget``; a one-line DistlawError when it is below ``min_params`` (a budget
    smaller than one useful run)."""
    if not (np.isfinite(budget) and budget > 0):
        raise DistlawError(f"the budget must be a positive number of FLOPs, got {budget:g}")
    top = largest_size(budget, max_params)
    if top < min_params:
        raise DistlawError(f"a budget of {budget:.3g} FLOPs is too small for a pilot: a teacher run (20 tokens per parameter, at most "
                           f"1/{TEACHER_SHARE} of the budget) could have {top:.3g} parameters, below --min-params {min_params:.3g}")
    return top


def family_sizes(aspect_ratio: int, head_dim: int) -> Callable[[float, float], np.ndarray]:
    """The non-embedding sizes of a [model] family's shapes (d_model = aspect_ratio x layers) in [lo, hi]:
    a pilot's runs are models the lab builds exactly (the sweep's ``Sizer``)."""
    from distlaw.lab.architectures import Sizer

    sizer = Sizer(aspect_ratio, head_dim)
    return lambda lo, hi: np.array(sizer.sizes_between(lo, hi, n_ctx=1, vocab_size=2), dtype=float)

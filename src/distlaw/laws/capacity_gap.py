"""Law of capacity gap (Zhang et al., "Towards the Law of Capacity Gap in Distilling Language
Models", arXiv 2311.07052, Fig. 4) as pure, vectorized math.

For each student scale S there is an optimal teacher scale T*: a larger teacher than T* gives a
worse student (the curse of capacity gap). Zhang et al. find T* linear in S:

    T*(S) = slope * S + intercept          inverse:  S*(T) = (T - intercept) / slope

reported as T* ~ 2.5 S (preset ``zhang2023``: slope 2.5, intercept 0). Secondary sources quote
T* ~ 2.498 S - 11.498 (R^2 0.996) with units not confirmed (millions of parameters, probably);
it is not a preset. Units: S, T* and the intercept are parameter counts in one unit, the unit of
the fit's inputs (a runs table's ``params`` column); with intercept 0 the law is unit-free.
The line is evaluated directly: parameter counts up to ~1e300 cannot overflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from pydantic import ConfigDict

from distlaw.errors import DistlawError
from distlaw.laws.coefficients import CoefficientBlock, CoefficientsFile, positive_array, positive_fields


class CapacityGapLaw(CoefficientBlock):
    """T* = slope S + intercept (Zhang et al. 2023, Fig. 4); slope > 0, intercept in parameters."""

    slope: float
    intercept: float = 0.0

    _positive = positive_fields("slope")

    @property
    def min_student(self) -> float:
        """The smallest student scale with a positive optimal teacher (0 unless intercept < 0)."""
        return max(0.0, -self.intercept / self.slope)


class CapacityGapCoefficients(CoefficientsFile):
    """A fitted (or preset) law with optional bootstrap samples and metadata.

    JSON: {"law": {"slope", "intercept"}, "bootstrap": [{"slope", "intercept"}, ...], "meta": {...}}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    law: CapacityGapLaw
    bootstrap: list[CapacityGapLaw] | None = None
    meta: dict[str, Any] | None = None


PRESETS: dict[str, dict[str, Any]] = {
    "zhang2023": {
        "law": {"slope": 2.5, "intercept": 0.0},
        "meta": {"name": "zhang2023", "citation": "Zhang et al. 2023, arXiv 2311.07052: T* ~ 2.5 S"},
    },
}


def load_capacity_law(preset_or_path: str | Path) -> CapacityGapCoefficients:
    """A preset by name (``zhang2023``), or a coefficients JSON from ``distlaw capacity fit``."""
    key = str(preset_or_path)
    if key in PRESETS:
        return CapacityGapCoefficients.model_validate(PRESETS[key])
    path = Path(key)
    if path.suffix.lower() != ".json" and not path.exists():
        raise DistlawError(f"unknown capacity-gap preset '{key}' (presets: {', '.join(PRESETS)}; or a path to a .json file)")
    return CapacityGapCoefficients.load(path)


def teacher_scale(student: Any, slope: Any, intercept: Any) -> Any:
    """slope S + intercept; pure and broadcasting (NumPy or torch), no domain check."""
    return slope * student + intercept


def student_scale(teacher: Any, slope: Any, intercept: Any) -> Any:
    """(T - intercept) / slope, the inverse of :func:`teacher_scale`; pure and broadcasting, no domain check."""
    return (teacher - intercept) / slope


def optimal_teacher(student_params: ArrayLike, law: CapacityGapLaw) -> np.ndarray:
    """T*(S) for student sizes S; a DistlawError where the law gives no positive teacher."""
    s = positive_array(student_params, "student params")
    t = teacher_scale(s, law.slope, law.intercept)
    if (t <= 0).any():
        first = float(s.flat[int(np.flatnonzero(t <= 0)[0])])
        raise DistlawError(
            f"student {first:g} is outside the law's domain (T* = {law.slope:g} S {law.intercept:+g} "
            f"is positive only for S > {law.min_student:g})"
        )
    return t


def optimal_student(teacher_params: ArrayLike, law: CapacityGapLaw) -> np.ndarray:
    """The inverse S*(T) = (T - intercept) / slope: the student a teacher of size T suits best."""
    t = positive_array(teacher_params, "teacher params")
    s = student_scale(t, law.slope, law.intercept)
    if (s <= 0).any():
        first = float(t.flat[int(np.flatnonzero(s <= 0)[0])])
        raise DistlawError(f"teacher {first:g} is at or below the law's intercept {law.intercept:g}: no student suits it")
    return s


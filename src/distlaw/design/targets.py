"""What a pilot is for, as the user writes it: ``student=1e9,tokens=2e10,teacher-loss=2.2`` (a predicted
student loss; without teacher-loss a supervised one) or ``student=1e9,compute=1e21[,scenario=best]`` (the loss
of the recipe the planner would choose for that student and budget under the prior)."""

from __future__ import annotations

import math

from distlaw.design.pilot import Target
from distlaw.errors import DistlawError
from distlaw.laws import Coefficients
from distlaw.laws.domain import check_teacher_loss


def _fields(spec: str, allowed: dict[str, bool], flag: str) -> dict[str, str]:
    """``key=value`` pairs of ``spec``; ``allowed`` maps each key to whether it is required."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in allowed:
            raise DistlawError(f"{flag} {spec!r}: expected {','.join(f'{k}=...' for k in allowed)}; got {part!r}")
        out[key] = value.strip()
    missing = [k for k, required in allowed.items() if required and k not in out]
    if missing:
        raise DistlawError(f"{flag} {spec!r}: missing {', '.join(missing)}")
    return out


def _number(value: str, what: str, flag: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise DistlawError(f"{flag}: {what} must be a number, got {value!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise DistlawError(f"{flag}: {what} must be a positive number, got {value}")
    return x


def parse_target(spec: str, prior: Coefficients) -> Target:
    """``student=N,tokens=D[,teacher-loss=L]``; a teacher loss at or below the prior's floor E is unreachable."""
    f = _fields(spec, {"student": True, "tokens": True, "teacher-loss": False}, "--target")
    teacher = _number(f["teacher-loss"], "teacher-loss", "--target") if "teacher-loss" in f else None
    if teacher is not None:
        check_teacher_loss(prior, teacher)
    return Target(_number(f["student"], "student", "--target"), _number(f["tokens"], "tokens", "--target"), teacher)


def plan_target(spec: str, prior: Coefficients) -> Target:
    """``student=N,compute=C[,scenario=S]``: the planner's recipe under the prior (its D_S and L_T)."""
    from distlaw.planning.planner import Planner

    f = _fields(spec, {"student": True, "compute": True, "scenario": False}, "--target-plan")
    student, compute = _number(f["student"], "student", "--target-plan"), _number(f["compute"], "compute", "--target-plan")
    recipe = Planner(prior).solve(student, compute, f.get("scenario", "best"), warn=False)
    return Target(student, float(recipe.student_tokens), float(recipe.teacher_loss))

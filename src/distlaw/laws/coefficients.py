"""Coefficient sets for the supervised and distillation laws, with one JSON schema.

    {"supervised":   {"E", "A", "B", "alpha", "beta", "gamma"},
     "distillation": {"A", "B", "alpha", "beta", "gamma", "c0", "c1", "f1", "d1"},
     "bootstrap":    {"supervised": [{...}, ...], "distillation": [{...}, ...]},   # optional
     "meta":         {"name", "domain", ...}}                                      # optional

The distillation block holds the primed coefficients of Busbridge Eq. 8. ``bootstrap`` holds
coefficient samples (from ``distlaw fit --bootstrap``) that the planner turns into intervals.
``meta.domain`` records the range of sizes, tokens and teacher losses behind the coefficients
(see ``distlaw.laws.domain``); a file with only a ``supervised`` block serves everything that
needs only Eq. 1.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from distlaw.errors import DistlawError
from distlaw.laws.domain import Domain

LawName = Literal["supervised", "distillation"]


def positive_fields(*names: str) -> Any:
    """A pydantic validator rejecting zero or negative values of ``names``."""

    def check(value: float) -> float:
        if value <= 0:
            raise ValueError("must be positive")
        return value

    return field_validator(*names)(check)


class CoefficientBlock(BaseModel):
    """One law's coefficients: finite floats, frozen, unknown names rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.model_dump().items()}


class CoefficientsFile(BaseModel):
    """A pydantic model kept as one JSON file: ``save`` writes it atomically, ``load`` validates it and
    turns any problem into one DistlawError line naming the field."""

    def save(self, path: str | Path) -> None:
        from distlaw.io import write_json

        write_json(self.model_dump(exclude_none=True), path)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        p = Path(path)
        try:
            return cls.model_validate_json(p.read_bytes())
        except OSError as exc:
            raise DistlawError(f"{p}: cannot read ({exc.strerror})") from exc
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(part) for part in err["loc"]) or "top level"
            raise DistlawError(f"{p}: {where}: {err['msg'].removeprefix('Value error, ')}") from exc


class SupervisedCoefficients(CoefficientBlock):
    """L(N, D) = E + (A/N^alpha + B/D^beta)^gamma (Busbridge Eq. 1)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    gamma: float = 1.0

    _positive = positive_fields("E", "A", "B")


class DistillationCoefficients(CoefficientBlock):
    """Primed coefficients of Busbridge Eq. 8 (A', B', alpha', beta', gamma') and c0, c1, f1, d1."""

    A: float
    B: float
    alpha: float
    beta: float
    gamma: float
    c0: float
    c1: float
    f1: float
    d1: float

    _positive = positive_fields("A", "B", "f1", "d1")


BLOCKS: dict[str, type[CoefficientBlock]] = {
    "supervised": SupervisedCoefficients,
    "distillation": DistillationCoefficients,
}


class Coefficients(BaseModel):
    """Both laws' coefficients (either may be absent), optional bootstrap samples and metadata."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    supervised: SupervisedCoefficients | None = None
    distillation: DistillationCoefficients | None = None
    bootstrap: dict[LawName, list[dict[str, float]]] | None = None
    meta: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        """What the coefficients are called in messages: the preset, the file, or the fit's source."""
        return str((self.meta or {}).get("name", "these coefficients"))

    def require(self, law: LawName, purpose: str = "this") -> Any:
        """The block for ``law``, or a one-line DistlawError naming the missing block and who needs it."""
        block = getattr(self, law)
        if block is None:
            equation = "Eq. 1" if law == "supervised" else "Eq. 8"
            raise DistlawError(f"{self.name}: no '{law}' block (the {law} law, {equation}), which {purpose} needs")
        return block

    def samples(self, law: LawName) -> list[CoefficientBlock]:
        """Bootstrap samples of ``law`` as coefficient blocks (empty if none were stored)."""
        rows = (self.bootstrap or {}).get(law, [])
        return [BLOCKS[law](**row) for row in rows]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)

    def save(self, path: str | Path) -> None:
        from distlaw.io import write_json

        write_json(self.to_dict(), path)

    @classmethod
    def from_dict(cls, data: Any, source: str = "coefficients") -> Coefficients:
        """Validate a parsed JSON object; any problem is one DistlawError line naming the field."""
        if not isinstance(data, dict):
            raise DistlawError(f"{source}: expected a JSON object with 'supervised' and/or 'distillation'")
        try:
            coefficients = cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise DistlawError(f"{source}: {where}: {err['msg']}") from exc
        if coefficients.supervised is None and coefficients.distillation is None:
            raise DistlawError(f"{source}: needs a 'supervised' or 'distillation' block")
        Domain.from_meta(coefficients.meta, source)
        return coefficients

    @classmethod
    def load(cls, path: str | Path) -> Coefficients:
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except OSError as exc:
            raise DistlawError(f"{p}: cannot read ({exc.strerror})") from exc
        except json.JSONDecodeError as exc:
            raise DistlawError(f"{p}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
        except UnicodeDecodeError as exc:
            raise DistlawError(f"{p}: not a text file (byte {exc.start} is not UTF-8)") from exc
        if isinstance(data, dict) and isinstance(data.get("meta", {}), dict):
            data = {**data, "meta": {"name": str(p), **data.get("meta", {})}}  # messages name the file
        return cls.from_dict(data, source=str(p))


def positive_array(values: ArrayLike, name: str, allow_inf: bool = False) -> np.ndarray:
    """``values`` as a float array, or a DistlawError if any entry is NaN, non-positive or (unless allowed) inf."""
    arr = np.asarray(values, dtype=float)
    bad = np.isnan(arr) | (arr <= 0) | (~allow_inf & np.isinf(arr))
    if bad.any():
        first = arr.flat[int(np.flatnonzero(bad)[0])]
        raise DistlawError(f"{name} must be positive and finite, got {first:g}")
    return arr

"""Law models: what the batched fitter needs to know about a law.

A :class:`LawModel` names its parameters (each fitted either as itself or as its log), the data
columns it reads, a one-time NumPy ``prepare`` step and a torch ``log_predict`` function that maps
fit-space parameters of shape ``(starts, 1)`` and prepared data of shape ``(1, runs)`` (or
``(starts, runs)``) to predictions of shape ``(starts, runs)``. Predictions live in *residual
space*: the log of the observed quantity when ``log_target`` is true (the default, Busbridge App. F),
else the observed quantity itself.

The two laws of Busbridge et al. 2025 (arXiv 2502.08606) are defined here on top of
:func:`distlaw.laws.log_supervised_loss` and :func:`distlaw.laws.log_student_loss`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distlaw.errors import DistlawError
from distlaw.laws import log_student_loss, log_supervised_loss

Tensor = Any  # torch.Tensor; torch is imported lazily by the optimizer


@dataclass(frozen=True)
class Parameter:
    """One coefficient of a law.

    ``name`` is the public (natural-space) name, e.g. ``"E"``. With ``log=True`` the optimizer sees
    ``log(value)`` under the key ``"log_E"``; otherwise the value itself under ``"E"``. ``grid`` (the
    multi-start values) and ``bounds`` are both given in that fit space.
    """

    name: str
    log: bool = False
    grid: tuple[float, ...] = (0.0,)
    bounds: tuple[float, float] = (-math.inf, math.inf)

    @property
    def key(self) -> str:
        """The fit-space name passed to ``log_predict``: ``log_<name>`` or ``<name>``."""
        return f"log_{self.name}" if self.log else self.name

    def to_fit(self, value: float) -> float:
        """Natural value -> fit space (a DistlawError for a non-positive value of a log parameter)."""
        value = float(value)
        if not math.isfinite(value):
            raise DistlawError(f"{self.name} must be a finite number, got {value:g}")
        if self.log:
            if value <= 0:
                raise DistlawError(f"{self.name} must be positive (it is fitted as log {self.name}), got {value:g}")
            return math.log(value)
        return value

    def to_natural(self, value: Any) -> Any:
        """Fit space -> natural value (works on floats and NumPy arrays)."""
        return np.exp(value) if self.log else value


@dataclass(frozen=True)
class LawModel:
    """Everything the fitter needs about one law; see the package docstring for a worked example.

    - ``parameters``: the coefficients, in the order the optimizer stores them.
    - ``inputs``: data columns ``fit`` requires (positive finite arrays, one value per run).
    - ``prepare``: NumPy transform run once on ``{input: array}`` (e.g. take logs); its output keys
      are what ``log_predict`` receives as torch float64 tensors of shape ``(1, runs)``.
    - ``log_predict(p, x)``: ``p`` maps each parameter's ``key`` to a ``(starts, 1)`` tensor (fixed
      parameters arrive as 0-d tensors); returns ``(starts, runs)`` predictions in residual space.
    - ``target``: the data column holding the observations (default ``"loss"``).
    - ``log_target``: compare predictions with ``log(observed)`` (True) or ``observed`` (False).
    - ``positive``: columns that must be positive (default: every input, and the target when
      ``log_target``); every column must be finite.
    """

    name: str
    parameters: tuple[Parameter, ...]
    inputs: tuple[str, ...]
    log_predict: Callable[[Mapping[str, Tensor], Mapping[str, Tensor]], Tensor]
    prepare: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]] = field(default=lambda d: dict(d))
    target: str = "loss"
    log_target: bool = True
    positive: tuple[str, ...] | None = None
    description: str = ""
    citation: str = ""

    def __post_init__(self) -> None:
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate parameter names {names}")

    @property
    def positive_columns(self) -> tuple[str, ...]:
        if self.positive is not None:
            return self.positive
        return self.inputs + ((self.target,) if self.log_target else ())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name or p.key == name:
                return p
        raise DistlawError(f"{self.name} law has no parameter '{name}' (parameters: {', '.join(self.names)})")

    def natural_rows(self, x: np.ndarray, free: Sequence[str], fixed: Mapping[str, float]) -> np.ndarray:
        """(rows, all parameters) natural values from (rows, ``free``) fit-space values and the ``fixed``
        natural ones, in ``parameters`` order (NaN rows stay NaN)."""
        out = np.empty((len(x), len(self.parameters)))
        for j, p in enumerate(self.parameters):
            out[:, j] = fixed[p.name] if p.name in fixed else p.to_natural(x[:, list(free).index(p.name)])
        return out

    def predict(self, coefficients: Mapping[str, float], data: Mapping[str, Any]) -> np.ndarray:
        """Predictions (natural space: ``exp`` of ``log_predict`` when ``log_target``) for one
        coefficient set on NumPy data; convenience for metrics and tests."""
        import torch

        prepared = self.prepare({k: np.asarray(data[k], dtype=float) for k in self.inputs})
        x = {k: torch.as_tensor(np.asarray(v, dtype=float))[None, :] for k, v in prepared.items()}
        p = {q.key: torch.tensor([[q.to_fit(coefficients[q.name])]], dtype=torch.float64) for q in self.parameters}
        with torch.no_grad():
            out = self.log_predict(p, x)[0].numpy()
        return np.exp(out) if self.log_target else out


# --- Busbridge et al. 2025, Eq. 1 (supervised) -------------------------------------------------


def _prepare_supervised(data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"log_N": np.log(data["N"]), "log_D": np.log(data["D"])}


def _predict_supervised(p: Mapping[str, Tensor], x: Mapping[str, Tensor]) -> Tensor:
    return log_supervised_loss(
        x["log_N"], x["log_D"], p["log_E"], p["log_A"], p["log_B"], p["alpha"], p["beta"], p["gamma"]
    )


_EXPONENT = (0.0, 5.0)
_LOG_SCALE = (-10.0, 50.0)

SUPERVISED = LawModel(
    name="supervised",
    parameters=(
        Parameter("E", log=True, grid=(-1.0, -0.5, 0.0, 0.5, 1.0, 1.5), bounds=(-10.0, 5.0)),
        Parameter("A", log=True, grid=(0.0, 5.0, 10.0, 15.0, 20.0), bounds=_LOG_SCALE),
        Parameter("B", log=True, grid=(0.0, 5.0, 10.0, 15.0, 20.0), bounds=_LOG_SCALE),
        Parameter("alpha", grid=(0.0, 0.5, 1.0, 1.5), bounds=_EXPONENT),
        Parameter("beta", grid=(0.0, 0.5, 1.0, 1.5), bounds=_EXPONENT),
        Parameter("gamma", grid=(0.0, 0.5, 1.0, 1.5), bounds=_EXPONENT),
    ),
    inputs=("N", "D"),
    prepare=_prepare_supervised,
    log_predict=_predict_supervised,
    description="L(N, D) = E + (A / N^alpha + B / D^beta)^gamma",
    citation="Busbridge et al. 2025, arXiv 2502.08606, Eq. 1; Hoffmann et al. 2022",
)


# --- Busbridge et al. 2025, Eq. 8 (distillation) -----------------------------------------------


def _prepare_distillation(data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "log_N": np.log(data["N"]),
        "log_D": np.log(data["D"]),
        "log_LT": np.log(data["LT"]),
        "log_Ltilde": np.log(data["Ltilde"]),
    }


def _predict_distillation(p: Mapping[str, Tensor], x: Mapping[str, Tensor]) -> Tensor:
    return log_student_loss(
        x["log_N"], x["log_D"], x["log_LT"], x["log_Ltilde"],
        p["log_A"], p["log_B"], p["alpha"], p["beta"], p["gamma"],
        p["c0"], p["c1"], p["f1"], p["log_d1"],
    )


F1_MIN = 1e-3
"""Lower bound of f1. Eq. 8 divides by f1, so the grid's f1 = 0 starts are projected onto this
bound (where c1 f1 softplus(x / f1) is already the f1 -> 0 limit c1 max(x, 0) to within 1e-3 c1)."""

DISTILLATION = LawModel(
    name="distillation",
    parameters=(
        Parameter("A", log=True, grid=(0.0, 5.0, 10.0, 15.0, 20.0), bounds=_LOG_SCALE),
        Parameter("B", log=True, grid=(0.0, 5.0, 10.0, 15.0, 20.0), bounds=_LOG_SCALE),
        Parameter("alpha", grid=(0.0, 0.5, 1.0), bounds=_EXPONENT),
        Parameter("beta", grid=(0.0, 0.5, 1.0), bounds=_EXPONENT),
        Parameter("gamma", grid=(0.0, 0.5, 1.0), bounds=_EXPONENT),
        Parameter("c0", grid=(0.0, 0.5, 1.0, 1.5), bounds=(-20.0, 20.0)),
        Parameter("c1", grid=(0.0, 0.5, 1.0, 1.5), bounds=(0.0, 1e5)),
        Parameter("f1", grid=(0.0, 0.5, 1.0, 1.5), bounds=(F1_MIN, 20.0)),
        Parameter("d1", log=True, grid=(-1.0, -0.5, 0.0, 0.5, 1.0), bounds=(-10.0, 10.0)),
    ),
    inputs=("N", "D", "LT", "Ltilde"),
    prepare=_prepare_distillation,
    log_predict=_predict_distillation,
    description=(
        "L_S = L_T + L_T^-c0 (1 + (L_T / (Ltilde_S d1))^(1/f1))^(-c1 f1) (A'/N_S^alpha' + B'/D_S^beta')^gamma'"
    ),
    citation="Busbridge et al. 2025, arXiv 2502.08606, Eq. 8",
)

MODELS: dict[str, LawModel] = {"supervised": SUPERVISED, "distillation": DISTILLATION}

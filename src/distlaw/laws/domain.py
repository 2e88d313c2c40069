"""What a coefficient set can answer: the range of sizes, tokens and teacher losses behind it.

A law's coefficients were fitted (``distlaw fit``) or published on runs of some range of model
sizes N, tokens D and teacher losses L_T. Far outside that range an answer is an extrapolation:
it is given, with an ``ExtrapolationWarning``. One input is meaningless at any scale: a teacher
loss at or below the supervised law's irreducible loss E. No model of Eq. 1 (Busbridge et al.
2025, arXiv 2502.08606) reaches it, and Eq. 8's capacity-gap term compares L_T with Ltilde_S > E;
it is refused (DistlawError).

The range is stored in the coefficients file as

    meta["domain"] = {"params": [lo, hi], "tokens": [lo, hi], "teacher_loss": [lo, hi], "source": "..."}

(every key optional). "Far" means more than ``FAR`` (10) times beyond [lo, hi] for sizes and
tokens; for a teacher loss, an excess over E (L_T - E) more than ``LOSS_FAR`` (2) times beyond
the domain's excess range. Coefficients without a domain get the refusal but no warnings.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from distlaw.errors import DistlawError

if TYPE_CHECKING:
    from distlaw.laws.coefficients import Coefficients

FAR = 10.0
LOSS_FAR = 2.0
RANGES = ("params", "tokens", "teacher_loss")
FAR_RULE = (
    f"far = more than {FAR:g}x beyond the sizes or tokens the coefficients were fitted or published on "
    f"(their meta.domain), or a teacher loss whose excess over E is more than {LOSS_FAR:g}x beyond theirs"
)


class ExtrapolationWarning(UserWarning):
    """An input far outside the range the coefficients were fitted or published on."""


class UnidentifiedWarning(ExtrapolationWarning):
    """An answer resting on coefficients that their runs did not pin: on a bound in the fit, or taken from the
    prior by ``distlaw fit --prior`` (collected with the extrapolation warnings)."""


def fit_notes(coefficients: Coefficients) -> list[str]:
    """What a ``distlaw fit`` file records its runs did not identify: coefficients on a bound of the fit
    (``meta.fit.<law>.at_bound``) and those its form took from the prior (``parameterisation.from_prior``)."""
    out = []
    for law, block in ((coefficients.meta or {}).get("fit") or {}).items():
        for name, side in (block.get("at_bound") or {}).items():
            out.append(f"{coefficients.name}: the {law} law's {name} sits on its {side} bound in the fit (its runs do not identify it)")
        form = block.get("parameterisation") or {}
        if form.get("from_prior"):
            out.append(f"{coefficients.name}: the {law} law's {', '.join(form['from_prior'])} come from the prior "
                       f"(form '{form['name']}'), not from its runs")
    return out


@dataclass(frozen=True)
class Domain:
    """The ranges behind a coefficient set (None where unknown) and where they come from."""

    params: tuple[float, float] | None = None
    tokens: tuple[float, float] | None = None
    teacher_loss: tuple[float, float] | None = None
    source: str = "these coefficients"

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None, where: str = "coefficients") -> Domain | None:
        """``meta["domain"]`` checked (one-line DistlawError naming the key), or None if absent."""
        raw = (meta or {}).get("domain")
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            raise DistlawError(f"{where}: meta.domain: expected an object with params, tokens and/or teacher_loss ranges")
        unknown = sorted(set(raw) - {*RANGES, "source"})
        if unknown:
            raise DistlawError(f"{where}: meta.domain: unknown key(s) {', '.join(unknown)} (known: {', '.join(RANGES)}, source)")
        ranges = {k: _range(raw[k], f"{where}: meta.domain.{k}") for k in RANGES if raw.get(k) is not None}
        default = str((meta or {}).get("name", where))
        return cls(**ranges, source=str(raw.get("source", default)))

    def to_meta(self) -> dict[str, Any]:
        """The JSON form stored under ``meta["domain"]``."""
        out: dict[str, Any] = {k: list(getattr(self, k)) for k in RANGES if getattr(self, k) is not None}
        return {**out, "source": self.source}


def _range(value: Any, where: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in value)
    except (TypeError, ValueError):
        raise DistlawError(f"{where}: expected [lo, hi], got {value!r}") from None
    if not 0 < lo <= hi < np.inf:
        raise DistlawError(f"{where}: expected [lo, hi] with 0 < lo <= hi, both finite, got [{lo:g}, {hi:g}]")
    return lo, hi


def span(values: Sequence[ArrayLike]) -> tuple[float, float] | None:
    """[min, max] over the finite positive entries of ``values`` (None if there are none): a fitted range."""
    arrays = [np.asarray(v, dtype=float).ravel() for v in values]
    flat = np.concatenate(arrays) if arrays else np.empty(0)
    flat = flat[np.isfinite(flat) & (flat > 0)]
    return (float(flat.min()), float(flat.max())) if flat.size else None


def check_domain(
    coefficients: Coefficients,
    labels: Sequence[str] | None = None,
    **quantities: ArrayLike | None,
) -> list[str]:
    """Refuse a teacher loss at or below E; warn (``ExtrapolationWarning``) on inputs far outside the domain,
    and (``UnidentifiedWarning``) on every coefficient a fitted file records its runs did not identify.

    ``quantities``: any of ``params``, ``tokens``, ``teacher_params``, ``teacher_tokens`` (checked
    against the domain's params or tokens range) and ``teacher_loss``; None is skipped. Arrays
    are checked elementwise; ``labels`` (one per element, e.g. "row 5") name the offending entry.
    Returns the warning messages (also issued with ``warnings.warn``).
    """
    unknown = sorted(set(quantities) - {"params", "tokens", "teacher_params", "teacher_tokens", "teacher_loss"})
    if unknown:
        raise TypeError(f"check_domain: unknown quantity {', '.join(unknown)}")
    given = {k: np.asarray(v, dtype=float).ravel() for k, v in quantities.items() if v is not None}
    if "teacher_loss" in given:
        check_teacher_loss(coefficients, given["teacher_loss"], labels)
    notes = fit_notes(coefficients)  # the answer rests on these: said with it
    for note in notes:
        warnings.warn(note, UnidentifiedWarning, stacklevel=2)
    domain = Domain.from_meta(coefficients.meta, "coefficients")
    if domain is None:
        return notes
    messages = [m for name, values in given.items() if (m := _far(domain, coefficients, name, values, labels))]
    for message in messages:
        warnings.warn(message, ExtrapolationWarning, stacklevel=2)
    return notes + messages


SYMBOLS = {"params": "N", "tokens": "D", "teacher_params": "N_T", "teacher_tokens": "D_T", "teacher_loss": "L_T"}


def short_number(value: float) -> str:
    """3 significant figures, exponents unpadded (1.43e8, not 1.43e+08)."""
    mantissa, sep, exponent = f"{value:.3g}".partition("e")
    return mantissa + (f"e{int(exponent)}" if sep else "")


def _name(labels: Sequence[str] | None, values: np.ndarray, i: int) -> str:
    if labels is not None:
        return f"{labels[i]}: "
    return "" if values.size == 1 else f"value {i + 1}: "


def check_teacher_loss(coefficients: Coefficients, teacher_loss: ArrayLike, labels: Sequence[str] | None = None) -> None:
    """A one-line DistlawError unless every teacher loss lies above the supervised law's floor E."""
    floor = coefficients.require("supervised", "a teacher loss check").E
    teacher_loss = np.asarray(teacher_loss, dtype=float).ravel()
    bad = ~(teacher_loss > floor)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DistlawError(
            f"{_name(labels, teacher_loss, i)}teacher loss L_T = {teacher_loss[i]:g} is at or below the supervised law's floor "
            f"E = {floor:g} (its irreducible loss): no model reaches it, so Eq. 8 cannot answer for it"
        )


def _far(domain: Domain, coefficients: Coefficients, name: str, values: np.ndarray, labels: Sequence[str] | None) -> str | None:
    """The warning for the entries of ``values`` far outside the domain's range, or None."""
    kind = "teacher_loss" if name == "teacher_loss" else name.removeprefix("teacher_")
    bounds = getattr(domain, kind)
    if bounds is None or not values.size:
        return None
    lo, hi = bounds
    if kind == "teacher_loss":
        floor = coefficients.require("supervised", "a teacher loss check").E
        excess, (e_lo, e_hi) = values - floor, (lo - floor, hi - floor)
        far = (excess < e_lo / LOSS_FAR) | (excess > e_hi * LOSS_FAR) if e_lo > 0 else excess > e_hi * LOSS_FAR
        rule = f"its excess over E = {floor:g} more than {LOSS_FAR:g}x beyond"
    else:
        far = (values < lo / FAR) | (values > hi * FAR)
        rule = f"more than {FAR:g}x beyond"
    if not far.any():
        return None
    i = int(np.flatnonzero(far)[np.argmax(np.abs(np.log(values[far] / np.sqrt(lo * hi))))])
    what = f"{name.replace('_', ' ')} {SYMBOLS[name]}"
    if values.size > 1:
        subject = f"{int(far.sum())} of {values.size} values of {what} are (farthest: {_name(labels, values, i)}{short_number(values[i])})"
    else:
        subject = f"{_name(labels, values, i)}{what} = {short_number(values[i])} is"
    return (
        f"{subject} far outside {short_number(lo)}..{short_number(hi)}, the {kind.replace('_', ' ')} range of {domain.source} "
        f"({rule}): an extrapolation"
    )


@contextmanager
def recorded_warnings() -> Iterator[list[str]]:
    """Collect ``ExtrapolationWarning`` messages (each once, in order) instead of showing them.

    The list fills when the block ends; other warnings are passed on unchanged.
    """
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield messages
        finally:
            others = [w for w in caught if not issubclass(w.category, ExtrapolationWarning)]
            for w in caught:
                text = str(w.message)
                if issubclass(w.category, ExtrapolationWarning) and text not in messages:
                    messages.append(text)
    for w in others:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

"""Fit what the runs can identify: nested parameterisations chosen by leave-largest-runs-out error.

A small pilot often cannot pin every coefficient of Busbridge et al. 2025 Eq. 1 or Eq. 8: E runs to its
lower bound or gamma to its upper one, and every interval built on such a fit is suspect. Given a prior (a
preset or a coefficients file), :func:`supervised_candidates` and :func:`distillation_candidates` list
nested parameterisations (all free; gamma = 1; exponents from the prior; ...). :func:`select` fits each one
twice: once without the runs of largest compute (6 N D), to score its extrapolation to them (the question a
pilot is run to answer), and once on all runs with a small bootstrap (``BOOTSTRAP`` resamples), to see
whether any coefficient lands on a bound or is pinned only in appearance: its bootstrap interval reaches a
bound or collapses to a point (a coefficient the runs cannot pin gives every interval built on it no
meaning). The choice is the lowest held-out MAPE among the fits with neither; within ``TIE`` of it, the
parameterisation with the fewest free coefficients. The forms are independent fits: with a process pool
(:func:`form_pool`) they run side by side, one per core.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distlaw.errors import DistlawError
from distlaw.fitting.models import SUPERVISED, LawModel

HOLDOUT_FRACTION = 0.25
"""The share of runs (the ones of largest compute, at least one) held out to score each parameterisation."""
TIE = 0.05
"""Held-out errors within this relative margin of the best count as tied; the simpler one wins."""
BOOTSTRAP = 32
"""Resamples of each form's fit on all runs, to tell a pinned coefficient from one pinned only in appearance."""


@dataclass(frozen=True)
class Parameterisation:
    """One nested form of a law: the coefficients held at ``fixed`` values (natural space), and which of
    them came from the prior (the rest are constants of the form, e.g. gamma = 1)."""

    name: str
    fixed: dict[str, float] = field(default_factory=dict)
    from_prior: tuple[str, ...] = ()

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "fixed": dict(self.fixed), "from_prior": list(self.from_prior)}


EXPONENTS = ("alpha", "beta", "gamma")
NO_FLOOR = math.exp(SUPERVISED.parameter("E").bounds[0])
"""E of the no-floor forms: the fitter's lower bound on E (4.5e-5 nats), zero for any loss a run reaches."""
TRANSITION = ("c0", "c1", "f1", "d1")  # Eq. 8's teacher-student transition


def _taken(values: Mapping[str, float], names: Sequence[str], source: str) -> Parameterisation:
    label = ", ".join(names)
    return Parameterisation(f"{label} from {source}", {n: float(values[n]) for n in names}, tuple(names))


def supervised_candidates(prior: Mapping[str, float] | None, prior_name: str) -> list[Parameterisation]:
    """Eq. 1: all free; gamma = 1 (Chinchilla's form); no floor (runs far from saturation drive E to its lower
    bound, so the form holds it there: ``NO_FLOOR``), alone and with gamma = 1; and, with a prior, from it:
    gamma; the floor E; both; the exponents."""
    no_floor = {"E": NO_FLOOR}
    out = [Parameterisation("all free"), Parameterisation("gamma = 1", {"gamma": 1.0}),
           Parameterisation("no floor (E = 0)", no_floor), Parameterisation("no floor (E = 0), gamma = 1", {**no_floor, "gamma": 1.0})]
    if prior is not None:
        out += [_taken(prior, names, prior_name) for names in (("gamma",), ("E",), ("E", "gamma"), EXPONENTS)]
    return out


def distillation_candidates(prior: Mapping[str, float] | None, prior_name: str,
                            supervised: Mapping[str, float] | None = None) -> list[Parameterisation]:
    """Eq. 8: all free; gamma' = 1; the exponents of this table's supervised fit (``supervised``); and, with a
    prior, its exponents, its teacher-student transition (c0, c1, f1, d1), or both (only A', B' fitted)."""
    out = [Parameterisation("all free"), Parameterisation("gamma = 1", {"gamma": 1.0})]
    if supervised is not None:
        out.append(Parameterisation("alpha, beta, gamma from the supervised fit", {n: float(supervised[n]) for n in EXPONENTS}))
    if prior is not None:
        out += [_taken(prior, EXPONENTS, prior_name), _taken(prior, TRANSITION, prior_name),
                _taken(prior, EXPONENTS + TRANSITION, prior_name)]
    return out


def fewest_free(model: LawModel, forms: Sequence[Parameterisation], user_fixed: Mapping[str, float]) -> int:
    """The fewest free coefficients any of ``forms`` leaves ``model`` (with ``user_fixed`` held too)."""
    return min(len(model.parameters) - len(set(f.fixed) | set(user_fixed)) for f in forms)


@dataclass(frozen=True)
class Scored:
    """One parameterisation's test: its held-out error and the coefficients its full fit puts on a bound."""

    parameterisation: Parameterisation
    free: int
    holdout_mape_pct: float  # NaN when it could not be scored (``note`` says why)
    at_bound: tuple[str, ...]
    note: str = ""
    weak: tuple[str, ...] = ()  # coefficients whose bootstrap interval reaches a bound or collapses

    @property
    def scorable(self) -> bool:
        return math.isfinite(self.holdout_mape_pct)

    @property
    def admissible(self) -> bool:
        return self.scorable and not self.at_bound and not self.weak

    def record(self) -> dict[str, Any]:
        return {**self.parameterisation.record(), "free": self.free, "holdout_mape_pct": self.holdout_mape_pct,
                "at_bound": list(self.at_bound), "weak": list(self.weak), "note": self.note}


@dataclass(frozen=True)
class Selection:
    """The parameterisation chosen for one law, every one tried, and why."""

    law: str
    chosen: Parameterisation
    scored: list[Scored]
    held_out: int
    reason: str

    def record(self) -> dict[str, Any]:
        """``meta.fit.<law>.parameterisation`` of the coefficients file (and ``fit --json``)."""
        return {**self.chosen.record(), "reason": self.reason, "held_out": self.held_out,
                "holdout_fraction": HOLDOUT_FRACTION, "candidates": [s.record() for s in self.scored]}


FitFn = Callable[..., Any]  # distlaw.fitting.fit.fit


def largest_runs(data: Mapping[str, np.ndarray], fraction: float = HOLDOUT_FRACTION) -> np.ndarray:
    """Mask of the runs of largest compute 6 N D: the top ``fraction`` of them, at least one."""
    compute = np.asarray(data["N"], dtype=float) * np.asarray(data["D"], dtype=float)
    k = max(1, int(round(fraction * compute.size)))
    mask = np.zeros(compute.size, dtype=bool)
    mask[np.argsort(compute, kind="stable")[-k:]] = True
    return mask


def _subset(data: Mapping[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[mask] for k, v in data.items()}


def _attempt(fit: FitFn, model: LawModel, data: Mapping[str, np.ndarray], kwargs: Mapping[str, Any]) -> Any:
    """One fit, or the one-line reason it failed."""
    try:
        return fit(model, data, **kwargs)
    except DistlawError as err:
        return str(err)


def _fits(model: LawModel, data: Mapping[str, np.ndarray], held: np.ndarray, fixed: Mapping[str, float],
          kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | str:
    """The two fits that test a form: without the held-out runs (scored on them), and on all runs with a
    ``BOOTSTRAP``-resample bootstrap; or why the form cannot be tested."""
    free = len(model.parameters) - len(fixed)
    if free < 1:
        return "every coefficient fixed"
    if int((~held).sum()) < free + 1:
        return f"{int((~held).sum())} runs left to fit {free} coefficients"
    fold = {**kwargs, "fixed": dict(fixed), "holdout": _subset(data, held)}
    whole = {**kwargs, "fixed": dict(fixed), "bootstrap": BOOTSTRAP}
    return fold, whole


def _run_all(fit: FitFn, model: LawModel, tasks: Sequence[tuple[Mapping[str, np.ndarray], Mapping[str, Any]]],
             pool: Executor | None, progress: Any) -> list[Any]:
    """Every (data, fit keyword arguments) fit of ``tasks``, in order; in ``pool`` when given (then
    ``progress`` counts the finished fits)."""
    if pool is None:
        return [_attempt(fit, model, data, kwargs) for data, kwargs in tasks]
    futures = [pool.submit(_attempt, fit, model, dict(data), kwargs) for data, kwargs in tasks]
    results = []
    for done, future in enumerate(futures, 1):
        results.append(future.result())
        if progress is not None:
            progress(f"{model.name}: fits of the candidate forms", float(done), float(len(futures)))
    return results


def _scored(form: Parameterisation, free: int, fold: Any, whole: Any) -> Scored:
    for result in (fold, whole):
        if isinstance(result, str):
            return Scored(form, free, math.nan, (), result)
    return Scored(form, free, float(fold.metrics["holdout"]["mape_pct"]), tuple(whole.at_bound), weak=tuple(whole.weak))


def choose(scored: Sequence[Scored]) -> tuple[Scored, str]:
    """The lowest held-out error among admissible fits (no coefficient on a bound, none whose bootstrap
    interval reaches one or collapses); within ``TIE`` of it, the fewest free coefficients. With none
    admissible, the same among the fits with no estimate on a bound, then among all, and the reason says so."""
    tiers = ((lambda s: s.admissible, "no coefficient on a bound or weakly pinned"),
             (lambda s: s.scorable and not s.at_bound, "no coefficient on a bound"),
             (lambda s: s.scorable, ""))
    for tier, (keep, what) in enumerate(tiers):
        pool = [s for s in scored if keep(s)]
        if pool:
            break
    else:
        raise DistlawError("no parameterisation could be fitted and scored on these runs")
    best = min(s.holdout_mape_pct for s in pool)
    if tier == 2:
        pick = min(pool, key=lambda s: s.holdout_mape_pct)
        return pick, (f"every parameterisation leaves a coefficient on a bound; '{pick.parameterisation.name}' "
                      f"extrapolates best ({pick.holdout_mape_pct:.3g} % held-out MAPE)")
    tied = [s for s in pool if s.holdout_mape_pct <= best * (1 + TIE)]
    pick = min(tied, key=lambda s: (s.free, s.holdout_mape_pct))
    reason = (f"lowest held-out MAPE ({pick.holdout_mape_pct:.3g} %) among the fits with {what}"
              if pick.holdout_mape_pct == best else
              f"fewest free coefficients ({pick.free}) within {TIE:.0%} of the lowest held-out MAPE ({best:.3g} %; "
              f"this one {pick.holdout_mape_pct:.3g} %) among the fits with {what}")
    if tier == 1:
        reason += f" (every one leaves some coefficient weakly pinned; this one: {', '.join(pick.weak)})"
    rejected = [s.parameterisation.name for s in scored if s.at_bound]
    weak = [f"{s.parameterisation.name} ({', '.join(s.weak)})" for s in scored if s.weak and not s.at_bound and s.scorable]
    if rejected:
        reason += f"; on a bound: {', '.join(rejected)}"
    if weak and tier == 0:
        reason += f"; weakly pinned: {'; '.join(weak)}"
    return pick, reason


@contextmanager
def form_pool(workers: int) -> Iterator[Executor | None]:
    """Processes (spawned: safe after torch has started threads) that fit candidate forms side by side; None
    for one worker. The fits are small and bound by Python overhead, so threads would share one core."""
    if workers <= 1:
        yield None
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield pool
    finally:
        pool.shutdown(cancel_futures=True)


def select(fit: FitFn, model: LawModel, data: Mapping[str, np.ndarray], candidates: Sequence[Parameterisation],
           *, user_fixed: Mapping[str, float] | None = None, pool: Executor | None = None, **kwargs: Any) -> Selection:
    """Score every candidate (``user_fixed`` wins over a candidate's values; duplicates are tried once) and
    choose one (:func:`choose`). ``kwargs`` go to ``fit`` (grid, delta, ...). With a ``pool`` the candidates
    are fitted in its workers (one thread each; ``progress`` then counts finished fits)."""
    user_fixed = dict(user_fixed or {})
    held = largest_runs(data)
    jobs, seen = [], set()
    for form in candidates:
        fixed = {**form.fixed, **user_fixed}
        key = tuple(sorted(fixed.items()))
        if key in seen:
            continue
        seen.add(key)
        kept = Parameterisation(form.name, fixed, tuple(n for n in form.from_prior if n not in user_fixed))
        jobs.append((kept, fixed))
    remote = kwargs if pool is None else {**kwargs, "progress": None, "threads": 1}
    train = _subset(data, ~held)
    plans = [_fits(model, data, held, fixed, remote) for _, fixed in jobs]
    tasks = [task for plan in plans if not isinstance(plan, str) for task in ((train, plan[0]), (data, plan[1]))]
    results = iter(_run_all(fit, model, tasks, pool, kwargs.get("progress")))
    scored = []
    for (kept, fixed), plan in zip(jobs, plans):
        free = len(model.parameters) - len(fixed)
        scored.append(Scored(kept, free, math.nan, (), plan) if isinstance(plan, str) else _scored(kept, free, next(results), next(results)))
    pick, reason = choose(scored)
    return Selection(model.name, pick.parameterisation, scored, int(held.sum()), reason)

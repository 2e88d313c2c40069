"""Fit a law model to data (:func:`fit`) and both laws to a runs table (:func:`fit_runs`)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from distlaw.errors import DistlawError, check_workers
from distlaw.io import to_jsonable
from distlaw.fitting.bootstrap import collapsed, interval_reasons, percentile_intervals, resample_weights
from distlaw.fitting.grids import GridSpec, make_starts
from distlaw.fitting.metrics import prediction_metrics
from distlaw.fitting.selection import BOOTSTRAP, Parameterisation, distillation_candidates, form_pool, select, supervised_candidates
from distlaw.fitting.models import DISTILLATION, MODELS, SUPERVISED, LawModel
from distlaw.fitting.optimizer import (
    DTYPE,
    HuberObjective,
    LBFGSOptions,
    ProgressFn,
    Schedule,
    minimize_multistart,
    minimize_rows,
    compute_threads,
)
from distlaw.laws import Coefficients, SupervisedCoefficients, log_supervised_loss
from distlaw.laws.domain import Domain, span

DEFAULT_DELTA = 1e-4
"""Huber delta of Busbridge et al. 2025 (App. F); Hoffmann 2022 / Epoch 2024 use 1e-3."""
CHINCHILLA_DELTA = 1e-3
DEFAULT_LEVEL = 0.95
SELECTION_OPTIONS = LBFGSOptions(max_iter=500)
"""L-BFGS settings of the fits that score each form (``--prior``). On the tables tried (the demo's, planted
pilots) the best starts converge well within 500 iterations and only crawling starts use the full budget; the
chosen form is refitted with the full settings."""
AT_BOUND_TOL = 1e-3
"""An estimate within this (relative, fit space) of a bound counts as sitting on it."""


@dataclass
class FitResult:
    """One law fitted to one data set. Coefficients are in natural space (fixed ones included)."""

    law: str
    coefficients: dict[str, float]
    objective: float
    free: tuple[str, ...]
    fixed: dict[str, float]
    delta: float
    n_runs: int
    n_starts: int
    grid: str
    seconds: float
    evaluations: int
    status: str
    stages: list[dict[str, Any]]
    x: np.ndarray  # best point in fit space (free parameters)
    metrics: dict[str, Any] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # NaN where none holds the estimate
    interval_notes: dict[str, str] = field(default_factory=dict)  # why a coefficient has no interval
    level: float = DEFAULT_LEVEL
    bootstrap_samples: np.ndarray | None = None  # (K, all parameters), natural space, NaN rows failed
    at_bound: dict[str, str] = field(default_factory=dict)
    weak: dict[str, str] = field(default_factory=dict)  # bootstrap interval reaching a bound or collapsed: why
    warnings: list[str] = field(default_factory=list)
    parameterisation: dict[str, Any] | None = None  # the --prior selection (distlaw.fitting.selection), when made

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.coefficients)

    @property
    def bootstrap(self) -> list[dict[str, float]]:
        """Bootstrap coefficient samples (successful resamples only), as dicts like ``coefficients``."""
        if self.bootstrap_samples is None:
            return []
        ok = np.isfinite(self.bootstrap_samples).all(1)
        return [dict(zip(self.names, map(float, row))) for row in self.bootstrap_samples[ok]]

    def info(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "delta": self.delta,
            "runs": self.n_runs,
            "starts": self.n_starts,
            "grid": self.grid,
            "free": list(self.free),
            "fixed": dict(self.fixed),
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "evaluations": self.evaluations,
            "bootstrap": 0 if self.bootstrap_samples is None else int(len(self.bootstrap)),
            "level": self.level,
            "at_bound": dict(self.at_bound),
            "weak": dict(self.weak),
        }

    def summary(self) -> dict[str, Any]:
        """The per-law block of ``distlaw fit --json`` (with ``parameterisation`` after a ``--prior`` selection)."""
        out = {
            "coefficients": dict(self.coefficients),
            "intervals": {k: [lo, hi] for k, (lo, hi) in self.intervals.items()},
            "interval_notes": dict(self.interval_notes),
            "metrics": self.metrics,
            "warnings": list(self.warnings),
            "fit": self.info(),
        }
        if self.parameterisation is not None:
            out["parameterisation"] = self.parameterisation
        return out


def _columns(model: LawModel, data: Any, what: str) -> dict[str, np.ndarray]:
    """The model's input and target columns as float arrays; a DistlawError names a bad column."""
    out: dict[str, np.ndarray] = {}
    n = None
    for name in (*model.inputs, model.target):
        try:
            raw = data[name]
        except (KeyError, IndexError, TypeError):
            raise DistlawError(f"{what}: missing column '{name}' (the {model.name} law needs {', '.join((*model.inputs, model.target))})") from None
        try:
            arr = np.asarray(raw, dtype=float).ravel()
        except (TypeError, ValueError):
            raise DistlawError(f"{what}: column '{name}' is not numeric") from None
        if n is not None and arr.size != n:
            raise DistlawError(f"{what}: column '{name}' has {arr.size} values, expected {n}")
        n = arr.size
        bad = ~np.isfinite(arr)
        if name in model.positive_columns:
            bad |= ~(arr > 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            kind = "positive finite" if name in model.positive_columns else "finite"
            raise DistlawError(f"{what}: column '{name}' value {i + 1} must be a {kind} number, got {arr[i]:g}")
        out[name] = arr
    return out


def _tensors(model: LawModel, columns: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    prepared = model.prepare({k: columns[k] for k in model.inputs})
    return {k: torch.as_tensor(np.asarray(v, dtype=float), dtype=DTYPE) for k, v in prepared.items()}


def _target(model: LawModel, observed: np.ndarray) -> torch.Tensor:
    t = np.log(observed) if model.log_target else observed
    return torch.as_tensor(t, dtype=DTYPE)[None, :]


def fit(
    model: LawModel,
    data: Any,
    *,
    fixed: Mapping[str, float] | None = None,
    delta: float = DEFAULT_DELTA,
    grid: GridSpec = None,
    holdout: Any = None,
    bootstrap: int = 0,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    bootstrap_weights: np.ndarray | None = None,
    bootstrap_data: Mapping[str, np.ndarray] | None = None,
    schedule: Schedule | None = None,
    options: LBFGSOptions | None = None,
    threads: int | None = None,
    chunk_elements: int = 2**16,
    progress: ProgressFn | None = None,
) -> FitResult:
    """Fit ``model`` to ``data`` (a mapping or DataFrame with the model's inputs and target).

    Minimizes sum_i Huber_delta(prediction_i - log observed_i) from every start of ``grid`` at once
    (see :mod:`distlaw.fitting.optimizer`). ``fixed`` maps parameter names to natural values held
    constant. ``holdout`` (same columns) is scored, not fitted. ``bootstrap`` K > 0 refits K
    resamples of the runs (or the given ``bootstrap_weights`` rows; ``bootstrap_data`` may replace
    an input per resample, shape (K, n)) and reports ``level`` percentile intervals.
    """
    t0 = time.perf_counter()
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta > 0):
        raise DistlawError(f"delta must be a positive number, got {delta}")
    if not 0 < level < 1:
        raise DistlawError(f"interval level must be between 0 and 1, got {level}")
    fixed = {model.parameter(k).name: float(v) for k, v in (fixed or {}).items()}
    fixed_fit = {model.parameter(k).key: model.parameter(k).to_fit(v) for k, v in fixed.items()}
    free = [p for p in model.parameters if p.name not in fixed]
    if not free:
        raise DistlawError(f"{model.name}: every parameter is fixed; nothing to fit")
    cols = _columns(model, data, f"{model.name} data")
    n = cols[model.target].size
    if n < len(free):
        raise DistlawError(
            f"{model.name}: {n} run(s) but {len(free)} free parameters; need at least as many runs (or --fix some)"
        )
    tensors = {k: v[None, :] for k, v in _tensors(model, cols).items()}
    target = _target(model, cols[model.target])
    objective = HuberObjective(model, tensors, target, free, fixed_fit, delta=delta, chunk_elements=chunk_elements)
    starts = make_starts(model, [p.name for p in free], grid)
    lower = torch.tensor([p.bounds[0] for p in free], dtype=DTYPE)
    upper = torch.tensor([p.bounds[1] for p in free], dtype=DTYPE)

    def stage_progress(prefix: str) -> ProgressFn | None:
        if progress is None:
            return None
        return lambda label, done, total: progress(f"{model.name} {prefix}{label}", done, total)

    with compute_threads(threads) as pool:
        objective.pool = pool
        ms = minimize_multistart(
            objective, torch.as_tensor(starts, dtype=DTYPE), lower, upper,
            options or LBFGSOptions(), schedule or Schedule(), progress=stage_progress(""),
        )
        if not math.isfinite(ms.f):
            raise DistlawError(f"{model.name}: the objective is not finite at any start; check the data")
        x_best = ms.x
        natural = {p.name: float(p.to_natural(v)) for p, v in zip(free, x_best)}
        coefficients = {p.name: natural[p.name] if p.name in natural else fixed[p.name] for p in model.parameters}

        samples = None
        intervals: dict[str, tuple[float, float]] = {}
        notes: dict[str, str] = {}
        boot_fit = None
        if bootstrap_weights is not None or bootstrap > 0:
            rng = np.random.default_rng(seed)
            weights = bootstrap_weights if bootstrap_weights is not None else resample_weights(n, bootstrap, rng)
            weights = np.asarray(weights, dtype=float)
            if weights.ndim != 2 or weights.shape[1] != n:
                raise DistlawError(f"bootstrap weights must have shape (K, {n})")
            k = weights.shape[0]
            if bootstrap_data:
                full = {c: np.broadcast_to(cols[c], (k, n)) for c in model.inputs}
                for c, v in bootstrap_data.items():
                    full[c] = np.asarray(v, dtype=float).reshape(k, n)
                btensors = _tensors(model, full)
            else:
                btensors = tensors
            bobj = HuberObjective(
                model, btensors, target, free, fixed_fit, weights=torch.as_tensor(weights, dtype=DTYPE),
                delta=delta, chunk_elements=chunk_elements,
            )
            bobj.pool = pool
            x0 = torch.as_tensor(np.repeat(x_best[None, :], k, 0), dtype=DTYPE)
            boot_fit = minimize_rows(bobj, x0, lower, upper, options or LBFGSOptions(), schedule or Schedule(),
                                     progress=stage_progress(f"bootstrap ({k} resamples): "))
            samples = model.natural_rows(boot_fit, [p.name for p in free], fixed)
            ok = np.isfinite(samples).all(1)
            if ok.any():
                names = [p.name for p in free]
                free_samples, estimate = samples[ok][:, [model.names.index(q) for q in names]], [coefficients[q] for q in names]
                intervals = percentile_intervals(free_samples, names, level, estimate=estimate)
                notes = interval_reasons(free_samples, names, level, estimate)

    result = FitResult(
        law=model.name, coefficients=coefficients, objective=ms.f, free=tuple(p.name for p in free),
        fixed=fixed, delta=float(delta), n_runs=n, n_starts=int(starts.shape[0]),
        grid=grid if isinstance(grid, str) else ("paper" if grid is None else "custom"),
        seconds=0.0, evaluations=int(ms.evaluations), status=ms.status, stages=ms.stages, x=x_best,
        intervals=intervals, interval_notes=notes, level=level, bootstrap_samples=samples,
    )
    # identifiability: estimate on a bound, or a bootstrap interval that collapses to a point
    for j, p in enumerate(free):
        for side, bound in (("lower", p.bounds[0]), ("upper", p.bounds[1])):
            if math.isfinite(bound) and abs(x_best[j] - bound) <= AT_BOUND_TOL * max(1.0, abs(bound)):
                result.at_bound[p.name] = side
                result.warnings.append(
                    f"{model.name}: {p.name} = {coefficients[p.name]:.6g} sits on its {side} bound; "
                    "it is not identifiable from these runs (consider --fix)"
                )
    if boot_fit is not None:
        ok = np.isfinite(boot_fit).all(1)
        if ok.any():
            for j in np.flatnonzero(collapsed(boot_fit[ok], x_best)):
                name = free[j].name
                if name not in result.at_bound:
                    result.weak[name] = "its bootstrap interval collapses to a point"
                    result.warnings.append(
                        f"{model.name}: the bootstrap interval of {name} collapses to a point "
                        f"({coefficients[name]:.6g}); it is not identifiable from these runs"
                    )
            for j, p in enumerate(free):
                if p.name in result.at_bound or p.name not in intervals:
                    continue
                column = boot_fit[ok][:, j]
                for side, bound, reached in (
                    ("lower", p.bounds[0], np.percentile(column, 100 * (1 - level) / 2)),
                    ("upper", p.bounds[1], np.percentile(column, 100 * (1 + level) / 2)),
                ):
                    if math.isfinite(bound) and abs(reached - bound) <= AT_BOUND_TOL * max(1.0, abs(bound)):
                        result.weak[p.name] = f"its bootstrap interval reaches its {side} bound"
                        result.warnings.append(
                            f"{model.name}: the bootstrap interval of {p.name} reaches its {side} bound "
                            f"({float(p.to_natural(bound)):.6g}); it is weakly identified by these runs"
                        )
        if (~ok).any():
            result.warnings.append(f"{model.name}: {int((~ok).sum())} bootstrap resample(s) failed and were dropped")
    result.metrics = {"fit": prediction_metrics(cols[model.target], model.predict(coefficients, cols))}
    if holdout is not None:
        hcols = _columns(model, holdout, f"{model.name} held-out data") if _length(holdout, model.target) else None
        if hcols is not None:
            result.metrics["holdout"] = prediction_metrics(hcols[model.target], model.predict(coefficients, hcols))
        else:
            result.metrics["holdout"] = prediction_metrics([], [])
    result.seconds = time.perf_counter() - t0
    return result


def _length(data: Any, column: str) -> int:
    try:
        return len(np.asarray(data[column]).ravel())
    except (KeyError, IndexError, TypeError):
        return 0


# --- runs tables ------------------------------------------------------------------------------

LAWS = ("supervised", "distillation")
_PREFIXES = {"supervised": "supervised", "sup": "supervised", "distillation": "distillation", "dist": "distillation", "distilled": "distillation"}


def resolve_fixed(spec: Mapping[str, float], laws: Sequence[str]) -> dict[str, dict[str, float]]:
    """Route ``{"gamma": 1, "distillation.c0": 2, "alpha'": 0.3}`` to the laws being fitted.

    A bare name applies to every law in ``laws`` that has it; ``supervised.`` / ``distillation.``
    prefixes (or a trailing prime, Eq. 8's notation) pick one law."""
    out: dict[str, dict[str, float]] = {law: {} for law in LAWS}
    for raw, value in spec.items():
        name = raw.strip()
        targets = list(laws)
        if "." in name:
            prefix, name = name.split(".", 1)
            law = _PREFIXES.get(prefix.strip().lower())
            if law is None:
                raise DistlawError(f"--fix {raw}: unknown law '{prefix}' (use supervised.NAME or distillation.NAME)")
            targets = [law]
        if name.endswith("'"):
            name = name[:-1]
            targets = [t for t in targets if t == "distillation"]
        matched = [law for law in targets if law in laws and name in MODELS[law].names]
        if not matched:
            where = " or ".join(t for t in targets if t in laws) or "fitted"
            known = sorted({p for law in laws for p in MODELS[law].names})
            raise DistlawError(f"--fix {raw}: no parameter '{name}' in the {where} law (parameters: {', '.join(known)})")
        for law in matched:
            out[law][name] = float(value)
    return out


@dataclass
class RunsFit:
    """The laws fitted to one runs table (either may be None), and where Ltilde_S came from."""

    supervised: FitResult | None
    distillation: FitResult | None
    laws: tuple[str, ...]  # the laws that were asked for (reported)
    supervised_source: str  # "fit" or the preset/file that gave Ltilde_S
    supervised_used: SupervisedCoefficients | None
    holdout_below: float | None = None
    source: str = "runs table"
    domain: Domain | None = None  # the rows the laws were fitted on (meta.domain of the --out file)

    def results(self) -> dict[str, FitResult]:
        out = {}
        if "supervised" in self.laws and self.supervised is not None:
            out["supervised"] = self.supervised
        if "distillation" in self.laws and self.distillation is not None:
            out["distillation"] = self.distillation
        return out

    @property
    def warnings(self) -> list[str]:
        return [w for r in self.results().values() for w in r.warnings]

    def summary(self) -> dict[str, Any]:
        """``distlaw fit --json``: per law {coefficients, intervals, metrics, warnings, fit}."""
        out: dict[str, Any] = {law: r.summary() for law, r in self.results().items()}
        if "distillation" in out:
            out["distillation"]["fit"]["supervised_source"] = self.supervised_source
            if self.holdout_below is not None:
                out["distillation"]["metrics"].setdefault("holdout", {})["below"] = self.holdout_below
        if self.holdout_below is not None and "supervised" in out:
            out["supervised"]["metrics"].setdefault("holdout", {})["below"] = self.holdout_below
        return out

    def coefficients(self) -> Coefficients:
        """The fit as a :class:`distlaw.laws.Coefficients` (the ``--out`` file)."""
        data: dict[str, Any] = {}
        boot: dict[str, list[dict[str, float]]] = {}
        sup = self.supervised
        if sup is not None:
            data["supervised"] = sup.coefficients
            if sup.bootstrap:
                boot["supervised"] = sup.bootstrap
        elif self.supervised_used is not None:
            data["supervised"] = self.supervised_used.as_dict()
        if self.distillation is not None:
            data["distillation"] = self.distillation.coefficients
            if self.distillation.bootstrap:
                boot["distillation"] = self.distillation.bootstrap
        if boot:
            data["bootstrap"] = boot
        meta: dict[str, Any] = {
            "name": f"fit of {self.source}",
            "created_by": "distlaw fit",
            "source": self.source,
            "supervised_source": self.supervised_source,
            "fit": {},
        }
        if self.holdout_below is not None:
            meta["holdout_below"] = self.holdout_below
        if self.domain is not None:
            meta["domain"] = self.domain.to_meta()
        for law, r in (("supervised", sup), ("distillation", self.distillation)):
            if r is not None:
                meta["fit"][law] = {
                    **r.info(),
                    "metrics": r.metrics,
                    "intervals": {k: [lo, hi] for k, (lo, hi) in r.intervals.items()},
                    "warnings": r.warnings,
                }
                if r.parameterisation is not None:
                    meta["fit"][law]["parameterisation"] = r.parameterisation
        data["meta"] = to_jsonable(meta)
        return Coefficients.from_dict(data, source="fit result")


def fitted_domain(sup_rows: pd.DataFrame, dist_rows: pd.DataFrame, source: str) -> Domain:
    """The range of the rows a fit saw (``distlaw.laws.domain``): sizes and tokens of the supervised
    and distilled rows, teacher losses of the distilled ones."""
    rows = [r for r in (sup_rows, dist_rows) if not r.empty]
    teacher = [dist_rows["teacher_loss"]] if not dist_rows.empty else []
    return Domain(
        params=span([r["params"] for r in rows]), tokens=span([r["tokens"] for r in rows]),
        teacher_loss=span(teacher), source=f"the fit of {source}",
    )


def _from_scratch(rows: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Eq. 8 describes students trained from random weights: distilled rows started from a pruned
    teacher (a ``pruned_to`` value, Zhang et al.'s recipe) are left out, with a note saying so."""
    if "pruned_to" not in rows.columns or rows["pruned_to"].isna().all():
        return rows, None
    pruned = rows["pruned_to"].notna()
    return rows[~pruned], f"left out {int(pruned.sum())} distilled row(s) started from a pruned teacher (pruned_to): Eq. 8 describes students trained from scratch"


def _split(rows: pd.DataFrame, below: float | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    if below is None:
        return rows, rows.iloc[:0]
    strong = rows["loss"] < below
    return rows[~strong], rows[strong]


def _supervised_frame(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    return {"N": rows["params"].to_numpy(float), "D": rows["tokens"].to_numpy(float), "loss": rows["loss"].to_numpy(float)}


def _distillation_frame(rows: pd.DataFrame, sup: SupervisedCoefficients) -> dict[str, np.ndarray]:
    from distlaw.laws import supervised_loss

    n, d = rows["params"].to_numpy(float), rows["tokens"].to_numpy(float)
    return {
        "N": n, "D": d, "LT": rows["teacher_loss"].to_numpy(float),
        "Ltilde": np.asarray(supervised_loss(n, d, sup), dtype=float).reshape(-1),
        "loss": rows["loss"].to_numpy(float),
    }


def _ltilde_samples(samples: np.ndarray, names: Sequence[str], rows: pd.DataFrame, fallback: np.ndarray) -> np.ndarray:
    """(K, n) Ltilde_S for each supervised bootstrap sample (failed samples use ``fallback``)."""
    col = {name: samples[:, [j]] for j, name in enumerate(names)}
    log_n = np.log(rows["params"].to_numpy(float))[None, :]
    log_d = np.log(rows["tokens"].to_numpy(float))[None, :]
    with np.errstate(all="ignore"):
        out = np.exp(log_supervised_loss(
            log_n, log_d, np.log(col["E"]), np.log(col["A"]), np.log(col["B"]), col["alpha"], col["beta"], col["gamma"]
        ))
    bad = ~np.isfinite(out).all(1)
    out[bad] = fallback[None, :]
    return out


def _form(model: LawModel, frame: Mapping[str, np.ndarray], fixed: dict[str, float],
          forms: list[Parameterisation] | None, grid: GridSpec, common: Mapping[str, Any],
          pool: Executor | None = None) -> tuple[dict[str, float], dict[str, Any] | None]:
    """The coefficients to hold fixed for ``model``: ``fixed`` alone without candidate ``forms`` (no prior),
    else the form :func:`distlaw.fitting.selection.select` chooses (in ``pool`` when given), with its record
    for the coefficients file."""
    if forms is None:
        return fixed, None
    kwargs = {k: v for k, v in common.items() if k not in ("level", "options")}
    chosen = select(fit, model, frame, forms, user_fixed=fixed, grid=grid, options=common.get("options") or SELECTION_OPTIONS,
                    pool=pool, **kwargs)
    return dict(chosen.chosen.fixed), chosen.record()


def _confirmed(form: dict[str, Any] | None, result: FitResult, resamples: int) -> dict[str, Any] | None:
    """The selection record, its reason amended when the final fit's bootstrap (``resamples``, more than the
    selection's own) finds a coefficient of the chosen form weakly pinned that the selection did not."""
    if form is None:
        return None
    chosen = next(c for c in form["candidates"] if c["name"] == form["name"])
    late = [name for name in result.weak if name not in chosen["weak"]]
    if not late:
        return form
    return {**form, "reason": f"{form['reason']}; but the final fit's {resamples}-resample bootstrap finds {', '.join(late)} weakly "
                              f"pinned (its interval reaches a bound or collapses), which the selection's {BOOTSTRAP} resamples did not"}


def _prior_block(prior: Coefficients, law: str) -> dict[str, float] | None:
    block = getattr(prior, law)
    return None if block is None else block.as_dict()


def fit_runs(
    runs: pd.DataFrame,
    law: str = "both",
    *,
    fixed: Mapping[str, float] | None = None,
    delta: float = DEFAULT_DELTA,
    bootstrap: int = 0,
    level: float = DEFAULT_LEVEL,
    holdout_below: float | None = None,
    coefficients: Coefficients | None = None,
    coefficients_name: str | None = None,
    grid: GridSpec = "paper",
    seed: int = 0,
    schedule: Schedule | None = None,
    options: LBFGSOptions | None = None,
    threads: int | None = None,
    progress: ProgressFn | None = None,
    source: str = "runs table",
    prior: Coefficients | None = None,
    prior_name: str | None = None,
    workers: int = 1,
) -> RunsFit:
    """Fit the supervised law to the supervised rows and the distillation law to the distilled rows.

    ``law``: ``supervised``, ``distillation`` or ``both`` (whatever the rows allow). Ltilde_S for
    the distillation law comes from ``coefficients`` when given, else from the supervised law
    fitted to this table's supervised rows; with ``bootstrap`` the supervised resample k then
    gives Ltilde_S for distillation resample k, so its uncertainty propagates. ``holdout_below``:
    rows with loss below it are held out of each fit and scored as the extrapolation report.
    With a ``prior``, each law's form is chosen first (:mod:`distlaw.fitting.selection`), its candidate
    forms fitted in ``workers`` processes (spawned: a script that asks for more than one needs the
    ``if __name__ == "__main__":`` guard, as with any multiprocessing).
    """
    from distlaw.runs import validate_runs

    if law not in ("supervised", "distillation", "both"):
        raise DistlawError(f"unknown law '{law}' (supervised, distillation or both)")
    if bootstrap < 0:
        raise DistlawError(f"--bootstrap must be >= 0, got {bootstrap}")
    if holdout_below is not None and not (math.isfinite(holdout_below) and holdout_below > 0):
        raise DistlawError(f"--holdout-below must be a positive loss, got {holdout_below}")
    check_workers(workers)
    runs = validate_runs(runs, source=source)
    sup_rows = runs[runs["kind"] == "supervised"]
    dist_rows, pruned_note = _from_scratch(runs[runs["kind"] == "distilled"])
    if law == "supervised" and sup_rows.empty:
        raise DistlawError(f"{source}: no supervised rows to fit the supervised law")
    if law == "distillation" and dist_rows.empty:
        raise DistlawError(f"{source}: no distilled rows to fit the distillation law" + (f" ({pruned_note})" if pruned_note else ""))
    want_sup = law in ("supervised", "both") and not sup_rows.empty
    want_dist = law in ("distillation", "both") and not dist_rows.empty
    sup_used: SupervisedCoefficients | None = None
    sup_source = "fit"
    if want_dist and coefficients is not None:
        sup_used = coefficients.require("supervised")
        sup_source = coefficients_name or str((coefficients.meta or {}).get("name", "coefficients"))
    elif want_dist and sup_rows.empty:
        raise DistlawError(
            f"{source}: distilled rows need Ltilde_S from a supervised law: add supervised rows or pass --coefficients"
        )
    fit_sup = want_sup or (want_dist and sup_used is None)
    laws_fitted = [x for x, on in (("supervised", fit_sup), ("distillation", want_dist)) if on]
    fixed_by_law = resolve_fixed(fixed or {}, laws_fitted)
    rng = np.random.default_rng(seed)
    common = dict(delta=delta, level=level, schedule=schedule, options=options, threads=threads, progress=progress)
    prior_label = prior_name or (prior.name if prior is not None else "")

    with form_pool(workers if prior is not None else 1) as pool:
        sup_result = None
        sup_train = sup_rows.iloc[:0]
        if fit_sup:
            train, test = _split(sup_rows, holdout_below)
            sup_train = train
            if train.empty:
                raise DistlawError(f"{source}: no supervised rows with loss >= {holdout_below:g} to fit")
            weights = resample_weights(len(train), bootstrap, rng) if bootstrap else None
            forms = None if prior is None else supervised_candidates(_prior_block(prior, "supervised"), prior_label)
            sup_fixed, sup_form = _form(SUPERVISED, _supervised_frame(train), fixed_by_law["supervised"], forms, grid, common, pool)
            sup_result = fit(
                SUPERVISED, _supervised_frame(train), fixed=sup_fixed, grid=grid,
                holdout=_supervised_frame(test) if holdout_below is not None else None,
                bootstrap_weights=weights, **common,  # type: ignore[arg-type]
            )
            sup_result.parameterisation = _confirmed(sup_form, sup_result, bootstrap)
            if sup_used is None:
                sup_used = SupervisedCoefficients(**sup_result.coefficients)

        dist_result = None
        dist_train = dist_rows.iloc[:0]
        if want_dist:
            assert sup_used is not None
            train, test = _split(dist_rows, holdout_below)
            dist_train = train
            if train.empty:
                raise DistlawError(f"{source}: no distilled rows with loss >= {holdout_below:g} to fit")
            frame = _distillation_frame(train, sup_used)
            weights = resample_weights(len(train), bootstrap, rng) if bootstrap else None
            bdata = None
            if bootstrap and sup_source == "fit" and sup_result is not None and sup_result.bootstrap_samples is not None:
                bdata = {"Ltilde": _ltilde_samples(sup_result.bootstrap_samples, sup_result.names, train, frame["Ltilde"])}
            fitted_sup = sup_result.coefficients if sup_source == "fit" and sup_result is not None else None
            forms = None if prior is None else distillation_candidates(_prior_block(prior, "distillation"), prior_label, fitted_sup)
            dist_fixed, dist_form = _form(DISTILLATION, frame, fixed_by_law["distillation"], forms, grid, common, pool)
            dist_result = fit(
                DISTILLATION, frame, fixed=dist_fixed, grid=grid,
                holdout=_distillation_frame(test, sup_used) if holdout_below is not None else None,
                bootstrap_weights=weights, bootstrap_data=bdata, **common,  # type: ignore[arg-type]
            )
            dist_result.parameterisation = _confirmed(dist_form, dist_result, bootstrap)
    reported = tuple(x for x, on in (("supervised", want_sup), ("distillation", want_dist)) if on)
    noted = dist_result or sup_result
    if pruned_note and noted is not None:
        noted.warnings.append(f"distillation: {pruned_note}")
    return RunsFit(
        supervised=sup_result, distillation=dist_result, laws=reported, supervised_source=sup_source,
        supervised_used=sup_used, holdout_below=holdout_below, source=source,
        domain=fitted_domain(sup_train, dist_train, source),
    )

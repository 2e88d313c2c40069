"""The end-to-end study behind ``distlaw demo``: sweep -> runs table -> fitted laws -> findings -> report.

Every step is resumable (the sweep lives in a SQLite store) and every output is written atomically
into one folder: ``runs.db`` (+ ``runs.runs/``), ``runs.csv``, ``coefficients.json`` (when a law
could be fitted), ``summary.json`` and ``report.html``. A law the runs cannot fit is left out of
the coefficients and the report says why; the rest of the study is still written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from distlaw.errors import DistlawError, check_workers
from distlaw.findings import best_teachers, distillation_gains
from distlaw.io import write_json, write_table
from distlaw.laws import load_coefficients
from distlaw.planning import Planner, SCENARIOS

if TYPE_CHECKING:
    from distlaw.design.validate import Validation
    from distlaw.report.study import ReportLaws

DEMO_CONFIG = "demo"  # a shipped sweep config, by name (distlaw.lab.protocols.shipped_configs)
# Tiny pilots cannot pin every coefficient: each law's form is chosen with this prior (distlaw fit --prior).
DEMO_PRIOR = "busbridge2025"
DEMO_BOOTSTRAP = 64  # resamples behind the prediction intervals
DEMO_LEVEL = 0.9
VALIDATE_SCALE = 2.0  # the validated recipe: the demo's student with twice the training compute (6 N D) of its largest distilled run
# A realistic question answered with the published law, shown beside the pilot's own fit.
AT_SCALE = {"student_params": 1e9, "compute": 1e21}


@dataclass
class StudyResult:
    out_dir: Path
    runs: pd.DataFrame
    laws: ReportLaws
    gains: pd.DataFrame
    teachers: pd.DataFrame
    at_scale: list[dict[str, Any]]
    seconds: float
    held_out: pd.DataFrame | None = None  # the runs of largest compute, left out of the fit
    extrapolation: Validation | None = None  # the fit's predictions of them
    validation: Validation | None = None  # a recipe planned with the fit, trained, scored
    skipped: dict[str, str] = field(default_factory=dict)  # why a check is missing ("extrapolation", "validation")

    def summary(self) -> dict[str, Any]:
        """The JSON summary (``summary.json`` and ``distlaw demo --json``)."""
        return {
            "out_dir": str(self.out_dir),
            "runs": int(len(self.runs)),
            "seconds": round(self.seconds, 1),
            "fit": self.laws.fit_summary or {},
            "missing_laws": dict(self.laws.missing),
            "distillation_gains": self.gains.to_dict(orient="records"),
            "best_teachers": self.teachers.to_dict(orient="records"),
            "at_scale": {**AT_SCALE, "coefficients": "busbridge2025", "recipes": self.at_scale},
            "extrapolation": None if self.extrapolation is None else self.extrapolation.record(),
            "validation": None if self.validation is None else self.validation.record(),
            "skipped": dict(self.skipped),
            "files": {k: str(self.out_dir / v) for k, v in OUTPUTS.items() if k != "coefficients" or self.laws.coefficients},
        }


OUTPUTS = {"store": "runs.db", "runs": "runs.csv", "coefficients": "coefficients.json",
           "summary": "summary.json", "report": "report.html"}


def plan_at_scale() -> list[dict[str, Any]]:
    """Recipes of every scenario for the AT_SCALE student and budget, from the published coefficients."""
    planner = Planner(load_coefficients("busbridge2025"))
    recipes = [planner.solve(AT_SCALE["student_params"], AT_SCALE["compute"], s).record() for s in SCENARIOS]
    baseline = planner.supervised(AT_SCALE["student_params"], AT_SCALE["compute"])
    recipes.append({"scenario": "supervised", "student_tokens": float(baseline.tokens), "student_loss": float(baseline.loss)})
    return recipes


def split_largest(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs table without, and with only, the runs of largest compute of each kind (the top quarter by
    N D, ``distlaw.fitting.selection.largest_runs``): what the demo fits, and what it predicts."""
    from distlaw.fitting.selection import largest_runs

    held = np.zeros(len(runs), dtype=bool)
    for kind in ("supervised", "distilled"):
        rows = np.flatnonzero((runs["kind"] == kind).to_numpy())
        if len(rows) >= 4:  # fewer runs leave nothing to fit
            held[rows[largest_runs({"N": runs["params"].to_numpy(float)[rows], "D": runs["tokens"].to_numpy(float)[rows]})]] = True
    return runs[~held].reset_index(drop=True), runs[held].reset_index(drop=True)


def predict_held_out(laws: ReportLaws, held: pd.DataFrame, skipped: dict[str, str]) -> Validation | None:
    """The fitted laws' predictions (with bootstrap intervals) of the held-out runs; None, with the reason in
    ``skipped``, when the laws cannot score them."""
    from distlaw.design.validate import score_runs

    if laws.coefficients is None or held.empty:
        skipped["extrapolation"] = "no law was fitted" if laws.coefficients is None else "too few runs to hold any out"
        return None
    rows = held if laws.usable("distillation") else held[held["kind"] == "supervised"]
    try:
        return score_runs(laws.coefficients, rows, level=DEMO_LEVEL, source="the held-out runs")
    except DistlawError as error:
        skipped["extrapolation"] = str(error)
        return None


def validate_one_recipe(laws: ReportLaws, runs: pd.DataFrame, store: Path, sweep: str, workers: int | None,
                        skipped: dict[str, str]) -> Validation | None:
    """``distlaw validate`` for one recipe: the demo's smallest student with ``VALIDATE_SCALE`` times the
    training compute 6 N D of the largest distilled run (so the recipe stays near the runs the fit saw),
    planned with the fit, trained into the store, scored."""
    from distlaw.design.validate import validate_recipes
    from distlaw.design.validate_store import read_pilot

    distilled = runs[runs["kind"] == "distilled"]
    if not laws.usable("distillation") or distilled.empty:
        skipped["validation"] = "no distillation law was fitted" if not distilled.empty else "no distilled runs"
        return None
    budget = VALIDATE_SCALE * float((6.0 * distilled["params"] * distilled["tokens"]).max())
    try:
        assert laws.coefficients is not None
        return validate_recipes(laws.coefficients, read_pilot(store, sweep), [budget], level=DEMO_LEVEL,
                                student=float(distilled["params"].min()), workers=workers)
    except DistlawError as error:
        skipped["validation"] = str(error)
        return None


def check_study_folder(out_dir: str | os.PathLike[str]) -> Path:
    """Refuse a study folder that is a file, or a non-empty folder that holds no study (no run store)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DistlawError(f"{out}: is a file; give a folder for the study (new, or one a previous demo wrote)")
    if out.is_dir() and any(out.iterdir()) and not (out / OUTPUTS["store"]).is_file():
        raise DistlawError(f"{out}: folder is not empty and holds no {OUTPUTS['store']}: not a study folder (give a new folder)")
    return out


def run_study(
    config: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] = "distlaw-demo",
    *,
    workers: int | None = None,
    fixed: Mapping[str, float] | None = None,
    grid: str = "coarse",
    progress: bool = True,
    on_stage: Callable[[str], None] | None = None,
) -> StudyResult:
    """Run (or resume) the sweep in ``config``, fit both laws to its runs, and write the report.

    The folder, config and ``workers`` are checked before anything is trained or written."""
    from distlaw.lab.protocols import load_config

    start = time.perf_counter()
    stage = on_stage or (lambda _: None)
    out = check_study_folder(out_dir)
    if workers is not None:
        check_workers(workers)
    sweep_config = load_config(config or DEMO_CONFIG)
    from distlaw.report.study import check_fit_options, fit_laws, study_report

    check_fit_options(grid, 0, 0.95)
    from distlaw.fitting.optimizer import available_cores
    from distlaw.lab.sweep import run_sweep
    from distlaw.store import RunStore, runs_table

    out.mkdir(parents=True, exist_ok=True)
    store_path = out / OUTPUTS["store"]

    stage(f"training the {sweep_config.name} sweep (resumable: rerun to continue)")
    run_sweep(sweep_config, store_path, workers=workers, progress=progress)
    with RunStore(store_path) as store:
        runs = runs_table(store, sweep_config.name)
    write_table(runs, out / OUTPUTS["runs"])

    train, held = split_largest(runs)
    stage(f"fitting both laws to the {len(train)} smaller runs (forms chosen with the prior {DEMO_PRIOR}); "
          f"{len(held)} runs of largest compute held out")
    laws = fit_laws(train, fixed=fixed, grid=grid, bootstrap=DEMO_BOOTSTRAP, level=DEMO_LEVEL, source=str(out / OUTPUTS["runs"]),
                    prior=load_coefficients(DEMO_PRIOR), prior_name=DEMO_PRIOR, workers=workers or available_cores())
    if laws.coefficients is not None:
        laws.coefficients.save(out / OUTPUTS["coefficients"])
    else:  # no law could be fitted: no coefficients file, not even one left by an earlier run
        (out / OUTPUTS["coefficients"]).unlink(missing_ok=True)
    skipped: dict[str, str] = {}
    extrapolation = predict_held_out(laws, held, skipped)
    stage("validating: a recipe planned with the fit, trained and compared with its prediction")
    validation = validate_one_recipe(laws, runs, store_path, sweep_config.name, workers, skipped)

    stage("planning and writing the report")
    result = StudyResult(
        out_dir=out, runs=runs, laws=laws, gains=distillation_gains(runs), teachers=best_teachers(runs),
        at_scale=plan_at_scale(), seconds=time.perf_counter() - start, held_out=held, extrapolation=extrapolation,
        validation=validation, skipped=skipped,
    )
    study_report(result).write(out / OUTPUTS["report"])
    write_json(result.summary(), out / OUTPUTS["summary"])
    return result

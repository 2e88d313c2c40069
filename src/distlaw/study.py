"""The end-to-end study behind ``distlaw demo``: sweep -> runs table -> fitted laws -> findings -> report.

Every step is resumable (the sweep lives in a SQLite store) and every output is written atomically
into one folder: ``runs.db`` (+ ``runs.runs/``), ``runs.csv``, ``coefficients.json``,
``summary.json`` and ``report.html``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from distlaw.findings import best_teachers, distillation_gains
from distlaw.io import write_json, write_table
from distlaw.laws import Coefficients, load_coefficients
from distlaw.planning import Planner, SCENARIOS

DEMO_CONFIG = "demo.toml"
# Tiny pilots cannot pin every exponent: Chinchilla's form (gamma = 1) keeps the supervised law identifiable.
DEMO_FIXED: dict[str, float] = {"supervised.gamma": 1.0}
# A realistic question answered with the published law, shown beside the pilot's own fit.
AT_SCALE = {"student_params": 1e9, "compute": 1e21}


def packaged_config(name: str = DEMO_CONFIG) -> Path:
    """Path of a sweep config shipped inside the package (``distlaw/configs``)."""
    return Path(str(resources.files("distlaw") / "configs" / name))


@dataclass
class StudyResult:
    out_dir: Path
    runs: pd.DataFrame
    coefficients: Coefficients
    fit_summary: dict[str, Any]
    gains: pd.DataFrame
    teachers: pd.DataFrame
    at_scale: list[dict[str, Any]]
    seconds: float

    def summary(self) -> dict[str, Any]:
        """The JSON summary (``summary.json`` and ``distlaw demo --json``)."""
        return {
            "out_dir": str(self.out_dir),
            "runs": int(len(self.runs)),
            "seconds": round(self.seconds, 1),
            "fit": self.fit_summary,
            "distillation_gains": self.gains.to_dict(orient="records"),
            "best_teachers": self.teachers.to_dict(orient="records"),
            "at_scale": {**AT_SCALE, "coefficients": "busbridge2025", "recipes": self.at_scale},
            "files": {k: str(self.out_dir / v) for k, v in OUTPUTS.items()},
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
    """Run (or resume) the sweep in ``config``, fit both laws to its runs, and write the report."""
    from distlaw.fitting import fit_runs
    from distlaw.lab.protocols import load_config
    from distlaw.lab.sweep import run_sweep
    from distlaw.store import RunStore, runs_table

    start = time.perf_counter()
    stage = on_stage or (lambda _: None)
    out = Path(out_dir)
    sweep_config = load_config(config or packaged_config())
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / OUTPUTS["store"]

    stage(f"training the {sweep_config.name} sweep (resumable: rerun to continue)")
    run_sweep(sweep_config, store_path, workers=workers, progress=progress)
    with RunStore(store_path) as store:
        runs = runs_table(store, sweep_config.name)
    write_table(runs, out / OUTPUTS["runs"])

    stage("fitting the supervised and distillation laws")
    fitted = fit_runs(runs, "both", fixed=dict(DEMO_FIXED if fixed is None else fixed), grid=grid,
                      source=str(out / OUTPUTS["runs"]))
    coefficients = fitted.coefficients()
    coefficients.save(out / OUTPUTS["coefficients"])

    stage("planning and writing the report")
    result = StudyResult(
        out_dir=out, runs=runs, coefficients=coefficients, fit_summary=fitted.summary(),
        gains=distillation_gains(runs), teachers=best_teachers(runs), at_scale=plan_at_scale(),
        seconds=time.perf_counter() - start,
    )
    from distlaw.report.study import study_report

    study_report(result).write(out / OUTPUTS["report"])
    write_json(result.summary(), out / OUTPUTS["summary"])
    return result

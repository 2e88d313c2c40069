"""Pilot design speed (issue 12): ``design_pilot`` over its candidates x 40 replicates, pinned to 2 CPU
cores, beside the same simulation fitted one problem at a time (a sample, extrapolated); prints JSON.

    .venv/bin/python benchmarks/design_speed.py [--replicates 40] [--limit 300]

Exits 1 if the design takes longer than ``--limit`` seconds (the issue's target: 5 minutes) or considers
fewer than 20 candidates.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from cores import pin_two_cores  # noqa: E402

from distlaw.design.designer import FINALISTS, design_pilot, grid_of  # noqa: E402
from distlaw.design.pilot import Target  # noqa: E402
from distlaw.design.simulate import simulate  # noqa: E402
from distlaw.laws import load_coefficients  # noqa: E402

BUDGET = 1e21
TARGET = Target(3e9, 6e10, 2.2)
ONE_AT_A_TIME = 4  # problems fitted alone to time the unbatched way


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=40)
    parser.add_argument("--limit", type=float, default=300.0)
    args = parser.parse_args()
    cores = pin_two_cores()
    prior = load_coefficients("busbridge2025")
    start = time.perf_counter()
    design = design_pilot(BUDGET, TARGET, prior, min_params=1e7, replicates=args.replicates)
    seconds = time.perf_counter() - start
    problems = (len(design.candidates) + 2 * (FINALISTS + 1)) * args.replicates  # every candidate, then the finalists and the grid twice
    best, grid = design.best, grid_of(design)
    start = time.perf_counter()
    for seed in range(ONE_AT_A_TIME):
        simulate([best.pilot], prior, TARGET, replicates=1, seed=seed)
    alone = (time.perf_counter() - start) / ONE_AT_A_TIME
    result = {
        "benchmark": "design_speed",
        "candidates": len(design.candidates),
        "replicates": args.replicates,
        "seconds": round(seconds, 2),
        "seconds_per_problem_batched": round(seconds / problems, 4),
        "seconds_per_problem_alone": round(alone, 4),
        "batching_speedup": round(alone * problems / seconds, 2),
        "chosen": {"runs": best.pilot.runs, "width": best.width, "mean_width": best.mean_width, "worst_width": best.worst_width},
        "grid": {"runs": grid.pilot.runs, "width": grid.width, "mean_width": grid.mean_width, "worst_width": grid.worst_width},
        "width_ratio_grid_to_chosen": {"prior": round(grid.width / best.width, 2), "mean": round(grid.mean_width / best.mean_width, 2),
                                       "worst": round(grid.worst_width / best.worst_width, 2)},
        "cores": cores,
        "python": platform.python_version(),
    }
    print(json.dumps(result, indent=2))
    return 0 if seconds <= args.limit and len(design.candidates) >= 20 else 1


if __name__ == "__main__":
    sys.exit(main())

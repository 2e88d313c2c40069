"""Fitting speed: the batched multi-start fitter vs a per-start scipy L-BFGS-B loop. Prints one JSON object.

1. Chinchilla (Epoch's points, 240 rows after dropping the 5 highest losses; D = FLOP / (6 N);
   gamma = 1; delta = 1e-3), the Epoch grid of 4,500 starts: ``distlaw.fitting.fit`` vs
   ``scipy.optimize.minimize(method="L-BFGS-B")`` from every start, with a NumPy objective (the same
   Huber sum, finite-difference gradients as in a plain replication script). Same machine, same
   run: the loop runs in blocks, each followed by one timed batched fit, so both see the same
   machine load (the batched time is the median). ``--scipy-sample K`` times the loop on K random
   starts only and extrapolates (said so in the JSON). A second baseline gives scipy an analytic
   NumPy gradient (timed on a sample of 300 starts).
2. Distillation: the full 216,000-start grid of LAWS.md section 3 on ~700 synthetic runs drawn from
   the busbridge2025 preset with 0.5 % noise; time, objective, stages, peak memory.

    python benchmarks/fit_speed.py [--scipy-sample K] [--distill-runs 700] [--skip-distill]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize
from scipy.special import huber, logsumexp

from distlaw.fitting import DISTILLATION, SUPERVISED, fit, make_starts, synthetic_runs
from distlaw.fitting.fit import _distillation_frame
from distlaw.laws import load_coefficients

ROOT = Path(__file__).resolve().parents[1]
CHINCHILLA = [ROOT / "tests" / "data" / "chinchilla_epoch_svg_extracted.csv",
              ROOT.parent / "shared" / "data" / "chinchilla_epoch_svg_extracted.csv"]


def chinchilla() -> dict[str, np.ndarray]:
    path = next(p for p in CHINCHILLA if p.is_file())
    df = pd.read_csv(path).sort_values("loss", ascending=False).iloc[5:]
    n = df["Model Size"].to_numpy(float)
    return {"N": n, "D": df["Training FLOP"].to_numpy(float) / (6 * n), "loss": df["loss"].to_numpy(float)}


def scipy_loop(data: dict[str, np.ndarray], starts: np.ndarray, delta: float, gradient: bool) -> tuple[float, np.ndarray, float]:
    """Per-start L-BFGS-B; parameters (log E, log A, log B, alpha, beta) as in Epoch's script."""
    log_n, log_d, log_l = np.log(data["N"]), np.log(data["D"]), np.log(data["loss"])

    def objective(p):
        e, a, b, alpha, beta = p
        pred = logsumexp([np.full_like(log_n, e), a - alpha * log_n, b - beta * log_d], axis=0)
        return np.sum(huber(delta, pred - log_l))

    def objective_and_gradient(p):
        e, a, b, alpha, beta = p
        terms = np.stack([np.full_like(log_n, e), a - alpha * log_n, b - beta * log_d])
        pred = logsumexp(terms, axis=0)
        r = pred - log_l
        dh = np.clip(r, -delta, delta)  # Huber'(r)
        w = np.exp(terms - pred)  # softmax weights = d pred / d term
        grad = np.array([
            np.sum(dh * w[0]), np.sum(dh * w[1]), np.sum(dh * w[2]),
            -np.sum(dh * w[1] * log_n), -np.sum(dh * w[2] * log_d),
        ])
        return np.sum(huber(delta, r)), grad

    best_f, best_x = np.inf, starts[0]
    t0 = time.perf_counter()
    for s in starts:
        if gradient:
            res = minimize(objective_and_gradient, s, jac=True, method="L-BFGS-B")
        else:
            res = minimize(objective, s, method="L-BFGS-B")
        if res.fun < best_f:
            best_f, best_x = float(res.fun), res.x
    return time.perf_counter() - t0, best_x, best_f


def natural(x: np.ndarray) -> dict[str, float]:
    return {"E": float(np.exp(x[0])), "A": float(np.exp(x[1])), "B": float(np.exp(x[2])), "alpha": float(x[3]), "beta": float(x[4])}


def bench_chinchilla(scipy_sample: int, seed: int, rounds: int) -> dict:
    """The scipy loop runs in ``rounds`` blocks of starts with one batched fit timed after each block,
    so both see the same (shared, varying) machine load; the batched time is the median."""
    data = chinchilla()
    free = ["E", "A", "B", "alpha", "beta"]
    starts = make_starts(SUPERVISED, free, "epoch")
    fit(SUPERVISED, data, fixed={"gamma": 1.0}, delta=1e-3, grid="coarse")  # warm-up (imports, allocator)

    rng = np.random.default_rng(seed)
    if scipy_sample and scipy_sample < len(starts):
        sample = starts[rng.choice(len(starts), scipy_sample, replace=False)]
        timing = f"sample of {scipy_sample} random starts, extrapolated to {len(starts)}"
    else:
        sample = starts
        timing = f"full loop over all {len(starts)} starts"
    grad_sample = starts[rng.choice(len(starts), min(300, len(starts)), replace=False)]
    loop_s = grad_s = 0.0
    loop_f = grad_f = np.inf
    loop_x = sample[0]
    batched_times = []
    ours = None
    for block, grad_block in zip(np.array_split(sample, rounds), np.array_split(grad_sample, rounds)):
        sec, x, f = scipy_loop(data, block, 1e-3, gradient=False)
        loop_s += sec
        if f < loop_f:
            loop_f, loop_x = f, x
        sec, _, f = scipy_loop(data, grad_block, 1e-3, gradient=True)
        grad_s += sec
        grad_f = min(grad_f, f)
        t0 = time.perf_counter()
        ours = fit(SUPERVISED, data, fixed={"gamma": 1.0}, delta=1e-3, grid="epoch")
        batched_times.append(time.perf_counter() - t0)
    assert ours is not None
    batched = float(np.median(batched_times))
    loop_total = loop_s * len(starts) / len(sample)
    grad_total = grad_s * len(starts) / len(grad_sample)
    return {
        "runs": int(len(data["loss"])),
        "starts": int(len(starts)),
        "batched_seconds": round(batched, 3),
        "batched_seconds_all_rounds": [round(t, 3) for t in batched_times],
        "batched_objective": ours.objective,
        "batched_coefficients": ours.coefficients,
        "batched_stages": ours.stages,
        "scipy_seconds": round(loop_total, 2),
        "scipy_timing": timing + f", in {rounds} blocks interleaved with the batched fits",
        "scipy_seconds_per_start": round(loop_s / len(sample), 5),
        "scipy_objective": loop_f,
        "scipy_coefficients": natural(np.asarray(loop_x)),
        "speedup": round(loop_total / batched, 1),
        "objective_batched_minus_scipy": ours.objective - loop_f,
        "scipy_analytic_gradient": {
            "timing": f"sample of {len(grad_sample)} random starts, extrapolated to {len(starts)}",
            "seconds": round(grad_total, 2),
            "seconds_per_start": round(grad_s / len(grad_sample), 5),
            "objective_over_sample": grad_f,
            "speedup": round(grad_total / batched, 1),
        },
    }


def bench_distillation(n_runs: int, seed: int) -> dict:
    coef = load_coefficients("busbridge2025")
    runs = synthetic_runs(coef, n_supervised=0, n_distilled=n_runs, noise=0.005, seed=seed)
    frame = _distillation_frame(runs, coef.supervised)  # Ltilde_S from the preset's supervised law
    last = [0.0]

    def progress(label: str, done: float, total: float) -> None:
        now = time.perf_counter()
        if now - last[0] > 10 or done >= total:
            print(f"  [{now - t0:7.1f}s] {label}: {done:.0f}/{total:.0f}", file=sys.stderr, flush=True)
            last[0] = now

    t0 = time.perf_counter()
    result = fit(DISTILLATION, frame, grid="paper", progress=progress)
    seconds = time.perf_counter() - t0
    truth = fit(DISTILLATION, frame, grid=np.array([[
        np.log(coef.distillation.A), np.log(coef.distillation.B), coef.distillation.alpha, coef.distillation.beta,
        coef.distillation.gamma, coef.distillation.c0, coef.distillation.c1, coef.distillation.f1,
        np.log(coef.distillation.d1)]]), schedule=None)
    return {
        "runs": int(len(frame["loss"])),
        "starts": result.n_starts,
        "seconds": round(seconds, 1),
        "objective": result.objective,
        "objective_refit_from_true_coefficients": truth.objective,
        "coefficients": result.coefficients,
        "metrics": result.metrics,
        "warnings": result.warnings,
        "evaluations": result.evaluations,
        "stages": result.stages,
        "under_5_minutes": seconds < 300,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scipy-sample", type=int, default=0, help="time scipy on K random starts (0: all)")
    parser.add_argument("--distill-runs", type=int, default=700)
    parser.add_argument("--skip-distill", action="store_true")
    parser.add_argument("--skip-chinchilla", action="store_true")
    parser.add_argument("--rounds", type=int, default=9, help="blocks of the scipy loop / batched repeats")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out: dict = {
        "machine": {
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "loadavg_before": [round(v, 2) for v in os.getloadavg()],
        },
    }
    if not args.skip_chinchilla:
        out["chinchilla"] = bench_chinchilla(args.scipy_sample, args.seed, args.rounds)
    if not args.skip_distill:
        out["distillation"] = bench_distillation(args.distill_runs, args.seed)
    out["machine"]["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    out["machine"]["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    print(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()

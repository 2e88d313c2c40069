"""Synthetic runs tables drawn from a coefficient set, shaped like Busbridge et al.'s protocols.

Used by the round-trip tests and the speed benchmark: supervised runs over a range of sizes and
tokens-per-parameter ratios (teachers among them), and distilled students from (1) fixed-M teachers
x student IsoFLOP profiles and (3) fixed-M teachers x fixed-M students with M_S in
{20, 40, 80, 160, 320} (arXiv 2502.08606, section 4.1). Every loss gets multiplicative noise
exp(noise * z), z ~ N(0, 1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from distlaw.laws import Coefficients, load_coefficients, student_loss, supervised_loss

TEACHER_SIZES = (1.98e8, 5.46e8, 1.82e9, 3.0e9, 7.75e9)
STUDENT_SIZES = (1.43e8, 3.0e8, 5.46e8, 9.75e8, 1.82e9, 3.0e9, 5.0e9, 1.26e10)
STUDENT_M = (20, 40, 80, 160, 320)
ISOFLOP_BUDGETS = (3e19, 1e20, 3e20, 1e21)


def synthetic_runs(
    coefficients: Coefficients | str = "busbridge2025",
    n_supervised: int = 60,
    n_distilled: int = 300,
    noise: float = 0.005,
    seed: int = 0,
) -> pd.DataFrame:
    """A runs table (``kind, params, tokens, loss, teacher_params, teacher_tokens, teacher_loss``)."""
    coef = load_coefficients(coefficients) if isinstance(coefficients, str) else coefficients
    sup = coef.require("supervised")
    rng = np.random.default_rng(seed)

    # supervised: log-uniform sizes, tokens-per-parameter M in [5, 400], plus the teachers (M = 20)
    sizes = np.exp(rng.uniform(np.log(1e8), np.log(1.5e10), n_supervised))
    ratio = np.exp(rng.uniform(np.log(5), np.log(400), n_supervised))
    n_t = np.array(TEACHER_SIZES)
    sup_n = np.concatenate([n_t, sizes])[: max(n_supervised, 0)] if n_supervised else np.array([])
    sup_d = np.concatenate([20 * n_t, sizes * ratio])[: len(sup_n)]
    sup_loss = supervised_loss(sup_n, sup_d, sup) * np.exp(noise * rng.standard_normal(len(sup_n))) if len(sup_n) else sup_n

    # teachers: fixed M = 20; their measured losses carry noise too
    teacher_loss = supervised_loss(n_t, 20 * n_t, sup) * np.exp(noise * rng.standard_normal(len(n_t)))
    cand = []
    for ti in range(len(n_t)):
        for ns in STUDENT_SIZES:  # protocol 3: fixed-M students
            for m in STUDENT_M:
                cand.append((ti, ns, m * ns))
        for c in ISOFLOP_BUDGETS:  # protocol 1: student IsoFLOP profiles, D = C / (6 N)
            for ns in np.geomspace(1e8, 1e10, 9):
                ds = c / (6 * ns)
                if 2 <= ds / ns <= 2000:
                    cand.append((ti, ns, ds))
    cand_arr = np.array(cand)
    reps = int(np.ceil(n_distilled / len(cand_arr))) if n_distilled else 0
    pick = np.concatenate([rng.permutation(len(cand_arr)) for _ in range(reps)])[:n_distilled] if reps else np.array([], int)
    ti = cand_arr[pick, 0].astype(int)
    ns, ds = cand_arr[pick, 1], cand_arr[pick, 2]
    # a jitter so repeated configurations (when n_distilled exceeds the candidates) differ
    ns = ns * np.exp(0.05 * rng.standard_normal(len(ns))) if reps > 1 else ns
    lt = teacher_loss[ti]
    dist_loss = student_loss(ns, ds, lt, coef) * np.exp(noise * rng.standard_normal(len(ns))) if len(ns) else ns

    rows = [
        pd.DataFrame({"kind": "supervised", "params": sup_n, "tokens": sup_d, "loss": sup_loss}),
        pd.DataFrame({
            "kind": "distilled", "params": ns, "tokens": ds, "loss": dist_loss,
            "teacher_params": n_t[ti], "teacher_tokens": 20 * n_t[ti], "teacher_loss": lt,
        }),
    ]
    return pd.concat(rows, ignore_index=True)

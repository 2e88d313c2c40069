"""Fitting engine must-shows: Epoch's Chinchilla refit, and a round trip through the busbridge2025 laws."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from distlaw import DistlawError
from distlaw.fitting import (
    FULL,
    SUPERVISED,
    LBFGSOptions,
    fit,
    fit_runs,
    make_starts,
    synthetic_runs,
)
from distlaw.runs import predict_runs

# LAWS.md section 1: a plain Huber / L-BFGS-B grid fit of Epoch's points
EPOCH_HUBER = {"E": 1.8172, "A": 477.8, "B": 2143.9, "alpha": 0.3473, "beta": 0.3672}


def chinchilla_data(path) -> dict[str, np.ndarray]:
    """Epoch's points: drop the 5 highest-loss rows (240 remain), D = FLOP / (6 N)."""
    df = pd.read_csv(path).sort_values("loss", ascending=False).iloc[5:]
    n = df["Model Size"].to_numpy(float)
    return {"N": n, "D": df["Training FLOP"].to_numpy(float) / (6 * n), "loss": df["loss"].to_numpy(float)}


_CACHE: dict[str, object] = {}  # the conftest fixture is function-scoped; fit the 4,500 starts once


@pytest.fixture
def chinchilla(chinchilla_csv):
    key = f"data:{chinchilla_csv}"
    if key not in _CACHE:
        _CACHE[key] = chinchilla_data(chinchilla_csv)
    return _CACHE[key]


@pytest.fixture
def chinchilla_fit(chinchilla_csv, chinchilla):
    key = f"fit:{chinchilla_csv}"
    if key not in _CACHE:
        _CACHE[key] = fit(SUPERVISED, chinchilla, fixed={"gamma": 1.0}, delta=1e-3, grid="epoch")
    return _CACHE[key]


def test_chinchilla_epoch_grid_reaches_the_reference_fit(chinchilla, chinchilla_fit):
    r = chinchilla_fit
    assert r.n_runs == 240 and r.n_starts == 4500
    c = r.coefficients
    for name in ("E", "alpha", "beta"):
        assert c[name] == pytest.approx(EPOCH_HUBER[name], rel=5e-3), name
    for name in ("A", "B"):
        assert c[name] == pytest.approx(EPOCH_HUBER[name], rel=3e-2), name
    assert c["gamma"] == 1.0 and r.free == ("E", "A", "B", "alpha", "beta")
    assert r.metrics["fit"]["mape_pct"] < 1.0
    assert not r.warnings


@pytest.mark.slow
def test_pruned_schedule_finds_the_optimum_of_the_full_run(chinchilla, chinchilla_fit):
    """Every start to convergence (no pruning, no outpacing) ends at the same best objective."""
    full = fit(
        SUPERVISED, chinchilla, fixed={"gamma": 1.0}, delta=1e-3, grid="epoch",
        schedule=FULL, options=LBFGSOptions(max_iter=1000),
    )
    assert chinchilla_fit.objective <= full.objective * (1 + 1e-9)
    np.testing.assert_allclose(chinchilla_fit.x, full.x, rtol=2e-3, atol=2e-3)


def test_matches_scipy_lbfgsb_from_the_same_starts(chinchilla):
    """Batched L-BFGS from 12 starts reaches an objective at least as low as per-start scipy."""
    from scipy.optimize import minimize
    from scipy.special import huber, logsumexp

    log_n, log_d, log_l = np.log(chinchilla["N"]), np.log(chinchilla["D"]), np.log(chinchilla["loss"])

    def objective(p):
        e, a, b, alpha, beta = p
        pred = logsumexp([np.full_like(log_n, e), a - alpha * log_n, b - beta * log_d], axis=0)
        return np.sum(huber(1e-3, pred - log_l))

    starts = make_starts(SUPERVISED, ["E", "A", "B", "alpha", "beta"], "epoch")
    pick = starts[np.random.default_rng(0).choice(len(starts), 12, replace=False)]
    scipy_best = min(minimize(objective, s, method="L-BFGS-B").fun for s in pick)
    ours = fit(SUPERVISED, chinchilla, fixed={"gamma": 1.0}, delta=1e-3, grid=pick)
    assert ours.objective <= scipy_best * (1 + 1e-9)
    assert objective(ours.x) == pytest.approx(ours.objective, rel=1e-10)


@pytest.fixture(scope="module")
def synthetic():
    # Busbridge-like protocols from the busbridge2025 preset, 0.5 % multiplicative noise
    return synthetic_runs("busbridge2025", n_supervised=80, n_distilled=240, noise=0.005, seed=7)


QUICK = LBFGSOptions(max_iter=600)


def test_round_trip_random_holdout_under_one_percent(synthetic):
    rng = np.random.default_rng(1)
    test = rng.random(len(synthetic)) < 0.2
    result = fit_runs(synthetic[~test], grid="coarse", options=QUICK)
    assert result.supervised is not None and result.distillation is not None
    predicted = predict_runs(synthetic[test].reset_index(drop=True), result.coefficients())
    err = np.abs(predicted["predicted_loss"] / predicted["loss"] - 1)
    for kind in ("supervised", "distilled"):
        mape = 100 * err[predicted["kind"] == kind].mean()
        assert mape < 1.0, (kind, mape)
    assert result.supervised.metrics["fit"]["mape_pct"] < 1.0
    assert result.distillation.metrics["fit"]["mape_pct"] < 1.0


def test_round_trip_extrapolates_from_weaker_to_stronger_students(synthetic):
    threshold = 2.3
    dist = synthetic[synthetic["kind"] == "distilled"]
    assert (dist["loss"] < threshold).sum() >= 30 and (dist["loss"] >= threshold).sum() >= 60
    # Ltilde_S from the supervised law fitted on all supervised rows; students: fit weak, score strong
    sup_fit = fit_runs(synthetic, law="supervised", grid="coarse", options=QUICK)
    result = fit_runs(
        synthetic, law="distillation", holdout_below=threshold, grid="coarse", options=QUICK,
        coefficients=sup_fit.coefficients(), coefficients_name="supervised fit",
    )
    held = result.distillation.metrics["holdout"]
    assert held["n"] == int((dist["loss"] < threshold).sum())
    assert held["mape_pct"] < 1.0
    assert result.distillation.n_runs == int((dist["loss"] >= threshold).sum())


def test_fewer_runs_than_free_parameters_is_an_error():
    data = {"N": [1e8, 1e9, 1e10], "D": [1e9, 1e10, 1e11], "loss": [3.0, 2.5, 2.2]}
    with pytest.raises(DistlawError, match="3 run.*5 free parameters"):
        fit(SUPERVISED, data, fixed={"gamma": 1.0}, grid="coarse")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"N": [1e8, -1.0], "D": [1e9, 1e9], "loss": [3.0, 2.0]}, "column 'N' value 2"),
        ({"N": [1e8, 1e9], "D": [1e9, np.inf], "loss": [3.0, 2.0]}, "column 'D'"),
        ({"N": [1e8, 1e9], "D": [1e9, 1e9], "loss": [np.nan, 2.0]}, "column 'loss'"),
        ({"N": [1e8, 1e9], "D": [1e9, 1e9]}, "missing column 'loss'"),
    ],
)
def test_bad_data_names_the_column(data, message):
    with pytest.raises(DistlawError, match=message):
        fit(SUPERVISED, data, fixed={"gamma": 1.0})


def test_students_started_from_a_pruned_teacher_are_left_out_of_the_distillation_law():
    """Eq. 8 models students trained from scratch; prune-distill rows (pruned_to) would bias it."""
    from distlaw.fitting import fit_runs
    from distlaw.laws import load_coefficients, student_loss, supervised_loss

    coef = load_coefficients("busbridge2025")
    rows = [{"kind": "supervised", "params": n, "tokens": 20 * n, "loss": float(supervised_loss(n, 20 * n, coef.supervised))}
            for n in np.geomspace(1e8, 1e10, 6)]
    rows += [{"kind": "distilled", "params": n, "tokens": 40 * n, "teacher_loss": lt, "loss": float(student_loss(n, 40 * n, lt, coef))}
             for n in np.geomspace(1e8, 1e10, 4) for lt in (1.9, 2.2, 2.6)]
    clean = pd.DataFrame(rows)
    pruned = pd.DataFrame([{**rows[-1], "loss": 1.0, "pruned_to": 1e10}] * 5)  # far below the law: a head start
    mixed = pd.concat([clean, pruned], ignore_index=True)
    free = "A"  # one free coefficient keeps the fit fast; the pruned rows would pull it far off
    args = dict(law="distillation", coefficients=coef, grid="coarse",
                fixed={f"distillation.{k}": v for k, v in coef.distillation.as_dict().items() if k != free})
    expected, got = fit_runs(clean, **args), fit_runs(mixed, **args)
    assert got.distillation.coefficients[free] == pytest.approx(coef.distillation.A, rel=1e-4)
    assert got.distillation.coefficients == expected.distillation.coefficients
    assert any("left out 5 distilled row(s) started from a pruned teacher" in w for w in got.warnings)
    with pytest.raises(DistlawError, match="started from a pruned teacher"):
        fit_runs(pd.concat([clean[clean["kind"] == "supervised"], pruned]), **args)

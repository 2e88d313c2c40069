"""Every interval contains its own estimate (issue 9, item 3d): where a bootstrap cannot give one
(a degenerate resample distribution, or no resample at all), tables say so and JSON has null bounds
with the reason, in the fit's coefficients, the capacity gap and its predictions, and density."""

import json

import numpy as np
import pandas as pd
import pytest

from distlaw.capacity import CapacityBootstrap, capacity_gap
from distlaw.density.estimate import score_models
from distlaw.density.models import LOSS_LAW, loss_starts
from distlaw.fitting import fit
from distlaw.fitting.bootstrap import interval_reasons, percentile_intervals
from distlaw.intervals import NO_DRAWS, NO_INTERVAL, NO_INTERVAL_SHORT, central_interval, interval_around, interval_notes
from distlaw.laws.capacity_gap import CapacityGapCoefficients
from distlaw.laws.density import DensityCoefficients, LossLawCoefficients, ScoreLawCoefficients, conditional_loss, score_from_loss
from tests.test_capacity_gap import planted

ONE_SIDED = np.linspace(3.0, 4.0, 41)  # every draw above an estimate of 2: the 95 % interval is [3.025, 3.975]


def one_line_error(r, message):
    assert r.code == 2, r.stdout
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# --- the shared helper ------------------------------------------------------------------------------

def test_an_interval_that_misses_its_estimate_is_nan_with_a_reason():
    lo, hi, holds = interval_around([2.0, 3.5], np.column_stack([ONE_SIDED, ONE_SIDED]), 0.95)
    assert holds.tolist() == [False, True]
    assert np.isnan(lo[0]) and np.isnan(hi[0])
    assert (lo[1], hi[1]) == pytest.approx((3.025, 3.975))
    assert interval_notes(np.column_stack([ONE_SIDED, ONE_SIDED]), holds) == [NO_INTERVAL, None]


def test_no_usable_draw_has_its_own_reason():
    draws = np.full((10, 2), np.nan)
    draws[:, 1] = 1.0
    lo, hi, holds = interval_around([1.0, 1.0], draws, 0.95)
    assert holds.tolist() == [False, True] and np.isnan(lo[0])
    assert interval_notes(draws, holds) == [NO_DRAWS, None]


def test_draws_at_a_limit_give_an_infinite_bound_not_nan():
    """Linear interpolation next to an infinite draw is inf - inf; the bound is the limit itself."""
    draws = np.array([1.0, 2.0, 3.0, np.inf])
    lo, hi = central_interval(draws, 0.95)
    assert lo == pytest.approx(1.075) and hi == np.inf
    lo, hi, holds = interval_around(2.5, draws, 0.95)
    assert holds and hi == np.inf
    assert interval_around(np.inf, [5.0, np.inf, np.inf], 0.95)[2]  # unbounded estimate, unbounded draws


# --- the fit's coefficient intervals (fitting/bootstrap.py) -----------------------------------------

def test_coefficient_intervals_drop_the_ones_that_miss_the_estimate():
    samples = np.column_stack([ONE_SIDED, ONE_SIDED - 1.0])  # column b: [2.025, 2.975] holds 2.5
    got = percentile_intervals(samples, ["a", "b"], 0.95, estimate=[2.0, 2.5])
    assert np.isnan(got["a"]).all() and got["b"] == pytest.approx((2.025, 2.975))
    assert interval_reasons(samples, ["a", "b"], 0.95, [2.0, 2.5]) == {"a": NO_INTERVAL}


def test_real_bootstrap_fit_intervals_hold_their_estimates():
    """The density loss law on noisy planted runs, 30 resamples: each interval is the brute-force
    percentile interval when that contains the estimate, NaN otherwise."""
    rng = np.random.default_rng(0)
    n = np.repeat([5e6, 3e7, 1e8, 2.5e8, 5e8, 8e8], 4)
    d = n * np.tile([10, 20, 40, 80], 6)
    law = LossLawCoefficients(a=300.0, b=300.0, alpha=0.3, beta=0.3)
    data = {"N": n, "D": d, "loss": conditional_loss(n, d, law) * np.exp(rng.normal(0, 0.01, n.size))}
    result = fit(LOSS_LAW, data, grid=loss_starts(*data.values()), bootstrap=30, seed=0)
    samples = result.bootstrap_samples[np.isfinite(result.bootstrap_samples).all(1)]
    names = list(result.coefficients)
    got = percentile_intervals(samples, names, 0.95, estimate=[result.coefficients[k] for k in names])
    for j, name in enumerate(names):
        lo, hi = np.quantile(samples[:, j], [0.025, 0.975])
        if lo <= result.coefficients[name] <= hi:
            assert got[name] == pytest.approx((lo, hi), rel=1e-12), name
        else:
            assert np.isnan(got[name]).all(), name


# --- capacity gap --------------------------------------------------------------------------------

def test_capacity_law_interval_that_misses_its_slope_is_dropped():
    lines = {"slope": ONE_SIDED, "intercept": ONE_SIDED - 1.0, "slope_origin": np.full(41, np.nan), "r2": np.ones(41)}
    draws = CapacityBootstrap(teacher_star=np.column_stack([ONE_SIDED, ONE_SIDED]), interior=np.ones((41, 2), bool), lines=lines)
    intervals, notes = draws.law_intervals({"slope": 2.0, "intercept": 2.5, "slope_origin": 2.0}, 0.95)
    assert np.isnan(intervals["slope"]).all() and intervals["intercept"] == pytest.approx((2.025, 2.975))
    assert notes == {"slope": NO_INTERVAL, "slope_origin": NO_DRAWS}
    per_student = draws.teacher_intervals([2.0, 3.5], 0.95)
    assert per_student["teacher_star_lo"].isna().tolist() == [True, False]
    assert per_student["interval_note"].tolist() == [NO_INTERVAL, None]


def test_real_capacity_bootstrap_intervals_hold_their_estimates():
    result = capacity_gap(planted(noise=0.02, seeds=2, seed=3), bootstrap=100, seed=0)
    c = result.curves
    shown = c["teacher_star_lo"].notna()
    assert shown.any()
    assert ((c["teacher_star_lo"] <= c["teacher_star"]) & (c["teacher_star"] <= c["teacher_star_hi"]))[shown].all()
    assert c.loc[~shown, "interval_note"].notna().all() and c.loc[shown, "interval_note"].isna().all()
    for name, estimate in result.fit.estimates.items():
        lo, hi = result.fit.intervals[name]
        assert (lo <= estimate <= hi) or name in result.fit.interval_notes, name


@pytest.fixture
def degenerate_law(tmp_path):
    """T* = 2.5 S with bootstrap samples all steeper: no interval contains the prediction."""
    path = tmp_path / "law.json"
    samples = [{"slope": 3.0 + 0.01 * i, "intercept": 0.0} for i in range(20)]
    CapacityGapCoefficients.model_validate({"law": {"slope": 2.5, "intercept": 0.0}, "bootstrap": samples}).save(path)
    return path


def test_capacity_predict_says_no_interval_instead_of_a_contradicting_one(cli, degenerate_law):
    r = cli("capacity", "predict", "--student", "1e9", "-c", degenerate_law, "--json")
    assert r.code == 0, r.stderr
    (row,) = r.json()["predictions"]
    assert row["teacher_params"] == pytest.approx(2.5e9)
    assert row["lo"] is None and row["hi"] is None and row["note"] == NO_INTERVAL
    table = cli("capacity", "predict", "--student", "1e9", "-c", degenerate_law)
    assert table.code == 0 and NO_INTERVAL_SHORT in table.stdout and "3e+09" not in table.stdout


def test_capacity_predict_interval_holds_the_prediction(cli, tmp_path):
    path = tmp_path / "law.json"
    samples = [{"slope": 2.0 + 0.05 * i, "intercept": 0.0} for i in range(21)]  # 2.0 .. 3.0 around 2.5
    CapacityGapCoefficients.model_validate({"law": {"slope": 2.5}, "bootstrap": samples}).save(path)
    (row,) = cli("capacity", "predict", "-n", "1e6", "-c", path, "--json").json()["predictions"]
    assert row["lo"] == pytest.approx(2.025e6) and row["hi"] == pytest.approx(2.975e6) and row["note"] is None


def test_capacity_fit_json_carries_notes_and_level(cli, tmp_path):
    src = tmp_path / "runs.csv"
    planted(noise=0.01, factors=[1 / 4, 1, 4]).to_csv(src, index=False)  # one run per teacher: nothing to resample
    r = cli("capacity", "fit", src, "--bootstrap", "20", "--level", "0.9", "--json")
    assert r.code == 0, r.stderr
    got = r.json()
    assert all(s["teacher_star_lo"] is None and s["interval_note"] == NO_DRAWS for s in got["students"])
    assert got["law"]["level"] == 0.9 and got["law"]["intervals"]["slope"] == [None, None]
    assert got["law"]["interval_notes"]["slope"] == NO_DRAWS
    table = cli("capacity", "fit", src, "--bootstrap", "20")
    assert table.code == 0 and "none (no resamples)" in table.stdout


# --- density ----------------------------------------------------------------------------------------

LOSS = LossLawCoefficients(a=300.0, b=300.0, alpha=0.3, beta=0.3)
SCORE = ScoreLawCoefficients(c=0.6, gamma=-3.0, l=2.0, d=0.25)


def test_density_interval_that_misses_its_estimate_is_dropped(cli, tmp_path):
    """Bootstrap samples whose sigmoids all sit lower (d - 0.05) give effective sizes all above the
    estimate: no interval. Samples on both sides (d -+ 0.01) give one that holds it."""
    score = float(score_from_loss(conditional_loss(3e7, 1e12, LOSS), SCORE.c, SCORE.gamma, SCORE.l, SCORE.d))
    shifted = [{"loss": LOSS.as_dict(), "score": {**SCORE.as_dict(), "d": SCORE.d - 0.05 - 0.001 * i}} for i in range(20)]
    both = [{"loss": LOSS.as_dict(), "score": {**SCORE.as_dict(), "d": SCORE.d + 0.001 * (i - 10)}} for i in range(21)]
    models = pd.DataFrame({"model": ["m"], "params": [1e7], "score": [score]})
    for samples, holds in ((shifted, False), (both, True)):
        k = DensityCoefficients.model_validate({"loss": LOSS.as_dict(), "score": SCORE.as_dict(), "bootstrap": samples})
        row = score_models(models, k).iloc[0]
        assert row["effective_params"] == pytest.approx(3e7, rel=1e-9)
        if holds:
            assert row["effective_params_lo"] < 3e7 < row["effective_params_hi"] and row["interval_note"] is None
        else:
            assert np.isnan(row["effective_params_lo"]) and np.isnan(row["density_hi"]) and row["interval_note"] == NO_INTERVAL
    path = tmp_path / "density.json"
    DensityCoefficients.model_validate({"loss": LOSS.as_dict(), "score": SCORE.as_dict(), "bootstrap": shifted}).save(path)
    r = cli("density", "score", "--params", "1e7", "--score", score, "-c", path, "--json")
    (row,) = r.json()["models"]
    assert row["density"] == pytest.approx(3.0, rel=1e-9) and row["density_lo"] is None and row["interval_note"] == NO_INTERVAL
    table = cli("density", "score", "--params", "1e7", "--score", score, "-c", path)
    assert table.code == 0 and "(degenerate)" in table.stdout  # NO_INTERVAL_SHORT, wrapped in a narrow table


def test_density_level_narrows_the_interval(cli, tmp_path):
    score = float(score_from_loss(conditional_loss(3e7, 1e12, LOSS), SCORE.c, SCORE.gamma, SCORE.l, SCORE.d))
    both = [{"loss": LOSS.as_dict(), "score": {**SCORE.as_dict(), "d": SCORE.d + 0.001 * (i - 10)}} for i in range(21)]
    path = tmp_path / "density.json"
    path.write_text(json.dumps({"loss": LOSS.as_dict(), "score": SCORE.as_dict(), "bootstrap": both}))
    wide, narrow = (cli("density", "score", "-n", "1e7", "--score", score, "-c", path, "--level", level, "--json").json()["models"][0]
                    for level in ("0.95", "0.5"))
    assert narrow["density_lo"] > wide["density_lo"] and narrow["density_hi"] < wide["density_hi"]


# --- one name and one default for interval levels ----------------------------------------------------

@pytest.mark.parametrize("args", [
    ["capacity", "predict", "-n", "1e9"],
    ["density", "trend", "models.csv"],
])
def test_levels_are_checked_in_one_line(cli, args):
    one_line_error(cli(*args, "--level", "1.5"), "--level must be between 0 and 1, got 1.5")


@pytest.mark.parametrize("args", [
    ["capacity", "fit", "runs.csv", "--confidence", "0.9"],
    ["capacity", "predict", "-n", "1e9", "--confidence", "0.9"],
    ["density", "trend", "models.csv", "--confidence", "0.9"],
    ["capacity", "predict", "-s", "1e9"],
    ["density", "score", "-n", "1e8", "-s", "0.5"],
])
def test_retired_flags_are_usage_errors(cli, args):
    one_line_error(cli(*args), "No such option")


def test_capacity_fit_level_is_checked_before_reading(cli, tmp_path):
    one_line_error(cli("capacity", "fit", tmp_path / "missing.csv", "--level", "0"), "--level must be between 0 and 1")

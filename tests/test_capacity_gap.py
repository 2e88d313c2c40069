"""Law of capacity gap (Zhang et al., arXiv 2311.07052): the law's math, and the smooth optimal
teacher and linear law recovered from planted runs tables with known T*(S) = 2.5 S."""

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from distlaw.capacity import bootstrap_capacity, capacity_gap, fit_capacity_gap, fitted_loss, teacher_curves
from distlaw.errors import DistlawError
from distlaw.findings import best_teachers
from distlaw.laws.capacity_gap import (
    CapacityGapCoefficients,
    CapacityGapLaw,
    load_capacity_law,
    optimal_student,
    optimal_teacher,
)

STUDENTS = [1e6, 3e6, 1e7, 3e7, 1e8]
FACTORS = [1 / 8, 1 / 4, 1 / 2, 1.3, 2, 4, 8]  # teacher / T*, both sides of the optimum
CURVATURE = 0.05  # nats per (ln T)^2


def base(s):
    return 3.0 - 0.1 * np.log(s)


def planted(noise=0.0, seeds=1, seed=0, students=STUDENTS, ratio=2.5, factors=FACTORS):
    """L(S, T) = base(S) + c (ln T - ln T*(S))^2 + noise, T*(S) = ratio S; one supervised row per student."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in students:
        rows.append({"kind": "supervised", "params": s, "tokens": 20 * s, "loss": base(s) + 0.3})
        for f in factors:
            t = ratio * s * f
            for _ in range(seeds):
                loss = base(s) + CURVATURE * np.log(f) ** 2 + noise * rng.standard_normal()
                rows.append({"kind": "distilled", "params": s, "tokens": 20 * s, "teacher_params": t, "teacher_loss": 2.0, "loss": loss})
    return pd.DataFrame(rows)


def one_student(losses, teachers=(1e6, 2e6, 4e6, 8e6, 1.6e7)):
    return pd.DataFrame(
        {"kind": "distilled", "params": 1e5, "tokens": 2e6, "teacher_params": list(teachers), "teacher_loss": 2.0, "loss": list(losses)}
    )


# --- the law -------------------------------------------------------------------------------------


def test_zhang_preset_is_two_and_a_half_times_the_student():
    law = load_capacity_law("zhang2023").law
    s = np.geomspace(1e6, 1e12, 13)
    t = optimal_teacher(s, law)
    assert np.all(np.isfinite(t)) and t == pytest.approx(2.5 * s, rel=1e-15)
    assert optimal_teacher(1e9, law) == pytest.approx(2.5e9)


@pytest.mark.parametrize("law", [CapacityGapLaw(slope=2.5), CapacityGapLaw(slope=2.498, intercept=-11.498)])
def test_inverse_round_trips_over_six_decades(law):
    s = np.geomspace(1e6, 1e12, 25).reshape(5, 5)
    assert optimal_student(optimal_teacher(s, law), law) == pytest.approx(s, rel=1e-12)
    t = np.geomspace(1e6, 1e12, 7)
    assert optimal_teacher(optimal_student(t, law), law) == pytest.approx(t, rel=1e-12)


def test_affine_law_has_a_domain():
    law = CapacityGapLaw(slope=2.498, intercept=-11.498)
    assert law.min_student == pytest.approx(11.498 / 2.498)
    with pytest.raises(DistlawError, match="outside the law's domain"):
        optimal_teacher([1e3, 2.0], law)
    with pytest.raises(DistlawError, match="no student suits it"):
        optimal_student(5.0, CapacityGapLaw(slope=2.0, intercept=10.0))
    with pytest.raises(DistlawError, match="student params must be positive"):
        optimal_teacher([1e6, -1.0], law)


def test_law_rejects_non_positive_slope_and_unknown_presets(tmp_path):
    with pytest.raises(ValidationError):
        CapacityGapLaw(slope=0.0)
    with pytest.raises(DistlawError, match="unknown capacity-gap preset 'zhang'"):
        load_capacity_law("zhang")
    with pytest.raises(DistlawError, match="cannot read"):
        load_capacity_law(tmp_path / "missing.json")


def test_coefficients_file_round_trips(tmp_path):
    coefficients = CapacityGapCoefficients(law=CapacityGapLaw(slope=2.4, intercept=3e5), bootstrap=[CapacityGapLaw(slope=2.3)], meta={"r2": 0.99})
    coefficients.save(tmp_path / "law.json")
    assert load_capacity_law(tmp_path / "law.json") == coefficients
    (tmp_path / "bad.json").write_text('{"law": {"slope": -1}}')
    with pytest.raises(DistlawError, match="law.slope: must be positive"):
        load_capacity_law(tmp_path / "bad.json")


# --- smooth optimum per student ------------------------------------------------------------------


def test_noise_free_optima_and_law_are_exact():
    runs = planted()
    curves = teacher_curves(runs)
    assert curves["params"].tolist() == STUDENTS and (curves["status"] == "interior").all()
    assert curves["teacher_star"].to_numpy() == pytest.approx(2.5 * np.array(STUDENTS), rel=1e-6)
    assert curves["loss_star"].to_numpy() == pytest.approx(base(np.array(STUDENTS)), abs=1e-9)
    assert curves["q2"].to_numpy() == pytest.approx(CURVATURE, rel=1e-6)
    assert (curves["teachers"] == len(FACTORS)).all() and (curves["runs"] == len(FACTORS)).all()
    fit = fit_capacity_gap(curves)
    assert fit.law.slope == pytest.approx(2.5, rel=1e-6) and fit.slope_origin == pytest.approx(2.5, rel=1e-6)
    assert abs(fit.law.intercept) < 1e-6 * min(STUDENTS)
    assert fit.r2 == pytest.approx(1.0, abs=1e-9) and fit.students == len(STUDENTS)


def test_pruned_students_are_grouped_by_their_target_size():
    """Each teacher prunes to a slightly different shape; ``pruned_to`` (from ``runs export``) names the student."""
    runs = planted()
    rng = np.random.default_rng(1)
    distilled = runs["kind"] == "distilled"
    runs["pruned_to"] = runs["params"].where(distilled)
    runs.loc[distilled, "params"] = runs.loc[distilled, "params"] * rng.uniform(0.97, 1.03, distilled.sum())
    with pytest.raises(DistlawError, match="most: 1"):  # by exact size, every student has one teacher
        teacher_curves(runs.drop(columns="pruned_to"))
    curves = teacher_curves(runs)
    assert curves["params"].tolist() == STUDENTS
    assert curves["teacher_star"].to_numpy() == pytest.approx(2.5 * np.array(STUDENTS), rel=1e-6)


def test_fitted_curve_passes_through_noise_free_points():
    runs = planted()
    curve = teacher_curves(runs).iloc[2]
    rows = runs[(runs["kind"] == "distilled") & (runs["params"] == curve["params"])]
    assert fitted_loss(curve, rows["teacher_params"]) == pytest.approx(rows["loss"].to_numpy(), abs=1e-9)


def test_noisy_seeds_recover_optima_and_slope_within_a_few_percent():
    curves = teacher_curves(planted(noise=0.005, seeds=3, seed=1))
    assert (curves["status"] == "interior").all() and (curves["runs"] == 3 * len(FACTORS)).all()
    assert curves["teacher_star"].to_numpy() == pytest.approx(2.5 * np.array(STUDENTS), rel=0.05)
    fit = fit_capacity_gap(curves)
    assert fit.law.slope == pytest.approx(2.5, rel=0.03) and fit.slope_origin == pytest.approx(2.5, rel=0.03)
    assert abs(fit.law.intercept) < 0.01 * 2.5 * max(STUDENTS)


def test_seed_average_is_weighted_by_seed_count():
    """Unequal seeds per teacher: the curve equals numpy's weighted polyfit of the seed means (weights = seeds)."""
    rng = np.random.default_rng(3)
    teachers = np.repeat([1e6, 2e6, 4e6, 8e6, 1.6e7], [1, 4, 2, 3, 1])
    losses = 2.0 + 0.04 * (np.log(teachers) - np.log(3e6)) ** 2 + 0.01 * rng.standard_normal(len(teachers))
    curve = teacher_curves(one_student(losses, teachers)).iloc[0]
    means = pd.Series(losses).groupby(teachers).agg(["mean", "size"])
    u = np.log(means.index.to_numpy()) - curve["log_center"]
    q2, q1, q0 = np.polyfit(u, means["mean"], 2, w=np.sqrt(means["size"]))
    assert [curve["q0"], curve["q1"], curve["q2"]] == pytest.approx([q0, q1, q2], rel=1e-9)
    assert curve["argmin_teacher"] == means["mean"].idxmin()


# --- edges, concave fits, errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "losses, status, bound",
    [
        ([2.5, 2.4, 2.32, 2.26, 2.22], "at least", 1.6e7),  # still falling at the largest teacher
        ([2.22, 2.26, 2.32, 2.4, 2.5], "at most", 1e6),  # rising from the smallest
        ([2.3, 2.35, 2.37, 2.35, 2.28], "at least", 1.6e7),  # concave hump, right end lowest
        ([2.25, 2.35, 2.37, 2.35, 2.3], "at most", 1e6),  # concave hump, left end lowest
    ],
)
def test_edge_optima_are_bounds_in_the_right_direction(losses, status, bound):
    (curve,) = teacher_curves(one_student(losses)).to_dict(orient="records")
    assert curve["status"] == status and curve["teacher_star"] == pytest.approx(bound)
    assert curve["loss_star"] == pytest.approx(fitted_loss(curve, bound))


def test_concave_fit_is_never_an_optimum():
    curves = teacher_curves(one_student([2.3, 2.35, 2.37, 2.35, 2.28]))
    assert curves.loc[0, "q2"] < 0 and curves.loc[0, "status"] != "interior"


def test_convex_vertex_outside_the_teachers_is_a_bound():
    curves = teacher_curves(planted(students=[1e6], factors=[1 / 64, 1 / 32, 1 / 16, 1 / 8]))
    assert curves.loc[0, "q2"] > 0 and curves.loc[0, "status"] == "at least"
    assert curves.loc[0, "teacher_star"] == pytest.approx(2.5e6 / 8)


def test_law_needs_two_interior_optima_but_curves_survive():
    runs = pd.concat([planted(students=[1e6]), planted(students=[1e7], factors=[1 / 16, 1 / 8, 1 / 4])])
    curves = teacher_curves(runs)
    assert curves["status"].tolist() == ["interior", "at least"]
    with pytest.raises(DistlawError, match="found 1 interior of 2 students .*add larger or smaller teachers"):
        fit_capacity_gap(curves)
    single = planted(students=[1e6])
    one_size = teacher_curves(pd.concat([single, single.assign(tokens=single["tokens"] * 2)]))
    assert (one_size["status"] == "interior").all() and len(one_size) == 2  # one student size, two token counts
    with pytest.raises(DistlawError, match="found 2 interior of 2 students \\(1 sizes\\): add students of other sizes"):
        fit_capacity_gap(one_size)
    result = capacity_gap(runs, bootstrap=20)
    assert result.fit is None and "interior optima" in result.reason
    assert result.curves["teacher_star"].tolist() == pytest.approx([2.5e6, 2.5e7 / 4], rel=1e-6)


def test_students_with_fewer_than_three_teachers_are_left_out():
    runs = pd.concat([planted(students=[1e6, 1e7]), planted(students=[1e8], factors=[1 / 2, 2])])
    result = capacity_gap(runs)
    assert result.curves["params"].tolist() == [1e6, 1e7] and result.skipped == 1


@pytest.mark.parametrize(
    "runs, message",
    [
        (planted().query("kind == 'supervised'"), "no distilled rows"),
        (planted(factors=[1 / 2, 2]), "no student (params, tokens) has distilled runs from 3 or more teacher sizes (most: 2)"),
        (planted().drop(columns="teacher_params"), "need 'teacher_params'"),
    ],
)
def test_errors(runs, message):
    with pytest.raises(DistlawError, match=message.replace("(", r"\(").replace(")", r"\)")):
        teacher_curves(runs)


# --- agreement with the raw argmin ---------------------------------------------------------------


def test_raw_argmin_agrees_with_best_teachers():
    """One seed per teacher, a clear V per student, stronger teachers bigger: both name the same teacher."""
    runs = planted(factors=[1 / 4, 1 / 2, 1.0, 2, 4])
    runs.loc[runs["kind"] == "distilled", "teacher_loss"] = 5.0 - 0.1 * np.log(runs["teacher_params"])
    curves = teacher_curves(runs).set_index("params")
    best = best_teachers(runs).set_index("params")
    size_of = runs.dropna(subset=["teacher_loss"]).drop_duplicates(["params", "teacher_loss"]).set_index(["params", "teacher_loss"])["teacher_params"]
    for s in STUDENTS:
        assert curves.loc[s, "argmin_teacher"] == size_of[(s, best.loc[s, "best_teacher_loss"])] == pytest.approx(2.5 * s)
        assert curves.loc[s, "argmin_loss"] == best.loc[s, "best_student_loss"]
        assert bool(best.loc[s, "capacity_gap"])


# --- bootstrap -----------------------------------------------------------------------------------


def test_bootstrap_is_seeded_and_shaped():
    runs = planted(noise=0.01, seeds=3, seed=2)
    a, b = bootstrap_capacity(runs, 50, seed=7), bootstrap_capacity(runs, 50, seed=7)
    assert a.teacher_star.shape == (50, len(STUDENTS)) and np.array_equal(a.teacher_star, b.teacher_star)
    assert not np.array_equal(a.teacher_star, bootstrap_capacity(runs, 50, seed=8).teacher_star)
    assert all(law.slope > 0 for law in a.laws())
    with pytest.raises(DistlawError, match="at least one resample"):
        bootstrap_capacity(runs, 0)


def test_bootstrap_intervals_cover_the_planted_values():
    """Over 40 noisy tables (5 seeds per teacher), the 95 % intervals of T* and of the slope contain
    the truth at close to their level (percentile intervals from 35 runs per student run a bit narrow)."""
    covered, slope_covered = [], []
    for seed in range(40):
        result = capacity_gap(planted(noise=0.01, seeds=5, seed=seed), bootstrap=200, seed=seed)
        c = result.curves
        truth = 2.5 * c["params"]
        covered += ((c["teacher_star_lo"] <= truth) & (truth <= c["teacher_star_hi"])).tolist()
        lo, hi = result.fit.intervals["slope"]
        slope_covered.append(lo <= 2.5 <= hi)
        assert (c["interior_share"] > 0.95).all()
    assert np.mean(covered) >= 0.85 and np.mean(slope_covered) >= 0.85


def test_bootstrap_intervals_shrink_with_the_noise():
    widths = {}
    for noise in (0.01, 0.001):
        result = capacity_gap(planted(noise=noise, seeds=3, seed=4), bootstrap=200, seed=0)
        c = result.curves
        lo, hi = result.fit.intervals["slope"]
        widths[noise] = (np.log(c["teacher_star_hi"] / c["teacher_star_lo"]).mean(), hi - lo)
    assert widths[0.001][0] < 0.2 * widths[0.01][0] and widths[0.001][1] < 0.2 * widths[0.01][1]


def test_one_run_per_teacher_size_gives_no_interval():
    """Three runs at three sizes: every resample that can be fitted repeats the data, so no interval."""
    result = capacity_gap(planted(noise=0.01, factors=[1 / 4, 1, 4]), bootstrap=100)
    assert result.curves["teacher_star_lo"].isna().all() and result.curves["interior_share"].isna().all()
    assert np.isnan(result.fit.intervals["slope"]).all() and result.fit.samples == []
    assert result.fit.law.slope == pytest.approx(2.5, rel=0.1)


def test_fit_with_bootstrap_round_trips_as_coefficients(tmp_path):
    fit = capacity_gap(planted(noise=0.005, seeds=2), bootstrap=30, seed=1).fit
    fit.coefficients().save(tmp_path / "law.json")
    loaded = load_capacity_law(tmp_path / "law.json")
    assert loaded.law == fit.law and len(loaded.bootstrap) == len(fit.samples) > 0
    assert loaded.meta["slope_origin"] == pytest.approx(fit.slope_origin)

"""Intervals from bootstrap coefficient samples, checked against planted samples and per-sample solves."""

import numpy as np
import pytest

from distlaw import DistlawError, load_coefficients
from distlaw.laws import PRESETS, Coefficients
from distlaw.planning import ExistingTeacher, Planner, recipe_intervals

BASE = PRESETS["busbridge2025"]
SHIFTS = np.linspace(-0.02, 0.02, 41)


def with_samples(sup_rows, dist_rows=None) -> Coefficients:
    bootstrap = {"supervised": sup_rows}
    if dist_rows is not None:
        bootstrap["distillation"] = dist_rows
    return Coefficients.from_dict({**BASE, "bootstrap": bootstrap})


def shifted_e() -> Coefficients:
    return with_samples([{**BASE["supervised"], "E": BASE["supervised"]["E"] + d} for d in SHIFTS])


def test_samples_equal_to_the_point_give_zero_width_bands():
    coef = with_samples([BASE["supervised"]] * 4, [BASE["distillation"]] * 4)
    planner = Planner(coef)
    r = planner.solve(1e9, [1e20, 1e22], "teacher-pretraining+inference")
    bands = recipe_intervals(planner, r)
    for field, (lo, hi) in bands.recipe.items():
        np.testing.assert_allclose(lo, getattr(r, field), rtol=1e-9)
        np.testing.assert_allclose(hi, getattr(r, field), rtol=1e-9)
    np.testing.assert_allclose(bands.recipe_loss[0], r.student_loss, rtol=1e-12)


def test_supervised_band_follows_a_planted_shift_of_e():
    # L = E + (...)^gamma: shifting E by d shifts the supervised loss by exactly d
    coef = shifted_e()
    planner = Planner(coef)
    r = planner.solve(1e9, 1e21, "best")
    bands = recipe_intervals(planner, r, level=0.9)
    sup = planner.supervised(1e9, 1e21).loss
    lo, hi = bands.supervised_loss
    assert lo == pytest.approx(sup + np.quantile(SHIFTS, 0.05), abs=1e-12)
    assert hi == pytest.approx(sup + np.quantile(SHIFTS, 0.95), abs=1e-12)
    assert bands.recipe["student_loss"][0] < r.student_loss < bands.recipe["student_loss"][1]


def test_each_sample_is_solved_as_its_own_point_estimate():
    coef = shifted_e()
    sampled = Planner(coef).bootstrap().solve([1e8, 1e9], 1e22, "teacher-pretraining")
    assert sampled.student_loss.shape == (len(SHIFTS), 2)
    for i in (0, 20, 40):
        alone = Planner(Coefficients.from_dict({**BASE, "supervised": coef.bootstrap["supervised"][i]}))
        r = alone.solve([1e8, 1e9], 1e22, "teacher-pretraining")
        np.testing.assert_allclose(sampled.student_loss[i], r.student_loss, rtol=1e-12)
        np.testing.assert_allclose(sampled.teacher_params[i], r.teacher_params, rtol=1e-12)


def test_existing_teacher_band_varies_only_through_the_laws():
    coef = shifted_e()
    planner = Planner(coef)
    teacher = ExistingTeacher(7e9, loss=1.95)
    r = planner.solve_existing(1e9, 1e22, teacher)
    bands = recipe_intervals(planner, r, teacher=teacher)
    lo, hi = bands.recipe["student_tokens"]
    assert lo == pytest.approx(float(r.student_tokens)) and hi == pytest.approx(float(r.student_tokens))
    assert bands.recipe_loss[0] < r.student_loss < bands.recipe_loss[1]


def test_no_samples_is_a_clear_error():
    with pytest.raises(DistlawError, match="no bootstrap samples"):
        Planner(load_coefficients("busbridge2025")).bootstrap()

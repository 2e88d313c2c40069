"""The planner's recipes: budget constraint, law consistency, published values, existing teachers, errors."""

import numpy as np
import pytest

from distlaw import DistlawError, load_coefficients, student_loss, supervised_loss
from distlaw.compute import FlopModel
from distlaw.planning import SCENARIOS, ExistingTeacher, Planner, crossovers, isoflop_profile, optimal_teacher, parse_scenarios
from distlaw.planning.search import bisect, grid_minimize

COEF = load_coefficients("busbridge2025")
PLANNER = Planner(COEF)
F = FlopModel().forward


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_recipes_spend_the_budget_and_match_the_laws(scenario):
    ns, c = np.array([[1e8], [1e10]]), np.logspace(20, 24, 3)
    r = PLANNER.solve(ns, c, scenario)
    assert r.student_loss.shape == (2, 3)
    s = SCENARIOS[scenario]
    counted = 3 * F(ns) * r.student_tokens + F(r.teacher_params) * (
        s.teacher_logits * r.student_tokens + s.teacher_pretraining * 3 * r.teacher_tokens
    )
    if s.teacher_logits or s.teacher_pretraining:
        np.testing.assert_allclose(counted, np.broadcast_to(c, counted.shape), rtol=1e-9)  # Eq. 9 with equality
    else:
        np.testing.assert_allclose(r.student_tokens, c / (3 * F(ns)), rtol=1e-12)
    # the reported losses, recomputed through the public law functions
    np.testing.assert_allclose(r.teacher_loss, supervised_loss(r.teacher_params, r.teacher_tokens, COEF.supervised), rtol=1e-9)
    np.testing.assert_allclose(r.student_loss, student_loss(ns, r.student_tokens, r.teacher_loss, COEF), rtol=1e-9)
    split = r.compute_split()
    np.testing.assert_allclose(sum(split.values()), 1.0)
    assert ((r.teacher_params >= 1e6) & (r.teacher_params <= 1e17 * (1 + 1e-9))).all()
    assert ((r.teacher_tokens >= 1e6 * (1 - 1e-9)) & (r.teacher_tokens <= 1e17 * (1 + 1e-9))).all()


def test_published_best_case_at_twenty_tokens_per_param():
    # LAWS.md sect. 2: at N_S = 1e9, D_S = 20e9 the best teacher gives about 2.252 vs 2.375 supervised
    choice = optimal_teacher(PLANNER, 1e9, 20e9)
    assert choice.student_loss == pytest.approx(2.252, abs=1e-3)
    assert choice.supervised_loss == pytest.approx(2.375, abs=1e-3)
    # same optimum through the budget form of the best case
    r = PLANNER.solve(1e9, 3 * F(1e9) * 20e9, "best")
    assert r.student_loss == pytest.approx(float(choice.student_loss), abs=1e-9)


def test_published_best_case_flip_between_1p3_and_5_trillion_tokens():
    # LAWS.md sect. 2: the best-case advantage flips sign between about 1.3T and 5T student tokens
    (point,) = crossovers(PLANNER, 1e9, "best").points
    c = point.compute
    tokens = c / (3 * F(1e9))
    assert 1.3e12 < tokens < 5e12
    below, above = PLANNER.solve(1e9, [c / 1.5, c * 1.5], "best"), PLANNER.supervised(1e9, [c / 1.5, c * 1.5])
    assert below.student_loss[0] < above.loss[0] and below.student_loss[1] > above.loss[1]


def test_optimal_teacher_is_a_minimum_over_teacher_loss():
    choice = optimal_teacher(PLANNER, [5.46e8, 1e9], [1.092e10, 1e12])
    lt = choice.teacher_loss[:, None] * np.exp(np.linspace(-0.05, 0.05, 11))
    losses = student_loss(np.array([[5.46e8], [1e9]]), np.array([[1.092e10], [1e12]]), lt, COEF)
    assert (losses >= choice.student_loss[:, None] - 1e-12).all()
    # the teacher reported reaches that loss, and is cheaper than the fixed-M=20 teacher that also does
    np.testing.assert_allclose(supervised_loss(choice.teacher_params, choice.teacher_tokens, COEF.supervised), choice.teacher_loss, rtol=1e-9)
    m20 = optimal_teacher(PLANNER, [5.46e8, 1e9], [1.092e10, 1e12], tokens_per_param=20)
    np.testing.assert_allclose(m20.teacher_tokens, 20 * m20.teacher_params, rtol=1e-9)
    np.testing.assert_allclose(supervised_loss(m20.teacher_params, m20.teacher_tokens, COEF.supervised), m20.teacher_loss, rtol=1e-7)
    assert (F(choice.teacher_params) * choice.teacher_tokens <= F(m20.teacher_params) * m20.teacher_tokens * (1 + 1e-6)).all()


def test_best_case_1d_search_equals_the_2d_teacher_profile():
    # best case via L_T directly vs via (N_T, D_T) with a free teacher: the same optimum
    profile = isoflop_profile(PLANNER, 1e9, 1e21, np.logspace(8, 12, 41), "best")
    best = PLANNER.solve(1e9, 1e21, "best")
    assert np.nanmin(profile.student_loss) == pytest.approx(float(best.student_loss), abs=2e-5)
    assert (profile.student_loss >= best.student_loss - 1e-9).all()


def test_isoflop_profile_has_the_capacity_gap_shape():
    nt = np.logspace(7, 12, 26)
    profile = isoflop_profile(PLANNER, 1e9, 1e22, nt, "teacher-pretraining+inference")
    i = int(np.nanargmin(profile.student_loss))
    assert 0 < i < len(nt) - 1  # too small and too large teachers are both worse
    opt = PLANNER.solve(1e9, 1e22, "teacher-pretraining+inference")
    assert float(opt.student_loss) <= np.nanmin(profile.student_loss) + 1e-9


def test_existing_teacher_spends_everything_on_the_student():
    teacher = ExistingTeacher(7e9, loss=1.95)
    r = PLANNER.solve_existing(1e9, [1e21, 1e22], teacher, "teacher-inference")
    np.testing.assert_allclose(r.student_tokens, np.array([1e21, 1e22]) / (3 * F(1e9) + F(7e9)), rtol=1e-12)
    np.testing.assert_allclose(r.student_loss, student_loss(1e9, r.student_tokens, 1.95, COEF), rtol=1e-12)
    # no smaller D_S does better (L_S falls with D_S at a fixed teacher)
    smaller = student_loss(1e9, r.student_tokens[:, None] * np.linspace(0.1, 0.99, 10), 1.95, COEF)
    assert (smaller > r.student_loss[:, None]).all()
    by_tokens = PLANNER.solve_existing(1e9, 1e23, ExistingTeacher(7e9, tokens=2e12), "teacher-pretraining+inference")
    left = 1e23 - 3 * F(7e9) * 2e12
    assert float(by_tokens.student_tokens) == pytest.approx(left / (3 * F(1e9) + F(7e9)), rel=1e-12)
    assert float(by_tokens.teacher_loss) == pytest.approx(float(supervised_loss(7e9, 2e12, COEF.supervised)), rel=1e-12)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: PLANNER.solve(1e9, 1e15, "best"), "less than one student step"),
        (lambda: PLANNER.solve(-1e9, 1e21, "best"), "student params must be positive"),
        (lambda: PLANNER.solve(1e9, -1e21, "best"), "compute must be positive"),
        (lambda: PLANNER.solve_existing(1e9, 1e21, ExistingTeacher(7e9, loss=1.1)), "floor"),
        (lambda: PLANNER.solve_existing(1e9, 1e21, ExistingTeacher(7e9, loss=2.0), "teacher-pretraining"), "training tokens"),
        (lambda: PLANNER.solve_existing(1e9, 1e19, ExistingTeacher(7e9, tokens=1e12), "teacher-pretraining"), "less than one student step"),
        (lambda: parse_scenarios("teacher-distillation"), "unknown scenario"),
        (lambda: PLANNER.solve(1e9, 1e21, "teacher-distillation"), "unknown scenario"),
    ],
)
def test_bad_requests_are_one_line_errors(call, message):
    with pytest.raises(DistlawError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_minimum_budget_is_exactly_one_student_step():
    c_min = PLANNER.minimum_compute(1e9, SCENARIOS["best"])
    assert c_min == pytest.approx(3 * F(1e9) * 1e6)
    assert PLANNER.solve(1e9, c_min, "best").student_tokens == pytest.approx(1e6)


def test_grid_minimize_finds_the_global_minimum_of_a_two_basin_function():
    # f has a shallow basin at x = -2 and the global one at x = 3 (value -1), per problem shifted by s
    s = np.array([0.0, 0.5, -1.0])
    f = lambda x, y: 0.5 * np.tanh((x - s[:, None, None] + 2) ** 2) + np.where(x - s[:, None, None] > 0, -np.exp(-((x - s[:, None, None] - 3) ** 2)), 0) + (y - 1) ** 2  # noqa: E731
    x, v = grid_minimize(f, np.tile([-10.0, -5.0], (3, 1)), np.tile([10.0, 5.0], (3, 1)))
    np.testing.assert_allclose(x[:, 1], 1.0, atol=1e-6)
    assert (x[:, 0] - s > 2).all()
    root = bisect(lambda t: t**3 - 2.0, np.zeros(2), np.full(2, 5.0), iters=60)
    np.testing.assert_allclose(root, 2 ** (1 / 3), rtol=1e-12)


def test_crossover_with_an_existing_teacher_is_where_the_closed_forms_meet():
    (point,) = crossovers(PLANNER, 1e9, "teacher-inference", ExistingTeacher(7e9, loss=1.95)).points
    c = point.compute
    budgets = c * np.array([0.99, 1.01])
    distilled = student_loss(1e9, budgets / (3 * F(1e9) + F(7e9)), 1.95, COEF)
    supervised = supervised_loss(1e9, budgets / (3 * F(1e9)), COEF.supervised)
    assert distilled[0] < supervised[0] and distilled[1] > supervised[1]

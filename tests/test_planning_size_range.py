"""A configurable size range on N_T, D_S, D_T: planning at a small pilot's scale.

The paper bounds teacher size and tokens to 1e6..1e17 (Busbridge et al. 2025, arXiv 2502.08606,
App. H); a pilot fitted on 2e3..1e5-parameter models needs lower bounds. Pinned optima are checked
against closed forms of Eq. 9 and the public law functions (Eqs. 1 and 8).
"""

import numpy as np
import pytest

from distlaw import DistlawError, load_coefficients, student_loss, supervised_loss
from distlaw.compute import FlopModel
from distlaw.laws import PRESETS, Coefficients
from distlaw.planning import SCENARIOS, ExistingTeacher, Planner, crossovers, isoflop_profile, optimal_teacher

# the paper's coefficients at a pilot's scale, far outside their domain on purpose
pytestmark = pytest.mark.filterwarnings("ignore::distlaw.laws.domain.ExtrapolationWarning")

COEF = load_coefficients("busbridge2025")
F = FlopModel().forward
PILOT = Planner(COEF, size_range=(1e2, 1e12))
NS, BUDGETS = 5e3, np.logspace(13, 15, 5)


def test_default_range_is_the_papers_and_bootstrap_keeps_the_range():
    assert Planner(COEF).size_range == (1e6, 1e17)
    base = PRESETS["busbridge2025"]
    coef = Coefficients.from_dict({**base, "bootstrap": {"supervised": [base["supervised"]] * 3}})
    sampled = Planner(coef, size_range=(1e2, 1e12)).bootstrap().solve(NS, 1e13, "teacher-pretraining")
    np.testing.assert_allclose(sampled.student_loss, PILOT.solve(NS, 1e13, "teacher-pretraining").student_loss, rtol=1e-12)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_pilot_recipes_stay_in_the_range_and_spend_the_budget(scenario):
    r = PILOT.solve(NS, BUDGETS, scenario)
    s = SCENARIOS[scenario]
    lo, hi = 1e2 * (1 - 1e-9), 1e12 * (1 + 1e-9)
    for sizes in (r.teacher_params, r.teacher_tokens):
        assert ((sizes >= lo) & (sizes <= hi)).all(), sizes
    assert (r.student_tokens >= lo).all()
    counted = 3 * F(NS) * r.student_tokens + F(r.teacher_params) * (
        s.teacher_logits * r.student_tokens + s.teacher_pretraining * 3 * r.teacher_tokens
    )
    np.testing.assert_allclose(counted, BUDGETS, rtol=1e-9)  # Eq. 9 with equality
    np.testing.assert_allclose(r.student_loss, student_loss(NS, r.student_tokens, r.teacher_loss, COEF), rtol=1e-9)


def test_the_pilot_problem_needs_the_lower_range():
    with pytest.raises(DistlawError, match=r"less than one student step .*1e\+06 tokens"):
        Planner(COEF).solve(NS, 1e13, "teacher-pretraining")
    assert PILOT.solve(NS, 1e13, "teacher-pretraining").teacher_params < 1e6  # outside the paper's range


def test_minimum_budget_follows_the_lower_bound():
    both = SCENARIOS["teacher-pretraining+inference"]
    lo = 1e2
    assert PILOT.minimum_compute(NS, both) == pytest.approx(3 * F(NS) * lo + F(lo) * lo + 3 * F(lo) * lo, rel=1e-12)
    assert PILOT.solve(NS, 3 * F(NS) * lo, "best").student_tokens == pytest.approx(lo)
    with pytest.raises(DistlawError, match=r"needs at least .* FLOPs: 100 tokens"):
        PILOT.solve(NS, 2 * F(NS) * lo, "best")


def test_a_teacher_below_the_lower_bound_ends_on_it():
    # teacher inference at C = 1e15: the optimum in 1e2..1e12 is a 2.6e6 teacher; with the bound at 1e7
    # the smallest allowed teacher is best, and the recipe is Eq. 9's closed form at N_T = 1e7, D_T = 1e12
    free = PILOT.solve(NS, 1e15, "teacher-inference")
    assert float(free.teacher_params) < 1e7
    pinned = Planner(COEF, size_range=(1e7, 1e12)).solve(NS, 1e15, "teacher-inference")
    assert float(pinned.teacher_params) == pytest.approx(1e7, rel=1e-12)
    assert float(pinned.teacher_tokens) == pytest.approx(1e12, rel=1e-12)
    ds = 1e15 / (3 * F(NS) + F(1e7))
    expected = student_loss(NS, ds, supervised_loss(1e7, 1e12, COEF.supervised), COEF)
    assert float(pinned.student_loss) == pytest.approx(float(expected), abs=1e-12)
    assert float(pinned.student_loss) > float(free.student_loss)


def test_a_teacher_above_the_upper_bound_ends_on_it():
    # best case: the loss-optimal teacher (L_T ~ 3.8) is out of reach below 1e6, so the best teacher
    # allowed is the largest, trained longest: L_T = L(1e6, 1e6) (Eq. 1)
    r = Planner(COEF, size_range=(1e2, 1e6)).solve(NS, 1e13, "best")
    assert float(r.teacher_params) == pytest.approx(1e6, rel=1e-9)
    assert float(r.teacher_tokens) == pytest.approx(1e6, rel=1e-9)
    assert float(r.teacher_loss) == pytest.approx(float(supervised_loss(1e6, 1e6, COEF.supervised)), rel=1e-9)
    assert float(r.student_loss) > float(PILOT.solve(NS, 1e13, "best").student_loss)


def test_isoflop_profile_in_the_pilot_range():
    profile = isoflop_profile(PILOT, NS, 1e14, np.logspace(2, 12, 21), "teacher-pretraining+inference")
    opt = PILOT.solve(NS, 1e14, "teacher-pretraining+inference")
    feasible = np.isfinite(profile.student_loss)
    assert feasible.sum() > 10 and float(opt.student_loss) <= profile.student_loss[feasible].min() + 1e-9
    assert (profile.teacher_tokens[feasible] >= 1e2 * (1 - 1e-9)).all()
    assert (profile.student_tokens[feasible] >= 1e2 * (1 - 1e-9)).all()


def test_optimal_teacher_is_pinned_to_the_largest_allowed():
    # the loss-optimal L_T (about 3.81 at N_S = 5e3, D_S = 1e7) needs a 2e7 teacher; below 1e6 the
    # best reachable is L(1e6, 1e6) (Eq. 1), and L_S is Eq. 8 at that L_T
    assert float(optimal_teacher(PILOT, NS, 1e7).teacher_loss) < 3.9
    choice = optimal_teacher(Planner(COEF, size_range=(1e2, 1e6)), NS, 1e7)
    lt = float(supervised_loss(1e6, 1e6, COEF.supervised))
    assert float(choice.teacher_loss) == pytest.approx(lt, rel=1e-9)
    assert float(choice.student_loss) == pytest.approx(float(student_loss(NS, 1e7, lt, COEF)), rel=1e-9)
    m20 = optimal_teacher(Planner(COEF, size_range=(1e2, 1e6)), NS, 1e7, tokens_per_param=20)
    assert 1e2 <= float(m20.teacher_params) <= 1e6
    assert float(supervised_loss(m20.teacher_params, 20 * m20.teacher_params, COEF.supervised)) == pytest.approx(lt, rel=1e-7)


def test_crossover_with_a_pilot_teacher_is_where_the_closed_forms_meet():
    # a 2e4 teacher trained on 4e5 tokens: supervised catches up at about 3e13 FLOPs, below the
    # least budget the paper's range allows (10 x one 1e6-token step with its logits), so NaN there
    teacher = ExistingTeacher(2e4, tokens=4e5)
    found = crossovers(PILOT, NS, "teacher-inference", teacher)
    assert found.winner_below == "distillation" and len(found.points) == 1
    c = found.points[0].compute
    budgets = c * np.array([0.99, 1.01])
    distilled = student_loss(NS, budgets / (3 * F(NS) + F(2e4)), supervised_loss(2e4, 4e5, COEF.supervised), COEF)
    supervised = supervised_loss(NS, budgets / (3 * F(NS)), COEF.supervised)
    assert distilled[0] < supervised[0] and distilled[1] > supervised[1]
    paper_range = crossovers(Planner(COEF), NS, "teacher-inference", teacher)
    assert paper_range.winner_below == "supervised" and paper_range.points == ()


def test_existing_teacher_uses_the_lower_bound():
    teacher = ExistingTeacher(1e5, tokens=2e6)
    c = 3e8  # leaves about 20 student tokens: below 1e2
    with pytest.raises(DistlawError, match=r"\(100 tokens\)"):
        PILOT.solve_existing(NS, c, teacher)
    r = PILOT.solve_existing(NS, 1e12, teacher)
    assert float(r.student_tokens) == pytest.approx(1e12 / (3 * F(NS) + F(1e5)), rel=1e-12)


@pytest.mark.parametrize("size_range", [(1e12, 1e2), (0.0, 1e9), (-1.0, 1e9), (1e2, np.inf), (np.nan, 1e9), (1e6, 1e6)])
def test_bad_ranges_are_one_line_errors(size_range):
    with pytest.raises(DistlawError, match="size range") as info:
        Planner(COEF, size_range=size_range)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("ns", [0.5, 2e12])
def test_student_sizes_outside_one_to_the_upper_bound_are_errors(ns):
    with pytest.raises(DistlawError, match="student params must be between 1 and 1e\\+12"):
        PILOT.solve(ns, 1e15, "best")
    with pytest.raises(DistlawError, match="student params must be between 1"):
        PILOT.solve_existing(ns, 1e15, ExistingTeacher(1e5, loss=5.0))

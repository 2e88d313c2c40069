"""The headline findings of Busbridge et al. 2025 (arXiv 2502.08606, Sec. 5), from the busbridge2025 preset."""

import numpy as np
import pytest

from distlaw import load_coefficients
from distlaw.compute import FlopModel
from distlaw.planning import Planner, crossovers

FLOPS = FlopModel()
PLANNER = Planner(load_coefficients("busbridge2025"))
STUDENTS = np.array([1e8, 1e9, 1e10])
BUDGETS = np.logspace(19, 25, 13)


@pytest.mark.parametrize("scenario", ["teacher-pretraining", "teacher-pretraining+inference"])
def test_counting_teacher_pretraining_supervised_is_at_least_as_good(scenario):
    # at every budget that gives the supervised student at least one token per parameter, up to 1e25
    for ns in (5e8, 1e9, 1e10):
        budgets = np.logspace(np.log10(3 * FLOPS.forward(ns) * ns), 25, 13)
        dist = PLANNER.solve(ns, budgets, scenario).student_loss
        sup = PLANNER.supervised(ns, budgets).loss
        assert (sup <= dist).all(), dist - sup


def test_a_hopelessly_undertrained_student_is_the_exception():
    # N_S = 1e10 at C = 1e19 sees 0.016 tokens per parameter: a small teacher trained on most of the
    # budget teaches it far better than its own supervised run (the law's extrapolation, -0.5 nats).
    dist = PLANNER.solve(1e10, 1e19, "teacher-pretraining").student_loss
    assert dist < PLANNER.supervised(1e10, 1e19).loss - 0.3


@pytest.mark.parametrize("scenario", ["teacher-pretraining", "teacher-pretraining+inference"])
def test_below_the_papers_smallest_student_the_law_extrapolates_a_small_distillation_edge(scenario):
    # N_S = 1e8 < 143M (the paper's smallest model): once the teacher's cost is amortized over a large
    # budget, the fitted law lets a distilled 1e8 student beat its supervised limit by ~0.01-0.02 nats.
    gap = PLANNER.solve(1e8, BUDGETS, scenario).student_loss - PLANNER.supervised(1e8, BUDGETS).loss
    assert gap[0] > 0 and -0.03 < gap.min() < 0


def test_without_teacher_costs_distillation_wins_at_small_budgets():
    # the contrast that makes the previous test meaningful: a free teacher beats supervised at 1e19-1e20
    dist = PLANNER.solve(STUDENTS[:, None], [1e19, 1e20], "best").student_loss
    sup = PLANNER.supervised(STUDENTS[:, None], [1e19, 1e20]).loss
    assert (dist < sup - 0.01).all()


@pytest.mark.parametrize("ns", STUDENTS)
def test_optimal_teacher_grows_with_compute_then_levels_off_near_the_student(ns):
    budgets = np.logspace(np.log10(ns) + 9, 27, 12)
    nt = PLANNER.solve(ns, budgets, "teacher-pretraining+inference").teacher_params
    peak = int(np.argmax(nt))
    assert nt[0] < ns < nt[peak] and np.all(np.diff(nt[: peak + 1]) > 0)  # grows past the student size
    assert np.all(nt[peak:] >= ns)
    tail = nt[-3:] / ns
    assert (tail > 1).all() and (tail < 5).all()  # levels off slightly above the student's size
    assert tail.max() / tail.min() < 1.3


def test_teacher_inference_favours_overtrained_teachers():
    budgets = np.logspace(19, 23, 5)
    for ns in STUDENTS:
        infer = PLANNER.solve(ns, budgets, "teacher-inference")
        pretrain = PLANNER.solve(ns, budgets, "teacher-pretraining")
        both = PLANNER.solve(ns, budgets, "teacher-pretraining+inference")
        m_infer = infer.teacher_tokens / infer.teacher_params
        m_pretrain = pretrain.teacher_tokens / pretrain.teacher_params
        m_both = both.teacher_tokens / both.teacher_params
        shared = pretrain.compute_split()["teacher_pretraining"] > 0.1  # where the teacher's size matters
        assert shared[0] and (m_pretrain[shared] > 5).all() and (m_pretrain[shared] < 40).all()  # ~Chinchilla
        assert (m_infer > 1000 * m_pretrain).all()
        assert np.all(np.diff(m_both) > 0) and (m_both >= m_pretrain * 0.9).all()  # more inference, more overtraining


@pytest.mark.parametrize("scenario", ["best", "teacher-inference", "teacher-pretraining", "teacher-pretraining+inference"])
def test_crossover_compute_grows_with_student_size(scenario):
    found = [crossovers(PLANNER, ns, scenario) for ns in (5e8, 1e9, 3e9, 1e10)]
    assert all(x.winner_below == "distillation" and [p.winner_above for p in x.points] == ["supervised"] for x in found)
    c = [x.points[0].compute for x in found]
    assert np.all(np.diff(c) > 0), c

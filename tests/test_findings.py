"""Observed findings from a runs table, on hand-made tables with known answers."""

import pandas as pd
import pytest

from distlaw.findings import best_teachers, distillation_gains


@pytest.fixture
def runs() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"kind": "supervised", "params": 10, "tokens": 100, "loss": 3.0},
            {"kind": "supervised", "params": 10, "tokens": 200, "loss": 2.8},
            {"kind": "distilled", "params": 10, "tokens": 100, "teacher_params": 40, "teacher_loss": 2.5, "loss": 2.9},
            {"kind": "distilled", "params": 10, "tokens": 100, "teacher_params": 90, "teacher_loss": 2.2, "loss": 2.95},
            {"kind": "distilled", "params": 10, "tokens": 200, "teacher_params": 40, "teacher_loss": 2.5, "loss": 2.85},
            {"kind": "distilled", "params": 10, "tokens": 200, "teacher_params": 90, "teacher_loss": 2.2, "loss": 2.7},
            {"kind": "distilled", "params": 10, "tokens": 300, "teacher_params": 90, "teacher_loss": 2.2, "loss": 2.6},
        ]
    )


def test_gains_pair_each_student_with_its_supervised_twin(runs):
    gains = distillation_gains(runs)
    assert len(gains) == 4  # the 300-token student has no supervised twin
    assert gains["gain"].tolist() == pytest.approx([0.05, 0.1, 0.1, -0.05])


def test_best_teacher_flags_the_capacity_gap(runs):
    best = best_teachers(runs).set_index("tokens")
    assert best.loc[100, "capacity_gap"] and best.loc[100, "best_teacher_loss"] == 2.5
    assert not best.loc[200, "capacity_gap"] and best.loc[200, "best_student_loss"] == 2.7
    assert 300 not in best.index  # one teacher only


def test_tables_without_pairs_give_empty_frames_with_their_columns(runs):
    supervised_only = runs[runs["kind"] == "supervised"][["kind", "params", "tokens", "loss"]]  # no teacher columns
    for table in (supervised_only, runs[runs["kind"] == "distilled"]):
        gains = distillation_gains(table)
        assert gains.empty and {"gain", "supervised_loss", "teacher_loss"} <= set(gains.columns)
    best = best_teachers(supervised_only)
    assert best.empty and "capacity_gap" in best.columns

"""Sweep configs and the three protocols of Busbridge et al. 2025 (arXiv 2502.08606, Sec. 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from distlaw.errors import DistlawError
from distlaw.lab.protocols import PAPER_STUDENT_RATIOS, SweepConfig, expand, load_config, train_flops

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FAMILY = {"aspect_ratio": 8, "head_dim": 8}
SIZES = [6256, 20904, 49312]  # exactly 2x16, 3x24 and 4x32 with aspect ratio 8


def config(*protocols: dict, **extra) -> SweepConfig:
    return SweepConfig.model_validate({"name": "t", "model": FAMILY, "protocol": list(protocols), **extra})


def by_role(plan, protocol: str, role: str):
    return [run.spec for run in plan if run.protocol == protocol and run.role == role]


def test_fixedm_teachers_isoflop_students():
    plan = expand(config({"type": "fixedm-isoflop", "teachers": [49312], "budgets": [1e10, 3e10], "students": SIZES[:2]}))
    (teacher,) = by_role(plan, "fixedm-isoflop", "teacher")
    assert teacher.kind == "supervised" and teacher.tokens == 20 * 49312
    students = by_role(plan, "fixedm-isoflop", "student")
    assert len(students) == 4
    for spec in students:
        assert spec.kind == "distilled" and spec.teacher == teacher.name
        budget = min((1e10, 3e10), key=lambda c: abs(train_flops(spec) / c - 1))
        assert train_flops(spec) == pytest.approx(budget, abs=6 * spec.shape.non_embedding_params)  # IsoFLOP up to rounding D
    baselines = by_role(plan, "fixedm-isoflop", "baseline")
    assert {(b.shape, b.tokens) for b in baselines} == {(s.shape, s.tokens) for s in students}
    assert all(b.kind == "supervised" and b.teacher is None for b in baselines)


def test_isoflop_teachers_fixedm_students():
    plan = expand(config({"type": "isoflop-fixedm", "budgets": [1e11, 3e11], "teachers": SIZES, "students": [6256], "student_ratio": 40}))
    teachers = by_role(plan, "isoflop-fixedm", "teacher")
    assert len(teachers) == 6
    for spec in teachers:
        assert min(abs(train_flops(spec) / c - 1) for c in (1e11, 3e11)) < 1e-5
    students = by_role(plan, "isoflop-fixedm", "student")
    assert {s.teacher for s in students} == {t.name for t in teachers}
    assert all(s.tokens == 40 * 6256 for s in students)


def test_fixedm_fixedm_defaults_to_paper_ratios():
    plan = expand(config({"type": "fixedm-fixedm", "teachers": [20904], "students": [6256], "baselines": False}))
    students = by_role(plan, "fixedm-fixedm", "student")
    assert sorted(s.tokens / 6256 for s in students) == list(PAPER_STUDENT_RATIOS)
    assert not by_role(plan, "fixedm-fixedm", "baseline")


def test_shared_runs_planned_once_teachers_first_stable_names():
    protocols = (
        {"type": "fixedm-isoflop", "teachers": [20904], "budgets": [1e10], "students": [6256]},
        {"type": "fixedm-fixedm", "teachers": [20904], "students": [6256], "student_ratios": [20]},
    )
    plan = expand(config(*protocols))
    names = [run.spec.name for run in plan]
    teacher = "sup-N20904-D418080"
    assert names.count(teacher) == 2  # one (protocol, role) entry each, same spec
    assert len({run.spec.key() for run in plan if run.spec.name == teacher}) == 1
    position = {name: names.index(name) for name in names}
    assert all(position[run.spec.teacher] < position[run.spec.name] for run in plan if run.spec.teacher)
    assert [run.spec for run in expand(config(*protocols))] == [run.spec for run in plan]


def test_isoflop_drops_points_outside_ratio_range():
    plan = expand(config({"type": "fixedm-isoflop", "teachers": [20904], "budgets": [1e10], "students": SIZES, "ratio_range": [2, 100]}))
    students = by_role(plan, "fixedm-isoflop", "student")
    assert {s.shape.non_embedding_params for s in students} == {6256, 20904}  # M = 42.6, 3.8; 49312 would see M = 0.7


def test_explicit_shapes():
    shape = {"n_layers": 2, "d_model": 24, "n_heads": 3, "d_ff": 64}
    plan = expand(config({"type": "fixedm-fixedm", "teachers": [shape], "students": [6256], "student_ratios": [20]}))
    (teacher,) = by_role(plan, "fixedm-fixedm", "teacher")
    assert (teacher.shape.n_layers, teacher.shape.d_model, teacher.shape.vocab_size, teacher.shape.n_ctx) == (2, 24, 256, 128)


@pytest.mark.parametrize(
    ("protocol", "message"),
    [
        ({"type": "fixedm-fixedm", "teachers": [10], "students": [6256]}, "size 10 is out of range"),
        ({"type": "fixedm-fixedm", "teachers": [1e13], "students": [6256]}, "above .model. max_params"),
        ({"type": "fixedm-fixedm", "teachers": [{"n_layers": 200, "d_model": 8192, "n_heads": 64, "d_ff": 21845}], "students": [6256]}, "max_params"),
        ({"type": "fixedm-isoflop", "teachers": [20904], "budgets": [1e6], "students": [6256]}, "no size has tokens/parameter"),
        ({"type": "fixedm-fixedm", "teachers": [20904], "students": [6256], "student_ratios": [0.1]}, "less than one batch"),
        ({"type": "fixedm-fixedm", "teachers": [{"n_layers": 1, "d_model": 10, "n_heads": 3, "d_ff": 8}], "students": [6256]}, "not divisible"),
    ],
)
def test_bad_sizes_are_one_line_errors(protocol, message):
    with pytest.raises(DistlawError, match=message) as info:
        expand(config(protocol))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("name", "protocols"), [("micro", 2), ("pilot", 3), ("capacity", 1), ("demo", 2)])
def test_shipped_configs_plan_tiny_models(name, protocols):
    plan = expand(load_config(CONFIGS / f"{name}.toml"))
    assert len({run.protocol for run in plan}) == protocols
    assert {run.spec.kind for run in plan} == {"supervised", "distilled"}
    assert max(run.spec.shape.non_embedding_params for run in plan) <= 100_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = 'x'\n[[protocol]]\ntype = 'fixedm-fixedm'\nteachers = [1e4\n", "malformed TOML"),
        ("name = 'x'\n[[protocol]]\ntype = 'bogus'\nteachers = [1e4]\nstudents = [1e4]\n", "unknown protocol type 'bogus'"),
        ("name = 'x'\n", "protocol: Field required"),
        ("name = 'x'\nworkers = 0\n[[protocol]]\ntype = 'fixedm-fixedm'\nteachers = [1e4]\nstudents = [1e4]\n", "workers"),
        ("name = 'x'\ncolour = 1\n[[protocol]]\ntype = 'fixedm-fixedm'\nteachers = [1e4]\nstudents = [1e4]\n", "colour"),
        ("name = 'x'\nseeds = [1, 1]\n[[protocol]]\ntype = 'fixedm-fixedm'\nteachers = [1e4]\nstudents = [1e4]\n", "seeds must be distinct"),
    ],
)
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(DistlawError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(DistlawError, match="no such sweep config"):
        load_config(tmp_path / "nope.toml")


def test_seeds_replicate_students_and_baselines_not_teachers():
    protocol = {"type": "fixedm-fixedm", "teachers": SIZES[1:], "students": SIZES[:1], "student_ratios": [20, 40]}
    single = expand(config(protocol))
    seeded = expand(config(protocol, seeds=[0, 7, 8]))
    assert by_role(seeded, "fixedm-fixedm", "teacher") == by_role(single, "fixedm-fixedm", "teacher")
    for role in ("student", "baseline"):
        one, three = by_role(single, "fixedm-fixedm", role), by_role(seeded, "fixedm-fixedm", role)
        assert len(three) == 3 * len(one) and len({s.name for s in three}) == len(three)
        assert [s for s in three if s.optim.seed == 0] == one  # the base seed keeps its names: stores stay valid
        for spec in three:
            assert spec.name.endswith(f"-s{spec.optim.seed}") == (spec.optim.seed != 0)
            assert spec.teacher is None or spec.teacher in {t.name for t in by_role(single, "fixedm-fixedm", "teacher")}

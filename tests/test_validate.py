"""``distlaw validate`` (issue 12, item 4): scores against a naive numpy reference, recipes against the planner
called directly, the pilot's teacher reused from the store, refusals; and a real training end to end (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_SWEEP
from distlaw.compute import FlopModel
from distlaw.design.validate import plan_recipes, predict_recipes, score_runs
from distlaw.design.validate_store import StoreTeacher, read_pilot, recipe_config
from distlaw.errors import DistlawError
from distlaw.lab.protocols import SweepConfig
from distlaw.lab.sweep import plan_sweep
from distlaw.laws import Coefficients
from distlaw.planning.planner import ExistingTeacher, Planner
from distlaw.store import RunStore

SUP = {"E": 1.2, "A": 60.0, "B": 2.0e3, "alpha": 0.3, "beta": 0.5, "gamma": 1.0}
DIST = {"A": 60.0, "B": 2.0e3, "alpha": 0.3, "beta": 0.5, "gamma": 1.0, "c0": 0.5, "c1": 5.0, "f1": 0.5, "d1": 1.2}
TEACHER = "sup-N6256-D125120"  # the teacher of TINY_SWEEP, by the lab's naming


def planted(samples: int = 60, seed: int = 0, distillation: bool = True) -> dict:
    """Coefficients with bootstrap samples: each coefficient jittered by a few percent."""
    rng = np.random.default_rng(seed)
    jitter = lambda block: {k: v * float(np.exp(rng.normal(0, 0.03))) for k, v in block.items()}  # noqa: E731
    data = {"supervised": SUP, "bootstrap": {"supervised": [jitter(SUP) for _ in range(samples)]}}
    if distillation:
        data |= {"distillation": DIST}
        data["bootstrap"]["distillation"] = [jitter(DIST) for _ in range(samples - 7)]  # fewer: paired by index, truncated
    return data


def naive_supervised(c: dict, n: float, d: float) -> float:
    return c["E"] + (c["A"] / n ** c["alpha"] + c["B"] / d ** c["beta"]) ** c["gamma"]


def naive_student(s: dict, c: dict, n: float, d: float, lt: float) -> float:
    """Eq. 8 as printed: L_T + L_T^-c0 (1 + (L_T / (Ltilde d1))^(1/f1))^(-c1 f1) (A'/N^a' + B'/D^b')^g'."""
    ltilde = naive_supervised(s, n, d)
    gap = (1 + (lt / (ltilde * c["d1"])) ** (1 / c["f1"])) ** (-c["c1"] * c["f1"])
    return lt + lt ** -c["c0"] * gap * (c["A"] / n ** c["alpha"] + c["B"] / d ** c["beta"]) ** c["gamma"]


def naive(data: dict, row: dict, level: float) -> tuple[float, float, float]:
    """Point prediction and the central ``level`` percentile interval over the bootstrap predictions."""
    boot = data["bootstrap"]
    if row["kind"] == "supervised":
        point = naive_supervised(data["supervised"], row["params"], row["tokens"])
        draws = [naive_supervised(s, row["params"], row["tokens"]) for s in boot["supervised"]]
    else:
        point = naive_student(data["supervised"], data["distillation"], row["params"], row["tokens"], row["teacher_loss"])
        draws = [naive_student(s, c, row["params"], row["tokens"], row["teacher_loss"]) for s, c in zip(boot["supervised"], boot["distillation"])]
    tail = 50 * (1 - level)
    return point, float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))


RUNS = pd.DataFrame({
    "kind": ["supervised", "supervised", "distilled", "distilled"], "params": [6256.0, 49312.0, 6256.0, 20904.0],
    "tokens": [1.2e5, 1e6, 2.5e5, 4e5], "loss": [4.4, 3.0, 4.1, 3.3],
    "teacher_params": [np.nan, np.nan, 49312.0, 49312.0], "teacher_loss": [np.nan, np.nan, 3.0, 3.0],
})  # fmt: skip


def test_score_runs_matches_a_naive_reference():
    data = planted()
    result = score_runs(Coefficients.from_dict(data), RUNS, level=0.8)
    assert result.level == 0.8 and len(result.checks) == 4
    for check, row in zip(result.checks, RUNS.to_dict("records")):
        point, lo, hi = naive(data, row, 0.8)
        assert check.predicted == pytest.approx(point, rel=1e-10)
        assert check.interval == pytest.approx((lo, hi), rel=1e-10)
        assert check.observed == row["loss"] and check.inside == (lo <= row["loss"] <= hi)
        assert check.error == pytest.approx(100 * (point - row["loss"]) / row["loss"], rel=1e-9)
        teacher = 2 * row["teacher_params"] if row["kind"] == "distilled" else 0.0
        assert check.compute == pytest.approx((6 * row["params"] + teacher) * row["tokens"])
    assert result.total == 4 and result.inside == sum(c.inside for c in result.checks)


def test_cli_scores_a_runs_table_with_json_and_figure(cli, tmp_path: Path):
    data = planted()
    (tmp_path / "coef.json").write_text(json.dumps(data))
    RUNS.to_csv(tmp_path / "runs.csv", index=False)
    res = cli("validate", "-c", tmp_path / "coef.json", "--runs", tmp_path / "runs.csv", "--figure", tmp_path / "v.png", "--json")
    assert res.code == 0, res.stderr
    out = res.json()
    assert set(out) >= {"recipes", "level", "inside", "total", "figure"} and out["level"] == 0.9 and out["total"] == 4
    first = out["recipes"][0]
    point, lo, hi = naive(data, RUNS.iloc[0].to_dict(), 0.9)
    assert first["predicted"] == pytest.approx(point) and first["interval"] == pytest.approx([lo, hi]) and first["observed"] == 4.4
    assert out["inside"] == sum(r["inside"] for r in out["recipes"])
    assert (tmp_path / "v.png").read_bytes()[:4] == b"\x89PNG" and out["figure"] == str(tmp_path / "v.png")
    table = cli("validate", "-c", tmp_path / "coef.json", "--runs", tmp_path / "runs.csv")
    assert table.code == 0 and f"{out['inside']} of 4 observed losses inside their 90% intervals" in table.stdout


def _brute_force(coef: Coefficients, sizes: list[int], teachers: list[StoreTeacher], budget: float) -> tuple[float, int, str | None, float]:
    """(loss, size, teacher name or None, tokens) of the best option, asking the planner about each one by one."""
    planner = Planner(coef, FlopModel(form="simple"), size_range=(4096, 1e30))
    options = []
    for n in sizes:
        baseline = planner.supervised(n, budget)
        options.append((float(baseline.loss), n, None, float(baseline.tokens)))
        for t in teachers:
            r = planner.solve_existing(n, budget, ExistingTeacher(t.params, loss=t.loss), "teacher-inference", warn=False)
            options.append((float(r.student_loss), n, t.name, float(r.student_tokens)))
    return min(options, key=lambda option: option[0])


def test_planned_recipes_are_the_planners():
    data = planted()
    coef = Coefficients.from_dict(data)
    sizes = [6256, 20904, 49312, 96640]
    teachers, budgets = [StoreTeacher("big", 96640, 2_000_000, 2.6), StoreTeacher("small", 20904, 400_000, 4.6)], [2e10, 6e10, 2e11]
    recipes, _ = plan_recipes(coef, budgets, sizes, teachers, step_tokens=4096)
    for recipe, budget in zip(recipes, budgets):
        _, n, teacher, tokens = _brute_force(coef, sizes, teachers, budget)
        assert (recipe.params, None if recipe.teacher is None else recipe.teacher.name) == (n, teacher)
        assert recipe.kind == ("supervised" if teacher is None else "distilled")
        assert recipe.tokens % 4096 == 0 and abs(recipe.tokens - tokens) <= 2048
        assert recipe.compute == pytest.approx(budget, rel=2048 / tokens)
    assert len({(r.params, r.teacher) for r in recipes}) == 3  # the size and the teacher move with the budget
    alone, _ = plan_recipes(coef, budgets, sizes, [], step_tokens=4096)  # a pilot without teachers: supervised
    assert [(r.kind, r.params) for r in alone] == [("supervised", _brute_force(coef, sizes, [], b)[1]) for b in budgets]
    recipes += alone
    scored = predict_recipes(coef, recipes, 0.9)
    for check, recipe in zip(scored.checks, recipes):
        lt = None if recipe.teacher is None else recipe.teacher.loss
        row = {"kind": recipe.kind, "params": recipe.params, "tokens": recipe.tokens, "teacher_loss": lt}
        point, lo, hi = naive(data, row, 0.9)
        assert check.predicted == pytest.approx(point, rel=1e-10) and check.interval == pytest.approx((lo, hi), rel=1e-10)
        assert check.observed is None and check.inside is None and check.teacher_loss == lt


def _finished(store: RunStore, name: str, loss: float) -> None:
    """Record a run as finished without training it."""
    record = store.get(name)
    assert store.claim(name, 1)
    store.finish(name, {"tokens": record.spec.steps * 4096, "loss": loss, "flops": 1.0, "teacher_inference_flops": 0.0})


@pytest.fixture
def pilot_store(tmp_path: Path) -> Path:
    """TINY_SWEEP planned into a store, its teacher and one student recorded as finished (nothing trained)."""
    import tomllib

    path = tmp_path / "pilot.db"
    plan_sweep(SweepConfig.model_validate(tomllib.loads(TINY_SWEEP)), path)
    with RunStore(path) as store:
        _finished(store, TEACHER, 4.49)
        _finished(store, "kd-N6256-D250240-from-N6256-D125120", 4.3)
    return path


def test_recipes_reuse_the_pilots_teacher(pilot_store: Path):
    pilot = read_pilot(pilot_store)
    assert pilot.sweep == "tiny" and [t.name for t in pilot.teachers] == [TEACHER] and pilot.teachers[0].loss == 4.49
    assert (pilot.aspect_ratio, pilot.head_dim, pilot.family, pilot.step_tokens) == (8, 8, None, 4096)
    assert pilot.largest_compute == pytest.approx((6 * 6256 + 2 * 6256) * 62 * 4096)  # the student: 61.1 steps, rounded up
    assert pilot.student_sizes() == [6256, 20904, 49312]  # 2x16 .. 10x the largest (62,560): d_model = 8 layers
    assert pilot.student_sizes(student=2e4) == [20904]
    config, names = recipe_config(pilot, [(20904, 40960, TEACHER), (6256, 81920, None)])
    assert names == ["kd-N20904-D40960-from-N6256-D125120", "sup-N6256-D81920"]
    summary = plan_sweep(config, pilot_store)
    assert summary.new == 2  # the recipes; the teacher is the stored run, same name and key
    with RunStore(pilot_store) as store:
        teacher = store.get(TEACHER)
        assert teacher.status == "done" and teacher.attempts == 1 and teacher.loss == 4.49
        assert ("runs", "teacher") in store.memberships("tiny-validate")[TEACHER]
        assert store.get(names[0]).spec.data == teacher.spec.data and store.get(names[0]).spec.optim == teacher.spec.optim
    assert read_pilot(pilot_store).sweep == "tiny"  # the validation sweep is not a pilot


def test_refusals(cli, tmp_path: Path, pilot_store: Path):
    (tmp_path / "coef.json").write_text(json.dumps(planted()))
    (tmp_path / "bare.json").write_text(json.dumps({"supervised": SUP, "distillation": DIST}))
    (tmp_path / "sup.json").write_text(json.dumps(planted(distillation=False)))
    RUNS.to_csv(tmp_path / "runs.csv", index=False)
    RUNS.assign(teacher_loss=[np.nan, np.nan, 1.1, 3.0]).to_csv(tmp_path / "floor.csv", index=False)
    empty = tmp_path / "empty.db"
    plan_sweep(SweepConfig.model_validate(__import__("tomllib").loads(TINY_SWEEP)), empty)
    coef, runs = ["-c", tmp_path / "coef.json"], ["--runs", tmp_path / "runs.csv"]
    cases = {
        "no bootstrap": (["-c", tmp_path / "bare.json", *runs], "refit with `distlaw fit"),
        "both": ([*coef, *runs, "--store", pilot_store], "exactly one of --store"),
        "neither": (coef, "exactly one of --store"),
        "scale 0": ([*coef, "--store", pilot_store, "--scale", "2,0"], "--scale values must be positive"),
        "scale negative": ([*coef, "--store", pilot_store, "--scale", "-1"], "--scale values must be positive"),
        "scale not numbers": ([*coef, "--store", pilot_store, "--scale", "two"], "--scale: expected numbers"),
        "scale and compute": ([*coef, "--store", pilot_store, "--scale", "2", "--compute", "1e10"], "--scale or --compute, not both"),
        "scale with runs": ([*coef, *runs, "--scale", "2"], "--scale plans recipes to train"),
        "student and size range": ([*coef, "--store", pilot_store, "--student", "5e3", "--size-range", "1e3:1e5"], "not both"),
        "no finished runs": ([*coef, "--store", empty], "has no finished runs"),
        "no such store": ([*coef, "--store", tmp_path / "none.db"], "no such run store"),
        "distilled rows, supervised law only": (["-c", tmp_path / "sup.json", *runs], "no 'distillation' block"),
        "teacher loss at the floor": ([*coef, "--runs", tmp_path / "floor.csv"], "at or below the supervised law's floor"),
        "bad level": ([*coef, *runs, "--level", "1.5"], "--level must be between 0 and 1"),
        "figure folder missing": ([*coef, *runs, "--figure", tmp_path / "nowhere" / "v.png"], "nowhere"),
        "no size in range": ([*coef, "--store", pilot_store, "--size-range", "1e2:5e2"], "no model the pilot's family builds"),
    }
    for name, (args, message) in cases.items():
        res = cli("validate", *args)
        assert res.code == 2, f"{name}: {res.code} {res.stdout} {res.stderr}"
        assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, f"{name}: {res.stderr}"
    with RunStore(pilot_store) as store:
        assert "tiny-validate" not in store.sweeps()  # nothing planned by a refused call
    with pytest.raises(DistlawError, match="no bootstrap samples of the distillation law"):
        score_runs(Coefficients.from_dict({**planted(), "bootstrap": {"supervised": planted()["bootstrap"]["supervised"]}}), RUNS)


@pytest.mark.slow
def test_validate_trains_recipes_into_the_pilots_store(cli, tmp_path: Path):
    """A real tiny pilot, then one recipe at 1.5x its largest run trained by validate: the recipe's run is
    in the store under the validation sweep, the teacher is not trained again, and a second call trains nothing."""
    import tomllib

    from distlaw.lab.sweep import run_sweep

    store = tmp_path / "pilot.db"
    run_sweep(SweepConfig.model_validate(tomllib.loads(TINY_SWEEP)), store, workers=2, progress=False)
    (tmp_path / "coef.json").write_text(json.dumps(planted()))
    with RunStore(store) as s:
        before = s.frame().set_index("name")
    args = ["validate", "-c", tmp_path / "coef.json", "--store", store, "--scale", "1.5", "--size-range", "6e3:7e3", "--json"]
    res = cli(*args, "--figure", tmp_path / "v.png")
    assert res.code == 0, res.stderr
    out = res.json()
    (recipe,) = out["recipes"]
    with RunStore(store) as s:
        after = s.frame().set_index("name")
        record = s.get(recipe["name"])
        members = s.memberships("tiny-validate")
    assert record.status == "done" and record.loss == recipe["observed"] and record.tokens == recipe["tokens"]
    assert recipe["compute"] == pytest.approx(1.5 * (6 * 6256 + 2 * 6256) * 62 * 4096, rel=0.01)
    if recipe["kind"] == "distilled":
        assert recipe["teacher"] == TEACHER and ("runs", "teacher") in members[TEACHER]
    assert after.loc[before.index, "finished_at"].equals(before["finished_at"])  # the pilot's runs, teacher included, untouched
    assert after.loc[TEACHER, "attempts"] == 1
    again = cli(*args)
    assert again.code == 0 and again.json()["recipes"][0]["observed"] == recipe["observed"]
    with RunStore(store) as s:
        assert s.get(recipe["name"]).attempts == 1  # reused, not retrained


def test_intervals_carry_the_fits_run_noise() -> None:
    """With every bootstrap sample at the point estimate, the interval is the run noise alone: the point times
    exp(+-z sigma), sigma the recorded RMS log residual times sqrt(n / (n - p)) (normal quantiles, 4000 draws)."""
    data = {"supervised": SUP, "bootstrap": {"supervised": [SUP] * 4000},
            "meta": {"fit": {"supervised": {"free": ["E", "A", "B", "alpha", "beta"],
                                            "metrics": {"fit": {"n": 10, "rms_log_error": 0.01}}}}}}
    coefficients = Coefficients.from_dict(data)
    row = {"kind": "supervised", "params": 2e4, "tokens": 1e6, "loss": 2.0}
    check = score_runs(coefficients, pd.DataFrame([row]), level=0.9).checks[0]
    sigma = 0.01 * np.sqrt(10 / 5)
    point = naive_supervised(SUP, row["params"], row["tokens"])
    assert check.predicted == pytest.approx(point, rel=1e-12)
    assert np.log(check.interval[1] / point) == pytest.approx(1.6449 * sigma, rel=0.06)
    assert np.log(point / check.interval[0]) == pytest.approx(1.6449 * sigma, rel=0.06)
    bare = score_runs(Coefficients.from_dict({k: v for k, v in data.items() if k != "meta"}), pd.DataFrame([row]), level=0.9)
    assert bare.checks[0].interval is not None and bare.checks[0].interval[1] - bare.checks[0].interval[0] < 1e-9 * point

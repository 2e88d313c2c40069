"""What the coefficients can answer (issue 9, item 3c and 4): a teacher loss at or below E is refused,
inputs far outside the fitted or published range are warned on, alike in the API, `predict` and
`plan`; the range is recorded in meta.domain by the presets and by `distlaw fit`; supervised-only
coefficient files serve everything that needs only the supervised law."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from distlaw import DistlawError, load_coefficients, student_loss
from distlaw.laws import PRESETS, Coefficients
from distlaw.laws.domain import Domain, ExtrapolationWarning, check_domain, recorded_warnings
from distlaw.laws.prediction import predict
from distlaw.planning import ExistingTeacher, Planner
from distlaw.runs import predict_runs, validate_runs

BUSBRIDGE = load_coefficients("busbridge2025")
E = PRESETS["busbridge2025"]["supervised"]["E"]  # 1.22, Busbridge Table 6


def write(path, data) -> str:
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture
def supervised_only(tmp_path) -> str:
    """What `distlaw fit --law supervised --out` writes: a supervised block and meta, nothing else."""
    return write(tmp_path / "sup.json", {"supervised": PRESETS["busbridge2025"]["supervised"], "meta": {"name": "sup fit"}})


# -- the floor E --------------------------------------------------------------------------------


@pytest.mark.parametrize("teacher_loss", [E, E - 0.2, 0.5])
def test_teacher_loss_at_or_below_e_is_refused_by_the_api(teacher_loss):
    with pytest.raises(DistlawError, match="floor E = 1.22"):
        student_loss(1e9, 2e10, teacher_loss, BUSBRIDGE)
    with pytest.raises(DistlawError, match="floor E = 1.22"):
        predict(BUSBRIDGE, 1e9, 2e10, teacher_loss=teacher_loss)
    with pytest.raises(DistlawError, match="floor"):
        Planner(BUSBRIDGE).solve_existing(1e9, 1e21, ExistingTeacher(7e9, loss=teacher_loss))
    assert float(student_loss(1e9, 2e10, E + 1e-6, BUSBRIDGE)) > E  # just above the floor is answered


def test_teacher_loss_at_or_below_e_is_one_line_in_predict_and_plan(cli):
    r = cli("predict", "-n", "1e9", "-d", "2e10", "--teacher-loss", "1.22")
    assert r.code == 2 and "floor E = 1.22" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("plan", "-n", "1e9", "-C", "1e21", "--teacher-params", "7e9", "--teacher-loss", "1.1")
    assert r.code == 2 and "floor E = 1.22" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_runs_table_row_below_e_is_refused_naming_its_row(cli, tmp_path):
    runs = pd.DataFrame({
        "kind": ["supervised", "distilled", "distilled"], "params": [1e9, 5e8, 5e8], "tokens": [2e10, 1e10, 1e10],
        "loss": [2.3, 2.5, 2.4], "teacher_loss": [None, 2.2, 1.2],
    })
    with pytest.raises(DistlawError, match="row 4: teacher loss L_T = 1.2 is at or below"):
        predict_runs(validate_runs(runs), BUSBRIDGE)
    src, dst = tmp_path / "runs.csv", tmp_path / "pred.csv"
    runs.to_csv(src, index=False)
    r = cli("predict", src, "--out", dst)
    assert r.code == 2 and "row 4" in r.stderr and not dst.exists()


# -- far outside the domain: warned, answered ---------------------------------------------------


def test_presets_record_the_range_of_their_papers():
    for name in PRESETS:
        domain = Domain.from_meta(load_coefficients(name).meta)
        assert domain is not None and domain.params is not None and domain.tokens is not None, name
    # Busbridge et al. 2025 ran 143M..12.6B parameters (abstract)
    assert Domain.from_meta(BUSBRIDGE.meta).params == (1.43e8, 1.26e10)


@pytest.mark.parametrize(
    ("quantities", "far"),
    [
        ({"params": 1.43e7}, False),  # exactly 10x below 143M: still answered quietly
        ({"params": 1.42e7}, True),
        ({"params": 1.26e11}, False),
        ({"params": 1.27e11}, True),
        ({"tokens": 2.8e8}, True),  # 10x below 2.86e9 is 2.86e8
        ({"tokens": 5e12}, False),
        ({"teacher_params": 1e12}, True),
        ({"teacher_tokens": 1e17}, True),
        # teacher losses: excess over E within 2x of the domain's excess [1.89 - E, 2.89 - E] = [0.67, 1.67]
        ({"teacher_loss": E + 0.67 / 2 + 1e-3}, False),
        ({"teacher_loss": E + 0.67 / 2 - 1e-3}, True),
        ({"teacher_loss": E + 1.67 * 2 - 1e-3}, False),
        ({"teacher_loss": E + 1.67 * 2 + 1e-3}, True),
    ],
)
def test_far_means_ten_times_beyond_sizes_and_twice_beyond_the_excess_loss(quantities, far):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        messages = check_domain(BUSBRIDGE, **quantities)
    assert bool(messages) == far
    assert [str(w.message) for w in caught if w.category is ExtrapolationWarning] == messages
    if far:
        assert "busbridge2025" in messages[0] and "extrapolation" in messages[0]


def test_the_api_warns_on_extrapolation_and_still_answers():
    with pytest.warns(ExtrapolationWarning, match="params N = 5e3 is far outside 1.43e8..1.26e10"):
        result = predict(BUSBRIDGE, 5e3, 1e10, teacher_loss=2.5)
    assert result.student_loss is not None and len(result.warnings) == 1
    with pytest.warns(ExtrapolationWarning, match="student params|params N"):
        Planner(BUSBRIDGE).solve(1e6, 1e18, "best")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # in range: not a single warning
        predict(BUSBRIDGE, 1e9, 2e10, teacher_loss=2.2)
        Planner(BUSBRIDGE).solve(1e9, 1e21, "best")


def test_predict_warns_in_one_line_per_quantity_and_lists_it_in_json(cli):
    r = cli("predict", "-n", "5e3", "-d", "1e17", "--teacher-loss", "2.2", "--json")
    assert r.code == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("warning: ") for line in lines)
    assert "params N = 5e3" in lines[0] and "tokens D = 1e17" in lines[1]
    assert r.json()["warnings"] == [line.removeprefix("warning: ") for line in lines]
    quiet = cli("predict", "-n", "1e9", "-d", "2e10", "--teacher-loss", "2.2", "--json")
    assert quiet.stderr == "" and quiet.json()["warnings"] == []


def test_predict_runs_warns_on_rows_far_outside(cli, tmp_path):
    runs = pd.DataFrame({"kind": ["supervised"] * 3, "params": [1e9, 2e3, 5e3], "tokens": [2e10] * 3, "loss": [2.3] * 3})
    with pytest.warns(ExtrapolationWarning, match=r"2 of 3 values of params N are \(farthest: row 3: 2e3\)"):
        predict_runs(validate_runs(runs), BUSBRIDGE)
    src, dst = tmp_path / "runs.csv", tmp_path / "pred.csv"
    runs.to_csv(src, index=False)
    r = cli("predict", src, "--out", dst, "--json")
    assert r.code == 0 and r.stderr.startswith("warning: 2 of 3") and len(r.json()["warnings"]) == 1
    assert dst.exists()


def test_plan_warns_on_inputs_outside_the_domain_per_budget(cli):
    r = cli("plan", "-n", "1e9", "-C", "1e21:1e27:3", "--scenario", "best", "--json")
    assert r.code == 0, r.stderr
    objs = r.json()
    # D = C / 3 F(N_S): 1.4e11 tokens at 1e21 (inside), 1.4e14 at 1e24 and 1.4e17 at 1e27 (far beyond 5.12e12)
    assert objs[0]["warnings"] == []
    assert all("tokens D" in " ".join(o["warnings"]) for o in objs[1:])
    # stderr: one line per quantity over all budgets, not one per budget
    assert r.stderr.startswith("warning: 2 of 3 values of tokens D") and len(r.stderr.strip().splitlines()) == 1


def test_a_file_without_a_domain_refuses_the_floor_but_never_warns(tmp_path):
    path = write(tmp_path / "c.json", {k: v for k, v in PRESETS["busbridge2025"].items() if k != "meta"})
    coef = load_coefficients(path)
    assert check_domain(coef, params=1.0, tokens=1e30) == []
    with pytest.raises(DistlawError, match="floor"):
        check_domain(coef, teacher_loss=1.0)


@pytest.mark.parametrize(
    ("domain", "message"),
    [
        ("wide", "meta.domain: expected an object"),
        ({"params": [1e9]}, "meta.domain.params: expected [lo, hi]"),
        ({"params": [1e9, 1e8]}, "meta.domain.params: expected [lo, hi] with 0 < lo <= hi"),
        ({"tokens": ["a", "b"]}, "meta.domain.tokens"),
        ({"teacher_loss": [0, 3]}, "meta.domain.teacher_loss"),
        ({"size": [1, 2]}, "unknown key(s) size"),
    ],
)
def test_a_malformed_domain_is_one_line_at_load(cli, tmp_path, domain, message):
    path = write(tmp_path / "c.json", {"supervised": PRESETS["busbridge2025"]["supervised"], "meta": {"domain": domain}})
    with pytest.raises(DistlawError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_coefficients(path)
    r = cli("predict", "-n", "1e9", "-d", "2e10", "-c", path)
    assert r.code == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_fit_records_the_range_of_the_rows_it_fitted(tmp_path):
    from distlaw.fitting.fit import fit_runs

    n = np.array([2e5, 4e5, 8e5, 1.6e6, 3.2e6, 6.4e6, 1.28e7])
    d = 20 * n * np.array([1, 2, 1, 3, 1, 2, 1])
    sup = BUSBRIDGE.supervised
    loss = sup.E + (sup.A / n**sup.alpha + sup.B / d**sup.beta) ** sup.gamma  # planted Eq. 1
    runs = pd.DataFrame({"kind": "supervised", "params": n, "tokens": d, "loss": loss})
    coef = fit_runs(runs, "supervised", grid="coarse", fixed={"gamma": sup.gamma}, source="pilot.csv").coefficients()
    domain = coef.meta["domain"]
    assert domain["params"] == [2e5, 1.28e7] and domain["tokens"] == [4e6, 2.56e8]
    assert "teacher_loss" not in domain and "pilot.csv" in domain["source"]
    path = tmp_path / "fit.json"
    coef.save(path)
    with pytest.warns(ExtrapolationWarning, match="pilot.csv"):  # a pilot fit asked about a 1e9 model
        predict(load_coefficients(path), 1e9, 2e10)


def test_fitted_domain_covers_students_and_teacher_losses():
    from distlaw.fitting.fit import fitted_domain

    sup = pd.DataFrame({"params": [1e4, 1e5], "tokens": [1e6, 2e6]})
    dist = pd.DataFrame({"params": [3e3, 5e4], "tokens": [5e5, 4e6], "teacher_loss": [2.5, 2.9]})
    domain = fitted_domain(sup, dist, "runs.csv")
    assert domain.params == (3e3, 1e5) and domain.tokens == (5e5, 4e6) and domain.teacher_loss == (2.5, 2.9)
    assert Domain.from_meta({"domain": domain.to_meta()}) == domain


# -- supervised-only coefficients ---------------------------------------------------------------


def test_supervised_only_file_serves_every_supervised_question(cli, tmp_path, supervised_only):
    r = cli("predict", "-n", "1.821e9", "-d", "36.4e9", "-c", supervised_only, "--json")
    assert r.code == 0, r.stderr
    assert r.json()["supervised_loss"] == pytest.approx(2.2508, abs=1e-4)  # LAWS.md sect. 2
    src, dst = tmp_path / "runs.csv", tmp_path / "pred.csv"
    pd.DataFrame({"kind": ["supervised"], "params": [1.821e9], "tokens": [36.4e9]}).to_csv(src, index=False)
    r = cli("predict", src, "--out", dst, "-c", supervised_only)
    assert r.code == 0, r.stderr
    assert pd.read_csv(dst)["predicted_loss"].tolist() == pytest.approx([2.2508], abs=1e-4)


@pytest.mark.parametrize(
    "args",
    [
        ("predict", "-n", "1e9", "-d", "2e10", "--teacher-loss", "2.2"),
        ("predict", "-n", "1e9", "-d", "2e10", "--teacher-params", "7e9", "--teacher-tokens", "1e11"),
        ("plan", "-n", "1e9", "-C", "1e21"),
    ],
)
def test_supervised_only_file_is_refused_where_eq8_is_needed(cli, supervised_only, args):
    r = cli(*args, "-c", supervised_only)
    assert r.code == 2 and "Traceback" not in r.stderr
    assert "no 'distillation' block" in r.stderr and "sup fit" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_supervised_only_table_refuses_distilled_rows_naming_the_block(tmp_path, supervised_only):
    runs = validate_runs(pd.DataFrame({"kind": ["distilled"], "params": [1e9], "tokens": [2e10], "teacher_loss": [2.2]}), need_loss=False)
    with pytest.raises(DistlawError, match="no 'distillation' block .* distilled rows"):
        predict_runs(runs, load_coefficients(supervised_only))


def test_recorded_warnings_collects_each_message_once_and_passes_others_on():
    with warnings.catch_warnings(record=True) as outer:
        warnings.simplefilter("always")
        with recorded_warnings() as notes:
            check_domain(BUSBRIDGE, params=10.0)
            check_domain(BUSBRIDGE, params=10.0)
            warnings.warn("unrelated", RuntimeWarning)
    assert len(notes) == 1 and "params N = 10" in notes[0]
    assert [str(w.message) for w in outer] == ["unrelated"]


def test_coefficients_from_dict_checks_the_domain_too():
    with pytest.raises(DistlawError, match="meta.domain.params"):
        Coefficients.from_dict({"supervised": PRESETS["busbridge2025"]["supervised"], "meta": {"domain": {"params": [-1, 2]}}})


def test_infinite_tokens_are_the_infinite_data_limit_with_a_warning(cli):
    r = cli("predict", "-n", "1e9", "-d", "inf", "--json")
    assert r.code == 0 and r.stderr.startswith("warning: tokens D = inf is far outside")
    sup = BUSBRIDGE.supervised
    assert r.json()["supervised_loss"] == pytest.approx(sup.E + (sup.A * 1e9**-sup.alpha) ** sup.gamma, rel=1e-12)

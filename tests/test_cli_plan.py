"""`distlaw plan`: tables, JSON shape, ranges, existing teachers, intervals, plots, one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from distlaw.laws import PRESETS, load_coefficients
from distlaw.planning import SCENARIOS, Planner

RECIPE_KEYS = {
    "scenario", "compute", "student_tokens", "teacher_params", "teacher_tokens", "teacher_loss", "student_loss", "compute_split",
    "at_bound", "choose",
}


def test_json_single_budget(cli):
    r = cli("plan", "--student-params", "1e9", "--compute", "1e21", "--json")
    assert r.code == 0, r.stderr
    out = r.json()
    assert [rec["scenario"] for rec in out["recipes"]] == list(SCENARIOS)
    for rec in out["recipes"]:
        assert RECIPE_KEYS <= set(rec)
        assert rec["compute"] == 1e21
        assert sum(rec["compute_split"].values()) == pytest.approx(1.0)
    # supervised: all of C on the student's tokens, D = C / 3 F(N_S), and the LAWS.md-consistent loss
    assert out["supervised_tokens"] == pytest.approx(1e21 / (3 * 2.4543853e9), rel=1e-6)
    best = out["recipes"][0]
    assert best["student_loss"] < out["supervised_loss"]  # a free teacher helps at 1e21 for 1e9
    assert out["gpu_hours"] == pytest.approx(702.17, abs=0.01)
    assert set(out["crossovers"]) == set(SCENARIOS) and set(out["crossover_scan"]) == set(SCENARIOS)
    assert [rec["choose"] for rec in out["recipes"]] == ["distil", "distil", "supervised", "supervised"]


def test_range_prints_one_object_per_budget(cli):
    r = cli("plan", "-n", "1e9", "-C", "1e20:1e24:5", "--scenario", "teacher-inference", "--json")
    assert r.code == 0, r.stderr
    out = r.json()
    assert isinstance(out, list) and len(out) == 5
    np.testing.assert_allclose([o["compute"] for o in out], np.logspace(20, 24, 5))
    assert all(len(o["recipes"]) == 1 and o["recipes"][0]["scenario"] == "teacher-inference" for o in out)
    assert [o["supervised_loss"] for o in out] == sorted((o["supervised_loss"] for o in out), reverse=True)


def test_table_is_readable(cli):
    r = cli("plan", "-n", "1e9", "-C", "1e21")
    assert r.code == 0, r.stderr
    assert "supervised" in r.stdout and "GPU-hours" in r.stdout and "choose" in r.stdout
    r = cli("plan", "-n", "1e9", "-C", "1e20:1e22:3", "--scenario", "best")
    assert r.code == 0 and "student loss" in r.stdout and "best: distillation below 2.21e22 FLOPs" in r.stdout


def test_existing_teacher(cli):
    r = cli("plan", "-n", "1e9", "-C", "1e22", "--teacher-params", "7e9", "--teacher-loss", "1.95", "--json")
    assert r.code == 0, r.stderr
    recipes = r.json()["recipes"]
    assert [x["scenario"] for x in recipes] == ["best", "teacher-inference"]  # pretraining needs the tokens
    assert all(x["teacher_params"] == pytest.approx(7e9) and x["teacher_loss"] == 1.95 for x in recipes)
    r = cli("plan", "-n", "1e9", "-C", "1e23", "--teacher-params", "7e9", "--teacher-tokens", "2e12", "--json")
    assert r.code == 0 and len(r.json()["recipes"]) == 4


def test_size_range_plans_at_a_pilots_scale(cli):
    r = cli("plan", "-n", "5e3", "-C", "1e13:1e15:3", "--size-range", "1e2:1e12", "--json")
    assert r.code == 0, r.stderr
    planner = Planner(load_coefficients("busbridge2025"), size_range=(1e2, 1e12))
    for i, obj in enumerate(r.json()):
        for rec in obj["recipes"]:
            expected = planner.solve(5e3, np.logspace(13, 15, 3), rec["scenario"])
            assert rec["student_loss"] == pytest.approx(float(expected.student_loss[i]), rel=1e-12)
            assert 1e2 <= rec["teacher_params"] <= 1e12 and rec["student_tokens"] >= 1e2
    pretraining = r.json()[0]["recipes"][2]
    assert pretraining["scenario"] == "teacher-pretraining" and pretraining["teacher_params"] < 1e6  # below the paper's range


def test_size_range_bounds_the_isoflop_plot(cli, tmp_path):
    out = tmp_path / "pilot.png"
    r = cli("plan", "-n", "5e3", "-C", "1e13", "--size-range", "1e2:1e12", "--plot", out)
    assert r.code == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bootstrap_coefficients_add_intervals(cli, tmp_path):
    rows = [{**PRESETS["busbridge2025"]["supervised"], "E": 1.22 + d} for d in np.linspace(-0.02, 0.02, 9)]
    path = tmp_path / "fit.json"
    path.write_text(json.dumps({**PRESETS["busbridge2025"], "bootstrap": {"supervised": rows}}))
    r = cli("plan", "-n", "1e9", "-C", "1e21", "--scenario", "best", "-c", path, "--json")
    assert r.code == 0, r.stderr
    out = r.json()
    lo, hi = out["supervised_loss_interval"]
    assert lo < out["supervised_loss"] < hi
    band = out["recipes"][0]["intervals"]
    assert band["level"] == 0.95 and band["student_loss"][0] <= out["recipes"][0]["student_loss"] <= band["student_loss"][1]
    assert "95% bootstrap interval" in cli("plan", "-n", "1e9", "-C", "1e21", "--scenario", "best", "-c", path).stdout


@pytest.mark.parametrize("compute", ["1e21", "1e20:1e23:4"])
def test_plot_is_written(cli, tmp_path, compute):
    out = tmp_path / "plan.png"
    r = cli("plan", "-n", "1e9", "-C", compute, "--plot", out)
    assert r.code == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.png"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-n", "1e9", "-C", "1e12"), "less than one student step"),
        (("-n", "-1e9", "-C", "1e21"), "student params must be positive"),
        (("-n", "1e9", "-C", "-1e21"), "compute must be positive"),
        (("-n", "1e9", "-C", "1e21", "--scenario", "distil-harder"), "unknown scenario"),
        (("-n", "1e9", "-C", "1e21", "--teacher-params", "7e9", "--teacher-loss", "1.0"), "floor"),
        (("-n", "1e9", "-C", "1e21", "--teacher-params", "-7e9", "--teacher-loss", "2.0"), "teacher params"),
        (("-n", "1e9", "-C", "1e21", "--teacher-loss", "2.0"), "--teacher-params"),
        (("-n", "1e9", "-C", "1e21:1e20"), "--compute"),
        (("-n", "1e9", "-C", "lots"), "--compute"),
        (("-n", "1e9", "-C", "1e21", "--hardware", "abacus"), "unknown hardware"),
        (("-n", "1e9", "-C", "1e21", "--plot", "PLOT.gif"), ".png"),
        (("-n", "1e9", "-C", "1e21", "--mfu", "1.5"), "mfu"),
        (("-n", "1e9", "-C", "1e21", "--teacher-params", "7e9", "--teacher-loss", "2", "--plot", "PLOT.png"), "range"),
        (("-n", "5e3", "-C", "1e13", "--size-range", "1e12:1e2"), "--size-range"),
        (("-n", "5e3", "-C", "1e13", "--size-range", "abc"), "--size-range"),
        (("-n", "5e3", "-C", "1e13", "--size-range", "0:1e9"), "--size-range"),
        (("-n", "5e3", "-C", "1e13", "--size-range", "1e2:1e9:5"), "--size-range"),
        (("-n", "5e3", "-C", "1e13", "--size-range", "1e2:inf"), "--size-range"),
        (("-n", "5e3", "-C", "1e13"), "1e+06 tokens"),  # the pilot problem needs --size-range
        (("-n", "0.5", "-C", "1e13", "--size-range", "1e2:1e12"), "student params must be between 1 and 1e+12"),
        (("-n", "5e12", "-C", "1e13", "--size-range", "1e2:1e12"), "student params must be between 1 and 1e+12"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, args, message):
    r = cli("plan", *[str(a).replace("PLOT", str(tmp_path / "p")) for a in args])
    assert r.code == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_help_reads_like_a_manual(cli):
    r = cli("plan", "--help")
    assert r.code == 0
    for text in ("Examples", "--student-params", "--compute", "teacher-pretraining", "1e20:1e24:9", "--size-range", "small pilot"):
        assert text in r.stdout


def test_cli_start_up_does_not_import_plotting():
    code = "import sys, distlaw.cli.app; print('matplotlib' in sys.modules, 'distlaw.planning.plot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_flops_form_and_hardware_options(cli):
    r = cli("plan", "-n", "1e9", "-C", "6e20", "--scenario", "best", "--flops", "simple", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["supervised_tokens"] == pytest.approx(1e11)  # D = C / 6N with F = 2N
    # paper form with a 2048 context and a 256-symbol vocabulary: F = 2N + 2 L n_ctx d + 2 V d, N = 12 L d^2, d = 128 L
    n_layers = (1e9 / (12 * 128**2)) ** (1 / 3)
    f = 2e9 + 2 * n_layers * 2048 * 128 * n_layers + 2 * 256 * 128 * n_layers
    r = cli("plan", "-n", "1e9", "-C", "1e21", "--scenario", "best", "--n-ctx", "2048", "--vocab", "256", "--json")
    assert r.json()["supervised_tokens"] == pytest.approx(1e21 / (3 * f), rel=1e-9)
    r = cli("plan", "-n", "1e9", "-C", "1e21", "--scenario", "best", "--hardware", "a100", "--mfu", "0.5", "--price-per-hour", "2", "--json")
    hours = 1e21 / (312e12 * 0.5) / 3600
    assert r.json()["gpu_hours"] == pytest.approx(hours) and r.json()["cost_usd"] == pytest.approx(2 * hours)

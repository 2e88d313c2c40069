"""`distlaw capacity`: fit and predict from the command line; bad input is one line and exit 2.

The group is registered on a fresh typer app that stands in for ``distlaw.cli.app.app``, so the
project's ``main`` (DistlawError -> one line, exit 2) drives it as it drives every command.
"""

import numpy as np
import pandas as pd
import pytest
import typer

import distlaw.cli.app
from distlaw.capacity import capacity_gap
from distlaw.cli import capacity
from distlaw.runs import read_runs

STUDENTS = [1e6, 1e7, 1e8]


@pytest.fixture(autouse=True)
def capacity_app(monkeypatch):
    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
    capacity.register(app)
    monkeypatch.setattr(distlaw.cli.app, "app", app)


def planted_runs(path, noise=0.005, factors=(1 / 8, 1 / 4, 1 / 2, 1.3, 2, 4, 8), seeds=2):
    """Student loss 3 - 0.1 ln S + 0.05 (ln T - ln 2.5 S)^2 + noise; returns the CSV path."""
    rng = np.random.default_rng(0)
    rows = [
        {"kind": "distilled", "params": s, "tokens": 20 * s, "teacher_params": 2.5 * s * f, "teacher_loss": 2.0,
         "loss": 3 - 0.1 * np.log(s) + 0.05 * np.log(f) ** 2 + noise * rng.standard_normal()}
        for s in STUDENTS for f in factors for _ in range(seeds)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def runs_csv(tmp_path):
    return planted_runs(tmp_path / "runs.csv")


def one_line_error(r, message):
    assert r.code == 2, r.stdout
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_fit_json_matches_the_api(cli, runs_csv):
    r = cli("capacity", "fit", runs_csv, "--bootstrap", "50", "--seed", "3", "--json")
    assert r.code == 0, r.stderr
    got = r.json()
    expected = capacity_gap(read_runs(runs_csv), bootstrap=50, seed=3)
    assert [s["teacher_star"] for s in got["students"]] == pytest.approx(expected.curves["teacher_star"].tolist(), rel=1e-12)
    assert [s["teacher_star_lo"] for s in got["students"]] == pytest.approx(expected.curves["teacher_star_lo"].tolist(), rel=1e-12)
    assert [s["status"] for s in got["students"]] == ["interior"] * 3
    law = got["law"]
    assert law["slope"] == pytest.approx(expected.fit.law.slope, rel=1e-12) == pytest.approx(2.5, rel=0.03)
    assert law["intervals"]["slope"] == pytest.approx(list(expected.fit.intervals["slope"]), rel=1e-12)
    assert law["bootstrap"] == len(expected.fit.samples) and got["reason"] is None and got["out"] is None
    assert got["reference"]["zhang2023"] == {"slope": 2.5, "intercept": 0.0}


def test_fit_table_writes_law_and_plot_then_predict_uses_it(cli, runs_csv, tmp_path):
    out, fig = tmp_path / "law.json", tmp_path / "capacity.png"
    r = cli("capacity", "fit", runs_csv, "--bootstrap", "100", "--out", out, "--plot", fig)
    assert r.code == 0, r.stderr
    assert "interior" in r.stdout and "Zhang" in r.stdout and f"wrote {out}" in r.stdout
    assert fig.stat().st_size > 1000
    fit = capacity_gap(read_runs(runs_csv)).fit.law
    p = cli("capacity", "predict", "--student", "1e9", "-n", "2e7", "-c", out, "--json")
    assert p.code == 0, p.stderr
    rows = p.json()["predictions"]
    assert [row["teacher_params"] for row in rows] == pytest.approx([fit.slope * s + fit.intercept for s in (1e9, 2e7)], rel=1e-12)
    assert all(row["lo"] <= row["teacher_params"] <= row["hi"] for row in rows)


def test_predict_defaults_to_zhang(cli):
    r = cli("capacity", "predict", "-n", "1e6", "-n", "1e12", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["source"] == "zhang2023"
    assert [row["teacher_params"] for row in r.json()["predictions"]] == pytest.approx([2.5e6, 2.5e12])
    inverse = cli("capacity", "predict", "--teacher", "7e9", "--preset", "zhang2023", "--json").json()["predictions"]
    assert inverse == [{"teacher_params": 7e9, "student_params": pytest.approx(2.8e9)}]
    table = cli("capacity", "predict", "-n", "4e8")
    assert table.code == 0 and "1e+09" in table.stdout


def test_unfittable_law_still_shows_the_curves(cli, tmp_path):
    runs = planted_runs(tmp_path / "edge.csv", noise=0.0, factors=(1 / 16, 1 / 8, 1 / 4))  # loss still falling
    r = cli("capacity", "fit", runs, "--bootstrap", "0", "--json")
    assert r.code == 0, r.stderr
    got = r.json()
    assert got["law"] is None and "interior optima" in got["reason"]
    assert [s["status"] for s in got["students"]] == ["at least"] * 3
    table = cli("capacity", "fit", runs, "--bootstrap", "0")
    assert table.code == 0 and "not fitted" in table.stdout and ">= 6.25e5" in table.stdout
    out = tmp_path / "law.json"
    one_line_error(cli("capacity", "fit", runs, "--out", out), "no law to write")
    assert not out.exists()


@pytest.mark.parametrize(
    "table, message",
    [
        (None, "no such file"),
        (pd.DataFrame({"kind": ["distilled"], "params": [1e6], "loss": [2.0]}), "missing column(s) tokens"),
        (pd.DataFrame({"kind": "distilled", "params": 1e6, "tokens": 2e7, "teacher_params": [1e6, 2e6, 1e6, 2e6], "teacher_loss": 2.0,
                       "loss": [2.1, 2.0, 2.1, 2.0]}), "3 or more teacher sizes (most: 2)"),
    ],
)
def test_bad_runs_are_one_line_and_write_nothing(cli, tmp_path, table, message):
    src, out, fig = tmp_path / "runs.csv", tmp_path / "law.json", tmp_path / "fig.png"
    if table is not None:
        table.to_csv(src, index=False)
    one_line_error(cli("capacity", "fit", src, "--out", out, "--plot", fig), message)
    assert not out.exists() and not fig.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["-n", "1e9", "-t", "1e9"], "give --student or --teacher"),
        (["-n", "1e9", "--preset", "zhang2023", "-c", "law.json"], "not both"),
        (["-n", "1e9", "--preset", "zhang"], "unknown capacity-gap preset"),
        (["-n", "-5"], "student params must be positive"),
        (["-n", "1e9", "-c", "missing.json"], "cannot read"),
    ],
)
def test_predict_errors(cli, args, message):
    one_line_error(cli("capacity", "predict", *args), message)


def test_bad_plot_suffix_fails_before_any_work(cli, runs_csv, tmp_path):
    one_line_error(cli("capacity", "fit", runs_csv, "--plot", tmp_path / "fig.txt", "--out", tmp_path / "law.json"), "must end in")
    assert not (tmp_path / "law.json").exists()


def test_help_reads_like_a_manual(cli):
    group = cli("capacity", "--help")
    assert group.code == 0 and "2311.07052" in group.stdout and "optimal teacher" in group.stdout
    fit = cli("capacity", "fit", "--help")
    assert fit.code == 0 and "interior" in fit.stdout and "bootstrap" in fit.stdout

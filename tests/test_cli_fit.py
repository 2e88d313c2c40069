"""`distlaw fit`: JSON and coefficients output, warnings, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from distlaw.fitting import synthetic_runs
from distlaw.laws import Coefficients


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "runs.csv"
    synthetic_runs("busbridge2025", n_supervised=40, n_distilled=80, noise=0.005, seed=11).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def fitted(runs_csv, tmp_path_factory):
    """One CLI fit of both laws with a small bootstrap, shared by the assertions below."""
    from distlaw.cli.app import main

    out = tmp_path_factory.mktemp("fit") / "coeffs.json"
    import contextlib
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main(["fit", str(runs_csv), "--grid", "coarse", "--bootstrap", "8", "--out", str(out), "--json"])
            code = 0
        except SystemExit as exc:
            code = exc.code
    return code, stdout.getvalue(), stderr.getvalue(), out


def test_json_has_both_laws_with_coefficients_intervals_metrics(fitted):
    code, stdout, stderr, _ = fitted
    assert code == 0, stderr
    result = json.loads(stdout)
    assert set(result) == {"supervised", "distillation"}
    for law, names in (("supervised", {"E", "A", "B", "alpha", "beta", "gamma"}),
                       ("distillation", {"A", "B", "alpha", "beta", "gamma", "c0", "c1", "f1", "d1"})):
        block = result[law]
        assert {"coefficients", "intervals", "metrics"} <= set(block)
        assert set(block["coefficients"]) == names
        assert set(block["intervals"]) == names  # nothing fixed: every coefficient has an interval
        for lo, hi in block["intervals"].values():
            assert lo <= hi
        assert block["metrics"]["fit"]["mape_pct"] < 1.5
        assert block["fit"]["bootstrap"] == 8
    assert result["distillation"]["fit"]["supervised_source"] == "fit"


def test_out_file_is_a_coefficients_file_with_bootstrap_samples(fitted, cli, runs_csv, tmp_path):
    code, stdout, _, out = fitted
    assert code == 0
    coef = Coefficients.load(out)
    result = json.loads(stdout)
    assert coef.supervised.as_dict() == pytest.approx(result["supervised"]["coefficients"])
    assert coef.distillation.as_dict() == pytest.approx(result["distillation"]["coefficients"])
    assert len(coef.samples("supervised")) == 8 and len(coef.samples("distillation")) == 8
    assert coef.meta["fit"]["supervised"]["delta"] == 1e-4
    # the planner's and predict's loader accepts it
    r = cli("predict", runs_csv, "--out", tmp_path / "pred.csv", "--coefficients", out)
    assert r.code == 0, r.stderr
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert np.mean(np.abs(pred["predicted_loss"] / pred["loss"] - 1)) < 0.015


def test_supervised_only_with_fixed_gamma_and_text_output(cli, runs_csv, tmp_path):
    df = pd.read_csv(runs_csv)
    sup = tmp_path / "sup.csv"
    df[df["kind"] == "supervised"].to_csv(sup, index=False)
    r = cli("fit", sup, "--fix", "gamma=0.452", "--grid", "coarse", "--delta", "1e-3")
    assert r.code == 0, r.stderr
    assert "supervised law" in r.stdout and "gamma (fixed)" in r.stdout and "distillation" not in r.stdout


def test_distillation_with_preset_ltilde_and_holdout(cli, runs_csv, tmp_path):
    df = pd.read_csv(runs_csv)
    dist = tmp_path / "dist.csv"
    df[df["kind"] == "distilled"].to_csv(dist, index=False)
    r = cli("fit", dist, "--law", "distillation", "--coefficients", "busbridge2025", "--holdout-below", "2.3",
            "--grid", "coarse", "--json")
    assert r.code == 0, r.stderr
    out = r.json()
    assert set(out) == {"distillation"}
    held = out["distillation"]["metrics"]["holdout"]
    assert held["below"] == 2.3 and held["n"] == int((df[df["kind"] == "distilled"]["loss"] < 2.3).sum())
    assert out["distillation"]["fit"]["supervised_source"] == "busbridge2025"


def test_identifiability_warning_goes_to_stderr_and_json(cli, tmp_path):
    rng = np.random.default_rng(0)
    n = np.exp(rng.uniform(np.log(1e8), np.log(1e10), 30))
    d = n * np.exp(rng.uniform(np.log(5), np.log(500), 30))
    path = tmp_path / "pure.csv"
    # no irreducible term: E runs to its lower bound
    pd.DataFrame({"kind": "supervised", "params": n, "tokens": d, "loss": 3e3 * n**-0.4 + 1e4 * d**-0.4}).to_csv(path, index=False)
    r = cli("fit", path, "--fix", "gamma=1", "--grid", "coarse", "--json")
    assert r.code == 0, r.stderr
    assert "warning:" in r.stderr and "E = " in r.stderr and "bound" in r.stderr
    assert any("lower bound" in w for w in r.json()["supervised"]["warnings"])


def _frame(**overrides):
    base = {
        "kind": ["supervised"] * 8,
        "params": np.geomspace(1e8, 1e10, 8),
        "tokens": np.geomspace(2e9, 2e11, 8),
        "loss": np.linspace(3.0, 2.2, 8),
    }
    base.update(overrides)
    return pd.DataFrame(base)


BAD_TABLES = [
    (_frame().drop(columns=["tokens"]), "missing column"),
    (_frame(loss=[3.0, np.nan, 2.8, 2.7, 2.6, 2.5, 2.4, 2.3]), "column 'loss'"),
    (_frame(tokens=[np.inf] + [1e10] * 7), "column 'tokens'"),
    (_frame(params=[0.0] + [1e9] * 7), "column 'params'"),
    (_frame(loss=[-1.0] + [2.5] * 7), "column 'loss'"),
    (_frame().iloc[:4], "4 run(s) but 6 free parameters"),
]


@pytest.mark.parametrize(("frame", "message"), BAD_TABLES)
def test_bad_runs_table_is_one_line_exit_2_no_output(cli, tmp_path, frame, message):
    src, dst = tmp_path / "runs.csv", tmp_path / "coeffs.json"
    frame.to_csv(src, index=False)
    r = cli("fit", src, "--grid", "coarse", "--out", dst)
    assert r.code == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not dst.exists() and list(tmp_path.iterdir()) == [src]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--fix", "gamma"), "expected NAME=VALUE"),
        (("--fix", "gamma=abc"), "VALUE must be a number"),
        (("--fix", "zeta=1"), "no parameter 'zeta'"),
        (("--fix", "E=-1"), "E must be positive"),
        (("--law", "distillation", "--coefficients", "nope"), "unknown preset 'nope'"),
        (("--law", "distillation", "--coefficients", "BADJSON"), "malformed JSON"),
        (("--law", "distillation", "--coefficients", "NOSUP"), "no 'supervised' block"),
        (("--delta", "0"), "--delta must be a positive number"),
        (("--law", "everything"), "--law must be one of"),
        (("--out", "coeffs.txt"), "must end in .json"),
    ],
)
def test_bad_arguments_are_one_line_exit_2_no_output(cli, tmp_path, args, message):
    src, dst = tmp_path / "runs.csv", tmp_path / "coeffs.json"
    distilled = _frame(kind=["distilled"] * 8, teacher_loss=[2.0] * 8)
    pd.concat([_frame(), distilled], ignore_index=True).to_csv(src, index=False)
    (tmp_path / "bad.json").write_text('{"supervised": {"E": 1.0,')
    (tmp_path / "nosup.json").write_text(json.dumps({"distillation": {
        "A": 1.0, "B": 1.0, "alpha": 0.3, "beta": 0.3, "gamma": 1.0, "c0": 1.0, "c1": 1.0, "f1": 0.1, "d1": 1.0}}))
    args = tuple(str(tmp_path / "bad.json") if a == "BADJSON" else str(tmp_path / "nosup.json") if a == "NOSUP" else a
                 for a in args)
    extra = () if "--out" in args else ("--out", dst)
    r = cli("fit", src, "--grid", "coarse", *args, *extra)
    assert r.code == 2, r.stdout
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not dst.exists() and not (tmp_path / "coeffs.txt").exists()


def test_law_without_its_rows_is_an_error(cli, tmp_path):
    src = tmp_path / "runs.csv"
    _frame().to_csv(src, index=False)
    r = cli("fit", src, "--law", "distillation", "--grid", "coarse")
    assert r.code == 2 and "no distilled rows" in r.stderr


def test_distilled_rows_without_any_supervised_law_is_an_error(cli, runs_csv, tmp_path):
    df = pd.read_csv(runs_csv)
    dist = tmp_path / "dist.csv"
    df[df["kind"] == "distilled"].to_csv(dist, index=False)
    r = cli("fit", dist, "--grid", "coarse")
    assert r.code == 2 and "add supervised rows or pass --coefficients" in r.stderr

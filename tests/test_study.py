"""`distlaw demo`: the whole study on a tiny sweep, end to end on CPU, and resumable."""

import json

import pandas as pd
import pytest

from distlaw.laws import Coefficients
from distlaw.runs import read_runs
from distlaw.lab.protocols import shipped_configs

TINY = """
name = "tiny"
checkpoint_every = 50
eval_tokens = 8192
workers = 1

[data]
corpus = "shakespeare"
tokenizer = "byte"
seq_len = 64

[optim]
batch_size = 16
lr = 3e-3

[model]
aspect_ratio = 8
head_dim = 8

[[protocol]]
type = "fixedm-fixedm"
teachers = [6256, 20904]
teacher_ratio = 4
students = [792]
student_ratios = [20, 40, 80, 160, 320]
"""


def test_packaged_configs_exist():
    assert {"demo", "micro", "pilot", "capacity"} <= set(shipped_configs())
    assert all(path.is_file() for path in shipped_configs().values())


@pytest.mark.slow
def test_demo_runs_fits_reports_and_resumes(cli, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "study"
    first = cli("demo", "--out", out, "--config", config, "--json")
    assert first.code == 0, first.stderr
    summary = first.json()
    runs = read_runs(out / "runs.csv")
    assert summary["runs"] == len(runs) == 17  # 2 teachers, 10 students, 5 supervised baselines
    assert set(runs["kind"]) == {"supervised", "distilled"}
    coefficients = Coefficients.load(out / "coefficients.json")
    assert coefficients.supervised is not None and coefficients.distillation is not None
    for law in ("supervised", "distillation"):
        assert summary["fit"][law]["metrics"]["fit"]["mape_pct"] < 10
        form = summary["fit"][law]["parameterisation"]  # chosen with the prior (distlaw fit --prior)
        assert form["name"] in {c["name"] for c in form["candidates"]}
        assert all(getattr(getattr(coefficients, law), k) == v for k, v in form["fixed"].items())
    held = summary["extrapolation"]["recipes"]  # the runs of largest compute, predicted by the fit of the rest
    fitted_runs = summary["fit"]["supervised"]["metrics"]["fit"]["n"] + summary["fit"]["distillation"]["metrics"]["fit"]["n"]
    assert len(held) + fitted_runs == 17 and all(r["observed"] is not None for r in held)
    biggest = runs.loc[runs["kind"] == "distilled"].eval("params * tokens").max()
    assert max(r["params"] * r["tokens"] for r in held if r["kind"] == "distilled") == biggest
    recipe, = summary["validation"]["recipes"]  # one recipe planned with the fit and trained
    assert recipe["observed"] is not None and recipe["params"] == runs["params"][runs["kind"] == "distilled"].min()
    gains = pd.DataFrame(summary["distillation_gains"])
    assert len(gains) == 10  # every student has its supervised twin
    assert {r["scenario"] for r in summary["at_scale"]["recipes"]} >= {"best", "teacher-inference", "supervised"}
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "Predictions checked" in html
    assert json.loads((out / "summary.json").read_text())["runs"] == 17

    again = cli("demo", "--out", out, "--config", config, "--quiet")
    assert again.code == 0, again.stderr
    assert read_runs(out / "runs.csv")["loss"].tolist() == runs["loss"].tolist()
    assert again_summary(out)["validation"]["recipes"][0]["observed"] == recipe["observed"]  # resumed, not retrained
    assert "training" not in again.stdout and "Report:" in again.stdout  # --quiet: the summary, no stages
    assert again.stderr == ""


def again_summary(out):
    return json.loads((out / "summary.json").read_text())


def test_demo_bad_config_is_one_line(cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    r = cli("demo", "--out", tmp_path / "out", "--config", bad)
    assert r.code == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

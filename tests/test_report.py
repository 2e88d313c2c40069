"""The HTML report: self-contained, figures embedded, written atomically."""

import base64
import re

import numpy as np
import pandas as pd
import pytest

from distlaw.laws import load_coefficients, student_loss, supervised_loss
from distlaw.report import Report, parity_figure, student_teacher_figure, supervised_fit_figure
from distlaw.runs import predict_runs

COEF = load_coefficients("busbridge2025")


@pytest.fixture
def runs() -> pd.DataFrame:
    rows = [
        {"kind": "supervised", "params": n, "tokens": d, "loss": float(supervised_loss(n, d, COEF.supervised))}
        for n in (1e8, 1e9) for d in (2e9, 2e10)
    ]
    rows += [
        {"kind": "distilled", "params": 3e8, "tokens": 6e9, "teacher_loss": lt, "loss": float(student_loss(3e8, 6e9, lt, COEF))}
        for lt in np.linspace(1.9, 2.8, 4)
    ]
    return pd.DataFrame(rows)


def test_report_embeds_valid_pngs_and_tables(runs, tmp_path):
    report = Report("distlaw test")
    report.heading("Runs")
    report.table(runs)
    report.figure(supervised_fit_figure(runs, COEF, "preset busbridge2025"), "supervised")
    report.figure(student_teacher_figure(runs, COEF, "preset busbridge2025"), "students")
    report.figure(parity_figure(predict_runs(runs, COEF), "preset busbridge2025"), "parity")
    path = report.write(tmp_path / "report.html")
    text = path.read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == 3
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    assert text.count("<tr") == len(runs) + 1  # header + one row per run
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_failed_render_leaves_no_file(tmp_path, monkeypatch):
    report = Report("broken")
    monkeypatch.setattr(Report, "render", lambda self: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        report.write(tmp_path / "report.html")
    assert list(tmp_path.iterdir()) == []


def test_runs_report_shows_the_capacity_gap_when_students_have_three_teachers(runs):
    from distlaw.report.study import given_laws, runs_report

    laws = given_laws(COEF, "busbridge2025")
    assert "smooth optimal teacher" not in runs_report(runs, laws).render()  # one teacher size per student
    rows = [{"kind": "supervised", "params": s, "tokens": 20 * s, "loss": 3.5} for s in (1e6, 1e7)]
    rows += [
        {"kind": "distilled", "params": s, "tokens": 20 * s, "teacher_params": 2.5 * s * f, "teacher_tokens": 50 * s * f,
         "teacher_loss": 2.0, "loss": 3.0 + 0.05 * np.log(f) ** 2}
        for s in (1e6, 1e7) for f in (0.25, 0.5, 1.3, 2, 4)
    ]
    text = runs_report(pd.DataFrame(rows), laws).render()
    assert "smooth optimal teacher" in text
    assert re.search(r"over 2 students: T\* = 2\.5 S [+-]\d", text)  # the planted law T* = 2.5 S comes back
    assert text.count("interior") == 2


def test_capacity_intervals_follow_bootstrap_and_level():
    from distlaw.report.study import given_laws, runs_report

    rows = [{"kind": "distilled", "params": s, "tokens": 20 * s, "teacher_params": 2.5 * s * f, "teacher_loss": 2.0 + 0.1 * f,
             "loss": 3.0 + 0.05 * np.log(f) ** 2 + 0.002 * np.sin(9 * f)} for s in (1e6, 1e7) for f in (0.25, 0.5, 1.3, 2, 4)]
    text = runs_report(pd.DataFrame(rows), given_laws(COEF, "busbridge2025"), bootstrap=20, level=0.9).render()
    assert "90% bootstrap interval over 20 resamples" in text
    assert "teacher star lo" in text

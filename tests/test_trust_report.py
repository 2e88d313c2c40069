"""Issue 9 for `distlaw report` and `distlaw demo`: every table gets the report it allows, a section
that cannot be written says why, bad input is one line before any work, and pages and plots read well.

Losses are planted from the busbridge2025 preset (hand-checkable), so fitted values are compared
with the coefficients that generated them, not with the code's own output.
"""

import json
import re
from html import unescape

import numpy as np
import pandas as pd
import pytest

from distlaw.laws import Coefficients, load_coefficients, student_loss, supervised_loss
from distlaw.intervals import NO_INTERVAL

COEF = load_coefficients("busbridge2025")
SUP = COEF.supervised.as_dict()


def supervised(sizes, tokens) -> list[dict]:
    return [{"kind": "supervised", "params": n, "tokens": d, "loss": float(supervised_loss(n, d, COEF.supervised))}
            for n in sizes for d in tokens]


def distilled(n, d, teacher_losses) -> list[dict]:
    return [{"kind": "distilled", "params": n, "tokens": d, "teacher_loss": lt, "teacher_params": 1e10,
             "loss": float(student_loss(n, d, lt, COEF))} for lt in teacher_losses]


def write(tmp_path, rows, name="runs.csv"):
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def visible_text(html: str) -> str:
    """The page's text as a reader sees it (tags, styles and embedded images removed)."""
    html = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
    return unescape(re.sub(r"<[^>]+>", " ", html))


def one_line_error(r, code=2):
    assert r.code == code, (r.code, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


# --- every table gets a report (item 1 and 4) --------------------------------------------------


def test_supervised_only_table_without_teacher_columns_gets_a_report(cli, tmp_path):
    runs = write(tmp_path, supervised([1e8, 1e9], [2e9, 2e10]))
    out = tmp_path / "r.html"
    r = cli("report", runs, "-c", "busbridge2025", "--out", out)
    assert r.code == 0, r.stderr  # was: internal error (KeyError: 'teacher_loss')
    text = visible_text(out.read_text())
    assert "No distillation gains: the runs have no distilled run" in text
    assert "No distilled runs to draw against it" in text
    assert out.read_text().count("data:image/png") == 2  # supervised law and parity


@pytest.mark.parametrize("rows, expected", [
    (distilled(3e8, 6e9, [1.9, 2.3, 2.8]), "the runs have no supervised run to compare the distilled ones with"),
    (supervised([1e8], [2e9]), "the runs have no distilled run"),
])
def test_one_kind_or_one_run_with_the_preset(cli, tmp_path, rows, expected):
    out = tmp_path / "r.html"
    r = cli("report", write(tmp_path, rows), "-c", "busbridge2025", "--out", out, "--json")
    assert r.code == 0, r.stderr
    assert expected in visible_text(out.read_text())
    assert r.json()["runs"] == len(rows)


def test_too_few_runs_for_a_law_still_report_the_observed_gains(cli, tmp_path):
    # 3 supervised runs, each with a distilled twin: no law can be fitted, the gains are plain subtraction
    sup = supervised([1e8], [2e9, 4e9, 8e9])
    dist = [{**row, "kind": "distilled", "teacher_loss": 2.2, "teacher_params": 1e10, "loss": row["loss"] - gain}
            for row, gain in zip(sup, (0.05, -0.02, 0.01))]
    out = tmp_path / "r.html"
    r = cli("report", write(tmp_path, sup + dist), "--out", out, "--json")
    assert r.code == 0, r.stderr  # was: exit 2, nothing written
    missing = r.json()["missing"]
    assert missing["supervised"] == "3 supervised runs cannot fit 6 free coefficients: fix some with --fix"
    assert missing["distillation"] == "3 distilled runs cannot fit 9 free coefficients: fix some with --fix"
    text = visible_text(out.read_text())
    assert "Distillation beat supervised training on the same tokens in 2 of 3" in text
    assert "Not shown: 3 supervised runs cannot fit 6 free coefficients: fix some with --fix" in text
    assert "No run can be compared with a law" not in text and "Left out: 3 supervised run(s): no supervised law" in text


def test_a_law_that_cannot_be_fitted_keeps_the_other(tmp_path):
    from distlaw.report.study import fit_laws, runs_report

    runs = pd.DataFrame(supervised([1e8, 1e9], [2e9, 6e9, 2e10, 6e10]) + distilled(3e8, 6e9, [1.9, 2.5]))
    laws = fit_laws(runs, fixed={"supervised.gamma": SUP["gamma"]}, source="planted")
    assert laws.missing["distillation"] == "2 distilled runs cannot fit 9 free coefficients: fix some with --fix"
    assert set(laws.missing) == {"distillation"}
    fitted = laws.coefficients.supervised
    planted = supervised_loss(runs["params"][:8], runs["tokens"][:8], COEF.supervised)
    assert supervised_loss(runs["params"][:8], runs["tokens"][:8], fitted) == pytest.approx(planted, rel=2e-3)
    text = visible_text(runs_report(runs, laws).render())
    assert "Not shown: 2 distilled runs cannot fit 9 free coefficients: fix some with --fix" in text
    assert "Supervised runs with the supervised law" in text
    assert "Left out: 2 distilled run(s): no distillation law" in text


def test_fix_lets_three_runs_fit_the_remaining_coefficients(cli, tmp_path):
    runs = write(tmp_path, supervised([1e8, 1e9], [2e9]) + supervised([3e8], [7e9]))
    fixes = [a for name in ("E", "alpha", "beta", "gamma") for a in ("--fix", f"{name}={SUP[name]}")]
    out = tmp_path / "r.html"
    r = cli("report", runs, *fixes, "--out", out, "--json")
    assert r.code == 0, r.stderr
    fitted = r.json()["fit"]["supervised"]["coefficients"]
    assert fitted["A"] == pytest.approx(SUP["A"], rel=1e-2) and fitted["B"] == pytest.approx(SUP["B"], rel=1e-2)
    assert visible_text(out.read_text()).count("(fixed)") == 4


def test_level_names_the_bootstrap_intervals(cli, tmp_path):
    runs = write(tmp_path, supervised([1e8, 1e9], [2e9, 2e10]))
    fixes = [a for name in ("E", "alpha", "beta", "gamma") for a in ("--fix", f"{name}={SUP[name]}")]
    out = tmp_path / "r.html"
    r = cli("report", runs, *fixes, "--bootstrap", "3", "--level", "0.8", "--out", out, "--json")
    assert r.code == 0, r.stderr
    assert r.json()["fit"]["supervised"]["fit"]["level"] == 0.8
    assert "80% interval" in visible_text(out.read_text())


def test_supervised_only_coefficients_file(cli, tmp_path):
    coefficients = tmp_path / "sup.json"
    coefficients.write_text(json.dumps({"supervised": SUP}))
    runs = write(tmp_path, supervised([1e8, 1e9], [2e9]) + distilled(3e8, 6e9, [1.9, 2.5]))
    out = tmp_path / "r.html"
    r = cli("report", runs, "-c", coefficients, "--out", out)
    assert r.code == 0, r.stderr  # was: "these coefficients have no distillation law coefficients"
    text = visible_text(out.read_text())
    assert f"Not shown: {coefficients} has no distillation law" in text
    assert "Left out: 2 distilled run(s): no distillation law" in text
    assert "Supervised runs with the supervised law" in text


def test_teacher_below_the_floor_is_left_out_not_fatal(cli, tmp_path):
    runs = write(tmp_path, supervised([1e8], [2e9]) + distilled(3e8, 6e9, [1.9, 2.5])
                 + [{"kind": "distilled", "params": 3e8, "tokens": 6e9, "teacher_loss": 1.1, "loss": 2.6}])
    out = tmp_path / "r.html"
    r = cli("report", runs, "-c", "busbridge2025", "--out", out)
    assert r.code == 0, r.stderr
    assert "Left out: 1 distilled run(s) with a teacher loss at or below the supervised law's E = 1.22" in visible_text(out.read_text())


def test_nan_cells_print_as_blanks_and_booleans_as_words(cli, tmp_path):
    rows = supervised([1e8], [2e9]) + distilled(1e8, 2e9, [1.9, 2.5])
    rows[1]["teacher_params"] = np.nan  # a distilled row without its teacher's size
    rows[0]["wall_time_s"] = 12.5
    out = tmp_path / "r.html"
    r = cli("report", write(tmp_path, rows), "-c", "busbridge2025", "--out", out)
    assert r.code == 0, r.stderr
    text = visible_text(out.read_text())
    assert not re.search(r"\b(NaN|nan|None|True|False)\b", text)
    assert re.search(r"\bno\b", text)  # the best-teacher table's capacity gap column


# --- one line, before any work (item 1) --------------------------------------------------------


@pytest.fixture
def no_fitting(monkeypatch):
    import distlaw.fitting

    def refuse(*args, **kwargs):
        raise AssertionError("fitted before checking the arguments")

    monkeypatch.setattr(distlaw.fitting, "fit_runs", refuse)


@pytest.mark.parametrize(("out", "message"), [
    ("missing/r.html", "does not exist"),
    ("r.htm", "must end in .html"),
    ("folder.html", "is a folder"),
])
def test_bad_out_is_refused_before_fitting(cli, tmp_path, no_fitting, out, message):
    (tmp_path / "folder.html").mkdir()
    runs = write(tmp_path, supervised([1e8, 1e9], [2e9, 2e10]))
    before = set(tmp_path.rglob("*"))
    r = cli("report", runs, "--out", tmp_path / out)
    one_line_error(r)
    assert message in r.stderr
    assert set(tmp_path.rglob("*")) == before  # no folder created, nothing half-written


@pytest.mark.parametrize(("args", "message"), [
    (["-c", "BAD"], "malformed JSON"),
    (["-c", "busbridge2025", "--fix", "gamma=1"], "with --coefficients nothing is fitted"),
    (["--fix", "E=-1"], "--fix E=-1"),
    (["--fix", "c0=2"], "no parameter 'c0'"),
    (["--level", "95"], "--level must be between 0 and 1"),
    (["--grid", "fine"], "--grid must be one of"),
])
def test_bad_options_are_one_line_and_leave_no_file(cli, tmp_path, no_fitting, args, message):
    bad = tmp_path / "bad.json"
    bad.write_text('{"supervised": {"E": 1.2')
    runs = write(tmp_path, supervised([1e8, 1e9], [2e9, 2e10]))
    r = cli("report", runs, *[str(bad) if a == "BAD" else a for a in args], "--out", tmp_path / "r.html")
    one_line_error(r)
    assert message in r.stderr
    assert not (tmp_path / "r.html").exists()


# --- pictures and tables (item 5) --------------------------------------------------------------


def test_cells_are_blank_words_or_short_numbers():
    from distlaw.report.html import format_cell

    cells = [np.nan, None, pd.NA, True, np.bool_(False), 2.5e6, 1e6, 0.123456, 792.0, np.int64(253952), float("inf"), "text",
             [], ["teacher_tokens", 1e17]]
    assert [format_cell(c) for c in cells] == ["", "", "", "yes", "no", "2.5e6", "1e6", "0.1235", "792", "2.54e5", "inf", "text",
                                               "", "teacher_tokens, 1e17"]


def test_many_sizes_get_a_colour_bar_and_titles_name_the_laws():
    from distlaw.report.plots import student_teacher_figure, supervised_fit_figure

    sizes = np.geomspace(1e7, 1e10, 12)
    runs = pd.DataFrame(supervised(sizes, [2e9, 2e10]) + [r for n in sizes for r in distilled(n, 2e10, [2.0, 2.4])])
    runs = runs.astype({"params": "int64", "tokens": "int64"})  # as runs export writes them: integers
    for figure in (supervised_fit_figure(runs, COEF, "preset busbridge2025"), student_teacher_figure(runs, COEF, "preset busbridge2025")):
        ax, *colorbars = figure.axes
        assert len(colorbars) == 1  # a colour bar, not 12 legend entries
        legend = ax.get_legend()
        assert legend is None or len(legend.get_texts()) <= 1  # at most the "student = teacher" line
        assert "preset busbridge2025" in ax.get_title()


def test_few_sizes_get_a_legend_even_with_integer_columns():
    from distlaw.report.plots import supervised_fit_figure

    runs = pd.DataFrame(supervised([6256, 20904, 49312], [2e5, 8e5])).astype({"params": "int64", "tokens": "int64"})
    fig = supervised_fit_figure(runs, COEF, "fitted to runs.csv")
    assert len(fig.axes) == 1  # no colour bar
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["N = 6256", "N = 20904", "N = 49312"]


def _x_tick_boxes(fig, ax):
    """Window extents of the x tick labels drawn inside the axes (labels of ticks outside the view are not drawn)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    boxes = [t.get_window_extent(renderer) for t in ax.xaxis.get_ticklabels(which="both") if t.get_visible() and t.get_text()]
    return [b for b in boxes if frame.x0 - 1 <= (b.x0 + b.x1) / 2 <= frame.x1 + 1]


@pytest.mark.parametrize("tokens", [(3e6, 3e7), (2e6, 3e6, 4e6), (2e6, 2.5e6)])
def test_log_axes_spanning_about_a_decade_or_less_have_readable_ticks(tokens):
    from distlaw.report.plots import supervised_fit_figure

    fig = supervised_fit_figure(pd.DataFrame(supervised([1e8, 2e8], tokens)), COEF, "preset busbridge2025")
    boxes = _x_tick_boxes(fig, fig.axes[0])
    assert len(boxes) >= 2  # labelled, not a bare axis
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])  # (3e6, 3e7) overlapped before


def test_an_interval_that_misses_its_estimate_is_not_printed():
    from distlaw.report.study import ReportLaws, runs_report

    runs = pd.DataFrame(supervised([1e8, 1e9], [2e9, 2e10]))
    block = {
        "coefficients": SUP,
        "intervals": {"E": [1.1, 1.3], "A": [4000.0, 9000.0], "B": [None, None]},  # A = 3355 lies outside its interval
        "interval_notes": {"B": "most resamples sit on a bound"},
        "metrics": {"fit": {"n": 4, "rmse": 0.0, "mape_pct": 0.0, "max_abs_error": 0.0}},
        "warnings": [],
        "fit": {"fixed": {}, "level": 0.9, "grid": "coarse", "starts": 108, "seconds": 1.0},
    }
    laws = ReportLaws(Coefficients(supervised=COEF.supervised), "fitted to planted", {"supervised": block},
                      {"distillation": "no distilled runs to fit it"})
    text = visible_text(runs_report(runs, laws).render())
    assert "90% interval" in text and "[1.1, 1.3]" in text
    assert "[4000, 9000]" not in text and f"No interval for A: {NO_INTERVAL}" in text
    assert "No interval for B: most resamples sit on a bound" in text


# --- demo (items 1, 4, 6) ----------------------------------------------------------------------


def test_study_report_writes_every_section_with_a_missing_law(tmp_path):
    from distlaw.report.study import ReportLaws, study_report
    from distlaw.study import StudyResult, plan_at_scale

    runs = pd.DataFrame(supervised([1e8, 1e9], [2e9, 2e10]) + distilled(1e8, 2e9, [1.9, 2.5]))
    laws = ReportLaws(Coefficients(supervised=COEF.supervised), "fitted to runs.csv", None,
                      {"distillation": "2 distilled runs cannot fit 9 free coefficients: fix some with --fix"})
    result = StudyResult(out_dir=tmp_path, runs=runs, laws=laws, gains=pd.DataFrame(), teachers=pd.DataFrame(),
                         at_scale=plan_at_scale(), seconds=1.0)
    text = visible_text(study_report(result).render())
    for section in ("What the runs show", "Supervised law", "Planning at scale", "All runs"):
        assert section in text
    assert "Not shown: 2 distilled runs cannot fit 9 free coefficients: fix some with --fix" in text
    summary = result.summary()
    assert summary["missing_laws"] == {"distillation": "2 distilled runs cannot fit 9 free coefficients: fix some with --fix"}
    assert "coefficients" in summary["files"]


@pytest.mark.parametrize("setup, message", [
    (lambda out: out.write_text("x"), "is a file"),
    (lambda out: (out.mkdir(), (out / "notes.txt").write_text("mine")), "not a study folder"),
])
def test_demo_refuses_an_out_that_is_not_a_study_folder(cli, tmp_path, setup, message):
    out = tmp_path / "study"
    setup(out)
    before = sorted(tmp_path.rglob("*"))
    r = cli("demo", "--out", out, "--workers", "1")
    one_line_error(r)
    assert message in r.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_demo_refuses_zero_workers(cli, tmp_path):
    r = cli("demo", "--out", tmp_path / "study", "--workers", "0")
    one_line_error(r)
    assert "--workers must be >= 1" in r.stderr and not (tmp_path / "study").exists()

"""`plan` answers consistent with themselves (issue 9, items 3a, 3b, 3d, 5 and plan/predict's share of 1, 6):
every crossover, recipes on the search bound, intervals that hold their estimate, the frontier
figure, the interface, and no traceback on odd input."""

import json

import numpy as np
import pytest

from distlaw import DistlawError
from distlaw.compute import FlopModel
from distlaw.intervals import NO_INTERVAL
from distlaw.laws import PRESETS, Coefficients, load_coefficients, student_loss, supervised_loss
from distlaw.planning import SCENARIOS, ExistingTeacher, Planner, crossovers

F = FlopModel().forward
NS = 1e9
# Planted laws whose gap changes sign twice (c0 = 0 and d1 = 1000 make Eq. 8's teacher factor 1): with
# x = D^-0.3, L_S - L_sup = (L_T - E) + B' x^2 - B x, zero at x = D^-0.3 for D = 1e10 and D = 1e13 when
# B' = B / (x1 + x2) = 8.88e5 and L_T - E = B' x1 x2 = 0.1118. Supervised wins below 1e10 tokens and above
# 1e13, distillation in between.
PLANTED = {
    "supervised": {"E": 1.5, "A": 100.0, "B": 1000.0, "alpha": 0.3, "beta": 0.3, "gamma": 1.0},
    "distillation": {"A": 100.0, "B": 8.88e5, "alpha": 0.3, "beta": 0.6, "gamma": 1.0, "c0": 0.0, "c1": 1.0, "f1": 0.1, "d1": 1000.0},
}
TEACHER_LOSS = 1.5 + 0.1118
COEF = Coefficients.from_dict(PLANTED)


@pytest.fixture
def planted(tmp_path) -> str:
    path = tmp_path / "planted.json"
    path.write_text(json.dumps(PLANTED))
    return str(path)


def brute_force_sign_changes(compute: np.ndarray, gap: np.ndarray) -> list[tuple[float, str]]:
    """(budget, winner above) at each sign change of the gap on a fine grid."""
    winner = np.where(gap < 0, "distillation", "supervised")
    flips = np.flatnonzero(winner[1:] != winner[:-1])
    return [(float(np.sqrt(compute[i] * compute[i + 1])), str(winner[i + 1])) for i in flips]


# -- every crossover ----------------------------------------------------------------------------


def test_every_crossover_of_an_existing_teacher_matches_the_closed_forms():
    teacher = ExistingTeacher(1e9, loss=TEACHER_LOSS)
    found = crossovers(Planner(COEF), NS, "best", teacher)
    grid = np.logspace(17, 29, 24001)  # 2000 points per decade
    d = grid / (3 * F(NS))  # best case: the student gets all of C, like the supervised baseline
    truth = brute_force_sign_changes(grid, student_loss(NS, d, TEACHER_LOSS, COEF) - supervised_loss(NS, d, COEF.supervised))
    assert [w for _, w in truth] == ["distillation", "supervised"]
    assert found.winner_below == "supervised"
    assert [p.winner_above for p in found.points] == [w for _, w in truth]
    for p, (c, _) in zip(found.points, truth):
        assert p.compute == pytest.approx(c, rel=2e-3)  # within the brute-force grid's step
    # and where the planted algebra puts them: D = 1e10 and 1e13 tokens
    np.testing.assert_allclose([p.compute / (3 * F(NS)) for p in found.points], [1e10, 1e13], rtol=0.02)


def test_every_crossover_of_the_optimal_recipes_matches_a_fine_scan():
    planner = Planner(COEF)
    for scenario in ("best", "teacher-inference"):
        found = crossovers(planner, NS, scenario)
        grid = np.logspace(np.log10(found.scanned[0]), 29, 3001)
        gap = planner.solve(NS, grid, scenario, warn=False).student_loss - planner.supervised(NS, grid).loss
        truth = brute_force_sign_changes(grid, gap)
        assert len(truth) == 2 and [p.winner_above for p in found.points] == [w for _, w in truth], scenario
        for p, (c, _) in zip(found.points, truth):
            assert p.compute == pytest.approx(c, rel=0.01)


def test_plan_reports_every_crossover_and_chooses_the_side_they_say(cli, planted):
    r = cli("plan", "-n", "1e9", "-C", "1e19:1e25:13", "-c", planted, "--teacher-params", "1e9",
            "--teacher-loss", str(TEACHER_LOSS), "--scenario", "best", "--json")
    assert r.code == 0, r.stderr
    objs = r.json()
    listed = objs[0]["crossovers"]["best"]
    assert [x["winner_above"] for x in listed] == ["distillation", "supervised"]
    assert objs[0]["crossover_scan"]["best"]["winner_below"] == "supervised"
    for obj in objs:
        winner = "supervised"
        for x in listed:
            if obj["compute"] >= x["compute"]:
                winner = x["winner_above"]
        choose = obj["recipes"][0]["choose"]
        assert choose == ("distil" if winner == "distillation" else "supervised"), obj["compute"]
        # and the choice is what the closed forms say
        d = obj["compute"] / (3 * F(NS))
        distil_wins = student_loss(NS, d, TEACHER_LOSS, COEF) < supervised_loss(NS, d, COEF.supervised)
        assert (choose == "distil") == bool(distil_wins)
    assert {o["recipes"][0]["choose"] for o in objs} == {"distil", "supervised"}
    text = " ".join(cli("plan", "-n", "1e9", "-C", "1e21", "-c", planted, "--teacher-params", "1e9",
                        "--teacher-loss", str(TEACHER_LOSS), "--scenario", "best").stdout.split())
    assert "best: supervised below 7.36e19 FLOPs, distillation from 7.36e19 to 7.37e22, supervised above 7.37e22" in text


def test_choice_and_crossovers_agree_at_budgets_next_to_a_crossover(cli, planted):
    first = crossovers(Planner(COEF), NS, "best").points[0].compute
    budgets = f"{first * (1 - 1e-4)}:{first * (1 + 1e-4)}:2"
    r = cli("plan", "-n", "1e9", "-C", budgets, "-c", planted, "--scenario", "best", "--json")
    assert r.code == 0, r.stderr
    below, above = r.json()
    assert below["recipes"][0]["choose"] == "supervised" and above["recipes"][0]["choose"] == "distil"
    points = [x["compute"] for x in below["crossovers"]["best"]]
    assert below["compute"] < points[0] <= above["compute"]


def test_crossovers_include_the_asked_budgets_below_the_scan():
    planner = Planner(load_coefficients("busbridge2025"))
    least = float(planner.minimum_compute(NS, SCENARIOS["best"]))
    found = crossovers(planner, NS, "best", include=[2 * least])
    assert found.scanned[0] == pytest.approx(2 * least)
    with pytest.raises(DistlawError, match="below the least usable budget"):
        crossovers(planner, NS, "best", max_compute=least)


# -- recipes on the search bound ----------------------------------------------------------------


def test_a_recipe_on_the_search_bound_says_so(cli):
    r = cli("plan", "-n", "1e9", "-C", "1e21", "--json")
    assert r.code == 0, r.stderr
    by = {rec["scenario"]: rec for rec in r.json()["recipes"]}
    # teacher inference: pretraining is free, so D_T goes to the bound 1e17 (App. H), not to an optimum
    assert by["teacher-inference"]["teacher_tokens"] == pytest.approx(1e17) and by["teacher-inference"]["at_bound"] == ["teacher_tokens"]
    assert by["teacher-pretraining"]["at_bound"] == [] and by["best"]["at_bound"] == []
    table = cli("plan", "-n", "1e9", "-C", "1e21").stdout
    assert "(bound)" in table and "not at an optimum" in " ".join(table.split())


@pytest.mark.parametrize(("scenario", "free_size"), [("best", 9.8e9), ("teacher-pretraining", 2.3e9)])
def test_a_teacher_capped_by_size_range_is_on_the_bound(scenario, free_size):
    # N_S = 1e9 at 1e21: the unbounded teacher is about free_size; with N_T, D_T <= 2e9 it sits on the cap
    coef = load_coefficients("busbridge2025")
    free = Planner(coef).solve(NS, 1e21, scenario)
    capped = Planner(coef, size_range=(1e6, 2e9)).solve(NS, 1e21, scenario)
    assert float(free.teacher_params) == pytest.approx(free_size, rel=0.05) and free.at_bound() == []
    assert float(capped.teacher_params) == pytest.approx(2e9, rel=1e-4)
    assert capped.at_bound() == ["teacher_params", "teacher_tokens"]


def test_a_given_teacher_is_never_flagged_as_a_bound(cli):
    r = cli("plan", "-n", "1e9", "-C", "1e22", "--teacher-params", "7e9", "--teacher-loss", "1.95", "--size-range", "1e6:7e9", "--json")
    assert r.code == 0, r.stderr
    assert all(rec["at_bound"] == [] for rec in r.json()["recipes"])


# -- intervals hold their estimate --------------------------------------------------------------


def with_e_samples(tmp_path, shifts) -> str:
    rows = [{**PRESETS["busbridge2025"]["supervised"], "E": 1.22 + d} for d in shifts]
    path = tmp_path / "fit.json"
    path.write_text(json.dumps({**PRESETS["busbridge2025"], "bootstrap": {"supervised": rows}}))
    return str(path)


def test_default_level_is_095_with_the_planted_quantiles(cli, tmp_path):
    shifts = np.linspace(-0.02, 0.02, 41)
    r = cli("plan", "-n", "1e9", "-C", "1e21", "--scenario", "best", "-c", with_e_samples(tmp_path, shifts), "--json")
    assert r.code == 0, r.stderr
    out = r.json()
    lo, hi = out["supervised_loss_interval"]
    # L = E + (...)^gamma: shifting E by d shifts the supervised loss by d; the 95 % band is the 2.5/97.5 % quantiles
    assert lo == pytest.approx(out["supervised_loss"] + np.quantile(shifts, 0.025), abs=1e-9)
    assert hi == pytest.approx(out["supervised_loss"] + np.quantile(shifts, 0.975), abs=1e-9)
    assert out["recipes"][0]["intervals"]["level"] == 0.95


def test_an_interval_that_misses_its_estimate_is_not_printed(cli, tmp_path):
    path = with_e_samples(tmp_path, np.linspace(0.03, 0.05, 9))  # every sample's E above the point estimate's
    r = cli("plan", "-n", "1e9", "-C", "1e21", "--scenario", "best", "-c", path, "--json")
    assert r.code == 0, r.stderr
    out = r.json()
    band = out["recipes"][0]["intervals"]
    assert out["supervised_loss_interval"] is None and band["supervised_loss"] is None
    assert "supervised_loss" in band["no_interval"] and band["note"] == NO_INTERVAL
    for key, pair in band.items():  # whatever is printed contains its estimate
        if isinstance(pair, list) and key in out["recipes"][0] and len(pair) == 2 and isinstance(pair[0], float):
            assert pair[0] <= out["recipes"][0][key] * (1 + 1e-9) and out["recipes"][0][key] <= pair[1] * (1 + 1e-9)
    text = " ".join(cli("plan", "-n", "1e9", "-C", "1e21", "--scenario", "best", "-c", path).stdout.split())
    assert "[no interval]" in text and NO_INTERVAL in text


# -- the frontier figure ------------------------------------------------------------------------


@pytest.fixture
def captured(monkeypatch):
    """The figure `plan --plot` would save, kept open for inspection."""
    import distlaw.planning.plot as plotting

    figures = []
    monkeypatch.setattr(plotting, "save_figure", lambda fig, path: figures.append(fig))
    return figures


def test_frontier_marks_crossovers_band_and_source(cli, tmp_path, captured):
    from matplotlib.collections import PolyCollection

    path = with_e_samples(tmp_path, np.linspace(-0.02, 0.02, 9))
    r = cli("plan", "-n", "1e9", "-C", "1e20:1e24:9", "--scenario", "best", "-c", path, "--plot", tmp_path / "f.png", "--json")
    assert r.code == 0, r.stderr
    (fig,) = captured
    ax_loss, ax_size = fig.axes
    assert "fit.json (file)" in ax_loss.get_title() and "bootstrap" in ax_loss.get_title()
    crossing = r.json()[0]["crossovers"]["best"][0]["compute"]
    vertical = [line for line in ax_loss.lines if len(set(line.get_xdata())) == 1]
    assert [float(line.get_xdata()[0]) for line in vertical] == [pytest.approx(crossing)]
    assert sum(isinstance(c, PolyCollection) for c in ax_loss.collections) == 2  # the recipe's band and supervised's
    fig.canvas.draw()
    for ax in (ax_loss, ax_size):
        boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text() and t.get_visible()]
        inside = [b for b in boxes if ax.get_window_extent().x0 - 1 <= b.x0 and b.x1 <= ax.get_window_extent().x1 + 1]
        assert all(not a.overlaps(b) for i, a in enumerate(inside) for b in inside[i + 1:])


def test_plot_titles_say_preset_or_fitted(cli, tmp_path, captured):
    assert cli("plan", "-n", "1e9", "-C", "1e21", "--scenario", "best", "--plot", tmp_path / "p.png").code == 0
    assert "busbridge2025 (published preset)" in captured[-1].axes[0].get_title()
    fitted = tmp_path / "pilot-fit.json"
    fitted.write_text(json.dumps({**PRESETS["busbridge2025"], "meta": {"name": "fit of pilot.csv", "created_by": "distlaw fit"}}))
    assert cli("plan", "-n", "1e9", "-C", "1e20:1e22:3", "--scenario", "best", "-c", fitted, "--plot", tmp_path / "q.png").code == 0
    assert "pilot-fit.json (fitted)" in captured[-1].axes[0].get_title()


def test_plot_path_is_checked_before_any_work(cli, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("planned before checking --plot")

    monkeypatch.setattr(Planner, "solve", fail)
    for bad, message in ((tmp_path / "missing" / "f.png", "does not exist"), (tmp_path / "f.gif", ".png"), (tmp_path, ".png")):
        r = cli("plan", "-n", "1e9", "-C", "1e21", "--plot", bad)
        assert r.code == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1


# -- the interface ------------------------------------------------------------------------------


def test_short_s_is_not_scenario_anymore(cli):
    r = cli("plan", "-n", "1e9", "-C", "1e21", "-s", "best")
    assert r.code == 2 and "No such option: -s" in r.stderr
    assert "-s" not in [w.strip(",") for w in cli("plan", "--help").stdout.split()]


def test_help_documents_crossovers_bounds_and_far(cli):
    text = " ".join(cli("plan", "--help").stdout.split())
    for phrase in ("every budget", "(bound)", "more than 10x beyond", "floor E", "0.95"):
        assert phrase in text, phrase
    text = " ".join(cli("predict", "--help").stdout.split())
    for phrase in ("supervised-only", "more than 10x beyond", "floor E"):
        assert phrase in text, phrase


# -- no traceback, anywhere ---------------------------------------------------------------------


@pytest.fixture
def odd_files(tmp_path):
    (tmp_path / "binary.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "nulls.json").write_text(json.dumps({"supervised": {**PRESETS["busbridge2025"]["supervised"], "E": None}}))
    (tmp_path / "nan.json").write_text('{"supervised": {"E": NaN, "A": 1, "B": 1, "alpha": 0.3, "beta": 0.3}}')
    (tmp_path / "meta.json").write_text(json.dumps({**PRESETS["busbridge2025"], "meta": "not an object"}))
    (tmp_path / "runs.csv").write_text("kind,params,tokens\nsupervised,1e9,2e10\n")
    (tmp_path / "folder").mkdir()
    return tmp_path


ODD = [
    ("predict", "-n", "0", "-d", "1e9"),
    ("predict", "-n", "nan", "-d", "1e9"),
    ("predict", "-n", "1e9", "-d", "-inf"),
    ("predict", "-n", "1e9", "-d", "1e9", "--teacher-loss", "nan"),
    ("predict", "-n", "1e9", "-d", "1e9", "--teacher-loss", "inf"),
    ("predict", "-n", "1e9", "-d", "1e9", "--teacher-params", "1e9", "--teacher-tokens", "0"),
    ("predict", "-n", "1e9", "-d", "1e9", "--teacher-loss", "2", "--teacher-params", "1e9", "--teacher-tokens", "1e9"),
    ("predict", "-n", "1e9", "-d", "1e9", "-c", "TMP/folder"),
    ("predict", "-n", "1e9", "-d", "1e9", "-c", "TMP/binary.json"),
    ("predict", "-n", "1e9", "-d", "1e9", "-c", "TMP/empty.json"),
    ("predict", "-n", "1e9", "-d", "1e9", "-c", "TMP/list.json"),
    ("predict", "-n", "1e9", "-d", "1e9", "-c", "TMP/nulls.json"),
    ("predict", "-n", "1e9", "-d", "1e9", "-c", "TMP/nan.json"),
    ("predict", "-n", "1e9", "-d", "1e9", "-c", "TMP/meta.json"),
    ("predict", "-n", "1e9", "-d", "1e9", "--out", "TMP/p.csv"),
    ("predict", "TMP/runs.csv", "--out", "TMP/missing/p.csv"),
    ("predict", "TMP/runs.csv", "--out", "TMP/folder"),
    ("predict", "TMP/runs.csv", "--out", "TMP/p.txt"),
    ("predict", "TMP/runs.csv"),
    ("predict", "TMP/folder", "--out", "TMP/p.csv"),
    ("predict", "TMP/nothing.csv", "--out", "TMP/p.csv"),
    ("plan", "-n", "0", "-C", "1e21"),
    ("plan", "-n", "inf", "-C", "1e21"),
    ("plan", "-n", "1e9", "-C", "nan"),
    ("plan", "-n", "1e9", "-C", "0"),
    ("plan", "-n", "1e9", "-C", "1e21:inf:5"),
    ("plan", "-n", "1e9", "-C", "1e20:1e22:100000000"),
    ("plan", "-n", "1e9", "-C", "1e20:1e22:1"),
    ("plan", "-n", "1e9", "-C", "1e20:1e22:x"),
    ("plan", "-n", "1e9", "-C", "1e21", "--size-range", "1e-300:1e300"),
    ("plan", "-n", "1e9", "-C", "1e21", "--teacher-params", "1e9", "--teacher-loss", "inf"),
    ("plan", "-n", "1e9", "-C", "1e21", "--teacher-params", "1e9", "--teacher-loss", "nan"),
    ("plan", "-n", "1e9", "-C", "1e21", "--teacher-params", "1e9", "--teacher-tokens", "1e300"),
    ("plan", "-n", "1e9", "-C", "1e21", "--teacher-params", "inf", "--teacher-tokens", "1e12"),
    ("plan", "-n", "1e9", "-C", "1e21", "--teacher-params", "1e300", "--teacher-loss", "2"),
    ("plan", "-n", "1e9", "-C", "1e21", "--level", "1"),
    ("plan", "-n", "1e9", "-C", "1e21", "--level", "nan"),
    ("plan", "-n", "1e9", "-C", "1e21", "-c", "TMP/folder"),
    ("plan", "-n", "1e9", "-C", "1e21", "-c", "TMP/binary.json"),
    ("plan", "-n", "1e9", "-C", "1e21", "-c", "TMP/meta.json"),
    ("plan", "-n", "1e9", "-C", "1e21", "--plot", "TMP/missing/f.png"),
    ("plan", "-n", "1e9", "-C", "1e21", "--plot", "TMP/folder"),
    ("plan", "-n", "1e9", "-C", "1e21", "--scenario", ","),
]


@pytest.mark.parametrize("args", ODD, ids=[" ".join(a) for a in ODD])
def test_odd_input_is_one_line_and_exit_2(cli, odd_files, args):
    r = cli(*[a.replace("TMP", str(odd_files)) for a in args])
    assert r.code == 2, (r.code, r.stderr)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ")
    assert not (odd_files / "p.csv").exists() and not (odd_files / "missing").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("plan", "-n", "1e9", "-C", "1e21", "--teacher-params", "1e6", "--teacher-loss", "50"),  # weaker than everything
        ("plan", "-n", "1e9", "-C", "1e21:1e300:4", "--scenario", "best"),  # an absurd range: answered, with warnings
        ("plan", "-n", "1", "-C", "1e21", "--scenario", "teacher-inference"),
        ("predict", "-n", "1e300", "-d", "1e300", "--teacher-loss", "2"),
    ],
)
def test_extreme_but_valid_input_is_answered_with_warnings(cli, args):
    r = cli(*args, "--json")
    assert r.code == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines and all(line.startswith("warning: ") for line in lines)
    assert "Traceback" not in r.stderr and "RuntimeWarning" not in r.stderr
    json.loads(r.stdout)

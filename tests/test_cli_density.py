"""`distlaw density`: score, trend and fit from the command line; bad input is one line and exit 2."""

import json

import numpy as np
import pandas as pd
import pytest

from distlaw.laws.density import DensityCoefficients, LossLawCoefficients, ScoreLawCoefficients, conditional_loss, score_from_loss

LOSS = LossLawCoefficients(a=300.0, b=300.0, alpha=0.3, beta=0.3)
SCORE = ScoreLawCoefficients(c=0.6, gamma=-3.0, l=2.0, d=0.25)


def planted_score(n: float, d: float = 1e12) -> float:
    return float(score_from_loss(conditional_loss(n, d, LOSS), SCORE.c, SCORE.gamma, SCORE.l, SCORE.d))


@pytest.fixture
def coefficients(tmp_path):
    path = tmp_path / "density.json"
    DensityCoefficients(loss=LOSS, score=SCORE).save(path)
    return path


def one_line_error(r, message):
    assert r.code == 2, r.stdout
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_score_one_model_json(cli, coefficients):
    r = cli("density", "score", "--params", "1e8", "--score", planted_score(4e8), "-c", coefficients, "--json")
    assert r.code == 0, r.stderr
    (row,) = r.json()["models"]
    assert row["effective_params"] == pytest.approx(4e8, rel=1e-6)
    assert row["density"] == pytest.approx(4.0, rel=1e-6) and row["status"] == "ok"


def test_score_table_writes_results_and_plot(cli, coefficients, tmp_path):
    models = pd.DataFrame({"model": ["small", "big"], "params": [1e7, 1e9], "score": [planted_score(2e7), planted_score(5e8)]})
    src, dst, fig = tmp_path / "models.csv", tmp_path / "out.csv", tmp_path / "density.png"
    models.to_csv(src, index=False)
    r = cli("density", "score", src, "-c", coefficients, "--out", dst, "--plot", fig)
    assert r.code == 0, r.stderr
    assert "small" in r.stdout and "big" in r.stdout
    assert pd.read_csv(dst)["density"].tolist() == pytest.approx([2.0, 0.5], rel=1e-6)
    assert fig.stat().st_size > 1000


def test_unbounded_score_is_reported_not_nan(cli, coefficients):
    top = SCORE.c + SCORE.d
    r = cli("density", "score", "--params", "1e8", "--score", top - 1e-9, "-c", coefficients, "--json")
    assert r.code == 0, r.stderr
    (row,) = r.json()["models"]
    assert row["status"] == "unbounded" and row["effective_params"] is None and row["density"] is None


@pytest.mark.parametrize("score", ["0.9", "0.2"])
def test_score_outside_the_sigmoid_range_is_exit_2(cli, coefficients, score):
    r = cli("density", "score", "--params", "1e8", "--score", score, "-c", coefficients)
    one_line_error(r, "out of range")
    assert "(0.25, 0.85)" in r.stderr


def test_score_needs_a_model(cli, coefficients):
    one_line_error(cli("density", "score", "-c", coefficients), "give a models table, or --params with --score")


def test_score_with_missing_coefficients_file(cli, tmp_path):
    one_line_error(cli("density", "score", "-n", "1e8", "--score", "0.5", "-c", tmp_path / "nope.json"), "cannot read")


def dated(rate: float, days: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": [f"m{i}" for i in range(len(days))],
            "release_date": [(pd.Timestamp("2023-02-24") + pd.Timedelta(days=d)).strftime("%Y-%m-%d") for d in days],
            "params": 1e9,
            "effective_params": [1e9 * np.exp(rate * d) for d in days],
        }
    )


def test_trend_json_reports_about_95_days_for_the_published_rate(cli, tmp_path):
    src, fig = tmp_path / "models.csv", tmp_path / "trend.svg"
    dated(0.0073, [0, 50, 120, 200, 330, 400]).to_csv(src, index=False)
    r = cli("density", "trend", src, "--json", "--plot", fig)
    assert r.code == 0, r.stderr
    out = r.json()
    assert out["A_per_day"] == pytest.approx(0.0073, rel=1e-9)
    assert out["doubling_days"] == pytest.approx(94.95, abs=0.01)
    lo, hi = out["doubling_days_ci"]
    assert lo == pytest.approx(94.95, abs=0.01) and hi == pytest.approx(94.95, abs=0.01)
    assert out["envelope"] == [f"m{i}" for i in range(6)]
    assert fig.read_text().lstrip().startswith("<?xml")


def test_trend_table_output(cli, tmp_path):
    src = tmp_path / "models.csv"
    dated(0.01, [0, 30, 60]).to_csv(src, index=False)
    r = cli("density", "trend", src)
    assert r.code == 0, r.stderr
    assert "doubling time" in r.stdout and "69.31" in r.stdout


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda df: df.assign(release_date=["2023-02-30", *df["release_date"][1:]]), "row 2 column 'release_date': expected a date YYYY-MM-DD"),
        (lambda df: df.assign(release_date=["March 2023", *df["release_date"][1:]]), "expected a date YYYY-MM-DD, got 'March 2023'"),
        (lambda df: df.assign(effective_params=df["effective_params"][::-1].to_numpy()), "only 1 model on the running-maximum"),
        (lambda df: df.drop(columns="effective_params"), "needs a 'density' or an 'effective_params' column"),
        (lambda df: df.assign(params=[1e9, -1, 1e9]), "row 3 column 'params'"),
    ],
)
def test_trend_bad_input_is_exit_2(cli, tmp_path, edit, message):
    src = tmp_path / "models.csv"
    edit(dated(0.01, [0, 30, 60])).to_csv(src, index=False)
    one_line_error(cli("density", "trend", src), message)


def test_trend_bad_origin_and_plot_suffix(cli, tmp_path):
    src = tmp_path / "models.csv"
    dated(0.01, [0, 30, 60]).to_csv(src, index=False)
    one_line_error(cli("density", "trend", src, "--origin", "yesterday"), "--origin: expected a date")
    one_line_error(cli("density", "trend", src, "--plot", tmp_path / "fig.jpg"), "must end in .png, .pdf, .svg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models.csv"]


@pytest.mark.parametrize("command", ["fit", "score", "trend", "eval"])
def test_help_has_examples(cli, command):
    r = cli("density", command, "--help")
    assert r.code == 0 and "Examples" in r.stdout and "--json" in r.stdout


@pytest.mark.parametrize(("params", "score"), [("-5", "0.5"), ("nan", "0.5"), ("1e8", "nan"), ("1e8", "inf")])
def test_score_rejects_non_finite_single_values(cli, coefficients, params, score):
    one_line_error(cli("density", "score", "-n", params, "--score", score, "-c", coefficients), "--params must be positive and --score finite")


def test_score_table_with_a_bad_row(cli, coefficients, tmp_path):
    src = tmp_path / "models.csv"
    pd.DataFrame({"model": ["a", "b"], "params": [1e8, 1e8], "score": [0.5, "high"]}).to_csv(src, index=False)
    one_line_error(cli("density", "score", src, "-c", coefficients), "row 3 column 'score': expected a finite number, got 'high'")


def write_reference(path, score_sign: float = 1.0) -> None:
    n = np.repeat([5.2e6, 31.5e6, 106e6, 245e6, 477e6, 828e6], 3)
    d = n * np.tile([10, 20, 40], 6)
    loss = conditional_loss(n, d, LOSS)
    score = score_from_loss(loss, SCORE.c, SCORE.gamma, SCORE.l, SCORE.d)
    frame = pd.DataFrame({"model": [f"ref{i}" for i in range(n.size)], "params": n, "tokens": d, "loss": loss})
    frame.assign(score=score if score_sign > 0 else 1 - score).to_csv(path, index=False)


def test_fit_then_score_round_trip(cli, tmp_path):
    ref, out, fig = tmp_path / "reference.csv", tmp_path / "density.json", tmp_path / "fit.png"
    write_reference(ref)
    r = cli("density", "fit", ref, "--out", out, "--bootstrap", 20, "--plot", fig, "--json")
    assert r.code == 0, r.stderr
    fitted = r.json()
    for name, value in {**LOSS.as_dict(), **SCORE.as_dict()}.items():
        block = fitted["loss"] if name in LOSS.as_dict() else fitted["score"]
        assert block[name] == pytest.approx(value, rel=1e-3), name
    assert fitted["score_range"] == pytest.approx([0.25, 0.85], rel=1e-3) and fitted["bootstrap"] == 20
    assert fig.stat().st_size > 1000
    r = cli("density", "score", "-n", "1e7", "--score", planted_score(5e7), "-c", out, "--json")
    assert r.code == 0, r.stderr
    assert r.json()["models"][0]["density"] == pytest.approx(5.0, rel=0.02)
    r = cli("density", "fit", ref, "--out", out, "--bootstrap", 0)
    assert r.code == 0 and "score.gamma" in r.stdout and "(0.25, 0.85)" in r.stdout


def test_fit_rejects_scores_that_rise_with_loss(cli, tmp_path):
    ref, out = tmp_path / "reference.csv", tmp_path / "density.json"
    write_reference(ref, score_sign=-1.0)
    one_line_error(cli("density", "fit", ref, "--out", out), "no falling score with rising loss")
    assert not out.exists()


def test_fit_reports_a_missing_column(cli, tmp_path):
    ref = tmp_path / "reference.csv"
    pd.DataFrame({"params": [1e6], "tokens": [1e9], "loss": [3.0]}).to_csv(ref, index=False)
    one_line_error(cli("density", "fit", ref, "--out", tmp_path / "d.json"), "missing column(s) score")


def test_bad_d0_is_one_line(cli, coefficients, tmp_path):
    one_line_error(cli("density", "score", "-n", "1e8", "--score", "0.5", "-c", coefficients, "--d0", "-1"), "d0 must be positive and finite")
    ref = tmp_path / "reference.csv"
    write_reference(ref)
    one_line_error(cli("density", "fit", ref, "--out", tmp_path / "k.json", "--d0", "0"), "d0 must be positive and finite")


def test_coefficients_file_with_a_bad_bootstrap_sample(cli, coefficients):
    data = json.loads(coefficients.read_text())
    data["bootstrap"] = [{"loss": data["loss"], "score": {**data["score"], "gamma": 2.0}}]
    coefficients.write_text(json.dumps(data))
    one_line_error(cli("density", "score", "-n", "1e8", "--score", "0.5", "-c", coefficients), "bootstrap.0.score.gamma: must be negative")

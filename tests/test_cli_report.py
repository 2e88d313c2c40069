"""`distlaw report`: any runs table against fitted or given laws, as one HTML file."""


import pytest

from distlaw.fitting.synthetic import synthetic_runs


@pytest.fixture
def runs_csv(tmp_path):
    path = tmp_path / "runs.csv"
    synthetic_runs("busbridge2025", n_supervised=20, n_distilled=30, noise=0.0, seed=1).to_csv(path, index=False)
    return path


def test_report_against_the_generating_preset(cli, runs_csv, tmp_path):
    out = tmp_path / "report.html"
    r = cli("report", runs_csv, "--coefficients", "busbridge2025", "--out", out, "--json")
    assert r.code == 0, r.stderr
    assert r.json()["runs"] == 50 and r.json()["fit"] is None
    html = out.read_text()
    assert html.count("data:image/png;base64,") == 3  # supervised law, students vs teachers, parity
    all_runs = html[html.index("All runs"):]
    assert all_runs.count("<tr") == 51  # header + every run


def test_report_fits_the_laws_when_no_coefficients_are_given(cli, tmp_path):
    runs_csv, out = tmp_path / "small.csv", tmp_path / "report.html"
    synthetic_runs("busbridge2025", n_supervised=10, n_distilled=12, noise=0.0, seed=1).to_csv(runs_csv, index=False)
    r = cli("report", runs_csv, "--fix", "supervised.gamma=0.452", "--out", out, "--json")  # the preset's gamma: fewer starts
    assert r.code == 0, r.stderr
    fit = r.json()["fit"]
    assert fit["supervised"]["metrics"]["fit"]["mape_pct"] < 0.5  # noiseless runs: the law fits them
    assert r.json()["missing"] == {}
    assert out.read_text().count("<th>fitted</th>") == 2  # one coefficient table per law


@pytest.mark.parametrize(("args", "message"), [(("missing.csv",), "no such file"), (("RUNS", "--out", "r.pdf"), ".html")])
def test_bad_input_is_one_line_and_no_file(cli, runs_csv, tmp_path, args, message):
    args = [str(runs_csv) if a == "RUNS" else a for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "r.html")]
    r = cli("report", *args)
    assert r.code == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not list(tmp_path.glob("r.*"))

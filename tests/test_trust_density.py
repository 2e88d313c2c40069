"""`density` and `capacity` hold up on any input (issue 9, items 1, 3e and 5): a status per model,
every row scored, one line and exit 2 for each known class of bad input with nothing written, and
figures that stay readable with many sizes."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from distlaw.capacity import capacity_figure, capacity_gap
from distlaw.density.estimate import BELOW_FAMILY_FACTOR, LIMIT_FRACTION, fit_density, score_models
from distlaw.laws.density import DensityCoefficients, LossLawCoefficients, ScoreLawCoefficients
from tests.test_capacity_gap import planted
from tests.test_density_estimate import SIZES, reference

LOSS = LossLawCoefficients(a=300.0, b=300.0, alpha=0.3, beta=0.3)
WIDE = ScoreLawCoefficients(c=0.6, gamma=-0.5, l=6.0, d=0.25)  # mid-sigmoid from ~1e5 to ~1e8 parameters
FLOOR = 300.0 * 1e12**-0.3  # b D0^-beta at D0 = 1e12


def score_of(n: float, s: ScoreLawCoefficients = WIDE) -> float:
    """By hand: L = a N^-alpha + b D0^-beta, S = c / (1 + exp(-gamma (L - l))) + d."""
    loss = 300.0 * n**-0.3 + FLOOR
    return s.c / (1.0 + math.exp(-s.gamma * (loss - s.l))) + s.d


def size_of(score: float, s: ScoreLawCoefficients = WIDE) -> float:
    """By hand: Lhat = l - ln(c / (S - d) - 1) / gamma, Nhat = ((Lhat - floor) / a)^(-1/alpha)."""
    loss = s.l - math.log(s.c / (score - s.d) - 1.0) / s.gamma
    return ((loss - FLOOR) / 300.0) ** (-1.0 / 0.3)


def law(score=WIDE, smallest=5e6) -> DensityCoefficients:
    return DensityCoefficients(loss=LOSS, score=score, meta={"reference_params": [smallest, 8e8]})


def one_line_error(r, message):
    assert r.code == 2, r.stdout
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


MODELS = pd.DataFrame({
    "model": ["ok", "small", "too high", "too low", "floor", "unreachable"],
    "params": [1e6, 1e6, 1e6, 1e6, 1e6, 1e6],
    "score": [score_of(2e6), score_of(1e5), 0.9, 0.2, WIDE.d + 0.005 * WIDE.c, WIDE.d + 0.97 * WIDE.c],
})
STATUSES = ["ok", "below the reference family", "out of range", "out of range", "at the sigmoid's limit", "unbounded"]


def test_each_model_gets_its_own_status():
    """Unreachable: Lhat = 6 - 2 ln(0.97 / 0.03) = -0.95 is under the floor 0.075; floor: u = 0.005 < 1 %."""
    rows = score_models(MODELS, law())
    assert rows["status"].tolist() == STATUSES
    assert rows.loc[0, "effective_params"] == pytest.approx(size_of(score_of(2e6)), rel=1e-9) == pytest.approx(2e6, rel=1e-9)
    assert rows.loc[1, "effective_params"] == pytest.approx(1e5, rel=1e-9)  # kept: an extrapolation, flagged
    assert rows.loc[1, "density"] == pytest.approx(0.1, rel=1e-9)
    assert rows.loc[2:4, "effective_params"].isna().all() and rows.loc[2:4, "density"].isna().all()
    assert rows.loc[5, "effective_params"] == np.inf


def test_the_limit_band_is_a_share_of_the_range_at_both_ends():
    """With gamma = -3 the top of the range stays above the floor: u = 0.995 is at the limit (Lhat = 0.236),
    u = 0.985 is not; at the bottom u = 0.011 is not."""
    s = ScoreLawCoefficients(c=0.6, gamma=-3.0, l=2.0, d=0.25)
    u = np.array([0.995, 1 - LIMIT_FRACTION - 0.005, LIMIT_FRACTION + 0.001])
    rows = score_models(pd.DataFrame({"model": ["a", "b", "c"], "params": 1e6, "score": s.d + u * s.c}), law(s, smallest=1.0))
    assert rows["status"].tolist() == ["at the sigmoid's limit", "ok", "ok"]
    assert rows.loc[1, "effective_params"] == pytest.approx(size_of(s.d + u[1] * s.c, s), rel=1e-9)


def test_below_the_family_is_relative_to_the_smallest_reference_model():
    scores = pd.DataFrame({"model": ["x"], "params": [1e6], "score": [score_of(1e5)]})
    assert score_models(scores, law(smallest=1e5 * BELOW_FAMILY_FACTOR * 0.99))["status"].tolist() == ["ok"]
    assert score_models(scores, law(smallest=1e5 * BELOW_FAMILY_FACTOR * 1.01))["status"].tolist() == ["below the reference family"]
    no_meta = DensityCoefficients(loss=LOSS, score=WIDE)  # a hand-made file: the check is skipped
    assert score_models(scores, no_meta)["status"].tolist() == ["ok"]


def test_the_fit_records_the_reference_familys_size_range():
    k = fit_density(reference())
    assert k.meta["reference_params"] == [SIZES.min(), SIZES.max()]


def test_one_bad_row_no_longer_aborts_the_table(cli, tmp_path):
    src, coef, dst = tmp_path / "models.csv", tmp_path / "density.json", tmp_path / "out.csv"
    MODELS.to_csv(src, index=False)
    law().save(coef)
    r = cli("density", "score", src, "-c", coef, "--json")
    assert r.code == 0, r.stderr
    rows = r.json()["models"]
    assert [row["status"] for row in rows] == STATUSES
    assert [row["effective_params"] is None for row in rows] == [False, False, True, True, True, True]
    table = cli("density", "score", src, "-c", coef, "--out", dst)
    assert table.code == 0 and "nan" not in table.stdout.lower() and "unbounded" in table.stdout
    assert pd.read_csv(dst)["status"].tolist() == STATUSES


def test_a_single_model_at_the_limit_is_answered_and_one_out_of_range_is_refused(cli, tmp_path):
    coef = tmp_path / "density.json"
    law().save(coef)
    r = cli("density", "score", "-n", "1e6", "--score", WIDE.d + 0.001, "-c", coef, "--json")
    assert r.code == 0 and r.json()["models"][0]["status"] == "at the sigmoid's limit"
    one_line_error(cli("density", "score", "-n", "1e6", "--score", "0.9", "-c", coef), "out of range")


# --- bad input: one line, exit 2, nothing written -----------------------------------------------------

@pytest.fixture
def files(tmp_path):
    ref, coef, models = tmp_path / "reference.csv", tmp_path / "density.json", tmp_path / "models.csv"
    reference().to_csv(ref, index=False)
    law().save(coef)
    MODELS.to_csv(models, index=False)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "bad.json").write_text("{not json")
    return tmp_path


@pytest.mark.parametrize(("args", "message"), [
    (["density", "fit", "reference.csv", "--out", "density.txt"], "must end in .json"),
    (["density", "fit", "reference.csv", "--out", "nowhere/density.json"], "folder nowhere does not exist"),
    (["density", "fit", "reference.csv", "--out", "folder.json"], "is a folder"),
    (["density", "fit", "missing.csv", "--out", "new.json"], "no such file"),
    (["density", "score", "models.csv", "-c", "density.json", "--out", "nowhere/out.csv"], "folder nowhere does not exist"),
    (["density", "score", "models.csv", "-c", "density.json", "--out", "out.txt"], "must end in .csv"),
    (["density", "score", "models.csv", "-c", "bad.json"], "bad.json: top level: Invalid JSON"),
    (["density", "score", "models.csv", "-c", "folder"], "cannot read"),
    (["density", "score", "models.csv", "-c", "density.json", "--level", "0"], "--level must be between 0 and 1"),
    (["density", "trend", "folder"], "folder"),
    (["capacity", "fit", "reference.csv", "--out", "law.txt"], "must end in .json"),
    (["capacity", "fit", "reference.csv", "--out", "nowhere/law.json"], "folder nowhere does not exist"),
    (["capacity", "predict", "-n", "1e9", "-c", "bad.json"], "Invalid JSON"),
    (["capacity", "predict", "-n", "1e9", "-c", "folder"], "cannot read"),
])
def test_bad_paths_are_one_line_and_write_nothing(cli, files, monkeypatch, args, message):
    monkeypatch.chdir(files)
    before = sorted(p.name for p in files.iterdir())
    one_line_error(cli(*args), message)
    assert sorted(p.name for p in files.iterdir()) == before
    assert not any((files / "folder").iterdir()) and not any((files / "folder.json").iterdir())


def test_constant_scores_are_refused_in_one_line(cli, tmp_path):
    ref = tmp_path / "reference.csv"
    reference().assign(score=0.5).to_csv(ref, index=False)
    one_line_error(cli("density", "fit", ref, "--out", tmp_path / "density.json"), "no falling score with rising loss")
    assert not (tmp_path / "density.json").exists()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from distlaw.compute import ModelShape
    from distlaw.lab.model import build_model
    from distlaw.lab.tokenizer import byte_tokenizer, save_tokenizer

    directory = tmp_path_factory.mktemp("ckpt") / "tiny"
    build_model(ModelShape(n_layers=1, d_model=16, n_heads=2, d_ff=32, vocab_size=256, n_ctx=32), seed=0).save_pretrained(directory)
    save_tokenizer(byte_tokenizer(), directory)
    return directory


@pytest.fixture
def task(tmp_path):
    path = tmp_path / "task.jsonl"
    path.write_text(json.dumps({"prompt": "To be", "answer": " or not"}) + "\n")
    return path


def test_eval_on_a_device_this_machine_lacks_is_one_line(cli, checkpoint, task):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    one_line_error(cli("density", "eval", task, checkpoint, "--device", "cuda"), "no CUDA device")
    one_line_error(cli("density", "eval", task, checkpoint, "--device", "gpu0"), "expected cpu, cuda, cuda:N or mps")


@pytest.mark.parametrize(("extra", "message"), [
    (["--out", "rows.txt"], "must end in .csv"),
    (["--out", "nowhere/rows.csv"], "folder nowhere does not exist"),
    (["--tokens", "-3"], "--tokens must be a positive number"),
])
def test_eval_options_are_checked_before_any_model_loads(cli, checkpoint, task, monkeypatch, extra, message):
    monkeypatch.chdir(task.parent)
    one_line_error(cli("density", "eval", task, checkpoint, *extra), message)


def test_eval_inputs_name_what_is_wrong(cli, checkpoint, task, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(cli("density", "eval", task, checkpoint, empty), f"checkpoint {empty}: folder holds no model")
    one_line_error(cli("density", "eval", tmp_path, checkpoint), "cannot read")


# --- readable figures ---------------------------------------------------------------------------------

def test_capacity_figure_uses_a_colour_bar_for_many_students():
    many = planted(students=list(np.geomspace(1e6, 1e8, 12)))
    fig = capacity_figure(many, capacity_gap(many))
    left = fig.axes[0]
    assert left.get_legend() is None and len(fig.axes) == 3  # two panels and the colour bar
    assert "fitted" in left.get_title() and "fitted vs preset" in fig.axes[1].get_title()
    few = planted(students=[1e6, 1e7, 1e8])
    fig = capacity_figure(few, capacity_gap(few))
    assert len(fig.axes[0].get_legend().get_texts()) == 3 and len(fig.axes) == 2


def test_density_fit_figure_uses_a_colour_bar_for_many_token_budgets(monkeypatch, tmp_path):
    import distlaw.density.plots as plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig))
    ref = reference()  # 36 rows
    plots.plot_fit(ref.assign(tokens=np.tile(np.geomspace(1e8, 1e11, 12), 3)), law(), tmp_path / "fit.png")
    plots.plot_fit(ref.assign(tokens=np.tile(np.geomspace(1e8, 1e11, 6), 6)), law(), tmp_path / "fit.png")
    assert figures[0].axes[0].get_legend() is None and len(figures[0].axes) == 3
    assert "fitted" in figures[0].axes[0].get_title() and "fitted" in figures[0].axes[1].get_title()
    assert len(figures[1].axes[0].get_legend().get_texts()) == 6

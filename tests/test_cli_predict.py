"""`distlaw predict`: single queries, runs tables, and one-line errors with exit code 2."""

import pandas as pd
import pytest


def test_predict_json_matches_reference(cli):
    r = cli("predict", "--params", "5.46e8", "--tokens", "1.092e10", "--teacher-loss", "2.2", "--json")
    assert r.code == 0, r.stderr
    out = r.json()
    assert out["student_loss"] == pytest.approx(2.4119, abs=1e-4)
    assert out["supervised_loss"] > out["student_loss"]


def test_predict_teacher_from_its_size(cli):
    r = cli("predict", "-n", "1.821e9", "-d", "3.642e10", "--teacher-params", "7.747e9", "--teacher-tokens", "512e9", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["teacher_loss"] == pytest.approx(1.9329, abs=1e-4)


def test_predict_runs_table(cli, tmp_path):
    runs = pd.DataFrame(
        {
            "kind": ["supervised", "distilled"],
            "params": [1.821e9, 5.46e8],
            "tokens": [36.4e9, 1.092e10],
            "loss": [2.25, 2.41],
            "teacher_loss": [None, 2.5],
            "note": ["a", "b"],
        }
    )
    src, dst = tmp_path / "runs.csv", tmp_path / "pred.csv"
    runs.to_csv(src, index=False)
    r = cli("predict", src, "--out", dst)
    assert r.code == 0, r.stderr
    pred = pd.read_csv(dst)
    assert list(pred["note"]) == ["a", "b"]
    assert pred["predicted_loss"].tolist() == pytest.approx([2.2508, 2.5325], abs=1e-4)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"kind": ["supervised"], "params": [1e9], "loss": [2.0]}, "missing column"),
        ({"kind": ["supervised"], "params": [float("nan")], "tokens": [1e9], "loss": [2.0]}, "row 2 column 'params'"),
        ({"kind": ["supervised"], "params": [1e9], "tokens": [float("inf")], "loss": [2.0]}, "column 'tokens'"),
        ({"kind": ["supervised"], "params": [0], "tokens": [1e9], "loss": [2.0]}, "column 'params'"),
        ({"kind": ["teacher"], "params": [1e9], "tokens": [1e9], "loss": [2.0]}, "column 'kind'"),
        ({"kind": ["distilled"], "params": [1e9], "tokens": [1e9], "loss": [2.0]}, "teacher_loss"),
    ],
)
def test_bad_runs_table_is_exit_2_without_output(cli, tmp_path, frame, message):
    src, dst = tmp_path / "runs.csv", tmp_path / "pred.csv"
    pd.DataFrame(frame).to_csv(src, index=False)
    r = cli("predict", src, "--out", dst)
    assert r.code == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not dst.exists() and list(tmp_path.iterdir()) == [src]


@pytest.mark.parametrize(
    "args",
    [
        ("predict", "--params", "-5", "--tokens", "1e9"),
        ("predict", "--params", "1e9", "--tokens", "1e9", "-c", "nope"),
        ("predict", "--params", "1e9", "--tokens", "1e9", "--teacher-params", "1e9"),
        ("predict", "--params", "abc", "--tokens", "1e9"),
    ],
)
def test_bad_arguments_exit_2(cli, args):
    r = cli(*args)
    assert r.code == 2
    assert "Traceback" not in r.stderr

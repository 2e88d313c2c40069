"""``distlaw sweep plan|status`` and ``distlaw runs list|export``: output, --json, bad input (no training here)."""

from __future__ import annotations

from pathlib import Path

import pytest

MICRO = Path(__file__).resolve().parents[1] / "configs" / "micro.toml"
GOOD = """
name = "tiny"
[model]
aspect_ratio = 8
head_dim = 8
[data]
corpus = "{corpus}"
[[protocol]]
type = "{protocol}"
teachers = [{teacher}]
students = [6256]
student_ratios = [20]
"""


def write_config(tmp_path: Path, corpus: str = "shakespeare", protocol: str = "fixedm-fixedm", teacher: str = "20904") -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(GOOD.format(corpus=corpus, protocol=protocol, teacher=teacher))
    return path


def test_plan_then_status_and_list(cli, tmp_path):
    store = tmp_path / "RUNS.db"
    result = cli("sweep", "plan", write_config(tmp_path), "--store", store, "--json")
    assert result.code == 0, result.stderr
    assert result.json()["runs"] == 3 and result.json()["new"] == 3  # teacher, student, baseline
    again = cli("sweep", "plan", write_config(tmp_path), "--store", store, "--json")
    assert again.json()["new"] == 0
    status = cli("sweep", "status", write_config(tmp_path), "--store", store, "--json").json()
    assert status["counts"] == {"planned": 3, "running": 0, "done": 0, "failed": 0}
    assert [r["name"] for r in status["runs"]] == ["sup-N20904-D418080", "kd-N6256-D125120-from-N20904-D418080", "sup-N6256-D125120"]
    listed = cli("runs", "list", "--store", store, "--status", "planned", "--json").json()
    assert len(listed) == 3 and listed[1]["teacher"] == "sup-N20904-D418080"
    table = cli("sweep", "status", write_config(tmp_path), "--store", store)
    assert table.code == 0 and "3 planned" in table.stdout


def test_plan_micro_table(cli, tmp_path):
    result = cli("sweep", "plan", MICRO, "--store", tmp_path / "m.db")
    assert result.code == 0 and "fixedm-isoflop" in result.stdout and "fixedm-fixedm" in result.stdout


def _assert_clean_failure(result, store: Path, *words: str) -> None:
    assert result.code == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr
    assert not store.exists()  # validated before the store is touched: no partial rows


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"corpus": "/no/such/corpus.txt"}, ["corpus", "no such file"]),
        ({"teacher": "1e13"}, ["out of range"]),
        ({"teacher": "12"}, ["size 12 is out of range"]),
        ({"protocol": "fixedm-everything"}, ["unknown protocol type 'fixedm-everything'"]),
    ],
)
def test_bad_input_exits_2_without_rows(cli, tmp_path, kwargs, words):
    store = tmp_path / "RUNS.db"
    for command in ("plan", "run"):
        _assert_clean_failure(cli("sweep", command, write_config(tmp_path, **kwargs), "--store", store), store, *words)


def test_malformed_toml(cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[[protocol]\n")
    store = tmp_path / "RUNS.db"
    _assert_clean_failure(cli("sweep", "plan", bad, "--store", store), store, "malformed TOML", str(bad))


def test_store_commands_need_an_existing_store(cli, tmp_path):
    store = tmp_path / "none.db"
    for args in (("runs", "list"), ("runs", "export", tmp_path / "o.csv"), ("sweep", "status", MICRO)):
        result = cli(*args, "--store", store)
        _assert_clean_failure(result, store, "no such run store")


def test_export_without_finished_runs(cli, tmp_path):
    store = tmp_path / "RUNS.db"
    cli("sweep", "plan", write_config(tmp_path), "--store", store)
    out = tmp_path / "out.csv"
    result = cli("runs", "export", "--store", store, out)
    assert result.code == 2 and "no finished runs" in result.stderr and not out.exists()


def test_help_reads_like_a_manual(cli):
    for group, commands in (("sweep", ("plan", "run", "status")), ("runs", ("list", "export"))):
        for command in commands:
            result = cli(group, command, "--help")
            assert result.code == 0 and "Example" in result.stdout and "--json" in result.stdout


def test_export_writes_what_fit_reads(cli, tmp_path):
    from distlaw.runs import read_runs
    from distlaw.store import RunStore

    store = tmp_path / "RUNS.db"
    cli("sweep", "plan", write_config(tmp_path), "--store", store)
    with RunStore(store) as s:
        for i, record in enumerate(s.records()):
            s.claim(record.name, 1)
            teacher = {"teacher_loss": 3.0, "teacher_params": 20904} if record.teacher else {"teacher_loss": None, "teacher_params": None}
            s.finish(record.name, {"tokens": record.planned_tokens, "loss": 3.0 + i, "flops": 1.0, "wall_time_s": 2.0, **teacher})
    out = tmp_path / "runs.parquet"
    result = cli("runs", "export", "--store", store, out, "--json")
    assert result.code == 0 and result.json() == {"rows": 3, "out": str(out)}
    table = read_runs(out)
    assert list(table["kind"]) == ["supervised", "distilled", "supervised"]
    assert table.loc[1, "teacher_tokens"] == table.loc[0, "tokens"] == 418080
    listed = cli("runs", "list", "--store", store)
    assert listed.code == 0 and "3 runs in" in listed.stdout and "done" in listed.stdout


def test_replanning_a_changed_config_into_a_store_writes_nothing(cli, tmp_path):
    store = tmp_path / "RUNS.db"
    config = write_config(tmp_path)
    assert cli("sweep", "plan", config, "--store", store).code == 0
    config.write_text(config.read_text() + "[optim]\nlr = 1e-3\n")  # same run names, other specs
    result = cli("sweep", "plan", config, "--store", store)
    assert result.code == 2 and "clashes" in result.stderr and result.stderr.count("\n") == 1
    assert cli("sweep", "status", config, "--store", store, "--json").json()["counts"]["planned"] == 3

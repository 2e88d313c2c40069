"""``distlaw sweep plan|status`` and ``distlaw runs list|export``: output, --json, bad input (no training here)."""

from __future__ import annotations

import os
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
    assert "[executor.slurm.teacher]" in cli("sweep", "run", "--help").stdout  # TOML tables are not eaten as markup


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


def _dump(store: Path) -> str:
    import sqlite3

    with sqlite3.connect(store) as db:
        return "\n".join(db.iterdump())


def test_run_folders_in_runs_dir_are_found_later_and_another_is_refused(cli, tmp_path, monkeypatch):
    from test_sweep import FakeTrainer

    from distlaw.lab import train

    monkeypatch.setattr(train, "train_run", FakeTrainer())
    store, shared, config = tmp_path / "RUNS.db", tmp_path / "shared", write_config(tmp_path)
    result = cli("sweep", "run", config, "--store", store, "--runs-dir", shared, "--workers", "1", "--json")
    assert result.code == 0 and len(result.json()["trained"]) == 3, result.stderr
    status = cli("sweep", "status", config, "--store", store, "--json").json()
    assert status["runs_dir"] == str(shared.resolve()) and not store.with_suffix(".runs").exists()
    assert "(run folders in" in cli("sweep", "status", config, "--store", store).stdout
    before = _dump(store)
    refused = cli("sweep", "run", config, "--store", store, "--runs-dir", tmp_path / "other", "--workers", "1")
    assert refused.code == 2 and refused.stderr.count("\n") == 1 and "recorded at its first run" in refused.stderr, refused.stderr
    again = cli("sweep", "run", config, "--store", store, "--workers", "1", "--json")
    assert again.code == 0 and again.json()["skipped"] == 3 and _dump(store) == before


def test_status_asks_slurm_for_the_state_now_and_writes_nothing(cli, tmp_path, monkeypatch):
    from distlaw.cli.common import console
    from distlaw.store import RunStore

    store, config, bin_dir = tmp_path / "RUNS.db", write_config(tmp_path), tmp_path / "bin"
    cli("sweep", "plan", config, "--store", store)
    with RunStore(store) as s:
        teacher, student, baseline = (r.name for r in s.records())
        for name, job_id, state in ((teacher, "4242", "PENDING"), (student, "4243", "RUNNING"), (baseline, "4244", "RUNNING")):
            s.claim(name, 2147483646)  # a coordinator that died
            s.record_job(name, "slurm", job_id, state, f"/logs/{job_id}_0_log.err")
        s.update_job(baseline, "COMPLETED", ended=True)  # ended: Slurm is not asked about it
    before = _dump(store)
    bin_dir.mkdir()
    sacct = bin_dir / "sacct"  # answers as Slurm's sacct -X -n -P -o JobID,State does, and notes how it was asked
    sacct.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/asked\nprintf "4242|RUNNING\\n4243|CANCELLED by 0\\n"\n')
    sacct.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    result = cli("sweep", "status", config, "--store", store, "--json")
    assert result.code == 0 and not result.stderr and result.json()["warnings"] == []
    rows = {row["name"]: row for row in result.json()["runs"]}
    assert [(rows[n]["job_state"], rows[n]["live_state"]) for n in (teacher, student, baseline)] == [
        ("PENDING", "RUNNING"), ("RUNNING", "CANCELLED"), ("COMPLETED", None)]
    assert (tmp_path / "asked").read_text().split() == ["-X", "-n", "-P", "-o", "JobID,State", "-j", "4242,4243"]  # one call
    monkeypatch.setattr(console, "_width", 200)  # the jobs table on one line per job
    table = cli("sweep", "status", config, "--store", store).stdout
    assert "RUNNING (store: PENDING)" in table and "CANCELLED (store: RUNNING)" in table and "(store: COMPLETED)" not in table
    sacct.write_text('#!/bin/sh\necho "sacct: error: Problem talking to the database: Connection refused" >&2\nexit 1\n')
    for path, reason in ((f"{bin_dir}:{os.environ['PATH']}", "sacct failed: sacct: error: Problem talking to the database"),
                         (str(tmp_path / "nothing"), "sacct is not on PATH")):
        monkeypatch.setenv("PATH", path)
        degraded = cli("sweep", "status", config, "--store", store, "--json")
        assert degraded.code == 0 and degraded.stderr.count("\n") == 1 and reason in degraded.stderr, degraded.stderr
        assert degraded.json()["warnings"] == [degraded.stderr.removeprefix("warning: ").strip()]
        assert [row["live_state"] for row in degraded.json()["runs"]] == [None] * 3
        assert [row["job_state"] for row in degraded.json()["runs"]] == ["PENDING", "RUNNING", "COMPLETED"]
    assert _dump(store) == before

"""The SQLite run store: planning, claiming, results, export to the runs table."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from distlaw.compute import ModelShape
from distlaw.errors import DistlawError
from distlaw.lab.config import RunSpec
from distlaw.runs import validate_runs
from distlaw.store import PlannedRun, RunStore, runs_table

TEACHER_SHAPE = ModelShape(n_layers=3, d_model=24, n_heads=3, d_ff=64, vocab_size=256, n_ctx=128)
STUDENT_SHAPE = ModelShape(n_layers=2, d_model=16, n_heads=2, d_ff=43, vocab_size=256, n_ctx=128)
TEACHER = RunSpec(name="teacher", kind="supervised", shape=TEACHER_SHAPE, tokens=400_000)
STUDENT = RunSpec(name="student", kind="distilled", shape=STUDENT_SHAPE, tokens=100_000, teacher="teacher")
BASELINE = RunSpec(name="baseline", kind="supervised", shape=STUDENT_SHAPE, tokens=100_000)


def result(loss: float, tokens: int, teacher_loss: float | None = None, teacher_params: int | None = None) -> dict:
    return {
        "non_embedding_params": 1, "total_params": 2, "tokens": tokens, "flops": 1e12, "teacher_inference_flops": 0.0,
        "loss": loss, "teacher_loss": teacher_loss, "teacher_params": teacher_params, "wall_time_s": 1.5,
        "steps": 10, "checkpoint": "/somewhere",
    }  # fmt: skip


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "RUNS.db") as s:
        s.add_plan("sw", [PlannedRun(TEACHER, "p", "teacher"), PlannedRun(STUDENT, "p", "student"), PlannedRun(BASELINE, "p", "baseline")])
        yield s


def test_plan_is_idempotent_and_records_memberships(store):
    assert store.add_plan("sw", [PlannedRun(TEACHER, "p", "teacher"), PlannedRun(TEACHER, "q", "teacher")]) == 0
    assert [r.name for r in store.records()] == ["teacher", "student", "baseline"]
    assert store.counts("sw") == {"planned": 3, "running": 0, "done": 0, "failed": 0}
    assert store.memberships("sw")["teacher"] == [("p", "teacher"), ("q", "teacher")]
    assert store.get("student").spec == STUDENT
    assert store.runs_dir == store.path.with_suffix(".runs") and store.runs_dir.is_absolute()


def test_clashing_plan_writes_nothing(store):
    other = RunSpec(name="new", kind="supervised", shape=STUDENT_SHAPE, tokens=5)
    clash = TEACHER.model_copy(update={"tokens": 1})  # same name, different spec
    with pytest.raises(DistlawError, match="clashes"):
        store.add_plan("sw", [PlannedRun(other, "p", "teacher"), PlannedRun(clash, "p", "teacher")])
    assert store.get("new") is None and len(store.records()) == 3


def test_claim_finish_fail(store):
    pid = os.getpid()
    assert store.claim("teacher", pid)
    assert store.claim("teacher", pid)  # the holder may re-claim (resume in the same process)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)
    assert store.claim("baseline", pid)
    store._db.execute("UPDATE runs SET pid = ? WHERE name = 'baseline'", (os.getppid(),))  # a live other process
    assert not store.claim("baseline", pid)
    assert not store.get("baseline").interrupted
    store._db.execute("UPDATE runs SET pid = ? WHERE name = 'baseline'", (dead,))  # killed: stale row
    assert store.get("baseline").interrupted
    assert store.claim("baseline", pid)
    store.finish("teacher", result(2.5, 401_408))
    assert not store.claim("teacher", pid)  # done runs are never retrained
    store.fail("baseline", "RuntimeError: boom\nTraceback ...")
    record = store.get("baseline")
    assert (record.status, record.error, record.attempts) == ("failed", "RuntimeError: boom", 2)
    assert not store.claim("baseline", pid)
    assert store.claim("baseline", pid, retry_failed=True)
    assert store.get("teacher").tokens == 401_408 and store.get("teacher").loss == 2.5


def test_runs_table_is_what_fit_reads(store, tmp_path):
    pid = os.getpid()
    for name in ("teacher", "student", "baseline"):
        store.claim(name, pid)
    store.finish("teacher", result(2.5, 401_408))
    with pytest.raises(DistlawError, match="no finished runs"):
        runs_table(store, "nothing-here")
    store.finish("student", result(2.7, 98_304, teacher_loss=2.51, teacher_params=20904))
    table = runs_table(store, "sw")
    assert list(table["name"]) == ["teacher", "student"]  # unfinished baseline left out
    student = table.set_index("name").loc["student"]
    assert (student["kind"], student["params"], student["tokens"], student["loss"]) == ("distilled", STUDENT_SHAPE.non_embedding_params, 98_304, 2.7)
    assert (student["teacher_params"], student["teacher_tokens"], student["teacher_loss"]) == (20904, 401_408, 2.51)
    assert pd.isna(table.set_index("name").loc["teacher", "teacher_loss"])
    assert student["protocols"] == "p"
    path = tmp_path / "out.csv"
    table.to_csv(path, index=False)
    validate_runs(pd.read_csv(path))


def test_store_survives_reopen_and_rejects_non_stores(tmp_path, store):
    store.close()
    with RunStore(store.path, create=False) as again:
        assert len(again.records()) == 3
    with pytest.raises(DistlawError, match="no such run store"):
        RunStore(tmp_path / "missing.db", create=False)
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite at all, " * 100)
    with pytest.raises(DistlawError, match="not a run store"):
        RunStore(junk)
    with pytest.raises(DistlawError, match="SQLite"):
        RunStore(tmp_path / "runs.csv")


def test_wal_mode(store):
    assert sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="zombie detection reads /proc (Linux)")
def test_a_zombie_holder_counts_as_dead(store):
    """A killed worker nobody has reaped yet still answers kill(pid, 0); its run must be taken over."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    store.claim("teacher", child.pid)
    assert store.get("teacher").interrupted
    assert store.claim("teacher", os.getpid())
    child.wait()


def test_a_store_from_before_the_jobs_table_opens_and_gains_it(tmp_path):
    from distlaw.store import SCHEMA

    path = tmp_path / "old.db"
    old_schema = SCHEMA.split("CREATE TABLE IF NOT EXISTS jobs")[0]
    with sqlite3.connect(path) as db:
        db.executescript(old_schema)
    with RunStore(path) as s:
        s.add_plan("sw", [PlannedRun(TEACHER, "p", "teacher")])
    with sqlite3.connect(path) as db:  # as an older distlaw left it: no jobs table at all
        db.execute("DROP TABLE jobs")
    with RunStore(path) as s:
        assert [r.name for r in s.records()] == ["teacher"] and s.jobs() == {}
        s.record_job("teacher", "slurm", "17", "PENDING", "/logs/17_0_log.err")
        s.update_job("teacher", "RUNNING", started=True)
        job = s.jobs()["teacher"]
        assert (job.job_id, job.state, job.log, job.ended_at) == ("17", "RUNNING", "/logs/17_0_log.err", None) and job.started_at
        s.update_job("teacher", "COMPLETED", started=True, ended=True)
        assert s.jobs()["teacher"].started_at == job.started_at and s.jobs()["teacher"].ended_at


def test_adopt_takes_over_a_running_run_of_a_dead_coordinator_without_a_new_attempt(store):
    assert not store.adopt("teacher", os.getpid())  # planned: nothing to adopt
    store.claim("teacher", 2147483646)  # a pid that does not exist
    assert store.adopt("teacher", os.getpid()) and store.get("teacher").attempts == 1
    assert not store.adopt("teacher", 2147483645)  # now held by a live process (this one)


def test_the_run_folders_are_recorded_at_the_first_run_and_another_is_refused(store, tmp_path):
    from distlaw.store import resolve_runs_dir

    shared = tmp_path / "shared" / "runs"
    assert resolve_runs_dir(store.path, shared) == shared.resolve()  # only planned so far: any folder may be chosen
    assert store.pin_runs_dir(shared) == shared.resolve() == store.runs_dir
    assert store.run_dir("teacher") == shared.resolve() / "teacher"
    assert store.pin_runs_dir(None) == store.pin_runs_dir(shared) == shared.resolve()  # later: without it, or the same again
    for other in (tmp_path / "elsewhere", store.path.with_suffix(".runs")):
        with pytest.raises(DistlawError, match=r"--runs-dir .*: the run folders of .* are in .*shared/runs \(recorded at its first run\)"):
            store.pin_runs_dir(other)
        with pytest.raises(DistlawError, match="recorded at its first run"):
            resolve_runs_dir(store.path, other)
    store.close()
    with RunStore(store.path, create=False) as again:
        assert again.runs_dir == shared.resolve() and resolve_runs_dir(store.path) == shared.resolve()
    new = tmp_path / "sub" / "new.db"
    assert resolve_runs_dir(new, "rel") == Path("rel").resolve() and resolve_runs_dir(new) == new.resolve().with_suffix(".runs")
    assert not new.exists() and not new.parent.exists()  # resolving writes nothing


def test_a_store_whose_runs_started_before_any_folder_was_recorded_keeps_them_beside_it(store, tmp_path):
    store._db.execute("DELETE FROM settings")  # as a store from before --runs-dir left it
    store.claim("teacher", os.getpid())
    with pytest.raises(DistlawError, match=r"runs of .* already started in .*RUNS\.runs"):
        store.pin_runs_dir(tmp_path / "shared")
    assert store.pin_runs_dir(store.path.with_suffix(".runs")) == store.path.with_suffix(".runs") == store.runs_dir

"""Sweeps through the real single-node Slurm (``--executor slurm``) against the local executor: the same
runs table, failures recorded with their Slurm log, bad requests refused before anything is submitted,
a SIGKILLed coordinator re-attaching to its jobs (and `sweep status` asking Slurm meanwhile), cancel,
requeue, jobs signalled at their time limit or preempted, run folders away from the store.

Skipped without a running cluster (scripts/slurm-local.sh); in CI they fail instead."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_SWEEP, require_service
from test_cli_sweep import _dump
from test_slurm_cluster import HINT, _node_up

from distlaw.cli.common import console
from distlaw.runs import read_runs
from distlaw.store import RunStore

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(900)]

MICRO = Path(__file__).resolve().parents[1] / "configs" / "micro.toml"
TINY = TINY_SWEEP
SHARED = """
name = "shared"
checkpoint_every = 1000
eval_tokens = 8192
[data]
seq_len = 64
[optim]
batch_size = 16
[distill]
cache_k = 64
[model]
aspect_ratio = 8
head_dim = 8
[[protocol]]
type = "fixedm-fixedm"
teachers = [6256]
teacher_ratio = 10
students = [784]
student_ratios = [80]
[[protocol]]
type = "prune-distill"
teachers = [6256]
teacher_ratio = 10
students = [2500]
student_ratio = 10
calibration_tokens = 4096
"""  # a teacher cache and a pruned student, each one Slurm job of role cache or prune
EXACT = ["name", "kind", "params", "tokens", "teacher", "teacher_params", "teacher_tokens", "protocols", "pruned_to", "flops"]


@pytest.fixture
def slurm(tmp_path, monkeypatch) -> None:
    """A running cluster; the test runs in its tmp_path, so that sacct tells its jobs by their working folder."""
    require_service(_node_up(), HINT)
    monkeypatch.chdir(tmp_path)


def _config(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _table(cli, store: Path, out: Path) -> pd.DataFrame:
    result = cli("runs", "export", "--store", store, out)
    assert result.code == 0, result.stderr
    return read_runs(out).sort_values("name").reset_index(drop=True)


def _assert_same_table(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(actual["name"]) == list(expected["name"]) and actual["name"].is_unique
    pd.testing.assert_frame_equal(actual[EXACT], expected[EXACT])
    for column in ("loss", "teacher_loss"):
        np.testing.assert_allclose(actual[column], expected[column], rtol=1e-6, equal_nan=True)


def _now() -> str:
    return datetime.now().strftime("%Y-%m-%dT%H:%M:%S")


def _history(since: str, names: set[str]) -> list[dict[str, str]]:
    """Slurm's accounting of the distlaw jobs of ``names`` submitted from this folder (the coordinators run
    in the test's tmp_path: other sessions may run the same sweeps) since ``since``, requeued attempts included (-D)."""
    out = subprocess.run(["sacct", "-X", "-D", "-n", "-P", "-S", since, "-o", "JobID,JobName,State,Submit,Start,WorkDir"],
                         capture_output=True, text=True, check=True).stdout
    rows = [dict(zip(("id", "name", "state", "submit", "start", "workdir"), line.split("|"))) for line in out.splitlines() if line]
    return [row for row in rows if row["name"].removeprefix("distlaw-") in names and Path(row["workdir"]) == Path.cwd()]


def _final_history(since: str, names: set[str]) -> list[dict[str, str]]:
    """``_history`` once every job has left RUNNING (a result is in before Slurm has finished the job)."""
    def settled() -> list[dict[str, str]]:
        rows = _history(since, names)
        return rows if rows and all(row["state"] not in ("PENDING", "RUNNING", "COMPLETING") for row in rows) else []

    return _wait_for("finished in accounting", settled, timeout=60)


def _queued_here() -> list[str]:
    """Names of the jobs in the queue submitted from this folder."""
    out = subprocess.run(["squeue", "-h", "-o", "%j|%Z"], capture_output=True, text=True, check=True).stdout
    return [name for name, folder in (line.split("|") for line in out.splitlines()) if Path(folder) == Path.cwd()]


def _status(cli, config: Path, store: Path) -> dict[str, dict]:
    result = cli("sweep", "status", config, "--store", store, "--json")
    assert result.code == 0, result.stderr
    return {row["name"]: row for row in result.json()["runs"]}


def _coordinator(config: Path, store: Path, log: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "distlaw.cli.app", "sweep", "run", str(config), "--store", str(store), "--executor", "slurm", "--json", *extra]
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, cwd=Path.cwd())


def _wait_for(what: str, check, process: subprocess.Popen | None = None, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            assert process.poll() is None, f"the sweep ended before {what}"
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not {what} within {timeout:.0f} s")


def _mid_sweep(store: Path) -> list[tuple[str, str]]:
    """(run, Slurm job id) of jobs running with a resume checkpoint on disk, once a run is done."""
    return _mid_run(store, lambda name, done: done)


def _mid_run(store: Path, which) -> list[tuple[str, str]]:
    """(run, Slurm job id) of the jobs running with a resume checkpoint on disk whose run ``which(name, any run done)``."""
    if not store.exists():
        return []
    with RunStore(store, create=False) as s:
        done = any(r.status == "done" for r in s.records())
        jobs = s.jobs()
        return [(name, job.job_id) for name, job in jobs.items()
                if which(name, done) and job.state == "RUNNING" and (s.run_dir(name) / "resume.pt").is_file()]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """The tiny sweep through the local executor: the table every Slurm variant must reproduce."""
    folder = tmp_path_factory.mktemp("tiny-local")
    config, store, out = _config(folder, TINY), folder / "local.db", folder / "local.csv"
    for args in (["sweep", "run", config, "--store", store, "-q"], ["runs", "export", "--store", store, out]):
        subprocess.run([sys.executable, "-m", "distlaw.cli.app", *map(str, args)], check=True, capture_output=True)
    return config, read_runs(out).sort_values("name").reset_index(drop=True)


def test_micro_sweep_through_slurm_gives_the_local_table(slurm, cli, tmp_path):
    started = time.perf_counter()
    local = cli("sweep", "run", MICRO, "--store", tmp_path / "local.db", "--json")
    local_s = time.perf_counter() - started
    assert local.code == 0, local.stderr
    since, started = _now(), time.perf_counter()
    result = cli("sweep", "run", MICRO, "--store", tmp_path / "slurm.db", "--executor", "slurm", "--json")
    slurm_s = time.perf_counter() - started
    assert result.code == 0, result.stderr
    assert result.json()["counts"]["done"] == local.json()["counts"]["done"] and not result.json()["failed"]
    expected, actual = _table(cli, tmp_path / "local.db", tmp_path / "local.csv"), _table(cli, tmp_path / "slurm.db", tmp_path / "slurm.csv")
    _assert_same_table(actual, expected)
    history = _final_history(since, set(actual["name"]))
    assert sorted(row["name"] for row in history) == sorted("distlaw-" + n for n in actual["name"])  # one job per run
    assert {row["state"] for row in history} == {"COMPLETED"}
    status = _status(cli, MICRO, tmp_path / "slurm.db")
    assert {row["job_id"] for row in status.values()} == {row["id"] for row in history}
    assert all(Path(row["log"]).is_file() and row["job_state"] == "COMPLETED" for row in status.values())
    print(f"\nmicro sweep: local {local_s:.1f} s, slurm {slurm_s:.1f} s, {len(actual)} runs")


def test_shared_builds_run_as_their_own_slurm_jobs(slurm, cli, tmp_path):
    config = _config(tmp_path, SHARED)
    local = cli("sweep", "run", config, "--store", tmp_path / "local.db", "--json")
    assert local.code == 0, local.stderr
    result = cli("sweep", "run", config, "--store", tmp_path / "slurm.db", "--executor", "slurm", "--json")
    assert result.code == 0, result.stderr
    assert sorted(result.json()["built"]) == sorted(local.json()["built"]) and len(result.json()["built"]) == 2
    _assert_same_table(_table(cli, tmp_path / "slurm.db", tmp_path / "s.csv"), _table(cli, tmp_path / "local.db", tmp_path / "l.csv"))
    with RunStore(tmp_path / "slurm.db") as s:
        jobs = s.jobs()
        assert {name.split(":")[0] for name in jobs if ":" in name} == {"cache", "prune"}
        assert all(job.job_id and job.state == "COMPLETED" for job in jobs.values())
        assert len(s.caches()) == 1  # recorded by the coordinator from the job's manifest


@pytest.mark.parametrize("executor", ["local", "slurm"])
def test_a_failing_run_is_failed_with_its_log_and_its_dependants_blocked(slurm, cli, tmp_path, executor):
    config = _config(tmp_path, TINY)
    store = tmp_path / "RUNS.db"
    assert cli("sweep", "plan", config, "--store", store).code == 0
    teacher = "sup-N6256-D125120"
    with RunStore(store) as s:  # the teacher's folder holds a corrupted resume checkpoint: only its job raises
        folder = s.run_dir(teacher)
        folder.mkdir(parents=True)
        (folder / "spec.json").write_text(s.get(teacher).spec.model_dump_json())
    (folder / "resume.pt").write_bytes(b"not a checkpoint")
    result = cli("sweep", "run", config, "--store", store, "--executor", executor, "--json")
    assert result.code == 1
    summary, status = result.json(), _status(cli, config, store)
    students = sorted(name for name, row in status.items() if row["teacher"] == teacher)
    assert summary["failed"] == [teacher] and sorted(summary["blocked"]) == students and len(students) == 2
    assert sorted(summary["trained"]) == sorted(set(status) - {teacher, *students}) and len(summary["trained"]) == 1
    assert status[teacher]["status"] == "failed" and "UnpicklingError" in status[teacher]["error"]
    if executor == "slurm":
        log = Path(status[teacher]["log"])
        assert status[teacher]["job_state"] == "FAILED" and "UnpicklingError" in log.read_text()
        assert all(status[name]["job_id"] is None for name in summary["blocked"])  # never submitted
    table = cli("sweep", "status", config, "--store", store)
    assert "UnpicklingError" in table.stdout


@pytest.mark.parametrize(
    ("args", "toml", "words"),
    [
        (["--partition", "nope"], "", ["partition 'nope' does not exist"]),
        ([], '[executor.slurm]\npartition = "nope"\n', ["partition 'nope' does not exist"]),
        (["--gpus-per-node", "4"], "", ["4 GPUs per node", "has at most 0"]),
        ([], "[executor.slurm.teacher]\ngpus_per_node = 2\n", ["teacher jobs ask for 2 GPUs per node"]),
        (["--cpus-per-task", "64"], "", ["64 CPUs per task"]),
        (["--constraint", "nosuchfeature"], "", ["Slurm refuses", "Invalid feature"]),
        (["--time", "soon"], "", ["--time"]),
        (["--partition", "debug"], None, ["--executor slurm"]),  # a Slurm option without --executor slurm
    ],
    ids=["partition-cli", "partition-config", "gpus-cli", "gpus-teacher-config", "cpus", "constraint", "time", "no-executor"],
)
def test_bad_requests_are_one_line_exit_2_nothing_submitted_or_written(slurm, cli, tmp_path, args, toml, words):
    config = _config(tmp_path, TINY + (toml or ""))
    store = tmp_path / "RUNS.db"
    since = _now()
    executor = [] if toml is None else ["--executor", "slurm"]
    result = cli("sweep", "run", config, "--store", store, *executor, *args)
    assert result.code == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert all(word in result.stderr for word in words), result.stderr
    assert not store.exists() and not store.with_suffix(".runs").exists()
    assert not _queued_here() and not _history(since, {"sup-N6256-D125120"})


def test_no_sbatch_on_path_is_one_line_exit_2(slurm, cli, tmp_path, monkeypatch):
    config = _config(tmp_path, TINY)
    store = tmp_path / "RUNS.db"
    since = _now()
    monkeypatch.setenv("PATH", str(tmp_path))  # a folder without sbatch
    result = cli("sweep", "run", config, "--store", store, "--executor", "slurm")
    monkeypatch.undo()
    assert result.code == 2 and result.stderr.count("\n") == 1 and "sbatch is not on PATH" in result.stderr
    assert not store.exists() and not _history(since, {"sup-N6256-D125120"})


def test_a_sigkilled_coordinator_reattaches_and_submits_no_run_twice(slurm, cli, tmp_path, tiny_reference, monkeypatch):
    config, expected = tiny_reference
    store = tmp_path / "RUNS.db"
    since = _now()
    victim = _coordinator(config, store, tmp_path / "killed.log")
    running = _wait_for("mid-sweep", lambda: _mid_sweep(store), victim)
    os.kill(victim.pid, signal.SIGKILL)  # the coordinator only: its Slurm jobs go on
    victim.wait(timeout=30)
    name, job_id = running[0]
    assert _status(cli, config, store)[name]["status"] == "interrupted"
    before = _dump(store)  # sweep status asks Slurm for the state now and writes nothing
    live = _wait_for("Slurm ahead of the store", lambda: (rows := _status(cli, config, store))[name]["live_state"] == "COMPLETED" and rows)
    assert live[name]["job_state"] == "RUNNING" and not cli("sweep", "status", config, "--store", store, "--json").stderr
    monkeypatch.setattr(console, "_width", 200)  # the jobs table on one line per job
    assert "COMPLETED (store: RUNNING)" in cli("sweep", "status", config, "--store", store).stdout
    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", str(tmp_path))  # Slurm cannot be asked: the store's states, and one line saying so
    degraded = cli("sweep", "status", config, "--store", store, "--json")
    monkeypatch.setenv("PATH", path)
    assert degraded.code == 0 and degraded.stderr.count("\n") == 1 and "sacct is not on PATH" in degraded.stderr
    assert {row["live_state"] for row in degraded.json()["runs"]} == {None} and degraded.json()["runs"][0]["job_state"]
    assert _dump(store) == before
    restarted = _coordinator(config, store, tmp_path / "restarted.log")
    assert restarted.wait(timeout=600) == 0, (tmp_path / "restarted.log").read_text()
    actual = _table(cli, store, tmp_path / "slurm.csv")
    _assert_same_table(actual, expected)
    history = _final_history(since, set(actual["name"]))
    assert sorted(row["name"] for row in history) == sorted("distlaw-" + n for n in actual["name"])  # none submitted twice
    status = _status(cli, config, store)
    assert status[name]["job_id"] == job_id and status[name]["job_state"] == "COMPLETED"
    with RunStore(store) as s:
        assert s.get(name).attempts == 1  # re-attached, not claimed again


def test_cancel_stops_the_sweeps_jobs(slurm, cli, tmp_path, tiny_reference):
    config, _ = tiny_reference
    store = tmp_path / "RUNS.db"
    since = _now()
    victim = _coordinator(config, store, tmp_path / "run.log")
    _wait_for("mid-sweep", lambda: _mid_sweep(store), victim)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    with RunStore(store) as s:
        live = {name: job.job_id for name, job in s.jobs().items() if job.ended_at is None}
    result = cli("sweep", "cancel", config, "--store", store, "--json")
    assert result.code == 0, result.stderr
    assert result.json()["cancelled"] == live and live
    _wait_for("cancelled in accounting", lambda: all(r["state"].startswith("CANCELLED") for r in _history(since, set(live))
                                                     if r["id"] in live.values()))
    status = _status(cli, config, store)
    for name, job_id in live.items():
        assert status[name]["status"] == "failed" and status[name]["error"].startswith(f"cancelled (Slurm job {job_id}")
        assert status[name]["job_state"] == "CANCELLED"
    assert cli("sweep", "cancel", config, "--store", store, "--json").json()["cancelled"] == {}  # nothing left


def test_a_requeued_job_resumes_from_its_checkpoint(slurm, cli, tmp_path, tiny_reference):
    config, expected = tiny_reference
    store = tmp_path / "RUNS.db"
    since = _now()
    coordinator = _coordinator(config, store, tmp_path / "run.log")
    name, job_id = _wait_for("mid-sweep", lambda: _mid_sweep(store), coordinator)[0]
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    assert coordinator.wait(timeout=600) == 0, (tmp_path / "run.log").read_text()
    _assert_same_table(_table(cli, store, tmp_path / "slurm.csv"), expected)
    history = _final_history(since, set(expected["name"]))
    assert [row["state"] for row in history if row["id"] == job_id] == ["REQUEUED", "COMPLETED"]  # one job id, run twice
    assert len(history) == len(expected) + 1  # the requeue is the only second attempt
    log = json.loads((tmp_path / "run.log").read_text())
    assert log["failed"] == [] and name in log["trained"]


def test_a_job_of_two_tasks_trains_its_run_with_ddp(slurm, cli, tmp_path, tiny_reference):
    """Two tasks per job (one per GPU on a GPU cluster; gloo on CPU here): each run is one DDP job whose
    losses match the one-process runs (to reduction-order rounding)."""
    config, expected = tiny_reference
    ddp = _config(tmp_path, config.read_text() + "[executor.slurm]\ntasks_per_node = 2\n")
    result = cli("sweep", "run", ddp, "--store", tmp_path / "RUNS.db", "--executor", "slurm", "--json")
    assert result.code == 0, result.stderr
    actual = _table(cli, tmp_path / "RUNS.db", tmp_path / "ddp.csv")
    pd.testing.assert_frame_equal(actual[EXACT], expected[EXACT])
    for column in ("loss", "teacher_loss"):
        np.testing.assert_allclose(actual[column], expected[column], rtol=1e-4, equal_nan=True)
    with RunStore(tmp_path / "RUNS.db") as s:
        job_ids = [job.job_id for job in s.jobs().values()]
    tasks = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "NTasks,AllocCPUS", *[f"-j{j}" for j in job_ids]], capture_output=True, text=True).stdout
    assert {line.split("|")[1] for line in tasks.split()} == {"2"}  # both CPUs of the node, one per task


def test_submit_and_exit_hands_the_dag_to_slurm_and_a_later_run_collects(slurm, cli, tmp_path, tiny_reference):
    config, expected = tiny_reference
    store = tmp_path / "RUNS.db"
    since = _now()
    submitted = cli("sweep", "run", config, "--store", store, "--executor", "slurm", "--submit-and-exit", "--json")
    assert submitted.code == 0, submitted.stderr
    assert sorted(submitted.json()["submitted"]) == sorted(expected["name"]) and not submitted.json()["trained"]
    with RunStore(store) as s:
        ids = {name: job.job_id for name, job in s.jobs().items()}
    queue = subprocess.run(["squeue", "-h", "-o", "%i|%E"], capture_output=True, text=True, check=True).stdout
    dependency = {line.split("|")[0]: line.split("|")[1] for line in queue.splitlines()}
    students = [(name, teacher) for name, teacher in zip(expected["name"], expected["teacher"]) if isinstance(teacher, str)]
    assert students and all(dependency[ids[name]].startswith(f"afterok:{ids[teacher]}") for name, teacher in students)  # after its teacher
    collected = cli("sweep", "run", config, "--store", store, "--executor", "slurm", "--json")
    assert collected.code == 0, collected.stderr
    _assert_same_table(_table(cli, store, tmp_path / "slurm.csv"), expected)
    history = _final_history(since, set(expected["name"]))
    assert sorted(row["name"] for row in history) == sorted("distlaw-" + n for n in expected["name"])  # collected, not resubmitted


def test_run_folders_on_a_shared_folder_while_the_store_stays_local(slurm, cli, tmp_path, tiny_reference):
    config, expected = tiny_reference
    store, shared = tmp_path / "local" / "RUNS.db", tmp_path / "shared" / "runs"
    since = _now()
    result = cli("sweep", "run", config, "--store", store, "--runs-dir", shared, "--executor", "slurm", "--json")
    assert result.code == 0, result.stderr
    _assert_same_table(_table(cli, store, tmp_path / "slurm.csv"), expected)
    status = _status(cli, config, store)  # no --runs-dir: the store knows where its runs are
    assert all(Path(row["log"]).parent == shared.resolve() / "slurm" and Path(row["log"]).is_file() for row in status.values())
    assert all((shared / name / "result.json").is_file() for name in status) and len(status) == 4
    assert {p.name for p in store.parent.iterdir()} <= {"RUNS.db", "RUNS.db-wal", "RUNS.db-shm"}  # nothing of the runs beside the store
    jobs = _final_history(since, set(status))
    again = cli("sweep", "run", config, "--store", store, "--executor", "slurm", "--json")
    assert again.code == 0 and again.json()["skipped"] == 4 and _history(since, set(status)) == jobs  # nothing submitted
    refused = cli("sweep", "run", config, "--store", store, "--executor", "slurm", "--runs-dir", tmp_path / "other")
    assert refused.code == 2 and refused.stderr.count("\n") == 1 and "recorded at its first run" in refused.stderr, refused.stderr


def test_jobs_signalled_at_their_time_limit_or_preempted_requeue_themselves_and_resume(slurm, cli, tmp_path, tiny_reference):
    """USR2 as Slurm sends it before a job's time limit (the teacher's limit is 5 minutes: submitit counts a
    signal after 80 % of the limit or 10 minutes before it as a timeout, so here any), then TERM and USR2 as on
    preemption (a student-role job, with a day's limit): each job checkpoints (submitit pickles its call
    again), requeues itself and resumes from its run's checkpoint. (Slurm itself would signal the teacher
    3 minutes in: the test's own signal comes first, at a known point of the run.)"""
    config, expected = tiny_reference
    limited = _config(tmp_path, config.read_text() + "[executor.slurm.teacher]\ntime = 5\n")
    store, teacher = tmp_path / "RUNS.db", "sup-N6256-D125120"
    since = _now()
    coordinator = _coordinator(limited, store, tmp_path / "run.log")
    _, teacher_job = _wait_for("the teacher mid-run", lambda: _mid_run(store, lambda name, _: name == teacher), coordinator)[0]
    subprocess.run(["scancel", "--signal=USR2", teacher_job], check=True)
    student, student_job = _wait_for("a student mid-run", lambda: _mid_run(store, lambda name, _: name != teacher), coordinator)[0]
    for sig in ("TERM", "USR2"):  # as submitit's SlurmJob._interrupt preempts a job
        subprocess.run(["scancel", f"--signal={sig}", student_job], check=True)
    assert coordinator.wait(timeout=600) == 0, (tmp_path / "run.log").read_text()
    _assert_same_table(_table(cli, store, tmp_path / "slurm.csv"), expected)
    history = _final_history(since, set(expected["name"]))
    for job_id in (teacher_job, student_job):  # the same job ids, run again: never submitted twice
        states = [row["state"] for row in history if row["id"] == job_id]
        assert states[-1] == "COMPLETED" and set(states[:-1]) == {"REQUEUED"} and states[:-1], states
    assert len({row["name"] for row in history}) == len(history) - sum(row["state"] == "REQUEUED" for row in history)
    status = _status(cli, limited, store)
    teacher_log, student_log = (Path(status[name]["log"]).read_text() + Path(status[name]["log"]).with_suffix(".out").read_text()
                                for name in (teacher, student))  # submitit's warnings go to stderr, the rest to stdout
    assert "this job is timed-out" in teacher_log and f"Requeued job {teacher_job} (99 remaining timeouts)" in teacher_log
    assert "this job is preempted" in student_log and f"Requeued job {student_job} (100 remaining timeouts)" in student_log

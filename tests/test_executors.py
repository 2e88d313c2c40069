"""The executor seam without a cluster: Slurm's formats and request checks, per-role resources, and the
coordinator's submit / follow / re-attach logic through a fake backend (fake trainer, fast)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import traceback

import pytest

from distlaw.errors import DistlawError
from distlaw.lab import train
from distlaw.lab.executors import Executor, Handle, Job, JobError, JobState, guarded
from distlaw.lab.executors.slurm import _gpus, _trace_reason, check_resources, minutes
from distlaw.lab.protocols import SlurmConfig, SlurmResources
from distlaw.lab.sweep import _jobs, run_sweep
from distlaw.store import RunStore
from test_sweep import CONFIG, FakeTrainer


@pytest.mark.parametrize(("value", "expected"), [(90, 90), ("90", 90), ("1:30", 2), ("2:00:00", 120), ("1-0", 1440),
                                                 ("1-2:30", 1590), ("0:0:30", 1), ("2-00:00:00", 2880)])
def test_slurm_time_formats_in_minutes(value, expected):
    assert minutes(value) == expected


@pytest.mark.parametrize(("gres", "gpus"), [("(null)", 0), ("gpu:2", 2), ("gpu:a100:4(S:0-1),shard:8", 4), ("gpu:a:2,gpu:b:1", 3)])
def test_gpus_of_a_sinfo_gres_field(gres, gpus):
    assert _gpus(gres) == gpus


def test_role_tables_then_command_line_override_the_sweeps_resources():
    config = SlurmConfig.model_validate({
        "partition": "gpu", "time": 60, "sbatch": {"exclusive": ""},
        "teacher": {"gpus_per_node": 8, "time": "1-0"}, "cache": {"partition": "cpu", "sbatch": {"mail-type": "END"}},
    })  # fmt: skip
    teacher, cache, student = (config.for_role(role, SlurmResources(time=30)) for role in ("teacher", "cache", "student"))
    assert (teacher.partition, teacher.gpus_per_node, teacher.time) == ("gpu", 8, 30)
    assert (cache.partition, cache.sbatch) == ("cpu", {"exclusive": "", "mail-type": "END"})
    assert (student.partition, student.gpus_per_node, config.for_role("student").time) == ("gpu", None, 60)


@pytest.mark.parametrize("bad", [{"time": "soon"}, {"time": 0}, {"mem": "lots"}, {"gpus_per_node": -1}, {"student": {"partitoin": "x"}}])
def test_bad_slurm_tables_are_refused(bad):
    with pytest.raises(ValueError):
        SlurmConfig.model_validate(bad)


def test_a_jobs_failure_is_one_line_on_every_backend():
    def work(progress: bool) -> dict:
        raise RuntimeError("diverged\nlong details")

    with pytest.raises(JobError) as caught:
        guarded(work, False)
    assert str(caught.value) == "RuntimeError: diverged"
    trace = "".join(traceback.format_exception(caught.value))  # what submitit stores for a failed Slurm job
    assert _trace_reason(trace) == "RuntimeError: diverged"


def test_no_sbatch_is_refused_before_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DistlawError, match="sbatch is not on PATH"):
        check_resources({"teacher": SlurmResources()})


def test_refusing_slurm_imports_no_torch(tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text('name = "x"\n[model]\naspect_ratio = 8\nhead_dim = 8\n[[protocol]]\ntype = "fixedm-fixedm"\nteachers = [6256]\nstudents = [6256]\n')
    probe = ("import sys; from distlaw.cli.app import main\ntry: main(sys.argv[1:])\nexcept SystemExit as e: code = e.code\n"
             "print(json.dumps([code, 'torch' in sys.modules]))")  # fmt: skip
    env = {**os.environ, "PATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", "import json\n" + probe, "sweep", "run", str(config), "--store", str(tmp_path / "R.db"),
                          "--executor", "slurm"], capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [2, False], out.stderr
    assert "sbatch is not on PATH" in out.stderr and not (tmp_path / "R.db").exists()


class Killed(BaseException):
    """Stands in for the SIGKILL of a coordinator."""


class FakeCluster(Executor):
    """A backend whose jobs outlive the coordinator: ``queue`` (job id -> job) is the cluster. A job
    ends on its first poll (its work runs then); polling a job named in ``kill_on`` kills the coordinator."""

    kind = "fake"
    poll_s = 0.0
    dependencies = True

    def __init__(self, queue: dict[str, Job], kill_on: frozenset[str] = frozenset()) -> None:
        self.queue, self.kill_on = queue, kill_on
        self.submitted: list[str] = []
        self.attached: list[str] = []
        self.after: dict[str, list[str]] = {}  # job -> the jobs it was queued after
        self.cancelled: list[str] = []

    def submit(self, job: Job, after: tuple[Handle, ...] = ()) -> Handle:
        self.submitted.append(job.name)
        self.after[job.name] = [h.name for h in after]
        job_id = str(len(self.queue) + 1)
        self.queue[job_id] = job
        return Handle(job.name, job_id, f"/logs/{job_id}.err", job)

    def state(self, handle: Handle) -> JobState:
        if handle.name in self.kill_on:
            raise Killed
        try:
            return JobState("done", "COMPLETED", result=guarded(handle.ref.work, False))
        except JobError as exc:
            return JobState("failed", "FAILED", error=str(exc))

    def cancel(self, handle: Handle) -> None:
        self.cancelled.append(handle.name)

    def attach(self, name: str, job_id: str, log: str | None) -> Handle:
        self.attached.append(name)
        return Handle(name, job_id, log, self.queue[job_id])


def test_jobs_carry_paths_not_the_store(tmp_path):
    store = tmp_path / "RUNS.db"
    with RunStore(store) as s:
        from distlaw.lab.protocols import expand

        s.add_plan(CONFIG.name, expand(CONFIG))
        records = s.records()
    for job in _jobs(CONFIG, store, records, ("planned",)):
        assert b"RUNS.db" not in pickle.dumps(job.work)  # picklable, and it cannot open the store


def test_a_killed_coordinator_reattaches_to_its_jobs_and_submits_nothing_twice(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "train_run", FakeTrainer())
    store, queue = tmp_path / "RUNS.db", {}
    teacher = "sup-N6256-D125120"
    first = FakeCluster(queue, kill_on=frozenset({teacher}))
    with pytest.raises(Killed):
        run_sweep(CONFIG, store, progress=False, executor=first)
    with RunStore(store) as s:
        running, done = ({r.name for r in s.records(status=status)} for status in ("running", "done"))
        jobs = s.jobs()
    assert teacher in running and running == set(first.submitted) - done  # claimed and submitted, never recorded as ended
    assert all(jobs[name].job_id and jobs[name].ended_at is None and jobs[name].log for name in running)
    second = FakeCluster(queue)
    outcome = run_sweep(CONFIG, store, progress=False, executor=second)
    assert sorted(second.attached) == sorted(running) and not set(second.submitted) & running
    assert sorted(outcome.done) == sorted(second.attached + second.submitted) and sorted(outcome.skipped) == sorted(done)
    with RunStore(store) as s:
        assert s.counts() == {"planned": 0, "running": 0, "done": 8, "failed": 0}
        assert all(s.get(name).attempts == 1 for name in running)
        assert {job.state for job in s.jobs().values()} == {"COMPLETED"}


def test_a_failed_job_is_recorded_with_its_reason_and_blocks_its_students(tmp_path, monkeypatch):
    bad = "sup-N6256-D125120"
    monkeypatch.setattr(train, "train_run", FakeTrainer(fail={bad}))
    cluster = FakeCluster({})
    outcome = run_sweep(CONFIG, tmp_path / "RUNS.db", progress=False, executor=cluster)
    assert outcome.failed == [bad] and len(outcome.blocked) == 2 and not set(outcome.blocked) & set(cluster.submitted)
    with RunStore(tmp_path / "RUNS.db") as s:
        assert s.get(bad).error == "RuntimeError: diverged" and s.jobs()[bad].state == "FAILED"


def test_submit_and_exit_queues_each_job_after_its_needs_and_a_later_run_collects(tmp_path, monkeypatch):
    bad = "sup-N6256-D125120"
    monkeypatch.setattr(train, "train_run", FakeTrainer(fail={bad}))
    store, queue = tmp_path / "RUNS.db", {}
    first = FakeCluster(queue)
    outcome = run_sweep(CONFIG, store, progress=False, executor=first, submit_only=True)
    assert sorted(outcome.submitted) == sorted(first.submitted) and len(first.submitted) == 8 and not outcome.done
    with RunStore(store) as s:
        teachers = {r.name: r.teacher for r in s.records()}
        assert s.counts()["running"] == 8
    assert all(first.after[name] == ([teacher] if teacher else []) for name, teacher in teachers.items())
    second = FakeCluster(queue)
    collected = run_sweep(CONFIG, store, progress=False, executor=second)
    students = sorted(name for name, teacher in teachers.items() if teacher == bad)
    assert collected.failed == [bad] and sorted(collected.blocked) == sorted(second.cancelled) == students
    assert not second.submitted and len(collected.done) == 5
    with RunStore(store) as s:
        assert all(s.get(name).status == "planned" and s.jobs()[name].state == "CANCELLED" for name in students)


def test_submit_and_exit_needs_a_backend_with_dependencies(tmp_path):
    from distlaw.lab.executors.local import LocalExecutor

    with pytest.raises(DistlawError, match="--submit-and-exit needs"):
        run_sweep(CONFIG, tmp_path / "RUNS.db", progress=False, executor=LocalExecutor(1), submit_only=True)


@pytest.mark.parametrize(("limit", "delay"), [(1, 20), (2, 80), (3, 90), (240, 90)])
def test_slurm_signals_before_the_time_limit_but_never_in_a_jobs_first_10_s(limit, delay):
    from distlaw.lab.executors.slurm import signal_delay_s

    assert signal_delay_s(limit) == delay
    # Slurm checks limits every 30 s and signals at the first check at most 30 s before the delay asked
    assert all(60 * m - signal_delay_s(m) - 30 >= 10 and 0 < signal_delay_s(m) <= 90 for m in range(1, 2000))


def _sbatch_script(tmp_path, monkeypatch, **resources) -> str:
    """The sbatch script the Slurm backend writes for a teacher job with ``resources`` (no cluster needed)."""
    import submitit

    from distlaw.lab.executors.slurm import SlurmExecutor

    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", staticmethod(lambda: 1))  # submitit looks for srun
    executor = SlurmExecutor(tmp_path, {"teacher": SlurmResources(partition="gpu", **resources)})
    return executor._executors["teacher"]._make_submission_file_text("python -m submitit.core._submit /x", "uid")


def test_a_job_of_several_gpus_on_several_nodes_asks_one_task_per_gpu(tmp_path, monkeypatch):
    script = _sbatch_script(tmp_path, monkeypatch, nodes=2, gpus_per_node=4, time="4:00:00", cpus_per_task=8)
    flags = {line.split("=")[0].removeprefix("#SBATCH "): line.split("=", 1)[1] for line in script.splitlines() if line.startswith("#SBATCH --") and "=" in line}
    assert (flags["--nodes"], flags["--ntasks-per-node"], flags["--gpus-per-node"], flags["--cpus-per-task"]) == ("2", "4", "4", "8")
    assert (flags["--time"], flags["--signal"], flags["--partition"]) == ("240", "USR2@90", "gpu")
    assert [line for line in script.splitlines() if line.startswith("srun ")][0].endswith("python -m submitit.core._submit /x")  # srun: 8 tasks
    single = _sbatch_script(tmp_path, monkeypatch, time=1, tasks_per_node=2, sbatch={"signal": "USR2@5"})
    assert "#SBATCH --ntasks-per-node=2" in single and "#SBATCH --signal=USR2@5" in single and "gpus-per-node" not in single


def test_each_task_of_a_multi_node_job_joins_the_process_group_from_slurms_layout(monkeypatch):
    from distlaw.lab.executors.slurm import SweepJob

    def environment(progress: bool) -> dict:
        return {key: os.environ.get(key) for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.setenv(key, "")  # records the state before the test, so teardown removes what SweepJob sets
        monkeypatch.delenv(key)
    slurm = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "77", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "gpu[3-4]"}
    for key, value in {**slurm, "SLURM_NTASKS": "8", "SLURM_NODEID": "1", "SLURM_PROCID": "5", "SLURM_LOCALID": "1"}.items():
        monkeypatch.setenv(key, value)  # task 5 of a job of 2 nodes x 4 GPUs, as srun starts it on the second node
    seen = SweepJob()(environment, False)
    assert {k: v for k, v in seen.items() if k != "MASTER_PORT"} == {
        "RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4", "MASTER_ADDR": "gpu3"}
    assert 20000 <= int(seen["MASTER_PORT"]) <= 60000  # the same on every task: seeded by the job id
    for key in seen:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert SweepJob()(environment, False) == dict.fromkeys(seen)  # one task: no process group


def test_a_local_worker_does_not_outlive_its_killed_coordinator(tmp_path):
    """SIGKILL the coordinator of a 2-worker local sweep mid-job: its worker exits too (an orphan used to
    keep training, and a restarted sweep found the run's folder taken)."""
    import signal
    import time

    (tmp_path / "slow_job.py").write_text(
        "import os, time\n"
        f"def work(progress):\n    open({str(tmp_path / 'worker.pid')!r}, 'w').write(str(os.getpid()))\n    time.sleep(120)\n"
    )
    script = (
        "import slow_job, time\n"
        "from distlaw.lab.executors import Job\n"
        "from distlaw.lab.executors.local import LocalExecutor\n"
        "LocalExecutor(2, progress=False).submit(Job('slow', 'student', slow_job.work))\n"
        "time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    coordinator = subprocess.Popen([sys.executable, "-c", script], env=env)
    pid_file = tmp_path / "worker.pid"
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        worker = int(pid_file.read_text())
        os.kill(worker, 0)  # the job runs in its own process
        coordinator.send_signal(signal.SIGKILL)
        coordinator.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(worker, signal.SIGKILL)
            pytest.fail("the worker kept running after its coordinator was killed")
    finally:
        coordinator.kill()

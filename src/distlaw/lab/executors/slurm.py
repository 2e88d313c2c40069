"""The ``slurm`` backend: each job one ``sbatch`` through submitit, its state from ``sacct``.

Resources come per role (``SlurmConfig.for_role``) and are checked against the cluster before
anything is submitted (``check_resources``: partition, CPUs, GPUs, memory and nodes from ``sinfo``,
then ``sbatch --test-only`` for the rest), so a bad request is one line and submits nothing. A job
runs its work through submitit's ``Checkpointable``: signalled (USR2) before its time limit
(``signal_delay_s``) or on preemption, it requeues itself and the run resumes from its last periodic
checkpoint (``resume.pt`` in its run folder), as it does after a plain ``scontrol requeue``. Jobs and
their logs live in ``RUNS.runs/slurm/``; a restarted coordinator re-attaches to them by their Slurm job
ids (``attach``), and ``peek`` asks ``sacct`` for their state without following them (``sweep status``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import pickle_load
from submitit.helpers import Checkpointable, TorchDistributedEnvironment

from distlaw.errors import DistlawError
from distlaw.lab.executors import Executor, Handle, Job, JobError, JobState, guarded
from distlaw.lab.protocols import SlurmResources

PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED", "PREEMPTED", "UNKNOWN", ""}
RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "RESIZING", "SIGNALING", "STAGE_OUT"}
RESULT_GRACE_S = 30.0  # a COMPLETED job's result pickle may show up late on a network file system
DEFAULT_MINUTES = 24 * 60  # a job's time limit when neither the config nor the partition sets one
MAX_TIMEOUTS = 100  # requeues at the time limit before a job is failed (preemptions do not count)
SIGNAL_DELAY_S = 90  # submitit's default: USR2 this long before a job's time limit


def signal_delay_s(time_min: int) -> int:
    """How long before its time limit Slurm signals a job to checkpoint and requeue: submitit's 90 s, less
    under 3 minutes. Slurm checks limits every 30 s and may signal up to 30 s early; this way the signal
    never comes in a job's first 10 s, before submitit has set its handler (USR2 would then kill the job)."""
    return max(0, min(SIGNAL_DELAY_S, 60 * time_min - 40))


def minutes(value: int | str) -> int:
    """Slurm's time formats (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) in whole minutes, rounded up."""
    if isinstance(value, int):
        return value
    days, _, clock = value.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:
        hours, mins, secs = (parts + [0, 0])[:3]
    else:
        hours, mins, secs = {1: (0, parts[0], 0), 2: (0, parts[0], parts[-1]), 3: tuple(parts)}[len(parts)]
    return max(1, -(-((int(days or 0) * 24 + hours) * 3600 + mins * 60 + secs) // 60))


def _run(*command: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DistlawError(f"--executor slurm: {command[0]} did not answer ({exc})") from None


@dataclass(frozen=True)
class Partition:
    """What ``sinfo`` says of one partition: its largest node, node count and time limit (minutes, None: unlimited)."""

    cpus: int
    mem_mb: int
    gpus: int
    nodes: int
    max_minutes: int | None


def _gpus(gres: str) -> int:
    """GPUs in a ``sinfo %G`` field such as ``gpu:a100:4(S:0-1),shard:8`` (``(null)``: none)."""
    return sum(int(m.group(1)) for m in re.finditer(r"(?:^|,)gpu(?::[^:,(]+)?:(\d+)", gres))


def partitions() -> tuple[dict[str, Partition], str | None]:
    """The cluster's partitions by name, and the default one."""
    out = _run("sinfo", "-h", "-o", "%P|%c|%m|%G|%D|%l")
    if out.returncode != 0:
        raise DistlawError(f"--executor slurm: sinfo failed: {(out.stderr.strip().splitlines() or ['no answer'])[0]}")
    found: dict[str, Partition] = {}
    default = None
    for line in out.stdout.splitlines():
        name, cpus, mem, gres, nodes, limit = line.strip().split("|")
        if name.endswith("*"):
            name = default = name[:-1]
        old = found.get(name)
        entry = Partition(int(cpus.rstrip("+")), int(mem.rstrip("+")), _gpus(gres), int(nodes), None if limit in ("infinite", "UNLIMITED") else minutes(limit))
        found[name] = entry if old is None else Partition(max(old.cpus, entry.cpus), max(old.mem_mb, entry.mem_mb),
                                                          max(old.gpus, entry.gpus), old.nodes + entry.nodes, entry.max_minutes)
    return found, default


def _mem_mb(mem: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMGT]?)", mem).groups()  # type: ignore[union-attr]
    return int(int(number) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}[unit])


def sbatch_flags(res: SlurmResources) -> list[str]:
    """The request as sbatch command-line options (for ``--test-only``)."""
    options: dict[str, Any] = {
        "partition": res.partition, "account": res.account, "qos": res.qos, "time": None if res.time is None else minutes(res.time),
        "nodes": res.nodes, "ntasks-per-node": tasks_per_node(res), "gpus-per-node": res.gpus_per_node or None,
        "cpus-per-task": res.cpus_per_task, "mem": res.mem, "constraint": res.constraint, **res.sbatch,
    }  # fmt: skip
    return [f"--{key}" if value == "" else f"--{key}={value}" for key, value in options.items() if value is not None]


def check_resources(resources: dict[str, SlurmResources]) -> dict[str, SlurmResources]:
    """Check each role's request against the cluster (nothing is submitted); returns them with the
    partition and time limit filled in. Any problem is a one-line DistlawError."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        raise DistlawError("--executor slurm: sbatch is not on PATH (no Slurm client on this machine)")
    found, default = partitions()
    checked: dict[str, SlurmResources] = {}
    tested: set[str] = set()  # requests sbatch accepted (roles often share one)
    for role, res in resources.items():
        name = res.partition or default
        if name is None or name not in found:
            raise DistlawError(f"--executor slurm: {role} jobs: partition '{name}' does not exist (partitions: {', '.join(found) or 'none'})")
        part = found[name]
        asks = (("GPUs per node", res.gpus_per_node, part.gpus), ("CPUs per task", res.cpus_per_task, part.cpus),
                ("nodes", res.nodes, part.nodes), ("MB of memory", res.mem and _mem_mb(res.mem), part.mem_mb))  # fmt: skip
        for what, asked, has in asks:
            if asked and asked > has:
                raise DistlawError(f"--executor slurm: {role} jobs ask for {asked} {what}; partition '{name}' has at most {has}")
        res = res.model_copy(update={"partition": name, "time": res.time or part.max_minutes or DEFAULT_MINUTES})
        flags = sbatch_flags(res)
        test = None if " ".join(flags) in tested else _run("sbatch", "--test-only", *flags, "--wrap", "true")
        tested.add(" ".join(flags))
        if test is not None and test.returncode != 0:
            lines = [line.removeprefix("sbatch: error: ") for line in test.stderr.strip().splitlines()] or ["refused"]
            raise DistlawError(f"--executor slurm: Slurm refuses the {role} jobs' request ({' '.join(flags)}): {lines[-1]}")
        checked[role] = res
    return checked


def tasks_per_node(res: SlurmResources) -> int:
    """Processes of one job per node: as asked, else one per GPU (at least one)."""
    return res.tasks_per_node or max(1, res.gpus_per_node or 0)


class SweepJob(Checkpointable):
    """What each task of a Slurm job runs: ``guarded`` as a submitit Checkpointable (requeued with the
    same arguments on preemption or timeout). With several tasks (one per GPU, on one or more nodes)
    each joins the run's process group (DDP student, ``distlaw.lab.distributed``) from Slurm's task
    layout, the first node's address as rendezvous; rank 0 writes the run folder."""

    def __call__(self, work: Any, progress: bool) -> dict[str, Any]:
        if submitit.JobEnvironment().num_tasks > 1:  # every GPU of the node stays visible: task i trains on cuda:LOCAL_RANK
            TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        return guarded(work, progress)


class SlurmExecutor(Executor):
    """Jobs as Slurm jobs with each role's ``resources`` (checked with ``check_resources``), their
    submitit files and logs in ``folder``; at most ``max_jobs`` queued or running (None: no limit)."""

    kind = "slurm"
    poll_s = 1.0
    dependencies = True

    def __init__(self, folder: Path, resources: dict[str, SlurmResources], max_jobs: int | None = None) -> None:
        self.folder, self.slots = Path(folder), max_jobs
        self._executors: dict[str, Any] = {}
        self._sbatch = {role: dict(res.sbatch) for role, res in resources.items()}
        for role, res in resources.items():
            executor = submitit.SlurmExecutor(folder=self.folder, max_num_timeout=MAX_TIMEOUTS)
            limit = minutes(res.time or DEFAULT_MINUTES)
            executor.update_parameters(
                partition=res.partition, account=res.account, qos=res.qos, time=limit, signal_delay_s=signal_delay_s(limit),
                nodes=res.nodes or 1, ntasks_per_node=tasks_per_node(res), gpus_per_node=res.gpus_per_node or None,
                cpus_per_task=res.cpus_per_task, mem=res.mem, constraint=res.constraint, additional_parameters=dict(res.sbatch),
            )  # fmt: skip
            self._executors[role] = executor
        self._last_refresh = 0.0
        self._completed_at: dict[str, float] = {}

    def submit(self, job: Job, after: tuple[Handle, ...] = ()) -> Handle:
        executor = self._executors[job.role]
        dependency = {"dependency": "afterok:" + ":".join(str(h.job_id) for h in after)} if after else {}
        executor.update_parameters(job_name="distlaw-" + job.name.replace(":", "-"), additional_parameters={**self._sbatch[job.role], **dependency})
        try:
            submitted = executor.submit(SweepJob(), job.work, False)
        except Exception as exc:  # sbatch refused the job (checked requests are not, unless the cluster changed)
            raise DistlawError(f"sbatch refused job {job.name}: {str(exc).strip().splitlines()[-1]}") from exc
        return self.attach(job.name, str(submitted.job_id), None)

    def attach(self, name: str, job_id: str, log: str | None) -> Handle:
        job = submitit.SlurmJob(folder=self.folder, job_id=job_id)  # its first task: the one whose result counts
        return Handle(name, job_id, log or str(job.paths.stderr), job)

    def _refresh(self) -> None:
        """One ``sacct`` call for every job still followed, at most once per ``poll_s``."""
        if time.monotonic() - self._last_refresh >= self.poll_s:
            submitit.SlurmJob.watcher.update()
            self._last_refresh = time.monotonic()

    def state(self, handle: Handle) -> JobState:
        job = handle.ref
        if job.paths.result_pickle.exists():
            outcome, value = pickle_load(job.paths.result_pickle)
            if outcome == "success":
                return JobState("done", "COMPLETED", result=value)
            return JobState("failed", "FAILED", error=_trace_reason(str(value)))
        self._refresh()
        native = (job.watcher.get_state(handle.job_id, mode="cache").split() or [""])[0]
        if native in PENDING:
            return JobState("pending", native or "UNKNOWN")
        if native in RUNNING:
            return JobState("running", native)
        if native == "COMPLETED" and time.monotonic() - self._completed_at.setdefault(handle.name, time.monotonic()) < RESULT_GRACE_S:
            return JobState("running", "COMPLETING")
        return JobState("failed", native, error=f"Slurm job {handle.job_id} ended {native} without a result (log {handle.log})")

    def cancel(self, handle: Handle) -> None:
        handle.ref.cancel(check=False)

    def peek(self, job_ids: list[str]) -> dict[str, str]:
        """One ``sacct`` call: each job's state now, of its latest attempt (the first word: ``CANCELLED by 0`` -> ``CANCELLED``)."""
        if shutil.which("sacct") is None:
            raise DistlawError("sacct is not on PATH (no Slurm client on this machine)")
        out = _run("sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(job_ids))
        if out.returncode != 0:
            raise DistlawError(f"sacct failed: {(out.stderr.strip().splitlines() or ['no answer'])[0]}")
        rows = (line.split("|") for line in out.stdout.splitlines() if "|" in line)
        return {job_id: (state.split() or ["UNKNOWN"])[0] for job_id, state, *_ in rows}


def _trace_reason(trace: str) -> str:
    """The one-line reason in a failed job's traceback (the JobError ``guarded`` raised), else its last line."""
    prefix = f"{JobError.__module__}.{JobError.__qualname__}: "
    lines = [line for line in trace.strip().splitlines() if line.strip()]
    reasons = [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]
    return reasons[-1] if reasons else (lines[-1] if lines else "failed without a traceback")

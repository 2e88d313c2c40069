"""Resumable sweeps: plan a config's runs into the store, then train them teachers-first.

A sweep is a DAG: each distilled run needs its teacher trained first (the protocols of Busbridge
et al. 2025, arXiv 2502.08606, distil from finished teachers). ``run_sweep`` is its coordinator:
it submits each job when its needs are done to an executor (``distlaw.lab.executors``: local
processes or Slurm), follows it and records it, each state change a short store transaction; jobs
only work in their run folders. Killed at any point, the next ``run_sweep`` skips finished runs,
re-attaches to Slurm jobs still queued or running, and ``train_run`` resumes an interrupted run
from its last checkpoint in ``RUNS.runs/<name>``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

from distlaw.errors import DistlawError
from distlaw.lab import corpus
from distlaw.lab.config import RunSpec
from distlaw.lab.executors import ROLES, Executor, Handle, JobState
from distlaw.lab.executors.local import LocalExecutor
from distlaw.lab.protocols import SlurmResources, SweepConfig, expand, train_flops
from distlaw.lab.pruned import calibration_passes
from distlaw.lab.shared import CachePlan, PrunePlan, build_cache_job, cache_plans, is_shared_job, prune_job, prune_plans, record_build
from distlaw.store import JobRecord, PlannedRun, RunRecord, RunStore, resolve_runs_dir

SLURM_DIR = "slurm"  # inside RUNS.runs/: the Slurm jobs' submitit files and logs


@dataclass(frozen=True)
class PlanSummary:
    """What ``plan_sweep`` put in the store."""

    runs: list[PlannedRun]
    new: int

    @property
    def unique(self) -> int:
        """Distinct runs (a run shared by protocols or roles counts once)."""
        return len({run.spec.name for run in self.runs})


def plan_sweep(config: SweepConfig, store_path: str | os.PathLike[str]) -> PlanSummary:
    """Expand the config's protocols and store the runs as ``planned`` (idempotent).

    Everything is checked before the store is opened (sizes, budgets, corpus, teachers); a bad
    config writes nothing.
    """
    runs = expand(config)
    corpus.corpus_files(config.data.corpus)
    names = {run.spec.name for run in runs}
    for run in runs:
        sources = [run.spec.teacher, run.spec.init.source if run.spec.init else None]
        for source in (s for s in sources if s is not None and s not in names and not Path(s).is_dir()):
            raise DistlawError(f"run '{run.spec.name}': teacher '{source}' is neither a run of the sweep nor a directory")
    with RunStore(store_path) as store:
        new = store.add_plan(config.name, runs)
    return PlanSummary(runs, new)


def plan_totals(runs: list[PlannedRun]) -> dict[str, dict[str, float]]:
    """Per protocol and role: number of runs, tokens and 6ND training FLOPs; then the teacher caches
    to build (2 N_T D inference FLOPs) and the pruned students (2 N_T D per forward-pass equivalent of their
    importance measure, ``pruned.calibration_passes``), for ``sweep plan``."""
    totals: dict[str, dict[str, float]] = {}
    for run in runs:
        row = totals.setdefault(f"{run.protocol} {run.role}", {"runs": 0, "tokens": 0, "flops": 0.0})
        row["runs"] += 1
        row["tokens"] += run.spec.tokens
        row["flops"] += train_flops(run.spec)
    specs = {run.spec.name: run.spec for run in runs}

    def cache_flops(plan: CachePlan) -> float:  # inference: one forward pass of 2 N_T FLOPs per token
        return 2.0 * specs[plan.source].non_embedding_params * plan.tokens

    def prune_flops(plan: PrunePlan) -> float:  # importance: the pruning method's forward-pass equivalents
        source = specs[plan.source]
        return 2.0 * source.non_embedding_params * plan.calibration_tokens * calibration_passes(dict(plan.options), source.shape.n_layers)

    builds = (
        ("teacher caches", cache_plans, lambda plan: plan.tokens, cache_flops),
        ("pruned students", prune_plans, lambda plan: plan.calibration_tokens, prune_flops),
    )
    for label, plans_of, tokens_of, flops_of in builds:
        plans = {plan.directory: plan for plan in plans_of(Path("."), list(specs.values())).values()}.values()
        if plans:  # a source outside the sweep (a checkpoint directory) has no spec here: its FLOPs are not counted
            totals[label] = {
                "runs": len(plans),
                "tokens": sum(tokens_of(p) for p in plans),
                "flops": sum(flops_of(p) for p in plans if p.source in specs),
            }
    return totals


def train_in_folder(spec: RunSpec, run_dir: Path, teacher: Path | None, cache: Path | None, init: Path | None,
                    checkpoint_every: int | None, progress: bool) -> dict[str, Any]:
    """A run's job: train it in ``run_dir`` (resuming from its checkpoint, or reading back a finished
    run's ``result.json``); returns the result for the coordinator to record. Opens no store."""
    from distlaw.lab.train import train_run

    result = train_run(spec, run_dir, teacher_dir=teacher, teacher_cache=cache, init_dir=init, progress=progress,
                       checkpoint_every=checkpoint_every)  # fmt: skip
    return result.model_dump(mode="json")


def _record_run(name: str, store: RunStore, state: JobState) -> None:
    """Write an ended run job's outcome to the store."""
    if state.state == "done":
        assert state.result is not None
        store.finish(name, state.result)
    else:
        store.fail(name, state.error or f"job ended {state.native}")


@dataclass
class SweepOutcome:
    """How a ``run_sweep`` call ended: run names by final status."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # failed now, or earlier and not retried
    skipped: list[str] = field(default_factory=list)  # finished before this call
    blocked: list[str] = field(default_factory=list)  # teacher not done, or held by another process
    submitted: list[str] = field(default_factory=list)  # left queued or running (``submit_only``); a later run collects them
    built: list[str] = field(default_factory=list)  # shared builds made now (``cache:<dir>``, ``prune:<dir>``)


def sweep_workers(config: SweepConfig, workers: int | None = None) -> int:
    """Runs trained at once by the local executor: ``workers``, else the config's, else one per usable core."""
    from distlaw.fitting.optimizer import available_cores

    return workers or config.workers or available_cores()


def make_executor(kind: str, config: SweepConfig, store_path: str | os.PathLike[str], workers: int | None = None,
                  progress: bool = True, overrides: SlurmResources | None = None,
                  runs_dir: str | os.PathLike[str] | None = None) -> Executor:
    """The backend ``kind`` (``local`` or ``slurm``) for the sweep; ``runs_dir`` (as for ``run_sweep``) and
    the Slurm requests (the config's ``[executor.slurm]`` per role, then ``overrides``) are checked first,
    so a bad one is a DistlawError before anything is submitted or written. ``workers``: jobs at once
    (Slurm: else ``max_jobs``, else all that are ready)."""
    folder = resolve_runs_dir(store_path, runs_dir) / SLURM_DIR
    if kind == "local":
        return LocalExecutor(sweep_workers(config, workers), progress)
    if kind != "slurm":
        raise DistlawError(f"unknown executor '{kind}' (expected local or slurm)")
    slurm = _slurm_backend()
    resources = slurm.check_resources({role: config.executor.slurm.for_role(role, overrides) for role in ROLES})
    return slurm.SlurmExecutor(folder, resources, workers or config.executor.slurm.max_jobs)


def _slurm_backend() -> ModuleType:
    """``distlaw.lab.executors.slurm``, or a one-line DistlawError where submitit is not installed."""
    try:
        from distlaw.lab.executors import slurm
    except ImportError as exc:
        raise DistlawError(f"--executor slurm needs submitit ({exc}); pip install submitit") from None
    return slurm


@dataclass(frozen=True)
class _Job:
    """One node of the sweep's DAG: training a run, or a shared build (``distlaw.lab.shared``); ``needs`` first."""

    name: str
    needs: tuple[str, ...]  # runs of the sweep and shared builds
    role: str  # teacher, student, cache or prune (its resources)
    work: Callable[[bool], dict[str, Any]]  # the job: progress -> result; a partial of a module-level function, so picklable
    record: Callable[[RunStore, JobState], None]  # the coordinator writes the ended job's outcome to the store
    priority: tuple[bool, float]  # sorts jobs that unblock others first, then the longest

    @property
    def is_run(self) -> bool:
        return not is_shared_job(self.name)


def _jobs(config: SweepConfig, store_path: Path, records: list[RunRecord], retried: tuple[str, ...]) -> list[_Job]:
    """The sweep's pending runs and the shared builds they need, those that unblock others first."""
    specs = [r.spec for r in records]
    with RunStore(store_path) as store:
        caches, pruned = cache_plans(store.runs_dir, specs), prune_plans(store.runs_dir, specs)
        source = {r.name: store.run_dir(r.name) for r in records}
    blockers = {r.teacher for r in records} | {r.init.source for r in specs if r.init is not None}
    runs = {r.name for r in records}

    def needs(*names: str | None) -> tuple[str, ...]:  # a source outside the sweep (a directory) is always there
        return tuple(n for n in names if n is not None and (n in runs or is_shared_job(n)))

    def where(name: str) -> Path:  # a model to read: a run's folder, or a checkpoint directory
        return source.get(name, Path(name))

    jobs: dict[str, _Job] = {}
    for record in (r for r in records if r.status in retried):
        cache, prune = caches.get(record.name), pruned.get(record.name)
        for plan, role, build in ((cache, "cache", build_cache_job), (prune, "prune", prune_job)):
            if plan is not None:
                jobs.setdefault(plan.job, _Job(plan.job, needs(plan.source), role, partial(build, plan, where(plan.source)),
                                               partial(record_build, plan), (False, 0.0)))
        teacher = where(record.teacher) if record.teacher is not None and cache is None else None
        work = partial(train_in_folder, record.spec, source[record.name], teacher, cache.directory if cache else None,
                       prune.directory if prune else None, config.checkpoint_every)
        role = "teacher" if record.name in blockers else "student"
        jobs[record.name] = _Job(record.name, needs(cache.job if cache else record.teacher, prune.job if prune else None), role, work,
                                 partial(_record_run, record.name), (record.name not in blockers, -train_flops(record.spec)))
    return sorted(jobs.values(), key=lambda job: job.priority)


def run_sweep(
    config: SweepConfig,
    store_path: str | os.PathLike[str],
    workers: int | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    on_finish: Callable[[str, str], None] | None = None,
    executor: Executor | None = None,
    submit_only: bool = False,
    runs_dir: str | os.PathLike[str] | None = None,
) -> SweepOutcome:
    """Plan (idempotently) and train every unfinished run of the sweep, teachers before students.

    Jobs go to ``executor`` (default: ``make_executor("local", ...)``: ``sweep_workers`` processes,
    or this process with its progress bars for one worker; ``train_run`` sets each one's torch
    threads, ``$DISTLAW_THREADS``, default 1, part of a CPU run's determinism). This process is the
    only store writer: it claims each run, submits its job when what it needs is done, records the
    job (id, state, log) and its result. A job still queued or running from an earlier, killed
    coordinator is re-attached, not submitted again (where the backend's jobs outlive it). Teacher
    caches and pruned students that runs share are built once, after their source model
    (``distlaw.lab.shared``). ``on_finish(name, status)`` is called as each run or shared build
    (``cache:...``, ``prune:...``) ends (the CLI's progress).

    ``submit_only``: hand the whole DAG to the backend (each job after its needs, e.g. Slurm's
    ``afterok``) and return without waiting; a later ``run_sweep`` collects the results.

    ``runs_dir``: where the run folders go (e.g. a shared file system while the store stays on local
    disk; default ``RUNS.runs`` beside the store), recorded in the store at its first run so that later
    calls (and ``sweep status``, ``cancel_sweep``) find it; a different one later is a DistlawError. A
    Slurm ``executor`` must be made with the same one (``make_executor``).
    """
    store_path = Path(store_path)
    executor = executor or make_executor("local", config, store_path, workers, progress, runs_dir=runs_dir)
    if submit_only and not executor.dependencies:
        raise DistlawError(f"--submit-and-exit needs a backend that queues jobs after their needs (--executor slurm), not {executor.kind}")
    resolve_runs_dir(store_path, runs_dir)  # refused before the plan is written
    plan_sweep(config, store_path)
    with RunStore(store_path) as store:
        store.pin_runs_dir(runs_dir)
        records = store.records(config.name)
    retried = ("planned", "running", "failed") if retry_failed else ("planned", "running")
    outcome = SweepOutcome(
        skipped=[r.name for r in records if r.status == "done"],
        failed=[r.name for r in records if r.status not in retried + ("done",)],
    )
    status = {r.name: r.status for r in records}
    pending = _jobs(config, store_path, records, retried)
    status.update({job.name: "planned" for job in pending if not job.is_run})

    def settle(name: str, result: str) -> None:
        status[name] = result
        if is_shared_job(name):
            if result == "done":
                outcome.built.append(name)
        else:
            {"done": outcome.done, "failed": outcome.failed}.get(result, outcome.blocked).append(name)
        if on_finish is not None:
            on_finish(name, result)

    try:
        with RunStore(store_path, create=False) as store:
            coordinator = _Coordinator(executor, store, status, settle, retry_failed)
            coordinator.submit_all(pending) if submit_only else coordinator.drive(pending)
            outcome.submitted = [name for name in coordinator.running if not is_shared_job(name)]
    finally:
        executor.close()
    _settle_unreached(pending, store_path, settle)
    return outcome


class _Coordinator:
    """Submits ready jobs to the executor, follows them and records them in the store (its only writer)."""

    def __init__(self, executor: Executor, store: RunStore, status: dict[str, str], settle: Callable[[str, str], None],
                 retry_failed: bool) -> None:
        self.executor, self.store, self.status, self.settle, self.retry_failed = executor, store, status, settle, retry_failed
        self.running: dict[str, tuple[_Job, Handle, str]] = {}  # name -> job, handle, last native state

    def drive(self, pending: list[_Job]) -> None:
        """Until nothing is pending that can start and nothing runs; jobs left in ``pending`` never started."""
        self._attach(pending)
        while pending or self.running:
            for job in [j for j in pending if all(self.status[n] == "done" for n in j.needs)]:
                if self.executor.slots is not None and len(self.running) >= self.executor.slots:
                    break
                pending.remove(job)
                self._start(job)
            if not self.running:
                break
            if not self._poll():
                time.sleep(self.executor.poll_s)

    def submit_all(self, pending: list[_Job]) -> None:
        """Submit every job whose needs are done or submitted, after those it needs; return without waiting."""
        self._attach(pending)
        self._poll()
        submitted = True
        while submitted:
            submitted = False
            for job in [j for j in pending if all(self.status[n] == "done" or n in self.running for n in j.needs)]:
                pending.remove(job)
                self._start(job, after=tuple(self.running[n][1] for n in job.needs if n in self.running))
                submitted = True

    def _attach(self, pending: list[_Job]) -> None:
        """Follow again the jobs an earlier coordinator left queued or running (their runs still ``running``)."""
        jobs = self.store.jobs()
        for job in list(pending):
            row = jobs.get(job.name)
            if row is None or row.executor != self.executor.kind or row.job_id is None or row.ended_at is not None:
                continue
            if job.is_run and (self.status[job.name] != "running" or not self.store.adopt(job.name, os.getpid())):
                continue
            handle = self.executor.attach(job.name, row.job_id, row.log)
            if handle is not None:
                pending.remove(job)
                self.running[job.name] = (job, handle, row.state)

    def _start(self, job: _Job, after: tuple[Handle, ...] = ()) -> None:
        if job.is_run and not self.store.claim(job.name, os.getpid(), retry_failed=self.retry_failed):
            record = self.store.get(job.name)
            self.settle(job.name, "busy" if record is None or record.status == "running" else record.status)
            return
        try:
            handle = self.executor.submit(job, after)
        except DistlawError as exc:
            self._end(job, JobState("failed", "REFUSED", error=str(exc)))
            return
        self.store.record_job(job.name, self.executor.kind, handle.job_id, "SUBMITTED", handle.log)
        self.running[job.name] = (job, handle, "SUBMITTED")

    def _poll(self) -> bool:
        """Record state changes and settle the jobs that ended; whether any did."""
        ended = False
        for name, (job, handle, last) in list(self.running.items()):
            if any(self.status[n] in ("failed", "blocked") for n in job.needs):  # queued after a need that failed
                self._unblock(job, handle)
                ended = True
                continue
            state = self.executor.state(handle)
            if state.native != last or state.ended:
                self.store.update_job(name, state.native, started=state.state != "pending", ended=state.ended)
                self.running[name] = (job, handle, state.native)
            if state.ended:
                del self.running[name]
                self._end(job, state)
                ended = True
        return ended

    def _unblock(self, job: _Job, handle: Handle) -> None:
        """Cancel a job submitted after a need that then failed (``submit_only``); its run is planned again, blocked."""
        self.executor.cancel(handle)
        self.store.update_job(job.name, "CANCELLED", ended=True)
        del self.running[job.name]
        if job.is_run:
            self.store.release(job.name)
        self.settle(job.name, "blocked")

    def _end(self, job: _Job, state: JobState) -> None:
        job.record(self.store, state)
        self.settle(job.name, state.state)


def cancel_sweep(config: SweepConfig, store_path: str | os.PathLike[str]) -> dict[str, str]:
    """Cancel the sweep's Slurm jobs still queued or running and record their runs failed (``cancelled``);
    returns run or build name -> Slurm job id."""
    cancelled: dict[str, str] = {}
    with RunStore(store_path, create=False) as store:
        executor = _slurm_backend().SlurmExecutor(store.runs_dir / SLURM_DIR, {})
        records = {r.name: r for r in store.records(config.name)}
        builds = {job.name for job in _jobs(config, Path(store_path), list(records.values()), ("planned", "running", "failed", "done"))
                  if not job.is_run}
        for name, row in store.jobs().items():
            if not _followed(row) or (name not in records and name not in builds):
                continue
            executor.cancel(executor.attach(name, row.job_id, row.log))
            store.update_job(name, "CANCELLED", ended=True)
            if name in records and records[name].status == "running":
                store.fail(name, f"cancelled (Slurm job {row.job_id}, log {row.log})")
            cancelled[name] = row.job_id
    return cancelled


@dataclass(frozen=True)
class LiveStates:
    """What the backend says now of the jobs the store has as queued or running (``live_states``)."""

    states: dict[str, str]  # run or build name -> the backend's word for its state now (Slurm's RUNNING, COMPLETED, ...)
    note: str | None = None  # why the backend could not be asked: the store's states stand


def live_states(store: RunStore) -> LiveStates:
    """Ask Slurm (through the executor seam, one ``sacct`` call) for the state now of every job the store
    has as queued or running: the store only holds what its coordinator last saw, which is stale once
    the coordinator died. Writes nothing (the coordinator is the store's only writer)."""
    followed = {name: row.job_id for name, row in store.jobs().items() if _followed(row)}
    if not followed:
        return LiveStates({})
    try:
        native = _slurm_backend().SlurmExecutor(store.runs_dir / SLURM_DIR, {}).peek(sorted(set(followed.values())))
    except DistlawError as exc:
        return LiveStates({}, f"Slurm could not be asked ({str(exc).removeprefix('--executor slurm: ')}): job states are the store's, as its coordinator last saw them")
    return LiveStates({name: native[job_id] for name, job_id in followed.items() if job_id in native})


def _followed(row: JobRecord) -> bool:
    """A job the store has as submitted and not ended, on a backend whose jobs outlive their coordinator."""
    return row.executor == "slurm" and row.job_id is not None and row.ended_at is None


def _settle_unreached(pending: list[_Job], store_path: Path, settle: Callable[[str, str], None]) -> None:
    """Jobs never started because what they need failed: runs of a failed shared build are already
    recorded failed (``distlaw.lab.shared``), everything else is blocked."""
    with RunStore(store_path, create=False) as store:
        for job in pending:
            if not job.is_run:
                continue
            record = store.get(job.name)
            settle(job.name, "failed" if record is not None and record.status == "failed" else "blocked")

"""Resumable sweeps: plan a config's runs into the store, then train them teachers-first.

A sweep is a DAG: each distilled run needs its teacher trained first (the protocols of Busbridge
et al. 2025, arXiv 2502.08606, distil from finished teachers). ``run_sweep`` trains every run of
the sweep not yet ``done``, several at a time in worker processes, each state change a short store
transaction. Killed at any point, the next ``run_sweep`` skips finished runs and ``train_run``
resumes an interrupted one from its last checkpoint in ``RUNS.runs/<name>``.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from distlaw.errors import DistlawError
from distlaw.lab import corpus
from distlaw.lab.config import DataConfig, RunSpec
from distlaw.lab.protocols import SweepConfig, expand, train_flops
from distlaw.store import PlannedRun, RunRecord, RunStore

CACHE_DIR = "teacher-caches"  # inside RUNS.runs/
CACHE_JOB_PREFIX = "cache:"


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
        teacher = run.spec.teacher
        if teacher is not None and teacher not in names and not Path(teacher).is_dir():
            raise DistlawError(f"run '{run.spec.name}': teacher '{teacher}' is neither a run of the sweep nor a directory")
    with RunStore(store_path) as store:
        new = store.add_plan(config.name, runs)
    return PlanSummary(runs, new)


def plan_totals(runs: list[PlannedRun]) -> dict[str, dict[str, float]]:
    """Per protocol and role: number of runs, tokens and 6ND training FLOPs; then the teacher caches
    to build, with their 2 N_T D inference FLOPs (for ``sweep plan``)."""
    totals: dict[str, dict[str, float]] = {}
    for run in runs:
        row = totals.setdefault(f"{run.protocol} {run.role}", {"runs": 0, "tokens": 0, "flops": 0.0})
        row["runs"] += 1
        row["tokens"] += run.spec.tokens
        row["flops"] += train_flops(run.spec)
    specs = {run.spec.name: run.spec for run in runs}
    caches = {plan.directory: plan for plan in cache_plans(Path("."), list(specs.values())).values()}.values()
    if caches:  # a teacher outside the sweep (a checkpoint directory) has no spec here: its FLOPs are not counted
        totals["teacher caches"] = {
            "runs": len(caches),
            "tokens": sum(plan.tokens for plan in caches),
            "flops": sum(2.0 * specs[p.teacher].shape.non_embedding_params * p.tokens for p in caches if p.teacher in specs),
        }
    return totals


def teacher_dir(store: RunStore, teacher: str, run: str) -> Path:
    """Where run ``run``'s teacher checkpoint is: the teacher run's directory, or a local HF dir."""
    record = store.get(teacher)
    if record is not None:
        if record.status != "done":
            raise DistlawError(f"run '{run}': teacher '{teacher}' is {record.status}, not done")
        return store.run_dir(teacher)
    path = Path(teacher)
    if not path.is_dir():
        raise DistlawError(f"run '{run}': teacher '{teacher}' is neither a stored run nor a directory")
    return path


@dataclass(frozen=True)
class CachePlan:
    """A teacher cache (top-k log-probabilities plus rest mass) that a sweep builds once, after the
    teacher, for every student of that teacher with ``distill.cache_k`` set: the paper's teacher
    inference paid once (Busbridge et al. 2025, Sec. 5). It covers the longest of those students."""

    teacher: str  # a run of the store, or a checkpoint directory
    directory: Path
    data: DataConfig
    order_seed: int
    k: int
    temperature: float
    batch_size: int
    tokens: int
    students: tuple[str, ...]

    @property
    def job(self) -> str:
        return CACHE_JOB_PREFIX + self.directory.name


def cache_plans(runs_dir: Path, specs: list[RunSpec]) -> dict[str, CachePlan]:
    """Student run name -> the cache it reads, for distilled runs with ``distill.cache_k`` set. Students
    that read the same teacher the same way (data, order, k, tau, batch) share one cache, kept in
    ``runs_dir/teacher-caches``."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in specs:
        if spec.teacher is None or spec.distill.cache_k is None:
            continue
        order_seed = spec.optim.seed if spec.data.order_seed is None else spec.data.order_seed
        signature = [spec.teacher, spec.data.model_dump(), order_seed, spec.distill.cache_k, spec.distill.temperature, spec.optim.batch_size]
        groups.setdefault(json.dumps(signature, sort_keys=True), []).append(spec)
    plans: dict[str, CachePlan] = {}
    for signature, students in groups.items():
        teacher, data, order_seed, k, temperature, batch_size = json.loads(signature)
        tokens = max(s.steps for s in students) * batch_size * data["seq_len"]
        digest = hashlib.sha256(signature.encode()).hexdigest()[:8]
        plan = CachePlan(
            teacher=teacher, directory=runs_dir / CACHE_DIR / f"{Path(teacher).name}-k{k}-D{tokens}-{digest}",
            data=students[0].data, order_seed=order_seed, k=k, temperature=temperature, batch_size=batch_size,
            tokens=tokens, students=tuple(s.name for s in students),
        )  # fmt: skip
        plans.update(dict.fromkeys(plan.students, plan))
    return plans


def execute_cache(store_path: Path, plan: CachePlan, progress: bool) -> str:
    """Build a sweep's teacher cache unless it exists (another process may build it at the same time:
    both write the same thing and one rename wins). A failure fails the students that needed it."""
    from distlaw.lab.teacher_cache import MANIFEST, build_cache
    from distlaw.lab.train import default_cache

    with RunStore(store_path, create=False) as store:
        if (plan.directory / MANIFEST).is_file():
            return "done"
        start = time.perf_counter()
        try:
            manifest = build_cache(
                teacher_dir(store, plan.teacher, plan.students[0]), plan.directory, plan.data, default_cache(plan.directory.parent),
                tokens=plan.tokens, k=plan.k, temperature=plan.temperature, order_seed=plan.order_seed,
                batch_size=plan.batch_size, progress=progress,
            )  # fmt: skip
        except Exception as exc:
            if (plan.directory / MANIFEST).is_file():  # lost the race to a parallel build
                return "done"
            for student in plan.students:
                store.fail(student, f"teacher cache {plan.directory.name}: {type(exc).__name__}: {exc}")
            return "failed"
        store.add_cache(plan.directory, plan.teacher, manifest, time.perf_counter() - start)
    return "done"


def execute_run(store_path: Path, name: str, cache: Path | None, checkpoint_every: int | None, progress: bool,
                retry_failed: bool = False) -> str:
    """Claim one run, train it (resuming from its checkpoint), record the result; returns its status
    (``done``, ``failed``, or ``busy`` when another live process holds it)."""
    from distlaw.lab.train import train_run

    with RunStore(store_path, create=False) as store:
        if not store.claim(name, os.getpid(), retry_failed=retry_failed):
            record = store.get(name)
            return "busy" if record is None or record.status == "running" else record.status
        record = store.get(name)
        assert record is not None
        try:
            result = train_run(
                record.spec,
                store.run_dir(name),
                teacher_dir=teacher_dir(store, record.teacher, name) if record.teacher is not None and cache is None else None,
                teacher_cache=cache,
                progress=progress,
                checkpoint_every=checkpoint_every,
            )
        except Exception as exc:  # a failed run is recorded, the sweep goes on
            store.fail(name, f"{type(exc).__name__}: {exc}")
            return "failed"
        store.finish(name, result.model_dump())
        return "done"


@dataclass
class SweepOutcome:
    """How a ``run_sweep`` call ended: run names by final status."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # failed now, or earlier and not retried
    skipped: list[str] = field(default_factory=list)  # finished before this call
    blocked: list[str] = field(default_factory=list)  # teacher not done, or held by another process
    caches: list[str] = field(default_factory=list)  # teacher caches built (``cache:<directory>``)


def sweep_workers(config: SweepConfig, workers: int | None = None) -> int:
    """Runs trained at once: ``workers``, else the config's, else one per usable core."""
    from distlaw.fitting.optimizer import available_cores

    return workers or config.workers or available_cores()


@dataclass(frozen=True)
class _Job:
    """One unit of sweep work: training a run, or building a teacher cache; ``needs`` must be done first."""

    name: str
    needs: str | None
    work: Callable[[bool], str]  # progress -> final status; a partial of a module-level function, so picklable
    priority: tuple[bool, float]  # sorts jobs that unblock others first, then the longest


def _jobs(config: SweepConfig, store_path: Path, records: list[RunRecord], retried: tuple[str, ...], retry_failed: bool) -> list[_Job]:
    """The sweep's pending runs and the teacher caches they read, teachers and caches first."""
    with RunStore(store_path) as store:
        plans = cache_plans(store.runs_dir, [r.spec for r in records])
    pending = [r for r in records if r.status in retried]
    blockers = {r.teacher for r in records} | {plan.job for plan in plans.values()}
    jobs: dict[str, _Job] = {}
    for record in pending:
        plan = plans.get(record.name)
        if plan is not None and plan.job not in jobs:
            jobs[plan.job] = _Job(plan.job, plan.teacher, partial(execute_cache, store_path, plan), (False, 0.0))
        work = partial(execute_run, store_path, record.name, plan.directory if plan else None, config.checkpoint_every, retry_failed=retry_failed)
        needs = plan.job if plan is not None else record.teacher
        jobs[record.name] = _Job(record.name, needs, work, (record.name not in blockers, -train_flops(record.spec)))
    return sorted(jobs.values(), key=lambda job: job.priority)


def run_sweep(
    config: SweepConfig,
    store_path: str | os.PathLike[str],
    workers: int | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    on_finish: Callable[[str, str], None] | None = None,
) -> SweepOutcome:
    """Plan (idempotently) and train every unfinished run of the sweep, teachers before students.

    ``sweep_workers`` processes train at once; ``train_run`` sets each one's torch
    threads (``$DISTLAW_THREADS``, default 1, part of a CPU run's determinism). With one worker,
    runs train in this process with their own progress bars. Students with ``distill.cache_k`` read
    a teacher cache that is built once, after their teacher (``cache_plans``). ``on_finish(name,
    status)`` is called as each run or cache (``cache:<directory>``) ends (the CLI's sweep progress).
    """
    workers = sweep_workers(config, workers)
    store_path = Path(store_path)
    plan_sweep(config, store_path)
    with RunStore(store_path) as store:
        records = store.records(config.name)
    retried = ("planned", "running", "failed") if retry_failed else ("planned", "running")
    outcome = SweepOutcome(
        skipped=[r.name for r in records if r.status == "done"],
        failed=[r.name for r in records if r.status not in retried + ("done",)],
    )
    status = {r.name: r.status for r in records}
    pending = _jobs(config, store_path, records, retried, retry_failed)

    def ready(job: _Job) -> bool:  # an outside teacher directory is not a job: always ready
        return job.needs is None or status.get(job.needs, "done") == "done"

    def settle(name: str, result: str) -> None:
        status[name] = result
        if name.startswith(CACHE_JOB_PREFIX):
            if result == "done":
                outcome.caches.append(name)
        else:
            {"done": outcome.done, "failed": outcome.failed}.get(result, outcome.blocked).append(name)
        if on_finish is not None:
            on_finish(name, result)

    if workers == 1:
        while pending:
            job = next((j for j in pending if ready(j)), None)
            if job is None:
                break
            pending.remove(job)
            settle(job.name, job.work(progress))
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            running: dict[Future[str], str] = {}
            while pending or running:
                for job in [j for j in pending if ready(j)][: workers - len(running)]:
                    pending.remove(job)
                    running[pool.submit(job.work, False)] = job.name
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    settle(running.pop(future), future.result())
    _settle_unreached(pending, store_path, settle)
    return outcome


def _settle_unreached(pending: list[_Job], store_path: Path, settle: Callable[[str, str], None]) -> None:
    """Jobs never started because what they need failed: students of a failed cache are already
    recorded failed (by ``execute_cache``), everything else is blocked."""
    with RunStore(store_path, create=False) as store:
        for job in pending:
            if job.name.startswith(CACHE_JOB_PREFIX):
                continue
            record = store.get(job.name)
            settle(job.name, "failed" if record is not None and record.status == "failed" else "blocked")

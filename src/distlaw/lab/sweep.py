"""Resumable sweeps: plan a config's runs into the store, then train them teachers-first.

A sweep is a DAG: each distilled run needs its teacher trained first (the protocols of Busbridge
et al. 2025, arXiv 2502.08606, distil from finished teachers). ``run_sweep`` trains every run of
the sweep not yet ``done``, several at a time in worker processes, each state change a short store
transaction. Killed at any point, the next ``run_sweep`` skips finished runs and ``train_run``
resumes an interrupted one from its last checkpoint in ``RUNS.runs/<name>``.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from distlaw.errors import DistlawError
from distlaw.lab import corpus
from distlaw.lab.protocols import SweepConfig, expand, train_flops
from distlaw.lab.shared import cache_plans, execute_cache, execute_prune, is_shared_job, prune_plans, teacher_dir
from distlaw.store import PlannedRun, RunRecord, RunStore


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
    to build (2 N_T D inference FLOPs) and the pruned students (6 N_T D calibration FLOPs), for ``sweep plan``."""
    totals: dict[str, dict[str, float]] = {}
    for run in runs:
        row = totals.setdefault(f"{run.protocol} {run.role}", {"runs": 0, "tokens": 0, "flops": 0.0})
        row["runs"] += 1
        row["tokens"] += run.spec.tokens
        row["flops"] += train_flops(run.spec)
    specs = {run.spec.name: run.spec for run in runs}
    builds = (  # (label, planner, tokens of a plan, forward-pass equivalents per token)
        ("teacher caches", cache_plans, lambda plan: plan.tokens, 2.0),  # inference: one forward pass
        ("pruned students", prune_plans, lambda plan: plan.calibration_tokens, 6.0),  # importance: forward and backward
    )
    for label, plans_of, tokens_of, flops_per_param in builds:
        plans = {plan.directory: plan for plan in plans_of(Path("."), list(specs.values())).values()}.values()
        if plans:  # a source outside the sweep (a checkpoint directory) has no spec here: its FLOPs are not counted
            totals[label] = {
                "runs": len(plans),
                "tokens": sum(tokens_of(p) for p in plans),
                "flops": sum(flops_per_param * specs[p.source].shape.non_embedding_params * tokens_of(p) for p in plans if p.source in specs),
            }
    return totals


def execute_run(store_path: Path, name: str, cache: Path | None, init: Path | None, checkpoint_every: int | None,
                progress: bool, retry_failed: bool = False) -> str:
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
                init_dir=init,
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
    built: list[str] = field(default_factory=list)  # shared builds made now (``cache:<dir>``, ``prune:<dir>``)


def sweep_workers(config: SweepConfig, workers: int | None = None) -> int:
    """Runs trained at once: ``workers``, else the config's, else one per usable core."""
    from distlaw.fitting.optimizer import available_cores

    return workers or config.workers or available_cores()


@dataclass(frozen=True)
class _Job:
    """One unit of sweep work: training a run, or a shared build (``distlaw.lab.shared``); ``needs`` first."""

    name: str
    needs: tuple[str, ...]  # runs of the sweep and shared builds
    work: Callable[[bool], str]  # progress -> final status; a partial of a module-level function, so picklable
    priority: tuple[bool, float]  # sorts jobs that unblock others first, then the longest


def _jobs(config: SweepConfig, store_path: Path, records: list[RunRecord], retried: tuple[str, ...], retry_failed: bool) -> list[_Job]:
    """The sweep's pending runs and the shared builds they need, those that unblock others first."""
    specs = [r.spec for r in records]
    with RunStore(store_path) as store:
        caches, pruned = cache_plans(store.runs_dir, specs), prune_plans(store.runs_dir, specs)
    blockers = {r.teacher for r in records} | {r.init.source for r in specs if r.init is not None}
    runs = {r.name for r in records}

    def needs(*names: str | None) -> tuple[str, ...]:  # a source outside the sweep (a directory) is always there
        return tuple(n for n in names if n is not None and (n in runs or is_shared_job(n)))

    jobs: dict[str, _Job] = {}
    for record in (r for r in records if r.status in retried):
        cache, prune = caches.get(record.name), pruned.get(record.name)
        if cache is not None:
            jobs.setdefault(cache.job, _Job(cache.job, needs(cache.source), partial(execute_cache, store_path, cache), (False, 0.0)))
        if prune is not None:
            jobs.setdefault(prune.job, _Job(prune.job, needs(prune.source), partial(execute_prune, store_path, prune), (False, 0.0)))
        work = partial(execute_run, store_path, record.name, cache.directory if cache else None, prune.directory if prune else None,
                       config.checkpoint_every, retry_failed=retry_failed)
        priority = (record.name not in blockers, -train_flops(record.spec))
        jobs[record.name] = _Job(record.name, needs(cache.job if cache else record.teacher, prune.job if prune else None), work, priority)
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
    runs train in this process with their own progress bars. Teacher caches and pruned students that
    runs share are built once, after their source model (``distlaw.lab.shared``). ``on_finish(name,
    status)`` is called as each run or shared build (``cache:...``, ``prune:...``) ends (the CLI's progress).
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
    status.update({job.name: "planned" for job in pending if is_shared_job(job.name)})

    def ready(job: _Job) -> bool:
        return all(status[need] == "done" for need in job.needs)

    def settle(name: str, result: str) -> None:
        status[name] = result
        if is_shared_job(name):
            if result == "done":
                outcome.built.append(name)
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
    """Jobs never started because what they need failed: runs of a failed shared build are already
    recorded failed (``distlaw.lab.shared``), everything else is blocked."""
    with RunStore(store_path, create=False) as store:
        for job in pending:
            if is_shared_job(job.name):
                continue
            record = store.get(job.name)
            settle(job.name, "failed" if record is not None and record.status == "failed" else "blocked")

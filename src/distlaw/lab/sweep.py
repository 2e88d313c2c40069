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
from pathlib import Path

from distlaw.errors import DistlawError
from distlaw.lab import corpus
from distlaw.lab.protocols import SweepConfig, expand, train_flops
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
        teacher = run.spec.teacher
        if teacher is not None and teacher not in names and not Path(teacher).is_dir():
            raise DistlawError(f"run '{run.spec.name}': teacher '{teacher}' is neither a run of the sweep nor a directory")
    with RunStore(store_path) as store:
        new = store.add_plan(config.name, runs)
    return PlanSummary(runs, new)


def plan_totals(runs: list[PlannedRun]) -> dict[str, dict[str, float]]:
    """Per protocol and role: number of runs, tokens and 6ND training FLOPs (for ``sweep plan``)."""
    totals: dict[str, dict[str, float]] = {}
    for run in runs:
        row = totals.setdefault(f"{run.protocol} {run.role}", {"runs": 0, "tokens": 0, "flops": 0.0})
        row["runs"] += 1
        row["tokens"] += run.spec.tokens
        row["flops"] += train_flops(run.spec)
    return totals


def teacher_dir(store: RunStore, record: RunRecord) -> Path | None:
    """Where a distilled run's teacher checkpoint is: the teacher run's directory, or a local HF dir."""
    if record.teacher is None:
        return None
    teacher = store.get(record.teacher)
    if teacher is not None:
        if teacher.status != "done":
            raise DistlawError(f"run '{record.name}': teacher '{teacher.name}' is {teacher.status}, not done")
        return store.run_dir(teacher.name)
    path = Path(record.teacher)
    if not path.is_dir():
        raise DistlawError(f"run '{record.name}': teacher '{record.teacher}' is neither a stored run nor a directory")
    return path


def execute_run(store_path: Path, name: str, checkpoint_every: int | None, progress: bool, retry_failed: bool = False) -> str:
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
                teacher_dir=teacher_dir(store, record),
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


def sweep_workers(config: SweepConfig, workers: int | None = None) -> int:
    """Runs trained at once: ``workers``, else the config's, else one per usable core."""
    from distlaw.fitting.optimizer import available_cores

    return workers or config.workers or available_cores()


def _ready(record: RunRecord, status: dict[str, str]) -> bool:
    """Whether the run can start now: supervised, an outside teacher, or a finished teacher run."""
    return record.teacher is None or status.get(record.teacher, "done") == "done"


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
    runs train in this process with their own progress bars. ``on_finish(name, status)`` is called
    as each run ends (the CLI's sweep progress).
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
    # Teachers first, then longest first: shortens the critical path through the DAG.
    teachers = {r.teacher for r in records}
    pending = sorted((r for r in records if r.status in retried), key=lambda r: (r.name not in teachers, -train_flops(r.spec)))

    def settle(name: str, result: str) -> None:
        status[name] = result
        {"done": outcome.done, "failed": outcome.failed}.get(result, outcome.blocked).append(name)
        if on_finish is not None:
            on_finish(name, result)

    if workers == 1:
        while pending:
            record = next((r for r in pending if _ready(r, status)), None)
            if record is None:
                break
            pending.remove(record)
            settle(record.name, execute_run(store_path, record.name, config.checkpoint_every, progress, retry_failed))
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            running: dict[Future[str], str] = {}
            while pending or running:
                for record in [r for r in pending if _ready(r, status)][: workers - len(running)]:
                    pending.remove(record)
                    future = pool.submit(execute_run, store_path, record.name, config.checkpoint_every, False, retry_failed)
                    running[future] = record.name
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    settle(running.pop(future), future.result())
    for record in pending:
        settle(record.name, "blocked")
    return outcome

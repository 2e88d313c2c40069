"""Where a sweep's jobs run: the seam between the sweep coordinator (``distlaw.lab.sweep``) and a backend.

A backend only submits a job, reports its state and cancels it (and, where its jobs outlive the
coordinator, re-attaches to them and says what state they are in now). Everything else is the
coordinator's: the DAG order, shared builds, retries, progress, and every write to the run store. A
job is a picklable call (``Job.work``, given whether to show progress) that works in its run folder
and returns a JSON-able dict; it never opens the store, so the store may stay on the coordinator's
local disk while jobs run on other machines.

Backends: ``local`` (processes on this machine, ``distlaw.lab.executors.local``) and ``slurm``
(``sbatch`` through submitit, ``distlaw.lab.executors.slurm``). Another backend (Ray, Kubernetes) is
one module with one ``Executor`` subclass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

STATES = ("pending", "running", "done", "failed")
ROLES = ("teacher", "student", "cache", "prune")  # what a job is, for its resources


@dataclass(frozen=True)
class Job:
    """One unit of sweep work: train a run or build a shared input, in its folder."""

    name: str  # a run name, or a shared build (``cache:...``, ``prune:...``)
    role: str  # one of ROLES
    work: Callable[[bool], dict[str, Any]]  # progress -> result; module-level (picklable), raises on failure


@dataclass(frozen=True)
class Handle:
    """A submitted job, as the coordinator keeps it (and the store records it)."""

    name: str
    job_id: str | None  # the backend's id (a Slurm job id); None for a local process
    log: str | None  # where the job's output goes
    ref: Any = None  # the backend's own object (a future, a submitit job)


@dataclass(frozen=True)
class JobState:
    """Where a job is: one of STATES, the backend's own word for it, and its result or error once ended."""

    state: str
    native: str  # e.g. Slurm's PENDING, RUNNING, COMPLETED, FAILED, CANCELLED
    result: dict[str, Any] | None = None
    error: str | None = None  # one line

    @property
    def ended(self) -> bool:
        return self.state in ("done", "failed")


class Executor(ABC):
    """A backend. ``slots``: jobs in flight at once (None: as many as are ready); ``poll_s``: how
    often the coordinator asks for states; ``dependencies``: whether ``submit`` takes ``after``."""

    kind: str
    slots: int | None = None
    poll_s: float = 1.0
    dependencies: bool = False

    @abstractmethod
    def submit(self, job: Job, after: tuple[Handle, ...] = ()) -> Handle:
        """Start ``job`` (or queue it), once the jobs ``after`` have ended well (only where ``dependencies``);
        never blocks on the job itself, except a backend that runs it in-process."""

    @abstractmethod
    def state(self, handle: Handle) -> JobState:
        """The job's state now."""

    @abstractmethod
    def cancel(self, handle: Handle) -> None:
        """Stop the job (a no-op for one that ended)."""

    def attach(self, name: str, job_id: str, log: str | None) -> Handle | None:
        """The handle of a job submitted by an earlier coordinator, or None where jobs do not outlive their
        coordinator (then the run is submitted again and resumes from its checkpoint)."""
        return None

    def peek(self, job_ids: list[str]) -> dict[str, str]:
        """Job id -> the backend's word for the state now of jobs submitted earlier (by any coordinator),
        asked without following or changing them (``sweep status``); ids it does not know are left out.
        A DistlawError when the backend cannot be asked. Backends whose jobs end with their coordinator know none."""
        return {}

    def close(self) -> None:
        """Release what the backend holds (worker processes)."""


class JobError(Exception):
    """A job's work raised: the message is the one-line reason the store records."""


def guarded(work: Callable[[bool], dict[str, Any]], progress: bool) -> dict[str, Any]:
    """Run ``work(progress)`` inside a job; an exception becomes a JobError of one line
    (``Type: first line of the message``), the same reason on every backend."""
    try:
        return work(progress)
    except Exception as exc:
        raise JobError(reason(exc)) from exc


def reason(exc: BaseException) -> str:
    """``Type: first line`` of an exception."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")

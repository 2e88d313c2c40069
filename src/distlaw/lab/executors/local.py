"""The ``local`` backend: jobs as processes on this machine (today's sweeps).

One worker runs each job in this process when it is submitted (with its own progress bar);
several run in spawned worker processes. Local jobs do not outlive the coordinator: a worker whose
coordinator is gone (killed, even by SIGKILL) exits within a second (``_exit_with_parent``), so a sweep
started again never trains the same run beside an orphan; it submits the interrupted runs again and they
resume from their checkpoints.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor

from distlaw.lab.executors import Executor, Handle, Job, JobError, JobState, guarded


ORPHAN_CHECK_S = 0.5


def _exit_with_parent(parent: int) -> None:
    """A worker's initializer: a daemon thread that ends the worker once its coordinator ``parent`` is gone."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="distlaw-orphan-watch").start()


class LocalExecutor(Executor):
    """``workers`` jobs at once; ``progress`` shows an in-process job's bar (workers == 1)."""

    kind = "local"
    poll_s = 0.1

    def __init__(self, workers: int, progress: bool = True) -> None:
        self.slots = workers
        self.progress = progress
        self._pool: ProcessPoolExecutor | None = None  # started on the first job

    def submit(self, job: Job, after: tuple[Handle, ...] = ()) -> Handle:
        assert not after, "local jobs start when their needs are done"
        if self.slots != 1:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.slots, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_exit_with_parent, initargs=(os.getpid(),))
            return Handle(job.name, None, None, self._pool.submit(guarded, job.work, False))
        done: Future = Future()
        try:
            done.set_result(guarded(job.work, self.progress))
        except JobError as exc:
            done.set_exception(exc)
        return Handle(job.name, None, None, done)

    def state(self, handle: Handle) -> JobState:
        future: Future = handle.ref
        if not future.done():
            return JobState("running", "RUNNING")
        error = future.exception()
        if error is not None:
            return JobState("failed", "FAILED", error=str(error) if isinstance(error, JobError) else f"{type(error).__name__}: {error}")
        return JobState("done", "COMPLETED", result=future.result())

    def cancel(self, handle: Handle) -> None:
        handle.ref.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

"""Shared by the benchmark scripts: the two cores every timing is pinned to (the CI machine's count)."""

from __future__ import annotations

import os


def pin_two_cores() -> list[int] | None:
    """Restrict this process to two CPU cores where the OS allows it."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))[:2]
    os.sched_setaffinity(0, cores)
    return cores

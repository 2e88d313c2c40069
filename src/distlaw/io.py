"""File helpers: tables in CSV or Parquet, and atomic writes (never a half-written result)."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from distlaw.errors import DistlawError

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def _default_mode() -> int:
    """Permissions a plain ``open(path, "w")`` would give (mkstemp's 0600 would hide results from others)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _default_mode())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def check_output_path(path: str | os.PathLike[str], suffixes: tuple[str, ...] = (), what: str = "output") -> Path:
    """Refuse an output file before any work is done: a wrong suffix, a directory, a missing parent.

    File outputs (tables, JSON, figures, reports) need an existing folder: a typo in a path is an
    error, not a new folder tree. Run directories and stores create their parents (see their docs)."""
    p = Path(path)
    if suffixes and p.suffix.lower() not in suffixes:
        raise DistlawError(f"{p}: the {what} must end in {', '.join(suffixes)}")
    if p.is_dir():
        raise DistlawError(f"{p}: is a folder; give a file name for the {what}")
    parent = p.parent
    if not parent.is_dir():
        raise DistlawError(f"{p}: folder {parent} does not exist (create it first)")
    if not os.access(parent, os.W_OK):
        raise DistlawError(f"{p}: folder {parent} is not writable")
    return p


def process_alive(pid: int | None) -> bool:
    """Whether process ``pid`` runs on this machine; a dead one, or a zombie nobody reaped, does not."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: trust kill(pid, 0)
    return state not in ("Z", "X")


def _remove_abandoned(target: Path) -> None:
    """Delete temporary directories of ``target`` left by processes that died mid-build (killed)."""
    for leftover in target.parent.glob(f".{target.name}.*"):
        pid = leftover.name[len(target.name) + 2 :].split(".", 1)[0]
        if leftover.is_dir() and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


@contextmanager
def atomic_directory(path: str | os.PathLike[str], done_marker: str | None = None) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; rename it to ``path`` only if the block succeeds.

    With ``done_marker``, losing the rename race to another process whose finished ``path`` holds
    that file is not an error (both built the same thing). The temporary directory carries this
    process's id, so one left by a killed build is deleted by the next build of ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", dir=target.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, target)
        except OSError:
            if done_marker is None or not (target / done_marker).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def to_jsonable(obj: Any) -> Any:
    """NumPy scalars/arrays and non-finite floats made JSON-safe (NaN/inf become null)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write ``obj`` as indented JSON (made JSON-safe by :func:`to_jsonable`), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(to_jsonable(obj), indent=2) + "\n")


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV or Parquet table; a missing or unreadable file is a DistlawError."""
    p = Path(path)
    if p.is_dir():
        raise DistlawError(f"{p}: is a folder, not a table (give a .csv or .parquet file)")
    if not p.is_file():
        raise DistlawError(f"{p}: no such file")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
        return pd.read_csv(p)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DistlawError(f"{p}: cannot read table ({first})") from exc


def write_table(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a table as CSV or Parquet (by suffix), atomically."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DistlawError(f"{p}: output must end in .csv or .parquet")
    with atomic_path(p) as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)

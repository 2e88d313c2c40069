"""The run store: every planned, running, finished or failed lab run in one SQLite database.

Each run is one row keyed by its name (and by ``RunSpec.key()``, a content hash) holding its spec,
shape, parameters, tokens, FLOPs, teacher, losses, wall time, status and checkpoint path; table
``jobs`` holds the last job a sweep's executor ran for each run or shared build (its backend, job id,
state and log path; added by ``CREATE TABLE IF NOT EXISTS``, so older stores open unchanged). Writes
are short ``BEGIN IMMEDIATE`` transactions in WAL mode, written by one sweep coordinator (jobs on a
cluster never open the store); the file is opened through SQLite only, never as a plain file, which would drop
the process's locks (``_check_sqlite_file``). Run directories live beside the database: ``RUNS.db`` keeps them in
``RUNS.runs/<name>``.

``runs_table`` turns finished runs into the runs table that ``distlaw fit`` reads (Busbridge et al.
2025, arXiv 2502.08606: N non-embedding, D tokens, L validation cross-entropy; distilled rows add
the teacher's N_T, D_T and L_T).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from distlaw.errors import DistlawError
from distlaw.io import process_alive
from distlaw.lab.config import RunSpec
from distlaw.runs import validate_runs

STATUSES = ("planned", "running", "done", "failed")
RESULT_FIELDS = (
    "total_params",
    "flops",
    "teacher_inference_flops",
    "loss",
    "teacher_loss",
    "teacher_params",
    "wall_time_s",
    "steps",
    "checkpoint",
)
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    name TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('supervised', 'distilled')),
    teacher TEXT,
    spec TEXT NOT NULL,
    n_layers INTEGER NOT NULL,
    d_model INTEGER NOT NULL,
    params INTEGER NOT NULL,
    planned_tokens INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('planned', 'running', 'done', 'failed')),
    pid INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    planned_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    tokens INTEGER,
    total_params INTEGER,
    flops REAL,
    teacher_inference_flops REAL,
    loss REAL,
    teacher_loss REAL,
    teacher_params INTEGER,
    wall_time_s REAL,
    steps INTEGER,
    checkpoint TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS members (
    sweep TEXT NOT NULL,
    protocol TEXT NOT NULL,
    role TEXT NOT NULL,
    name TEXT NOT NULL REFERENCES runs(name),
    PRIMARY KEY (sweep, protocol, role, name)
);
CREATE TABLE IF NOT EXISTS teacher_caches (
    directory TEXT PRIMARY KEY,
    teacher TEXT NOT NULL,
    k INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    build_flops REAL NOT NULL,
    wall_time_s REAL NOT NULL,
    built_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY,
    executor TEXT NOT NULL,
    job_id TEXT,
    state TEXT NOT NULL,
    log TEXT,
    submitted_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
RUNS_DIR_KEY = "runs_dir"


@dataclass(frozen=True)
class PlannedRun:
    """A run as a sweep plans it: the spec, and which protocol wants it in which role."""

    spec: RunSpec
    protocol: str
    role: str  # "teacher", "student" or "baseline"


@dataclass(frozen=True)
class JobRecord:
    """The last job an executor ran for a run or a shared build (table ``jobs``)."""

    name: str
    executor: str  # "local", "slurm"
    job_id: str | None  # the backend's id (Slurm job id); None for a local process
    state: str  # the backend's word (PENDING, RUNNING, COMPLETED, FAILED, ...)
    log: str | None
    submitted_at: float
    started_at: float | None
    ended_at: float | None


@dataclass(frozen=True)
class RunRecord:
    """One row of the store."""

    name: str
    key: str
    kind: str
    teacher: str | None
    spec: RunSpec
    params: int
    status: str
    attempts: int
    pid: int | None
    tokens: int | None
    loss: float | None
    teacher_loss: float | None
    wall_time_s: float | None
    error: str | None

    @property
    def planned_tokens(self) -> int:
        return self.spec.tokens

    @property
    def interrupted(self) -> bool:
        """Left ``running`` by a process that no longer exists (killed or crashed): the next sweep resumes it."""
        return self.status == "running" and not process_alive(self.pid)


def runs_dir_of(store_path: str | os.PathLike[str]) -> Path:
    """The default run folders of the store at ``store_path``: ``RUNS.db`` -> ``RUNS.runs`` (absolute)."""
    return Path(store_path).resolve().with_suffix(".runs")


def resolve_runs_dir(store_path: str | os.PathLike[str], runs_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the run folders of the store at ``store_path`` are, or will be once a sweep runs: the folder
    recorded in the store, else ``runs_dir``, else the default; a ``runs_dir`` other than the recorded one
    is a DistlawError. Writes nothing (a store that does not exist yet is not created)."""
    if not Path(store_path).is_file():
        check_store(Path(store_path))
        return runs_dir_of(store_path) if runs_dir is None else Path(runs_dir).resolve()
    with RunStore(store_path, create=False) as store:
        return store.check_runs_dir(runs_dir)


def check_store(path: Path, create: bool = True) -> Path:
    """Refuse what cannot be a run store before it is opened: a folder, a file of another kind, or (with
    ``create=False``) a missing file. A new store may create its parent folders."""
    if path.is_dir():
        raise DistlawError(f"{path}: is a folder; a run store is a SQLite file (e.g. RUNS.db)")
    if path.suffix.lower() in (".csv", ".parquet", ".toml", ".json"):
        raise DistlawError(f"{path}: a run store is a SQLite file (e.g. RUNS.db), not {path.suffix}")
    if not path.exists():
        if not create:
            raise DistlawError(f"{path}: no such run store (plan a sweep into it first)")
        return path
    _check_sqlite_file(path)
    return path


def _check_sqlite_file(path: Path) -> None:
    """Refuse a file whose header is not SQLite's, read by SQLite itself: never open the store with a
    plain file descriptor. POSIX advisory locks belong to the process, so closing any descriptor of the
    database file drops the locks of every connection this process holds to it; another process that
    then closes its own last connection believes it is the last, checkpoints and deletes the -wal and
    -shm files under the live ones (https://sqlite.org/howtocorrupt.html, section 2.2), whose next
    statement fails with "disk I/O error" (or whose writes are lost). SQLite's own connections share
    their locks within a process and defer such closes, so a second connection is safe."""
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as probe:
            probe.execute("PRAGMA schema_version")
    except sqlite3.Error as exc:
        why = "not a SQLite file, so not a run store" if getattr(exc, "sqlite_errorname", None) == "SQLITE_NOTADB" else f"cannot be opened as a run store ({exc})"
        raise DistlawError(f"{path}: {why}") from exc


class RunStore:
    """A SQLite run store at ``path``; ``create=False`` makes a missing file a DistlawError."""

    def __init__(self, path: str | os.PathLike[str], create: bool = True) -> None:
        self.path = check_store(Path(path), create)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=60000")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._write() as db:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
        except sqlite3.DatabaseError as exc:
            raise DistlawError(f"{self.path}: not a run store ({exc})") from exc

    @property
    def runs_dir(self) -> Path:
        """Folder holding one directory per run (absolute: paths get stored): the one recorded at the
        store's first sweep run (``pin_runs_dir``), else ``RUNS.runs`` beside the database."""
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (RUNS_DIR_KEY,)).fetchone()
        return runs_dir_of(self.path) if row is None else Path(row[0])

    def check_runs_dir(self, runs_dir: str | os.PathLike[str] | None) -> Path:
        """The run folders for a sweep run given ``runs_dir`` (None: the store's): refuses one that differs
        from the folder recorded, or from the default where runs already started there before any was recorded."""
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (RUNS_DIR_KEY,)).fetchone()
        if runs_dir is None:
            return self.runs_dir
        asked = Path(runs_dir).resolve()
        if row is not None and asked != Path(row[0]):
            raise DistlawError(f"--runs-dir {runs_dir}: the run folders of {self.path} are in {row[0]} (recorded at its first run); "
                               "leave --runs-dir out, or use a new store")
        started = self._db.execute("SELECT 1 FROM runs WHERE status != 'planned' UNION SELECT 1 FROM jobs").fetchone()
        if row is None and started is not None and asked != runs_dir_of(self.path):
            raise DistlawError(f"--runs-dir {runs_dir}: runs of {self.path} already started in {runs_dir_of(self.path)}; "
                               "leave --runs-dir out, or use a new store")
        return asked

    def pin_runs_dir(self, runs_dir: str | os.PathLike[str] | None = None) -> Path:
        """Record where the run folders live (``runs_dir``, else the default) unless the store has them
        already; returns them. A different ``runs_dir`` later is a DistlawError (``check_runs_dir``)."""
        with self._write() as db:
            folder = self.check_runs_dir(runs_dir)
            db.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", (RUNS_DIR_KEY, str(folder)))
        return self.runs_dir

    def run_dir(self, name: str) -> Path:
        return self.runs_dir / name

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; rolled back if the block raises."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # planning -----------------------------------------------------------------------------------

    def add_plan(self, sweep: str, plan: list[PlannedRun]) -> int:
        """Insert a sweep's runs as ``planned`` in one transaction; return how many were new.

        Re-planning is idempotent. A name already stored with a different spec, or a spec already
        stored under another name, is a DistlawError and nothing is written.
        """
        now = time.time()
        new = 0
        with self._write() as db:
            for entry in plan:
                spec = entry.spec
                key = spec.key()
                row = db.execute("SELECT name, key FROM runs WHERE name = ? OR key = ?", (spec.name, key)).fetchone()
                if row is None:
                    db.execute(
                        "INSERT INTO runs (name, key, kind, teacher, spec, n_layers, d_model, params,"
                        " planned_tokens, status, planned_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'planned', ?)",
                        (
                            spec.name,
                            key,
                            spec.kind,
                            spec.teacher,
                            spec.model_dump_json(),
                            spec.shape.n_layers,
                            spec.shape.d_model,
                            spec.non_embedding_params,
                            spec.tokens,
                            now,
                        ),
                    )
                    new += 1
                elif row["name"] != spec.name or row["key"] != key:
                    raise DistlawError(
                        f"{self.path}: run '{spec.name}' clashes with stored run '{row['name']}' "
                        "(same name with another spec, or same spec under another name); use a new store"
                    )
                db.execute(
                    "INSERT OR IGNORE INTO members (sweep, protocol, role, name) VALUES (?, ?, ?, ?)",
                    (sweep, entry.protocol, entry.role, spec.name),
                )
        return new

    # running ------------------------------------------------------------------------------------

    def claim(self, name: str, pid: int, retry_failed: bool = False) -> bool:
        """Mark a run ``running`` for process ``pid`` if it is planned, failed (with ``retry_failed``)
        or left ``running`` by a process that no longer exists; False if someone else has it or it is done."""
        with self._write() as db:
            row = db.execute("SELECT status, pid FROM runs WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise DistlawError(f"{self.path}: no run named '{name}'")
            status = row["status"]
            free = (
                status == "planned"
                or (status == "failed" and retry_failed)
                or (status == "running" and (row["pid"] == pid or not process_alive(row["pid"])))
            )
            if not free:
                return False
            db.execute(
                "UPDATE runs SET status = 'running', pid = ?, attempts = attempts + 1, started_at = ?, error = NULL"
                " WHERE name = ?",
                (pid, time.time(), name),
            )
        return True

    def adopt(self, name: str, pid: int) -> bool:
        """Take over a ``running`` run whose coordinator died, for process ``pid``, without counting a new
        attempt (its job still runs, e.g. on Slurm); False if it is not running or a live process holds it."""
        with self._write() as db:
            row = db.execute("SELECT status, pid FROM runs WHERE name = ?", (name,)).fetchone()
            if row is None or row["status"] != "running" or (row["pid"] != pid and process_alive(row["pid"])):
                return False
            db.execute("UPDATE runs SET pid = ? WHERE name = ?", (pid, name))
        return True

    def release(self, name: str) -> None:
        """Put a ``running`` run back to ``planned`` (its job was cancelled before it could start)."""
        with self._write() as db:
            db.execute("UPDATE runs SET status = 'planned', pid = NULL WHERE name = ? AND status = 'running'", (name,))

    def finish(self, name: str, result: Mapping[str, Any]) -> None:
        """Record a finished run's result (the fields of ``RunResult``) and mark it ``done``."""
        values = {field: result.get(field) for field in RESULT_FIELDS}
        values["checkpoint"] = None if values["checkpoint"] is None else str(values["checkpoint"])
        assignments = ", ".join(f"{field} = :{field}" for field in values)
        with self._write() as db:
            db.execute(
                f"UPDATE runs SET {assignments}, tokens = :tokens, status = 'done', finished_at = :now,"
                " pid = NULL, error = NULL WHERE name = :name",
                {**values, "tokens": result["tokens"], "now": time.time(), "name": name},
            )

    def fail(self, name: str, error: str) -> None:
        """Mark a run ``failed`` with a one-line reason."""
        line = (error.strip().splitlines() or ["unknown error"])[0]
        with self._write() as db:
            db.execute(
                "UPDATE runs SET status = 'failed', pid = NULL, finished_at = ?, error = ? WHERE name = ?",
                (time.time(), line, name),
            )

    def add_cache(self, directory: Path, teacher: str, manifest: Mapping[str, Any], wall_time_s: float) -> None:
        """Record a teacher cache built for a sweep: its teacher-inference FLOPs, paid once for all its students."""
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO teacher_caches (directory, teacher, k, tokens, build_flops, wall_time_s, built_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (str(directory), teacher, manifest["k"], manifest["tokens"], manifest["build_flops"], wall_time_s, time.time()),
            )

    def record_job(self, name: str, executor: str, job_id: str | None, state: str, log: str | None) -> None:
        """Record a job just submitted for ``name`` (replacing the previous one's row)."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO jobs (name, executor, job_id, state, log, submitted_at) VALUES (?, ?, ?, ?, ?, ?)",
                (name, executor, job_id, state, log, time.time()),
            )

    def update_job(self, name: str, state: str, started: bool = False, ended: bool = False) -> None:
        """A job's new state; ``started``/``ended`` stamp the first time it ran and when it ended."""
        now = time.time()
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET state = ?, started_at = CASE WHEN ? AND started_at IS NULL THEN ? ELSE started_at END,"
                " ended_at = CASE WHEN ? THEN ? ELSE ended_at END WHERE name = ?",
                (state, started, now, ended, now, name),
            )

    # reading ------------------------------------------------------------------------------------

    def jobs(self) -> dict[str, JobRecord]:
        """Run or shared-build name -> its last job."""
        rows = self._db.execute("SELECT * FROM jobs ORDER BY submitted_at").fetchall()
        return {row["name"]: JobRecord(**dict(row)) for row in rows}

    def caches(self, teachers: set[str] | None = None) -> list[dict[str, Any]]:
        """The teacher caches recorded in the store (only those of ``teachers``), oldest first."""
        rows = [dict(row) for row in self._db.execute("SELECT * FROM teacher_caches ORDER BY rowid").fetchall()]
        return [row for row in rows if teachers is None or row["teacher"] in teachers]

    def get(self, name: str) -> RunRecord | None:
        row = self._db.execute("SELECT * FROM runs WHERE name = ?", (name,)).fetchone()
        return None if row is None else _record(row)

    def records(self, sweep: str | None = None, status: str | None = None) -> list[RunRecord]:
        """Runs in planning order, optionally only those of one sweep and/or one status."""
        if status is not None and status not in STATUSES:
            raise DistlawError(f"unknown status '{status}' (expected one of {', '.join(STATUSES)})")
        query = "SELECT * FROM runs WHERE (? IS NULL OR status = ?)"
        args: list[Any] = [status, status]
        if sweep is not None:
            query += " AND name IN (SELECT name FROM members WHERE sweep = ?)"
            args.append(sweep)
        rows = self._db.execute(query + " ORDER BY rowid", args).fetchall()
        return [_record(row) for row in rows]

    def memberships(self, sweep: str | None = None) -> dict[str, list[tuple[str, str]]]:
        """Run name -> [(protocol, role), ...] (of one sweep, or of all)."""
        rows = self._db.execute(
            "SELECT name, protocol, role FROM members WHERE (? IS NULL OR sweep = ?) ORDER BY protocol, role",
            (sweep, sweep),
        ).fetchall()
        out: dict[str, list[tuple[str, str]]] = {}
        for row in rows:
            out.setdefault(row["name"], []).append((row["protocol"], row["role"]))
        return out

    def sweeps(self) -> list[str]:
        """Names of the sweeps planned into the store, in name order."""
        return [row[0] for row in self._db.execute("SELECT DISTINCT sweep FROM members ORDER BY sweep").fetchall()]

    def check_sweep(self, sweep: str) -> None:
        """Refuse a sweep that was never planned into this store, naming the ones that were."""
        if sweep not in self.sweeps():
            planned = ", ".join(self.sweeps()) or "none"
            raise DistlawError(f"{self.path}: sweep '{sweep}' was never planned into this store (planned: {planned}); run `distlaw sweep plan` first")

    def counts(self, sweep: str | None = None) -> dict[str, int]:
        """Number of runs in each status."""
        counts = dict.fromkeys(STATUSES, 0)
        for record in self.records(sweep):
            counts[record.status] += 1
        return counts

    def frame(self, sweep: str | None = None) -> pd.DataFrame:
        """Every stored column of the runs (of one sweep), as a DataFrame in planning order."""
        query = "SELECT * FROM runs"
        args: tuple[Any, ...] = ()
        if sweep is not None:
            query += " WHERE name IN (SELECT name FROM members WHERE sweep = ?)"
            args = (sweep,)
        return pd.read_sql_query(query + " ORDER BY rowid", self._db, params=args).drop(columns=["spec"])


def _record(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        name=row["name"],
        key=row["key"],
        kind=row["kind"],
        teacher=row["teacher"],
        spec=RunSpec.model_validate_json(row["spec"]),
        params=row["params"],
        status=row["status"],
        attempts=row["attempts"],
        pid=row["pid"],
        tokens=row["tokens"],
        loss=row["loss"],
        teacher_loss=row["teacher_loss"],
        wall_time_s=row["wall_time_s"],
        error=row["error"],
    )


EXPORT_COLUMNS = (
    "kind",
    "params",
    "tokens",
    "loss",
    "teacher_params",
    "teacher_tokens",
    "teacher_loss",
    "name",
    "teacher",
    "protocols",
    "pruned_to",
    "flops",
    "teacher_inference_flops",
    "wall_time_s",
)


def runs_table(store: RunStore, sweep: str | None = None) -> pd.DataFrame:
    """Finished runs as the runs table ``distlaw fit`` reads (``distlaw.runs``), validated.

    ``params`` is non-embedding N, ``tokens`` the tokens actually trained on, ``loss`` the held-out
    cross-entropy. Distilled rows take N_T and D_T from the teacher's row when the teacher is a run
    in the store (an outside checkpoint leaves D_T empty) and L_T as measured on the student's
    held-out tokens. Extra columns (name, teacher, protocols, the target size ``pruned_to`` of a
    student started from a pruned teacher, FLOPs, wall time) pass through.
    """
    frame = store.frame(sweep)
    done = frame[frame["status"] == "done"].reset_index(drop=True)
    if done.empty:
        raise DistlawError(f"{store.path}: no finished runs to export" + (f" in sweep '{sweep}'" if sweep else ""))
    by_name = frame.set_index("name")
    teacher_rows = done["teacher"].where(done["teacher"].isin(by_name.index))
    done["teacher_tokens"] = teacher_rows.map(by_name["tokens"])
    teacher_params = teacher_rows.map(by_name["params"])
    done["teacher_params"] = done["teacher_params"].where(done["teacher_params"].notna(), teacher_params)
    done["teacher_loss"] = done["teacher_loss"].where(done["teacher_loss"].notna(), teacher_rows.map(by_name["loss"]))
    supervised = done["kind"] == "supervised"
    done.loc[supervised, ["teacher_params", "teacher_tokens", "teacher_loss"]] = float("nan")
    specs = {record.name: record.spec for record in store.records(sweep, "done")}
    done["pruned_to"] = [float(specs[n].init.target_params) if specs[n].init else float("nan") for n in done["name"]]
    members = store.memberships(sweep)
    done["protocols"] = [";".join(sorted({p for p, _ in members.get(n, [])})) for n in done["name"]]
    table = done[list(EXPORT_COLUMNS)]
    return validate_runs(table, source=f"{store.path} export")

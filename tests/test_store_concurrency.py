"""Readers of a run store while its sweep coordinator writes it (``sweep status``, ``runs list|export`` in
another process). POSIX advisory locks belong to a process: had the coordinator's process closed a plain
file descriptor of the database, its connections would lose their locks, and a reader closing its last
connection would checkpoint and delete the -wal and -shm files under the coordinator, whose next
statement failed with "disk I/O error" or whose writes were lost (https://sqlite.org/howtocorrupt.html 2.2)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from distlaw.lab import train
from distlaw.store import RunStore, check_store, resolve_runs_dir
from conftest import TINY_SWEEP
from test_sweep import FakeTrainer

READ = "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); print(db.execute(sys.argv[2]).fetchone()[0]); db.close()"


def read_elsewhere(store: Path, query: str) -> str:
    """One query in another process, through a connection it opens and closes (its last one)."""
    return subprocess.run([sys.executable, "-c", READ, str(store), query], check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("open_again", [
    lambda path: RunStore(path, create=False).close(),  # the CLI's report callback during a sweep
    lambda path: check_store(path, create=False),  # validate --store, distill --teacher NAME --store
    lambda path: resolve_runs_dir(path),  # run_sweep, sweep status
], ids=["RunStore", "check_store", "resolve_runs_dir"])
def test_a_reader_elsewhere_leaves_a_live_connection_working(tmp_path, open_again):
    path = tmp_path / "RUNS.db"
    with RunStore(path) as live:  # the coordinator's connection, open for the whole sweep
        live.counts()
        open_again(path)  # the same process opens the store once more, as sweeps do
        assert read_elsewhere(path, "SELECT count(*) FROM settings") == "0"
        assert Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()  # the reader knew it was not the last
        live.pin_runs_dir()  # a write after the reader left
        assert read_elsewhere(path, "SELECT value FROM settings") == str(tmp_path / "RUNS.runs")  # not lost
        with RunStore(path, create=False) as again:
            assert again.runs_dir == tmp_path / "RUNS.runs"  # no "disk I/O error"


def test_status_list_and_export_during_a_sweep(cli, tmp_path, monkeypatch):
    """A real `distlaw sweep run` (fake trainer, in this process) while real readers run the CLI in other processes."""
    config, store = tmp_path / "tiny.toml", tmp_path / "RUNS.db"
    config.write_text(TINY_SWEEP)
    status = ("sweep", "status", config, "--store", store, "--json")
    readers = iter([("runs", "list", "--store", store, "--json"), status, ("runs", "export", "--store", store, tmp_path / "runs.csv"), status])
    fake = FakeTrainer()

    def train_while_read(spec, run_dir, **kwargs):
        reader = subprocess.run([sys.executable, "-c", "from distlaw.cli.app import main; main()", *map(str, next(readers))],
                                capture_output=True, text=True)
        assert reader.returncode == 0, reader.stderr
        return fake(spec, run_dir, **kwargs)

    monkeypatch.setattr(train, "train_run", train_while_read)
    result = cli("sweep", "run", config, "--store", store, "--workers", "1")  # not --quiet: each run's line reads the store again
    assert result.code == 0, result.stderr
    assert [line.split()[1] for line in result.stdout.splitlines() if line.startswith("[")] == ["done"] * 4
    assert read_elsewhere(store, "SELECT group_concat(status) FROM runs") == "done,done,done,done"
    assert sqlite3.connect(store).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert (tmp_path / "runs.csv").read_text().count("\n") == 1 + 2  # exported after two runs finished

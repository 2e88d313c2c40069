"""Real sweeps on the default corpus with tiny models: the micro config end to end, and a SIGKILL mid-sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_SWEEP

from distlaw.runs import read_runs
from distlaw.store import RunStore

MICRO = Path(__file__).resolve().parents[1] / "configs" / "micro.toml"
KILL_CONFIG = "workers = 2\n" + TINY_SWEEP  # two workers, so that the kill reaches a pool
EXACT = ["name", "kind", "params", "tokens", "teacher", "teacher_params", "teacher_tokens", "protocols", "flops"]


@pytest.mark.slow
def test_micro_sweep_gives_a_runs_table_fit_accepts(cli, tmp_path):
    store = tmp_path / "RUNS.db"
    result = cli("sweep", "run", MICRO, "--store", store, "--json")
    assert result.code == 0, result.stderr
    summary = result.json()
    assert summary["counts"]["done"] == len(summary["trained"]) >= 10 and not summary["failed"]
    out = tmp_path / "runs.csv"
    assert cli("runs", "export", "--store", store, out).code == 0
    table = read_runs(out)
    assert set(table["kind"]) == {"supervised", "distilled"}
    assert table["params"].max() <= 100_000
    assert len(set(";".join(table["protocols"]).split(";"))) >= 2
    distilled = table[table["kind"] == "distilled"]
    assert distilled[["teacher_params", "teacher_tokens", "teacher_loss"]].notna().all().all()
    fitted = cli("fit", out, "--grid", "coarse", "--json")  # the quick grid: this checks the table, not the science
    assert fitted.code == 0, fitted.stderr
    for law in ("supervised", "distillation"):
        assert all(np.isfinite(v) for v in fitted.json()[law]["coefficients"].values())
    again = cli("sweep", "run", MICRO, "--store", store, "--json").json()
    assert again["trained"] == [] and again["skipped"] == len(table)  # finished sweeps are not retrained


def _sweep(config: Path, store: Path, log: Path) -> subprocess.Popen:
    """``distlaw sweep run`` in its own process group (so the kill reaches its workers too)."""
    command = [sys.executable, "-m", "distlaw.cli.app", "sweep", "run", str(config), "--store", str(store), "--json"]
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _export(cli, store: Path, out: Path) -> pd.DataFrame:
    result = cli("runs", "export", "--store", store, out)
    assert result.code == 0, result.stderr
    return read_runs(out)


def _status(cli, config: Path, store: Path) -> dict[str, str]:
    result = cli("sweep", "status", config, "--store", store, "--json")
    return {row["name"]: row["status"] for row in result.json()["runs"]}


def _wait_for_mid_run(store: Path, process: subprocess.Popen, timeout: float = 240) -> str:
    """Poll the store until one run is done and another is running with a resume checkpoint on disk."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the sweep ended before it could be killed"
        if store.exists():
            with RunStore(store, create=False) as s:
                records = s.records()
                done = any(r.status == "done" for r in records)
                running = [r.name for r in records if r.status == "running" and (s.run_dir(r.name) / "resume.pt").is_file()]
            if done and running:
                return running[0]
        time.sleep(0.05)
    raise AssertionError("no run was mid-way within the timeout")


@pytest.mark.slow
def test_sigkilled_sweep_resumes_to_the_uninterrupted_table(cli, tmp_path):
    config = tmp_path / "kill.toml"
    config.write_text(KILL_CONFIG)
    reference_store = tmp_path / "reference.db"  # uninterrupted, one worker in this process
    assert cli("sweep", "run", config, "--store", reference_store, "--workers", "1", "--json").code == 0
    expected = _export(cli, reference_store, tmp_path / "reference.csv")

    store = tmp_path / "killed.db"
    victim = _sweep(config, store, tmp_path / "killed.log")
    interrupted = _wait_for_mid_run(store, victim)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=60)
    with RunStore(store, create=False) as s:
        assert s.get(interrupted).status == "running"  # left behind by the dead process
        assert not (s.run_dir(interrupted) / "result.json").exists()
    deadline = time.monotonic() + 30  # the killed workers may take a moment to die
    while _status(cli, config, store)[interrupted] != "interrupted" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _status(cli, config, store)[interrupted] == "interrupted"
    restarted = _sweep(config, store, tmp_path / "restarted.log")
    assert restarted.wait(timeout=600) == 0, (tmp_path / "restarted.log").read_text()

    actual = _export(cli, store, tmp_path / "killed.csv")
    assert len(actual) == len(expected) == actual["name"].nunique()  # no duplicate or lost rows
    expected, actual = (t.sort_values("name").reset_index(drop=True) for t in (expected, actual))
    pd.testing.assert_frame_equal(actual[EXACT], expected[EXACT])
    for column in ("loss", "teacher_loss"):
        np.testing.assert_allclose(actual[column], expected[column], rtol=1e-6, equal_nan=True)
    with RunStore(store, create=False) as s:
        assert s.get(interrupted).attempts == 2 and s.counts() == {"planned": 0, "running": 0, "done": len(actual), "failed": 0}

"""Smoke tests of the local single-node Slurm (scripts/slurm-local.sh): jobs run and are accounted,
impossible requests are refused at submission, and submitit gets results and job states from it.

Skipped without a running cluster; in CI (CI=true) they fail instead, since .ci/run starts it."""

from __future__ import annotations

import functools
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import require_service

HINT = "no Slurm running (bash scripts/slurm-local.sh install start)"
pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]


def _run(*cmd: str, cwd: Path | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)


@functools.cache
def _node_up() -> bool:
    """The node answers: idle, or busy with others' jobs (mix, alloc, completing). Asked once per
    session, since sinfo retries for ~10 s when slurmctld is down."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        out = _run("sinfo", "-h", "-o", "%t", timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    states = out.stdout.split()
    return out.returncode == 0 and any(s in ("idle", "mix", "alloc", "comp") for s in states)


@pytest.fixture
def slurm() -> None:
    require_service(_node_up(), HINT)


def _sacct_state(job_id: str) -> str:
    """The job's own accounting state (not its steps'), '' while accounting has no record yet."""
    out = _run("sacct", "-j", job_id, "-n", "-X", "-P", "-o", "State")
    return out.stdout.strip().splitlines()[0].split()[0] if out.stdout.strip() else ""


def _wait_done(job_id: str, timeout: float = 90) -> str:
    """Wait until the job has left the queue and accounting shows a final state; return it."""
    end = time.monotonic() + timeout
    state = ""
    while time.monotonic() < end:
        queued = _run("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip()
        state = _sacct_state(job_id)
        if not queued and state and state not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING"):
            return state
        time.sleep(0.5)
    pytest.fail(f"job {job_id} not finished after {timeout:.0f} s (squeue: {queued!r}, sacct: {state!r})")


def test_sbatch_job_runs_and_is_accounted(slurm, tmp_path):
    out_file = tmp_path / "job.out"
    sub = _run("sbatch", "--parsable", "-J", "distlaw-smoke", "-o", str(out_file), "-t", "1",
               "--wrap", "echo distlaw-slurm-ok; hostname", cwd=tmp_path)
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.strip().split(";")[0]
    assert job_id.isdigit(), sub.stdout
    assert _wait_done(job_id) == "COMPLETED"
    assert out_file.read_text().splitlines()[0] == "distlaw-slurm-ok"


@pytest.mark.parametrize("request_args", [["-c", "64"], ["-p", "nope"], ["-N", "2"]],
                         ids=["64-cpus", "unknown-partition", "two-nodes"])
def test_impossible_request_refused_at_submission(slurm, tmp_path, request_args):
    sub = _run("sbatch", "--parsable", *request_args, "--wrap", "true", cwd=tmp_path)
    assert sub.returncode != 0, f"sbatch accepted {request_args}: job {sub.stdout.strip()}"
    assert "error" in sub.stderr.lower(), sub.stderr
    assert not sub.stdout.strip()


def test_submitit_result_and_accounted_state(slurm, tmp_path):
    submitit = pytest.importorskip("submitit")

    def answer() -> int:  # local, so cloudpickle ships it by value (tests/ is not on the job's path)
        return 42

    executor = submitit.AutoExecutor(folder=tmp_path / "submitit")
    assert executor.cluster == "slurm"
    executor.update_parameters(slurm_partition="debug", timeout_min=5, cpus_per_task=1, name="distlaw-submitit")
    job = executor.submit(answer)
    end = time.monotonic() + 120
    while not job.done(force_check=True):
        assert time.monotonic() < end, f"submitit job {job.job_id} not done after 120 s: {job.state}"
        time.sleep(0.5)
    assert job.result() == 42
    # States come from sacct (accounting); without slurmdbd submitit says UNKNOWN. job.state is
    # cached (it can still say PENDING once the result is in): get_info() forces a sacct call.
    end = time.monotonic() + 30
    while job.get_info(mode="force").get("State") != "COMPLETED" and time.monotonic() < end:
        time.sleep(1)
    assert job.state == "COMPLETED"
    assert _sacct_state(str(job.job_id)) == "COMPLETED"

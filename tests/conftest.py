"""Shared fixtures: run the CLI in-process and capture its output and exit code."""

from __future__ import annotations

import json
import os

# One thread for BLAS/OpenMP in the tests and every process they start: results that depend on the
# reduction order (fits, training) then mean the same on every machine. Set before numpy loads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

# Epoch AI's points extracted from Chinchilla's Fig. 4 (Besiroglu et al. 2024), public data.
CHINCHILLA_CSV = Path(__file__).resolve().parent / "data" / "chinchilla_epoch_svg_extracted.csv"
# The smallest real sweep: 4 runs of 31-61 steps (the M = 20 baseline is the teacher itself), used
# wherever a test needs a whole sweep to kill, restart or compare across executors.
TINY_SWEEP = """
name = "tiny"
checkpoint_every = 10
eval_tokens = 8192
[model]
aspect_ratio = 8
head_dim = 8
[[protocol]]
type = "fixedm-fixedm"
teachers = [6256]
students = [6256]
student_ratios = [20, 40]
"""


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def cli(capsys):
    """Call ``cli("predict", "--params", "1e9", ...)`` and get a CliResult."""
    from distlaw.cli.app import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


@pytest.fixture
def chinchilla_csv() -> Path:
    return CHINCHILLA_CSV


# CI machines are shared and slow: property tests are judged on correctness, not speed.
settings.register_profile("distlaw", deadline=None, max_examples=100)
settings.load_profile("distlaw")


def require_service(available: bool, reason: str) -> None:
    """Skip a test whose service (Slurm, Chromium, ...) is absent, with a one-line reason; in CI
    (CI=true) fail instead, since .ci/run must have started every service the tests need."""
    if available:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test` runs two workers), the tests on the one Slurm cluster run on
    one worker, one after another: they read the cluster's job history and share its two CPUs."""
    for item in items:
        if item.get_closest_marker("slurm") is not None:
            item.add_marker(pytest.mark.xdist_group("slurm"))

"""Shared fixtures: run the CLI in-process and capture its output and exit code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
CHINCHILLA_CSV = SHARED / "data" / "chinchilla_epoch_svg_extracted.csv"


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
    if not CHINCHILLA_CSV.is_file():
        pytest.skip(f"{CHINCHILLA_CSV} not found (shared data lives beside the checkout)")
    return CHINCHILLA_CSV

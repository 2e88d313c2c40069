"""Atomic outputs: a directory appears whole or not at all; a killed build's leftovers are cleaned up."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from distlaw.io import atomic_directory, process_alive


def test_directory_appears_only_when_the_block_succeeds(tmp_path):
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "out") as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(tmp_path / "out") as tmp:
        (tmp / "whole.txt").write_text("whole")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (tmp_path / "out" / "whole.txt").read_text() == "whole"


def test_leftovers_of_a_killed_build_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not process_alive(dead.pid) and process_alive(os.getpid())
    abandoned = tmp_path / f".cache.{dead.pid}.abc123"
    running = tmp_path / f".cache.{os.getpid()}.def456"  # another build of ours, still going
    unrelated = tmp_path / ".cache-other.1.xyz"
    for d in (abandoned, running, unrelated):
        d.mkdir()
    with atomic_directory(tmp_path / "cache") as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert not abandoned.exists() and running.exists() and unrelated.exists()
    assert (tmp_path / "cache" / "manifest.json").is_file()

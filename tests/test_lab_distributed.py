"""The multi-process path on CPU: two gloo processes under torchrun (DDP student, FSDP-sharded teacher)
give the single-process result."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from distlaw.lab import corpus

pytestmark = pytest.mark.slow


def torchrun(*args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "distlaw.cli.app", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout[proc.stdout.index("{") :])


def test_two_gloo_processes_match_one(cli, tmp_path):
    shutil.copy(next(f for f in corpus.corpus_files("shakespeare") if f.stem == "hamlet"), tmp_path / "hamlet.md")
    common = ["--corpus", str(tmp_path / "hamlet.md"), "--seq-len", "32", "--batch-size", "8", "--tokens", "4096",
              "--eval-tokens", "4128", "--cache-dir", str(tmp_path / "cache"), "--quiet", "--json"]
    one = cli("train", "--layers", "2", "--d-model", "32", *common, "--out", tmp_path / "one")
    assert one.code == 0, one.stderr
    two = torchrun("train", "--layers", "2", "--d-model", "32", *common, "--out", str(tmp_path / "two"))
    assert two["loss"] == pytest.approx(one.json()["loss"], abs=1e-5)
    assert (tmp_path / "two" / "model.safetensors").is_file()

    student = cli("distill", "--params", "3e3", "--teacher", tmp_path / "one", *common, "--out", tmp_path / "s1")
    assert student.code == 0, student.stderr
    sharded = torchrun("distill", "--params", "3e3", "--teacher", str(tmp_path / "one"), "--fsdp-teacher", *common,
                       "--out", str(tmp_path / "s2"))
    assert sharded["teacher_loss"] == pytest.approx(student.json()["teacher_loss"], abs=1e-6)
    assert sharded["loss"] == pytest.approx(student.json()["loss"], abs=1e-5)

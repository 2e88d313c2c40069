"""The distillation throughput benchmark runs end to end and reports what issue 4 asks of it (tiny settings:
this checks the script, not the speed; the numbers live in benchmarks/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "distill_throughput.py"


@pytest.mark.slow
def test_distill_throughput_reports_all_three_steps_and_the_cache(tmp_path):
    args = ["--steps", "2", "--warmup", "1", "--teacher-tokens", "1e4", "--params", "6e3", "--seq-len", "64", "--batch-size", "8",
            "--k", "64", "--kl-k", "16,64", "--work-dir", str(tmp_path)]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    for key in ("supervised_tokens_per_s", "online_tokens_per_s", "cached_tokens_per_s"):
        assert out[key] > 0
    assert out["cached_over_supervised"] == pytest.approx(out["cached_tokens_per_s"] / out["supervised_tokens_per_s"])
    assert out["cache_manifest_bytes_per_token"] == 64 * (1 + 2) + 4  # uint8 index, fp16 log-probability; fp32 rest
    errors = out["kl_error"]["by_k"]
    assert set(errors) == {"16", "64"}
    assert errors["64"]["kl_rel_error_cache"] < errors["16"]["kl_rel_error_cache"] < 1  # the error shrinks with k
    assert "mfu_supervised" not in out  # MFU only on an accelerator

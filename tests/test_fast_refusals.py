"""Refused lab, fit and sweep calls are answered before torch or transformers is imported (issue 9, item 2).

All calls run one after the other in one fresh interpreter, which reports after each whether
``torch`` or ``transformers`` got imported (the first call that imports one is the culprit): a
refusal must cost what ``distlaw predict`` costs, not the 4-12 s of importing torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import contextlib, io, json, sys
from distlaw.cli.app import main
reports = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code
    reports.append({"code": code, "stderr": err.getvalue(), "heavy": sorted(m for m in ("torch", "transformers") if m in sys.modules)})
print(json.dumps(reports))
"""


def refuse_all(tmp_path: Path, calls: list[list[str]]) -> list[dict]:
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(calls)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    """A fake teacher (a folder with a config.json: enough for the checks), an empty folder, files of the wrong kind."""
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "config.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("not a run")
    (tmp_path / "file.txt").write_text("a file")
    (tmp_path / "runs.csv").write_text("kind,params,tokens,loss\nsupervised,1e6,2e7,3.1\n")
    (tmp_path / "sweep.json").write_text("{}")
    (tmp_path / "text.db").write_text("not sqlite")
    return {"teacher": teacher, "tmp": tmp_path}


CASES = {
    "train: negative size": ["train", "--params", "-5", "--tokens", "1", "--out", "x"],
    "train: zero tokens": ["train", "--params", "5e3", "--tokens", "0", "--out", "x"],
    "train: unknown device": ["train", "--params", "5e3", "--tokens", "1e4", "--out", "x", "--device", "tpu"],
    "train: --out is a file": ["train", "--params", "5e3", "--tokens", "1e4", "--out", "file.txt"],
    "train: --out holds no run": ["train", "--params", "5e3", "--tokens", "1e4", "--out", "busy"],
    "train: bad learning rate": ["train", "--params", "5e3", "--tokens", "1e4", "--out", "x", "--lr", "-1"],
    "train: bad seq len": ["train", "--params", "5e3", "--tokens", "1e4", "--out", "x", "--seq-len", "2"],
    "train: missing corpus": ["train", "--params", "5e3", "--tokens", "1e4", "--out", "x", "--corpus", "nowhere.txt"],
    "train: tokenizer folder without tokenizer.json": ["train", "--params", "5e3", "--tokens", "1e4", "--out", "x", "--tokenizer", "empty"],
    "train: malformed bpe": ["train", "--params", "5e3", "--tokens", "1e4", "--out", "x", "--tokenizer", "bpe:many"],
    "train: bpe too small": ["train", "--params", "5e3", "--tokens", "1e4", "--out", "x", "--tokenizer", "bpe:1"],
    "train: init is no pruned model": ["train", "--init", "empty", "--tokens", "1e4", "--out", "x"],
    "distill: teacher folder without a model": ["distill", "--params", "5e3", "--tokens", "1e4", "--teacher", "empty", "--out", "x"],
    "distill: missing cache": ["distill", "--params", "5e3", "--tokens", "1e4", "--teacher-cache", "nowhere", "--out", "x"],
    "distill: bad divergence": ["distill", "--params", "5e3", "--tokens", "1e4", "--teacher", "teacher", "--divergence", "sideways", "--out", "x"],
    "distill: store not SQLite": ["distill", "--params", "5e3", "--tokens", "1e4", "--teacher", "t1", "--store", "text.db", "--out", "x"],
    "cache-teacher: out exists": ["cache-teacher", "--teacher", "teacher", "--tokens", "1e4", "--out", "empty"],
    "cache-teacher: k 0": ["cache-teacher", "--teacher", "teacher", "--tokens", "1e4", "--k", "0", "--out", "c"],
    "cache-teacher: unknown device": ["cache-teacher", "--teacher", "teacher", "--tokens", "1e4", "--out", "c", "--device", "gpu"],
    "prune: sparsity 1.5": ["prune", "teacher", "--sparsity", "1.5", "--out", "p"],
    "prune: teacher without a model": ["prune", "empty", "--params", "1e3", "--out", "p"],
    "prune: missing corpus": ["prune", "teacher", "--params", "1e3", "--out", "p", "--corpus", "nowhere"],
    "prune: out exists": ["prune", "teacher", "--params", "1e3", "--out", "empty"],
    "fit: output folder missing": ["fit", "runs.csv", "--out", "nowhere/fit.json"],
    "fit: negative bootstrap": ["fit", "runs.csv", "--bootstrap", "-1"],
    "fit: missing table": ["fit", "missing.csv"],
    "sweep plan: not TOML": ["sweep", "plan", "sweep.json", "--store", "s.db"],
    "sweep plan: store is a folder": ["sweep", "plan", "micro", "--store", "empty"],
    "sweep run: no such config": ["sweep", "run", "nowhere.toml", "--store", "s.db"],
    "sweep run: zero workers": ["sweep", "run", "micro", "--store", "s.db", "--workers", "0"],
    "train: --like folder without config.json": ["train", "--params", "5e3", "--tokens", "1e4", "--out", "x", "--like", "empty"],
    "train: unknown --family": ["train", "--params", "5e3", "--tokens", "1e4", "--out", "x", "--family", "bert"],
    "distill: --like with --family": ["distill", "--params", "5e3", "--tokens", "1e4", "--teacher", "teacher", "--like", "teacher",
                                      "--family", "gpt2", "--out", "x"],
    "design: budget smaller than one run": ["design", "--budget", "1e5", "--target", "student=1e6,tokens=2e7", "--out", "p.toml"],
    "design: unreachable target": ["design", "--budget", "1e21", "--target", "student=1e9,tokens=2e10,teacher-loss=1.0", "--out", "p.toml"],
    "design: malformed target": ["design", "--budget", "1e21", "--target", "student=1e9", "--out", "p.toml"],
    "design: two budgets": ["design", "--budget", "1e21", "--gpu-hours", "5", "--target", "student=1e9,tokens=2e10", "--out", "p.toml"],
    "design: out not toml": ["design", "--budget", "1e21", "--target", "student=1e9,tokens=2e10", "--out", "p.csv"],
    "design: no target": ["design", "--budget", "1e21", "--out", "p.toml"],
    "design: a second target unreachable": ["design", "--budget", "1e21", "--target", "student=1e9,tokens=2e10", "--target",
                                            "student=1e9,tokens=2e10,teacher-loss=1.0", "--out", "p.toml"],
    "validate: neither --store nor --runs": ["validate", "-c", "busbridge2025"],
    "validate: scale 0": ["validate", "-c", "busbridge2025", "--store", "s.db", "--scale", "0"],
    "validate: store not SQLite": ["validate", "-c", "busbridge2025", "--store", "text.db"],
    "validate: no bootstrap samples": ["validate", "-c", "busbridge2025", "--runs", "runs.csv"],
}


def test_refused_before_torch_is_imported(paths):
    reports = refuse_all(paths["tmp"], list(CASES.values()))
    for name, report in zip(CASES, reports):
        stderr = report["stderr"]
        assert report["code"] == 2, f"{name}: exit {report['code']}: {stderr}"
        assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, f"{name}: {stderr}"
        assert report["heavy"] == [], f"{name}: imported {report['heavy']} before refusing ({stderr.strip()})"
    assert not (paths["tmp"] / "x").exists() and not (paths["tmp"] / "s.db").exists()


def test_lab_config_and_checks_import_nothing_heavy():
    code = "import sys, distlaw.lab.config, distlaw.lab.checks, distlaw.lab.pruned, distlaw.lab.protocols, distlaw.store, distlaw.cli.app; " \
           "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.strip() == "[]"


def test_planning_a_sweep_imports_nothing_heavy(tmp_path):
    """Planning is arithmetic: sizes, pruned shapes (the capacity config prunes) and FLOPs need no torch."""
    (report,) = refuse_all(tmp_path, [["sweep", "plan", "capacity", "--store", "capacity.db", "--json"]])
    assert report["code"] == 0, report["stderr"]
    assert report["heavy"] == []


def test_bad_pruning_requests_are_refused_before_torch(tmp_path: Path):
    """Pruning beyond Llama (issue 11, item 4): depth, kept layers, method and family are checked from the
    teacher's config.json alone."""
    configs = {"llama": {"model_type": "llama", "num_hidden_layers": 2}, "phi3": {"model_type": "phi3", "num_hidden_layers": 2},
               "gemma2": {"model_type": "gemma2", "num_hidden_layers": 2},
               "gpt2": {"model_type": "gpt2", "n_layer": 3, "scale_attn_by_inverse_layer_idx": True}}
    for name, config in configs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(config))
    cases = {
        "depth = layers": (["llama", "--depth", "2"], "--depth 2 must remove at least one and fewer than all of the teacher's 2 layers"),
        "keep-layers out of range": (["llama", "--keep-layers", "0,7"], "layer 7 is out of range for a teacher of 2 layers"),
        "keep-layers empty": (["llama", "--keep-layers", "1:-1"], "keeps no layer"),
        "keep-layers not a number": (["llama", "--keep-layers", "first"], "'first' is not a layer index"),
        "depth and keep-layers": (["llama", "--depth", "1", "--keep-layers", "0"], "at most one of --depth K and --keep-layers"),
        "unknown method": (["llama", "--params", "1e3", "--method", "taylor"], "--method 'taylor': expected one of mask-gradient, activation"),
        "unknown depth importance": (["llama", "--depth", "1", "--depth-importance", "l2"], "expected one of loss, cosine"),
        "no target at all": (["llama"], "give a width target"),
        "phi3": (["phi3", "--params", "1e3"], "cannot prune a phi3 model (distlaw prunes llama, mistral, qwen2, qwen3, gpt_neox, gpt2)"),
        "gemma2": (["gemma2", "--depth", "1"], "cannot prune a gemma2 model"),
        "gpt2 scaled by layer index": (["gpt2", "--depth", "1"], "scale_attn_by_inverse_layer_idx"),
    }
    calls = [["prune", *args[:1], "--out", "p", *args[1:]] for args, _ in cases.values()]
    for (name, (_, message)), report in zip(cases.items(), refuse_all(tmp_path, calls)):
        stderr = report["stderr"]
        assert report["code"] == 2 and len(stderr.strip().splitlines()) == 1, f"{name}: {report}"
        assert message in stderr and report["heavy"] == [], f"{name}: {stderr}"
    assert not (tmp_path / "p").exists()


CASES.update({  # design --next (issue 12, item 2): refused before the fit imports torch
    "design --next: without --store": ["design", "--next", "2", "--target", "student=1e9,tokens=2e10", "--out", "p.toml"],
    "design --next: --store without --next": ["design", "--store", "s.db", "--target", "student=1e9,tokens=2e10", "--out", "p.toml"],
    "design --next: two targets": ["design", "--next", "2", "--store", "s.db", "--target", "student=1e9,tokens=2e10", "--target-plan",
                                   "student=1e9,compute=1e21", "--out", "p.toml"],
    "design --next: K = 0": ["design", "--next", "0", "--store", "s.db", "--target", "student=1e9,tokens=2e10", "--out", "p.toml"],
    "design --next: store not SQLite": ["design", "--next", "2", "--store", "text.db", "--target", "student=1e9,tokens=2e10", "--out", "p.toml"],
    "design --next: no such store": ["design", "--next", "2", "--store", "none.db", "--target", "student=1e9,tokens=2e10", "--out", "p.toml"],
})

CASES.update({  # fit --prior (issue 12, item 3): the prior is read before the fitter imports torch
    "fit: unknown prior": ["fit", "runs.csv", "--prior", "nosuch"],
    "report: unknown prior": ["report", "runs.csv", "--prior", "nosuch"],
    "report: --prior with --coefficients": ["report", "runs.csv", "--prior", "busbridge2025", "--coefficients", "busbridge2025"],
})

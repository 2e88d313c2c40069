"""`distlaw train`, `distlaw distill`, `distlaw cache-teacher`: JSON results, one-line errors, no partial output."""

import shutil

import pytest

from distlaw.compute import ModelShape
from distlaw.lab import corpus
from distlaw.lab.model import build_model


@pytest.fixture
def small(tmp_path):
    shutil.copy(next(f for f in corpus.corpus_files("shakespeare") if f.stem == "hamlet"), tmp_path / "hamlet.md")
    return ["--corpus", tmp_path / "hamlet.md", "--seq-len", "32", "--batch-size", "8", "--cache-dir", tmp_path / "cache", "--quiet"]


def test_train_cache_and_distill_from_the_command_line(cli, tmp_path, small):
    r = cli("train", "--params", "6e3", "--tokens", "4096", "--out", tmp_path / "t", "--json", *small)
    assert r.code == 0, r.stderr
    teacher = r.json()
    assert teacher["steps"] == 16 and teacher["teacher_loss"] is None
    r = cli("cache-teacher", "--teacher", tmp_path / "t", "--tokens", "2048", "--k", "16", "--out", tmp_path / "c", "--json", *small)
    assert r.code == 0, r.stderr
    assert r.json()["k"] == 16 and r.json()["bytes_per_token"] == 16 * 3 + 4
    r = cli("distill", "--params", "3e3", "--tokens", "2048", "--teacher-cache", tmp_path / "c", "--out", tmp_path / "s", "--json", *small)
    assert r.code == 0, r.stderr
    student = r.json()
    assert student["teacher_params"] == teacher["non_embedding_params"]
    assert student["teacher_loss"] == pytest.approx(teacher["loss"], abs=1e-9)
    assert student["teacher_inference_flops"] == 0
    r = cli("distill", "--layers", "1", "--d-model", "16", "--tokens", "2048", "--teacher", tmp_path / "t",
            "--top-k", "8", "--out", tmp_path / "s2", "--json", *small)
    assert r.code == 0, r.stderr
    assert r.json()["teacher_inference_flops"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--params", "3e3", "--corpus", "nowhere.txt"], "corpus nowhere.txt: no such file"),
        (["train", "--params", "1e20"], "--params 1e+20 is out of range"),
        (["train", "--params", "3e3", "--layers", "2"], "not both"),
        (["train", "--params", "3e3", "--tokens", "0"], "--tokens 0 is out of range"),
        (["distill", "--params", "3e3", "--teacher", "missing-teacher"], "no such checkpoint directory"),
        (["distill", "--params", "3e3", "--teacher", "WIDE"], "vocabulary 300 differs"),
        (["distill", "--params", "3e3", "--teacher", "WIDE", "--teacher-cache", "WIDE"], "exactly one of"),
        (["distill", "--params", "3e3", "--teacher-cache", "WIDE"], "not a teacher cache"),
        (["distill", "--params", "3e3", "--teacher", "WIDE", "--divergence", "sideways"], "divergence"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_with_no_output(cli, tmp_path, small, args, message):
    wide = tmp_path / "wide"
    build_model(ModelShape.from_params(3e3, aspect_ratio=16, head_dim=8, vocab_size=300, n_ctx=32), 0).save_pretrained(wide)
    args = [str(wide) if a == "WIDE" else a for a in args]
    if "--tokens" not in args:
        args += ["--tokens", "2048"]
    r = cli(args[0], *small, *args[1:], "--out", tmp_path / "out")
    assert r.code == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stdout == "" and not (tmp_path / "out").exists()


def test_corrupted_cache_is_refused(cli, tmp_path, small):
    assert cli("train", "--params", "3e3", "--tokens", "1024", "--out", tmp_path / "t", *small).code == 0
    assert cli("cache-teacher", "--teacher", tmp_path / "t", "--tokens", "1024", "--k", "4", "--out", tmp_path / "c", *small).code == 0
    (tmp_path / "c" / "teacher_val.safetensors").write_bytes(b"garbage")
    r = cli("distill", "--params", "3e3", "--tokens", "1024", "--teacher-cache", tmp_path / "c", "--out", tmp_path / "s", *small)
    assert r.code == 2 and "teacher_val.safetensors is corrupted" in r.stderr
    assert not (tmp_path / "s").exists()
    r = cli("cache-teacher", "--teacher", tmp_path / "t", "--tokens", "1024", "--out", tmp_path / "c", *small)
    assert r.code == 2 and "already exists" in r.stderr
    manifest = tmp_path / "c" / "manifest.json"
    for text, message in [("{not json", "corrupted manifest"), ('{"format": "distlaw-teacher-cache/1"}', "missing teacher")]:
        manifest.write_text(text)
        r = cli("distill", "--params", "3e3", "--tokens", "1024", "--teacher-cache", tmp_path / "c", "--out", tmp_path / "s", *small)
        assert r.code == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_teacher_named_by_a_run_in_a_store(cli, tmp_path, small):
    from distlaw.lab.config import RunSpec
    from distlaw.store import PlannedRun, RunStore

    shape = ModelShape.from_params(3e3, aspect_ratio=16, head_dim=8, vocab_size=256, n_ctx=32)
    with RunStore(tmp_path / "runs.db") as store:
        store.add_plan("s", [PlannedRun(RunSpec(name="t1", kind="supervised", shape=shape, tokens=1024), "p", "teacher")])
        run_dir = store.run_dir("t1")
    args = ["--params", "3e3", "--tokens", "1024", "--store", tmp_path / "runs.db", *small]
    r = cli("distill", "--teacher", "t1", "--out", tmp_path / "s", *args)
    assert r.code == 2 and "run is planned, not done" in r.stderr
    r = cli("train", "--params", "3e3", "--tokens", "1024", "--out", run_dir, "--json", *small)
    with RunStore(tmp_path / "runs.db") as store:
        assert store.claim("t1", 1)
        store.finish("t1", r.json())
    r = cli("distill", "--teacher", "t1", "--out", tmp_path / "s", "--json", *args)
    assert r.code == 0, r.stderr
    assert r.json()["teacher_params"] == shape.non_embedding_params
    r = cli("distill", "--teacher", "t2", "--out", tmp_path / "s2", *args)
    assert r.code == 2 and "no such checkpoint directory or run in" in r.stderr


def test_prune_then_distil_and_train_from_the_pruned_model(cli, tmp_path, small):
    """Zhang et al.'s recipe from the command line: a teacher, pruned to a student, distilled from it."""
    assert cli("train", "--params", "2e4", "--tokens", "8192", "--out", tmp_path / "t", *small).code == 0
    r = cli("prune", tmp_path / "t", "--params", "6e3", "--calibration-tokens", "1024", "--out", tmp_path / "p", "--json", *small)
    assert r.code == 0, r.stderr
    pruned = r.json()
    r = cli("distill", "--init", tmp_path / "p", "--teacher", tmp_path / "t", "--tokens", "2048", "--out", tmp_path / "s", "--json", *small)
    assert r.code == 0, r.stderr
    student = r.json()
    assert student["non_embedding_params"] == pruned["params"] and student["teacher_params"] == pruned["teacher_params"]
    r = cli("train", "--init", tmp_path / "p", "--tokens", "2048", "--out", tmp_path / "ce", "--json", *small)
    assert r.code == 0, r.stderr
    assert r.json()["non_embedding_params"] == pruned["params"]
    assert cli("train", "--init", tmp_path / "p", "--params", "6e3", "--tokens", "2048", "--out", tmp_path / "x", *small).code == 2
    bad = cli("train", "--init", tmp_path / "t", "--tokens", "2048", "--out", tmp_path / "y", *small)
    assert bad.code == 2 and "not a pruned model" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()

"""Issue 9 for the lab, prune, fit, sweep and runs commands: each class of mistake its own one-line
message and exit 2 with nothing written, what a size target built, and a consistent interface."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from distlaw.compute import ModelShape
from distlaw.errors import DistlawError
from distlaw.lab import corpus
from distlaw.store import RunStore

TINY_SWEEP = """
name = "{name}"
workers = 1
checkpoint_every = 20
eval_tokens = 2048
[data]
corpus = "{corpus}"
seq_len = 32
[optim]
batch_size = 8
[model]
aspect_ratio = 8
head_dim = 8
[[protocol]]
type = "fixedm-fixedm"
teachers = [{teacher}]
teacher_ratio = 1
students = [6256]
student_ratios = [1]
baselines = false
"""


@pytest.fixture
def hamlet(tmp_path: Path) -> Path:
    path = tmp_path / "hamlet.md"
    shutil.copy(next(f for f in corpus.corpus_files("shakespeare") if f.stem == "hamlet"), path)
    return path


@pytest.fixture
def small(tmp_path, hamlet):
    return ["--corpus", hamlet, "--seq-len", "32", "--batch-size", "8", "--cache-dir", tmp_path / "cache", "--quiet"]


def one_line_error(r, *words: str) -> None:
    assert r.code == 2, (r.code, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    for word in words:
        assert word in r.stderr, r.stderr


def sweep_config(tmp_path: Path, hamlet: Path, name: str = "tiny", teacher: str = "6256") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(TINY_SWEEP.format(name=name, corpus=hamlet, teacher=teacher))
    return path


# --device ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("device", "words"), [("tpu", ["'tpu'", "expected cpu, cuda"]), ("cuda:99", ["cuda:99", "CUDA device"])])
def test_a_device_this_machine_lacks_is_one_line(cli, tmp_path, small, device, words):
    r = cli("train", "--params", "3e3", "--tokens", "2048", "--out", tmp_path / "run", "--device", device, *small)
    one_line_error(r, *words)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()  # refused before data preparation


def test_cuda_without_cuda_is_one_line(cli, tmp_path, small):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    one_line_error(cli("train", "--params", "3e3", "--tokens", "2048", "--out", tmp_path / "run", "--device", "cuda", *small), "no CUDA device")


def test_the_python_api_refuses_the_same_devices():
    from distlaw.lab.distributed import default_device

    for device in ("tpu", "cuda:99", ""):
        with pytest.raises(DistlawError, match="--device"):
            default_device(device)
    assert default_device("cpu").type == "cpu"


# --out: run directories ----------------------------------------------------------------------------


def test_run_directory_of_another_spec_is_refused_naming_the_difference(cli, tmp_path, small):
    out = tmp_path / "run"
    first = cli("train", "--params", "3e3", "--tokens", "2048", "--out", out, "--json", *small)
    assert first.code == 0, first.stderr
    r = cli("train", "--params", "3e3", "--tokens", "4096", "--out", out, *small)
    one_line_error(r, "holds a different run", "tokens 2048 (stored) vs 4096")
    r = cli("train", "--params", "3e3", "--tokens", "2048", "--lr", "1e-3", "--out", out, *small)
    one_line_error(r, "optim.lr 0.003 (stored) vs 0.001")
    again = cli("train", "--params", "3e3", "--tokens", "2048", "--out", out, "--json", *small)  # same spec: the stored result
    assert again.code == 0 and again.json() == first.json()


def test_run_directory_that_is_a_file_or_holds_something_else_is_refused(cli, tmp_path, small):
    (tmp_path / "file").write_text("x")
    one_line_error(cli("train", "--params", "3e3", "--tokens", "2048", "--out", tmp_path / "file", *small), "is a file")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("x")
    one_line_error(cli("train", "--params", "3e3", "--tokens", "2048", "--out", tmp_path / "busy", *small), "not empty and holds no run")
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["thesis.tex"]
    (tmp_path / "empty").mkdir()
    assert cli("train", "--params", "3e3", "--tokens", "2048", "--out", tmp_path / "empty", *small).code == 0  # an empty folder is new


def test_new_run_directories_create_their_parents(cli, tmp_path, small):
    r = cli("train", "--params", "3e3", "--tokens", "2048", "--out", tmp_path / "a" / "b" / "run", "--json", *small)
    assert r.code == 0, r.stderr and (tmp_path / "a" / "b" / "run" / "result.json").is_file()


# teachers, caches and pruned models ----------------------------------------------------------------


def test_teacher_folder_without_a_model(cli, tmp_path, small):
    (tmp_path / "empty").mkdir()
    for args in (["distill", "--params", "3e3", "--tokens", "2048", "--teacher", tmp_path / "empty", "--out", tmp_path / "s"],
                 ["cache-teacher", "--teacher", tmp_path / "empty", "--tokens", "2048", "--out", tmp_path / "s"],
                 ["prune", tmp_path / "empty", "--params", "1e3", "--out", tmp_path / "s"]):
        one_line_error(cli(*args, *small), "holds no model (config.json missing)")
    one_line_error(cli("prune", tmp_path / "nowhere", "--params", "1e3", "--out", tmp_path / "s", *small), "no such checkpoint directory")
    assert not (tmp_path / "s").exists()


def test_existing_outputs_of_cache_and_prune_are_refused_before_loading(cli, tmp_path, small):
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "config.json").write_text("{}")  # no weights: only the checks may run
    (tmp_path / "taken").mkdir()
    one_line_error(cli("cache-teacher", "--teacher", tmp_path / "teacher", "--tokens", "2048", "--out", tmp_path / "taken", *small), "already exists")
    one_line_error(cli("prune", tmp_path / "teacher", "--params", "1e3", "--out", tmp_path / "taken", *small), "already exists")
    one_line_error(cli("prune", tmp_path / "teacher", "--sparsity", "1", "--out", tmp_path / "p", *small), "--sparsity 1 must be in [0, 1)")
    one_line_error(cli("cache-teacher", "--teacher", tmp_path / "teacher", "--tokens", "2048", "--k", "0", "--out", tmp_path / "c", *small), "--k 0")


# stores and configs -------------------------------------------------------------------------------


def test_stores_that_are_folders_or_not_sqlite(cli, tmp_path, hamlet):
    config = sweep_config(tmp_path, hamlet)
    (tmp_path / "folder.db").mkdir()
    (tmp_path / "text.db").write_text("hello, not a database\n")
    for store, words in ((tmp_path / "folder.db", ["is a folder"]), (tmp_path / "text.db", ["not a SQLite file"])):
        for args in (("sweep", "plan", config), ("sweep", "status", config), ("runs", "list"), ("runs", "export", tmp_path / "o.csv")):
            one_line_error(cli(*args, "--store", store), str(store), *words)
        one_line_error(cli("distill", "--params", "3e3", "--tokens", "2048", "--teacher", "t1", "--store", store, "--out", tmp_path / "s"), *words)
    assert (tmp_path / "text.db").read_text() == "hello, not a database\n" and not (tmp_path / "o.csv").exists()


def test_configs_that_are_not_toml(cli, tmp_path):
    (tmp_path / "sweep.json").write_text('{"name": "x"}')
    one_line_error(cli("sweep", "plan", tmp_path / "sweep.json", "--store", tmp_path / "s.db"), "a sweep config is a TOML file ending in .toml")
    (tmp_path / "dir.toml").mkdir()
    one_line_error(cli("sweep", "plan", tmp_path / "dir.toml", "--store", tmp_path / "s.db"), "is a folder")
    one_line_error(cli("sweep", "run", "nano", "--store", tmp_path / "s.db"), "no such sweep config", "micro")
    assert not (tmp_path / "s.db").exists()


def test_a_shipped_config_by_name(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here: the name resolves inside the package
    r = cli("sweep", "plan", "micro", "--store", tmp_path / "m.db", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["sweep"] == "micro" and r.json()["runs"] > 0
    assert "micro" in cli("sweep", "plan", "--help").stdout


def test_status_and_export_of_a_sweep_never_planned(cli, tmp_path, hamlet):
    store = tmp_path / "s.db"
    assert cli("sweep", "plan", sweep_config(tmp_path, hamlet, "first"), "--store", store).code == 0
    one_line_error(cli("sweep", "status", sweep_config(tmp_path, hamlet, "second"), "--store", store),
                   "sweep 'second' was never planned", "planned: first")
    one_line_error(cli("runs", "export", "--store", store, tmp_path / "o.csv", "--sweep", "second"), "sweep 'second' was never planned")
    with RunStore(store) as s:
        assert s.sweeps() == ["first"]  # status wrote nothing


# file outputs never create folders ----------------------------------------------------------------


def test_file_outputs_need_an_existing_folder(cli, tmp_path, hamlet):
    runs = tmp_path / "runs.csv"
    runs.write_text("kind,params,tokens,loss\nsupervised,1e6,2e7,3.1\n")
    one_line_error(cli("fit", runs, "--out", tmp_path / "nowhere" / "fit.json"), "nowhere does not exist")
    store = tmp_path / "s.db"
    assert cli("sweep", "plan", sweep_config(tmp_path, hamlet), "--store", store).code == 0
    one_line_error(cli("runs", "export", "--store", store, tmp_path / "nowhere" / "runs.csv"), "nowhere does not exist")
    one_line_error(cli("runs", "export", "--store", store, tmp_path / "runs.txt"), "must end in .csv")
    assert not (tmp_path / "nowhere").exists()


# what a size target built -------------------------------------------------------------------------


def test_train_says_what_it_built_and_warns_past_ten_percent(cli, tmp_path, small):
    # 1 layer, d_model 16, d_ff round(8/3 16) = 43: 4 16^2 + 3 16 43 + 2 16 per layer, plus a final norm of 16 = 3,136.
    r = cli("train", "--params", "5e3", "--tokens", "2048", "--out", tmp_path / "a", "--json", *small)
    assert r.code == 0, r.stderr
    assert r.json()["non_embedding_params"] == 3136 and r.json()["requested_params"] == 5000
    warning = r.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: requested 5e3, built 3,136 non-embedding parameters"), r.stderr
    table = cli("train", "--params", "5e3", "--tokens", "2048", "--out", tmp_path / "a", *small)
    assert "requested 5e3, built 3,136 non-embedding parameters" in table.stdout
    close = cli("train", "--params", "3e3", "--tokens", "2048", "--out", tmp_path / "b", "--json", *small)  # 3,136 is +4.5 %
    assert close.code == 0 and close.stderr == "" and close.json()["requested_params"] == 3000
    explicit = cli("train", "--layers", "1", "--d-model", "16", "--tokens", "2048", "--out", tmp_path / "c", "--json", *small)
    assert explicit.json()["requested_params"] is None and explicit.json()["non_embedding_params"] == 3136


def test_prune_says_what_it_built(cli, tmp_path, small):
    from distlaw.lab.families import count_params
    from distlaw.lab.model import build_model, load_model

    teacher = tmp_path / "teacher"  # 2 layers x 32: 24,672 non-embedding parameters
    build_model(ModelShape.from_dims(2, 32, n_ctx=32, vocab_size=256, head_dim=8), 0).save_pretrained(teacher)
    r = cli("prune", teacher, "--params", "2e4", "--calibration-tokens", "256", "--out", tmp_path / "p", "--json", *small)
    assert r.code == 0, r.stderr
    built = count_params(load_model(tmp_path / "p"))[0]
    assert r.json()["params"] == built and r.json()["target_params"] == 20000
    off = abs(built / 2e4 - 1) > 0.1
    assert (f"warning: requested 2e4, built {built:,} non-embedding parameters" in r.stderr) == off
    assert r.stderr == "" or off
    table = cli("prune", teacher, "--params", "2e4", "--calibration-tokens", "256", "--out", tmp_path / "p2", *small)
    assert f"size: requested 2e4, built {built:,} non-embedding parameters" in table.stdout


def test_sweep_plan_lists_requested_and_built_sizes(cli, tmp_path, hamlet):
    # aspect ratio 8, head_dim 8: 2 x 16 has 2 (4 16^2 + 3 16 43 + 32) + 16 = 6,256; 8000 maps to it (-22 %).
    r = cli("sweep", "plan", sweep_config(tmp_path, hamlet, teacher="8000"), "--store", tmp_path / "s.db", "--json")
    assert r.code == 0, r.stderr
    assert {"protocol": "fixedm-fixedm", "role": "teacher", "requested": 8000.0, "built": 6256} in r.json()["sizes"]
    assert "warning: requested 8e3, built 6,256 non-embedding parameters (-22% off the target" in r.stderr
    table = cli("sweep", "plan", sweep_config(tmp_path, hamlet, teacher="8000"), "--store", tmp_path / "s.db")
    assert "model sizes" in table.stdout and "8e3" in table.stdout and "6,256" in table.stdout


# progress output ----------------------------------------------------------------------------------


def test_progress_bars_leave_no_blank_lines_off_a_terminal(cli, tmp_path, small):
    quiet_free = [a for a in small if a != "--quiet"]
    r = cli("train", "--params", "3e3", "--tokens", "2048", "--out", tmp_path / "run", *quiet_free)
    assert r.code == 0 and r.stderr == "", repr(r.stderr)


def test_sweep_run_quiet_prints_only_the_summary(cli, tmp_path, hamlet):
    config = sweep_config(tmp_path, hamlet)
    r = cli("sweep", "run", config, "--store", tmp_path / "s.db", "--quiet")
    assert r.code == 0, r.stderr
    assert r.stderr == "" and r.stdout.strip().splitlines() == ["sweep tiny: trained 2, already done 0, failed 0, blocked 0"]
    assert json.loads(cli("sweep", "run", config, "--store", tmp_path / "s.db", "-q", "--json").stdout)["skipped"] == 2


def test_no_blank_lines_through_a_pipe(tmp_path, hamlet):
    """A real pipe (not a terminal): the progress bar of a run leaves nothing on stderr."""
    import subprocess
    import sys

    args = ["train", "--params", "3e3", "--tokens", "2048", "--out", str(tmp_path / "run"), "--corpus", str(hamlet),
            "--seq-len", "32", "--batch-size", "8"]
    proc = subprocess.run([sys.executable, "-m", "distlaw.cli.app", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and "" not in proc.stdout.splitlines()[1:-1], (proc.stderr, proc.stdout)


def test_negative_seeds_are_refused_everywhere(cli, tmp_path, hamlet, small):
    """numpy cannot seed a data order or a bootstrap with a negative number (it was an internal error)."""
    runs = tmp_path / "runs.csv"
    runs.write_text("kind,params,tokens,loss\n" + "".join(f"supervised,{n},{d},{3 + 1e3 / n + 1e3 / d}\n"
                                                          for n in (1e6, 3e6, 1e7) for d in (2e7, 6e7)))
    one_line_error(cli("fit", runs, "--law", "supervised", "--grid", "coarse", "--bootstrap", "2", "--seed", "-1"), "--seed")
    one_line_error(cli("train", "--params", "3e3", "--tokens", "2048", "--seed", "-1", "--out", tmp_path / "r", *small), "--seed")
    config = sweep_config(tmp_path, hamlet)
    config.write_text(config.read_text().replace('name = "tiny"', 'name = "tiny"\nseeds = [0, -1]'))
    one_line_error(cli("sweep", "plan", config, "--store", tmp_path / "s.db"), "seeds.1", "greater than or equal to 0")
    assert not (tmp_path / "r").exists() and not (tmp_path / "s.db").exists()


def test_a_folder_given_as_a_runs_table(cli, tmp_path):
    one_line_error(cli("fit", tmp_path), "is a folder, not a table")


def test_a_refused_run_is_one_line_even_when_its_size_misses(cli, tmp_path, small):
    """The size warning comes with the result, so a refusal after the shape is known stays one line."""
    r = cli("train", "--params", "5e3", "--tokens", "2048", "--tokenizer", "bpe:1", "--out", tmp_path / "r", *small)
    one_line_error(r, "'bpe:1': the vocabulary size must be between 257 and 1048576")


def test_head_width_must_divide_the_model_width(cli, tmp_path, small):
    one_line_error(cli("train", "--params", "5e3", "--tokens", "2048", "--head-dim", "7", "--out", tmp_path / "r", *small),
                   "for aspect ratio 16 and --head-dim 7")  # a family builds only shapes of whole heads
    one_line_error(cli("train", "--layers", "2", "--d-model", "12", "--tokens", "2048", "--out", tmp_path / "r", *small), "--head-dim 8")
    assert not (tmp_path / "r").exists()


def test_a_run_killed_while_writing_its_spec_can_still_resume(tmp_path):
    from distlaw.lab.checks import check_run_directory

    run = tmp_path / "run"
    run.mkdir()
    (run / ".spec.json.abc123.tmp").write_text("{")  # what atomic_path leaves when killed mid-write
    check_run_directory(run)
    (run / "weights.bin").write_text("x")
    with pytest.raises(DistlawError, match="holds no run"):
        check_run_directory(run)


def test_printed_paths_are_never_broken_across_lines(cli, tmp_path):
    """A path longer than the console's 80 columns (off a terminal) is printed on one line."""
    deep = tmp_path / ("a-folder-name-long-enough-to-pass-eighty-columns-" * 2)
    deep.mkdir()
    runs = deep / "runs.csv"
    runs.write_text("kind,params,tokens,loss\nsupervised,1e8,2e9,3.0\nsupervised,1e9,2e10,2.5\n")
    out = deep / "predicted.csv"
    result = cli("predict", runs, "--out", out)
    assert result.code == 0, result.stderr
    assert str(out) in result.stdout.replace("\n", " ") and str(out) in result.stdout.splitlines()[-1]

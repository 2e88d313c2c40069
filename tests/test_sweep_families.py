"""Sweeps of non-Llama students (issue 11, item 3): ``[model] family`` and ``[model] like`` in a sweep
config size every model by its exact non-embedding count in that architecture, record the architecture in
each run's spec, and train end to end; the runs table holds the models' own counts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import transformers

from distlaw.errors import DistlawError
from distlaw.lab import corpus, families
from distlaw.lab.protocols import SweepConfig, expand, load_config, train_flops
from distlaw.lab.sweep import run_sweep
from distlaw.store import RunStore, runs_table
from hf_families import tiny_checkpoint


def config(tmp: Path, **model) -> SweepConfig:
    return SweepConfig.model_validate({
        "name": "families", "workers": 1, "eval_tokens": 512, "checkpoint_every": None,
        "data": {"corpus": str(tmp / "hamlet.md"), "seq_len": 32, "cache_dir": str(tmp / "cache")},
        "optim": {"batch_size": 8},
        "model": {"aspect_ratio": 16, "head_dim": 8, **model},
        "protocol": [{"type": "fixedm-fixedm", "teachers": [2e4], "teacher_ratio": 2, "students": [3e3], "student_ratios": [4]}],
    })  # fmt: skip


@pytest.fixture
def hamlet(tmp_path: Path) -> Path:
    shutil.copy(next(f for f in corpus.corpus_files("shakespeare") if f.stem == "hamlet"), tmp_path / "hamlet.md")
    return tmp_path


@pytest.mark.slow
def test_a_gpt_neox_sweep_trains_and_exports_the_models_own_counts(hamlet):
    cfg = config(hamlet, family="gpt_neox")
    plan = expand(cfg)
    assert all(run.spec.architecture["model_type"] == "gpt_neox" for run in plan)
    outcome = run_sweep(cfg, hamlet / "s.db", progress=False)
    assert sorted(outcome.done) == sorted({run.spec.name for run in plan}) and not outcome.failed
    with RunStore(hamlet / "s.db") as store:
        table = runs_table(store).set_index("name")
        for run in plan:
            model = transformers.AutoModelForCausalLM.from_pretrained(store.run_dir(run.spec.name))
            n = families.count_params(model)[0]  # counted on the trained model itself
            assert model.config.model_type == "gpt_neox" and table.loc[run.spec.name, "params"] == n
            assert run.spec.name.startswith(("sup-N", "kd-N")) and f"-N{n}-" in run.spec.name
            assert train_flops(run.spec) == 6.0 * n * run.spec.tokens
            assert n != run.spec.shape.non_embedding_params  # the Llama formula would have miscounted it
    distilled = table[table["kind"] == "distilled"]
    assert len(distilled) == 1 and distilled["teacher_params"].iloc[0] == table.loc[distilled["teacher"].iloc[0], "params"]


def test_like_copies_a_checkpoints_architecture_into_every_run(hamlet):
    teacher = tiny_checkpoint("gemma2", hamlet / "gemma2")
    plan = expand(config(hamlet, like=str(teacher)))
    record = families.architecture_of(transformers.AutoConfig.from_pretrained(teacher))
    assert plan and all(run.spec.architecture == record for run in plan)
    assert all(run.spec.non_embedding_params == families.architecture_params(record, run.spec.shape)[0] for run in plan)


def test_llama_sweeps_record_no_architecture(hamlet):
    assert all(run.spec.architecture is None for run in expand(config(hamlet)))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ('family = "bert"', "[model] family 'bert': not a built-in family"),
        ('family = "gpt2"\nlike = "somewhere"', "give [model] family or [model] like, not both"),
        ('like = "nowhere"', "[model] like nowhere: no such checkpoint directory"),
    ],
)
def test_bad_architectures_in_a_config_are_one_line_errors(tmp_path, model, message):
    (tmp_path / "bad.toml").write_text(f'name = "bad"\n[model]\n{model}\n[[protocol]]\ntype = "fixedm-fixedm"\nteachers = [2e4]\nstudents = [5e3]\n')
    with pytest.raises(DistlawError, match=message.replace("[", r"\[").replace("]", r"\]")) as error:
        load_config(tmp_path / "bad.toml")
    assert len(str(error.value).splitlines()) == 1

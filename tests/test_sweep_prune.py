"""The capacity-gap protocol (prune-distill): teachers pruned to each student size, then distilled; runs
started from a pruned model."""

from __future__ import annotations

import hashlib
import json
import math

import pytest

from distlaw.errors import DistlawError
from distlaw.lab.config import PruneInit, RunSpec
from distlaw.lab.model import build_model, load_model, shape_of
from distlaw.lab.protocols import SweepConfig, expand
from distlaw.lab.pruning import pruned_shape
from distlaw.lab.shared import PRUNED_DIR
from distlaw.lab.sweep import plan_totals, run_sweep
from distlaw.lab.tokenizer import byte_tokenizer, save_tokenizer
from distlaw.lab.train import train_run
from distlaw.store import RunStore, runs_table
from test_sweep_cache import SWEEP as CACHED_SWEEP

SWEEP = {key: value for key, value in CACHED_SWEEP.items() if key != "protocol"} | {"name": "gap"}  # tiny and fast


def config(**protocol) -> SweepConfig:
    return SweepConfig.model_validate({**SWEEP, "protocol": [{"type": "prune-distill", **protocol}]})


def test_every_teacher_is_pruned_to_each_smaller_student_size_on_equal_tokens():
    cfg = config(teachers=[6256, 20904], teacher_ratio=10, students=[1500, 8000], student_ratio=40, calibration_tokens=4096)
    runs = expand(cfg)
    teachers = {r.spec.name: r.spec for r in runs if r.role == "teacher"}
    students = [r.spec for r in runs if r.role == "student"]
    assert len(teachers) == 2 and len(students) == 3  # 8000 is larger than the 6256 teacher: not pruned from it
    for spec in students:
        teacher = teachers[spec.teacher]
        assert spec.init == PruneInit(source=teacher.name, target_params=spec.init.target_params, calibration_tokens=4096)
        assert spec.shape == pruned_shape(teacher.shape, target_params=spec.init.target_params)
        assert spec.tokens == 40 * spec.init.target_params  # D_S from the target size: equal for every teacher
        assert abs(math.log(spec.shape.non_embedding_params / spec.init.target_params)) < 0.15
    baselines = sorted((r.spec for r in runs if r.role == "baseline"), key=lambda b: b.tokens)
    assert [b.tokens for b in baselines] == [60000, 320000] and all(b.init is None for b in baselines)
    small, large = sorted(teachers.values(), key=lambda t: t.shape.non_embedding_params)
    assert baselines[0].shape == pruned_shape(small.shape, target_params=1500)  # pruned from the smallest eligible teacher
    assert baselines[1].shape == pruned_shape(large.shape, target_params=8000)
    totals = plan_totals(runs)
    assert totals["pruned students"]["runs"] == 3 and totals["pruned students"]["tokens"] == 3 * 4096


@pytest.mark.parametrize(("options", "passes"), [
    ({}, 3), ({"method": "activation"}, 1), ({"depth": 1}, 3 + 2 + 1), ({"depth": 1, "depth_importance": "cosine"}, 4),
    ({"keep_layers": "0:1", "method": "activation"}, 1),
])
def test_calibration_flops_count_the_forward_passes_of_each_importance(options, passes):
    """2 N_T per token and forward pass: mask gradients forward + backward (3), activations 1, depth by loss
    one pass per skipped layer of the 2-layer teacher plus the unpruned one, by cosine 1."""
    runs = expand(config(teachers=[6256], teacher_ratio=10, students=[1500], student_ratio=40, calibration_tokens=4096, **options))
    teacher = next(r.spec for r in runs if r.role == "teacher")
    assert teacher.shape.n_layers == 2
    assert plan_totals(runs)["pruned students"]["flops"] == 2.0 * teacher.non_embedding_params * 4096 * passes


def test_a_student_larger_than_every_teacher_is_an_error():
    with pytest.raises(DistlawError, match="no student size is smaller than a teacher"):
        expand(config(teachers=[6256], students=[7000]))


def test_a_run_with_init_needs_its_pruned_model_of_the_right_shape(tmp_path):
    cfg = config(teachers=[6256], teacher_ratio=10, students=[1500], student_ratio=40)
    spec = next(r.spec for r in expand(cfg) if r.role == "student")
    with pytest.raises(DistlawError, match="exactly when the spec has an init"):
        train_run(spec, tmp_path / "a", teacher_dir=tmp_path, progress=False)
    other = build_model(spec.shape.model_copy(update={"d_ff": spec.shape.d_ff + 1}), 0)
    other.save_pretrained(tmp_path / "other")
    save_tokenizer(byte_tokenizer(), tmp_path / "other")
    with pytest.raises(DistlawError, match="not the shape of run"):
        train_run(spec, tmp_path / "b", teacher_dir=tmp_path / "other", init_dir=tmp_path / "other", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_prune_distill_sweep_end_to_end(tmp_path):
    cfg = config(teachers=[6256, 20904], teacher_ratio=10, students=[2500], student_ratio=40, calibration_tokens=4096)
    outcome = run_sweep(cfg, tmp_path / "RUNS.db", progress=False)
    assert not outcome.failed and not outcome.blocked and len(outcome.built) == 2
    with RunStore(tmp_path / "RUNS.db") as store:
        table = runs_table(store).set_index("name")
        students = table[table["kind"] == "distilled"]
        assert len(students) == 2 and (students["pruned_to"] == 2500).all()
        assert table.loc[table["kind"] == "supervised", "pruned_to"].isna().all()
        for name, row in students.iterrows():
            spec = store.get(name).spec
            assert shape_of(load_model(store.run_dir(name))).model_copy(update={"n_ctx": 64}) == spec.shape
            assert row["params"] == spec.shape.non_embedding_params
        pruned = sorted((tmp_path / "RUNS.runs" / PRUNED_DIR).iterdir())
        assert len(pruned) == 2 and all((p / "pruning.json").is_file() for p in pruned)
        baseline = table[(table["kind"] == "supervised") & (table["tokens"] == students["tokens"].iloc[0])]
        assert len(baseline) == 1
        # A student started from a pruned teacher and distilled beats training its size from scratch.
        assert students["loss"].min() < baseline["loss"].iloc[0]
    again = run_sweep(cfg, tmp_path / "RUNS.db", progress=False)
    assert not again.built and not again.done


def test_seeds_train_more_students_from_the_same_pruned_models():
    protocol = {"type": "prune-distill", "teachers": [6256, 20904], "students": [1500, 8000], "calibration_tokens": 4096}
    cfg = SweepConfig.model_validate({**SWEEP, "seeds": [0, 1, 2], "protocol": [protocol]})
    totals = plan_totals(expand(cfg))
    assert totals["prune-distill student"]["runs"] == 3 * 3 and totals["prune-distill baseline"]["runs"] == 3 * 2
    assert totals["pruned students"]["runs"] == 3  # calibration does not depend on the training seed


def test_the_spec_key_of_a_pruned_run_is_what_it_was_before_the_new_options():
    """PruneInit's options added for issue 11 are left out of a dump at their defaults: old stores keep their keys."""
    spec = next(r.spec for r in expand(config(teachers=[6256], teacher_ratio=10, students=[1500], student_ratio=40)) if r.role == "student")
    old_init = {"source": spec.init.source, "target_params": 1500, "calibration_tokens": 65536, "calibration_seed": 0}
    payload = {**spec.model_dump(exclude={"name", "init"}), "init": old_init}
    assert spec.model_dump()["init"] == old_init
    assert spec.key() == hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    other = spec.model_copy(update={"init": spec.init.model_copy(update={"method": "activation"})})
    assert other.key() != spec.key() and RunSpec.model_validate_json(other.model_dump_json()) == other


@pytest.mark.slow
def test_prune_distill_sweep_of_gpt_neox_teachers(tmp_path):
    """A non-Llama family end to end: a GPT-NeoX teacher pruned in width (activation importance) and depth
    (one layer by cosine), the student distilled from it, and a baseline of its shape from scratch."""
    protocol = {"type": "prune-distill", "teachers": [20000], "teacher_ratio": 5, "students": [3000], "student_ratio": 10,
                "calibration_tokens": 2048, "method": "activation", "depth": 1, "depth_importance": "cosine"}
    cfg = SweepConfig.model_validate({**SWEEP, "model": {"aspect_ratio": 8, "head_dim": 8, "family": "gpt_neox"}, "protocol": [protocol]})
    outcome = run_sweep(cfg, tmp_path / "RUNS.db", progress=False)
    assert not outcome.failed and not outcome.blocked and len(outcome.built) == 1
    (pruned,) = (tmp_path / "RUNS.runs" / PRUNED_DIR).iterdir()
    record = json.loads((pruned / "pruning.json").read_text())
    assert record["family"] == "gpt_neox" and record["method"] == "activation" and record["depth_importance"] == "cosine"
    assert len(record["kept_layers"]) == 2 and len(record["layer_importance"]) == 3
    assert record["params"] == pytest.approx(3000, rel=0.03)
    with RunStore(tmp_path / "RUNS.db") as store:
        table = runs_table(store).set_index("name")
        (student,) = table.index[table["kind"] == "distilled"]
        assert table.loc[student, "pruned_to"] == 3000 and table.loc[student, "params"] == record["params"]
        model = load_model(store.run_dir(student))
        assert type(model).__name__ == "GPTNeoXForCausalLM" and model.config.num_hidden_layers == 2
        assert len(table) == 3 and table["loss"].notna().all()


def test_a_qwen2_sweep_plans_pruned_students_whose_width_is_not_heads_times_head_dim():
    """Pruned Llama-family students keep the head width: d_model 7 with one head of 8 must be a valid Qwen2 config."""
    cfg = SweepConfig.model_validate({**SWEEP, "model": {"aspect_ratio": 8, "head_dim": 8, "family": "qwen2"},
                                      "protocol": [{"type": "prune-distill", "teachers": [35000], "teacher_ratio": 5, "students": [3000]}]})
    student = next(r.spec for r in expand(cfg) if r.role == "student")
    assert (student.shape.n_heads, student.shape.head_dim) == (1, 8) and student.shape.d_model != 8
    assert student.non_embedding_params == pytest.approx(3000, rel=0.03)  # counted on the qwen2 model itself

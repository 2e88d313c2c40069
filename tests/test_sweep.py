"""Sweep scheduling: teachers before students, failures recorded, finished runs skipped (fake trainer, fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from distlaw.errors import DistlawError
from distlaw.lab import train
from distlaw.lab.protocols import SweepConfig
from distlaw.lab.sweep import run_sweep
from distlaw.store import RunStore

CONFIG = SweepConfig.model_validate(
    {
        "name": "fake",
        "workers": 1,
        "model": {"aspect_ratio": 8, "head_dim": 8},
        "protocol": [{"type": "fixedm-fixedm", "teachers": [6256, 20904], "students": [784], "student_ratios": [160, 320]}],
    }
)


class FakeTrainer:
    """Stands in for ``train_run``: records the order of calls, fails for chosen runs."""

    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.calls: list[tuple[str, Path | None]] = []
        self.inits: dict[str, Path | None] = {}
        self.fail = fail

    def __call__(self, spec, run_dir, *, teacher_dir=None, teacher_cache=None, init_dir=None, progress=True, checkpoint_every=None):
        self.calls.append((spec.name, teacher_dir))
        self.inits[spec.name] = init_dir
        if spec.name in self.fail:
            raise RuntimeError(f"diverged\nlong traceback of {spec.name}")
        params = spec.shape.non_embedding_params
        return train.RunResult(
            non_embedding_params=params, total_params=params + 2 * 256 * spec.shape.d_model, tokens=spec.tokens,
            flops=6.0 * params * spec.tokens, teacher_inference_flops=0.0, loss=10.0 / params**0.1,
            teacher_loss=2.0 if spec.teacher else None, teacher_params=20904 if spec.teacher else None,
            eval_tokens=1024, wall_time_s=0.1, steps=3, checkpoint=str(run_dir),
        )  # fmt: skip


def test_teachers_train_before_students_and_get_their_directory(tmp_path, monkeypatch):
    fake = FakeTrainer()
    monkeypatch.setattr(train, "train_run", fake)
    store = tmp_path / "RUNS.db"
    outcome = run_sweep(CONFIG, store, progress=False)
    order = [name for name, _ in fake.calls]
    assert len(order) == len(set(order)) == 2 + 4 + 2  # teachers, students, baselines
    with RunStore(store) as s:
        for name, teacher_dir in fake.calls:
            record = s.get(name)
            assert record.status == "done"
            if record.teacher:
                assert order.index(record.teacher) < order.index(name)
                assert teacher_dir == s.run_dir(record.teacher)
    assert sorted(outcome.done) == sorted(order) and not outcome.failed
    again = run_sweep(CONFIG, store, progress=False)
    assert len(fake.calls) == 8 and sorted(again.skipped) == sorted(order)  # nothing retrained


def test_failed_teacher_blocks_its_students_only(tmp_path, monkeypatch):
    bad = "sup-N6256-D125120"
    monkeypatch.setattr(train, "train_run", FakeTrainer(fail={bad}))
    store = tmp_path / "RUNS.db"
    outcome = run_sweep(CONFIG, store, progress=False)
    assert outcome.failed == [bad]
    assert len(outcome.blocked) == 2 and all(n.endswith("-from-N6256-D125120") for n in outcome.blocked)
    with RunStore(store) as s:
        assert s.get(bad).error == "RuntimeError: diverged"
        assert s.counts() == {"planned": 2, "running": 0, "done": 5, "failed": 1}
    fixed = FakeTrainer()
    monkeypatch.setattr(train, "train_run", fixed)
    assert run_sweep(CONFIG, store, progress=False).failed == [bad]  # not retried unless asked
    retried = run_sweep(CONFIG, store, retry_failed=True, progress=False)
    assert sorted(retried.done) == sorted([bad, *outcome.blocked]) and not retried.failed


def test_interrupted_run_is_taken_over_from_a_dead_process(tmp_path, monkeypatch):
    fake = FakeTrainer()
    monkeypatch.setattr(train, "train_run", fake)
    store = tmp_path / "RUNS.db"
    run_sweep(CONFIG, store, progress=False)
    with RunStore(store) as s:  # as if a killed worker had held a run
        s._db.execute("UPDATE runs SET status = 'running', pid = 2147483646 WHERE name = 'sup-N784-D250880'")
    assert run_sweep(CONFIG, store, progress=False).done == ["sup-N784-D250880"]
    with RunStore(store) as s:
        assert s.get("sup-N784-D250880").attempts == 2



def test_run_folders_go_to_runs_dir_and_later_calls_find_it_without_it(tmp_path, monkeypatch):
    fake = FakeTrainer()
    monkeypatch.setattr(train, "train_run", fake)
    store, shared = tmp_path / "local" / "RUNS.db", tmp_path / "shared"
    run_sweep(CONFIG, store, progress=False, runs_dir=shared)
    with RunStore(store) as s:
        folders = dict(zip(s.frame()["name"], s.frame()["checkpoint"]))  # the fake trainer's run_dir
        teachers = {r.name: r.teacher for r in s.records()}
        s._db.execute("UPDATE runs SET status = 'running', pid = 2147483646 WHERE name = 'sup-N784-D250880'")  # a killed worker's run
    assert folders == {name: str(shared / name) for name in teachers} and len(folders) == 8
    assert all(teacher_dir == shared / teachers[name] for name, teacher_dir in fake.calls if teachers[name])
    assert not store.with_suffix(".runs").exists()
    assert run_sweep(CONFIG, store, progress=False).done == ["sup-N784-D250880"]  # resumed where it was, without runs_dir
    with RunStore(store) as s:
        assert s.get("sup-N784-D250880").attempts == 2 and s.frame().set_index("name").loc["sup-N784-D250880", "checkpoint"] == str(shared / "sup-N784-D250880")
        before = "\n".join(s._db.iterdump())
    with pytest.raises(DistlawError, match="recorded at its first run"):
        run_sweep(CONFIG, store, progress=False, runs_dir=tmp_path / "other")
    with RunStore(store) as s:
        assert "\n".join(s._db.iterdump()) == before  # refused before anything was written
    assert len(fake.calls) == 9

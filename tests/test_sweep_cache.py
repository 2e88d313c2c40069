"""Sweeps with ``distill.cache_k``: one teacher cache per teacher, built after it and read by all its
students (teacher inference paid once); a failed cache fails only its students."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distlaw.compute import ModelShape
from distlaw.lab import teacher_cache, train
from distlaw.lab.protocols import SweepConfig
from distlaw.lab.shared import CACHE_DIR
from distlaw.lab.sweep import run_sweep
from distlaw.store import RunStore, runs_table
from test_sweep import FakeTrainer

SWEEP = {
    "name": "cached",
    "workers": 1,
    "checkpoint_every": 1000,
    "eval_tokens": 8192,
    "data": {"seq_len": 64},
    "optim": {"batch_size": 16},
    "model": {"aspect_ratio": 8, "head_dim": 8},
    "protocol": [{"type": "fixedm-fixedm", "teachers": [6256, 20904], "teacher_ratio": 10, "students": [784], "student_ratios": [80, 160]}],
}


def config(**distill) -> SweepConfig:
    return SweepConfig.model_validate({**SWEEP, "distill": distill})


class FakeCacheBuilder:
    """Stands in for ``build_cache``: writes a manifest-only cache and records the call."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail = fail

    def __call__(self, teacher_dir, out, data_cfg, default_cache, *, tokens, k, temperature, order_seed, batch_size, progress):
        self.calls.append((out.name, tokens))
        if self.fail:
            raise RuntimeError("disk full")
        out.mkdir(parents=True)
        manifest = {"k": k, "tokens": tokens, "build_flops": 2.0 * tokens}
        (out / teacher_cache.MANIFEST).write_text(json.dumps(manifest))
        return manifest


def test_each_teacher_cache_is_built_once_after_its_teacher_and_read_by_its_students(tmp_path, monkeypatch):
    trainer, builder = FakeTrainer(), FakeCacheBuilder()
    monkeypatch.setattr(train, "train_run", trainer)
    monkeypatch.setattr(teacher_cache, "build_cache", builder)
    store = tmp_path / "RUNS.db"
    outcome = run_sweep(config(cache_k=64), store, progress=False)
    assert not outcome.failed and len(outcome.built) == len(builder.calls) == 2  # one per teacher
    with RunStore(store) as s:
        students = [r for r in s.records() if r.kind == "distilled"]
        longest = max(r.spec.steps for r in students) * 16 * 64
        assert {tokens for _, tokens in builder.calls} == {longest}  # covers the longest student
        caches = s.caches()
        assert [c["tokens"] for c in caches] == [longest, longest] and {c["teacher"] for c in caches} == {r.teacher for r in students}
        order = [name for name, _ in trainer.calls]
        for record in students:
            assert order.index(record.teacher) < order.index(record.name)
            assert dict(trainer.calls)[record.name] is None  # no online teacher: the cache is read instead
    assert all((tmp_path / "RUNS.runs" / CACHE_DIR / name).is_dir() for name, _ in builder.calls)
    again = run_sweep(config(cache_k=64), store, progress=False)
    assert again.built == [] and len(builder.calls) == 2  # finished sweep: nothing rebuilt


def test_a_failed_cache_fails_its_students_only_and_is_retried(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "train_run", FakeTrainer())
    monkeypatch.setattr(teacher_cache, "build_cache", FakeCacheBuilder(fail=True))
    store = tmp_path / "RUNS.db"
    outcome = run_sweep(config(cache_k=64), store, progress=False)
    assert len(outcome.failed) == 4 and not outcome.built and not outcome.blocked
    with RunStore(store) as s:
        assert all(s.get(name).error.endswith("RuntimeError: disk full") for name in outcome.failed)
        assert s.counts()["done"] == 4  # teachers and baselines
    monkeypatch.setattr(teacher_cache, "build_cache", FakeCacheBuilder())
    retried = run_sweep(config(cache_k=64), store, retry_failed=True, progress=False)
    assert sorted(retried.done) == sorted(outcome.failed) and len(retried.built) == 2


@pytest.mark.slow
def test_cached_sweep_matches_online_sweep_and_pays_teacher_inference_once(tmp_path):
    """k = V: the cache is the full teacher up to fp16 rounding, so cached students reach the online
    students' losses; the teacher-inference FLOPs are the cache builds', not every student's."""
    online = run_sweep(config(), tmp_path / "online.db", progress=False)
    cached = run_sweep(config(cache_k=256), tmp_path / "cached.db", progress=False)
    assert not online.failed and not cached.failed and len(cached.built) == 2
    with RunStore(tmp_path / "online.db") as s:
        online_table = runs_table(s).set_index("name").sort_index()
    with RunStore(tmp_path / "cached.db") as s:
        cached_table = runs_table(s).set_index("name").sort_index()
        caches = s.caches()
    assert list(online_table.index) == list(cached_table.index)
    np.testing.assert_allclose(cached_table["loss"], online_table["loss"], atol=2e-3)
    np.testing.assert_allclose(cached_table["teacher_loss"], online_table["teacher_loss"], atol=1e-9)
    distilled = cached_table["kind"] == "distilled"
    assert (cached_table.loc[distilled, "teacher_inference_flops"] == 0).all()
    for cache in caches:  # F(N_T) per token, over the longest student's tokens, once
        teacher = ModelShape.model_validate(json.loads((tmp_path / "cached.runs" / cache["teacher"] / "spec.json").read_text())["shape"])
        assert cache["build_flops"] == pytest.approx(teacher.forward_flops_per_token() * cache["tokens"])
        students = online_table[online_table["teacher"] == cache["teacher"]]
        assert cache["build_flops"] < students["teacher_inference_flops"].sum()  # two students, one pass
        assert cache["tokens"] == students["tokens"].max()


def test_cli_plans_shows_and_reports_the_caches(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(train, "train_run", FakeTrainer())
    monkeypatch.setattr(teacher_cache, "build_cache", FakeCacheBuilder())
    path = tmp_path / "cached.toml"
    path.write_text(
        'name = "cached"\nworkers = 1\n[distill]\ncache_k = 64\n[model]\naspect_ratio = 8\nhead_dim = 8\n'
        '[[protocol]]\ntype = "fixedm-fixedm"\nteachers = [6256, 20904]\nstudents = [784]\nstudent_ratios = [160, 320]\n'
    )
    store = tmp_path / "RUNS.db"
    planned = cli("sweep", "plan", path, "--store", store, "--json").json()["by_protocol"]
    teachers = planned["fixedm-fixedm teacher"]
    assert planned["teacher caches"]["runs"] == 2  # one per teacher, each as long as the longest student
    assert planned["teacher caches"]["tokens"] == 2 * 62 * 32 * 128  # D_S = 784 x 320 = 250880: 62 steps of 32 x 128
    assert planned["teacher caches"]["flops"] < planned["fixedm-fixedm student"]["flops"] + teachers["flops"]
    result = cli("sweep", "run", path, "--store", store, "--json")
    assert result.code == 0, result.stderr
    assert len(result.json()["built"]) == 2
    status = cli("sweep", "status", path, "--store", store, "--json").json()
    assert sorted(c["teacher"] for c in status["teacher_caches"]) == sorted(r["name"] for r in status["runs"] if r["name"].startswith("sup-N") and r["params"] > 784)
    shown = cli("sweep", "status", path, "--store", store)
    assert "teacher caches" in shown.stdout


def test_runs_wait_for_their_cache_whatever_order_the_jobs_come_in(tmp_path, monkeypatch):
    """Shared builds are not runs of the store: a student must still wait for its cache to be built."""
    from distlaw.lab import sweep

    seen: dict[str, bool] = {}

    class CheckingTrainer(FakeTrainer):
        def __call__(self, spec, run_dir, *, teacher_cache=None, **kwargs):
            if spec.kind == "distilled":
                seen[spec.name] = teacher_cache is not None and (teacher_cache / teacher_cache_module.MANIFEST).is_file()
            return super().__call__(spec, run_dir, teacher_cache=teacher_cache, **kwargs)

    teacher_cache_module = teacher_cache
    monkeypatch.setattr(train, "train_run", CheckingTrainer())
    monkeypatch.setattr(teacher_cache, "build_cache", FakeCacheBuilder())
    jobs = sweep._jobs
    monkeypatch.setattr(sweep, "_jobs", lambda *args: jobs(*args)[::-1])  # students listed first
    outcome = run_sweep(config(cache_k=64), tmp_path / "RUNS.db", progress=False)
    assert not outcome.failed and not outcome.blocked and len(outcome.built) == 2
    assert len(seen) == 4 and all(seen.values())

"""``distlaw design --next K --store RUNS.db`` (issue 12, item 2): on a planted store (losses from planted
coefficients plus noise, written through the store API), the proposed runs shrink the simulated interval more
than naive runs of the same cost; the config reuses finished teachers and runs with ``distlaw sweep run``; refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distlaw.design import active
from distlaw.design.pilot import Target
from distlaw.fitting.models import DISTILLATION, SUPERVISED
from distlaw.laws import Coefficients, load_coefficients, student_loss, supervised_loss

PRIOR = load_coefficients("busbridge2025")
NOISE = 0.005
TARGET = Target(1.35e9, 2.7e10, 2.2)
PAPER_PILOT = """name = "planted"
[model]
aspect_ratio = 128
head_dim = 64
max_params = 1e10
[[protocol]]
type = "runs"
supervised = [[4.25e7, 8.5e8], [4.25e7, 3.4e9], [4.25e7, 1.36e10], [1.007e8, 2.0e9], [1.007e8, 8.0e9], [1.966e8, 3.9e9],
              [1.966e8, 1.6e10], [4.32e8, 8.6e9]]
distilled = [[4.25e7, 8.5e8, 7], [4.25e7, 3.4e9, 7], [4.25e7, 1.36e10, 7], [1.007e8, 2.0e9, 7], [1.007e8, 8.0e9, 7],
             [4.25e7, 8.5e8, 5], [4.25e7, 3.4e9, 5], [1.007e8, 2.0e9, 5], [1.007e8, 8.0e9, 5], [4.25e7, 1.36e10, 5]]
"""


def planted_store(path: Path, config: str = PAPER_PILOT, truth: Coefficients = PRIOR, seed: int = 0, whole_steps: bool = False) -> Path:
    """Every run of ``config`` planned into a store at ``path`` and finished with its loss from ``truth`` times
    exp(NOISE z) (a student's teacher loss: its teacher's planted loss); ``whole_steps``: the tokens recorded
    are the planned ones rounded up to whole optimizer steps, as the lab trains them."""
    from distlaw.lab.protocols import expand, load_config
    from distlaw.store import RunStore

    (path.parent / "planted.toml").write_text(config)
    plan = expand(load_config(path.parent / "planted.toml"))
    rng = np.random.default_rng(seed)
    losses: dict[str, float] = {}
    with RunStore(path) as store:
        store.add_plan("planted", plan)
        for run in plan:
            spec, n = run.spec, run.spec.non_embedding_params
            lt = losses.get(spec.teacher) if spec.teacher else None
            mean = supervised_loss(n, spec.tokens, truth.require("supervised")) if lt is None else student_loss(n, spec.tokens, lt, truth)
            losses[spec.name] = float(mean) * float(np.exp(NOISE * rng.standard_normal()))
            assert store.claim(spec.name, 1)
            step = spec.optim.batch_size * spec.data.seq_len
            trained = -(-spec.tokens // step) * step if whole_steps else spec.tokens
            store.finish(spec.name, {"tokens": trained, "loss": losses[spec.name], "teacher_loss": lt, "flops": 6.0 * n * spec.tokens})
    return path


def jittered(truth: Coefficients, members: int = 16, sd: float = 0.005, seed: int = 1) -> Coefficients:
    """``truth`` with bootstrap samples: every fit-space coefficient (log scales, exponents) off by sd N(0, 1)."""
    rng = np.random.default_rng(seed)

    def samples(model, block):
        values = block.as_dict()
        shift = lambda p: float(np.exp(np.log(values[p.name]) + sd * rng.standard_normal())) if p.log else values[p.name] + sd * rng.standard_normal()  # noqa: E731
        return [{p.name: shift(p) for p in model.parameters} for _ in range(members)]

    data = truth.to_dict()
    data["bootstrap"] = {"supervised": samples(SUPERVISED, truth.supervised), "distillation": samples(DISTILLATION, truth.distillation)}
    data.pop("meta", None)
    return Coefficients.from_dict(data)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return planted_store(tmp_path_factory.mktemp("planted") / "runs.db")


@pytest.fixture(scope="module")
def proposal(store):
    finished = active.read_finished(store, distilled=True)
    return active.propose(finished, jittered(PRIOR), TARGET, 4, noise=NOISE, replicates=4, truths=16, seed=3)


def test_the_store_is_read_as_its_finished_runs_with_their_measured_losses(store):
    finished = active.read_finished(store, distilled=True)
    assert (len(finished.pilot.sup_params), len(finished.pilot.dist_params)) == (8, 10)
    assert finished.settings["model"] == {"aspect_ratio": 128, "head_dim": 64, "vocab_size": 256}
    planted = supervised_loss(finished.pilot.sup_params, finished.pilot.sup_tokens, PRIOR.require("supervised"))
    assert np.abs(np.log(finished.measured.sup_loss / planted)).max() < 4 * NOISE


def test_runs_trained_to_whole_steps_are_never_proposed_again(tmp_path):
    """The lab trains a run's tokens rounded up to whole steps: the pool still knows those runs as finished."""
    path = planted_store(tmp_path / "runs.db", whole_steps=True)
    finished = active.read_finished(path, distilled=True)
    assert (finished.pilot.sup_tokens % finished.step_tokens == 0).all()
    pool, done = active.next_pool(finished, active.pool_sizes(finished, None), distilled=True)
    step = finished.step_tokens
    new = [(n, d) for n, d in zip(pool.sup_params[len(done):], pool.sup_tokens[len(done):])]
    for n, d in zip(finished.pilot.sup_params, finished.pilot.sup_tokens):
        assert not any(m == n and abs(e - d) < step for m, e in new), (n, d)
    for n, d in zip(finished.pilot.dist_params, finished.pilot.dist_tokens):
        assert not any(m == n and abs(e - d) < step for m, e in zip(pool.dist_params, pool.dist_tokens)), (n, d)
    reused = active.addition(type(finished.pilot)(finished.pilot.sup_params, finished.pilot.sup_tokens), finished).reused
    assert (reused == np.arange(len(reused))).all()


@pytest.mark.slow
def test_proposed_runs_shrink_the_interval_more_than_naive_runs_of_equal_cost(proposal):
    assert proposal.proposed.runs == 4 and proposal.naive.runs == 4
    assert proposal.naive.flops() == pytest.approx(proposal.proposed.flops(), rel=1e-6)
    assert proposal.after < proposal.now
    assert proposal.after < 0.8 * proposal.naive_width, (proposal.now, proposal.after, proposal.naive_width)


@pytest.mark.slow
def test_the_config_lists_finished_teachers_as_the_same_runs_so_the_sweep_finds_them_done(store, proposal, tmp_path):
    from distlaw.design.config import write_sweep_config
    from distlaw.lab.protocols import expand, load_config
    from distlaw.lab.sweep import plan_sweep
    from distlaw.store import RunStore

    naive = active.NextRuns(proposal.target, proposal.predicted, proposal.finished, proposal.naive, proposal.naive, 0.1, 0.1, 0.1, 0.9)
    path = tmp_path / "next.toml"
    write_sweep_config(active.next_config(naive, "next", store, path), path)  # the naive runs reuse the strongest finished teacher
    runs = expand(load_config(path))
    with RunStore(store) as s:
        before = {r.name: r.status for r in s.records()}
    teacher = next(r.spec for r in runs if r.role == "teacher")
    assert before.get(teacher.name) == "done"
    copy = tmp_path / "copy.db"
    copy.write_bytes(store.read_bytes())
    plan_sweep(load_config(path), copy)
    with RunStore(copy) as s:
        after = {r.name: r.status for r in s.records()}
    assert after[teacher.name] == "done"  # same name and key: not planned again
    assert len(after) == len(before) + proposal.naive.runs
    assert sorted(n for n in after if n not in before) == sorted(r.spec.name for r in runs if r.role != "teacher")


def refused(cli, *args):
    result = cli("design", *map(str, args))
    assert result.code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


TARGET_ARG = ("--target", "student=1.35e9,tokens=2.7e10,teacher-loss=2.2")


def test_refusals(cli, store, tmp_path):
    out = tmp_path / "next.toml"
    empty = tmp_path / "empty.db"
    from distlaw.store import RunStore

    RunStore(empty).close()
    assert "needs --store" in refused(cli, "--next", 4, *TARGET_ARG, "--out", out)
    assert "--store needs --next" in refused(cli, "--store", store, *TARGET_ARG, "--out", out)
    assert "at least 1" in refused(cli, "--next", 0, "--store", store, *TARGET_ARG, "--out", out)
    assert "no finished runs" in refused(cli, "--next", 2, "--store", empty, *TARGET_ARG, "--out", out)
    assert "cheapest candidate" in refused(cli, "--next", 2, "--store", store, *TARGET_ARG, "--budget", 1e10, "--out", out)
    fitted = tmp_path / "nofit.json"
    PRIOR.save(fitted)
    assert "no bootstrap samples" in refused(cli, "--next", 2, "--store", store, *TARGET_ARG, "--coefficients", fitted, "--out", out)
    assert not out.exists()


@pytest.mark.slow
def test_cli_with_a_fitted_file_writes_the_config_and_json(cli, store, tmp_path):
    fitted, out = tmp_path / "fitted.json", tmp_path / "next.toml"
    jittered(PRIOR, members=8).save(fitted)
    result = cli("design", "--next", 2, "--store", store, *TARGET_ARG, "--coefficients", fitted, "--replicates", 2, "--out", out, "--json")
    assert result.code == 0, result.stderr
    record = result.json()
    assert set(record) >= {"target", "finished_runs", "now", "next", "naive", "out"} and record["finished_runs"] == 18
    assert len(record["next"]["runs"]) == 2 and record["naive"]["flops"] == pytest.approx(record["next"]["flops"], rel=1e-6)
    from distlaw.lab.protocols import expand, load_config

    planned = expand(load_config(out))
    assert sum(r.role != "teacher" or not any(x["teacher"] and x["teacher"]["finished"] for x in record["next"]["runs"]) for r in planned) >= 2
    table = cli("design", "--next", 2, "--store", store, *TARGET_ARG, "--coefficients", fitted, "--replicates", 2, "--out", out)
    assert table.code == 0, table.stderr
    assert "the next 2 runs for L(1.35e+09 params, 2.7e+10 tokens, teacher loss 2.2)" in " ".join(table.stdout.split())

"""``distlaw design`` (issue 12): designed pilots against a log-uniform grid of equal cost on planted data,
their intervals' coverage, the linearised criterion against simulation, the config the lab runs, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from distlaw.design.designer import design_pilot, grid_of, perturbed_priors
from distlaw.design.pilot import largest_size
from distlaw.design.greedy import TEACHER_RATIOS, Pool, greedy_pilot
from distlaw.design.layouts import log_uniform_grid
from distlaw.design.linear import pilot_variance
from distlaw.design.pilot import Target
from distlaw.design.simulate import coverage, simulate
from distlaw.laws import Coefficients, load_coefficients

PRIOR = load_coefficients("busbridge2025")
CPU_PRIOR = Coefficients.from_dict({  # a fit of 16 CPU runs (docs/pilot-validation.md, exploration 2)
    "supervised": {"E": 1.22, "A": 314.06, "B": 2910.5, "alpha": 0.7903, "beta": 0.6250, "gamma": 0.8846},
    "distillation": {"A": 23.405, "B": 2063.3, "alpha": 0.321, "beta": 0.637, "gamma": 0.764, "c0": 2.549, "c1": 522.6, "f1": 0.09,
                     "d1": 1.315}})
BUDGET = 1e21
TARGET = Target(3e9, 6e10, 2.2)


def linear_sd(pilot, coefficients=PRIOR, target=TARGET) -> float:
    return float(np.sqrt(pilot_variance(coefficients, pilot, target)))


@pytest.mark.slow
def test_linearised_spread_matches_the_simulated_one_for_a_small_noise():
    pilot = log_uniform_grid(BUDGET, largest_size(BUDGET, 1e12)).pilot()
    noise = 0.001
    simulated = np.std(np.log(simulate([pilot], PRIOR, TARGET, noise=noise, replicates=24, seed=2)[0]))
    assert simulated / (noise * linear_sd(pilot)) == pytest.approx(1.0, abs=0.35)


def test_a_pilot_without_distilled_runs_leaves_the_target_unidentified():
    pilot = log_uniform_grid(BUDGET, 1e12).pilot()
    sup_only = type(pilot)(pilot.sup_params, pilot.sup_tokens)
    assert linear_sd(sup_only) == np.inf


def test_greedy_pilot_respects_budget_and_run_cap_and_trains_its_teachers():
    pool = Pool.grid(np.geomspace(1e7, largest_size(BUDGET, 1e12), 9))
    pilot = greedy_pilot(pool, [PRIOR], TARGET, BUDGET, max_runs=40)
    assert pilot.flops() <= BUDGET * (1 + 1e-12) and pilot.runs <= 40
    teachers = pilot.sup_params[pilot.dist_teacher]
    assert (teachers > pilot.dist_params).all()
    assert set(np.round(pilot.sup_tokens[pilot.dist_teacher] / teachers, 6)) <= set(TEACHER_RATIOS)


def test_a_pool_with_min_tokens_has_no_shorter_run_and_keeps_every_longer_one():
    sizes = np.geomspace(1e7, 1e9, 5)
    full, short = Pool.grid(sizes), Pool.grid(sizes, min_tokens=5e9)
    assert short.sup_tokens.min() >= 5e9 and short.dist_tokens.min() >= 5e9
    assert len(short.sup_tokens) == int((full.sup_tokens >= 5e9).sum())
    kept = {(n, d) for n, d in zip(short.sup_params, short.sup_tokens)}
    teachers = {(full.sup_params[t], full.sup_tokens[t]) for t in full.dist_teacher}
    expected = sum(1 for n, d, t in zip(full.dist_params, full.dist_tokens, full.dist_teacher)
                   if d >= 5e9 and (full.sup_params[t], full.sup_tokens[t]) in kept)
    assert len(short.dist_tokens) == expected and teachers & kept
    assert {(short.sup_params[t], short.sup_tokens[t]) for t in short.dist_teacher} <= kept


def test_limits_no_designed_pilot_can_meet_are_one_clear_error():
    from distlaw.errors import DistlawError

    assert len(Pool.grid(np.geomspace(1e7, 1e9, 5), min_tokens=1e15).sup_params) == 0
    with pytest.raises(DistlawError, match="no pilot of 1e\\+21 FLOPs fits these limits"):
        design_pilot(BUDGET, TARGET, PRIOR, min_params=1e7, max_params=1e12, min_tokens=1e15, replicates=8)


def test_several_targets_are_predicted_from_the_same_fits_as_each_one_alone():
    pilot = log_uniform_grid(BUDGET, largest_size(BUDGET, 1e12)).pilot()
    supervised, distilled = Target(1e9, 3e10), TARGET
    both = simulate([pilot], PRIOR, [supervised, distilled], replicates=4, seed=3)
    assert both.shape == (1, 4, 2)
    assert both[..., 0] == pytest.approx(simulate([pilot], PRIOR, supervised, replicates=4, seed=3), rel=1e-9)
    assert both[..., 1] == pytest.approx(simulate([pilot], PRIOR, distilled, replicates=4, seed=3), rel=1e-9)


def test_greedy_criterion_of_several_targets_is_the_sum_of_their_variances_and_gains():
    from distlaw.design.greedy import _Criterion

    pool = Pool.grid(np.geomspace(1e7, 1e9, 4))
    targets = [Target(1e9, 3e10), TARGET]
    crits = [_Criterion(pool, [PRIOR], t, 1.0) for t in (targets, *targets)]
    for step in range(3):
        gains = [(c.gains("sup"), c.gains("dist")) for c in crits]
        for kind, k in (("sup", 0), ("dist", 1)):
            assert gains[0][k] == pytest.approx(gains[1][k] + gains[2][k], rel=1e-6)
        assert crits[0].variance() == pytest.approx(crits[1].variance() + crits[2].variance(), rel=1e-6)
        for c in crits:
            c.add("sup" if step != 1 else "dist", 2 * step)


@pytest.mark.slow
def test_a_design_keeps_no_candidate_that_cannot_identify_a_target_and_says_the_grid_cannot():
    """A CPU-sized budget: the log-uniform grid, made of the family's sizes, keeps two distilled runs (too few
    for Eq. 8's coefficients); it stays as the baseline with an unbounded interval, every other candidate
    identifies both targets."""
    from distlaw.design.designer import family_sizes

    prior = CPU_PRIOR
    targets = [Target(49312, 8e6), Target(20904, 1e7, 1.6)]
    design = design_pilot(5.5e12, targets, prior, min_params=5e3, max_params=1e5, min_tokens=6e5, max_runs=40, replicates=8,
                          sizes=family_sizes(8, 8))
    assert design.targets == tuple(targets) and design.truths == pytest.approx([t.truth(prior) for t in targets])
    grid = grid_of(design)
    assert len(grid.pilot.dist_params) < 9 and grid.width == np.inf and grid.score == np.inf
    for cand in design.candidates:
        if cand.kind != "grid":
            assert all(np.isfinite(pilot_variance(prior, cand.pilot, t)) for t in targets)
            assert np.isfinite(cand.score)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_designed_pilot_beats_a_log_uniform_grid_of_equal_cost_and_its_intervals_cover_the_truth():
    design = design_pilot(BUDGET, TARGET, PRIOR, min_params=1e7, replicates=40)
    best, grid = design.best.pilot, grid_of(design).pilot
    assert len(design.candidates) >= 20
    assert best.flops() <= BUDGET * (1 + 1e-9) and grid.flops() == pytest.approx(BUDGET)
    for truth, seed in ((PRIOR, 11), (perturbed_priors(PRIOR)[0], 12)):  # the planted truth as the prior, then 10 % off it
        planted = TARGET.truth(truth)
        predictions = simulate([best, grid], truth, TARGET, replicates=40, seed=seed) / planted
        lo, hi = np.nanquantile(predictions, [0.05, 0.95], axis=1)
        assert (hi - lo)[1] >= 2 * (hi - lo)[0], f"designed {hi[0] - lo[0]:.4f} vs grid {hi[1] - lo[1]:.4f}"
        estimates, lower, upper = coverage(best, truth, TARGET, replicates=40, bootstrap=40, seed=seed)
        assert np.mean((lower <= planted) & (planted <= upper)) >= 0.85


def test_every_candidate_pilot_is_made_of_runs_the_lab_trains_within_the_limits():
    """Greedy pilots, layouts and the grid alike: family sizes within --min-params/--max-params, no run below
    --min-tokens, each teacher larger than its students, no run twice, the budget spent (not exceeded)."""
    from distlaw.design.designer import candidate_pilots, family_sizes

    sizes = family_sizes(8, 8)
    family = set(sizes(5e3, 1e5))
    budget, target = 5.5e12, Target(20904, 1e7, 1.6)
    pool = candidate_pilots(budget, CPU_PRIOR, target, max_params=1e5, min_params=5e3, noise=0.005, max_runs=30, sizes=sizes,
                            min_tokens=6e5)
    assert {kind for kind, _ in pool} == {"greedy", "layout", "grid"}
    for kind, pilot in pool:
        assert set(pilot.sup_params) | set(pilot.dist_params) <= family, kind
        assert pilot.shortest_run() >= 6e5, kind
        assert (pilot.sup_params[pilot.dist_teacher] > pilot.dist_params).all(), kind
        runs = list(zip(pilot.sup_params, pilot.sup_tokens)) + list(zip(pilot.dist_params, pilot.dist_tokens, pilot.dist_teacher))
        assert len(set(runs)) == len(runs), kind
        assert pilot.flops() <= budget * (1 + 1e-9), kind
        if kind != "greedy":  # spent up to a jump: runs lifted to the --min-tokens floor merge, then part as the tokens grow
            assert pilot.flops() >= 0.95 * budget, kind


def test_conform_keeps_a_pilot_already_within_the_limits_and_lifts_short_runs_to_the_floor():
    from distlaw.design.designer import conform

    grid = log_uniform_grid(BUDGET, 1e12).pilot()
    same = conform(grid, grid.flops(), 0.0)
    assert np.allclose(same.sup_tokens, grid.sup_tokens) and np.allclose(same.dist_tokens, grid.dist_tokens)
    floor = float(np.median(grid.sup_tokens))
    lifted = conform(grid, grid.flops(), floor)
    assert lifted.shortest_run() == pytest.approx(floor) and lifted.flops() == pytest.approx(grid.flops())
    assert lifted.sup_tokens.max() < grid.sup_tokens.max()  # the longer runs paid for the lifted ones
    assert lifted.runs < grid.runs  # runs lifted to the same floor merged
    assert conform(grid, grid.flops(), grid.sup_tokens.max() * 10) is None  # the floor alone costs more than the budget


def test_a_pilot_written_as_a_sweep_config_expands_to_exactly_its_runs(tmp_path):
    from distlaw.design.config import sweep_config, write_sweep_config
    from distlaw.design.designer import family_sizes
    from distlaw.design.pilot import Pilot
    from distlaw.lab.protocols import expand, load_config

    sizes = family_sizes(8, 8)(5e3, 1e5)  # the lab's CPU shapes: 6256, 20904, 49312, 96640
    assert list(sizes) == [6256, 20904, 49312, 96640]
    pilot = Pilot(sizes[[1, 2, 3, 3]], np.array([4e5, 1e6, 2e6, 8e6]), sizes[[0, 0, 1]], np.array([2e5, 8e5, 4e5]), np.array([2, 3, 3]))
    path = tmp_path / "pilot.toml"
    write_sweep_config(sweep_config(pilot, "designed", header=["a test pilot"]), path)
    runs = expand(load_config(path))
    sup = sorted((r.spec.shape.non_embedding_params, r.spec.tokens) for r in runs if r.spec.kind == "supervised")
    assert sup == sorted((int(n), int(d)) for n, d in zip(pilot.sup_params, pilot.sup_tokens))
    by_name = {r.spec.name: r.spec for r in runs}
    dist = sorted((r.spec.shape.non_embedding_params, r.spec.tokens, by_name[r.spec.teacher].tokens) for r in runs if r.spec.kind == "distilled")
    assert dist == sorted((int(n), int(d), int(pilot.sup_tokens[t])) for n, d, t in zip(pilot.dist_params, pilot.dist_tokens, pilot.dist_teacher))
    assert {r.role for r in runs if r.spec.kind == "supervised" and r.spec.tokens in (2e6, 8e6)} == {"teacher"}
    assert load_config(path).optim.batch_size == 32  # no [optim] table: the lab's defaults
    write_sweep_config(sweep_config(pilot, "designed", header=["a test pilot"], optim={"batch_size": 8, "lr": 2e-3}), path)
    optim = load_config(path).optim
    assert (optim.batch_size, optim.lr) == (8, 2e-3)
    assert {r.spec.optim.batch_size for r in expand(load_config(path))} == {8}


def test_a_runs_protocol_naming_a_missing_teacher_is_refused(tmp_path):
    from distlaw.errors import DistlawError
    from distlaw.lab.protocols import load_config

    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\n[[protocol]]\ntype = "runs"\nsupervised = [[6256, 1e6]]\ndistilled = [[6256, 5e5, 3]]\n')
    with pytest.raises(DistlawError, match="names teacher 3, but there are 1 supervised runs"):
        load_config(path)


@pytest.mark.parametrize("flags,message", [
    (["--next", "2", "--store", "pilot.db", "--batch-size", "8"], "--next keeps the store's own settings"),
    (["--lr", "-1"], "--lr must be a positive learning rate"),
])
def test_design_optimizer_flags_are_checked_in_one_line(cli, tmp_path, flags, message):
    result = cli("design", "--budget", "3e12", "--target", "student=1e5,tokens=2e6", "--out", tmp_path / "p.toml", *flags)
    assert result.code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_design_cli_writes_a_pilot_the_lab_plans_as_is(cli, tmp_path):
    out, prior = tmp_path / "pilot.toml", tmp_path / "prior.json"
    CPU_PRIOR.save(prior)
    result = cli("design", "--budget", "5.5e12", "--target", "student=49312,tokens=8e6", "--target", "student=20904,tokens=1e7,teacher-loss=1.6",
                 "--prior", prior, "--min-params", "5e3", "--max-params", "1e5", "--min-tokens", "6e5", "--replicates", "8", "--max-runs", "40",
                 "--batch-size", "8", "--out", out, "--json")
    assert result.code == 0, result.stderr
    record = result.json()
    assert record["out"] == str(out) and len(record["candidates"]) >= 3
    assert [(t["params"], t["teacher_loss"]) for t in record["targets"]] == [(49312, None), (20904, 1.6)]
    assert record["chosen"]["flops"] <= 5.5e12 * (1 + 1e-9)
    planned = cli("sweep", "plan", out, "--store", tmp_path / "pilot.db", "--json")
    assert planned.code == 0, planned.stderr
    assert sum(row["runs"] for key, row in planned.json()["by_protocol"].items() if key.startswith("runs ")) == record["chosen"]["runs"]


def test_design_cli_table_names_every_target_and_an_unbounded_grid(cli, tmp_path, monkeypatch):
    """The human-readable answer (design_sweep stubbed: the rendering, not the search): each target with its
    prediction, the candidates, and a grid that cannot identify the targets shown as unbounded."""
    import distlaw.design.designer as designer

    def candidate(kind, width, worst):
        return {"kind": kind, "label": kind, "runs": 12, "supervised": 7, "distilled": 5, "flops": 5.5e12, "width": width,
                "worst_width": worst, "mean_width": worst, "score": worst}

    chosen, grid = candidate("greedy", 0.015, 0.027), candidate("grid", None, None)
    seen = {}

    def fake(budget, targets, prior, out, **options):
        seen["targets"] = targets
        return {"targets": [{**t.record(), "predicted": 1.5 + i} for i, t in enumerate(targets)], "level": 0.9,
                "chosen": chosen, "grid": grid, "candidates": [chosen, grid], "out": str(out)}

    monkeypatch.setattr(designer, "design_sweep", fake)
    result = cli("design", "--budget", "5.5e12", "--target", "student=49312,tokens=8e6", "--target-plan", "student=1e8,compute=1e20",
                 "--target", "student=20904,tokens=1e7,teacher-loss=1.9", "--min-params", "5e3", "--out", tmp_path / "p.toml")
    assert result.code == 0, result.stderr
    assert [(t.params, t.teacher_loss is None) for t in seen["targets"]] == [(49312, True), (20904, False), (1e8, False)]
    text = " ".join(result.stdout.split())
    assert "L(4.931e+04 params, 8e+06 tokens) = 1.5000" in text and "L(2.09e+04 params, 1e+07 tokens, teacher loss 1.9) = 2.5000" in text
    assert "±0.75 %" in text and "(mean over the targets) ±1.35 %" in text and "(the log-uniform grid: unbounded)" in text

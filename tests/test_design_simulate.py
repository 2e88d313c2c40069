"""Pilot simulation (issue 12): batched replicate fits against one-at-a-time fits, exact recovery without
noise, and a spread that grows with the noise."""

from __future__ import annotations

import numpy as np
import pytest

from distlaw.design.pilot import Pilot, Target
from distlaw.design.simulate import simulate
from distlaw.fitting import SUPERVISED, fit
from distlaw.fitting.batch import fit_problems
from distlaw.laws import load_coefficients, supervised_loss

PRIOR = load_coefficients("busbridge2025")


def small_pilot() -> Pilot:
    """Five sizes at M = 20, 80, 320 (teachers at M = 20), students distilled at M = 20 and 160."""
    sizes = np.geomspace(1e8, 3e9, 5)
    sup_n = np.repeat(sizes, 3)
    sup_d = sup_n * np.tile([20.0, 80.0, 320.0], 5)
    teachers = np.arange(5) * 3
    dist_n = np.repeat(np.geomspace(1e8, 1e9, 3), 10)
    dist_d = dist_n * np.tile([20.0, 160.0], 15)
    dist_t = np.tile(np.repeat(teachers, 2), 3)
    return Pilot(sup_n, sup_d, dist_n, dist_d, dist_t)


def predictions(coefficients, n, d) -> np.ndarray:
    return SUPERVISED.predict(dict(zip(SUPERVISED.names, coefficients)), {"N": n, "D": d})


def test_batched_fits_equal_one_at_a_time_fits():
    rng = np.random.default_rng(3)
    truth = PRIOR.require("supervised").as_dict()
    n = np.geomspace(1e8, 1e10, 12)
    d = n * np.exp(rng.uniform(np.log(10), np.log(300), 12))
    observed = supervised_loss(n, d, PRIOR.require("supervised"))[None, :] * np.exp(0.01 * rng.standard_normal((3, 12)))
    batched = fit_problems(SUPERVISED, {"N": np.tile(n, (3, 1)), "D": np.tile(d, (3, 1))}, observed, truth)
    start = np.array([[p.to_fit(truth[p.name]) for p in SUPERVISED.parameters]])
    for row in range(3):
        single = fit(SUPERVISED, {"N": n, "D": d, "loss": observed[row]}, grid=start)
        assert batched[row] == pytest.approx([single.coefficients[k] for k in SUPERVISED.names], rel=1e-4)
        assert predictions(batched[row], n, d) == pytest.approx(predictions(single.coefficients.values(), n, d), rel=1e-7)


def test_zero_weight_padding_changes_nothing():
    rng = np.random.default_rng(4)
    n = np.geomspace(1e8, 1e10, 10)
    d = 40 * n
    obs = supervised_loss(n, d, PRIOR.require("supervised")) * np.exp(0.01 * rng.standard_normal(10))
    truth = PRIOR.require("supervised").as_dict()
    plain = fit_problems(SUPERVISED, {"N": n[None], "D": d[None]}, obs[None], truth)
    padded_n, padded_d, padded_obs = (np.concatenate([x, np.full(3, x[0])])[None] for x in (n, d, obs * np.r_[np.ones(9), 1.0]))
    padded_obs[0, -3:] = 99.0  # garbage the zero weights must hide
    weights = np.r_[np.ones(10), np.zeros(3)][None]
    padded = fit_problems(SUPERVISED, {"N": padded_n, "D": padded_d}, padded_obs, truth, weights=weights)
    assert padded == pytest.approx(plain, rel=1e-4)  # the optimizer's tolerance along the flat directions
    assert predictions(padded[0], n, d) == pytest.approx(predictions(plain[0], n, d), rel=1e-7)


@pytest.mark.parametrize("target", [Target(1e9, 2e10), Target(1e9, 2e10, teacher_loss=2.2)], ids=["supervised", "distilled"])
def test_without_noise_every_replicate_recovers_the_truth(target):
    pred = simulate([small_pilot()], PRIOR, target, noise=1e-7, replicates=4)
    assert pred == pytest.approx(np.full((1, 4), target.truth(PRIOR)), rel=1e-5)


@pytest.mark.slow
def test_spread_grows_with_the_noise_and_is_centred_on_the_truth():
    target = Target(1e9, 2e10, teacher_loss=2.2)
    low, high = (simulate([small_pilot()], PRIOR, target, noise=s, replicates=24, seed=1)[0] for s in (0.002, 0.008))
    ratio = np.std(high) / np.std(low)
    assert 2.5 < ratio < 6  # ~4x for a nearly linear estimator
    assert abs(np.median(high) / target.truth(PRIOR) - 1) < 3 * np.std(high) / target.truth(PRIOR)


def test_flops_count_training_and_online_teacher_inference():
    p = Pilot(np.array([1e8, 2e8]), np.array([2e9, 4e9]), np.array([5e7]), np.array([1e9]), np.array([1]))
    assert p.flops() == pytest.approx(6 * (1e8 * 2e9 + 2e8 * 4e9) + (6 * 5e7 + 2 * 2e8) * 1e9)


def test_layouts_spend_the_budget_and_respect_the_cap():
    from distlaw.design.layouts import TEACHER_RATIO, candidates, log_uniform_grid

    budget = 1e21
    layouts = candidates(budget, max_params=1e10)
    assert len(layouts) >= 20
    for layout in layouts:
        pilot = layout.pilot()
        assert pilot.flops() == pytest.approx(budget, rel=1e-9)
        teachers = np.unique(pilot.dist_teacher)
        assert np.allclose(pilot.sup_tokens[teachers] / pilot.sup_params[teachers], TEACHER_RATIO)
        assert (pilot.dist_params < pilot.sup_params[pilot.dist_teacher]).all()
    capped = log_uniform_grid(budget, max_params=1e8)
    assert capped.sizes.max() == pytest.approx(1e8) and capped.pilot().flops() < budget

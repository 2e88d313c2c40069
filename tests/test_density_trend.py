"""Densing-law trend: envelope selection and doubling time against planted exponentials."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from distlaw.density.trend import envelope_mask, fit_trend, validate_dated_models
from distlaw.errors import DistlawError
from distlaw.laws.density import doubling_time


def planted_models(rate: float, n: int = 60, noise: float = 0.05, laggards: int = 60, seed: int = 0) -> pd.DataFrame:
    """Frontier models on ln rho = rate t - 1 (+ noise), plus laggards well under the frontier."""
    rng = np.random.default_rng(seed)
    days = np.sort(rng.choice(np.arange(0, 700), n + laggards, replace=False))
    log_rho = rate * days - 1.0 + rng.normal(0, noise, days.size)
    log_rho[rng.permutation(days.size)[:laggards]] -= rng.uniform(0.5, 2.0, laggards)
    return pd.DataFrame(
        {
            "model": [f"m{i}" for i in range(days.size)],
            "release_date": pd.Timestamp("2023-02-24") + pd.to_timedelta(days, unit="D"),
            "density": np.exp(log_rho),
        }
    )


def test_doubling_time_of_the_published_rate():
    assert float(doubling_time(0.0073)) == pytest.approx(94.95, abs=0.01)  # Xiao: ~95 days, ~3.3 months


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_exponential_with_noise_recovers_the_doubling_time(seed):
    fit = fit_trend(planted_models(0.0073, seed=seed))
    assert fit.doubling_days == pytest.approx(np.log(2) / 0.0073, rel=0.05)
    lo, hi = fit.doubling_days_ci
    assert lo < fit.doubling_days < hi
    assert 20 < len(fit.envelope) < 60  # laggards and noisy dips are off the envelope


def test_exact_exponential_gives_exact_rate_and_every_model_on_the_envelope():
    models = planted_models(0.0073, n=10, noise=0.0, laggards=0)
    fit = fit_trend(models)
    assert fit.A_per_day == pytest.approx(0.0073, rel=1e-9)
    assert fit.doubling_days == pytest.approx(94.95, abs=0.01)
    assert fit.envelope == models["model"].tolist() and fit.r2 == pytest.approx(1.0)


def test_envelope_is_the_running_maximum_with_one_model_per_date():
    days = np.array([0, 10, 20, 20, 30, 40])
    density = np.array([1.0, 0.5, 2.0, 3.0, 2.5, 3.5])
    assert envelope_mask(days, density).tolist() == [True, False, False, True, False, True]


def test_origin_shifts_only_the_intercept():
    models = planted_models(0.01, n=20, laggards=5)
    a, b = fit_trend(models), fit_trend(models, origin=date(2024, 1, 1))
    assert b.A_per_day == pytest.approx(a.A_per_day) and b.B != pytest.approx(a.B)


def test_two_envelope_points_give_an_unbounded_interval():
    models = planted_models(0.01, n=2, noise=0.0, laggards=0)
    fit = fit_trend(models)
    assert fit.doubling_days == pytest.approx(np.log(2) / 0.01)
    assert fit.doubling_days_ci == (0.0, np.inf)


def test_effective_params_column_becomes_density():
    table = pd.DataFrame(
        {"model": ["a", "b"], "release_date": ["2023-03-01", "2023-09-01"], "params": [1e9, 2e9], "effective_params": [1e9, 8e9]}
    )
    assert validate_dated_models(table)["density"].tolist() == [1.0, 4.0]


def test_fewer_than_two_envelope_models_is_an_error():
    table = pd.DataFrame({"model": ["a", "b"], "release_date": ["2023-03-01", "2023-09-01"], "params": [1, 1], "density": [2.0, 1.0]})
    with pytest.raises(DistlawError, match="only 1 model on the running-maximum"):
        fit_trend(validate_dated_models(table))

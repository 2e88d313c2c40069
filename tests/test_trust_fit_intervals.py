"""`distlaw fit` never prints or writes an interval that misses its own estimate (issue 9, item 3d)."""

from __future__ import annotations

import numpy as np

from distlaw.fitting import fit
from distlaw.fitting.models import SUPERVISED
from distlaw.intervals import NO_INTERVAL

TRUTH = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37, "gamma": 1.0}


def _planted(noise: float = 0.01, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = np.repeat([1e8, 3e8, 1e9, 3e9, 1e10], 6)
    d = n * np.tile([5, 10, 20, 40, 80, 160], 5)
    loss = SUPERVISED.predict(TRUTH, {"N": n, "D": d}) * np.exp(noise * rng.standard_normal(n.size))
    return {"N": n, "D": d, "loss": loss}


def test_one_sided_resamples_give_no_interval_and_say_why():
    """Only E is free; every resample doubles the weight of the runs above the point fit, so every
    resampled E lies above the estimate: the percentile interval cannot contain it."""
    data = _planted()
    fixed = {k: v for k, v in TRUTH.items() if k != "E"}
    point = fit(SUPERVISED, data, fixed=fixed)
    above = np.log(data["loss"]) > np.log(SUPERVISED.predict(point.coefficients, data))
    weights = np.tile(np.where(above, 2.0, 1.0), (20, 1)) * np.linspace(1.0, 1.2, 20)[:, None]
    result = fit(SUPERVISED, data, fixed=fixed, bootstrap_weights=weights)
    draws = result.bootstrap_samples[:, SUPERVISED.names.index("E")]
    assert (draws > result.coefficients["E"]).all()  # the planted degeneracy
    assert np.isnan(result.intervals["E"]).all()
    assert result.interval_notes["E"] == NO_INTERVAL
    assert result.summary()["interval_notes"] == {"E": NO_INTERVAL}


def test_ordinary_resamples_hold_their_estimates():
    data = _planted()
    result = fit(SUPERVISED, data, fixed={"gamma": 1.0}, bootstrap=40, seed=1)
    for name, (lo, hi) in result.intervals.items():
        if name in result.interval_notes:
            assert np.isnan([lo, hi]).all()
        else:
            assert lo <= result.coefficients[name] <= hi, name


def test_the_table_says_no_interval_instead_of_nan(capsys):
    from distlaw.cli.fit import _print_result

    data = _planted()
    fixed = {k: v for k, v in TRUTH.items() if k != "E"}
    point = fit(SUPERVISED, data, fixed=fixed)
    above = np.log(data["loss"]) > np.log(SUPERVISED.predict(point.coefficients, data))
    result = fit(SUPERVISED, data, fixed=fixed, bootstrap_weights=np.tile(np.where(above, 2.0, 1.0), (8, 1)))

    class Fitted:  # the two attributes of fit_runs' result that the table reads
        holdout_below = None

        def results(self):
            return {"supervised": result}

    _print_result(Fitted(), None)
    shown = capsys.readouterr().out
    assert "nan" not in shown.lower() and "none (degenerate)" in shown


def test_a_bad_number_in_a_runs_table_is_shown_as_written(cli, tmp_path):
    runs = tmp_path / "runs.csv"
    runs.write_text("kind,params,tokens,loss\nsupervised,-1,10,2\n")
    result = cli("fit", runs)
    assert result.code == 2 and result.stderr.strip().endswith("got -1") and "np." not in result.stderr

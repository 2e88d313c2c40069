"""``distlaw fit --prior``: nested parameterisations chosen by leave-largest-runs-out error (issue 12, item 3)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from distlaw.fitting import SUPERVISED, fit, fit_runs
from distlaw.fitting.fit import SELECTION_OPTIONS
from distlaw.fitting.optimizer import LBFGSOptions
from distlaw.fitting.selection import (
    BOOTSTRAP,
    NO_FLOOR,
    Parameterisation,
    Scored,
    choose,
    form_pool,
    largest_runs,
    select,
    supervised_candidates,
)
from distlaw.errors import DistlawError
from distlaw.laws import Coefficients, load_coefficients, supervised_loss

QUICK = LBFGSOptions(max_iter=100)
"""Short fits for the tests of bookkeeping: what they check holds for any settings, given the same to both sides."""
PLANTED = {"E": 1.3, "A": 400.0, "B": 900.0, "alpha": 0.34, "beta": 0.29, "gamma": 1.0}


def _supervised_table(sizes: np.ndarray, noise: float = 0.004, seed: int = 1) -> pd.DataFrame:
    """Runs of the PLANTED law at each size x M = 10, 20, 40, 80, with log-normal noise."""
    rng = np.random.default_rng(seed)
    n = np.repeat(sizes, 4)
    d = n * np.tile([10.0, 20.0, 40.0, 80.0], len(sizes))
    loss = supervised_loss(n, d, Coefficients.from_dict({"supervised": PLANTED}).supervised) * np.exp(noise * rng.standard_normal(n.size))
    return pd.DataFrame({"kind": "supervised", "params": n, "tokens": d, "loss": loss})


def _narrow_supervised() -> pd.DataFrame:
    """A pilot-like table: 16 runs over one decade of size, far from the floor: E and gamma are weakly pinned."""
    return _supervised_table(np.geomspace(2e7, 2e8, 4))


def _scored(name: str, free: int, mape: float, at_bound: tuple[str, ...] = (), weak: tuple[str, ...] = ()) -> Scored:
    return Scored(Parameterisation(name), free, mape, at_bound, weak=weak)


def test_choose_takes_the_lowest_error_with_no_bound_hit() -> None:
    scored = [_scored("all free", 6, 0.5, ("E",)), _scored("a", 5, 1.2), _scored("b", 4, 0.9), _scored("c", 3, math.nan)]
    pick, reason = choose(scored)
    assert pick.parameterisation.name == "b"
    assert "on a bound: all free" in reason


def test_choose_prefers_fewer_free_coefficients_within_the_tie_margin() -> None:
    pick, reason = choose([_scored("six", 6, 1.00), _scored("four", 4, 1.04), _scored("three", 3, 1.2)])
    assert pick.parameterisation.name == "four"
    assert "fewest free coefficients (4)" in reason


def test_choose_with_every_form_on_a_bound_says_so() -> None:
    pick, reason = choose([_scored("x", 6, 2.0, ("E",)), _scored("y", 5, 1.0, ("gamma",))])
    assert pick.parameterisation.name == "y" and reason.startswith("every parameterisation leaves")


def test_choose_leaves_out_forms_whose_bootstrap_does_not_pin_a_coefficient() -> None:
    """A coefficient whose bootstrap interval reaches a bound or collapses is not pinned: such a form loses
    to any form with every coefficient pinned, however well it extrapolates."""
    scored = [_scored("all free", 6, 0.4, weak=("E",)), _scored("gamma = 1", 5, 0.8), _scored("x", 4, 0.3, ("E",))]
    pick, reason = choose(scored)
    assert pick.parameterisation.name == "gamma = 1"
    assert "no coefficient on a bound or weakly pinned" in reason and "weakly pinned: all free (E)" in reason


def test_choose_with_every_form_weakly_pinned_takes_the_best_with_no_bound_hit_and_says_so() -> None:
    pick, reason = choose([_scored("a", 6, 0.4, weak=("E",)), _scored("b", 5, 0.6, weak=("gamma",)), _scored("c", 4, 0.1, ("E",))])
    assert pick.parameterisation.name == "a"
    assert "every one leaves some coefficient weakly pinned; this one: E" in reason


def test_largest_runs_are_the_top_quarter_by_compute() -> None:
    data = {"N": np.array([1.0, 8.0, 2.0, 4.0, 3.0, 5.0, 7.0, 6.0]), "D": np.ones(8)}
    assert np.flatnonzero(largest_runs(data)).tolist() == [1, 6]
    assert largest_runs({"N": np.array([1.0, 2.0]), "D": np.ones(2)}).sum() == 1


def _by_hand(data: dict, forms, held: np.ndarray, options: LBFGSOptions = SELECTION_OPTIONS) -> dict[str, tuple[float, bool]]:
    """Each form's held-out MAPE (fitted on the smaller runs) and whether its fit on all runs leaves a
    coefficient unpinned (on a bound, or its bootstrap interval reaching one or collapsing)."""
    out = {}
    for form in forms:
        train = {k: v[~held] for k, v in data.items()}
        test = {k: v[held] for k, v in data.items()}
        fold = fit(SUPERVISED, train, fixed=form.fixed, holdout=test, grid="coarse", options=options)
        whole = fit(SUPERVISED, data, fixed=form.fixed, grid="coarse", options=options, bootstrap=BOOTSTRAP)
        out[form.name] = (fold.metrics["holdout"]["mape_pct"], bool(whole.at_bound or whole.weak))
    return out


def _check_against(record: dict, by_hand: dict[str, tuple[float, bool]]) -> None:
    for c in record["candidates"]:
        assert c["holdout_mape_pct"] == pytest.approx(by_hand[c["name"]][0], rel=1e-6)
        assert bool(c["at_bound"] or c["weak"]) == by_hand[c["name"]][1]
    admissible = {k: v[0] for k, v in by_hand.items() if not v[1]}
    assert admissible, "the planted table should leave some form with every coefficient pinned"
    assert admissible[record["name"]] <= min(admissible.values()) * 1.05 + 1e-12


def _data(runs: pd.DataFrame) -> dict[str, np.ndarray]:
    return {"N": runs["params"].to_numpy(), "D": runs["tokens"].to_numpy(), "loss": runs["loss"].to_numpy()}


def test_select_matches_fitting_each_form_by_hand() -> None:
    """Held-out errors are what plain fits of each form on the smaller runs give on the largest ones, and the
    choice is the lowest of those with no coefficient on a bound (a naive reference)."""
    runs = _narrow_supervised()
    data = _data(runs)
    forms = [Parameterisation("all free"), Parameterisation("gamma = 1", {"gamma": 1.0}),
             Parameterisation("no floor, gamma = 1", {"E": NO_FLOOR, "gamma": 1.0})]
    chosen = select(fit, SUPERVISED, data, forms, grid="coarse", options=QUICK)
    held = largest_runs(data)
    assert chosen.held_out == int(held.sum()) == 4
    _check_against(chosen.record(), _by_hand(data, forms, held, QUICK))


def test_forms_fitted_in_worker_processes_give_the_same_selection() -> None:
    """The candidate forms are independent fits: in a pool of processes they come out as they do one by one
    (same held-out errors, bound hits and choice), and a failing form still reports its reason."""
    data = _data(_narrow_supervised())
    forms = [Parameterisation("gamma = 1", {"gamma": 1.0}), Parameterisation("every coefficient fixed", {**PLANTED}),
             Parameterisation("no floor, gamma = 1", {"E": NO_FLOOR, "gamma": 1.0})]
    serial = select(fit, SUPERVISED, data, forms, grid="coarse", options=QUICK).record()
    with form_pool(2) as pool:
        assert pool is not None
        parallel = select(fit, SUPERVISED, data, forms, grid="coarse", options=QUICK, pool=pool).record()
    assert parallel == serial
    assert serial["candidates"][1]["note"] == "every coefficient fixed"


@pytest.mark.slow
def test_fit_runs_selection_over_every_form_matches_by_hand() -> None:
    runs = _narrow_supervised()
    prior = load_coefficients("busbridge2025")
    result = fit_runs(runs, "supervised", prior=prior, prior_name="busbridge2025", grid="coarse")
    record = result.supervised.parameterisation
    forms = supervised_candidates(prior.supervised.as_dict(), "busbridge2025")
    assert [c["name"] for c in record["candidates"]] == [f.name for f in forms]
    _check_against(record, _by_hand(_data(runs), forms, largest_runs(_data(runs))))
    assert not result.supervised.at_bound  # the final fit of the chosen form pins every free coefficient
    for name, value in record["fixed"].items():
        assert result.supervised.coefficients[name] == value


def test_without_a_prior_the_fit_is_unchanged() -> None:
    runs = _narrow_supervised()
    plain = fit_runs(runs, "supervised", grid="coarse", options=QUICK).supervised
    assert plain.parameterisation is None and "parameterisation" not in plain.summary()
    again = fit(SUPERVISED, _data(runs), grid="coarse", options=QUICK)
    assert plain.coefficients == again.coefficients


def test_fix_wins_and_the_coefficients_file_records_the_form(tmp_path) -> None:
    runs = _narrow_supervised()
    result = fit_runs(runs, "supervised", fixed={"gamma": 0.8}, prior=load_coefficients("busbridge2025"),
                      prior_name="busbridge2025", grid="coarse", bootstrap=8, options=QUICK)
    record = result.supervised.parameterisation
    assert all(c["fixed"]["gamma"] == 0.8 and "gamma" not in c["from_prior"] for c in record["candidates"])
    keys = [tuple(sorted(c["fixed"].items())) for c in record["candidates"]]
    assert len(keys) == len(set(keys)) == 4  # all free, no floor, E from the prior, exponents: the rest coincide
    assert result.supervised.coefficients["gamma"] == 0.8
    path = tmp_path / "fitted.json"
    result.coefficients().save(path)
    saved = json.loads(path.read_text())
    written = saved["meta"]["fit"]["supervised"]["parameterisation"]
    assert written["name"] == record["name"] and set(written["from_prior"]) <= set(written["fixed"])
    for row in saved["bootstrap"]["supervised"]:  # a form's fixed coefficients stay constant over the bootstrap
        for name, value in written["fixed"].items():
            assert row[name] == value
    assert set(result.supervised.intervals) == set(result.supervised.free)


def test_no_floor_form_holds_E_at_the_fitters_bound() -> None:
    forms = {f.name: f for f in supervised_candidates(None, "p")}
    assert forms["no floor (E = 0)"].fixed == {"E": NO_FLOOR}
    assert NO_FLOOR == pytest.approx(math.exp(-10.0))
    assert not any(f.from_prior for f in forms.values())


@pytest.mark.slow
def test_distillation_forms_include_the_supervised_exponents() -> None:
    from distlaw.fitting.synthetic import synthetic_runs

    runs = synthetic_runs(n_supervised=24, n_distilled=30, seed=3)
    result = fit_runs(runs, prior=load_coefficients("busbridge2025"), prior_name="busbridge2025", grid="coarse")
    names = [c["name"] for c in result.distillation.parameterisation["candidates"]]
    assert "alpha, beta, gamma from the supervised fit" in names
    tied = next(c for c in result.distillation.parameterisation["candidates"] if c["name"] == "alpha, beta, gamma from the supervised fit")
    assert tied["fixed"] == {k: result.supervised.coefficients[k] for k in ("alpha", "beta", "gamma")}
    assert tied["from_prior"] == []


def test_cli_refuses_an_unknown_prior_in_one_line(tmp_path, cli) -> None:
    path = tmp_path / "runs.csv"
    _narrow_supervised().to_csv(path, index=False)
    res = cli("fit", str(path), "--prior", "nosuch")
    assert res.code == 2 and len(res.stderr.strip().splitlines()) == 1 and "nosuch" in res.stderr


def test_cli_prints_the_forms_and_writes_them(tmp_path, cli) -> None:
    runs = _supervised_table(np.geomspace(1e7, 1e10, 5))  # three decades: quick fits (a test of output)
    path = tmp_path / "runs.csv"
    runs.to_csv(path, index=False)
    out = tmp_path / "fitted.json"
    res = cli("fit", str(path), "--law", "supervised", "--prior", "busbridge2025", "--fix", "gamma=1", "--grid", "coarse",
              "--bootstrap", "40", "--out", str(out))
    assert res.code == 0, res.stderr
    assert "forms tried" in res.stdout and "chosen" in res.stdout
    assert "parameterisation" in json.loads(out.read_text())["meta"]["fit"]["supervised"]


def test_answers_from_a_fitted_file_say_which_coefficients_its_runs_did_not_pin(tmp_path, cli) -> None:
    """A coefficient on a bound, or taken from the prior by the chosen form, comes with every answer that
    rests on the file (one warning line each, in JSON too); a preset has none."""
    data = load_coefficients("busbridge2025").to_dict()
    data["meta"] = {"name": "fit of pilot.csv", "fit": {
        "supervised": {"at_bound": {"E": "lower"}},
        "distillation": {"at_bound": {}, "parameterisation": {"name": "alpha, beta, gamma from busbridge2025",
                                                              "fixed": {"alpha": 0.321, "beta": 0.637, "gamma": 0.764},
                                                              "from_prior": ["alpha", "beta", "gamma"]}}}}
    path = tmp_path / "fitted.json"
    Coefficients.from_dict(data).save(path)
    res = cli("predict", "--params", "5.46e8", "--tokens", "1.092e10", "--teacher-loss", "2.2", "--coefficients", path, "--json")
    assert res.code == 0, res.stderr
    warnings = res.json()["warnings"]
    assert "fit of pilot.csv: the supervised law's E sits on its lower bound in the fit (its runs do not identify it)" in warnings
    assert any("the distillation law's alpha, beta, gamma come from the prior" in w for w in warnings)
    plain = cli("predict", "--params", "5.46e8", "--tokens", "1.092e10", "--teacher-loss", "2.2", "--json")
    assert plain.json()["warnings"] == []


def test_a_coefficient_the_final_bootstrap_finds_weakly_pinned_is_named_in_the_reason() -> None:
    """The selection checks pinning with a small bootstrap; when the final fit's larger one disagrees, the
    record says so instead of leaving a 'pinned' reason beside a 'weakly identified' warning."""
    from types import SimpleNamespace

    from distlaw.fitting.fit import _confirmed

    form = {"name": "no floor", "reason": "lowest held-out MAPE", "candidates": [{"name": "all free", "weak": []}, {"name": "no floor", "weak": ["B"]}]}
    assert _confirmed(form, SimpleNamespace(weak={}), 200) is form
    assert _confirmed(form, SimpleNamespace(weak={"B": "x"}), 200) is form  # already known to the selection
    amended = _confirmed(form, SimpleNamespace(weak={"gamma": "its bootstrap interval reaches its upper bound"}), 200)
    assert amended["reason"].startswith("lowest held-out MAPE; but the final fit's 200-resample bootstrap finds gamma weakly pinned")
    assert _confirmed(None, SimpleNamespace(weak={"gamma": "x"}), 200) is None


@pytest.mark.parametrize("workers", [0, -1, 1.5])
def test_a_worker_count_below_one_is_refused_before_any_fit(workers) -> None:
    with pytest.raises(DistlawError, match=r"^--workers must be >= 1"):
        fit_runs(_narrow_supervised(), "supervised", prior=load_coefficients("busbridge2025"), workers=workers)

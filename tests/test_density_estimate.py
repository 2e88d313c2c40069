"""Two-step estimation round trip: planted coefficients back from synthetic reference models."""

import numpy as np
import pandas as pd
import pytest

from distlaw.density.estimate import fit_density, score_models, validate_reference
from distlaw.errors import DistlawError
from distlaw.laws.density import LossLawCoefficients, ScoreLawCoefficients, conditional_loss, effective_params, score_from_loss

LOSS = LossLawCoefficients(a=300.0, b=300.0, alpha=0.3, beta=0.3)
SCORE = ScoreLawCoefficients(c=0.6, gamma=-3.0, l=2.0, d=0.25)
SIZES = np.array([5.2e6, 31.5e6, 106e6, 245e6, 477e6, 828e6])  # Xiao's reference family (LAWS.md section 7)
MULTIPLES = np.array([10, 15, 20, 30, 40, 60])  # tokens per parameter


def reference(loss_noise: float = 0.0, score_noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = np.repeat(SIZES, MULTIPLES.size)
    d = n * np.tile(MULTIPLES, SIZES.size)
    loss = conditional_loss(n, d, LOSS) * np.exp(rng.normal(0, loss_noise, n.size))
    score = score_from_loss(loss, SCORE.c, SCORE.gamma, SCORE.l, SCORE.d) + rng.normal(0, score_noise, n.size)
    return validate_reference(pd.DataFrame({"params": n, "tokens": d, "loss": loss, "score": score}))


def planted_score(n_effective: float, d0: float = 1e12) -> float:
    return float(score_from_loss(conditional_loss(n_effective, d0, LOSS), SCORE.c, SCORE.gamma, SCORE.l, SCORE.d))


def test_exact_data_recovers_the_planted_coefficients():
    k = fit_density(reference())
    for fitted, planted in ((k.loss, LOSS), (k.score, SCORE)):
        for name, value in planted.as_dict().items():
            assert getattr(fitted, name) == pytest.approx(value, rel=1e-4), name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_data_recovers_a_planted_models_effective_size_within_2_percent(seed):
    k = fit_density(reference(loss_noise=0.001, score_noise=0.001, seed=seed), bootstrap=40)
    assert k.loss.alpha == pytest.approx(LOSS.alpha, rel=0.02) and k.loss.beta == pytest.approx(LOSS.beta, rel=0.02)
    assert k.score.gamma == pytest.approx(SCORE.gamma, rel=0.02) and k.score.l == pytest.approx(SCORE.l, rel=0.02)
    # mid-sigmoid (S ~ 0.64), where the inversion is well conditioned; near the ceiling c + d every
    # score error is amplified by dL/dS and then by L^(-1/alpha)
    models = pd.DataFrame({"model": ["student"], "params": [1e7], "score": [planted_score(3e7)]})
    row = score_models(models, k).iloc[0]
    assert row["effective_params"] == pytest.approx(3e7, rel=0.02)
    assert row["density"] == pytest.approx(3.0, rel=0.02)
    assert row["effective_params_lo"] <= row["effective_params"] <= row["effective_params_hi"]
    assert len(k.samples()) > 30


def test_bootstrap_draws_beyond_a_samples_range_become_limits_not_nan():
    k = fit_density(reference(loss_noise=0.01, score_noise=0.01, seed=1), bootstrap=20)
    edges = [k.score.c + k.score.d - 1e-6, k.score.d + 1e-6]  # just inside the fitted range at both ends
    rows = score_models(pd.DataFrame({"model": ["top", "bottom"], "params": [1e8, 1e8], "score": edges}), k)
    assert rows["status"].tolist() == ["unbounded", "at the sigmoid's limit"]
    assert np.isinf(rows.loc[0, "effective_params"]) and np.isinf(rows.loc[0, "effective_params_hi"])
    assert not np.isnan(rows.loc[0, "effective_params_lo"])
    assert rows.loc[1, ["effective_params", "effective_params_lo", "effective_params_hi"]].isna().all()  # ill-conditioned: blank


def test_score_law_must_fall_with_loss():
    table = reference()
    table["score"] = 1.0 - table["score"]  # a score that rises with the loss
    with pytest.raises(DistlawError, match="no falling score"):
        fit_density(table)


def test_reference_table_problems_name_row_and_column():
    with pytest.raises(DistlawError, match="missing column"):
        validate_reference(pd.DataFrame({"params": [1.0], "tokens": [1.0], "loss": [1.0]}))
    bad = reference().assign(loss=lambda df: df["loss"].where(df.index != 3, -1.0))
    with pytest.raises(DistlawError, match="row 5 column 'loss'"):
        validate_reference(bad)
    with pytest.raises(DistlawError, match="needs at least 5"):
        validate_reference(reference().head(4))


def test_planted_inversion_is_exact_without_fitting():
    assert effective_params(planted_score(3e8), LOSS, SCORE) == pytest.approx(3e8, rel=1e-9)

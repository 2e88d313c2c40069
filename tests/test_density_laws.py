"""Densing-law math: the inversion undoes the two steps; limits are 0 / inf, never NaN."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from distlaw.errors import DistlawError
from distlaw.laws.density import (
    DensityCoefficients,
    LossLawCoefficients,
    ScoreLawCoefficients,
    conditional_loss,
    effective_params,
    effective_status,
    log_conditional_loss,
    loss_floor,
    loss_for_score,
    score_from_loss,
)

LOSS = LossLawCoefficients(a=40.0, b=300.0, alpha=0.3, beta=0.28)
SCORE = ScoreLawCoefficients(c=0.6, gamma=-2.5, l=2.0, d=0.25)


def score_of(n, d):
    return score_from_loss(conditional_loss(n, d, LOSS), SCORE.c, SCORE.gamma, SCORE.l, SCORE.d)


def test_forward_formulas_match_the_paper():
    n, d = np.array([1e7, 1e9]), np.array([2e11, 1e12])
    np.testing.assert_allclose(conditional_loss(n, d, LOSS), 40.0 * n**-0.3 + 300.0 * d**-0.28, rtol=1e-12)
    loss = np.array([1.0, 2.0, 3.5])
    np.testing.assert_allclose(score_from_loss(loss, 0.6, -2.5, 2.0, 0.25), 0.6 / (1 + np.exp(2.5 * (loss - 2.0))) + 0.25, rtol=1e-12)


@given(st.floats(1e6, 1e13))
def test_inversion_returns_the_size_at_d0(n):
    assert effective_params(score_of(n, 1e12), LOSS, SCORE) == pytest.approx(n, rel=1e-6)


def test_inversion_uses_the_configured_horizon():
    assert effective_params(score_of(3e8, 5e9), LOSS, SCORE, d0=5e9) == pytest.approx(3e8, rel=1e-8)
    # a reference family trained on more tokens reaches the same score with fewer parameters
    assert effective_params(score_of(3e8, 5e9), LOSS, SCORE, d0=1e12) < 3e8


def test_loss_for_score_is_xiaos_formula():
    s = np.array([0.3, 0.5, 0.8])
    expected = SCORE.l - np.log(SCORE.c / (s - SCORE.d) - 1) / SCORE.gamma
    np.testing.assert_allclose(loss_for_score(s, SCORE), expected, rtol=1e-12)


def test_out_of_range_and_unbounded_are_limits_not_nan():
    top = SCORE.c + SCORE.d
    scores = np.array([0.1, SCORE.d, 0.5, top - 1e-12, top, 0.99])
    n = effective_params(scores, LOSS, SCORE)
    assert not np.isnan(n).any()
    assert n[0] == n[1] == 0 and n[2] > 0 and np.isinf(n[3:]).all()
    assert effective_status(scores, LOSS, SCORE).tolist() == [
        "below range", "below range", "ok", "unbounded", "above range", "above range",
    ]


def test_scores_whose_loss_is_under_the_data_floor_are_unbounded():
    floor = loss_floor(LOSS)
    s_floor = score_from_loss(floor, SCORE.c, SCORE.gamma, SCORE.l, SCORE.d)
    assert effective_status([s_floor - 1e-6, s_floor + 1e-9], LOSS, SCORE).tolist() == ["ok", "unbounded"]


def test_torch_backend_differentiates():
    log_a = torch.tensor(np.log(40.0), dtype=torch.float64, requires_grad=True)
    out = log_conditional_loss(torch.log(torch.tensor([1e8], dtype=torch.float64)), torch.log(torch.tensor([1e10], dtype=torch.float64)), log_a, np.log(300.0), 0.3, 0.28)
    out.sum().backward()
    assert torch.exp(out).item() == pytest.approx(conditional_loss(1e8, 1e10, LOSS), rel=1e-12)
    assert 0 < log_a.grad.item() < 1


def test_coefficients_reject_a_rising_sigmoid_and_round_trip(tmp_path):
    with pytest.raises(ValueError, match="negative"):
        ScoreLawCoefficients(c=0.5, gamma=1.0, l=2.0, d=0.0)
    k = DensityCoefficients(loss=LOSS, score=SCORE, d0=3e5, bootstrap=[{"loss": LOSS.as_dict(), "score": SCORE.as_dict()}])
    k.save(tmp_path / "k.json")
    back = DensityCoefficients.load(tmp_path / "k.json")
    assert back == k and back.samples() == [(LOSS, SCORE)]
    (tmp_path / "bad.json").write_text('{"loss": {"a": 1}, "score": {}}')
    with pytest.raises(DistlawError, match=r"bad.json: loss.b: Field required"):
        DensityCoefficients.load(tmp_path / "bad.json")

"""The laws against the values of LAWS.md section 2 (computed from Busbridge et al. Table 6)."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from distlaw import DistlawError, load_coefficients, student_loss, supervised_loss
from distlaw.laws import Coefficients, PRESETS, log_supervised_loss

BUSBRIDGE = load_coefficients("busbridge2025")


@pytest.mark.parametrize(
    ("n", "d", "expected"),
    [(1.821e9, 36.4e9, 2.2508), (7.747e9, 512e9, 1.9329)],
)
def test_supervised_reference_values(n, d, expected):
    assert supervised_loss(n, d, BUSBRIDGE.supervised) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    ("ns", "ds", "lt", "expected"),
    [(5.46e8, 1.092e10, 2.2, 2.4119), (5.46e8, 1.092e10, 2.5, 2.5325), (1.821e9, 3.642e10, 2.0, 2.1827)],
)
def test_distillation_reference_values(ns, ds, lt, expected):
    assert student_loss(ns, ds, lt, BUSBRIDGE) == pytest.approx(expected, abs=1e-4)


def test_matches_naive_formula_where_naive_is_safe():
    c = BUSBRIDGE.supervised
    n, d = np.logspace(7, 11, 9), np.logspace(9, 13, 9)
    naive = c.E + (c.A / n**c.alpha + c.B / d**c.beta) ** c.gamma
    np.testing.assert_allclose(supervised_loss(n, d, c), naive, rtol=1e-12)


@given(st.floats(1e6, 1e17), st.floats(1e6, 1e17), st.floats(1.2201, 10.0))
def test_no_overflow_and_limits_hold_over_the_whole_range(n, d, lt):  # teacher losses above the floor E = 1.22
    ls = student_loss(n, d, lt, BUSBRIDGE)
    assert np.isfinite(ls) and ls >= lt * (1 - 1e-12)  # the student never beats the teacher's loss floor
    assert np.isfinite(supervised_loss(n, d, BUSBRIDGE.supervised))


def test_student_approaches_teacher_in_the_infinite_limit():
    assert student_loss(1e17, 1e17, 2.0, BUSBRIDGE) == pytest.approx(2.0, abs=1e-3)
    sup = BUSBRIDGE.supervised
    # infinite-data limit L(N) = E + (A N^-alpha)^gamma (LAWS.md section 1)
    assert supervised_loss(1e9, np.inf, sup) == pytest.approx(sup.E + (sup.A * 1e9**-sup.alpha) ** sup.gamma, rel=1e-12)


def test_torch_backend_agrees_and_differentiates():
    c = BUSBRIDGE.supervised
    log_e = torch.tensor(np.log(c.E), dtype=torch.float64, requires_grad=True)
    log_n = torch.log(torch.tensor([1e8, 1e9], dtype=torch.float64))
    log_d = torch.log(torch.tensor([2e9, 2e10], dtype=torch.float64))
    out = log_supervised_loss(log_n, log_d, log_e, np.log(c.A), np.log(c.B), c.alpha, c.beta, c.gamma)
    out.sum().backward()
    np.testing.assert_allclose(torch.exp(out).detach().numpy(), supervised_loss([1e8, 1e9], [2e9, 2e10], c), rtol=1e-12)
    assert log_e.grad is not None and torch.isfinite(log_e.grad)


def test_coefficients_json_round_trip(tmp_path):
    path = tmp_path / "c.json"
    BUSBRIDGE.save(path)
    assert Coefficients.load(path) == BUSBRIDGE
    assert set(PRESETS) == {"busbridge2025", "hoffmann2022", "epoch2024"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "malformed JSON"),
        ('{"supervised": {"E": 1}}', "supervised.A"),
        ('{"supervised": {"E": -1, "A": 1, "B": 1, "alpha": 0.3, "beta": 0.3}}', "supervised.E"),
        ('{"other": 1}', "other"),
        ("[]", "expected a JSON object"),
    ],
)
def test_malformed_coefficients_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DistlawError, match=message):
        load_coefficients(path)


def test_missing_block_and_bad_values():
    with pytest.raises(DistlawError, match="hoffmann2022: no 'distillation' block"):
        student_loss(1e9, 1e10, 2.0, load_coefficients("hoffmann2022"))
    with pytest.raises(DistlawError, match="unknown preset"):
        load_coefficients("chinchilla")
    with pytest.raises(DistlawError, match="positive"):
        supervised_loss([1e9, np.nan], 1e10, BUSBRIDGE.supervised)

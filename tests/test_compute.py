"""FLOP accounting (Busbridge et al. 2025, arXiv 2502.08606, Eq. 9 and App. H) and hardware costs."""

import json

import numpy as np
import pytest

from distlaw import DistlawError
from distlaw.compute import HARDWARE, FlopModel, ModelShape, load_hardware


def test_simple_form_is_two_n():
    n = np.array([1e6, 3e9, 1e17])
    np.testing.assert_array_equal(FlopModel(form="simple").forward(n), 2 * n)


@pytest.mark.parametrize("target", [1e7, 1e8, 1e9, 1e10, 1e11])
def test_paper_form_matches_the_integer_shape(target):
    # The continuous shape (n_layers = (N / 12 rho^2)^(1/3)) against ModelShape's exact count at the same N.
    shape = ModelShape.from_params(target)
    n = shape.non_embedding_params
    expected = 2 * n + 2 * shape.n_layers * shape.n_ctx * shape.d_model + 2 * shape.vocab_size * shape.d_model
    assert shape.forward_flops_per_token() == expected
    assert FlopModel().forward(n) == pytest.approx(expected, rel=2e-4)


def test_paper_form_by_hand_at_a_round_shape():
    # 10 layers, d = 1280: N = 12 * 10 * 1280^2 = 196,608,000; F = 2N + 2*10*4096*1280 + 2*32768*1280
    n = 12 * 10 * 1280**2
    assert FlopModel().forward(n) == pytest.approx(2 * n + 2 * 10 * 4096 * 1280 + 2 * 32768 * 1280, rel=1e-12)
    small = FlopModel(n_ctx=128, vocab_size=256).forward(n)
    assert small == pytest.approx(2 * n + 2 * 10 * 128 * 1280 + 2 * 256 * 1280, rel=1e-12)


def test_from_dims_is_explicit_and_consistent_with_from_params():
    shape = ModelShape.from_params(1e9)
    same = ModelShape.from_dims(shape.n_layers, shape.d_model)
    assert same == shape
    custom = ModelShape.from_dims(24, 2048, n_ctx=2048, vocab_size=50257)
    assert custom.forward_flops_per_token() == 2 * custom.non_embedding_params + 2 * 24 * 2048 * 2048 + 2 * 50257 * 2048
    with pytest.raises(DistlawError, match="positive"):
        ModelShape.from_dims(0, 128)


def test_distillation_total_is_eq9_in_every_scenario():
    fm = FlopModel(form="simple")
    ns, ds, nt, dt = 1e9, 2e10, 7e9, 1.4e11
    for lgt in (0, 1):
        for pre in (0, 1):
            total = fm.distillation(ns, ds, nt, dt, lgt, pre)
            assert total == pytest.approx(6 * ns * ds + 2 * nt * (lgt * ds + pre * 3 * dt), rel=1e-12)
    batch = fm.distillation([1e8, 1e9], 2e10, nt, dt, [0, 1], 1)
    assert batch.shape == (2,)
    assert batch[1] == pytest.approx(6e9 * 2e10 + 1.4e10 * (2e10 + 4.2e11))


def test_h100_hours_and_cost():
    h100 = load_hardware("h100")
    # 1e21 FLOPs at 989 TFLOP/s and 40% MFU: 1e21 / (3.956e14 * 3600) = 702.17 GPU-hours
    assert h100.gpu_hours(1e21) == pytest.approx(1e21 / (989e12 * 0.4) / 3600)
    assert h100.gpu_hours(1e21) == pytest.approx(702.17, abs=0.01)
    assert h100.cost(1e21) == pytest.approx(702.17 * 2.5, abs=0.05)
    assert h100.flops(702.17) == pytest.approx(1e21, rel=1e-5)  # what --gpu-hours buys (distlaw design)
    assert load_hardware("A100") is HARDWARE["a100"]


def test_hardware_from_file_and_errors(tmp_path):
    good = tmp_path / "gpu.json"
    good.write_text(json.dumps({"name": "mine", "peak_flops": 1e15, "mfu": 0.5, "price_per_hour": 4.0}))
    hw = load_hardware(good)
    assert hw.cost(3.6e18) == pytest.approx(4.0 * 3.6e18 / 5e14 / 3600)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "peak_flops": 1e15, "mfu": 1.5, "price_per_hour": 1.0}))
    with pytest.raises(DistlawError, match="mfu"):
        load_hardware(bad)
    with pytest.raises(DistlawError, match="unknown hardware"):
        load_hardware("tpu9000")


def test_hardware_overrides_are_validated():
    h100 = load_hardware("h100")
    cheaper = h100.with_overrides(mfu=0.5, price_per_hour=2.0)
    assert cheaper.gpu_hours(1e21) == pytest.approx(h100.gpu_hours(1e21) * 0.4 / 0.5)
    assert cheaper.cost(1e21) == pytest.approx(cheaper.gpu_hours(1e21) * 2.0)
    assert h100.with_overrides() == h100
    with pytest.raises(DistlawError, match="mfu"):
        h100.with_overrides(mfu=0.0)


@pytest.mark.parametrize("aspect_ratio,head_dim", [(4, 8), (8, 8), (6, 4), (16, 64), (128, 64)])
def test_every_size_a_family_lists_is_a_shape_the_lab_builds(aspect_ratio, head_dim):
    from distlaw.lab.architectures import Sizer
    from distlaw.lab.model import llama_config

    sizer = Sizer(aspect_ratio, head_dim)
    sizes = sizer.sizes_between(1e3, 1e9, n_ctx=128, vocab_size=256)
    assert len(sizes) >= 3
    for n in sizes:
        shape = sizer.from_params(n, n_ctx=128, vocab_size=256)
        assert sizer.params(shape) == n
        assert shape.d_model % head_dim == 0 and shape.head_dim == head_dim  # one head width: the family reads back from any shape
        assert ModelShape.from_params(n, aspect_ratio=aspect_ratio, head_dim=head_dim, n_ctx=128, vocab_size=256) == shape
        llama_config(shape)  # raises where heads do not divide d_model (aspect 4, head_dim 8 listed 7 x 28 with 3 heads)
    if (aspect_ratio, head_dim) == (4, 8):
        assert sizes[:4] == [1560, 12496, 41784, 98592]  # even layer counts only: 2x8, 4x16, 6x24, 8x32

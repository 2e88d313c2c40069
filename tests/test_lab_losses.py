"""The chunked, fused objective against naive full-tensor autograd, and the top-k teacher approximation."""

import pytest
import torch

from distlaw.errors import DistlawError
from distlaw.lab import losses
from distlaw.lab.config import DistillConfig
from distlaw.lab.losses import Teacher, check_options, objective, truncate_logprobs
from distlaw.lab.teacher_cache import topk_targets

N, V = 37, 23


@pytest.fixture
def tensors():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(N, V, generator=g, dtype=torch.float64) * 2
    zt = torch.randn(N, V, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, V, (N,), generator=g)
    return z, zt, y


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(losses, "CHUNK_ELEMENTS", 5 * V)  # 8 chunks, the last one partial


def naive(z, y, logp_t, cfg, lam):
    """Eq. 7 written directly on the full tensor, differentiated by autograd."""
    tau = cfg.temperature
    ce = torch.nn.functional.cross_entropy(z, y)
    logq = (z / tau).log_softmax(-1)
    if cfg.divergence == "forward":
        kl = torch.where(logp_t.isfinite(), logp_t.exp() * (logp_t - logq), 0.0).sum(-1).mean()
    else:
        kl = (logq.exp() * (logq - logp_t)).sum(-1).mean()
    return (1 - lam) * ce + lam * tau**2 * kl + cfg.z_loss * (z.logsumexp(-1) ** 2).mean()


def value_and_grad(fn, z):
    leaf = z.clone().requires_grad_()
    out = fn(leaf)
    loss = out[0] if isinstance(out, tuple) else out
    loss.backward()
    return loss.detach(), leaf.grad


@pytest.mark.parametrize(
    "options",
    [
        dict(weight=1.0, temperature=1.0),
        dict(weight=0.7, temperature=2.0, z_loss=1e-2),
        dict(weight=0.5, temperature=1.5, divergence="reverse"),
        dict(weight=1.0, temperature=1.0, top_k=5),
        dict(weight=0.8, temperature=1.0, top_p=0.6),
    ],
)
def test_chunked_objective_equals_naive_full_tensor(tensors, options):
    z, zt, y = tensors
    cfg = DistillConfig(**options)
    logp_t = truncate_logprobs((zt / cfg.temperature).log_softmax(-1), cfg.top_k, cfg.top_p)
    fused, g_fused = value_and_grad(lambda a: objective(a, y, cfg, Teacher(logits=zt)), z)
    ref, g_ref = value_and_grad(lambda a: naive(a, y, logp_t, cfg, cfg.weight), z)
    assert float(fused) == pytest.approx(float(ref), abs=1e-6)
    assert torch.allclose(g_fused, g_ref, atol=1e-7)


def test_supervised_objective_is_cross_entropy_plus_z_loss(tensors):
    z, _, y = tensors
    cfg = DistillConfig(z_loss=0.0)
    loss, parts = objective(z, y, cfg)
    assert float(loss) == pytest.approx(float(torch.nn.functional.cross_entropy(z, y)), abs=1e-6)
    assert float(parts[1]) == 0.0


def test_truncation_keeps_the_nucleus_and_renormalises():
    logp = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    assert truncate_logprobs(logp, None, 0.7).exp().tolist()[0] == pytest.approx([0.625, 0.375, 0, 0])
    assert truncate_logprobs(logp, 3, None).exp().tolist()[0] == pytest.approx([0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0])


@pytest.mark.parametrize("divergence", ["forward", "reverse"])
def test_sparse_teacher_with_all_tokens_is_the_full_kl(tensors, divergence):
    z, zt, y = tensors
    cfg = DistillConfig(weight=1.0, z_loss=0.0, divergence=divergence)
    idx, top, rest = topk_targets(zt, V, 1.0)
    sparse, g_sparse = value_and_grad(lambda a: objective(a, y, cfg, Teacher(indices=idx, logprobs=top, log_rest=rest)), z)
    dense, g_dense = value_and_grad(lambda a: objective(a, y, cfg, Teacher(logits=zt)), z)
    assert float(sparse) == pytest.approx(float(dense), abs=1e-6)
    assert torch.allclose(g_sparse, g_dense, atol=1e-7)


def coarse_kl(p_k, logq, idx, rest_p):
    """KL between (top-k tokens, rest) coarse-grainings, computed from probabilities."""
    q = logq.exp()
    q_k = q.gather(-1, idx)
    rest_q = 1 - q_k.sum(-1)
    return (p_k * (p_k.log() - q_k.log())).sum(-1) + rest_p * (rest_p.log() - rest_q.log())


def test_sparse_teacher_is_the_coarse_grained_kl_and_its_error_shrinks_with_k(tensors):
    z, zt, y = tensors
    cfg = DistillConfig(weight=1.0, z_loss=0.0)
    full = float(objective(z, y, cfg, Teacher(logits=zt))[1][1])
    errors = []
    for k in (2, 5, 10, 20):
        idx, top, rest = topk_targets(zt, k, 1.0)
        kl = float(objective(z, y, cfg, Teacher(indices=idx, logprobs=top, log_rest=rest))[1][1])
        expected = float(coarse_kl(top.exp(), z.log_softmax(-1), idx, rest.exp()).mean())
        assert kl == pytest.approx(expected, rel=1e-6)
        assert kl <= full + 1e-9  # coarse-graining never increases a KL
        errors.append(full - kl)
    assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0] / 10


def test_sparse_top_k_option_truncates_like_the_dense_teacher(tensors):
    z, zt, y = tensors
    cfg = DistillConfig(weight=1.0, top_k=4)
    idx, top, rest = topk_targets(zt, 10, 1.0)
    sparse, g_sparse = value_and_grad(lambda a: objective(a, y, cfg, Teacher(indices=idx, logprobs=top, log_rest=rest)), z)
    dense, g_dense = value_and_grad(lambda a: objective(a, y, cfg, Teacher(logits=zt)), z)
    assert float(sparse) == pytest.approx(float(dense), abs=1e-6)
    assert torch.allclose(g_sparse, g_dense, atol=1e-7)


def test_bf16_logits_get_a_bf16_gradient_from_fp32_math(tensors):
    z, zt, y = tensors
    cfg = DistillConfig()
    loss32, g32 = value_and_grad(lambda a: objective(a, y, cfg, Teacher(logits=zt.float())), z.float())
    loss16, g16 = value_and_grad(lambda a: objective(a, y, cfg, Teacher(logits=zt.bfloat16())), z.bfloat16())
    assert g16.dtype == torch.bfloat16 and loss16.dtype == torch.float32
    assert float(loss16) == pytest.approx(float(loss32), rel=2e-2)


@pytest.mark.parametrize(
    ("options", "cached_k", "message"),
    [
        (dict(divergence="reverse", top_k=8), None, "reverse KL"),
        (dict(top_p=0.9), 16, "top-p"),
        (dict(top_k=32), 16, "larger than the teacher cache"),
    ],
)
def test_meaningless_option_combinations_are_refused(options, cached_k, message):
    with pytest.raises(DistlawError, match=message):
        check_options(DistillConfig(**options), cached_k)

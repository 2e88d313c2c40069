"""The training objective of supervised and distilled runs (Busbridge et al. 2025, Eqs. 6-7):

    L = (1 - lambda) CE(y, z_S) + lambda tau^2 KL(p_T || q_S) + lambda_Z (log Z_S)^2,
    q_S = softmax(z_S / tau),  p_T = softmax(z_T / tau).

It is computed in chunks of tokens by a fused autograd function: each chunk is upcast to fp32, its loss
and its gradient with respect to the student logits (stored in the logits' own dtype) are computed at
once, so with bf16 logits no (tokens, vocabulary) tensor ever exists in fp32, only one chunk of it, and
autograd keeps no fp32 intermediates for the backward pass. The gradient of the distillation term
is tau (q_S - p_T) for the forward KL and tau q_S (log q_S - log p_T - KL) for the reverse KL.

Teachers come in two forms. Dense logits (an online teacher) may be truncated to top-k or top-p and
renormalised, the paper's truncation ablation (Sec. 5.2). Sparse targets (a teacher cache) hold the top-k
log-probabilities; the probability mass outside them is one extra "rest" category, so the KL is the exact KL
between the teachers' and the students' distributions coarse-grained to (top-k tokens, rest): a lower bound
of the full KL that tends to it as k grows, and equals it at k = vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from distlaw.errors import DistlawError
from distlaw.lab.config import DistillConfig

CHUNK_ELEMENTS = 1 << 22  # fp32 elements per chunk (16 MiB): small enough for any CPU run
GPU_CHUNK_ELEMENTS = 1 << 26  # 256 MiB on an accelerator: a few large chunks, not hundreds of small launches


@dataclass(frozen=True)
class Teacher:
    """Teacher targets for N tokens: dense ``logits`` (N, V), or sparse ``indices``/``logprobs`` (N, k) at
    temperature tau, sorted by decreasing probability, with ``log_rest`` (N,) the log of the mass outside them."""

    logits: Tensor | None = None
    indices: Tensor | None = None
    logprobs: Tensor | None = None
    log_rest: Tensor | None = None

    def chunk(self, start: int, stop: int) -> Teacher:
        pick = lambda t: None if t is None else t[start:stop]  # noqa: E731
        return Teacher(pick(self.logits), pick(self.indices), pick(self.logprobs), pick(self.log_rest))


def check_options(cfg: DistillConfig, cached_k: int | None = None) -> None:
    """Reject option combinations that have no finite or faithful meaning."""
    truncated = cfg.top_k is not None or cfg.top_p is not None
    if cfg.divergence == "reverse" and truncated:
        raise DistlawError("reverse KL needs the full teacher distribution: top-k/top-p truncation gives tokens zero probability")
    if cached_k is not None:
        if cfg.top_p is not None:
            raise DistlawError("top-p truncation needs the full teacher distribution: use top-k with a teacher cache")
        if cfg.top_k is not None and cfg.top_k > cached_k:
            raise DistlawError(f"top-k {cfg.top_k} is larger than the teacher cache's k = {cached_k}")


def truncate_logprobs(logprobs: Tensor, top_k: int | None, top_p: float | None) -> Tensor:
    """Log-probabilities restricted to the top-k / top-p (nucleus) set and renormalised (-inf elsewhere)."""
    keep = torch.ones_like(logprobs, dtype=torch.bool)
    if top_k is not None and top_k < logprobs.shape[-1]:
        kth = logprobs.topk(top_k, dim=-1).values[..., -1:]
        keep &= logprobs >= kth
    if top_p is not None and top_p < 1:
        sorted_lp, order = logprobs.sort(dim=-1, descending=True)
        mass_before = sorted_lp.exp().cumsum(-1) - sorted_lp.exp()
        keep &= torch.zeros_like(keep).scatter(-1, order, mass_before < top_p)
    kept = logprobs.masked_fill(~keep, float("-inf"))
    return kept - kept.logsumexp(-1, keepdim=True)


@dataclass(frozen=True)
class _KD:
    """Per-token KL and its gradient with respect to z / tau, factored to spare full-size passes:
    d KL / d(z / tau) = a[:, None] * q + dense + scatter(idx, values)."""

    kl: Tensor
    a: Tensor
    dense: Tensor | None = None
    idx: Tensor | None = None
    values: Tensor | None = None


def _kd_dense(logq: Tensor, q: Tensor, logp: Tensor, divergence: str) -> _KD:
    """A dense teacher distribution ``logp`` (-inf where truncated)."""
    p = logp.exp()
    if divergence == "forward":
        kl = torch.where(p > 0, p * (logp - logq), 0.0).sum(-1)  # 0 log 0 = 0
        return _KD(kl, torch.ones_like(kl), dense=-p)
    ratio = logq - logp
    kl = (q * ratio).sum(-1)
    return _KD(kl, -kl, dense=q * ratio)


def _kd_sparse(zt: Tensor, lse_t: Tensor, q: Tensor, idx: Tensor, logp: Tensor, log_rest_t: Tensor | None, divergence: str) -> _KD:
    """Top-k teacher log-probabilities ``logp`` plus the rest mass ``log_rest_t``, compared over
    (top-k tokens, rest); ``log_rest_t=None`` truncates the teacher to its top-k and renormalises."""
    if log_rest_t is None:
        logp = logp - logp.logsumexp(-1, keepdim=True)
        log_rest_t = torch.full_like(logp[:, 0], float("-inf"))
    q_k = q.gather(-1, idx)
    logq_k = zt.gather(-1, idx) - lse_t[:, None]
    rest_s = q.scatter(-1, idx, 0.0).sum(-1)  # a sum of small positives: no cancellation
    log_rest_s = rest_s.clamp(min=torch.finfo(rest_s.dtype).tiny).log()
    p_k, rest_t = logp.exp(), log_rest_t.exp()
    zero = torch.zeros_like(rest_t)
    if divergence == "forward":
        has_rest = rest_t > 0  # k = V, or truncation, leaves no rest category
        log_ratio = torch.where(has_rest, log_rest_t - log_rest_s, zero)
        kl = (p_k * (logp - logq_k)).sum(-1) + torch.where(has_rest, rest_t * log_ratio, zero)
        scale = torch.where(has_rest, log_ratio.clamp(max=80.0).exp(), zero)  # target on the rest: scale * q
        return _KD(kl, 1 - scale, idx=idx, values=q_k * scale[:, None] - p_k)
    u_rest = torch.where(rest_s > 0, log_rest_s - log_rest_t, zero)
    u_k = logq_k - logp
    kl = (q_k * u_k).sum(-1) + rest_s * u_rest
    return _KD(kl, u_rest - kl, idx=idx, values=q_k * (u_k - u_rest[:, None]))


def _kd(z: Tensor, lse: Tensor, probs: Tensor, teacher: Teacher, cfg: DistillConfig) -> tuple[_KD, Tensor]:
    """The distillation term of a chunk and q = softmax(z / tau) (``probs`` itself when tau = 1)."""
    tau = cfg.temperature
    zt, lse_t, q = (z, lse, probs) if tau == 1 else (z / tau, (z / tau).logsumexp(-1), None)
    if q is None:
        q = (zt - lse_t[:, None]).exp()
    if teacher.logits is not None:
        logp = (teacher.logits.float() / tau).log_softmax(-1)
        if cfg.top_k is not None or cfg.top_p is not None:
            logp = truncate_logprobs(logp, cfg.top_k, cfg.top_p)
        return _kd_dense(zt - lse_t[:, None], q, logp, cfg.divergence), q
    assert teacher.indices is not None and teacher.logprobs is not None and teacher.log_rest is not None
    k = cfg.top_k or teacher.indices.shape[-1]
    idx, logp = teacher.indices[:, :k].long(), teacher.logprobs[:, :k].float()
    log_rest = None if cfg.top_k is not None else teacher.log_rest.float()
    return _kd_sparse(zt, lse_t, q, idx, logp, log_rest, cfg.divergence), q


def _chunk_loss(z: Tensor, y: Tensor, teacher: Teacher | None, cfg: DistillConfig, weight: float, scale: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Summed CE, KL and Z-loss terms of one chunk and ``scale`` times the gradient of their weighted
    total w.r.t. ``z`` (fp32). Every full-size pass counts here: softmax is computed once, by hand."""
    z = z.float()
    top = z.amax(-1, keepdim=True)
    probs = (z - top).exp_()
    total = probs.sum(-1, keepdim=True)
    probs.div_(total)
    lse = (top + total.log())[:, 0]
    ce = lse - z.gather(-1, y[:, None])[:, 0]
    coef = (1 - weight) + 2 * cfg.z_loss * lse  # CE and Z-loss gradients are multiples of softmax(z)
    kl = torch.zeros_like(ce)
    if teacher is None or weight == 0:
        grad = probs.mul_((scale * coef)[:, None])
    else:
        kd, q = _kd(z, lse, probs, teacher, cfg)
        kl, wt = kd.kl, scale * weight * cfg.temperature  # tau^2 KL differentiated through z / tau
        if q is probs:
            grad = probs.mul_((scale * coef + wt * kd.a)[:, None])
        else:
            grad = probs.mul_((scale * coef)[:, None]).add_(q.mul_((wt * kd.a)[:, None]))
        if kd.dense is not None:
            grad.add_(kd.dense, alpha=wt)
        if kd.idx is not None:
            grad.scatter_add_(-1, kd.idx, wt * kd.values)
    grad.scatter_add_(-1, y[:, None], torch.full_like(ce[:, None], -scale * (1 - weight)))
    return ce.sum(), kl.sum(), (lse * lse).sum(), grad


class _FusedLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, teacher: Teacher | None, cfg: DistillConfig, weight: float, chunk: int) -> Tensor:  # type: ignore[override]
        n = logits.shape[0]
        grad = torch.empty_like(logits) if logits.requires_grad else None
        sums = torch.zeros(3, dtype=torch.float32, device=logits.device)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            part = teacher.chunk(start, stop) if teacher is not None else None
            ce, kl, z2, g = _chunk_loss(logits[start:stop], targets[start:stop], part, cfg, weight, 1.0 / n)
            sums += torch.stack([ce, kl, z2])
            if grad is not None:
                grad[start:stop] = g
        means = sums / n
        ctx.save_for_backward(grad if grad is not None else torch.empty(0))
        tau2 = cfg.temperature**2
        total = (1 - weight) * means[0] + weight * tau2 * means[1] + cfg.z_loss * means[2]
        return torch.cat([total[None], means])

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * grad_out[0].to(grad.dtype), None, None, None, None, None


def objective(
    logits: Tensor, targets: Tensor, cfg: DistillConfig, teacher: Teacher | None = None, weight: float | None = None
) -> tuple[Tensor, Tensor]:
    """Mean loss over tokens (differentiable) and the detached means (CE, KL, (log Z)^2).

    ``logits`` (..., V) and ``targets`` (...) are flattened; teacher tensors must be flattened alike.
    ``weight`` is lambda, by default ``cfg.weight`` with a teacher and 0 without one.
    """
    v = logits.shape[-1]
    lam = (cfg.weight if teacher is not None else 0.0) if weight is None else weight
    chunk = max(1, (CHUNK_ELEMENTS if logits.device.type == "cpu" else GPU_CHUNK_ELEMENTS) // v)
    out = _FusedLoss.apply(logits.reshape(-1, v), targets.reshape(-1), teacher, cfg, lam, chunk)
    return out[0], out[1:].detach()

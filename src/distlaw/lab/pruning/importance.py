"""How much each attention head, FFN neuron and hidden unit matters, on calibration windows (n, seq_len + 1).

``mask-gradient`` (Zhang et al. 2023, arXiv 2311.07052, after Michel et al. 2019): every unit gets a
multiplicative mask (all ones, so the model is unchanged) and its importance is the mean |dL/dmask| of the
next-token cross-entropy over batches of windows, weighted by batch size. A head's mask scales its slice of the
attention output projection's input; a neuron's scales its entry of the FFN output projection's input; a hidden
unit's scales every write to the residual stream (token and position embeddings, the attention and FFN outputs).

``activation`` (Minitron, Muralidharan et al. 2024, arXiv 2407.14679, Sec. 2.2), forward passes only: a head's
score is the L2 norm of its output (the attention output projection's input, over head_dim); a neuron's the
magnitude of its activation (the FFN output projection's input); a hidden unit's the output of the norms over
the hidden size (summed over every layer's norms and the final norm). Each is aggregated as Minitron's best
choice: L2 over the sequence, then the mean over the batch (over all windows).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from distlaw.errors import DistlawError
from distlaw.lab.pruning.decoder import Decoder
from distlaw.lab.runtime import autocast, progress_bar


@dataclass(frozen=True)
class Importance:
    """Scores per unit: ``heads`` (layers, n_heads), ``neurons`` (layers, d_ff), ``hidden`` (d_model)."""

    heads: torch.Tensor
    neurons: torch.Tensor
    hidden: torch.Tensor
    windows: int
    method: str = "mask-gradient"

    def groups(self, n_kv_heads: int) -> torch.Tensor:
        """(layers, n_kv_heads): a key/value group's score is the sum of its query heads' scores."""
        return self.heads.unflatten(-1, (n_kv_heads, -1)).sum(-1)


def _scale_heads(mask: torch.Tensor, head_dim: int) -> Callable:
    """A pre-hook of the attention output projection scaling each head's slice of its input by ``mask``."""
    return lambda m, args: ((args[0].unflatten(-1, (-1, head_dim)) * mask[:, None]).flatten(-2),)


@contextlib.contextmanager
def hooked(hooks: list) -> Iterator[None]:
    """Remove the ``hooks`` when the block ends."""
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def masked(model: nn.Module, heads: torch.Tensor, neurons: torch.Tensor, hidden: torch.Tensor) -> contextlib.AbstractContextManager:
    """Apply multiplicative masks inside the block via hooks (module docstring); the weights are untouched."""
    d = Decoder(model)
    scale_hidden = lambda m, args, out: out * hidden  # noqa: E731
    hooks = [emb.register_forward_hook(scale_hidden) for emb in d.embeddings()]
    for i, layer in enumerate(d.layers):
        attn_out, ffn_out = d.attn_out(layer), d.ffn_out(layer)
        hooks += [
            attn_out.register_forward_pre_hook(_scale_heads(heads[i], d.shape.head_dim)),
            ffn_out.register_forward_pre_hook(lambda m, args, i=i: (args[0] * neurons[i],)),
            attn_out.register_forward_hook(scale_hidden),
            ffn_out.register_forward_hook(scale_hidden),
        ]
    return hooked(hooks)


@contextlib.contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """No gradients on the weights inside the block; their ``requires_grad`` flags are restored after."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)


def next_token_loss(model: nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over (n, seq_len + 1) windows."""
    device = next(model.parameters()).device
    windows = windows.to(device)
    with autocast(device):
        logits = model(input_ids=windows[:, :-1]).logits
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 logits up to fp32, never fp64 down
    return F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten())


def batches(windows: torch.Tensor, batch_size: int, progress: bool, what: str, step: Callable[[torch.Tensor], float | None]) -> None:
    """Call ``step`` on each batch of ``batch_size`` windows, with a progress bar showing the loss it returns."""
    if len(windows) == 0 or batch_size < 1:
        raise DistlawError(f"{what} needs at least one calibration window and a batch size of at least 1")
    with progress_bar(progress) as bar:
        task = bar.add_task(what, total=len(windows), loss="-")
        for lo in range(0, len(windows), batch_size):
            loss = step(windows[lo : lo + batch_size])
            bar.update(task, completed=min(lo + batch_size, len(windows)), loss="-" if loss is None else f"{loss:.4f}")


def _sequence_l2(x: torch.Tensor) -> torch.Tensor:
    """(batch, seq, ...) -> (...): the L2 norm over the sequence of each window, summed over the batch."""
    return x.double().pow(2).sum(1).sqrt().sum(0)


def _mask_gradient(model: nn.Module, windows: torch.Tensor, batch_size: int, progress: bool) -> list[torch.Tensor]:
    d = Decoder(model)
    shape, p = d.shape, next(model.parameters())
    sizes = (shape.n_layers, shape.n_heads), (shape.n_layers, shape.d_ff), (shape.d_model,)
    masks = [torch.ones(s, dtype=p.dtype, device=p.device, requires_grad=True) for s in sizes]
    totals = [torch.zeros(s, dtype=torch.float64, device=p.device) for s in sizes]

    def step(batch: torch.Tensor) -> float:
        loss = next_token_loss(model, batch)
        for total, grad in zip(totals, torch.autograd.grad(loss, masks)):
            total += grad.abs().double() * len(batch)
        return loss.item()

    with _frozen(model), masked(model, *masks), torch.enable_grad():
        batches(windows, batch_size, progress, "importance", step)
    return totals


def _activation(model: nn.Module, windows: torch.Tensor, batch_size: int, progress: bool) -> list[torch.Tensor]:
    d = Decoder(model)
    shape, p = d.shape, next(model.parameters())
    heads, neurons = (torch.zeros(s, dtype=torch.float64, device=p.device) for s in ((shape.n_layers, shape.n_heads), (shape.n_layers, shape.d_ff)))
    hidden = torch.zeros(shape.d_model, dtype=torch.float64, device=p.device)

    def adding(total: torch.Tensor, of: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
        def hook(m: nn.Module, args: tuple, out: torch.Tensor | None = None) -> None:  # a hook that returns None changes nothing
            total.add_(_sequence_l2(of(args[0] if out is None else out)))
        return hook

    per_head = lambda x: x.unflatten(-1, (shape.n_heads, shape.head_dim)).double().norm(dim=-1)  # noqa: E731
    hooks = [norm.register_forward_hook(adding(hidden, lambda x: x)) for norm in d.norms()]
    for i, layer in enumerate(d.layers):
        hooks += [d.attn_out(layer).register_forward_pre_hook(adding(heads[i], per_head)),
                  d.ffn_out(layer).register_forward_pre_hook(adding(neurons[i], lambda x: x))]
    with hooked(hooks), torch.no_grad():
        batches(windows, batch_size, progress, "importance", lambda batch: next_token_loss(model, batch).item())
    return [heads, neurons, hidden]


METHODS = {"mask-gradient": _mask_gradient, "activation": _activation}


def importance_scores(model: nn.Module, windows: torch.Tensor, batch_size: int, progress: bool = False,
                      method: str = "mask-gradient") -> Importance:
    """Importance of every head, neuron and hidden unit over the calibration ``windows`` by ``method`` (module
    docstring), averaged over windows; the model's weights and gradients are left as they were."""
    if method not in METHODS:
        raise DistlawError(f"unknown importance method {method!r} (expected one of {', '.join(METHODS)})")
    Decoder(model)  # a family that cannot be pruned is refused before any pass
    was_training = model.training
    model.eval()
    try:
        totals = METHODS[method](model, windows, batch_size, progress)
    finally:
        model.train(was_training)
    heads, neurons, hidden = (t.cpu() / len(windows) for t in totals)
    return Importance(heads=heads, neurons=neurons, hidden=hidden, windows=len(windows), method=method)

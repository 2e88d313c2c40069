"""Depth pruning: drop whole layers (Minitron, arXiv 2407.14679; ShortGPT, arXiv 2403.03853; MiniMA keeps
LLaMA-2's ``layers[4:-4]``).

A layer's importance is either ``loss``: the increase of the mean next-token cross-entropy on the calibration
windows when that layer alone is skipped (its output replaced by its input), or ``cosine``: ShortGPT's block
influence, 1 - the cosine similarity of the layer's input and output hidden states, averaged over every token.
The ``depth`` least important layers go, chosen at once on the model given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from distlaw.errors import DistlawError
from distlaw.lab.pruning.decoder import Decoder, cut, everything
from distlaw.lab.pruning.importance import hooked, batches, next_token_loss


def _input(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _output(out: torch.Tensor | tuple) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


@contextlib.contextmanager
def skipped(layer: nn.Module) -> Iterator[None]:
    """Inside the block ``layer`` passes its input through unchanged."""
    def through(m: nn.Module, args: tuple, kwargs: dict, out: torch.Tensor | tuple) -> torch.Tensor | tuple:
        x = _input(args, kwargs)
        return (x, *out[1:]) if isinstance(out, tuple) else x

    with hooked([layer.register_forward_hook(through, with_kwargs=True)]):
        yield


def _mean_loss(model: nn.Module, windows: torch.Tensor, batch_size: int, progress: bool, what: str) -> float:
    """Mean next-token cross-entropy over the windows (batches weighted by their size)."""
    total = 0.0

    def step(batch: torch.Tensor) -> float:
        nonlocal total
        loss = next_token_loss(model, batch).item()
        total += loss * len(batch)
        return loss

    batches(windows, batch_size, progress, what, step)
    return total / len(windows)


def _loss_increase(model: nn.Module, layers: nn.ModuleList, windows: torch.Tensor, batch_size: int, progress: bool) -> torch.Tensor:
    base = _mean_loss(model, windows, batch_size, progress, "depth: all layers")
    scores = []
    for i, layer in enumerate(layers):
        with skipped(layer):
            scores.append(_mean_loss(model, windows, batch_size, progress, f"depth: without layer {i}") - base)
    return torch.tensor(scores, dtype=torch.float64)


def _block_influence(model: nn.Module, layers: nn.ModuleList, windows: torch.Tensor, batch_size: int, progress: bool) -> torch.Tensor:
    sums = torch.zeros(len(layers), dtype=torch.float64)
    tokens = 0

    def record(i: int) -> Callable:
        def hook(m: nn.Module, args: tuple, kwargs: dict, out: torch.Tensor | tuple) -> None:
            x, y = _input(args, kwargs).double(), _output(out).double()
            sums[i] += F.cosine_similarity(x, y, dim=-1).sum().item()
        return hook

    def step(batch: torch.Tensor) -> float:
        nonlocal tokens
        tokens += batch[:, :-1].numel()
        return next_token_loss(model, batch).item()

    with hooked([layer.register_forward_hook(record(i), with_kwargs=True) for i, layer in enumerate(layers)]):
        batches(windows, batch_size, progress, "depth: block influence", step)
    return 1 - sums / tokens


KINDS = {"loss": _loss_increase, "cosine": _block_influence}


def layer_importance(model: PreTrainedModel, windows: torch.Tensor, batch_size: int, kind: str = "loss",
                     progress: bool = False) -> torch.Tensor:
    """(layers,) float64: each layer's importance by ``kind`` (module docstring) on the calibration windows."""
    if kind not in KINDS:
        raise DistlawError(f"unknown depth importance {kind!r} (expected one of {', '.join(KINDS)})")
    d = Decoder(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return KINDS[kind](model, d.layers, windows, batch_size, progress)
    finally:
        model.train(was_training)


def least_important(scores: torch.Tensor, depth: int) -> tuple[int, ...]:
    """The layers kept when the ``depth`` lowest-scoring ones go (ties: the later layer goes), in order."""
    order = sorted(range(len(scores)), key=lambda i: (float(scores[i]), -i))
    return tuple(sorted(order[depth:]))


def drop_layers(model: PreTrainedModel, keep: Sequence[int]) -> PreTrainedModel:
    """A new model with only the layers ``keep`` of ``model`` (renumbered), every weight of theirs unchanged."""
    return cut(model, everything(Decoder(model).shape), keep)

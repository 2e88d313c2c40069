"""Shared pieces of the training and caching loops: mixed precision, evaluation, progress bars."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from distlaw.errors import DistlawError
from distlaw.lab import distributed

EVAL_BATCH = 64


@contextlib.contextmanager
def cpu_threads(device: torch.device) -> Iterator[None]:
    """On CPU, use ``$DISTLAW_THREADS`` intra-op threads (default 1) inside the block, then restore the
    previous count: the lab's tiny models gain little from more, and sweeps run several runs side by
    side. The thread count is part of a CPU run's determinism."""
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("DISTLAW_THREADS", "1")))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on GPUs that support it; full precision elsewhere (CPU runs stay exact)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def logits_of(model: nn.Module, inputs: torch.Tensor, vocab: int | None = None) -> torch.Tensor:
    """The model's next-token logits over the first ``vocab`` entries (all when None): the rows of a padded
    embedding beyond the tokenizer (Qwen: 152,064 rows for 151,936 tokens) never enter a softmax."""
    logits = model(input_ids=inputs).logits
    return logits if vocab is None else logits[..., :vocab]


@torch.no_grad()
def window_losses(model: nn.Module, windows: torch.Tensor, device: torch.device, batches: int | None = None,
                  vocab: int | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy (nats/token) of each window of ``windows`` (n, seq_len + 1), float64,
    over the first ``vocab`` logits (``logits_of``).

    ``batches`` forces that many forward calls (the last ones on a dummy window, discarded): an FSDP-sharded
    model must run the same number of forwards on every process.
    """
    was_training = model.training
    model.eval()
    out = []
    for b in range(batches if batches is not None else -(-len(windows) // EVAL_BATCH)):
        batch = windows[b * EVAL_BATCH : (b + 1) * EVAL_BATCH]
        real = len(batch) > 0
        batch = (batch if real else windows[:1] if len(windows) else torch.zeros(1, 2, dtype=torch.long)).to(device)
        with autocast(device):
            logits = logits_of(model, batch[:, :-1], vocab)
        if real:
            ce = F.cross_entropy(logits.float().transpose(1, 2), batch[:, 1:], reduction="none")
            out.append(ce.double().mean(-1).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def evaluate(model: nn.Module, windows: torch.Tensor, ctx: distributed.Context, vocab: int | None = None) -> float:
    """Mean cross-entropy (nats/token) over ``windows`` and the first ``vocab`` logits, shared out across processes."""
    batches = -(-(-(-len(windows) // ctx.world)) // EVAL_BATCH)  # the same count on every process
    mine = window_losses(model, windows[ctx.rank :: ctx.world], ctx.device, batches, vocab)
    totals = torch.tensor([float(mine.sum()), len(mine)], dtype=torch.float64, device=ctx.device)
    distributed.all_reduce_sum(totals, ctx)
    return float(totals[0] / totals[1])


def progress_bar(enabled: bool) -> Progress:
    """A rich progress bar with a ``loss`` field on stderr; invisible when disabled or when stderr is not a
    terminal (a transient bar would leave a blank line in a log or a pipe)."""
    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not (enabled and console.is_terminal), transient=True,
    )


def available_memory(device: torch.device) -> int:
    """Free bytes on ``device``: GPU memory, or the host's MemAvailable."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 1 << 62


def check_memory(total_params: int, device: torch.device, what: str) -> None:
    """Refuse a model whose fp32 weights, gradients and AdamW moments (16 bytes/parameter) cannot fit."""
    need, have = 16 * total_params, available_memory(device)
    if need > have:
        raise DistlawError(f"{what}: {total_params:.3g} parameters need ~{need / 2**30:.1f} GiB for training, {device} has {have / 2**30:.1f} GiB free")

"""Conditional loss and score of a local causal LM on a task file (Xiao et al. 2024, arXiv 2412.04315, Sec. 2.2).

The task file is JSONL, one item a line: ``{"prompt": ..., "answer": ...}`` and optionally
``"choices": [...]`` (a list that contains the answer). For each item the model is scored on

    conditional loss   -log P(answer | prompt) / |answer|   (nats per answer token, "token")
                       or summed over the answer's tokens     ("sum", Xiao's -log P(answer | instruction))

and the task's loss is the mean over items. Items with choices also give a multiple-choice
score: the fraction of items whose answer has the lowest per-token loss among the choices
(length-normalised, like lm-eval's acc_norm; a tie counts as correct). Prompt and answer are tokenized separately and
concatenated, so the answer's tokens never merge with the prompt's; long inputs lose prompt
tokens from the left.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from distlaw.errors import DistlawError

Reduction = Literal["token", "sum"]


@dataclass(frozen=True)
class TaskItem:
    prompt: str
    answer: str
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TaskResult:
    """One model on one task: mean conditional loss, multiple-choice score (None without choices)."""

    model: str
    params: int
    loss: float
    score: float | None
    n_items: int
    reduction: Reduction


def check_request(checkpoints: list[Path], reduction: str, device: str, tokens: float | None = None) -> None:
    """Everything about an evaluation that needs no torch: the reduction, the device's name, every
    checkpoint folder (it holds a model's config.json) and a positive token count; DistlawErrors."""
    from distlaw.lab.checks import check_checkpoint, check_device_name

    if reduction not in ("token", "sum"):
        raise DistlawError(f"--reduction must be 'token' or 'sum', got {reduction!r}")
    check_device_name(device)
    if tokens is not None and not (math.isfinite(tokens) and tokens > 0):
        raise DistlawError(f"--tokens must be a positive number of training tokens, got {tokens:g}")
    if not checkpoints:
        raise DistlawError("give at least one checkpoint directory")
    for checkpoint in checkpoints:
        check_checkpoint(Path(checkpoint), "checkpoint")


def read_tasks(path: str | os.PathLike[str]) -> list[TaskItem]:
    """Parse a JSONL task file; any problem is a DistlawError naming the line."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DistlawError(f"{p}: cannot read ({exc.strerror})") from exc
    items = [_parse_item(line, f"{p}:{number}") for number, line in enumerate(lines, 1) if line.strip()]
    if not items:
        raise DistlawError(f"{p}: no task items")
    with_choices = {item.choices is not None for item in items}
    if len(with_choices) > 1:
        raise DistlawError(f"{p}: either every item has 'choices' or none does")
    return items


def _parse_item(line: str, where: str) -> TaskItem:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DistlawError(f"{where}: malformed JSON ({exc.msg})") from exc
    if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not isinstance(row.get("answer"), str):
        raise DistlawError(f"{where}: expected an object with string 'prompt' and 'answer'")
    if not row["answer"]:
        raise DistlawError(f"{where}: empty 'answer'")
    choices = row.get("choices")
    if choices is None:
        return TaskItem(row["prompt"], row["answer"])
    if not (isinstance(choices, list) and all(isinstance(c, str) and c for c in choices) and len(choices) >= 2):
        raise DistlawError(f"{where}: 'choices' must be a list of at least two non-empty strings")
    if row["answer"] not in choices:
        raise DistlawError(f"{where}: the answer is not one of the choices")
    return TaskItem(row["prompt"], row["answer"], tuple(choices))


def load_tokenizer(path: str | os.PathLike[str]) -> Any:
    """The tokenizer saved beside a local checkpoint (never the network)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(Path(path), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DistlawError(f"{path}: cannot load the tokenizer ({first})") from exc


def continuation_nats(
    model: Any, tokenizer: Any, prompts: list[str], continuations: list[str], batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Summed -log P(continuation | prompt) in nats and the continuation's token count, per pair."""
    import torch
    import torch.nn.functional as F

    context = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
    encoded = []
    for prompt, continuation in zip(prompts, continuations, strict=True):
        head = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        tail = tokenizer(continuation, add_special_tokens=False)["input_ids"]
        if not head:
            raise DistlawError(f"prompt {prompt[:40]!r} tokenizes to nothing: the answer's first token would have no context")
        if not tail or len(tail) >= context:
            raise DistlawError(f"answer {continuation[:40]!r} tokenizes to {len(tail)} tokens (context {context})")
        encoded.append(((head + tail)[-context:], len(tail)))
    device = next(model.parameters()).device
    nats, counts = np.zeros(len(encoded)), np.array([n for _, n in encoded], dtype=float)
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            target = torch.zeros((len(chunk), width), dtype=torch.bool)
            for row, (tokens, n_tail) in enumerate(chunk):
                ids[row, : len(tokens)] = torch.tensor(tokens)
                mask[row, : len(tokens)] = 1
                target[row, len(tokens) - n_tail : len(tokens)] = True
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            scored = target[:, 1:].to(device)  # position t predicts token t + 1
            nll = F.cross_entropy(logits[:, :-1][scored].float(), ids[:, 1:].to(device)[scored], reduction="none")
            rows = scored.nonzero()[:, 0]
            nats[start : start + len(chunk)] = torch.zeros(len(chunk), device=device).index_add_(0, rows, nll).cpu().numpy()
    return nats, counts


def evaluate_items(
    model: Any, tokenizer: Any, items: list[TaskItem], reduction: Reduction = "token", batch_size: int = 32
) -> tuple[float, float | None]:
    """(mean conditional loss of the answers, multiple-choice accuracy or None)."""
    options = [item.choices or (item.answer,) for item in items]
    prompts = [item.prompt for item, opts in zip(items, options) for _ in opts]
    flat = [option for opts in options for option in opts]
    nats, counts = continuation_nats(model, tokenizer, prompts, flat, batch_size)
    per_token = nats / counts
    offsets = np.cumsum([0] + [len(opts) for opts in options])
    answer_at = offsets[:-1] + np.array([opts.index(item.answer) for item, opts in zip(items, options)])
    loss = float(np.mean(per_token[answer_at] if reduction == "token" else nats[answer_at]))
    if items[0].choices is None:
        return loss, None
    lowest = np.minimum.reduceat(per_token, offsets[:-1])
    return loss, float(np.mean(per_token[answer_at] <= lowest))


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str],
    items: list[TaskItem],
    reduction: Reduction = "token",
    batch_size: int = 32,
    device: str = "cpu",
) -> TaskResult:
    """Load a local HF causal-LM checkpoint with its tokenizer and score it on ``items``; a device
    this machine lacks is a DistlawError before the model is loaded."""
    from distlaw.lab.distributed import default_device
    from distlaw.lab.families import count_params
    from distlaw.lab.model import load_model

    model = load_model(checkpoint, device=default_device(device))
    tokenizer = load_tokenizer(checkpoint)
    loss, score = evaluate_items(model, tokenizer, items, reduction, batch_size)
    return TaskResult(Path(checkpoint).name, count_params(model)[0], loss, score, len(items), reduction)


def run_tokens(checkpoint: str | os.PathLike[str]) -> float | None:
    """Training tokens D recorded in a lab run directory's ``result.json`` (None if there is none)."""
    record = Path(checkpoint) / "result.json"
    try:
        tokens = json.loads(record.read_text()).get("tokens")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return float(tokens) if isinstance(tokens, (int, float)) and tokens > 0 else None

"""``distlaw prune``: a student made by structured pruning of a teacher (Zhang et al. 2023, arXiv 2311.07052)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from distlaw.cli.common import console, print_json, print_table, warn_size
from distlaw.cli.lab import CacheDirOption, CorpusOption, DeviceOption, QuietOption, SeqLenOption, TokenizerOption, data_config
from distlaw.compute import size_note
from distlaw.errors import DistlawError


def prune(
    teacher: Annotated[Path, typer.Argument(help="Teacher: a local Llama checkpoint directory (a run directory or any Hugging Face one).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="New directory for the pruned checkpoint (its parent folders are created).", show_default=False)],
    sparsity: Annotated[Optional[float], typer.Option("--sparsity", help="Fraction p of non-embedding parameters to remove, 0 <= p < 1.")] = None,
    params: Annotated[Optional[float], typer.Option("--params", "-n", help="Target non-embedding parameters of the student (instead of --sparsity).")] = None,
    calibration_tokens: Annotated[float, typer.Option("--calibration-tokens", help="Training tokens over which importance is averaged.")] = 65536,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Calibration windows per forward/backward pass.")] = 32,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Data-order seed that picks the calibration windows.")] = 0,
    corpus: CorpusOption = "shakespeare",
    tokenizer: TokenizerOption = "byte",
    seq_len: SeqLenOption = 128,
    cache_dir: CacheDirOption = None,
    device: DeviceOption = None,
    quiet: QuietOption = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the pruning record as JSON.")] = False,
) -> None:
    """Prune a teacher into a smaller student by removing whole attention heads, FFN neurons and hidden units.

    The student recipe of Zhang et al., "Towards the Law of Capacity Gap in Distilling Language Models" (arXiv 2311.07052).

    Every head, FFN neuron and hidden unit (one hidden mask shared by all layers) gets a mask; its importance is the mean |dLoss/dmask| of next-token cross-entropy over calibration windows of the training data.

    The least important units go, the same number of heads and neurons in every layer. A sparsity p is split evenly: heads, neurons and the hidden size each keep about sqrt(1 - p).

    The shape chosen is the one whose non-embedding parameter count is closest to (1 - p) times the teacher's (or to --params). The hidden size is a multiple of the kept head count; the head width is unchanged.

    The output is an ordinary checkpoint (model, tokenizer, pruning.json) that loads wherever a run directory does. Pruning alone loses quality: distil the student from its teacher next.

    Examples:

      distlaw prune runs/t200k --sparsity 0.5 --out runs/t200k-p50

      distlaw prune runs/t200k --params 5e4 --corpus my.jsonl --tokenizer runs/t200k --out runs/s50k-init --json
    """
    from distlaw.lab.checks import check_checkpoint, check_device_name, check_new_directory
    from distlaw.lab.config import default_cache

    if (sparsity is None) == (params is None):
        raise DistlawError("give exactly one of --sparsity P and --params N")
    if params is not None and not (math.isfinite(params) and params >= 1):
        raise DistlawError(f"--params {params:g} must be a positive number of parameters")
    if sparsity is not None and not (math.isfinite(sparsity) and 0 <= sparsity < 1):
        raise DistlawError(f"--sparsity {sparsity:g} must be in [0, 1)")
    if not (math.isfinite(calibration_tokens) and calibration_tokens >= 1):
        raise DistlawError(f"--calibration-tokens {calibration_tokens:g} must be at least 1")
    check_device_name(device)
    check_new_directory(out, "pruned model")
    check_checkpoint(teacher, "teacher")
    data_cfg = data_config(corpus, tokenizer, seq_len, cache_dir)

    from distlaw.lab.pruning import prune_checkpoint

    record = prune_checkpoint(teacher, out, data_cfg, default_cache(out), sparsity=sparsity,
                              target_params=None if params is None else int(params), calibration_tokens=int(calibration_tokens),
                              batch_size=batch_size, seed=seed, device=device, progress=not quiet)
    warn_size(params, record["params"])
    if json_output:
        print_json(record)
        return
    console.print(f"wrote pruned checkpoint {out}")
    rows = [[key, value] for key, value in record.items() if not isinstance(value, dict)]
    print_table("pruning", ["quantity", "value"], rows)
    if params is not None:
        console.print(f"size: {size_note(params, record['params'])}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``prune`` to ``app``."""
    app.command()(prune)

"""``distlaw prune``: a student made by structured pruning of a teacher, in width and depth (Zhang et al. 2023,
arXiv 2311.07052; Minitron, arXiv 2407.14679)."""

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
    teacher: Annotated[Path, typer.Argument(help="Teacher: a local checkpoint directory (a run directory or a Hugging Face one) of the llama, mistral, qwen2, qwen3, gpt_neox or gpt2 family.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="New directory for the pruned checkpoint (its parent folders are created).", show_default=False)],
    sparsity: Annotated[Optional[float], typer.Option("--sparsity", help="Fraction p of non-embedding parameters to remove, 0 <= p < 1.")] = None,
    params: Annotated[Optional[float], typer.Option("--params", "-n", help="Target non-embedding parameters of the student (instead of --sparsity).")] = None,
    method: Annotated[str, typer.Option("--method", help="Width importance: mask-gradient (Zhang: mean |dLoss/dmask|) or activation (Minitron: activation magnitudes, forward only).")] = "mask-gradient",
    depth: Annotated[int, typer.Option("--depth", min=0, help="Drop this many layers, the least important by --depth-importance.")] = 0,
    keep_layers: Annotated[Optional[str], typer.Option("--keep-layers", help="Keep only these layers instead: a slice START:STOP[:STEP] (4:-4) or a list (0,1,5); negative counts from the end.")] = None,
    depth_importance: Annotated[str, typer.Option("--depth-importance", help="loss: loss increase when the layer is skipped; cosine: 1 - cosine of its input and output hidden states (ShortGPT).")] = "loss",
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
    """Prune a teacher into a smaller student: whole attention heads, FFN neurons and hidden units (width), whole layers (depth), or both.

    The student recipe of Zhang et al., "Towards the Law of Capacity Gap in Distilling Language Models" (arXiv 2311.07052), with the width and depth importance of Minitron (Muralidharan et al., arXiv 2407.14679). Families: llama, mistral, qwen2, qwen3 (grouped-query attention: a key/value group goes with its query heads), gpt_neox (Pythia) and gpt2.

    Width (--sparsity or --params): every head, FFN neuron and hidden unit (one hidden set shared by all layers) is ranked by --method on calibration windows of the training data: mask-gradient is the mean |dLoss/dmask| of a multiplicative mask on the unit; activation is the magnitude of its activation (L2 over the sequence, mean over windows), forward passes only.

    The least important units go, the same number of heads and neurons in every layer. A sparsity p is split evenly: key/value groups, neurons and the hidden size each keep about sqrt(1 - p). The shape chosen is the one whose non-embedding parameter count (the family's exact count) is closest to (1 - p) times the teacher's (or to --params); the FFN width is re-fitted when that shape misses by more than 3 %. The head width is unchanged.

    Depth (--depth K or --keep-layers SPEC): whole layers go, the K least important (by the loss increase when the layer alone is skipped, or by 1 - the cosine similarity of its input and output), or all but those SPEC names (MiniMA keeps 4:-4). With a width target too, width is pruned first, to the size that the kept layers make the target, then the layers are dropped.

    In RMSNorm families (Llama, Mistral, Qwen) the width-pruned model computes exactly what the teacher computes with the removed units masked; GPT-2 and GPT-NeoX use LayerNorm, whose mean over the hidden size makes hidden pruning approximate (their norms are sliced, as in Minitron).

    The output is an ordinary Hugging Face checkpoint (model, tokenizer, pruning.json: method, kept layers, shapes) that loads wherever a run directory does. Pruning alone loses quality: distil the student from its teacher next.

    Examples:

      distlaw prune runs/t200k --sparsity 0.5 --out runs/t200k-p50

      distlaw prune runs/t200k --params 5e4 --corpus my.jsonl --tokenizer runs/t200k --out runs/s50k-init --json

      distlaw prune pythia-dir --params 2e7 --method activation --depth 2 --tokenizer pythia-dir --out pruned/p20m

      distlaw prune llama-dir --keep-layers 4:-4 --tokenizer llama-dir --out pruned/llama-mid    (depth only, as MiniMA)
    """
    from distlaw.lab.checks import check_checkpoint, check_device_name, check_new_directory
    from distlaw.lab.config import default_cache
    from distlaw.lab.pruned import check_request

    if params is not None and not (math.isfinite(params) and params >= 1):
        raise DistlawError(f"--params {params:g} must be a positive number of parameters")
    if sparsity is not None and not (math.isfinite(sparsity) and 0 <= sparsity < 1):
        raise DistlawError(f"--sparsity {sparsity:g} must be in [0, 1)")
    if not (math.isfinite(calibration_tokens) and calibration_tokens >= 1):
        raise DistlawError(f"--calibration-tokens {calibration_tokens:g} must be at least 1")
    check_device_name(device)
    check_new_directory(out, "pruned model")
    check_checkpoint(teacher, "teacher")
    check_request(teacher, sparsity=sparsity, target_params=None if params is None else int(params), method=method, depth=depth,
                  keep_layers=keep_layers, depth_importance=depth_importance)
    data_cfg = data_config(corpus, tokenizer, seq_len, cache_dir)

    from distlaw.lab.pruning import prune_checkpoint

    record = prune_checkpoint(teacher, out, data_cfg, default_cache(out), sparsity=sparsity,
                              target_params=None if params is None else int(params), method=method, depth=depth, keep_layers=keep_layers,
                              depth_importance=depth_importance, calibration_tokens=int(calibration_tokens),
                              batch_size=batch_size, seed=seed, device=device, progress=not quiet)
    warn_size(params, record["params"])
    if json_output:
        print_json(record)
        return
    console.print(f"wrote pruned checkpoint {out}")
    rows = [[key, value] for key, value in record.items() if not isinstance(value, (dict, list))]
    rows.append(["kept_layers", ",".join(map(str, record["kept_layers"]))])
    print_table("pruning", ["quantity", "value"], rows)
    if params is not None:
        console.print(f"size: {size_note(params, record['params'])}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``prune`` to ``app``."""
    app.command()(prune)

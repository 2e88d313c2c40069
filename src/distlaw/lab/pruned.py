"""Pruned shapes and pruning records: the arithmetic of structured pruning (Zhang et al. 2023, arXiv
2311.07052), without torch, so that sweeps can be planned and commands checked before any model loads.

A target sparsity p of non-embedding parameters is split evenly: every component (heads, FFN neurons,
hidden units) keeps a fraction sqrt(1 - p); the shape chosen is the one of that family whose parameter
count is closest to the target. ``distlaw.lab.pruning`` does the pruning itself.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from distlaw.compute import ModelShape
from distlaw.errors import DistlawError
from distlaw.lab.config import PruneInit

FORMAT = "distlaw-pruning/1"
RECORD = "pruning.json"


def _shape_at(shape: ModelShape, keep: float) -> ModelShape:
    """Keep a fraction ``keep`` of heads, neurons and hidden units (at least one of each); the hidden size is
    rounded down to a multiple of the kept heads, as transformers' LlamaConfig requires."""
    heads = max(1, round(keep * shape.n_heads))
    hidden = max(heads, round(keep * shape.d_model) // heads * heads)
    head_dim = shape.head_dim
    return ModelShape(**{
        **shape.model_dump(), "n_heads": heads, "d_ff": max(1, round(keep * shape.d_ff)), "d_model": hidden,
        "attention_head_dim": None if heads * head_dim == hidden else head_dim,
    })


def _family(shape: ModelShape) -> list[ModelShape]:
    """Every distinct pruned shape, smallest first: one kept fraction between each pair of rounding points."""
    breaks = sorted({0.0, 1.0} | {(k + 0.5) / n for n in (shape.n_heads, shape.d_ff, shape.d_model) for k in range(n)})
    return [_shape_at(shape, (a + b) / 2) for a, b in zip(breaks, breaks[1:])] + [shape]


def pruned_shape(shape: ModelShape, *, sparsity: float | None = None, target_params: int | None = None) -> ModelShape:
    """The pruned shape for a sparsity p of non-embedding parameters (every component keeps ~sqrt(1 - p)) or
    for a target non-embedding parameter count: the shape of that family whose count is closest to the target."""
    if (sparsity is None) == (target_params is None):
        raise DistlawError("give exactly one of a sparsity and a target parameter count")
    if sparsity is not None and not (math.isfinite(sparsity) and 0 <= sparsity < 1):
        raise DistlawError(f"sparsity {sparsity:g} must be in [0, 1)")
    family = _family(shape)
    target = (1 - sparsity) * shape.non_embedding_params if sparsity is not None else target_params
    if sparsity is None and not family[0].non_embedding_params <= target <= shape.non_embedding_params:
        raise DistlawError(
            f"target of {target:g} parameters is out of range for this teacher "
            f"({family[0].non_embedding_params} with one head and one neuron .. {shape.non_embedding_params})"
        )
    return min(family, key=lambda s: abs(s.non_embedding_params - target))


def pruned_init(directory: Path) -> tuple[PruneInit, ModelShape]:
    """What a run starting from the pruned checkpoint ``directory`` records: how it was pruned, and its shape."""
    file = Path(directory) / RECORD
    try:
        record = json.loads(file.read_text())
        init = PruneInit(source=record["teacher"], target_params=record["params"], calibration_tokens=record["calibration_tokens"],
                         calibration_seed=record["seed"])
        return init, ModelShape.model_validate(record["shape"])
    except FileNotFoundError:
        raise DistlawError(f"{directory}: not a pruned model (no {RECORD}; make one with `distlaw prune`)") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DistlawError(f"{file}: corrupted pruning record ({type(exc).__name__}: {exc})") from None

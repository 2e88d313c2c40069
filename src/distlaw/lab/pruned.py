"""Pruned shapes and pruning records: the arithmetic of structured pruning (Zhang et al. 2023, arXiv
2311.07052; Muralidharan et al. 2024, Minitron, arXiv 2407.14679), without torch, so that sweeps can be
planned and commands checked before any model loads.

Width: a target sparsity p of non-embedding parameters is split evenly: every component (key/value groups
with their query heads, FFN neurons, hidden units) keeps a fraction sqrt(1 - p); the shape chosen is the one
of that family whose parameter count (the family's exact count, ``distlaw.lab.prunable``) is closest to the
target. Where that balanced shape misses the target by more than 3 % (coarse head counts, or GPT-2 and
GPT-NeoX whose width follows the heads), the FFN width alone is re-fitted. Depth: whole layers are dropped,
``depth`` of them by importance or those ``keep_layers`` names; the width target then applies to the model
with the kept layers (width first, then depth, as MiniMA). ``distlaw.lab.pruning`` does the pruning itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distlaw.compute import ModelShape
from distlaw.errors import DistlawError
from distlaw.lab.config import PruneInit
from distlaw.lab.prunable import LLAMA, Layout, check_depth_prunable, layer_count, layout_of, read_config

FORMAT = "distlaw-pruning/1"
RECORD = "pruning.json"
METHODS = ("mask-gradient", "activation")
DEPTH_IMPORTANCE = ("loss", "cosine")
REFIT_TOLERANCE = 0.03  # a balanced shape further than this from its target has its FFN width re-fitted


def _shape_at(shape: ModelShape, keep: float, layout: Layout) -> ModelShape:
    """Keep a fraction ``keep`` of key/value groups (each with its query heads), neurons and hidden units (at
    least one of each). The hidden size follows the heads where the family ties them (GPT-2, GPT-NeoX), else it
    is rounded down to a multiple of the kept heads, as transformers' LlamaConfig requires."""
    kv = shape.n_kv_heads or shape.n_heads
    groups = max(1, round(keep * kv))
    heads = groups * (shape.n_heads // kv)
    head_dim = shape.head_dim
    hidden = heads * head_dim if layout.coupled else max(heads, round(keep * shape.d_model) // heads * heads)
    return ModelShape(**{
        **shape.model_dump(), "n_heads": heads, "n_kv_heads": None if shape.n_kv_heads is None else groups,
        "d_ff": max(1, round(keep * shape.d_ff)), "d_model": hidden, "attention_head_dim": None if heads * head_dim == hidden else head_dim,
    })


def _family(shape: ModelShape, layout: Layout) -> list[ModelShape]:
    """Every distinct pruned shape, smallest first: one kept fraction between each pair of rounding points."""
    units = (shape.n_kv_heads or shape.n_heads, shape.d_ff, shape.d_model)
    breaks = sorted({0.0, 1.0} | {(k + 0.5) / n for n in units for k in range(n)})
    return [_shape_at(shape, (a + b) / 2, layout) for a, b in zip(breaks, breaks[1:])] + [shape]


def _refit_ffn(shape: ModelShape, d_ff: int, target: float, layout: Layout) -> ModelShape:
    """``shape`` with the FFN width in 1..``d_ff`` whose count is closest to ``target`` (the count is linear in it)."""
    one, two = (layout.count(shape.model_copy(update={"d_ff": n})) for n in (1, 2))
    best = min(max(1, round(1 + (target - one) / (two - one))), d_ff)
    return shape.model_copy(update={"d_ff": best})


def pruned_shape(shape: ModelShape, *, sparsity: float | None = None, target_params: int | None = None, layout: Layout = LLAMA,
                 layers: int | None = None) -> ModelShape:
    """The pruned shape for a sparsity p of the teacher's non-embedding parameters (every component keeps
    ~sqrt(1 - p)) or for a target non-embedding count, with ``layers`` layers kept (default: all): the shape of
    that family whose count (``layout.count``) is closest to the target (module docstring)."""
    if (sparsity is None) == (target_params is None):
        raise DistlawError("give exactly one of a sparsity and a target parameter count")
    if sparsity is not None and not (math.isfinite(sparsity) and 0 <= sparsity < 1):
        raise DistlawError(f"sparsity {sparsity:g} must be in [0, 1)")
    full = shape.model_copy(update={"n_layers": layers or shape.n_layers})
    family = _family(full, layout)
    target = (1 - sparsity) * layout.count(shape) if sparsity is not None else target_params
    low, high = layout.count(family[0]), layout.count(full)
    if not low <= target <= high:
        kept = f" with {full.n_layers} of its {shape.n_layers} layers" if full.n_layers != shape.n_layers else ""
        raise DistlawError(f"target of {target:g} parameters is out of range for this teacher{kept} "
                           f"({low} with one head and one neuron .. {high})")

    def miss(s: ModelShape) -> float:
        return abs(layout.count(s) - target)

    best = min(family, key=miss)
    if miss(best) > REFIT_TOLERANCE * target:
        refit = _refit_ffn(best, shape.d_ff, target, layout)
        if miss(refit) > REFIT_TOLERANCE * target:
            refit = min((_refit_ffn(s, shape.d_ff, target, layout) for s in family), key=miss)
        best = min(best, refit, key=miss)
    return best


def kept_layers(n_layers: int, *, depth: int = 0, keep_layers: str | None = None) -> tuple[int, ...] | None:
    """The layers an explicit ``keep_layers`` spec keeps (``"4:-4"``: a Python slice; ``"0,1,5"``: a list,
    negative indices from the end), checked against ``n_layers``; ``None`` when ``depth`` layers are to be
    chosen by importance (or none dropped). Bad requests are one-line errors."""
    if depth and keep_layers is not None:
        raise DistlawError("give at most one of --depth K and --keep-layers SPEC")
    if depth:
        if not 0 < depth < n_layers:
            raise DistlawError(f"--depth {depth} must remove at least one and fewer than all of the teacher's {n_layers} layers")
        return None
    if keep_layers is None:
        return None
    return _parse_layers(keep_layers, n_layers)


def _parse_layers(spec: str, n_layers: int) -> tuple[int, ...]:
    def index(text: str, bound: int) -> int:
        try:
            value = int(text)
        except ValueError:
            raise DistlawError(f"--keep-layers {spec!r}: {text!r} is not a layer index") from None
        if not -n_layers <= value <= bound:
            raise DistlawError(f"--keep-layers {spec!r}: layer {value} is out of range for a teacher of {n_layers} layers")
        return value

    if ":" in spec:
        parts = spec.split(":")
        if len(parts) > 3:
            raise DistlawError(f"--keep-layers {spec!r}: a slice is START:STOP[:STEP]")
        start, stop = (index(p, n_layers) if p.strip() else None for p in parts[:2])
        step = index(parts[2], n_layers) if len(parts) == 3 and parts[2].strip() else None
        if step is not None and step < 1:
            raise DistlawError(f"--keep-layers {spec!r}: the step must be positive")
        kept = tuple(range(n_layers)[slice(start, stop, step)])
    else:
        kept = tuple(sorted(index(p, n_layers - 1) % n_layers for p in spec.split(",")))
        if len(set(kept)) != len(kept):
            raise DistlawError(f"--keep-layers {spec!r}: a layer is named twice")
    if not kept:
        raise DistlawError(f"--keep-layers {spec!r} keeps no layer of the teacher's {n_layers}")
    return kept


def check_request(teacher_dir: Path, *, sparsity: float | None, target_params: int | None, method: str, depth: int,
                  keep_layers: str | None, depth_importance: str) -> tuple[int, ...] | None:
    """What can be refused from the teacher's ``config.json`` alone (no torch): the family, the options, the
    layers; returns the layers an explicit ``keep_layers`` keeps."""
    if method not in METHODS:
        raise DistlawError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    if depth_importance not in DEPTH_IMPORTANCE:
        raise DistlawError(f"--depth-importance {depth_importance!r}: expected one of {', '.join(DEPTH_IMPORTANCE)}")
    if sparsity is not None and target_params is not None:
        raise DistlawError("give at most one of --sparsity P and --params N")
    if sparsity is None and target_params is None and not depth and keep_layers is None:
        raise DistlawError("give a width target (--sparsity P or --params N), a depth (--depth K or --keep-layers SPEC), or both")
    where = f"teacher {teacher_dir}"
    config = read_config(teacher_dir)
    layout_of(config, where)
    kept = kept_layers(layer_count(config, where), depth=depth, keep_layers=keep_layers)
    if depth or keep_layers is not None:
        check_depth_prunable(config, where)
    return kept


def calibration_passes(options: Mapping[str, Any], n_layers: int) -> float:
    """Forward-pass equivalents per calibration token of a pruning (``PruneInit`` options): width importance
    by mask gradients is a forward and a backward pass (3), by activations a forward pass (1); depth
    importance by loss is one forward pass per skipped layer plus the unpruned one (n_layers + 1), by
    cosine one pass; ``keep_layers`` given explicitly costs nothing."""
    width = 3.0 if options.get("method", "mask-gradient") == "mask-gradient" else 1.0
    if not options.get("depth"):
        return width
    return width + (n_layers + 1.0 if options.get("depth_importance", "loss") == "loss" else 1.0)


def kept_count(n_layers: int, init: PruneInit) -> int:
    """How many layers a pruning keeps of ``n_layers``."""
    kept = kept_layers(n_layers, depth=init.depth, keep_layers=init.keep_layers)
    return len(kept) if kept is not None else n_layers - init.depth


def pruned_init(directory: Path) -> tuple[PruneInit, ModelShape]:
    """What a run starting from the pruned checkpoint ``directory`` records: how it was pruned, and its shape."""
    file = Path(directory) / RECORD
    try:
        record = json.loads(file.read_text())
        init = PruneInit(source=record["teacher"], target_params=record["params"], calibration_tokens=record["calibration_tokens"],
                         calibration_seed=record["seed"], method=record.get("method", METHODS[0]), depth=record.get("depth", 0),
                         keep_layers=record.get("keep_layers"), depth_importance=record.get("depth_importance", DEPTH_IMPORTANCE[0]))
        return init, ModelShape.model_validate(record["shape"])
    except FileNotFoundError:
        raise DistlawError(f"{directory}: not a pruned model (no {RECORD}; make one with `distlaw prune`)") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DistlawError(f"{file}: corrupted pruning record ({type(exc).__name__}: {exc})") from None

"""Width pruning: keep, in every layer, the most important key/value groups (each with its query heads) and FFN
neurons and, everywhere, the most important hidden units (the same counts in every layer: HF configs are
uniform), in the pruned shape of ``distlaw.lab.pruned.pruned_shape``."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from distlaw.compute import ModelShape
from distlaw.errors import DistlawError
from distlaw.lab.pruned import pruned_shape
from distlaw.lab.pruning.decoder import Decoder, Selection, cut
from distlaw.lab.pruning.importance import Importance


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` highest scores along the last axis, in their original order."""
    return scores.topk(k, dim=-1).indices.sort(dim=-1).values


def select(importance: Importance, teacher: ModelShape, shape: ModelShape) -> Selection:
    """The most important units of ``teacher`` that fill ``shape``: a group's score sums its query heads'."""
    if tuple(tuple(t.shape) for t in (importance.heads, importance.neurons, importance.hidden)) != (
            (teacher.n_layers, teacher.n_heads), (teacher.n_layers, teacher.d_ff), (teacher.d_model,)):
        raise DistlawError("importance scores were computed for a model of another shape")
    kv = teacher.n_kv_heads or teacher.n_heads
    groups = shape.n_heads // (teacher.n_heads // kv)
    return Selection(groups=_top(importance.groups(kv), groups), neurons=_top(importance.neurons, shape.d_ff),
                     hidden=_top(importance.hidden, shape.d_model))


def prune_model(model: PreTrainedModel, importance: Importance, *, sparsity: float | None = None, target_params: int | None = None,
                layers: int | None = None) -> PreTrainedModel:
    """A fresh student of the teacher's family whose width is pruned to a sparsity or a target count of
    non-embedding parameters, that count taken with ``layers`` layers (default: all; the layers themselves are
    dropped afterwards, ``distlaw.lab.pruning.depth``). In RMSNorm families it computes the masked teacher."""
    d = Decoder(model)
    shape = pruned_shape(d.shape, sparsity=sparsity, target_params=target_params, layout=d.layout, layers=layers)
    return cut(model, select(importance, d.shape, shape))

"""A loaded decoder seen through its family's ``Layout`` (``distlaw.lab.prunable``), and the one place where a
pruned model is cut out of its teacher: kept units per axis, kept layers, a config of the teacher's family.

Hidden units are kept everywhere at once (one residual stream). In RMSNorm families the student then computes
exactly what the teacher computes with the other hidden units masked to zero (``distlaw.lab.pruning``): norm
gains times sqrt(d/d'), the norm epsilon times d/d', and for Qwen3 the q/k projections times sqrt(d/d') so that
its per-head q/k norms, which share that epsilon, are unchanged. LayerNorm families (GPT-2, GPT-NeoX) get
their norm gains and biases sliced as they are (Minitron); see the package docstring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel

from distlaw.compute import ModelShape
from distlaw.errors import DistlawError
from distlaw.lab.families import config_like, shape_of
from distlaw.lab.prunable import Axes, Layout, axis_sizes, layout_of

HEAD = "lm_head.weight"


@dataclass(frozen=True)
class Selection:
    """What a width-pruned model keeps of its teacher: per layer, key/value groups (each with its query heads)
    and FFN neurons, sorted indices of shape (layers, kept); hidden units (kept,) in every layer."""

    groups: torch.Tensor
    neurons: torch.Tensor
    hidden: torch.Tensor


class Decoder:
    """A causal LM of a prunable family: its layout, shape, and the modules pruning touches."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.layout: Layout = layout_of(model.config.to_dict(), type(model).__name__)
        self.shape: ModelShape = shape_of(model.config)
        self.base: nn.Module = getattr(model, self.layout.base)
        self.layers: nn.ModuleList = getattr(self.base, self.layout.layers)
        self._check_parameters()

    def embeddings(self) -> list[nn.Module]:
        return [self.base.get_submodule(name) for name in self.layout.embeddings]

    def final_norm(self) -> nn.Module:
        return self.base.get_submodule(self.layout.final_norm[0].rsplit(".", 1)[0])

    def norms(self) -> list[nn.Module]:
        """Every norm over the hidden size: each layer's, then the final one."""
        return [layer.get_submodule(name) for layer in self.layers for name in self.layout.norms] + [self.final_norm()]

    def attn_out(self, layer: nn.Module) -> nn.Module:
        return layer.get_submodule(self.layout.attn_out)

    def ffn_out(self, layer: nn.Module) -> nn.Module:
        return layer.get_submodule(self.layout.ffn_out)

    def axes(self, name: str) -> tuple[int | None, str, Axes]:
        """(layer index or None, the name inside the layer or the base, axes) of a parameter name; a parameter
        the layout does not know is an error (a variant of the family that cannot be pruned)."""
        prefix = f"{self.layout.base}.{self.layout.layers}."
        if name.startswith(prefix):
            index, rest = name[len(prefix):].split(".", 1)
            found = dict(self.layout.params).get(rest)
            if found is not None:
                return int(index), rest, found
        else:
            rest = name.removeprefix(self.layout.base + ".")
            if name == HEAD or rest in {f"{e}.weight" for e in self.layout.embeddings}:
                return None, rest, ("-", "hidden")
            if rest in self.layout.final_norm:
                return None, rest, ("hidden",)
        raise DistlawError(f"cannot prune this {self.layout.family} model: it has a parameter pruning does not know ({name})")

    def _check_parameters(self) -> None:
        sizes = axis_sizes(self.shape)
        for name, param in self.model.named_parameters():
            _, _, axes = self.axes(name)
            expected = [sizes.get(a, n) for a, n in zip(axes, param.shape)]
            if list(param.shape) != expected:
                raise DistlawError(f"cannot prune this {self.layout.family} model: {name} has shape {tuple(param.shape)}, "
                                   f"not the {tuple(expected)} its config implies")


def _rows(units: torch.Tensor, width: int) -> torch.Tensor:
    """Rows ``u * width .. u * width + width - 1`` of every unit ``u``, in order."""
    return (units[:, None] * width + torch.arange(width, device=units.device)).flatten()


def _indices(d: Decoder, selection: Selection, layer: int) -> dict[str, torch.Tensor]:
    """Kept indices along every prunable axis of one layer."""
    shape = d.shape
    group = shape.n_heads // (shape.n_kv_heads or shape.n_heads)
    heads = _rows(selection.groups[layer], group)
    q = _rows(heads, shape.head_dim)
    width = shape.n_heads * shape.head_dim
    return {"hidden": selection.hidden, "q": q, "kv": _rows(selection.groups[layer], shape.head_dim), "ffn": selection.neurons[layer],
            "qkv_heads": _rows(heads, 3 * shape.head_dim), "qkv_blocks": torch.cat([q + b * width for b in range(3)])}


def everything(shape: ModelShape) -> Selection:
    """The selection that keeps every unit of a model of ``shape``."""
    kv = shape.n_kv_heads or shape.n_heads
    return Selection(groups=torch.arange(kv).repeat(shape.n_layers, 1), neurons=torch.arange(shape.d_ff).repeat(shape.n_layers, 1),
                     hidden=torch.arange(shape.d_model))


def cut(model: PreTrainedModel, selection: Selection, layers: Sequence[int] | None = None) -> PreTrainedModel:
    """A new model of the teacher's family holding the teacher's weights restricted to ``selection`` (uniform
    over layers) and to the ``layers`` kept (all by default), renumbered; config lists per layer
    (``layer_types``) follow the kept layers. See the module docstring for the rescaled norms."""
    d = Decoder(model)
    teacher, layout = d.shape, d.layout
    layers = list(range(teacher.n_layers) if layers is None else layers)
    group = teacher.n_heads // (teacher.n_kv_heads or teacher.n_heads)
    kept_groups, hidden = selection.groups.shape[1], len(selection.hidden)
    heads = kept_groups * group
    shape = teacher.model_copy(update={
        "n_layers": len(layers), "d_model": hidden, "n_heads": heads, "d_ff": selection.neurons.shape[1],
        "n_kv_heads": None if teacher.n_kv_heads is None else kept_groups,
        "attention_head_dim": None if heads * teacher.head_dim == hidden else teacher.head_dim,
    })
    config = config_like(model.config, shape)
    if getattr(model.config, "layer_types", None):
        config.layer_types = [model.config.layer_types[i] for i in layers]
    ratio = teacher.d_model / hidden
    if layout.rms:
        config.rms_norm_eps = model.config.rms_norm_eps * ratio
    scaled = {f"{n}.weight" for n in layout.norms} | set(layout.final_norm) | set(layout.scaled) if layout.rms else set()
    p = next(model.parameters())
    weights: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        index, rest, axes = d.axes(name)
        if index is not None and index not in layers:
            continue
        keep = _indices(d, selection, index if index is not None else 0)
        value = param.detach()
        for dim, axis in enumerate(axes):
            if axis in keep:
                value = value.index_select(dim, keep[axis].to(p.device))
        if rest in scaled:
            value = value * math.sqrt(ratio)
        new = name if index is None else f"{layout.base}.{layout.layers}.{layers.index(index)}.{rest}"
        weights[new] = value
    student = AutoModelForCausalLM.from_config(config).to(device=p.device, dtype=p.dtype).eval()
    student.config.use_cache = False
    with torch.no_grad():
        for name, param in student.named_parameters():
            param.copy_(weights[name])
    return student

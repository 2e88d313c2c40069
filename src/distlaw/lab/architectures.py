"""Students sized by non-embedding parameters in an architecture: the paper's Llama (Busbridge et al. 2025,
arXiv 2502.08606, App. H: ``ModelShape``'s own count, no torch), or the family and conventions of a template
config, a checkpoint's (``--like DIR``, ``[model] like``) or a built-in family's defaults (``--family``,
``[model] family``), counted exactly on the model itself (``families.config_params``, on the meta device).

The command line and sweep configs size their students through one ``Sizer``; torch is imported only when a
template is given, so that Llama runs are still checked and planned without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distlaw.compute import ModelShape, family_layers


@dataclass(frozen=True)
class Sizer:
    """Shapes at d_model = aspect_ratio x n_layers with heads of ``head_dim``, in ``architecture`` (None: Llama)."""

    aspect_ratio: int
    head_dim: int
    template: Any = None  # a transformers PretrainedConfig, or None
    architecture: dict | None = None  # families.architecture_of(template): what a RunSpec records

    @classmethod
    def of(cls, aspect_ratio: int, head_dim: int, family: str | None = None, like: str | Path | None = None) -> Sizer:
        """The sizer of a built-in family or of the checkpoint folder ``like`` (checked by ``checks.check_architecture``)."""
        if family is None and like is None:
            return cls(aspect_ratio, head_dim)
        from distlaw.lab import families

        template = families.template_config(family, like)
        return cls(aspect_ratio, head_dim, template, families.architecture_of(template))

    def from_params(self, params: float, *, n_ctx: int, vocab_size: int) -> ModelShape:
        """The shape whose non-embedding count is nearest ``params`` (in ratio)."""
        if self.template is None:
            return ModelShape.from_params(params, aspect_ratio=self.aspect_ratio, head_dim=self.head_dim, vocab_size=vocab_size, n_ctx=n_ctx)
        from distlaw.lab import families

        return families.sized_like(self.template, params, aspect_ratio=self.aspect_ratio, head_dim=self.head_dim, n_ctx=n_ctx,
                                   vocab_size=vocab_size)

    def from_dims(self, n_layers: int, d_model: int, *, n_ctx: int, vocab_size: int) -> ModelShape:
        """An explicit n_layers x d_model shape (the paper's FFN ratio 8/3, or the template's FFN and GQA ratios)."""
        if self.template is None:
            return ModelShape.from_dims(n_layers, d_model, n_ctx=n_ctx, vocab_size=vocab_size, head_dim=self.head_dim)
        from distlaw.lab import families

        return families.shape_like(self.template, n_layers, d_model, self.head_dim, n_ctx, vocab_size)

    def sizes_between(self, lo: float, hi: float, *, n_ctx: int, vocab_size: int) -> list[int]:
        """The non-embedding counts, ascending, of this family's shapes (d_model = aspect_ratio x n_layers, one
        per layer count whose width is whole heads, ``compute.whole_heads``) that lie in [lo, hi]: the sizes
        it builds exactly."""
        out = []
        # a template's heads keep head_dim at any width (its attention_head_dim), so every layer count is a shape
        for layers in family_layers(self.aspect_ratio, self.head_dim) if self.template is None else range(1, 4096):
            n = self.params(self.from_dims(layers, self.aspect_ratio * layers, n_ctx=n_ctx, vocab_size=vocab_size))
            if n > hi:
                break
            if n >= lo:
                out.append(n)
        return out

    def params(self, shape: ModelShape) -> int:
        """The non-embedding parameters N of the student of ``shape``, exactly."""
        if self.architecture is None:
            return shape.non_embedding_params
        from distlaw.lab import families

        return families.architecture_params(self.architecture, shape)[0]

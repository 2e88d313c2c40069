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
import functools
import json
import math
from pathlib import Path

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
    qwen2_width = family == "qwen2" and shape.head_dim * shape.n_heads != shape.d_model  # its attention reads a head_dim its config lacks
    if getattr(config, "head_dim", None) is not None or qwen2_width:
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


# --- Student architectures: a template config (a teacher's, or a family's defaults) recorded without its sizes.

SIZE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size", "head_dim",
             "vocab_size")
# What a config holds that is not architecture: bookkeeping, output switches, the tokenizer's special-token ids
# (a student's tokenizer is its data's) and the dtype (students train in fp32).
NOT_ARCHITECTURE = frozenset({
    "transformers_version", "architectures", "_name_or_path", "dtype", "torch_dtype", "use_cache", "bos_token_id",
    "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id", "id2label", "label2id", "output_hidden_states",
    "output_attentions", "return_dict", "problem_type", "chunk_size_feed_forward", "is_encoder_decoder", "tokenizer_class",
    "task_specific_params", "finetuning_task", "prefix", "_commit_hash", "_attn_implementation", "_attn_implementation_autoset",
})  # fmt: skip


def _size_keys(config: PretrainedConfig) -> set[str]:
    """The names a config family gives its sizes (GPT-2: n_embd, n_layer, n_head, n_inner)."""
    return {config.attribute_map.get(key, key) for key in SIZE_KEYS} | {FFN_KEYS.get(config.model_type, "intermediate_size")}


def _own_layer_types(config: PretrainedConfig) -> list[str] | None:
    """The per-layer attention types the family's own rule gives this config's depth (None: no such list)."""
    if getattr(config, "layer_types", None) is None:
        return None
    return type(config).from_dict({**config.to_dict(), "layer_types": None}).layer_types


def template_config(family: str | None = None, like: str | Path | None = None) -> PretrainedConfig | None:
    """A student's template: the config of the checkpoint folder ``like`` (a teacher), the defaults of the
    built-in family ``family`` (``AutoConfig.for_model``), or None for the paper's Llama (``model.llama_config``)."""
    from transformers import AutoConfig

    if like is not None:
        try:
            return AutoConfig.from_pretrained(Path(like), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DistlawError(f"--like {like}: cannot read its config ({first})") from None
    return None if family is None else AutoConfig.for_model(family)


def architecture_of(template: PretrainedConfig) -> dict:
    """The record of a template's architecture (``RunSpec.architecture``): its ``to_dict()`` without sizes,
    bookkeeping and token ids, so that it names the family and every convention (norms, activation, RoPE,
    attention type, biases, tying, initialisation). ``layer_types`` is kept only where it is not the family's
    own rule for the template's depth (a custom pattern, repeated over a student's layers)."""
    shape_of(template)  # a decoder-only config, or a one-line error
    dropped = NOT_ARCHITECTURE | _size_keys(template)
    record = {key: value for key, value in template.to_dict().items() if key not in dropped}
    if "layer_types" in record and template.layer_types == _own_layer_types(template):
        del record["layer_types"]
    return record


def config_from(architecture: dict, shape: ModelShape) -> PretrainedConfig:
    """The config of a student of ``architecture`` (``architecture_of``) and ``shape``; attention types per
    layer follow the family's rule for the student's depth, or repeat a recorded pattern."""
    from transformers import AutoConfig

    record = dict(architecture)
    pattern = record.pop("layer_types", None)
    try:
        template = AutoConfig.for_model(**record)
    except (KeyError, ValueError, TypeError) as exc:
        raise DistlawError(f"architecture {record.get('model_type')!r}: transformers cannot build it ({exc})") from None
    if pattern:
        template.layer_types = pattern
    config = config_like(template, shape)
    if not pattern and getattr(config, "layer_types", None) is not None:
        config.layer_types = _own_layer_types(config)
    config.bos_token_id = config.eos_token_id = config.pad_token_id = None
    config.use_cache = False
    if (getattr(config, "max_position_embeddings", None) or shape.n_ctx) < shape.n_ctx:
        raise DistlawError(f"{config.model_type} architecture: {config.max_position_embeddings} positions, fewer than the context {shape.n_ctx}")
    return config


def shape_like(template: PretrainedConfig, n_layers: int, d_model: int, head_dim: int, n_ctx: int, vocab_size: int) -> ModelShape:
    """A shape of ``n_layers`` x ``d_model`` with heads of ``head_dim`` and the template's conventions of size:
    its FFN-to-width ratio and its query-to-key/value head ratio (kept where it divides the heads, else the
    nearest smaller divisor)."""
    heads = max(1, d_model // head_dim)
    ratio = template.num_attention_heads // (getattr(template, "num_key_value_heads", None) or template.num_attention_heads)
    kv = max([1] + [k for k in range(1, heads + 1) if heads % k == 0 and k * ratio <= heads]) if hasattr(template, "num_key_value_heads") else heads
    return ModelShape(
        n_layers=n_layers, d_model=d_model, n_heads=heads, d_ff=max(1, round(ffn_size(template) / template.hidden_size * d_model)),
        n_kv_heads=None if kv == heads else kv, vocab_size=vocab_size, n_ctx=n_ctx,
        attention_head_dim=None if heads * head_dim == d_model else head_dim,
    )  # fmt: skip


@functools.lru_cache(maxsize=4096)
def _params(architecture_json: str, shape_json: str) -> tuple[int, int]:
    return config_params(config_from(json.loads(architecture_json), ModelShape.model_validate_json(shape_json)))


def architecture_params(architecture: dict, shape: ModelShape) -> tuple[int, int]:
    """(non-embedding, total) parameters of the student of ``architecture`` and ``shape``, exactly (meta device)."""
    return _params(json.dumps(architecture, sort_keys=True), shape.model_dump_json())


def sized_like(template: PretrainedConfig, params: float, *, aspect_ratio: int, head_dim: int, n_ctx: int, vocab_size: int) -> ModelShape:
    """The shape ``shape_like`` gives at d_model = aspect_ratio x n_layers whose exact non-embedding count
    (``architecture_params``) is nearest ``params`` in ratio (Busbridge App. H's fixed aspect ratio)."""
    architecture = architecture_of(template)
    best: tuple[float, ModelShape] | None = None
    for n_layers in range(1, 4096):
        shape = shape_like(template, n_layers, aspect_ratio * n_layers, head_dim, n_ctx, vocab_size)
        n = architecture_params(architecture, shape)[0]
        if best is None or abs(math.log(n / params)) < best[0]:
            best = (abs(math.log(n / params)), shape)
        if n > params:
            break
    assert best is not None
    return best[1]

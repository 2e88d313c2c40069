"""Which decoder families distlaw can prune, and where each keeps its weights (issue 11, item 4), without torch.

A ``Layout`` names, for one family, the modules that structured pruning touches (the layer list, the attention
output projection whose input holds the heads, the FFN output projection whose input holds the neurons, the
norms over the hidden size, the embeddings) and gives every parameter its axes: which unit each dimension
indexes (``hidden`` units, query rows ``q`` of the heads, key/value rows ``kv`` of the KV groups, FFN
neurons ``ffn``, GPT-NeoX's head-interleaved ``qkv_heads``, GPT-2's ``[q|k|v]`` blocks ``qkv_blocks``, or
or ``head_dim``, never pruned). The same table slices the weights (``distlaw.lab.pruning``) and counts
the parameters of a pruned shape exactly, so that sweeps know the size of a pruned student before torch loads.

Families: the Llama family (``llama``, ``mistral``, ``qwen2`` with q/k/v biases, ``qwen3`` with q/k norms), all
with grouped-query attention; ``gpt_neox`` (Pythia: fused head-interleaved QKV, biases, LayerNorm, partial
rotary, parallel residual) and ``gpt2`` (Conv1D weights stored (in, out), fused ``[q|k|v]``, biases, LayerNorm,
learned positions, tied head). In the last two the attention width is the model width (``coupled``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from distlaw.compute import ModelShape
from distlaw.errors import DistlawError

Axes = tuple[str, ...]


@dataclass(frozen=True)
class Layout:
    """Where one family keeps what pruning touches; module paths are relative to the ``base`` model, layer
    parameters (``params``: name -> axes) to one layer."""

    family: str
    base: str  # attribute of the CausalLM holding the decoder: model, gpt_neox, transformer
    layers: str  # the ModuleList of decoder layers
    embeddings: tuple[str, ...]  # written into the residual stream: tokens (and GPT-2's positions)
    final_norm: tuple[str, ...]  # parameters of the last norm (over hidden)
    attn_out: str  # the attention's output projection: its input holds the heads
    ffn_out: str  # the FFN's output projection: its input holds the neurons
    norms: tuple[str, ...]  # a layer's norms over the hidden size
    params: tuple[tuple[str, Axes], ...]
    rms: bool  # RMSNorm (exact hidden pruning, module docstring of distlaw.lab.pruning) or LayerNorm
    coupled: bool  # attention width = d_model (GPT-2, GPT-NeoX): d_model follows the kept heads
    scaled: tuple[str, ...] = ()  # more parameters multiplied by sqrt(d/d') (Qwen3's q/k before their norms)

    def count(self, shape: ModelShape) -> int:
        """Non-embedding parameters of a model of this family and ``shape`` (embeddings and head excluded)."""
        size = axis_sizes(shape)
        per_layer = sum(math.prod(size[a] for a in axes) for _, axes in self.params)
        return shape.n_layers * per_layer + len(self.final_norm) * shape.d_model


def axis_sizes(shape: ModelShape) -> dict[str, int]:
    """How long each kind of axis is in a model of ``shape``."""
    q, kv = shape.n_heads * shape.head_dim, (shape.n_kv_heads or shape.n_heads) * shape.head_dim
    return {"hidden": shape.d_model, "q": q, "kv": kv, "ffn": shape.d_ff, "head_dim": shape.head_dim, "qkv_heads": 3 * q,
            "qkv_blocks": 3 * q}


def _linear(name: str, out: str, inp: str, bias: bool) -> list[tuple[str, Axes]]:
    return [(f"{name}.weight", (out, inp))] + ([(f"{name}.bias", (out,))] if bias else [])


def _norm(name: str, bias: bool) -> list[tuple[str, Axes]]:
    return [(f"{name}.weight", ("hidden",))] + ([(f"{name}.bias", ("hidden",))] if bias else [])


def _llama_family(config: dict) -> Layout:
    family = config["model_type"]
    qkv_bias = {"qwen2": True, "mistral": False}.get(family, bool(config.get("attention_bias", False)))
    o_bias = family in ("llama", "qwen3") and bool(config.get("attention_bias", False))
    mlp_bias = family == "llama" and bool(config.get("mlp_bias", False))
    attn = "self_attn."
    params = [*_linear(attn + "q_proj", "q", "hidden", qkv_bias), *_linear(attn + "k_proj", "kv", "hidden", qkv_bias),
              *_linear(attn + "v_proj", "kv", "hidden", qkv_bias), *_linear(attn + "o_proj", "hidden", "q", o_bias)]
    if family == "qwen3":
        params += [(attn + "q_norm.weight", ("head_dim",)), (attn + "k_norm.weight", ("head_dim",))]
    params += [*_linear("mlp.gate_proj", "ffn", "hidden", mlp_bias), *_linear("mlp.up_proj", "ffn", "hidden", mlp_bias),
               *_linear("mlp.down_proj", "hidden", "ffn", mlp_bias), *_norm("input_layernorm", False), *_norm("post_attention_layernorm", False)]
    scaled = tuple(name for name, _ in params if family == "qwen3" and name.startswith((attn + "q_proj", attn + "k_proj")))
    return Layout(family, "model", "layers", ("embed_tokens",), ("norm.weight",), attn + "o_proj", "mlp.down_proj",
                  ("input_layernorm", "post_attention_layernorm"), tuple(params), rms=True, coupled=False, scaled=scaled)


def _gpt_neox(config: dict) -> Layout:
    bias = bool(config.get("attention_bias", True))
    params = [*_norm("input_layernorm", True), *_norm("post_attention_layernorm", True),
              *_linear("attention.query_key_value", "qkv_heads", "hidden", bias), *_linear("attention.dense", "hidden", "q", bias),
              *_linear("mlp.dense_h_to_4h", "ffn", "hidden", True), *_linear("mlp.dense_4h_to_h", "hidden", "ffn", True)]
    return Layout("gpt_neox", "gpt_neox", "layers", ("embed_in",), ("final_layer_norm.weight", "final_layer_norm.bias"),
                  "attention.dense", "mlp.dense_4h_to_h", ("input_layernorm", "post_attention_layernorm"), tuple(params),
                  rms=False, coupled=True)


def _gpt2(config: dict) -> Layout:
    if config.get("add_cross_attention"):
        raise DistlawError("GPT-2 models with cross-attention cannot be pruned (a decoder-only model is needed)")

    def conv1d(name: str, inp: str, out: str) -> list[tuple[str, Axes]]:  # Conv1D stores its weight (in, out)
        return [(f"{name}.weight", (inp, out)), (f"{name}.bias", (out,))]

    params = [*_norm("ln_1", True), *conv1d("attn.c_attn", "hidden", "qkv_blocks"), *conv1d("attn.c_proj", "q", "hidden"),
              *_norm("ln_2", True), *conv1d("mlp.c_fc", "hidden", "ffn"), *conv1d("mlp.c_proj", "ffn", "hidden")]
    return Layout("gpt2", "transformer", "h", ("wte", "wpe"), ("ln_f.weight", "ln_f.bias"), "attn.c_proj", "mlp.c_proj",
                  ("ln_1", "ln_2"), tuple(params), rms=False, coupled=True)


BUILDERS = {"llama": _llama_family, "mistral": _llama_family, "qwen2": _llama_family, "qwen3": _llama_family,
            "gpt_neox": _gpt_neox, "gpt2": _gpt2}
SUPPORTED = tuple(BUILDERS)
LAYER_KEYS = ("num_hidden_layers", "n_layer")  # GPT-2 calls it n_layer


def layout_of(config: dict, where: str = "model") -> Layout:
    """The layout of a model from its ``config.json`` contents; a family that cannot be pruned is refused."""
    family = config.get("model_type")
    if family not in BUILDERS:
        raise DistlawError(f"{where}: cannot prune a {family or 'model of unknown type'} model "
                           f"(distlaw prunes {', '.join(SUPPORTED)})")
    return BUILDERS[family](config)


LLAMA = layout_of({"model_type": "llama"})  # the decoders distlaw trains: Llama without biases


def read_config(directory: Path) -> dict:
    """A checkpoint's ``config.json`` as a dict (no transformers needed)."""
    file = Path(directory) / "config.json"
    try:
        config = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DistlawError(f"{file}: unreadable model config ({type(exc).__name__})") from None
    if not isinstance(config, dict):
        raise DistlawError(f"{file}: a model config is a JSON object")
    return config


def layer_count(config: dict, where: str = "model") -> int:
    """Number of decoder layers in a ``config.json``."""
    count = next((config[k] for k in LAYER_KEYS if k in config), None)
    if not isinstance(count, int) or count < 1:
        raise DistlawError(f"{where}: config.json gives no number of layers")
    return count


def check_depth_prunable(config: dict, where: str = "model") -> None:
    """GPT-2 can scale attention by 1 / (layer index + 1): dropping layers would change the later ones."""
    if config.get("scale_attn_by_inverse_layer_idx"):
        raise DistlawError(f"{where}: layers cannot be dropped from a GPT-2 model with scale_attn_by_inverse_layer_idx")

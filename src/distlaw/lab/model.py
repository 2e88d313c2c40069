"""Students and teachers through Hugging Face ``transformers``.

A student is built from a ``ModelShape`` and an architecture record (``RunSpec.architecture``). Without one
it is the paper's decoder (Busbridge et al. 2025, arXiv 2502.08606, App. C): a ``LlamaForCausalLM`` with
pre-RMSNorm, RoPE, gated SiLU FFN and untied embeddings. With one (``families.architecture_of`` of a
teacher's config, ``--like``, or of a family's defaults, ``--family``) it is a model of that family and its
conventions. Any local decoder-only checkpoint that ``AutoModelForCausalLM`` loads is a teacher; its
vocabulary must be the data's, padding rows beyond the tokenizer aside (``check_vocabulary``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from distlaw.compute import ModelShape, forward_flops
from distlaw.errors import DistlawError
from distlaw.lab import families
from distlaw.lab.tokenizer import first_difference, has_tokenizer, load_tokenizer_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PretrainedConfig, PreTrainedModel  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.disable_progress_bar()


def llama_config(shape: ModelShape) -> LlamaConfig:
    """The ``LlamaConfig`` of a shape (no bias terms, untied head, RoPE base 10000)."""
    if shape.d_model % shape.n_heads:  # transformers' Llama requires it, even with an explicit head_dim
        raise DistlawError(f"d_model {shape.d_model} is not divisible by n_heads {shape.n_heads}")
    kv_heads = shape.n_kv_heads or shape.n_heads
    if shape.n_heads % kv_heads:
        raise DistlawError(f"n_heads {shape.n_heads} is not divisible by n_kv_heads {kv_heads}")
    return LlamaConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.d_model,
        intermediate_size=shape.d_ff,
        num_hidden_layers=shape.n_layers,
        num_attention_heads=shape.n_heads,
        num_key_value_heads=kv_heads,
        head_dim=shape.head_dim,
        max_position_embeddings=shape.n_ctx,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        use_cache=False,
    )


def student_config(shape: ModelShape, architecture: dict | None = None) -> PretrainedConfig:
    """The config of a student: the paper's Llama (``llama_config``), or ``architecture`` at ``shape``."""
    return llama_config(shape) if architecture is None else families.config_from(architecture, shape)


def build_model(shape: ModelShape, seed: int, architecture: dict | None = None) -> PreTrainedModel:
    """A freshly initialised student; the weights are a pure function of ``(shape, seed, architecture)``."""
    config = student_config(shape, architecture)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config) if architecture is None else AutoModelForCausalLM.from_config(config)
    model.config.use_cache = False
    return model


def shape_of(model: PreTrainedModel) -> ModelShape:
    """The ``ModelShape`` of a loaded decoder of any family (for FLOP accounting of arbitrary teachers)."""
    return families.shape_of(model.config)


def load_model(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> PreTrainedModel:
    """A causal LM from a local checkpoint directory (never the network), in eval mode."""
    p = Path(path)
    if not (p / "config.json").is_file():
        raise DistlawError(f"{p}: not a model checkpoint directory (no config.json)")
    try:
        AutoConfig.from_pretrained(p, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(p, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DistlawError(f"{p}: cannot load model ({first})") from exc
    model.config.use_cache = False
    return model.to(device).eval()


def flops_per_token(model: PreTrainedModel, n_ctx: int) -> float:
    """F(N) of a loaded model of any family (App. H), with its exact non-embedding N (``families.count_params``:
    no Llama formula) and its full output head (padding rows are computed too)."""
    config = model.config
    return float(forward_flops(families.count_params(model)[0], config.num_hidden_layers, config.hidden_size, n_ctx, config.vocab_size))


def check_vocabulary(teacher_dir: Path, vocab_size: int, tokenizer: Tokenizer) -> int:
    """The vocabulary V = the data tokenizer's size that a teacher's logits are restricted to before every
    softmax. The teacher's own tokenizer (when its folder holds one) must have the data's vocabulary,
    added tokens included; its embedding may have padding rows beyond it (``vocab_size`` > V, as Qwen's
    152,064 rows for 151,936 tokens) only when that tokenizer shows that its first V rows are the data's
    tokens; fewer rows than V are refused."""
    v = tokenizer.get_vocab_size()
    where = f"teacher {teacher_dir}"
    own = has_tokenizer(teacher_dir)
    if own:
        difference = first_difference(load_tokenizer_dir(teacher_dir), tokenizer)
        if difference is not None:
            raise DistlawError(f"{where}: its tokenizer differs from the data's: {difference}")
    if vocab_size < v:
        raise DistlawError(f"{where}: vocabulary {vocab_size} differs from the student's {v}: fewer embedding rows than the data's tokens")
    if vocab_size > v and not own:
        raise DistlawError(f"{where}: vocabulary {vocab_size} differs from the student's {v}, and its folder holds no tokenizer "
                           f"to show that its first {v} entries are the data's tokens")
    return v

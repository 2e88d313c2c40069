"""Students and teachers: Llama-style decoders built from a ``ModelShape`` through Hugging Face ``transformers``.

The architecture is the paper's (Busbridge et al. 2025, arXiv 2502.08606, App. C): pre-RMSNorm, RoPE,
gated SiLU FFN, untied embeddings. Because every model is a plain ``LlamaForCausalLM``, any local Hugging
Face checkpoint directory (``save_pretrained`` output, ours or anyone's) loads as a teacher.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from distlaw.compute import ModelShape
from distlaw.errors import DistlawError
from distlaw.lab import families
from distlaw.lab.tokenizer import load_tokenizer_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedModel  # noqa: E402
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


def build_model(shape: ModelShape, seed: int) -> LlamaForCausalLM:
    """A freshly initialised student; the weights are a pure function of ``(shape, seed)``."""
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(shape))
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


def check_vocabulary(teacher_dir: Path, vocab_size: int, tokenizer: Tokenizer) -> None:
    """A teacher must share the student's vocabulary exactly: logits are never truncated or padded."""
    if (teacher_dir / "tokenizer.json").is_file() and load_tokenizer_dir(teacher_dir).get_vocab() != tokenizer.get_vocab():
        raise DistlawError(f"teacher {teacher_dir}: its tokenizer differs from the student's ({tokenizer.get_vocab_size()} tokens)")
    if vocab_size != tokenizer.get_vocab_size():
        raise DistlawError(f"teacher {teacher_dir}: vocabulary {vocab_size} differs from the student's {tokenizer.get_vocab_size()}")

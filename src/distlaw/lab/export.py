"""Model folders that load anywhere (issue 11, item 5): every model distlaw trains or prunes is written as a
plain Hugging Face checkpoint that ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` read without distlaw:

- ``model.safetensors`` and ``config.json`` (``save_pretrained``);
- the tokenizer: a Hugging Face tokenizer folder the data was tokenized with is copied through
  ``AutoTokenizer`` (special tokens, chat template and tokenizer class survive); distlaw's own byte and BPE
  tokenizers are written as a fast tokenizer (``tokenizer.json``, ``tokenizer_config.json``);
- ``generation_config.json``: ``GenerationConfig.from_model_config``, with the tokenizer's bos/eos/pad ids
  where the model config has none (distlaw's own models carry no token ids in their config);
- ``README.md``: a model card saying how the model was made (:mod:`distlaw.lab.model_card`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from torch import nn

from distlaw.io import _default_mode, atomic_path
from distlaw.lab.families import count_params
from distlaw.lab.model_card import model_card
from distlaw.lab.tokenizer import save_tokenizer

CARD = "README.md"
TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def save_checkpoint(model: nn.Module, tokenizer: Tokenizer, directory: Path, card: dict[str, Any]) -> None:
    """Write ``model`` and ``tokenizer`` into ``directory`` (which exists) with a model card made from ``card``:
    ``{"spec": RunSpec, "result": RunResult}`` (JSON) for a run, ``{"pruning": record, "data": DataConfig}``
    for a pruned model (see :mod:`distlaw.lab.model_card`)."""
    from transformers import AutoTokenizer, GenerationConfig

    directory = Path(directory)
    model.save_pretrained(directory)
    source = tokenizer_source(card)
    if source is None or not copy_tokenizer(source, directory):
        save_tokenizer(tokenizer, directory)
    saved = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    generation = GenerationConfig.from_model_config(model.config)
    for name in TOKEN_IDS:
        if getattr(generation, name, None) is None:
            setattr(generation, name, getattr(saved, name))
    generation.save_pretrained(directory)
    for weights in directory.glob("*.safetensors"):  # safetensors writes them owner-only; make them as readable as the rest
        os.chmod(weights, _default_mode())
    architecture = (getattr(model.config, "architectures", None) or [type(model).__name__])[0]
    with atomic_path(directory / CARD) as tmp:
        tmp.write_text(model_card(card, *count_params(model), architecture), encoding="utf-8")


def tokenizer_source(card: dict[str, Any]) -> Path | None:
    """The Hugging Face tokenizer folder the model's data was tokenized with, if it was one."""
    data = card["spec"]["data"] if "spec" in card else card.get("data") or {}
    name = data.get("tokenizer", "byte")
    return Path(name) if Path(name).is_dir() else None


def copy_tokenizer(source: Path, directory: Path) -> bool:
    """``AutoTokenizer.from_pretrained(source).save_pretrained(directory)``: chat template, special tokens and
    tokenizer class kept. False, with nothing written, for a folder AutoTokenizer cannot read alone (GPT-2's
    ``vocab.json`` + ``merges.txt`` without a config): the tokenizer distlaw loaded is then saved instead."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    tokenizer.save_pretrained(directory)
    return True

"""Model folders that load anywhere (issue 11, item 5): every model distlaw trains or prunes is written as a
plain Hugging Face checkpoint (safetensors weights, ``config.json``, ``generation_config.json``, a fast
tokenizer with its ``tokenizer_config.json``) plus a model card ``README.md`` saying how it was made.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer
from torch import nn

from distlaw.lab.tokenizer import save_tokenizer


def save_checkpoint(model: nn.Module, tokenizer: Tokenizer, directory: Path, card: dict) -> None:
    """Write ``model`` and ``tokenizer`` into ``directory`` (which exists) with a model card made from ``card``
    (what made the model: kind, teacher, tokens, loss, pruning, ...)."""
    model.save_pretrained(directory)
    save_tokenizer(tokenizer, directory)

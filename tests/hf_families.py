"""Tiny random checkpoints of the decoder families users distil (issue 11), built offline.

``tiny_checkpoint(family, directory)`` writes what a user would have on disk: a ``save_pretrained``
model folder of that family (random weights, 2 layers, d_model 32) next to a fast tokenizer trained
locally on a little Shakespeare, loadable with ``AutoModelForCausalLM`` / ``AutoTokenizer``. Nothing is
downloaded. ``pad_vocab=k`` gives the embedding ``k`` rows beyond the tokenizer (as Qwen's 152,064 rows
for 151,936 tokens).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

EOS = "<|endoftext|>"
TOKENIZER_VOCAB = 320
# Grouped-query attention (4 query heads, 2 key/value heads) wherever the family has it.
_COMMON = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=256)
_GQA = dict(_COMMON, num_key_value_heads=2)
FAMILIES: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", _GQA),
    "mistral": ("MistralConfig", dict(_GQA, sliding_window=None)),
    "qwen2": ("Qwen2Config", _GQA),  # q/k/v biases
    "qwen3": ("Qwen3Config", dict(_GQA, head_dim=8)),  # q/k norms
    "gemma2": ("Gemma2Config", dict(_GQA, head_dim=8, query_pre_attn_scalar=8, sliding_window=64)),
    "gemma3_text": ("Gemma3TextConfig", dict(_GQA, head_dim=8, query_pre_attn_scalar=8, sliding_window=64)),
    "phi3": ("Phi3Config", _GQA),  # fused qkv_proj and gate_up_proj
    "gpt_neox": ("GPTNeoXConfig", dict(_COMMON, rotary_pct=0.25)),  # Pythia: fused, head-interleaved QKV
    "gpt2": ("GPT2Config", dict(n_embd=32, n_layer=2, n_head=4, n_inner=64, n_positions=256)),  # Conv1D c_attn, learned positions
    "olmo2": ("Olmo2Config", _GQA),
}
# The families item 4 of issue 11 prunes.
PRUNABLE = ("llama", "mistral", "qwen2", "qwen3", "gpt_neox", "gpt2")


@functools.cache
def tokenizer() -> Tokenizer:
    """A byte-level BPE of ``TOKENIZER_VOCAB`` entries (``<|endoftext|>`` first) trained on the corpus."""
    from tokenizers import decoders, models, trainers
    from tokenizers.pre_tokenizers import ByteLevel

    from distlaw.lab import corpus

    texts = [t for _, t in zip(range(200), corpus.documents("shakespeare"))]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TOKENIZER_VOCAB, special_tokens=[EOS], initial_alphabet=ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def save_hf_tokenizer(directory: Path, tok: Tokenizer | None = None) -> None:
    """``tokenizer.json`` + ``tokenizer_config.json`` as ``save_pretrained`` writes them."""
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok or tokenizer(), eos_token=EOS, bos_token=EOS, unk_token=None)
    fast.save_pretrained(str(directory))


def tiny_config(family: str, vocab_size: int | None = None) -> transformers.PretrainedConfig:
    """The tiny config of ``family`` with the tokenizer's vocabulary and special-token ids."""
    class_name, sizes = FAMILIES[family]
    eos = tokenizer().token_to_id(EOS)
    config = getattr(transformers, class_name)(
        **sizes, vocab_size=vocab_size or tokenizer().get_vocab_size(), bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
    )
    config.use_cache = False
    return config


def tiny_checkpoint(family: str, directory: Path, *, seed: int = 0, pad_vocab: int = 0) -> Path:
    """A random ``family`` checkpoint with its tokenizer in ``directory`` (created); returns it."""
    directory = Path(directory)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(tiny_config(family, tokenizer().get_vocab_size() + pad_vocab))
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    save_hf_tokenizer(directory)
    return directory

"""Tokenizers, all local: the 256-symbol byte tokenizer, a byte-level BPE trained with ``tokenizers``, or a
tokenizer directory (``tokenizer.json``, as written by ``save_pretrained``)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, trainers
from tokenizers.pre_tokenizers import ByteLevel

from distlaw.errors import DistlawError
from distlaw.io import atomic_path

EOS = "<|endoftext|>"
MIN_BPE, MAX_BPE = 257, 1 << 20


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (the ByteLevel alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    return {b: chr(c) for b, c in zip(printable + extra, printable + [256 + i for i in range(len(extra))])}


def byte_tokenizer() -> Tokenizer:
    """Token id = UTF-8 byte value (vocabulary 256, no special tokens)."""
    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_bpe(documents: Callable[[], Iterable[str]], vocab_size: int) -> Tokenizer:
    """A byte-level BPE with ``vocab_size`` entries (including the end-of-text token) trained on ``documents``."""
    if not MIN_BPE <= vocab_size <= MAX_BPE:
        raise DistlawError(f"BPE vocabulary size must be between {MIN_BPE} and {MAX_BPE}, got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS], initial_alphabet=ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(documents(), trainer=trainer)
    return tok


def tokenizer_file(path: str | Path) -> Path:
    """The ``tokenizer.json`` of a directory (or the file itself); missing, a DistlawError."""
    p = Path(path)
    file = p / "tokenizer.json" if p.is_dir() else p
    if not file.is_file():
        raise DistlawError(f"{p}: no tokenizer.json (give 'byte', 'bpe:VOCAB' or a tokenizer directory)")
    return file


def bpe_vocab(name: str) -> int:
    """The vocabulary size of a ``bpe:VOCAB`` tokenizer name (the 256 bytes, merges and end-of-text)."""
    try:
        vocab_size = int(float(name[4:]))
    except (ValueError, OverflowError):
        raise DistlawError(f"tokenizer {name!r}: expected bpe:VOCAB_SIZE, e.g. bpe:4096") from None
    if not MIN_BPE <= vocab_size <= MAX_BPE:
        raise DistlawError(f"tokenizer {name!r}: the vocabulary size must be between {MIN_BPE} and {MAX_BPE}")
    return vocab_size


def check_tokenizer(name: str) -> None:
    """``byte``, ``bpe:VOCAB`` or an existing tokenizer file: checked before anything is tokenized."""
    if name == "byte":
        return
    if name.startswith("bpe:"):
        bpe_vocab(name)
        return
    tokenizer_file(name)


def load_tokenizer_dir(path: str | Path) -> Tokenizer:
    """The ``tokenizer.json`` of a directory (or the file itself)."""
    file = tokenizer_file(path)
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:  # tokenizers raises plain Exception on malformed files
        raise DistlawError(f"{file}: cannot read tokenizer ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc


def resolve_tokenizer(name: str, documents: Callable[[], Iterable[str]], corpus_key: str, cache_dir: Path) -> Tokenizer:
    """The tokenizer named by ``DataConfig.tokenizer``; a trained BPE is cached under ``cache_dir/tokenizers``."""
    if name == "byte":
        return byte_tokenizer()
    if name.startswith("bpe:"):
        vocab_size = bpe_vocab(name)
        file = cache_dir / "tokenizers" / hashlib.sha256(f"{corpus_key}|{vocab_size}".encode()).hexdigest()[:16] / "tokenizer.json"
        if not file.is_file():
            tok = train_bpe(documents, vocab_size)
            with atomic_path(file) as tmp:
                tok.save(str(tmp))
        return Tokenizer.from_file(str(file))
    return load_tokenizer_dir(name)


def fingerprint(tok: Tokenizer) -> str:
    """A content hash of the tokenizer (vocabulary, merges, normalisation)."""
    return hashlib.sha256(tok.to_str().encode()).hexdigest()[:16]


def eos_id(tok: Tokenizer) -> int | None:
    """The end-of-text id placed between documents, if the tokenizer has one."""
    return tok.token_to_id(EOS)


def save_tokenizer(tok: Tokenizer, directory: Path) -> None:
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` so ``AutoTokenizer.from_pretrained(directory)`` works."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS if eos_id(tok) is not None else None)
    fast.save_pretrained(str(directory))

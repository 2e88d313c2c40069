"""Tokenizers, all local: the 256-symbol byte tokenizer, a byte-level BPE trained with ``tokenizers``, or a
tokenizer folder (any checkpoint's own: ``tokenizer.json``, or GPT-2 style ``vocab.json`` + ``merges.txt``).

A folder is loaded through ``transformers.AutoTokenizer`` (fast tokenizers; GPT-2 files are converted) and
its ``backend_tokenizer`` encodes. The token placed between documents is the tokenizer's own
``eos_token`` (``</s>`` for Llama 2, ``<|endoftext|>`` for GPT-2 and Qwen); a ``tokenizers.Tokenizer`` has
no such notion, so the loaded one carries it as the attribute ``EOS_ATTRIBUTE`` (``eos_token(tok)`` reads
it; distlaw's own tokenizers and bare ``tokenizer.json`` files use ``<|endoftext|>`` when they have it)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, trainers
from tokenizers.pre_tokenizers import ByteLevel

from distlaw.errors import DistlawError
from distlaw.io import atomic_path

EOS = "<|endoftext|>"
EOS_ATTRIBUTE = "distlaw_eos_token"
GPT2_FILES = ("vocab.json", "merges.txt")
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


def has_tokenizer(folder: Path) -> bool:
    """Whether a folder holds a tokenizer: ``tokenizer.json``, or GPT-2's ``vocab.json`` + ``merges.txt``."""
    return (folder / "tokenizer.json").is_file() or all((folder / name).is_file() for name in GPT2_FILES)


def tokenizer_source(path: str | Path) -> Path:
    """A tokenizer folder (``has_tokenizer``) or a ``tokenizer.json`` file itself; anything else, a DistlawError."""
    p = Path(path)
    if p.is_file() or (p.is_dir() and has_tokenizer(p)):
        return p
    raise DistlawError(f"{p}: no tokenizer.json, nor vocab.json + merges.txt (give 'byte', 'bpe:VOCAB' or a tokenizer folder)")


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
    tokenizer_source(name)


def _hf_tokenizer(folder: Path) -> Any:
    """The folder's tokenizer as transformers loads it; GPT-2 files alone (no config to name their class) as GPT-2's."""
    import transformers

    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "config.json")):
        return transformers.GPT2Tokenizer.from_pretrained(folder, local_files_only=True)
    return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)


def load_tokenizer_dir(path: str | Path) -> Tokenizer:
    """The tokenizer of a folder (through ``AutoTokenizer``, carrying its ``eos_token``) or of a ``tokenizer.json`` file."""
    source = tokenizer_source(path)
    try:
        if source.is_file():
            return Tokenizer.from_file(str(source))
        hf = _hf_tokenizer(source)
        tok = getattr(hf, "backend_tokenizer", None)
        if not isinstance(tok, Tokenizer):
            raise ValueError(f"{type(hf).__name__} is not a fast tokenizer")
    except Exception as exc:  # tokenizers raises plain Exception on malformed files, transformers OSError/ValueError
        raise DistlawError(f"{source}: cannot read tokenizer ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc
    setattr(tok, EOS_ATTRIBUTE, hf.eos_token or (EOS if tok.token_to_id(EOS) is not None else None))
    return tok


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


def eos_token(tok: Tokenizer) -> str | None:
    """The end-of-text token placed between documents: a folder's ``eos_token``, else ``<|endoftext|>`` if present."""
    return getattr(tok, EOS_ATTRIBUTE, EOS if tok.token_to_id(EOS) is not None else None)


def eos_id(tok: Tokenizer) -> int | None:
    """The id of ``eos_token(tok)``, if the tokenizer has one."""
    token = eos_token(tok)
    return None if token is None else tok.token_to_id(token)


def fingerprint(tok: Tokenizer) -> str:
    """A content hash of the tokenizer: its whole serialisation (vocabulary with added tokens, merges,
    normalisation, pre-tokenizer, post-processor) and its end-of-text token, which shapes the token stream
    too (named only where it is not ``<|endoftext|>``, the rule before tokenizers carried their own: older
    keys stay valid)."""
    eos = eos_token(tok)
    legacy = EOS if tok.token_to_id(EOS) is not None else None
    return hashlib.sha256((tok.to_str() + ("" if eos == legacy else f"|eos={eos}")).encode()).hexdigest()[:16]


def first_difference(theirs: Tokenizer, ours: Tokenizer) -> str | None:
    """Where two vocabularies (added tokens included) first differ, in the order of our ids:
    ``token 'abc' is id 17 there, 23 here``; None when they are the same."""
    there, here = theirs.get_vocab(with_added_tokens=True), ours.get_vocab(with_added_tokens=True)
    if there == here:
        return None
    for token, i in sorted(here.items(), key=lambda item: item[1]):
        if there.get(token) != i:
            return f"token {token!r} is id {there[token]} there, {i} here" if token in there else f"token {token!r} (id {i} here) is not there"
    token, j = min(((t, j) for t, j in there.items() if t not in here), key=lambda item: item[1])
    return f"token {token!r} (id {j} there) is not here"


def save_tokenizer(tok: Tokenizer, directory: Path) -> None:
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` so ``AutoTokenizer.from_pretrained(directory)`` works."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos_token(tok))
    fast.save_pretrained(str(directory))

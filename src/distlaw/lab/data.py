"""Tokenized corpora on disk and the data order of a run.

A corpus is tokenized once into memory-mapped ``train.bin`` / ``val.bin`` under
``cache_dir/tokens/<key>`` (built in a temporary directory, then renamed: two processes building the same
corpus at once are safe). The validation split is every ``1/fraction``-th block of the token stream, so
train and validation are disjoint and both cover the whole corpus.

A run reads windows of ``seq_len + 1`` tokens starting at multiples of ``seq_len``. Its data order is a pure
function of ``(seed, step)``: each epoch is a permutation of the windows drawn from ``seed`` and the epoch
number, and step ``s`` of a run with batch size B reads global samples ``s B .. (s + 1) B - 1``. Resuming
needs no data-loader state, and a teacher cache built for the same seed covers exactly the windows a
student will read. (Tokenization holds the corpus in memory once; the lab's corpora are small.)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from distlaw.errors import DistlawError
from distlaw.io import atomic_directory
from distlaw.lab import corpus as corpus_mod
from distlaw.lab import tokenizer as tok_mod
from distlaw.lab.config import DataConfig

FORMAT_VERSION = 1
MAX_BLOCK = 4096


@dataclass(frozen=True)
class TokenData:
    """A tokenized corpus: memory-mapped train and validation token streams plus their tokenizer."""

    directory: Path
    train: np.ndarray
    val: np.ndarray
    tokenizer: Tokenizer
    meta: dict

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def key(self) -> str:
        return str(self.meta["key"])

    def n_windows(self, seq_len: int) -> int:
        return (len(self.train) - 1) // seq_len

    def train_windows(self, ids: np.ndarray, seq_len: int) -> torch.Tensor:
        """Windows ``ids`` of the train stream as a (len(ids), seq_len + 1) int64 tensor."""
        rows = [self.train[i * seq_len : i * seq_len + seq_len + 1] for i in ids.tolist()]
        return torch.from_numpy(np.stack(rows).astype(np.int64))

    def val_windows(self, seq_len: int, tokens: int) -> torch.Tensor:
        """The first ``ceil(tokens / seq_len)`` validation windows (all of them if fewer exist)."""
        available = (len(self.val) - 1) // seq_len
        n = min(available, -(-tokens // seq_len))
        rows = [self.val[i * seq_len : i * seq_len + seq_len + 1] for i in range(n)]
        return torch.from_numpy(np.stack(rows).astype(np.int64))


def window_ids(start: int, stop: int, n_windows: int, seed: int) -> np.ndarray:
    """The windows of global samples ``start .. stop - 1``: a pure function of the seed (each epoch of
    ``n_windows`` samples is a seeded permutation), independent of the batch size."""
    samples = np.arange(start, stop)
    epochs, positions = np.divmod(samples, n_windows)
    out = np.empty(len(samples), dtype=np.int64)
    for epoch in np.unique(epochs):
        order = np.random.default_rng([seed, int(epoch)]).permutation(n_windows)
        mask = epochs == epoch
        out[mask] = order[positions[mask]]
    return out


def _split_blocks(n_tokens: int, fraction: float) -> tuple[int, np.ndarray]:
    """Block size and a boolean mask of validation blocks, spread evenly at ``fraction``."""
    block = int(min(MAX_BLOCK, max(64, n_tokens * fraction // 8)))
    n_blocks = -(-n_tokens // block)
    index = np.arange(n_blocks)
    is_val = np.floor((index + 1) * fraction) > np.floor(index * fraction)
    return block, is_val


def _tokenize(documents: list[str], tok: Tokenizer) -> np.ndarray:
    """Every document encoded as the tokenizer does (its post-processor may begin it with a BOS) and ended
    by the tokenizer's end-of-text token, unless the encoding already ends with it."""
    eos = tok_mod.eos_id(tok)
    dtype = np.uint16 if tok.get_vocab_size() <= 1 << 16 else np.uint32
    pieces: list[np.ndarray] = []
    for enc in tok.encode_batch(documents):
        ids = enc.ids if eos is None or enc.ids[-1:] == [eos] else [*enc.ids, eos]
        pieces.append(np.asarray(ids, dtype=dtype))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)


def _build(directory: Path, texts: list[str], tok: Tokenizer, meta: dict, fraction: float) -> None:
    """Tokenize and write the splits into a temporary directory, then rename it into place."""
    stream = _tokenize(texts, tok)
    block, is_val = _split_blocks(len(stream), fraction)
    mask = np.repeat(is_val, block)[: len(stream)]
    with atomic_directory(directory, done_marker="meta.json") as tmp:
        stream[~mask].tofile(tmp / "train.bin")
        stream[mask].tofile(tmp / "val.bin")
        tok.save(str(tmp / "tokenizer.json"))
        meta = {**meta, "dtype": stream.dtype.name, "n_train": int((~mask).sum()), "n_val": int(mask.sum()), "block": block}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def prepare_data(cfg: DataConfig, default_cache: Path) -> TokenData:
    """Tokenize ``cfg.corpus`` once (cached by corpus, tokenizer and split) under ``cfg.cache_dir`` (else
    ``default_cache``) and open it memory-mapped."""
    root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache
    corpus_key = corpus_mod.corpus_key(cfg.corpus)
    texts: list[str] | None = None

    def load_texts() -> list[str]:
        nonlocal texts
        if texts is None:
            texts = list(corpus_mod.documents(cfg.corpus))
            if not any(texts):
                raise DistlawError(f"corpus {cfg.corpus}: no text")
        return texts

    tok = tok_mod.resolve_tokenizer(cfg.tokenizer, load_texts, corpus_key, root)
    key = hashlib.sha256(
        f"{FORMAT_VERSION}|{corpus_key}|{tok_mod.fingerprint(tok)}|{cfg.validation_fraction}".encode()
    ).hexdigest()[:16]
    directory = root / "tokens" / key
    if not (directory / "meta.json").is_file():
        meta = {
            "key": key,
            "corpus": cfg.corpus,
            "tokenizer": tok_mod.fingerprint(tok),
            "vocab_size": tok.get_vocab_size(),
            "eos_token": tok_mod.eos_token(tok),
            "validation_fraction": cfg.validation_fraction,
            "format": FORMAT_VERSION,
        }
        _build(directory, load_texts(), tok, meta, cfg.validation_fraction)
    meta = json.loads((directory / "meta.json").read_text())
    if meta["n_val"] < cfg.seq_len + 1 or meta["n_train"] < cfg.seq_len + 1:
        raise DistlawError(
            f"corpus {cfg.corpus}: too small for seq_len {cfg.seq_len} "
            f"({meta['n_train']} train and {meta['n_val']} validation tokens)"
        )
    dtype = np.dtype(meta["dtype"])
    train = np.memmap(directory / "train.bin", dtype=dtype, mode="r", shape=(meta["n_train"],))
    val = np.memmap(directory / "val.bin", dtype=dtype, mode="r", shape=(meta["n_val"],))
    return TokenData(directory, train, val, tok, meta)

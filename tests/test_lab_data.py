"""Corpora, tokenizers and the tokenized token files: formats, splits, data order, concurrent builds."""

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distlaw.errors import DistlawError
from distlaw.lab import corpus
from distlaw.lab.config import DataConfig
from distlaw.lab.data import prepare_data, window_ids
from distlaw.lab.tokenizer import byte_tokenizer, eos_id, resolve_tokenizer

TEXTS = [f"Document {i}: to be, or not to be, that is the question {i * 7}.\n" * 40 for i in range(30)]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(TEXTS))
    return path


def test_embedded_shakespeare_is_found():
    files = corpus.corpus_files("shakespeare")
    assert len(files) >= 30 and all(f.suffix == ".md" for f in files)
    assert any(f.stem == "hamlet" for f in files)


def test_jsonl_parquet_and_saved_datasets_give_the_same_documents(tmp_path):
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(TEXTS)))
    table = pa.table({"text": TEXTS})
    pq.write_table(table, tmp_path / "c.parquet")
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "dataset_info.json").write_text("{}")
    with pa.OSFile(str(saved / "data-00000-of-00001.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)  # the layout Dataset.save_to_disk writes
    for source in ("c.jsonl", "c.parquet", "saved"):
        assert list(corpus.documents(str(tmp_path / source))) == TEXTS


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: d / "missing.txt", "no such file"),
        (lambda d: (d / "x.csv").write_text("a") and d / "x.csv", "unsupported file type"),
        (lambda d: (d / "x.jsonl").write_text('{"body": 1}\n') and d / "x.jsonl", "no 'text' field"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "no .txt"),
    ],
)
def test_bad_corpora_are_one_line_errors(tmp_path, setup, message):
    with pytest.raises(DistlawError, match=message):
        list(corpus.documents(str(setup(tmp_path))))


def test_byte_tokenizer_is_utf8_bytes():
    tok = byte_tokenizer()
    text = "Ophelia — nymph, in thy orisons\n"
    assert tok.encode(text).ids == list(text.encode()) and tok.get_vocab_size() == 256
    assert tok.decode(tok.encode(text).ids) == text and eos_id(tok) is None


def test_bpe_tokenizer_is_trained_once_and_cached(tmp_path):
    calls = []

    def docs():
        calls.append(1)
        return TEXTS

    first = resolve_tokenizer("bpe:300", docs, "k", tmp_path)
    second = resolve_tokenizer("bpe:300", docs, "k", tmp_path)
    assert first.get_vocab_size() == 300 and eos_id(first) is not None
    assert first.get_vocab() == second.get_vocab() and len(calls) == 1
    with pytest.raises(DistlawError, match="bpe:VOCAB_SIZE"):
        resolve_tokenizer("bpe:lots", docs, "k", tmp_path)


def test_splits_are_disjoint_and_cover_the_stream(text_file, tmp_path):
    data = prepare_data(DataConfig(corpus=str(text_file), seq_len=16, validation_fraction=0.1), tmp_path / "cache")
    stream = np.frombuffer("".join(TEXTS).encode(), dtype=np.uint8)
    block = data.meta["block"]
    n_blocks = -(-len(stream) // block)
    is_val = np.repeat(np.floor((np.arange(n_blocks) + 1) * 0.1) > np.floor(np.arange(n_blocks) * 0.1), block)[: len(stream)]
    assert np.array_equal(data.train, stream[~is_val]) and np.array_equal(data.val, stream[is_val])
    assert 0.08 < len(data.val) / len(stream) < 0.12
    assert data.val_windows(16, 100).shape == (7, 17)


def test_data_order_is_a_pure_function_of_seed_and_sample():
    n = 50
    whole = window_ids(0, 3 * n, n, seed=4)
    for epoch in range(3):
        assert sorted(whole[epoch * n : (epoch + 1) * n]) == list(range(n))  # each epoch is a permutation
    assert np.array_equal(window_ids(37, 91, n, seed=4), whole[37:91])  # independent of batching
    assert not np.array_equal(window_ids(0, n, n, seed=5), whole[:n])


def _build(args):
    corpus_path, cache = args
    return prepare_data(DataConfig(corpus=corpus_path, seq_len=16), Path(cache)).key


@pytest.mark.slow
def test_two_processes_building_the_same_corpus_agree(text_file, tmp_path):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        keys = pool.map(_build, [(str(text_file), str(tmp_path / "cache"))] * 2)
    assert keys[0] == keys[1]
    built = list((tmp_path / "cache" / "tokens").iterdir())
    assert [p.name for p in built] == [keys[0]]  # no temporary directories left behind
    data = prepare_data(DataConfig(corpus=str(text_file), seq_len=16), tmp_path / "cache")
    assert len(data.train) + len(data.val) == len("".join(TEXTS).encode())


def test_too_small_corpus_is_refused(tmp_path):
    (tmp_path / "tiny.txt").write_text("short text " * 20)
    with pytest.raises(DistlawError, match="too small"):
        prepare_data(DataConfig(corpus=str(tmp_path / "tiny.txt"), seq_len=64), tmp_path / "cache")

"""Teacher logit cache: run a teacher once over the distillation tokens, reuse it for every student.

This is the paper's "existing teacher, many students" setting (Busbridge et al. 2025, Sec. 5 and Eq. 9
with dLgt amortised): the teacher-inference cost F(N_T) D is paid once, when the cache is built, and is
recorded in its manifest; runs that read the cache add no teacher FLOPs.

Layout of a cache directory (built in a temporary directory, then renamed into place):

- ``manifest.json``: teacher, data key, seq_len, data-order seed, k, temperature, the build FLOPs and,
  for every shard, its row range and SHA-256 (checked when the cache is opened);
- ``shard-NNNNN.safetensors``: for rows (global samples of the data order) ``indices`` (rows, seq_len, k),
  the top-k ``logprobs`` of softmax(z_T / tau) in fp16 sorted by decreasing probability, and ``log_rest``
  (rows, seq_len), the log of the probability mass outside them, in fp32;
- ``teacher_val.safetensors``: the teacher's mean cross-entropy on every validation window, so students
  report the teacher's loss on exactly their own held-out tokens.

A teacher of any decoder family serves; its logits are restricted to the data tokenizer's V entries before
the softmax (padding rows of its embedding never count, ``model.check_vocabulary``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from distlaw.errors import DistlawError
from distlaw.io import atomic_directory
from distlaw.lab import distributed
from distlaw.lab.checks import CACHE_FORMAT, MANIFEST, check_cache_options, check_checkpoint, check_new_directory, check_teacher_cache, sha256
from distlaw.lab.config import DataConfig, RunSpec
from distlaw.lab.data import TokenData, prepare_data, window_ids
from distlaw.lab.losses import Teacher
from distlaw.lab.families import count_params
from distlaw.lab.model import check_vocabulary, flops_per_token, load_model
from distlaw.lab.runtime import autocast, cpu_threads, logits_of, progress_bar, window_losses

VAL_FILE = "teacher_val.safetensors"
SHARD_BYTES = 64 << 20


def bytes_per_token(k: int, vocab_size: int) -> int:
    """On-disk bytes per cached token: k indices, k fp16 log-probabilities, one fp32 rest mass."""
    return k * (_index_dtype(vocab_size).itemsize + 2) + 4


def _index_dtype(vocab_size: int) -> torch.dtype:
    return torch.uint8 if vocab_size <= 1 << 8 else torch.int16 if vocab_size <= 1 << 15 else torch.int32


def topk_targets(logits: torch.Tensor, k: int, temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k (indices, log-probabilities) of softmax(logits / tau) and the log of the remaining mass."""
    logp = (logits.float() / temperature).log_softmax(-1)
    top, idx = logp.topk(k, dim=-1)
    log_rest = logp.scatter(-1, idx, float("-inf")).logsumexp(-1)
    return idx, top, log_rest


class TeacherCache:
    """An opened, verified cache; ``targets(rows)`` gives the sparse teacher of global samples ``rows``."""

    def __init__(self, directory: Path, manifest: dict) -> None:
        self.directory = directory
        self.manifest = manifest
        self._handles = [safe_open(str(directory / s["file"]), framework="pt") for s in manifest["shards"]]

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> TeacherCache:
        """Open a cache and verify every file's checksum; anything wrong is a one-line DistlawError."""
        return cls(Path(directory), check_teacher_cache(Path(directory)))

    @property
    def k(self) -> int:
        return int(self.manifest["k"])

    @property
    def teacher_params(self) -> int:
        return int(self.manifest["teacher_params"])

    def check_compatible(self, data: TokenData, spec: RunSpec, rows: int) -> None:
        """The run must read the same tokens, in the same order, at the cache's temperature."""
        m, where = self.manifest, self.directory
        if m["vocab_size"] != data.vocab_size:
            raise DistlawError(f"teacher cache {where}: vocabulary {m['vocab_size']} differs from the student's {data.vocab_size}")
        if m["data_key"] != data.key:
            raise DistlawError(f"teacher cache {where}: built on other data ({m['corpus']}, tokenizer {m['tokenizer']})")
        if m["seq_len"] != spec.data.seq_len:
            raise DistlawError(f"teacher cache {where}: seq_len {m['seq_len']} differs from the run's {spec.data.seq_len}")
        if m["order_seed"] != spec.order_seed:
            raise DistlawError(f"teacher cache {where}: built for data order seed {m['order_seed']}, the run uses {spec.order_seed} (set data.order_seed)")
        if m["temperature"] != spec.distill.temperature:
            raise DistlawError(f"teacher cache {where}: built at temperature {m['temperature']}, the run uses {spec.distill.temperature}")
        if m["rows"] < rows:
            raise DistlawError(f"teacher cache {where}: covers {m['tokens']} tokens, the run needs {rows * spec.data.seq_len}")

    def targets(self, rows: slice, device: torch.device) -> Teacher:
        """Sparse teacher targets of global samples ``rows``, flattened to (rows * seq_len, k)."""
        parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for entry, handle in zip(self.manifest["shards"], self._handles):
            lo, hi = entry["rows"]
            a, b = max(rows.start, lo), min(rows.stop, hi)
            if a < b:
                parts.append(tuple(handle.get_slice(n)[a - lo : b - lo] for n in ("indices", "logprobs", "log_rest")))  # type: ignore[arg-type]
        idx, logp, rest = (torch.cat([p[i] for p in parts]) for i in range(3))
        k = idx.shape[-1]
        return Teacher(
            indices=idx.reshape(-1, k).to(device=device, dtype=torch.int64),
            logprobs=logp.reshape(-1, k).to(device),
            log_rest=rest.reshape(-1).to(device),
        )

    def teacher_loss(self, n_windows: int) -> float:
        """The teacher's cross-entropy (nats/token) on the first ``n_windows`` validation windows."""
        with safe_open(str(self.directory / VAL_FILE), framework="pt") as handle:
            losses = handle.get_tensor("window_loss")
        if n_windows > len(losses):
            raise DistlawError(f"teacher cache {self.directory}: holds {len(losses)} validation windows, the run evaluates {n_windows}")
        return float(losses[:n_windows].mean())


@torch.no_grad()
def build_cache(
    teacher_dir: Path,
    out: Path,
    data_cfg: DataConfig,
    default_cache: Path,
    *,
    tokens: int,
    k: int = 128,
    temperature: float = 1.0,
    order_seed: int = 0,
    batch_size: int = 32,
    device: str | None = None,
    progress: bool = True,
) -> dict:
    """Run the teacher over the first ``tokens`` tokens (rounded up to whole batches of ``batch_size``
    windows) of the data order ``order_seed`` and write a cache; nothing is written if anything fails.
    Returns the manifest."""
    out, teacher_dir = Path(out), Path(teacher_dir)
    check_new_directory(out, "teacher cache")
    check_checkpoint(teacher_dir, "teacher")
    check_cache_options(k, temperature, batch_size)
    dev = distributed.default_device(device)
    with cpu_threads(dev):
        data = prepare_data(data_cfg, default_cache)
        teacher = load_model(teacher_dir, dev)
        vocab = check_vocabulary(teacher_dir, teacher.config.vocab_size, data.tokenizer)
        if not 1 <= k <= vocab:
            raise DistlawError(f"top-k {k} must be between 1 and the vocabulary size {data.vocab_size}")
        seq_len = data_cfg.seq_len
        rows = -(-tokens // (seq_len * batch_size)) * batch_size  # whole batches, as a run of this batch size reads
        rows_per_shard = max(batch_size, SHARD_BYTES // (seq_len * bytes_per_token(k, data.vocab_size)))
        n_windows = data.n_windows(seq_len)
        shards: list[dict] = []
        with atomic_directory(out, done_marker=MANIFEST) as tmp:  # a parallel build of the same cache may win
            with progress_bar(progress) as bar:
                task = bar.add_task(f"teacher cache k={k}", total=rows, loss="-")
                for lo in range(0, rows, rows_per_shard):
                    hi = min(rows, lo + rows_per_shard)
                    pieces = []
                    for a in range(lo, hi, batch_size):
                        b = min(hi, a + batch_size)
                        batch = data.train_windows(window_ids(a, b, n_windows, order_seed), seq_len)[:, :-1].to(dev)
                        with autocast(dev):
                            logits = logits_of(teacher, batch, vocab)
                        idx, top, rest = topk_targets(logits, k, temperature)
                        pieces.append((idx.to(_index_dtype(data.vocab_size)).cpu(), top.half().cpu(), rest.cpu()))
                        bar.update(task, completed=b)
                    name = f"shard-{len(shards):05d}.safetensors"
                    tensors = {n: torch.cat([p[i] for p in pieces]).contiguous() for i, n in enumerate(("indices", "logprobs", "log_rest"))}
                    save_file(tensors, str(tmp / name))
                    shards.append({"file": name, "rows": [lo, hi], "sha256": sha256(tmp / name)})
            val_loss = window_losses(teacher, data.val_windows(seq_len, len(data.val)), dev, vocab=vocab)
            save_file({"window_loss": val_loss}, str(tmp / VAL_FILE))
            teacher_params, teacher_total = count_params(teacher)
            manifest = {
                "format": CACHE_FORMAT,
                "teacher": str(teacher_dir.resolve()),
                "teacher_params": teacher_params,
                "teacher_total_params": teacher_total,
                "teacher_loss": float(val_loss.mean()),
                "corpus": data.meta["corpus"],
                "tokenizer": data.meta["tokenizer"],
                "tokenizer_name": data_cfg.tokenizer,
                "data_key": data.key,
                "vocab_size": data.vocab_size,
                "seq_len": seq_len,
                "order_seed": order_seed,
                "k": k,
                "temperature": temperature,
                "rows": rows,
                "tokens": rows * seq_len,
                "bytes_per_token": bytes_per_token(k, data.vocab_size),
                "build_flops": flops_per_token(teacher, seq_len) * rows * seq_len,
                "shards": shards,
                "val": {"file": VAL_FILE, "sha256": sha256(tmp / VAL_FILE)},
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest

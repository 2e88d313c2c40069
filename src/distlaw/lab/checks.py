"""Checks of a lab request that need neither torch nor transformers, so that bad input is refused at once.

Device names, corpora and tokenizers, run directories, new output directories, checkpoint directories,
student architectures (``--family``, ``--like``) and teacher caches are checked here, before any data is tokenized or any model loaded; the training,
caching and pruning entry points call them too, so the Python API refuses what the command line does.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from distlaw.errors import DistlawError
from distlaw.lab.config import FAMILIES, DataConfig
from distlaw.lab.corpus import corpus_files
from distlaw.lab.tokenizer import check_tokenizer

DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
SPEC, RESULT, RESUME = "spec.json", "result.json", "resume.pt"
CHECKPOINT_CONFIG = "config.json"
CACHE_FORMAT, MANIFEST = "distlaw-teacher-cache/1", "manifest.json"
MANIFEST_KEYS = ("teacher", "teacher_params", "corpus", "tokenizer", "data_key", "vocab_size", "seq_len", "order_seed", "k", "temperature",
                 "rows", "tokens", "shards", "val")


def check_device_name(device: str | None) -> None:
    """``None`` (automatic), ``cpu``, ``mps``, ``cuda`` or ``cuda:N``; whether it exists is asked of torch later."""
    if device is not None and not DEVICE_PATTERN.match(device):
        raise DistlawError(f"--device {device!r}: expected cpu, cuda, cuda:N or mps")


def check_data(data: DataConfig) -> None:
    """The corpus exists and holds readable files, and the tokenizer is one that can be made or read."""
    corpus_files(data.corpus)
    check_tokenizer(data.tokenizer)


def check_run_directory(run_dir: Path) -> None:
    """A run directory is new, empty, or a run (it holds ``spec.json``): anything else is refused. Hidden
    files do not count: a run killed while writing its spec leaves only a ``.spec.json.*.tmp``."""
    if run_dir.exists() and not run_dir.is_dir():
        raise DistlawError(f"{run_dir}: is a file, not a run directory; give a new directory")
    if run_dir.is_dir() and not (run_dir / SPEC).is_file() and any(not p.name.startswith(".") for p in run_dir.iterdir()):
        raise DistlawError(f"{run_dir}: folder is not empty and holds no run ({SPEC}); give a new directory")


def check_new_directory(directory: Path, what: str) -> None:
    """Outputs built in one go (a teacher cache, a pruned model) never overwrite anything."""
    if directory.exists():
        raise DistlawError(f"{directory}: already exists; choose a new directory for the {what}")


def check_checkpoint(directory: Path, what: str) -> Path:
    """A local model checkpoint directory: it exists and holds a ``config.json``."""
    if not directory.is_dir():
        raise DistlawError(f"{what} {directory}: no such checkpoint directory")
    if not (directory / CHECKPOINT_CONFIG).is_file():
        raise DistlawError(f"{what} {directory}: folder holds no model ({CHECKPOINT_CONFIG} missing)")
    return directory


def check_architecture(family: str | None, like: str | Path | None, what: str = "--") -> None:
    """A student's template: a built-in family name or a checkpoint folder (with its ``config.json``), not both.
    ``what`` prefixes the option names (``--`` on the command line, ``[model] `` in a sweep config)."""
    if family is not None and like is not None:
        raise DistlawError(f"give {what}family or {what}like, not both (--like copies a checkpoint's family and conventions)")
    if family is not None and family not in FAMILIES:
        raise DistlawError(f"{what}family {family!r}: not a built-in family (one of {', '.join(FAMILIES)}; any other through {what}like DIR)")
    if like is not None:
        check_checkpoint(Path(like), f"{what}like")


def check_cache_options(k: int, temperature: float, batch_size: int) -> None:
    """What a cache build needs of its options before any model is loaded (k is checked against the vocabulary later)."""
    if k < 1:
        raise DistlawError(f"--k {k}: the cache needs at least the top-1 log-probability")
    if not temperature > 0:
        raise DistlawError(f"--temperature {temperature:g} must be positive")
    if batch_size < 1:
        raise DistlawError(f"--batch-size {batch_size} must be at least 1")


def sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_manifest(directory: Path) -> dict:
    """The manifest of a teacher cache (``distlaw.lab.teacher_cache``), its fields checked (not its files)."""
    file = directory / MANIFEST
    if not file.is_file():
        raise DistlawError(f"{directory}: not a teacher cache (no {MANIFEST}; build one with `distlaw cache-teacher`)")
    try:
        manifest = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise DistlawError(f"{file}: corrupted manifest ({exc.msg})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != CACHE_FORMAT:
        raise DistlawError(f"{directory}: not a {CACHE_FORMAT} manifest")
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise DistlawError(f"{file}: corrupted manifest (missing {', '.join(missing)})")
    return manifest


def check_teacher_cache(directory: Path) -> dict:
    """The manifest of a teacher cache, once every file's checksum is verified."""
    manifest = cache_manifest(directory)
    for entry in [*manifest["shards"], manifest["val"]]:
        shard = directory / entry["file"]
        if not shard.is_file():
            raise DistlawError(f"{directory}: teacher cache file {entry['file']} is missing")
        if sha256(shard) != entry["sha256"]:
            raise DistlawError(f"{directory}: teacher cache file {entry['file']} is corrupted (checksum mismatch)")
    return manifest


def spec_differences(stored: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """``"tokens 4096 (stored) vs 2048"`` for every leaf where two spec dumps differ (``name`` ignored)."""
    out: list[str] = []
    for key in sorted(set(stored) | set(wanted)):
        if not prefix and key == "name":
            continue
        a, b = stored.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += spec_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {a} (stored) vs {b}")
    return out

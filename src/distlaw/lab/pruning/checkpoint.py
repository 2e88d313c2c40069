"""``prune_checkpoint``: a teacher checkpoint folder in, a pruned checkpoint folder out (model, tokenizer,
``pruning.json``), width first, then depth (MiniMA)."""

from __future__ import annotations

import json
from pathlib import Path

from distlaw.errors import DistlawError
from distlaw.io import atomic_directory
from distlaw.lab import distributed
from distlaw.lab.checks import check_checkpoint, check_new_directory
from distlaw.lab.config import DataConfig
from distlaw.lab.data import prepare_data, window_ids
from distlaw.lab.export import save_checkpoint
from distlaw.lab.families import count_params
from distlaw.lab.model import check_vocabulary, load_model, shape_of
from distlaw.lab.pruned import FORMAT, RECORD, check_request, pruned_shape
from distlaw.lab.pruning.decoder import Decoder
from distlaw.lab.pruning.depth import drop_layers, layer_importance, least_important
from distlaw.lab.pruning.importance import importance_scores
from distlaw.lab.pruning.width import prune_model
from distlaw.lab.runtime import cpu_threads


def prune_checkpoint(
    teacher_dir: Path,
    out: Path,
    data_cfg: DataConfig,
    default_cache: Path,
    *,
    sparsity: float | None = None,
    target_params: int | None = None,
    method: str = "mask-gradient",
    depth: int = 0,
    keep_layers: str | None = None,
    depth_importance: str = "loss",
    calibration_tokens: int = 65536,
    batch_size: int = 32,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> dict:
    """Prune a teacher checkpoint into a new checkpoint directory ``out`` (model, tokenizer and ``pruning.json``).

    Width (``sparsity`` or ``target_params``: non-embedding parameters of the final model) by ``method``, then
    depth: ``depth`` layers dropped by ``depth_importance`` or only ``keep_layers`` kept. Importance is measured
    on the first ``calibration_tokens`` tokens (whole windows) of the training data in the order of ``seed``.
    Nothing is written if anything fails. Returns the pruning record."""
    out, teacher_dir = Path(out), Path(teacher_dir)
    check_new_directory(out, "pruned model")
    check_checkpoint(teacher_dir, "teacher")
    explicit = check_request(teacher_dir, sparsity=sparsity, target_params=target_params, method=method, depth=depth,
                             keep_layers=keep_layers, depth_importance=depth_importance)
    if calibration_tokens < 1 or batch_size < 1:
        raise DistlawError("calibration tokens and batch size must be at least 1")
    width = sparsity is not None or target_params is not None
    dev = distributed.default_device(device)
    with cpu_threads(dev):
        teacher = load_model(teacher_dir, dev)
        d = Decoder(teacher)
        layers = len(explicit) if explicit is not None else d.shape.n_layers - depth
        if width:  # bad requests fail before calibration
            pruned_shape(d.shape, sparsity=sparsity, target_params=target_params, layout=d.layout, layers=layers)
        data = prepare_data(data_cfg, default_cache)
        check_vocabulary(teacher_dir, teacher.config.vocab_size, data.tokenizer)
        seq_len = data_cfg.seq_len
        n = -(-calibration_tokens // seq_len)
        windows = data.train_windows(window_ids(0, n, data.n_windows(seq_len), seed), seq_len)
        student = teacher
        if width:
            importance = importance_scores(teacher, windows, batch_size, progress, method)
            student = prune_model(teacher, importance, sparsity=sparsity, target_params=target_params, layers=layers)
        scores = layer_importance(student, windows, batch_size, depth_importance, progress) if depth else None
        kept = explicit if explicit is not None else least_important(scores, depth) if scores is not None else tuple(range(layers))
        if len(kept) != d.shape.n_layers:
            student = drop_layers(student, kept)
        shape, teacher_params, params = shape_of(student), count_params(teacher)[0], count_params(student)[0]
        record = {
            "format": FORMAT,
            "teacher": str(teacher_dir.resolve()),
            "family": d.layout.family,
            "teacher_params": teacher_params,
            "params": params,
            "sparsity": sparsity,
            "target_params": target_params,
            "achieved_sparsity": 1 - params / teacher_params,
            "method": method,
            "depth": depth,
            "keep_layers": keep_layers,
            "depth_importance": depth_importance,
            "kept_layers": list(kept),
            "layer_importance": None if scores is None else scores.tolist(),
            "kept_heads": shape.n_heads,
            "kept_kv_heads": shape.n_kv_heads or shape.n_heads,
            "kept_neurons": shape.d_ff,
            "kept_hidden": shape.d_model,
            "head_dim": shape.head_dim,
            "teacher_shape": d.shape.model_dump(),
            "shape": shape.model_dump(),
            "corpus": data.meta["corpus"],
            "data_key": data.key,
            "seq_len": seq_len,
            "seed": seed,
            "calibration_tokens": n * seq_len,
        }
        with atomic_directory(out, done_marker=RECORD) as tmp:  # losing a race to an identical build is not an error
            save_checkpoint(student, data.tokenizer, tmp, {"pruning": record, "data": data_cfg.model_dump(mode="json")})
            (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        return record

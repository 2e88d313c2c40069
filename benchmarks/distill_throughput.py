"""Throughput of a distillation step against a supervised step on the same student, side by side.

Times the lab's own training step (``distlaw.lab.train.load_batch`` + ``train_step``) three ways, taking
turns step by step (median step time): supervised, distilled from an online teacher, and distilled from a
top-k teacher cache on disk; then measures, on
held-out tokens, how far the top-k KL is from the full-vocabulary KL and how many bytes the cache spends per
token. With ``--device cuda`` it also reports the model FLOP utilisation (MFU) of the supervised and cached
steps: 3 F(N_S) tokens/s over the accelerator's peak (F as in Busbridge et al. 2025, App. H).

    python benchmarks/distill_throughput.py                           # CPU, tiny byte-level models
    python benchmarks/distill_throughput.py --device cuda --params 1e8  # ~100M student, bf16 autocast
    python benchmarks/distill_throughput.py --device cuda --params 1e8 --compile --warmup 10

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from distlaw.compute import ModelShape
from distlaw.lab import distributed
from distlaw.lab.config import DataConfig, DistillConfig, OptimConfig, RunSpec
from distlaw.lab.data import prepare_data
from distlaw.lab.losses import Teacher, objective
from distlaw.lab.model import build_model, load_model
from distlaw.lab.runtime import autocast, cpu_threads
from distlaw.lab.teacher_cache import TeacherCache, build_cache, bytes_per_token, topk_targets
from distlaw.lab.train import TeacherSource, load_batch, make_optimizer, train_run, train_step


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--params", type=float, default=None, help="student non-embedding parameters (cpu: 3e4, cuda: 1e8)")
    p.add_argument("--teacher-params", type=float, default=None, help="teacher non-embedding parameters (default 4x student)")
    p.add_argument("--teacher", type=Path, default=None, help="use this teacher checkpoint instead of training one")
    p.add_argument("--teacher-tokens", type=float, default=3e5, help="tokens to train the benchmark's teacher on")
    p.add_argument("--seq-len", type=int, default=None, help="cpu: 128, cuda: 2048")
    p.add_argument("--batch-size", type=int, default=None, help="cpu: 32, cuda: 16")
    p.add_argument("--tokenizer", default="byte")
    p.add_argument("--corpus", default="shakespeare")
    p.add_argument("--k", type=int, default=64, help="top-k of the cache used for the timed cached step")
    p.add_argument("--kl-k", default="16,64,128", help="k values for the KL-error and bytes-per-token table")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="torch.compile the student (warmup absorbs compilation)")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="accelerator bf16 dense peak (H100 SXM: 989)")
    p.add_argument("--work-dir", type=Path, default=None, help="keep the teacher, cache and tokens here")
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    args.params = args.params or (1e8 if cuda else 3e4)
    args.teacher_params = args.teacher_params or 4 * args.params
    args.seq_len = args.seq_len or (2048 if cuda else 128)
    args.batch_size = args.batch_size or (16 if cuda else 32)
    return args


def shape_for(params: float, vocab: int, seq_len: int) -> ModelShape:
    """The paper's aspect ratio (128) and head width (64) from 1e7 parameters up; small CPU shapes below."""
    big = params >= 1e7
    return ModelShape.from_params(params, aspect_ratio=128 if big else 16, head_dim=64 if big else 8, vocab_size=vocab, n_ctx=seq_len)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(runs: dict[str, tuple[RunSpec, TeacherSource | None]], data, ctx: distributed.Context, warmup: int, steps: int,
               compile_student: bool = False) -> dict[str, float]:
    """Tokens/s of the lab's training step (batch loading, teacher targets, forward, backward, AdamW) for
    each named setup. The setups take turns step by step and each is scored by its median step time, so
    load from other processes hits them alike. ``compile_student`` wraps each student in ``torch.compile``
    (the warmup steps absorb the compilation)."""
    state = {}
    for name, (spec, _) in runs.items():
        student = build_model(spec.shape, seed=0).to(ctx.device)
        optimizer = make_optimizer(student, spec.optim)
        state[name] = (torch.compile(student) if compile_student else student, optimizer, [])
    any_spec = next(iter(runs.values()))[0]
    b, seq_len = any_spec.optim.batch_size, any_spec.data.seq_len
    for step in range(warmup + steps):
        rows = slice(step * b, (step + 1) * b)
        for name, (spec, teacher) in runs.items():
            student, optimizer, times = state[name]
            sync(ctx.device)
            start = time.perf_counter()
            inputs, labels = load_batch(data, rows, seq_len, 0, ctx.device)
            targets = teacher.targets(inputs, rows, ctx) if teacher is not None else None
            train_step(student, optimizer, inputs, labels, targets, spec, ctx.device)
            sync(ctx.device)
            if step >= warmup:
                times.append(time.perf_counter() - start)
    return {name: b * seq_len / statistics.median(times) for name, (_, _, times) in state.items()}


@torch.no_grad()
def kl_errors(teacher_dir: Path, student_dir: Path, seq_len: int, data, ks: list[int], device: torch.device) -> dict:
    """Relative error of the cache's top-k KL (and of the paper's renormalised top-k truncation) against the
    full-vocabulary KL(teacher || student), on held-out tokens, for a briefly trained student."""
    teacher = load_model(teacher_dir, device)
    student = load_model(student_dir, device)
    windows = data.val_windows(seq_len, 16 * seq_len).to(device)
    with autocast(device):
        zt = teacher(input_ids=windows[:, :-1]).logits.float().flatten(0, 1)
        zs = student(input_ids=windows[:, :-1]).logits.float().flatten(0, 1)
    labels = windows[:, 1:].flatten()
    cfg = DistillConfig(weight=1.0, z_loss=0.0)
    full = float(objective(zs, labels, cfg, Teacher(logits=zt))[1][1])
    rows = {}
    for k in ks:
        idx, top, rest = topk_targets(zt, k, 1.0)
        cached = Teacher(indices=idx, logprobs=top.half().float(), log_rest=rest)  # fp16 as stored on disk
        coarse = float(objective(zs, labels, cfg, cached)[1][1])
        truncated = float(objective(zs, labels, cfg.model_copy(update={"top_k": k}), Teacher(logits=zt))[1][1])
        rows[str(k)] = {
            "cache_bytes_per_token": bytes_per_token(k, data.vocab_size),
            "kl_rel_error_cache": abs(coarse - full) / full,
            "kl_rel_error_truncated": abs(truncated - full) / full,
        }
    return {"full_kl": full, "by_k": rows}


def measure(args: argparse.Namespace, ctx: distributed.Context) -> dict:
    """Build (or reuse, under ``--work-dir``) the teacher and its cache, then time and measure everything."""
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="distill-bench-"))
    ks = [int(k) for k in args.kl_k.split(",")]
    data_cfg = DataConfig(corpus=args.corpus, tokenizer=args.tokenizer, seq_len=args.seq_len, cache_dir=str(work))
    data = prepare_data(data_cfg, work)
    vocab = data.vocab_size
    ks = [k for k in ks if k <= vocab]
    optim = OptimConfig(batch_size=args.batch_size)
    student = RunSpec(name="student", kind="supervised", shape=shape_for(args.params, vocab, args.seq_len),
                      tokens=args.batch_size * args.seq_len * (args.warmup + args.steps), data=data_cfg, optim=optim)
    teacher_dir = args.teacher
    if teacher_dir is None:
        teacher_dir = work / "teacher"
        teacher_spec = student.model_copy(update={"name": "teacher", "shape": shape_for(args.teacher_params, vocab, args.seq_len),
                                                  "tokens": int(args.teacher_tokens)})
        train_run(teacher_spec, teacher_dir, progress=True, device=args.device)
    cache_dir = work / f"cache-k{args.k}-{student.tokens}"
    if not cache_dir.exists():
        build_cache(teacher_dir, cache_dir, data_cfg, work, tokens=student.tokens, k=args.k,
                    batch_size=args.batch_size, device=args.device, progress=True)
    distilled = student.model_copy(update={"kind": "distilled", "teacher": str(teacher_dir)})
    from_cache = distilled.model_copy(update={"distill": DistillConfig(cache_k=args.k)})
    steps = args.warmup + args.steps
    online = TeacherSource(distilled, data, ctx, teacher_dir, None, steps, shard=False)
    cached = TeacherSource(from_cache, data, ctx, None, cache_dir, steps, shard=False)

    tps = throughput({"supervised": (student, None), "online": (distilled, online), "cached": (from_cache, cached)},
                     data, ctx, args.warmup, args.steps, args.compile)
    supervised_tps, online_tps, cached_tps = tps["supervised"], tps["online"], tps["cached"]

    kl_student = student.model_copy(update={"tokens": int(args.teacher_tokens) // 4})
    train_run(kl_student, work / "kl-student", progress=False, device=args.device)
    flops_per_token = 3 * student.shape.forward_flops_per_token()
    out = {
        "device": str(ctx.device) + (f" ({torch.cuda.get_device_name(ctx.device)})" if ctx.device.type == "cuda" else ""),
        "threads": torch.get_num_threads(),
        "student_non_embedding_params": student.shape.non_embedding_params,
        "teacher_non_embedding_params": online.params,
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "vocab_size": vocab,
        "timed_steps": args.steps,
        "cache_k": args.k,
        "compiled": args.compile,
        "supervised_tokens_per_s": supervised_tps,
        "online_tokens_per_s": online_tps,
        "cached_tokens_per_s": cached_tps,
        "cached_over_supervised": cached_tps / supervised_tps,
        "online_over_supervised": online_tps / supervised_tps,
        "cache_manifest_bytes_per_token": TeacherCache.open(cache_dir).manifest["bytes_per_token"],
        "kl_error": kl_errors(teacher_dir, work / "kl-student", args.seq_len, data, ks, ctx.device),
    }
    if ctx.device.type == "cuda":
        peak = args.peak_tflops * 1e12
        out["mfu_supervised"] = flops_per_token * supervised_tps / peak
        out["mfu_cached"] = flops_per_token * cached_tps / peak
        out["peak_tflops"] = args.peak_tflops
    return out


def main() -> None:
    args = parse()
    ctx = distributed.setup(args.device)
    with cpu_threads(ctx.device):
        print(json.dumps(measure(args, ctx), indent=2))


if __name__ == "__main__":
    main()

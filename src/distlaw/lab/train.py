"""One training loop for supervised and distilled runs (Busbridge et al. 2025, arXiv 2502.08606, App. C).

``train_run(spec, run_dir)`` trains a student, evaluates it and its teacher on the same held-out tokens,
and writes everything of the run into ``run_dir``: the model and tokenizer as a Hugging Face checkpoint
(so the run can teach later runs), ``spec.json``, ``result.json`` (written last: its presence marks a
finished run) and, while training, ``resume.pt`` every ``checkpoint_every`` steps. The data order is a pure
function of (seed, step) and the resume state holds model, optimiser, step and RNG states, so a killed run
resumed from its checkpoint ends with the loss of an uninterrupted one.

A run starts from random weights, a pure function of (shape, seed, architecture), or, with ``spec.init``,
from a teacher pruned to its size (``distlaw.lab.pruning``, Zhang et al. 2023), read from ``init_dir``.

Teachers of any decoder family serve, online or through a cache. Every softmax (training CE and KL,
evaluation, the teacher's loss) sees the first V = tokenizer-size logits only: a teacher's (or a pruned
student's) embedding rows beyond its tokenizer are padding (``model.check_vocabulary``).

Compute (Eq. 9): the student costs 3 F(N_S) D_S; an online teacher adds F(N_T) D_S; a teacher cache adds
nothing here, its F(N_T) D_S was paid once when it was built (recorded in the cache's manifest). F(N) uses
each model's exact non-embedding count (``families.count_params``), whatever its family.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from distlaw.errors import DistlawError
from distlaw.io import atomic_path, write_json
from distlaw.lab import distributed
from distlaw.lab.checks import RESULT, RESUME, SPEC, check_run_directory, spec_differences
from distlaw.lab.config import OptimConfig, RunSpec, default_cache
from distlaw.lab.data import TokenData, prepare_data, window_ids
from distlaw.lab.export import save_checkpoint
from distlaw.lab.losses import Teacher, check_options, objective
from distlaw.lab.families import architecture_params, count_params
from distlaw.lab.model import build_model, check_vocabulary, flops_per_token, load_model, shape_of
from distlaw.lab.runtime import autocast, check_memory, cpu_threads, evaluate, logits_of, progress_bar
from distlaw.lab.teacher_cache import TeacherCache

class RunResult(BaseModel):
    """What one run measured; the row a runs table gets (losses in nats/token on held-out tokens)."""

    model_config = ConfigDict(extra="forbid")

    non_embedding_params: int
    total_params: int
    tokens: int
    flops: float
    teacher_inference_flops: float
    loss: float
    teacher_loss: float | None
    teacher_params: int | None
    eval_tokens: int
    wall_time_s: float
    steps: int
    checkpoint: str
    requested_params: float | None = None  # the size asked for, when the shape was built to a parameter target
    teacher_total_params: int | None = None  # the teacher's parameters with its embeddings and head


def lr_at(step: int, steps: int, optim: OptimConfig) -> float:
    """Linear warmup to ``lr``, then cosine decay to ``lr * final_lr_fraction``."""
    warmup = round(optim.warmup_fraction * steps)
    if step < warmup:
        return optim.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup - 1)
    floor = optim.lr * optim.final_lr_fraction
    return floor + 0.5 * (optim.lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on RMSNorm gains)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": optim.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = all(p.is_cuda for p in params)
    return torch.optim.AdamW(groups, lr=optim.lr, betas=(0.9, 0.95), eps=1e-8, fused=fused or None)


class TeacherSource:
    """The distillation targets of a run: an online model or a cache, and its accounting."""

    def __init__(self, spec: RunSpec, data: TokenData, ctx: distributed.Context, teacher_dir: Path | None,
                 teacher_cache: Path | None, steps: int, shard: bool) -> None:
        self.model: nn.Module | None = None
        self.cache: TeacherCache | None = None
        self.vocab = data.vocab_size
        self.total_params: int | None = None
        cache_k = spec.distill.cache_k
        if (cache_k is None) != (teacher_cache is None):
            raise DistlawError(f"run {spec.name}: a teacher cache is read exactly when distill.cache_k is set (cache_k = {cache_k})")
        if teacher_cache is not None:
            self.cache = TeacherCache.open(teacher_cache)
            if self.cache.k != cache_k:
                raise DistlawError(f"teacher cache {teacher_cache}: holds top-{self.cache.k}, the run wants distill.cache_k = {cache_k}")
            check_options(spec.distill, cached_k=self.cache.k)
            self.cache.check_compatible(data, spec, rows=steps * spec.optim.batch_size)
            self.params, self.total_params = self.cache.teacher_params, self.cache.manifest.get("teacher_total_params")
            self.flops_per_token = 0.0
        elif teacher_dir is not None:
            check_options(spec.distill)
            teacher_dir = Path(teacher_dir)
            model = load_model(teacher_dir)
            self.vocab = check_vocabulary(teacher_dir, model.config.vocab_size, data.tokenizer)
            shape = shape_of(model)
            if shape.n_ctx < spec.data.seq_len:
                raise DistlawError(f"teacher {teacher_dir}: context {shape.n_ctx} is shorter than seq_len {spec.data.seq_len}")
            self.params, self.total_params = count_params(model)
            self.flops_per_token = flops_per_token(model, spec.data.seq_len)
            model.requires_grad_(False)
            model.to(ctx.device)
            self.model = distributed.shard_teacher(model, ctx) if shard else model
        else:
            raise DistlawError(f"run {spec.name}: a distilled run needs a teacher checkpoint or a teacher cache")

    def targets(self, inputs: torch.Tensor, rows: slice, ctx: distributed.Context) -> Teacher:
        if self.cache is not None:
            return self.cache.targets(rows, ctx.device)
        assert self.model is not None
        with torch.no_grad(), autocast(ctx.device):
            return Teacher(logits=logits_of(self.model, inputs, self.vocab).flatten(0, 1))

    def loss(self, windows: torch.Tensor, ctx: distributed.Context) -> float:
        if self.cache is not None:
            return self.cache.teacher_loss(len(windows))
        assert self.model is not None
        return evaluate(self.model, windows, ctx, self.vocab)


def initial_model(spec: RunSpec, init_dir: Path | None) -> nn.Module:
    """Random weights, a pure function of (shape, seed, architecture); or, for a spec with ``init``, the
    pruned checkpoint in ``init_dir``, whose shape must be the spec's."""
    if init_dir is None:
        return build_model(spec.shape, spec.optim.seed, spec.architecture)
    model = load_model(init_dir)
    shape = shape_of(model).model_copy(update={"n_ctx": spec.shape.n_ctx})
    if shape != spec.shape:
        raise DistlawError(f"{init_dir}: holds a {shape.non_embedding_params}-parameter model, not the shape of run {spec.name} ({spec.shape.non_embedding_params})")
    return model.train()


def load_batch(data: TokenData, rows: slice, seq_len: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token labels of global samples ``rows`` of the data order ``seed``."""
    batch = data.train_windows(window_ids(rows.start, rows.stop, data.n_windows(seq_len), seed), seq_len).to(device)
    return batch[:, :-1], batch[:, 1:]


def train_step(student: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, labels: torch.Tensor,
               targets: Teacher | None, spec: RunSpec, device: torch.device, vocab: int | None = None) -> torch.Tensor:
    """One optimiser step on Eq. 7 (gradient clipping, then AdamW) over the first ``vocab`` logits; returns the detached loss."""
    with autocast(device):
        logits = logits_of(student, inputs, vocab)
    loss, _ = objective(logits, labels, spec.distill, targets)
    loss.backward()
    nn.utils.clip_grad_norm_(student.parameters(), spec.optim.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def _finished(run_dir: Path, spec: RunSpec) -> RunResult | None:
    """The stored result when ``run_dir`` holds this run finished; None for a new or resumable run.
    A directory holding another run (its spec differs), or not a run at all, is refused."""
    check_run_directory(run_dir)
    spec_file = run_dir / SPEC
    if spec_file.is_file():
        try:
            stored = RunSpec.model_validate_json(spec_file.read_text())
        except ValueError as exc:
            raise DistlawError(f"{spec_file}: corrupted run spec ({type(exc).__name__}); give a new directory") from None
        if stored.key() != spec.key():
            differences = spec_differences(stored.model_dump(mode="json"), spec.model_dump(mode="json"))
            raise DistlawError(f"{run_dir}: holds a different run ({'; '.join(differences[:3])}); give another directory or the same options")
    if (run_dir / RESULT).is_file():
        return RunResult.model_validate_json((run_dir / RESULT).read_text())
    return None


def _save_state(path: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, elapsed: float) -> None:
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "elapsed": elapsed,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, float]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["step"]), float(state["elapsed"])


def train_run(
    spec: RunSpec,
    run_dir: Path,
    *,
    teacher_dir: Path | None = None,
    teacher_cache: Path | None = None,
    init_dir: Path | None = None,
    progress: bool = True,
    checkpoint_every: int | None = None,
    device: str | None = None,
    shard_teacher: bool = False,
    requested_params: float | None = None,
) -> RunResult:
    """Train (or resume, or return the stored result of) one run; see the module docstring.

    ``requested_params``: the parameter target the shape was built to, recorded in the result beside
    the parameters built."""
    run_dir = Path(run_dir)
    done = _finished(run_dir, spec)
    if done is not None:
        return done
    start_time = time.perf_counter()
    ctx = distributed.setup(device)
    with cpu_threads(ctx.device):
        return _train(spec, run_dir, ctx, start_time, teacher_dir, teacher_cache, init_dir, progress, checkpoint_every, shard_teacher,
                      requested_params)


def _train(spec: RunSpec, run_dir: Path, ctx: distributed.Context, start_time: float, teacher_dir: Path | None,
           teacher_cache: Path | None, init_dir: Path | None, progress: bool, checkpoint_every: int | None,
           shard_teacher: bool, requested_params: float | None) -> RunResult:
    seq_len, batch_size = spec.data.seq_len, spec.optim.batch_size
    if batch_size % ctx.world:
        raise DistlawError(f"batch size {batch_size} does not split over {ctx.world} processes")
    if spec.shape.n_ctx < seq_len:
        raise DistlawError(f"run {spec.name}: model context {spec.shape.n_ctx} is shorter than seq_len {seq_len}")
    if (spec.init is None) != (init_dir is None):
        raise DistlawError(f"run {spec.name}: starting weights are read from a directory exactly when the spec has an init")
    data = prepare_data(spec.data, default_cache(run_dir))
    vocab = data.vocab_size
    if spec.shape.vocab_size < vocab or spec.shape.vocab_size > vocab and spec.init is None:  # a pruned teacher's padding stays
        raise DistlawError(f"run {spec.name}: model vocabulary {spec.shape.vocab_size} differs from the tokenizer's {vocab}")
    steps = spec.steps
    teacher = TeacherSource(spec, data, ctx, teacher_dir, teacher_cache, steps, shard_teacher) if spec.kind == "distilled" else None
    val = data.val_windows(seq_len, spec.eval_tokens)

    total = spec.shape.non_embedding_params + spec.shape.embedding_params if spec.architecture is None else architecture_params(spec.architecture, spec.shape)[1]
    check_memory(total, ctx.device, f"run {spec.name}")
    model = initial_model(spec, init_dir).to(ctx.device)
    optimizer = make_optimizer(model, spec.optim)
    step, elapsed = 0, 0.0
    if ctx.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(spec.model_dump(mode="json"), run_dir / SPEC)
    if (run_dir / RESUME).is_file():
        step, elapsed = _load_state(run_dir / RESUME, model, optimizer)
    student = distributed.wrap_student(model, ctx)
    local = ctx.local_slice(batch_size)

    with progress_bar(progress and ctx.main) as bar:
        task = bar.add_task(f"{spec.kind} {spec.name}", total=steps, completed=step, loss="-")
        while step < steps:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, steps, spec.optim)
            rows = slice(step * batch_size + local.start, step * batch_size + local.stop)
            inputs, labels = load_batch(data, rows, seq_len, spec.order_seed, ctx.device)
            targets = teacher.targets(inputs, rows, ctx) if teacher is not None else None
            loss = train_step(student, optimizer, inputs, labels, targets, spec, ctx.device, vocab)
            step += 1
            if step % 10 == 0 or step == steps:
                bar.update(task, completed=step, loss=f"{loss.item():.4f}")
            if checkpoint_every and step % checkpoint_every == 0 and step < steps and ctx.main:
                _save_state(run_dir / RESUME, step, model, optimizer, elapsed + time.perf_counter() - start_time)

    loss_value = evaluate(model, val, ctx, vocab)
    teacher_loss = teacher.loss(val, ctx) if teacher is not None else None
    non_embedding, total = count_params(model)
    tokens = steps * batch_size * seq_len
    result = RunResult(
        non_embedding_params=non_embedding,
        total_params=total,
        tokens=tokens,
        flops=3 * flops_per_token(model, seq_len) * tokens,
        teacher_inference_flops=teacher.flops_per_token * tokens if teacher is not None else 0.0,
        loss=loss_value,
        teacher_loss=teacher_loss,
        teacher_params=teacher.params if teacher is not None else None,
        eval_tokens=int(val[:, 1:].numel()),
        wall_time_s=elapsed + time.perf_counter() - start_time,
        steps=steps,
        checkpoint=str(run_dir),
        requested_params=requested_params,
        teacher_total_params=teacher.total_params if teacher is not None else None,
    )
    if ctx.main:
        save_checkpoint(model, data.tokenizer, run_dir, {"spec": spec.model_dump(mode="json"), "result": result.model_dump(mode="json")})
        write_json(result.model_dump(mode="json"), run_dir / RESULT)
        (run_dir / RESUME).unlink(missing_ok=True)
    distributed.barrier(ctx)
    return result

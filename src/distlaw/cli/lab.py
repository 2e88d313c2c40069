"""``distlaw train``, ``distlaw distill`` and ``distlaw cache-teacher``: one lab run, or one teacher cache."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional

import typer
from pydantic import BaseModel, ValidationError

from distlaw.cli.common import console, print_json, print_table, warn_size
from distlaw.compute import ModelShape, size_note, whole_heads
from distlaw.lab.architectures import Sizer
from distlaw.errors import DistlawError

if TYPE_CHECKING:
    from distlaw.lab.config import DataConfig, PruneInit
    from distlaw.lab.train import RunResult

JsonOption = Annotated[bool, typer.Option("--json", help="Print the RunResult as JSON instead of a table.")]
ParamsOption = Annotated[Optional[float], typer.Option("--params", "-n", help="Non-embedding parameters N (fixed-aspect-ratio shape; the output says what was built).")]
LayersOption = Annotated[Optional[int], typer.Option("--layers", min=1, help="Explicit shape: number of layers (with --d-model).")]
DModelOption = Annotated[Optional[int], typer.Option("--d-model", min=1, help="Explicit shape: model width (with --layers).")]
AspectOption = Annotated[int, typer.Option("--aspect-ratio", min=1, help="d_model / n_layers for --params (the paper uses 128).")]
HeadDimOption = Annotated[int, typer.Option("--head-dim", min=1, help="Attention head width (the paper uses 64).")]
TokensOption = Annotated[float, typer.Option("--tokens", "-d", help="Training tokens D (rounded up to whole batches).")]
CorpusOption = Annotated[str, typer.Option("--corpus", help="'shakespeare' (embedded), a .txt/.md/.jsonl/.parquet file, a directory, or a saved datasets directory.")]
TokenizerOption = Annotated[Optional[str], typer.Option("--tokenizer", help="'byte', 'bpe:VOCAB' (trained locally), or a tokenizer folder (tokenizer.json, or GPT-2's vocab.json + merges.txt; any checkpoint's own). Default: the teacher's own tokenizer (distill: the --teacher's folder, or the tokenizer its --teacher-cache was built with; cache-teacher: the --teacher's; train: the --like folder's), else 'byte'.", show_default=False)]
LikeOption = Annotated[Optional[str], typer.Option("--like", help="Build the student in the architecture of this checkpoint folder (its family and conventions: norms, activation, RoPE, attention, biases, tying), sized by --params or --layers/--d-model; not with --family. Its vocabulary is the data's tokenizer's.")]
FamilyOption = Annotated[Optional[str], typer.Option("--family", help="Build the student as this transformers family with its default conventions: llama, mistral, qwen2, qwen3, gemma2, gemma3_text, phi3, gpt_neox, gpt2 or olmo2 (default: the paper's Llama).")]
SeqLenOption = Annotated[int, typer.Option("--seq-len", help="Context length of training windows.")]
BatchOption = Annotated[int, typer.Option("--batch-size", min=1, help="Windows per optimiser step (global, over all processes).")]
LrOption = Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW, warmup then cosine).")]
SeedOption = Annotated[int, typer.Option("--seed", min=0, help="Seed of the initialisation and (without a teacher cache) the data order.")]
OutOption = Annotated[Path, typer.Option("--out", "-o", help="Run directory: new (its parent folders are created), or the same run to resume or reread; a checkpoint when done.")]
CacheDirOption = Annotated[Optional[Path], typer.Option("--cache-dir", help="Where tokenized corpora are kept (default: OUT/../.distlaw-cache).")]
EvalOption = Annotated[int, typer.Option("--eval-tokens", min=1, help="Held-out tokens for the validation loss.")]
CheckpointOption = Annotated[Optional[int], typer.Option("--checkpoint-every", min=1, help="Write a resume state every this many steps.")]
DeviceOption = Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:N or mps (default: cuda when available); one this machine lacks is refused.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
StoreOption = Annotated[Optional[Path], typer.Option("--store", "-s", help="Run store (SQLite) in which --teacher may name a finished run.")]
InitOption = Annotated[Optional[Path], typer.Option("--init", help="Start from a pruned model (a `distlaw prune` directory) instead of random weights; its shape replaces --params.")]

MIN_PARAMS, MAX_PARAMS = 1e2, 1e12


def _shape(params: float | None, layers: int | None, d_model: int | None, aspect_ratio: int, head_dim: int, n_ctx: int,
           family: str | None = None, like: str | None = None) -> tuple[ModelShape, dict | None]:
    """A shape from --params (fixed aspect ratio) or from --layers/--d-model, and the architecture record of
    --family/--like (None: the paper's Llama, sized without torch); sizes out of range are errors. Its
    vocabulary is the tokenizer's, set once the data is prepared (parameter counts do not depend on it)."""
    if (params is None) == (layers is None and d_model is None):
        raise DistlawError("give the model size as --params N or as --layers L --d-model D (not both)")
    if params is not None and not (math.isfinite(params) and MIN_PARAMS <= params <= MAX_PARAMS):
        raise DistlawError(f"--params {params:g} is out of range ({MIN_PARAMS:g} .. {MAX_PARAMS:g})")
    if params is None and (layers is None or d_model is None):
        raise DistlawError("an explicit shape needs both --layers and --d-model")
    sizer = Sizer.of(aspect_ratio, head_dim, family, like)
    size = dict(n_ctx=n_ctx, vocab_size=ModelShape.model_fields["vocab_size"].default)
    shape = sizer.from_params(params, **size) if params is not None else sizer.from_dims(layers, d_model, **size)  # type: ignore[arg-type]
    if not whole_heads(shape.d_model, head_dim):
        raise DistlawError(f"d_model {shape.d_model} is not a multiple of --head-dim {head_dim} (heads would not have that width)")
    built = sizer.params(shape)
    if params is not None and not 0.5 <= built / params <= 2:
        raise DistlawError(
            f"--params {params:g} is out of range for aspect ratio {aspect_ratio} and --head-dim {head_dim} (the nearest shape whose "
            f"d_model is whole heads has {built} parameters; lower --aspect-ratio, change --head-dim or give --layers/--d-model)"
        )
    return shape, sizer.architecture


def _check_store(store: Path | None) -> None:
    if store is not None:
        from distlaw.store import check_store

        check_store(store, create=False)


def _teacher_path(teacher: str, store: Path | None) -> Path:
    """``--teacher``: a checkpoint directory, or the name of a finished run in ``--store``."""
    from distlaw.lab.checks import check_checkpoint

    _check_store(store)
    path = Path(teacher)
    if path.is_dir():
        return check_checkpoint(path, "--teacher")
    if store is not None:
        from distlaw.store import RunStore

        with RunStore(store, create=False) as runs:
            record = runs.get(teacher)
            if record is not None:
                if record.status != "done":
                    raise DistlawError(f"--teacher {teacher}: run is {record.status}, not done")
                return runs.run_dir(teacher)
    raise DistlawError(f"--teacher {teacher}: no such checkpoint directory" + (f" or run in {store}" if store else ""))


def _option_error(exc: ValidationError) -> DistlawError:
    """A pydantic validation error as one line naming the option."""
    first = exc.errors()[0]
    return DistlawError(f"invalid option {'.'.join(map(str, first['loc']))}: {first['msg']}")


def _validated(model: type[BaseModel], **values: Any) -> Any:
    """A pydantic config built from options; a validation error is one line naming the option."""
    try:
        return model(**values)
    except ValidationError as exc:
        raise _option_error(exc) from None


def data_config(corpus: str, tokenizer: str, seq_len: int, cache_dir: Path | None, order_seed: int | None = None) -> DataConfig:
    """The corpus options of a command, checked: the corpus exists and the tokenizer can be made or read."""
    from distlaw.lab.checks import check_data
    from distlaw.lab.config import DataConfig

    cfg = _validated(DataConfig, corpus=corpus, tokenizer=tokenizer, seq_len=seq_len, order_seed=order_seed,
                     cache_dir=str(cache_dir) if cache_dir else None)
    check_data(cfg)
    return cfg


def _count(value: float, flag: str) -> int:
    if not (math.isfinite(value) and 1 <= value <= 1e15):
        raise DistlawError(f"{flag} {value:g} is out of range (1 .. 1e15)")
    return int(value)


def _initial_shape(init: Path | None, shape_args: dict, seq_len: int) -> tuple[PruneInit | None, ModelShape, dict | None]:
    """The pruning record, shape and architecture record of a run: from ``--init`` (a pruned model), else
    from the size and architecture options."""
    from distlaw.lab.checks import check_architecture

    check_architecture(shape_args["family"], shape_args["like"])
    if init is None:
        return None, *_shape(**shape_args, n_ctx=seq_len)
    from distlaw.lab.pruned import pruned_init

    if any(shape_args[k] is not None for k in ("params", "layers", "d_model", "family", "like")):
        raise DistlawError("--init gives the model's shape and architecture: drop --params/--layers/--d-model/--like/--family")
    prune, shape = pruned_init(init)
    return prune, shape.model_copy(update={"n_ctx": seq_len}), None


def _tokenizer(tokenizer: str | None, folder: str | Path | None) -> str:
    """``--tokenizer``, else the folder's own tokenizer (a teacher's, a --like checkpoint's) when it holds one, else 'byte'."""
    from distlaw.lab.tokenizer import has_tokenizer

    if tokenizer is not None:
        return tokenizer
    return str(folder) if folder is not None and Path(folder).is_dir() and has_tokenizer(Path(folder)) else "byte"


def _run(kind: Literal["supervised", "distilled"], out: Path, shape_args: dict, data_cfg: DataConfig, optim_args: dict,
         tokens: float, eval_tokens: int, checkpoint_every: int | None, device: str | None, quiet: bool,
         json_output: bool, teacher: str | None = None, teacher_cache: Path | None = None,
         distill_args: dict | None = None, shard_teacher: bool = False, init: Path | None = None) -> None:
    """Check every option (no torch yet), then prepare the data, train and print the result."""
    from distlaw.lab.checks import check_device_name, check_run_directory
    from distlaw.lab.config import DistillConfig, OptimConfig, RunSpec, default_cache

    check_device_name(device)
    check_run_directory(out)
    count = _count(tokens, "--tokens")
    optim, distill_cfg = _validated(OptimConfig, **optim_args), _validated(DistillConfig, **(distill_args or {}))
    prune, shape, architecture = _initial_shape(init, shape_args, data_cfg.seq_len)

    from distlaw.lab.data import prepare_data
    from distlaw.lab.distributed import default_device
    from distlaw.lab.train import train_run

    default_device(device)
    data = prepare_data(data_cfg, default_cache(out))
    if prune is None:
        shape = shape.model_copy(update={"vocab_size": data.vocab_size})
    spec = RunSpec(name=out.name, kind=kind, shape=shape, tokens=count, teacher=teacher, init=prune, data=data_cfg, optim=optim,
                   distill=distill_cfg, eval_tokens=eval_tokens, architecture=architecture)
    teacher_dir = Path(teacher) if teacher is not None and teacher_cache is None else None
    requested = shape_args["params"]
    result = train_run(spec, out, teacher_dir=teacher_dir, teacher_cache=teacher_cache, init_dir=init, progress=not quiet,
                       checkpoint_every=checkpoint_every, device=device, shard_teacher=shard_teacher, requested_params=requested)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only the first process reports
        _report(kind, out, result.model_copy(update={"requested_params": requested}), json_output)  # a stored result: this request


def _report(kind: str, out: Path, result: RunResult, json_output: bool) -> None:
    """The RunResult as JSON, or as a table followed by what a size target built; a warning on stderr
    when that missed by more than 10 % (after the run, so that a refusal stays one line)."""
    requested = result.requested_params
    warn_size(requested, result.non_embedding_params)
    if json_output:
        print_json(result.model_dump(mode="json"))
        return
    rows = [[name, value] for name, value in result.model_dump().items() if value is not None]
    print_table(f"{kind} run {out}", ["quantity", "value"], rows)
    if requested is not None:
        console.print(f"size: {size_note(requested, result.non_embedding_params)}", highlight=False, soft_wrap=True)


def train(
    out: OutOption,
    tokens: TokensOption,
    params: ParamsOption = None,
    layers: LayersOption = None,
    d_model: DModelOption = None,
    aspect_ratio: AspectOption = 16,
    head_dim: HeadDimOption = 8,
    like: LikeOption = None,
    family: FamilyOption = None,
    corpus: CorpusOption = "shakespeare",
    tokenizer: TokenizerOption = None,
    seq_len: SeqLenOption = 128,
    batch_size: BatchOption = 32,
    lr: LrOption = 3e-3,
    seed: SeedOption = 0,
    cache_dir: CacheDirOption = None,
    eval_tokens: EvalOption = 65536,
    checkpoint_every: CheckpointOption = None,
    device: DeviceOption = None,
    init: InitOption = None,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
) -> None:
    """Train a student on next-token prediction (supervised); the run directory becomes a checkpoint.

    Examples:

      distlaw train --params 3e4 --tokens 1e6 --out runs/s30k

      distlaw train --layers 4 --d-model 64 --tokens 4e6 --corpus my.jsonl --tokenizer bpe:4096 --out runs/t --json

      distlaw train --init pruned/t200k-to-50k --tokens 1e6 --out runs/pruned-ce    (a pruned model, CE only)

      distlaw train --params 2e4 --like ckpt/qwen2-tiny --tokens 1e6 --out runs/q20k    (Qwen2's architecture and tokenizer)

      distlaw train --params 2e4 --family gpt_neox --tokens 1e6 --out runs/neox20k      (Pythia's architecture, byte tokens)
    """
    _run(
        "supervised", out,
        dict(params=params, layers=layers, d_model=d_model, aspect_ratio=aspect_ratio, head_dim=head_dim, family=family, like=like),
        data_config(corpus, _tokenizer(tokenizer, like), seq_len, cache_dir),
        dict(lr=lr, batch_size=batch_size, seed=seed),
        tokens, eval_tokens, checkpoint_every, device, quiet, json_output, init=init,
    )


def distill(
    out: OutOption,
    tokens: TokensOption,
    teacher: Annotated[Optional[str], typer.Option("--teacher", help="Teacher: a run directory, any local decoder-only Hugging Face checkpoint (Llama, Mistral, Qwen, Gemma, Phi, GPT-NeoX, GPT-2, OLMo, ...), or a run name in --store. Its tokenizer must be the data's; embedding rows beyond it (padding) are left out of every softmax.")] = None,
    teacher_cache: Annotated[Optional[Path], typer.Option("--teacher-cache", help="A cache built by `distlaw cache-teacher` (no teacher FLOPs per student).")] = None,
    weight: Annotated[float, typer.Option("--weight", help="lambda: weight of the KL term (1 - lambda goes to CE).")] = 1.0,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="tau (default 1, or the cache's).")] = None,
    z_loss: Annotated[float, typer.Option("--z-loss", help="Z-loss weight.")] = 1e-4,
    divergence: Annotated[str, typer.Option("--divergence", help="forward: KL(teacher||student); reverse: KL(student||teacher).")] = "forward",
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Truncate the teacher to its top-k tokens (renormalised).")] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="Truncate the teacher to its top-p nucleus (renormalised).")] = None,
    fsdp_teacher: Annotated[bool, typer.Option("--fsdp-teacher", help="Shard the teacher with FSDP across processes (torchrun).")] = False,
    store: StoreOption = None,
    params: ParamsOption = None,
    layers: LayersOption = None,
    d_model: DModelOption = None,
    aspect_ratio: AspectOption = 16,
    head_dim: HeadDimOption = 8,
    like: LikeOption = None,
    family: FamilyOption = None,
    corpus: CorpusOption = "shakespeare",
    tokenizer: TokenizerOption = None,
    seq_len: SeqLenOption = 128,
    batch_size: BatchOption = 32,
    lr: LrOption = 3e-3,
    seed: SeedOption = 0,
    cache_dir: CacheDirOption = None,
    eval_tokens: EvalOption = 65536,
    checkpoint_every: CheckpointOption = None,
    device: DeviceOption = None,
    init: InitOption = None,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
) -> None:
    """Distil a student from a teacher (online) or from a teacher cache: L = (1-lambda) CE + lambda tau^2 KL + Z-loss.

    Examples:

      distlaw distill --params 5e3 --tokens 1e6 --teacher runs/t200k --out runs/s5k

      distlaw distill --params 5e3 --tokens 1e6 --teacher-cache caches/t200k-k64 --seed 1 --out runs/s5k-1 --json

      distlaw distill --init pruned/t200k-to-50k --teacher runs/t200k --tokens 1e6 --out runs/s50k-pruned    (Zhang et al.)

      distlaw distill --params 2e4 --teacher ckpt/qwen2 --like ckpt/qwen2 --tokens 1e6 --out runs/q20k-kd    (a Qwen2 student of a Qwen2 teacher, on its tokenizer)
    """
    if (teacher is None) == (teacher_cache is None):
        raise DistlawError("give exactly one of --teacher PATH and --teacher-cache DIR")
    order_seed = cache_k = None
    teacher_name = str(_teacher_path(teacher, store)) if teacher is not None else None
    data_tokenizer = _tokenizer(tokenizer, teacher_name)
    if teacher_cache is not None:
        from distlaw.lab.checks import cache_manifest

        manifest = cache_manifest(teacher_cache)  # its files are verified when the run opens the cache
        order_seed, teacher_name, cache_k = manifest["order_seed"], manifest["teacher"], manifest["k"]
        temperature = manifest["temperature"] if temperature is None else temperature
        data_tokenizer = manifest.get("tokenizer_name", "byte") if tokenizer is None else tokenizer  # the cache's tokens
    _run(
        "distilled", out,
        dict(params=params, layers=layers, d_model=d_model, aspect_ratio=aspect_ratio, head_dim=head_dim, family=family, like=like),
        data_config(corpus, data_tokenizer, seq_len, cache_dir, order_seed),
        dict(lr=lr, batch_size=batch_size, seed=seed),
        tokens, eval_tokens, checkpoint_every, device, quiet, json_output,
        teacher=teacher_name, teacher_cache=teacher_cache,
        distill_args=dict(weight=weight, temperature=1.0 if temperature is None else temperature, z_loss=z_loss,
                          divergence=divergence, top_k=top_k, top_p=top_p, cache_k=cache_k),
        shard_teacher=fsdp_teacher, init=init,
    )


def cache_teacher(
    teacher: Annotated[str, typer.Option("--teacher", help="Teacher: a run directory, any local Hugging Face checkpoint, or a run name in --store.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New directory for the cache (its parent folders are created).")],
    tokens: TokensOption,
    k: Annotated[int, typer.Option("--k", help="Top-k log-probabilities stored per token (plus the rest mass).")] = 128,
    store: StoreOption = None,
    temperature: Annotated[float, typer.Option("--temperature", help="tau at which the teacher's distribution is cached.")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Data-order seed the students will read in.")] = 0,
    corpus: CorpusOption = "shakespeare",
    tokenizer: TokenizerOption = None,
    seq_len: SeqLenOption = 128,
    batch_size: BatchOption = 32,
    cache_dir: CacheDirOption = None,
    device: DeviceOption = None,
    quiet: QuietOption = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the manifest summary as JSON.")] = False,
) -> None:
    """Run a teacher once over the distillation tokens and store its top-k log-probabilities for many students.

    Example:

      distlaw cache-teacher --teacher runs/t200k --tokens 2e6 --k 64 --out caches/t200k-k64
    """
    from distlaw.lab.checks import check_cache_options, check_device_name, check_new_directory
    from distlaw.lab.config import default_cache

    check_device_name(device)
    check_new_directory(out, "teacher cache")
    teacher_dir = _teacher_path(teacher, store)
    data_cfg = data_config(corpus, _tokenizer(tokenizer, teacher_dir), seq_len, cache_dir)
    check_cache_options(k, temperature, batch_size)
    count = _count(tokens, "--tokens")

    from distlaw.lab.teacher_cache import build_cache

    manifest = build_cache(teacher_dir, out, data_cfg, default_cache(out), tokens=count, k=k,
                           temperature=temperature, order_seed=seed, batch_size=batch_size, device=device, progress=not quiet)
    summary = {key: value for key, value in manifest.items() if key not in ("shards", "val")}
    summary["shards"] = len(manifest["shards"])
    if json_output:
        print_json(summary)
        return
    console.print(f"wrote teacher cache {out}")
    print_table("teacher cache", ["quantity", "value"], [[key, value] for key, value in summary.items()])


def register(app: typer.Typer) -> None:
    """Add ``train``, ``distill`` and ``cache-teacher`` to ``app``."""
    app.command()(train)
    app.command()(distill)
    app.command("cache-teacher")(cache_teacher)

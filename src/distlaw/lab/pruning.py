"""Students made by structured pruning of a teacher (Zhang et al., "Towards the Law of Capacity Gap in
Distilling Language Models", arXiv 2311.07052, Sec. 3): the pruned model is then distilled from its teacher.

Pruning keeps whole attention heads, FFN neurons and a hidden dimension shared by all layers. Each unit has
a multiplicative mask (all ones, so the model is unchanged) and its importance is the mean |dL/dmask| of the
next-token cross-entropy over calibration windows. Where the masks act:

- head h of layer l scales that head's output before ``o_proj`` (removing it drops its q/k/v rows and
  its ``o_proj`` columns);
- neuron n of layer l scales ``act(gate_n) * up_n`` before ``down_proj`` (drops gate/up rows, a down column);
- hidden unit j scales every write to the residual stream: the token embedding and the output of every
  attention and FFN block. A masked unit is then exactly zero in the residual stream, so every read of it
  (q/k/v/gate/up columns, norm gains, the LM head) sees zero. The only read that does not vanish is the
  RMSNorm mean of squares over d_model, which the pruned model takes over d' < d units: multiplying the norm
  gains by sqrt(d/d') and the norm's epsilon by d/d' makes the pruned model compute exactly what the masked
  one did.

A target sparsity p of non-embedding parameters is split evenly: hidden-dim and head/neuron pruning
multiply, so every component keeps a fraction sqrt(1 - p) (prunes 1 - sqrt(1 - p)). Shapes are integers;
the kept fraction is chosen so that the pruned shape's parameter count is the closest to (1 - p) N.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM

from distlaw.compute import ModelShape
from distlaw.errors import DistlawError
from distlaw.io import atomic_directory
from distlaw.lab import distributed
from distlaw.lab.checks import check_checkpoint, check_new_directory
from distlaw.lab.config import DataConfig
from distlaw.lab.data import prepare_data, window_ids
from distlaw.lab.export import save_checkpoint
from distlaw.lab.pruned import FORMAT, RECORD, pruned_shape
from distlaw.lab.families import count_params
from distlaw.lab.model import check_vocabulary, llama_config, load_model, shape_of
from distlaw.lab.runtime import autocast, cpu_threads, progress_bar

COPIED_CONFIG = ("hidden_act", "rms_norm_eps", "rope_parameters", "bos_token_id", "eos_token_id", "pad_token_id")


@dataclass(frozen=True)
class Importance:
    """Mean |dL/dmask| per unit: ``heads`` (layers, n_heads), ``neurons`` (layers, d_ff), ``hidden`` (d_model)."""

    heads: torch.Tensor
    neurons: torch.Tensor
    hidden: torch.Tensor
    windows: int


def _mask_shapes(shape: ModelShape) -> tuple[tuple[int, ...], ...]:
    """Shapes of the head, neuron and hidden masks (and of their importance scores)."""
    return (shape.n_layers, shape.n_heads), (shape.n_layers, shape.d_ff), (shape.d_model,)


def check_prunable(model: torch.nn.Module) -> ModelShape:
    """The teacher's shape; only Llama decoders without biases or grouped KV heads can be pruned."""
    if not isinstance(model, LlamaForCausalLM):
        raise DistlawError(f"pruning needs a Llama decoder, got {type(model).__name__}")
    cfg = model.config
    if cfg.num_key_value_heads != cfg.num_attention_heads:
        raise DistlawError(f"teacher uses grouped KV heads ({cfg.num_key_value_heads} for {cfg.num_attention_heads}): GQA pruning is not supported")
    if cfg.attention_bias or cfg.mlp_bias:
        raise DistlawError("teacher has bias terms: pruning supports bias-free Llama decoders only")
    return shape_of(model)


def _scale_heads(mask: torch.Tensor, head_dim: int) -> Callable:
    """A pre-hook of ``o_proj`` scaling each head's slice of its input by ``mask``."""
    return lambda m, args: ((args[0].unflatten(-1, (-1, head_dim)) * mask[:, None]).flatten(-2),)


@contextlib.contextmanager
def masked(model: LlamaForCausalLM, heads: torch.Tensor, neurons: torch.Tensor, hidden: torch.Tensor) -> Iterator[None]:
    """Apply multiplicative masks inside the block via hooks (see the module docstring); the weights are untouched."""
    head_dim = shape_of(model).head_dim
    hooks = [model.model.embed_tokens.register_forward_hook(lambda m, args, out: out * hidden)]
    for i, layer in enumerate(model.model.layers):
        hooks += [
            layer.self_attn.o_proj.register_forward_pre_hook(_scale_heads(heads[i], head_dim)),
            layer.mlp.down_proj.register_forward_pre_hook(lambda m, args, i=i: (args[0] * neurons[i],)),
            layer.self_attn.register_forward_hook(lambda m, args, out: (out[0] * hidden, *out[1:])),
            layer.mlp.register_forward_hook(lambda m, args, out: out * hidden),
        ]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


@contextlib.contextmanager
def _frozen(model: torch.nn.Module) -> Iterator[None]:
    """No gradients on the weights inside the block; their ``requires_grad`` flags are restored after."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)


def next_token_loss(model: torch.nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over (n, seq_len + 1) windows."""
    device = next(model.parameters()).device
    windows = windows.to(device)
    with autocast(device):
        logits = model(input_ids=windows[:, :-1]).logits
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 logits up to fp32, never fp64 down
    return F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten())


def importance_scores(model: LlamaForCausalLM, windows: torch.Tensor, batch_size: int, progress: bool = False) -> Importance:
    """Mean |dL/dmask| over batches of ``batch_size`` calibration windows (n, seq_len + 1), weighted by batch
    size (Zhang et al. 2023, after Michel et al. 2019); the model's weights and gradients are left as they were."""
    shape = check_prunable(model)
    if len(windows) == 0 or batch_size < 1:
        raise DistlawError("importance needs at least one calibration window and a batch size of at least 1")
    p = next(model.parameters())
    sizes = _mask_shapes(shape)
    masks = [torch.ones(s, dtype=p.dtype, device=p.device, requires_grad=True) for s in sizes]
    totals = [torch.zeros(s, dtype=torch.float64, device=p.device) for s in sizes]
    was_training = model.training
    model.eval()
    with _frozen(model), masked(model, *masks), torch.enable_grad(), progress_bar(progress) as bar:
        task = bar.add_task("importance", total=len(windows), loss="-")
        for lo in range(0, len(windows), batch_size):
            batch = windows[lo : lo + batch_size]
            loss = next_token_loss(model, batch)
            grads = torch.autograd.grad(loss, masks)
            for total, grad in zip(totals, grads):
                total += grad.abs().double() * len(batch)
            bar.update(task, completed=lo + len(batch), loss=f"{loss.item():.4f}")
    model.train(was_training)
    heads, neurons, hidden = (t.cpu() / len(windows) for t in totals)
    return Importance(heads=heads, neurons=neurons, hidden=hidden, windows=len(windows))


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` highest scores along the last axis, in their original order."""
    return scores.topk(k, dim=-1).indices.sort(dim=-1).values


def prune_model(model: LlamaForCausalLM, importance: Importance, *, sparsity: float | None = None,
                target_params: int | None = None) -> LlamaForCausalLM:
    """A fresh student keeping, in every layer, its most important heads and neurons and, everywhere, the most
    important hidden units (same counts in every layer: Llama configs are uniform). Weights are sliced from the
    teacher; norm gains and epsilon are rescaled (module docstring) so the student computes the masked teacher."""
    teacher = check_prunable(model)
    if tuple(tuple(t.shape) for t in (importance.heads, importance.neurons, importance.hidden)) != _mask_shapes(teacher):
        raise DistlawError("importance scores were computed for a model of another shape")
    shape = pruned_shape(teacher, sparsity=sparsity, target_params=target_params)
    heads, neurons, hidden = _top(importance.heads, shape.n_heads), _top(importance.neurons, shape.d_ff), _top(importance.hidden, shape.d_model)
    config = llama_config(shape)
    for key in COPIED_CONFIG:
        setattr(config, key, getattr(model.config, key))
    config.rms_norm_eps *= teacher.d_model / shape.d_model  # with gains * sqrt(d/d'): the masked teacher's norm
    p = next(model.parameters())
    student = LlamaForCausalLM(config).to(device=p.device, dtype=p.dtype).eval()
    weights = _sliced_weights(model, heads, neurons, hidden, teacher.head_dim)
    with torch.no_grad():
        for name, param in student.named_parameters():
            param.copy_(weights[name])
    return student


def _sliced_weights(model: LlamaForCausalLM, heads: torch.Tensor, neurons: torch.Tensor, hidden: torch.Tensor,
                    head_dim: int) -> dict[str, torch.Tensor]:
    """The teacher's weights restricted to the kept units (per-layer ``heads``/``neurons``, shared ``hidden``)."""
    sd = model.state_dict()
    hidden = hidden.to(model.device)
    gain = math.sqrt(model.config.hidden_size / len(hidden))
    out = {
        "model.embed_tokens.weight": sd["model.embed_tokens.weight"][:, hidden],
        "lm_head.weight": sd["lm_head.weight"][:, hidden],
        "model.norm.weight": sd["model.norm.weight"][hidden] * gain,
    }
    for i in range(model.config.num_hidden_layers):
        pre = f"model.layers.{i}."
        rows = (heads[i, :, None] * head_dim + torch.arange(head_dim, device=heads.device)).flatten().to(model.device)
        cols = neurons[i].to(model.device)
        for name in ("q_proj", "k_proj", "v_proj"):
            out[f"{pre}self_attn.{name}.weight"] = sd[f"{pre}self_attn.{name}.weight"][rows][:, hidden]
        out[f"{pre}self_attn.o_proj.weight"] = sd[f"{pre}self_attn.o_proj.weight"][hidden][:, rows]
        for name in ("gate_proj", "up_proj"):
            out[f"{pre}mlp.{name}.weight"] = sd[f"{pre}mlp.{name}.weight"][cols][:, hidden]
        out[f"{pre}mlp.down_proj.weight"] = sd[f"{pre}mlp.down_proj.weight"][hidden][:, cols]
        for name in ("input_layernorm", "post_attention_layernorm"):
            out[f"{pre}{name}.weight"] = sd[f"{pre}{name}.weight"][hidden] * gain
    return out


def prune_checkpoint(
    teacher_dir: Path,
    out: Path,
    data_cfg: DataConfig,
    default_cache: Path,
    *,
    sparsity: float | None = None,
    target_params: int | None = None,
    calibration_tokens: int = 65536,
    batch_size: int = 32,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> dict:
    """Prune a teacher checkpoint into a new checkpoint directory ``out`` (model, tokenizer and ``pruning.json``).

    Importance is measured on the first ``calibration_tokens`` tokens (whole windows) of the training data in
    the order of ``seed``. Nothing is written if anything fails. Returns the pruning record."""
    out, teacher_dir = Path(out), Path(teacher_dir)
    check_new_directory(out, "pruned model")
    check_checkpoint(teacher_dir, "teacher")
    if calibration_tokens < 1 or batch_size < 1:
        raise DistlawError("calibration tokens and batch size must be at least 1")
    dev = distributed.default_device(device)
    with cpu_threads(dev):
        teacher = load_model(teacher_dir, dev)
        teacher_shape = check_prunable(teacher)
        pruned_shape(teacher_shape, sparsity=sparsity, target_params=target_params)  # bad requests fail before calibration
        data = prepare_data(data_cfg, default_cache)
        check_vocabulary(teacher_dir, teacher.config.vocab_size, data.tokenizer)
        seq_len = data_cfg.seq_len
        n = -(-calibration_tokens // seq_len)
        windows = data.train_windows(window_ids(0, n, data.n_windows(seq_len), seed), seq_len)
        importance = importance_scores(teacher, windows, batch_size, progress)
        student = prune_model(teacher, importance, sparsity=sparsity, target_params=target_params)
        shape, teacher_params, params = shape_of(student), count_params(teacher)[0], count_params(student)[0]
        record = {
            "format": FORMAT,
            "teacher": str(teacher_dir.resolve()),
            "teacher_params": teacher_params,
            "params": params,
            "sparsity": sparsity,
            "target_params": target_params,
            "achieved_sparsity": 1 - params / teacher_params,
            "kept_heads": shape.n_heads,
            "kept_neurons": shape.d_ff,
            "kept_hidden": shape.d_model,
            "head_dim": shape.head_dim,
            "teacher_shape": teacher_shape.model_dump(),
            "shape": shape.model_dump(),
            "corpus": data.meta["corpus"],
            "data_key": data.key,
            "seq_len": seq_len,
            "seed": seed,
            "calibration_tokens": n * seq_len,
        }
        with atomic_directory(out, done_marker=RECORD) as tmp:  # losing a race to an identical build is not an error
            save_checkpoint(student, data.tokenizer, tmp, {"pruning": record})
            (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        return record

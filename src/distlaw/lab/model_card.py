"""The model card (``README.md``) of every model folder distlaw writes (issue 11, item 5).

Hugging Face model-card format: YAML front matter (``library_name: transformers``, ``tags``,
``base_model`` = the teacher where there is one), then a sentence and a table saying how the model was
made, then how to reproduce it. Every number on the card is read from what the caller recorded (a run's
spec and result, a pruning record) or counted on the weights being saved; nothing is estimated.

``card`` is ``{"spec": RunSpec, "result": RunResult}`` (as JSON) for a trained or distilled run, or
``{"pruning": record, "data": DataConfig}`` for a pruned model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distlaw import __version__

PAPERS = {
    "distilled": "Busbridge et al. 2025, arXiv 2502.08606",
    "pruned": "Zhang et al. 2023, arXiv 2311.07052",
}
METHODS = {  # pruning importance, as ``distlaw prune --method`` names it
    "mask-gradient": "mask-gradient: mean |dLoss/dmask| per head, neuron and hidden unit (Zhang et al. 2023)",
    "activation": "activation: per unit, the L2 norm of its activations over each calibration window, averaged over windows (Minitron, Muralidharan et al. 2024)",
}
DEPTH = {  # layer importance, as ``distlaw prune --depth-importance`` names it
    "loss": "the loss increase when the layer is skipped",
    "cosine": "the cosine similarity of the layer's input and output",
}


@dataclass
class Provenance:
    """What a card says about one model: kind, teacher, the rows of its table and how to reproduce it."""

    title: str
    kind: str
    summary: str
    rows: list[tuple[str, str]]
    reproduce: str
    teacher: str | None = None
    tags: list[str] = field(default_factory=list)


def model_card(card: dict[str, Any], non_embedding: int, total: int, architecture: str) -> str:
    """The text of ``README.md`` for a model of class ``architecture`` with these parameter counts."""
    from huggingface_hub import ModelCardData

    made = pruned_provenance(card["pruning"], card.get("data") or {}) if "pruning" in card else run_provenance(card["spec"], card["result"])
    meta = ModelCardData(library_name="transformers", pipeline_tag="text-generation", tags=["distlaw", *made.tags],
                         base_model=made.teacher)
    rows = [("kind", made.kind), ("architecture", f"`{architecture}`"), *made.rows,
            ("parameters", f"{non_embedding:,} non-embedding, {total:,} total"), ("distlaw", __version__)]
    table = "\n".join(["| | |", "|---|---|", *(f"| {label} | {value.replace('|', chr(92) + '|')} |" for label, value in rows)])
    notes = ("Losses are next-token cross-entropies in nats per token on held-out tokens of the corpus. " if made.kind != "pruned" else "")
    notes += "Non-embedding parameters exclude the embedding tables and the output head."
    return (f"---\n{meta.to_yaml()}\n---\n\n# {made.title}\n\n{made.summary}\n\n{table}\n\n{notes}\n\n"
            f"## Reproduce\n\n{made.reproduce}\n")


def run_provenance(spec: dict[str, Any], result: dict[str, Any]) -> Provenance:
    """A trained (``supervised``) or ``distilled`` run, from its RunSpec and RunResult."""
    kind, teacher, data, optim, distill = spec["kind"], spec.get("teacher"), spec["data"], spec["optim"], spec["distill"]
    init = spec.get("init")
    seed = optim["seed"]
    order = seed if data.get("order_seed") is None else data["order_seed"]
    rows = []
    if teacher is not None:
        total = f", {result['teacher_total_params']:,} total" if result.get("teacher_total_params") is not None else ""
        rows.append(("teacher", f"`{teacher}` ({result['teacher_params']:,} non-embedding parameters{total})"))
        rows.append(("objective", _distill_objective(distill)))
    else:
        rows.append(("objective", "next-token cross-entropy"))
    if init is not None:
        rows.append(("initialisation", _init_text(init)))
    else:
        rows.append(("initialisation", f"random, seed {seed}"))
    rows += [
        ("shape", _shape_text(spec["shape"])),
        ("training tokens", f"{result['tokens']:,} ({result['steps']:,} steps of {optim['batch_size']} windows of {data['seq_len']} tokens)"),
        ("held-out loss", f"{result['loss']:.4f} nats/token on {result['eval_tokens']:,} tokens"),
    ]
    if result.get("teacher_loss") is not None:
        rows.append(("teacher loss", f"{result['teacher_loss']:.4f} nats/token on the same held-out tokens"))
    rows += [
        ("corpus", f"`{data['corpus']}`"),
        ("tokenizer", tokenizer_text(data["tokenizer"])),
        ("seed", f"{seed} (data order {order})"),
        ("optimiser", f"AdamW, peak lr {optim['lr']:g}, warmup fraction {optim['warmup_fraction']:g}, cosine decay to "
                      f"{optim['final_lr_fraction']:g} of the peak, weight decay {optim['weight_decay']:g}, gradient clip {optim['grad_clip']:g}"),
    ]
    if kind == "distilled":
        summary = (f"A student distilled from `{teacher}` with distlaw "
                   f"(`distlaw distill`; {PAPERS['distilled']}).")
    else:
        summary = "A model trained on next-token prediction with distlaw (`distlaw train`)."
    tags = (["distillation"] if kind == "distilled" else []) + (["pruning"] if init is not None else [])
    return Provenance(spec["name"], kind, summary, rows, _run_reproduce(spec), teacher, tags)


def pruned_provenance(record: dict[str, Any], data: dict[str, Any]) -> Provenance:
    """A model pruned from a teacher, from its pruning record (``pruning.json``) and data config."""
    teacher, shape, before = record["teacher"], record["shape"], record["teacher_shape"]
    rows = [("teacher", f"`{teacher}` ({record['teacher_params']:,} non-embedding parameters)")]
    if record.get("sparsity") is not None or record.get("target_params") is not None:
        method = record.get("method") or "mask-gradient"
        asked = (f"{record['sparsity']:g} requested" if record.get("sparsity") is not None
                 else f"target {record['target_params']:,} non-embedding parameters")
        rows.append(("width importance", METHODS.get(method, f"`{method}`")))
        rows.append(("sparsity", f"{record['achieved_sparsity']:.4f} of the non-embedding parameters removed ({asked})"))
    else:
        rows.append(("sparsity", f"{record['achieved_sparsity']:.4f} of the non-embedding parameters removed (whole layers only)"))
    kv_before = before.get("n_kv_heads") or before["n_heads"]
    rows += [
        ("kept heads", f"{record['kept_heads']} of {before['n_heads']} per layer"
                       + (f", {record['kept_kv_heads']} of {kv_before} key/value heads" if record.get("kept_kv_heads") is not None else "")),
        ("kept FFN neurons", f"{record['kept_neurons']} of {before['d_ff']} per layer"),
        ("kept hidden units", f"{record['kept_hidden']} of {before['d_model']}"),
        ("kept layers", _kept_layers(record, shape, before)),
        ("shape", _shape_text(shape)),
        ("calibration", f"{record['calibration_tokens']:,} training tokens in windows of {record['seq_len']}, data-order seed {record['seed']}"),
        ("corpus", f"`{record['corpus']}`"),
    ]
    if "tokenizer" in data:
        rows.append(("tokenizer", tokenizer_text(data["tokenizer"])))
    summary = (f"A model made from `{teacher}` by structured pruning with distlaw "
               f"(`distlaw prune`; {PAPERS['pruned']}), not trained since: pruning alone loses quality, so distil it from "
               f"its teacher next (`distlaw distill --init THIS_FOLDER --teacher {teacher}`).")
    reproduce = ("How it was pruned, also in `pruning.json` beside this card:\n\n"
                 f"```json\n{json.dumps(record, indent=2)}\n```")
    return Provenance(Path(teacher).name + " (pruned)", "pruned", summary, rows, reproduce, teacher, ["pruning"])


def _kept_layers(record: dict[str, Any], shape: dict[str, Any], before: dict[str, Any]) -> str:
    """``n of N``, with the teacher's layers kept and how the dropped ones were chosen when layers were dropped."""
    text = f"{shape['n_layers']} of {before['n_layers']}"
    kept = record.get("kept_layers")
    if isinstance(kept, list) and len(kept) != before["n_layers"]:
        text += f": teacher layers {', '.join(map(str, kept))}"
        if record.get("keep_layers") is None and record.get("depth_importance"):
            text += f" (the others dropped, ranked by {DEPTH.get(record['depth_importance'], record['depth_importance'])})"
    return text


def tokenizer_text(name: str) -> str:
    """How ``DataConfig.tokenizer`` made the tokenizer saved beside the model."""
    if name == "byte":
        return "`byte`: one token per byte of the text"
    if name.startswith("bpe:"):
        return f"byte-level BPE trained on the corpus (`{name}`)"
    return f"`{name}`, copied with its special tokens and chat template"


def _init_text(init: dict[str, Any]) -> str:
    """The pruning a run started from (``RunSpec.init``)."""
    how = [f"{init.get('method') or 'mask-gradient'} importance", f"{init['calibration_tokens']:,} calibration tokens",
           f"data-order seed {init['calibration_seed']}"]
    if init.get("keep_layers"):
        how.append(f"teacher layers {init['keep_layers']} kept")
    elif init.get("depth"):
        how.append(f"{init['depth']} layers dropped, ranked by {DEPTH.get(init.get('depth_importance') or 'loss', init.get('depth_importance'))}")
    return f"a pruning of `{init['source']}` to {init['target_params']:,} non-embedding parameters ({', '.join(how)})"


def _shape_text(shape: dict[str, Any]) -> str:
    kv = f" ({shape['n_kv_heads']} key/value heads)" if shape.get("n_kv_heads") else ""
    return f"{shape['n_layers']} layers, d_model {shape['d_model']}, {shape['n_heads']} heads{kv}, FFN {shape['d_ff']}"


def _distill_objective(distill: dict[str, Any]) -> str:
    """Busbridge Eqs. 6-7 with the run's lambda, tau, divergence, truncation and teacher source."""
    text = (f"(1 - λ) CE + λ τ² KL, {distill['divergence']} KL, λ = {distill['weight']:g}, τ = {distill['temperature']:g}, "
            f"z-loss {distill['z_loss']:g}")
    if distill.get("top_k") is not None:
        text += f", teacher truncated to its top-{distill['top_k']} tokens"
    if distill.get("top_p") is not None:
        text += f", teacher truncated to its top-p {distill['top_p']:g} nucleus"
    if distill.get("cache_k") is not None:
        text += f"; teacher read from a cache of its top-{distill['cache_k']} log-probabilities plus the rest mass"
    return text


def _run_reproduce(spec: dict[str, Any]) -> str:
    """The spec itself, and the call that reruns it (what the spec cannot name is a placeholder, explained)."""
    extra = []  # (argument, what it stands for)
    if spec.get("teacher") is not None and spec["distill"].get("cache_k") is None:
        extra.append((f"teacher_dir=Path({spec['teacher']!r})", "the teacher's checkpoint folder (spec.teacher names it)"))
    if spec["distill"].get("cache_k") is not None:
        extra.append(('teacher_cache=Path("TEACHER_CACHE")', "`distlaw cache-teacher` of the teacher, same k and data-order seed"))
    if spec.get("init") is not None:
        extra.append(('init_dir=Path("PRUNED_MODEL")', "the `distlaw prune` folder spec.init describes"))
    lines = "".join(f"\n    {arg},  # {note}" for arg, note in extra)
    call = f'train_run(spec, Path("rerun"),{lines}\n)' if extra else 'train_run(spec, Path("rerun"))'
    return ("The run's complete specification, also in `spec.json` beside this card:\n\n"
            f"```json\n{json.dumps(spec, indent=2)}\n```\n\n"
            "Rerun it with distlaw (same data order and initialisation; THIS_FOLDER is the folder of this card):\n\n"
            "```python\nfrom pathlib import Path\n\nfrom distlaw.lab.config import RunSpec\nfrom distlaw.lab.train import train_run\n\n"
            f"spec = RunSpec.model_validate_json(Path(\"THIS_FOLDER/spec.json\").read_text())\n{call}\n```")

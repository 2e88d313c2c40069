"""A designed pilot as a sweep config the lab runs as is (``distlaw sweep run pilot.toml``): one ``runs``
protocol listing every supervised and distilled run, the lab's settings, and a header saying what the
pilot is for and what it is expected to give."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from distlaw.design.pilot import Pilot
from distlaw.io import atomic_path


def _pairs(rows: Sequence[Sequence[float]]) -> str:
    return "[\n" + "".join("  [" + ", ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row) + "],\n" for row in rows) + "]"


def sweep_config(pilot: Pilot, name: str, *, header: Sequence[str], corpus: str = "shakespeare",
                 tokenizer: str = "byte", seq_len: int = 128, aspect_ratio: int = 8, head_dim: int = 8, max_params: float = 1e9) -> str:
    """The TOML text of a sweep running ``pilot`` (run sizes are parameter targets of the ``[model]`` family)."""
    supervised = [(float(n), float(d)) for n, d in zip(pilot.sup_params, pilot.sup_tokens)]
    distilled = [(float(n), float(d), int(t)) for n, d, t in zip(pilot.dist_params, pilot.dist_tokens, pilot.dist_teacher)]
    lines = [*(f"# {line}" for line in header), "", f'name = "{name}"', "", "[data]", f'corpus = "{corpus}"', f'tokenizer = "{tokenizer}"',
             f"seq_len = {seq_len}", "", "[model]", f"aspect_ratio = {aspect_ratio}", f"head_dim = {head_dim}", f"max_params = {max_params:.6g}",
             "", "[[protocol]]", 'type = "runs"', f"supervised = {_pairs(supervised)}"]
    if distilled:
        lines.append(f"distilled = {_pairs(distilled)}")
    return "\n".join(lines) + "\n"


def write_sweep_config(text: str, path: Path) -> None:
    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_text(text)

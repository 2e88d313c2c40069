"""A designed pilot as a sweep config the lab runs as is (``distlaw sweep run pilot.toml``): one ``runs``
protocol listing every supervised and distilled run, the lab's settings, and a header saying what the
pilot is for and what it is expected to give."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from distlaw.design.pilot import Pilot
from distlaw.io import atomic_path


def _number(v: float | int) -> str:
    """A whole number exactly (a finished run's token count must match to the token), else 6 digits."""
    return str(int(v)) if isinstance(v, int) or float(v).is_integer() else f"{v:.6g}"


def _pairs(rows: Sequence[Sequence[float]]) -> str:
    return "[\n" + "".join("  [" + ", ".join(_number(v) for v in row) + "],\n" for row in rows) + "]"


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)  # ints, and floats exactly


def _table(name: str, values: Mapping[str, object]) -> list[str]:
    """A TOML table; None values (a field's default) are left out."""
    return ["", f"[{name}]", *(f"{k} = {_value(v)}" for k, v in values.items() if v is not None)]


def sweep_config(pilot: Pilot, name: str, *, header: Sequence[str], corpus: str = "shakespeare",
                 tokenizer: str = "byte", seq_len: int = 128, aspect_ratio: int = 8, head_dim: int = 8, max_params: float = 1e9,
                 optim: Mapping[str, object] | None = None, settings: Mapping[str, Mapping[str, object]] | None = None) -> str:
    """The TOML text of a sweep running ``pilot`` (run sizes are parameter targets of the ``[model]`` family),
    with an ``[optim]`` table of ``optim``'s set keys (batch_size, lr) when it has any. ``settings``: whole
    tables (``data``, ``optim``, ``distill``, ``model``, and top-level keys under ``""``) written as they are, instead of the data and model keywords (``design --next`` copies a store's sweep)."""
    supervised = [(float(n), float(d)) for n, d in zip(pilot.sup_params, pilot.sup_tokens)]
    distilled = [(float(n), float(d), int(t)) for n, d, t in zip(pilot.dist_params, pilot.dist_tokens, pilot.dist_teacher)]
    tables = settings or {"data": {"corpus": corpus, "tokenizer": tokenizer, "seq_len": seq_len},
                          **({"optim": dict(optim)} if optim and any(v is not None for v in optim.values()) else {}),
                          "model": {"aspect_ratio": aspect_ratio, "head_dim": head_dim, "max_params": float(f"{max_params:.6g}")}}
    top = [f"{k} = {_value(v)}" for k, v in tables.get("", {}).items() if v is not None]
    lines = [*(f"# {line}" for line in header), "", f'name = "{name}"', *top]
    for table, values in tables.items():
        if table:
            lines += _table(table, values)
    lines += ["", "[[protocol]]", 'type = "runs"', f"supervised = {_pairs(supervised)}"]
    if distilled:
        lines.append(f"distilled = {_pairs(distilled)}")
    return "\n".join(lines) + "\n"


def write_sweep_config(text: str, path: Path) -> None:
    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_text(text)

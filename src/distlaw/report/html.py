"""A self-contained HTML report (figures embedded as PNG) written atomically."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from distlaw.figures import format_number
from distlaw.io import atomic_path

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 64rem; margin: 2rem auto; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85rem; } td, th { padding: 0.2rem 0.6rem; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; } .scroll { overflow-x: auto; } img { max-width: 100%; } .note { color: #555; font-size: 0.9rem; }
"""


def format_cell(value: Any) -> str:
    """A table cell as a reader wants it: blank for a missing value, yes/no for booleans, short numbers,
    a list as its items."""
    if isinstance(value, (list, tuple)):
        return ", ".join(format_cell(v) for v in value)
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return format_number(value)
    return str(value)


def figure_to_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@dataclass
class Report:
    """Sections of text, tables and figures, rendered to one HTML file."""

    title: str
    parts: list[str] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str, note: bool = False) -> None:
        cls = ' class="note"' if note else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def table(self, df: pd.DataFrame) -> None:
        """``df`` as an HTML table, cells formatted by :func:`format_cell` (no NaN, None or True/False)."""
        shown = df.map(format_cell).rename(columns=lambda c: str(c).replace("_", " "))  # headers may wrap
        self.parts.append(f'<div class="scroll">{shown.to_html(index=False, border=0)}</div>')

    def figure(self, fig: Figure, caption: str = "") -> None:
        self.parts.append(f'<figure><img src="{figure_to_data_uri(fig)}" alt="{html.escape(caption)}">'
                          f"<figcaption class=\"note\">{html.escape(caption)}</figcaption></figure>")

    def render(self) -> str:
        body = "\n".join(self.parts)
        return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(self.title)}</title>"
                f"<style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>\n")

    def write(self, path: str | Path) -> Path:
        with atomic_path(path) as tmp:
            tmp.write_text(self.render())
        return Path(path)

"""Figure plumbing shared by every ``--plot`` and report: matplotlib with the Agg backend, imported
only when a figure is asked for; files written atomically in the format their suffix names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from distlaw.io import atomic_path, check_output_path

FORMATS = (".png", ".pdf", ".svg")


def new_figure(ncols: int = 1) -> tuple[Any, Any]:
    """A figure with ``ncols`` panels side by side (axes indexed ``[0][i]``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(5.5 * ncols, 4.2), squeeze=False)


def plain_log_ticks(ax: Any) -> None:
    """No minor-tick labels on log axes (they collide when the data span less than a decade)."""
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())


def check_plot_path(path: str | os.PathLike[str]) -> None:
    """Reject an unsupported figure suffix, a folder or a missing parent folder before any work is done."""
    check_output_path(path, FORMATS, "figure")


def save_figure(fig: Any, path: str | os.PathLike[str]) -> None:
    """Write ``fig`` to ``path`` atomically (nothing is left on failure) and close it."""
    import matplotlib.pyplot as plt

    p = Path(path)
    try:
        check_plot_path(p)
        with atomic_path(p) as tmp:
            fig.tight_layout()
            fig.savefig(tmp, format=p.suffix.lower().lstrip("."), dpi=150, bbox_inches="tight")
    finally:
        plt.close(fig)

"""Figure plumbing shared by every ``--plot`` and report: matplotlib with the Agg backend, imported
only when a figure is asked for; files written atomically in the format their suffix names."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distlaw.io import atomic_path, check_output_path

FORMATS = (".png", ".pdf", ".svg")
MAX_LEGEND_ENTRIES = 6  # more model sizes than this get a colour bar instead of legend entries


def new_figure(ncols: int = 1) -> tuple[Any, Any]:
    """A figure with ``ncols`` panels side by side (axes indexed ``[0][i]``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(5.5 * ncols, 4.2), squeeze=False)


def format_number(value: float, digits: int = 4, plain_below: float = 1e5) -> str:
    """``digits`` significant figures, integers below ``plain_below`` in full, exponents unpadded: 2.5e6, not 2.5e+06."""
    value = float(value)  # also NumPy and Python integers
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value.is_integer() and abs(value) < plain_below:
        return str(int(value))
    mantissa, sep, exponent = f"{value:.{digits}g}".partition("e")
    return mantissa + (f"e{int(exponent)}" if sep else "")


def plain_log_ticks(ax: Any) -> None:
    """Readable log axes: no minor-tick labels (they collide when the data span about a decade), and
    an axis spanning under two decades gets short labels at 1, 2, 5 (under 0.6: 1..9) times a power of ten."""
    import numpy as np
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() != "log":
            continue
        axis.set_minor_formatter(NullFormatter())
        decades = abs(math.log10(hi / lo))
        if decades < 2:
            subs = (1.0, 2.0, 5.0) if decades > 0.6 else np.arange(1.0, 10.0)
            axis.set_major_locator(LogLocator(subs=subs))
            axis.set_major_formatter(FuncFormatter(lambda v, _: format_number(v, 2, plain_below=1e4)))


def size_colors(fig: Any, ax: Any, values: Sequence[float], label: str, cmap: str = "viridis") -> tuple[list[Any], bool]:
    """Colours for positive ``values`` (model sizes, compute) on a log scale, and whether a legend can
    name them: with more than MAX_LEGEND_ENTRIES values a colour bar labelled ``label`` explains them instead."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm

    array = np.asarray(values, dtype=float)
    if len(array) <= MAX_LEGEND_ENTRIES:
        return list(colormaps[cmap](np.linspace(0, 0.9, max(len(array), 1)))), True
    mappable = ScalarMappable(norm=LogNorm(array.min(), max(array.max(), array.min() * 1.001)), cmap=cmap)
    fig.colorbar(mappable, ax=ax, label=label)
    return [mappable.to_rgba(v) for v in array], False


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

"""Predicted against observed loss, Busbridge et al. 2025 (arXiv 2502.08606) Fig. 5 style: one point per
run with its bootstrap interval as a vertical bar, the y = x line and +-1 % bands. ``draw_validation``
draws on any axes (the demo's panels); ``plot_validation`` writes a figure file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from distlaw.design.validate import Check
from distlaw.figures import new_figure, save_figure

COLORS = {"supervised": "tab:blue", "distilled": "tab:orange"}
BAND = 0.01  # the dotted lines at +-1 %: Busbridge et al. report about 1 % extrapolation error


def draw_validation(ax: Any, checks: Sequence[Check], level: float, title: str | None = None) -> None:
    """Observed loss (x) against predicted loss (y) with its ``level`` interval; runs without an
    observation are left out, runs without an interval drawn without a bar."""
    shown = [c for c in checks if c.observed is not None]
    for kind, color in COLORS.items():
        group = [c for c in shown if c.kind == kind]
        if not group:
            continue
        inside = sum(c.inside is True for c in group)
        counted = sum(c.inside is not None for c in group)
        errors = [[c.predicted - c.interval[0] if c.interval else 0.0 for c in group],
                  [c.interval[1] - c.predicted if c.interval else 0.0 for c in group]]
        ax.errorbar([c.observed for c in group], [c.predicted for c in group], yerr=errors, fmt="o", color=color, capsize=3,
                    label=f"{kind} ({inside}/{counted} inside)")
    values = [v for c in shown for v in (c.observed, c.predicted, *(c.interval or ()))]
    if values:
        lo, hi = min(values), max(values)
        pad = 0.05 * (hi - lo) or 0.02 * hi
        line = [lo - pad, hi + pad]
        ax.plot(line, line, color="black", lw=1, label="y = x")
        for factor in (1 - BAND, 1 + BAND):
            ax.plot(line, [v * factor for v in line], color="gray", lw=0.8, ls=":")
        ax.set_xlim(line)
        ax.set_ylim(line)
        ax.legend(fontsize=8)
    ax.set_xlabel("observed loss (nats/token)")
    ax.set_ylabel(f"predicted loss, {level:.0%} interval")
    ax.set_title(title or "predicted vs observed (dotted: ±1 %)", fontsize=10)


def plot_validation(path: str | os.PathLike[str], checks: Sequence[Check], level: float, title: str | None = None) -> None:
    """``draw_validation`` on one panel, written to ``path`` (.png, .pdf or .svg)."""
    fig, axes = new_figure()
    draw_validation(axes[0][0], checks, level, title)
    save_figure(fig, path)

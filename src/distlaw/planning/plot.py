"""Figures for ``distlaw plan --plot`` (matplotlib, Agg backend, written atomically).

Imported only when a plot is asked for, so that the CLI starts fast.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from distlaw.figures import plain_log_ticks, save_figure  # noqa: E402
from distlaw.planning.derived import Crossovers  # noqa: E402
from distlaw.planning.planner import Baseline, Recipes  # noqa: E402
from distlaw.planning.uncertainty import Intervals  # noqa: E402


def _finish(ax: plt.Axes) -> None:
    """Grid, legend and log ticks that never overlap (no minor-tick labels, at most 6 major ones)."""
    from matplotlib.ticker import LogLocator

    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.xaxis.set_major_locator(LogLocator(numticks=6))
    plain_log_ticks(ax)


def plot_frontier(
    path: str | Path,
    recipes: list[Recipes],
    baseline: Baseline,
    crossings: list[Crossovers],
    bands: list[Intervals | None],
    source: str,
) -> None:
    """Student loss and optimal teacher size against compute, one line per scenario (1-D budgets).

    With bootstrap samples, shaded bands show each recipe's loss interval (gaps where none holds);
    dotted vertical lines mark where distillation starts or stops winning (the crossovers).
    """
    fig, (ax_loss, ax_size) = plt.subplots(1, 2, figsize=(11, 4.4))
    c = baseline.compute
    ax_loss.plot(c, baseline.loss, "k--", label="supervised")
    if bands and bands[0] is not None:
        ax_loss.fill_between(c, *bands[0].supervised_loss, color="k", alpha=0.1, lw=0)
    for r, band, cross in zip(recipes, bands, crossings):
        (line,) = ax_loss.plot(c, r.student_loss, label=r.scenario)
        ax_size.plot(c, r.teacher_params, color=line.get_color(), label=r.scenario)
        if band is not None:
            ax_loss.fill_between(c, *band.recipe_loss, color=line.get_color(), alpha=0.2, lw=0)
        inside = [p for p in cross.points if c.min() <= p.compute <= c.max()]
        for k, p in enumerate(inside):
            label = f"crossover ({r.scenario})" if k == 0 else None
            for ax in (ax_loss, ax_size):
                ax.axvline(p.compute, color=line.get_color(), ls=":", lw=1.2, label=label if ax is ax_loss else None)
    ax_size.axhline(float(baseline.student_params.flat[0]), color="k", ls=":", label="student size")
    ax_loss.set(xscale="log", xlabel="compute C (FLOPs)", ylabel="student cross-entropy (nats/token)")
    ax_size.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel="optimal teacher params N_T")
    band_note = ", bands: bootstrap intervals" if bands and bands[0] is not None else ""
    ax_loss.set_title(f"N_S = {float(baseline.student_params.flat[0]):.3g}, coefficients {source}{band_note}", fontsize=9)
    ax_size.set_title("teacher of each compute-optimal recipe", fontsize=9)
    for ax in (ax_loss, ax_size):
        _finish(ax)
    save_figure(fig, path)


def plot_isoflop(path: str | Path, profiles: list[Recipes], supervised_loss: float, optimal: list[Recipes], source: str) -> None:
    """IsoFLOP profiles: best student loss against teacher size at one budget, optimum marked."""
    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    for profile, best in zip(profiles, optimal):
        (line,) = ax.plot(profile.teacher_params, profile.student_loss, label=profile.scenario)
        ax.plot(np.atleast_1d(best.teacher_params), np.atleast_1d(best.student_loss), "o", color=line.get_color())
    ax.axhline(supervised_loss, color="k", ls="--", label="supervised")
    n_s, c = float(profiles[0].student_params.flat[0]), float(profiles[0].compute.flat[0])
    ax.axvline(n_s, color="k", ls=":", label="student size")
    ax.set(xscale="log", xlabel="teacher params N_T", ylabel="student cross-entropy (nats/token)")
    ax.set_title(f"IsoFLOP profile: N_S = {n_s:.3g}, C = {c:.3g} FLOPs, coefficients {source}", fontsize=9)
    _finish(ax)
    save_figure(fig, path)

"""Figures for the report: observed runs against the laws (matplotlib, Agg backend).

Every title says where the curves come from (``laws``: e.g. "fitted to runs.csv" or "preset
busbridge2025"); many model sizes get a colour bar instead of a long legend.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from distlaw.figures import format_number, plain_log_ticks, size_colors  # noqa: E402
from distlaw.laws import Coefficients, student_loss, supervised_loss  # noqa: E402


def supervised_fit_figure(runs: pd.DataFrame, coefficients: Coefficients, laws: str) -> Figure:
    """Loss against tokens for each supervised model size, with the supervised law (Busbridge Eq. 1) as lines."""
    sup = runs[runs["kind"] == "supervised"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sizes = np.sort(sup["params"].unique())
    colors, legend = size_colors(fig, ax, sizes, "model parameters N")
    grid = np.logspace(np.log10(sup["tokens"].min()) - 0.2, np.log10(sup["tokens"].max()) + 0.2, 100)
    for size, color in zip(sizes, colors):
        rows = sup[sup["params"] == size]
        ax.scatter(rows["tokens"], rows["loss"], color=color, s=18, label=f"N = {format_number(size, 3)}" if legend else None)
        if coefficients.supervised is not None:
            ax.plot(grid, supervised_loss(np.full_like(grid, size), grid, coefficients.supervised), color=color, lw=1)
    ax.set(xscale="log", xlabel="training tokens D", ylabel="validation loss (nats/token)",
           title=f"Supervised runs; lines: supervised law {laws}")
    plain_log_ticks(ax)
    if legend:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def student_teacher_figure(runs: pd.DataFrame, coefficients: Coefficients, laws: str) -> Figure:
    """Student loss against teacher loss per student configuration, with Eq. 8 as lines (the capacity gap)."""
    dist = runs[runs["kind"] == "distilled"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    groups = list(dist.groupby(["params", "tokens"]))  # one line per student (N_S, D_S), coloured by its compute
    colors, legend = size_colors(fig, ax, [6 * n * d for (n, d), _ in groups], "student FLOPs 6 N_S D_S", cmap="plasma")
    lt_grid = _teacher_loss_grid(dist["teacher_loss"], coefficients)
    for ((n, d), rows), color in zip(groups, colors):
        label = f"N_S = {format_number(n, 3)}, D_S = {format_number(d, 3)}" if legend else None
        ax.scatter(rows["teacher_loss"], rows["loss"], color=color, s=18, label=label)
        if coefficients.distillation is not None and coefficients.supervised is not None:
            ax.plot(lt_grid, student_loss(np.full_like(lt_grid, n), np.full_like(lt_grid, d), lt_grid, coefficients), color=color, lw=1)
    lo, hi = ax.get_xlim()
    ax.plot([lo, hi], [lo, hi], ls="--", color="grey", lw=0.8, label="student = teacher")
    ax.set(xlabel="teacher loss L_T", ylabel="student loss L_S", title=f"Distilled students; lines: distillation law {laws}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _teacher_loss_grid(teacher_loss: pd.Series, coefficients: Coefficients) -> np.ndarray:
    """Teacher losses to draw Eq. 8 over: the runs' range widened by 5 %, kept above the supervised
    law's floor E (no teacher reaches it, and Eq. 8 has no answer at or below it)."""
    lo, hi = teacher_loss.min() * 0.95, teacher_loss.max() * 1.05
    if coefficients.supervised is not None:
        floor = coefficients.supervised.E * (1 + 1e-6)
        lo, hi = max(lo, floor), max(hi, floor * 1.05)
    return np.linspace(lo, hi, 200)


def parity_figure(predicted: pd.DataFrame, laws: str) -> Figure:
    """Predicted against observed loss for every run (the diagonal is a perfect fit)."""
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    for kind, marker in (("supervised", "o"), ("distilled", "^")):
        rows = predicted[predicted["kind"] == kind]
        if len(rows):
            ax.scatter(rows["loss"], rows["predicted_loss"], marker=marker, s=16, label=kind)
    both = np.concatenate([predicted["loss"].to_numpy(), predicted["predicted_loss"].to_numpy()])
    lo, hi = np.nanmin(both), np.nanmax(both)
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    ax.set(xlabel="observed loss", ylabel="predicted loss", title=f"Runs against the laws {laws}")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

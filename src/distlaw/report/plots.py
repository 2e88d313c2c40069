"""Figures for the report: observed runs against the fitted laws (matplotlib, Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from distlaw.laws import Coefficients, student_loss, supervised_loss  # noqa: E402


def supervised_fit_figure(runs: pd.DataFrame, coefficients: Coefficients) -> Figure:
    """Loss against tokens for each supervised model size, with the fitted law (Busbridge Eq. 1) as lines."""
    sup = runs[runs["kind"] == "supervised"]
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = np.sort(sup["params"].unique())
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(sizes), 1)))
    grid = np.logspace(np.log10(sup["tokens"].min()) - 0.2, np.log10(sup["tokens"].max()) + 0.2, 100)
    for size, color in zip(sizes, colors):
        rows = sup[sup["params"] == size]
        ax.scatter(rows["tokens"], rows["loss"], color=color, s=18, label=f"N={size:.3g}")
        if coefficients.supervised is not None:
            ax.plot(grid, supervised_loss(np.full_like(grid, size), grid, coefficients.supervised), color=color, lw=1)
    ax.set(xscale="log", xlabel="training tokens D", ylabel="validation loss (nats/token)", title="Supervised runs and fitted law")
    if len(sizes) <= 10:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def student_teacher_figure(runs: pd.DataFrame, coefficients: Coefficients) -> Figure:
    """Student loss against teacher loss per student configuration, with Eq. 8 as lines (the capacity gap)."""
    dist = runs[runs["kind"] == "distilled"]
    fig, ax = plt.subplots(figsize=(6, 4))
    groups = list(dist.groupby(["params", "tokens"]))
    colors = plt.cm.plasma(np.linspace(0, 0.85, max(len(groups), 1)))
    lt_grid = np.linspace(dist["teacher_loss"].min() * 0.95, dist["teacher_loss"].max() * 1.05, 200)
    for ((n, d), rows), color in zip(groups, colors):
        ax.scatter(rows["teacher_loss"], rows["loss"], color=color, s=18, label=f"N_S={n:.3g}, D_S={d:.3g}")
        if coefficients.distillation is not None and coefficients.supervised is not None:
            ax.plot(lt_grid, student_loss(np.full_like(lt_grid, n), np.full_like(lt_grid, d), lt_grid, coefficients), color=color, lw=1)
    lo, hi = ax.get_xlim()
    ax.plot([lo, hi], [lo, hi], ls="--", color="grey", lw=0.8, label="student = teacher")
    ax.set(xlabel="teacher loss L_T", ylabel="student loss L_S", title="Distilled students (capacity gap)")
    if len(groups) <= 10:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def parity_figure(predicted: pd.DataFrame) -> Figure:
    """Predicted against observed loss for every run (the diagonal is a perfect fit)."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for kind, marker in (("supervised", "o"), ("distilled", "^")):
        rows = predicted[predicted["kind"] == kind]
        if len(rows):
            ax.scatter(rows["loss"], rows["predicted_loss"], marker=marker, s=16, label=kind)
    both = np.concatenate([predicted["loss"].to_numpy(), predicted["predicted_loss"].to_numpy()])
    lo, hi = np.nanmin(both), np.nanmax(both)
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    ax.set(xlabel="observed loss", ylabel="predicted loss", title="Law predictions vs runs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

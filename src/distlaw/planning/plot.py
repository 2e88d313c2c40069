"""Figures for ``distlaw plan --plot`` (matplotlib, Agg backend, written atomically).

Imported only when a plot is asked for, so that the CLI starts fast.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from distlaw.figures import save_figure  # noqa: E402
from distlaw.planning.planner import Baseline, Recipes  # noqa: E402

def plot_frontier(path: str | Path, recipes: list[Recipes], baseline: Baseline) -> None:
    """Student loss and optimal teacher size against compute, one line per scenario (1-D budgets)."""
    fig, (ax_loss, ax_size) = plt.subplots(1, 2, figsize=(11, 4.2))
    c = baseline.compute
    ax_loss.plot(c, baseline.loss, "k--", label="supervised")
    for r in recipes:
        ax_loss.plot(c, r.student_loss, label=r.scenario)
        ax_size.plot(c, r.teacher_params, label=r.scenario)
    ax_size.axhline(float(baseline.student_params.flat[0]), color="k", ls=":", label="student size")
    ax_loss.set(xscale="log", xlabel="compute C (FLOPs)", ylabel="student cross-entropy (nats/token)")
    ax_size.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel="optimal teacher params N_T")
    ax_loss.set_title(f"N_S = {float(baseline.student_params.flat[0]):.3g}: compute-optimal distillation")
    for ax in (ax_loss, ax_size):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_isoflop(path: str | Path, profiles: list[Recipes], supervised_loss: float, optimal: list[Recipes]) -> None:
    """IsoFLOP profiles: best student loss against teacher size at one budget, optimum marked."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for profile, best in zip(profiles, optimal):
        (line,) = ax.plot(profile.teacher_params, profile.student_loss, label=profile.scenario)
        ax.plot(np.atleast_1d(best.teacher_params), np.atleast_1d(best.student_loss), "o", color=line.get_color())
    ax.axhline(supervised_loss, color="k", ls="--", label="supervised")
    n_s, c = float(profiles[0].student_params.flat[0]), float(profiles[0].compute.flat[0])
    ax.axvline(n_s, color="k", ls=":", label="student size")
    ax.set(xscale="log", xlabel="teacher params N_T", ylabel="student cross-entropy (nats/token)")
    ax.set_title(f"IsoFLOP profile: N_S = {n_s:.3g}, C = {c:.3g} FLOPs")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, path)

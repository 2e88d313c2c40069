"""Figures for ``distlaw density``: the two fitted steps, models' effective sizes, the trend.

matplotlib (Agg) is imported only when a figure is asked for; files are written atomically,
in the format named by the suffix (.png, .pdf, .svg).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from distlaw.density.trend import TrendFit
from distlaw.figures import new_figure, plain_log_ticks, save_figure, size_colors
from distlaw.laws.density import DensityCoefficients, conditional_loss, score_from_loss

def plot_fit(reference: pd.DataFrame, coefficients: DensityCoefficients, path: str | os.PathLike[str]) -> None:
    """Left: loss against N per token budget with the loss law; right: score against loss with the sigmoid."""
    fig, axes = new_figure(2)
    left, right = axes[0]
    n = np.geomspace(reference["params"].min() / 2, reference["params"].max() * 2, 100)
    budgets = reference.groupby("tokens")
    colors, legend = size_colors(fig, left, list(budgets.groups), "training tokens D (log scale)")
    for color, (tokens, rows) in zip(colors, budgets):
        left.plot(n, conditional_loss(n, tokens, coefficients.loss), lw=1, color=color)
        left.scatter(rows["params"], rows["loss"], color=color, s=14, label=f"D = {tokens:.3g}")
    left.set(xscale="log", xlabel="parameters N", ylabel="conditional loss", title="step 1 (fitted): L = a N^-alpha + b D^-beta")
    if legend:
        left.legend(fontsize=7)
    plain_log_ticks(left)
    scored = reference[reference["score"].notna()]
    s = coefficients.score
    loss = np.linspace(scored["loss"].min() - 0.2 * np.ptp(scored["loss"]), scored["loss"].max() + 0.2 * np.ptp(scored["loss"]), 200)
    right.plot(loss, score_from_loss(loss, s.c, s.gamma, s.l, s.d), lw=1, color="k")
    right.scatter(scored["loss"], scored["score"], s=14)
    right.set(xlabel="conditional loss", ylabel="score", title="step 2 (fitted): S = c / (1 + exp(-gamma (L - l))) + d")
    save_figure(fig, path)


MAX_LABELS = 12  # more models than this are not named on the figure (their labels would overlap)


def plot_scores(scored: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Effective against actual parameters (log-log) with the density = 1 diagonal; models without
    a finite effective size (see their status) are left out, and named only up to MAX_LABELS."""
    fig, axes = new_figure()
    ax = axes[0][0]
    ok = scored[np.isfinite(scored["effective_params"])]
    if "effective_params_lo" in ok:
        err = np.vstack([ok["effective_params"] - ok["effective_params_lo"], ok["effective_params_hi"] - ok["effective_params"]])
        ax.errorbar(ok["params"], ok["effective_params"], yerr=np.where(np.isfinite(err), err, 0), fmt="o", ms=4)
    else:
        ax.scatter(ok["params"], ok["effective_params"], s=16)
    for _, row in ok.iterrows() if len(ok) <= MAX_LABELS else ():
        ax.annotate(row["model"], (row["params"], row["effective_params"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    sizes = np.concatenate([scored["params"], ok["effective_params"]])
    ax.plot([sizes.min(), sizes.max()], [sizes.min(), sizes.max()], ls="--", color="grey", lw=1, label="density 1")
    ax.set(xscale="log", yscale="log", xlabel="parameters N", ylabel="effective parameters Nhat", title=f"capacity density from the fitted law ({len(ok)} of {len(scored)} models)")
    plain_log_ticks(ax)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_trend(models: pd.DataFrame, fit: TrendFit, path: str | os.PathLike[str]) -> None:
    """ln density against release date; envelope models highlighted, the fitted line over them."""
    fig, axes = new_figure()
    ax = axes[0][0]
    on = models["model"].isin(fit.envelope)
    ax.scatter(models.loc[~on, "release_date"], models.loc[~on, "density"], s=12, color="lightgrey", label="other models")
    ax.scatter(models.loc[on, "release_date"], models.loc[on, "density"], s=16, color="C0", label="envelope")
    dates = pd.date_range(models["release_date"].min(), models["release_date"].max(), periods=50)
    days = (dates - pd.Timestamp(fit.origin)).days.to_numpy(dtype=float)
    ax.plot(dates, np.exp(fit.A_per_day * days + fit.B), color="C1", label=f"doubling every {fit.doubling_days:.0f} days")
    ax.set(yscale="log", xlabel="release date", ylabel="capacity density", title="densing law, fitted on the envelope: ln rho_max = A t + B")
    ax.legend(fontsize=7)
    fig.autofmt_xdate()
    save_figure(fig, path)

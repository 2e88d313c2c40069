"""The capacity gap from a runs table (Zhang et al., arXiv 2311.07052, Fig. 4; Busbridge et al.,
arXiv 2502.08606, Sec. 4.3): a smooth optimal teacher per student, then the linear law over them.

1. :func:`teacher_curves`: for every student configuration (params, tokens) with distilled runs
   from at least three teacher sizes, the student loss as a quadratic in ln(teacher_params),

       L(T) = q0 + q1 u + q2 u^2,   u = ln T - log_center,

   fitted by weighted least squares on the seed-averaged loss per teacher size, weighted by the
   number of seeds (identical to ordinary least squares on the individual runs). The smooth
   optimum is the vertex T* = exp(log_center - q1 / (2 q2)). It is ``interior`` when the fit is
   convex (q2 > 0) and the vertex lies strictly inside the teachers' range; otherwise the best
   teacher is at an edge and T* is a bound: ``at least`` the largest teacher (loss still falling)
   or ``at most`` the smallest (loss rising). The raw argmin of the seed-averaged losses is
   reported beside it (the one-point answer of :func:`distlaw.findings.best_teachers`).
2. :func:`fit_capacity_gap`: T* = slope S + intercept over the interior optima by ordinary least
   squares in parameters (Zhang's Fig. 4), with R^2, and the fit through the origin T* = slope S.
3. :func:`bootstrap_capacity`: resample runs within each student configuration (seeded, all
   resamples at once), refit 1 and 2, and take percentile intervals. A resample's T* is the
   minimum of its quadratic over the original teacher range; its law uses its own interior optima.
   With few runs per student the percentile intervals run a little narrow (planted tables with
   21-35 runs per student: ~91-93 % of nominal 95 % intervals cover the true T*). A student with
   three runs (one per teacher size) has no resampling spread: its draws are NaN, it joins no
   resampled law, and its interval is NaN. Resamples that keep fewer than three sizes are NaN too.
   An interval that does not contain its own estimate (a degenerate resample distribution) is NaN
   as well, with the reason in ``interval_note`` (per student) or ``interval_notes`` (the law).

Teacher scale is ``teacher_params`` alone: teachers of one size trained on different tokens are
pooled like seeds. Students started from a pruned teacher (a ``pruned_to`` column, as ``distlaw runs
export`` writes for the ``prune-distill`` protocol) count as their target size, since every teacher
prunes to a slightly different shape. Sizes keep the runs table's unit, and so does the fitted intercept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from distlaw.errors import DistlawError
from distlaw.findings import STUDENT_KEYS
from distlaw.intervals import check_level, interval_around, interval_notes
from distlaw.laws.capacity_gap import (
    PRESETS,
    CapacityGapCoefficients,
    CapacityGapLaw,
    optimal_student,
    optimal_teacher,
    student_scale,
    teacher_scale,
)

MIN_TEACHERS = 3  # a quadratic has three coefficients
HANKEL = np.array([[0, 1, 2], [1, 2, 3], [2, 3, 4]])  # normal matrix entry (j, k) is the moment sum w u^(j+k)
STATUS = {0: "interior", 1: "at least", -1: "at most"}


@dataclass(frozen=True)
class _Students:
    """Distilled runs of the qualifying students as padded (students G, runs R, teacher sizes K) arrays."""

    keys: pd.DataFrame  # params, tokens per student
    u_pow: np.ndarray  # (G, R, 5): u^0..u^4, u = (ln T - center) / half, 0 on padding
    loss: np.ndarray  # (G, R), 0 on padding
    present: np.ndarray  # (G, R) bool
    onehot: np.ndarray  # (G, R, K) bool: run r of student g used teacher size k
    sizes: np.ndarray  # (G, K) teacher sizes, NaN on padding
    center: np.ndarray  # (G,) midpoint of the ln teacher range
    half: np.ndarray  # (G,) half-width of the ln teacher range


def _distilled(runs: pd.DataFrame) -> pd.DataFrame:
    """The distilled rows, with teacher sizes; DistlawErrors when there are none."""
    dist = runs[runs["kind"] == "distilled"]
    if dist.empty:
        raise DistlawError("no distilled rows: the capacity gap needs students distilled from teachers of several sizes")
    if "teacher_params" not in dist.columns or dist["teacher_params"].isna().any():
        raise DistlawError("distilled rows need 'teacher_params' (the teacher's size) for the capacity gap")
    if "pruned_to" in dist.columns:  # each teacher prunes to a slightly different shape: group by the target size
        dist = dist.assign(params=dist["pruned_to"].where(dist["pruned_to"].notna(), dist["params"]))
    return dist


def _students(runs: pd.DataFrame) -> _Students:
    """Pack the students with >= MIN_TEACHERS teacher sizes (sorted by params, tokens)."""
    dist = _distilled(runs)
    sizes_per_student = dist.groupby(STUDENT_KEYS)["teacher_params"].transform("nunique")
    keep = dist[sizes_per_student >= MIN_TEACHERS].sort_values(STUDENT_KEYS + ["teacher_params"])
    if keep.empty:
        most = int(sizes_per_student.max())
        raise DistlawError(
            f"no student (params, tokens) has distilled runs from {MIN_TEACHERS} or more teacher sizes "
            f"(most: {most}); a quadratic in ln teacher size needs three"
        )
    grouped = keep.groupby(STUDENT_KEYS, sort=True)
    g = grouped.ngroup().to_numpy()
    r = grouped.cumcount().to_numpy()
    k = (grouped["teacher_params"].rank(method="dense") - 1).to_numpy(dtype=int)
    shape = (g.max() + 1, r.max() + 1)
    sizes = np.full((shape[0], k.max() + 1), np.nan)
    sizes[g, k] = keep["teacher_params"].to_numpy(dtype=float)
    lo, hi = np.log(np.nanmin(sizes, axis=1)), np.log(np.nanmax(sizes, axis=1))
    center, half = (lo + hi) / 2, (hi - lo) / 2
    u = np.zeros(shape)
    u[g, r] = (np.log(keep["teacher_params"].to_numpy(dtype=float)) - center[g]) / half[g]
    loss, present = np.zeros(shape), np.zeros(shape, dtype=bool)
    loss[g, r], present[g, r] = keep["loss"].to_numpy(dtype=float), True
    onehot = np.zeros(shape + (sizes.shape[1],), dtype=bool)
    onehot[g, r, k] = True
    keys = grouped.size().index.to_frame(index=False)
    return _Students(keys, u[..., None] ** np.arange(5), loss, present, onehot, sizes, center, half)


def _quadratics(st: _Students, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares (q0, q1, q2) in scaled u, shape weights.shape[:-1] + (3,); NaN with < 3 sizes."""
    moments = np.einsum("...gr,grk->...gk", weights, st.u_pow)
    rhs = np.einsum("...gr,grk->...gk", weights * st.loss, st.u_pow[..., :3])
    sizes_seen = (np.einsum("...gr,grk->...gk", weights, st.onehot) > 0).sum(axis=-1)
    solvable = sizes_seen >= MIN_TEACHERS
    normal = np.where(solvable[..., None, None], moments[..., HANKEL], np.eye(3))
    q = np.linalg.solve(normal, rhs[..., None])[..., 0]
    return np.where(solvable[..., None], q, np.nan)


def _optimum(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum of each quadratic over the scaled range [-1, 1]: (u*, status 0 interior / 1 upper / -1 lower)."""
    q1, q2 = q[..., 1], q[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = np.where(q2 > 0, -q1 / (2 * q2), np.nan)
    interior = np.abs(vertex) < 1
    status = np.where(interior, 0, np.where(q1 < 0, 1, -1))  # L(1) - L(-1) = 2 q1
    return np.where(np.isnan(q1), np.nan, np.where(interior, vertex, status)), status


def teacher_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Per student (params, tokens) with >= 3 teacher sizes: the smooth optimal teacher and the raw argmin.

    ``runs`` is a validated runs table (:func:`distlaw.runs.read_runs`) whose distilled rows have
    ``teacher_params``. Columns: params, tokens, teachers (sizes), runs, teacher_min, teacher_max,
    teacher_star (the vertex if interior, else the bound), status (interior / at least / at most),
    loss_star (fitted loss at teacher_star), argmin_teacher, argmin_loss (seed-averaged), and the
    fitted quadratic L = q0 + q1 u + q2 u^2 in u = ln T - log_center (q2 > 0: convex).
    """
    st = _students(runs)
    q = _quadratics(st, st.present.astype(float))
    u_star, status = _optimum(q)
    out = st.keys.copy()
    out["teachers"] = np.isfinite(st.sizes).sum(axis=1)
    out["runs"] = st.present.sum(axis=1)
    out["teacher_min"], out["teacher_max"] = np.nanmin(st.sizes, axis=1), np.nanmax(st.sizes, axis=1)
    out["teacher_star"] = np.exp(st.center + st.half * u_star)
    out["status"] = [STATUS[int(s)] for s in status]
    out["loss_star"] = q[:, 0] + q[:, 1] * u_star + q[:, 2] * u_star**2
    means = np.einsum("gr,grk->gk", st.loss, st.onehot) / np.maximum(st.onehot.sum(axis=1), 1)
    best = np.argmin(np.where(np.isfinite(st.sizes), means, np.inf), axis=1)
    rows = np.arange(len(best))
    out["argmin_teacher"], out["argmin_loss"] = st.sizes[rows, best], means[rows, best]
    out["log_center"] = st.center
    out["q0"], out["q1"], out["q2"] = q[:, 0], q[:, 1] / st.half, q[:, 2] / st.half**2
    return out


def fitted_loss(curve: pd.Series | dict[str, Any], teacher_params: Any) -> np.ndarray:
    """One row of :func:`teacher_curves` evaluated at teacher sizes: q0 + q1 u + q2 u^2."""
    u = np.log(np.asarray(teacher_params, dtype=float)) - curve["log_center"]
    return curve["q0"] + curve["q1"] * u + curve["q2"] * u**2


def _lines(s: np.ndarray, t: np.ndarray, use: np.ndarray) -> dict[str, np.ndarray]:
    """Least-squares T = slope S + intercept and T = slope_origin S over the ``use`` entries, batched
    over leading axes; NaN where fewer than two distinct S are used."""
    w = (use & np.isfinite(t)).astype(float)
    t = np.where(w > 0, t, 0.0)
    n = w.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s_bar, t_bar = (w * s).sum(axis=-1) / n, (w * t).sum(axis=-1) / n
        ds, dt = s - s_bar[..., None], t - t_bar[..., None]
        sxx, sxy, tyy = (w * ds * ds).sum(axis=-1), (w * ds * dt).sum(axis=-1), (w * dt * dt).sum(axis=-1)
        ok = (n >= 2) & (sxx > 0)
        slope = np.where(ok, sxy / sxx, np.nan)
        return {
            "slope": slope,
            "intercept": t_bar - slope * s_bar,
            "slope_origin": np.where(ok, (w * s * t).sum(axis=-1) / (w * s * s).sum(axis=-1), np.nan),
            "r2": np.where(ok & (tyy > 0), sxy**2 / (sxx * tyy), np.nan),
        }


@dataclass(frozen=True)
class CapacityGapFit:
    """T* = slope S + intercept over ``students`` interior optima; ``intervals`` and ``samples`` from a bootstrap."""

    law: CapacityGapLaw
    slope_origin: float
    r2: float
    students: int
    intervals: dict[str, tuple[float, float]] | None = None
    interval_notes: dict[str, str] = field(default_factory=dict)  # why an interval is (NaN, NaN)
    samples: list[CapacityGapLaw] = field(default_factory=list)
    level: float = 0.95

    @property
    def estimates(self) -> dict[str, float]:
        """The point estimates the bootstrap intervals must contain."""
        return {"slope": self.law.slope, "intercept": self.law.intercept, "slope_origin": self.slope_origin}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.law.as_dict(), "slope_origin": self.slope_origin, "r2": self.r2, "students": self.students}
        if self.intervals is not None:
            out["intervals"] = {k: list(v) for k, v in self.intervals.items()}
            out["interval_notes"] = dict(self.interval_notes)
            out["level"] = self.level
            out["bootstrap"] = len(self.samples)
        return out

    def coefficients(self) -> CapacityGapCoefficients:
        """The law as a coefficients file for ``distlaw capacity predict``."""
        meta = {
            "method": "Zhang et al. 2023, arXiv 2311.07052: T* = slope S + intercept over smooth (quadratic) optima",
            "units": "S, T* and intercept in the runs table's params unit",
            **{k: v for k, v in self.to_dict().items() if k not in ("slope", "intercept")},
        }
        return CapacityGapCoefficients(law=self.law, bootstrap=self.samples or None, meta=meta)


def fit_capacity_gap(curves: pd.DataFrame) -> CapacityGapFit:
    """Least-squares T* = slope S + intercept over the interior optima of :func:`teacher_curves`."""
    interior = (curves["status"] == "interior").to_numpy()
    s = curves["params"].to_numpy(dtype=float)
    n_sizes = len(np.unique(s[interior]))
    if n_sizes < 2:
        found = f"found {int(interior.sum())} interior of {len(curves)} students ({n_sizes} sizes)"
        if len(np.unique(s)) < 2:
            raise DistlawError(f"the law needs interior optima at two or more student sizes, {found}: add students of other sizes")
        raise DistlawError(
            f"the law needs interior optima at two or more student sizes, {found}; the others' best teacher is at "
            "the edge of the teachers tried: add larger or smaller teachers"
        )
    line = {k: float(v) for k, v in _lines(s, curves["teacher_star"].to_numpy(dtype=float), interior).items()}
    if line["slope"] <= 0:
        raise DistlawError(f"the interior optima do not grow with the student (slope {line['slope']:.4g}): no law of capacity gap")
    law = CapacityGapLaw(slope=line["slope"], intercept=line["intercept"])
    return CapacityGapFit(law=law, slope_origin=line["slope_origin"], r2=line["r2"], students=int(interior.sum()))


@dataclass(frozen=True)
class CapacityBootstrap:
    """Bootstrap draws: per student (columns, in :func:`teacher_curves` order) and of the law."""

    teacher_star: np.ndarray  # (B, G) minimum of each resample's quadratic over the teacher range; NaN if unfittable
    interior: np.ndarray  # (B, G) bool
    lines: dict[str, np.ndarray]  # slope, intercept, slope_origin, r2: (B,), NaN without a law

    def teacher_intervals(self, teacher_star: ArrayLike, level: float = 0.95) -> pd.DataFrame:
        """Per student: teacher_star_lo, teacher_star_hi (percentiles, NaN where they miss the
        estimate ``teacher_star`` or no resample was fitted), interval_note (why, else None) and
        interior_share (of the fitted resamples)."""
        lo, hi, holds = interval_around(teacher_star, self.teacher_star, level)
        with np.errstate(invalid="ignore"):
            share = self.interior.sum(axis=0) / np.isfinite(self.teacher_star).sum(axis=0)
        notes = pd.Series(interval_notes(self.teacher_star, holds), dtype=object)  # None, not NaN, where it holds
        return pd.DataFrame({"teacher_star_lo": lo, "teacher_star_hi": hi, "interval_note": notes, "interior_share": share})

    def law_intervals(self, estimates: dict[str, float], level: float = 0.95) -> tuple[dict[str, tuple[float, float]], dict[str, str]]:
        """Percentile intervals of each of ``estimates`` (slope, intercept, slope_origin) over the
        resamples with a law, (NaN, NaN) where one misses its estimate; and the reasons for those."""
        intervals, notes = {}, {}
        for name, estimate in estimates.items():
            lo, hi, holds = interval_around(estimate, self.lines[name], level)
            intervals[name] = (float(lo), float(hi))
            note = interval_notes(self.lines[name], holds)[0]
            if note is not None:
                notes[name] = note
        return intervals, notes

    def laws(self) -> list[CapacityGapLaw]:
        """Resampled laws with a positive slope (the ones :class:`CapacityGapLaw` admits)."""
        keep = self.lines["slope"] > 0
        return [CapacityGapLaw(slope=s, intercept=i) for s, i in zip(self.lines["slope"][keep], self.lines["intercept"][keep])]


def bootstrap_capacity(runs: pd.DataFrame, resamples: int, seed: int = 0) -> CapacityBootstrap:
    """Resample runs with replacement within each student configuration and refit every curve and the law."""
    if resamples < 1:
        raise DistlawError(f"the bootstrap needs at least one resample, got {resamples}")
    st = _students(runs)
    counts = st.present.sum(axis=1)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(counts, st.present / counts[:, None], size=(resamples, len(counts)))
    weights = draws * st.present  # rounding can leave padding a ~1e-16 share of the draws
    u_star, status = _optimum(_quadratics(st, weights))
    teacher_star = np.where(counts > MIN_TEACHERS, np.exp(st.center + st.half * u_star), np.nan)
    interior = (status == 0) & np.isfinite(teacher_star)
    lines = _lines(st.keys["params"].to_numpy(dtype=float), teacher_star, interior)
    return CapacityBootstrap(teacher_star=teacher_star, interior=interior, lines=lines)


@dataclass(frozen=True)
class CapacityGapResult:
    """Curves (with intervals after a bootstrap), the law or ``reason`` why it cannot be fitted."""

    curves: pd.DataFrame
    fit: CapacityGapFit | None
    reason: str | None
    skipped: int  # student configurations with fewer than MIN_TEACHERS teacher sizes

    def to_dict(self) -> dict[str, Any]:
        return {
            "students": self.curves.to_dict(orient="records"),
            "law": None if self.fit is None else self.fit.to_dict(),
            "reason": self.reason,
            "skipped_students": self.skipped,
            "reference": {"zhang2023": PRESETS["zhang2023"]["law"]},
        }


def capacity_gap(runs: pd.DataFrame, bootstrap: int = 0, seed: int = 0, level: float = 0.95) -> CapacityGapResult:
    """Curves, law and (with ``bootstrap`` resamples) ``level`` intervals; an unfittable law leaves ``fit`` None and says why."""
    check_level(level)
    curves = teacher_curves(runs)
    skipped = _distilled(runs).groupby(STUDENT_KEYS).ngroups - len(curves)
    try:
        fit: CapacityGapFit | None = fit_capacity_gap(curves)
        reason = None
    except DistlawError as exc:
        fit, reason = None, str(exc)
    if bootstrap:
        draws = bootstrap_capacity(runs, bootstrap, seed)
        curves = pd.concat([curves, draws.teacher_intervals(curves["teacher_star"], level)], axis=1)
        if fit is not None:
            intervals, notes = draws.law_intervals(fit.estimates, level)
            fit = replace(fit, intervals=intervals, interval_notes=notes, samples=draws.laws(), level=level)
    return CapacityGapResult(curves=curves, fit=fit, reason=reason, skipped=skipped)


def plot_capacity(runs: pd.DataFrame, result: CapacityGapResult, path: str | os.PathLike[str]) -> None:
    """Write :func:`capacity_figure` to ``path`` (atomically; the format from the suffix)."""
    from distlaw.figures import save_figure

    save_figure(capacity_figure(runs, result), path)


def capacity_figure(runs: pd.DataFrame, result: CapacityGapResult) -> Any:
    """Left: student loss against teacher size per student, fitted quadratics and vertices (a
    legend up to figures.MAX_LEGEND_ENTRIES students, else a colour bar of the student size); right: T*
    against S with the fitted law and Zhang's preset T* = 2.5 S (edges drawn as bounds)."""
    from distlaw.figures import new_figure, plain_log_ticks, size_colors

    fig, axes = new_figure(2)
    left, right = axes[0]
    means = _distilled(runs).groupby(STUDENT_KEYS + ["teacher_params"], as_index=False)["loss"].mean()
    colors, legend = size_colors(fig, left, result.curves["params"], "student parameters S (log scale)")
    for i, curve in result.curves.iterrows():
        color = colors[i]
        points = means[(means["params"] == curve["params"]) & (means["tokens"] == curve["tokens"])]
        grid = np.geomspace(curve["teacher_min"], curve["teacher_max"], 100)
        left.scatter(points["teacher_params"], points["loss"], s=14, color=color, label=f"S = {curve['params']:.3g}, D = {curve['tokens']:.3g}")
        left.plot(grid, fitted_loss(curve, grid), lw=1, color=color)
        if curve["status"] == "interior":
            left.plot(curve["teacher_star"], curve["loss_star"], marker="*", ms=10, color=color)
    left.set(xscale="log", xlabel="teacher parameters T", ylabel="student loss",
             title="student loss vs teacher size: fitted quadratics (* = smooth T*)")
    if legend:
        left.legend(fontsize=6)
    plain_log_ticks(left)
    _plot_law(right, result)
    plain_log_ticks(right)
    fig.tight_layout()
    return fig


def _plot_law(ax: Any, result: CapacityGapResult) -> None:
    curves = result.curves
    markers = {"interior": "o", "at least": "^", "at most": "v"}
    for status, rows in curves.groupby("status"):
        if "teacher_star_lo" in rows and status == "interior":
            err = np.vstack([rows["teacher_star"] - rows["teacher_star_lo"], rows["teacher_star_hi"] - rows["teacher_star"]])
            ax.errorbar(rows["params"], rows["teacher_star"], yerr=np.nan_to_num(err), fmt="o", ms=4, color="C0", label=status)
        else:
            ax.scatter(rows["params"], rows["teacher_star"], marker=markers[status], s=20, color="C0" if status == "interior" else "grey", label=status)
    s = np.geomspace(curves["params"].min() / 1.5, curves["params"].max() * 1.5, 100)
    zhang = PRESETS["zhang2023"]["law"]
    ax.plot(s, teacher_scale(s, zhang["slope"], zhang["intercept"]), ls="--", color="grey", lw=1, label="preset (Zhang et al.): T* = 2.5 S")
    if result.fit is not None:
        law = result.fit.law
        t = teacher_scale(s, law.slope, law.intercept)
        ax.plot(s[t > 0], t[t > 0], color="C1", lw=1, label=f"fitted: T* = {law.slope:.3g} S {law.intercept:+.3g}")
    title = "law of capacity gap: fitted vs preset" if result.fit is not None else "law of capacity gap: preset only (not fitted)"
    ax.set(xscale="log", yscale="log", xlabel="student parameters S", ylabel="optimal teacher T*", title=title)
    ax.legend(fontsize=7)


def predict_sizes(law: CapacityGapCoefficients, student: ArrayLike | None = None, teacher: ArrayLike | None = None,
                  level: float = 0.95) -> list[dict[str, Any]]:
    """Rows {student_params, teacher_params[, lo, hi, note]}: the optimal teacher of each ``student``
    size, or the student each ``teacher`` suits best; intervals are ``level`` percentiles over the
    law's bootstrap samples, NaN (with the reason in ``note``) where one misses its prediction."""
    check_level(level)
    if student is not None:
        given, wanted, values, line = "student_params", "teacher_params", optimal_teacher(student, law.law), teacher_scale
    else:
        given, wanted, values, line = "teacher_params", "student_params", optimal_student(teacher, law.law), student_scale
    sizes = np.asarray(student if student is not None else teacher, dtype=float)
    rows: list[dict[str, Any]] = [{given: float(x), wanted: float(y)} for x, y in zip(sizes, values)]
    if law.bootstrap:
        slope = np.array([s.slope for s in law.bootstrap])[:, None]
        intercept = np.array([s.intercept for s in law.bootstrap])[:, None]
        draws = line(sizes, slope, intercept)
        lo, hi, holds = interval_around(values, draws, level)
        for row, a, b, note in zip(rows, lo, hi, interval_notes(draws, holds)):
            row["lo"], row["hi"], row["note"] = float(a), float(b), note
    return rows

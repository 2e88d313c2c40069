"""How certain a pilot makes a prediction, by simulation (issue 12): plant coefficients, draw the pilot's
losses with noise many times, refit both laws on every replicate, and look at the spread of the target
prediction across replicates.

A pilot (:class:`Pilot`) is supervised runs (N, D), of which some are teachers, and distilled runs
(N_S, D_S, teacher). Replicate r draws every supervised loss as L(N, D) exp(noise z) (Busbridge Eq. 1)
and every student's as L_S(N_S, D_S, L_T) exp(noise z) (Eq. 8) with L_T its teacher's *drawn* loss, as a
real pilot measures it. The fits are the tool's (Huber on log losses, :mod:`distlaw.fitting`), started
from the planted coefficients: all designs x replicates are one batch (:func:`distlaw.fitting.batch.
fit_problems`, designs padded to a common run count with zero weights), first the supervised law, then
the distillation law on each replicate's own Ltilde_S. Starting at the truth measures the estimator's
sampling spread around the optimum it would find; it does not model a multi-start fit missing it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from distlaw.fitting.batch import fit_problems
from distlaw.fitting.bootstrap import resample_weights
from distlaw.fitting.models import DISTILLATION, SUPERVISED
from distlaw.design.pilot import Measured, Pilot, Target, as_targets
from distlaw.laws import Coefficients, student_loss, supervised_loss
from distlaw.planning.lawbatch import LawBatch


def _padded(columns: Sequence[Sequence[np.ndarray]], reps: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Stack per-design column arrays (design d: arrays of n_d values) into (designs * reps, n_max) arrays
    (each design repeated ``reps`` times), padding with the design's first run and a zero weight."""
    n_max = max(len(cols[0]) for cols in columns)
    stacked = []
    for j in range(len(columns[0])):
        rows = [np.pad(cols[j], (0, n_max - len(cols[j])), mode="edge") for cols in columns]
        stacked.append(np.repeat(np.array(rows, dtype=float), reps, axis=0))
    weights = np.repeat(np.array([[1.0] * len(c[0]) + [0.0] * (n_max - len(c[0])) for c in columns]), reps, axis=0)
    return stacked, weights


@dataclass(frozen=True)
class Draws:
    """Replicated pilot data, one problem a row: supervised (N, D, loss) and distilled (N_S, D_S, L_T, loss),
    with weights (0: padding)."""

    sup: dict[str, np.ndarray]
    sup_weights: np.ndarray
    dist: dict[str, np.ndarray]
    dist_weights: np.ndarray

    def tiled(self, k: int, rng: np.random.Generator) -> Draws:
        """Every problem repeated ``k`` times with bootstrap weights: its runs resampled with replacement
        (supervised and distilled runs separately, as ``distlaw fit --bootstrap``), padding kept at 0."""
        def resample(weights: np.ndarray) -> np.ndarray:
            out = np.zeros((len(weights) * k, weights.shape[1]))
            for i, row in enumerate(weights):
                real = np.flatnonzero(row > 0)
                out[i * k : (i + 1) * k, real] = resample_weights(len(real), k, rng)
            return out
        rep = lambda cols: {c: np.repeat(v, k, axis=0) for c, v in cols.items()}  # noqa: E731
        return Draws(rep(self.sup), resample(self.sup_weights), rep(self.dist), resample(self.dist_weights))


def _kept(drawn: np.ndarray, measured: np.ndarray | None) -> np.ndarray:
    return drawn if measured is None else np.where(np.isnan(measured), drawn, measured)


def draw(pilots: Sequence[Pilot], truth: Coefficients, *, noise: float, replicates: int, rng: np.random.Generator,
         distilled: bool = True, measured: Sequence[Measured] | None = None) -> Draws:
    """Losses of every pilot ``replicates`` times: L exp(noise z) from ``truth``; a student's teacher loss is
    its teacher's drawn loss, as a real pilot measures it. ``measured`` (one per pilot): losses already
    observed, kept instead of drawn (active design). Rows: pilot-major, replicate-minor."""
    (sup_n, sup_d), sup_w = _padded([(p.sup_params, p.sup_tokens) for p in pilots], replicates)
    sup_loss = supervised_loss(sup_n, sup_d, truth.require("supervised")) * np.exp(noise * rng.standard_normal(sup_n.shape))
    if measured is not None:
        sup_loss = _kept(sup_loss, _padded([(m.sup_loss,) for m in measured], replicates)[0][0])
    sup = {"N": sup_n, "D": sup_d, "loss": sup_loss}
    if not distilled:
        return Draws(sup, sup_w, {}, np.zeros((len(sup_n), 0)))
    (ns, ds, teacher), dist_w = _padded([(p.dist_params, p.dist_tokens, p.dist_teacher) for p in pilots], replicates)
    known_lt, known_loss = _padded([(m.dist_teacher_loss, m.dist_loss) for m in measured], replicates)[0] if measured else (None, None)
    lt = _kept(np.take_along_axis(sup_loss, teacher.astype(int), axis=1), known_lt)
    loss = _kept(student_loss(ns, ds, lt, truth) * np.exp(noise * rng.standard_normal(ns.shape)), known_loss)
    return Draws(sup, sup_w, {"N": ns, "D": ds, "LT": lt, "loss": loss}, dist_w)


def stack(draws: Sequence[Draws]) -> Draws:
    """Draws of several calls as one batch (rows in order), padded to a common run count with zero weights."""
    def joined(parts: Sequence[dict[str, np.ndarray]], weights: Sequence[np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        width = max(w.shape[1] for w in weights)
        pad = lambda a: np.pad(a, ((0, 0), (0, width - a.shape[1])), mode="edge") if a.shape[1] else np.ones((len(a), width))  # noqa: E731
        columns = {c: np.concatenate([pad(p[c]) for p in parts]) for c in parts[0]}
        return columns, np.concatenate([np.pad(w, ((0, 0), (0, width - w.shape[1]))) for w in weights])

    sup, sup_w = joined([d.sup for d in draws], [d.sup_weights for d in draws])
    if not draws[0].dist:
        return Draws(sup, sup_w, {}, np.zeros((len(sup_w), 0)))
    dist, dist_w = joined([d.dist for d in draws], [d.dist_weights for d in draws])
    return Draws(sup, sup_w, dist, dist_w)


def fit_rows(draws: Draws, distilled: bool, start_sup: Mapping[str, float] | np.ndarray,
             start_dist: Mapping[str, float] | np.ndarray | None,
             fixed: Mapping[str, Mapping[str, float]] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Fit the supervised law on every row of ``draws`` and, when ``distilled``, the distillation law on each
    row's own Ltilde_S (Eq. 8): (supervised fits, distillation fits or None); failed rows are NaN."""
    fixed = fixed or {}
    sup = draws.sup
    sup_fit = fit_problems(SUPERVISED, sup, sup["loss"], start_sup, weights=draws.sup_weights, fixed=fixed.get("supervised"))
    if not distilled:
        return sup_fit, None
    dist = draws.dist
    with np.errstate(all="ignore"):  # failed fits are NaN rows
        ltilde = np.exp(LawBatch.rows(sup_fit).log_supervised(np.log(dist["N"]), np.log(dist["D"])))
    ok = np.isfinite(ltilde).all(1)
    ltilde[~ok] = 1.0  # failed supervised fits: the row is dropped below
    dist_fit = fit_problems(DISTILLATION, {**dist, "Ltilde": ltilde}, dist["loss"], start_dist, weights=draws.dist_weights,
                            fixed=fixed.get("distillation"))
    dist_fit[~ok] = np.nan
    return sup_fit, dist_fit


def predict_rows(sup_fit: np.ndarray, dist_fit: np.ndarray | None, target: Target) -> np.ndarray:
    """The target's loss under every row's fits (Eq. 1, or Eq. 8 with the row's own Ltilde_S); NaN for failed rows."""
    with np.errstate(all="ignore"):  # failed fits are NaN rows
        if target.teacher_loss is None:
            return np.exp(LawBatch.rows(sup_fit).log_supervised(np.log([[target.params]]), np.log([[target.tokens]])))[:, 0]
        log_ls = LawBatch.rows(sup_fit, dist_fit).log_student(*np.log([[target.params], [target.tokens], [target.teacher_loss]]))
    return np.exp(log_ls)


def refit(draws: Draws, target: Target, start_sup: Mapping[str, float] | np.ndarray, start_dist: Mapping[str, float] | np.ndarray | None,
          fixed: Mapping[str, Mapping[str, float]] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Fit both laws on every row of ``draws`` and predict the target: (predictions, supervised fits,
    distillation fits)."""
    sup_fit, dist_fit = fit_rows(draws, target.teacher_loss is not None, start_sup, start_dist, fixed)
    return predict_rows(sup_fit, dist_fit, target), sup_fit, dist_fit


def _starts(coefficients: Coefficients, distilled: bool) -> tuple[dict[str, float], dict[str, float] | None]:
    return coefficients.require("supervised").as_dict(), coefficients.require("distillation").as_dict() if distilled else None


def simulate(
    pilots: Sequence[Pilot],
    truth: Coefficients,
    target: Target | Sequence[Target],
    *,
    noise: float = 0.005,
    replicates: int = 40,
    seed: int = 0,
    start: Coefficients | None = None,
    fixed: Mapping[str, Mapping[str, float]] | None = None,
) -> np.ndarray:
    """Target predictions (pilots, replicates) from refits of noisy losses drawn from ``truth``; for several
    targets (a sequence), (pilots, replicates, targets), every target predicted from the same fits.

    ``start`` (default: ``truth``) is where every fit begins; ``fixed`` holds coefficients per law
    (``{"supervised": {"gamma": 1.0}}``) as ``distlaw fit --fix`` would."""
    targets = as_targets(target)
    distilled = any(t.teacher_loss is not None for t in targets)
    draws = draw(pilots, truth, noise=noise, replicates=replicates, rng=np.random.default_rng(seed), distilled=distilled)
    fits = fit_rows(draws, distilled, *_starts(start or truth, distilled), fixed=fixed)
    predictions = np.stack([predict_rows(*fits, t).reshape(len(pilots), replicates) for t in targets], axis=-1)
    return predictions[..., 0] if isinstance(target, Target) else predictions


def coverage(
    pilot: Pilot,
    truth: Coefficients,
    target: Target,
    *,
    noise: float = 0.005,
    replicates: int = 40,
    bootstrap: int = 100,
    level: float = 0.9,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a user of this pilot would be told, ``replicates`` times: the target prediction of each
    replicate's fit and its ``level`` bootstrap interval (``bootstrap`` resamples, each warm-started from
    the replicate's fit, as ``distlaw fit --bootstrap``). Returns (estimates, lower, upper)."""
    from distlaw.intervals import interval_around

    rng = np.random.default_rng(seed)
    distilled = target.teacher_loss is not None
    draws = draw([pilot], truth, noise=noise, replicates=replicates, rng=rng, distilled=distilled)
    estimates, sup_fit, dist_fit = refit(draws, target, *_starts(truth, distilled))
    resampled = draws.tiled(bootstrap, rng)
    start_dist = None if dist_fit is None else np.repeat(dist_fit, bootstrap, axis=0)
    samples, _, _ = refit(resampled, target, np.repeat(sup_fit, bootstrap, axis=0), start_dist)
    lower, upper, _ = interval_around(estimates, samples.reshape(replicates, bootstrap).T, level)
    return estimates, lower, upper

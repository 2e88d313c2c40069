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
from dataclasses import dataclass, field

import numpy as np

from distlaw.fitting.batch import fit_problems
from distlaw.fitting.models import DISTILLATION, SUPERVISED
from distlaw.laws import Coefficients, student_loss, supervised_loss

TEACHER_INFERENCE = 2.0  # forward FLOPs per parameter and token of an online teacher (Eq. 9)


@dataclass(frozen=True)
class Pilot:
    """Runs of a pilot: supervised (``sup_params``, ``sup_tokens``) and distilled (``dist_params``,
    ``dist_tokens``, ``dist_teacher``: index of the teacher among the supervised runs)."""

    sup_params: np.ndarray
    sup_tokens: np.ndarray
    dist_params: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dist_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dist_teacher: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    label: str = ""

    @property
    def runs(self) -> int:
        return len(self.sup_params) + len(self.dist_params)

    def flops(self) -> float:
        """Training compute 6 N D of every run plus online teacher inference 2 N_T D_S (Eq. 9)."""
        sup = 6.0 * np.sum(self.sup_params * self.sup_tokens)
        teachers = self.sup_params[self.dist_teacher] if len(self.dist_params) else np.zeros(0)
        dist = np.sum((6.0 * self.dist_params + TEACHER_INFERENCE * teachers) * self.dist_tokens)
        return float(sup + dist)


@dataclass(frozen=True)
class Target:
    """The prediction a pilot is for: a student of ``params`` on ``tokens``, distilled from a teacher of
    loss ``teacher_loss`` (None: trained supervised)."""

    params: float
    tokens: float
    teacher_loss: float | None = None

    def truth(self, coefficients: Coefficients) -> float:
        if self.teacher_loss is None:
            return float(supervised_loss(self.params, self.tokens, coefficients.require("supervised")))
        return float(student_loss(self.params, self.tokens, self.teacher_loss, coefficients))


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


def simulate(
    pilots: Sequence[Pilot],
    truth: Coefficients,
    target: Target,
    *,
    noise: float = 0.005,
    replicates: int = 40,
    seed: int = 0,
    start: Coefficients | None = None,
    fixed: Mapping[str, Mapping[str, float]] | None = None,
) -> np.ndarray:
    """Target predictions (pilots, replicates) from refits of noisy losses drawn from ``truth``.

    ``start`` (default: ``truth``) is where every fit begins, the prior the designer believes when
    ``truth`` is a perturbation of it; ``fixed`` holds coefficients per law (``{"supervised": {"gamma":
    1.0}}``) as ``distlaw fit --fix`` would."""
    fixed = fixed or {}
    start = start or truth
    rng = np.random.default_rng(seed)
    reps, n_pilots = replicates, len(pilots)
    sup_cols, sup_w = _padded([(p.sup_params, p.sup_tokens) for p in pilots], reps)
    sup_n, sup_d = sup_cols
    sup_obs = supervised_loss(sup_n, sup_d, truth.require("supervised")) * np.exp(noise * rng.standard_normal(sup_n.shape))
    sup_fit = fit_problems(SUPERVISED, {"N": sup_n, "D": sup_d}, sup_obs, start.require("supervised").as_dict(), weights=sup_w,
                           fixed=fixed.get("supervised"))
    if target.teacher_loss is None:
        return _supervised_at(sup_fit, target).reshape(n_pilots, reps)

    dist_cols, dist_w = _padded([(p.dist_params, p.dist_tokens, p.dist_teacher) for p in pilots], reps)
    ns, ds, teacher = dist_cols[0], dist_cols[1], dist_cols[2].astype(int)
    lt = np.take_along_axis(sup_obs, teacher, axis=1)  # a student sees its teacher's measured loss
    obs = student_loss(ns, ds, lt, truth) * np.exp(noise * rng.standard_normal(ns.shape))
    ltilde = _supervised(sup_fit, ns, ds)
    ok = np.isfinite(ltilde).all(1)
    ltilde[~ok] = 1.0  # failed supervised fits: the row is dropped below
    dist_fit = fit_problems(DISTILLATION, {"N": ns, "D": ds, "LT": lt, "Ltilde": ltilde}, obs, start.require("distillation").as_dict(),
                            weights=dist_w, fixed=fixed.get("distillation"))
    dist_fit[~ok] = np.nan
    log = DISTILLATION.prepare({"N": np.array([target.params]), "D": np.array([target.tokens]),
                                "LT": np.array([target.teacher_loss]), "Ltilde": np.ones(1)})
    ltilde_target = _supervised_at(sup_fit, target)
    return _student_at(dist_fit, log, ltilde_target).reshape(n_pilots, reps)


def _supervised(fitted: np.ndarray, n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Supervised law per problem row: coefficients (P, 6) at (P, k) sizes and tokens."""
    e, a, b, alpha, beta, gamma = (fitted[:, j : j + 1] for j in range(6))
    with np.errstate(all="ignore"):
        return e + (a / n**alpha + b / d**beta) ** gamma


def _supervised_at(fitted: np.ndarray, target: Target) -> np.ndarray:
    return _supervised(fitted, np.array([[target.params]]), np.array([[target.tokens]]))[:, 0]


def _student_at(fitted: np.ndarray, log: Mapping[str, np.ndarray], ltilde: np.ndarray) -> np.ndarray:
    """Eq. 8 per problem row at the target, with each row's own Ltilde_S."""
    from distlaw.laws import log_student_loss

    a, b, alpha, beta, gamma, c0, c1, f1, d1 = (fitted[:, j] for j in range(9))
    with np.errstate(all="ignore"):
        return np.exp(log_student_loss(log["log_N"], log["log_D"], log["log_LT"], np.log(ltilde), np.log(a), np.log(b), alpha, beta,
                                       gamma, c0, c1, f1, np.log(d1)))

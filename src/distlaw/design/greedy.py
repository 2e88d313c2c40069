"""Pilot runs chosen one at a time for the information they add per FLOP (greedy c-optimal design).

The pool (:class:`Pool`) is every run a pilot may contain: supervised runs on a grid of sizes x
tokens-per-parameter ratios, and distilled runs (student size x ratio x teacher), a teacher being one of
the supervised runs (trained once, then teaching every student that names it). Starting from a weak prior
precision, each step adds the run (with its teacher, when the teacher is not in yet) whose rank-one
update (Sherman-Morrison) most reduces the target's linearised variance (:mod:`distlaw.design.linear`)
per FLOP, summed over an ensemble of priors so that the choice holds when the prior is off; it stops at
the budget or at ``max_runs``.

Active design (``distlaw design --next``, :mod:`distlaw.design.active`) starts the same loop from the
information of runs already finished (``covariances``), with the finished supervised runs in the pool as
teachers that cost nothing more to train (``finished``; their measured losses in ``Pool.sup_loss``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from distlaw.design.pilot import TEACHER_INFERENCE, Pilot, Target, as_targets
from distlaw.laws import Coefficients, supervised_loss

SUPERVISED_RATIOS = (5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0)
TEACHER_RATIOS = (20.0, 80.0, 320.0)
STUDENT_RATIOS = (10.0, 20.0, 40.0, 80.0, 160.0, 320.0)
PRIOR_SD = 1.0  # weak prior: one unit of every fit-space coefficient (log scales, exponents)


@dataclass(frozen=True)
class Pool:
    """Candidate runs: supervised (``sup_params``, ``sup_tokens``) and distilled (``dist_params``,
    ``dist_tokens``, ``dist_teacher`` indexing the supervised candidates)."""

    sup_params: np.ndarray
    sup_tokens: np.ndarray
    dist_params: np.ndarray
    dist_tokens: np.ndarray
    dist_teacher: np.ndarray
    sup_loss: np.ndarray | None = None  # measured losses of supervised runs already trained (NaN: not trained)

    @classmethod
    def grid(cls, sizes: Sequence[float], teacher_sizes: int = 4, min_tokens: float = 0.0) -> Pool:
        """Every size at every supervised ratio; the ``teacher_sizes`` largest sizes teach at M = 20, 80,
        320; every smaller size is distilled from each teacher at every student ratio. Runs of fewer than
        ``min_tokens`` tokens are left out (runs of a few optimizer steps sit in the warm-up, not on the laws)."""
        sizes = np.unique(np.asarray(sizes, dtype=float))
        pairs = [(n, n * m) for n in sizes for m in sorted(set(SUPERVISED_RATIOS) | set(TEACHER_RATIOS)) if n * m >= min_tokens]
        sup_n, sup_d = (np.array(x, dtype=float) for x in zip(*pairs)) if pairs else (np.zeros(0), np.zeros(0))
        teachers = [i for i, (n, d) in enumerate(pairs) if n in sizes[-teacher_sizes:] and d / n in TEACHER_RATIOS]
        dist = [(s, s * m, t) for t in teachers for s in sizes if s < sup_n[t] for m in STUDENT_RATIOS if s * m >= min_tokens]
        dn, dd, dt = (np.array(x) for x in zip(*dist)) if dist else (np.zeros(0), np.zeros(0), np.zeros(0))
        return cls(sup_n, sup_d, dn, dd, dt.astype(int))

    def sup_cost(self) -> np.ndarray:
        return 6.0 * self.sup_params * self.sup_tokens

    def dist_cost(self) -> np.ndarray:
        return (6.0 * self.dist_params + TEACHER_INFERENCE * self.sup_params[self.dist_teacher]) * self.dist_tokens


class _Criterion:
    """The linearised variance of the targets (summed over targets and an ensemble of priors), with rank-one
    updates."""

    def __init__(self, pool: Pool, priors: Sequence[Coefficients], target: Target | Sequence[Target], noise: float,
                 covariances: Sequence[np.ndarray] | None = None) -> None:
        from distlaw.design import linear  # torch: pools are built and priced without it

        self.rows_sup, self.rows_dist, self.grads, self.cov = [], [], [], []
        for m, prior in enumerate(priors):
            lt = supervised_loss(pool.sup_params, pool.sup_tokens, prior.require("supervised"))
            if pool.sup_loss is not None:
                lt = np.where(np.isnan(pool.sup_loss), lt, pool.sup_loss)  # a trained teacher's loss is data
            self.rows_sup.append(linear.jacobian(prior, pool.sup_params, pool.sup_tokens))
            self.rows_dist.append(linear.jacobian(prior, pool.dist_params, pool.dist_tokens, lt[pool.dist_teacher]))
            self.grads.append(np.vstack([linear.jacobian(prior, t.params, t.tokens, t.teacher_loss)[0] for t in as_targets(target)]))
            weak = np.eye(linear.N_THETA) * (PRIOR_SD / noise) ** 2  # in units of the noise: rows are J / noise
            self.cov.append(weak if covariances is None else np.array(covariances[m]))

    def gains(self, kind: str) -> np.ndarray:
        """Reduction of the summed variance by adding each candidate of ``kind`` alone."""
        total = 0.0
        for m, cov in enumerate(self.cov):
            rows = (self.rows_sup if kind == "sup" else self.rows_dist)[m]
            cr = rows @ cov
            total = total + ((cr @ self.grads[m].T) ** 2).sum(axis=1) / (1.0 + np.einsum("ij,ij->i", cr, rows))
        return total

    def add(self, kind: str, index: int) -> None:
        for m, cov in enumerate(self.cov):
            row = (self.rows_sup if kind == "sup" else self.rows_dist)[m][index]
            cr = cov @ row
            self.cov[m] = cov - np.outer(cr, cr) / (1.0 + row @ cr)

    def variance(self) -> float:
        """Mean over priors of the sum over targets of g^T C g (log-loss units, noise included)."""
        return float(np.mean([np.einsum("ti,ij,tj->", g, c, g) for g, c in zip(self.grads, self.cov)]))


def greedy_pilot(pool: Pool, priors: Sequence[Coefficients], target: Target | Sequence[Target], budget: float, *, noise: float = 0.005,
                 max_runs: int = 64, finished: Sequence[int] = (), covariances: Sequence[np.ndarray] | None = None,
                 per_flop: bool = True) -> Pilot:
    """Runs of ``pool`` added by the best reduction of the target's (or targets' summed) variance per FLOP
    (``per_flop=False``: per run) until ``budget`` or ``max_runs`` new runs. ``finished``: supervised runs of
    the pool already trained (never chosen again, teaching for free; in the pilot only when they teach), their
    information in ``covariances`` (per prior, the target-variance covariance they leave, in units of the noise)."""
    crit = _Criterion(pool, priors, target, 1.0, covariances)
    sup_cost, dist_cost = pool.sup_cost(), pool.dist_cost()
    done = [int(i) for i in finished]
    chosen_sup: list[int] = list(done)
    chosen_dist: list[int] = []
    spent = 0.0
    while (new := len(chosen_sup) - len(done) + len(chosen_dist)) < max_runs:
        g_sup, g_dist = crit.gains("sup"), crit.gains("dist")
        new_teacher = ~np.isin(pool.dist_teacher, chosen_sup)
        d_cost = dist_cost + np.where(new_teacher, sup_cost[pool.dist_teacher], 0.0)
        g_dist = g_dist + np.where(new_teacher, g_sup[pool.dist_teacher], 0.0)  # the teacher's own run informs too
        g_sup[chosen_sup], g_dist[chosen_dist] = -np.inf, -np.inf
        room = max_runs - new
        g_sup[sup_cost > budget - spent] = -np.inf
        g_dist[(d_cost > budget - spent) | (new_teacher & (room < 2))] = -np.inf
        s_unit, d_unit = (sup_cost, d_cost) if per_flop else (np.ones_like(sup_cost), 1.0 + new_teacher)
        s, d = int(np.argmax(g_sup / s_unit)), int(np.argmax(g_dist / d_unit)) if len(g_dist) else -1
        best_sup = g_sup[s] / s_unit[s]
        best_dist = g_dist[d] / d_unit[d] if d >= 0 else -np.inf
        if not np.isfinite(max(best_sup, best_dist)):
            break
        if best_sup >= best_dist:
            chosen_sup.append(s)
            crit.add("sup", s)
            spent += sup_cost[s]
        else:
            t = int(pool.dist_teacher[d])
            if t not in chosen_sup:
                chosen_sup.append(t)
                crit.add("sup", t)
            chosen_dist.append(d)
            crit.add("dist", d)
            spent += d_cost[d]
    teaching = {int(pool.dist_teacher[d]) for d in chosen_dist}
    kept = [i for i in chosen_sup if i not in done or i in teaching]
    where = {t: i for i, t in enumerate(kept)}
    return Pilot(pool.sup_params[kept], pool.sup_tokens[kept], pool.dist_params[chosen_dist],
                 pool.dist_tokens[chosen_dist], np.array([where[int(pool.dist_teacher[d])] for d in chosen_dist], dtype=int),
                 f"greedy: {len(kept)} supervised + {len(chosen_dist)} distilled runs")

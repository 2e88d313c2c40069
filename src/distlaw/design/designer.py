"""``distlaw design``: the pilot that makes a target prediction most certain for a budget (issue 12).

1. Candidates: greedy c-optimal pilots (:mod:`distlaw.design.greedy`) from pools of several size ranges
   and teacher counts, chosen robustly over the prior and perturbations of it (``perturbed_priors``:
   exponents and E off by realistic amounts), plus fixed-M x fixed-M layouts (:mod:`distlaw.design.layouts`)
   and the usual log-uniform grid, every one spending the budget.
2. Scores by simulation (:mod:`distlaw.design.simulate`): each candidate's losses are drawn from the prior
   with noise ``replicates`` times, both laws refitted, and the target predicted; the score is the central
   ``level`` interval of predicted / true target loss. The best few (and the grid, for comparison) are
   simulated again with the truth off the prior, and the choice is the narrowest on average over the
   prior and the perturbed truths (the worst case is reported beside it). Replicate fits
   start at the truth (the multi-start fit is built to find the optimum), which would hide a direction
   the pilot leaves unidentified (too few runs of a law, one student size, one teacher loss); the linearised variance
   (:mod:`distlaw.design.linear`) is infinite there, and such candidates are dropped before simulation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distlaw.design.greedy import Pool, greedy_pilot
from distlaw.design.layouts import candidates as layout_candidates
from distlaw.design.layouts import log_uniform_grid
from distlaw.design.pilot import Pilot, Target, as_targets, check_budget, family_sizes, half_width
from distlaw.design.simulate import simulate
from distlaw.errors import DistlawError
from distlaw.laws import Coefficients

SPANS = (10.0, 30.0, 100.0)
TOP_FRACTIONS = (1.0, 0.5, 0.25)
FINALISTS = 5


def perturbed_priors(prior: Coefficients, exponent: float = 0.1, floor: float = 0.05) -> list[Coefficients]:
    """The prior with both laws' exponents (alpha, beta) scaled by 1 +- ``exponent`` and E by 1 +- ``floor``."""
    sup, dist = prior.require("supervised").as_dict(), prior.require("distillation").as_dict()
    out = []
    for sign in (1.0, -1.0):
        s = {**sup, "alpha": sup["alpha"] * (1 + sign * exponent), "beta": sup["beta"] * (1 - sign * exponent),
             "E": sup["E"] * (1 + sign * floor)}
        d = {**dist, "alpha": dist["alpha"] * (1 + sign * exponent), "beta": dist["beta"] * (1 - sign * exponent)}
        out.append(Coefficients.from_dict({"supervised": s, "distillation": d}, source=f"{prior.name} perturbed"))
    return out


@dataclass(frozen=True, eq=False)
class Candidate:
    pilot: Pilot
    kind: str  # greedy, layout or grid
    width: float  # central interval of predicted / true target loss at the prior
    worst_width: float | None = None  # the same, worst over the perturbed truths (finalists only)
    mean_width: float | None = None  # the mean over the prior and the perturbed truths (finalists only)

    @property
    def score(self) -> float:
        """What the choice minimises: the mean width over the prior and its perturbations (finalists), else
        the width at the prior."""
        return self.mean_width if self.mean_width is not None else self.width


@dataclass(frozen=True)
class Design:
    targets: tuple[Target, ...]
    truths: tuple[float, ...]  # each target under the prior
    candidates: list[Candidate]  # sorted best first
    level: float

    @property
    def best(self) -> Candidate:
        return self.candidates[0]


def candidate_pilots(budget: float, prior: Coefficients, target: Target | Sequence[Target], *, max_params: float, min_params: float,
                     noise: float, max_runs: int, sizes: Callable[[float, float], np.ndarray] | None = None,
                     min_tokens: float = 0.0) -> list[tuple[str, Pilot]]:
    """Greedy pilots over size ranges and teacher counts and fixed-M layouts, each distinct and identifying
    every target (:func:`identifies`), then the log-uniform grid (the baseline, kept even when it does not)."""
    top = check_budget(budget, max_params, min_params)
    family = None if sizes is None else sizes(min_params, max_params)
    sizes = sizes or (lambda lo, hi: np.geomspace(lo, hi, 9))
    priors = [prior, *perturbed_priors(prior)]
    greedy: list[Pilot] = []
    for fraction in TOP_FRACTIONS:
        for span in SPANS:
            hi = top * fraction
            lo = max(min_params, hi / span)
            grid = np.unique(sizes(lo, hi))
            if len(grid) < 3:
                continue
            for teachers in (2, 4):
                runs = Pool.grid(grid, teacher_sizes=teachers, min_tokens=min_tokens)
                if not len(runs.dist_params):  # nothing to distil within the limits
                    continue
                pilot = greedy_pilot(runs, priors, target, budget, noise=noise, max_runs=max_runs)
                if len(pilot.dist_params) and pilot.runs >= 15:
                    greedy.append(pilot)
    layouts = [layout.pilot() for layout in layout_candidates(budget, top, min_params) if layout.n_teachers == 2]
    conformed = [p for p in (conform(p, budget, min_tokens, family) for p in layouts) if p is not None]
    useful = lambda pilots: [p for p in _distinct(pilots) if identifies(prior, p, target)]  # noqa: E731
    out = [("greedy", p) for p in useful(greedy)] + [("layout", p) for p in useful(conformed)[:6]]
    grid = conform(log_uniform_grid(budget, top).pilot(), budget, min_tokens, family)
    if grid is None:
        raise DistlawError(_no_pilot(budget, min_params, max_params, min_tokens))
    out.append(("grid", grid))
    return out


def identifies(prior: Coefficients, pilot: Pilot, target: Target | Sequence[Target]) -> bool:
    """Whether ``pilot`` has the runs to identify every target: a finite linearised variance (enough runs of each
    law, student sizes and teacher losses for the coefficients the target depends on)."""
    from distlaw.design.linear import pilot_variance  # torch

    return all(np.isfinite(pilot_variance(prior, pilot, t)) for t in as_targets(target))


def _distinct(pilots: Sequence[Pilot]) -> list[Pilot]:
    """``pilots`` without repeats (pools of different ranges can give the same greedy pilot), first kept."""
    seen: set[tuple] = set()
    out = []
    for p in pilots:
        key = (tuple(sorted(zip(p.sup_params, p.sup_tokens))),
               tuple(sorted(zip(p.dist_params, p.dist_tokens, p.sup_params[p.dist_teacher], p.sup_tokens[p.dist_teacher]))))
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _no_pilot(budget: float, min_params: float, max_params: float, min_tokens: float) -> str:
    return (f"no pilot of {budget:.3g} FLOPs fits these limits (sizes {min_params:.3g} to {max_params:.3g}, runs of at least "
            f"{min_tokens:.3g} tokens, each teacher larger than its students, enough runs of each law to pin every target): "
            "raise --budget or "
            "--max-params, or lower --min-params or --min-tokens")


def conform(pilot: Pilot, budget: float, min_tokens: float, family: np.ndarray | None = None) -> Pilot | None:
    """A layout made of runs the lab trains within the limits, still spending ``budget``: each size moved to
    the nearest (in log) of the [model] family's ``family`` sizes (None: sizes kept), tokens per parameter
    kept, distillations from a teacher no larger than the student dropped; then every run's tokens scaled
    by one factor (runs below ``min_tokens`` raised to it, runs that became the same merged) so the pilot
    costs ``budget``. None when nothing distilled is left or the shortest runs alone exceed the budget."""
    def snap(n: np.ndarray) -> np.ndarray:
        if family is None:
            return n
        return family[np.abs(np.log(family)[None, :] - np.log(n)[:, None]).argmin(axis=1)]

    sup_n, dist_n = snap(pilot.sup_params), snap(pilot.dist_params)
    sup_m, dist_m = pilot.sup_tokens / pilot.sup_params, pilot.dist_tokens / pilot.dist_params
    keep = dist_n < sup_n[pilot.dist_teacher]
    if not keep.any():
        return None
    label = pilot.label if family is None else f"{pilot.label}, on the family's sizes {', '.join(f'{n:.4g}' for n in np.unique(sup_n))}"

    def scaled(factor: float) -> Pilot:
        sup = list(zip(sup_n, np.maximum(min_tokens, factor * sup_m * sup_n)))
        runs = list(dict.fromkeys(sup))
        where = {run: i for i, run in enumerate(runs)}
        dist = list(dict.fromkeys((n, max(min_tokens, factor * m * n), where[sup[t]])
                                  for n, m, t in zip(dist_n[keep], dist_m[keep], pilot.dist_teacher[keep])))
        (sn, sd), (dn, dd, dt) = zip(*runs), zip(*dist)
        return Pilot(np.array(sn), np.array(sd), np.array(dn), np.array(dd), np.array(dt, dtype=int), label)

    lo, hi = 0.0, 1.0
    if scaled(lo).flops() > budget:
        return None
    while scaled(hi).flops() < budget:
        hi *= 2.0
    for _ in range(60):  # cost grows with the factor: bisect to the budget
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if scaled(mid).flops() < budget else (lo, mid)
    return scaled(lo)


def _widths(predictions: np.ndarray, truth: float, level: float) -> np.ndarray:
    ratio = predictions / truth
    lo, hi = np.nanquantile(ratio, [(1 - level) / 2, (1 + level) / 2], axis=1)
    failed = np.isnan(ratio).mean(1) > 0.1
    return np.where(failed, np.inf, hi - lo)


def _mean_widths(predictions: np.ndarray, truths: Sequence[float], level: float) -> np.ndarray:
    """Per pilot, the mean over targets of the central ``level`` width of predicted / true (predictions:
    pilots x replicates x targets)."""
    return np.mean([_widths(predictions[..., j], t, level) for j, t in enumerate(truths)], axis=0)


def design_pilot(budget: float, target: Target | Sequence[Target], prior: Coefficients, *, noise: float = 0.005, max_params: float = 1e12,
                 min_params: float = 1e5, max_runs: int = 256, replicates: int = 40, level: float = 0.9, seed: int = 0,
                 min_tokens: float = 0.0, sizes: Callable[[float, float], np.ndarray] | None = None,
                 progress: Callable[[str], None] | None = None) -> Design:
    """The candidates for ``budget`` FLOPs, scored by simulation, best first (module docstring). Several
    targets: a pilot for all of them, scored by the mean of their widths."""
    targets = as_targets(target)
    truths = tuple(t.truth(prior) for t in targets)
    pool = candidate_pilots(budget, prior, targets, max_params=max_params, min_params=min_params, noise=noise, max_runs=max_runs, sizes=sizes,
                            min_tokens=min_tokens)
    if all(kind == "grid" for kind, _ in pool):
        raise DistlawError(_no_pilot(budget, min_params, max_params, min_tokens))
    if progress:
        progress(f"simulating {len(pool)} candidate pilots x {replicates} replicates")
    grid_index = next(i for i, (kind, _) in enumerate(pool) if kind == "grid")
    unidentified = np.zeros(len(pool), dtype=bool)  # only the grid can be: kept as the baseline, its interval is unbounded
    unidentified[grid_index] = not identifies(prior, pool[grid_index][1], targets)
    widths = _mean_widths(simulate([p for _, p in pool], prior, targets, noise=noise, replicates=replicates, seed=seed), truths, level)
    widths[unidentified] = np.inf
    order = np.argsort(widths)
    finalists = [int(i) for i in order[:FINALISTS]] + ([grid_index] if grid_index not in order[:FINALISTS] else [])
    seen: dict[int, list[float]] = {i: [float(widths[i])] for i in finalists}
    for k, perturbed in enumerate(perturbed_priors(prior)):
        if progress:
            progress(f"finalists under a perturbed truth ({k + 1}/2)")
        w = _mean_widths(simulate([pool[i][1] for i in finalists], perturbed, targets, noise=noise, replicates=replicates, seed=seed + 1 + k),
                         [t.truth(perturbed) for t in targets], level)
        for i, wi in zip(finalists, w):
            seen[i].append(np.inf if unidentified[i] else float(wi))
    cands = [Candidate(p, kind, float(widths[i]), max(seen[i]) if i in seen else None, float(np.mean(seen[i])) if i in seen else None)
             for i, (kind, p) in enumerate(pool)]
    cands.sort(key=lambda c: (c.mean_width is None, c.score))
    return Design(targets, truths, cands, level)


def grid_of(design: Design) -> Candidate:
    """The log-uniform grid among the candidates (the baseline every design is compared with)."""
    return next(c for c in design.candidates if c.kind == "grid")


def describe(candidates: Sequence[Candidate]) -> list[dict]:
    return [{"kind": c.kind, "label": c.pilot.label, "runs": c.pilot.runs, "supervised": len(c.pilot.sup_params),
             "distilled": len(c.pilot.dist_params), "flops": c.pilot.flops(), "width": c.width, "worst_width": c.worst_width,
             "mean_width": c.mean_width}
            for c in candidates]


def design_sweep(budget: float, target: Target | Sequence[Target], prior: Coefficients, out: Path, *, name: str = "pilot",
                 corpus: str = "shakespeare", tokenizer: str = "byte", seq_len: int = 128, aspect_ratio: int = 8, head_dim: int = 8,
                 optim: dict | None = None, **options) -> dict:
    """:func:`design_pilot` with the [model] family's sizes, the chosen pilot written to ``out`` as a sweep
    config (with ``optim``, e.g. ``{"batch_size": 8}``, as its [optim] table); returns the JSON record (targets
    with their predictions under the prior, candidates best first, choice, grid)."""
    from distlaw import __version__
    from distlaw.design.config import sweep_config, write_sweep_config

    result = design_pilot(budget, target, prior, sizes=family_sizes(aspect_ratio, head_dim), **options)
    best, grid = result.best, grid_of(result)
    several = len(result.targets) > 1
    header = [
        f"A pilot designed by distlaw {__version__} (distlaw design) to predict, under the prior {prior.name}:",
        *(f"  {t.label()} = {truth:.4f}" for t, truth in zip(result.targets, result.truths)),
        f"{best.pilot.runs} runs, {best.pilot.flops():.4g} FLOPs; expected {result.level:.0%} interval of the prediction"
        f"{' (mean over the targets)' if several else ''}",
        f"{half_width(best.score, '+-')} (the log-uniform grid of the same cost: {half_width(grid.score, '+-')}).",
        f"Run it: distlaw sweep run {out.name} --store {out.stem}.db",
    ]
    text = sweep_config(best.pilot, name, header=header, corpus=corpus, tokenizer=tokenizer, seq_len=seq_len, aspect_ratio=aspect_ratio,
                        head_dim=head_dim, max_params=max(1e9, float(best.pilot.sup_params.max()) * 2), optim=optim)
    write_sweep_config(text, out)
    described = describe(result.candidates)
    for row, cand in zip(described, result.candidates):
        row["score"] = cand.score
    return {
        "targets": [{**t.record(), "predicted": truth} for t, truth in zip(result.targets, result.truths)],
        "level": result.level, "chosen": described[0],
        "grid": described[next(i for i, c in enumerate(result.candidates) if c is grid)], "candidates": described, "out": str(out),
    }

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
   the pilot leaves unidentified; the linearised variance (:mod:`distlaw.design.linear`) is infinite
   there, and such candidates are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distlaw.design.greedy import Pool, greedy_pilot
from distlaw.design.layouts import candidates as layout_candidates
from distlaw.design.layouts import log_uniform_grid
from distlaw.design.pilot import Pilot, Target, check_budget, family_sizes
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
    target: Target
    truth: float
    candidates: list[Candidate]  # sorted best first
    level: float

    @property
    def best(self) -> Candidate:
        return self.candidates[0]


def candidate_pilots(budget: float, prior: Coefficients, target: Target, *, max_params: float, min_params: float,
                     noise: float, max_runs: int, sizes: Callable[[float, float], np.ndarray] | None = None,
                     min_tokens: float = 0.0) -> list[tuple[str, Pilot]]:
    """Greedy pilots over size ranges and teacher counts, fixed-M layouts and the log-uniform grid."""
    top = check_budget(budget, max_params, min_params)
    sizes = sizes or (lambda lo, hi: np.geomspace(lo, hi, 9))
    priors = [prior, *perturbed_priors(prior)]
    out: list[tuple[str, Pilot]] = []
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
                    out.append(("greedy", pilot))
    layouts = [layout.pilot() for layout in layout_candidates(budget, top, min_params) if layout.n_teachers == 2]
    out += [("layout", pilot) for pilot in [p for p in layouts if p.shortest_run() >= min_tokens][:6]]
    out.append(("grid", log_uniform_grid(budget, top).pilot()))
    return out


def _widths(predictions: np.ndarray, truth: float, level: float) -> np.ndarray:
    ratio = predictions / truth
    lo, hi = np.nanquantile(ratio, [(1 - level) / 2, (1 + level) / 2], axis=1)
    failed = np.isnan(ratio).mean(1) > 0.1
    return np.where(failed, np.inf, hi - lo)


def design_pilot(budget: float, target: Target, prior: Coefficients, *, noise: float = 0.005, max_params: float = 1e12,
                 min_params: float = 1e5, max_runs: int = 256, replicates: int = 40, level: float = 0.9, seed: int = 0,
                 min_tokens: float = 0.0, sizes: Callable[[float, float], np.ndarray] | None = None,
                 progress: Callable[[str], None] | None = None) -> Design:
    """The candidates for ``budget`` FLOPs, scored by simulation, best first (module docstring)."""
    truth = target.truth(prior)
    pool = candidate_pilots(budget, prior, target, max_params=max_params, min_params=min_params, noise=noise, max_runs=max_runs, sizes=sizes,
                            min_tokens=min_tokens)
    if all(kind == "grid" for kind, _ in pool):
        raise DistlawError(f"no pilot of {budget:.3g} FLOPs fits these limits (sizes {min_params:.3g} to {max_params:.3g}, runs of at least "
                           f"{min_tokens:.3g} tokens, a teacher larger than the {target.params:.3g}-parameter student): raise --budget or "
                           "--max-params, or lower --min-params or --min-tokens")
    if progress:
        progress(f"simulating {len(pool)} candidate pilots x {replicates} replicates")
    widths = _widths(simulate([p for _, p in pool], prior, target, noise=noise, replicates=replicates, seed=seed), truth, level)
    order = np.argsort(widths)
    grid_index = next(i for i, (kind, _) in enumerate(pool) if kind == "grid")
    finalists = [int(i) for i in order[:FINALISTS]] + ([grid_index] if grid_index not in order[:FINALISTS] else [])
    seen: dict[int, list[float]] = {i: [float(widths[i])] for i in finalists}
    for k, perturbed in enumerate(perturbed_priors(prior)):
        if progress:
            progress(f"finalists under a perturbed truth ({k + 1}/2)")
        t = target.truth(perturbed)
        w = _widths(simulate([pool[i][1] for i in finalists], perturbed, target, noise=noise, replicates=replicates, seed=seed + 1 + k),
                    t, level)
        for i, wi in zip(finalists, w):
            seen[i].append(float(wi))
    cands = [Candidate(p, kind, float(widths[i]), max(seen[i]) if i in seen else None, float(np.mean(seen[i])) if i in seen else None)
             for i, (kind, p) in enumerate(pool)]
    cands.sort(key=lambda c: (c.mean_width is None, c.score))
    return Design(target, truth, cands, level)


def grid_of(design: Design) -> Candidate:
    """The log-uniform grid among the candidates (the baseline every design is compared with)."""
    return next(c for c in design.candidates if c.kind == "grid")


def describe(candidates: Sequence[Candidate]) -> list[dict]:
    return [{"kind": c.kind, "label": c.pilot.label, "runs": c.pilot.runs, "supervised": len(c.pilot.sup_params),
             "distilled": len(c.pilot.dist_params), "flops": c.pilot.flops(), "width": c.width, "worst_width": c.worst_width,
             "mean_width": c.mean_width}
            for c in candidates]


def design_sweep(budget: float, target: Target, prior: Coefficients, out: Path, *, name: str = "pilot", corpus: str = "shakespeare",
                 tokenizer: str = "byte", seq_len: int = 128, aspect_ratio: int = 8, head_dim: int = 8,
                 optim: dict | None = None, **options) -> dict:
    """:func:`design_pilot` with the [model] family's sizes, the chosen pilot written to ``out`` as a sweep
    config (with ``optim``, e.g. ``{"batch_size": 8}``, as its [optim] table); returns the JSON record (target,
    prediction, candidates best first, choice, grid)."""
    from distlaw import __version__
    from distlaw.design.config import sweep_config, write_sweep_config

    result = design_pilot(budget, target, prior, sizes=family_sizes(aspect_ratio, head_dim), **options)
    best, grid = result.best, grid_of(result)
    lt = "" if target.teacher_loss is None else f", teacher loss {target.teacher_loss:.4g}"
    header = [
        f"A pilot designed by distlaw {__version__} (distlaw design) to predict the loss of a {target.params:.4g}-parameter student",
        f"on {target.tokens:.4g} tokens{lt}: {result.truth:.4f} under the prior {prior.name}.",
        f"{best.pilot.runs} runs, {best.pilot.flops():.4g} FLOPs; expected {result.level:.0%} interval of the prediction",
        f"+-{50 * best.score:.2f} % (the log-uniform grid of the same cost: +-{50 * grid.score:.2f} %).",
        f"Run it: distlaw sweep run {out.name} --store {out.stem}.db",
    ]
    text = sweep_config(best.pilot, name, header=header, corpus=corpus, tokenizer=tokenizer, seq_len=seq_len, aspect_ratio=aspect_ratio,
                        head_dim=head_dim, max_params=max(1e9, float(best.pilot.sup_params.max()) * 2), optim=optim)
    write_sweep_config(text, out)
    described = describe(result.candidates)
    for row, cand in zip(described, result.candidates):
        row["score"] = cand.score
    return {
        "target": {"params": target.params, "tokens": target.tokens, "teacher_loss": target.teacher_loss},
        "predicted": result.truth, "level": result.level, "chosen": described[0],
        "grid": described[next(i for i, c in enumerate(result.candidates) if c is grid)], "candidates": described, "out": str(out),
    }

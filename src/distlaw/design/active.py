"""``distlaw design --next K --store RUNS.db`` (issue 12, item 2): the K runs that most shrink a target's
interval given the runs a store has finished (active design).

1. The finished runs (the store's runs table, ``distlaw runs export``) are a pilot whose losses are known.
   Both laws are fitted to them with bootstrap (or a ``distlaw fit --bootstrap`` file is read); the bootstrap
   samples are the ensemble of plausible truths.
2. Candidates (:class:`distlaw.design.greedy.Pool`): the [model] family's sizes from the smallest finished
   size up to ``max_params``, supervised at every ratio, new teachers at the largest sizes, and students of
   those or of any finished supervised run (a finished teacher costs only its inference). The K runs are
   chosen greedily by the linearised information they add to the finished runs' (``greedy_pilot`` from the
   finished runs' covariance, summed over the ensemble): per FLOP within ``budget``, else per run.
3. Check by simulation (:mod:`distlaw.design.simulate`): for every ensemble member taken as the truth, the
   finished runs keep their observed losses and the new runs are drawn from that member with ``noise``;
   both laws are refitted (from the fit of the finished runs) and the target predicted. The expected
   interval is the central ``level`` range of predicted / true target loss over members and replicates:
   now (finished runs only), after the K runs, and after a naive alternative of the same cost
   (:func:`naive_runs`).
4. The K runs are written as a ``runs`` sweep config with the store's own [data], [optim], [distill] and
   [model] settings, a reused teacher listed as the same supervised run, so that ``distlaw sweep run`` into
   the same store finds it done (same name and key) and trains only the new runs.
"""

from __future__ import annotations

import math

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distlaw.design.greedy import STUDENT_RATIOS, Pool
from distlaw.design.pilot import TEACHER_INFERENCE, Measured, Pilot, Target, half_width
from distlaw.errors import DistlawError
from distlaw.laws import Coefficients

SPAN_UP = 4.0  # by default the candidates reach 4x the largest finished model
POOL_SIZES = 9  # family sizes in the candidate pool, log-spaced
ENSEMBLE_LINEAR = 16  # ensemble members the greedy criterion sums over
ENSEMBLE_SIMULATED = 32  # ensemble members taken as the truth in the check


@dataclass(frozen=True)
class Finished:
    """A store's finished runs (students from pruned models left out, as ``distlaw fit`` does) as a pilot
    with measured losses (distilled runs' teacher losses measured, so ``dist_teacher`` is unused), and the
    sweep settings they were trained with (the config tables of new comparable runs)."""

    pilot: Pilot
    measured: Measured
    settings: dict[str, dict[str, object]]
    aspect_ratio: int
    head_dim: int
    table: Any  # the runs table (a pandas DataFrame) the laws are fitted to

    @property
    def runs(self) -> int:
        return self.pilot.runs

    @property
    def step_tokens(self) -> int:
        """Tokens per optimizer step: a run trains its tokens rounded up to whole steps."""
        return int(self.settings["data"]["seq_len"]) * int(self.settings["optim"]["batch_size"])

    def key(self, params: float, tokens: float) -> tuple[int, int]:
        """A run as the lab trains it: its size and its whole steps (a planned D and the D trained agree)."""
        return int(params), math.ceil(tokens / self.step_tokens - 1e-9)

    def sup_keys(self) -> dict[tuple[int, int], int]:
        return {self.key(n, d): i for i, (n, d) in enumerate(zip(self.pilot.sup_params, self.pilot.sup_tokens))}


def read_finished(path: Path, distilled: bool) -> Finished:
    """The finished runs of the store at ``path`` and their settings (no torch). One-line DistlawErrors: no
    finished runs, runs of several settings, a family other than distlaw's Llama."""
    from distlaw.store import RunStore, runs_table

    with RunStore(path, create=False) as store:
        records = [r for r in store.records(status="done") if r.spec.init is None]
        if not records:
            raise DistlawError(f"{path}: no finished runs yet; design --next proposes runs once some of a sweep's runs are done")
        table = runs_table(store)
    table = table[table["pruned_to"].isna()].reset_index(drop=True)
    specs = [r.spec for r in records]
    if any(s.architecture is not None for s in specs):
        raise DistlawError(f"{path}: design --next writes runs of distlaw's Llama family only; these runs are of another family")
    common = {(s.data, s.distill, s.eval_tokens, s.optim.model_copy(update={"seed": 0}), s.shape.vocab_size) for s in specs}
    if len(common) > 1:
        raise DistlawError(f"{path}: the finished runs were trained with different [data], [optim] or [distill] settings; "
                           "new runs would not be comparable with all of them")
    ratios = {(s.shape.d_model // s.shape.n_layers, s.shape.head_dim) for s in specs}
    if len(ratios) > 1:
        raise DistlawError(f"{path}: the finished runs have several aspect ratios or head widths ({sorted(ratios)}); expected one [model] family")
    (aspect_ratio, head_dim), = ratios
    seeds = [s.optim.seed for s in specs if s.kind == "supervised"] or [specs[0].optim.seed]
    spec = specs[0]
    settings = {"": {"eval_tokens": spec.eval_tokens}, "data": spec.data.model_dump(),
                "optim": spec.optim.model_copy(update={"seed": max(set(seeds), key=seeds.count)}).model_dump(),
                "distill": spec.distill.model_dump(),
                "model": {"aspect_ratio": aspect_ratio, "head_dim": head_dim, "vocab_size": spec.shape.vocab_size}}
    sup = table[table["kind"] == "supervised"]
    dist = table[table["kind"] == "distilled"] if distilled else table.iloc[:0]
    if sup.empty:
        raise DistlawError(f"{path}: no finished supervised runs; the supervised law (Ltilde_S) needs some")
    if distilled and dist.empty:
        raise DistlawError(f"{path}: no finished distilled runs; a distilled target needs the distillation law fitted first")
    as_array = lambda rows, column: rows[column].to_numpy(dtype=float)  # noqa: E731
    pilot = Pilot(as_array(sup, "params"), as_array(sup, "tokens"), as_array(dist, "params"), as_array(dist, "tokens"),
                  np.zeros(len(dist), dtype=int), "finished runs")
    measured = Measured(as_array(sup, "loss"), as_array(dist, "teacher_loss"), as_array(dist, "loss"))
    return Finished(pilot, measured, settings, aspect_ratio, head_dim, table)


def pool_sizes(finished: Finished, max_params: float | None) -> np.ndarray:
    """Up to POOL_SIZES of the family's sizes, log-spaced from the smallest finished model to ``max_params``
    (default SPAN_UP x the largest finished one)."""
    from distlaw.design.pilot import family_sizes

    n = np.concatenate([finished.pilot.sup_params, finished.pilot.dist_params])
    hi = max_params if max_params is not None else SPAN_UP * n.max()
    sizes = family_sizes(finished.aspect_ratio, finished.head_dim)(n.min(), hi)
    if len(sizes) == 0:
        raise DistlawError(f"no model of the store's family has between {n.min():.4g} and {hi:.4g} parameters; raise --max-params")
    picks = np.unique([sizes[np.argmin(np.abs(np.log(sizes / x)))] for x in np.geomspace(sizes[0], sizes[-1], POOL_SIZES)])
    return picks


def next_pool(finished: Finished, sizes: np.ndarray, distilled: bool, teacher_sizes: int = 4,
              min_tokens: float = 0.0) -> tuple[Pool, np.ndarray]:
    """The candidates: the finished supervised runs first (indices returned; their losses measured), then the
    grid's supervised runs not already finished; distilled runs of the grid (from new teachers) and from every
    finished supervised run larger than the student, none already finished (runs compared in whole steps,
    ``Finished.key``) and none shorter than ``min_tokens``."""
    fin, keys = finished.pilot, finished.sup_keys()
    grid = Pool.grid(sizes, teacher_sizes=teacher_sizes, min_tokens=min_tokens)
    remap, new_sup = {}, []
    for i, (n, d) in enumerate(zip(grid.sup_params, grid.sup_tokens)):
        key = finished.key(n, d)
        remap[i] = keys.get(key, len(fin.sup_params) + len(new_sup))
        if key not in keys:
            new_sup.append(i)
    sup_n = np.concatenate([fin.sup_params, grid.sup_params[new_sup]])
    sup_d = np.concatenate([fin.sup_tokens, np.round(grid.sup_tokens[new_sup])])
    sup_loss = np.concatenate([finished.measured.sup_loss, np.full(len(new_sup), np.nan)])
    dist: list[tuple[float, float, int]] = []
    if distilled:
        dist = [(n, d, remap[int(t)]) for n, d, t in zip(grid.dist_params, grid.dist_tokens, grid.dist_teacher)]
        dist += [(s, s * m, t) for t in range(len(fin.sup_params)) for s in sizes if s < fin.sup_params[t] for m in STUDENT_RATIOS
                 if s * m >= min_tokens]
    done = {finished.key(n, d) for n, d in zip(fin.dist_params, fin.dist_tokens)}
    dist = [(n, float(round(d)), t) for n, d, t in dist if finished.key(n, d) not in done]
    dn, dd, dt = (np.array([row[j] for row in dist], dtype=float) for j in range(3))
    return Pool(sup_n, sup_d, dn, dd, dt.astype(int), sup_loss), np.arange(len(fin.sup_params))


def cheapest_run(pool: Pool, finished: np.ndarray) -> float:
    """FLOPs of the cheapest candidate: a new supervised run, or a student of a finished teacher (inference
    only) or of a new one (its training too)."""
    new_sup = np.setdiff1d(np.arange(len(pool.sup_params)), finished)
    costs = [pool.sup_cost()[new_sup]]
    if len(pool.dist_params):
        costs.append(pool.dist_cost() + np.where(np.isin(pool.dist_teacher, finished), 0.0, pool.sup_cost()[pool.dist_teacher]))
    return float(np.concatenate(costs).min())


def ensemble(coefficients: Coefficients, distilled: bool, source: str) -> list[Coefficients]:
    """The bootstrap samples as coefficient sets (sample k of each law together, as ``fit_runs`` pairs them)."""
    sup = coefficients.samples("supervised")
    dist = coefficients.samples("distillation") if distilled else []
    if not sup or (distilled and not dist):
        raise DistlawError(f"{source}: no bootstrap samples of the {'distillation' if sup else 'supervised'} law; "
                           "fit with distlaw fit --bootstrap N --out FITTED.json")
    fallback = coefficients.distillation or _placeholder()
    blocks = zip(sup, dist) if distilled else ((s, fallback) for s in sup)
    return [Coefficients.from_dict({"supervised": s.as_dict(), "distillation": d.as_dict()}, source=f"{source} bootstrap")
            for s, d in blocks]


def _placeholder():
    """A distillation block for a supervised target (the linearised criterion is over both laws; a supervised
    target's gradient has no distillation part, and no distilled candidate is offered)."""
    from distlaw.laws import load_coefficients

    return load_coefficients("busbridge2025").require("distillation")


def finished_covariances(finished: Finished, members: Sequence[Coefficients], noise: float) -> list[np.ndarray]:
    """Per member, the covariance (in units of noise^2) the finished runs leave: (weak prior + J^T J)^-1."""
    from distlaw.design import linear
    from distlaw.design.greedy import PRIOR_SD

    fin, m = finished.pilot, finished.measured
    out = []
    for member in members:
        rows = np.vstack([linear.jacobian(member, fin.sup_params, fin.sup_tokens),
                          linear.jacobian(member, fin.dist_params, fin.dist_tokens, m.dist_teacher_loss)])
        out.append(np.linalg.pinv(np.eye(linear.N_THETA) * (noise / PRIOR_SD) ** 2 + rows.T @ rows, hermitian=True))
    return out


@dataclass(frozen=True)
class Addition:
    """Runs added to the finished ones: a pilot whose supervised runs may be finished ones (reused teachers)."""

    pilot: Pilot
    reused: np.ndarray  # per supervised run of ``pilot``: its index among the finished ones, or -1 (new)

    @property
    def new_sup(self) -> np.ndarray:
        return np.flatnonzero(self.reused < 0)

    @property
    def runs(self) -> int:
        return len(self.new_sup) + len(self.pilot.dist_params)

    def flops(self) -> float:
        """Training of the new runs and online inference of every teacher (a finished teacher is not retrained)."""
        p = self.pilot
        reused = self.reused >= 0
        return p.flops() - 6.0 * float(np.sum(p.sup_params[reused] * p.sup_tokens[reused]))


def addition(pilot: Pilot, finished: Finished) -> Addition:
    keys = finished.sup_keys()
    return Addition(pilot, np.array([keys.get(finished.key(n, d), -1) for n, d in zip(pilot.sup_params, pilot.sup_tokens)], dtype=int))


def combined(finished: Finished, add: Addition) -> tuple[Pilot, Measured]:
    """The finished runs plus the new ones as one pilot, the finished losses measured, the new ones not."""
    fin, m = finished.pilot, finished.measured
    new = add.new_sup
    where = np.where(add.reused >= 0, add.reused, 0)
    where[new] = len(fin.sup_params) + np.arange(len(new))
    p = add.pilot
    pilot = Pilot(np.concatenate([fin.sup_params, p.sup_params[new]]), np.concatenate([fin.sup_tokens, p.sup_tokens[new]]),
                  np.concatenate([fin.dist_params, p.dist_params]), np.concatenate([fin.dist_tokens, p.dist_tokens]),
                  np.concatenate([fin.dist_teacher, where[p.dist_teacher]]).astype(int), p.label)
    nan = lambda k: np.full(k, np.nan)  # noqa: E731
    measured = Measured(np.concatenate([m.sup_loss, nan(len(new))]), np.concatenate([m.dist_teacher_loss, nan(len(p.dist_params))]),
                        np.concatenate([m.dist_loss, nan(len(p.dist_params))]))
    return pilot, measured


def naive_runs(proposed: Addition, finished: Finished, sizes: np.ndarray) -> Addition:
    """The naive alternative of the same cost: as many new supervised and distilled runs as ``proposed``, at
    the family size one step above the largest finished model of their kind, at the finished runs' own
    tokens-per-parameter ratios in turn, students distilled from the strongest finished supervised run (the
    lowest loss); all token counts scaled by one factor so that the cost equals ``proposed``'s."""
    fin = finished.pilot

    def one_up(largest: float) -> float:
        above = sizes[sizes > largest]
        return float(above[0] if len(above) else sizes[-1])

    def ratios(n: np.ndarray, d: np.ndarray, k: int) -> np.ndarray:
        distinct = np.unique(np.round(d / n, 6))
        return distinct[np.arange(k) % len(distinct)]

    k_sup, k_dist = len(proposed.new_sup), len(proposed.pilot.dist_params)
    n_sup = one_up(fin.sup_params.max())
    teacher = int(np.argmin(finished.measured.sup_loss))
    sup_d = n_sup * ratios(fin.sup_params, fin.sup_tokens, k_sup)
    if k_dist:
        n_dist = one_up(fin.dist_params.max()) if len(fin.dist_params) else n_sup
        dist_d = n_dist * ratios(fin.dist_params, fin.dist_tokens, k_dist) if len(fin.dist_params) else np.full(k_dist, 20.0 * n_dist)
    else:
        n_dist, dist_d = 0.0, np.zeros(0)
    t_n, t_d = fin.sup_params[teacher], fin.sup_tokens[teacher]
    unit = 6.0 * n_sup * sup_d.sum() + (6.0 * n_dist + TEACHER_INFERENCE * t_n) * dist_d.sum()
    f = proposed.flops() / unit
    pilot = Pilot(np.r_[np.full(k_sup, n_sup), [t_n] * bool(k_dist)], np.r_[np.round(f * sup_d), [t_d] * bool(k_dist)],
                  np.full(k_dist, n_dist), np.round(f * dist_d), np.full(k_dist, k_sup, dtype=int), "naive: one size up")
    return Addition(pilot, np.r_[np.full(k_sup, -1), [teacher] * bool(k_dist)].astype(int))


def _ratio_widths(ratios: np.ndarray, level: float) -> np.ndarray:
    from distlaw.design.designer import _widths

    return _widths(ratios, 1.0, level)


def check_by_simulation(finished: Finished, additions: Sequence[Addition], members: Sequence[Coefficients], target: Target,
                        start: Coefficients, *, noise: float, replicates: int, level: float, seed: int) -> tuple[float, list[float]]:
    """Expected ``level`` width of predicted / true target loss now and after each addition (module docstring, 3)."""
    from distlaw.design.simulate import draw, refit, stack

    distilled = target.teacher_loss is not None
    rng = np.random.default_rng(seed)
    pilots = [combined(finished, a) for a in additions]
    parts, truths = [], []
    for member in members:
        try:
            truth = target.truth(member)
        except DistlawError:  # the target's teacher loss is below this member's floor E: not a truth the target has
            continue
        truths.append(truth)
        parts.append(draw([finished.pilot], member, noise=noise, replicates=1, rng=rng, distilled=distilled, measured=[finished.measured]))
        parts.append(draw([p for p, _ in pilots], member, noise=noise, replicates=replicates, rng=rng, distilled=distilled,
                          measured=[m for _, m in pilots]))
    if not truths:
        raise DistlawError("the target's teacher loss is at or below E in every bootstrap sample: no plausible truth can answer it")
    start_dist = start.require("distillation").as_dict() if distilled else None
    predictions, _, _ = refit(stack(parts), target, start.require("supervised").as_dict(), start_dist)
    per = 1 + len(additions) * replicates
    rows = predictions.reshape(len(truths), per) / np.array(truths)[:, None]
    now = rows[:, 0]
    after = rows[:, 1:].reshape(len(truths), len(additions), replicates).transpose(1, 0, 2).reshape(len(additions), -1)
    return float(_ratio_widths(now[None], level)[0]), [float(w) for w in _ratio_widths(after, level)]


@dataclass(frozen=True)
class NextRuns:
    target: Target
    predicted: float  # the target under the fit of the finished runs
    finished: Finished
    proposed: Addition
    naive: Addition
    now: float  # expected widths (central ``level`` range of predicted / true)
    after: float
    naive_width: float
    level: float


def fit_finished(finished: Finished, bootstrap: int, seed: int, progress: Callable[[str], None] | None = None) -> Coefficients:
    """Both laws fitted to the finished runs with ``bootstrap`` resamples (the coarse grid: a quick look)."""
    from distlaw.fitting import fit_runs

    if progress:
        progress(f"fitting both laws to {finished.runs} finished runs ({bootstrap} bootstrap resamples)")
    return fit_runs(finished.table, bootstrap=bootstrap, grid="coarse", seed=seed, source="finished runs").coefficients()


def propose(finished: Finished, coefficients: Coefficients, target: Target, k: int, *, budget: float | None = None,
            max_params: float | None = None, noise: float = 0.005, replicates: int = 8, level: float = 0.9, seed: int = 0,
            truths: int = ENSEMBLE_SIMULATED, source: str = "the fit", progress: Callable[[str], None] | None = None,
            min_tokens: float = 0.0) -> NextRuns:
    """The K runs (module docstring, 2-3), none shorter than ``min_tokens``, the naive alternative and the expected widths."""
    from distlaw.design.greedy import greedy_pilot

    distilled = target.teacher_loss is not None
    members = ensemble(coefficients, distilled, source)
    sizes = pool_sizes(finished, max_params)
    pool, done = next_pool(finished, sizes, distilled, min_tokens=min_tokens)
    check_next_budget(budget, pool, done)
    if progress:
        progress(f"choosing {k} runs among {len(pool.sup_params) - len(done) + len(pool.dist_params)} candidates")
    linear_members = members[:: max(1, len(members) // ENSEMBLE_LINEAR)][:ENSEMBLE_LINEAR]
    covariances = finished_covariances(finished, linear_members, noise)
    chosen = greedy_pilot(pool, linear_members, target, np.inf if budget is None else budget, max_runs=k, finished=done,
                          covariances=covariances, per_flop=budget is not None)
    proposed = addition(chosen, finished)
    naive = naive_runs(proposed, finished, sizes)
    if progress:
        progress(f"checking by simulation: {min(len(members), truths)} plausible truths x {replicates} replicates")
    now, (after, naive_width) = check_by_simulation(finished, [proposed, naive], members[:truths], target, coefficients,
                                                    noise=noise, replicates=replicates, level=level, seed=seed)
    return NextRuns(target, target.truth(coefficients), finished, proposed, naive, now, after, naive_width, level)


def check_next_budget(budget: float | None, pool: Pool, done: np.ndarray) -> None:
    if budget is not None and budget < (cheapest := cheapest_run(pool, done)):
        raise DistlawError(f"--budget {budget:.3g} FLOPs is below the cheapest candidate run ({cheapest:.3g} FLOPs)")


def describe_runs(add: Addition) -> list[dict]:
    """The new runs of an addition, for JSON and the table."""
    p = add.pilot
    rows = [{"kind": "supervised", "params": float(p.sup_params[i]), "tokens": float(p.sup_tokens[i]), "teacher": None,
             "flops": 6.0 * float(p.sup_params[i] * p.sup_tokens[i])} for i in add.new_sup]
    for n, d, t in zip(p.dist_params, p.dist_tokens, p.dist_teacher):
        rows.append({"kind": "distilled", "params": float(n), "tokens": float(d),
                     "teacher": {"params": float(p.sup_params[t]), "tokens": float(p.sup_tokens[t]), "finished": bool(add.reused[t] >= 0)},
                     "flops": float((6.0 * n + TEACHER_INFERENCE * p.sup_params[t]) * d)})
    return rows


def next_config(result: NextRuns, name: str, store: Path, out: Path) -> str:
    """The sweep config of the proposed runs: the store's settings, reused teachers listed as themselves."""
    from distlaw import __version__
    from distlaw.design.config import sweep_config

    r, add = result, result.proposed
    settings = {**r.finished.settings, "model": {**r.finished.settings["model"],
                                                 "max_params": float(max(1e9, 2 * add.pilot.sup_params.max(initial=0.0)))}}
    lt = "" if r.target.teacher_loss is None else f", teacher loss {r.target.teacher_loss:.4g}"
    header = [
        f"The next {add.runs} runs for {store.name}, proposed by distlaw {__version__} (distlaw design --next) to predict the loss",
        f"of a {r.target.params:.4g}-parameter student on {r.target.tokens:.4g} tokens{lt} ({r.predicted:.4f} under the fit of "
        f"{r.finished.runs} finished runs).",
        f"{add.flops():.4g} FLOPs; expected {r.level:.0%} interval {half_width(r.now, '+-')} now -> {half_width(r.after, '+-')} after these "
        f"runs (naive runs of the same cost: {half_width(r.naive_width, '+-')}).",
        "Supervised runs that teach and are already finished in the store are listed as they are: the sweep finds them done.",
        f"Run it: distlaw sweep run {out.name} --store {store.name}",
    ]
    return sweep_config(add.pilot, name, header=header, settings=settings)


def record(result: NextRuns, out: Path) -> dict:
    r = result
    return {
        "target": r.target.record(),
        "predicted": r.predicted, "level": r.level, "finished_runs": r.finished.runs, "now": {"width": r.now},
        "next": {"runs": describe_runs(r.proposed), "flops": r.proposed.flops(), "width": r.after},
        "naive": {"runs": describe_runs(r.naive), "flops": r.naive.flops(), "width": r.naive_width, "label": r.naive.pilot.label},
        "out": str(out),
    }


def design_next(finished: Finished, coefficients: Coefficients, target: Target, k: int, out: Path, *, store: Path, name: str = "next",
                **options) -> dict:
    """:func:`propose`, the proposed runs written to ``out`` as a sweep config; returns the JSON record."""
    from distlaw.design.config import write_sweep_config

    result = propose(finished, coefficients, target, k, **options)
    write_sweep_config(next_config(result, name, store, out), out)
    return record(result, out)

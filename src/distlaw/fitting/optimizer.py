"""Batched multi-start optimizer: every start of the grid is one row of a torch float64 tensor.

The objective (:class:`HuberObjective`) is the weighted sum over runs of Huber_delta(prediction -
target) for a whole batch of parameter vectors at once; gradients come from autograd. It is
evaluated in chunks of starts so that no more than ``chunk_elements`` (start, run) pairs are live at
a time: the memory stays bounded (about 30 float64 temporaries per pair, so 2**16 pairs is ~16 MB)
and the chunks stay cache-resident, which is faster than one huge batch on a CPU.

:func:`lbfgs_iterations` is a batched, box-projected L-BFGS: per-start two-loop recursion over a
per-start history of (s, y) pairs, per-start backtracking line search with the Armijo condition
along the projected path, per-start convergence tests. Only starts whose line search is still
pending are re-evaluated, so a backtracking start costs nothing to the others.

:func:`minimize_multistart` runs the starts with a successive-halving schedule (:class:`Schedule`):
a few iterations on all starts, then only the best fraction continues for more iterations, and so
on; starts that have converged to the same point are deduplicated at each cut. The last few
survivors run to full convergence and the best few are then restarted once with a fresh
history (a cheap polish against L-BFGS stalls). ``FULL`` disables all of that: every start runs to
convergence, exactly like a per-start loop would.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from distlaw.fitting.models import LawModel, Parameter

DTYPE = torch.float64

ProgressFn = Callable[[str, float, float], None]

# status codes of a start
RUNNING, CONVERGED_F, CONVERGED_G, CONVERGED_X, LINE_SEARCH, MAX_ITER, NONFINITE, PRUNED, OUTPACED = range(9)
STATUS_NAMES = (
    "running", "ftol", "gtol", "xtol", "line search", "max iterations", "non-finite start", "pruned", "outpaced",
)


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def compute_threads(n: int | None = None) -> Iterator[Executor | None]:
    """Parallelize over chunks of starts, not inside kernels: torch runs single-threaded kernels
    and this yields a pool of ``n`` worker threads (default: the cores this process may use; None
    for one). Intra-op threads synchronize at every kernel and collapse (20x slower measured) when
    other processes load the cores; independent chunks do not."""
    old = torch.get_num_threads()
    n = n or available_cores()
    torch.set_num_threads(1)
    pool = ThreadPoolExecutor(n, thread_name_prefix="distlaw-fit") if n > 1 else None
    try:
        yield pool
    finally:
        if pool is not None:
            pool.shutdown()
        torch.set_num_threads(old)


@dataclass(frozen=True)
class LBFGSOptions:
    """Per-start L-BFGS settings. Tolerances are relative (see :class:`HuberObjective` scales)."""

    history: int = 20
    max_iter: int = 3000
    ftol: float = 1e-12
    gtol: float = 1e-10
    xtol: float = 1e-13
    c1: float = 1e-4
    max_backtracks: int = 30
    ladder: int = 6
    ladder_ratio: float = 0.3
    block_starts: int = 32768


@dataclass(frozen=True)
class Schedule:
    """Successive halving over starts: ``first_iters`` iterations on all, keep the best
    ``keep_fraction`` (after merging starts that sit at the same point, within ``dedupe_tol`` in fit
    space), multiply the iterations by ``growth``, repeat until at most ``final_starts`` remain, run
    those to convergence. Problems below ``min_prune_elements`` start x run pairs skip the pruning
    (by default none do).

    In the final stage, every ``check_every`` iterations a start is stopped ("outpaced") when even
    ``outpace_margin`` times its current rate of decrease, kept up for ``outpace_horizon`` times the
    iterations the stage has run so far (at least 4 checks; 0: the rest of the iteration budget),
    would not bring it down to the best objective found so far. That ends starts that
    crawl along a plateau (e.g. E alone fitting the data while A / N^alpha creeps to 0), which
    otherwise run for the whole budget without ever mattering."""

    first_iters: int = 8
    keep_fraction: float = 0.125
    growth: float = 2.0
    final_starts: int = 96
    min_prune_elements: float = 0
    dedupe_tol: float = 1e-7
    polish: int = 8
    check_every: int = 25
    outpace_margin: float = 10.0
    outpace_horizon: float = 2.0


FULL = Schedule(min_prune_elements=math.inf, check_every=0)
"""No pruning: every start runs to convergence (what a per-start loop does)."""


class HuberObjective:
    """f(theta) = sum_i w_i Huber_delta(pred_i(theta) - target_i), batched over parameter rows.

    ``data`` values and ``target``/``weights`` have shape ``(1, runs)`` (shared by all starts) or
    ``(problems, runs)``; a batch then names each start's problem with ``rows``. That is how the
    bootstrap fits many resamples at once: problem k carries resample k's integer weights.
    """

    def __init__(
        self,
        model: LawModel,
        data: Mapping[str, torch.Tensor],
        target: torch.Tensor,
        free: Sequence[Parameter],
        fixed: Mapping[str, float] | None = None,
        weights: torch.Tensor | None = None,
        delta: float = 1e-4,
        chunk_elements: int = 2**16,
    ) -> None:
        self.model = model
        self.data = {k: v if v.dim() == 2 else v[None, :] for k, v in data.items()}
        self.target = target if target.dim() == 2 else target[None, :]
        self.weights = None if weights is None else (weights if weights.dim() == 2 else weights[None, :])
        self.free = list(free)
        self.fixed = {k: torch.tensor(float(v), dtype=DTYPE) for k, v in (fixed or {}).items()}
        self.delta = float(delta)
        self.n = self.target.shape[1]
        self.chunk_elements = int(chunk_elements)
        self.evaluations = 0  # start evaluations (one start at one parameter vector)
        self.pool: Executor | None = None  # set by :func:`compute_threads` users to evaluate chunks in parallel
        total_weight = float(self.weights.sum(1).max()) if self.weights is not None else float(self.n)
        # scales for relative tolerances: the objective and its gradient when every residual is ~delta
        self.f_scale = 0.5 * self.delta**2 * max(total_weight, 1.0)
        self.g_scale = self.delta * max(total_weight, 1.0)

    def _rows(self, t: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        return t if t.shape[0] == 1 or rows is None else t.index_select(0, rows)

    def _chunk(self, x: torch.Tensor, rows: torch.Tensor | None, grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        xc = x.detach().clone().requires_grad_(grad)
        with torch.set_grad_enabled(grad):
            params: dict[str, torch.Tensor] = dict(self.fixed)
            for j, p in enumerate(self.free):
                params[p.key] = xc[:, j : j + 1]
            data = {name: self._rows(t, rows) for name, t in self.data.items()}
            pred = self.model.log_predict(params, data)
            target = self._rows(self.target, rows).expand_as(pred)
            h = torch.nn.functional.huber_loss(pred, target, reduction="none", delta=self.delta)
            fc = h.sum(1) if self.weights is None else (h * self._rows(self.weights, rows)).sum(1)
            gc = torch.autograd.grad(fc.sum(), xc)[0] if grad else None
        return fc.detach(), gc

    def __call__(
        self, x: torch.Tensor, rows: torch.Tensor | None = None, grad: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Objective (k,) and gradient (k, p) at the rows of ``x`` (k, p); non-finite values -> inf.

        Chunks run on ``self.pool`` (a thread pool; torch kernels release the GIL) when one is set."""
        k = x.shape[0]
        step = max(1, self.chunk_elements // max(self.n, 1))
        spans = [(a, min(k, a + step)) for a in range(0, k, step)]
        jobs = [(x[a:b], None if rows is None else rows[a:b], grad) for a, b in spans]
        if self.pool is not None and len(jobs) > 1:
            parts = list(self.pool.map(lambda job: self._chunk(*job), jobs))
        else:
            parts = [self._chunk(*job) for job in jobs]
        f = torch.cat([p[0] for p in parts]) if parts else torch.empty(0, dtype=DTYPE)
        g = (torch.cat([p[1] for p in parts]) if parts else torch.empty_like(x)) if grad else None  # type: ignore[misc]
        bad = ~torch.isfinite(f)
        if g is not None:
            bad |= ~torch.isfinite(g).all(1)
            g[bad] = 0.0
        f[bad] = math.inf
        self.evaluations += k
        return f, g


@dataclass
class State:
    """Optimizer state of every start (rows), kept between stages."""

    x: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    s_hist: torch.Tensor
    y_hist: torch.Tensor
    rho: torch.Tensor
    status: torch.Tensor
    iterations: torch.Tensor
    rows: torch.Tensor | None = None

    @classmethod
    def start(cls, objective: HuberObjective, x0: torch.Tensor, history: int, rows: torch.Tensor | None = None) -> "State":
        s, p = x0.shape
        f, g = objective(x0, rows)
        status = torch.full((s,), RUNNING, dtype=torch.int8)
        status[~torch.isfinite(f)] = NONFINITE
        return cls(
            x=x0.clone(), f=f, g=g,  # type: ignore[arg-type]
            s_hist=torch.zeros(s, history, p, dtype=DTYPE),
            y_hist=torch.zeros(s, history, p, dtype=DTYPE),
            rho=torch.zeros(s, history, dtype=DTYPE),
            status=status, iterations=torch.zeros(s, dtype=torch.int64), rows=rows,
        )

    def reset_history(self, idx: torch.Tensor) -> None:
        self.s_hist[idx] = 0.0
        self.y_hist[idx] = 0.0
        self.rho[idx] = 0.0


def _two_loop(g: torch.Tensor, s: torch.Tensor, y: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """H g for each row by the L-BFGS two-loop recursion; empty history slots (rho = 0) are inert.
    Slot m-1 is the newest pair; H0 = (s.y / y.y) I from it (1 when there is none). Slots older
    than the longest history in the batch are skipped."""
    filled = torch.nonzero((rho != 0).any(0))
    first = int(filled[0]) if filled.numel() else s.shape[1]
    s_list, y_list, rho_list = s[:, first:].unbind(1), y[:, first:].unbind(1), rho[:, first:].unbind(1)
    q = g.clone()
    alphas = []
    for s_j, y_j, rho_j in zip(reversed(s_list), reversed(y_list), reversed(rho_list)):
        a = rho_j * torch.linalg.vecdot(s_j, q)
        q.addcmul_(a[:, None], y_j, value=-1.0)
        alphas.append(a)
    if s_list:
        sy = torch.linalg.vecdot(s_list[-1], y_list[-1])
        yy = torch.linalg.vecdot(y_list[-1], y_list[-1])
        h0 = torch.where((rho_list[-1] > 0) & (yy > 0), sy / yy.clamp_min(1e-300), torch.ones_like(yy))
        q.mul_(h0[:, None])
    for s_j, y_j, rho_j, a in zip(s_list, y_list, rho_list, reversed(alphas)):
        b = rho_j * torch.linalg.vecdot(y_j, q)
        q.addcmul_((a - b)[:, None], s_j)
    return q


def lbfgs_iterations(
    objective: HuberObjective,
    state: State,
    idx: torch.Tensor,
    n_iter: int,
    lower: torch.Tensor,
    upper: torch.Tensor,
    options: LBFGSOptions = LBFGSOptions(),
    progress: Callable[[int], None] | None = None,
) -> None:
    """Run up to ``n_iter`` L-BFGS iterations on the starts ``idx`` (updates ``state`` in place).

    Each iteration handles the starts in blocks of ``options.block_starts`` so that the gathered
    copies of the L-BFGS history stay small however many starts there are."""
    for it in range(n_iter):
        idx = idx[state.status.index_select(0, idx) == RUNNING]
        if idx.numel() == 0:
            break
        for block in idx.split(options.block_starts):
            _iteration(objective, state, block, lower, upper, options)
        if progress is not None:
            progress(it + 1)


def _iteration(
    objective: HuberObjective, state: State, idx: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
    options: LBFGSOptions,
) -> None:
    """One L-BFGS iteration (direction, line search, history update, convergence tests) on ``idx``."""
    gtol = options.gtol * objective.g_scale
    f_floor = 1e-6 * objective.f_scale
    x, f, g = state.x[idx], state.f[idx], state.g[idx]
    s_h, y_h, rho = state.s_hist[idx], state.y_hist[idx], state.rho[idx]
    rows = None if state.rows is None else state.rows[idx]
    # variables at a bound with the gradient pushing outwards are held there
    free = ~(((x <= lower) & (g > 0)) | ((x >= upper) & (g < 0)))
    gp = torch.where(free, g, torch.zeros_like(g))
    pg = gp.abs().amax(1)
    small_g = pg <= gtol
    d = -_two_loop(gp, s_h, y_h, rho)
    d = torch.where(free, d, torch.zeros_like(d))
    no_hist = rho[:, -1] == 0
    not_descent = ~((gp * d).sum(1) < 0)
    d = torch.where(not_descent[:, None], -gp, d)
    fresh = no_hist | not_descent
    if not_descent.any():
        s_h[not_descent] = 0.0
        y_h[not_descent] = 0.0
        rho[not_descent] = 0.0
    # first step without curvature information: unit length in the max-norm at most
    t = torch.where(fresh, (1.0 / d.abs().amax(1).clamp_min(1e-300)).clamp(max=1.0), torch.ones_like(f))

    new_x, new_f, new_g = x.clone(), f.clone(), g.clone()
    accepted = torch.zeros_like(f, dtype=torch.bool)
    pending = torch.nonzero(~small_g).squeeze(1)
    tried = 0
    while pending.numel() and tried < options.max_backtracks:
        # Backtracking: when few starts are still pending, one evaluation costs about the same for
        # 1 or several trial steps (per-call overhead dominates), so try a ladder t, t r, t r^2, ...
        # at once and keep the largest step that passes Armijo. The first try (t = 1, accepted by
        # most starts) and rounds with many pending starts have a single rung.
        k = pending.numel()
        rungs = 1 if tried == 0 else max(1, min(options.ladder, objective.chunk_elements // max(1, 4 * k * objective.n)))
        rungs = min(rungs, options.max_backtracks - tried)
        factors = options.ladder_ratio ** torch.arange(rungs, dtype=DTYPE)
        tp = t[pending][:, None] * factors[None, :]  # (k, rungs)
        xp, dp = x[pending], d[pending]
        xt = torch.minimum(torch.maximum(xp[:, None, :] + tp[..., None] * dp[:, None, :], lower), upper)
        prow = None if rows is None else rows[pending].repeat_interleave(rungs)
        ft, gt = objective(xt.reshape(k * rungs, -1), prow)
        ft = ft.reshape(k, rungs)
        dec = (g[pending][:, None, :] * (xt - xp[:, None, :])).sum(2)
        ok = torch.isfinite(ft) & (ft <= f[pending][:, None] + options.c1 * dec) & (dec <= 0)
        any_ok = ok.any(1)
        first = torch.argmax(ok.to(torch.int8), 1)  # largest passing step
        rows_ok = torch.nonzero(any_ok).squeeze(1)
        pick = rows_ok * rungs + first[rows_ok]
        okp = pending[rows_ok]
        new_x[okp] = xt.reshape(k * rungs, -1)[pick]
        new_f[okp] = ft.reshape(-1)[pick]
        new_g[okp] = gt[pick]  # type: ignore[index]
        accepted[okp] = True
        # the rest: quadratic interpolation from the smallest step tried, within [0.1 t, 0.5 t]
        t_min, f_min, d_min = tp[:, -1], ft[:, -1], dec[:, -1]
        curv = f_min - f[pending] - d_min
        t_q = torch.where(
            torch.isfinite(f_min) & (curv > 0), -d_min * t_min / (2 * curv.clamp_min(1e-300)), 0.1 * t_min
        )
        t[pending] = torch.minimum(torch.maximum(t_q, 0.1 * t_min), 0.5 * t_min)
        pending = pending[~any_ok]
        tried += rungs

    # bookkeeping per start
    status = torch.full_like(f, RUNNING, dtype=torch.int8)
    status[small_g] = CONVERGED_G
    failed = ~accepted & ~small_g
    # a failed line search from a fresh (steepest-descent) direction ends the start;
    # otherwise the history is dropped and the next iteration tries steepest descent
    status[failed & fresh] = LINE_SEARCH
    drop = failed & ~fresh
    s_new = new_x - x
    y_new = new_g - g
    sy = (s_new * y_new).sum(1)
    yy = (y_new * y_new).sum(1)
    good = accepted & (sy > 1e-10 * yy) & (sy > 0)
    if good.any():
        s_h[good] = torch.cat([s_h[good, 1:], s_new[good, None]], 1)
        y_h[good] = torch.cat([y_h[good, 1:], y_new[good, None]], 1)
        rho[good] = torch.cat([rho[good, 1:], (1.0 / sy[good])[:, None]], 1)
    if drop.any():
        s_h[drop] = 0.0
        y_h[drop] = 0.0
        rho[drop] = 0.0
    decrease = f - new_f
    scale = torch.maximum(torch.maximum(f.abs(), new_f.abs()), torch.full_like(f, f_floor))
    step = s_new.abs().amax(1)
    xscale = 1.0 + x.abs().amax(1)
    status[accepted & (decrease <= options.ftol * scale)] = CONVERGED_F
    status[accepted & (step <= options.xtol * xscale)] = CONVERGED_X

    state.x[idx], state.f[idx], state.g[idx] = new_x, new_f, new_g
    state.s_hist[idx], state.y_hist[idx], state.rho[idx] = s_h, y_h, rho
    state.iterations[idx] += 1
    state.status[idx] = status


@dataclass
class MultiStartResult:
    x: np.ndarray  # best point (fit space)
    f: float  # its objective
    state: State
    survivors: np.ndarray  # indices of the starts that ran to convergence
    stages: list[dict[str, Any]] = field(default_factory=list)
    evaluations: int = 0

    @property
    def status(self) -> str:
        best = int(torch.argmin(self.state.f))
        return STATUS_NAMES[int(self.state.status[best])]


def _dedupe(state: State, idx: torch.Tensor, tol: float) -> torch.Tensor:
    """``idx`` sorted by objective with starts at the same point (within ``tol``) merged."""
    order = torch.argsort(state.f[idx], stable=True)
    idx = idx[order]
    if tol <= 0 or idx.numel() < 2:
        return idx
    key = torch.round(state.x[idx] / tol).to(torch.int64)
    if state.rows is not None:
        key = torch.cat([key, state.rows[idx, None]], 1)
    _, inverse = torch.unique(key, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), idx.numel(), dtype=torch.int64)
    first.scatter_reduce_(0, inverse, torch.arange(idx.numel()), reduce="amin")
    return idx[torch.sort(first).values]


def _merge_stages(stages: list[dict[str, Any]], label: str) -> None:
    """Fold the blocks of the final stage (run in ``check_every`` pieces) into one record."""
    blocks = [s for s in stages if s.get("label") == label]
    if len(blocks) > 1:
        merged = {"label": label, "starts": blocks[0]["starts"], "iterations": sum(b["iterations"] for b in blocks),
                  "evaluations": sum(b["evaluations"] for b in blocks)}
        stages[:] = [s for s in stages if s.get("label") != label] + [merged]


def minimize_multistart(
    objective: HuberObjective,
    starts: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    options: LBFGSOptions = LBFGSOptions(),
    schedule: Schedule = Schedule(),
    rows: torch.Tensor | None = None,
    progress: ProgressFn | None = None,
) -> MultiStartResult:
    """Minimize from every start (one per row) at once and return the best point.

    With ``rows`` each start belongs to its own problem (bootstrap) and nothing is pruned.
    """
    if progress is not None:
        progress(f"evaluating {starts.shape[0]:,} starts", 0.0, 1.0)
    state = State.start(objective, starts, options.history, rows)
    alive = torch.nonzero(state.status == RUNNING).squeeze(1)
    stages: list[dict[str, Any]] = []

    def run(idx: torch.Tensor, n_iter: int, label: str, offset: int = 0, total: int | None = None) -> None:
        before = objective.evaluations
        cb = None
        if progress is not None:
            shown = float(total or n_iter)
            progress(label, float(offset), shown)
            cb = lambda i: progress(label, float(offset + i), shown)  # noqa: E731
        lbfgs_iterations(objective, state, idx, n_iter, lower, upper, options, cb)
        stages.append({"label": label, "starts": int(idx.numel()), "iterations": n_iter,
                       "evaluations": objective.evaluations - before})

    prune = rows is None and alive.numel() * objective.n >= schedule.min_prune_elements and alive.numel() > schedule.final_starts
    iters = schedule.first_iters
    survivors = alive
    stage = 1
    while prune and survivors.numel() > schedule.final_starts:
        run(survivors, iters, f"stage {stage}: {survivors.numel():,} starts x {iters} iterations")
        ranked = _dedupe(state, survivors, schedule.dedupe_tol)
        ranked = ranked[torch.isfinite(state.f[ranked])]
        keep = max(schedule.final_starts, math.ceil(schedule.keep_fraction * survivors.numel()))
        dropped = survivors[state.status[survivors] == RUNNING]
        state.status[dropped] = PRUNED
        survivors = ranked[:keep]
        # survivors that were only merged away or cut stay PRUNED; the kept ones continue
        state.status[survivors[state.status[survivors] == PRUNED]] = RUNNING
        iters = math.ceil(iters * schedule.growth)
        stage += 1
    final_label = f"{'final: ' if prune else ''}{survivors.numel():,} starts to convergence"
    if rows is None and schedule.check_every > 0:
        done_iters = 0
        while done_iters < options.max_iter:
            block = min(schedule.check_every, options.max_iter - done_iters)
            before = state.f[survivors].clone()
            run(survivors, block, final_label, done_iters, options.max_iter)
            done_iters += block
            running = state.status[survivors] == RUNNING
            if not running.any():
                break
            f_now = state.f[survivors]
            rate = (before - f_now).clamp_min(0) / block
            best = f_now.min()
            horizon = options.max_iter - done_iters
            if schedule.outpace_horizon:
                horizon = min(horizon, max(schedule.outpace_horizon * done_iters, 4 * schedule.check_every))
            reach = f_now - schedule.outpace_margin * rate * horizon
            hopeless = running & (reach > best + 1e-12 * best.abs())
            state.status[survivors[hopeless]] = OUTPACED
        _merge_stages(stages, final_label)
    else:
        run(survivors, options.max_iter, final_label)
    state.status[state.status == RUNNING] = MAX_ITER
    if schedule.polish and survivors.numel() and rows is None:
        top = _dedupe(state, survivors, schedule.dedupe_tol)[: schedule.polish]
        state.reset_history(top)
        state.status[top] = RUNNING
        run(top, options.max_iter, f"polishing the best {top.numel()}")
        state.status[top[state.status[top] == RUNNING]] = MAX_ITER
    f = state.f.clone()
    if rows is None:
        best = int(torch.argmin(f))
        x_best, f_best = state.x[best].numpy().copy(), float(f[best])
    else:
        x_best, f_best = state.x.numpy().copy(), float("nan")
    return MultiStartResult(
        x=x_best, f=f_best, state=state, survivors=survivors.numpy(), stages=stages, evaluations=objective.evaluations
    )


def minimize_rows(
    objective: HuberObjective,
    x0: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    options: LBFGSOptions = LBFGSOptions(),
    schedule: Schedule = Schedule(),
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """One problem per row of ``x0`` (its start; the objective's data rows name the problems), minimized at
    once without pruning; returns the (rows, free) fit-space optima, NaN where the objective is not finite."""
    result = minimize_multistart(objective, x0, lower, upper, options, schedule, rows=torch.arange(x0.shape[0]), progress=progress)
    x = result.state.x.numpy().copy()
    x[~torch.isfinite(result.state.f).numpy()] = np.nan
    return x

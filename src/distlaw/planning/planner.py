"""Compute-optimal distillation (Busbridge et al. 2025, arXiv 2502.08606, Sec. 5 and App. H).

For a fixed student size N_S and budget C, minimize L_S(N_S, D_S, L_T) (Eq. 8) subject to
3 F(N_S) D_S + F(N_T) (dLgt D_S + dPre 3 D_T) = C (Eq. 9), with N_T, D_T in the planner's size range
(1e6..1e17 by default, as in App. H) and D_S at least its lower bound. The constraint removes one
variable, leaving searches along it (``search.grid_minimize``):

- best case (teacher free): D_S = C / 3 F(N_S) is fixed; a 1-D search over the teacher loss L_T
  reachable by any teacher in the bounds, then the cheapest teacher (least 3 F(N_T) D_T) reaching it;
- teacher inference: 1-D over log N_T with D_T at its upper bound: pretraining is free, and for any
  teacher a smaller one trained longer reaches the same L_T with cheaper logits, leaving more D_S
  (L_S falls with D_S at fixed L_T); D_S = C / (3 F(N_S) + F(N_T));
- teacher pretraining (+ inference): 2-D over (log N_T, logit of the share f of C spent on the
  student's side); D_S = f C / (3 F(N_S) + dLgt F(N_T)), D_T = (1 - f) C / 3 F(N_T).

Every method broadcasts over student sizes and budgets; on a ``bootstrap()`` planner the results
gain a leading axis with one entry per coefficient sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from distlaw.compute import FlopModel
from distlaw.errors import DistlawError
from distlaw.laws import Coefficients
from distlaw.laws.coefficients import positive_array
from distlaw.laws.domain import check_domain, check_teacher_loss, short_number
from distlaw.planning.lawbatch import LawBatch
from distlaw.planning.scenarios import Scenario, get_scenario
from distlaw.planning.search import grid_minimize

DEFAULT_SIZE_RANGE = (1e6, 1e17)  # bounds on N_T, D_S, D_T (App. H); 1e6 tokens is about one training step
LARGEST = 1e30  # no size, token count or bound beyond this: far past any model or corpus, and FLOP products stay finite
CHUNK_POINTS = 2**21  # grid points evaluated at once, to bound memory
BOUND_TOL = 1e-4  # a recipe value within 0.01 % of the size range's edge sits on it (the 2-D search stops that close)
BOUNDED_FIELDS = {"teacher_params": (True, True), "student_tokens": (True, False), "teacher_tokens": (True, True)}
"""Recipe fields the search bounds, and which edges bound them (D_S only from below)."""
RECORD_FIELDS = (
    "compute", "student_params", "student_tokens", "teacher_params", "teacher_tokens", "teacher_loss", "student_loss"
)


def valid_size_range(size_range: tuple[float, float]) -> tuple[float, float]:
    """``(lo, hi)`` bounds on N_T, D_S, D_T as floats; a one-line DistlawError unless 1 <= lo < hi <= 1e30."""
    lo, hi = (float(x) for x in size_range)
    if not 1 <= lo < hi <= LARGEST:
        raise DistlawError(f"size range must have 1 <= lo < hi <= {LARGEST:g}, got {lo:g}:{hi:g}")
    return lo, hi


@dataclass(frozen=True)
class Recipes:
    """Optimal recipes for one scenario; every field has the broadcast shape of the inputs."""

    scenario: str
    student_params: np.ndarray
    compute: np.ndarray
    student_tokens: np.ndarray
    teacher_params: np.ndarray
    teacher_tokens: np.ndarray
    teacher_loss: np.ndarray
    student_loss: np.ndarray
    student_flops: np.ndarray
    teacher_inference_flops: np.ndarray
    teacher_pretraining_flops: np.ndarray
    size_range: tuple[float, float] | None = None  # the search bounds; None where nothing was searched

    def compute_split(self) -> dict[str, np.ndarray]:
        """Fractions of the counted compute: student training, teacher inference, teacher pretraining."""
        total = self.student_flops + self.teacher_inference_flops + self.teacher_pretraining_flops
        return {
            "student_training": self.student_flops / total,
            "teacher_inference": self.teacher_inference_flops / total,
            "teacher_pretraining": self.teacher_pretraining_flops / total,
        }

    def at_bound(self, index: tuple[int, ...] | int = ()) -> list[str]:
        """The fields of one recipe that sit on the search bound (an edge of the size range, not an optimum)."""
        if self.size_range is None:
            return []
        lo, hi = self.size_range
        out = []
        for name, (low, high) in BOUNDED_FIELDS.items():
            value = float(getattr(self, name)[index])
            if (low and abs(np.log(value / lo)) <= BOUND_TOL) or (high and abs(np.log(value / hi)) <= BOUND_TOL):
                out.append(name)
        return out

    def record(self, index: tuple[int, ...] | int = ()) -> dict:
        """One recipe as plain JSON-ready values; ``at_bound`` lists the fields on the search bound."""
        return {
            "scenario": self.scenario,
            **{k: float(getattr(self, k)[index]) for k in RECORD_FIELDS},
            "compute_split": {k: float(v[index]) for k, v in self.compute_split().items()},
            "at_bound": self.at_bound(index),
        }


@dataclass(frozen=True)
class ExistingTeacher:
    """A trained teacher: its size and either its loss or its training tokens."""

    params: float
    loss: float | None = None
    tokens: float | None = None


@dataclass(frozen=True)
class Baseline:
    """The supervised alternative: all of C spent on tokens for the same student."""

    student_params: np.ndarray
    compute: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray


class Planner:
    """Solves the compute-optimal distillation problems for one set of law coefficients.

    ``size_range`` bounds the teacher size N_T, the student tokens D_S (from below) and the teacher
    tokens D_T: 1e6..1e17 as in the paper (App. H); lower it to plan at the scale of a small pilot.
    """

    def __init__(
        self,
        coefficients: Coefficients,
        flops: FlopModel | None = None,
        sampled: bool = False,
        size_range: tuple[float, float] = DEFAULT_SIZE_RANGE,
    ) -> None:
        self.coefficients = coefficients
        self.flops = flops or FlopModel()
        self.sampled = sampled
        self.size_range = valid_size_range(size_range)
        self.log_min, self.log_max = (float(np.log(x)) for x in self.size_range)
        self.law = LawBatch.bootstrap(coefficients) if sampled else LawBatch.point(coefficients)

    def bootstrap(self) -> Planner:
        """The same planner over the coefficients' bootstrap samples (results gain a leading sample axis)."""
        return Planner(self.coefficients, self.flops, sampled=True, size_range=self.size_range)

    # -- problem batches ---------------------------------------------------------------------

    def batch(self, *arrays: ArrayLike) -> tuple[list[np.ndarray], LawBatch, tuple[int, ...]]:
        """Flatten broadcast inputs and pair every problem with its coefficient row."""
        arrs = np.broadcast_arrays(*[np.asarray(a, dtype=float) for a in arrays])
        shape, size = arrs[0].shape, arrs[0].size
        if not self.sampled:
            return [a.ravel() for a in arrs], self.law.take(np.zeros(size, dtype=int)), shape
        k = len(self.law)
        rows = np.repeat(np.arange(k), size)
        return [np.tile(a.ravel(), k) for a in arrs], self.law.take(rows), (k, *shape)

    def minimum_compute(self, student_params: ArrayLike, scenario: Scenario) -> np.ndarray:
        """The smallest budget the scenario can use (Eq. 9 with N_T, D_S, D_T at the lower bound).

        With the default bound, 1e6 student tokens are about one training step.
        """
        ns, lo = np.asarray(student_params, dtype=float), self.size_range[0]
        f_min = self.flops.forward(lo)
        return (
            self.flops.training(ns, lo)
            + scenario.teacher_logits * f_min * lo
            + scenario.teacher_pretraining * 3 * f_min * lo
        )

    def student_sizes(self, student_params: ArrayLike) -> np.ndarray:
        """N_S as an array; a one-line DistlawError unless 1 <= N_S <= the upper size bound."""
        ns = positive_array(student_params, "student params")
        bad = (ns < 1) | (ns > self.size_range[1])
        if bad.any():
            got = ns.flat[int(np.flatnonzero(bad)[0])]
            raise DistlawError(f"student params must be between 1 and {self.size_range[1]:g}, got {got:g}")
        return ns

    def check_teacher(self, teacher: ExistingTeacher) -> None:
        """A one-line DistlawError for a teacher the laws cannot serve: sizes or tokens not in (0, 1e30],
        both or neither of loss and tokens, or a loss not above the supervised law's floor E."""
        for value, name in ((teacher.params, "teacher params"), (teacher.tokens, "teacher tokens")):
            if value is not None and float(positive_array(value, name)) > LARGEST:
                raise DistlawError(f"{name} must be at most {LARGEST:g}, got {float(value):g}")
        if (teacher.loss is None) == (teacher.tokens is None):
            raise DistlawError("give the teacher's loss or its training tokens (exactly one)")
        if teacher.loss is not None:
            check_teacher_loss(self.coefficients, positive_array(teacher.loss, "teacher loss"))

    def check(self, student_params: ArrayLike, compute: ArrayLike, scenario: Scenario) -> None:
        """Raise a one-line DistlawError for sizes or budgets the planner cannot serve."""
        ns, c = np.broadcast_arrays(self.student_sizes(student_params), positive_array(compute, "compute"))
        need = self.minimum_compute(ns, scenario)
        short = c < need
        if short.any():
            i = int(np.flatnonzero(short.ravel())[0])
            raise DistlawError(
                f"compute {c.flat[i]:.3g} FLOPs is less than one student step for N_S={ns.flat[i]:.3g} "
                f"in scenario {scenario.name} (needs at least {need.flat[i]:.3g} FLOPs: {self.size_range[0]:g} tokens)"
            )

    # -- supervised baseline -----------------------------------------------------------------

    def supervised(self, student_params: ArrayLike, compute: ArrayLike) -> Baseline:
        """L(N_S, D) with D = C / 3 F(N_S): the student trained on all the compute (Eq. 1)."""
        (ns, c), law, shape = self.batch(student_params, compute)
        log_d = np.log(c) - np.log(3 * self.flops.forward(ns))
        loss = np.exp(law.log_supervised(np.log(ns), log_d))
        return Baseline(*(a.reshape(shape) for a in (np.broadcast_to(ns, loss.shape), c, np.exp(log_d), loss)))

    # -- distillation ------------------------------------------------------------------------

    def check_domain(
        self, student_params: ArrayLike, compute: ArrayLike, teacher: ExistingTeacher | None = None
    ) -> list[str]:
        """Warn (``ExtrapolationWarning``) where N_S, the tokens D = C / 3 F(N_S) a budget buys the
        student, or an existing teacher lie far outside the coefficients' domain; returns the messages.

        A teacher loss at or below the supervised law's floor E is refused (``distlaw.laws.domain``).
        """
        ns, c = np.broadcast_arrays(self.student_sizes(student_params), positive_array(compute, "compute"))
        tokens = c / (3 * self.flops.forward(ns))
        labels = [f"N_S = {short_number(n)}, C = {short_number(x)}" for n, x in zip(ns.ravel(), c.ravel())] if c.size > 1 else None
        notes = check_domain(self.coefficients, params=np.unique(ns))
        notes += check_domain(self.coefficients, labels, tokens=tokens)
        if teacher is not None:
            notes += check_domain(
                self.coefficients, teacher_params=teacher.params, teacher_tokens=teacher.tokens, teacher_loss=teacher.loss
            )
        return list(dict.fromkeys(notes))  # each once (a fitted file's notes come with every check)

    def solve(
        self, student_params: ArrayLike, compute: ArrayLike, scenario: str | Scenario = "best", warn: bool = True
    ) -> Recipes:
        """The compute-optimal recipe (D_S, N_T, D_T, L_T, L_S) for each student size and budget.

        ``warn``: check the inputs against the coefficients' domain (``check_domain``) first.
        """
        scn = get_scenario(scenario)
        self.check(student_params, compute, scn)
        if warn:
            self.check_domain(student_params, compute)
        (ns, c), law, shape = self.batch(student_params, compute)
        log_ns, log_c = np.log(ns), np.log(c)
        parts: list[dict[str, np.ndarray]] = []
        step = max(1, CHUNK_POINTS // 64**2)
        for start in range(0, len(ns), step):
            rows = slice(start, start + step)
            chunk_law = law.take(np.arange(len(ns))[rows])
            if scn.teacher_logits or scn.teacher_pretraining:
                parts.append(self._solve_teacher_costs(scn, log_ns[rows], log_c[rows], chunk_law))
            else:
                parts.append(self._solve_best(log_ns[rows], log_c[rows], chunk_law))
        logs = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return self.build_recipes(scn, ns, c, logs, shape)

    def _solve_best(self, log_ns: np.ndarray, log_c: np.ndarray, law: LawBatch) -> dict[str, np.ndarray]:
        log_ds = log_c - np.log(3 * self.flops.forward(np.exp(log_ns)))
        log_lt, log_ls = self.best_teacher_loss(log_ns, log_ds, law)
        log_nt, log_dt = self.cheapest_teacher(log_lt, law)
        return {"log_ds": log_ds, "log_nt": log_nt, "log_dt": log_dt, "log_lt": log_lt, "log_ls": log_ls}

    def best_teacher_loss(
        self, log_ns: np.ndarray, log_ds: np.ndarray, law: LawBatch
    ) -> tuple[np.ndarray, np.ndarray]:
        """argmin over L_T of Eq. 8 within what teachers in the bounds can reach: (log L_T*, log L_S*)."""
        lo = law.log_supervised(np.full_like(log_ns, self.log_max), np.full_like(log_ns, self.log_max))
        hi = law.log_supervised(np.full_like(log_ns, self.log_min), np.full_like(log_ns, self.log_min))
        x, value = grid_minimize(
            lambda lt: law.log_student(log_ns[:, None], log_ds[:, None], lt), lo[:, None], hi[:, None], points=256
        )
        return x[:, 0], value

    def cheapest_teacher(self, log_lt: np.ndarray, law: LawBatch) -> tuple[np.ndarray, np.ndarray]:
        """The teacher (log N_T, log D_T) reaching loss L_T with the least pretraining compute 3 F(N_T) D_T."""

        def cost(u: np.ndarray) -> np.ndarray:
            log_dt = law.log_tokens_for_loss(u, log_lt[:, None])
            ok = (log_dt >= self.log_min - 1e-9) & (log_dt <= self.log_max + 1e-9)
            return np.where(ok, np.log(self.flops.forward(np.exp(u))) + log_dt, np.inf)

        lo = np.full((len(log_lt), 1), self.log_min)
        x, _ = grid_minimize(cost, lo, np.full_like(lo, self.log_max), points=256)
        log_nt = x[:, 0]
        return log_nt, np.clip(law.log_tokens_for_loss(log_nt, log_lt), self.log_min, self.log_max)

    def allocate(
        self, scn: Scenario, log_ns: np.ndarray, log_c: np.ndarray, log_nt: np.ndarray, v: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(log D_S, log D_T) on the budget constraint (Eq. 9) at teacher size N_T and free variable v.

        v is log D_T when the teacher's pretraining is free, else the logit of the student-side share of C.
        """
        f_s, f_t = self.flops.forward(np.exp(log_ns)), self.flops.forward(np.exp(log_nt))
        log_student_cost = np.log(3 * f_s + scn.teacher_logits * f_t)
        if not scn.teacher_pretraining:
            return log_c - log_student_cost, v
        log_share, log_rest = -np.logaddexp(0.0, -v), -np.logaddexp(0.0, v)
        return log_c + log_share - log_student_cost, log_c + log_rest - np.log(3 * f_t)

    def objective(
        self, scn: Scenario, log_ns: np.ndarray, log_c: np.ndarray, law: LawBatch
    ) -> Callable[..., np.ndarray]:
        """log L_S as a function of (log N_T, v) on the constraint; +inf outside the bounds."""

        def fn(u: np.ndarray, v: np.ndarray) -> np.ndarray:
            shape = (-1,) + (1,) * (max(np.ndim(u), np.ndim(v)) - 1)
            ns_, c_ = log_ns.reshape(shape), log_c.reshape(shape)
            log_ds, log_dt = self.allocate(scn, ns_, c_, u, v)
            log_ls = law.log_student(ns_, log_ds, law.log_supervised(u, log_dt))
            ok = (log_ds >= self.log_min) & (log_dt >= self.log_min) & (log_dt <= self.log_max)
            return np.where(ok, log_ls, np.inf)

        return fn

    def box(self, scn: Scenario, log_ns: np.ndarray, log_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Search box (P, 2) for (log N_T, v): every teacher that could fit in the budget."""
        lo = self.size_range[0]
        f_s, f_min = self.flops.forward(np.exp(log_ns)), self.flops.forward(lo)
        u_hi = np.full_like(log_c, self.log_max)
        if scn.teacher_logits or scn.teacher_pretraining:  # a costed teacher needs F(N_T) lo <= C, and F >= 2N
            u_hi = np.minimum(u_hi, log_c - np.log(2 * lo))
        if scn.teacher_pretraining:
            share_lo = (3 * f_s + scn.teacher_logits * f_min) * lo / np.exp(log_c)
            rest_lo = 3 * f_min * lo / np.exp(log_c)
            v_lo, v_hi = np.log(share_lo) - np.log1p(-share_lo), np.log1p(-rest_lo) - np.log(rest_lo)
        else:
            v_lo, v_hi = np.full_like(log_c, self.log_min), np.full_like(log_c, self.log_max)
        return np.stack([np.full_like(log_c, self.log_min), v_lo], 1), np.stack([u_hi, v_hi], 1)

    def _solve_teacher_costs(
        self, scn: Scenario, log_ns: np.ndarray, log_c: np.ndarray, law: LawBatch
    ) -> dict[str, np.ndarray]:
        lo, hi = self.box(scn, log_ns, log_c)
        fn = self.objective(scn, log_ns, log_c, law)
        if scn.teacher_pretraining:
            x, log_ls = grid_minimize(fn, lo, hi)
        else:
            u, log_ls = grid_minimize(lambda u: fn(u, np.full_like(u, self.log_max)), lo[:, :1], hi[:, :1], points=256)
            x = np.concatenate([u, np.full_like(u, self.log_max)], axis=1)
        log_nt = x[:, 0]
        log_ds, log_dt = self.allocate(scn, log_ns, log_c, log_nt, x[:, 1])
        log_lt = law.log_supervised(log_nt, log_dt)
        return {"log_ds": log_ds, "log_nt": log_nt, "log_dt": log_dt, "log_lt": log_lt, "log_ls": log_ls}

    def build_recipes(
        self, scn: Scenario, ns: np.ndarray, c: np.ndarray, logs: dict[str, np.ndarray], shape: tuple[int, ...],
        searched: bool = True,
    ) -> Recipes:
        """Recipes (reshaped to ``shape``) from flat log-space solutions, with their FLOP split.

        ``searched``: the teacher and tokens came from a search within the size range (so a value on
        its edge is a bound, not an optimum); False for a given teacher.
        """
        ds, nt, dt = np.exp(logs["log_ds"]), np.exp(logs["log_nt"]), np.exp(logs["log_dt"])
        f_t = self.flops.forward(nt)
        values = {
            "student_params": ns,
            "compute": c,
            "student_tokens": ds,
            "teacher_params": nt,
            "teacher_tokens": dt,
            "teacher_loss": np.exp(logs["log_lt"]),
            "student_loss": np.exp(logs["log_ls"]),
            "student_flops": self.flops.training(ns, ds),
            "teacher_inference_flops": scn.teacher_logits * f_t * ds,
            "teacher_pretraining_flops": 3 * f_t * dt if scn.teacher_pretraining else np.zeros_like(dt),
        }
        bounds = self.size_range if searched else None
        return Recipes(scn.name, **{k: v.reshape(shape) for k, v in values.items()}, size_range=bounds)

    # -- an existing teacher -----------------------------------------------------------------

    def solve_existing(
        self,
        student_params: ArrayLike,
        compute: ArrayLike,
        teacher: ExistingTeacher,
        scenario: str | Scenario = "teacher-inference",
        warn: bool = True,
    ) -> Recipes:
        """Best D_S under C for a given teacher: L_S falls with D_S (Eq. 8), so spend everything left.

        D_S = (C - dPre 3 F(N_T) D_T) / (3 F(N_S) + dLgt F(N_T)). The teacher gives its loss or its
        training tokens (then L_T = L(N_T, D_T)); counting its pretraining needs the tokens.
        Its size and tokens are at most 1e30; ``warn`` as in ``solve``.
        """
        scn = get_scenario(scenario)
        self.check_teacher(teacher)
        if scn.teacher_pretraining and teacher.tokens is None:
            raise DistlawError(f"scenario {scn.name} counts the teacher's pretraining: give its training tokens")
        ns = self.student_sizes(student_params)
        c = positive_array(compute, "compute")
        if warn:
            self.check_domain(ns, c, teacher)
        nt = float(teacher.params)
        dt = np.nan if teacher.tokens is None else float(teacher.tokens)
        (ns, c), law, shape = self.batch(ns, c)
        f_t = self.flops.forward(nt)
        left = c - scn.teacher_pretraining * 3 * f_t * np.nan_to_num(dt)
        ds = left / (3 * self.flops.forward(ns) + scn.teacher_logits * f_t)
        if (ds < self.size_range[0]).any():
            i = int(np.argmin(ds))
            raise DistlawError(
                f"compute {c[i]:.3g} FLOPs leaves less than one student step ({self.size_range[0]:g} tokens) for N_S={ns[i]:.3g} "
                f"with this teacher in scenario {scn.name}"
            )
        log_nt, log_dt = np.full_like(ns, np.log(nt)), np.full_like(ns, np.log(dt))
        log_lt = np.full_like(ns, np.log(teacher.loss)) if teacher.loss is not None else law.log_supervised(log_nt, log_dt)
        log_ls = law.log_student(np.log(ns), np.log(ds), log_lt)
        logs = {"log_ds": np.log(ds), "log_nt": log_nt, "log_dt": log_dt, "log_lt": log_lt, "log_ls": log_ls}
        return self.build_recipes(scn, ns, c, logs, shape, searched=False)

"""Pilot layouts a designer chooses among (issue 12): the paper's fixed-M x fixed-M protocol (Busbridge et
al. 2025, Sec. 4.1 (3)) with its knobs free: how many sizes over what span, which tokens-per-parameter
ratios, how many teachers and which student ratios. Each layout is scaled to spend the budget: sizes and
tokens both grow by s, so cost grows by s^2 and s = sqrt(budget / cost at s = 1).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from distlaw.design.pilot import Pilot
from distlaw.errors import DistlawError

TEACHER_RATIO = 20.0
RATIO_SETS: dict[str, tuple[float, ...]] = {
    "paper": (20.0, 40.0, 80.0, 160.0, 320.0),
    "wide": (10.0, 40.0, 160.0, 640.0),
    "sparse": (20.0, 80.0, 320.0),
    "near": (10.0, 20.0, 40.0),
}


@dataclass(frozen=True)
class Layout:
    """``n_sizes`` model sizes log-spaced over a factor ``span`` up to ``top`` parameters; every size
    trained supervised at each of ``ratios`` (D = M N); the ``n_teachers`` largest sizes at M = 20 teach;
    the ``n_students`` smallest sizes are distilled from every teacher larger than them at each of
    ``student_ratios``."""

    top: float
    n_sizes: int
    span: float
    ratios: tuple[float, ...]
    n_teachers: int
    n_students: int
    student_ratios: tuple[float, ...]

    @property
    def sizes(self) -> np.ndarray:
        return np.geomspace(self.top / self.span, self.top, self.n_sizes)

    @property
    def label(self) -> str:
        return (f"{self.n_sizes} sizes x{self.span:g} to {self.top:.3g}, M {'/'.join(f'{r:g}' for r in self.ratios)}; "
                f"{self.n_teachers} teacher(s) -> {self.n_students} student size(s) at M {'/'.join(f'{r:g}' for r in self.student_ratios)}")

    def pilot(self) -> Pilot:
        sizes = self.sizes
        ratios = sorted(set(self.ratios) | {TEACHER_RATIO})
        sup_n = np.repeat(sizes, len(ratios))
        sup_d = sup_n * np.tile(ratios, len(sizes))
        teacher_rows = [i * len(ratios) + ratios.index(TEACHER_RATIO) for i in range(len(sizes) - self.n_teachers, len(sizes))]
        dist = [(sizes[s], sizes[s] * m, t) for s in range(self.n_students) for t in teacher_rows if sup_n[t] > sizes[s]
                for m in self.student_ratios]
        dn, dd, dt = (np.array([d[j] for d in dist]) for j in range(3))
        return Pilot(sup_n, sup_d, dn, dd, dt.astype(int), self.label)

    def scaled(self, budget: float, max_params: float) -> Layout:
        """The layout grown or shrunk to cost ``budget``, its largest size capped at ``max_params`` (then
        it costs less)."""
        cost = self.pilot().flops()
        top = min(self.top * math.sqrt(budget / cost), max_params)
        return Layout(top, self.n_sizes, self.span, self.ratios, self.n_teachers, self.n_students, self.student_ratios)


def candidates(budget: float, max_params: float, min_params: float = 0.0) -> list[Layout]:
    """Layouts spending ``budget`` FLOPs, their largest model at most ``max_params`` and their smallest at
    least ``min_params``: sizes 3-6 over a factor 10-100, four ratio sets, 1-2 teachers, 2-3 student sizes."""
    out = []
    for n_sizes, span, ratios, n_teachers, student_ratios in itertools.product(
        (3, 4, 6), (10.0, 30.0, 100.0), ("paper", "wide", "near"), (1, 2), ("sparse", "near"),
    ):
        layout = Layout(1.0, n_sizes, span, RATIO_SETS[ratios], n_teachers, min(n_sizes - n_teachers, 3), RATIO_SETS[student_ratios])
        scaled = layout.scaled(budget, max_params)
        if scaled.sizes[0] >= min_params:
            out.append(scaled)
    if not out:
        raise DistlawError(f"a budget of {budget:.3g} FLOPs buys no pilot layout with models of at least {min_params:.3g} parameters")
    return out


def log_uniform_grid(budget: float, max_params: float) -> Layout:
    """The usual hand-made pilot, the baseline a design must beat: 5 sizes log-uniform over a factor 100,
    each at the paper's five ratios, the two largest teach the three smallest at M = 20/80/320."""
    return Layout(1.0, 5, 100.0, RATIO_SETS["paper"], 2, 3, RATIO_SETS["sparse"]).scaled(budget, max_params)

"""A pilot as its run store holds it, for ``distlaw validate``: finished runs, teachers, the lab settings
they were trained with, and the sweep config that trains new recipes with those settings.

The store keeps each run's ``RunSpec`` (data, optimizer, distillation, evaluation, shape, architecture),
not the pilot's TOML; the settings are read back from the teachers' specs and the ``[model]`` family from
their shapes (d_model / n_layers, the head width). A teacher re-planned from them has the stored name
and content key (``RunSpec.key``), so ``run_sweep`` finds it done and its students distil from the stored
run instead of training it again; where it would not, ``recipe_config`` refuses.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from distlaw.design.pilot import TEACHER_INFERENCE
from distlaw.errors import DistlawError
from distlaw.lab.architectures import Sizer
from distlaw.lab.config import FAMILIES, RunSpec
from distlaw.lab.protocols import ModelFamily, SweepConfig, expand
from distlaw.store import RunStore, check_store, runs_table

VALIDATION_SUFFIX = "-validate"  # the sweep of a pilot's validation recipes: <pilot>-validate
SIZE_SPAN = 10.0  # default student sizes: from the pilot's smallest model to 10x its largest (check_domain's "far")
SETTINGS = ("data", "optim", "distill", "eval_tokens", "architecture")


@dataclass(frozen=True)
class StoreTeacher:
    """A finished supervised run that taught in the pilot: its name, N, planned tokens and measured loss."""

    name: str
    params: int
    tokens: int
    loss: float


def run_compute(table: pd.DataFrame) -> np.ndarray:
    """6 N D of each row of a runs table, plus 2 N_T D for distilled rows with a teacher size (online inference, Eq. 9)."""
    tokens = table["tokens"].to_numpy(float)
    teacher = table["teacher_params"].to_numpy(float) if "teacher_params" in table else np.zeros(len(table))
    teacher = np.where((table["kind"].to_numpy() == "distilled") & ~np.isnan(teacher), teacher, 0.0)
    return (6.0 * table["params"].to_numpy(float) + TEACHER_INFERENCE * teacher) * tokens


@dataclass(frozen=True)
class PilotStore:
    """The finished runs of one pilot sweep in a store, and how to train more like them."""

    path: Path
    sweep: str
    runs: pd.DataFrame  # the runs table of its finished runs (``distlaw.store.runs_table``)
    template: RunSpec  # a teacher's spec (else the largest run's): the settings new runs copy
    teachers: list[StoreTeacher]
    aspect_ratio: int
    head_dim: int
    family: str | None

    @property
    def validation_name(self) -> str:
        return self.sweep + VALIDATION_SUFFIX

    @property
    def step_tokens(self) -> int:
        """Tokens per optimizer step: the granularity of a run's tokens."""
        return self.template.optim.batch_size * self.template.data.seq_len

    @property
    def largest_compute(self) -> float:
        return float(run_compute(self.runs).max())

    def sizer(self) -> Sizer:
        return Sizer.of(self.aspect_ratio, self.head_dim, self.family)

    def built(self, params: float) -> int:
        """Non-embedding parameters of the model the lab builds for a size target."""
        sizer, shape = self.sizer(), self.template.shape
        return sizer.params(sizer.from_params(params, n_ctx=shape.n_ctx, vocab_size=shape.vocab_size))

    def student_sizes(self, student: float | None = None, size_range: tuple[float, float] | None = None) -> list[int]:
        """The students a recipe may have: the model built for ``student``, else every model the lab builds
        (d_model = aspect_ratio x n_layers) within ``size_range`` (default: the pilot's smallest model to
        SIZE_SPAN times its largest)."""
        if student is not None:
            built = self.built(student)
            if max(built / student, student / built) > ModelFamily().size_tolerance:
                raise DistlawError(f"--student {student:g}: the nearest model the pilot's family builds has {built} parameters")
            return [built]
        params = self.runs["params"]
        lo, hi = size_range or (float(params.min()), SIZE_SPAN * float(params.max()))
        shape = self.template.shape
        sizes = [self.built(n) for n in self.sizer().sizes_between(lo, hi, n_ctx=shape.n_ctx, vocab_size=shape.vocab_size)]
        if not sizes:
            raise DistlawError(f"no model the pilot's family builds (d_model = {self.aspect_ratio} x layers) has {lo:g} to {hi:g} parameters")
        return sorted(set(sizes))

    def losses(self, names: Sequence[str]) -> list[float | None]:
        """The measured loss of each named run (None where it has not finished)."""
        with RunStore(self.path, create=False) as store:
            records = [store.get(name) for name in names]
        return [r.loss if r is not None and r.status == "done" else None for r in records]


def _pilot_sweep(store: RunStore, sweep: str | None) -> str:
    if sweep is not None:
        store.check_sweep(sweep)
        return sweep
    pilots = [s for s in store.sweeps() if not s.endswith(VALIDATION_SUFFIX)]
    if len(pilots) != 1:
        found = ", ".join(pilots) or "none"
        raise DistlawError(f"{store.path}: {'no pilot sweep' if not pilots else 'several sweeps'} in the store ({found}); name the pilot with --sweep")
    return pilots[0]


def _family(spec: RunSpec) -> tuple[int, int, str | None]:
    """(aspect_ratio, head_dim, family) of the ``[model]`` table a stored run was built with."""
    shape = spec.shape
    if shape.d_model % shape.n_layers:
        raise DistlawError(f"run '{spec.name}': d_model {shape.d_model} is not a multiple of its {shape.n_layers} layers, so its [model] "
                           "aspect ratio cannot be read back; validate needs a pilot sized by parameter counts")
    family = None if spec.architecture is None else spec.architecture.get("model_type")
    if spec.architecture is not None and family not in FAMILIES:
        raise DistlawError(f"run '{spec.name}': a {family} model made --like a checkpoint; validate trains pilots of distlaw's Llama "
                           f"or a built-in family ({', '.join(FAMILIES)})")
    return shape.d_model // shape.n_layers, shape.head_dim, family


def read_pilot(store_path: str | os.PathLike[str], sweep: str | None = None) -> PilotStore:
    """The finished runs of the pilot sweep ``sweep`` (default: the store's one sweep that is not a
    validation) and its teachers; a one-line DistlawError for a missing store or one without finished runs."""
    path = check_store(Path(store_path), create=False)
    with RunStore(path, create=False) as store:
        name = _pilot_sweep(store, sweep)
        done = store.records(name, "done")
        if not done:
            raise DistlawError(f"{path}: sweep '{name}' has no finished runs (train the pilot first: distlaw sweep run CONFIG --store {path})")
        roles = store.memberships(name)
        table = runs_table(store, name)
    teachers = [r for r in done if r.kind == "supervised" and any(role == "teacher" for _, role in roles.get(r.name, []))]
    template = teachers[0].spec if teachers else max(done, key=lambda r: r.params).spec
    for record in teachers:
        differ = [s for s in SETTINGS if getattr(record.spec, s) != getattr(template, s)]
        if differ:
            raise DistlawError(f"{path}: teachers '{template.name}' and '{record.name}' were trained with different {differ[0]} settings; "
                               "validate needs one pilot's settings (name it with --sweep)")
    return PilotStore(path, name, table, template,
                      [StoreTeacher(r.name, r.params, r.spec.tokens, float(r.loss)) for r in teachers], *_family(template))  # type: ignore[arg-type]


def recipe_config(pilot: PilotStore, runs: Sequence[tuple[int, int, str | None]]) -> tuple[SweepConfig, list[str]]:
    """The sweep (one ``runs`` protocol with the pilot's settings) of recipes ``(params, tokens, teacher
    name or None)``, and each recipe's run name. Its teachers are the pilot's runs, planned again under the
    same name and key; a teacher that would not be is a DistlawError (it would be trained again)."""
    spec = pilot.template
    teachers = list(dict.fromkeys(t for _, _, t in runs if t is not None))
    by_name = {t.name: t for t in pilot.teachers}
    supervised = [(float(by_name[t].params), float(by_name[t].tokens)) for t in teachers]
    supervised += [(float(n), float(d)) for n, d, t in runs if t is None]
    distilled = [(float(n), float(d), teachers.index(t)) for n, d, t in runs if t is not None]
    model = ModelFamily(aspect_ratio=pilot.aspect_ratio, head_dim=pilot.head_dim, vocab_size=spec.shape.vocab_size, family=pilot.family,
                        max_params=max(ModelFamily().max_params, *(float(n) for n, _, _ in runs)))
    config = SweepConfig(name=pilot.validation_name, data=spec.data, optim=spec.optim, distill=spec.distill, eval_tokens=spec.eval_tokens,
                         model=model, protocol=[{"type": "runs", "supervised": supervised, "distilled": distilled}])
    planned = {run.spec.name: run.spec for run in expand(config)}
    with RunStore(pilot.path, create=False) as store:
        for teacher in teachers:
            stored = store.get(teacher)
            if teacher not in planned or stored is None or planned[teacher].key() != stored.key:
                raise DistlawError(f"{pilot.path}: teacher '{teacher}' cannot be planned again with the settings read from the store "
                                   "(it would be trained anew); validate needs a pilot sized by parameter counts")
    specs = list(planned.values())

    def name_of(n: int, d: int, teacher: str | None) -> str:
        kind = "supervised" if teacher is None else "distilled"
        return next(s.name for s in specs if s.kind == kind and s.teacher == teacher and s.tokens == d and s.non_embedding_params == n)

    return config, [name_of(n, d, t) for n, d, t in runs]

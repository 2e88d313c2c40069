"""What a sweep builds once from a finished model and several of its runs read.

- Teacher caches: a teacher's top-k log-probabilities plus the rest mass over the longest of its
  students' tokens, so teacher inference is paid once (Busbridge et al. 2025, arXiv 2502.08606, Sec. 5);
  students with ``distill.cache_k`` read one.
- Pruned students: a teacher structurally pruned to a target size, in width and depth (Zhang et al.
  2023, arXiv 2311.07052; Minitron, arXiv 2407.14679); students with ``init`` start from one.

Each is planned from the runs' specs (``cache_plans``, ``prune_plans``: run name -> plan; runs that
need the same thing share one plan), lives in ``RUNS.runs/<kind>/<name>`` and is a job of the sweep's
DAG: after its source model, before its runs. A build's job works in its folder only (``build_cache_job``,
``prune_job``); the sweep coordinator records it (``record_build``). Building is idempotent and safe against
a parallel build of the same thing; a failed build fails the runs that needed it, with the reason.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distlaw.lab.config import PRUNE_OPTIONS, DataConfig, RunSpec, default_cache
from distlaw.lab.executors import JobState
from distlaw.store import RunStore

CACHE_DIR, PRUNED_DIR = "teacher-caches", "pruned"  # inside RUNS.runs/
JOB_PREFIXES = ("cache:", "prune:")


def is_shared_job(name: str) -> bool:
    """Whether a sweep job name is a shared build (``cache:...``, ``prune:...``) rather than a run."""
    return name.startswith(JOB_PREFIXES)


@dataclass(frozen=True)
class CachePlan:
    """A teacher cache for every student of ``source`` with ``distill.cache_k`` set, covering the longest."""

    source: str  # the teacher: a run of the store, or a checkpoint directory
    directory: Path
    data: DataConfig
    order_seed: int
    k: int
    temperature: float
    batch_size: int
    tokens: int
    runs: tuple[str, ...]

    @property
    def job(self) -> str:
        return "cache:" + self.directory.name


@dataclass(frozen=True)
class PrunePlan:
    """``source`` pruned to ``target_params``, the starting point of every run whose ``init`` asks for it."""

    source: str
    directory: Path
    data: DataConfig
    target_params: int
    calibration_tokens: int
    order_seed: int
    batch_size: int
    runs: tuple[str, ...]
    options: tuple[tuple[str, Any], ...]  # method, depth, keep_layers, depth_importance (``PruneInit``)

    @property
    def job(self) -> str:
        return "prune:" + self.directory.name


def _grouped(specs: list[RunSpec], signature: Callable[[RunSpec], list | None]) -> dict[str, list[RunSpec]]:
    """Specs by the JSON of their signature (None: left out)."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in specs:
        sig = signature(spec)
        if sig is not None:
            groups.setdefault(json.dumps(sig, sort_keys=True), []).append(spec)
    return groups


def _directory(runs_dir: Path, kind: str, source: str, label: str, signature: str) -> Path:
    return runs_dir / kind / f"{Path(source).name}-{label}-{hashlib.sha256(signature.encode()).hexdigest()[:8]}"


def cache_plans(runs_dir: Path, specs: list[RunSpec]) -> dict[str, CachePlan]:
    """Run name -> the teacher cache it reads; one cache per teacher and way of reading it (data, order, k, tau, batch)."""
    def signature(spec: RunSpec) -> list | None:
        if spec.teacher is None or spec.distill.cache_k is None:
            return None
        return [spec.teacher, spec.data.model_dump(), spec.order_seed, spec.distill.cache_k, spec.distill.temperature, spec.optim.batch_size]

    plans: dict[str, CachePlan] = {}
    for sig, runs in _grouped(specs, signature).items():
        teacher, data, order_seed, k, temperature, batch_size = json.loads(sig)
        tokens = max(s.steps for s in runs) * batch_size * data["seq_len"]
        plan = CachePlan(
            source=teacher, directory=_directory(runs_dir, CACHE_DIR, teacher, f"k{k}-D{tokens}", sig), data=runs[0].data,
            order_seed=order_seed, k=k, temperature=temperature, batch_size=batch_size, tokens=tokens,
            runs=tuple(s.name for s in runs),
        )  # fmt: skip
        plans.update(dict.fromkeys(plan.runs, plan))
    return plans


def prune_plans(runs_dir: Path, specs: list[RunSpec]) -> dict[str, PrunePlan]:
    """Run name -> the pruned model it starts from; one per source, target, calibration and data (runs that
    differ only in their training seed share it)."""
    def signature(spec: RunSpec) -> list | None:
        if spec.init is None:
            return None
        return [spec.init.model_dump(), spec.data.model_dump(), spec.optim.batch_size]

    plans: dict[str, PrunePlan] = {}
    for sig, runs in _grouped(specs, signature).items():
        init = runs[0].init
        assert init is not None
        plan = PrunePlan(
            source=init.source, directory=_directory(runs_dir, PRUNED_DIR, init.source, f"N{init.target_params}", sig),
            data=runs[0].data, target_params=init.target_params, calibration_tokens=init.calibration_tokens,
            order_seed=init.calibration_seed, batch_size=runs[0].optim.batch_size, runs=tuple(s.name for s in runs),
            options=tuple((key, getattr(init, key)) for key in PRUNE_OPTIONS),
        )  # fmt: skip
        plans.update(dict.fromkeys(plan.runs, plan))
    return plans


def _build_once(plan: CachePlan | PrunePlan, marker: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``build()`` unless ``plan.directory`` holds ``marker`` (then ``{}``): another job may build the same
    thing at the same time, one rename wins and the other is not an error."""
    if (plan.directory / marker).is_file():
        return {}
    try:
        return build()
    except Exception:
        if (plan.directory / marker).is_file():
            return {}
        raise


def build_cache_job(plan: CachePlan, source: Path, progress: bool) -> dict[str, Any]:
    """A teacher cache's job: build it from the teacher checkpoint ``source``; returns its manifest and
    build time for the coordinator to record (``record_build``). Opens no store."""
    from distlaw.lab.teacher_cache import MANIFEST, build_cache

    def build() -> dict[str, Any]:
        start = time.perf_counter()
        manifest = build_cache(
            source, plan.directory, plan.data, default_cache(plan.directory.parent), tokens=plan.tokens, k=plan.k,
            temperature=plan.temperature, order_seed=plan.order_seed, batch_size=plan.batch_size, progress=progress,
        )  # fmt: skip
        return {"manifest": manifest, "wall_time_s": time.perf_counter() - start}

    return _build_once(plan, MANIFEST, build)


def prune_job(plan: PrunePlan, source: Path, progress: bool) -> dict[str, Any]:
    """A pruned student's job: prune the checkpoint ``source`` into the starting point of its runs. Opens no store."""
    from distlaw.lab.pruning import RECORD, prune_checkpoint

    def build() -> dict[str, Any]:
        prune_checkpoint(
            source, plan.directory, plan.data, default_cache(plan.directory.parent), target_params=plan.target_params,
            calibration_tokens=plan.calibration_tokens, batch_size=plan.batch_size, seed=plan.order_seed, progress=progress,
            **dict(plan.options),
        )  # fmt: skip
        return {}

    return _build_once(plan, RECORD, build)


def record_build(plan: CachePlan | PrunePlan, store: RunStore, state: JobState) -> None:
    """Write an ended shared build to the store: a cache's teacher-inference FLOPs; a failure fails the
    plan's runs with the reason."""
    if state.state == "done":
        if isinstance(plan, CachePlan) and state.result:
            store.add_cache(plan.directory, plan.source, state.result["manifest"], state.result["wall_time_s"])
        return
    what = "teacher cache" if isinstance(plan, CachePlan) else "pruned model"
    for run in plan.runs:
        store.fail(run, f"{what} {plan.directory.name}: {state.error or 'job ended ' + state.native}")

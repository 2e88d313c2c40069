"""Sweep configurations and the three experiment protocols of Busbridge et al. 2025 (arXiv 2502.08606, Sec. 4).

(1) ``fixedm-isoflop``: fixed-M teachers (M_T = D_T/N_T ~ 20) distilled into students on IsoFLOP
    profiles (6 N_S D_S = C_S for each budget C_S; teacher cost not counted), Fig. 2.
(2) ``isoflop-fixedm``: teachers on IsoFLOP profiles (6 N_T D_T = C_T) distilled into fixed-M
    students (M_S ~ 20), Fig. 3.
(3) ``fixedm-fixedm``: fixed-M teachers x fixed-M students with M_S in {20, 40, 80, 160, 320}, Fig. 4.

and the law of capacity gap's (Zhang et al. 2023, arXiv 2311.07052): ``prune-distill``, fixed-M teachers
each structurally pruned to every student size, then distilled into it.

Every protocol can add supervised baselines (the student's shape and tokens, no teacher): the
supervised law's Ltilde_S. A sweep config is TOML, validated here; ``expand`` turns it into RunSpecs
with stable names, teachers first, shared runs planned once.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from distlaw.compute import ModelShape
from distlaw.errors import DistlawError
from distlaw.lab.architectures import Sizer
from distlaw.lab.checks import check_architecture
from distlaw.lab.config import DataConfig, DistillConfig, OptimConfig, PruneInit, RunSpec
from distlaw.lab.prunable import LLAMA, layout_of
from distlaw.lab.pruned import kept_count, pruned_shape
from distlaw.store import PlannedRun

PAPER_STUDENT_RATIOS = (20.0, 40.0, 80.0, 160.0, 320.0)
SHIPPED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class ExplicitShape(BaseModel):
    """A model size given as dimensions instead of a parameter count."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_layers: int = Field(ge=1)
    d_model: int = Field(ge=1)
    n_heads: int = Field(ge=1)
    d_ff: int = Field(ge=1)


Size = Union[Annotated[float, Field(gt=0)], ExplicitShape]


class ModelFamily(BaseModel):
    """How a parameter count becomes a shape: d_model = aspect_ratio * n_layers (Busbridge App. H), in the
    paper's Llama, a built-in ``family`` or the architecture of the checkpoint folder ``like``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    aspect_ratio: int = Field(default=8, ge=1)
    head_dim: int = Field(default=8, ge=1)
    vocab_size: int | None = Field(default=None, ge=2)  # default: from the tokenizer
    size_tolerance: float = Field(default=1.5, gt=1)  # a size must map to a shape within this factor
    max_params: float = Field(default=1e9, gt=0)  # larger models are beyond a local lab
    family: str | None = None  # e.g. "gpt_neox": transformers' defaults of that family
    like: str | None = None  # a checkpoint folder whose family and conventions the models copy

    @model_validator(mode="after")
    def _architecture(self) -> ModelFamily:
        check_architecture(self.family, self.like, "[model] ")
        return self


class _Protocol(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    baselines: bool = True  # also train each student shape/token count supervised
    ratio_range: tuple[float, float] = (1.0, 2000.0)  # IsoFLOP points outside this M = D/N are dropped


class FixedMIsoFLOP(_Protocol):
    """Protocol (1): fixed-M teachers x student IsoFLOP profiles."""

    type: Literal["fixedm-isoflop"]
    teachers: list[Size] = Field(min_length=1)
    teacher_ratio: float = Field(default=20.0, gt=0)
    budgets: list[Annotated[float, Field(gt=0)]] = Field(min_length=1)  # C_S
    students: list[Size] = Field(min_length=1)


class IsoFLOPFixedM(_Protocol):
    """Protocol (2): teacher IsoFLOP profiles x fixed-M students."""

    type: Literal["isoflop-fixedm"]
    budgets: list[Annotated[float, Field(gt=0)]] = Field(min_length=1)  # C_T
    teachers: list[Size] = Field(min_length=1)
    students: list[Size] = Field(min_length=1)
    student_ratio: float = Field(default=20.0, gt=0)


class FixedMFixedM(_Protocol):
    """Protocol (3): fixed-M teachers x fixed-M students over several student ratios."""

    type: Literal["fixedm-fixedm"]
    teachers: list[Size] = Field(min_length=1)
    teacher_ratio: float = Field(default=20.0, gt=0)
    students: list[Size] = Field(min_length=1)
    student_ratios: list[Annotated[float, Field(gt=0)]] = Field(default=list(PAPER_STUDENT_RATIOS), min_length=1)


class PruneDistill(_Protocol):
    """Capacity-gap protocol (Zhang et al. 2023, arXiv 2311.07052): fixed-M teachers, each pruned to every
    smaller student size and the pruned student distilled from its own teacher on D_S = M_S x (student
    size) tokens, the same for every teacher, so each student size has one loss per teacher size."""

    type: Literal["prune-distill"]
    teachers: list[Size] = Field(min_length=1)
    teacher_ratio: float = Field(default=20.0, gt=0)
    students: list[Annotated[float, Field(gt=0)]] = Field(min_length=1)  # target non-embedding parameters
    student_ratio: float = Field(default=20.0, gt=0)
    calibration_tokens: int = Field(default=65536, ge=1)  # importance of heads, neurons and hidden units
    method: Literal["mask-gradient", "activation"] = "mask-gradient"  # width importance: Zhang's, or Minitron's
    depth: int = Field(default=0, ge=0)  # layers dropped from every teacher, by depth_importance
    keep_layers: str | None = Field(default=None, min_length=1)  # or the layers every teacher keeps ("4:-4")
    depth_importance: Literal["loss", "cosine"] = "loss"


class ExplicitRuns(_Protocol):
    """A pilot given run by run (what ``distlaw design`` writes): supervised runs ``[params, tokens]`` and
    distilled runs ``[params, tokens, teacher]``, ``teacher`` the 0-based index of a supervised run."""

    type: Literal["runs"]
    baselines: bool = False  # the supervised runs are listed
    supervised: list[tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]] = Field(min_length=1)
    distilled: list[tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)], Annotated[int, Field(ge=0)]]] = []

    @field_validator("distilled")
    @classmethod
    def _teachers_listed(cls, value: list, info) -> list:
        supervised = info.data.get("supervised") or []
        for params, _, teacher in value:
            if teacher >= len(supervised):
                raise ValueError(f"distilled run of {params:g} parameters names teacher {teacher}, but there are {len(supervised)} supervised runs")
        return value


class SlurmResources(BaseModel):
    """What one Slurm job asks for (sbatch's options; None: the cluster's default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: int | str | None = None  # minutes, or Slurm's D-HH:MM:SS
    nodes: int | None = Field(default=None, ge=1)
    gpus_per_node: int | None = Field(default=None, ge=0)
    tasks_per_node: int | None = Field(default=None, ge=1)  # processes of a run per node (DDP); default: one per GPU
    cpus_per_task: int | None = Field(default=None, ge=1)
    mem: str | None = Field(default=None, pattern=r"^\d+[KMGT]?$")  # per node, e.g. 16G
    constraint: str | None = None
    sbatch: dict[str, str] = Field(default_factory=dict)  # more sbatch options, e.g. {exclusive = "", "mail-type" = "END"}

    @field_validator("time")
    @classmethod
    def _slurm_time(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 1 or isinstance(value, str) and not re.fullmatch(r"(\d+-)?\d+(:\d+){0,2}", value):
            raise ValueError(f"a time limit is minutes or D-HH:MM:SS (Slurm's formats), not {value!r}")
        return value

    def merged(self, other: SlurmResources) -> SlurmResources:
        """These resources with the fields ``other`` sets replacing them (``sbatch`` options added)."""
        update = other.model_dump(exclude_unset=True, exclude={"sbatch"})
        return self.model_copy(update={**update, "sbatch": {**self.sbatch, **other.sbatch}})


class SlurmConfig(SlurmResources):
    """``[executor.slurm]``: resources of every job, per-role tables overriding them, and how many jobs
    the coordinator keeps queued or running at once (None: every job that is ready)."""

    max_jobs: int | None = Field(default=None, ge=1)
    teacher: SlurmResources = SlurmResources()
    student: SlurmResources = SlurmResources()  # students and supervised baselines
    cache: SlurmResources = SlurmResources()
    prune: SlurmResources = SlurmResources()

    def for_role(self, role: str, overrides: SlurmResources | None = None) -> SlurmResources:
        """A job's resources: the table's, then its role's, then ``overrides`` (the CLI's)."""
        base = SlurmResources.model_validate(self.model_dump(exclude={"max_jobs", "teacher", "student", "cache", "prune"}))
        return base.merged(getattr(self, role)).merged(overrides or SlurmResources())


class ExecutorConfig(BaseModel):
    """``[executor]``: backend settings (only Slurm has any)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slurm: SlurmConfig = SlurmConfig()


Protocol = Annotated[Union[FixedMIsoFLOP, IsoFLOPFixedM, FixedMFixedM, PruneDistill, ExplicitRuns], Field(discriminator="type")]
PROTOCOL_TYPES = ("fixedm-isoflop", "isoflop-fixedm", "fixedm-fixedm", "prune-distill", "runs")


class SweepConfig(BaseModel):
    """A sweep: shared data/optimizer/distillation settings and a list of protocols."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    distill: DistillConfig = DistillConfig()
    model: ModelFamily = ModelFamily()
    eval_tokens: int = Field(default=65536, ge=1)
    checkpoint_every: int | None = Field(default=50, ge=1)  # optimizer steps between resume checkpoints
    workers: int | None = Field(default=None, ge=1)  # runs trained at once (processes); None: one per core
    # Train every student and baseline once per seed (initialisation and data order); teachers once,
    # with optim.seed. None: one seed, optim.seed. Runs of other seeds get names ending in -s<seed>.
    seeds: list[Annotated[int, Field(ge=0)]] | None = Field(default=None, min_length=1)
    protocol: list[Protocol] = Field(min_length=1)
    executor: ExecutorConfig = ExecutorConfig()

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("seeds must be distinct")
        return value

    @field_validator("protocol", mode="before")
    @classmethod
    def _known_types(cls, value: object) -> object:
        for index, item in enumerate(value if isinstance(value, list) else []):
            kind = item.get("type") if isinstance(item, dict) else None
            if kind not in PROTOCOL_TYPES:
                raise ValueError(
                    f"protocol {index + 1}: unknown protocol type {kind!r} (expected one of {', '.join(PROTOCOL_TYPES)})"
                )
        return value

    @property
    def vocab_size(self) -> int:
        """The models' vocabulary: ``[model] vocab_size``, else the tokenizer's (byte: 256, bpe:V: V)."""
        if self.model.vocab_size is not None:
            return self.model.vocab_size
        tokenizer = self.data.tokenizer
        if tokenizer == "byte":
            return 256
        if tokenizer.startswith("bpe:") and tokenizer[4:].isdigit():
            return int(tokenizer[4:])
        raise DistlawError(f"sweep '{self.name}': set [model] vocab_size for tokenizer '{tokenizer}'")


def shipped_configs() -> dict[str, Path]:
    """The sweep configs shipped inside the package (``distlaw/configs/NAME.toml``), by name."""
    return {p.stem: p for p in sorted(SHIPPED_CONFIGS.glob("*.toml"))}


def config_path(path: str | Path) -> Path:
    """A sweep config file, or the name of a shipped one (``micro``) when no such file exists."""
    p = Path(path)
    shipped = shipped_configs()
    if not p.exists() and str(path) in shipped:
        return shipped[str(path)]
    if p.is_dir():
        raise DistlawError(f"{p}: is a folder; a sweep config is a TOML file")
    if not p.is_file():
        raise DistlawError(f"{p}: no such sweep config (a TOML file, or a shipped config: {', '.join(shipped)})")
    if p.suffix.lower() != ".toml":
        raise DistlawError(f"{p}: a sweep config is a TOML file ending in .toml")
    return p


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep config TOML (or a shipped config by name, see ``config_path``); any
    problem is a one-line DistlawError naming the file."""
    p = config_path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DistlawError(f"{p}: malformed TOML ({exc})") from exc
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "top level"
        message = first["msg"].removeprefix("Value error, ")
        raise DistlawError(f"{p}: {where}: {message}") from exc


class _Builder:
    """Turns sizes and token counts into named RunSpecs for one sweep config."""

    def __init__(self, config: SweepConfig) -> None:
        self.config = config
        self.min_tokens = config.optim.batch_size * config.data.seq_len
        self.sizer = Sizer.of(config.model.aspect_ratio, config.model.head_dim, config.model.family, config.model.like)

    def shape(self, size: float | ExplicitShape) -> ModelShape:
        """The model of a size: an explicit shape, or the family's shape nearest a parameter count."""
        c = self.config
        common = {"vocab_size": c.vocab_size, "n_ctx": c.data.seq_len}
        if isinstance(size, ExplicitShape):
            if size.d_model % size.n_heads:
                raise DistlawError(f"sweep '{c.name}': d_model {size.d_model} is not divisible by n_heads {size.n_heads}")
            shape = ModelShape(**size.model_dump(), **common)
            self._check_max(self.sizer.params(shape))
            return shape
        self._check_max(size)
        shape = self.sizer.from_params(size, **common)
        off = self.sizer.params(shape) / size
        if max(off, 1 / off) > c.model.size_tolerance:
            raise DistlawError(
                f"sweep '{c.name}': size {size:g} is out of range for aspect_ratio {c.model.aspect_ratio} "
                f"(nearest shape {shape.n_layers}x{shape.d_model} has {self.sizer.params(shape)} parameters); "
                "pick another size or give an explicit shape"
            )
        return shape

    def _check_max(self, params: float) -> None:
        if params > self.config.model.max_params:
            raise DistlawError(
                f"sweep '{self.config.name}': size {params:g} is out of range (above [model] max_params = {self.config.model.max_params:g})"
            )

    def tokens(self, params: int, tokens: float, what: str) -> int:
        count = round(tokens)
        if count < self.min_tokens:
            raise DistlawError(
                f"sweep '{self.config.name}': {what} gives {count} tokens for a {params}-parameter "
                f"model, less than one batch ({self.min_tokens} tokens)"
            )
        return count

    def supervised(self, shape: ModelShape, tokens: int) -> RunSpec:
        return self._spec(f"sup-N{self.sizer.params(shape)}-D{tokens}", "supervised", shape, tokens, None)

    def distilled(self, shape: ModelShape, tokens: int, teacher: RunSpec, init: PruneInit | None = None) -> RunSpec:
        name = f"kd-N{self.sizer.params(shape)}-D{tokens}-from-{teacher.name.removeprefix('sup-')}" + ("-pruned" if init else "")
        return self._spec(name, "distilled", shape, tokens, teacher.name, init)

    def _spec(self, name: str, kind: str, shape: ModelShape, tokens: int, teacher: str | None, init: PruneInit | None = None) -> RunSpec:
        c = self.config
        return RunSpec(
            name=name, kind=kind, shape=shape, tokens=tokens, teacher=teacher, init=init,
            data=c.data, optim=c.optim, distill=c.distill, eval_tokens=c.eval_tokens, architecture=self.sizer.architecture,
        )  # fmt: skip

    def fixed_m(self, sizes: list[Size], ratio: float, what: str) -> list[RunSpec]:
        """Supervised runs at D = M N."""
        counts = [(s, self.sizer.params(s)) for s in (self.shape(size) for size in sizes)]
        return [self.supervised(s, self.tokens(n, ratio * n, what)) for s, n in counts]

    def isoflop(self, sizes: list[Size], budget: float, ratio_range: tuple[float, float], what: str) -> list[tuple[ModelShape, int]]:
        """(shape, D) with 6 N D = budget for each size whose M = D/N lies in ``ratio_range``."""
        low, high = ratio_range
        points = []
        for size in sizes:
            shape = self.shape(size)
            n = self.sizer.params(shape)
            if low <= budget / (6 * n) / n <= high:
                points.append((shape, self.tokens(n, budget / (6 * n), what)))
        if not points:
            raise DistlawError(
                f"sweep '{self.config.name}': {what}: no size has tokens/parameter within {low:g}-{high:g}; "
                "change the sizes, the budget or ratio_range"
            )
        return points


def _pruned(teacher: ModelShape, architecture: dict | None, protocol: PruneDistill, size: float,
            source: str) -> tuple[PruneInit, ModelShape, int] | None:
    """How a teacher of ``architecture`` (None: distlaw's Llama) is pruned to a student size, the pruned shape
    and its exact count (torch-free, ``prunable.Layout.count``); None when the size is not below the teacher's
    with the layers it keeps."""
    init = PruneInit(source=source, target_params=round(size), calibration_tokens=protocol.calibration_tokens, method=protocol.method,
                     depth=protocol.depth, keep_layers=protocol.keep_layers, depth_importance=protocol.depth_importance)
    layout = LLAMA if architecture is None else layout_of(architecture, f"teacher {source}")
    layers = kept_count(teacher.n_layers, init)
    if not size < layout.count(teacher.model_copy(update={"n_layers": layers})):
        return None
    shape = pruned_shape(teacher, target_params=init.target_params, layout=layout, layers=layers)
    return init, shape, layout.count(shape)


def _pruned_runs(builder: _Builder, protocol: PruneDistill, what: str) -> list[PlannedRun]:
    """Teachers, every teacher pruned to and distilled into each smaller student size, and a supervised
    baseline from scratch for each student size (in the shape pruned from the smallest teacher)."""
    teachers = builder.fixed_m(protocol.teachers, protocol.teacher_ratio, what)
    runs = [PlannedRun(t, protocol.type, "teacher") for t in teachers]
    for size in protocol.students:
        tokens = builder.tokens(round(size), protocol.student_ratio * size, what)
        students = []
        for teacher in teachers:
            try:
                pruned = _pruned(teacher.shape, teacher.architecture, protocol, size, teacher.name)
            except DistlawError as exc:
                raise DistlawError(f"sweep '{builder.config.name}': {what}: {exc}") from None
            if pruned is not None:
                init, shape, _ = pruned
                students.append(PlannedRun(builder.distilled(shape, tokens, teacher, init), protocol.type, "student"))
        if students and protocol.baselines:  # from scratch, in the shape pruned from the smallest teacher
            students.append(PlannedRun(builder.supervised(students[0].spec.shape, tokens), protocol.type, "baseline"))
        runs += students
    if len(runs) == len(teachers):
        raise DistlawError(f"sweep '{builder.config.name}': {what}: no student size is smaller than a teacher")
    return runs


def _explicit_runs(builder: _Builder, protocol: ExplicitRuns, what: str) -> list[PlannedRun]:
    """Supervised runs (teachers first: those some distilled run names), then the distilled runs."""
    supervised = []
    for params, tokens in protocol.supervised:
        shape = builder.shape(params)
        supervised.append(builder.supervised(shape, builder.tokens(builder.sizer.params(shape), tokens, what)))
    teaching = {teacher for _, _, teacher in protocol.distilled}
    runs = [PlannedRun(supervised[i], protocol.type, "teacher") for i in sorted(teaching)]
    runs += [PlannedRun(run, protocol.type, "baseline") for i, run in enumerate(supervised) if i not in teaching]
    for params, tokens, teacher in protocol.distilled:
        shape = builder.shape(params)
        runs.append(PlannedRun(builder.distilled(shape, builder.tokens(builder.sizer.params(shape), tokens, what), supervised[teacher]),
                               protocol.type, "student"))
    return runs


def _protocol_runs(builder: _Builder, index: int, protocol: FixedMIsoFLOP | IsoFLOPFixedM | FixedMFixedM | PruneDistill | ExplicitRuns) -> list[PlannedRun]:
    """The runs of one protocol: teachers, then every teacher x student pair, then supervised baselines."""
    what = f"protocol {index + 1} ({protocol.type})"
    if isinstance(protocol, PruneDistill):
        return _pruned_runs(builder, protocol, what)
    if isinstance(protocol, ExplicitRuns):
        return _explicit_runs(builder, protocol, what)
    students: list[tuple[ModelShape, int]]
    if isinstance(protocol, IsoFLOPFixedM):
        teachers = [
            builder.supervised(shape, tokens)
            for budget in protocol.budgets
            for shape, tokens in builder.isoflop(protocol.teachers, budget, protocol.ratio_range, f"{what} budget {budget:g}")
        ]
        students = [(s.shape, s.tokens) for s in builder.fixed_m(protocol.students, protocol.student_ratio, what)]
    else:
        teachers = builder.fixed_m(protocol.teachers, protocol.teacher_ratio, what)
        if isinstance(protocol, FixedMIsoFLOP):
            students = [
                point
                for budget in protocol.budgets
                for point in builder.isoflop(protocol.students, budget, protocol.ratio_range, f"{what} budget {budget:g}")
            ]
        else:
            students = [
                (s.shape, s.tokens) for ratio in protocol.student_ratios for s in builder.fixed_m(protocol.students, ratio, what)
            ]
    runs = [PlannedRun(t, protocol.type, "teacher") for t in teachers]
    runs += [PlannedRun(builder.distilled(shape, tokens, t), protocol.type, "student") for t in teachers for shape, tokens in students]
    if protocol.baselines:
        runs += [PlannedRun(builder.supervised(shape, tokens), protocol.type, "baseline") for shape, tokens in students]
    return runs


def _seeded(run: PlannedRun, config: SweepConfig) -> list[PlannedRun]:
    """A teacher as it is; a student or baseline once per seed of ``config.seeds``."""
    base = config.optim.seed
    if run.role == "teacher" or config.seeds is None:
        return [run]
    spec = run.spec
    return [
        PlannedRun(spec.model_copy(update={"name": spec.name + ("" if seed == base else f"-s{seed}"),
                                           "optim": spec.optim.model_copy(update={"seed": seed})}), run.protocol, run.role)
        for seed in config.seeds
    ]


def expand(config: SweepConfig) -> list[PlannedRun]:
    """Every run of every protocol in the config (students and baselines once per seed); a run wanted
    twice (same name) appears once per (protocol, role), with teachers before the students that need them."""
    builder = _Builder(config)
    seen: set[tuple[str, str, str]] = set()
    plan: list[PlannedRun] = []
    for index, protocol in enumerate(config.protocol):
        for run in (seeded for planned in _protocol_runs(builder, index, protocol) for seeded in _seeded(planned, config)):
            marker = (run.spec.name, run.protocol, run.role)
            if marker not in seen:
                seen.add(marker)
                plan.append(run)
    return plan


def _built(builder: _Builder, protocol: _Protocol, role: str, size: float) -> list[int]:
    """Non-embedding parameters of the models built for one size target: a pruned student once per
    teacher it is pruned from, anything else once."""
    if isinstance(protocol, PruneDistill) and role == "student":
        pruned = (_pruned(builder.shape(t), builder.sizer.architecture, protocol, size, "") for t in protocol.teachers)
        return [count for _, _, count in filter(None, pruned)]
    return [builder.sizer.params(builder.shape(size))]


def _sizes_by_role(protocol: Protocol) -> list[tuple[str, list]]:
    if isinstance(protocol, ExplicitRuns):
        teaching = {teacher for _, _, teacher in protocol.distilled}
        return [("teacher", [protocol.supervised[i][0] for i in sorted(teaching)]),
                ("baseline", [n for i, (n, _) in enumerate(protocol.supervised) if i not in teaching]),
                ("student", [n for n, _, _ in protocol.distilled])]
    return [("teacher", protocol.teachers), ("student", protocol.students)]


def built_sizes(config: SweepConfig) -> list[dict[str, object]]:
    """Every parameter target of the config beside the non-embedding parameters of the models built for
    it, in config order, each (protocol, role, target, built) once; explicit shapes have no target."""
    builder = _Builder(config)
    rows: dict[tuple[str, str, float, int], None] = {}
    for protocol in config.protocol:
        for role, sizes in _sizes_by_role(protocol):
            for size in (s for s in sizes if not isinstance(s, ExplicitShape)):
                rows.update(dict.fromkeys((protocol.type, role, size, built) for built in _built(builder, protocol, role, size)))
    return [{"protocol": p, "role": r, "requested": size, "built": built} for p, r, size, built in rows]


def train_flops(spec: RunSpec) -> float:
    """The 6 N D training cost that defines IsoFLOP profiles (teacher inference not counted)."""
    return 6.0 * spec.non_embedding_params * spec.tokens

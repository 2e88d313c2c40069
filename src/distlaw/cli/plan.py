"""``distlaw plan``: compute-optimal distillation recipes, frontiers and intervals from the laws."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer

from distlaw.cli.common import console, print_json, print_table, print_warnings
from distlaw.errors import DistlawError
from distlaw.figures import check_plot_path
from distlaw.intervals import NO_INTERVAL, check_level
from distlaw.laws import DEFAULT_PRESET, PRESETS, Coefficients, load_coefficients
from distlaw.laws.domain import recorded_warnings, short_number
from distlaw.planning.planner import ExistingTeacher
from distlaw.planning.scenarios import parse_scenarios
from distlaw.planning.uncertainty import DEFAULT_LEVEL

ISOFLOP_POINTS = 61
MAX_BUDGETS = 1000


def parse_compute(text: str) -> np.ndarray:
    """``1e21`` -> [1e21]; ``LO:HI:N`` -> N log-spaced budgets from LO to HI (2 <= N <= 1000, both finite)."""
    parts = text.split(":")
    try:
        if len(parts) == 1:
            return np.array([float(parts[0])])
        if len(parts) == 3:
            lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
            if 0 < lo < hi < np.inf and 2 <= n <= MAX_BUDGETS:
                return np.logspace(np.log10(lo), np.log10(hi), n)
    except ValueError:
        pass
    raise DistlawError(
        f"--compute: expected FLOPs like 1e21 or a range LO:HI:N like 1e20:1e24:9 (0 < LO < HI, finite, "
        f"2 <= N <= {MAX_BUDGETS}), got '{text}'"
    )


def parse_size_range(text: str) -> tuple[float, float]:
    """``LO:HI`` -> bounds on N_T, D_S, D_T, checked as the planner checks them (1 <= LO < HI <= 1e30)."""
    from distlaw.planning.planner import valid_size_range

    try:
        lo, hi = (float(part) for part in text.split(":"))
        return valid_size_range((lo, hi))
    except (ValueError, DistlawError):
        raise DistlawError(f"--size-range: expected LO:HI with 1 <= LO < HI <= 1e30 (like 1e3:1e9), got '{text}'") from None


def describe(spec: str, coef: Coefficients) -> str:
    """The coefficients as titles name them: a published preset, a fit (its file) or a file."""
    if spec in PRESETS:
        return f"{spec} (published preset)"
    kind = "fitted" if (coef.meta or {}).get("created_by") == "distlaw fit" else "file"
    return f"{Path(spec).name} ({kind})"


def _g(value: Any) -> str:
    return "-" if value is None else short_number(float(value))


def _bounded(rec: dict, key: str) -> str:
    """A recipe value, marked when it sits on the planner's search bound instead of an optimum."""
    return _g(rec[key]) + (" (bound)" if key in rec["at_bound"] else "")


def _header(name: str) -> str:
    """Scenario names with spaces, so that narrow terminals wrap them instead of cutting them."""
    return name.replace("-", "\n").replace("+", "\n+ ")


def _budget_object(i: int, solved: list, baseline: Any, crossings: list, bands: list, hardware: Any, notes: list[str]) -> dict:
    c = float(baseline.compute[i])
    recipes = []
    for r, band in zip(solved, bands):
        rec = r.record(i)
        rec["choose"] = "distil" if rec["student_loss"] < float(baseline.loss[i]) else "supervised"
        if band is not None:
            rec["intervals"] = band.record(i)
        recipes.append(rec)
    obj = {
        "compute": c,
        "student_params": float(baseline.student_params[i]),
        "gpu_hours": float(hardware.gpu_hours(c)),
        "cost_usd": float(hardware.cost(c)),
        "hardware": hardware.name,
        "recipes": recipes,
        "supervised_loss": float(baseline.loss[i]),
        "supervised_tokens": float(baseline.tokens[i]),
        "crossovers": {x.scenario: x.record() for x in crossings},
        "crossover_scan": {x.scenario: {"compute": list(x.scanned), "winner_below": x.winner_below} for x in crossings},
        "warnings": notes,
    }
    if bands and bands[0] is not None:
        obj["supervised_loss_interval"] = bands[0].record(i)["supervised_loss"]
    return obj


def _with_band(value: float, band: list | None, has_bands: bool) -> str:
    if not has_bands:
        return f"{value:.4f}"
    return f"{value:.4f} [{band[0]:.3f}, {band[1]:.3f}]" if band is not None else f"{value:.4f} [no interval]"


def _print_single(obj: dict, level: float | None, crossings: list, title: str) -> None:
    recipes = obj["recipes"]
    has_bands = level is not None
    loss = lambda rec: _with_band(rec["student_loss"], rec.get("intervals", {}).get("recipe_student_loss"), has_bands)  # noqa: E731
    split = lambda rec, k: f"{100 * rec['compute_split'][k]:.1f}"  # noqa: E731
    rows = [
        ["D_S tokens", *[_bounded(r, "student_tokens") for r in recipes], _g(obj["supervised_tokens"])],
        ["N_T params", *[_bounded(r, "teacher_params") for r in recipes], "-"],
        ["D_T tokens", *[_bounded(r, "teacher_tokens") for r in recipes], "-"],
        ["L_T", *[f"{r['teacher_loss']:.4f}" for r in recipes], "-"],
        ["L_S", *[loss(r) for r in recipes], _with_band(obj["supervised_loss"], obj.get("supervised_loss_interval"), has_bands)],
        ["vs supervised", *[f"{r['student_loss'] - obj['supervised_loss']:+.4f}" for r in recipes], "0"],
        ["% student", *[split(r, "student_training") for r in recipes], "100.0"],
        ["% teacher infer", *[split(r, "teacher_inference") for r in recipes], "0.0"],
        ["% teacher pretrain", *[split(r, "teacher_pretraining") for r in recipes], "0.0"],
        ["choose", *[r["choose"] for r in recipes], ""],
    ]
    print_table(title, ["", *[_header(r["scenario"]) for r in recipes], "supervised"], rows)
    say = lambda text: console.print(text, markup=False, highlight=False)  # noqa: E731
    if has_bands:
        say(f"L_S [lo, hi]: {100 * level:.0f}% bootstrap interval of each recipe's predicted loss.")
        if any("no_interval" in r.get("intervals", {}) for r in recipes):
            say(f"[no interval]: {NO_INTERVAL}.")
    if any(r["at_bound"] for r in recipes):
        say("(bound): the value sits on the search bound (--size-range), not at an optimum; widen the range to see where it goes.")
    say(f"Budget: {obj['gpu_hours']:.4g} GPU-hours on {obj['hardware']}, about ${obj['cost_usd']:,.0f}.")
    _print_crossovers(crossings)


def crossover_sentence(x: Any) -> str:
    """Who wins along compute for one scenario, in words, with every crossover."""
    lo, hi = (short_number(v) for v in x.scanned)
    if not x.points:
        return f"{x.scenario}: {x.winner_below} wins over every budget scanned ({lo}..{hi} FLOPs)."
    parts = [f"{x.winner_below} below {short_number(x.points[0].compute)} FLOPs"]
    for p, q in zip(x.points, x.points[1:]):
        parts.append(f"{p.winner_above} from {short_number(p.compute)} to {short_number(q.compute)}")
    parts.append(f"{x.points[-1].winner_above} above {short_number(x.points[-1].compute)}")
    return f"{x.scenario}: {', '.join(parts)} (scanned {lo}..{hi} FLOPs)."


def _print_crossovers(crossings: list) -> None:
    console.print("Who wins, distillation or supervised training of the same student, along compute:", highlight=False)
    for x in crossings:
        console.print(f"  {crossover_sentence(x)}", markup=False, highlight=False)


def _print_frontier(objs: list[dict], scenarios: list[str], crossings: list, title: str) -> None:
    heads = [_header(s) for s in scenarios]
    by = [{r["scenario"]: r for r in obj["recipes"]} for obj in objs]
    loss_rows = [
        [_g(o["compute"]), _g(o["gpu_hours"]), f"{o['supervised_loss']:.4f}", *[f"{b[s]['student_loss']:.4f}" for s in scenarios]]
        for o, b in zip(objs, by)
    ]
    print_table(f"{title}: student loss L_S (nats/token)", ["compute", "GPU-hours", "supervised", *heads], loss_rows)
    for key, label in (("teacher_params", "optimal teacher params N_T"), ("student_tokens", "D_S tokens")):
        rows = [[_g(o["compute"]), *[_bounded(b[s], key) for s in scenarios]] for o, b in zip(objs, by)]
        print_table(f"{title}: {label}", ["compute", *heads], rows)
    if any(r["at_bound"] for o in objs for r in o["recipes"]):
        console.print("(bound): on the search bound (--size-range), not at an optimum.", markup=False, highlight=False)
    _print_crossovers(crossings)


def plan(
    student_params: Annotated[float, typer.Option("--student-params", "-n", help="Student non-embedding parameters N_S.")],
    compute: Annotated[str, typer.Option("--compute", "-C", help="Budget in FLOPs (1e21), or a log-spaced range LO:HI:N (1e20:1e24:9, at most 1000 budgets).")],
    scenario: Annotated[str, typer.Option("--scenario", help="all, best, teacher-inference, teacher-pretraining or teacher-pretraining+inference.")] = "all",
    teacher_params: Annotated[Optional[float], typer.Option(help="An existing teacher's parameters N_T (with --teacher-loss or --teacher-tokens).")] = None,
    teacher_loss: Annotated[Optional[float], typer.Option(help="The existing teacher's cross-entropy L_T; must lie above the supervised law's floor E.")] = None,
    teacher_tokens: Annotated[Optional[float], typer.Option(help="The existing teacher's training tokens D_T (L_T from the law; enables the pretraining scenarios).")] = None,
    coefficients: Annotated[str, typer.Option("--coefficients", "-c", help="Preset (busbridge2025) or a coefficients JSON with both laws; with bootstrap samples, intervals are reported.")] = DEFAULT_PRESET,
    hardware: Annotated[str, typer.Option(help="Hardware profile for GPU-hours and cost: h100 (989 TFLOP/s dense BF16, MFU 0.4, $2.50/h), h200, a100, or a JSON file.")] = "h100",
    mfu: Annotated[Optional[float], typer.Option(help="Override the hardware profile's model FLOPs utilization (0-1].")] = None,
    price_per_hour: Annotated[Optional[float], typer.Option(help="Override the profile's USD per GPU-hour.")] = None,
    flops: Annotated[str, typer.Option(help="F(N): 'paper' (2N + attention + vocabulary, App. H) or 'simple' (2N).")] = "paper",
    n_ctx: Annotated[int, typer.Option(help="Context length in the paper's F(N).")] = 4096,
    vocab: Annotated[int, typer.Option(help="Vocabulary size in the paper's F(N).")] = 32768,
    level: Annotated[float, typer.Option(help="Interval level when the coefficients carry bootstrap samples.")] = DEFAULT_LEVEL,
    plot: Annotated[Optional[Path], typer.Option(help="Write a figure (.png/.pdf/.svg; its folder must exist): IsoFLOP profiles for one budget, the frontier for a range.")] = None,
    size_range: Annotated[str, typer.Option(help="LO:HI bounds on teacher size, student tokens and teacher tokens; default 1e6:1e17 as in the paper; lower it to plan at the scale of a small pilot whose coefficients you fitted.")] = "1e6:1e17",
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Distil or train supervised? The compute-optimal recipe for a student size and a budget.

    For each scenario (Busbridge et al. 2025, arXiv 2502.08606, Eq. 9) it finds the student tokens
    D_S, teacher size N_T and tokens D_T that minimize the student's loss (Eq. 8) at total compute C,
    and compares with training the same student supervised on all of C. Scenarios count:
    best = student training only (teacher free); teacher-inference = plus the teacher's logits;
    teacher-pretraining = plus training the teacher; teacher-pretraining+inference = both.
    In the best case only the teacher's loss matters; the teacher shown is the cheapest one reaching it.
    Teachers, student and teacher tokens are searched in 1e6..1e17 (App. H) unless --size-range
    says otherwise; a value on that bound is marked "(bound)" (JSON: "at_bound"), since it is
    where the search stopped, not an optimum.

    Crossovers: the gap between distillation and supervised training can change sign more than
    once along compute; every budget where it does is reported (scanned from ten times the least
    usable budget to 1e29 FLOPs, and at the budgets asked), in words, in JSON ("crossovers": a list
    per scenario) and as dotted lines on the frontier plot. They agree with "choose" at every
    budget asked.

    With --teacher-params and --teacher-loss (or --teacher-tokens), the teacher is given and only
    D_S = what the budget leaves is planned. A range of budgets prints the frontier. Coefficients
    with bootstrap samples (distlaw fit --bootstrap) add intervals to every recipe; where the
    samples' interval does not contain the recipe's own value, "no interval" is shown instead.

    What the coefficients can answer: a teacher loss at or below the supervised law's floor E is
    refused. N_S, the tokens D = C / 3 F(N_S) a budget buys the student and the teacher are checked
    against the range the coefficients were fitted or published on (meta.domain); far outside it
    (more than 10x beyond their sizes or tokens, or a teacher loss whose excess over E is more than
    2x beyond theirs) the answer comes with a "warning:" line on stderr ("warnings" in JSON).

    JSON: {"recipes": [{..., "at_bound", "choose", "intervals"}], "supervised_loss",
    "supervised_tokens", "crossovers", "crossover_scan", "warnings", ...}; a list of such objects
    for a range of budgets.

    Examples:

      distlaw plan --student-params 1e9 --compute 1e21

      distlaw plan -n 1e9 -C 1e20:1e24:9 --scenario teacher-pretraining+inference --plot frontier.png

      distlaw plan -n 1e9 -C 1e22 --teacher-params 7e9 --teacher-loss 1.95 --json

      distlaw plan -n 3e9 -C 1e23 -c fitted.json --hardware a100 --mfu 0.35 --price-per-hour 1.2

      distlaw plan -n 5e3 -C 1e13 -c pilot-fit.json --size-range 1e2:1e12 --vocab 256    (a CPU pilot's scale)

    fitted.json and pilot-fit.json are what distlaw fit RUNS --out FILE.json writes (RUNS: your runs
    table, or distlaw runs export of a sweep).
    """
    budgets = parse_compute(compute)
    sizes = parse_size_range(size_range)
    scenarios = parse_scenarios(scenario)
    if flops not in ("paper", "simple"):
        raise DistlawError(f"--flops must be 'paper' or 'simple', got '{flops}'")
    check_level(level)
    if plot is not None:
        check_plot_path(plot)
    teacher = None
    if teacher_params is not None or teacher_loss is not None or teacher_tokens is not None:
        if teacher_params is None or (teacher_loss is None) == (teacher_tokens is None):
            raise DistlawError("an existing teacher needs --teacher-params and one of --teacher-loss or --teacher-tokens")
        teacher = ExistingTeacher(teacher_params, teacher_loss, teacher_tokens)
        if scenario == "all" and teacher_tokens is None:
            scenarios = [s for s in scenarios if not s.teacher_pretraining]
    if plot is not None and teacher is not None and len(budgets) == 1:
        raise DistlawError("--plot with an existing teacher needs a range of budgets (--compute LO:HI:N)")
    if n_ctx < 1 or vocab < 2:
        raise DistlawError(f"--n-ctx must be >= 1 and --vocab >= 2, got {n_ctx} and {vocab}")
    from distlaw.compute import FlopModel, load_hardware
    from distlaw.planning import Planner, crossovers, recipe_intervals

    hw = load_hardware(hardware).with_overrides(mfu, price_per_hour)
    coef = load_coefficients(coefficients)
    planner = Planner(coef, FlopModel(form=flops, n_ctx=n_ctx, vocab_size=vocab), size_range=sizes)
    if teacher is not None:
        planner.check_teacher(teacher)
    with recorded_warnings() as summary:  # stderr: one line per quantity over all budgets
        planner.check_domain(student_params, budgets, teacher)
    notes = []  # JSON: each budget's own
    for c in budgets:
        with recorded_warnings() as budget_notes:
            planner.check_domain(student_params, c, teacher)
        notes.append(budget_notes)
    if teacher is None:
        solved = [planner.solve(student_params, budgets, s, warn=False) for s in scenarios]
    else:
        solved = [planner.solve_existing(student_params, budgets, teacher, s, warn=False) for s in scenarios]
    baseline = planner.supervised(student_params, budgets)
    bands = [recipe_intervals(planner, r, level, teacher) if coef.bootstrap else None for r in solved]
    crossings = [crossovers(planner, student_params, s, teacher, include=budgets) for s in scenarios]
    objs = [_budget_object(i, solved, baseline, crossings, bands, hw, notes[i]) for i in range(len(budgets))]
    source = describe(coefficients, coef)

    if plot is not None:
        _plot(plot, planner, solved, baseline, crossings, bands, source)
    print_warnings(summary)
    if json_output:
        print_json(objs[0] if len(budgets) == 1 else objs)
        return
    title = f"N_S = {student_params:.4g}, coefficients {source}"
    if teacher is not None:
        title += f", teacher N_T = {teacher_params:.4g}"
    level_shown = level if coef.bootstrap else None
    if len(budgets) == 1:
        _print_single(objs[0], level_shown, crossings, f"{title}, C = {budgets[0]:.4g} FLOPs")
    else:
        _print_frontier(objs, [s.name for s in scenarios], crossings, title)
    if plot is not None:
        console.print(f"wrote {plot}", highlight=False)


def _plot(path: Path, planner: Any, solved: list, baseline: Any, crossings: list, bands: list, source: str) -> None:
    """The frontier for a range of budgets, the IsoFLOP profiles (over teachers within the size range) for one."""
    from distlaw.planning import isoflop_profile
    from distlaw.planning import plot as plotting

    if len(baseline.compute) > 1:
        plotting.plot_frontier(path, solved, baseline, crossings, bands, source)
        return
    n_s, c = float(baseline.student_params[0]), float(baseline.compute[0])
    lo, hi = planner.size_range
    first = max(lo, n_s / 100)
    last = max(min(hi, n_s * 1000), 2 * first)  # a tiny student below the range: still a span of teachers
    grid = np.logspace(np.log10(first), np.log10(last), ISOFLOP_POINTS)
    profiles = [isoflop_profile(planner, n_s, c, grid, r.scenario) for r in solved]
    plotting.plot_isoflop(path, profiles, float(baseline.loss[0]), solved, source)


def register(app: typer.Typer) -> None:
    app.command()(plan)

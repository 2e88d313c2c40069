"""``distlaw plan``: compute-optimal distillation recipes, frontiers and intervals from the laws."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer

from distlaw.cli.common import console, print_json, print_table
from distlaw.errors import DistlawError
from distlaw.laws import DEFAULT_PRESET, load_coefficients

ISOFLOP_POINTS = 61


def parse_compute(text: str) -> np.ndarray:
    """``1e21`` -> [1e21]; ``LO:HI:N`` -> N log-spaced budgets from LO to HI."""
    parts = text.split(":")
    try:
        if len(parts) == 1:
            return np.array([float(parts[0])])
        if len(parts) == 3:
            lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
            if lo > 0 and hi > lo and n >= 2:
                return np.logspace(np.log10(lo), np.log10(hi), n)
    except ValueError:
        pass
    raise DistlawError(f"--compute: expected FLOPs like 1e21 or a range LO:HI:N like 1e20:1e24:9, got '{text}'")


def parse_size_range(text: str) -> tuple[float, float]:
    """``LO:HI`` -> bounds on N_T, D_S, D_T, checked as the planner checks them (0 < LO < HI, finite)."""
    from distlaw.planning.planner import valid_size_range

    try:
        lo, hi = (float(part) for part in text.split(":"))
        return valid_size_range((lo, hi))
    except (ValueError, DistlawError):
        raise DistlawError(f"--size-range: expected LO:HI with 0 < LO < HI, both finite (like 1e3:1e9), got '{text}'") from None


def _budget_object(i: int, solved: list, baseline: Any, crossover: dict, intervals: list, hardware: Any) -> dict:
    c = float(baseline.compute[i])
    recipes = []
    for r, band in zip(solved, intervals):
        rec = r.record(i)
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
        "crossover_compute": crossover,
    }
    if intervals and intervals[0] is not None:
        obj["supervised_loss_interval"] = [float(intervals[0].supervised_loss[0][i]), float(intervals[0].supervised_loss[1][i])]
    return obj


def _g(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}"


def _header(name: str) -> str:
    """Scenario names with spaces, so that narrow terminals wrap them instead of cutting them."""
    return name.replace("-", "\n").replace("+", "\n+ ")


def _print_single(obj: dict, intervals: list, crossover: dict, title: str) -> None:
    recipes = obj["recipes"]
    sup_band = obj.get("supervised_loss_interval")

    def loss(rec: dict, band: Any) -> str:
        if band is None:
            return f"{rec['student_loss']:.4f}"
        lo, hi = band.recipe_loss
        return f"{rec['student_loss']:.4f} [{lo[0]:.3f}, {hi[0]:.3f}]"

    split = lambda rec, k: f"{100 * rec['compute_split'][k]:.1f}"  # noqa: E731
    rows = [
        ["D_S tokens", *[_g(r["student_tokens"]) for r in recipes], _g(obj["supervised_tokens"])],
        ["N_T params", *[_g(r["teacher_params"]) for r in recipes], "-"],
        ["D_T tokens", *[_g(r["teacher_tokens"]) for r in recipes], "-"],
        ["L_T", *[f"{r['teacher_loss']:.4f}" for r in recipes], "-"],
        ["L_S", *[loss(r, b) for r, b in zip(recipes, intervals)],
         f"{obj['supervised_loss']:.4f}" + (f" [{sup_band[0]:.3f}, {sup_band[1]:.3f}]" if sup_band else "")],
        ["vs supervised", *[f"{r['student_loss'] - obj['supervised_loss']:+.4f}" for r in recipes], "0"],
        ["% student", *[split(r, "student_training") for r in recipes], "100.0"],
        ["% teacher infer", *[split(r, "teacher_inference") for r in recipes], "0.0"],
        ["% teacher pretrain", *[split(r, "teacher_pretraining") for r in recipes], "0.0"],
        ["choose", *["distil" if r["student_loss"] < obj["supervised_loss"] else "supervised" for r in recipes], ""],
    ]
    print_table(title, ["", *[_header(r["scenario"]) for r in recipes], "supervised"], rows)
    if intervals and intervals[0] is not None:
        level = f"{100 * intervals[0].level:.0f}%"
        console.print(f"L_S [lo, hi]: {level} bootstrap interval of each recipe's predicted loss.", markup=False, highlight=False)
    console.print(f"Budget: {obj['gpu_hours']:.4g} GPU-hours on {obj['hardware']}, about ${obj['cost_usd']:,.0f}.", highlight=False)
    _print_crossover(crossover)


def _print_crossover(crossover: dict) -> None:
    for name, c in crossover.items():
        if c is None:
            text = "already at the smallest budget"
        elif np.isinf(c):
            text = "beyond 1e29 FLOPs (distillation keeps winning)"
        else:
            text = f"at C = {c:.3g} FLOPs"
        console.print(f"Supervised catches up with {name} distillation {text}.", highlight=False)


def _print_frontier(objs: list[dict], scenarios: list[str], crossover: dict, title: str) -> None:
    heads = [_header(s) for s in scenarios]
    by = [{r["scenario"]: r for r in obj["recipes"]} for obj in objs]
    loss_rows = [
        [_g(o["compute"]), _g(o["gpu_hours"]), f"{o['supervised_loss']:.4f}", *[f"{b[s]['student_loss']:.4f}" for s in scenarios]]
        for o, b in zip(objs, by)
    ]
    print_table(f"{title}: student loss L_S (nats/token)", ["compute", "GPU-hours", "supervised", *heads], loss_rows)
    for key, label in (("teacher_params", "optimal teacher params N_T"), ("student_tokens", "D_S tokens")):
        rows = [[_g(o["compute"]), *[_g(b[s][key]) for s in scenarios]] for o, b in zip(objs, by)]
        print_table(f"{title}: {label}", ["compute", *heads], rows)
    _print_crossover(crossover)


def plan(
    student_params: Annotated[float, typer.Option("--student-params", "-n", help="Student non-embedding parameters N_S.")],
    compute: Annotated[str, typer.Option("--compute", "-C", help="Budget in FLOPs (1e21), or a log-spaced range LO:HI:N (1e20:1e24:9).")],
    scenario: Annotated[str, typer.Option("--scenario", "-s", help="all, best, teacher-inference, teacher-pretraining or teacher-pretraining+inference.")] = "all",
    teacher_params: Annotated[Optional[float], typer.Option(help="An existing teacher's parameters N_T (with --teacher-loss or --teacher-tokens).")] = None,
    teacher_loss: Annotated[Optional[float], typer.Option(help="The existing teacher's cross-entropy L_T.")] = None,
    teacher_tokens: Annotated[Optional[float], typer.Option(help="The existing teacher's training tokens D_T (L_T from the law; enables the pretraining scenarios).")] = None,
    coefficients: Annotated[str, typer.Option("--coefficients", "-c", help="Preset (busbridge2025) or a coefficients JSON; with bootstrap samples, intervals are reported.")] = DEFAULT_PRESET,
    hardware: Annotated[str, typer.Option(help="Hardware profile for GPU-hours and cost: h100 (989 TFLOP/s dense BF16, MFU 0.4, $2.50/h), h200, a100, or a JSON file.")] = "h100",
    mfu: Annotated[Optional[float], typer.Option(help="Override the hardware profile's model FLOPs utilization (0-1].")] = None,
    price_per_hour: Annotated[Optional[float], typer.Option(help="Override the profile's USD per GPU-hour.")] = None,
    flops: Annotated[str, typer.Option(help="F(N): 'paper' (2N + attention + vocabulary, App. H) or 'simple' (2N).")] = "paper",
    n_ctx: Annotated[int, typer.Option(help="Context length in the paper's F(N).")] = 4096,
    vocab: Annotated[int, typer.Option(help="Vocabulary size in the paper's F(N).")] = 32768,
    level: Annotated[float, typer.Option(help="Interval level when the coefficients carry bootstrap samples.")] = 0.9,
    plot: Annotated[Optional[Path], typer.Option(help="Write a figure (.png/.pdf/.svg): IsoFLOP profiles for one budget, the frontier for a range.")] = None,
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
    says otherwise. "Supervised catches up" is the budget beyond which training the student alone is
    at least as good (crossover).

    With --teacher-params and --teacher-loss (or --teacher-tokens), the teacher is given and only
    D_S = what the budget leaves is planned. A range of budgets prints the frontier. Coefficients
    with bootstrap samples (distlaw fit --bootstrap) add intervals to every recipe.

    JSON: {"recipes": [...], "supervised_loss", "supervised_tokens", "crossover_compute", ...};
    a list of such objects for a range of budgets.

    Examples:

      distlaw plan --student-params 1e9 --compute 1e21

      distlaw plan -n 1e9 -C 1e20:1e24:9 --scenario teacher-pretraining+inference --plot frontier.png

      distlaw plan -n 1e9 -C 1e22 --teacher-params 7e9 --teacher-loss 1.95 --json

      distlaw plan -n 3e9 -C 1e23 -c fitted.json --hardware a100 --mfu 0.35 --price-per-hour 1.2

      distlaw plan -n 5e3 -C 1e13 -c pilot-fit.json --size-range 1e2:1e12 --vocab 256    (a CPU pilot's scale)
    """
    from distlaw.compute import FlopModel, load_hardware
    from distlaw.planning import ExistingTeacher, Planner, crossover_compute, parse_scenarios, recipe_intervals

    budgets = parse_compute(compute)
    sizes = parse_size_range(size_range)
    scenarios = parse_scenarios(scenario)
    if flops not in ("paper", "simple"):
        raise DistlawError(f"--flops must be 'paper' or 'simple', got '{flops}'")
    if not 0 < level < 1:
        raise DistlawError(f"--level must be between 0 and 1, got {level:g}")
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
    hw = load_hardware(hardware).with_overrides(mfu, price_per_hour)
    coef = load_coefficients(coefficients)
    planner = Planner(coef, FlopModel(form=flops, n_ctx=n_ctx, vocab_size=vocab), size_range=sizes)
    if teacher is None:
        solved = [planner.solve(student_params, budgets, s) for s in scenarios]
    else:
        solved = [planner.solve_existing(student_params, budgets, teacher, s) for s in scenarios]
    baseline = planner.supervised(student_params, budgets)
    sampled = bool(coef.bootstrap)
    intervals = [recipe_intervals(planner, r, level, teacher) if sampled else None for r in solved]
    crossover = {}
    for s in scenarios:
        c = float(crossover_compute(planner, student_params, s, teacher))
        crossover[s.name] = None if np.isnan(c) else c
    objs = [_budget_object(i, solved, baseline, crossover, intervals, hw) for i in range(len(budgets))]

    if plot is not None:
        from distlaw.planning import plot as plotting

        if len(budgets) > 1:
            plotting.plot_frontier(plot, solved, baseline)
        else:
            from distlaw.planning import isoflop_profile

            lo, hi = max(sizes[0], student_params / 100), min(sizes[1], student_params * 1000)
            grid = np.logspace(np.log10(lo), np.log10(hi), ISOFLOP_POINTS)
            profiles = [isoflop_profile(planner, student_params, budgets[0], grid, s) for s in scenarios]
            plotting.plot_isoflop(plot, profiles, float(baseline.loss[0]), solved)

    if json_output:
        print_json(objs[0] if len(budgets) == 1 else objs)
        return
    title = f"N_S = {student_params:.4g}, coefficients {coefficients}"
    if teacher is not None:
        title += f", teacher N_T = {teacher_params:.4g}"
    if len(budgets) == 1:
        _print_single(objs[0], intervals, crossover, f"{title}, C = {budgets[0]:.4g} FLOPs")
    else:
        _print_frontier(objs, [s.name for s in scenarios], crossover, title)
    if plot is not None:
        console.print(f"wrote {plot}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(plan)

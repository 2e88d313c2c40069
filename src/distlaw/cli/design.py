"""``distlaw design``: the pilot sweep that makes a target prediction most certain for a budget."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from distlaw.cli.common import console, err_console, print_json, print_table
from distlaw.errors import DistlawError
from distlaw.io import check_output_path


SHOWN = 8  # candidates in the table (and the grid); --json has them all


def design(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the pilot's sweep config (.toml; its folder must exist).", show_default=False)],
    budget: Annotated[Optional[float], typer.Option("--budget", help="Pilot budget in FLOPs (training 6ND plus online teacher inference 2 N_T D_S).")] = None,
    gpu_hours: Annotated[Optional[float], typer.Option("--gpu-hours", help="Pilot budget in GPU-hours of --hardware (instead of --budget).")] = None,
    hardware: Annotated[str, typer.Option("--hardware", help="Hardware profile for --gpu-hours (h100, h200, a100) or a JSON file.")] = "h100",
    target: Annotated[Optional[str], typer.Option("--target", help="The prediction to pin down: 'student=N,tokens=D,teacher-loss=L' (without teacher-loss: a supervised student).")] = None,
    target_plan: Annotated[Optional[str], typer.Option("--target-plan", help="Or the loss of the planner's recipe: 'student=N,compute=C[,scenario=best]'.")] = None,
    prior: Annotated[str, typer.Option("--prior", help="Coefficients believed before the pilot: a preset (busbridge2025) or a coefficients JSON file.")] = "busbridge2025",
    noise: Annotated[float, typer.Option("--noise", help="Run-to-run noise of a measured loss, as a fraction (0.005 = 0.5 %).")] = 0.005,
    max_params: Annotated[float, typer.Option("--max-params", help="Largest model the pilot may train (non-embedding parameters).")] = 1e12,
    min_params: Annotated[float, typer.Option("--min-params", help="Smallest model the pilot may train.")] = 1e5,
    max_runs: Annotated[int, typer.Option("--max-runs", min=4, help="Most runs a designed pilot may have.")] = 256,
    replicates: Annotated[int, typer.Option("--replicates", min=8, help="Simulated repetitions of each candidate pilot.")] = 40,
    level: Annotated[float, typer.Option("--level", help="Interval level (0.9: the central 90 %).")] = 0.9,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the simulated noise.")] = 0,
    name: Annotated[str, typer.Option("--name", help="The sweep's name in the config.")] = "pilot",
    corpus: Annotated[str, typer.Option("--corpus", help="\\[data] corpus of the config.")] = "shakespeare",
    tokenizer: Annotated[str, typer.Option("--tokenizer", help="\\[data] tokenizer of the config.")] = "byte",
    seq_len: Annotated[int, typer.Option("--seq-len", min=1, help="\\[data] seq_len of the config.")] = 128,
    aspect_ratio: Annotated[int, typer.Option("--aspect-ratio", min=1, help="\\[model] aspect ratio: pilot sizes are this family's shapes (d_model = ratio x layers).")] = 8,
    head_dim: Annotated[int, typer.Option("--head-dim", min=1, help="\\[model] head width.")] = 8,
    json_output: Annotated[bool, typer.Option("--json", help="Print the candidates and the choice as JSON.")] = False,
) -> None:
    """Design a pilot sweep: the runs that make one prediction as certain as a budget allows.

    For a target (a student's loss at a size, token count and teacher loss; or the loss of the recipe
    the planner picks for a student size and budget) and a pilot budget, distlaw builds candidate pilots
    that spend the budget (teacher training and online teacher inference included):

    - greedy designs: runs added one at a time for the most information about the target per FLOP
      (the linearised fit, robust over the prior and perturbations of it), from pools of several size
      ranges and teacher counts;

    - fixed-M x fixed-M layouts (Busbridge et al. 2025, Sec. 4.1), and a log-uniform grid as the baseline.

    Each candidate is scored by simulation: its losses are drawn from the prior with --noise, both laws
    refitted with distlaw's fitter on every replicate, and the target predicted; the spread of those
    predictions is the interval the pilot is expected to give. The best few are simulated again with
    the truth off the prior (exponents 10 % and E 5 % off) and the choice is the narrowest on average
    over the prior and those truths ("prior off" shows the worst of them).

    The chosen pilot is written as a sweep config (one 'runs' protocol listing every run) that
    distlaw sweep run reads as is. Sizes are shapes of the \\[model] family (--aspect-ratio, --head-dim):
    keep the defaults for a CPU pilot, use --aspect-ratio 128 --head-dim 64 at the paper's scale.

    JSON: {"target", "predicted", "level", "chosen", "grid", "candidates", "out"}.

    Examples:

      distlaw design --budget 1e21 --target "student=3e9,tokens=6e10,teacher-loss=2.2" --min-params 1e7 --aspect-ratio 128 --head-dim 64 --out pilot.toml

      distlaw design --gpu-hours 500 --hardware h100 --target-plan "student=1e9,compute=1e21" --out pilot.toml --json
    """
    from distlaw.compute import load_hardware
    from distlaw.design.pilot import check_budget
    from distlaw.design.targets import parse_target, plan_target
    from distlaw.laws import load_coefficients

    if (budget is None) == (gpu_hours is None):
        raise DistlawError("give exactly one of --budget FLOPS and --gpu-hours H")
    if (target is None) == (target_plan is None):
        raise DistlawError("give exactly one of --target and --target-plan")
    for value, flag in ((budget, "--budget"), (gpu_hours, "--gpu-hours"), (max_params, "--max-params"), (min_params, "--min-params")):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise DistlawError(f"{flag} must be a positive number, got {value:g}")
    if not (math.isfinite(noise) and 0 < noise < 0.5):
        raise DistlawError(f"--noise must be a fraction between 0 and 0.5, got {noise:g}")
    if not 0 < level < 1:
        raise DistlawError(f"--level must be between 0 and 1, got {level:g}")
    if min_params >= max_params:
        raise DistlawError(f"--min-params {min_params:g} must be below --max-params {max_params:g}")
    check_output_path(out, (".toml",), "pilot sweep config")
    flops = budget if budget is not None else float(load_hardware(hardware).flops(gpu_hours))
    coefficients = load_coefficients(prior)
    goal = parse_target(target, coefficients) if target is not None else plan_target(target_plan or "", coefficients)
    check_budget(flops, max_params, min_params)
    from distlaw.design.designer import design_sweep  # torch: after every check

    with err_console.status("building candidate pilots", spinner="dots") as status:  # a spinner on stderr; nothing when piped
        result = design_sweep(
            flops, goal, coefficients, out, noise=noise, max_params=max_params, min_params=min_params, max_runs=max_runs,
            replicates=replicates, level=level, seed=seed, name=name, corpus=corpus, tokenizer=tokenizer, seq_len=seq_len,
            aspect_ratio=aspect_ratio, head_dim=head_dim, progress=status.update,
        )
    if json_output:
        print_json(result)
        return
    shown = [(i, c) for i, c in enumerate(result["candidates"]) if i < SHOWN or c["kind"] == "grid"]
    rows = [[i + 1, c["kind"], f"{c['supervised']} + {c['distilled']}", f"{c['flops']:.3g}", f"±{50 * c['width']:.2f} %",
             "-" if c["worst_width"] is None else f"±{50 * c['worst_width']:.2f} %"] for i, c in shown]
    t = result["target"]
    teacher = f", teacher loss {t['teacher_loss']:.4g}" if t["teacher_loss"] else ""
    print_table(f"pilots for L({t['params']:.3g} params, {t['tokens']:.3g} tokens{teacher}) = {result['predicted']:.4f} under the prior "
                f"({len(result['candidates'])} candidates, best {len(shown)} shown)",
                ["#", "kind", "runs (supervised + distilled)", "FLOPs", f"{level:.0%} interval", "prior off"], rows)
    chosen, grid = result["chosen"], result["grid"]
    console.print(f"chosen: #1, {chosen['runs']} runs, expected {level:.0%} interval ±{50 * chosen['score']:.2f} % "
                  f"(the log-uniform grid: ±{50 * grid['score']:.2f} %); wrote {out}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(design)

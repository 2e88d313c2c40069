"""``distlaw design``: the pilot sweep that makes a target prediction most certain for a budget."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from distlaw.cli.common import console, err_console, print_json, print_table
from distlaw.design.pilot import Target, half_width
from distlaw.errors import DistlawError
from distlaw.io import check_output_path


SHOWN = 8  # candidates in the table (and the grid); --json has them all


def design(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the pilot's sweep config (.toml; its folder must exist).", show_default=False)],
    next_runs: Annotated[Optional[int], typer.Option("--next", help="Active design: propose the K next runs for the runs --store has finished.", show_default=False)] = None,
    store: Annotated[Optional[Path], typer.Option("--store", "-s", help="With --next: the run store whose finished runs condition the design.", show_default=False)] = None,
    fitted: Annotated[Optional[Path], typer.Option("--coefficients", "-c", help="With --next: a file of distlaw fit --bootstrap N --out (else both laws are fitted to the store's runs).", show_default=False)] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="With --next and no --coefficients: bootstrap resamples of the fit (the plausible truths).")] = 32,
    budget: Annotated[Optional[float], typer.Option("--budget", help="Pilot budget in FLOPs (training 6ND plus online teacher inference 2 N_T D_S).")] = None,
    gpu_hours: Annotated[Optional[float], typer.Option("--gpu-hours", help="Pilot budget in GPU-hours of --hardware (instead of --budget).")] = None,
    hardware: Annotated[str, typer.Option("--hardware", help="Hardware profile for --gpu-hours (h100, h200, a100) or a JSON file.")] = "h100",
    target: Annotated[Optional[list[str]], typer.Option("--target", help="The prediction to pin down: 'student=N,tokens=D,teacher-loss=L' (without teacher-loss: a supervised student). Repeat it (and --target-plan) for a pilot that pins several predictions at once, e.g. the recipes it is meant to validate.", show_default=False)] = None,
    target_plan: Annotated[Optional[list[str]], typer.Option("--target-plan", help="Or the loss of the planner's recipe: 'student=N,compute=C[,scenario=best]'.", show_default=False)] = None,
    prior: Annotated[str, typer.Option("--prior", help="Coefficients believed before the pilot: a preset (busbridge2025) or a coefficients JSON file.")] = "busbridge2025",
    noise: Annotated[float, typer.Option("--noise", help="Run-to-run noise of a measured loss, as a fraction (0.005 = 0.5 %).")] = 0.005,
    max_params: Annotated[Optional[float], typer.Option("--max-params", help="Largest model the pilot may train (non-embedding parameters; default 1e12, with --next 4x the largest finished model).", show_default=False)] = None,
    min_params: Annotated[float, typer.Option("--min-params", help="Smallest model the pilot may train.")] = 1e5,
    max_runs: Annotated[int, typer.Option("--max-runs", min=4, help="Most runs a designed pilot may have.")] = 256,
    min_tokens: Annotated[float, typer.Option("--min-tokens", min=0, help="Shortest run (tokens) a designed pilot may have: runs of a few optimizer steps sit in the warm-up, not on the laws (e.g. 100 steps of batch x seq_len).")] = 0.0,
    replicates: Annotated[Optional[int], typer.Option("--replicates", help="Simulated repetitions of each candidate pilot (default 40; with --next 8 per plausible truth).", show_default=False)] = None,
    level: Annotated[float, typer.Option("--level", help="Interval level (0.9: the central 90 %).")] = 0.9,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the simulated noise.")] = 0,
    name: Annotated[Optional[str], typer.Option("--name", help="The sweep's name in the config (default pilot; with --next: next).", show_default=False)] = None,
    corpus: Annotated[str, typer.Option("--corpus", help="\\[data] corpus of the config.")] = "shakespeare",
    tokenizer: Annotated[str, typer.Option("--tokenizer", help="\\[data] tokenizer of the config.")] = "byte",
    seq_len: Annotated[int, typer.Option("--seq-len", min=1, help="\\[data] seq_len of the config.")] = 128,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="\\[optim] batch_size of the config, in windows of --seq-len (default: the lab's, 32). On a CPU pilot, small batches (8) give the most optimizer steps per token.", show_default=False)] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="\\[optim] lr of the config, the peak learning rate (default: the lab's, 3e-3).", show_default=False)] = None,
    aspect_ratio: Annotated[int, typer.Option("--aspect-ratio", min=1, help="\\[model] aspect ratio: pilot sizes are this family's shapes (d_model = ratio x layers).")] = 8,
    head_dim: Annotated[int, typer.Option("--head-dim", min=1, help="\\[model] head width.")] = 8,
    json_output: Annotated[bool, typer.Option("--json", help="Print the candidates and the choice as JSON.")] = False,
) -> None:
    """Design a pilot sweep: the runs that make a prediction as certain as a budget allows.

    For a target (a student's loss at a size, token count and teacher loss; or the loss of the recipe
    the planner picks for a student size and budget) and a pilot budget, distlaw builds candidate pilots
    that spend the budget (teacher training and online teacher inference included). Several targets
    (--target and --target-plan repeated, e.g. the recipes the pilot is to be checked on) make one pilot
    for all of them: the information summed, the intervals' widths averaged.

    Every candidate must have enough runs of each law to identify each target (its linearised variance is
    finite); the others are left out before simulation. The candidates:

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

    JSON: {"targets": [{"params", "tokens", "teacher_loss", "predicted"}], "level", "chosen", "grid", "candidates", "out"}.

    Active design (--next K --store RUNS.db): after some runs of a sweep have finished, the K runs (within
    --budget, if given) that most shrink one target's interval given those runs. Both laws are fitted to the
    finished runs with --bootstrap resamples (or read from --coefficients FITTED.json, a distlaw fit --bootstrap
    file); the samples are the plausible truths. Candidates are the store's family sizes from its smallest
    model up to --max-params, new supervised runs, new teachers, and students of teachers already finished
    (only their inference is paid). The K runs are chosen by the linearised information they add to the
    finished runs' (per FLOP within --budget, else per run), then checked by simulation: the finished runs keep
    their losses, the new ones are drawn from each plausible truth with --noise, both laws are refitted; the
    expected interval now, after the K runs, and after naive runs of the same cost (one size above the largest
    finished models, at the finished runs' ratios) is printed. The config holds the new runs with the store's
    own \\[data], \\[optim], \\[distill] and \\[model] settings; a finished teacher is listed as itself, so that
    distlaw sweep run NEXT.toml --store RUNS.db finds it done and trains only the new runs.
    JSON: {"target", "predicted", "level", "finished_runs", "now": {"width"}, "next": {"runs", "flops", "width"},
    "naive": {...}, "out"}.

    Examples:

      distlaw design --budget 1e21 --target "student=3e9,tokens=6e10,teacher-loss=2.2" --min-params 1e7 --aspect-ratio 128 --head-dim 64 --out pilot.toml

      distlaw design --gpu-hours 500 --hardware h100 --target-plan "student=1e9,compute=1e21" --out pilot.toml --json

      distlaw design --budget 6e12 --target "student=49312,tokens=8e6" --target "student=20904,tokens=1e7,teacher-loss=1.6" --min-params 5e3 --max-params 1e5 --min-tokens 6e5 --batch-size 8 --out pilot.toml

      distlaw design --next 4 --store pilot.db --target "student=2e5,tokens=4e6,teacher-loss=1.9" --budget 2e13 --out next.toml
    """
    from distlaw.compute import load_hardware
    from distlaw.design.pilot import check_budget
    from distlaw.design.targets import parse_target, plan_target
    from distlaw.laws import load_coefficients

    if (next_runs is None) != (store is None):
        raise DistlawError("--next K needs --store RUNS.db" if store is None else "--store needs --next K (the number of runs to propose)")
    if next_runs is None and fitted is not None:
        raise DistlawError("--coefficients goes with --next (before a pilot, the belief is --prior)")
    if next_runs is not None and (batch_size is not None or lr is not None):
        raise DistlawError("--batch-size and --lr set a new pilot's [optim]; --next keeps the store's own settings")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise DistlawError(f"--lr must be a positive learning rate, got {lr:g}")
    targets, plans = target or [], target_plan or []
    if not targets and not plans:
        raise DistlawError("give a --target or a --target-plan (either may be repeated)")
    if next_runs is not None:
        if len(targets) + len(plans) > 1:
            raise DistlawError("--next designs for one target: give one --target or --target-plan")
        _design_next(next_runs, store, fitted, bootstrap, out, budget, gpu_hours, hardware, targets[0] if targets else None, plans[0] if plans else None,
                     noise, max_params,
                     8 if replicates is None else replicates, level, seed, name or "next", json_output, min_tokens)
        return
    max_params = 1e12 if max_params is None else max_params
    replicates = 40 if replicates is None else replicates
    name = name or "pilot"
    if replicates < 8:
        raise DistlawError(f"--replicates must be at least 8, got {replicates}")
    if (budget is None) == (gpu_hours is None):
        raise DistlawError("give exactly one of --budget FLOPS and --gpu-hours H")
    _check_common(out, budget, gpu_hours, noise, level, max_params, min_params)
    if min_params >= max_params:
        raise DistlawError(f"--min-params {min_params:g} must be below --max-params {max_params:g}")
    flops = budget if budget is not None else float(load_hardware(hardware).flops(gpu_hours))
    coefficients = load_coefficients(prior)
    goals = [parse_target(t, coefficients) for t in targets] + [plan_target(t, coefficients) for t in plans]
    check_budget(flops, max_params, min_params)
    from distlaw.design.designer import design_sweep  # torch: after every check

    with err_console.status("building candidate pilots", spinner="dots") as status:  # a spinner on stderr; nothing when piped
        result = design_sweep(
            flops, goals, coefficients, out, noise=noise, max_params=max_params, min_params=min_params, max_runs=max_runs, min_tokens=min_tokens,
            replicates=replicates, level=level, seed=seed, name=name, corpus=corpus, tokenizer=tokenizer, seq_len=seq_len,
            aspect_ratio=aspect_ratio, head_dim=head_dim, optim={"batch_size": batch_size, "lr": lr}, progress=status.update,
        )
    if json_output:
        print_json(result)
        return
    shown = [(i, c) for i, c in enumerate(result["candidates"]) if i < SHOWN or c["kind"] == "grid"]
    rows = [[i + 1, c["kind"], f"{c['supervised']} + {c['distilled']}", f"{c['flops']:.3g}", half_width(c["width"]),
             "-" if c["worst_width"] is None and c["kind"] != "grid" else half_width(c["worst_width"])] for i, c in shown]
    named = "; ".join(f"{Target(t['params'], t['tokens'], t['teacher_loss']).label()} = {t['predicted']:.4f}" for t in result["targets"])
    print_table(f"pilots for {named} under the prior ({len(result['candidates'])} candidates, best {len(shown)} shown)",
                ["#", "kind", "runs (supervised + distilled)", "FLOPs", f"{level:.0%} interval", "prior off"], rows)
    chosen, grid = result["chosen"], result["grid"]
    mean = " (mean over the targets)" if len(result["targets"]) > 1 else ""
    console.print(f"chosen: #1, {chosen['runs']} runs, expected {level:.0%} interval{mean} {half_width(chosen['score'])} "
                  f"(the log-uniform grid: {half_width(grid['score'])}); wrote {out}", highlight=False)


def _check_common(out: Path, budget: float | None, gpu_hours: float | None, noise: float, level: float, max_params: float | None,
                  min_params: float | None = None) -> None:
    """The checks of both modes: at most one budget, positive numbers, the output path."""
    if budget is not None and gpu_hours is not None:
        raise DistlawError("give at most one of --budget FLOPS and --gpu-hours H")
    for value, flag in ((budget, "--budget"), (gpu_hours, "--gpu-hours"), (max_params, "--max-params"), (min_params, "--min-params")):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise DistlawError(f"{flag} must be a positive number, got {value:g}")
    if not (math.isfinite(noise) and 0 < noise < 0.5):
        raise DistlawError(f"--noise must be a fraction between 0 and 0.5, got {noise:g}")
    if not 0 < level < 1:
        raise DistlawError(f"--level must be between 0 and 1, got {level:g}")
    check_output_path(out, (".toml",), "sweep config")


def _design_next(k: int, store: Path, fitted: Path | None, bootstrap: int, out: Path, budget: float | None, gpu_hours: float | None,
                 hardware: str, target: str | None, target_plan: str | None, noise: float, max_params: float | None, replicates: int,
                 level: float, seed: int, name: str, json_output: bool, min_tokens: float) -> None:
    """``design --next``: every check before torch (the store, the budget against the cheapest candidate), then the fit."""
    from distlaw.compute import load_hardware
    from distlaw.design import active
    from distlaw.design.targets import parse_target, plan_target
    from distlaw.laws import load_coefficients

    if k < 1:
        raise DistlawError(f"--next must be at least 1 run, got {k}")
    if bootstrap < 8 and fitted is None:
        raise DistlawError(f"--bootstrap must be at least 8 (the plausible truths), got {bootstrap}")
    if replicates < 1:
        raise DistlawError(f"--replicates must be at least 1, got {replicates}")
    _check_common(out, budget, gpu_hours, noise, level, max_params)
    flops = budget if gpu_hours is None else float(load_hardware(hardware).flops(gpu_hours))
    distilled = target_plan is not None or "teacher-loss" in (target or "")
    finished = active.read_finished(store, distilled)
    active.check_next_budget(flops, *active.next_pool(finished, active.pool_sizes(finished, max_params), distilled, min_tokens=min_tokens))
    coefficients = load_coefficients(str(fitted)) if fitted is not None else None
    with err_console.status("reading the finished runs", spinner="dots") as status:
        if coefficients is None:
            coefficients = active.fit_finished(finished, bootstrap, seed, progress=status.update)
        goal = parse_target(target, coefficients) if target is not None else plan_target(target_plan or "", coefficients)
        result = active.design_next(finished, coefficients, goal, k, out, store=store, name=name, budget=flops, max_params=max_params,
                                    noise=noise, replicates=replicates, level=level, seed=seed, source=str(fitted or store),
                                    progress=status.update, min_tokens=min_tokens)
    if json_output:
        print_json(result)
        return
    rows = [[i + 1, r["kind"], f"{r['params']:.4g}", f"{r['tokens']:.4g}",
             "-" if r["teacher"] is None else f"{r['teacher']['params']:.4g} x {r['teacher']['tokens']:.4g}" + (" (finished)" if r["teacher"]["finished"] else " (new)"),
             f"{r['flops']:.3g}"] for i, r in enumerate(result["next"]["runs"])]
    t = result["target"]
    print_table(f"the next {len(rows)} runs for {Target(t['params'], t['tokens'], t['teacher_loss']).label()} = {result['predicted']:.4f} "
                f"({result['finished_runs']} finished runs)", ["#", "kind", "params", "tokens", "teacher", "FLOPs"], rows)
    console.print(f"interval now {half_width(result['now']['width'])} -> after these {len(rows)} runs {half_width(result['next']['width'])} "
                  f"(naive: {half_width(result['naive']['width'])}); {result['next']['flops']:.3g} FLOPs; wrote {out}", highlight=False)
    if result["next"]["width"] >= result["now"]["width"]:
        err_console.print("[bold yellow]note:[/] these runs are not expected to narrow the interval (the finished runs already pin what "
                          "runs of this size and budget can): try a larger --budget or --max-params", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(design)

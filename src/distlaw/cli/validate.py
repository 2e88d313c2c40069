"""``distlaw validate``: predictions with intervals checked against observed losses, by training planned
recipes at a few times a pilot's scale (``--store``) or on held-out runs (``--runs``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from distlaw.cli.common import console, err_console, print_json, print_table, print_warnings
from distlaw.errors import DistlawError
from distlaw.figures import check_plot_path
from distlaw.intervals import check_level
from distlaw.laws.domain import short_number


def parse_numbers(text: str | None, flag: str) -> list[float] | None:
    """``2,3,4`` -> [2.0, 3.0, 4.0] (None stays None); a one-line DistlawError for anything else."""
    if text is None:
        return None
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise DistlawError(f"{flag}: expected numbers separated by commas (like 2,3,4), got '{text}'") from None
    return values


def _check_modes(store: Path | None, runs: Path | None, training: dict[str, object]) -> None:
    if (store is None) == (runs is None):
        raise DistlawError("give exactly one of --store PILOT.db (plan, train and check recipes) and --runs RUNS.csv (check held-out runs)")
    given = [flag for flag, value in training.items() if value is not None]
    if runs is not None and given:
        raise DistlawError(f"{given[0]} plans recipes to train: it goes with --store, not --runs")
    if training["--student"] is not None and training["--size-range"] is not None:
        raise DistlawError("give --student N (one student size) or --size-range LO:HI (the sizes searched), not both")


def _cell(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _print(result: object, title: str) -> None:
    rows = []
    for c in result.checks:  # type: ignore[attr-defined]
        interval = "none" if c.interval is None else f"[{c.interval[0]:.4f}, {c.interval[1]:.4f}]"
        inside = "-" if c.inside is None else ("yes" if c.inside else "no")
        teacher = "-" if c.teacher_loss is None else f"{short_number(c.teacher_params) if c.teacher_params else '?'} (L_T {c.teacher_loss:.3f})"
        rows.append([short_number(c.compute), c.kind, f"{c.params:,.0f}", short_number(c.tokens), teacher, f"{c.predicted:.4f}", interval,
                     _cell(c.observed), inside, _cell(c.error, "+.2f")])
    level = result.level  # type: ignore[attr-defined]
    print_table(title, ["compute", "kind", "N", "D", "teacher", "predicted", f"{level:.0%} interval", "observed", "inside", "error %"], rows)
    say = lambda text: console.print(text, highlight=False, markup=False)  # noqa: E731
    say(f"{result.inside} of {result.total} observed losses inside their {level:.0%} intervals "  # type: ignore[attr-defined]
        "(error: (predicted - observed) / observed).")
    if any(c.interval is None for c in result.checks):  # type: ignore[attr-defined]
        say("none: the bootstrap samples give no interval that holds the prediction (degenerate resamples).")
    for name in result.failed:  # type: ignore[attr-defined]
        say(f"{name}: did not finish (see `distlaw runs list --store ...`)")
    if result.figure:  # type: ignore[attr-defined]
        say(f"wrote {result.figure}")  # type: ignore[attr-defined]


def validate(
    coefficients: Annotated[str, typer.Option("--coefficients", "-c", help="A fitted coefficients JSON with bootstrap samples (distlaw fit RUNS --bootstrap K --out FILE).", show_default=False)],
    store: Annotated[Optional[Path], typer.Option("--store", "-s", help="The pilot's run store: plan recipes, train them into it, check them.", show_default=False)] = None,
    runs: Annotated[Optional[Path], typer.Option("--runs", help="Or a runs table (.csv/.parquet) of held-out runs to check, nothing trained.", show_default=False)] = None,
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="The pilot sweep in the store (default: its only sweep that is not a validation).", show_default=False)] = None,
    scale: Annotated[Optional[str], typer.Option("--scale", help="Budgets as multiples of the compute of the pilot's largest finished run (default 2,3,4).", show_default=False)] = None,
    compute: Annotated[Optional[str], typer.Option("--compute", help="Or budgets in FLOPs, e.g. 4e11,8e11.", show_default=False)] = None,
    student: Annotated[Optional[float], typer.Option("--student", help="Fix the student's size N (the nearest model the pilot's family builds).", show_default=False)] = None,
    size_range: Annotated[Optional[str], typer.Option("--size-range", help="LO:HI: student sizes searched (default: the pilot's smallest model to 10x its largest).", show_default=False)] = None,
    level: Annotated[float, typer.Option("--level", help="Interval level (0.9: the central 90 % of the bootstrap predictions).")] = 0.9,
    figure: Annotated[Optional[Path], typer.Option("--figure", help="Write predicted vs observed (.png/.pdf/.svg; its folder must exist).", show_default=False)] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", "-w", min=1, help="Recipes trained at once (default: one per core).", show_default=False)] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Check predictions by training them: predicted loss with its interval against observed loss.

    With --store, from a fitted coefficients file and the pilot's run store: budgets a few times the
    compute (6 N D, plus the online teacher's 2 N_T D) of the pilot's largest finished run (--scale,
    default 2,3,4: three recipes), one recipe per budget as the planner chooses it: the student (a model
    the pilot's family builds, within --size-range, or --student) trained supervised on all of the budget,
    or distilled from one of the pilot's finished teachers, whose measured loss is known (the planner's
    existing-teacher scenario, teacher inference counted), whichever the laws predict is better. The
    recipes are trained into the same store as the sweep PILOT-validate (a runs protocol with the
    pilot's data, model, optimizer and distillation settings, read from the stored runs): the teachers
    are the pilot's stored runs, reused, not retrained. Run it again and finished recipes are reused.

    With --runs, any runs table of held-out runs is scored instead (nothing is trained): supervised
    rows by the supervised law, distilled rows by the distillation law with their teacher_loss.

    For each: compute, kind, N, D, teacher, predicted loss (point coefficients), its --level interval
    (a prediction interval for one run: the central interval of the same prediction under every
    bootstrap sample, each times the fit's own run-to-run scatter exp(sigma z), sigma its RMS log
    residual recorded in the coefficients file; "none" where that interval does not hold the
    prediction), observed loss, inside, error % = (predicted - observed) /
    observed. The coefficients must carry bootstrap samples: without them there is no interval and
    validate refuses (refit with --bootstrap). --figure draws predicted against observed with the
    intervals and y = x (Busbridge et al. 2025, Fig. 5).

    JSON: {"recipes": [{"name", "kind", "compute", "params", "tokens", "teacher", "teacher_params",
    "teacher_loss", "predicted", "interval", "observed", "inside", "error_percent", "note"}], "level",
    "inside", "total", "figure", "failed", "warnings"}. Exits 1 when a recipe's run failed.

    Examples:

      distlaw validate -c pilot-fit.json --store pilot.db --figure validate.png

      distlaw validate -c pilot-fit.json --store pilot.db --scale 2,4 --size-range 5e3:2e5 --level 0.95 --json

      distlaw validate -c pilot-fit.json --runs held-out.csv --figure held-out.png
    """
    from distlaw.cli.plan import parse_size_range

    check_level(level)
    if figure is not None:
        check_plot_path(figure)
    _check_modes(store, runs, {"--sweep": sweep, "--scale": scale, "--compute": compute, "--student": student,
                               "--size-range": size_range, "--workers": workers})
    scales, budgets = parse_numbers(scale, "--scale"), parse_numbers(compute, "--compute")
    sizes = parse_size_range(size_range) if size_range is not None else None
    if student is not None and not student > 0:
        raise DistlawError(f"--student must be a positive number of parameters, got {student:g}")
    from distlaw.design import validate as v
    from distlaw.laws import load_coefficients

    v.check_budgets(scales, budgets)
    coef = load_coefficients(coefficients)
    if runs is not None:
        from distlaw.runs import read_runs

        result, title = v.score_runs(coef, read_runs(runs), level, source=str(runs)), f"{runs}: predicted ({coefficients}) vs observed"
    else:
        from distlaw.design.validate_store import read_pilot

        pilot = read_pilot(store, sweep)  # type: ignore[arg-type]
        plan = v.budgets_of(pilot, scales, budgets)
        with err_console.status(f"training {len(plan)} recipes into {store}", spinner="dots") as status:  # stderr; nothing when piped
            done: list[str] = []

            def report(name: str, state: str) -> None:
                done.append(name)
                status.update(f"training recipes: {state} {name} ({len(done)} finished)")

            result = v.validate_recipes(coef, pilot, plan, level, student, sizes, workers, on_finish=report)
        title = f"{pilot.validation_name}: recipes at {', '.join(f'{c:.3g}' for c in plan)} FLOPs, predicted ({coefficients}) vs observed"
    if figure is not None:
        from distlaw.design.validate_plot import plot_validation

        plot_validation(figure, result.checks, level)
        result = dataclasses.replace(result, figure=str(figure))
    print_warnings(result.warnings)
    if json_output:
        print_json(result.record())
    else:
        _print(result, title)
    if result.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(validate)

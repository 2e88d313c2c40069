"""``distlaw capacity``: the law of capacity gap (Zhang et al. 2023, arXiv 2311.07052)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import pandas as pd
import typer

from distlaw.cli.common import console, print_json, print_table
from distlaw.errors import DistlawError
from distlaw.intervals import NO_DRAWS_SHORT, check_level, short_note

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
LevelOption = Annotated[float, typer.Option("--level", help="Level of the bootstrap percentile intervals, between 0 and 1.")]

capacity_app = typer.Typer(
    name="capacity",
    help=(
        "The capacity gap: a larger teacher does not always distil a better student. For each student "
        "size S there is an optimal teacher size T*, and Zhang et al. (\"Towards the Law of Capacity Gap "
        "in Distilling Language Models\", arXiv 2311.07052) find it linear in S, T* ~ 2.5 S (the law of "
        "capacity gap).\n\n"
        "`capacity fit` finds each student's optimal teacher in a runs table from a smooth fit of student "
        "loss against teacher size (not one argmin, which seed noise moves) and fits T* = slope S + intercept; "
        "`capacity predict` gives the optimal teacher for a student size from that fit or Zhang's T* = 2.5 S.\n\n"
        "Sizes are parameter counts in the runs table's unit; the fitted intercept is in that unit too."
    ),
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@capacity_app.command("fit")
def fit(
    runs: Annotated[Path, typer.Argument(help="Runs table (CSV/Parquet); distilled rows need params, tokens, loss, teacher_params.")],
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples of the runs within each student (0: no intervals).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    level: LevelOption = 0.95,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the fitted law (.json) for `capacity predict`.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw a figure (.png, .pdf or .svg).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Find each student's optimal teacher size and fit the law of capacity gap T* = slope S + intercept.

    Per student configuration (params, tokens) with distilled runs from 3 or more teacher sizes, the student loss is fitted as a quadratic in ln(teacher size), by least squares on the seed-averaged losses weighted by the number of seeds. Students pruned from their teachers (a pruned_to column, as `distlaw runs export` writes for the prune-distill protocol) count as their target size.

    Columns: S = student params; D = student tokens; teachers = distinct teacher sizes; T* = the smooth optimum, the vertex of the quadratic; interval = its bootstrap percentile interval (runs resampled within the student; "none (degenerate)" where the resamples' interval would not contain T* itself, "none (no resamples)" where a student has one run per teacher size); optimum = "interior" when the quadratic is convex with its vertex inside the teachers' range, ">= T" when the loss still falls at the largest teacher (T* is at least that teacher), "<= T" when it rises from the smallest (T* is at most that teacher); argmin = the raw argmin, the teacher with the lowest seed-averaged loss; L(T*) = the fitted student loss at T*.

    The law is fitted by least squares over the interior optima (as Zhang et al., Fig. 4), also through the origin (T* = slope S, Zhang's form: slope ~ 2.5), with R^2 and bootstrap intervals. With fewer than two interior optima the curves are still shown, with the reason (and --out is an error).

    Examples:

      distlaw capacity fit runs.csv

      distlaw capacity fit runs.csv --bootstrap 2000 --out capacity.json --plot capacity.png --json
    """
    from distlaw.capacity import capacity_gap
    from distlaw.io import check_output_path
    from distlaw.runs import read_runs

    check_level(level)
    if out is not None:
        check_output_path(out, (".json",), "capacity-gap law")
    if plot is not None:
        from distlaw.figures import check_plot_path

        check_plot_path(plot)
    table = read_runs(runs)
    result = capacity_gap(table, bootstrap=bootstrap, seed=seed, level=level)
    if out is not None:
        if result.fit is None:
            raise DistlawError(f"{result.reason}; no law to write to {out}")
        result.fit.coefficients().save(out)
    if plot is not None:
        from distlaw.capacity import plot_capacity

        plot_capacity(table, result, plot)
    if json_output:
        print_json({**result.to_dict(), "out": None if out is None else str(out)})
        return
    _print_curves(result.curves, level)
    if result.skipped:
        console.print(f"{result.skipped} student configuration(s) with fewer than 3 teacher sizes left out")
    if result.fit is None:
        console.print(f"law of capacity gap not fitted: {result.reason}", highlight=False)
        return
    _print_law(result.fit.to_dict())
    if out is not None:
        console.print(f"wrote {out}")


def _size(value: float) -> str:
    """A parameter count in 3 significant digits, compact: 2.5e+09 -> 2.5e9."""
    return f"{value:.3g}".replace("e+0", "e").replace("e+", "e")


def _interval(lo: float, hi: float, note: str | None, show: Callable[[float], str] = "{:.4g}".format) -> str:
    """lo..hi, or the short reason why there is none (a degenerate bootstrap, or no resamples)."""
    if note is not None or not (np.isfinite(lo) and np.isfinite(hi)):
        return short_note(note) or NO_DRAWS_SHORT
    return f"{show(lo)}..{show(hi)}"


def _optimum_label(curve: pd.Series) -> str:
    """interior, or the bound an edge optimum gives: >= the largest teacher, <= the smallest."""
    if curve["status"] == "at least":
        return f">= {_size(curve['teacher_max'])}"
    if curve["status"] == "at most":
        return f"<= {_size(curve['teacher_min'])}"
    return "interior"


def _print_curves(curves: pd.DataFrame, level: float) -> None:
    has_interval = "teacher_star_lo" in curves
    columns = ["S", "D", "teachers", "T*", *([f"{level:.0%} interval"] if has_interval else []), "optimum", "argmin", "L(T*)"]
    rows = [
        [_size(r["params"]), _size(r["tokens"]), r["teachers"], _size(r["teacher_star"])]
        + ([_interval(r["teacher_star_lo"], r["teacher_star_hi"], r["interval_note"], _size)] if has_interval else [])
        + [_optimum_label(r), _size(r["argmin_teacher"]), r["loss_star"]]
        for _, r in curves.iterrows()
    ]
    print_table("optimal teacher per student", columns, rows)


def _print_law(law: dict[str, Any]) -> None:
    intervals, notes = law.get("intervals", {}), law.get("interval_notes", {})

    def shown(name: str) -> str:
        return _interval(*intervals[name], notes.get(name)) if name in intervals else ""

    rows = [
        ["T* = slope S + intercept: slope", law["slope"], shown("slope")],
        ["intercept (params)", law["intercept"], shown("intercept")],
        ["through the origin: slope", law["slope_origin"], shown("slope_origin")],
        ["R^2", law["r2"], ""],
        ["interior optima used", law["students"], ""],
    ]
    title = "law of capacity gap" + (f" ({law['level']:.0%} intervals, {law['bootstrap']} usable resamples)" if intervals else "")
    print_table(title, ["quantity", "value", "interval"], rows)
    console.print("Zhang et al. 2023 (arXiv 2311.07052): T* ~ 2.5 S", highlight=False)


@capacity_app.command("predict")
def predict(
    student: Annotated[Optional[list[float]], typer.Option("--student", "-n", help="Student size S (repeatable).")] = None,
    teacher: Annotated[Optional[list[float]], typer.Option("--teacher", "-t", help="Teacher size T, for the inverse (repeatable).")] = None,
    coefficients: Annotated[Optional[Path], typer.Option("--coefficients", "-c", help="Law JSON from `capacity fit --out`.")] = None,
    preset: Annotated[Optional[str], typer.Option(help="Published law: zhang2023 (T* = 2.5 S), the default.")] = None,
    level: LevelOption = 0.95,
    json_output: JsonOption = False,
) -> None:
    """The optimal teacher size T* = slope S + intercept for student sizes S, or (--teacher) the student size a teacher suits best, S* = (T - intercept) / slope.

    The law comes from --coefficients (a `distlaw capacity fit --out` file; sizes in that runs table's unit, intervals from its bootstrap samples) or --preset zhang2023 (T* = 2.5 S, Zhang et al. 2023, arXiv 2311.07052; unit-free), the default. An interval that would not contain its own prediction (degenerate bootstrap samples) is shown as "none (degenerate)" (JSON: null lo and hi, the reason in note).

    Examples:

      distlaw capacity predict --student 1e9

      distlaw capacity predict -n 1.2e8 -n 3.5e8 -c capacity.json --level 0.9 --json

      distlaw capacity predict --teacher 7e9
    """
    from distlaw.capacity import predict_sizes
    from distlaw.laws.capacity_gap import load_capacity_law

    check_level(level)
    if (student is None) == (teacher is None):
        raise DistlawError("give --student or --teacher sizes (not both)")
    if coefficients is not None and preset is not None:
        raise DistlawError("give --coefficients or --preset, not both")
    source = str(coefficients) if coefficients is not None else preset or "zhang2023"
    law = load_capacity_law(source)
    rows = predict_sizes(law, student, teacher, level)
    if json_output:
        print_json({"law": law.law.as_dict(), "source": source, "predictions": rows})
        return
    given, wanted = ("student", "teacher") if student is not None else ("teacher", "student")
    columns = [f"{given} params", f"optimal {wanted}", *([f"{level:.0%} interval"] if law.bootstrap else [])]
    table = [[r[f"{given}_params"], r[f"{wanted}_params"], *([_interval(r["lo"], r["hi"], r["note"])] if law.bootstrap else [])] for r in rows]
    print_table(f"law of capacity gap: T* = {law.law.slope:.4g} S {law.law.intercept:+.4g} ({source})", columns, table)


def register(app: typer.Typer) -> None:
    """Add the ``capacity`` command group to ``app``."""
    app.add_typer(capacity_app)

"""``distlaw fit``: fit the supervised and distillation laws to a runs table (batched multi-start)."""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer

from distlaw.cli.common import console, err_console, fmt, print_json, print_warnings
from distlaw.errors import DistlawError
from distlaw.intervals import check_level

LAW_CHOICES = ("supervised", "distillation", "both")
GRID_CHOICES = ("paper", "epoch", "coarse")


def parse_fix(items: list[str] | None) -> dict[str, float]:
    """``["gamma=1", "distillation.c0=2.5"]`` -> ``{"gamma": 1.0, "distillation.c0": 2.5}``."""
    out: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise DistlawError(f"--fix {item!r}: expected NAME=VALUE, e.g. --fix gamma=1")
        try:
            number = float(value)
        except ValueError:
            raise DistlawError(f"--fix {item!r}: VALUE must be a number") from None
        if not math.isfinite(number):
            raise DistlawError(f"--fix {item!r}: VALUE must be finite")
        out[name] = number
    return out


@contextmanager
def _progress_bar(quiet: bool) -> Iterator[Any]:
    """A rich progress bar on stderr (only on a terminal, and not with --quiet); yields the fitter's progress callback."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f}"),
        TimeElapsedColumn(), console=err_console, transient=True, disable=quiet or not err_console.is_terminal,
    ) as bar:
        task = bar.add_task("fitting", total=1)

        def update(label: str, done: float, total: float) -> None:
            bar.update(task, description=label, completed=done, total=max(total, 1.0))

        yield update


def fit(
    runs: Annotated[Path, typer.Argument(help="Runs table (CSV/Parquet): kind, params, tokens, loss[, teacher_loss].")],
    law: Annotated[str, typer.Option("--law", "-l", help="supervised, distillation, or both (what the rows allow).")] = "both",
    fix: Annotated[Optional[list[str]], typer.Option("--fix", help="Hold a coefficient fixed: NAME=VALUE (e.g. gamma=1; supervised.gamma=1 or distillation.gamma=1 picks one law). Repeatable.")] = None,
    delta: Annotated[float, typer.Option("--delta", help="Huber delta on log loss (1e-4 Busbridge; 1e-3 Chinchilla/Epoch).")] = 1e-4,
    bootstrap: Annotated[int, typer.Option("--bootstrap", "-b", help="Bootstrap resamples of the runs for confidence intervals (0: none).")] = 0,
    level: Annotated[float, typer.Option("--level", help="Confidence level of the bootstrap intervals.")] = 0.95,
    holdout_below: Annotated[Optional[float], typer.Option("--holdout-below", help="Hold out runs with loss below LOSS; fit on the weaker ones and report extrapolation metrics on these.")] = None,
    coefficients: Annotated[Optional[str], typer.Option("--coefficients", "-c", help="Preset or coefficients JSON giving Ltilde_S for the distillation fit (default: the supervised law fitted to this table).")] = None,
    prior: Annotated[Optional[str], typer.Option("--prior", help="Preset or coefficients JSON believed before these runs: each law's form is chosen among nested parameterisations (all free; gamma = 1; exponents from the prior; ...) by its error on the largest runs left out, and the choice is written into --out.")] = None,
    grid: Annotated[str, typer.Option("--grid", help="Start grid: paper (LAWS.md sec. 3; 216,000 distillation starts), epoch (Chinchilla replication, supervised), coarse (quick).")] = "paper",
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the bootstrap resampling.")] = 0,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="With --prior: processes fitting the candidate forms side by side (default: the cores available).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the fitted coefficients JSON here (distlaw.laws.Coefficients schema, with bootstrap samples); its folder must exist.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON: per law {coefficients, intervals, metrics, warnings, fit}.")] = False,
) -> None:
    """Fit the laws to your runs: supervised Eq. 1 and distillation Eq. 8 (Busbridge et al. 2025).

    Huber loss on log loss, minimized from every start of the grid at once (batched L-BFGS).

    Examples (runs.csv: your own runs table, or the one `distlaw runs export` writes from a sweep):

      distlaw fit runs.csv --out fitted.json

      distlaw fit runs.csv --law supervised --fix gamma=1 --delta 1e-3 --grid epoch --bootstrap 1000 --json

      distlaw fit runs.csv --law distillation --coefficients busbridge2025 --holdout-below 2.3

      distlaw fit runs.csv --prior busbridge2025 --bootstrap 200 --out fitted.json

    With --prior, a pilot too small to pin every coefficient still gets an honest fit: each candidate form
    is fitted without the quarter of runs of largest compute (6ND) and scored on them, and on all runs to
    see whether a coefficient lands on a bound; the lowest held-out error among forms with no coefficient
    on a bound wins (within 5 %, the one with fewer free coefficients). The table of forms tried, the choice
    and why are printed (JSON: "parameterisation" per law); the coefficients file records it, so reports
    and plans say which coefficients came from the prior. --fix still wins over a form's values.
    """
    from distlaw.io import check_output_path
    from distlaw.laws import load_coefficients
    from distlaw.runs import read_runs

    if law not in LAW_CHOICES:
        raise DistlawError(f"--law must be one of {', '.join(LAW_CHOICES)}, got '{law}'")
    if grid not in GRID_CHOICES:
        raise DistlawError(f"--grid must be one of {', '.join(GRID_CHOICES)}, got '{grid}'")
    if not (math.isfinite(delta) and delta > 0):
        raise DistlawError(f"--delta must be a positive number, got {delta:g}")
    if bootstrap < 0:
        raise DistlawError(f"--bootstrap must be >= 0, got {bootstrap}")
    check_level(level)
    if out is not None:
        check_output_path(out, (".json",), "coefficients file")
    fixed = parse_fix(fix)
    coef = load_coefficients(coefficients) if coefficients is not None else None
    prior_coef = load_coefficients(prior) if prior is not None else None
    table = read_runs(runs)

    from distlaw.fitting import fit_runs  # torch: only once the request is known to be good
    from distlaw.fitting.optimizer import available_cores

    with _progress_bar(quiet) as progress:
        result = fit_runs(
            table, law, fixed=fixed, delta=delta, bootstrap=bootstrap, level=level, holdout_below=holdout_below,
            coefficients=coef, coefficients_name=coefficients, grid=grid, seed=seed, progress=progress,
            source=str(runs), prior=prior_coef, prior_name=prior, workers=workers or available_cores(),
        )
    if out is not None:
        result.coefficients().save(out)
    print_warnings(result.warnings)
    if json_output:
        print_json(result.summary())
        return
    _print_result(result, out)


def _print_result(result: Any, out: Path | None) -> None:
    from rich.table import Table

    from distlaw.intervals import short_note

    for law, r in result.results().items():
        console.print(
            f"[bold]{law} law[/]: {r.n_runs} runs, {r.n_starts:,} starts, objective {r.objective:.6g} "
            f"(Huber delta {r.delta:g}), {r.seconds:.1f} s",
            highlight=False,
        )
        table = Table()
        columns = ["coefficient", "estimate"]
        if r.intervals:
            columns += [f"{100 * r.level:g}% low", f"{100 * r.level:g}% high"]
        for c in columns:
            table.add_column(c, justify="left" if c == "coefficient" else "right")
        for name, value in r.coefficients.items():
            row = [name + (" (fixed)" if name in r.fixed else ""), fmt(value)]
            if r.intervals:
                lo_hi = r.intervals.get(name)
                if name in r.interval_notes:
                    row += [short_note(r.interval_notes[name]), ""]
                else:
                    row += [fmt(lo_hi[0]), fmt(lo_hi[1])] if lo_hi else ["", ""]
            table.add_row(*row)
        console.print(table)
        for part, m in r.metrics.items():
            if m.get("n"):
                label = "in-sample" if part == "fit" else f"held out (loss < {result.holdout_below:g})"
                console.print(
                    f"  {label}: n={m['n']}, RMSE {m['rmse']:.4g}, MAPE {m['mape_pct']:.3g}%, max abs error {m['max_abs_error']:.4g}",
                    highlight=False,
                )
        if law == "distillation":
            console.print(f"  Ltilde_S from: {result.supervised_source}", highlight=False)
        if r.parameterisation is not None:
            _print_selection(r.parameterisation)
    if out is not None:
        console.print(f"wrote coefficients to {out}", highlight=False)


def _print_selection(record: dict[str, Any]) -> None:
    """The forms tried for one law (``--prior``): held-out error on the largest runs, bound hits, the choice."""
    from rich.table import Table

    table = Table(title=f"forms tried (the {record['held_out']} runs of largest compute held out)", title_justify="left")
    for c in ("form", "free", "held-out MAPE", "not pinned", ""):
        table.add_column(c, justify="left" if c in ("form", "not pinned") else "right")
    for c in record["candidates"]:
        mape = "-" if not math.isfinite(c["holdout_mape_pct"]) else f"{c['holdout_mape_pct']:.3g} %"
        unpinned = [f"{n} (on a bound)" for n in c["at_bound"]] + [f"{n} (interval)" for n in c.get("weak", [])]
        table.add_row(c["name"], str(c["free"]), mape, ", ".join(unpinned) or c["note"] or "-",
                      "chosen" if c["name"] == record["name"] else "")
    console.print(table)
    console.print("  not pinned: the estimate sits on a bound, or its bootstrap interval reaches one or collapses to a point",
                  highlight=False)
    fixed = ", ".join(f"{k} = {fmt(v)}" for k, v in record["fixed"].items()) or "none"
    console.print(f"  form: {record['name']} (fixed: {fixed}): {record['reason']}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(fit)

"""``distlaw demo``: the end-to-end study on the embedded Shakespeare corpus (the README's first command)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from distlaw.cli.common import console, print_json, print_table


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the store, runs table, coefficients and report.")] = Path("distlaw-demo"),
    config: Annotated[Optional[str], typer.Option("--config", help="Sweep config: a TOML file or a shipped name (micro, demo, pilot, capacity); default: demo.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Runs trained at once (default: one per core).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress: print only the summary.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON (no progress).")] = False,
) -> None:
    """Train tiny teachers and students, fit both laws to them, and write an HTML report.

    Runs the packaged demo sweep (two protocols of Busbridge et al. 2025 on byte-level models of
    6k-49k parameters, a few minutes on 2 CPU cores) and tells a pilot's story: it fits the supervised
    and distillation laws to the smaller runs (each law's form chosen with the busbridge2025 prior,
    as `distlaw fit --prior` does), predicts the quarter of runs of largest compute with 90 %
    intervals, plans one recipe with that fit (the demo's student at twice the training compute of
    its largest distilled run), trains it and checks the prediction (`distlaw validate`). It also
    measures distillation gains and the capacity gap directly from the runs, plans at scale, and
    writes OUT/report.html; the report marks every coefficient that came from the prior or sits on
    a bound. A law the runs cannot fit is left out and the report says why. Interrupted? Run it again: finished runs are kept and an
    interrupted run resumes from its last checkpoint. OUT must be new or a folder an earlier demo wrote.

    Examples:

      distlaw demo

      distlaw demo --out my-study --config pilot --json
    """
    from distlaw.study import run_study

    silent = quiet or json_output
    result = run_study(config, out, workers=workers, progress=not silent,
                       on_stage=None if silent else (lambda s: console.print(f"[bold]>[/] {s}")))
    summary = result.summary()
    if json_output:
        print_json(summary)
        return
    for law, why in result.laws.missing.items():
        console.print(f"No {law} law fitted: {why}", highlight=False)
    if len(result.gains):
        rows = result.gains[["params", "tokens", "teacher_loss", "loss", "supervised_loss", "gain"]].values.tolist()
        print_table("Distilled vs supervised on the same tokens", ["N_S", "D_S", "L_T", "L_S distilled", "L_S supervised", "gain"], rows)
    recipes = {r["scenario"]: r for r in result.at_scale}
    best = recipes["best"]
    console.print(
        f"At scale (busbridge2025): a 1e9 student with 1e21 FLOPs reaches {best['student_loss']:.3f} nats distilled "
        f"from the best teacher vs {recipes['supervised']['student_loss']:.3f} supervised."
    )
    _print_checks(result)
    files = summary["files"]
    console.print(f"Report: {files['report']}  (runs: {files['runs']}, coefficients: {files.get('coefficients', 'none')})",
                  highlight=False)


def _print_checks(result: Any) -> None:
    """One line each: how the fit predicted the held-out largest runs, and the validated recipe."""
    from distlaw.report.study import mape_by_kind

    if result.extrapolation is not None:
        e = result.extrapolation
        mape = ", ".join(f"{kind} {value:.3g} %" for kind, value in mape_by_kind(e.checks).items())
        console.print(f"Held out: the {len(e.checks)} runs of largest compute, predicted with MAPE {mape}; "
                      f"{e.inside}/{e.total} inside their {e.level:.0%} intervals.", highlight=False)
    for c in result.validation.checks if result.validation is not None else []:
        band = "(no interval)" if c.interval is None else f"[{c.interval[0]:.4f}, {c.interval[1]:.4f}]"
        observed = "not trained" if c.observed is None else f"observed {c.observed:.4f} ({'inside' if c.inside else 'outside'})"
        console.print(f"Validated recipe: {c.kind} N={c.params:.0f} D={c.tokens:.3g}: predicted {c.predicted:.4f} {band}, {observed}.",
                      highlight=False)
    for check, why in result.skipped.items():
        console.print(f"No {check} check: {why}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(demo)

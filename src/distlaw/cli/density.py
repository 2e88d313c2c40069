"""``distlaw density``: capacity density and the densing law (Xiao et al. 2024, arXiv 2412.04315)."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer

from distlaw.cli.common import console, print_json, print_table, print_warnings
from distlaw.errors import DistlawError
from distlaw.intervals import check_level, short_note
from distlaw.io import TABLE_SUFFIXES, check_output_path

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
PlotOption = Annotated[Optional[Path], typer.Option("--plot", help="Also draw a figure (.png, .pdf or .svg).")]
LevelOption = Annotated[float, typer.Option("--level", help="Level of the interval, between 0 and 1.")]
D0Option = Annotated[
    Optional[float], typer.Option("--d0", help="Token horizon D0 of the inversion (default: 1e12 for fit, the fitted value for score).")
]

density_app = typer.Typer(
    name="density",
    help=(
        "Capacity density (Xiao et al. 2024): how many parameters a reference family needs to match a "
        "model's score, divided by the model's own.\n\n"
        "Workflow: `density eval` scores checkpoints on a task file, `density fit` fits the two-step "
        "law on reference models, `density score` turns scores into effective sizes and densities, "
        "`density trend` fits the densing law's doubling time over dated models; `density import-lm-eval` "
        "turns lm-evaluation-harness result files into the tables of `density score` and `density fit`."
    ),
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _check_plot(plot: Optional[Path]) -> None:
    if plot is not None:
        from distlaw.figures import check_plot_path

        check_plot_path(plot)


@density_app.command("fit")
def fit(
    reference: Annotated[Path, typer.Argument(help="Reference table (CSV/Parquet): params, tokens, loss, score[, model].")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the fitted coefficients (.json).")],
    d0: D0Option = None,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples per step (0: no intervals).")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    json_output: JsonOption = False,
    plot: PlotOption = None,
) -> None:
    """Fit the two-step density law on reference models and save its coefficients.

    Step 1 fits the conditional loss L = a N^-alpha + b D^-beta on (params, tokens, loss).

    Step 2 fits the score S = c / (1 + exp(-gamma (L - l))) + d on (loss, score); rows with a blank score feed step 1 only.

    The coefficients file (with bootstrap samples for intervals, and the reference family's size range in meta.reference_params) is the input of `distlaw density score`.

    Examples:

      distlaw density fit reference.csv --out density.json

      distlaw density fit reference.csv -o density.json --d0 3e5 --bootstrap 500 --plot fit.png --json
    """
    from distlaw.density.estimate import fit_density, read_reference
    from distlaw.laws.density import D0_TOKENS

    check_output_path(out, (".json",), "coefficients file")
    _check_plot(plot)
    table = read_reference(reference)
    coefficients = fit_density(table, d0=D0_TOKENS if d0 is None else d0, bootstrap=bootstrap, seed=seed)
    coefficients.save(out)
    if plot is not None:
        from distlaw.density.plots import plot_fit

        plot_fit(table, coefficients, plot)
    result = {
        "loss": coefficients.loss.as_dict(),
        "score": coefficients.score.as_dict(),
        "score_range": list(coefficients.score.score_range),
        "d0": coefficients.d0,
        "bootstrap": len(coefficients.bootstrap or []),
        "metrics": {"loss": (coefficients.meta or {}).get("loss_fit"), "score": (coefficients.meta or {}).get("score_fit")},
        "out": str(out),
    }
    if json_output:
        print_json(result)
        return
    rows = [[f"loss.{k}", v] for k, v in result["loss"].items()] + [[f"score.{k}", v] for k, v in result["score"].items()]
    print_table("density law", ["coefficient", "value"], rows)
    lo, hi = result["score_range"]
    console.print(f"fitted on {len(table)} reference models; D0 = {coefficients.d0:.4g} tokens; scores reachable: ({lo:.4g}, {hi:.4g})")
    console.print(f"wrote {out}")


@density_app.command("score")
def score(
    models: Annotated[Optional[Path], typer.Argument(help="Models table (CSV/Parquet): model, params, score.")] = None,
    coefficients: Annotated[Path, typer.Option("--coefficients", "-c", help="Coefficients JSON from `distlaw density fit`.")] = Path(
        "density.json"
    ),
    params: Annotated[Optional[float], typer.Option("--params", "-n", help="One model's non-embedding parameters N.")] = None,
    score_value: Annotated[Optional[float], typer.Option("--score", help="That model's score on the benchmark.")] = None,
    name: Annotated[str, typer.Option("--name", help="That model's name.")] = "model",
    d0: D0Option = None,
    level: LevelOption = 0.95,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write the results table (.csv/.parquet).")] = None,
    json_output: JsonOption = False,
    plot: PlotOption = None,
) -> None:
    """Effective parameter count and capacity density of models from their scores.

    Nhat(S) = ((Lhat(S) - b D0^-beta) / a)^(-1/alpha) with Lhat(S) = l - ln(c / (S - d) - 1) / gamma; density = Nhat / N.

    Intervals are bootstrap percentiles (--level, default 0.95) over the samples stored by `distlaw density fit`; an interval that would not contain its own estimate is shown as "none (degenerate)" (JSON: null bounds, the reason in interval_note).

    Each model gets a status: "ok"; "out of range" (score outside the sigmoid's range (d, c + d): no size matches it); "unbounded" (the reference family cannot reach the score at D0 tokens); "at the sigmoid's limit" (score within 1 % of the range c from d or c + d, where the inversion is ill-conditioned); "below the reference family" (effective size more than 10x below the smallest reference model: an extrapolation). Sizes are blank for "out of range" and "at the sigmoid's limit" (JSON: null). Every row of a table is scored; a single model (--params, --score) out of range is an error (exit 2).

    Examples:

      distlaw density score --params 2.4e9 --score 0.62 -c density.json

      distlaw density score students.csv -c density.json --out densities.csv --plot density.png --json
    """
    from distlaw.density.estimate import OUT_OF_RANGE, out_of_range_message, read_models, score_models
    from distlaw.laws.density import DensityCoefficients

    check_level(level)
    if out is not None:
        check_output_path(out, TABLE_SUFFIXES, "results table")
    _check_plot(plot)
    if (models is None) == (params is None or score_value is None):
        raise DistlawError("give a models table, or --params with --score (not both)")
    if models is not None:
        table = read_models(models)
    elif not (math.isfinite(params) and params > 0) or not math.isfinite(score_value):
        raise DistlawError(f"--params must be positive and --score finite, got {params:g} and {score_value:g}")
    else:
        table = pd.DataFrame({"model": [name], "params": [params], "score": [score_value]})
    law = DensityCoefficients.load(coefficients)
    scored = score_models(table, law, d0=d0, level=level)
    if models is None and scored["status"].iloc[0] == OUT_OF_RANGE:
        raise DistlawError(out_of_range_message(name, score_value, law))
    if out is not None:
        from distlaw.io import write_table

        write_table(scored, out)
    if plot is not None:
        from distlaw.density.plots import plot_scores

        plot_scores(scored, plot)
    if json_output:
        print_json({"models": scored.to_dict(orient="records")})
        return
    has_interval = "density_lo" in scored
    columns = ["model", "params", "score", "effective params", "density", *([f"{level:.0%} interval"] if has_interval else []), "status"]
    rows = [
        [row["model"], f"{row['params']:.4g}", f"{row['score']:.4g}", _number(row["effective_params"]), _number(row["density"])]
        + ([_density_interval(row)] if has_interval else [])
        + [row["status"]]
        for _, row in scored.iterrows()
    ]
    print_table(f"capacity density ({coefficients})", columns, rows)


def _number(value: float) -> str:
    """4 significant digits; "unbounded" for inf, blank where there is no value (NaN)."""
    if math.isnan(value):
        return ""
    return "unbounded" if math.isinf(value) else f"{value:.4g}"


def _density_interval(row: pd.Series) -> str:
    """lo .. hi of the density, the reason there is none, or blank for a model without a size."""
    if row["interval_note"] is not None:
        return short_note(row["interval_note"]) or ""
    if math.isnan(row["density_lo"]):
        return ""
    return f"{row['density_lo']:.3g} .. {row['density_hi']:.3g}"


@density_app.command("trend")
def trend(
    models: Annotated[Path, typer.Argument(help="Dated models (CSV/Parquet): model, release_date, params, density or effective_params.")],
    origin: Annotated[str, typer.Option(help="Day zero of t (YYYY-MM-DD); default Llama-1's release.")] = "2023-02-24",
    level: Annotated[float, typer.Option("--level", help="Level of the doubling-time interval, between 0 and 1.")] = 0.95,
    json_output: JsonOption = False,
    plot: PlotOption = None,
) -> None:
    """Fit the densing law ln rho_max = A t + B and report the density doubling time ln 2 / A.

    The fit uses the running-maximum envelope: the models denser than every model released before them.

    The interval is a Student-t interval on A from the regression's standard error, mapped through ln 2 / A (a null bound is unbounded).

    Xiao et al. report A ~ 0.0073 per day: density doubles every ~95 days (~3.3 months).

    Examples:

      distlaw density trend models.csv

      distlaw density trend models.csv --origin 2024-01-01 --plot trend.png --json
    """
    from distlaw.density.trend import fit_trend, read_dated_models

    check_level(level)
    _check_plot(plot)
    try:
        day_zero = date.fromisoformat(origin)
    except ValueError:
        raise DistlawError(f"--origin: expected a date YYYY-MM-DD, got {origin!r}") from None
    table = read_dated_models(models)
    result = fit_trend(table, origin=day_zero, level=level)
    if plot is not None:
        from distlaw.density.plots import plot_trend

        plot_trend(table, result, plot)
    if json_output:
        print_json(result.to_dict())
        return
    lo, hi = result.doubling_days_ci
    print_table(
        "densing law",
        ["quantity", "value"],
        [
            ["A (ln density per day)", result.A_per_day],
            ["doubling time (days)", result.doubling_days],
            [f"{level:.0%} interval (days)", f"{lo:.1f} .. {hi:.1f}"],
            ["R^2 on the envelope", result.r2],
        ],
    )
    console.print(f"{len(result.envelope)} of {result.n_models} models on the envelope: " + ", ".join(result.envelope))


@density_app.command("eval")
def evaluate(
    task: Annotated[Path, typer.Argument(help='Task file (JSONL): {"prompt", "answer"[, "choices"]} per line.')],
    checkpoints: Annotated[list[Path], typer.Argument(help="Local Hugging Face causal-LM checkpoint directories.")],
    reduction: Annotated[str, typer.Option(help="Answer loss per token ('token') or summed over the answer ('sum').")] = "token",
    tokens: Annotated[Optional[float], typer.Option("--tokens", "-d", help="Training tokens D for every checkpoint (default: the lab's record).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Sequences per forward pass.")] = 32,
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda, cuda:N or mps (one this machine has).")] = "cpu",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the rows (.csv/.parquet): a reference or models table.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Conditional loss -log P(answer | prompt) and multiple-choice score of local checkpoints.

    Each row has model, params (non-embedding), tokens (from --tokens or the lab's result.json; blank if unknown), loss and score.

    loss: mean over items of the answer's loss, per answer token (default) or summed over the answer.

    score: multiple-choice accuracy, the answer having the lowest per-token loss among the item's choices (blank without choices).

    Rows of reference models feed `density fit`, rows of other models `density score`.

    Examples:

      distlaw density eval task.jsonl runs/sup-N*/ --out reference.csv

      distlaw density eval task.jsonl runs/kd-N20000-D300000-from-N50000-D1000000 --json
    """
    from distlaw.density.conditional import check_request, evaluate_checkpoint, read_tasks, run_tokens

    if out is not None:
        check_output_path(out, TABLE_SUFFIXES, "rows table")
    check_request(checkpoints, reduction, device, tokens)
    items = read_tasks(task)
    rows = []
    for checkpoint in checkpoints:
        result = evaluate_checkpoint(checkpoint, items, reduction=reduction, batch_size=batch_size, device=device)  # type: ignore[arg-type]
        rows.append(
            {
                "model": result.model,
                "params": result.params,
                "tokens": tokens if tokens is not None else run_tokens(checkpoint),
                "loss": result.loss,
                "score": result.score,
                "items": result.n_items,
            }
        )
    table = pd.DataFrame(rows)
    if out is not None:
        from distlaw.io import write_table

        write_table(table, out)
    if json_output:
        print_json({"reduction": reduction, "models": table.to_dict(orient="records")})
        return
    print_table(f"{task} ({len(items)} items, loss per {'answer token' if reduction == 'token' else 'answer'})", list(table.columns), table.values.tolist())


@density_app.command("import-lm-eval")
def import_lm_eval(
    results: Annotated[list[Path], typer.Argument(help="lm-eval results files (results_*.json), or folders of them (lm-eval's --output_path).", show_default=False)],
    metric: Annotated[str, typer.Option("--metric", "-m", help="The metric key as lm-eval writes it, 'metric,filter': acc,none, acc_norm,none, exact_match,strict-match.", show_default=False)],
    task: Annotated[Optional[list[str]], typer.Option("--task", help="Keep this task or group (repeatable; default: every entry with a metric).")] = None,
    params: Annotated[Optional[list[str]], typer.Option("--params", "-n", help="MODEL=N: the model's non-embedding parameters, over lm-eval's count (repeatable).")] = None,
    losses: Annotated[Optional[Path], typer.Option("--losses", help="Losses table (model, params, tokens, loss; e.g. `density eval` output): join it to make a reference table for `density fit`.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the score table (.csv/.parquet).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Read lm-evaluation-harness results into the score table of `density score` (and, with --losses, of `density fit`).

    One row per file and task: model, params, score, score_stderr, task, metric, n_shot, file, params_source.

    model: config.model_args' pretrained= (or peft=, delta=, model=, path=, engine=, in lm-eval's order), else the file's model_name.

    params: config.model_num_parameters, which lm-eval counts over every parameter, embeddings and output head included; density tables mean non-embedding N, so give --params MODEL=N where you know it (a model lm-eval did not count needs it). A "warning:" line names the models whose params are lm-eval's.

    score: the value of METRIC in the task's entry of "results" (or "groups"); its stderr is blank where lm-eval wrote "N/A". Files written before lm-eval had filters answer METRIC,none with METRIC. A task without the metric, or a malformed file, is one line and exit 2, with nothing written.

    With --losses (one task), the rows are the losses table's, matched by model name or by the last part of lm-eval's model path, each with its lm-eval score (blank where it has none: such rows feed the loss fit only), and the losses table's params.

    Examples:

      distlaw density import-lm-eval lm-eval-out/ --metric acc,none --task hellaswag --out scores.csv

      distlaw density import-lm-eval results_*.json -m acc_norm,none --task arc_easy --params my-student=2.1e7 --json

      distlaw density import-lm-eval ref-results/ -m acc,none --task arc_easy --losses reference-losses.csv --out reference.csv
    """
    from distlaw.density.lm_eval import import_results, join_losses, params_warning, parse_params, read_results, results_files

    if out is not None:
        check_output_path(out, TABLE_SUFFIXES, "score table")
    if not metric.strip():
        raise DistlawError("--metric: give the metric key as lm-eval writes it, e.g. acc,none")
    overrides = parse_params(params or [])
    files = [read_results(path) for path in results_files(results)]
    table, warnings = import_results(files, metric, task, overrides)
    if table.empty:
        raise DistlawError(f"{', '.join(str(f.path) for f in files)}: no task has any metric")
    if losses is not None:
        table = join_losses(table, losses)
    print_warnings(warnings + params_warning(table))
    if out is not None:
        from distlaw.io import write_table

        write_table(table, out)
    if json_output:
        print_json({"metric": metric, "rows": table.astype(object).where(table.notna(), None).to_dict(orient="records")})
        return
    columns = ["model", "task", "score", "score_stderr", "params", *(["tokens", "loss"] if losses is not None else []), "n_shot"]
    print_table(f"lm-eval {metric}", columns, [[_cell(row[c]) for c in columns] for _, row in table.iterrows()])
    if out is not None:
        console.print(f"wrote {out}")


def _cell(value: object) -> object:
    """Blank for a missing value (None, NaN, NA), the value otherwise."""
    return "" if pd.isna(value) else value


def register(app: typer.Typer) -> None:
    """Add the ``density`` command group to ``app``."""
    app.add_typer(density_app)

"""``distlaw sweep plan|run|status`` and ``distlaw runs list|export``: experiment sweeps and the run store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from distlaw.cli.common import console, fmt, print_json, print_table, print_warnings, warn_size
from distlaw.compute import short_count
from distlaw.errors import DistlawError
from distlaw.io import TABLE_SUFFIXES, check_output_path, write_table
from distlaw.lab.protocols import SlurmResources, built_sizes, load_config, shipped_configs
from distlaw.lab.shared import is_shared_job
from distlaw.lab.sweep import cancel_sweep, live_states, make_executor, plan_sweep, plan_totals, run_sweep
from distlaw.store import STATUSES, JobRecord, RunStore, runs_table

ConfigArgument = Annotated[Path, typer.Argument(
    help=f"Sweep config: a TOML file, or the name of one shipped with distlaw ({', '.join(shipped_configs())}).", show_default=False)]
StoreOption = Annotated[Path, typer.Option("--store", "-s", help="Run store (SQLite), e.g. RUNS.db; its run directories are in RUNS.runs/, or the --runs-dir of its first run.")]
NewStoreOption = Annotated[Path, typer.Option("--store", "-s", help="Run store (SQLite), e.g. RUNS.db, created with its parent folders if new; run directories go to RUNS.runs/ (or --runs-dir).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
SLURM_HELP = "Slurm (--executor slurm): overrides \\[executor.slurm] of the config for every job."

sweep_app = typer.Typer(
    help=(
        "Plan, run and watch sweeps of the three protocols of Busbridge et al. (arXiv 2502.08606): "
        "fixed-M teachers x IsoFLOP students (fixedm-isoflop), IsoFLOP teachers x fixed-M students "
        "(isoflop-fixedm), fixed-M teachers x fixed-M students (fixedm-fixedm); and of the capacity gap's "
        "teachers pruned to each student size and distilled (prune-distill, Zhang et al.). Sweeps are "
        f"resumable: run the same command again after a crash or kill. Shipped configs: {', '.join(shipped_configs())}."
    ),
    no_args_is_help=True,
)
runs_app = typer.Typer(help="Look at the runs in a run store and export them as the runs table `distlaw fit` reads.", no_args_is_help=True)


def _record_rows(store: RunStore, sweep: str | None, status: str | None = None, live: dict[str, str] | None = None) -> list[dict]:
    """One dict per run; ``live``: run name -> its job's state now, where the backend was asked (``live_states``)."""
    members = store.memberships(sweep)
    jobs = store.jobs()
    live = live or {}
    return [
        {
            "name": r.name,
            "protocols": ";".join(sorted({f"{p}:{role}" for p, role in members.get(r.name, [])})),
            "kind": r.kind,
            "params": r.params,
            "tokens": r.tokens if r.tokens is not None else r.planned_tokens,
            "teacher": r.teacher,
            "status": "interrupted" if r.interrupted else r.status,
            "loss": r.loss,
            "teacher_loss": r.teacher_loss,
            "wall_time_s": r.wall_time_s,
            "error": r.error,
            **_job_fields(jobs.get(r.name)),
            "live_state": live.get(r.name),
        }
        for r in store.records(sweep, status)
    ]


def _job_fields(job: JobRecord | None) -> dict:
    """The run's last job: backend, id, state, log path."""
    return {"executor": job and job.executor, "job_id": job and job.job_id, "job_state": job and job.state, "log": job and job.log}


def _print_runs(title: str, rows: list[dict]) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("name", overflow="fold")
    columns = ["params", "tokens", "status", "loss", "teacher_loss", "wall_time_s"]
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for row in rows:
        table.add_row(row["name"], *["-" if row[c] is None else fmt(row[c]) for c in columns])
    console.print(table)
    _print_errors(rows)
    jobs = [row for row in rows if row["job_id"]]
    if jobs:
        print_table("jobs (last per run)", ["name", "executor", "job id", "state", "log"],
                    [[r["name"], r["executor"], r["job_id"], _job_state(r), r["log"]] for r in jobs])


def _job_state(row: dict) -> str:
    """The job's state: the backend's now, with the store's beside it where they differ."""
    live, stored = row.get("live_state"), row["job_state"]
    return stored if live is None or live == stored else f"{live} (store: {stored})"


def _print_errors(rows: list[dict]) -> None:
    for row in rows:
        if row["error"]:
            console.print(f"{row['name']}: {row['error']}", style="red", highlight=False, markup=False)


def plan(config: ConfigArgument, store: NewStoreOption, json_output: JsonOption = False) -> None:
    """Expand a sweep config into runs and record them in the store as planned (nothing is trained).

    Checks the whole config first (TOML, protocol types, model sizes, budgets, corpus); a bad config
    writes nothing. Planning again is harmless. Prints runs, tokens and 6ND training FLOPs per
    protocol and role, and each size asked for beside the non-embedding parameters of the model built
    for it (a warning when one misses by more than 10 %).

    The config (TOML; the shipped micro, demo, pilot and capacity are examples): name; workers;
    checkpoint_every; eval_tokens; seeds (e.g. [0, 1, 2]: every student and baseline trained once per seed, teachers once); tables
    \\[data], \\[optim], \\[distill] as in a lab run (plus \\[distill] cache_k = K: each teacher's
    students read one teacher cache of its top-K log-probabilities and the rest mass, built once after
    the teacher, so teacher inference is paid once); \\[model] aspect_ratio, head_dim (a size is a
    non-embedding parameter count mapped to d_model = aspect_ratio x n_layers, or an explicit
    {n_layers, d_model, n_heads, d_ff}); then one \\[\\[protocol]] table per protocol:

      type = "fixedm-isoflop": teachers, teacher_ratio (20), budgets (C_S = 6 N_S D_S), students

      type = "isoflop-fixedm": budgets (C_T = 6 N_T D_T), teachers, students, student_ratio (20)

      type = "fixedm-fixedm": teachers, teacher_ratio (20), students, student_ratios (20 ... 320)

      type = "prune-distill" (capacity gap, Zhang et al.): teachers, teacher_ratio (20), students
      (target sizes: each teacher is pruned to each smaller one, then distilled), student_ratio (20),
      calibration_tokens, method (mask-gradient | activation), depth (layers dropped) with
      depth_importance (loss | cosine), or keep_layers ("4:-4", "0,1,5"); see docs/pruning.md

      type = "runs" (what distlaw design writes): supervised = \\[\\[params, tokens], ...] and
      distilled = \\[\\[params, tokens, teacher], ...], teacher the 0-based index of a supervised run

    Every protocol also takes baselines (true: train each student supervised too) and ratio_range
    ([1, 2000]: IsoFLOP points with D/N outside it are dropped).

    Examples:

      distlaw sweep plan micro --store micro.db

      distlaw sweep plan my-sweep.toml --store runs/my-sweep.db --json
    """
    cfg = load_config(config)
    summary = plan_sweep(cfg, store)
    totals = plan_totals(summary.runs)
    sizes = built_sizes(cfg)
    for size in sizes:
        warn_size(size["requested"], size["built"])
    if json_output:
        print_json({"sweep": cfg.name, "store": str(store), "runs": summary.unique, "new": summary.new, "by_protocol": totals, "sizes": sizes})
        return
    rows = [[group, t["runs"], t["tokens"], t["flops"]] for group, t in totals.items()]
    print_table(f"sweep {cfg.name}: {summary.unique} runs ({summary.new} new) in {store}", ["protocol role", "runs", "tokens", "FLOPs (6ND)"], rows)
    console.print("shared runs (a teacher in two protocols, a baseline seen twice) are trained once", highlight=False)
    print_table("model sizes", ["protocol", "role", "requested", "built (non-embedding)"],
                [[s["protocol"], s["role"], short_count(s["requested"]), f"{s['built']:,}"] for s in sizes])


def run(
    config: ConfigArgument,
    store: NewStoreOption,
    workers: Annotated[Optional[int], typer.Option("--workers", "-w", min=1, help="Runs trained at once, one process each (default: the config's `workers`, else one per core).")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Train runs that failed before again.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars and no line per run: only the summary.")] = False,
    executor: Annotated[str, typer.Option("--executor", "-e", help="Where jobs run: local (processes here) or slurm (sbatch, one job per run; see docs/scale-out.md).")] = "local",
    runs_dir: Annotated[Optional[Path], typer.Option("--runs-dir", help="Where the run folders go (default RUNS.runs/ beside the store), e.g. on a file system every node sees while the store stays on local disk; recorded in the store at its first run, so later commands need not repeat it.", show_default=False)] = None,
    partition: Annotated[Optional[str], typer.Option(help=SLURM_HELP, rich_help_panel="Slurm")] = None,
    account: Annotated[Optional[str], typer.Option(help=SLURM_HELP, rich_help_panel="Slurm")] = None,
    qos: Annotated[Optional[str], typer.Option(help=SLURM_HELP, rich_help_panel="Slurm")] = None,
    time_limit: Annotated[Optional[str], typer.Option("--time", help="Time limit per job: minutes or D-HH:MM:SS. " + SLURM_HELP, rich_help_panel="Slurm")] = None,
    nodes: Annotated[Optional[int], typer.Option(min=1, help=SLURM_HELP, rich_help_panel="Slurm")] = None,
    gpus_per_node: Annotated[Optional[int], typer.Option(min=0, help=SLURM_HELP, rich_help_panel="Slurm")] = None,
    cpus_per_task: Annotated[Optional[int], typer.Option(min=1, help=SLURM_HELP, rich_help_panel="Slurm")] = None,
    mem: Annotated[Optional[str], typer.Option(help="Memory per node, e.g. 16G. " + SLURM_HELP, rich_help_panel="Slurm")] = None,
    constraint: Annotated[Optional[str], typer.Option(help=SLURM_HELP, rich_help_panel="Slurm")] = None,
    submit_and_exit: Annotated[bool, typer.Option("--submit-and-exit", help="Submit the whole sweep, each job after the jobs it needs (Slurm afterok), and exit; run `sweep run` again later to collect the results.", rich_help_panel="Slurm")] = False,
    json_output: JsonOption = False,
) -> None:
    """Train every unfinished run of a sweep, teachers before their students.

    Plans the config first (as `sweep plan`). Finished runs are skipped; a run interrupted by a crash
    or kill resumes from its last checkpoint, so rerunning after a kill gives the same runs table as
    an uninterrupted sweep. A run that fails is recorded with its error and its students are skipped.
    Exits 1 if any run failed or could not start. With --runs-dir the run folders (and Slurm's job files
    and logs) go to that folder instead of RUNS.runs/; the store records it at its first run, and a
    different --runs-dir later is refused.

    With --executor slurm each run (and each teacher cache or pruned model) is one Slurm job, submitted
    when what it needs is done, with the resources of \\[executor.slurm] in the config (per role:
    \\[executor.slurm.teacher], .student, .cache, .prune) and the options below on top; the requests are
    checked against the cluster before anything is submitted. This command stays the only writer of
    the store; killed and run again, it re-attaches to the jobs still queued or running. With
    --submit-and-exit it queues every job after the jobs it needs (afterok) and exits at once; a later
    `sweep run` collects the results (and cancels the jobs whose needs failed, as blocked).

    Examples:

      distlaw sweep run micro --store micro.db --workers 2

      distlaw sweep run my-sweep.toml --store runs/my-sweep.db --executor slurm --partition gpu --time 4:00:00

      distlaw sweep run my-sweep.toml --store ~/my-sweep.db --runs-dir /shared/runs/my-sweep --executor slurm
    """
    cfg = load_config(config)
    overrides = _slurm_overrides(partition=partition, account=account, qos=qos, time=time_limit, nodes=nodes,
                                 gpus_per_node=gpus_per_node, cpus_per_task=cpus_per_task, mem=mem, constraint=constraint)
    if executor != "slurm" and overrides.model_fields_set:
        raise DistlawError(f"--{sorted(overrides.model_fields_set)[0].replace('_', '-')} is a Slurm option: add --executor slurm")
    silent = json_output or quiet
    backend = make_executor(executor, cfg, store, workers, progress=not silent, overrides=overrides, runs_dir=runs_dir)
    total = plan_sweep(cfg, store).unique
    with RunStore(store, create=False) as s:
        finished = s.counts(cfg.name)["done"]
    # One local worker trains in this process and shows each run's own bar; otherwise one sweep bar (on a terminal only).
    columns = (TextColumn("sweep {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=silent or backend.slots == 1 or not console.is_terminal) as bar:
        task = bar.add_task(cfg.name, total=total, completed=finished)

        def report(name: str, status: str) -> None:
            nonlocal finished
            if is_shared_job(name):
                if not silent:
                    console.print(f"{'built' if status == 'done' else 'failed to build'} {name}", highlight=False, markup=False)
                return
            finished += status == "done"
            bar.update(task, completed=finished)
            if not silent:
                with RunStore(store, create=False) as s:
                    record = s.get(name)
                loss = f"loss {record.loss:.4f} in {record.wall_time_s:.1f} s" if record and record.loss is not None else ""
                console.print(f"[{finished}/{total}] {status} {name} {loss}", highlight=False, markup=False)

        outcome = run_sweep(cfg, store, retry_failed=retry_failed, progress=not silent, on_finish=report, executor=backend,
                            submit_only=submit_and_exit, runs_dir=runs_dir)
    with RunStore(store, create=False) as s:
        counts = s.counts(cfg.name)
        rows = _record_rows(s, cfg.name)
    summary = {"sweep": cfg.name, "trained": outcome.done, "failed": outcome.failed, "skipped": len(outcome.skipped),
               "blocked": outcome.blocked, "built": outcome.built, "submitted": outcome.submitted, "counts": counts}
    if json_output:
        print_json(summary)
    else:
        console.print(
            f"sweep {cfg.name}: trained {len(outcome.done)}, already done {len(outcome.skipped)}, "
            f"failed {len(outcome.failed)}, blocked {len(outcome.blocked)}"
            + (f", submitted {len(outcome.submitted)} (run `distlaw sweep run` again to collect them)" if outcome.submitted else ""),
            highlight=False,
        )
        _print_errors(rows)
    if outcome.failed or outcome.blocked:
        raise typer.Exit(1)


def status(config: ConfigArgument, store: StoreOption, json_output: JsonOption = False) -> None:
    """Show how far a sweep has got: counts by status and one line per run, and each run's last job.

    A run shown as interrupted was left running by a process that no longer exists (killed or
    crashed); `distlaw sweep run` resumes it from its last checkpoint (or re-attaches to its Slurm job).

    The store holds job states as its coordinator (`sweep run`) last saw them. For Slurm jobs it has
    as queued or running, Slurm is asked (sacct) for their state now: a job whose state has changed
    shows both, e.g. "COMPLETED (store: RUNNING)" after the coordinator died ("live_state" beside
    "job_state" in JSON). Nothing is written to the store. Where Slurm cannot be asked, the store's
    states are shown, with one warning line.

    Example:

      distlaw sweep status micro --store micro.db
    """
    cfg = load_config(config)
    with RunStore(store, create=False) as s:
        s.check_sweep(cfg.name)
        live = live_states(s)
        counts = s.counts(cfg.name)
        rows = _record_rows(s, cfg.name, live=live.states)
        caches = s.caches({row["teacher"] for row in rows if row["teacher"]})
        runs_dir = s.runs_dir
    warnings = [live.note] if live.note else []
    print_warnings(warnings)
    if json_output:
        print_json({"sweep": cfg.name, "counts": counts, "runs_dir": str(runs_dir), "runs": rows, "teacher_caches": caches, "warnings": warnings})
        return
    interrupted = sum(row["status"] == "interrupted" for row in rows)
    note = f" ({interrupted} interrupted: `distlaw sweep run` resumes them)" if interrupted else ""
    console.print(f"sweep {cfg.name}: " + ", ".join(f"{counts[k]} {k}" for k in STATUSES) + note, highlight=False, markup=False)
    _print_runs(f"runs of sweep {cfg.name} in {store} (run folders in {runs_dir})", rows)
    if caches:
        print_table("teacher caches (teacher inference paid once, shared by all the teacher's students)",
                    ["teacher", "k", "tokens", "FLOPs", "wall time s", "directory"],
                    [[c["teacher"], c["k"], c["tokens"], c["build_flops"], c["wall_time_s"], Path(c["directory"]).name] for c in caches])


def cancel(config: ConfigArgument, store: StoreOption, json_output: JsonOption = False) -> None:
    """Cancel the sweep's Slurm jobs still queued or running (scancel); their runs are recorded failed
    ("cancelled"), so `distlaw sweep run --retry-failed` submits them again.

    Stop the coordinator (`distlaw sweep run`) first, or it goes on submitting the runs that are left.

    Example:

      distlaw sweep cancel my-sweep.toml --store runs/my-sweep.db
    """
    cfg = load_config(config)
    with RunStore(store, create=False) as s:
        s.check_sweep(cfg.name)
    cancelled = cancel_sweep(cfg, store)
    if json_output:
        print_json({"sweep": cfg.name, "cancelled": cancelled})
    else:
        console.print(f"sweep {cfg.name}: cancelled {len(cancelled)} jobs" + "".join(f"\n  {n} (job {j})" for n, j in cancelled.items()),
                      highlight=False, markup=False)


def _slurm_overrides(**options: object) -> SlurmResources:
    """The Slurm options given on the command line (validated like the config's)."""
    try:
        return SlurmResources.model_validate({k: int(v) if k == "time" and isinstance(v, str) and v.isdigit() else v
                                              for k, v in options.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise DistlawError(f"--{'-'.join(str(p) for p in first['loc'][:1]).replace('_', '-')}: {first['msg'].removeprefix('Value error, ')}") from None


def list_runs(
    store: StoreOption,
    status_filter: Annotated[Optional[str], typer.Option("--status", help=f"Only runs with this status ({', '.join(STATUSES)}).")] = None,
    json_output: JsonOption = False,
) -> None:
    """List every run in a store: kind, parameters, tokens, status, losses, wall time.

    Example:

      distlaw runs list --store micro.db --status done
    """
    with RunStore(store, create=False) as s:
        rows = _record_rows(s, None, status_filter)
    if json_output:
        print_json(rows)
        return
    _print_runs(f"{len(rows)} runs in {store}", rows)


def export(
    store: StoreOption,
    out: Annotated[Path, typer.Argument(help="Where to write the runs table (.csv or .parquet); its folder must exist.", show_default=False)],
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="Only runs of this sweep (its config's `name`).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Write finished runs as the runs table that `distlaw fit` reads.

    Columns: kind, params (non-embedding), tokens (trained), loss (held-out cross-entropy, nats/token),
    and for distilled rows teacher_params, teacher_tokens, teacher_loss; then name, teacher,
    protocols, pruned_to (the target size of a student started from a pruned teacher), flops,
    teacher_inference_flops, wall_time_s. Unfinished runs are left out. The file is
    written atomically and validated first.

    Example:

      distlaw runs export --store micro.db micro.csv
    """
    check_output_path(out, TABLE_SUFFIXES, "runs table")
    with RunStore(store, create=False) as s:
        if sweep is not None:
            s.check_sweep(sweep)
        table = runs_table(s, sweep)
    write_table(table, out)
    if json_output:
        print_json({"rows": len(table), "out": str(out)})
    else:
        console.print(f"wrote {len(table)} runs to {out}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``distlaw sweep ...`` and ``distlaw runs ...`` to ``app``."""
    sweep_app.command()(plan)
    sweep_app.command()(run)
    sweep_app.command()(status)
    sweep_app.command()(cancel)
    runs_app.command("list")(list_runs)
    runs_app.command()(export)
    app.add_typer(sweep_app, name="sweep")
    app.add_typer(runs_app, name="runs")

"""lm-evaluation-harness results in (issue 11, item 6): ``results_*.json`` files as the score tables of
:mod:`distlaw.density.estimate`.

lm-eval writes ``<output_path>/<model>/results_<date>.json`` with (lm_eval/evaluator.py,
lm_eval/evaluator_utils.py, lm_eval/loggers/evaluation_tracker.py):

- ``results``: task -> {"alias", "<metric>,<filter>": value, "<metric>_stderr,<filter>": value or "N/A", ...}
  (files written before lm-eval 0.4 have no filters: "acc", "acc_stderr");
- ``groups``: the same shape, for groups that aggregate their tasks (also listed in ``results``);
- ``n-shot`` (task -> int), ``higher_is_better`` (task -> metric -> bool), ``n-samples``: absent in older files;
- ``config``: ``model_args`` (``"pretrained=...,dtype=..."`` or a dict), ``model_num_parameters``
  (``model.num_parameters()``: every parameter, embeddings included; -1 when unknown), ...;
  ``model_name`` at the top level in recent files.

One row per (file, task): ``model``, ``params``, ``score`` (the metric's value), ``score_stderr`` (blank
for "N/A"), ``task``, ``metric``, ``n_shot``, ``file``, ``params_source``. ``density score`` reads such a
table. ``density fit`` also needs each model's training tokens and conditional loss: a losses table
(``distlaw density eval``'s rows: model, params, tokens, loss) joined by model name supplies them.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from distlaw.density.tables import numeric_column, require_columns
from distlaw.errors import DistlawError
from distlaw.io import read_table

# The model_args keys that name the model, in lm-eval's order (GeneralConfigTracker._get_model_name).
NAME_KEYS = ("peft", "delta", "pretrained", "model", "path", "engine")
NOT_METRICS = ("alias", "name", "sample_len", "sample_count")
PARAMS_FROM_LM_EVAL, PARAMS_FROM_OPTION, PARAMS_FROM_LOSSES = "model_num_parameters", "--params", "losses table"
COLUMNS = ("model", "params", "score", "score_stderr", "task", "metric", "n_shot", "file", "params_source")


@dataclass(frozen=True)
class ResultsFile:
    """What one lm-eval results file says: its model, parameter count (None if unknown) and task entries."""

    path: Path
    model: str
    params: int | None
    tasks: dict[str, dict[str, Any]]
    n_shot: dict[str, Any]
    higher_is_better: dict[str, Any]


def results_files(paths: list[Path]) -> list[Path]:
    """The files named, a folder standing for every ``results_*.json`` under it (lm-eval's ``--output_path``)."""
    if not paths:
        raise DistlawError("give at least one lm-eval results file (results_*.json) or a folder of them")
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.rglob("results_*.json"))
            if not found:
                raise DistlawError(f"{path}: no lm-eval results files (results_*.json) in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DistlawError(f"{path}: no such file")
    return files


def read_results(path: str | os.PathLike[str]) -> ResultsFile:
    """Parse one lm-eval results file; anything not in lm-eval's layout is a DistlawError naming the file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DistlawError(f"{p}: cannot read ({exc.strerror})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DistlawError(f"{p}: not a JSON file ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise DistlawError(f"{p}: not an lm-eval results file (no 'results' object of tasks)")
    tasks = {**_section(data, "groups", p), **_section(data, "results", p)}
    config = data.get("config", {})
    if not isinstance(config, dict):
        raise DistlawError(f"{p}: 'config' is a {type(config).__name__}, not an object")
    return ResultsFile(p, _model_name(data, config, p), _num_parameters(config, p), tasks,
                       _mapping(data, "n-shot", p), _mapping(data, "higher_is_better", p))


def _section(data: dict, key: str, path: Path) -> dict[str, dict[str, Any]]:
    section = data.get(key, {})
    if not isinstance(section, dict):
        raise DistlawError(f"{path}: '{key}' is a {type(section).__name__}, not an object of tasks")
    for task, entry in section.items():
        if not isinstance(entry, dict):
            raise DistlawError(f"{path}: {key}['{task}'] is a {type(entry).__name__}, not an object of metrics")
    return section


def _mapping(data: dict, key: str, path: Path) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise DistlawError(f"{path}: '{key}' is a {type(value).__name__}, not an object")
    return value


def _model_name(data: dict, config: dict, path: Path) -> str:
    """The model's name from ``config.model_args`` (lm-eval's keys and order), else the top-level ``model_name``."""
    args = config.get("model_args")
    if isinstance(args, str):
        args = dict(item.split("=", 1) for item in args.split(",") if "=" in item)
    if isinstance(args, dict):
        for key in NAME_KEYS:
            if isinstance(args.get(key), str) and args[key].strip():
                return args[key].strip()
    name = data.get("model_name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    raise DistlawError(f"{path}: no model name (config.model_args has no pretrained=... and there is no model_name)")


def _num_parameters(config: dict, path: Path) -> int | None:
    """``config.model_num_parameters``; absent or -1 (unknown to lm-eval) is None, anything else not a count an error."""
    value = config.get("model_num_parameters")
    if value is None or value == -1:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise DistlawError(f"{path}: config.model_num_parameters is {value!r}, not a parameter count")
    return int(value)


def metrics_of(entry: dict[str, Any]) -> list[str]:
    """The metric keys of a task entry (no stderrs, no alias or sample counts)."""
    return sorted(k for k in entry if k not in NOT_METRICS and not k.split(",", 1)[0].endswith("_stderr"))


def metric_value(result: ResultsFile, task: str, metric: str) -> tuple[float, float]:
    """(score, stderr or NaN) of ``metric`` ("acc,none") for ``task``; a file from before lm-eval had filters
    answers "acc,none" with its "acc". Missing or not a number: a DistlawError naming file, task and metrics."""
    entry = result.tasks[task]
    base, _, filt = metric.partition(",")
    key = metric if metric in entry else base if filt == "none" and base in entry else None
    if key is None:
        have = ", ".join(metrics_of(entry)) or "none"
        raise DistlawError(f"{result.path}: task {task} has no metric {metric} (its metrics: {have})")
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DistlawError(f"{result.path}: task {task}: metric {metric} is {value!r}, not a finite number")
    stderr = entry.get(f"{base}_stderr,{filt}" if key == metric else f"{base}_stderr")
    finite = isinstance(stderr, (int, float)) and not isinstance(stderr, bool) and math.isfinite(stderr)
    return float(value), float(stderr) if finite else math.nan


def parse_params(values: list[str]) -> dict[str, float]:
    """``--params MODEL=N`` overrides, as {model: N}."""
    out = {}
    for value in values:
        model, sep, number = value.rpartition("=")
        try:
            n = float(number)
        except ValueError:
            n = math.nan
        if not sep or not model or not (math.isfinite(n) and n > 0):
            raise DistlawError(f"--params {value!r}: expected MODEL=N with N a positive parameter count, e.g. my-model=1.2e9")
        out[model] = n
    return out


def import_results(
    results: list[ResultsFile], metric: str, tasks: list[str] | None = None, params: dict[str, float] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """The score table (``COLUMNS``) of ``metric`` over the files' tasks (all, or ``tasks``) and the warnings
    to print. ``params`` overrides parameter counts by model name; a model with none is a DistlawError."""
    params = params or {}
    _check_selection(results, tasks, params)
    rows, seen, warnings = [], {}, []
    for result in results:
        for task in _tasks_of(result, tasks):
            if (result.model, task) in seen:
                raise DistlawError(f"model {result.model}, task {task}: in both {seen[result.model, task]} and {result.path} (give one)")
            seen[result.model, task] = result.path
            score, stderr = metric_value(result, task, metric)
            if result.model in params:
                n, source = params[result.model], PARAMS_FROM_OPTION
            elif result.params is not None:
                n, source = float(result.params), PARAMS_FROM_LM_EVAL
            else:
                raise DistlawError(f"{result.path}: no config.model_num_parameters for model {result.model} "
                                   f"(give its non-embedding parameters: --params {result.model}=N)")
            shots = result.n_shot.get(task)
            rows.append({"model": result.model, "params": n, "score": score, "score_stderr": stderr, "task": task, "metric": metric,
                         "n_shot": shots if isinstance(shots, int) and not isinstance(shots, bool) else None,
                         "file": str(result.path), "params_source": source})
            better = result.higher_is_better.get(task)
            if isinstance(better, dict) and better.get(metric.partition(",")[0]) is False:
                warnings.append(f"lm-eval marks {metric} lower-is-better for task {task}: density scores must rise with ability")
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["n_shot"] = table["n_shot"].astype("Int64")  # blank, not NaN, where the file does not say
    return table, list(dict.fromkeys(warnings))


def params_warning(table: pd.DataFrame) -> list[str]:
    """A warning naming the models whose params are lm-eval's total count, not the non-embedding N of density tables."""
    counted = sorted(set(table.loc[table["params_source"] == PARAMS_FROM_LM_EVAL, "model"]))
    if not counted:
        return []
    return [f"params of {', '.join(counted)} are lm-eval's model_num_parameters, which counts embeddings and the output "
            "head; density tables use non-embedding N (override with --params MODEL=N)"]


def _check_selection(results: list[ResultsFile], tasks: list[str] | None, params: dict[str, float]) -> None:
    """Every ``--task`` is in some file and every ``--params`` model is some file's model."""
    known = sorted({task for result in results for task in result.tasks})
    for task in tasks or []:
        if task not in known:
            raise DistlawError(f"--task {task}: in none of the files (their tasks: {', '.join(known) or 'none'})")
    models = sorted({result.model for result in results})
    for model in params:
        if model not in models:
            raise DistlawError(f"--params {model}=...: no results file is for model {model} (models: {', '.join(models)})")


def _tasks_of(result: ResultsFile, tasks: list[str] | None) -> list[str]:
    """The selected tasks of a file; without a selection every entry with a metric (a group without an
    aggregate has none and is skipped)."""
    if tasks is not None:
        return [task for task in dict.fromkeys(tasks) if task in result.tasks]
    return [task for task, entry in result.tasks.items() if metrics_of(entry)]


def join_losses(scores: pd.DataFrame, path: str | os.PathLike[str]) -> pd.DataFrame:
    """A reference table for ``density fit``: the losses table's rows (model, params, tokens, loss; e.g.
    ``distlaw density eval`` output) with each model's lm-eval score, matched by model name or by the last
    path component of lm-eval's name (``density eval`` names rows by checkpoint folder). Rows of the losses
    table without a score keep a blank one (they feed the loss fit only); a scored model absent from the
    losses table is a DistlawError. The losses' non-embedding params replace lm-eval's unless --params gave them."""
    source = str(path)
    losses = read_table(path)
    require_columns(losses, ("model", "params", "tokens", "loss"), source)
    table = pd.DataFrame({"model": losses["model"].astype(str).to_numpy(), "params": numeric_column(losses, "params", source),
                          "tokens": numeric_column(losses, "tokens", source), "loss": numeric_column(losses, "loss", source)})
    if scores["task"].nunique() > 1:
        raise DistlawError(f"--losses makes a reference table for one benchmark; pick its task with --task "
                           f"(found: {', '.join(sorted(scores['task'].unique()))})")
    if table["model"].duplicated().any():
        raise DistlawError(f"{source}: model {table['model'][table['model'].duplicated()].iloc[0]} has more than one row")
    names = set(table["model"])
    keys: dict[str, str] = {}  # losses-table model -> lm-eval model
    for name, file in zip(scores["model"], scores["file"]):
        match = name if name in names else Path(name).name if Path(name).name in names else None
        if match is None:
            raise DistlawError(f"{file}: model {name} is not in {source} (its models: {', '.join(sorted(names))})")
        if match in keys:
            raise DistlawError(f"models {keys[match]} and {name} both match {match} of {source}")
        keys[match] = name
    scored = scores.assign(model=scores["model"].map({v: k for k, v in keys.items()})).set_index("model")
    out = table.join(scored.drop(columns=["params", "params_source"]), on="model")
    override = scored.loc[scored["params_source"] == PARAMS_FROM_OPTION, "params"]
    out["params"] = out["model"].map(override).fillna(out["params"])
    out["params_source"] = np.where(out["model"].isin(override.index), PARAMS_FROM_OPTION, PARAMS_FROM_LOSSES)
    return out

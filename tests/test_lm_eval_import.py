"""`distlaw density import-lm-eval`: lm-evaluation-harness result files (current and older layouts) into the
score tables `density score` and `density fit` read; malformed files are one line, exit 2, nothing written.

The files are written here in lm-eval's layout, key for key, as lm_eval/evaluator.py, evaluator_utils.py
(``EvalAcc._to_eval_results``, ``_compute_task_aggregations``) and loggers/evaluation_tracker.py write them
(EleutherAI/lm-evaluation-harness at 4e7e0d4): the current one with ``n-shot``, ``higher_is_better``,
``n-samples``, ``model_name`` and ``config.model_num_parameters``; an older one (lm-eval 0.4.0/0.4.1)
without them, stderr "N/A" and ``model_args`` as a string; and a pre-0.4 one without filters.
"""

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from distlaw.laws.density import DensityCoefficients, LossLawCoefficients, ScoreLawCoefficients, conditional_loss, score_from_loss

LOSS = LossLawCoefficients(a=300.0, b=300.0, alpha=0.3, beta=0.3)
SCORE = ScoreLawCoefficients(c=0.6, gamma=-3.0, l=2.0, d=0.25)


def task_entry(task: str, metrics: dict[str, tuple[float, float | str]], alias: str | None = None, samples: int = 100) -> dict:
    """One ``results[task]`` entry as ``_compute_task_aggregations`` writes it (metric, then its stderr)."""
    entry = {"name": task, "alias": alias or task, "sample_len": samples}
    for key, (value, stderr) in metrics.items():
        name, filt = key.split(",")
        entry[key] = value
        entry[f"{name}_stderr,{filt}"] = stderr
    return entry


def current_file(model: str, params: int, scores: dict[str, float]) -> dict:
    """A results file of today's lm-eval: hellaswag, arc_easy and an aggregated mmlu group of two subtasks."""
    hella, arc, algebra, anatomy = scores["hellaswag"], scores["arc_easy"], scores["algebra"], scores["anatomy"]
    mmlu = (algebra * 100 + anatomy * 135) / 235
    group = task_entry("mmlu", {"acc,none": (mmlu, 0.031)}, samples=235) | {"sample_count": {"acc,none": 235}}
    results = {
        "arc_easy": task_entry("arc_easy", {"acc,none": (arc, 0.0101), "acc_norm,none": (arc - 0.02, 0.0102)}, samples=2376),
        "hellaswag": task_entry("hellaswag", {"acc,none": (hella, 0.0049), "acc_norm,none": (hella + 0.05, 0.0048)}, samples=10042),
        "mmlu": group,
        "mmlu_abstract_algebra": task_entry("mmlu_abstract_algebra", {"acc,none": (algebra, 0.045)}, " - abstract_algebra", 100),
        "mmlu_anatomy": task_entry("mmlu_anatomy", {"acc,none": (anatomy, 0.041)}, " - anatomy", 135),
    }
    tasks = ["arc_easy", "hellaswag", "mmlu_abstract_algebra", "mmlu_anatomy"]
    return {
        "results": results,
        "groups": {"mmlu": group},
        "group_subtasks": {"mmlu": ["mmlu_abstract_algebra", "mmlu_anatomy"]},
        "configs": {t: {"task": t, "output_type": "multiple_choice", "num_fewshot": 5 if t.startswith("mmlu") else 0} for t in tasks},
        "versions": {"arc_easy": 1.0, "hellaswag": 1.0, "mmlu": 2, "mmlu_abstract_algebra": 1.0, "mmlu_anatomy": 1.0},
        "n-shot": {"arc_easy": 0, "hellaswag": 0, "mmlu": 5, "mmlu_abstract_algebra": 5, "mmlu_anatomy": 5},
        "higher_is_better": {t: {"acc": True, "acc_norm": True} for t in [*tasks, "mmlu"]},
        "n-samples": {t: {"original": results[t]["sample_len"], "effective": results[t]["sample_len"]} for t in tasks},
        "config": {
            "model": "hf", "model_args": {"pretrained": model, "dtype": "bfloat16"}, "model_num_parameters": params,
            "model_dtype": "torch.bfloat16", "model_revision": "main", "model_sha": "", "batch_size": "auto", "batch_sizes": [64],
            "device": "cuda:0", "use_cache": None, "limit": None, "bootstrap_iters": 100000, "gen_kwargs": {}, "random_seed": 0,
            "numpy_seed": 1234, "torch_seed": 1234, "fewshot_seed": 1234,
        },
        "git_hash": "4e7e0d4", "date": 1787300000.0, "transformers_version": "5.24.0", "lm_eval_version": "0.4.11",
        "upper_git_hash": None, "tokenizer_pad_token": ["<|endoftext|>", "0"], "tokenizer_eos_token": ["<|endoftext|>", "0"],
        "tokenizer_bos_token": ["<|endoftext|>", "0"], "eot_token_id": 0, "max_length": 2048, "task_hashes": {},
        "model_source": "hf", "model_name": model, "model_name_sanitized": model.replace("/", "__"),
        "system_instruction": None, "system_instruction_sha": None, "fewshot_as_multiturn": False, "chat_template": None,
        "chat_template_sha": None, "start_time": 100.0, "end_time": 200.0, "total_evaluation_time_seconds": "100.0",
    }


def older_file(model_args: str, hellaswag: float, lambada_stderr: float | str = "N/A") -> dict:
    """A results file of lm-eval 0.4.0/0.4.1: no n-shot, higher_is_better, n-samples, model_name or parameter count."""
    return {
        "results": {
            "hellaswag": {"acc,none": hellaswag, "acc_stderr,none": "N/A", "acc_norm,none": hellaswag + 0.04,
                          "acc_norm_stderr,none": "N/A", "alias": "hellaswag"},
            "lambada_openai": {"perplexity,none": 30.2, "perplexity_stderr,none": 1.1, "acc,none": 0.41,
                               "acc_stderr,none": lambada_stderr, "alias": "lambada_openai"},
        },
        "configs": {"hellaswag": {"task": "hellaswag", "num_fewshot": 0}, "lambada_openai": {"task": "lambada_openai"}},
        "versions": {"hellaswag": "Yaml", "lambada_openai": 1.0},
        "config": {"model": "hf", "model_args": model_args, "batch_size": "8", "batch_sizes": [], "device": "cuda:0",
                   "use_cache": None, "limit": None, "bootstrap_iters": 100000, "gen_kwargs": None},
        "git_hash": "a2af2fe",
    }


def write(path, data) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return str(path)


def one_line_error(r, message):
    assert r.code == 2, r.stdout
    assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


SCORES_A = {"hellaswag": 0.2712, "arc_easy": 0.4318, "algebra": 0.22, "anatomy": 0.3111}
SCORES_B = {"hellaswag": 0.6301, "arc_easy": 0.7425, "algebra": 0.31, "anatomy": 0.5185}


@pytest.fixture
def current(tmp_path):
    """lm-eval's --output_path: one folder per model, a dated results file in each."""
    a = write(tmp_path / "out" / "EleutherAI__pythia-160m" / "results_2026-11-30T10-00-00.json",
              current_file("EleutherAI/pythia-160m", 162_322_944, SCORES_A))
    b = write(tmp_path / "out" / "runs__kd-student" / "results_2026-11-30T11-00-00.json", current_file("runs/kd-student", 1_414_647_808, SCORES_B))
    return a, b


def test_current_layout_gives_the_score_table(cli, tmp_path, current):
    out = tmp_path / "scores.csv"
    r = cli("density", "import-lm-eval", *current, "--metric", "acc,none", "--task", "hellaswag", "--task", "mmlu", "--out", out)
    assert r.code == 0, r.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == ["model", "params", "score", "score_stderr", "task", "metric", "n_shot", "file", "params_source"]
    assert table[["model", "task"]].values.tolist() == [
        ["EleutherAI/pythia-160m", "hellaswag"], ["EleutherAI/pythia-160m", "mmlu"], ["runs/kd-student", "hellaswag"], ["runs/kd-student", "mmlu"],
    ]
    mmlu = [(s["algebra"] * 100 + s["anatomy"] * 135) / 235 for s in (SCORES_A, SCORES_B)]
    assert table["score"].tolist() == pytest.approx([SCORES_A["hellaswag"], mmlu[0], SCORES_B["hellaswag"], mmlu[1]], abs=1e-12)
    assert table["score_stderr"].tolist() == pytest.approx([0.0049, 0.031, 0.0049, 0.031])
    assert table["params"].tolist() == [162_322_944] * 2 + [1_414_647_808] * 2
    assert table["n_shot"].tolist() == [0, 5, 0, 5] and set(table["metric"]) == {"acc,none"}
    assert table["file"].tolist() == [current[0], current[0], current[1], current[1]]
    assert set(table["params_source"]) == {"model_num_parameters"}
    # lm-eval counts every parameter; the table says so in one warning naming both models
    assert r.stderr.count("warning:") == 1 and "EleutherAI/pythia-160m, runs/kd-student" in r.stderr and "non-embedding" in r.stderr


def test_a_folder_stands_for_its_results_files_and_params_override(cli, tmp_path, current):
    r = cli("density", "import-lm-eval", tmp_path / "out", "-m", "acc_norm,none", "--task", "arc_easy",
            "--params", "EleutherAI/pythia-160m=85056000", "--params", "runs/kd-student=1.3e9", "--json")
    assert r.code == 0, r.stderr
    rows = r.json()["rows"]
    assert [(row["model"], row["params"], row["params_source"]) for row in rows] == [
        ("EleutherAI/pythia-160m", 85_056_000, "--params"), ("runs/kd-student", 1.3e9, "--params")]
    assert [row["score"] for row in rows] == pytest.approx([SCORES_A["arc_easy"] - 0.02, SCORES_B["arc_easy"] - 0.02], abs=1e-12)
    assert "warning" not in r.stderr


def test_every_task_by_default_skips_group_headers(cli, tmp_path, current):
    data = json.loads(open(current[0]).read())
    data["results"]["mmlu_stem"] = {"alias": " - stem", "name": "mmlu_stem"}  # a group without an aggregate
    path = write(tmp_path / "one.json", data)
    r = cli("density", "import-lm-eval", path, "-m", "acc,none", "--json")
    assert r.code == 0, r.stderr
    assert sorted(row["task"] for row in r.json()["rows"]) == ["arc_easy", "hellaswag", "mmlu", "mmlu_abstract_algebra", "mmlu_anatomy"]


def test_older_layout_with_na_stderr_and_string_model_args(cli, tmp_path):
    old = write(tmp_path / "old" / "results.json", older_file("pretrained=EleutherAI/pythia-410m,dtype=float32,trust_remote_code=True", 0.4047))
    r = cli("density", "import-lm-eval", old, "-m", "acc,none", "--task", "hellaswag")
    one_line_error(r, f"{old}: no config.model_num_parameters for model EleutherAI/pythia-410m (give its non-embedding parameters: "
                      "--params EleutherAI/pythia-410m=N)")
    r = cli("density", "import-lm-eval", old, "-m", "acc,none", "--task", "hellaswag", "--task", "lambada_openai",
            "--params", "EleutherAI/pythia-410m=3.02e8", "--json")
    assert r.code == 0, r.stderr
    hella, lambada = r.json()["rows"]
    assert hella == {"model": "EleutherAI/pythia-410m", "params": 3.02e8, "score": 0.4047, "score_stderr": None, "task": "hellaswag",
                     "metric": "acc,none", "n_shot": None, "file": old, "params_source": "--params"}
    assert lambada["score"] == 0.41 and lambada["score_stderr"] is None and r.stderr == ""
    r = cli("density", "import-lm-eval", old, "-m", "acc,none", "--task", "hellaswag", "--params", "EleutherAI/pythia-410m=3.02e8")
    assert r.code == 0 and "0.4047" in r.stdout and "3.02e+08" in r.stdout
    assert "nan" not in r.stdout.lower() and "<NA>" not in r.stdout and "None" not in r.stdout  # blanks where lm-eval said nothing


def test_files_from_before_filters_answer_none_with_the_bare_metric(cli, tmp_path):
    # lm-eval < 0.4 (its tests/testdata/arc_challenge-v0-res.json), plus the config of those days
    data = {"results": {"arc_challenge": {"acc": 0.24488054607508533, "acc_norm": 0.2440273037542662,
                                          "acc_norm_stderr": 0.012551447627856257, "acc_stderr": 0.012566273985131354}},
            "versions": {"arc_challenge": 0}, "config": {"model": "gpt2", "model_args": "pretrained=gpt2", "num_fewshot": 0}}
    r = cli("density", "import-lm-eval", write(tmp_path / "v0.json", data), "-m", "acc_norm,none", "--params", "gpt2=8.5e7", "--json")
    assert r.code == 0, r.stderr
    (row,) = r.json()["rows"]
    assert row["score"] == 0.2440273037542662 and row["score_stderr"] == 0.012551447627856257 and row["model"] == "gpt2"


def test_a_lower_is_better_metric_is_warned_about(cli, tmp_path):
    data = current_file("m", 1000, SCORES_A)
    data["results"]["hellaswag"]["perplexity,none"] = 12.0
    data["higher_is_better"]["hellaswag"]["perplexity"] = False
    r = cli("density", "import-lm-eval", write(tmp_path / "r.json", data), "-m", "perplexity,none", "--task", "hellaswag", "--params", "m=900")
    assert r.code == 0, r.stderr
    assert "warning: lm-eval marks perplexity,none lower-is-better for task hellaswag" in r.stderr


def test_the_table_feeds_density_score(cli, tmp_path):
    """Planted scores of three models whose effective sizes are known: `density score` reads the imported table."""
    coefficients = tmp_path / "density.json"
    DensityCoefficients(loss=LOSS, score=SCORE).save(coefficients)
    effective = {"org/small": 2e7, "org/mid": 1.5e8, "org/big": 6e8}
    files = []
    for i, (name, n) in enumerate(effective.items()):
        score = float(score_from_loss(conditional_loss(n, 1e12, LOSS), SCORE.c, SCORE.gamma, SCORE.l, SCORE.d))
        files.append(write(tmp_path / f"results_{i}.json", current_file(name, 10 * (i + 1), {**SCORES_A, "hellaswag": score})))
    scores, densities = tmp_path / "scores.csv", tmp_path / "densities.csv"
    args = [f"--params={name}={n / 4:g}" for name, n in effective.items()]
    r = cli("density", "import-lm-eval", *files, "-m", "acc,none", "--task", "hellaswag", *args, "-o", scores)
    assert r.code == 0, r.stderr
    r = cli("density", "score", scores, "-c", coefficients, "--out", densities)
    assert r.code == 0, r.stderr
    table = pd.read_csv(densities)
    assert table["model"].tolist() == list(effective)
    assert table["effective_params"].tolist() == pytest.approx(list(effective.values()), rel=1e-6)
    assert table["density"].tolist() == pytest.approx([4.0, 4.0, 4.0], rel=1e-6)


def test_with_losses_the_table_feeds_density_fit(cli, tmp_path):
    """A reference family's losses (as `density eval` writes them) joined to its lm-eval scores is fitted back to the planted law."""
    n = np.repeat([5.2e6, 31.5e6, 106e6, 245e6, 477e6, 828e6], 3)
    d = n * np.tile([10, 20, 40], 6)
    loss = conditional_loss(n, d, LOSS)
    score = score_from_loss(loss, SCORE.c, SCORE.gamma, SCORE.l, SCORE.d)
    names = [f"ref{i}" for i in range(n.size)]
    losses = tmp_path / "losses.csv"
    pd.DataFrame({"model": names + ["unscored"], "params": [*n, 2e6], "tokens": [*d, 4e7], "loss": [*loss, float(conditional_loss(2e6, 4e7, LOSS))],
                  "score": None, "items": 50}).to_csv(losses, index=False)
    files = [write(tmp_path / "lm-eval" / name / "results_2026.json", current_file(f"/data/runs/{name}", 10**9, {**SCORES_A, "arc_easy": s}))
             for name, s in zip(names, score)]
    reference, fitted = tmp_path / "reference.csv", tmp_path / "density.json"
    r = cli("density", "import-lm-eval", tmp_path / "lm-eval", "-m", "acc,none", "--task", "arc_easy", "--losses", losses, "--out", reference)
    assert r.code == 0, r.stderr
    assert "warning" not in r.stderr  # the losses table's (non-embedding) params replaced lm-eval's
    table = pd.read_csv(reference)
    assert table["model"].tolist() == names + ["unscored"] and math.isnan(table["score"].iloc[-1])
    assert table["params"].tolist() == pytest.approx([*n, 2e6]) and set(table["params_source"]) == {"losses table"}
    assert table["score"].iloc[:-1].tolist() == pytest.approx(score, abs=1e-12)
    r = cli("density", "fit", reference, "--out", fitted, "--bootstrap", 0, "--json")
    assert r.code == 0, r.stderr
    law = r.json()
    for name, value in LOSS.as_dict().items():
        assert law["loss"][name] == pytest.approx(value, rel=1e-3), name
    for name, value in SCORE.as_dict().items():
        assert law["score"][name] == pytest.approx(value, rel=1e-3), name


def test_losses_join_by_name_or_folder_and_params_override(cli, tmp_path, current):
    losses = tmp_path / "losses.parquet"
    pd.DataFrame({"model": ["runs/kd-student", "pythia-160m"], "params": [1.2e9, 8.5e7], "tokens": [2e10, 3e11], "loss": [1.9, 2.4]}).to_parquet(losses)
    r = cli("density", "import-lm-eval", *current, "-m", "acc,none", "--task", "hellaswag", "--losses", losses,
            "--params", "runs/kd-student=1.1e9", "--json")
    assert r.code == 0, r.stderr
    rows = {row["model"]: row for row in r.json()["rows"]}
    assert rows["pythia-160m"] | {"file": None} == {
        "model": "pythia-160m", "params": 8.5e7, "tokens": 3e11, "loss": 2.4, "score": SCORES_A["hellaswag"], "score_stderr": 0.0049,
        "task": "hellaswag", "metric": "acc,none", "n_shot": 0, "file": None, "params_source": "losses table"}
    assert rows["pythia-160m"]["file"] == current[0]
    kd = rows["runs/kd-student"]
    assert (kd["params"], kd["params_source"], kd["score"], kd["loss"]) == (1.1e9, "--params", SCORES_B["hellaswag"], 1.9)


def test_losses_need_one_task_and_every_scored_model(cli, tmp_path, current):
    losses = tmp_path / "losses.csv"
    pd.DataFrame({"model": ["pythia-160m"], "params": [8.5e7], "tokens": [3e11], "loss": [2.1]}).to_csv(losses, index=False)
    one_line_error(cli("density", "import-lm-eval", *current, "-m", "acc,none", "--task", "hellaswag", "--task", "arc_easy", "--losses", losses),
                   "--losses makes a reference table for one benchmark; pick its task with --task (found: arc_easy, hellaswag)")
    one_line_error(cli("density", "import-lm-eval", *current, "-m", "acc,none", "--task", "hellaswag", "--losses", losses),
                   f"{current[1]}: model runs/kd-student is not in {losses} (its models: pythia-160m)")


def test_a_missing_metric_names_file_task_and_the_metrics_it_has(cli, tmp_path):
    old = write(tmp_path / "old.json", older_file("pretrained=m", 0.4))
    one_line_error(cli("density", "import-lm-eval", old, "-m", "acc_norm,none", "--params", "m=1e6"),
                   f"{old}: task lambada_openai has no metric acc_norm,none (its metrics: acc,none, perplexity,none)")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a JSON file"),
        (b"\xff\xfe\x00garbage", "not a JSON file"),
        ("[1, 2]", "not an lm-eval results file (no 'results' object of tasks)"),
        ('{"config": {}}', "not an lm-eval results file (no 'results' object of tasks)"),
        ('{"results": [0.5]}', "not an lm-eval results file"),
        ('{"results": {"hellaswag": 0.5}}', "results['hellaswag'] is a float, not an object of metrics"),
        ('{"results": {}, "groups": ["mmlu"]}', "'groups' is a list, not an object of tasks"),
        ('{"results": {}, "config": "hf"}', "'config' is a str, not an object"),
        ('{"results": {"t": {"acc,none": 0.5}}, "config": {"model": "hf"}}', "no model name (config.model_args has no pretrained="),
        ('{"results": {"t": {"acc,none": 0.5}}, "config": {"model_args": {"pretrained": "m"}, "model_num_parameters": "many"}}',
         "config.model_num_parameters is 'many', not a parameter count"),
        ('{"results": {"t": {"acc,none": "N/A"}}, "model_name": "m", "config": {"model_num_parameters": 5}}',
         "task t: metric acc,none is 'N/A', not a finite number"),
        ('{"results": {"t": {"acc,none": true}}, "model_name": "m", "config": {"model_num_parameters": 5}}', "is True, not a finite number"),
        ('{"results": {"t": {"acc,none": NaN}}, "model_name": "m", "config": {"model_num_parameters": 5}}', "is nan, not a finite number"),
        ('{"results": {"t": {"alias": "t"}}, "model_name": "m"}', "no task has any metric"),
        ('{"results": {"t": {"acc,none": 0.5}}, "n-shot": [0], "model_name": "m"}', "'n-shot' is a list, not an object"),
    ],
)
def test_malformed_files_are_one_line_and_write_nothing(cli, tmp_path, content, message):
    src, out = tmp_path / "results_bad.json", tmp_path / "scores.csv"
    src.write_bytes(content if isinstance(content, bytes) else content.encode())
    one_line_error(cli("density", "import-lm-eval", src, "-m", "acc,none", "--out", out), message)
    assert str(src) in cli("density", "import-lm-eval", src, "-m", "acc,none").stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["results_bad.json"]


def test_bad_requests_are_one_line(cli, tmp_path, current):
    args = ("density", "import-lm-eval", *current, "-m", "acc,none")
    one_line_error(cli(*args, "--task", "hellaswag", "--task", "piqa"), "--task piqa: in none of the files (their tasks: arc_easy, hellaswag, mmlu, ")
    one_line_error(cli(*args, "--params", "pythia=1e8"), "--params pythia=...: no results file is for model pythia (models: EleutherAI/pythia-160m, runs/kd-student)")
    one_line_error(cli(*args, "--params", "EleutherAI/pythia-160m=-3"), "--params 'EleutherAI/pythia-160m=-3': expected MODEL=N")
    one_line_error(cli(*args, "--params", "1e8"), "expected MODEL=N")
    one_line_error(cli(*args, current[0], "--task", "hellaswag"), f"model EleutherAI/pythia-160m, task hellaswag: in both {current[0]} and {current[0]}")
    one_line_error(cli(*args, "--out", tmp_path / "scores.txt"), "must end in .csv, .parquet")
    one_line_error(cli(*args, "--out", tmp_path / "nowhere" / "scores.csv"), "does not exist")
    one_line_error(cli("density", "import-lm-eval", tmp_path / "missing.json", "-m", "acc,none"), "missing.json: no such file")
    (tmp_path / "empty").mkdir()
    one_line_error(cli("density", "import-lm-eval", tmp_path / "empty", "-m", "acc,none"), "no lm-eval results files (results_*.json) in this folder")
    one_line_error(cli("density", "import-lm-eval", *current, "-m", " "), "--metric: give the metric key")


def test_help_has_examples(cli):
    r = cli("density", "import-lm-eval", "--help")
    assert r.code == 0 and "Examples" in r.stdout and "model_num_parameters" in r.stdout


def test_import_needs_no_torch(tmp_path, current):
    """Reading result files is table work: torch is never imported."""
    code = ("import sys\nfrom distlaw.cli.app import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code, "density", "import-lm-eval", *current, "-m", "acc,none", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"

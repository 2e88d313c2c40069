"""End to end on CPU: distilled students' capacity density against the lab's own supervised family.

A tiny supervised reference family (4 sizes x 3 token budgets, byte tokenizer, context 128) and two
students distilled from its largest member are trained with the lab; a multiple-choice task is built
from held-out Shakespeare (prompt: a line; answer: the next line's first words; distractors: the
answer with a typo); then `distlaw density eval | fit | score` run as a user would.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distlaw.compute import ModelShape
from distlaw.lab.config import DataConfig, OptimConfig, RunSpec
from distlaw.lab.data import prepare_data
from distlaw.lab.train import train_run

pytestmark = pytest.mark.slow

SHAPES = {  # non-embedding parameters: ~3.1k, ~12.4k, ~24.9k, ~38.7k
    "s1": ModelShape(n_layers=1, d_model=16, n_heads=2, d_ff=43, vocab_size=256, n_ctx=128),
    "s2": ModelShape(n_layers=1, d_model=32, n_heads=4, d_ff=86, vocab_size=256, n_ctx=128),
    "s3": ModelShape(n_layers=2, d_model=32, n_heads=4, d_ff=86, vocab_size=256, n_ctx=128),
    "s4": ModelShape(n_layers=2, d_model=40, n_heads=5, d_ff=107, vocab_size=256, n_ctx=128),
}
TOKENS = (40_000, 100_000, 250_000)
OPTIM = OptimConfig(lr=1e-2, batch_size=16)


def spec(name: str, kind: str, shape: str, tokens: int, data: DataConfig, teacher: str | None = None) -> RunSpec:
    return RunSpec(name=name, kind=kind, shape=SHAPES[shape], tokens=tokens, teacher=teacher, data=data, optim=OPTIM, eval_tokens=4096)


def typo(text: str, rng: np.random.Generator) -> str:
    """``text`` with two adjacent, different letters of one word swapped (a bigram-level corruption)."""
    spots = [i for i in range(len(text) - 1) if text[i].isalpha() and text[i + 1].isalpha() and text[i] != text[i + 1]]
    if not spots:
        return text
    i = spots[rng.integers(len(spots))]
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def shakespeare_task(data_config: DataConfig, n_items: int, seed: int = 0) -> list[dict]:
    """Held-out lines (the lab's validation split) as 3-way multiple choice: the next line's first
    three words against two copies of them with a typo."""
    data = prepare_data(data_config, Path(data_config.cache_dir))
    text = np.asarray(data.val, dtype=np.uint8).tobytes().decode("utf-8", errors="ignore")
    lines = [line.strip() for line in text.splitlines()]
    rng = np.random.default_rng(seed)
    items = []
    for prompt, following in zip(lines, lines[1:]):
        if len(prompt.split()) < 4 or len(following.split()) < 3:
            continue
        answer = " ".join(following.split()[:3])
        wrong = sorted({typo(answer, rng) for _ in range(6)} - {answer})
        if len(wrong) >= 2:
            items.append({"prompt": prompt + "\n", "answer": answer, "choices": sorted([answer, *wrong[:2]])})
        if len(items) == n_items:
            return items
    raise AssertionError(f"only {len(items)} task items in the validation split")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, pytestconfig):
    root = tmp_path_factory.mktemp("density-lab")
    runs = root / "runs"
    cache = getattr(pytestconfig, "cache", None)  # the tokenized corpus is kept across sessions when pytest can
    corpus_dir = cache.mkdir("distlaw-corpus") if cache is not None else tmp_path_factory.mktemp("corpus")
    data = DataConfig(cache_dir=str(corpus_dir))
    reference = [spec(f"sup-{s}-D{d}", "supervised", s, d, data) for s in SHAPES for d in TOKENS]
    for run in reference:
        train_run(run, runs / run.name, progress=False)
    teacher = reference[-1]
    students = [spec(f"kd-{s}-from-s4", "distilled", s, TOKENS[-1], data, teacher=teacher.name) for s in ("s1", "s2")]
    for run in students:
        train_run(run, runs / run.name, teacher_dir=runs / teacher.name, progress=False)
    task = root / "task.jsonl"
    task.write_text("".join(json.dumps(item) + "\n" for item in shakespeare_task(data, 400)))
    return root, [runs / r.name for r in reference], [runs / r.name for r in students]


def test_students_get_a_density_against_the_labs_supervised_family(cli, lab):
    root, reference, students = lab
    task, ref_csv, student_csv, coefficients = root / "task.jsonl", root / "ref.csv", root / "students.csv", root / "density.json"

    r = cli("density", "eval", task, *reference, "--out", ref_csv)
    assert r.code == 0, r.stderr
    ref = pd.read_csv(ref_csv)
    assert ref["tokens"].tolist() == pytest.approx([t for _ in SHAPES for t in TOKENS], rel=0.05)  # from result.json
    assert ref["score"].between(0, 1).all()

    r = cli("density", "fit", ref_csv, "--out", coefficients, "--d0", TOKENS[-1], "--bootstrap", 50, "--json")
    assert r.code == 0, r.stderr
    fitted = r.json()

    r = cli("density", "eval", task, *students, "--out", student_csv)
    assert r.code == 0, r.stderr
    # each student beside its supervised twin (same shape, same tokens) from the reference family
    twins = ref[ref["model"].isin([f"sup-{s}-D{TOKENS[-1]}" for s in ("s1", "s2")])]
    pd.concat([pd.read_csv(student_csv), twins]).to_csv(student_csv, index=False)
    r = cli("density", "score", student_csv, "-c", coefficients, "--json")
    assert r.code == 0, r.stderr
    scored = pd.DataFrame(r.json()["models"])
    # the numbers, shown by `pytest -s` or on failure (printed after the last cli call, which resets capture)
    print("\nreference family:\n", ref.to_string(), "\nfit:", json.dumps(fitted["loss"] | fitted["score"]))
    print("students and their supervised twins:\n", scored.to_string())
    assert scored["model"].tolist() == ["kd-s1-from-s4", "kd-s2-from-s4", f"sup-s1-D{TOKENS[-1]}", f"sup-s2-D{TOKENS[-1]}"]
    assert set(scored["status"]) <= {"ok", "unbounded"}
    ok = scored[scored["status"] == "ok"]
    assert len(ok) >= 2 and (ok["density"] > 0).all() and np.isfinite(ok["density"]).all()
    assert (ok["density_lo"] <= ok["density"]).all() and (ok["density"] <= ok["density_hi"]).all()

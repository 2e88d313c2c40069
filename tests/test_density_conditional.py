"""Conditional loss -log P(answer | prompt) of a local checkpoint, against a direct computation."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from distlaw.compute import ModelShape
from distlaw.density.conditional import TaskItem, continuation_nats, evaluate_checkpoint, evaluate_items, load_tokenizer, read_tasks
from distlaw.errors import DistlawError
from distlaw.lab.model import build_model, load_model
from distlaw.lab.tokenizer import byte_tokenizer, save_tokenizer


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ckpt") / "tiny-byte"
    model = build_model(ModelShape(n_layers=1, d_model=16, n_heads=2, d_ff=32, vocab_size=256, n_ctx=32), seed=3)
    model.save_pretrained(directory)
    save_tokenizer(byte_tokenizer(), directory)
    return directory


@torch.no_grad()
def direct_nats(model, prompt: str, answer: str) -> float:
    ids = torch.tensor([list((prompt + answer).encode())])
    logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
    picked = logp.gather(-1, ids[0, 1:, None])[:, 0]
    return -float(picked[-len(answer.encode()) :].sum())


def test_answer_nats_match_a_direct_forward_pass_and_ignore_padding(checkpoint):
    model, tok = load_model(checkpoint), load_tokenizer(checkpoint)
    prompts, answers = ["To be, or not", "Friends, Romans", "A"], [" to be", " countrymen, lend", " horse!"]
    nats, counts = continuation_nats(model, tok, prompts, answers, batch_size=3)
    expected = [direct_nats(model, p, a) for p, a in zip(prompts, answers)]
    np.testing.assert_allclose(nats, expected, rtol=1e-5)
    assert counts.tolist() == [6, 17, 7]
    one_by_one, _ = continuation_nats(model, tok, prompts, answers, batch_size=1)
    np.testing.assert_allclose(one_by_one, nats, rtol=1e-5)


def test_long_prompts_are_cut_from_the_left(checkpoint):
    model, tok = load_model(checkpoint), load_tokenizer(checkpoint)
    long_prompt = "x" * 100 + "To be, or not"  # context is 32 tokens
    nats, _ = continuation_nats(model, tok, [long_prompt], [" to be"])
    assert nats[0] == pytest.approx(direct_nats(model, long_prompt[-(32 - 6) :], " to be"), rel=1e-5)


def test_task_loss_per_token_or_summed_and_multiple_choice_accuracy(checkpoint):
    model, tok = load_model(checkpoint), load_tokenizer(checkpoint)
    items = [TaskItem("Once more unto", " the breach", (" the breach", " a cat sat", " zzzz")), TaskItem("Now is", " the winter", (" xq", " the winter"))]
    summed = [direct_nats(model, it.prompt, it.answer) for it in items]
    per_token = np.mean([s / len(it.answer) for s, it in zip(summed, items)])
    loss, score = evaluate_items(model, tok, items, reduction="token")
    assert loss == pytest.approx(per_token, rel=1e-5)
    assert evaluate_items(model, tok, items, reduction="sum")[0] == pytest.approx(np.mean(summed), rel=1e-5)
    correct = [
        min(it.choices, key=lambda c: direct_nats(model, it.prompt, c) / len(c)) == it.answer for it in items
    ]
    assert score == pytest.approx(np.mean(correct))


def test_evaluate_checkpoint_reports_non_embedding_params(checkpoint):
    result = evaluate_checkpoint(checkpoint, [TaskItem("a", "b")])
    shape = ModelShape(n_layers=1, d_model=16, n_heads=2, d_ff=32, vocab_size=256, n_ctx=32)
    assert result.params == shape.non_embedding_params and result.score is None and result.model == "tiny-byte"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"prompt": "a"}'], ":1: expected an object with string 'prompt' and 'answer'"),
        (['{"prompt": "a", "answer": "b"}', "{oops"], ":2: malformed JSON"),
        (['{"prompt": "a", "answer": "b", "choices": ["c", "d"]}'], ":1: the answer is not one of the choices"),
        (['{"prompt": "a", "answer": "b", "choices": ["b", "d"]}', '{"prompt": "a", "answer": "b"}'], "either every item"),
        ([""], "no task items"),
    ],
)
def test_bad_task_files_name_the_line(tmp_path, lines, message):
    path = tmp_path / "task.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DistlawError, match=message):
        read_tasks(path)


def test_task_file_round_trip(tmp_path):
    path = tmp_path / "task.jsonl"
    rows = [{"prompt": "p", "answer": "a", "choices": ["a", "b"]}, {"prompt": "q", "answer": "c", "choices": ["d", "c"]}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    assert read_tasks(path) == [TaskItem("p", "a", ("a", "b")), TaskItem("q", "c", ("d", "c"))]


def test_cli_eval_rows_feed_fit_and_score(cli, checkpoint, tmp_path):
    task, out = tmp_path / "task.jsonl", tmp_path / "rows.csv"
    rows = [{"prompt": "Now is the", "answer": " winter", "choices": [" winter", " wintre"]}] * 3
    task.write_text("\n".join(json.dumps(r) for r in rows))
    r = cli("density", "eval", task, checkpoint, "--tokens", "1e6", "--out", out, "--json")
    assert r.code == 0, r.stderr
    (row,) = r.json()["models"]
    model, tok = load_model(checkpoint), load_tokenizer(checkpoint)
    expected = evaluate_items(model, tok, read_tasks(task))
    assert row["model"] == "tiny-byte" and row["tokens"] == 1e6 and row["items"] == 3
    assert (row["loss"], row["score"]) == pytest.approx(expected)
    assert pd.read_csv(out).columns.tolist() == ["model", "params", "tokens", "loss", "score", "items"]


def test_cli_eval_bad_input_is_one_line(cli, checkpoint, tmp_path):
    task = tmp_path / "task.jsonl"
    task.write_text('{"prompt": "a", "answer": "b"}\n')
    r = cli("density", "eval", task, tmp_path / "nowhere")
    assert r.code == 2 and "no such checkpoint directory" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("density", "eval", task, checkpoint, "--reduction", "mean")
    assert r.code == 2 and "--reduction must be 'token' or 'sum'" in r.stderr


def test_an_empty_prompt_is_refused(checkpoint):
    with pytest.raises(DistlawError, match="tokenizes to nothing"):
        evaluate_items(load_model(checkpoint), load_tokenizer(checkpoint), [TaskItem("", "b")])

"""Model folders that load anywhere (issue 11, item 5): what `save_checkpoint` writes is read back by plain
`transformers` in a subprocess that never imports distlaw (same logits, same token ids, the tokenizer's
special tokens and chat template, a generation config with the tokenizer's ids), and its model card says
how the model was made with no number that the run's spec, result or pruning record does not hold."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
import yaml

from distlaw.compute import ModelShape
from distlaw.lab import corpus
from distlaw.lab.config import DataConfig, DistillConfig, OptimConfig, PruneInit, RunSpec
from distlaw.lab.export import save_checkpoint
from distlaw.lab.families import count_params, shape_of
from distlaw.lab.model import build_model, load_model
from distlaw.lab.model_card import model_card
from distlaw.lab.train import RunResult
from hf_families import EOS, save_hf_tokenizer, tiny_checkpoint, tiny_config, tokenizer

TEXT = "To be, or not to be: that is the question.<|endoftext|>Whether 'tis nobler in the mind"
CHAT = "{% for m in messages %}<|endoftext|>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
# Plain transformers and huggingface_hub only: the folder must load where distlaw is not installed.
LOADER = r"""
import json, sys
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

out = []
for job in json.loads(sys.argv[1]):
    folder = job["dir"]
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    ids = torch.tensor(job["ids"])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
        generated = model.generate(ids[:1, :4], max_new_tokens=2, do_sample=False)
    heads = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    heads |= {id(p) for p in model.get_output_embeddings().parameters()}
    unique = {id(p): p for p in model.parameters()}
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) if tok.chat_template else None
    out.append({
        "logits": logits.tolist(), "ids": tok(job["text"], add_special_tokens=False)["input_ids"], "chat": chat,
        "special": {name: getattr(tok, name) for name in ("bos_token", "eos_token", "pad_token")},
        "generation": GenerationConfig.from_pretrained(folder).to_dict(), "generated": generated.shape[1],
        "card": ModelCard.load(f"{folder}/README.md").data.to_dict(),
        "params": [sum(p.numel() for i, p in unique.items() if i not in heads), sum(p.numel() for p in model.parameters())],
    })
print(json.dumps({"distlaw_imported": any(m.split(".")[0] == "distlaw" for m in sys.modules), "folders": out}))
"""


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def load_elsewhere(jobs: list[dict]) -> list[dict]:
    """Run LOADER on the folders in a fresh interpreter (outside the source tree) and check distlaw stayed out."""
    proc = subprocess.run([sys.executable, "-c", LOADER, json.dumps(jobs)], capture_output=True, text=True, timeout=300,
                          cwd=Path(jobs[0]["dir"]).parent, env={**ENV, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["distlaw_imported"] is False
    return report["folders"]


def input_ids(vocab: int, n: int = 2, length: int = 12) -> list[list[int]]:
    return torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(3)).tolist()


def logits_of(model: torch.nn.Module, ids: list[list[int]]) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=torch.tensor(ids)).logits


def encode(tok, text: str) -> list[int]:
    """distlaw's own encoding of ``text`` (a tokenizers.Tokenizer, as the lab tokenizes corpora)."""
    return tok.encode(text, add_special_tokens=False).ids


def card_table(folder: Path) -> dict[str, str]:
    """The rows of the card's table, label -> value."""
    text = (folder / "README.md").read_text()
    return dict(re.findall(r"^\| ([^|]+?) \| (.+) \|$", text, flags=re.M))


def numbers(text: str) -> list[float]:
    """The numbers written in ``text`` ("8,128", "4.1235", "1e-05"), leaving out `code` (paths, names)."""
    text = re.sub(r"`[^`]*`", "", text)
    return [float(x.replace(",", "")) for x in re.findall(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?", text)]


def run_card(kind: str, tokenizer_name: str, teacher: str | None = None, init: PruneInit | None = None, cache_k: int | None = None) -> dict:
    """A realistic {"spec", "result"} card of a tiny run, with planted numbers."""
    shape = ModelShape(n_layers=2, d_model=32, n_heads=4, d_ff=64, n_kv_heads=2, vocab_size=320, n_ctx=256)
    spec = RunSpec(name=f"{kind}-run", kind=kind, shape=shape, tokens=40960, teacher=teacher, init=init,
                   data=DataConfig(corpus="shakespeare", tokenizer=tokenizer_name, seq_len=64, order_seed=7 if cache_k else None),
                   optim=OptimConfig(lr=2e-3, batch_size=16, seed=3), distill=DistillConfig(weight=0.75, temperature=2.0, top_k=40, cache_k=cache_k),
                   eval_tokens=8192)
    result = RunResult(non_embedding_params=24_576, total_params=45_056, tokens=40_960, flops=1.5e10, teacher_inference_flops=0.0,
                       loss=4.123456, teacher_loss=3.987654 if teacher else None, teacher_params=99_328 if teacher else None,
                       eval_tokens=8_128, wall_time_s=12.5, steps=40, checkpoint="/runs/x", teacher_total_params=140_288 if teacher else None)
    return {"spec": spec.model_dump(mode="json"), "result": result.model_dump(mode="json")}


def pruning_card(teacher: str, tokenizer_name: str) -> dict:
    """A {"pruning", "data"} card as `distlaw prune` writes it (a width and depth pruning), with planted numbers."""
    before = ModelShape(n_layers=4, d_model=64, n_heads=8, d_ff=128, n_kv_heads=4, vocab_size=320, n_ctx=256).model_dump()
    after = ModelShape(n_layers=2, d_model=32, n_heads=4, d_ff=64, n_kv_heads=2, vocab_size=320, n_ctx=256).model_dump()
    record = {"format": "distlaw-pruning/1", "teacher": teacher, "family": "qwen2", "teacher_params": 99_328, "params": 24_576,
              "sparsity": 0.5, "target_params": None, "achieved_sparsity": 0.7525773, "method": "activation", "depth": 2,
              "keep_layers": None, "depth_importance": "cosine", "kept_layers": [0, 3], "layer_importance": [0.91, 0.12, 0.08, 0.77],
              "kept_heads": 4, "kept_kv_heads": 2, "kept_neurons": 64, "kept_hidden": 32, "head_dim": 8, "teacher_shape": before,
              "shape": after, "corpus": "shakespeare", "data_key": "0123abcd", "seq_len": 64, "seed": 5, "calibration_tokens": 4096}
    return {"pruning": record, "data": DataConfig(corpus="shakespeare", tokenizer=tokenizer_name, seq_len=64).model_dump(mode="json")}


@pytest.fixture
def hf_tokenizer_dir(tmp_path) -> Path:
    """A Hugging Face tokenizer folder with a chat template and bos/eos/pad tokens."""
    folder = tmp_path / "hf-tokenizer"
    save_hf_tokenizer(folder)
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    tok.chat_template, tok.pad_token = CHAT, EOS
    tok.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_saved_folders_load_with_plain_transformers(tmp_path, hf_tokenizer_dir):
    """distlaw's Llama with its BPE, a GPT-2 (tied head, learned positions) and a Qwen2 (GQA, biases) with a
    tokenizer folder: logits, ids, special tokens, chat template, generation config and card as written."""
    eos = tokenizer().token_to_id(EOS)
    torch.manual_seed(0)
    models = {
        "llama": (build_model(ModelShape(n_layers=2, d_model=32, n_heads=4, d_ff=64, vocab_size=320, n_ctx=64), seed=1),
                  run_card("supervised", "bpe:320")),
        "gpt2": (transformers.AutoModelForCausalLM.from_config(tiny_config("gpt2")),
                 run_card("distilled", str(hf_tokenizer_dir), teacher="/models/teacher", cache_k=64)),
        "qwen2": (transformers.AutoModelForCausalLM.from_config(tiny_config("qwen2")), pruning_card("/models/qwen-teacher", str(hf_tokenizer_dir))),
    }
    ids = input_ids(320)
    jobs = []
    for name, (model, card) in models.items():
        folder = tmp_path / name
        folder.mkdir()
        save_checkpoint(model, tokenizer(), folder, card)
        assert (folder / "model.safetensors").stat().st_mode & 0o044 == 0o044  # readable like the rest of the folder
        assert not (folder / "pytorch_model.bin").exists()
        jobs.append({"dir": str(folder), "ids": ids, "text": TEXT})
    for (name, (model, card)), job, seen in zip(models.items(), jobs, load_elsewhere(jobs)):
        torch.testing.assert_close(torch.tensor(seen["logits"]), logits_of(model, ids), atol=1e-5, rtol=0)
        assert seen["ids"] == encode(tokenizer(), TEXT)
        assert 4 < seen["generated"] <= 6  # generate() runs on the saved generation config
        assert seen["params"] == list(count_params(model))
        table = card_table(Path(job["dir"]))
        assert numbers(table["parameters"]) == seen["params"]
        if name == "llama":  # distlaw's own BPE: its end-of-text token only; the model config had no token ids
            assert seen["special"] == {"bos_token": None, "eos_token": EOS, "pad_token": None} and seen["chat"] is None
            assert seen["generation"]["eos_token_id"] == eos and seen["generation"].get("bos_token_id") is None
            assert seen["card"] == {"library_name": "transformers", "pipeline_tag": "text-generation", "tags": ["distlaw"]}
        else:  # the tokenizer folder, copied: special tokens and chat template survive
            assert seen["special"] == {"bos_token": EOS, "eos_token": EOS, "pad_token": EOS}
            assert seen["chat"] == f"{EOS}user: hi\n"
            assert {seen["generation"][k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")} == {eos}
        if name == "gpt2":
            assert seen["card"] == {"base_model": "/models/teacher", "library_name": "transformers", "pipeline_tag": "text-generation",
                                    "tags": ["distlaw", "distillation"]}
        if name == "qwen2":
            assert seen["card"]["tags"] == ["distlaw", "pruning"] and seen["card"]["base_model"] == "/models/qwen-teacher"


SOURCES = {
    "supervised": lambda: run_card("supervised", "bpe:320"),
    "distilled online": lambda: run_card("distilled", "byte", teacher="/models/t"),
    "distilled from a cache": lambda: run_card("distilled", "/tok", teacher="/models/t", cache_k=64),
    "distilled from a pruning": lambda: run_card("distilled", "byte", teacher="/models/t", init=PruneInit(
        source="/models/t", target_params=24_000, calibration_tokens=8192, calibration_seed=2, method="activation", depth=1)),
    "pruned": lambda: pruning_card("/models/t", "bpe:320"),
}


@pytest.mark.parametrize("source", SOURCES)
def test_every_number_on_the_card_comes_from_what_was_recorded(source):
    """Each number in the card's table is a value of the spec, result or record (or a parameter count of the
    saved weights), printed at its precision: the card never claims a number of its own."""
    card = SOURCES[source]()
    text = model_card(card, 24_576, 45_056, "LlamaForCausalLM")
    front, body = text.split("---\n")[1], text.split("---\n", 2)[2]
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "transformers" and meta["tags"][0] == "distlaw"
    assert meta.get("base_model") == (card.get("spec") or {}).get("teacher", (card.get("pruning") or {}).get("teacher"))
    recorded = [24_576, 45_056]
    for leaf in json.dumps(card).replace('"', " ").split():
        recorded += numbers(leaf)  # numbers inside strings too ("bpe:320")
    rows = dict(re.findall(r"^\| ([^|]+?) \| (.+) \|$", body, flags=re.M))
    assert rows["kind"] == ("pruned" if source == "pruned" else card["spec"]["kind"])
    for label, value in rows.items():
        if label == "distlaw":
            continue
        value = re.sub(r"\([^()]*et al\. \d{4}[^()]*\)|\(1 - λ\) CE \+ λ τ² KL", "", value)  # citations, the formula
        for x in numbers(value):
            assert any(abs(x - r) <= 5e-5 * max(1.0, abs(r)) for r in recorded), f"{label}: {x} in {value!r} is not recorded"


def test_card_rows_say_how_the_model_was_made():
    rows = dict(re.findall(r"^\| ([^|]+?) \| (.+) \|$", model_card(run_card("distilled", "/tok", teacher="/models/t", cache_k=64),
                                                                   24_576, 45_056, "Qwen2ForCausalLM"), flags=re.M))
    assert rows["teacher"] == "`/models/t` (99,328 non-embedding parameters, 140,288 total)"
    assert rows["held-out loss"] == "4.1235 nats/token on 8,128 tokens"
    assert rows["teacher loss"] == "3.9877 nats/token on the same held-out tokens"
    assert rows["training tokens"] == "40,960 (40 steps of 16 windows of 64 tokens)"
    assert rows["seed"] == "3 (data order 7)" and rows["architecture"] == "`Qwen2ForCausalLM`"
    assert "λ = 0.75, τ = 2" in rows["objective"] and "top-40" in rows["objective"] and "cache of its top-64" in rows["objective"]
    assert rows["tokenizer"].startswith("`/tok`, copied")
    pruned = dict(re.findall(r"^\| ([^|]+?) \| (.+) \|$", model_card(pruning_card("/models/q", "byte"), 24_576, 45_056, "X"), flags=re.M))
    assert pruned["sparsity"] == "0.7526 of the non-embedding parameters removed (0.5 requested)"
    assert pruned["kept heads"] == "4 of 8 per layer, 2 of 4 key/value heads"
    assert pruned["kept layers"] == "2 of 4: teacher layers 0, 3 (the others dropped, ranked by the cosine similarity of the layer's input and output)"
    assert pruned["width importance"].startswith("activation") and pruned["tokenizer"] == "`byte`: one token per byte of the text"


@pytest.fixture
def small(tmp_path) -> list:
    shutil.copy(next(f for f in corpus.corpus_files("shakespeare") if f.stem == "hamlet"), tmp_path / "hamlet.md")
    return ["--corpus", tmp_path / "hamlet.md", "--seq-len", "32", "--cache-dir", tmp_path / "cache", "--quiet"]


@pytest.mark.slow
def test_cli_runs_and_pruned_models_load_anywhere_with_truthful_cards(cli, tmp_path, small, hf_tokenizer_dir):
    """`distlaw train`, `distill` (online and from a cache), a run on a tokenizer folder and `distlaw prune`
    of a Hugging Face checkpoint: each folder loads elsewhere as distlaw loads it, and its card's numbers are
    those of result.json / pruning.json."""
    batch = ["--batch-size", "8", "--eval-tokens", "2048"]
    bpe = [*small, "--tokenizer", "bpe:300", *batch]
    assert cli("train", "--params", "6e3", "--tokens", "4096", "--out", tmp_path / "t", *bpe).code == 0
    assert cli("distill", "--params", "3e3", "--tokens", "2048", "--teacher", tmp_path / "t", "--out", tmp_path / "s", *bpe).code == 0
    r = cli("cache-teacher", "--teacher", tmp_path / "t", "--tokens", "2048", "--k", "8", "--out", tmp_path / "c", *small, "--tokenizer", "bpe:300")
    assert r.code == 0, r.stderr
    assert cli("distill", "--params", "3e3", "--tokens", "2048", "--teacher-cache", tmp_path / "c", "--out", tmp_path / "sc", *bpe).code == 0
    r = cli("train", "--params", "3e3", "--tokens", "2048", "--out", tmp_path / "hf", *small, "--tokenizer", hf_tokenizer_dir, *batch)
    assert r.code == 0, r.stderr
    teacher = tiny_checkpoint("llama", tmp_path / "llama")
    r = cli("prune", teacher, "--sparsity", "0.5", "--calibration-tokens", "512", "--batch-size", "8", "--out", tmp_path / "p",
            *small, "--tokenizer", teacher)
    assert r.code == 0, r.stderr
    folders = {name: tmp_path / name for name in ("t", "s", "sc", "hf", "p")}
    seen = dict(zip(folders, load_elsewhere([{"dir": str(f), "ids": input_ids(300), "text": TEXT} for f in folders.values()])))
    for name, folder in folders.items():
        torch.testing.assert_close(torch.tensor(seen[name]["logits"]), logits_of(load_model(folder), input_ids(300)), atol=1e-5, rtol=0)
        spec = json.loads((folder / "spec.json").read_text()) if name != "p" else None
        data = DataConfig(**spec["data"]) if spec else DataConfig(corpus=str(tmp_path / "hamlet.md"), tokenizer=str(teacher), seq_len=32)
        from distlaw.lab.data import prepare_data

        assert seen[name]["ids"] == encode(prepare_data(data, tmp_path / "cache").tokenizer, TEXT), name
        table = card_table(folder)
        if name == "p":
            record = json.loads((folder / "pruning.json").read_text())
            assert numbers(table["parameters"])[0] == record["params"] == seen[name]["params"][0]
            assert numbers(table["parameters"])[1] == seen[name]["params"][1]
            assert numbers(table["sparsity"])[:2] == [round(record["achieved_sparsity"], 4), record["sparsity"]]
            assert numbers(table["teacher"]) == [record["teacher_params"]] and seen[name]["card"]["base_model"] == record["teacher"]
            assert numbers(table["calibration"])[0] == record["calibration_tokens"]
            continue
        result = json.loads((folder / "result.json").read_text())
        assert numbers(table["parameters"]) == [result["non_embedding_params"], result["total_params"]] == seen[name]["params"]
        assert numbers(table["held-out loss"]) == [round(result["loss"], 4), result["eval_tokens"]]
        assert numbers(table["training tokens"])[:2] == [result["tokens"], result["steps"]]
        if result["teacher_loss"] is not None:
            assert numbers(table["teacher loss"]) == [round(result["teacher_loss"], 4)]
            assert numbers(table["teacher"])[0] == result["teacher_params"] and seen[name]["card"]["tags"] == ["distlaw", "distillation"]
    assert seen["hf"]["chat"] == f"{EOS}user: hi\n" and seen["hf"]["special"]["pad_token"] == EOS
    # the pruned model carries its teacher's tokenizer folder as AutoTokenizer reads it (bos too), not a rebuilt one
    assert seen["p"]["special"] == {"bos_token": EOS, "eos_token": EOS, "pad_token": None}
    assert card_table(folders["p"])["tokenizer"] == f"`{teacher}`, copied with its special tokens and chat template"


@pytest.mark.slow
def test_the_cards_recipe_reruns_the_run(cli, tmp_path, small):
    """The Python of a supervised run's card, run as written (THIS_FOLDER filled in), gives the same loss."""
    assert cli("train", "--params", "3e3", "--tokens", "2048", "--out", tmp_path / "t", *small, "--batch-size", "8",
               "--eval-tokens", "1024").code == 0
    recipe = re.search(r"```python\n(.*?)```", (tmp_path / "t" / "README.md").read_text(), flags=re.S).group(1)
    recipe = recipe.replace("THIS_FOLDER", str(tmp_path / "t")).replace('Path("rerun")', repr(str(tmp_path / "rerun")).join(["Path(", ")"]))
    proc = subprocess.run([sys.executable, "-c", recipe], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first, again = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("t", "rerun"))
    assert again["loss"] == pytest.approx(first["loss"], abs=1e-6) and again["non_embedding_params"] == first["non_embedding_params"]

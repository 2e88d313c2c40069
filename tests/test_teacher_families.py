"""Any decoder-only checkpoint as a teacher (issue 11, items 1-3): for every family, a tiny random checkpoint
teaches a student of its own family online and from a cache, and what the run computes and records (KL,
CE, the objective, validation and teacher losses, parameters, FLOPs) matches a naive computation on
models loaded by plain ``transformers``; padded vocabularies; tokenizers that differ."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers

from distlaw.compute import forward_flops
from distlaw.errors import DistlawError
from distlaw.lab import corpus, distributed, families
from distlaw.lab.config import DataConfig, DistillConfig, OptimConfig, RunSpec
from distlaw.lab.data import prepare_data
from distlaw.lab.losses import objective
from distlaw.lab.teacher_cache import TeacherCache, build_cache
from distlaw.lab.train import TeacherSource, load_batch, train_run
from hf_families import FAMILIES, TOKENIZER_VOCAB, save_hf_tokenizer, tiny_checkpoint, tiny_config, tokenizer

SEQ, BATCH, STEPS, K = 32, 4, 2, 16
TOKENS, EVAL = SEQ * BATCH * STEPS, 256
TARGET = 2.0e4  # non-embedding parameters asked of every student (2 layers x 32: ~17-19k in each family)
LAMBDA = 0.6  # KL and CE both in the objective


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    """A one-play corpus and a shared tokenized-corpus cache."""
    tmp = tmp_path_factory.mktemp("families")
    shutil.copy(next(f for f in corpus.corpus_files("shakespeare") if f.stem == "hamlet"), tmp / "hamlet.md")
    return tmp


def data_config(lab: Path, tokenizer_dir: Path) -> DataConfig:
    return DataConfig(corpus=str(lab / "hamlet.md"), tokenizer=str(tokenizer_dir), seq_len=SEQ, cache_dir=str(lab / "cache"))


def student_spec(lab: Path, teacher: Path, name: str, **distill) -> RunSpec:
    """A student of the teacher's family and conventions (``--like``), sized by N, on the teacher's tokenizer."""
    template = families.template_config(like=teacher)
    shape = families.sized_like(template, TARGET, aspect_ratio=16, head_dim=8, n_ctx=SEQ, vocab_size=TOKENIZER_VOCAB)
    return RunSpec(name=name, kind="distilled", shape=shape, tokens=TOKENS, teacher=str(teacher), data=data_config(lab, teacher),
                   optim=OptimConfig(batch_size=BATCH, lr=1e-2), distill=DistillConfig(weight=LAMBDA, **distill), eval_tokens=EVAL,
                   architecture=families.architecture_of(template))  # fmt: skip


def plain(directory: Path) -> transformers.PreTrainedModel:
    return transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float64).eval()


def naive_terms(student_logits: torch.Tensor, teacher_logp: torch.Tensor, labels: torch.Tensor, z_loss: float) -> dict[str, float]:
    """CE, forward KL summed over the vocabulary per token, and Eq. 7's objective, written out in float64."""
    logq = student_logits.log_softmax(-1)
    ce = F.cross_entropy(student_logits.flatten(0, 1), labels.flatten()).item()
    kl = (teacher_logp.exp() * (teacher_logp - logq)).sum(-1).mean().item()
    z2 = (student_logits.logsumexp(-1) ** 2).mean().item()
    return {"ce": ce, "kl": kl, "total": (1 - LAMBDA) * ce + LAMBDA * kl + z_loss * z2}


def naive_loss(model: transformers.PreTrainedModel, windows: torch.Tensor) -> float:
    """Mean next-token CE over the tokenizer's V logits."""
    with torch.no_grad():
        logits = model(input_ids=windows[:, :-1]).logits[..., :TOKENIZER_VOCAB]
    return F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten()).item()


def distlaw_terms(spec: RunSpec, source: TeacherSource, student: torch.nn.Module, inputs, labels, rows) -> dict[str, float]:
    """The objective as a run computes it: the run's teacher targets, the student's logits in float32."""
    ctx = distributed.setup("cpu")
    with torch.no_grad():
        logits = student.float()(input_ids=inputs).logits
        total, (ce, kl, _) = objective(logits, labels, spec.distill, source.targets(inputs, rows, ctx))
    return {"ce": ce.item(), "kl": kl.item(), "total": total.item()}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_teaches_its_own_family_online_and_cached(lab, tmp_path, family):
    teacher = tiny_checkpoint(family, tmp_path / "teacher", seed=1)
    spec = student_spec(lab, teacher, "online")
    online = train_run(spec, tmp_path / "online", teacher_dir=teacher, progress=False)

    # the student: the teacher's family and conventions, sized by N, trained (its weights moved)
    config = json.loads((tmp_path / "online" / "config.json").read_text())
    assert config["model_type"] == family and config["vocab_size"] == TOKENIZER_VOCAB
    student = plain(tmp_path / "online")
    assert families.count_params(student) == (online.non_embedding_params, online.total_params)
    assert online.non_embedding_params == families.config_params(student.config)[0] and abs(online.non_embedding_params / TARGET - 1) < 0.15
    teacher_model = plain(teacher)
    n_t, total_t = families.count_params(teacher_model)
    assert (online.teacher_params, online.teacher_total_params) == (n_t, total_t)

    # FLOPs from the exact counts of each family (no Llama formula)
    student_f = forward_flops(online.non_embedding_params, config.get("num_hidden_layers", config.get("n_layer")), 32, SEQ, TOKENIZER_VOCAB)
    assert online.flops == pytest.approx(3 * float(student_f) * TOKENS, rel=1e-12)
    assert online.teacher_inference_flops == pytest.approx(float(forward_flops(n_t, 2, 32, SEQ, TOKENIZER_VOCAB)) * TOKENS, rel=1e-12)

    # recorded losses against plain transformers on the same held-out windows
    data = prepare_data(spec.data, lab / "cache")
    val = data.val_windows(SEQ, EVAL)
    assert online.loss == pytest.approx(naive_loss(student, val), abs=1e-5)
    assert online.teacher_loss == pytest.approx(naive_loss(teacher_model, val), abs=1e-5)

    # the objective of a training batch: online teacher
    rows = slice(0, BATCH)
    inputs, labels = load_batch(data, rows, SEQ, spec.order_seed, torch.device("cpu"))
    with torch.no_grad():
        s_logits, t_logits = student(input_ids=inputs).logits, teacher_model(input_ids=inputs).logits
    expected = naive_terms(s_logits, t_logits.log_softmax(-1), labels, spec.distill.z_loss)
    source = TeacherSource(spec, data, distributed.setup("cpu"), teacher, None, STEPS, shard=False)
    got = distlaw_terms(spec, source, plain(tmp_path / "online"), inputs, labels, rows)
    assert got == pytest.approx(expected, abs=1e-5)

    # the same teacher from a top-k cache: the coarse-grained KL over (top-k, rest), from fp16 log-probabilities
    build_cache(teacher, tmp_path / "cache", spec.data, lab / "cache", tokens=TOKENS, k=K, batch_size=BATCH, progress=False)
    cached_spec = student_spec(lab, teacher, "cached", cache_k=K)
    cached = train_run(cached_spec, tmp_path / "cached", teacher_cache=tmp_path / "cache", progress=False)
    assert cached.teacher_loss == pytest.approx(online.teacher_loss, abs=1e-9) and cached.teacher_params == n_t
    assert cached.teacher_inference_flops == 0 and cached.non_embedding_params == online.non_embedding_params
    logp = t_logits.log_softmax(-1)
    top, idx = logp.topk(K, dim=-1)
    top = top.half().double()  # what the cache stores
    log_rest = logp.scatter(-1, idx, float("-inf")).logsumexp(-1)
    logq = s_logits.log_softmax(-1)
    logq_rest = logq.scatter(-1, idx, float("-inf")).logsumexp(-1)
    kl = ((top.exp() * (top - logq.gather(-1, idx))).sum(-1) + log_rest.exp() * (log_rest - logq_rest)).mean().item()
    source = TeacherSource(cached_spec, data, distributed.setup("cpu"), None, tmp_path / "cache", STEPS, shard=False)
    got = distlaw_terms(cached_spec, source, plain(tmp_path / "online"), inputs, labels, rows)
    ce = expected["ce"]
    z2 = (expected["total"] - (1 - LAMBDA) * ce - LAMBDA * expected["kl"]) / spec.distill.z_loss
    assert got == pytest.approx({"ce": ce, "kl": kl, "total": (1 - LAMBDA) * ce + LAMBDA * kl + spec.distill.z_loss * z2}, abs=1e-5)


@pytest.fixture(scope="module")
def padded(lab) -> tuple[Path, Path]:
    """A Llama teacher with 8 embedding rows beyond its tokenizer, and the same teacher whose padding rows
    give huge logits."""
    teacher = tiny_checkpoint("llama", lab / "padded", seed=2, pad_vocab=8)
    model = transformers.AutoModelForCausalLM.from_pretrained(teacher)
    with torch.no_grad():
        model.lm_head.weight[TOKENIZER_VOCAB:] = 1e4 * torch.randn(8, model.config.hidden_size)
    loud = lab / "padded-loud"
    model.save_pretrained(loud)
    save_hf_tokenizer(loud)
    return teacher, loud


def test_a_padded_teacher_is_accepted_and_its_padding_never_counts(lab, tmp_path, padded):
    teacher, loud = padded
    spec = student_spec(lab, teacher, "pad")
    with torch.no_grad():  # the padding is real: its logits dominate the unrestricted softmax
        assert plain(loud)(input_ids=torch.tensor([[1, 2, 3]])).logits.log_softmax(-1)[..., :TOKENIZER_VOCAB].exp().sum() < 1e-3
    results = [train_run(spec, tmp_path / name, teacher_dir=t, progress=False) for name, t in (("a", teacher), ("b", loud))]
    assert results[0].model_dump(exclude={"wall_time_s", "checkpoint"}) == results[1].model_dump(exclude={"wall_time_s", "checkpoint"})
    data = prepare_data(spec.data, lab / "cache")
    assert results[0].teacher_loss == pytest.approx(naive_loss(plain(loud), data.val_windows(SEQ, EVAL)), abs=1e-5)
    for name, t in (("ca", teacher), ("cb", loud)):
        build_cache(t, tmp_path / name, spec.data, lab / "cache", tokens=TOKENS, k=K, batch_size=BATCH, progress=False)
    shards = [[s["sha256"] for s in TeacherCache.open(tmp_path / name).manifest["shards"]] for name in ("ca", "cb")]
    assert shards[0] == shards[1]


def test_a_teacher_with_fewer_rows_than_the_tokenizer_is_refused(lab, tmp_path):
    short = tiny_checkpoint("qwen2", tmp_path / "short", pad_vocab=-20)
    with pytest.raises(DistlawError, match="vocabulary 300 differs from the student's 320: fewer embedding rows"):
        train_run(student_spec(lab, short, "s"), tmp_path / "run", teacher_dir=short, progress=False)
    assert not (tmp_path / "run").exists()


def test_a_different_tokenizer_is_refused_in_one_line_naming_the_first_differing_token(cli, lab, tmp_path):
    teacher = tiny_checkpoint("gpt2", tmp_path / "teacher")
    other = tmp_path / "other-tokenizer"
    ours = tokenizer()
    vocab = ours.get_vocab()
    swapped = dict(vocab)
    a, b = sorted(t for t in vocab if vocab[t] > 300)[:2]
    swapped[a], swapped[b] = vocab[b], vocab[a]
    spec = json.loads(ours.to_str())
    spec["model"]["vocab"] = swapped
    from tokenizers import Tokenizer

    save_hf_tokenizer(other, Tokenizer.from_str(json.dumps(spec)))
    first = min((a, b), key=swapped.get)  # in the data's id order, the first token whose id differs
    r = cli("distill", "--params", "2e4", "--tokens", TOKENS, "--teacher", teacher, "--tokenizer", other, "--corpus", lab / "hamlet.md",
            "--seq-len", SEQ, "--batch-size", BATCH, "--cache-dir", lab / "cache", "--out", tmp_path / "run")
    assert r.code == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"its tokenizer differs from the data's: token {first!r} is id {vocab[first]} there, {swapped[first]} here" in " ".join(r.stderr.split())
    assert not (tmp_path / "run").exists()


def gpt2_files(directory: Path) -> Path:
    """The tiny tokenizer as GPT-2's vocab.json + merges.txt only (no tokenizer.json, no config)."""
    directory.mkdir()
    model = json.loads(tokenizer().to_str())["model"]
    (directory / "vocab.json").write_text(json.dumps(model["vocab"]))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return directory


def with_eos(directory: Path, eos: str) -> Path:
    """The tiny tokenizer plus a special token ``eos`` declared its eos_token (as Llama 2's ``</s>``)."""
    tok = tokenizer()
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_str(tok.to_str())
    tok.add_special_tokens([AddedToken(eos, special=True)])
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos).save_pretrained(str(directory))
    return directory


def test_tokenizer_folders_encode_as_transformers_does(lab, tmp_path):
    """GPT-2 files alone, a tokenizer.json folder and a folder with its own eos token: the token stream is
    AutoTokenizer's encoding of each document followed by that tokenizer's eos_token, and the corpus cache
    key follows the tokenizer's content."""
    json_dir = tmp_path / "json"
    save_hf_tokenizer(json_dir)
    folders = {"gpt2": gpt2_files(tmp_path / "gpt2"), "json": json_dir, "eos": with_eos(tmp_path / "eos", "</s>")}
    docs = list(corpus.documents(str(lab / "hamlet.md")))
    keys = {}
    for name, folder in folders.items():
        data = prepare_data(data_config(lab, folder), tmp_path / "cache")
        if name == "gpt2":  # the same vocabulary and merges: the tokenizers library's own encoding
            encode, eos = (lambda doc: tokenizer().encode(doc).ids), tokenizer().token_to_id("<|endoftext|>")
        else:
            hf = transformers.AutoTokenizer.from_pretrained(folder)
            encode, eos = (lambda doc: hf(doc)["input_ids"]), hf.convert_tokens_to_ids(hf.eos_token)
        stream = torch.tensor([i for doc in docs for i in [*encode(doc), eos]])
        is_val = torch.zeros(len(stream), dtype=torch.bool)
        block = data.meta["block"]
        for start in range(0, len(stream), block):  # every 1/fraction-th block is held out
            index = start // block
            is_val[start : start + block] = int((index + 1) * 0.04) > int(index * 0.04)
        assert torch.equal(torch.from_numpy(data.train.astype("int64")), stream[~is_val])
        assert torch.equal(torch.from_numpy(data.val.astype("int64")), stream[is_val])
        keys[name] = data.key
    assert eos == TOKENIZER_VOCAB and data.vocab_size == TOKENIZER_VOCAB + 1  # the eos folder's own token separates documents
    assert len(set(keys.values())) == 3
    assert prepare_data(data_config(lab, folders["json"]), tmp_path / "cache").key == keys["json"]


def test_cli_students_like_a_teacher_and_of_a_builtin_family(cli, lab, tmp_path):
    """`distill --like` on the teacher's own tokenizer by default, `train --family gpt2`: both run and record
    their architecture (the run key changes with it)."""
    teacher = tiny_checkpoint("qwen3", tmp_path / "qwen3")
    common = ["--tokens", TOKENS, "--corpus", lab / "hamlet.md", "--seq-len", SEQ, "--batch-size", BATCH, "--cache-dir", lab / "cache",
              "--eval-tokens", EVAL, "--quiet", "--json"]
    r = cli("distill", "--params", "2e4", "--teacher", teacher, "--like", teacher, "--out", tmp_path / "kd", *common)
    assert r.code == 0, r.stderr
    spec = json.loads((tmp_path / "kd" / "spec.json").read_text())
    assert spec["architecture"]["model_type"] == "qwen3" and spec["data"]["tokenizer"] == str(teacher)
    assert r.json()["teacher_params"] == families.count_params(plain(teacher))[0]
    r = cli("train", "--params", "2e4", "--family", "gpt2", "--out", tmp_path / "g", *common)
    assert r.code == 0, r.stderr
    assert json.loads((tmp_path / "g" / "config.json").read_text())["model_type"] == "gpt2"
    assert json.loads((tmp_path / "g" / "spec.json").read_text())["data"]["tokenizer"] == "byte"
    r = cli("train", "--params", "2e4", "--family", "gpt_neox", "--out", tmp_path / "g", *common)
    assert r.code == 2 and "holds a different run" in r.stderr and "architecture" in r.stderr


def test_cli_refuses_architecture_with_init(cli, tmp_path):
    r = cli("train", "--init", tmp_path, "--family", "gpt2", "--tokens", "1e4", "--out", tmp_path / "x")
    assert r.code == 2 and "--init gives the model's shape and architecture" in r.stderr


def test_tiny_configs_are_what_the_tests_assume():
    assert all(tiny_config(f).vocab_size == TOKENIZER_VOCAB for f in FAMILIES)


def test_corpus_keys_hash_the_tokenizers_content():
    """Vocabulary, added tokens and post-processor all move the key; a tokenizer that separates documents
    with <|endoftext|> keeps the key of the rule before tokenizer folders (the hash of its serialisation)."""
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing

    from distlaw.lab.tokenizer import EOS_ATTRIBUTE, fingerprint

    base = tokenizer()
    assert fingerprint(base) == hashlib.sha256(base.to_str().encode()).hexdigest()[:16]
    added = Tokenizer.from_str(base.to_str())
    added.add_tokens(["zz"])
    bos = Tokenizer.from_str(base.to_str())
    bos.post_processor = TemplateProcessing(single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 0)])
    other_eos = Tokenizer.from_str(base.to_str())
    setattr(other_eos, EOS_ATTRIBUTE, "Ġthe")
    assert len({fingerprint(t) for t in (base, added, bos, other_eos)}) == 4

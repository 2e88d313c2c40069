"""train_run: determinism, resume, stored results, distillation online and from a teacher cache, bad input."""

import shutil
from pathlib import Path

import pytest
import torch

from distlaw.compute import ModelShape
from distlaw.errors import DistlawError
from distlaw.lab import corpus, train
from distlaw.lab.config import DataConfig, DistillConfig, OptimConfig, RunSpec
from distlaw.lab.model import build_model
from distlaw.lab.teacher_cache import TeacherCache, build_cache
from distlaw.lab.train import RunResult, train_run

SEQ, BATCH, STEPS = 32, 8, 24


def make_spec(tmp: Path, name: str = "run", kind: str = "supervised", params: float = 3e3, seed: int = 0, **distill) -> RunSpec:
    shape = ModelShape.from_params(params, aspect_ratio=16, head_dim=8, vocab_size=256, n_ctx=SEQ)
    data = DataConfig(corpus=str(tmp / "hamlet.md"), seq_len=SEQ, cache_dir=str(tmp / "cache"))
    return RunSpec(
        name=name, kind=kind, shape=shape, tokens=SEQ * BATCH * STEPS, data=data, eval_tokens=4096,
        optim=OptimConfig(batch_size=BATCH, seed=seed, lr=1e-2), distill=DistillConfig(**distill),
        teacher="teacher" if kind == "distilled" else None,
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A one-play corpus and a trained teacher (12k parameters) shared by the tests of this module."""
    tmp = tmp_path_factory.mktemp("lab")
    shutil.copy(next(f for f in corpus.corpus_files("shakespeare") if f.stem == "hamlet"), tmp / "hamlet.md")
    teacher = train_run(make_spec(tmp, "teacher", params=1.2e4), tmp / "teacher", progress=False)
    return tmp, teacher


def test_result_counts_and_accounting(lab, tmp_path):
    tmp, _ = lab
    spec = make_spec(tmp)
    result = train_run(spec, tmp_path / "a", progress=False)
    tokens = SEQ * BATCH * STEPS
    assert (result.steps, result.tokens, result.eval_tokens) == (STEPS, tokens, 4096)
    assert result.non_embedding_params == spec.shape.non_embedding_params
    assert result.total_params == spec.shape.non_embedding_params + spec.shape.embedding_params
    assert result.flops == pytest.approx(3 * spec.shape.forward_flops_per_token() * tokens)
    assert result.teacher_inference_flops == 0 and result.teacher_loss is None
    assert 2.0 < result.loss < 5.6  # learned something: uniform over bytes is ln 256 = 5.55
    assert RunResult.model_validate_json(result.model_dump_json()) == result


def test_same_seed_reproduces_the_loss_and_another_seed_does_not(lab, tmp_path):
    tmp, _ = lab
    first = train_run(make_spec(tmp, seed=3), tmp_path / "a", progress=False)
    again = train_run(make_spec(tmp, seed=3), tmp_path / "b", progress=False)
    other = train_run(make_spec(tmp, seed=4), tmp_path / "c", progress=False)
    assert abs(first.loss - again.loss) <= 1e-6
    assert abs(first.loss - other.loss) > 1e-4


def test_resume_after_interruption_reproduces_the_uninterrupted_run(lab, tmp_path, monkeypatch):
    tmp, _ = lab
    spec = make_spec(tmp, seed=5)
    uninterrupted = train_run(spec, tmp_path / "whole", progress=False)
    calls = {"n": 0}
    real_objective = train.objective

    def crash_at_step_17(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 17:
            raise KeyboardInterrupt
        return real_objective(*args, **kwargs)

    monkeypatch.setattr(train, "objective", crash_at_step_17)
    with pytest.raises(KeyboardInterrupt):
        train_run(spec, tmp_path / "killed", progress=False, checkpoint_every=5)
    assert (tmp_path / "killed" / "resume.pt").is_file() and not (tmp_path / "killed" / "result.json").exists()
    assert torch.load(tmp_path / "killed" / "resume.pt", weights_only=False)["step"] == 15
    monkeypatch.setattr(train, "objective", real_objective)
    resumed = train_run(spec, tmp_path / "killed", progress=False, checkpoint_every=5)
    assert abs(resumed.loss - uninterrupted.loss) <= 1e-6
    assert not (tmp_path / "killed" / "resume.pt").exists()


def test_finished_run_returns_its_stored_result_without_training(lab, monkeypatch):
    tmp, teacher = lab

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(train, "build_model", no_training)
    assert train_run(make_spec(tmp, "teacher", params=1.2e4), tmp / "teacher", progress=False) == teacher
    with pytest.raises(DistlawError, match="holds a different run"):
        train_run(make_spec(tmp, "teacher", params=3e3), tmp / "teacher", progress=False)


def test_run_directory_is_a_hugging_face_checkpoint(lab):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp, _ = lab
    model = AutoModelForCausalLM.from_pretrained(tmp / "teacher", local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(tmp / "teacher", local_files_only=True)
    assert tokenizer("to be")["input_ids"] == list(b"to be")
    assert model.config.vocab_size == 256


def test_online_distillation_and_full_cache_agree(lab, tmp_path):
    """A cache holding every token (k = V) is the online teacher up to fp16 rounding; its teacher FLOPs are
    paid once at build time instead of by every student."""
    tmp, teacher = lab
    spec = make_spec(tmp, "student", kind="distilled")
    online = train_run(spec, tmp_path / "online", teacher_dir=tmp / "teacher", progress=False)
    assert online.teacher_loss == pytest.approx(teacher.loss, abs=1e-9)  # same held-out tokens
    assert online.teacher_params == teacher.non_embedding_params
    teacher_f = ModelShape.from_params(1.2e4, aspect_ratio=16, head_dim=8, vocab_size=256, n_ctx=SEQ).forward_flops_per_token()
    assert online.teacher_inference_flops == pytest.approx(teacher_f * online.tokens)

    manifest = build_cache(tmp / "teacher", tmp_path / "cache", spec.data, tmp, tokens=online.tokens, k=256,
                           batch_size=BATCH, progress=False)
    assert manifest["build_flops"] == pytest.approx(online.teacher_inference_flops)
    cached_spec = make_spec(tmp, "student", kind="distilled", cache_k=256)
    cached = train_run(cached_spec, tmp_path / "cached", teacher_cache=tmp_path / "cache", progress=False)
    assert cached.teacher_inference_flops == 0
    assert cached.teacher_loss == pytest.approx(teacher.loss, abs=1e-9)
    assert cached.loss == pytest.approx(online.loss, abs=1e-3)
    assert cached.loss < train_run(make_spec(tmp, "student"), tmp_path / "sup", progress=False).loss + 0.5


def test_bad_teachers_and_caches_fail_before_writing_anything(lab, tmp_path):
    tmp, teacher = lab
    spec = make_spec(tmp, "student", kind="distilled")
    other_vocab = ModelShape.from_params(3e3, aspect_ratio=16, head_dim=8, vocab_size=300, n_ctx=SEQ)
    build_model(other_vocab, 0).save_pretrained(tmp_path / "wide")
    with pytest.raises(DistlawError, match="vocabulary 300 differs from the student's 256"):
        train_run(spec, tmp_path / "r1", teacher_dir=tmp_path / "wide", progress=False)

    build_cache(tmp / "teacher", tmp_path / "cache", spec.data, tmp, tokens=spec.tokens, k=8, batch_size=BATCH, progress=False)
    cached = make_spec(tmp, "student", kind="distilled", cache_k=8)
    with pytest.raises(DistlawError, match="order seed 0, the run uses 9"):
        train_run(make_spec(tmp, "student", kind="distilled", seed=9, cache_k=8), tmp_path / "r2", teacher_cache=tmp_path / "cache", progress=False)
    with pytest.raises(DistlawError, match="temperature"):
        train_run(make_spec(tmp, "student", kind="distilled", temperature=2.0, cache_k=8), tmp_path / "r3", teacher_cache=tmp_path / "cache", progress=False)
    with pytest.raises(DistlawError, match="holds top-8, the run wants distill.cache_k = 16"):
        train_run(make_spec(tmp, "student", kind="distilled", cache_k=16), tmp_path / "r6", teacher_cache=tmp_path / "cache", progress=False)
    with pytest.raises(DistlawError, match="exactly when distill.cache_k is set"):
        train_run(spec, tmp_path / "r7", teacher_cache=tmp_path / "cache", progress=False)
    with pytest.raises(DistlawError, match="exactly when distill.cache_k is set"):
        train_run(cached, tmp_path / "r8", teacher_dir=tmp / "teacher", progress=False)
    shard = tmp_path / "cache" / TeacherCache.open(tmp_path / "cache").manifest["shards"][0]["file"]
    raw = bytearray(shard.read_bytes())
    raw[-5] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(DistlawError, match="shard-00000.safetensors is corrupted"):
        train_run(cached, tmp_path / "r4", teacher_cache=tmp_path / "cache", progress=False)
    with pytest.raises(DistlawError, match="needs a teacher"):
        train_run(spec, tmp_path / "r5", progress=False)
    assert not any((tmp_path / f"r{i}").exists() for i in range(1, 9))


@pytest.mark.slow
def test_resume_after_sigkill_reproduces_the_uninterrupted_run(lab, tmp_path):
    """A real kill -9 of a `distlaw train` process, then `train_run` on the same directory."""
    import os
    import signal
    import subprocess
    import sys
    import time

    tmp, _ = lab
    spec = make_spec(tmp, "long", seed=7).model_copy(update={"tokens": SEQ * BATCH * 400})
    run_dir = tmp_path / "killed"
    (tmp_path / "spec.json").write_text(spec.model_dump_json())
    script = (
        "import sys; from pathlib import Path; from distlaw.lab.config import RunSpec; from distlaw.lab.train import train_run; "
        "train_run(RunSpec.model_validate_json(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), progress=False, checkpoint_every=10)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "spec.json"), str(run_dir)])
    deadline = time.time() + 120
    while not (run_dir / "resume.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run_dir / "resume.pt").is_file() and not (run_dir / "result.json").exists()
    resumed = train_run(spec, run_dir, progress=False, checkpoint_every=10)
    uninterrupted = train_run(spec, tmp_path / "whole", progress=False)
    assert abs(resumed.loss - uninterrupted.loss) <= 1e-6

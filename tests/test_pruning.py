"""Structured pruning (Zhang et al. 2023, arXiv 2311.07052): importance against finite differences, planted dead
units, parameter counts, checkpoints that load back, the command line and bad input."""

import copy
import json
import shutil

import pytest
import torch
import typer
from transformers.models.llama.modeling_llama import LlamaRMSNorm
from typer.testing import CliRunner

from distlaw.cli.prune import register
from distlaw.compute import ModelShape
from distlaw.errors import DistlawError
from distlaw.lab import corpus
from distlaw.lab.config import DataConfig, OptimConfig, RunSpec
from distlaw.lab.data import prepare_data, window_ids
from distlaw.lab.families import count_params
from distlaw.lab.model import build_model, load_model, shape_of
from distlaw.lab.pruning import Importance, importance_scores, next_token_loss, prune_checkpoint, prune_model, pruned_shape
from distlaw.lab.runtime import window_losses
from distlaw.lab.train import train_run
from hf_families import tiny_checkpoint

SEQ = 32
TINY = ModelShape(n_layers=2, d_model=32, n_heads=4, d_ff=64, vocab_size=256, n_ctx=SEQ)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One play as corpus and a teacher of shape TINY trained for 300 steps (~2 s), shared by this module."""
    tmp = tmp_path_factory.mktemp("prune")
    shutil.copy(next(f for f in corpus.corpus_files("shakespeare") if f.stem == "hamlet"), tmp / "hamlet.md")
    data = DataConfig(corpus=str(tmp / "hamlet.md"), seq_len=SEQ, cache_dir=str(tmp / "cache"))
    spec = RunSpec(name="teacher", kind="supervised", shape=TINY, tokens=SEQ * 16 * 300, data=data, eval_tokens=4096,
                   optim=OptimConfig(batch_size=16, lr=1e-2))
    train_run(spec, tmp / "teacher", progress=False)
    return tmp, data, prepare_data(data, tmp / "cache")


def random_importance(shape: ModelShape, seed: int) -> Importance:
    g = torch.Generator().manual_seed(seed)
    return Importance(*(torch.rand(s, generator=g) for s in ((shape.n_layers, shape.n_heads), (shape.n_layers, shape.d_ff), (shape.d_model,))), windows=0)


def calibration(shape: ModelShape, n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, shape.vocab_size, (n, SEQ + 1), generator=torch.Generator().manual_seed(seed))


def test_sparsity_zero_keeps_the_teacher_and_importance_leaves_it_untouched():
    model = build_model(TINY, 0)
    before = copy.deepcopy(model.state_dict())
    importance = importance_scores(model, calibration(TINY), batch_size=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert importance.heads.shape == (2, 4) and importance.neurons.shape == (2, 64) and importance.hidden.shape == (32,)
    assert importance.windows == 4 and (importance.heads > 0).all() and (importance.hidden > 0).all()
    student = prune_model(model, importance, sparsity=0.0)
    assert shape_of(student) == TINY
    x = calibration(TINY, 3, seed=1)[:, :-1]
    assert torch.allclose(student(input_ids=x).logits, model(input_ids=x).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.75])
def test_pruned_parameter_counts(sparsity):
    teacher_shape = ModelShape(n_layers=2, d_model=128, n_heads=8, d_ff=344, vocab_size=64, n_ctx=SEQ)
    teacher = build_model(teacher_shape, 0)
    student = prune_model(teacher, random_importance(teacher_shape, 0), sparsity=sparsity)
    shape = shape_of(student)
    embedding = {"model.embed_tokens.weight", "lm_head.weight"}
    brute = sum(p.numel() for name, p in student.named_parameters() if name not in embedding)
    assert brute == count_params(student)[0] == shape.non_embedding_params
    assert brute == pytest.approx((1 - sparsity) * teacher_shape.non_embedding_params, rel=0.03)
    assert shape.head_dim == teacher_shape.head_dim == student.model.layers[0].self_attn.head_dim
    assert shape.d_model % shape.n_heads == 0 and shape.vocab_size == teacher_shape.vocab_size
    # every component keeps about sqrt(1 - p): the split of Zhang et al.
    keep = (1 - sparsity) ** 0.5
    for kept, full in ((shape.n_heads, 8), (shape.d_ff, 344), (shape.d_model, 128)):
        assert kept / full == pytest.approx(keep, abs=0.1)


@pytest.mark.parametrize("fraction", [0.1, 0.4, 0.9])
def test_target_params_is_hit_closely(fraction):
    shape = ModelShape(n_layers=2, d_model=128, n_heads=8, d_ff=344, vocab_size=64, n_ctx=SEQ)
    target = round(fraction * shape.non_embedding_params)
    pruned = pruned_shape(shape, target_params=target)
    assert pruned.non_embedding_params == pytest.approx(target, rel=0.03)
    student = prune_model(build_model(shape, 0), random_importance(shape, 1), target_params=target)
    assert count_params(student)[0] == pruned.non_embedding_params
    with pytest.raises(DistlawError, match="another shape"):
        prune_model(build_model(shape, 0), random_importance(TINY, 1), target_params=target)


def finite_difference(model, windows, scale, eps=1e-5) -> float:
    """Central difference of the loss in one unit's scale: weights multiplied by 1 +- eps act as a mask of 1 +- eps
    (computed on copies, without the masking hooks)."""
    losses = []
    for factor in (1 + eps, 1 - eps):
        twin = copy.deepcopy(model)
        with torch.no_grad():
            scale(twin, factor)
            losses.append(float(next_token_loss(twin, windows)))
    return (losses[0] - losses[1]) / (2 * eps)


def scale_head(layer, h, hd):
    return lambda m, f: m.model.layers[layer].self_attn.o_proj.weight[:, h * hd : (h + 1) * hd].mul_(f)


def scale_neuron(layer, n):
    return lambda m, f: m.model.layers[layer].mlp.down_proj.weight[:, n].mul_(f)


def scale_hidden(j):
    def scale(m, f):  # every write to the residual stream: embedding column, o_proj and down_proj rows
        m.model.embed_tokens.weight[:, j].mul_(f)
        for layer in m.model.layers:
            layer.self_attn.o_proj.weight[j].mul_(f)
            layer.mlp.down_proj.weight[j].mul_(f)
    return scale


def rms_norm_in_float64(self, x):
    """Llama's RMSNorm without its float32 round trip, which would drown a float64 finite difference in noise."""
    return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)


def test_importance_matches_finite_differences(monkeypatch):
    monkeypatch.setattr(LlamaRMSNorm, "forward", rms_norm_in_float64)
    shape = ModelShape(n_layers=2, d_model=16, n_heads=2, d_ff=24, vocab_size=40, n_ctx=SEQ)
    model = build_model(shape, 3).double()
    windows = calibration(shape, 3)
    importance = importance_scores(model, windows, batch_size=len(windows))  # one batch: |dL/dmask| itself
    cases = [(importance.heads[1, 0], scale_head(1, 0, shape.head_dim)), (importance.heads[0, 1], scale_head(0, 1, shape.head_dim)),
             (importance.neurons[0, 5], scale_neuron(0, 5)), (importance.neurons[1, 17], scale_neuron(1, 17)),
             (importance.hidden[3], scale_hidden(3)), (importance.hidden[11], scale_hidden(11))]
    for score, scale in cases:
        assert float(score) > 1e-7  # a real signal, far above the finite-difference noise (~1e-11)
        assert float(score) == pytest.approx(abs(finite_difference(model, windows, scale)), rel=1e-6, abs=1e-10)
    # several batches: the mean of each batch's |dL/dmask|, weighted by its number of windows
    parts = [importance_scores(model, windows[:2], 2), importance_scores(model, windows[2:], 2)]
    batched = importance_scores(model, windows, batch_size=2)
    for name in ("heads", "neurons", "hidden"):
        expected = (2 * getattr(parts[0], name) + getattr(parts[1], name)) / 3
        assert torch.allclose(getattr(batched, name), expected, rtol=1e-12, atol=0)


def test_planted_dead_units_are_pruned_first_and_pruning_them_is_lossless():
    shape = ModelShape(n_layers=2, d_model=32, n_heads=4, d_ff=64, vocab_size=64, n_ctx=SEQ)
    model = build_model(shape, 5)
    hd = shape.head_dim
    dead_heads, dead_neurons = [[0, 3], [1, 2]], [list(range(0, 64, 2)), list(range(32, 64))]
    dead_hidden = list(range(1, 32, 2))
    with torch.no_grad():  # dead units write nothing: zero o_proj columns, down_proj columns, residual-stream rows
        for layer, heads, neurons in zip(model.model.layers, dead_heads, dead_neurons):
            for h in heads:
                layer.self_attn.o_proj.weight[:, h * hd : (h + 1) * hd] = 0
            layer.mlp.down_proj.weight[:, neurons] = 0
            layer.self_attn.o_proj.weight[dead_hidden] = 0
            layer.mlp.down_proj.weight[dead_hidden] = 0
        model.model.embed_tokens.weight[:, dead_hidden] = 0
    importance = importance_scores(model, calibration(shape, 6), batch_size=3)
    for i in range(2):
        alive_heads = [h for h in range(4) if h not in dead_heads[i]]
        assert (importance.heads[i, dead_heads[i]] == 0).all() and (importance.heads[i, alive_heads] > 0).all()
        alive = torch.ones(64, dtype=torch.bool)
        alive[dead_neurons[i]] = False
        assert (importance.neurons[i, ~alive] == 0).all() and (importance.neurons[i, alive] > 0).all()
    assert (importance.hidden[dead_hidden] == 0).all() and (importance.hidden[::2] > 0).all()
    student = prune_model(model, importance, sparsity=0.75)  # keeps sqrt(0.25) = half of every component
    assert (shape_of(student).n_heads, shape_of(student).d_ff, shape_of(student).d_model) == (2, 32, 16)
    x = calibration(shape, 3, seed=2)[:, :-1]
    assert torch.allclose(student(input_ids=x).logits, model(input_ids=x).logits, atol=1e-5, rtol=0)


def test_importance_beats_random_pruning_on_a_trained_model(lab):
    tmp, _, data = lab
    teacher = load_model(tmp / "teacher")
    windows = data.train_windows(window_ids(0, 64, data.n_windows(SEQ), 0), SEQ)
    importance = importance_scores(teacher, windows, batch_size=16)
    val, cpu = data.val_windows(SEQ, 4096), torch.device("cpu")
    teacher_loss = float(window_losses(teacher, val, cpu).mean())
    for sparsity in (0.3, 0.5):
        pruned = float(window_losses(prune_model(teacher, importance, sparsity=sparsity), val, cpu).mean())
        random = [float(window_losses(prune_model(teacher, random_importance(TINY, s), sparsity=sparsity), val, cpu).mean()) for s in range(5)]
        # better than random on average and than most random draws (one lucky draw may keep a better head)
        assert teacher_loss < pruned < sum(random) / len(random)
        assert sum(pruned < r for r in random) >= 4, (pruned, random)


def test_pruned_checkpoint_round_trip(lab):
    tmp, data_cfg, data = lab
    record = prune_checkpoint(tmp / "teacher", tmp / "pruned", data_cfg, tmp / "cache", sparsity=0.5, calibration_tokens=40 * SEQ,
                              batch_size=16, seed=7, device="cpu", progress=False)
    assert json.loads((tmp / "pruned" / "pruning.json").read_text()) == record
    assert record["calibration_tokens"] == 40 * SEQ and record["teacher_params"] == TINY.non_embedding_params
    expected = pruned_shape(TINY, sparsity=0.5)
    assert (record["kept_heads"], record["kept_neurons"], record["kept_hidden"]) == (expected.n_heads, expected.d_ff, expected.d_model)
    assert record["params"] == expected.non_embedding_params
    assert record["achieved_sparsity"] == pytest.approx(0.5, abs=0.03)
    loaded = load_model(tmp / "pruned")
    assert shape_of(loaded) == expected and (tmp / "pruned" / "tokenizer.json").is_file()
    teacher = load_model(tmp / "teacher")
    windows = data.train_windows(window_ids(0, 40, data.n_windows(SEQ), 7), SEQ)
    in_memory = prune_model(teacher, importance_scores(teacher, windows, batch_size=16), sparsity=0.5)
    x = data.val_windows(SEQ, 4 * SEQ)[:, :-1]
    assert torch.allclose(loaded(input_ids=x).logits, in_memory(input_ids=x).logits, atol=1e-6, rtol=0)
    # a pruned model (head_dim != d_model / n_heads) is an ordinary checkpoint: a teacher, or itself pruned
    spec = RunSpec(name="s", kind="distilled", shape=ModelShape.from_dims(1, 16, n_ctx=SEQ, vocab_size=256, head_dim=8), tokens=SEQ * 8 * 4,
                   teacher=str(tmp / "pruned"), data=data_cfg, eval_tokens=1024, optim=OptimConfig(batch_size=8))
    assert train_run(spec, tmp / "student", teacher_dir=tmp / "pruned", progress=False).teacher_params == record["params"]
    again = prune_checkpoint(tmp / "pruned", tmp / "pruned2", data_cfg, tmp / "cache", target_params=record["params"] // 2,
                             calibration_tokens=8 * SEQ, device="cpu", progress=False)
    assert shape_of(load_model(tmp / "pruned2")).non_embedding_params == again["params"]
    assert again["params"] == pytest.approx(record["params"] / 2, rel=0.1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(sparsity=1.0), "must be in [0, 1)"),
        (dict(sparsity=-0.1), "must be in [0, 1)"),
        (dict(), "give a width target"),
        (dict(sparsity=0.5, target_params=1000), "at most one of"),
        (dict(sparsity=0.5, method="taylor"), "--method 'taylor'"),
        (dict(depth=2), "--depth 2 must remove"),
        (dict(keep_layers="1:-1"), "keeps no layer"),
        (dict(keep_layers="0,5"), "layer 5 is out of range"),
        (dict(target_params=10**9), "out of range"),
        (dict(target_params=10), "out of range"),
    ],
)
def test_bad_requests_write_nothing(lab, tmp_path, kwargs, message):
    tmp, data_cfg, _ = lab
    with pytest.raises(DistlawError, match=message.replace("[", r"\[").replace(")", r"\)")):
        prune_checkpoint(tmp / "teacher", tmp_path / "out", data_cfg, tmp / "cache", device="cpu", progress=False, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_and_unprunable_families_are_refused(lab, tmp_path):
    tmp, data_cfg, _ = lab
    (tmp_path / "out").mkdir()
    with pytest.raises(DistlawError, match="already exists"):
        prune_checkpoint(tmp / "teacher", tmp_path / "out", data_cfg, tmp / "cache", sparsity=0.5, progress=False)
    assert list((tmp_path / "out").iterdir()) == []
    tiny_checkpoint("phi3", tmp_path / "phi3")
    with pytest.raises(DistlawError, match="cannot prune a phi3 model .distlaw prunes llama, mistral, qwen2, qwen3, gpt_neox, gpt2"):
        prune_checkpoint(tmp_path / "phi3", tmp_path / "out2", data_cfg, tmp / "cache", sparsity=0.5, progress=False)
    assert not (tmp_path / "out2").exists()


def _cli(*args):
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return CliRunner().invoke(app, [str(a) for a in args])


def test_command_line(lab, tmp_path):
    tmp, _, _ = lab
    common = ["--corpus", tmp / "hamlet.md", "--seq-len", SEQ, "--cache-dir", tmp / "cache", "--calibration-tokens", 8 * SEQ, "--quiet"]
    r = _cli("prune", tmp / "teacher", "--out", tmp_path / "s", "--params", 6000, "--json", *common)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["params"] == pruned_shape(TINY, target_params=6000).non_embedding_params
    assert load_model(tmp_path / "s").config.hidden_size == json.loads(r.stdout)["kept_hidden"]
    for flags, message in (([], "give a width target"), (["--sparsity", 0.5, "--params", 6000], "at most one of --sparsity")):
        r = _cli("prune", tmp / "teacher", "--out", tmp_path / "t", *flags, *common)
        assert isinstance(r.exception, DistlawError) and message in str(r.exception)
    assert not (tmp_path / "t").exists()
    r = _cli("prune", "--help")
    assert r.exit_code == 0 and "2311.07052" in r.stdout

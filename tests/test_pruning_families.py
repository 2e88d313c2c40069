"""Pruning beyond Llama (issue 11, item 4): every family of ``PRUNABLE`` (tiny random checkpoints), grouped-query
attention, activation importance against a naive loop, depth pruning against layers removed by hand, and
pruned folders reloaded by plain ``transformers`` in a subprocess."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers.pytorch_utils import Conv1D

from distlaw.lab import corpus
from distlaw.lab.config import DataConfig
from distlaw.lab.data import prepare_data, window_ids
from distlaw.lab.families import config_params, count_params, shape_of
from distlaw.lab.model import load_model
from distlaw.lab.prunable import layout_of
from distlaw.lab.pruned import pruned_shape
from distlaw.lab.pruning import (Selection, cut, drop_layers, importance_scores, layer_importance, next_token_loss,
                                 prune_checkpoint, prune_model)
from hf_families import PRUNABLE, tiny_checkpoint, tiny_config

SEQ = 16
# Where each family's attention and FFN output projections are (their inputs hold heads and neurons), and its decoder.
OUTPUTS = {"gpt_neox": ("attention.dense", "mlp.dense_4h_to_h"), "gpt2": ("attn.c_proj", "mlp.c_proj")}
BASES = {"gpt_neox": ("gpt_neox", "layers", "embed_in"), "gpt2": ("transformer", "h", "wte")}
RMS_FAMILIES = [f for f in PRUNABLE if f not in OUTPUTS]


def tiny_model(family: str, seed: int = 0, **overrides) -> transformers.PreTrainedModel:
    config = tiny_config(family)
    for key, value in overrides.items():
        setattr(config, key, value)
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[0]] * config.num_hidden_layers
    torch.manual_seed(seed)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


def decoder_layers(model, family: str) -> nn.ModuleList:
    base, layers, _ = BASES.get(family, ("model", "layers", "embed_tokens"))
    return getattr(getattr(model, base), layers)


def ids(n: int = 3, seed: int = 1, length: int = SEQ + 1) -> torch.Tensor:
    return torch.randint(0, 320, (n, length), generator=torch.Generator().manual_seed(seed))


def logits(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=x).logits


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A small corpus (one play) and a tiny checkpoint of every prunable family, with the BPE tokenizer."""
    tmp = tmp_path_factory.mktemp("families")
    shutil.copy(next(f for f in corpus.corpus_files("shakespeare") if f.stem == "hamlet"), tmp / "hamlet.md")
    teachers = {family: tiny_checkpoint(family, tmp / family) for family in PRUNABLE}
    data = DataConfig(corpus=str(tmp / "hamlet.md"), tokenizer=str(teachers["llama"]), seq_len=SEQ, cache_dir=str(tmp / "cache"))
    return tmp, teachers, data


@pytest.mark.parametrize("family", PRUNABLE)
def test_layout_counts_are_the_modules_counts(family):
    """The torch-free count of a layout is the exact non-embedding count of the model built from the config,
    also for pruned shapes and family variants with other bias settings."""
    variants = {"llama": [{}, {"attention_bias": True, "mlp_bias": True}], "qwen3": [{}, {"attention_bias": True}],
                "gpt_neox": [{}, {"attention_bias": False}]}.get(family, [{}])
    for overrides in variants:
        config = tiny_config(family)
        for key, value in overrides.items():
            setattr(config, key, value)
        layout = layout_of(config.to_dict())
        shape = shape_of(config)
        assert layout.count(shape) == config_params(config)[0]
        model = transformers.AutoModelForCausalLM.from_config(config)
        for sparsity in (0.3, 0.6):
            pruned = prune_model(model, importance_scores(model, ids(2), 2, method="activation"), sparsity=sparsity)
            assert count_params(pruned)[0] == layout.count(shape_of(pruned.config)), (overrides, sparsity)


@pytest.mark.parametrize("family", PRUNABLE)
def test_sparsity_zero_is_the_teacher_and_targets_are_hit(family):
    model = tiny_model(family)
    teacher_params = count_params(model)[0]
    x = ids()[:, :-1]
    for method in ("mask-gradient", "activation"):
        importance = importance_scores(model, ids(4, seed=2), batch_size=2, method=method)
        same = prune_model(model, importance, sparsity=0.0)
        assert torch.allclose(logits(same, x), logits(model, x), atol=1e-5, rtol=0)
        for sparsity in (0.3, 0.5):
            student = prune_model(model, importance, sparsity=sparsity)
            assert count_params(student)[0] == pytest.approx((1 - sparsity) * teacher_params, rel=0.03)
        for fraction in (0.25, 0.7):
            student = prune_model(model, importance, target_params=round(fraction * teacher_params))
            assert count_params(student)[0] == pytest.approx(fraction * teacher_params, rel=0.03)
    # depth: one layer of two dropped, with a width target for the one-layer model
    target = round(0.3 * teacher_params)
    student = prune_model(model, importance, target_params=target, layers=1)
    shallow = drop_layers(student, [1])
    assert shape_of(shallow.config).n_layers == 1 and count_params(shallow)[0] == pytest.approx(target, rel=0.03)
    assert count_params(shallow)[0] == layout_of(model.config.to_dict()).count(shape_of(shallow.config))


def zero_inputs(module: nn.Module, index: list[int]) -> None:
    """Zero the weights that read input features ``index`` (Linear stores (out, in), GPT-2's Conv1D (in, out))."""
    if isinstance(module, Conv1D):
        module.weight[index, :] = 0
    else:
        module.weight[:, index] = 0


def zero_outputs(module: nn.Module, index: list[int]) -> None:
    """Zero what a projection writes to output features ``index`` (weights and bias)."""
    if isinstance(module, Conv1D):
        module.weight[:, index] = 0
    else:
        module.weight[index, :] = 0
    if module.bias is not None:
        module.bias[index] = 0


def hand_masked(model, family: str, groups: list[list[int]], neurons: list[list[int]], hidden: list[int] | None = None):
    """The teacher with every head outside the kept key/value ``groups`` and every neuron outside ``neurons``
    writing nothing, and (``hidden``) the residual stream zero outside the kept hidden units."""
    twin = copy.deepcopy(model)
    shape = shape_of(model.config)
    group_size, hd = shape.n_heads // (shape.n_kv_heads or shape.n_heads), shape.head_dim
    attn_out, ffn_out = OUTPUTS.get(family, ("self_attn.o_proj", "mlp.down_proj"))
    with torch.no_grad():
        for layer, kept_groups, kept_neurons in zip(decoder_layers(twin, family), groups, neurons):
            heads = [g * group_size + j for g in kept_groups for j in range(group_size)]
            zero_inputs(layer.get_submodule(attn_out), [h * hd + k for h in range(shape.n_heads) if h not in heads for k in range(hd)])
            zero_inputs(layer.get_submodule(ffn_out), [n for n in range(shape.d_ff) if n not in kept_neurons])
            if hidden is not None:
                gone = [j for j in range(shape.d_model) if j not in hidden]
                zero_outputs(layer.get_submodule(attn_out), gone)
                zero_outputs(layer.get_submodule(ffn_out), gone)
        if hidden is not None:
            base, _, embedding = BASES.get(family, ("model", "layers", "embed_tokens"))
            getattr(getattr(twin, base), embedding).weight[:, [j for j in range(shape.d_model) if j not in hidden]] = 0
    return twin


@pytest.mark.parametrize("family", RMS_FAMILIES)
def test_whole_kv_groups_go_with_their_query_heads_and_equal_the_masked_teacher(family):
    """Tiny GQA models: 4 query heads in 2 key/value groups; the kept group of each layer keeps its 2 heads."""
    model = tiny_model(family, seed=3)
    groups, neurons = [[1], [0]], [list(range(0, 64, 2)), list(range(10, 42))]
    student = cut(model, Selection(groups=torch.tensor(groups), neurons=torch.tensor(neurons), hidden=torch.arange(32)))
    s = shape_of(student.config)
    assert (s.n_heads, s.n_kv_heads, s.d_ff, s.head_dim) == (2, 1, 32, 8)
    for layer, old, (group,) in zip(decoder_layers(student, family), decoder_layers(model, family), groups):
        rows = slice(8 * group, 8 * group + 8)  # one group's k/v rows, its two query heads' q rows
        assert torch.equal(layer.self_attn.k_proj.weight, old.self_attn.k_proj.weight[rows])
        assert torch.equal(layer.self_attn.v_proj.weight, old.self_attn.v_proj.weight[rows])
        assert torch.equal(layer.self_attn.q_proj.weight, old.self_attn.q_proj.weight[16 * group : 16 * group + 16])
        assert torch.equal(layer.self_attn.o_proj.weight, old.self_attn.o_proj.weight[:, 16 * group : 16 * group + 16])
    x = ids()[:, :-1]
    assert torch.allclose(logits(student, x), logits(hand_masked(model, family, groups, neurons), x), atol=1e-5, rtol=0)


def fused_rows(family: str, heads: list[int], hd: int = 8, width: int = 32) -> list[int]:
    """The q/k/v output features of ``heads`` in a fused projection: GPT-NeoX interleaves [q_h k_h v_h] per head,
    GPT-2 stores [q | k | v] blocks of all heads."""
    if family == "gpt_neox":
        return [h * 3 * hd + k for h in heads for k in range(3 * hd)]
    return [block * width + h * hd + k for block in range(3) for h in heads for k in range(hd)]


@pytest.mark.parametrize("family", ["gpt_neox", "gpt2"])
def test_fused_qkv_families(family):
    """Neurons go exactly (all heads and hidden units kept); heads take their fused q/k/v features along, and the
    hidden size follows the heads (d_model = heads x head_dim in these families)."""
    model = tiny_model(family, seed=3)
    neurons = [list(range(0, 64, 2)), list(range(10, 42))]
    kept = cut(model, Selection(groups=torch.arange(4).repeat(2, 1), neurons=torch.tensor(neurons), hidden=torch.arange(32)))
    x = ids()[:, :-1]
    assert torch.allclose(logits(kept, x), logits(hand_masked(model, family, [[0, 1, 2, 3]] * 2, neurons), x), atol=1e-5, rtol=0)
    heads, hidden = [[0, 3], [1, 2]], list(range(0, 32, 2))
    student = cut(model, Selection(groups=torch.tensor(heads), neurons=torch.tensor(neurons), hidden=torch.tensor(hidden)))
    assert (student.config.hidden_size, student.config.num_attention_heads) == (16, 2)
    qkv = {"gpt_neox": "attention.query_key_value", "gpt2": "attn.c_attn"}[family]
    for layer, old, kept_heads in zip(decoder_layers(student, family), decoder_layers(model, family), heads):
        new, ref = layer.get_submodule(qkv), old.get_submodule(qkv)
        rows = fused_rows(family, kept_heads)
        expected = ref.weight[:, rows][hidden] if family == "gpt2" else ref.weight[rows][:, hidden]
        assert torch.equal(new.weight, expected) and torch.equal(new.bias, ref.bias[rows])


@pytest.mark.parametrize("family", RMS_FAMILIES)
def test_hidden_pruning_is_exact_for_rmsnorm_families(family):
    # an epsilon and weights large enough that a missing rescaling shows (Qwen3's q/k projections: 0.18 in the logits)
    model = tiny_model(family, seed=4, rms_norm_eps=0.05, initializer_range=0.2)
    hidden = [j for j in range(32) if j % 4 != 1]  # 24 of 32 (a multiple of the kept heads)
    groups, neurons = [[0], [1]], [list(range(40)), list(range(24, 64))]
    selection = Selection(groups=torch.tensor(groups), neurons=torch.tensor(neurons), hidden=torch.tensor(hidden))
    student = cut(model, selection)
    assert student.config.hidden_size == 24 and student.config.rms_norm_eps == pytest.approx(model.config.rms_norm_eps * 32 / 24)
    x = ids()[:, :-1]
    assert torch.allclose(logits(student, x), logits(hand_masked(model, family, groups, neurons, hidden), x), atol=1e-5, rtol=0)


def naive_activation_scores(model, family: str, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Minitron's scores one window at a time with plain loops: L2 over the sequence, mean over windows."""
    shape = shape_of(model.config)
    attn_out, ffn_out = OUTPUTS.get(family, ("self_attn.o_proj", "mlp.down_proj"))
    layers = decoder_layers(model, family)
    norms = {"gpt_neox": ("input_layernorm", "post_attention_layernorm"), "gpt2": ("ln_1", "ln_2")}.get(
        family, ("input_layernorm", "post_attention_layernorm"))
    final = {"gpt_neox": "gpt_neox.final_layer_norm", "gpt2": "transformer.ln_f"}.get(family, "model.norm")
    heads, neurons, hidden = torch.zeros(shape.n_layers, shape.n_heads), torch.zeros(shape.n_layers, shape.d_ff), torch.zeros(shape.d_model)
    for window in windows:
        seen: dict[str, torch.Tensor] = {}
        modules = {f"a{i}": l.get_submodule(attn_out) for i, l in enumerate(layers)} | {f"f{i}": l.get_submodule(ffn_out) for i, l in enumerate(layers)}
        hooks = [m.register_forward_pre_hook(lambda m, a, k=k: seen.__setitem__(k, a[0][0].double())) for k, m in modules.items()]
        norm_modules = [l.get_submodule(n) for l in layers for n in norms] + [model.get_submodule(final)]
        hooks += [m.register_forward_hook(lambda m, a, out, k=k: seen.__setitem__(f"n{k}", out[0].double())) for k, m in enumerate(norm_modules)]
        with torch.no_grad():
            model(input_ids=window[None, :-1])
        for hook in hooks:
            hook.remove()
        for i in range(shape.n_layers):
            for h in range(shape.n_heads):
                block = seen[f"a{i}"][:, h * shape.head_dim : (h + 1) * shape.head_dim]
                heads[i, h] += float(sum(float(row.pow(2).sum()) for row in block) ** 0.5)
            for n in range(shape.d_ff):
                neurons[i, n] += float(sum(float(v) ** 2 for v in seen[f"f{i}"][:, n]) ** 0.5)
        for k in range(len(norm_modules)):
            hidden += seen[f"n{k}"].pow(2).sum(0).sqrt().float()
    return heads / len(windows), neurons / len(windows), hidden / len(windows)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_activation_importance_equals_a_naive_loop(family):
    model = tiny_model(family, seed=5)
    windows = ids(5, seed=6)
    importance = importance_scores(model, windows, batch_size=2, method="activation")  # batches of 2, 2 and 1
    assert importance.method == "activation" and importance.windows == 5
    for ours, naive in zip((importance.heads, importance.neurons, importance.hidden), naive_activation_scores(model, family, windows)):
        assert (naive > 0).all()
        assert torch.allclose(ours.float(), naive, rtol=1e-5, atol=0)


def loss_without(model, family: str, layer: int, windows: torch.Tensor) -> float:
    """The mean next-token loss with layer ``layer`` deleted from a copy of the model by hand."""
    twin = copy.deepcopy(model)
    layers = decoder_layers(twin, family)
    del layers[layer]
    twin.config.num_hidden_layers -= 1
    if getattr(twin.config, "layer_types", None):
        twin.config.layer_types = [t for i, t in enumerate(twin.config.layer_types) if i != layer]
    with torch.no_grad():
        out = twin(input_ids=windows[:, :-1]).logits
    return float(F.cross_entropy(out.flatten(0, 1), windows[:, 1:].flatten()))


@pytest.mark.parametrize("family", ["qwen2", "gpt_neox"])
def test_depth_importance_against_layers_removed_by_hand(family):
    model = tiny_model(family, seed=7, num_hidden_layers=4)
    windows = ids(6, seed=8)
    with torch.no_grad():
        base = float(next_token_loss(model, windows))
    scores = layer_importance(model, windows, batch_size=3, kind="loss")
    expected = [loss_without(model, family, i, windows) - base for i in range(4)]
    assert scores.tolist() == pytest.approx(expected, abs=1e-5)
    # cosine: 1 - cos(input, output) of every layer, from the model's own hidden states (final norm taken out)
    plain = copy.deepcopy(model)
    base_module = getattr(plain, BASES.get(family, ("model",))[0])
    setattr(base_module, {"gpt_neox": "final_layer_norm"}.get(family, "norm"), nn.Identity())
    with torch.no_grad():
        states = plain(input_ids=windows[:, :-1], output_hidden_states=True).hidden_states
    cosine = [1 - float(F.cosine_similarity(states[i].double(), states[i + 1].double(), dim=-1).mean()) for i in range(4)]
    assert layer_importance(model, windows, batch_size=4, kind="cosine").tolist() == pytest.approx(cosine, abs=1e-6)


def test_keep_layers_slices_like_minima(lab, tmp_path):
    tmp, _, data = lab
    config = tiny_config("llama")
    config.num_hidden_layers = 10
    torch.manual_seed(9)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "ten")
    shutil.copy(tmp / "llama" / "tokenizer.json", tmp_path / "ten")
    record = prune_checkpoint(tmp_path / "ten", tmp_path / "mid", data, tmp / "cache", keep_layers="4:-4", calibration_tokens=4 * SEQ,
                              batch_size=4, device="cpu", progress=False)
    assert record["kept_layers"] == [4, 5] and record["keep_layers"] == "4:-4" and record["sparsity"] is None
    teacher, student = load_model(tmp_path / "ten"), load_model(tmp_path / "mid")
    assert student.config.num_hidden_layers == 2
    for new, old in ((0, 4), (1, 5)):
        for name, param in student.model.layers[new].named_parameters():
            assert torch.equal(param, teacher.model.layers[old].get_parameter(name)), name
    assert torch.equal(student.model.norm.weight, teacher.model.norm.weight)
    assert record["params"] == count_params(student)[0] == pytest.approx(0.2 * count_params(teacher)[0], rel=0.01)
    record = prune_checkpoint(tmp_path / "ten", tmp_path / "list", data, tmp / "cache", keep_layers="0,1,-1", calibration_tokens=4 * SEQ,
                              device="cpu", progress=False)
    assert record["kept_layers"] == [0, 1, 9]


PROBE = """
import json, os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
out = {}
for directory in json.loads(sys.argv[1]):
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    AutoTokenizer.from_pretrained(directory)
    with torch.no_grad():
        out[directory] = model(input_ids=torch.tensor(json.loads(sys.argv[2]))).logits.tolist()
assert not any(name.startswith("distlaw") for name in sys.modules)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_pruned_folders_load_in_plain_transformers(lab, tmp_path):
    """Width and depth pruning together (activation importance, then the least important layer by cosine) for
    every family: the folder reloaded without distlaw computes what the in-memory pipeline computes."""
    tmp, teachers, data_cfg = lab
    data = prepare_data(data_cfg, tmp / "cache")
    x = ids(2, seed=11)[:, :-1]
    expected, folders = {}, []
    for family, teacher_dir in teachers.items():
        out = tmp_path / family
        record = prune_checkpoint(teacher_dir, out, data_cfg, tmp / "cache", sparsity=0.6, method="activation", depth=1,
                                  depth_importance="cosine", calibration_tokens=8 * SEQ, batch_size=4, seed=3, device="cpu", progress=False)
        teacher = load_model(teacher_dir)
        windows = data.train_windows(window_ids(0, 8, data.n_windows(SEQ), 3), SEQ)
        width = prune_model(teacher, importance_scores(teacher, windows, 4, method="activation"), sparsity=0.6, layers=1)
        scores = layer_importance(width, windows, 4, kind="cosine")
        kept = [int(scores.argmax())]
        assert record["kept_layers"] == kept and record["layer_importance"] == pytest.approx(scores.tolist())
        in_memory = drop_layers(width, kept)
        assert record["params"] == count_params(in_memory)[0] == pytest.approx(0.4 * record["teacher_params"], rel=0.03)
        assert record["family"] == family and record["method"] == "activation" and json.loads((out / "pruning.json").read_text()) == record
        expected[str(out)] = logits(in_memory, x)
        folders.append(str(out))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(folders), json.dumps(x.tolist())], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for folder, values in json.loads(proc.stdout.strip().splitlines()[-1]).items():
        assert torch.allclose(torch.tensor(values), expected[folder], atol=1e-5, rtol=0), folder


def test_pruned_shape_of_coupled_families_follows_the_heads():
    config = tiny_config("gpt_neox")
    layout, shape = layout_of(config.to_dict()), shape_of(config)
    for fraction in (0.2, 0.45, 0.8):
        pruned = pruned_shape(shape, target_params=round(fraction * layout.count(shape)), layout=layout)
        assert pruned.d_model == pruned.n_heads * shape.head_dim and pruned.attention_head_dim is None
        assert layout.count(pruned) == pytest.approx(fraction * layout.count(shape), rel=0.03)

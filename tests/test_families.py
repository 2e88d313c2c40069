"""Decoder families (issue 11, items 1 and 3): parameter counts against hand counts, the architecture record
of a template, students sized in a template's family, and run keys that do not move for Llama runs."""

from __future__ import annotations

import math

import pytest
import torch
import transformers

from distlaw.compute import ModelShape
from distlaw.errors import DistlawError
from distlaw.lab import families
from distlaw.lab.architectures import Sizer
from distlaw.lab.config import RunSpec
from distlaw.lab.model import build_model
from hf_families import FAMILIES, tiny_config

V, D, L, FF, P = 320, 32, 2, 64, 256  # tiny_config: vocabulary, width, layers, FFN, GPT-2 positions
HEADS, KV, HEAD = 4, 2, 8


def linear(n_in: int, n_out: int, bias: bool = False) -> int:
    return n_in * n_out + (n_out if bias else 0)


def hand_count(family: str) -> tuple[int, int]:
    """(non-embedding, total) written out module by module from each family's modelling code."""
    if family == "gpt2":  # LayerNorms with biases, Conv1D with biases, learned positions, tied head
        layer = 2 * D + linear(D, 3 * D, True) + linear(D, D, True) + 2 * D + linear(D, FF, True) + linear(FF, D, True)
        n = L * layer + 2 * D
        return n, n + V * D + P * D
    if family == "gpt_neox":  # fused biased QKV, two LayerNorms per layer, untied embed_out
        layer = 2 * 2 * D + linear(D, 3 * D, True) + linear(D, D, True) + linear(D, FF, True) + linear(FF, D, True)
        n = L * layer + 2 * D
        return n, n + 2 * V * D
    attention = linear(D, HEADS * HEAD) + 2 * linear(D, KV * HEAD) + linear(HEADS * HEAD, D)  # grouped K/V heads
    ffn = 3 * linear(D, FF)  # gated: gate, up, down
    if family == "llama":  # two RMSNorm gains per layer, final norm, untied head
        n = L * (attention + ffn + 2 * D) + D
        return n, n + 2 * V * D
    if family == "gemma2":  # four RMSNorms per layer (pre/post attention and FFN), tied head
        n = L * (attention + ffn + 4 * D) + D
        return n, n + V * D
    raise KeyError(family)


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "llama", "gemma2"])
def test_parameter_counts_match_hand_counts(family):
    config = tiny_config(family)
    model = transformers.AutoModelForCausalLM.from_config(config)
    assert families.count_params(model) == hand_count(family)
    assert families.config_params(config) == hand_count(family)


def test_llama_counts_are_the_shapes_own():
    """The paper's Llama (no architecture record) keeps ModelShape's count, the one its numbers were made with."""
    shape = ModelShape.from_dims(3, 48, n_ctx=32, vocab_size=V, head_dim=8)
    n, total = families.count_params(build_model(shape, 0))
    assert (n, total) == (shape.non_embedding_params, shape.non_embedding_params + shape.embedding_params)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_architecture_record_rebuilds_the_template(family):
    """A student of the template's own shape is the template: same family and every convention, only the
    bookkeeping and the token ids differ; the record holds no sizes."""
    template = tiny_config(family)
    record = families.architecture_of(template)
    assert record["model_type"] == family
    assert not {"hidden_size", "n_embd", "num_hidden_layers", "n_layer", "intermediate_size", "n_inner", "vocab_size"} & set(record)
    rebuilt = families.config_from(record, families.shape_of(template)).to_dict()
    expected = template.to_dict()
    differing = {k for k in set(rebuilt) | set(expected) if rebuilt.get(k) != expected.get(k)}
    assert differing <= families.NOT_ARCHITECTURE, differing


def test_layer_types_follow_the_familys_rule_at_the_students_depth():
    """Gemma 3 puts full attention on every sixth layer: a 12-layer student of a 2-layer teacher (all sliding) has it."""
    record = families.architecture_of(tiny_config("gemma3_text"))
    shape = families.shape_of(tiny_config("gemma3_text")).model_copy(update={"n_layers": 12})
    expected = transformers.Gemma3TextConfig(num_hidden_layers=12).layer_types
    assert families.config_from(record, shape).layer_types == expected and expected[5] == "full_attention"


def test_grouped_query_ratio_is_kept_where_it_divides():
    template = tiny_config("llama")  # 4 query heads per 2 key/value heads
    kv = {heads: families.shape_like(template, 1, 8 * heads, 8, 32, V).n_kv_heads for heads in (1, 3, 6, 8)}
    assert kv == {1: None, 3: 1, 6: 3, 8: 4}  # None: as many as the query heads (one head)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_students_sized_like_a_teacher_are_the_nearest_shape(family):
    """Sized by N in the teacher's family: the nearest of the fixed-aspect-ratio shapes by a brute-force count
    of real (not meta) models, within a few % of a target near a shape, and exactly config_params."""
    template = tiny_config(family)
    record = families.architecture_of(template)

    def real_count(layers: int) -> int:
        shape = families.shape_like(template, layers, 16 * layers, HEAD, 32, V)
        return families.count_params(transformers.AutoModelForCausalLM.from_config(families.config_from(record, shape)))[0]

    counts = {layers: real_count(layers) for layers in range(1, 6)}
    target = 1.03 * counts[3]
    shape = families.sized_like(template, target, aspect_ratio=16, head_dim=HEAD, n_ctx=32, vocab_size=V)
    nearest = min(counts, key=lambda layers: abs(math.log(counts[layers] / target)))
    assert shape.n_layers == nearest == 3
    built = build_model(shape, 0, record)
    assert built.config.model_type == family
    assert families.count_params(built)[0] == counts[3] == families.config_params(built.config)[0]
    assert abs(counts[3] / target - 1) < 0.05


def test_sizer_counts_exactly_and_llama_needs_no_template():
    llama = Sizer.of(16, 8)
    shape = llama.from_params(2e4, n_ctx=32, vocab_size=V)
    assert llama.architecture is None and llama.params(shape) == shape.non_embedding_params
    gpt2 = Sizer.of(16, 8, family="gpt2")
    shape = gpt2.from_params(2e4, n_ctx=32, vocab_size=V)
    assert gpt2.params(shape) == families.count_params(build_model(shape, 0, gpt2.architecture))[0] != shape.non_embedding_params


def test_a_builtin_family_has_transformers_defaults():
    record = Sizer.of(16, 8, family="gpt_neox").architecture
    defaults = transformers.GPTNeoXConfig()
    assert record["model_type"] == "gpt_neox"
    assert (record["rope_parameters"], record["use_parallel_residual"], record["hidden_act"]) == (
        defaults.rope_parameters, defaults.use_parallel_residual, defaults.hidden_act)


def test_a_context_beyond_the_familys_positions_is_refused():
    record = families.architecture_of(transformers.GPT2Config())  # 1024 learned positions
    with pytest.raises(DistlawError, match="1024 positions, fewer than the context 2048"):
        families.config_from(record, ModelShape(n_layers=1, d_model=32, n_heads=4, d_ff=64, n_ctx=2048))


def test_run_keys_of_llama_runs_do_not_move_and_an_architecture_moves_them():
    shape = ModelShape.from_dims(2, 32, n_ctx=32, vocab_size=256, head_dim=8)
    spec = RunSpec(name="a", kind="supervised", shape=shape, tokens=10)
    assert spec.key() == "2f34a2a13795852e"  # computed before RunSpec.architecture existed
    assert "architecture" not in spec.model_dump()
    gpt2 = spec.model_copy(update={"architecture": families.architecture_of(tiny_config("gpt2"))})
    assert gpt2.key() != spec.key() and RunSpec.model_validate_json(gpt2.model_dump_json()) == gpt2
    assert gpt2.non_embedding_params == families.count_params(build_model(shape, 0, gpt2.architecture))[0]


def test_weights_are_a_function_of_shape_seed_and_architecture():
    shape = ModelShape.from_dims(2, 32, n_ctx=32, vocab_size=V, head_dim=8)
    record = families.architecture_of(tiny_config("qwen3"))
    a, b, c = (build_model(shape, seed, record).state_dict() for seed in (1, 1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)

"""Models built from shapes: parameter counts against brute force, checkpoints that load back."""

import pytest
import torch

from distlaw.compute import ModelShape
from distlaw.errors import DistlawError
from distlaw.lab.families import count_params
from distlaw.lab.model import build_model, load_model, shape_of


@pytest.mark.parametrize(
    "shape",
    [
        ModelShape.from_params(3e3, aspect_ratio=16, head_dim=8, vocab_size=256, n_ctx=64),
        ModelShape.from_params(1e5, aspect_ratio=32, head_dim=16, vocab_size=300, n_ctx=128),
        ModelShape(n_layers=2, d_model=48, n_heads=6, n_kv_heads=2, d_ff=100, vocab_size=97, n_ctx=32),
    ],
)
def test_parameter_counts_match_brute_force(shape):
    model = build_model(shape, seed=0)
    brute_total = sum(p.numel() for p in model.parameters())
    brute_embedding = model.model.embed_tokens.weight.numel() + model.lm_head.weight.numel()
    assert count_params(model) == (brute_total - brute_embedding, brute_total)
    assert count_params(model) == (shape.non_embedding_params, shape.non_embedding_params + shape.embedding_params)
    assert shape_of(model) == shape


def test_initialisation_is_a_function_of_the_seed():
    shape = ModelShape.from_params(3e3, aspect_ratio=16, head_dim=8, vocab_size=256, n_ctx=64)
    a, b, c = build_model(shape, 1), build_model(shape, 1), build_model(shape, 2)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)


def test_checkpoint_round_trip(tmp_path):
    shape = ModelShape.from_params(3e3, aspect_ratio=16, head_dim=8, vocab_size=256, n_ctx=64)
    model = build_model(shape, 0)
    model.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    x = torch.randint(0, 256, (2, 16))
    assert torch.allclose(model(input_ids=x).logits, loaded(input_ids=x).logits)


def test_a_directory_without_config_is_not_a_model(tmp_path):
    with pytest.raises(DistlawError, match="no config.json"):
        load_model(tmp_path)

"""FLOP accounting and model shapes (Busbridge et al. 2025, arXiv 2502.08606, Eq. 9 and App. H).

Shapes follow the paper's decoder (pre-RMSNorm, RoPE, gated SiLU FFN with ratio 8/3) and its
fixed aspect ratio d_model = 128 n_layers. Non-embedding parameters per layer:
attention 4 d^2 (without grouped KV), gated FFN 3 d d_ff, two RMSNorm gains 2 d; plus a final norm d.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from distlaw.errors import DistlawError

DEFAULT_ASPECT_RATIO = 128
DEFAULT_N_CTX = 4096
DEFAULT_VOCAB = 32768
FFN_RATIO = 8 / 3


class ModelShape(BaseModel):
    """A decoder-only transformer's shape; the single source of parameter and FLOP counts."""

    model_config = ConfigDict(frozen=True)

    n_layers: int = Field(ge=1)
    d_model: int = Field(ge=1)
    n_heads: int = Field(ge=1)
    d_ff: int = Field(ge=1)
    n_kv_heads: int | None = Field(default=None, ge=1)
    vocab_size: int = Field(default=DEFAULT_VOCAB, ge=2)
    n_ctx: int = Field(default=DEFAULT_N_CTX, ge=1)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def non_embedding_params(self) -> int:
        """Parameters outside the token embedding and the output head (the N of the laws)."""
        kv = (self.n_kv_heads or self.n_heads) * self.head_dim
        attention = 2 * self.d_model * self.d_model + 2 * self.d_model * kv
        ffn = 3 * self.d_model * self.d_ff
        per_layer = attention + ffn + 2 * self.d_model
        return self.n_layers * per_layer + self.d_model

    @property
    def embedding_params(self) -> int:
        """Token embedding plus an untied output head."""
        return 2 * self.vocab_size * self.d_model

    def forward_flops_per_token(self, attention: bool = True) -> float:
        """F(N) = 2N + 2 n_layers n_ctx d_model + 2 n_vocab d_model (App. H); ``attention=False`` gives 2N."""
        flops = 2.0 * self.non_embedding_params
        if attention:
            flops += 2.0 * self.n_layers * self.n_ctx * self.d_model + 2.0 * self.vocab_size * self.d_model
        return flops

    @classmethod
    def from_params(
        cls,
        non_embedding_params: float,
        aspect_ratio: int = DEFAULT_ASPECT_RATIO,
        head_dim: int = 64,
        vocab_size: int = DEFAULT_VOCAB,
        n_ctx: int = DEFAULT_N_CTX,
    ) -> ModelShape:
        """The fixed-aspect-ratio shape (d_model = aspect_ratio * n_layers) closest to a parameter target."""
        if not (math.isfinite(non_embedding_params) and non_embedding_params > 0):
            raise DistlawError(f"model size must be a positive number of parameters, got {non_embedding_params:g}")
        best: ModelShape | None = None
        for n_layers in range(1, 4096):
            d_model = aspect_ratio * n_layers
            shape = cls(
                n_layers=n_layers,
                d_model=d_model,
                n_heads=max(1, d_model // head_dim),
                d_ff=max(1, round(FFN_RATIO * d_model)),
                vocab_size=vocab_size,
                n_ctx=n_ctx,
            )
            if best is None or abs(math.log(shape.non_embedding_params / non_embedding_params)) < abs(
                math.log(best.non_embedding_params / non_embedding_params)
            ):
                best = shape
            if shape.non_embedding_params > non_embedding_params:
                break
        assert best is not None
        return best

"""FLOP accounting and model shapes (Busbridge et al. 2025, arXiv 2502.08606, Eq. 9 and App. H).

Shapes follow the paper's decoder (pre-RMSNorm, RoPE, gated SiLU FFN with ratio 8/3) and its
fixed aspect ratio d_model = 128 n_layers. Non-embedding parameters per layer:
attention 4 d^2 (without grouped KV), gated FFN 3 d d_ff, two RMSNorm gains 2 d; plus a final norm d.

Total cost of distillation (Eq. 9), backward = 2 x forward:

    FLOPs = 3 F(N_S) D_S + F(N_T) (dLgt D_S + dPre 3 D_T)

``FlopModel`` gives F(N) vectorized over N (2N, or the paper's form with attention and vocabulary
terms on the fixed-aspect-ratio shape); ``Hardware`` turns FLOPs into GPU-hours and money.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from distlaw.errors import DistlawError

DEFAULT_ASPECT_RATIO = 128
DEFAULT_N_CTX = 4096
DEFAULT_VOCAB = 32768
FFN_RATIO = 8 / 3


def forward_flops(non_embedding_params: ArrayLike, n_layers: ArrayLike, d_model: ArrayLike, n_ctx: int, vocab_size: int) -> np.ndarray:
    """F(N) = 2N + 2 n_layers n_ctx d_model + 2 n_vocab d_model: forward FLOPs per token with causal
    attention and the output head (App. H); vectorized, so shapes may be continuous."""
    n, layers, d = (np.asarray(x, dtype=float) for x in (non_embedding_params, n_layers, d_model))
    return 2.0 * n + 2.0 * layers * n_ctx * d + 2.0 * vocab_size * d


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
    attention_head_dim: int | None = Field(default=None, ge=1)  # None: d_model / n_heads (pruned models differ)

    @property
    def head_dim(self) -> int:
        return self.attention_head_dim or self.d_model // self.n_heads

    @property
    def non_embedding_params(self) -> int:
        """Parameters outside the token embedding and the output head (the N of the laws)."""
        q = self.n_heads * self.head_dim
        kv = (self.n_kv_heads or self.n_heads) * self.head_dim
        attention = 2 * self.d_model * q + 2 * self.d_model * kv
        ffn = 3 * self.d_model * self.d_ff
        per_layer = attention + ffn + 2 * self.d_model
        return self.n_layers * per_layer + self.d_model

    @property
    def embedding_params(self) -> int:
        """Token embedding plus an untied output head."""
        return 2 * self.vocab_size * self.d_model

    def forward_flops_per_token(self, attention: bool = True) -> float:
        """F(N) = 2N + 2 n_layers n_ctx d_model + 2 n_vocab d_model (App. H); ``attention=False`` gives 2N."""
        if not attention:
            return 2.0 * self.non_embedding_params
        return float(forward_flops(self.non_embedding_params, self.n_layers, self.d_model, self.n_ctx, self.vocab_size))

    @classmethod
    def from_dims(
        cls,
        n_layers: int,
        d_model: int,
        n_ctx: int = DEFAULT_N_CTX,
        vocab_size: int = DEFAULT_VOCAB,
        head_dim: int = 64,
    ) -> ModelShape:
        """An explicit (n_layers, d_model, n_ctx, vocab) shape with the paper's heads and gated FFN."""
        if min(n_layers, d_model, n_ctx) < 1 or vocab_size < 2:
            raise DistlawError(
                f"model dimensions must be positive, got n_layers={n_layers}, d_model={d_model}, "
                f"n_ctx={n_ctx}, vocab={vocab_size}"
            )
        return cls(
            n_layers=n_layers,
            d_model=d_model,
            n_heads=max(1, d_model // head_dim),
            d_ff=max(1, round(FFN_RATIO * d_model)),
            vocab_size=vocab_size,
            n_ctx=n_ctx,
        )

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
        for n_layers in family_layers(aspect_ratio, head_dim):
            shape = cls.from_dims(n_layers, aspect_ratio * n_layers, n_ctx, vocab_size, head_dim)
            if best is None or abs(math.log(shape.non_embedding_params / non_embedding_params)) < abs(
                math.log(best.non_embedding_params / non_embedding_params)
            ):
                best = shape
            if shape.non_embedding_params > non_embedding_params:
                break
        if best is None:
            raise DistlawError(f"no shape of aspect ratio {aspect_ratio} up to 4095 layers has d_model a multiple of head_dim {head_dim}")
        return best


def whole_heads(d_model: int, head_dim: int) -> bool:
    """Whether ``d_model`` splits into whole heads of exactly ``head_dim``: the only shapes a fixed-aspect
    family builds, so every model of a family has the same head width (and ``distlaw train`` refuses the
    others). With aspect ratio 4 and head_dim 8 that is every even layer count."""
    return d_model % head_dim == 0


def family_layers(aspect_ratio: int, head_dim: int) -> Iterator[int]:
    """The layer counts (up to 4095) of a fixed-aspect family's shapes: those whose d_model is whole heads."""
    return (n for n in range(1, 4096) if whole_heads(aspect_ratio * n, head_dim))


SIZE_TOLERANCE = 0.10  # a model built more than 10 % away from its parameter target is worth a warning


def short_count(value: float) -> str:
    """``5000 -> "5e3"``, ``20904 -> "20,904"``: a count as a user would type it when it is round."""
    mantissa, exponent = f"{value:.2e}".split("e")
    if abs(value) >= 1e3 and float(f"{mantissa}e{exponent}") == value:
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"


def size_note(requested: float, built: int) -> str:
    """``"requested 5e3, built 3,136 non-embedding parameters"``: what a size target turned into."""
    return f"requested {short_count(requested)}, built {built:,} non-embedding parameters"


def size_warning(requested: float, built: int, tolerance: float = SIZE_TOLERANCE) -> str | None:
    """The note with how far off, when the built model misses its target by more than ``tolerance``."""
    miss = built / requested - 1
    if abs(miss) <= tolerance:
        return None
    return f"{size_note(requested, built)} ({miss:+.0%} off the target: shapes are whole layers and widths)"


FlopsForm = Literal["simple", "paper"]


class FlopModel(BaseModel):
    """Forward FLOPs per token F(N), vectorized over non-embedding parameters N (App. H).

    ``form="simple"``: F = 2N. ``form="paper"``: F = 2N + 2 n_layers n_ctx d_model + 2 n_vocab d_model
    on the continuous fixed-aspect-ratio shape: 12 d_model^2 parameters per layer and
    d_model = aspect_ratio n_layers, so n_layers = (N / (12 aspect_ratio^2))^(1/3).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    form: FlopsForm = "paper"
    aspect_ratio: float = Field(default=DEFAULT_ASPECT_RATIO, gt=0)
    n_ctx: int = Field(default=DEFAULT_N_CTX, ge=1)
    vocab_size: int = Field(default=DEFAULT_VOCAB, ge=2)

    def forward(self, params: ArrayLike) -> np.ndarray:
        """F(N) in FLOPs per token."""
        n = np.asarray(params, dtype=float)
        if self.form == "simple":
            return 2.0 * n
        n_layers = np.cbrt(n / (12.0 * self.aspect_ratio**2))
        return forward_flops(n, n_layers, self.aspect_ratio * n_layers, self.n_ctx, self.vocab_size)

    def training(self, params: ArrayLike, tokens: ArrayLike) -> np.ndarray:
        """Forward plus backward pass over ``tokens``: 3 F(N) D."""
        return 3.0 * self.forward(params) * np.asarray(tokens, dtype=float)

    def distillation(
        self,
        student_params: ArrayLike,
        student_tokens: ArrayLike,
        teacher_params: ArrayLike,
        teacher_tokens: ArrayLike,
        teacher_logits: ArrayLike = 1.0,
        teacher_pretraining: ArrayLike = 1.0,
    ) -> np.ndarray:
        """Eq. 9: 3 F(N_S) D_S + F(N_T) (dLgt D_S + dPre 3 D_T); dLgt, dPre in {0, 1} select the scenario."""
        d_s = np.asarray(student_tokens, dtype=float)
        teacher = self.forward(teacher_params) * (
            np.asarray(teacher_logits, dtype=float) * d_s
            + np.asarray(teacher_pretraining, dtype=float) * 3.0 * np.asarray(teacher_tokens, dtype=float)
        )
        return self.training(student_params, d_s) + teacher


class Hardware(BaseModel):
    """An accelerator: dense peak FLOP/s, the model FLOPs utilization reached, and the price per GPU-hour."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    peak_flops: float = Field(gt=0, description="dense BF16 peak per GPU, FLOP/s")
    mfu: float = Field(gt=0, le=1, description="model FLOPs utilization")
    price_per_hour: float = Field(ge=0, description="USD per GPU-hour")

    def gpu_hours(self, flops: ArrayLike) -> np.ndarray:
        return np.asarray(flops, dtype=float) / (self.peak_flops * self.mfu) / 3600.0

    def flops(self, gpu_hours: ArrayLike) -> np.ndarray:
        """The FLOPs ``gpu_hours`` deliver (the inverse of :meth:`gpu_hours`)."""
        return np.asarray(gpu_hours, dtype=float) * 3600.0 * self.peak_flops * self.mfu

    def cost(self, flops: ArrayLike) -> np.ndarray:
        """Money in USD: GPU-hours times the hourly price."""
        return self.gpu_hours(flops) * self.price_per_hour

    def with_overrides(self, mfu: float | None = None, price_per_hour: float | None = None) -> Hardware:
        """This profile with another MFU and/or price (validated; a bad value is a DistlawError)."""
        update = {k: v for k, v in (("mfu", mfu), ("price_per_hour", price_per_hour)) if v is not None}
        return _validated_hardware({**self.model_dump(), **update}, self.name)


# Dense BF16 peaks from the vendors' data sheets (H100/H200 SXM 989 TFLOP/s, A100 312 TFLOP/s);
# MFU 0.4 is typical of well-tuned LLM training; prices are on-demand cloud rates, late 2025.
HARDWARE: dict[str, Hardware] = {
    "h100": Hardware(name="h100", peak_flops=989e12, mfu=0.4, price_per_hour=2.5),
    "h200": Hardware(name="h200", peak_flops=989e12, mfu=0.4, price_per_hour=3.5),
    "a100": Hardware(name="a100", peak_flops=312e12, mfu=0.4, price_per_hour=1.5),
}


def load_hardware(name_or_path: str | Path = "h100") -> Hardware:
    """A hardware profile by name (h100, h200, a100) or from a JSON file with the ``Hardware`` fields."""
    key = str(name_or_path)
    if key.lower() in HARDWARE:
        return HARDWARE[key.lower()]
    path = Path(key)
    if not path.is_file():
        raise DistlawError(f"unknown hardware '{key}' (profiles: {', '.join(HARDWARE)}; or a JSON file)")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DistlawError(f"{path}: cannot read hardware profile ({exc})") from exc
    return _validated_hardware(data, str(path))


def _validated_hardware(data: object, source: str) -> Hardware:
    try:
        return Hardware.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise DistlawError(f"{source}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from exc

"""Array-namespace dispatch so each law is written once and runs on NumPy arrays or torch tensors.

The fitter evaluates the laws on batched float64 torch tensors (with autograd); everything
else uses NumPy. torch is imported only when a tensor is actually passed in.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def namespace(*arrays: Any) -> ModuleType:
    """Return ``torch`` if any argument is a torch tensor, else ``numpy``."""
    if any(is_tensor(a) for a in arrays):
        import torch

        return torch
    return np


def logaddexp(a: Any, b: Any) -> Any:
    """log(exp(a) + exp(b)) with broadcasting; Python scalars mix with either backend."""
    xp = namespace(a, b)
    if xp is np:
        return np.logaddexp(a, b)
    like = b if is_tensor(b) else a
    return xp.logaddexp(xp.as_tensor(a, dtype=like.dtype, device=like.device),
                        xp.as_tensor(b, dtype=like.dtype, device=like.device))


def softplus(x: Any) -> Any:
    """log(1 + exp(x)), overflow-free on either backend."""
    if is_tensor(x):
        import torch

        return torch.nn.functional.softplus(x)
    return np.logaddexp(0.0, x)

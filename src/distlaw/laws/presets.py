"""Published coefficient presets, each cited.

- ``busbridge2025``: Busbridge et al., "Distillation Scaling Laws", arXiv 2502.08606, Table 6
  (supervised Eq. 1 on 73 runs; distillation Eq. 8 on 697 runs).
- ``hoffmann2022``: Hoffmann et al., "Training Compute-Optimal LLMs", arXiv 2203.15556,
  Approach 3 (gamma = 1).
- ``epoch2024``: Besiroglu et al., "Chinchilla Scaling: A replication attempt", arXiv 2404.10102,
  maximum-likelihood refit on points extracted from Chinchilla's Fig. 4 (gamma = 1).

Each preset's ``meta.domain`` is the range of its paper's experiments (see ``distlaw.laws.domain``),
kept conservative where the paper does not state it exactly.
"""

from __future__ import annotations

from pathlib import Path

from distlaw.errors import DistlawError
from distlaw.laws.coefficients import Coefficients

PRESETS: dict[str, dict] = {
    "busbridge2025": {
        "supervised": {"E": 1.220, "A": 3355.0, "B": 18186.0, "alpha": 0.408, "beta": 0.431, "gamma": 0.452},
        "distillation": {
            "A": 2243.0, "B": 24181.0, "alpha": 0.321, "beta": 0.637, "gamma": 0.764,
            "c0": 2.549, "c1": 522.6, "f1": 0.090, "d1": 1.315,
        },
        "meta": {
            "name": "busbridge2025",
            "citation": "Busbridge et al. 2025, arXiv 2502.08606, Table 6",
            # params: 143M-12.6B, the models of the paper's experiments (abstract). tokens: 143M x 20
            # (the smallest model at M = 20 tokens/param) to 512B (the largest teacher run quoted in
            # LAWS.md): narrower than the paper's IsoFLOP profiles reach, to stay conservative.
            # teacher_loss: Eq. 1 with these coefficients at the corners (12.6B, 512B) and (143M, 2.86B).
            "domain": {
                "params": [1.43e8, 1.26e10], "tokens": [2.86e9, 5.12e11], "teacher_loss": [1.89, 2.89],
                "source": "busbridge2025 (the runs of Busbridge et al. 2025)",
            },
        },
    },
    "hoffmann2022": {
        "supervised": {"E": 1.6934, "A": 406.401, "B": 410.723, "alpha": 0.33917, "beta": 0.28491, "gamma": 1.0},
        "meta": {
            "name": "hoffmann2022",
            "citation": "Hoffmann et al. 2022, arXiv 2203.15556, Approach 3",
            # "over 400 language models ranging from 70 million to over 16 billion parameters on 5 to
            # 500 billion tokens" (Hoffmann et al. 2022, abstract and Sec. 3)
            "domain": {"params": [7e7, 1.6e10], "tokens": [5e9, 5e11], "source": "hoffmann2022 (the Chinchilla runs)"},
        },
    },
    "epoch2024": {
        "supervised": {"E": 1.817, "A": 482.0, "B": 2085.4, "alpha": 0.3478, "beta": 0.3659, "gamma": 1.0},
        "meta": {
            "name": "epoch2024",
            "citation": "Besiroglu et al. 2024, arXiv 2404.10102",
            # min and max of the points Besiroglu et al. extracted from Chinchilla's Fig. 4
            # (distlaw/data/chinchilla_runs.csv, 245 rows; their fit drops the 5 highest-loss ones)
            "domain": {"params": [5.73e7, 1.62e10], "tokens": [2.45e8, 3.18e11], "source": "epoch2024 (the Chinchilla Fig. 4 points)"},
        },
    },
}

DEFAULT_PRESET = "busbridge2025"


def load_coefficients(preset_or_path: str | Path = DEFAULT_PRESET) -> Coefficients:
    """A preset by name, or a coefficients JSON file by path."""
    key = str(preset_or_path)
    if key in PRESETS:
        return Coefficients.from_dict(PRESETS[key], source=key)
    path = Path(key)
    if path.suffix.lower() == ".json" or path.exists():
        if not path.is_file():
            raise DistlawError(f"{path}: no such coefficients file")
        return Coefficients.load(path)
    raise DistlawError(f"unknown preset '{key}' (presets: {', '.join(PRESETS)}; or a path to a .json file)")

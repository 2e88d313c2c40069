"""Capacity density and the densing law (Xiao et al. 2024, arXiv 2412.04315).

- :mod:`distlaw.density.estimate`: fit the two steps on reference models, effective size and density of any score.
- :mod:`distlaw.density.conditional`: conditional loss -log P(answer | prompt) and score of local checkpoints on a task file.
- :mod:`distlaw.density.trend`: ln rho_max = A t + B over dated models and the doubling time ln 2 / A.
- :mod:`distlaw.density.models`: the two steps as law models of :mod:`distlaw.fitting`.

The math itself lives in :mod:`distlaw.laws.density`. Submodules are imported on demand: the
estimation pulls in torch (through the fitter), the trend does not.
"""

"""Pilot design (issue 12): which runs to train so that a pilot pins down one prediction.

``pilot`` (runs, cost, target; no torch), ``linear`` (the linearised fit: information per run),
``greedy`` (c-optimal runs added per FLOP), ``layouts`` (fixed-M layouts and the log-uniform grid),
``simulate`` (replicated planted losses refitted as one batch; bootstrap coverage), ``designer`` (the
candidates scored and chosen), ``targets`` (what the user asks for), ``config`` (the sweep config written).
"""

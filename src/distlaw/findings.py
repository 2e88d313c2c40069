"""What a runs table shows directly, before any law is fitted.

- Distillation gain: a distilled student's loss against the supervised run of the same size on the
  same tokens (Busbridge et al. 2025, arXiv 2502.08606, Sec. 4: distillation beats supervised
  training at modest token counts).
- Best teacher: for each student configuration, the teacher giving the lowest student loss; when it
  is not the strongest teacher, the capacity gap shows (Zhang et al., arXiv 2311.07052; Busbridge Sec. 4.3).
"""

from __future__ import annotations

import pandas as pd

STUDENT_KEYS = ["params", "tokens"]
GAIN_COLUMNS = ["params", "tokens", "teacher_params", "teacher_loss", "loss", "supervised_loss", "gain"]
BEST_TEACHER_COLUMNS = ["params", "tokens", "teachers", "best_teacher_loss", "best_student_loss",
                        "strongest_teacher_loss", "student_loss_from_strongest", "capacity_gap"]


def _distilled(runs: pd.DataFrame) -> pd.DataFrame:
    """The distilled rows; none when the table has no distilled row or no ``teacher_loss`` column."""
    if "teacher_loss" not in runs.columns:
        return runs.iloc[:0].assign(teacher_loss=pd.Series(dtype=float))
    return runs[runs["kind"] == "distilled"]


def distillation_gains(runs: pd.DataFrame) -> pd.DataFrame:
    """Distilled rows joined to the supervised row with the same (params, tokens); ``gain`` > 0 means distillation won.

    A table without such pairs (supervised-only, distilled-only) gives an empty frame with the same columns."""
    sup = runs[runs["kind"] == "supervised"].groupby(STUDENT_KEYS, as_index=False)["loss"].mean()
    joined = _distilled(runs).merge(sup.rename(columns={"loss": "supervised_loss"}), on=STUDENT_KEYS, how="inner")
    joined["gain"] = joined["supervised_loss"] - joined["loss"]
    columns = [c for c in GAIN_COLUMNS if c in joined.columns]
    return joined[columns].sort_values(STUDENT_KEYS + ["teacher_loss"]).reset_index(drop=True)


def best_teachers(runs: pd.DataFrame) -> pd.DataFrame:
    """Per student (params, tokens) with two or more teachers: the best teacher, the strongest teacher,
    and whether they differ (``capacity_gap``); an empty frame with these columns when no student has two."""
    rows = []
    for (n, d), group in _distilled(runs).groupby(STUDENT_KEYS):
        if group["teacher_loss"].nunique() < 2:
            continue
        best = group.loc[group["loss"].idxmin()]
        strongest = group.loc[group["teacher_loss"].idxmin()]
        rows.append({
            "params": n,
            "tokens": d,
            "teachers": int(group["teacher_loss"].nunique()),
            "best_teacher_loss": best["teacher_loss"],
            "best_student_loss": best["loss"],
            "strongest_teacher_loss": strongest["teacher_loss"],
            "student_loss_from_strongest": strongest["loss"],
            "capacity_gap": bool(best["teacher_loss"] > strongest["teacher_loss"]),
        })
    return pd.DataFrame(rows, columns=BEST_TEACHER_COLUMNS)

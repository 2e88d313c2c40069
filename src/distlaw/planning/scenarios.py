"""The four compute-accounting scenarios of Busbridge et al. 2025 (arXiv 2502.08606, Eq. 9, Table 3)."""

from __future__ import annotations

from dataclasses import dataclass

from distlaw.errors import DistlawError


@dataclass(frozen=True)
class Scenario:
    """Which teacher costs count against the budget: dLgt (teacher logits), dPre (teacher pretraining)."""

    name: str
    teacher_logits: int
    teacher_pretraining: int
    summary: str


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("best", 0, 0, "teacher free (fully amortized): only student training counts"),
        Scenario("teacher-inference", 1, 0, "teacher exists; its logits on the student's tokens count"),
        Scenario("teacher-pretraining", 0, 1, "teacher trained for this student; logits precomputed for free"),
        Scenario("teacher-pretraining+inference", 1, 1, "teacher trained for this student; logits count too"),
    )
}


def parse_scenarios(spec: str) -> list[Scenario]:
    """``all`` or one scenario name (also accepts a comma-separated list)."""
    if spec == "all":
        return list(SCENARIOS.values())
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise DistlawError(f"unknown scenario '{spec}' (choose all, {', '.join(SCENARIOS)})")
    return [SCENARIOS[n] for n in names]


def get_scenario(scenario: str | Scenario) -> Scenario:
    """A Scenario by name (or itself); an unknown name is a DistlawError."""
    if isinstance(scenario, Scenario):
        return scenario
    if scenario not in SCENARIOS:
        raise DistlawError(f"unknown scenario '{scenario}' (choose {', '.join(SCENARIOS)})")
    return SCENARIOS[scenario]

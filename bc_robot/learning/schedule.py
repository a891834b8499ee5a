"""The learning-rate schedule over the training budget that actually ends the run.

A cosine decay laid out over `train.steps` never decays when a wall or CPU budget stops the
run first: on this machine the push recipe stopped at 3 000–5 500 of 6 000 steps, at half the
peak rate, so the exported weights were a high-rate iterate and where they landed depended on
the seed. Here progress is whichever budget is furthest spent (steps, wall time, CPU time),
so the decay ends where the run ends.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

FINAL_FACTOR = 0.1  # the cosine ends at this fraction of the peak rate


@dataclass(frozen=True)
class BudgetSchedule:
    """Linear warm-up over `warmup_steps`, then cosine decay to `FINAL_FACTOR` of the peak
    rate as the budget is spent; a limit of 0 is off."""

    steps: int
    warmup_steps: int = 0
    max_minutes: float = 0.0
    max_cpu_minutes: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f'steps must be at least 1, got {self.steps}')
        if self.warmup_steps < 0:
            raise ValueError(f'warmup_steps must be at least 0, got {self.warmup_steps}')
        for name in ('max_minutes', 'max_cpu_minutes'):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f'{name} must be a finite number >= 0, got {value}')

    def time_spent(self, wall_s: float, cpu_s: float) -> float:
        """Fraction of the wall or CPU budget spent, whichever is further (0 without one);
        at 1 or more the run stops."""
        spent = 0.0
        if self.max_minutes > 0:
            spent = max(spent, wall_s / (60.0 * self.max_minutes))
        if self.max_cpu_minutes > 0:
            spent = max(spent, cpu_s / (60.0 * self.max_cpu_minutes))
        return spent

    def progress(self, step: int, time_spent: float) -> float:
        """Fraction of the run done, in [0, 1]: steps or time, whichever is further."""
        return min(1.0, max(step / self.steps, time_spent))

    def factor(self, step: int, progress: float) -> float:
        """Learning-rate multiplier for `step` at `progress`. The decay spans the progress
        left after warm-up, so a time budget that ends the run early still anneals it."""
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        start = min(self.warmup_steps / self.steps, 1.0)
        decayed = (progress - start) / max(1e-9, 1.0 - start)
        decayed = min(1.0, max(0.0, decayed))
        return FINAL_FACTOR + (1 - FINAL_FACTOR) * 0.5 * (1 + math.cos(math.pi * decayed))

"""Learning-rate schedules as small objects: a factor of the configured lr per optimiser step."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class LRSchedule:
    """lr(step) = base_lr * factor(step) for the 0-based optimiser step.

    Attributes:
        kind: "constant" (the paper: factor 1 after the warm-up) or "cosine": after the warm-up
            the factor falls from 1 to `final_fraction` on a half cosine, reaching it at the
            last step.
        total_steps: steps of the run (the cosine's length includes the warm-up).
        warmup_steps: linear warm-up, factor (step + 1) / warmup_steps; 0 = none.
        final_fraction: the cosine's last factor.
    """

    kind: str = "constant"
    total_steps: int = 1
    warmup_steps: int = 0
    final_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"lr_schedule={self.kind!r} is not valid; choose one of {SCHEDULES}")
        if self.total_steps < 1 or self.warmup_steps < 0 or not 0.0 <= self.final_fraction <= 1.0:
            raise ValueError(f"LRSchedule needs total_steps >= 1, warmup_steps >= 0, 0 <= final_fraction <= 1; "
                             f"got {self.total_steps}, {self.warmup_steps}, {self.final_fraction}")

    @classmethod
    def from_config(cls, section: Any) -> "LRSchedule":
        """The schedule of a Stage1Config / Stage2Config (lr_schedule, warmup_steps, lr_final_fraction, steps)."""
        return cls(section.lr_schedule, section.steps, section.warmup_steps, section.lr_final_fraction)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        span = self.total_steps - self.warmup_steps - 1
        progress = 1.0 if span <= 0 else min(1.0, (step - self.warmup_steps) / span)
        return self.final_fraction + (1.0 - self.final_fraction) * (1.0 + math.cos(math.pi * progress)) / 2.0

"""Cube nudges: a push in a random direction given to the cube at random times of an episode.

Why: the scripted human keeps the cube on its push line, so demonstrations never show a cube
that has left it, which is where a policy's own small errors lead. Nudged while recording,
the cube leaves the line in full view and the human's labels show it steered back; nothing
the labels carry is hidden from the policy (unlike DART noise on the executed target).
Nudges are a recording option; evaluation runs without them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bc_robot.sim.tasks import check_range

# Separates the nudge draws from the scene's own (both derive from the scene seed).
NUDGE_STREAM = 0x6E75


@dataclass
class NudgeConfig:
    count: int = 0                              # nudges per episode (0 = off)
    window: tuple[float, float] = (1.0, 8.0)    # episode seconds within which they fall
    speed: tuple[float, float] = (0.2, 0.4)     # m/s given to the cube, any direction in xy

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or isinstance(self.count, bool) \
                or not 0 <= self.count <= 10:
            raise ValueError(f'nudge count must be an int in [0, 10], got {self.count!r}')
        for name, low_limit, high_limit in (('window', 0.0, 600.0), ('speed', 0.0, 2.0)):
            low, high = check_range(f'nudge {name}', tuple(getattr(self, name)))
            if low < low_limit or high > high_limit:
                raise ValueError(f'nudge {name} must lie in [{low_limit}, {high_limit}], got '
                                 f'{[low, high]!r}')
            setattr(self, name, (low, high))


@dataclass(frozen=True)
class Nudge:
    time: float                 # episode seconds
    velocity: tuple[float, float]  # m/s added to the cube, table plane


def nudge_schedule(config: NudgeConfig, scene_seed: int) -> list[Nudge]:
    """The episode's nudges in time order, the same for every run of the scene seed."""
    rng = np.random.default_rng([int(scene_seed), NUDGE_STREAM])
    nudges = []
    for _ in range(config.count):
        at = float(rng.uniform(*config.window))
        speed = float(rng.uniform(*config.speed))
        angle = float(rng.uniform(0.0, 2.0 * math.pi))
        nudges.append(Nudge(at, (speed * math.cos(angle), speed * math.sin(angle))))
    return sorted(nudges, key=lambda n: n.time)

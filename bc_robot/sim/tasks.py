"""The tasks the simulated arm offers: scene randomization from a seed and the success test.

`reach` is the smoke task (bring the TCP to a marker); `push` is the real one (push a cube
into a goal patch on the table). A scene is a pure function of (config, seed), so the same
seed reproduces the same scene in any process.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

TASKS = ('reach', 'push')
# Where the cube waits during `reach`: on the table but outside the reachable workspace box.
PARKED_CUBE_XY = (0.85, -0.55)
MAX_GOAL_TRIES = 200


def check_range(name: str, value: tuple[float, float]) -> tuple[float, float]:
    if len(value) != 2:
        raise ValueError(f'{name} must be [low, high], got {list(value)!r}')
    low, high = float(value[0]), float(value[1])
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f'{name} must be finite with low <= high, got {list(value)!r}')
    return low, high


@dataclass
class TaskConfig:
    """Task name and randomization ranges (metres, radians), all in the base frame."""

    name: str = 'push'
    cube_x: tuple[float, float] = (0.40, 0.60)
    cube_y: tuple[float, float] = (-0.15, 0.15)
    cube_yaw: tuple[float, float] = (-0.6, 0.6)
    goal_distance: tuple[float, float] = (0.10, 0.18)
    goal_x: tuple[float, float] = (0.33, 0.68)   # the goal centre must land inside this box
    goal_y: tuple[float, float] = (-0.25, 0.25)
    marker_x: tuple[float, float] = (0.30, 0.65)
    marker_y: tuple[float, float] = (-0.25, 0.25)
    marker_z: tuple[float, float] = (0.05, 0.35)
    success_radius: float = 0.02

    def __post_init__(self) -> None:
        if self.name not in TASKS:
            raise ValueError(f'unknown task {self.name!r}; known tasks: {", ".join(TASKS)}')
        for name in ('cube_x', 'cube_y', 'cube_yaw', 'goal_distance', 'goal_x', 'goal_y',
                     'marker_x', 'marker_y', 'marker_z'):
            setattr(self, name, check_range(name, tuple(getattr(self, name))))
        if self.goal_distance[0] <= 0.0:
            raise ValueError(f'goal_distance must be > 0, got {list(self.goal_distance)!r}')
        if not math.isfinite(self.success_radius) or self.success_radius <= 0.0:
            raise ValueError(f'success_radius must be > 0, got {self.success_radius!r}')
        # A goal box that can never hold a goal would make every reset fail: refuse it now.
        sample_scene(self, 0)


@dataclass(frozen=True)
class Scene:
    """Everything random about one episode."""

    seed: int
    cube_xy: np.ndarray = field(default_factory=lambda: np.zeros(2))
    cube_yaw: float = 0.0
    goal_xy: np.ndarray = field(default_factory=lambda: np.zeros(2))
    marker: np.ndarray = field(default_factory=lambda: np.zeros(3))


def sample_scene(config: TaskConfig, seed: int) -> Scene:
    """The scene for `seed`: deterministic, independent of anything else in the process."""
    rng = np.random.default_rng(int(seed))
    marker = np.array([rng.uniform(*config.marker_x), rng.uniform(*config.marker_y),
                       rng.uniform(*config.marker_z)])
    if config.name == 'reach':
        return Scene(int(seed), np.array(PARKED_CUBE_XY), 0.0, np.array(PARKED_CUBE_XY), marker)
    for _ in range(MAX_GOAL_TRIES):
        cube = np.array([rng.uniform(*config.cube_x), rng.uniform(*config.cube_y)])
        angle = rng.uniform(-math.pi, math.pi)
        goal = cube + rng.uniform(*config.goal_distance) * np.array([math.cos(angle),
                                                                      math.sin(angle)])
        if config.goal_x[0] <= goal[0] <= config.goal_x[1] and \
                config.goal_y[0] <= goal[1] <= config.goal_y[1]:
            return Scene(int(seed), cube, float(rng.uniform(*config.cube_yaw)), goal, marker)
    raise ValueError(
        f'no goal fits goal_x={list(config.goal_x)} goal_y={list(config.goal_y)} at '
        f'goal_distance={list(config.goal_distance)} from cubes in cube_x={list(config.cube_x)} '
        f'cube_y={list(config.cube_y)}')


def evaluate(config: TaskConfig, tcp: np.ndarray, cube: np.ndarray, goal_xy: np.ndarray,
             marker: np.ndarray) -> tuple[float, bool]:
    """(distance, success): cube centre to goal centre in the table plane for `push` (and the
    cube must still be on the table), TCP to marker for `reach`."""
    if config.name == 'push':
        distance = float(np.linalg.norm(cube[:2] - goal_xy[:2]))
        on_table = abs(float(cube[2]) - 0.025) < 0.01
        return distance, bool(distance <= config.success_radius and on_table)
    distance = float(np.linalg.norm(tcp - marker))
    return distance, bool(distance <= config.success_radius)


class PushContactProbe:
    """Where the pusher met the cube, for failure analysis: the offset of the TCP across the
    cube→goal line when the cube has first moved `contact_m` (positive = left of the push
    direction), and the cube's heading against that direction once it has moved
    `heading_m` (degrees, positive = turned left). A policy that meets the cube off centre
    sends it off at an angle past the goal; the scripted human meets it within ~1 mm."""

    def __init__(self, cube_xy: np.ndarray, goal_xy: np.ndarray, contact_m: float = 0.005,
                 heading_m: float = 0.03) -> None:
        self.start = np.asarray(cube_xy, dtype=np.float64)[:2].copy()
        towards = np.asarray(goal_xy, dtype=np.float64)[:2] - self.start
        norm = float(np.linalg.norm(towards))
        self.direction = towards / norm if norm > 1e-9 else np.array([1.0, 0.0])
        self.normal = np.array([-self.direction[1], self.direction[0]])
        if not 0.0 < contact_m <= heading_m:
            raise ValueError(f'contact_m {contact_m!r} must be > 0 and at most heading_m '
                             f'{heading_m!r}')
        self.contact_m, self.heading_m = contact_m, heading_m
        self.contact_lateral_m: float | None = None
        self.heading_deg: float | None = None

    def update(self, tcp_xy: np.ndarray, cube_xy: np.ndarray) -> None:
        if self.heading_deg is not None:
            return  # both figures are in (contact comes first: contact_m < heading_m)
        cube = np.asarray(cube_xy, dtype=np.float64)[:2]
        moved = cube - self.start
        distance = float(np.linalg.norm(moved))
        if self.contact_lateral_m is None and distance >= self.contact_m:
            offset = np.asarray(tcp_xy, dtype=np.float64)[:2] - cube
            self.contact_lateral_m = float(offset @ self.normal)
        if distance >= self.heading_m:
            self.heading_deg = math.degrees(math.atan2(float(moved @ self.normal),
                                                       float(moved @ self.direction)))

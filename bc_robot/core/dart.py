"""DART noise injection (Laskey et al., 2017): perturb the *executed* target while the
human drives, record the human's clean command as the label, so demonstrations contain
the recoveries a policy needs when it drifts off the demonstrated path.

The perturbation is an Ornstein-Uhlenbeck process per axis (smooth: no per-tick jumps),
clipped to hard bounds on translation and rotation and on its change per second, and it
starts from zero at every handover so switching authority stays bumpless.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bc_robot.core.pose import Pose, quat_multiply, quat_normalize, rotvec_to_quat


@dataclass(frozen=True)
class DartConfig:
    enabled: bool = False
    sigma_position: float = 0.005      # m, stationary std per axis
    sigma_rotation: float = 0.02       # rad, stationary std per axis
    max_position: float = 0.01         # m, bound on |offset|
    max_rotation: float = 0.05         # rad, bound on |rotation offset|
    time_constant: float = 0.5         # s, correlation time of the noise
    max_rate_position: float = 0.05    # m/s, bound on how fast the offset may change
    max_rate_rotation: float = 0.2     # rad/s
    seed: int = 0                      # 0 = from OS entropy

    def __post_init__(self) -> None:
        for name in ('sigma_position', 'sigma_rotation', 'max_position', 'max_rotation',
                     'max_rate_position', 'max_rate_rotation'):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f'dart {name} = {value!r} must be a finite number >= 0')
        if not (isinstance(self.time_constant, (int, float)) and math.isfinite(self.time_constant)
                and self.time_constant > 0):
            raise ValueError(f'dart time_constant = {self.time_constant!r} must be > 0')
        if self.max_position > 0.05 or self.max_rotation > 0.3:
            raise ValueError(f'dart bounds ({self.max_position} m, {self.max_rotation} rad) exceed '
                             f'the safe maximum (0.05 m, 0.3 rad)')
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f'dart seed = {self.seed!r} must be an int >= 0')


def _clip_norm(vector: np.ndarray, bound: float) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector if norm <= bound or norm == 0.0 else vector * (bound / norm)


class DartNoise:
    """Bounded, smooth pose offset. `step(dt)` advances it, `apply(pose)` perturbs."""

    def __init__(self, config: DartConfig) -> None:
        self.config = config
        self._rng = np.random.default_rng(config.seed or None)
        self.position = np.zeros(3)
        self.rotation = np.zeros(3)   # rotation vector, base frame

    def reset(self) -> None:
        self.position = np.zeros(3)
        self.rotation = np.zeros(3)

    def _ou(self, x: np.ndarray, sigma: float, dt: float) -> np.ndarray:
        tau = self.config.time_constant
        return x - x * (dt / tau) + sigma * math.sqrt(2.0 * dt / tau) * self._rng.standard_normal(3)

    def step(self, dt: float) -> None:
        if not self.config.enabled or dt <= 0.0:
            return
        c = self.config
        new_position = _clip_norm(self._ou(self.position, c.sigma_position, dt), c.max_position)
        new_rotation = _clip_norm(self._ou(self.rotation, c.sigma_rotation, dt), c.max_rotation)
        self.position = self.position + _clip_norm(new_position - self.position,
                                                   c.max_rate_position * dt)
        self.rotation = self.rotation + _clip_norm(new_rotation - self.rotation,
                                                   c.max_rate_rotation * dt)

    def apply(self, pose: Pose) -> Pose:
        if not self.config.enabled:
            return pose
        orientation = quat_multiply(rotvec_to_quat(self.rotation), quat_normalize(pose.orientation))
        return Pose(pose.position + self.position, orientation / np.linalg.norm(orientation))

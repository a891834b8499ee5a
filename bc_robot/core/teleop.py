"""SpaceMouse / gamepad input → end-effector target: axis mapping, deadband, scaling, base
or tool frame, button edges, and integration of the velocity command into a pose.

The human commands a velocity; the arm needs an absolute target. The integrator keeps the
human's *clean* target (the training label), starts it from the pose the arm was commanded
to (bumpless), holds it when input goes stale (a dead driver must not keep the arm moving)
and keeps it within reach of the measured pose and inside the workspace, so a blocked arm
or a user pushing against a limit never winds the target up far from where the arm is.
Pure Python + numpy: unit tested without ROS.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from bc_robot.core.pose import (Pose, is_finite, quat_angle, quat_multiply, quat_normalize,
                                quat_slerp, quat_to_matrix, rotvec_to_quat)

FRAMES = ('base', 'tool')
MOTION_SOURCES = ('twist', 'joy')
# Names of the six command components, in the order every mapping uses.
COMPONENTS = ('vx', 'vy', 'vz', 'wx', 'wy', 'wz')


@dataclass(frozen=True)
class TeleopConfig:
    """How raw input becomes a velocity. Scales are the velocity at full deflection (1.0)."""

    linear_scale: float = 0.15          # m/s
    angular_scale: float = 0.6          # rad/s
    deadband: float = 0.05              # normalized units, removed and rescaled
    frame: str = 'base'                 # 'base': axes are base-frame directions; 'tool': TCP frame
    motion_source: str = 'twist'        # 'twist' (spacenav Twist) or 'joy' (Joy axes, gamepads)
    axis_map: tuple[int, ...] = (0, 1, 2, 3, 4, 5)   # Joy axis index per component, -1 = unused
    axis_signs: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    input_timeout: float = 0.5          # s without input → zero velocity (0 disables)
    max_lead: float = 0.10              # m the target may lead the measured pose
    max_lead_angle: float = 0.5         # rad
    reanchor_distance: float = 0.2      # m; measured pose this far away = the arm was moved
    workspace_min: tuple[float, ...] = (0.20, -0.40, 0.0)
    workspace_max: tuple[float, ...] = (0.80, 0.40, 0.60)

    def __post_init__(self) -> None:
        for name in ('linear_scale', 'angular_scale', 'input_timeout', 'max_lead',
                     'max_lead_angle', 'reanchor_distance'):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f'teleop {name} = {value!r} must be a finite number >= 0')
        if not (isinstance(self.deadband, (int, float)) and 0.0 <= self.deadband < 1.0):
            raise ValueError(f'teleop deadband = {self.deadband!r} must be in [0, 1)')
        if self.frame not in FRAMES:
            raise ValueError(f'teleop frame = {self.frame!r} must be one of {FRAMES}')
        if self.motion_source not in MOTION_SOURCES:
            raise ValueError(
                f'teleop motion_source = {self.motion_source!r} must be one of {MOTION_SOURCES}')
        axis_map = tuple(self.axis_map)
        if len(axis_map) != 6 or any(not isinstance(a, int) or a < -1 for a in axis_map):
            raise ValueError(f'teleop axis_map = {list(axis_map)} must be 6 ints >= -1 '
                             f'(Joy axis index for {", ".join(COMPONENTS)}; -1 = unused)')
        signs = tuple(float(s) for s in self.axis_signs)
        if len(signs) != 6 or any(s not in (-1.0, 1.0) for s in signs):
            raise ValueError(f'teleop axis_signs = {list(self.axis_signs)} must be 6 values of +1/-1')
        lo = np.asarray(self.workspace_min, dtype=float)
        hi = np.asarray(self.workspace_max, dtype=float)
        if lo.shape != (3,) or hi.shape != (3,) or not is_finite(lo) or not is_finite(hi) \
                or np.any(lo >= hi):
            raise ValueError(f'teleop workspace [{list(self.workspace_min)}, '
                             f'{list(self.workspace_max)}] must be two finite xyz with min < max')
        object.__setattr__(self, 'axis_map', axis_map)
        object.__setattr__(self, 'axis_signs', signs)


@dataclass(frozen=True)
class VelocityCommand:
    """Linear (m/s) and angular (rad/s) velocity, in the configured frame."""

    linear: np.ndarray = field(default_factory=lambda: np.zeros(3))
    angular: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def is_zero(self) -> bool:
        return not (np.any(self.linear) or np.any(self.angular))


ZERO = VelocityCommand()


def apply_deadband(values: np.ndarray, deadband: float) -> np.ndarray:
    """Zero inside ±deadband, rescaled outside so the output is continuous and still
    reaches ±1 at full deflection (no jump at the deadband edge)."""
    values = np.clip(np.asarray(values, dtype=np.float64), -1.0, 1.0)
    if deadband <= 0.0:
        return values
    magnitude = np.maximum(np.abs(values) - deadband, 0.0) / (1.0 - deadband)
    return np.sign(values) * magnitude


def _checked(values: Sequence[float], what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not is_finite(array):
        raise ValueError(f'{what} is not finite: {array.tolist()}')
    return array


def command_from_axes(six: Sequence[float], config: TeleopConfig) -> VelocityCommand:
    """Six normalized values (vx, vy, vz, wx, wy, wz) in [-1, 1] → scaled velocity.
    Values outside [-1, 1] are clipped (some drivers overshoot slightly)."""
    six = _checked(six, 'teleop input')
    if six.shape != (6,):
        raise ValueError(f'teleop input needs 6 values, got {six.shape[0]}')
    shaped = apply_deadband(six, config.deadband)
    return VelocityCommand(shaped[:3] * config.linear_scale, shaped[3:] * config.angular_scale)


def command_from_twist(linear: Sequence[float], angular: Sequence[float],
                       config: TeleopConfig) -> VelocityCommand:
    """A spacenav-style Twist (components normalized to [-1, 1]); signs still apply."""
    six = np.concatenate([_checked(linear, 'twist linear'), _checked(angular, 'twist angular')])
    return command_from_axes(six * np.asarray(config.axis_signs), config)


def command_from_joy(axes: Sequence[float], config: TeleopConfig) -> VelocityCommand:
    """Joy axes mapped through `axis_map` / `axis_signs` (a gamepad's sticks and triggers)."""
    axes = _checked(axes, 'joy axes')
    six = np.zeros(6)
    for i, index in enumerate(config.axis_map):
        if index < 0:
            continue
        if index >= axes.shape[0]:
            raise ValueError(f'joy message has {axes.shape[0]} axes but axis_map uses axis '
                             f'{index} for {COMPONENTS[i]}')
        six[i] = axes[index] * config.axis_signs[i]
    return command_from_axes(six, config)


class ButtonEdges:
    """Rising-edge detection: a held button acts once, a bouncing one per clean press."""

    def __init__(self) -> None:
        self._previous: tuple[int, ...] = ()

    def update(self, buttons: Sequence[int]) -> set[int]:
        current = tuple(1 if b else 0 for b in buttons)
        pressed = {i for i, b in enumerate(current)
                   if b and (i >= len(self._previous) or not self._previous[i])}
        self._previous = current
        return pressed

    @staticmethod
    def held(buttons: Sequence[int], index: int) -> bool | None:
        """State of one button; None when the index is disabled (<0) or absent."""
        if index < 0 or index >= len(buttons):
            return None
        return bool(buttons[index])


def integrate_pose(pose: Pose, command: VelocityCommand, dt: float, frame: str) -> Pose:
    """Advance `pose` by `command` for `dt` seconds. Rotation is about the TCP (position
    unchanged by angular velocity); in 'tool' frame both velocities are expressed in the
    current TCP frame, in 'base' frame in the robot base frame."""
    if dt <= 0.0 or command.is_zero():
        return pose
    q = quat_normalize(pose.orientation)
    delta_q = rotvec_to_quat(command.angular * dt)
    if frame == 'tool':
        position = pose.position + quat_to_matrix(q) @ (command.linear * dt)
        orientation = quat_multiply(q, delta_q)
    else:
        position = pose.position + command.linear * dt
        orientation = quat_multiply(delta_q, q)
    return Pose(position, orientation / np.linalg.norm(orientation))


def limit_target(target: Pose, previous: Pose, measured: Pose | None,
                 config: TeleopConfig) -> Pose:
    """Keep the target inside the workspace box and within max_lead / max_lead_angle of
    the measured pose (when known). A limit the previous target already violated (an
    anchor outside the box, a blocked arm) only stops it getting worse: limiting never
    moves the target by itself, so it can never cause a step."""
    lo = np.minimum(config.workspace_min, previous.position)
    hi = np.maximum(config.workspace_max, previous.position)
    position = np.clip(target.position, lo, hi)
    orientation = target.orientation
    if measured is not None:
        max_lead = max(config.max_lead,
                       float(np.linalg.norm(previous.position - measured.position)))
        offset = position - measured.position
        distance = float(np.linalg.norm(offset))
        if distance > max_lead:
            position = measured.position + offset * (max_lead / distance)
        max_angle = max(config.max_lead_angle,
                        quat_angle(previous.orientation, measured.orientation))
        angle = quat_angle(orientation, measured.orientation)
        if angle > max_angle:
            orientation = quat_slerp(measured.orientation, orientation, max_angle / angle)
    return Pose(position, orientation)


class TeleopIntegrator:
    """The human's clean target: anchored at a pose, moved by the latest command at each
    tick, held when the command is older than `input_timeout`, re-anchored at the measured
    pose when that is more than `reanchor_distance` away (the arm was moved under us)."""

    def __init__(self, config: TeleopConfig) -> None:
        self.config = config
        self.target: Pose | None = None
        self.gripper: float = 1.0
        self._command = ZERO
        self._command_time: float | None = None
        self._last_step: float | None = None
        self.reanchors = 0

    @property
    def anchored(self) -> bool:
        return self.target is not None

    def anchor(self, pose: Pose, gripper: float | None, now: float) -> None:
        """Restart from `pose` (the pose the arm was commanded to): the next output equals
        it exactly, so authority changes hands without a step."""
        self.target = Pose(pose.position.copy(), quat_normalize(pose.orientation))
        if gripper is not None and math.isfinite(gripper):
            self.gripper = float(min(1.0, max(0.0, gripper)))
        self._last_step = now

    def set_command(self, command: VelocityCommand, now: float) -> None:
        self._command = command
        self._command_time = now

    def command_age(self, now: float) -> float:
        return math.inf if self._command_time is None else now - self._command_time

    def active_command(self, now: float) -> VelocityCommand:
        timeout = self.config.input_timeout
        if self._command_time is None or (timeout > 0 and self.command_age(now) > timeout):
            return ZERO
        return self._command

    def toggle_gripper(self) -> float:
        """Open ↔ closed from wherever the gripper is (a half-open gripper closes)."""
        self.gripper = 0.0 if self.gripper >= 0.5 else 1.0
        return self.gripper

    def step(self, now: float, measured: Pose | None, max_dt: float = 0.1) -> Pose | None:
        """Advance to `now`. dt is clipped to `max_dt` so a stalled process never turns one
        late tick into a large step. Returns the new clean target (None before anchoring)."""
        if self.target is None:
            return None
        if measured is not None and self.config.reanchor_distance > 0 and float(
                np.linalg.norm(self.target.position - measured.position)) \
                > self.config.reanchor_distance:
            # the arm was moved under us (sim reset, e-stop recovery, someone pushed it):
            # chasing the old target would be a jump, so continue from where the arm is
            self.anchor(measured, None, now)
            self.reanchors += 1
        dt = 0.0 if self._last_step is None else min(max(now - self._last_step, 0.0), max_dt)
        self._last_step = now
        moved = integrate_pose(self.target, self.active_command(now), dt, self.config.frame)
        self.target = limit_target(moved, self.target, measured, self.config)
        return self.target

"""The safety gate: the last check between a learned policy and the arm.

Every rule is a pure function so each one can be tested on its own with hostile values
(signalling NaN, 1e308, -0.0, a zero quaternion, a target a metre away). `Gate` composes
them in a fixed order and counts every rejection and clamp by reason for /diagnostics.

Two stages, because they guard different things:

* `Gate.admit` runs once per *incoming* target: a pose that is not a pose (non-finite, a
  quaternion far from unit norm, a foreign frame) is rejected outright and the previous
  good target stays in force; a small quaternion deviation is normalized; the position is
  clamped into the workspace box.
* `Gate.shape` runs once per *output tick*: the desired pose is pulled to within
  `max_position_error` / `max_orientation_error` of the measured pose (what CRISP calls
  error clipping), clamped into the box, and finally moved from the previous output by at
  most one tick of `max_linear_speed` / `max_angular_speed`. The step limit is applied
  last, so consecutive outputs never differ by more than one tick at full speed, whatever
  the inputs or the mode.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from bc_robot.core.pose import Pose, quat_canonical

# Reasons, as they appear in /diagnostics ("rejected.<reason>", "clamped.<reason>").
REJECT_NON_FINITE = 'non_finite'
REJECT_QUATERNION = 'quaternion_norm'
REJECT_FRAME = 'frame_id'
REJECT_GRIPPER_NON_FINITE = 'gripper_non_finite'
REJECT_CONFLICT = 'publisher_conflict'
CLAMP_WORKSPACE = 'workspace'
CLAMP_POSITION_ERROR = 'position_error'
CLAMP_ORIENTATION_ERROR = 'orientation_error'
CLAMP_LINEAR_STEP = 'linear_step'
CLAMP_ANGULAR_STEP = 'angular_step'
CLAMP_GRIPPER = 'gripper_range'
NORMALIZED_QUATERNION = 'quaternion_normalized'

REJECT_REASONS = (REJECT_NON_FINITE, REJECT_QUATERNION, REJECT_FRAME,
                  REJECT_GRIPPER_NON_FINITE, REJECT_CONFLICT)
CLAMP_REASONS = (CLAMP_WORKSPACE, CLAMP_POSITION_ERROR, CLAMP_ORIENTATION_ERROR,
                 CLAMP_LINEAR_STEP, CLAMP_ANGULAR_STEP, CLAMP_GRIPPER, NORMALIZED_QUATERNION)

# Slack when comparing a limited value with its limit (float rounding, not a fault).
_EPS = 1e-12


class GateRejection(ValueError):
    """An input the gate refuses; `reason` is one of REJECT_REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class GateLimits:
    """Every limit the gate enforces; validated so a typo cannot disable a rule."""

    workspace_min: tuple[float, float, float] = (0.20, -0.40, 0.0)
    workspace_max: tuple[float, float, float] = (0.80, 0.40, 0.60)
    max_linear_speed: float = 0.5  # m/s
    max_angular_speed: float = 1.5  # rad/s
    max_position_error: float = 0.10  # m, target–measured
    max_orientation_error: float = 0.5  # rad, target–measured
    quat_norm_tolerance: float = 1e-2
    output_rate_hz: float = 100.0

    def __post_init__(self) -> None:
        lo = tuple(float(v) for v in self.workspace_min)
        hi = tuple(float(v) for v in self.workspace_max)
        for name, box in (('workspace_min', lo), ('workspace_max', hi)):
            if len(box) != 3 or not all(math.isfinite(v) for v in box):
                raise ValueError(f'{name} must be 3 finite values, got {list(box)}')
        if any(a >= b for a, b in zip(lo, hi)):
            raise ValueError(f'workspace_min {list(lo)} must be below workspace_max {list(hi)} '
                             f'on every axis')
        object.__setattr__(self, 'workspace_min', lo)
        object.__setattr__(self, 'workspace_max', hi)
        for name in ('max_linear_speed', 'max_angular_speed', 'max_position_error',
                     'max_orientation_error', 'quat_norm_tolerance', 'output_rate_hz'):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f'{name} must be a finite positive number, got {value!r}')
        if self.quat_norm_tolerance >= 1.0:
            raise ValueError(f'quat_norm_tolerance {self.quat_norm_tolerance} would accept a '
                             f'zero quaternion; it must be below 1')

    @property
    def max_step_translation(self) -> float:
        """Largest position change between two consecutive outputs (m)."""
        return self.max_linear_speed / self.output_rate_hz

    @property
    def max_step_rotation(self) -> float:
        """Largest orientation change between two consecutive outputs (rad)."""
        return self.max_angular_speed / self.output_rate_hz


def _norm(v: np.ndarray) -> float:
    """Euclidean norm of a short vector; math.hypot scales internally, so components near
    1e308 do not overflow (and it is several times faster than numpy on 3–4 values)."""
    return math.hypot(*(float(x) for x in v))


# --- the rules, each a pure function ---------------------------------------------------

def check_finite(position: np.ndarray, orientation: np.ndarray) -> None:
    """Reject NaN (quiet or signalling) and ±Inf anywhere in the pose."""
    values = [float(v) for v in np.asarray(position, dtype=np.float64).reshape(-1)] + \
        [float(v) for v in np.asarray(orientation, dtype=np.float64).reshape(-1)]
    if not all(map(math.isfinite, values)):
        raise GateRejection(REJECT_NON_FINITE, f'pose has a non-finite value: {values}')


def check_frame(frame_id: str, expected: str) -> None:
    """Reject a target stamped in another frame (an empty frame means 'the base frame')."""
    if frame_id and frame_id != expected:
        raise GateRejection(REJECT_FRAME,
                            f'target frame_id {frame_id!r} is not the base frame {expected!r}')


def normalize_quaternion(q: np.ndarray, tolerance: float) -> tuple[np.ndarray, bool]:
    """Unit quaternion (w >= 0) and whether it needed more than rounding-level scaling.

    A norm off by more than `tolerance` (a zero quaternion, garbage) is rejected: it must
    never be 'fixed' into some rotation the policy did not mean."""
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    if q.shape != (4,) or not np.all(np.isfinite(q)):
        raise GateRejection(REJECT_NON_FINITE, f'quaternion is not 4 finite values: {q.tolist()}')
    norm = _norm(q)
    if not math.isfinite(norm) or abs(norm - 1.0) > tolerance:
        raise GateRejection(REJECT_QUATERNION,
                            f'quaternion norm {norm:.6g} is not within {tolerance:g} of 1: '
                            f'{q.tolist()}')
    return quat_canonical(q / norm) + 0.0, abs(norm - 1.0) > 1e-9


def clamp_to_box(position: np.ndarray, lo: tuple[float, ...], hi: tuple[float, ...]
                 ) -> tuple[np.ndarray, bool]:
    """Position clamped into the workspace box; True when it was outside."""
    position = np.asarray(position, dtype=np.float64)
    clamped = np.minimum(np.maximum(position, lo), hi) + 0.0  # + 0.0 turns -0.0 into 0.0
    return clamped, bool(np.any(clamped != position))


def limit_translation(origin: np.ndarray, target: np.ndarray, max_distance: float
                      ) -> tuple[np.ndarray, bool]:
    """`target` moved onto the ball of radius `max_distance` around `origin` if outside."""
    origin = np.asarray(origin, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    # Work with a quarter of the difference: finite for any finite inputs (1e308 − (−1e308)
    # would overflow), and its norm cannot overflow either.
    quarter = 0.25 * target - 0.25 * origin
    quarter_distance = _norm(quarter)
    if quarter_distance == 0.0:
        return target.copy(), False
    if 4.0 * quarter_distance <= max_distance + _EPS:
        return target.copy(), False
    return origin + quarter * (max_distance / quarter_distance), True


def limit_rotation(origin: np.ndarray, target: np.ndarray, max_angle: float
                   ) -> tuple[np.ndarray, bool]:
    """`target` orientation rotated back toward `origin` so the angle is ≤ `max_angle`."""
    a = np.asarray(origin, dtype=np.float64)
    b = np.asarray(target, dtype=np.float64)
    if float(np.dot(a, b)) < 0.0:
        b = -b  # same rotation; take the short way
    # Half-angle between the orientations, accurate for tiny angles too (atan2, not acos).
    half = math.atan2(_norm(b - a * float(np.dot(a, b))), float(np.dot(a, b)))
    angle = 2.0 * half
    if angle <= max_angle + _EPS:
        return np.asarray(target, dtype=np.float64), False
    # Exact slerp (pose.quat_slerp switches to nlerp for small angles, which would let the
    # step exceed the limit by ~1e-8 rad).
    t = max_angle / angle
    q = (math.sin((1.0 - t) * half) * a + math.sin(t * half) * b) / math.sin(half)
    return quat_canonical(q / _norm(q)), True


def clamp_gripper(value: float) -> tuple[float, bool]:
    """Gripper opening in [0, 1]; a non-finite opening is rejected, -0.0 becomes 0.0."""
    value = float(value)
    if not math.isfinite(value):
        raise GateRejection(REJECT_GRIPPER_NON_FINITE, f'gripper opening {value!r} is not finite')
    clamped = min(1.0, max(0.0, value)) + 0.0
    return clamped, clamped != value


# --- the composition -------------------------------------------------------------------

class Gate:
    """Applies the rules in order and counts rejections and clamps by reason."""

    def __init__(self, limits: GateLimits, frame_id: str = 'base') -> None:
        self.limits = limits
        self.frame_id = frame_id
        self.rejected: Counter[str] = Counter()
        self.clamped: Counter[str] = Counter()

    def admit(self, position: np.ndarray, orientation: np.ndarray, frame_id: str = '') -> Pose:
        """Validate one incoming target. Raises GateRejection (counted) for a pose that must
        not be used at all; returns the normalized, box-clamped pose otherwise."""
        try:
            check_frame(frame_id, self.frame_id)
            check_finite(position, orientation)
            q, normalized = normalize_quaternion(orientation, self.limits.quat_norm_tolerance)
        except GateRejection as exc:
            self.rejected[exc.reason] += 1
            raise
        if normalized:
            self.clamped[NORMALIZED_QUATERNION] += 1
        p, outside = clamp_to_box(position, self.limits.workspace_min, self.limits.workspace_max)
        if outside:
            self.clamped[CLAMP_WORKSPACE] += 1
        return Pose(p, q)

    def admit_gripper(self, value: float) -> float:
        try:
            clamped, changed = clamp_gripper(value)
        except GateRejection as exc:
            self.rejected[exc.reason] += 1
            raise
        if changed:
            self.clamped[CLAMP_GRIPPER] += 1
        return clamped

    def shape(self, previous: Pose | None, desired: Pose, measured: Pose) -> Pose:
        """The pose to send this tick: desired, kept near the measured pose and inside the
        box, then at most one tick's step away from the previous output."""
        limits = self.limits
        p, far = limit_translation(measured.position, desired.position, limits.max_position_error)
        if far:
            self.clamped[CLAMP_POSITION_ERROR] += 1
        p, outside = clamp_to_box(p, limits.workspace_min, limits.workspace_max)
        if outside:
            self.clamped[CLAMP_WORKSPACE] += 1
        q, turned = limit_rotation(measured.orientation, desired.orientation,
                                   limits.max_orientation_error)
        if turned:
            self.clamped[CLAMP_ORIENTATION_ERROR] += 1
        if previous is not None:
            p, fast = limit_translation(previous.position, p, limits.max_step_translation)
            if fast:
                self.clamped[CLAMP_LINEAR_STEP] += 1
            q, spun = limit_rotation(previous.orientation, q, limits.max_step_rotation)
            if spun:
                self.clamped[CLAMP_ANGULAR_STEP] += 1
        return Pose(p, q)

    def counts(self) -> dict[str, int]:
        """Every reason with its count (zeros included, so dashboards see the keys)."""
        result = {f'rejected.{r}': self.rejected[r] for r in REJECT_REASONS}
        result.update({f'clamped.{r}': self.clamped[r] for r in CLAMP_REASONS})
        return result

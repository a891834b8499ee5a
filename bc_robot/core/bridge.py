"""The controller bridge's state: authority, watchdog, e-stop, and one output per tick.

`BridgeCore` is pure (no rclpy, no clocks of its own): the node feeds it messages with the
time they arrived and calls `tick(now)` at the output rate. Every decision that can move
the arm is made here, so every one of them is unit tested without a ROS graph.

Modes, checked in this order each tick (the first that applies wins):

========  ==============================================  ===============================
mode      when                                            output
========  ==============================================  ===============================
WAITING   no measured pose yet                            nothing (we do not know where
                                                          the arm is)
FROZEN    measured pose older than `measured_timeout`     the last output, unchanged
DISABLED  e-stopped (latched) or not yet enabled          hold pose
CONFLICT  >1 publisher on the active source's topics      hold pose; its messages dropped
IDLE      active source has sent no valid target since    hold pose
          enable / since it became active and fresh
STALE     active source's last valid target older than    hold pose
          `stale_timeout`
TRACKING  otherwise                                       interpolated target, gated
========  ==============================================  ===============================

The hold pose is the measured pose latched when a holding mode begins. Every output,
whatever the mode, goes through `Gate.shape`, whose last rule limits the step from the
previous output: switching source, going stale, e-stopping or resuming never makes the
target jump. On enable the output restarts from the measured pose.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from bc_robot.core.gate import (REJECT_CONFLICT, Gate, GateLimits, GateRejection, check_finite,
                                normalize_quaternion)
from bc_robot.core.interpolation import PeriodBounds, PeriodEstimator, TargetInterpolator
from bc_robot.core.pose import Pose

POLICY = 'policy'
TELEOP = 'teleop'
SOURCES = (POLICY, TELEOP)


class Mode(str, Enum):
    WAITING = 'WAITING'
    FROZEN = 'FROZEN'
    DISABLED = 'DISABLED'
    CONFLICT = 'CONFLICT'
    IDLE = 'IDLE'
    STALE = 'STALE'
    TRACKING = 'TRACKING'


# DiagnosticStatus level of each mode (0 OK, 1 WARN, 2 ERROR): holding because nobody is
# commanding is normal; holding because a stream stopped or was disabled is a warning; not
# knowing where the arm is, or two writers on one input, is an error.
MODE_LEVELS = {Mode.TRACKING: 0, Mode.IDLE: 0, Mode.STALE: 1, Mode.DISABLED: 1,
               Mode.WAITING: 1, Mode.FROZEN: 2, Mode.CONFLICT: 2}

# Modes in which the output converges to the latched hold pose.
HOLDING_MODES = (Mode.DISABLED, Mode.CONFLICT, Mode.IDLE, Mode.STALE)


@dataclass(frozen=True)
class BridgeConfig:
    """Timing and behaviour of the bridge (limits live in `GateLimits`)."""

    stale_timeout: float = 0.2  # s without a valid target from the active source → STALE
    measured_timeout: float = 0.2  # s without /current_pose → FROZEN
    start_enabled: bool = True
    interpolate: bool = True
    frame_id: str = 'base'

    def __post_init__(self) -> None:
        for name in ('stale_timeout', 'measured_timeout'):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f'{name} must be a finite positive number of seconds, '
                                 f'got {value!r}')
        if not self.frame_id:
            raise ValueError('frame_id must not be empty')


class RateMeter:
    """Message rate over a sliding window of arrival times."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._times: deque[float] = deque()
        self.count = 0

    def add(self, t: float) -> None:
        self.count += 1
        self._times.append(t)
        while self._times and self._times[0] < t - self.window:
            self._times.popleft()

    def rate(self, now: float) -> float:
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


@dataclass
class SourceState:
    """What one input (policy or teleop) last said, and how reliably it says it."""

    name: str
    period: PeriodEstimator
    target: Pose | None = None
    target_at: float = -math.inf
    seq: int = 0
    gripper: float | None = None
    gripper_at: float = -math.inf
    publishers: int = 0
    conflict: bool = False
    rate: RateMeter = field(default_factory=RateMeter)

    def forget(self) -> None:
        self.target = None
        self.target_at = -math.inf
        self.gripper = None
        self.gripper_at = -math.inf
        self.period.reset()


@dataclass(frozen=True)
class BridgeOutput:
    """One tick's command: pose None means publish nothing; gripper None means no gripper
    command is known yet (never invent one)."""

    mode: Mode
    pose: Pose | None
    gripper: float | None


class BridgeCore:
    def __init__(self, limits: GateLimits = GateLimits(),
                 config: BridgeConfig = BridgeConfig()) -> None:
        self.config = config
        self.gate = Gate(limits, config.frame_id)
        bounds = PeriodBounds(minimum=1.0 / limits.output_rate_hz,
                              maximum=config.stale_timeout,
                              initial=min(0.05, config.stale_timeout))
        self.sources = {name: SourceState(name, PeriodEstimator(bounds)) for name in SOURCES}
        self.active = POLICY
        self.enabled = config.start_enabled
        self.enabled_at = -math.inf
        self.mode = Mode.WAITING
        self.mode_reason = 'no measured pose yet'
        self.measured: Pose | None = None
        self.measured_at = -math.inf
        self.measured_rate = RateMeter()
        self.output_rate = RateMeter()
        self._interp = TargetInterpolator()
        self._tracking: tuple[str, int] | None = None  # (source, seq) pushed last
        self._previous: Pose | None = None
        self._hold: Pose | None = None
        self._gripper_out: float | None = None
        self._last_tick = -math.inf

    # --- limits that may change at runtime -------------------------------------------

    def set_limits(self, limits: GateLimits) -> None:
        self.gate.limits = limits

    # --- inputs -------------------------------------------------------------------------

    def on_measured(self, position: np.ndarray, orientation: np.ndarray, now: float) -> bool:
        """A /current_pose sample; a non-finite or malformed one is ignored (returns False)
        so a broken driver shows up as FROZEN, not as a target chasing garbage."""
        try:
            pose = _valid_pose(position, orientation, self.gate.limits.quat_norm_tolerance)
        except ValueError:
            return False
        self.measured = pose
        self.measured_at = now
        self.measured_rate.add(now)
        return True

    def on_target(self, source: str, position: np.ndarray, orientation: np.ndarray,
                  now: float, stamp: float | None = None, frame_id: str = '') -> None:
        """A target from `source`. Raises GateRejection (already counted) when refused; the
        previous valid target stays in force and the staleness clock keeps running."""
        state = self.sources[_check_source(source)]
        state.rate.add(now)
        if state.conflict:
            self.gate.rejected[REJECT_CONFLICT] += 1
            raise GateRejection(REJECT_CONFLICT,
                                f'{source} target refused: {state.publishers} publishers on '
                                f'its topic')
        pose = self.gate.admit(position, orientation, frame_id)
        state.period.update(now, stamp)
        state.target = pose
        state.target_at = now
        state.seq += 1

    def on_gripper(self, source: str, value: float, now: float) -> None:
        state = self.sources[_check_source(source)]
        if state.conflict:
            self.gate.rejected[REJECT_CONFLICT] += 1
            raise GateRejection(REJECT_CONFLICT, f'{source} gripper refused: '
                                f'{state.publishers} publishers on its topic')
        state.gripper = self.gate.admit_gripper(value)
        state.gripper_at = now

    def on_intervention(self, intervening: bool) -> None:
        """True: the human (teleop) has authority; False: the policy has it."""
        self.active = TELEOP if intervening else POLICY

    def set_publisher_count(self, source: str, count: int) -> None:
        """Publishers on the source's target and gripper topics (the max of the two); more
        than one is a conflict: the source is refused until it is back to one."""
        state = self.sources[_check_source(source)]
        state.publishers = int(count)
        conflict = count > 1
        if conflict and not state.conflict:
            state.forget()  # nothing it said may be used once two writers are seen
        state.conflict = conflict

    def enable(self, now: float) -> tuple[bool, str]:
        """Re-enable after an e-stop: the output restarts from the measured pose and only
        targets that arrive after this moment are followed."""
        if self.enabled:
            return True, 'already enabled'  # no restart: that could step the output
        if self.measured is None or now - self.measured_at > self.config.measured_timeout:
            return False, 'refused: no fresh measured pose to start from'
        self.enabled = True
        self.enabled_at = now
        self._previous = self.measured
        self._hold = self.measured
        self._interp.clear()
        self._tracking = None
        for state in self.sources.values():
            state.period.reset()
        return True, 'enabled: output restarts from the measured pose'

    def disable(self) -> tuple[bool, str]:
        """E-stop: latched until `enable`; the output holds the measured pose."""
        was = self.enabled
        self.enabled = False
        return True, 'e-stop latched' if was else 'already disabled (e-stop latched)'

    # --- the tick -----------------------------------------------------------------------

    def tick(self, now: float) -> BridgeOutput:
        mode, reason = self._decide(now)
        self.mode, self.mode_reason = mode, reason
        previous_tick, self._last_tick = self._last_tick, now
        if mode is Mode.WAITING:
            return BridgeOutput(mode, None, None)
        if mode is Mode.FROZEN:
            if self._previous is not None:
                self.output_rate.add(now)
            return BridgeOutput(mode, self._previous, self._gripper_out)
        if mode is Mode.TRACKING:
            desired = self._track(now, previous_tick)
            self._hold = None
        else:
            self._tracking = None
            if self._hold is None:
                self._hold = self.measured
            desired = self._hold
        output = self.gate.shape(self._previous, desired, self.measured)
        self._previous = output
        self.output_rate.add(now)
        return BridgeOutput(mode, output, self._gripper_out)

    def _decide(self, now: float) -> tuple[Mode, str]:
        cfg = self.config
        if self.measured is None:
            return Mode.WAITING, 'no measured pose yet'
        age = now - self.measured_at
        if age > cfg.measured_timeout:
            return Mode.FROZEN, f'measured pose is {age:.3f} s old (> {cfg.measured_timeout} s)'
        if not self.enabled:
            return Mode.DISABLED, 'e-stop latched; call enable to resume'
        state = self.sources[self.active]
        if state.conflict:
            return Mode.CONFLICT, f'{state.publishers} publishers on the {self.active} input'
        if state.target is None or state.target_at <= self.enabled_at:
            return Mode.IDLE, f'no target from {self.active} yet'
        age = now - state.target_at
        if age > cfg.stale_timeout:
            return Mode.STALE, f'{self.active} target is {age:.3f} s old (> {cfg.stale_timeout} s)'
        return Mode.TRACKING, f'following {self.active}'

    def _track(self, now: float, previous_tick: float) -> Pose:
        state = self.sources[self.active]
        if self._tracking is None or self._tracking[0] != self.active or not self._interp.active:
            # Entering TRACKING, or the authority changed: start from the last output.
            self._interp.restart(self._previous if self._previous is not None else self.measured,
                                 now)
            self._interp.push(state.target, now, self._segment_duration(state))
        elif self._tracking[1] != state.seq:
            # Start the segment when the target arrived, but never before the last tick: the
            # desired pose already sent must not be revisited.
            self._interp.push(state.target, min(now, max(state.target_at, previous_tick)),
                              self._segment_duration(state))
        self._tracking = (self.active, state.seq)
        if state.gripper is not None and now - state.gripper_at <= self.config.stale_timeout:
            self._gripper_out = state.gripper
        return self._interp.sample(now)

    def _segment_duration(self, state: SourceState) -> float:
        return state.period.period if self.config.interpolate else 0.0

    # --- reporting ----------------------------------------------------------------------

    @property
    def previous_output(self) -> Pose | None:
        return self._previous

    def report(self, now: float) -> dict[str, object]:
        """Flat key → value map for /diagnostics."""
        values: dict[str, object] = {
            'mode': self.mode.value,
            'reason': self.mode_reason,
            'active_source': self.active,
            'enabled': self.enabled,
            'output_rate_hz': self.output_rate.rate(now),
            'outputs': self.output_rate.count,
            'measured_rate_hz': self.measured_rate.rate(now),
            'measured_age_s': _age(now, self.measured_at),
        }
        for name, state in self.sources.items():
            values[f'{name}.rate_hz'] = state.rate.rate(now)
            values[f'{name}.messages'] = state.rate.count
            values[f'{name}.target_age_s'] = _age(now, state.target_at)
            values[f'{name}.gripper_age_s'] = _age(now, state.gripper_at)
            values[f'{name}.period_estimate_s'] = state.period.period
            values[f'{name}.publishers'] = state.publishers
        values.update(self.gate.counts())
        return values


def _age(now: float, at: float) -> float:
    return now - at if math.isfinite(at) else math.inf


def _check_source(source: str) -> str:
    if source not in SOURCES:
        raise ValueError(f'unknown source {source!r}; expected one of {SOURCES}')
    return source


def _valid_pose(position: np.ndarray, orientation: np.ndarray, tolerance: float) -> Pose:
    check_finite(position, orientation)
    q, _ = normalize_quaternion(orientation, tolerance)
    return Pose(np.asarray(position, dtype=np.float64), q)


# --- self-measurement (pure Python; used by the node and the benchmark) -----------------

class RecentStats:
    """Percentiles over the last `size` samples (tick cost, output period)."""

    def __init__(self, size: int = 2000) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(value)

    def summary(self) -> dict[str, float]:
        if not self._values:
            return {'p50': math.nan, 'p99': math.nan, 'max': math.nan}
        values = np.fromiter(self._values, dtype=np.float64)
        return {'p50': float(np.percentile(values, 50)), 'p99': float(np.percentile(values, 99)),
                'max': float(values.max())}

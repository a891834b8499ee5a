"""Interpolation from the policy rate (10–50 Hz) up to the controller rate (100–1000 Hz).

A policy target is a waypoint, not a step input: sending it straight to an impedance
controller makes the arm jerk once per action. `TargetInterpolator` moves the desired pose
linearly (position) and by slerp (orientation) from where it is now to the new target over
one *measured* input period, so the desired pose arrives at each waypoint just as the next
one is due. It never extrapolates: if the next target is late the desired pose waits at
the last waypoint (the watchdog decides when waiting becomes a fault).

`PeriodEstimator` measures that period robustly: the median of recent intervals, taken from
the publishers' header stamps while they are usable (they are what the publisher meant;
arrival times carry transport and scheduling jitter) and from arrival times otherwise.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from bc_robot.core.pose import Pose, pose_interpolate


@dataclass(frozen=True)
class PeriodBounds:
    """The estimate is clamped to [minimum, maximum] seconds."""

    minimum: float = 0.001
    maximum: float = 0.2
    initial: float = 0.05  # used until two messages have arrived (20 Hz, the policy default)

    def __post_init__(self) -> None:
        for name in ('minimum', 'maximum', 'initial'):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f'period {name} must be a finite positive number, got {value!r}')
        if self.minimum > self.maximum:
            raise ValueError(f'period minimum {self.minimum} is above maximum {self.maximum}')


class PeriodEstimator:
    """Median input period over the last `window` intervals."""

    def __init__(self, bounds: PeriodBounds = PeriodBounds(), window: int = 9) -> None:
        if window < 1:
            raise ValueError(f'window must be at least 1, got {window}')
        self.bounds = bounds
        self._stamp_intervals: deque[float] = deque(maxlen=window)
        self._arrival_intervals: deque[float] = deque(maxlen=window)
        self._last_stamp: float | None = None
        self._last_arrival: float | None = None
        self._stamps_usable = True

    def reset(self) -> None:
        self._stamp_intervals.clear()
        self._arrival_intervals.clear()
        self._last_stamp = None
        self._last_arrival = None
        self._stamps_usable = True

    def update(self, arrival: float, stamp: float | None = None) -> None:
        """Record one message: `arrival` on the bridge clock, `stamp` from its header (None
        or 0 when the publisher left it empty)."""
        if self._last_arrival is not None:
            self._arrival_intervals.append(arrival - self._last_arrival)
        self._last_arrival = arrival
        if stamp is None or not math.isfinite(stamp) or stamp <= 0.0:
            self._stamps_usable = False
            self._last_stamp = None
            return
        if self._last_stamp is not None:
            interval = stamp - self._last_stamp
            if interval <= 0.0 or interval > self.bounds.maximum * 10:
                # Repeated, reordered or jumping stamps (a sim reset, a replay): stop trusting
                # them until they behave for a whole window again.
                self._stamps_usable = False
                self._stamp_intervals.clear()
            else:
                self._stamp_intervals.append(interval)
                if len(self._stamp_intervals) == self._stamp_intervals.maxlen:
                    self._stamps_usable = True
        self._last_stamp = stamp

    @property
    def period(self) -> float:
        """Current estimate in seconds, always inside the bounds."""
        intervals = self._stamp_intervals if self._stamps_usable and self._stamp_intervals \
            else self._arrival_intervals
        positive = [i for i in intervals if i > 0.0]
        value = float(np.median(positive)) if positive else self.bounds.initial
        return min(self.bounds.maximum, max(self.bounds.minimum, value))


class TargetInterpolator:
    """The desired pose as a function of time: a straight segment (slerp for orientation)
    from the pose at the moment a target arrived to that target, over one input period."""

    def __init__(self) -> None:
        self._start: Pose | None = None
        self._end: Pose | None = None
        self._t0 = 0.0
        self._duration = 0.0

    @property
    def active(self) -> bool:
        return self._end is not None

    @property
    def target(self) -> Pose | None:
        """The last waypoint (where the desired pose ends up)."""
        return self._end

    def clear(self) -> None:
        self._start = self._end = None

    def restart(self, start: Pose, now: float) -> None:
        """Stand still at `start` (the last output) — used on enable and on a source switch,
        so the next segment begins where the arm's target already is (bumpless)."""
        self._start = self._end = start
        self._t0 = now
        self._duration = 0.0

    def push(self, target: Pose, now: float, duration: float) -> None:
        """A new waypoint: move there from the current desired pose over `duration` s."""
        start = self.sample(now) if self.active else target
        self._start, self._end = start, target
        self._t0 = now
        self._duration = max(0.0, float(duration))

    def sample(self, now: float) -> Pose:
        if self._end is None:
            raise ValueError('interpolator has no target yet; call push() or restart() first')
        if self._duration <= 0.0 or now >= self._t0 + self._duration:
            return self._end
        return pose_interpolate(self._start, self._end, (now - self._t0) / self._duration)

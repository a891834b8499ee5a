"""Pacing sim time to wall time and measuring achieved rates, without any ROS.

The physics thread asks the Pacer how far sim time is behind `real_time_factor × wall time`
and steps that much; when it falls behind by more than `max_lag` it re-anchors instead of
bursting (a burst would replay a second of physics in a few ms and every consumer would see
it), and the shortfall shows up as a real-time factor below the requested one.
"""
from __future__ import annotations

import math
import time
from typing import Callable


class Pacer:
    """Sim-time budget against a monotonic wall clock. rtf = 0 means unpaced (run flat out)."""

    def __init__(self, real_time_factor: float = 1.0, max_lag: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not math.isfinite(real_time_factor) or real_time_factor < 0.0:
            raise ValueError(f'real_time_factor must be >= 0, got {real_time_factor!r}')
        if not math.isfinite(max_lag) or max_lag <= 0.0:
            raise ValueError(f'max_lag must be > 0, got {max_lag!r}')
        self.rtf = float(real_time_factor)
        self.max_lag = float(max_lag)
        self._clock = clock
        self._anchor: tuple[float, float] | None = None
        self.resyncs = 0

    def set_rtf(self, real_time_factor: float) -> None:
        if not math.isfinite(real_time_factor) or real_time_factor < 0.0:
            raise ValueError(f'real_time_factor must be >= 0, got {real_time_factor!r}')
        self.rtf = float(real_time_factor)
        self._anchor = None  # re-anchor at the next call: no catch-up across a change

    def behind(self, sim_time: float) -> float:
        """Sim seconds to simulate now (negative: ahead of schedule, wait)."""
        if self.rtf == 0.0:
            return math.inf
        now = self._clock()
        if self._anchor is None:
            self._anchor = (now, sim_time)
        wall0, sim0 = self._anchor
        lag = sim0 + (now - wall0) * self.rtf - sim_time
        # Behind by more than max_lag: re-anchor rather than burst. Ahead by more than
        # max_lag cannot come from pacing (it never steps ahead of schedule), only from sim
        # time moving under it: re-anchor too, or the physics would wait that long.
        if abs(lag) > self.max_lag * self.rtf:
            self.resyncs += 1
            self._anchor = (now, sim_time)
            lag = 0.0
        return lag

    def wall_seconds(self, sim_seconds: float) -> float:
        """Wall time that `sim_seconds` of sim time take at the current rtf."""
        return 0.0 if self.rtf == 0.0 else sim_seconds / self.rtf


class RateMeter:
    """Counts events and reports the rate over the window since the previous read."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._count = 0
        self._since = clock()

    def tick(self, n: int = 1) -> None:
        self._count += n

    def read(self) -> float:
        now = self._clock()
        elapsed = now - self._since
        rate = self._count / elapsed if elapsed > 0 else 0.0
        self._count, self._since = 0, now
        return rate


class RtfMeter:
    """Achieved real-time factor: sim seconds advanced per wall second since the last read."""

    def __init__(self, sim_time: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = (clock(), sim_time)

    def read(self, sim_time: float) -> float:
        now = self._clock()
        wall0, sim0 = self._last
        self._last = (now, sim_time)
        return (sim_time - sim0) / (now - wall0) if now > wall0 else 0.0

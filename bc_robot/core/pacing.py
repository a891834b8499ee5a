"""Deadline pacing for the nodes that publish at a fixed rate (controller_bridge's output,
policy_node's control tick), with their input callbacks on the same thread.

Why one thread: CPython lets one thread run at a time. A tick on a thread of its own must
first take the GIL from whichever executor thread is inside a callback, and that hand-off
is what a subscriber in another process saw as 1.2–1.4 ms of p99 period jitter at 100 Hz
(docs/BENCHMARKS.md). `PacedLoop.step` instead runs ready callbacks until the next deadline
and then ticks, so a tick waits at most for the one callback already running.

Pure Python (no rclpy): the caller passes how to wait for work — an rclpy executor's
`spin_once` in the nodes.
"""
from __future__ import annotations

import logging
import math
import os
import time
from typing import Callable

logger = logging.getLogger(__name__)

# A node's busy-wait before each deadline is capped at this fraction of its period (the CPU
# it takes from everything else).
MAX_SPIN_FRACTION = 0.25


def check_priority(priority: int) -> int:
    if not (isinstance(priority, int) and 0 <= priority <= 99):
        raise ValueError(f'realtime_priority must be an int in [0, 99], got {priority!r}')
    return priority


def set_thread_realtime(priority: int) -> str:
    """SCHED_FIFO at `priority` for the calling thread only (Linux: pid 0 is the calling
    thread); 0 leaves it alone. Needs CAP_SYS_NICE or an rtprio limit: without them the
    thread keeps normal scheduling and the returned status says why."""
    if check_priority(priority) == 0:
        return 'default scheduling'
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return f'SCHED_FIFO priority {priority}'
    except (AttributeError, OSError) as exc:
        return f'SCHED_FIFO {priority} refused ({exc}); default scheduling'


class DeadlineSchedule:
    """Absolute deadlines every `period` on the monotonic clock: the period does not drift
    with the cost of a tick, and a tick more than a whole period late skips the missed
    deadlines (counted in `missed`) instead of bursting catch-up ticks, each of which would
    be a step to the arm. The last `spin` seconds before a deadline are busy-waited: a
    sleeping thread wakes late by the scheduler's latency plus the wait for the GIL; a
    spinning one already holds it."""

    def __init__(self, period: float, spin: float = 0.0) -> None:
        if not (isinstance(period, (int, float)) and math.isfinite(period) and period > 0):
            raise ValueError(f'loop period must be a positive number of seconds, got {period!r}')
        if not (isinstance(spin, (int, float)) and math.isfinite(spin) and 0.0 <= spin < period):
            raise ValueError(f'loop spin must be in [0, period = {period:g}) s, got {spin!r}')
        self._period_ns = int(round(period * 1e9))
        self._spin_ns = int(round(spin * 1e9))
        self.deadline_ns = time.monotonic_ns() + self._period_ns
        self.missed = 0

    def restart(self, now_ns: int) -> None:
        self.deadline_ns = now_ns + self._period_ns

    def time_to_wake(self, now_ns: int) -> float:
        """Seconds the caller may sleep (or run other work) before busy-waiting; <= 0: now."""
        return (self.deadline_ns - self._spin_ns - now_ns) * 1e-9

    def wait_for_deadline(self) -> None:
        while time.monotonic_ns() < self.deadline_ns:
            pass

    def advance(self, now_ns: int) -> None:
        """The tick for the current deadline is done: move to the next one."""
        self.deadline_ns += self._period_ns
        behind = now_ns - self.deadline_ns
        if behind > self._period_ns:  # fell more than a whole period behind
            skipped = behind // self._period_ns
            self.missed += int(skipped)
            self.deadline_ns += skipped * self._period_ns


class PacedLoop:
    """`tick()` at every deadline of a `DeadlineSchedule`, and the caller's other work (input
    callbacks) in between, all on the thread that calls `step`. The first `step` gives that
    thread `realtime_priority` and starts the schedule. A tick that raises stops the ticks
    (`error` says why; the owner reports it) but not the callbacks."""

    def __init__(self, period: float, tick: Callable[[], None], realtime_priority: int = 0,
                 spin: float = 0.0, name: str = 'loop') -> None:
        self.realtime_priority = check_priority(realtime_priority)
        self.schedule = DeadlineSchedule(period, spin)
        self.name = name
        self.priority_status: str | None = None  # known after the first step
        self.error: BaseException | None = None
        self._tick = tick

    @property
    def missed(self) -> int:
        return self.schedule.missed

    def step(self, wait_for_work: Callable[[float], None], timeout: float) -> None:
        """Do the caller's work for up to `timeout` s or until the next deadline — whichever
        comes first — or tick if the deadline has come. Call it in a loop."""
        schedule = self.schedule
        if self.priority_status is None:
            self.priority_status = set_thread_realtime(self.realtime_priority)
            schedule.restart(time.monotonic_ns())
        wait = schedule.time_to_wake(time.monotonic_ns())
        if wait > 0 or self.error is not None:
            wait_for_work(min(wait, timeout) if self.error is None else timeout)
            return
        schedule.wait_for_deadline()
        try:
            self._tick()
        except Exception as exc:  # noqa: BLE001 - a dead tick is reported, not a dead process
            self.error = exc
            logger.error('%s: tick failed, no more ticks: %r', self.name, exc)
        schedule.advance(time.monotonic_ns())

"""core.pacing: absolute deadlines, skipped (never bunched) late ticks, and the one-thread
loop that runs the caller's work between deadlines."""
from __future__ import annotations

import time

import numpy as np
import pytest

from bc_robot.core.pacing import DeadlineSchedule, PacedLoop, set_thread_realtime


def test_schedule_wakes_spin_early_and_skips_missed_deadlines():
    schedule = DeadlineSchedule(0.01, spin=0.002)
    schedule.restart(1_000_000_000)
    assert schedule.deadline_ns == 1_010_000_000
    assert schedule.time_to_wake(1_000_000_000) == pytest.approx(0.008)
    assert schedule.time_to_wake(1_009_000_000) < 0  # inside the spin window: busy-wait
    schedule.advance(1_010_100_000)  # on time: next deadline one period on
    assert (schedule.deadline_ns, schedule.missed) == (1_020_000_000, 0)
    schedule.advance(1_055_000_000)  # the tick for 1.020 s ended at 1.055 s
    assert schedule.missed == 2  # 1.030 and 1.040 skipped, never bunched
    assert schedule.deadline_ns == 1_050_000_000
    assert schedule.time_to_wake(1_055_000_000) < 0  # late: tick at once, then on the grid


def test_schedule_busy_waits_to_the_deadline():
    schedule = DeadlineSchedule(0.01, spin=0.002)
    schedule.restart(time.monotonic_ns())
    schedule.wait_for_deadline()
    assert time.monotonic_ns() >= schedule.deadline_ns


@pytest.mark.parametrize('kwargs', [{'period': 0.0}, {'period': float('nan')},
                                    {'period': 0.01, 'spin': 0.01},
                                    {'period': 0.01, 'spin': -1e-6},
                                    {'period': 0.01, 'realtime_priority': 100},
                                    {'period': 0.01, 'realtime_priority': -1}])
def test_loop_validates(kwargs):
    with pytest.raises(ValueError):
        PacedLoop(tick=lambda: None, **kwargs)


def test_realtime_priority_zero_leaves_scheduling_alone_and_validates():
    assert set_thread_realtime(0) == 'default scheduling'
    with pytest.raises(ValueError, match='100'):
        set_thread_realtime(100)


def _run(loop: PacedLoop, seconds: float, work: list) -> None:
    def wait_for_work(timeout: float) -> None:
        work.append(timeout)
        time.sleep(min(timeout, 0.002))  # a callback's worth of work, or nothing ready

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        loop.step(wait_for_work, 0.2)


def test_loop_ticks_on_its_deadlines_with_work_in_between_and_skips_after_a_slow_tick():
    ticks: list[float] = []
    slow = [False]

    def tick():
        ticks.append(time.monotonic())
        if slow[0]:
            time.sleep(0.035)  # 3.5 periods: the late deadlines are skipped, not bunched

    loop = PacedLoop(0.01, tick, name='test')
    work: list[float] = []
    _run(loop, 0.3, work)
    assert loop.priority_status == 'default scheduling'
    assert 20 <= len(ticks) <= 31
    assert np.median(np.diff(ticks)) == pytest.approx(0.01, abs=0.002)
    assert len(work) > len(ticks)  # the caller's work ran between the ticks
    assert max(work) <= 0.01 + 1e-6  # never asked to wait past the next deadline
    slow[0] = True
    n = len(ticks)
    _run(loop, 0.2, work)
    assert loop.missed >= 3
    assert np.all(np.diff(ticks[n:]) > 0.03)  # no burst of catch-up ticks after a slow one


def test_a_failing_tick_stops_the_ticks_not_the_work():
    calls = []

    def tick():
        calls.append(1)
        raise RuntimeError('boom')

    loop = PacedLoop(0.01, tick, name='test')
    work: list[float] = []
    _run(loop, 0.1, work)
    assert len(calls) == 1
    assert isinstance(loop.error, RuntimeError)
    before = len(work)
    _run(loop, 0.05, work)
    assert len(work) > before and len(calls) == 1

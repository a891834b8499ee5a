"""Frame-phase alignment: which camera frame an early async/rtc request should wait for."""
from __future__ import annotations

import pytest

from bc_robot.core.alignment import (worst_latency, first_action_latency, frame_period,
                                     next_frame_stamp, request_now)

DT = 0.02          # 50 Hz control
PERIOD = 1 / 30    # 30 Hz camera


def frames(last: float, count: int = 6, period: float = PERIOD) -> list[float]:
    return [last - (count - 1 - i) * period for i in range(count)]


def test_frame_period_is_the_median_spacing_and_ignores_a_dropped_frame():
    stamps = frames(10.0)
    assert frame_period(stamps) == pytest.approx(PERIOD)
    del stamps[2]  # one frame lost: one spacing doubles
    assert frame_period(stamps) == pytest.approx(PERIOD)
    assert frame_period([1.0, 1.1]) is None
    assert frame_period([]) is None


def test_next_frame_stamp_is_the_first_after_the_request():
    assert next_frame_stamp(1.0, 0.1, 1.0) == pytest.approx(1.1)
    assert next_frame_stamp(1.0, 0.1, 1.25) == pytest.approx(1.3)
    assert next_frame_stamp(1.0, 0.1, 0.95) == 1.0  # already newer than the request


def test_first_action_latency_rounds_up_to_the_next_tick():
    # ticks at 0.00, 0.02, ...; stamp 0.101, ready 0.013 later = 0.114 → tick 0.12
    assert first_action_latency(0.101, 0.013, 0.0, DT) == pytest.approx(0.019)
    # ready just after a tick (0.1205) → the next one, 0.14
    assert first_action_latency(0.1, 0.0205, 0.0, DT) == pytest.approx(0.04)


def test_request_waits_for_the_frame_that_reaches_a_tick_soonest():
    # Camera frames at 30 Hz whose stamps fall 1/3, 2/3 ... of a frame period apart
    # relative to the 50 Hz ticks; 15 ms from stamp to chunk ready.
    stamps = frames(1.0)
    ready = 0.015
    latencies = []
    for j in range(6):
        now = 1.0 + j * DT
        latencies.append(first_action_latency(next_frame_stamp(1.0, PERIOD, now), ready, 0.0,
                                              DT))
    best = min(latencies[:5])
    decisions = [request_now(stamps, 1.0 + j * DT, 4 - j, 0.0, DT, [ready]) for j in range(5)]
    # a request is made on the first tick whose frame is as good as any reachable later
    first_yes = decisions.index(True)
    assert latencies[first_yes] == pytest.approx(best)
    assert all(latencies[j] > best + 1e-9 for j in range(first_yes))
    assert best < max(latencies[:5]) - 0.005  # the choice matters here


def test_no_early_request_without_frame_timing_and_always_one_when_due():
    assert not request_now([1.0], 1.0, 4, 0.0, DT, [0.015])  # no period estimate yet
    assert not request_now(frames(1.0), 1.0, 4, 0.0, DT, [])  # no delay measured yet
    assert request_now(frames(1.0), 1.0, 0, 0.0, DT, [0.015])  # due now


def test_a_frame_is_judged_by_the_longest_recent_delay():
    # Ticks at 0, 20, 40 ms. Frame A (stamp 0) is ready 14–16 ms later when the delay is
    # typical and makes the 20 ms tick, but with the 22 ms delay it misses it → 40 ms.
    # Frame B (stamp 7.5 ms) makes the 40 ms tick whatever the delay: 32.5 ms.
    delays = [0.014, 0.015, 0.016, 0.022]
    assert worst_latency(0.0, delays, 0.0, DT) == pytest.approx(0.04)
    assert worst_latency(0.0075, delays, 0.0, DT) == pytest.approx(0.0325)
    # without the long delay A is the better frame
    assert worst_latency(0.0, delays[:3], 0.0, DT) == pytest.approx(0.02)
    assert worst_latency(0.0075, delays[:3], 0.0, DT) == pytest.approx(0.0325)

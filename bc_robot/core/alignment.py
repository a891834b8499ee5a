"""Frame-phase alignment of inference requests (async/rtc executors).

A chunk's first action goes out on the first control tick after the chunk is ready, and the
chunk is ready some (measured) delay after the stamp of the camera frame it was computed
from. With a camera and a control loop at unrelated rates (30 Hz and 50 Hz), frames become
ready at a different phase of the control period each time: just before a tick (the first
action follows at once) or just after one (it waits most of a period). Which frames an
async executor happens to use is then an accident of the start-up phase, and with a replan
interval that is a whole number of frame periods the accident repeats for the whole run.

Async and rtc may start the next inference any time before they must, so the runner looks a
few ticks ahead and starts it for the frame whose first action will go out soonest after its
stamp, planning with the longest recent delay so that the chunk is not late for the tick it
was timed for. Every action of that chunk is then acted on that much fresher; the price is
replanning at most the look-ahead earlier.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# Ticks run a little after their deadline; a chunk predicted ready within this much of a
# tick is counted for the next one.
TICK_MARGIN_S = 0.0005


def frame_period(stamps: Sequence[float]) -> float | None:
    """The camera's frame period: the median spacing of recent observation stamps (a dropped
    frame does not move it). None with fewer than three stamps."""
    diffs = np.diff(np.asarray(stamps, dtype=np.float64))
    diffs = diffs[diffs > 0]
    if diffs.size < 2:
        return None
    return float(np.median(diffs))


def next_frame_stamp(last: float, period: float, after: float) -> float:
    """Predicted stamp of the first frame stamped after `after`, the newest being `last`."""
    if last > after:
        return last
    return last + (math.floor((after - last) / period) + 1) * period


def first_action_latency(stamp: float, ready_delay: float, tick_origin: float,
                         dt: float) -> float:
    """Stamp → the first control tick (at tick_origin + k·dt) that finds the chunk ready."""
    ready = stamp + ready_delay + TICK_MARGIN_S
    k = math.ceil((ready - tick_origin) / dt - 1e-9)
    return tick_origin + k * dt - stamp


def worst_latency(stamp: float, delays: Sequence[float], tick_origin: float,
                  dt: float) -> float:
    """First-action latency of a frame if its delay is the longest of the recent stamp →
    ready delays: a frame timed for a tick that only the typical delay makes would miss it,
    and wait a whole period, whenever the delay is long."""
    return max(first_action_latency(stamp, d, tick_origin, dt) for d in delays)


def request_now(stamps: Sequence[float], now: float, ticks_left: int, tick_origin: float,
                dt: float, delays: Sequence[float]) -> bool:
    """Whether a request at tick time `now` (its inference uses the first frame stamped after
    `now`) has a worst-case first-action latency no worse than a request on any of the next
    `ticks_left` ticks would. True when nothing is left to choose from (due now); False
    without a frame period or delay estimate (no reason to go early)."""
    if ticks_left <= 0:
        return True
    period = frame_period(stamps)
    if period is None or not len(delays):
        return False
    last = float(stamps[-1])
    frame_now = next_frame_stamp(last, period, now)
    later = {next_frame_stamp(last, period, now + j * dt) for j in range(1, ticks_left + 1)}
    best_now = worst_latency(frame_now, delays, tick_origin, dt)
    return all(best_now <= worst_latency(frame, delays, tick_origin, dt) + 1e-6
               for frame in later - {frame_now})

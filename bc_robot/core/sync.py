"""Stamp synchronization of camera frames and proprioception, staleness gating and the
observation history a policy consumes.

observation_node: every frame of the reference camera (the first camera of the policy)
becomes one observation, stamped with that frame's header stamp. The other cameras
contribute their frame nearest in stamp, proprioception (joint states, end-effector pose)
is *interpolated to the frame's stamp* (linear, slerp for orientation) when samples
bracket it; an input further than `max_skew` from the stamp rejects the observation, and a
frame older than `max_age` is dropped as stale. A frame waits up to `wait_s` after it
*arrives* (or after its stamp, if that is later) for the pieces still on their way: the
other cameras' frames of the same instant are published one after another, so a frame that
is already older than `wait_s` when it arrives (rendering, transport) must still wait for
them instead of being dropped for skew. Every rejection is counted by reason, so a
starving input is visible on /diagnostics instead of silently degrading the policy.

policy_node: `ObservationAssembler` joins the published pieces (same stamp) again and
`ObservationHistory` stacks the last k observations, spaced one control period apart,
for policies trained with an observation history.
"""
from __future__ import annotations

import bisect
import math
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from bc_robot.core.delay import summarize
from bc_robot.core.pose import Pose, quat_slerp


@dataclass(frozen=True)
class SyncConfig:
    max_skew_s: float = 0.04   # furthest an input may be from the reference stamp
    max_age_s: float = 0.25    # oldest a reference frame may be when published
    wait_s: float = 0.04       # how long a frame waits for proprioception that brackets it
    buffer: int = 200          # proprioception samples kept per input

    def __post_init__(self) -> None:
        for name in ('max_skew_s', 'max_age_s', 'wait_s'):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f'{name} {value!r} must be a finite number >= 0')
        if self.max_age_s <= 0:
            raise ValueError(f'max_age_s {self.max_age_s!r} must be > 0')
        if not isinstance(self.buffer, int) or self.buffer < 2:
            raise ValueError(f'buffer {self.buffer!r} must be an int >= 2')


class StampedSeries:
    """Samples (stamp, vector) kept in stamp order; `sample(t)` interpolates between the
    two that bracket t or, when none is after t, gives the nearest within max_skew.
    With `pose=True` the vector is (x, y, z, qx, qy, qz, qw) and orientation is slerped."""

    def __init__(self, capacity: int = 200, pose: bool = False) -> None:
        self.capacity = capacity
        self.pose = pose
        self._stamps: list[float] = []
        self._values: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._stamps)

    @property
    def newest(self) -> float | None:
        return self._stamps[-1] if self._stamps else None

    def add(self, stamp: float, value: Sequence[float]) -> None:
        vector = np.asarray(value, dtype=np.float64).reshape(-1)
        if not math.isfinite(stamp):
            raise ValueError(f'stamp {stamp!r} is not finite')
        if not np.all(np.isfinite(vector)):
            raise ValueError(f'sample at {stamp:.6f} has a non-finite value: {vector.tolist()}')
        index = bisect.bisect_right(self._stamps, stamp)
        if index and self._stamps[index - 1] == stamp:
            self._values[index - 1] = vector  # same stamp again: the newer message wins
            return
        self._stamps.insert(index, stamp)
        self._values.insert(index, vector)
        if len(self._stamps) > self.capacity:
            del self._stamps[0], self._values[0]

    def brackets(self, stamp: float) -> bool:
        return bool(self._stamps) and self._stamps[0] <= stamp <= self._stamps[-1]

    def sample(self, stamp: float, max_skew: float) -> tuple[np.ndarray, float] | None:
        """(value at `stamp`, skew) or None when no sample is within `max_skew`. The skew
        is the distance to the nearest sample used."""
        if not self._stamps:
            return None
        index = bisect.bisect_left(self._stamps, stamp)
        if index < len(self._stamps) and self._stamps[index] == stamp:
            return self._values[index].copy(), 0.0
        if 0 < index < len(self._stamps):
            t0, t1 = self._stamps[index - 1], self._stamps[index]
            skew = min(stamp - t0, t1 - stamp)
            if skew > max_skew:
                return None  # a gap in the stream: do not bridge it
            alpha = (stamp - t0) / (t1 - t0)
            return self._interpolate(self._values[index - 1], self._values[index], alpha), skew
        nearest = 0 if index == 0 else len(self._stamps) - 1
        skew = abs(self._stamps[nearest] - stamp)
        if skew > max_skew:
            return None
        return self._values[nearest].copy(), skew

    def _interpolate(self, a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
        value = a + alpha * (b - a)
        if self.pose:
            value[3:7] = quat_slerp(a[3:7], b[3:7], alpha)
        return value


@dataclass
class SyncedObservation:
    stamp: float
    images: dict[str, np.ndarray]
    joints: np.ndarray | None      # arm joints then gripper opening, or None if unused
    pose: Pose | None
    skews: dict[str, float] = field(default_factory=dict)


class ObservationSynchronizer:
    """Matches reference frames with the other cameras and proprioception (see module doc).

    `inputs` names the proprioception series used: 'joints' and/or 'pose'. With no camera,
    the first proprioception input is the reference stream."""

    def __init__(self, cameras: Sequence[str], inputs: Sequence[str],
                 config: SyncConfig | None = None) -> None:
        self.config = config or SyncConfig()
        self.cameras = list(cameras)
        self.inputs = list(inputs)
        unknown = set(self.inputs) - {'joints', 'pose'}
        if unknown:
            raise ValueError(f'unknown proprioception inputs {sorted(unknown)}')
        if not self.cameras and not self.inputs:
            raise ValueError('an observation needs at least one camera or proprioception input')
        self.series = {name: StampedSeries(self.config.buffer, pose=name == 'pose')
                       for name in self.inputs}
        self._frames: dict[str, deque[tuple[float, np.ndarray]]] = {
            cam: deque(maxlen=8) for cam in self.cameras}
        # [stamp, image, first seen by poll()]: poll runs on every input, so that is arrival
        self._pending: deque[list[Any]] = deque(maxlen=16)
        self.dropped: Counter[str] = Counter()
        self.published = 0
        self._last_stamp = -math.inf

    @property
    def reference(self) -> str:
        return self.cameras[0] if self.cameras else self.inputs[0]

    def add_frame(self, camera: str, stamp: float, image: np.ndarray) -> None:
        if camera not in self._frames:
            raise ValueError(f'camera {camera!r} is not one of {self.cameras}')
        self._frames[camera].append((stamp, image))
        if camera == self.reference:
            self._queue(stamp, image)

    def add_proprio(self, name: str, stamp: float, value: Sequence[float]) -> None:
        self.series[name].add(stamp, value)
        if name == self.reference:
            self._queue(stamp, None)

    def _queue(self, stamp: float, image: Any) -> None:
        if stamp <= self._last_stamp:
            self.dropped['out_of_order'] += 1
            return
        if len(self._pending) == self._pending.maxlen:
            self.dropped['backlog'] += 1
        self._pending.append([stamp, image, None])

    def poll(self, now: float) -> list[SyncedObservation]:
        """Observations that became ready (oldest first); drops stale or skewed frames."""
        ready = []
        for entry in self._pending:
            if entry[2] is None:
                entry[2] = now
        while self._pending:
            stamp, image, arrived = self._pending[0]
            if now - stamp > self.config.max_age_s:
                self._pending.popleft()
                self.dropped['stale'] += 1
                continue
            outcome = self._match(stamp, image,
                                  waited=now - max(stamp, arrived) > self.config.wait_s)
            if outcome == 'wait':
                break
            self._pending.popleft()
            if isinstance(outcome, str):
                self.dropped[outcome] += 1
                continue
            self._last_stamp = stamp
            self.published += 1
            ready.append(outcome)
        return ready

    def _match(self, stamp: float, image: Any, waited: bool) -> SyncedObservation | str:
        skew_limit = self.config.max_skew_s
        images, skews = {}, {}
        for camera in self.cameras:
            if camera == self.reference:
                images[camera], skews[camera] = image, 0.0
                continue
            frames = self._frames[camera]
            best = min(frames, key=lambda f: abs(f[0] - stamp), default=None)
            if best is not None and abs(best[0] - stamp) <= skew_limit:
                images[camera], skews[camera] = best[1], abs(best[0] - stamp)
                continue
            if not waited and (best is None or frames[-1][0] < stamp):
                return 'wait'  # that camera's matching frame may still be on its way
            return f'skew_{camera}'
        values = {}
        for name, series in self.series.items():
            if not series.brackets(stamp) and not waited and (
                    series.newest is None or series.newest < stamp):
                return 'wait'  # a sample after the stamp is due shortly: interpolate then
            sampled = series.sample(stamp, skew_limit)
            if sampled is None:
                return f'skew_{name}'
            values[name], skews[name] = sampled
        pose = None
        if 'pose' in values:
            pose = Pose(values['pose'][:3], values['pose'][3:7])
        return SyncedObservation(stamp, images, values.get('joints'), pose, skews)


class InputMonitor:
    """Per-input rate, age at arrival and skew, for /diagnostics."""

    def __init__(self, window: int = 200) -> None:
        self._arrivals: deque[float] = deque(maxlen=window)
        self._ages: deque[float] = deque(maxlen=window)
        self._skews: deque[float] = deque(maxlen=window)
        self.count = 0

    def arrived(self, stamp: float, now: float) -> None:
        self.count += 1
        self._arrivals.append(now)
        self._ages.append(now - stamp)

    def skew(self, value: float) -> None:
        self._skews.append(value)

    def rate_hz(self, now: float, horizon: float = 2.0) -> float:
        # tuple(): an atomic snapshot (the diagnostics timer reads while callbacks append)
        recent = [t for t in tuple(self._arrivals) if now - t <= horizon]
        if len(recent) < 2:
            return 0.0
        span = max(now - recent[0], recent[-1] - recent[0])
        return (len(recent) - 1) / span if span > 0 else 0.0

    def last_arrival(self) -> float | None:
        return self._arrivals[-1] if self._arrivals else None

    def summary(self, now: float) -> dict[str, Any]:
        ages = summarize(tuple(self._ages))
        skews = summarize(tuple(self._skews))
        return {'rate_hz': self.rate_hz(now), 'count': self.count,
                'age_median_s': ages['median'], 'age_max_s': ages['max'],
                'skew_median_s': skews['median'], 'skew_max_s': skews['max']}


class ObservationAssembler:
    """Joins the pieces of one observation published on separate topics (one per camera
    plus the state vector) by their identical stamp (integer nanoseconds)."""

    def __init__(self, parts: Iterable[str], keep: int = 8) -> None:
        self.parts = frozenset(parts)
        if not self.parts:
            raise ValueError('an observation needs at least one part')
        self.keep = keep
        self._partial: dict[int, dict[str, np.ndarray]] = {}
        self.incomplete = 0

    def add(self, part: str, stamp_ns: int, value: np.ndarray
            ) -> tuple[int, dict[str, np.ndarray]] | None:
        if part not in self.parts:
            raise ValueError(f'unexpected observation part {part!r}')
        entry = self._partial.setdefault(int(stamp_ns), {})
        entry[part] = value
        if entry.keys() == self.parts:
            del self._partial[int(stamp_ns)]
            # Older partial observations will never complete now.
            for old in [s for s in self._partial if s < stamp_ns]:
                del self._partial[old]
                self.incomplete += 1
            return int(stamp_ns), entry
        while len(self._partial) > self.keep:
            del self._partial[min(self._partial)]
            self.incomplete += 1
        return None


def history_indices(stamps: Sequence[float], history: int, spacing: float) -> list[int]:
    """For the newest of `stamps` (sorted), the index of the observation nearest each of
    newest − j·spacing, j = history−1 … 0 (oldest first), never newer than wanted by more
    than half a spacing; an episode start with too few observations repeats the oldest."""
    if not stamps:
        raise ValueError('no observations to build a history from')
    newest = stamps[-1]
    chosen = []
    for j in range(history - 1, -1, -1):
        wanted = newest - j * spacing
        index = bisect.bisect_left(stamps, wanted)
        candidates = [i for i in (index - 1, index) if 0 <= i < len(stamps)]
        best = min(candidates, key=lambda i: abs(stamps[i] - wanted))
        chosen.append(best)
    return chosen


class ObservationHistory:
    """Thread-safe store of recent complete observations; the inference thread takes the
    newest (waiting for one newer than a stamp when asked) stacked over `history` steps."""

    def __init__(self, history: int, spacing: float, capacity: int | None = None) -> None:
        if not isinstance(history, int) or history < 1:
            raise ValueError(f'history {history!r} must be an int >= 1')
        if not math.isfinite(spacing) or spacing <= 0:
            raise ValueError(f'history spacing {spacing!r} must be > 0')
        self.history = history
        self.spacing = spacing
        self._entries: deque[tuple[float, dict[str, np.ndarray]]] = deque(
            maxlen=capacity or max(8, 4 * history + 4))
        self._changed = threading.Condition()
        self._closed = False

    def add(self, stamp: float, parts: dict[str, np.ndarray]) -> None:
        with self._changed:
            if self._entries and stamp <= self._entries[-1][0]:
                return  # out of order or repeated: the history only moves forward
            self._entries.append((stamp, parts))
            self._changed.notify_all()

    def stamps(self) -> list[float]:
        """Stamps of the observations held, oldest first (the camera's timing)."""
        with self._changed:
            return [stamp for stamp, _ in self._entries]

    def latest_stamp(self) -> float | None:
        with self._changed:
            return self._entries[-1][0] if self._entries else None

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def wait_newer(self, min_stamp: float | None, timeout: float
                   ) -> tuple[float, dict[str, np.ndarray]] | None:
        """The newest observation stamped after `min_stamp` (any when None) as (stamp,
        {name: array [history, ...]}); None if none arrives within `timeout` seconds."""
        with self._changed:
            ok = self._changed.wait_for(
                lambda: self._closed or (self._entries and (
                    min_stamp is None or self._entries[-1][0] > min_stamp)), timeout)
            if not ok or self._closed:
                return None
            entries = list(self._entries)
        stamps = [s for s, _ in entries]
        chosen = [entries[i][1] for i in history_indices(stamps, self.history, self.spacing)]
        stacked = {name: np.stack([c[name] for c in chosen]) for name in chosen[-1]}
        return stamps[-1], stacked

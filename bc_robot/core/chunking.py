"""Chunk executors: how a stream of action chunks becomes exactly one action per control tick.

Time is counted in integer control ticks. A chunk computed from an observation stamped at
tick `start` holds the actions for ticks start, start+1, ..., start+H-1 (index 0 is the
action for the moment the observation was taken, as in Diffusion Policy and ACT). An
inference takes a while, so by the time its chunk arrives some of those ticks have passed.

- `sync`: the naive baseline (LeRobot's synchronous loop). Run the chunk out from index 0
  whatever time it is, then ask for the next and wait: the arm stalls for every inference.
- `ensemble`: ACT temporal ensembling. Query every `ensemble_every` ticks; the action for a
  tick is the mean of every chunk's prediction for that tick, weighted w_i = exp(-m·i) with
  i = 0 for the *oldest* prediction (ACT's own choice: it favours the earlier plans).
- `async`: start the next inference while `execute_horizon` actions (or the delay estimate
  plus a margin, if larger) remain; when the new chunk arrives, actions whose tick has
  passed are skipped and the rest replace the old plan.
- `rtc`: async plus Real-Time Chunking (Black, Galliker, Levine 2025). The actions already
  committed from the current plan are handed to a prefix-accepting policy as `prefix`, with
  the soft mask `prefix_weights`: 1 for the actions that will execute during the inference
  delay, exponentially decaying over the rest of the overlap, 0 beyond it. For a policy
  without a prefix input the executor blends the new chunk into the old plan over the
  overlap with the same weights.

All executors are pure (no threads, no clocks); `ChunkRunner` below drives one from a
control timer and a background inference thread.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from bc_robot.core.actions import ActionLayout
from bc_robot.core.alignment import request_now
from bc_robot.core.delay import DelayEstimator, SeriesRecorder
from bc_robot.core.spec import PREFIX_INPUT, PREFIX_WEIGHTS_INPUT

EXECUTORS = ('sync', 'ensemble', 'async', 'rtc')

logger = logging.getLogger(__name__)
MAX_REGISTRATION_TICKS = 2.0
REGISTRATION_SAMPLES = 41         # shifts tried over ±async_registration (0 among them)
REGISTRATION_MIN_GAIN_M = 1e-4    # a shift must bring the chunk this much closer to the plan


@dataclass(frozen=True)
class ExecutorConfig:
    mode: str
    chunk_length: int
    execute_horizon: int = 8       # async/rtc: infer again when this many actions remain
    delay_margin_steps: int = 2    # async/rtc: ticks added to the delay estimate for that
    ensemble_m: float = 0.01       # ensemble: weight exp(-m·i), i = 0 oldest
    ensemble_every: int = 1        # ensemble: query every k ticks
    # async: a new chunk may shift by up to this many ticks beyond its delay alignment, to
    # where it best continues the plan it replaces (register_on_plan; 0: off)
    async_registration: float = 0.5

    def __post_init__(self) -> None:
        if self.mode not in EXECUTORS:
            raise ValueError(f'executor {self.mode!r} is not one of {", ".join(EXECUTORS)}')
        if not isinstance(self.chunk_length, int) or self.chunk_length < 1:
            raise ValueError(f'chunk_length {self.chunk_length!r} must be an int >= 1')
        if not isinstance(self.execute_horizon, int) \
                or not 0 <= self.execute_horizon < self.chunk_length:
            raise ValueError(f'execute_horizon {self.execute_horizon!r} must be an int in '
                             f'[0, chunk_length - 1 = {self.chunk_length - 1}]')
        if not isinstance(self.delay_margin_steps, int) or self.delay_margin_steps < 0:
            raise ValueError(f'delay_margin_steps {self.delay_margin_steps!r} must be an '
                             f'int >= 0')
        if not math.isfinite(self.ensemble_m) or self.ensemble_m < 0:
            raise ValueError(f'ensemble_m {self.ensemble_m!r} must be finite and >= 0')
        if not (math.isfinite(self.async_registration)
                and 0.0 <= self.async_registration <= MAX_REGISTRATION_TICKS):
            raise ValueError(f'async_registration {self.async_registration!r} must be in '
                             f'[0, {MAX_REGISTRATION_TICKS}] ticks')
        if not isinstance(self.ensemble_every, int) \
                or not 1 <= self.ensemble_every <= self.chunk_length:
            raise ValueError(f'ensemble_every {self.ensemble_every!r} must be an int in '
                             f'[1, chunk_length = {self.chunk_length}]')


def ensemble_weights(count: int, m: float) -> np.ndarray:
    """ACT's temporal-ensembling weights for `count` predictions of one tick, oldest first."""
    return np.exp(-m * np.arange(count, dtype=np.float64))


def rtc_soft_mask(chunk_length: int, committed: int, overlap: int) -> np.ndarray:
    """RTC prefix weights (Black et al. 2025, eq. 5) for a new chunk of `chunk_length`.

    `committed` (d): actions that execute before the new chunk can take over → weight 1.
    `overlap` (H - s): actions of the previous plan available from the new chunk's start.
    Between them the weight decays as c·(e^c − 1)/(e − 1), c = (overlap − i)/(overlap − d + 1);
    beyond the overlap it is 0 (nothing to agree with)."""
    overlap = max(0, min(chunk_length, overlap))
    committed = max(0, min(committed, overlap))
    weights = np.zeros(chunk_length, dtype=np.float64)
    weights[:committed] = 1.0
    index = np.arange(committed, overlap, dtype=np.float64)
    c = (overlap - index) / (overlap - committed + 1)
    weights[committed:overlap] = c * np.expm1(c) / np.expm1(1.0)
    return weights


def chunk_on_ticks(chunk: np.ndarray, fraction: float, layout: ActionLayout) -> np.ndarray:
    """A chunk's action i is for its observation stamp + i·dt, and the stamp falls between
    ticks: `fraction` of a period after tick `start`. Tick start + i is then chunk time
    i − fraction, between actions i − 1 and i. Tick `start` itself is at or before the stamp
    (the chunk arrives later) and keeps action 0. Rounding the stamp to the nearest tick
    instead put each chunk up to half a period early or late: steps of up to twice the
    typical one between two chunks that agree."""
    return chunk if fraction == 0.0 else resample_chunk(chunk, -fraction, layout)


def _rows_at(chunk: np.ndarray, times: np.ndarray, layout: ActionLayout) -> np.ndarray:
    """The chunk at fractional action indices, linearly between neighbours, held at the
    ends (never extrapolated)."""
    times = np.clip(times, 0.0, chunk.shape[0] - 1)
    lower = np.floor(times).astype(int)
    upper = np.minimum(lower + 1, chunk.shape[0] - 1)
    return layout.interpolate(chunk[lower], chunk[upper], times - lower)


def resample_chunk(chunk: np.ndarray, offset: float, layout: ActionLayout) -> np.ndarray:
    """Tick i of the chunk's placement executes chunk time i + offset."""
    return _rows_at(chunk, np.arange(chunk.shape[0], dtype=np.float64) + offset, layout)


def register_on_plan(chunk: np.ndarray, index: int, offset: float, planned: np.ndarray,
                     layout: ActionLayout, max_shift: float) -> float:
    """The shift δ in [−max_shift, max_shift] ticks that puts the chunk's position at its
    tick `index` (chunk time index + offset + δ) closest to `planned`, the action the
    replaced plan had for that tick; 0 unless that is REGISTRATION_MIN_GAIN_M closer.

    Why: a chunk placed by its delay alone disagrees with the plan it replaces wherever the
    policy's input lagged by a few milliseconds more or less than before (the measured
    position trails the targets by a lag that wanders with the phase of frames, ticks and the
    controller); along the path that disagreement is a timing error, and the step it makes at
    the switch is what async has no prefix to remove. Across the path a shift cannot help
    and none is taken."""
    shifts = np.linspace(-max_shift, max_shift, REGISTRATION_SAMPLES)
    candidates = _rows_at(chunk, index + offset + shifts, layout)
    distance = np.linalg.norm(candidates[:, :3] - layout.position(planned), axis=1)
    best = int(np.argmin(distance))
    unshifted = distance[REGISTRATION_SAMPLES // 2]
    return float(shifts[best]) if unshifted - distance[best] > REGISTRATION_MIN_GAIN_M else 0.0


class ChunkExecutor:
    """Common state of every executor. The runner calls, in each control tick, `deliver`
    for a chunk that arrived since the last tick, then `step`, then `wants_inference`."""

    # may start an inference before it is due, for a better-timed frame (core.alignment)
    aligns_requests = False

    def __init__(self, config: ExecutorConfig, layout: ActionLayout,
                 estimator: DelayEstimator, dt: float, accepts_prefix: bool = False) -> None:
        self.config = config
        self.accepts_prefix = accepts_prefix
        self.layout = layout
        self.estimator = estimator   # observation stamp → chunk available
        # request → chunk available (includes waiting for a fresh observation): when to ask
        self.turnaround = DelayEstimator(estimator.config)
        self.dt = dt
        self.started_chunk: int | None = None  # id of a chunk whose first action `step` gave
        self.last_shift = 0.0   # ticks the last chunk was registered by (async only)
        self._chunk_ids = 0

    @property
    def mode(self) -> str:
        return self.config.mode

    def ticks_until_due(self, tick: int) -> int:
        """Ticks until `wants_inference` will say yes (0: it does now); only asked of
        executors that `aligns_requests`."""
        return 0

    def step(self, tick: int) -> np.ndarray | None:
        raise NotImplementedError

    def wants_inference(self, tick: int) -> bool:
        raise NotImplementedError

    def queue_depth(self, tick: int) -> int:
        """Actions ready for the ticks after `tick`."""
        raise NotImplementedError

    def planned(self, tick: int) -> np.ndarray:
        """The actions planned from `tick` on, [n, dim] (for /bc/policy/chunk)."""
        raise NotImplementedError

    def prefix_for(self, start: int, fraction: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray] | None:
        """(prefix, prefix_weights) to give a prefix-accepting policy for a chunk whose
        observation stamp is `fraction` of a period after tick `start` (None for a policy
        without a prefix input). Only `rtc` conditions on the plan; the others give
        all-zero weights: an unconditioned chunk."""
        if not self.accepts_prefix:
            return None
        length = self.config.chunk_length
        return (np.zeros((length, self.layout.dim), dtype=np.float32),
                np.zeros(length, dtype=np.float32))

    def deliver(self, chunk: np.ndarray, start: int, tick: int, delay_s: float | None,
                turnaround_s: float | None = None, fraction: float = 0.0) -> int:
        """Accept a validated chunk [H, dim] whose observation stamp is `fraction` of a
        period after tick `start`, arriving before tick `tick` is stepped; `delay_s`
        (observation stamp → available) and `turnaround_s` (request → available) feed the
        estimators. Returns the chunk id."""
        if delay_s is not None:
            self.estimator.add(delay_s)
        if turnaround_s is not None:
            self.turnaround.add(turnaround_s)
        self._chunk_ids += 1
        chunk = self._place(np.asarray(chunk, dtype=np.float64), int(start), int(tick),
                            float(fraction))
        self._accept(chunk, int(start), int(tick), self._chunk_ids)
        return self._chunk_ids

    def _place(self, chunk: np.ndarray, start: int, tick: int, fraction: float) -> np.ndarray:
        """The chunk as actions for ticks start, start + 1, …"""
        return self._on_ticks(chunk, fraction)

    def _on_ticks(self, chunk: np.ndarray, fraction: float) -> np.ndarray:
        return chunk_on_ticks(chunk, fraction, self.layout)

    def _accept(self, chunk: np.ndarray, start: int, tick: int, chunk_id: int) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Drop every planned action (operator took over): nothing queued survives."""
        raise NotImplementedError


class SyncExecutor(ChunkExecutor):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._queue: deque[tuple[int, np.ndarray]] = deque()
        self._last_id: int | None = None

    def step(self, tick: int) -> np.ndarray | None:
        self.started_chunk = None
        if not self._queue:
            return None
        chunk_id, action = self._queue.popleft()
        if chunk_id != self._last_id:
            self.started_chunk = self._last_id = chunk_id
        return action

    def wants_inference(self, tick: int) -> bool:
        return not self._queue

    def queue_depth(self, tick: int) -> int:
        return len(self._queue)

    def planned(self, tick: int) -> np.ndarray:
        return np.array([a for _, a in self._queue]).reshape(-1, self.layout.dim)

    def _on_ticks(self, chunk: np.ndarray, fraction: float) -> np.ndarray:
        return chunk  # the naive loop runs the chunk as it came

    def _accept(self, chunk: np.ndarray, start: int, tick: int, chunk_id: int) -> None:
        # The naive loop: every action of the chunk, from index 0, whatever time it is.
        self._queue.extend((chunk_id, action) for action in chunk)

    def flush(self) -> None:
        self._queue.clear()


class AsyncExecutor(ChunkExecutor):
    aligns_requests = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._plan: np.ndarray | None = None
        self._start = 0
        self._plan_id = 0
        self._started = False

    def _index(self, tick: int) -> int | None:
        if self._plan is None:
            return None
        index = tick - self._start
        return index if 0 <= index < self._plan.shape[0] else None

    def step(self, tick: int) -> np.ndarray | None:
        self.started_chunk = None
        index = self._index(tick)
        if index is None:
            return None
        if not self._started:
            self._started = True
            self.started_chunk = self._plan_id
        return self._plan[index]

    def trigger_remaining(self) -> int:
        """Infer again once this many actions (or fewer) remain after the current tick."""
        delay = max(self.estimator.estimate_steps(self.dt),
                    self.turnaround.estimate_steps(self.dt))
        wanted = max(self.config.execute_horizon, delay + self.config.delay_margin_steps)
        return min(self.config.chunk_length - 1, wanted)

    def queue_depth(self, tick: int) -> int:
        if self._plan is None:
            return 0
        return max(0, self._start + self._plan.shape[0] - 1 - tick)

    def ticks_until_due(self, tick: int) -> int:
        if self._plan is None:
            return 0
        return max(0, self.queue_depth(tick) - self.trigger_remaining())

    def wants_inference(self, tick: int) -> bool:
        return self.ticks_until_due(tick) == 0

    def planned(self, tick: int) -> np.ndarray:
        if self._plan is None:
            return np.zeros((0, self.layout.dim))
        return self._plan[max(0, tick - self._start):]

    def _place(self, chunk: np.ndarray, start: int, tick: int, fraction: float) -> np.ndarray:
        """async: placed by its delay, then registered on the plan it replaces (rtc's prefix
        or blend does that job for rtc)."""
        current = self._index(tick)
        index = tick - start
        self.last_shift = 0.0
        if self.mode == 'async' and self.config.async_registration > 0.0 \
                and current is not None and 0 <= index < chunk.shape[0]:
            self.last_shift = register_on_plan(chunk, index, -fraction, self._plan[current],
                                               self.layout, self.config.async_registration)
        # registered δ ticks later in the chunk = a stamp δ ticks earlier
        return self._on_ticks(chunk, fraction - self.last_shift)

    def _accept(self, chunk: np.ndarray, start: int, tick: int, chunk_id: int) -> None:
        if start + chunk.shape[0] <= tick:
            logger.debug('chunk for ticks %d..%d arrived at tick %d: all stale', start,
                         start + chunk.shape[0] - 1, tick)
            if self._index(tick) is None:
                self._plan = None  # nothing left either way: ask again at once
            return
        self._plan, self._start, self._plan_id, self._started = chunk, start, chunk_id, False

    def flush(self) -> None:
        self._plan = None
        self._started = False


class RtcExecutor(AsyncExecutor):
    """Async plus prefix conditioning (or overlap blending without a prefix input)."""

    def _overlap(self, start: int) -> int:
        """Actions of the current plan available for ticks start, start+1, ..."""
        if self._plan is None or start < self._start:
            return 0
        return max(0, min(self.config.chunk_length, self._start + self._plan.shape[0] - start))

    def prefix_for(self, start: int, fraction: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.accepts_prefix:
            return None
        length = self.config.chunk_length
        prefix = np.zeros((length, self.layout.dim), dtype=np.float32)
        overlap = self._overlap(start)
        if overlap:
            offset = start - self._start
            plan = self._plan[offset:offset + overlap]
            if fraction > 0.0:
                # the policy's action i is for stamp + i·dt: between plan ticks i and i + 1
                overlap -= 1
                plan = self.layout.interpolate(plan[:-1], plan[1:], fraction)
            prefix[:overlap] = plan
        # The chunk is first used on the tick after it arrives: one more action committed
        # than the delay alone (stamps fall anywhere within a tick).
        committed = self.estimator.estimate_steps(self.dt) + 1
        weights = rtc_soft_mask(length, committed, overlap).astype(np.float32)
        return prefix, weights

    def _accept(self, chunk: np.ndarray, start: int, tick: int, chunk_id: int) -> None:
        overlap = self._overlap(start)
        if not self.accepts_prefix and overlap and start + chunk.shape[0] > tick:
            # Blend over the overlap: the ticks before `tick` are committed (weight 1 on the
            # old plan), the rest decays towards the new chunk.
            weights = rtc_soft_mask(chunk.shape[0], tick - start, overlap)
            offset = start - self._start
            blended = chunk.copy()
            for i in range(max(0, tick - start), overlap):
                if weights[i] > 0:
                    blended[i] = self.layout.blend(
                        [self._plan[offset + i], chunk[i]], [weights[i], 1.0 - weights[i]])
            chunk = blended
        super()._accept(chunk, start, tick, chunk_id)


class EnsembleExecutor(ChunkExecutor):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._chunks: list[tuple[int, np.ndarray, int]] = []  # (start, actions, id), oldest first
        self._last_request: int | None = None
        self._contributed: set[int] = set()

    def _covering(self, tick: int) -> list[tuple[np.ndarray, int]]:
        return [(actions[tick - start], chunk_id) for start, actions, chunk_id in self._chunks
                if 0 <= tick - start < actions.shape[0]]

    def action_at(self, tick: int) -> np.ndarray | None:
        covering = self._covering(tick)
        if not covering:
            return None
        weights = ensemble_weights(len(covering), self.config.ensemble_m)
        return self.layout.blend([a for a, _ in covering], weights)

    def step(self, tick: int) -> np.ndarray | None:
        self.started_chunk = None
        covering = self._covering(tick)
        fresh = [chunk_id for _, chunk_id in covering if chunk_id not in self._contributed]
        if fresh:
            self.started_chunk = max(fresh)
            self._contributed.update(fresh)
        # Chunks that end before the next tick no longer matter.
        self._chunks = [c for c in self._chunks if c[0] + c[1].shape[0] > tick + 1]
        self._contributed &= {c[2] for c in self._chunks}
        if not covering:
            return None
        weights = ensemble_weights(len(covering), self.config.ensemble_m)
        return self.layout.blend([a for a, _ in covering], weights)

    def wants_inference(self, tick: int) -> bool:
        if self._last_request is None or not self._chunks \
                or tick - self._last_request >= self.config.ensemble_every:
            self._last_request = tick
            return True
        return False

    def queue_depth(self, tick: int) -> int:
        ends = [start + actions.shape[0] - 1 for start, actions, _ in self._chunks]
        return max(0, max(ends, default=tick) - tick)

    def planned(self, tick: int) -> np.ndarray:
        actions = []
        for t in range(tick, tick + self.config.chunk_length):
            action = self.action_at(t)
            if action is None:
                break
            actions.append(action)
        return np.array(actions).reshape(-1, self.layout.dim)

    def _accept(self, chunk: np.ndarray, start: int, tick: int, chunk_id: int) -> None:
        if start + chunk.shape[0] > tick:
            self._chunks.append((start, chunk, chunk_id))

    def flush(self) -> None:
        self._chunks.clear()
        self._contributed.clear()
        self._last_request = None


def make_executor(config: ExecutorConfig, layout: ActionLayout, estimator: DelayEstimator,
                  dt: float, accepts_prefix: bool = False) -> ChunkExecutor:
    """The executor named by `config.mode`."""
    if not math.isfinite(dt) or dt <= 0:
        raise ValueError(f'control period {dt!r} must be > 0')
    kinds = {'sync': SyncExecutor, 'ensemble': EnsembleExecutor, 'async': AsyncExecutor,
             'rtc': RtcExecutor}
    return kinds[config.mode](config, layout, estimator, dt, accepts_prefix)


# ---------------------------------------------------------------------------------------
# The real-time harness: control ticks on the caller's thread, inference on a worker.


class Backend(Protocol):
    def infer(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray: ...

    def reset(self) -> None: ...


class ObservationSource(Protocol):
    def wait_newer(self, min_stamp: float | None, timeout: float
                   ) -> tuple[float, dict[str, np.ndarray]] | None: ...

    def stamps(self) -> list[float]: ...


@dataclass
class TickOutput:
    """What one control tick produced. `action` is None on an idle tick (nothing ready) or
    while paused; `hold` is then the last action of the current engagement, if any."""

    tick: int
    action: np.ndarray | None
    hold: np.ndarray | None = None
    paused: bool = False
    new_chunk: bool = False
    latency_s: float | None = None   # obs stamp → this tick, on a new chunk's first action
    queue_depth: int = 0
    planned: np.ndarray | None = None  # set when a new chunk starts

    @property
    def idle(self) -> bool:
        return self.action is None and not self.paused


@dataclass
class _Result:
    generation: int
    chunk: np.ndarray
    stamp: float
    delay_s: float
    inference_s: float
    turnaround_s: float


@dataclass
class RunnerConfig:
    dt: float
    max_age_s: float = 0.5           # an observation older than this is not inferred on
    fresh_observation: bool = True   # wait for an observation newer than the request
    inject_delay_s: float = 0.0      # experiments: added to every inference
    align_window_s: float = 0.1      # async/rtc: request up to this early for a better frame

    def __post_init__(self) -> None:
        for name in ('dt', 'max_age_s'):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f'{name} {value!r} must be finite and > 0')
        for name in ('inject_delay_s', 'align_window_s'):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f'{name} {value!r} must be finite and >= 0')


class ChunkRunner:
    """Drives an executor in real time: `tick(now)` from the control timer (never blocks on
    inference), one background thread that waits for a request, takes an observation, runs
    the backend and hands the validated chunk back for the next tick.

    `pause()` (operator takeover) drops the plan and any inference in flight; `resume(now)`
    makes the next inference wait for an observation stamped after `now`, so no action
    computed from before the takeover is ever executed."""

    def __init__(self, executor: ChunkExecutor, backend: Backend, source: ObservationSource,
                 clock: Callable[[], float], config: RunnerConfig,
                 recorder: SeriesRecorder | None = None) -> None:
        self.executor = executor
        self.backend = backend
        self.source = source
        self.clock = clock
        self.config = config
        self.recorder = recorder or SeriesRecorder()
        self.trace = SeriesRecorder(limit=30_000)  # per-tick record for the exit dump
        self._last_wall: float | None = None
        self.counters = {'ticks': 0, 'idle_ticks': 0, 'paused_ticks': 0, 'chunks': 0,
                         'discarded_chunks': 0, 'invalid_chunks': 0, 'stale_observations': 0,
                         'early_requests': 0,
                         'missing_observations': 0, 'inference_errors': 0}
        self.last_error = ''     # policy/backend faults: the node reports them as errors
        self.last_warning = ''   # observation gaps: expected at startup, warned
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._generation = 0
        self._request: tuple[int, float | None, float] | None = None
        self._inflight = False
        self._result: _Result | None = None
        self._paused = False
        self._min_stamp: float | None = None
        self._t0: float | None = None
        self._last_tick = -1
        self._last_action: np.ndarray | None = None
        self._chunk_stamps: dict[int, float] = {}
        self._thread = threading.Thread(target=self._work, name='bc-inference')
        self._thread.start()

    # -- control side -------------------------------------------------------------------
    def _tick_index(self, now: float) -> int:
        if self._t0 is None:
            self._t0 = now
        tick = int(round((now - self._t0) / self.config.dt))
        if tick <= self._last_tick:  # early callback or a clock that went back
            tick = self._last_tick + 1
            self._t0 = now - tick * self.config.dt
        self._last_tick = tick
        return tick

    def _stamp_position(self, stamp: float) -> tuple[int, float]:
        """(last tick at or before `stamp`, fraction of a period from it to the stamp)."""
        exact = (stamp - self._t0) / self.config.dt
        start = math.floor(exact + 1e-9)
        return start, min(max(exact - start, 0.0), 1.0 - 1e-9)

    def tick(self, now: float, wall: float | None = None, want_plan: bool = True) -> TickOutput:
        """One control tick at clock time `now` (the clock stamps are in); `wall`, a
        monotonic time, feeds the control-period jitter statistics. With `want_plan` the
        output of a tick that starts a new chunk carries the plan from now on."""
        with self._lock:
            out = self._tick(now, want_plan)
            self._record(out, wall)
            return out

    def _record(self, out: TickOutput, wall: float | None) -> None:
        if wall is not None:
            if self._last_wall is not None:
                period = wall - self._last_wall
                self.recorder.add('period_s', period)
                self.recorder.add('jitter_s', abs(period - self.config.dt))
            self._last_wall = wall
        shown = out.action if out.action is not None else out.hold
        trace = self.trace
        trace.add('tick', out.tick)
        trace.add('wall', wall if wall is not None else math.nan)
        trace.add('state', 2 if out.paused else 1 if out.idle else 0)
        trace.add('new_chunk', 1 if out.new_chunk else 0)
        trace.add('queue_depth', out.queue_depth)
        for axis, value in zip('xyz', shown[:3] if shown is not None else [math.nan] * 3):
            trace.add(axis, value)

    def _tick(self, now: float, want_plan: bool) -> TickOutput:
        tick = self._tick_index(now)
        self.counters['ticks'] += 1
        if self._paused:
            self.counters['paused_ticks'] += 1
            return TickOutput(tick, None, paused=True)
        if self._result is not None:
            self._deliver(self._result, tick)
            self._result = None
        action = self.executor.step(tick)
        out = TickOutput(tick, action, queue_depth=self.executor.queue_depth(tick))
        if action is None:
            self.counters['idle_ticks'] += 1
            out.hold = self._last_action
        else:
            self._last_action = action
        started = self.executor.started_chunk
        if started is not None and started in self._chunk_stamps:
            out.new_chunk = True
            out.latency_s = now - self._chunk_stamps.pop(started)
            if want_plan:
                out.planned = self.executor.planned(tick)
            self.recorder.add('obs_to_target_s', out.latency_s)
        self.recorder.add('queue_depth', out.queue_depth)
        if not self._inflight and self._should_request(tick):
            self._inflight = True
            min_stamp = self._min_stamp
            if self.config.fresh_observation:
                min_stamp = now if min_stamp is None else max(now, min_stamp)
            self._request = (self._generation, min_stamp, now)
            self._wake.notify()
        return out

    def _should_request(self, tick: int) -> bool:
        """When the executor wants a chunk, or earlier within `align_window_s` when that
        gets a frame whose first action goes out sooner after its stamp (core.alignment)."""
        executor, dt = self.executor, self.config.dt
        window = int(self.config.align_window_s / dt + 1e-9)
        if not (executor.aligns_requests and self.config.fresh_observation and window > 0):
            return executor.wants_inference(tick)
        due = executor.ticks_until_due(tick)  # one trigger computation per tick, not two
        if due == 0:
            return True
        if due > window or not request_now(self.source.stamps(), self._t0 + tick * dt, due,
                                           self._t0, dt, executor.estimator.samples()):
            return False
        self.counters['early_requests'] += 1
        return True

    def _deliver(self, result: _Result, tick: int) -> None:
        if result.generation != self._generation:
            self.counters['discarded_chunks'] += 1
            return
        start, fraction = self._stamp_position(result.stamp)
        chunk_id = self.executor.deliver(result.chunk, start, tick, result.delay_s,
                                         result.turnaround_s, fraction)
        self._chunk_stamps = {k: v for k, v in self._chunk_stamps.items() if k > chunk_id - 64}
        self._chunk_stamps[chunk_id] = result.stamp
        self.counters['chunks'] += 1
        self.recorder.add('inference_s', result.inference_s)
        self.recorder.add('delay_s', result.delay_s)
        self.recorder.add('turnaround_s', result.turnaround_s)
        self.recorder.add('delay_estimate_s', self.executor.estimator.estimate())
        self.recorder.add('skipped_actions', max(0, tick - start))
        self.recorder.add('registration_ticks', self.executor.last_shift)  # 0 unless async

    def pause(self) -> None:
        """Operator takeover: drop the queue and whatever inference is in flight."""
        with self._lock:
            self._paused = True
            self._generation += 1
            self.executor.flush()
            self._result = None
            self._request = None
            self._inflight = False
            self._last_action = None
            self._chunk_stamps.clear()

    def resume(self, now: float) -> None:
        """Policy authority again: infer afresh from an observation taken after `now`."""
        with self._lock:
            if self._paused:
                self._paused = False
                self._min_stamp = now
                self._generation += 1

    @property
    def paused(self) -> bool:
        return self._paused

    def set_inject_delay(self, seconds: float) -> None:
        self.config.inject_delay_s = float(seconds)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        self._thread.join(timeout=10.0)

    # -- inference side -----------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                while self._request is None and not self._stop.is_set():
                    self._wake.wait(timeout=0.5)
                if self._stop.is_set():
                    return
                generation, min_stamp, requested = self._request
                self._request = None
            try:
                self._infer_once(generation, min_stamp, requested)
            except Exception as exc:  # a backend failure must not kill the thread
                self.counters['inference_errors'] += 1
                message = f'inference failed: {exc}'
                if message != self.last_error:
                    logger.error(message)
                self.last_error = message
                self._finish(generation, None)
                self._stop.wait(0.1)

    def _finish(self, generation: int, result: _Result | None) -> None:
        with self._lock:
            if generation != self._generation:
                if result is not None:
                    self.counters['discarded_chunks'] += 1
                return
            self._inflight = False
            self._result = result

    def _infer_once(self, generation: int, min_stamp: float | None, requested: float) -> None:
        observation = self.source.wait_newer(min_stamp, timeout=self.config.max_age_s)
        if observation is None:
            self.counters['missing_observations'] += 1
            self.last_warning = 'no observation newer than the request arrived within max_age'
            self._finish(generation, None)
            return
        stamp, inputs = observation
        age = self.clock() - stamp
        if age > self.config.max_age_s or age < -self.config.max_age_s:
            self.counters['stale_observations'] += 1
            self.last_warning = (f'observation is {age:.3f} s old (max_age {self.config.max_age_s}'
                               f' s); a huge value means stamps and this node use different '
                               f'clocks (use_sim_time)')
            self._finish(generation, None)
            self._stop.wait(min(0.05, self.config.dt))
            return
        with self._lock:
            if generation != self._generation:
                return
            prefix = self.executor.prefix_for(*self._stamp_position(stamp))
        feed = dict(inputs)
        if prefix is not None:
            feed[PREFIX_INPUT], feed[PREFIX_WEIGHTS_INPUT] = prefix
        began = time.perf_counter()
        chunk = self.backend.infer(feed)
        inference_s = time.perf_counter() - began
        if self.config.inject_delay_s > 0:
            self._stop.wait(self.config.inject_delay_s)
        try:
            chunk = self.executor.layout.validate_chunk(chunk, self.executor.config.chunk_length)
        except ValueError as exc:
            self.counters['invalid_chunks'] += 1
            message = f'policy output refused: {exc}'
            if message != self.last_error:
                logger.error(message)
            self.last_error = message
            self._finish(generation, None)
            return
        now = self.clock()
        self._finish(generation, _Result(generation, chunk, stamp, max(0.0, now - stamp),
                                         inference_s, max(0.0, now - requested)))

    def diagnostic_values(self, stats: dict[str, Any]) -> dict[str, Any]:
        """The timing figures /diagnostics shows, in ms, from `stats()`."""
        def ms(name: str, key: str) -> float | None:
            value = stats['series'].get(name, {}).get(key)
            return None if value is None else 1e3 * value
        return {'delay_estimate_ms': 1e3 * stats['delay_estimate_s'],
                'inference_ms_median': ms('inference_s', 'median'),
                'inference_ms_p99': ms('inference_s', 'p99'),
                'obs_to_target_ms_median': ms('obs_to_target_s', 'median'),
                'obs_to_target_ms_p99': ms('obs_to_target_s', 'p99'),
                'jitter_ms_p99': ms('jitter_s', 'p99'),
                'queue_depth': (self.trace.last('queue_depth', 1) or [0])[0],
                'last_error': stats['last_error'], 'last_warning': stats['last_warning']}

    def report(self) -> dict[str, Any]:
        """`stats()` plus every raw sample and the per-tick trace: the exit dump."""
        report = self.stats()
        report['inject_delay_ms'] = 1e3 * self.config.inject_delay_s
        report['samples'] = {n: self.recorder.values(n) for n in self.recorder.names()}
        report['trace'] = {n: self.trace.values(n) for n in self.trace.names()}
        return report

    def stats(self) -> dict[str, Any]:
        """Counters and summaries for /diagnostics and the exit dump."""
        with self._lock:
            return {'executor': self.executor.mode, 'counters': dict(self.counters),
                    'delay_estimate_s': self.executor.estimator.estimate(),
                    'series': self.recorder.summary(), 'last_error': self.last_error,
                    'last_warning': self.last_warning}

"""Summaries of orchestrated runs, pure (numpy only): episode outcomes, success rates,
latency percentiles, and the chunk-boundary figures of the real-time chunking experiment
computed from the policy node's per-tick trace (its `stats_path` exit dump)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

# policy_node trace states (core.chunking.ChunkRunner._record)
ACTING, IDLE, PAUSED = 0, 1, 2


def percentiles(values: Iterable[float], scale: float = 1.0) -> dict[str, float]:
    """n, p50, p99, max, min and mean of the finite values (times `scale`); NaN when empty.
    The one summary every benchmark and report prints."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64) * scale
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {'n': 0, **{key: math.nan for key in ('p50', 'p99', 'max', 'min', 'mean')}}
    return {'n': int(v.size), 'p50': float(np.median(v)), 'p99': float(np.percentile(v, 99)),
            'max': float(v.max()), 'min': float(v.min()), 'mean': float(v.mean())}


@dataclass
class EpisodeOutcome:
    """One seeded episode as the orchestrator saw it. Times `time_to_success`/`duration`
    are sim seconds from the episode's start (task_state `episode_time`); `wall_start` /
    `wall_end` are CLOCK_MONOTONIC seconds, the clock of the policy node's trace."""

    index: int
    seed: int
    success: bool = False
    time_to_success: float | None = None
    duration: float = 0.0
    timed_out: bool = False
    interventions: int = 0
    intervention_time: float = 0.0
    wall_start: float = 0.0
    wall_end: float = 0.0
    scene: dict[str, Any] = field(default_factory=dict)
    start_tcp: list[float] = field(default_factory=list)         # measured after the reset
    final: dict[str, Any] = field(default_factory=dict)
    path: list[list[float]] = field(default_factory=list)        # [t, x, y, z] of the TCP
    chunks: list[list[list[float]]] = field(default_factory=list)  # predicted [x, y, z] plans
    episode_dir: str | None = None
    error: str | None = None

    @property
    def autonomous(self) -> bool:
        """Succeeded with nobody touching the pedal."""
        return self.success and self.interventions == 0

    def to_json(self, with_paths: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not with_paths:
            data.pop('path')
            data.pop('chunks')
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EpisodeOutcome:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def summarize(outcomes: Sequence[EpisodeOutcome]) -> dict[str, Any]:
    """Success rate (and its autonomous share), interventions and time to success, over
    the episodes that ran; episodes the orchestrator could not run (`error`, e.g. a reset
    that failed on a stalled sim) are counted apart, never as policy failures."""
    errors = sum(o.error is not None for o in outcomes)
    n = len(outcomes) - errors
    outcomes = [o for o in outcomes if o.error is None]
    successes = sum(o.success for o in outcomes)
    times = [o.time_to_success for o in outcomes if o.success and o.time_to_success is not None]
    return {
        'episodes': n,
        'successes': successes,
        'success_rate': successes / n if n else math.nan,
        'autonomous_successes': sum(o.autonomous for o in outcomes),
        'interventions': sum(o.interventions for o in outcomes),
        'episodes_with_intervention': sum(o.interventions > 0 for o in outcomes),
        'intervention_time_s': float(sum(o.intervention_time for o in outcomes)),
        'timeouts': sum(o.timed_out for o in outcomes),
        'errors': errors,
        'time_to_success_s': percentiles(times),
        'seeds': [o.seed for o in outcomes],
    }


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate: honest error bars for few episodes."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def difference_interval(successes: int, n: int, base_successes: int, base_n: int,
                        z: float = 1.96) -> tuple[float, float]:
    """95 % interval of a success-rate difference (Newcombe's hybrid score method, from the two
    Wilson intervals): whether a round's gain over the BC start is more than the luck of
    which scenes succeeded. Unpaired, since one policy's success on a scene says little
    about another's (docs/training.md, session 25)."""
    if n <= 0 or base_n <= 0:
        return (math.nan, math.nan)
    p, q = successes / n, base_successes / base_n
    low, high = wilson_interval(successes, n, z)
    base_low, base_high = wilson_interval(base_successes, base_n, z)
    below = math.sqrt((p - low) ** 2 + (base_high - q) ** 2)
    above = math.sqrt((high - p) ** 2 + (q - base_low) ** 2)
    return (p - q - below, p - q + above)


def trace_arrays(dump: dict[str, Any]) -> dict[str, np.ndarray]:
    """The dump's per-tick trace as float arrays; ValueError naming what is missing."""
    trace = dump.get('trace')
    if not isinstance(trace, dict):
        raise ValueError('policy stats dump has no "trace" (is stats_path from an older '
                         'policy_node?)')
    missing = [k for k in ('tick', 'wall', 'state', 'new_chunk', 'x', 'y', 'z') if k not in trace]
    if missing:
        raise ValueError(f'policy stats dump trace lacks {missing}')
    return {k: np.asarray(v, dtype=np.float64) for k, v in trace.items()}


def window_metrics(trace: dict[str, np.ndarray], start: float, end: float) -> dict[str, Any]:
    """Chunking figures of the ticks whose monotonic time lies in [start, end] (one
    episode). An *engagement* runs from the policy's first action after the window start or
    after an operator takeover (paused ticks) to the next takeover. Inside an engagement a
    tick without a ready action is idle (the arm waits on a held target); before its first
    action the node publishes nothing (resuming) and nothing is counted. A boundary step is
    the target's move on a tick that starts a new chunk inside an engagement, compared with
    the median move between consecutive acting ticks inside chunks."""
    wall, state, new_chunk = trace['wall'], trace['state'], trace['new_chunk']
    inside = np.flatnonzero((wall >= start) & (wall <= end))
    result: dict[str, Any] = {'ticks': int(inside.size), 'idle_ticks': 0, 'acting_ticks': 0,
                              'chunks': 0, 'boundary_steps_m': [], 'inner_steps_m': []}
    positions = np.stack([trace['x'], trace['y'], trace['z']], axis=1)
    engaged = False
    for k, i in enumerate(inside):
        was_engaged = engaged and k > 0 and inside[k - 1] == i - 1
        if state[i] == PAUSED:
            engaged = False
            continue
        if state[i] == ACTING:
            engaged = True
            result['acting_ticks'] += 1
        elif engaged:
            result['idle_ticks'] += 1
        if not was_engaged or state[i] != ACTING:
            continue
        step = float(np.linalg.norm(positions[i] - positions[i - 1]))
        if not math.isfinite(step):
            continue
        if new_chunk[i] == 1:
            result['chunks'] += 1
            result['boundary_steps_m'].append(step)
        elif state[i - 1] == ACTING:
            result['inner_steps_m'].append(step)
    return result


def chunking_summary(windows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Totals over episodes: idle ticks, the largest boundary step and the typical step."""
    boundary = [s for w in windows for s in w['boundary_steps_m']]
    inner = [s for w in windows for s in w['inner_steps_m']]
    typical = float(np.median(inner)) if inner else math.nan
    largest = max(boundary) if boundary else math.nan
    ticks = sum(w['ticks'] for w in windows)
    idle = sum(w['idle_ticks'] for w in windows)
    return {
        'ticks': ticks, 'idle_ticks': idle,
        'idle_fraction': idle / max(1, idle + sum(w['acting_ticks'] for w in windows)),
        'chunks': sum(w['chunks'] for w in windows),
        'largest_boundary_step_mm': 1e3 * largest,
        'boundary_step_mm': percentiles(boundary, 1e3),
        'typical_step_mm': 1e3 * typical,
        'largest_over_typical': largest / typical if typical > 0 else math.nan,
    }


def latency_summary(dump: dict[str, Any]) -> dict[str, Any]:
    """obs→target latency, inference time and delay (ms) from the dump's raw samples."""
    samples = dump.get('samples', {})
    return {name: percentiles(samples.get(key, []), 1e3) for name, key in (
        ('obs_to_target_ms', 'obs_to_target_s'), ('inference_ms', 'inference_s'),
        ('delay_ms', 'delay_s'), ('jitter_ms', 'jitter_s'))}


def rate_drop(reference: float, value: float) -> float:
    """value / reference (NaN when the reference is 0): the share of zero-delay success
    a setting keeps."""
    return value / reference if reference > 0 else math.nan

"""Inference-delay estimation and timing statistics for the real-time chunk executors.

The delay of one inference is measured from header stamps: the time its chunk became
available minus the stamp of the observation it was computed from, so it includes the
sensor pipeline as well as the model. The executors use a *high percentile over a sliding
window*, not a running maximum: LeRobot's async client (PR #4223) kept the first, warm-up
inference in a running max forever and then skipped far too many actions. Here the first
`warmup` samples are evicted as soon as enough real ones exist, and any one-off spike leaves
the window after `window` further samples (and with the default p90 over 30 samples a
single spike does not move the estimate at all).
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np


@dataclass(frozen=True)
class DelayEstimatorConfig:
    window: int = 30          # samples kept
    percentile: float = 90.0  # of the window
    warmup: int = 2           # first samples dropped once real ones exist
    initial_s: float = 0.0    # estimate before any sample

    def __post_init__(self) -> None:
        if not isinstance(self.window, int) or not 1 <= self.window <= 10000:
            raise ValueError(f'delay window {self.window!r} must be an int in [1, 10000]')
        if not 0.0 <= float(self.percentile) <= 100.0:
            raise ValueError(f'delay percentile {self.percentile!r} must be in [0, 100]')
        if not isinstance(self.warmup, int) or not 0 <= self.warmup <= 100:
            raise ValueError(f'delay warmup {self.warmup!r} must be an int in [0, 100]')
        if not math.isfinite(self.initial_s) or self.initial_s < 0:
            raise ValueError(f'delay initial_s {self.initial_s!r} must be finite and >= 0')


class DelayEstimator:
    """High percentile of recent inference delays (seconds)."""

    def __init__(self, config: DelayEstimatorConfig | None = None) -> None:
        self.config = config or DelayEstimatorConfig()
        self._warmup: list[float] = []
        self._samples: deque[float] = deque(maxlen=self.config.window)
        self.count = 0

    def add(self, delay_s: float) -> None:
        """Record one measured delay. Negative or non-finite values (clock trouble) raise."""
        delay_s = float(delay_s)
        if not math.isfinite(delay_s) or delay_s < 0:
            raise ValueError(f'delay sample {delay_s!r} must be finite and >= 0')
        self.count += 1
        if self.count <= self.config.warmup:
            self._warmup.append(delay_s)
        else:
            self._warmup.clear()  # evicted as soon as one real sample exists
            self._samples.append(delay_s)

    def estimate(self) -> float:
        """The delay to plan with: the configured percentile of the window; the warm-up
        samples only while nothing else exists; `initial_s` before any sample."""
        values = self._samples or self._warmup
        if not values:
            return self.config.initial_s
        return float(np.percentile(np.fromiter(values, dtype=np.float64),
                                   self.config.percentile))

    def samples(self) -> list[float]:
        """The window the estimate is taken from (the warm-up samples while nothing else)."""
        return list(self._samples or self._warmup)

    def estimate_steps(self, dt: float) -> int:
        """The estimate in whole control ticks (rounded up): actions that will have been
        executed by the time a chunk started now arrives."""
        return int(math.ceil(self.estimate() / dt - 1e-9))

    def reset(self) -> None:
        self._warmup.clear()
        self._samples.clear()
        self.count = 0


def summarize(values: Iterable[float]) -> dict[str, Any]:
    """count, median, p99, max (and mean) of a series — the figures benches and the
    policy node's JSON dump report."""
    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        return {'count': 0, 'median': None, 'p99': None, 'max': None, 'mean': None}
    return {'count': int(array.size), 'median': float(np.median(array)),
            'p99': float(np.percentile(array, 99)), 'max': float(array.max()),
            'mean': float(array.mean())}


class SeriesRecorder:
    """Named bounded series of floats (the most recent `limit` values each), for per-tick
    instrumentation that is summarized on /diagnostics and dumped as JSON on exit.
    Thread-safe: the control thread appends while the diagnostics callback reads."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._series: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def add(self, name: str, value: float) -> None:
        with self._lock:
            series = self._series.get(name)
            if series is None:
                series = self._series[name] = deque(maxlen=self.limit)
            series.append(float(value))

    def values(self, name: str) -> list[float]:
        with self._lock:
            return list(self._series.get(name, ()))

    def last(self, name: str, count: int) -> list[float]:
        return self.values(name)[-count:]

    def names(self) -> list[str]:
        with self._lock:
            return list(self._series)

    def summary(self) -> dict[str, dict[str, Any]]:
        return {name: summarize(self.values(name)) for name in self.names()}

"""ChunkRunner: the control tick never waits for inference; an operator takeover drops the
queue and the chunk in flight, and after release only observations taken after the release
are acted on; injected delay, invalid outputs and stale observations are all visible.

Real threads and a real ONNX Runtime session on a code-built policy; time is a manual clock
so the tests do not depend on how loaded the machine is."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from bc_robot.core.actions import ActionLayout
from bc_robot.core.chunking import ChunkRunner, ExecutorConfig, RunnerConfig, make_executor
from bc_robot.core.delay import DelayEstimator
from bc_robot.core.sync import ObservationHistory
from bc_robot.runtime.onnx_backend import OnnxBackend
from bc_robot.runtime.testing_models import affine_function, make_spec, write_model
from conftest import wait_for

DT = 0.05


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Gated:
    """Wraps a real backend; inference blocks until `release()` (to hold one in flight)."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.calls = []

    def infer(self, inputs):
        self.calls.append({k: np.array(v) for k, v in inputs.items()})
        self.started.set()
        self.gate.wait(10)
        return self.backend.infer(inputs)

    def reset(self):
        self.backend.reset()


@pytest.fixture
def setup(tmp_path):
    started = []

    def _make(mode='async', chunk_length=8, horizon=3, accepts_prefix=False, bias=None,
              inject=0.0, fresh=True, align=0.1):
        spec = make_spec(chunk_length=chunk_length, accepts_prefix=accepts_prefix,
                         control_rate_hz=1 / DT)
        weights, default_bias = affine_function(spec)
        write_model(tmp_path, spec, function='affine', weights=weights,
                    bias=default_bias if bias is None else bias)
        backend = Gated(OnnxBackend(tmp_path, providers='cpu'))
        layout = ActionLayout(spec.action_representation)
        executor = make_executor(ExecutorConfig(mode, chunk_length, horizon, 0), layout,
                                 DelayEstimator(), DT, accepts_prefix)
        history = ObservationHistory(1, DT)
        clock = Clock()
        runner = ChunkRunner(executor, backend, history, clock,
                             RunnerConfig(DT, max_age_s=0.5, fresh_observation=fresh,
                                          inject_delay_s=inject, align_window_s=align))
        started.append((runner, history))
        return runner, backend, history, clock

    yield _make
    for runner, history in started:
        history.close()
        runner.close()


def observe(history, clock, x: float, age: float = 0.0) -> float:
    stamp = clock.now - age
    history.add(stamp, {'state': np.array([x, 0.0, 0.3, 1.0], np.float32)})
    return stamp


def test_tick_never_waits_for_inference(setup):
    runner, backend, history, clock = setup()
    backend.gate.clear()
    assert runner.tick(clock.now).idle          # requests an inference
    observe(history, clock, 0.5, age=-0.001)
    assert backend.started.wait(5)              # inference running, held in flight
    began = time.perf_counter()
    for _ in range(5):
        clock.now += DT
        assert runner.tick(clock.now).idle
    assert time.perf_counter() - began < 0.5    # five ticks while inference is blocked
    backend.gate.set()


def run_until_action(runner, clock, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        clock.now += DT
        out = runner.tick(clock.now)
        if out.action is not None:
            return out
        time.sleep(0.01)
    raise AssertionError('no action within timeout')


def test_first_chunk_is_aligned_to_its_observation_and_its_latency_recorded(setup):
    runner, backend, history, clock = setup()
    runner.tick(clock.now)
    observe(history, clock, 0.5, age=-0.001)
    assert wait_for(lambda: runner._result is not None, 5)
    clock.now += 2 * DT
    out = runner.tick(clock.now)
    # observation 1 ms after tick 0 (0.02 of a period), now tick 2: chunk time 1.98 of
    # position p + (i + 1) * 0.01, between its actions 1 and 2
    assert out.new_chunk and out.action[0] == pytest.approx(0.5 + 2.98 * 0.01, abs=1e-6)
    assert out.latency_s == pytest.approx(2 * DT - 0.001, abs=1e-6)
    assert runner.recorder.values('skipped_actions') == [2]


def test_takeover_drops_the_queue_and_the_chunk_in_flight(setup):
    runner, backend, history, clock = setup()
    runner.tick(clock.now)
    observe(history, clock, 0.40, age=-0.001)
    out = run_until_action(runner, clock)
    assert out.action[0] == pytest.approx(0.40, abs=0.1)
    # the next inference is in flight on a pre-takeover observation...
    backend.gate.clear()
    backend.started.clear()
    while not backend.started.is_set():
        clock.now += DT
        runner.tick(clock.now)
        observe(history, clock, 0.40, age=-0.001)
        time.sleep(0.01)
    runner.pause()                                   # operator presses the pedal
    assert runner.tick(clock.now + DT).paused
    backend.gate.set()                               # the stale chunk lands now
    assert wait_for(lambda: runner.counters['discarded_chunks'] == 1, 5)
    for _ in range(3):
        clock.now += DT
        out = runner.tick(clock.now)
        assert out.paused and out.action is None and out.hold is None
    # the operator moved the arm to x = 0.70; an observation from before release is ignored
    clock.now += DT
    observe(history, clock, 0.55, age=0.001)
    runner.resume(clock.now)
    executed = []
    for _ in range(100):
        clock.now += DT
        out = runner.tick(clock.now)
        if out.action is not None:
            executed.append(out.action[0])
        observe(history, clock, 0.70, age=-0.001)
        time.sleep(0.005)
        if len(executed) > 5:
            break
    assert executed, 'policy never resumed'
    assert all(x > 0.69 for x in executed), executed   # nothing computed from 0.40 or 0.55
    assert not any(abs(c['state'][0, 0] - 0.55) < 1e-6 for c in backend.calls)


def test_injected_delay_is_measured_and_skips_accordingly(setup):
    runner, backend, history, clock = setup(inject=0.2)
    runner.tick(clock.now)
    stamp = observe(history, clock, 0.5, age=-0.001)
    began = time.monotonic()

    def advance():
        clock.now += 0.001
        return runner._result is not None
    assert wait_for(advance, 5)
    assert time.monotonic() - began >= 0.19
    delay = runner._result.delay_s
    assert delay == pytest.approx(clock.now - stamp, abs=0.01)


def test_invalid_policy_output_never_reaches_a_tick(setup):
    spec = make_spec(chunk_length=8)
    _, bias = affine_function(spec)
    bias[5, 1] = np.nan
    runner, backend, history, clock = setup(bias=bias)
    runner.tick(clock.now)
    observe(history, clock, 0.5, age=-0.001)
    assert wait_for(lambda: runner.counters['invalid_chunks'] >= 1, 5)
    assert 'chunk action 5' in runner.last_error
    for _ in range(5):
        clock.now += DT
        assert runner.tick(clock.now).action is None


def test_stale_observation_is_not_inferred_on(setup):
    runner, backend, history, clock = setup(fresh=False)
    observe(history, clock, 0.5, age=3.0)   # e.g. stamps from another clock
    runner.tick(clock.now)
    assert wait_for(lambda: runner.counters['stale_observations'] >= 1, 5)
    assert 'use_sim_time' in runner.last_warning
    assert backend.calls == []


def test_prefix_and_weights_reach_the_model(setup):
    runner, backend, history, clock = setup(mode='rtc', accepts_prefix=True)
    runner.tick(clock.now)
    observe(history, clock, 0.5, age=-0.001)
    run_until_action(runner, clock)
    calls = len(backend.calls)
    while len(backend.calls) == calls:
        clock.now += DT
        runner.tick(clock.now)
        observe(history, clock, 0.5, age=-0.001)
        time.sleep(0.01)
    call = backend.calls[-1]
    assert call['prefix'].shape == (8, 8) and call['prefix_weights'].shape == (8,)
    assert call['prefix_weights'][0] == 1.0 and call['prefix_weights'][-1] == 0.0
    assert np.all(np.diff(call['prefix_weights']) <= 0)


@pytest.mark.parametrize('align, request_tick', [(0.1, 2), (0.0, 4)])
def test_async_requests_early_for_the_frame_whose_first_action_goes_out_soonest(
        setup, align, request_tick):
    # 20 Hz control, chunk 8, next inference due when 3 actions remain (tick 4). Frames at
    # 15 Hz: a request at tick 2 (t = 100.10) gets the frame of 100.149, ready before the
    # tick of 100.15; one at tick 3 or 4 gets 100.2157, which waits until 100.25.
    runner, backend, history, clock = setup(horizon=3, align=align)
    period = 1 / 15
    frames = [100.149 + (k - 5) * period for k in range(7)]
    for stamp in frames[:3]:
        history.add(stamp, {'state': np.array([0.5, 0.0, 0.3, 1.0], np.float32)})
    runner.tick(clock.now)                               # tick 0: first request
    history.add(frames[3], {'state': np.array([0.5, 0.0, 0.3, 1.0], np.float32)})
    assert wait_for(lambda: runner._result is not None, 5)
    requested_at = None
    for tick in range(1, 5):
        clock.now = 100.0 + tick * DT
        if tick == 2:
            history.add(frames[4], {'state': np.array([0.5, 0.0, 0.3, 1.0], np.float32)})
        runner.tick(clock.now)
        if runner._inflight:
            requested_at = tick
            break
    assert requested_at == request_tick
    assert runner.counters['early_requests'] == (1 if align else 0)

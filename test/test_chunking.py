"""Chunk executors pinned tick by tick: which action each tick executes for given chunks and
inference delays, ACT's ensembling weights, the RTC prefix and soft mask, and the flush."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bc_robot.core.actions import ActionLayout
from bc_robot.core.chunking import (ExecutorConfig, chunk_on_ticks, ensemble_weights,
                                    make_executor, resample_chunk, rtc_soft_mask)
from bc_robot.core.delay import DelayEstimator, DelayEstimatorConfig

DT = 0.05
LAYOUT = ActionLayout('ee_pose_quat_gripper')


def action(x: float, y: float = 0.0, z: float = 0.0) -> np.ndarray:
    return np.array([x, y, z, 0.0, 0.0, 0.0, 1.0, 1.0])


def tagged_chunk(origin: int, length: int) -> np.ndarray:
    """Action i of the chunk requested at tick `origin` carries (origin, i) in x, y."""
    return np.array([action(origin, i) for i in range(length)])


def executor(mode: str, length: int = 8, horizon: int = 3, margin: int = 0, accepts_prefix=False,
             **kwargs):
    """An executor; async's registration on the plan is off unless asked for, so the tagged
    chunks below pin the delay alignment alone (registration has tests of its own)."""
    estimator = DelayEstimator(DelayEstimatorConfig(window=10, percentile=90, warmup=0))
    kwargs.setdefault('async_registration', 0.0)
    config = ExecutorConfig(mode, length, horizon, margin, **kwargs)
    return make_executor(config, LAYOUT, estimator, DT, accepts_prefix=accepts_prefix)


def run_ticks(ex, ticks: int, delay: int, make_chunk=None):
    """Deterministic stand-in for the runner: an inference requested at tick k (after its
    step) yields make_chunk(k) (index 0 = tick k), delivered before tick k + delay."""
    make_chunk = make_chunk or (lambda k: tagged_chunk(k, ex.config.chunk_length))
    pending = None
    out = []
    for t in range(ticks):
        if pending is not None and pending[0] == t:
            ex.deliver(pending[2], pending[1], t, delay * DT)
            pending = None
        a = ex.step(t)
        out.append(None if a is None else (int(round(a[0])), int(round(a[1]))))
        if pending is None and ex.wants_inference(t):
            pending = (t + delay, t, make_chunk(t))
    return out


def test_sync_runs_each_chunk_from_index_zero_and_stalls_for_every_inference():
    out = run_ticks(executor('sync', length=4), 12, delay=2)
    assert out == [None, None, (0, 0), (0, 1), (0, 2), (0, 3), None,
                   (5, 0), (5, 1), (5, 2), (5, 3), None]


def test_async_skips_the_actions_whose_time_passed_and_never_idles():
    out = run_ticks(executor('async', length=8, horizon=3), 14, delay=2)
    assert out == [None, None, (0, 2), (0, 3), (0, 4), (0, 5), (4, 2), (4, 3), (4, 4),
                   (4, 5), (8, 2), (8, 3), (8, 4), (8, 5)]


def test_async_idles_only_when_the_delay_exceeds_what_the_chunk_has_left():
    # 8 actions, 5 ticks of delay: after skipping 5 only 3 remain, so 2 ticks idle per round.
    out = run_ticks(executor('async', length=8, horizon=3), 16, delay=5)
    assert out == [None] * 5 + [(0, 5), (0, 6), (0, 7), None, None,
                                (5, 5), (5, 6), (5, 7), None, None, (10, 5)]


def test_async_trigger_grows_with_the_measured_delay():
    # execute_horizon 1 would idle with a 4-tick delay; the estimate (4) + margin (1)
    # moves the trigger to 5 remaining and the stream stays gap-free after the first chunk.
    ex = executor('async', length=10, horizon=1, margin=1)
    out = run_ticks(ex, 30, delay=4)
    assert ex.trigger_remaining() == 5
    assert out[:4] == [None] * 4
    assert None not in out[4:]
    # every tick executes the action planned for it: index = tick - origin
    assert all(out[t][1] == t - out[t][0] for t in range(4, 30))


def test_ensemble_weights_are_acts_exp_minus_m_i_oldest_first():
    assert np.allclose(ensemble_weights(3, 0.5), [1.0, math.exp(-0.5), math.exp(-1.0)])
    ex = executor('ensemble', length=3, horizon=0, ensemble_m=0.5, ensemble_every=1)

    def chunk(k):
        return np.array([action(10.0 * k + i) for i in range(3)])

    pending, values = None, []
    for t in range(6):
        if pending is not None:
            ex.deliver(pending[1], pending[0], t, DT)
            pending = None
        a = ex.step(t)
        values.append(None if a is None else a[0])
        if ex.wants_inference(t):
            pending = (t, chunk(t))
    # tick 3 is predicted by the chunks from ticks 1 (index 2) and 2 (index 1), oldest first
    w = ensemble_weights(2, 0.5)
    assert values[3] == pytest.approx((w[0] * 12.0 + w[1] * 21.0) / w.sum())
    assert values[0] is None and values[1] == pytest.approx(1.0)


def test_ensemble_queries_every_k_ticks():
    ex = executor('ensemble', length=8, horizon=0, ensemble_every=3)
    requests = []
    for t in range(10):
        if t == 1:
            ex.deliver(tagged_chunk(0, 8), 0, 1, DT)
        ex.step(t)
        if ex.wants_inference(t):
            requests.append(t)
            if t > 0:
                ex.deliver(tagged_chunk(t, 8), t, t, DT)
    assert requests == [0, 3, 6, 9]


def test_ensemble_averages_quaternions_on_the_same_hemisphere():
    ex = executor('ensemble', length=2, horizon=0, ensemble_m=0.0)
    q = np.array([0.0, 0.0, math.sin(0.1), math.cos(0.1)])
    a = np.concatenate([[0.4, 0, 0.3], q, [1.0]])
    b = np.concatenate([[0.4, 0, 0.3], -q, [1.0]])  # the same rotation, other sign
    ex.deliver(np.array([a, a]), 0, 0, None)
    ex.deliver(np.array([b, b]), 0, 0, None)
    out = ex.step(0)
    pose, _ = LAYOUT.to_target(out)
    assert np.allclose(abs(pose.orientation @ q), 1.0)


def test_rtc_soft_mask_follows_black_galliker_levine():
    # d = 2 committed, overlap 6 of 8: 1, 1, then c(e^c - 1)/(e - 1) with c = (6 - i)/5, then 0
    w = rtc_soft_mask(8, committed=2, overlap=6)
    c = (6 - np.arange(2, 6)) / 5.0
    assert np.allclose(w[:2], 1.0)
    assert np.allclose(w[2:6], c * (np.exp(c) - 1) / (math.e - 1))
    assert np.allclose(w[6:], 0.0)
    assert np.all(np.diff(w) <= 0)
    assert np.allclose(rtc_soft_mask(4, committed=6, overlap=3), [1, 1, 1, 0])
    assert np.allclose(rtc_soft_mask(4, committed=0, overlap=0), 0.0)


def test_rtc_hands_the_committed_actions_and_the_soft_mask_to_the_model():
    ex = executor('rtc', length=8, horizon=3, accepts_prefix=True)
    for _ in range(3):
        ex.estimator.add(2 * DT)  # measured delay: 2 ticks
    plan = tagged_chunk(0, 8)
    ex.deliver(plan, 0, 2, 2 * DT)
    for t in range(2, 5):
        ex.step(t)
    assert ex.wants_inference(4)
    prefix, weights = ex.prefix_for(4)
    assert prefix.dtype == np.float32 and prefix.shape == (8, 8)
    assert np.array_equal(prefix[:4], plan[4:8].astype(np.float32))  # overlap: ticks 4..7
    assert np.all(prefix[4:] == 0)
    # committed: the 2-tick delay plus the tick on which the new chunk is first used
    assert np.allclose(weights, rtc_soft_mask(8, committed=3, overlap=4))
    assert weights[0] == weights[1] == weights[2] == 1.0 and 0 < weights[3] < 1
    assert weights[4] == 0.0


def moving(stamp_ticks: float, length: int = 8) -> np.ndarray:
    """A chunk of a motion of 0.01 m per tick (x = 0.01 × time in ticks), from an
    observation stamped `stamp_ticks` periods after tick 0: its action i is for stamp + i."""
    return np.array([action(0.01 * (stamp_ticks + i)) for i in range(length)])


def test_a_chunk_is_evaluated_at_the_ticks_not_at_its_stamp():
    on_ticks = chunk_on_ticks(moving(3.25), 0.25, LAYOUT)
    # tick 3 precedes the stamp and keeps action 0; tick 3 + i is chunk time i - 0.25
    assert on_ticks[0, 0] == pytest.approx(0.0325)
    assert np.allclose(on_ticks[1:, 0], 0.01 * np.arange(4, 11))
    assert np.allclose(np.linalg.norm(on_ticks[:, 3:7], axis=1), 1.0)
    assert np.array_equal(chunk_on_ticks(moving(3.0), 0.0, LAYOUT), moving(3.0))  # on a tick
    with pytest.raises(ValueError, match='fraction'):
        LAYOUT.interpolate(action(0), action(1), 1.5)


@pytest.mark.parametrize('mode', ['async', 'rtc', 'ensemble'])
def test_chunks_that_agree_join_without_a_step_whatever_their_stamps_phase(mode):
    """Two chunks of one motion from stamps 0.4 and 0.6 of a period after their ticks:
    rounding the stamps to ticks made the step at the boundary 0.8 or 1.2 of the typical."""
    ex = executor(mode, length=8, horizon=3)
    ex.deliver(moving(0.4), 0, 1, DT, fraction=0.4)
    got = [ex.step(t)[0] for t in range(1, 5)]
    ex.deliver(moving(3.6), 3, 5, DT, fraction=0.6)
    got += [ex.step(t)[0] for t in range(5, 9)]
    assert np.allclose(np.diff(got), 0.01)


def test_resampling_a_chunk_generalises_placing_it_on_the_ticks():
    chunk = moving(3.25)
    assert np.allclose(resample_chunk(chunk, -0.25, LAYOUT), chunk_on_ticks(chunk, 0.25, LAYOUT))
    later = resample_chunk(chunk, 1.5, LAYOUT)   # tick i executes chunk time i + 1.5
    assert np.allclose(later[:6, 0], 0.01 * (3.25 + np.arange(6) + 1.5))
    assert later[-1, 0] == pytest.approx(chunk[-1, 0])   # held at the end, never extrapolated
    assert np.allclose(np.linalg.norm(later[:, 3:7], axis=1), 1.0)


def test_async_registers_a_chunk_whose_input_lagged_along_the_path():
    """The plan moves 0.01 m a tick; the new chunk, stamped at tick 3, was computed from a
    measurement that lagged 0.3 of a tick more than the plan's: placed by its stamp it steps
    0.7 of the typical step at the switch, registered it joins the plan exactly."""
    ex = executor('async', length=8, horizon=3, async_registration=0.5)
    ex.deliver(moving(0.0), 0, 1, DT)
    got = [ex.step(t)[0] for t in range(1, 5)]
    ex.deliver(moving(2.7), 3, 5, 2 * DT)
    assert ex.last_shift == pytest.approx(0.3)
    got += [ex.step(t)[0] for t in range(5, 9)]
    assert np.allclose(np.diff(got), 0.01)
    unregistered = executor('async', length=8, horizon=3)
    unregistered.deliver(moving(0.0), 0, 1, DT)
    unregistered.step(4)
    unregistered.deliver(moving(2.7), 3, 5, 2 * DT)
    assert unregistered.step(5)[0] - 0.04 == pytest.approx(0.007)


def test_async_registration_is_bounded_and_never_shifts_across_the_path():
    ex = executor('async', length=8, horizon=3, async_registration=0.5)
    ex.deliver(moving(0.0), 0, 1, DT)
    ex.deliver(moving(2.0), 3, 5, 2 * DT)            # a whole tick behind: shifted 0.5 only
    assert ex.last_shift == pytest.approx(0.5)
    aside = np.array([action(0.01 * (3 + i), 0.005) for i in range(8)])   # 5 mm to the side
    ex.deliver(moving(0.0), 0, 1, DT)
    ex.deliver(aside, 3, 5, 2 * DT)
    assert ex.last_shift == 0.0
    still = np.array([action(0.2)] * 8)              # a plan at rest: nothing to register on
    ex.deliver(still, 0, 1, DT)
    ex.deliver(still + np.r_[0.001, np.zeros(7)], 3, 5, 2 * DT)
    assert ex.last_shift == 0.0
    rtc = executor('rtc', length=8, horizon=3, async_registration=0.5)   # rtc has its prefix
    rtc.deliver(moving(0.0), 0, 1, DT)
    rtc.deliver(moving(2.7), 3, 5, 2 * DT)
    assert rtc.last_shift == 0.0


def test_sync_runs_its_chunk_as_it_came_whatever_the_stamp():
    ex = executor('sync', length=4)
    ex.deliver(moving(0.4, 4), 0, 2, 2 * DT, fraction=0.4)
    assert [round(ex.step(t)[0], 6) for t in range(2, 6)] == [0.004, 0.014, 0.024, 0.034]


def test_rtc_prefix_is_the_plan_at_the_policy_s_action_times():
    ex = executor('rtc', length=8, horizon=3, accepts_prefix=True)
    ex.deliver(moving(0.0), 0, 1, DT)            # plan: ticks 0..7, x = 0.01 × tick
    prefix, weights = ex.prefix_for(4, 0.5)      # stamp half a period after tick 4
    # the new chunk's action i is for tick 4.5 + i: the plan there, while it lasts (4.5..6.5)
    assert np.allclose(prefix[:3, 0], [0.045, 0.055, 0.065])
    assert np.all(prefix[3:] == 0) and np.all(weights[3:] == 0)


def test_rtc_without_prefix_input_blends_over_the_overlap():
    ex = executor('rtc', length=8, horizon=3, accepts_prefix=False)
    assert ex.prefix_for(0) is None
    old = np.array([action(0.40 + 0.01 * i) for i in range(8)])
    ex.deliver(old, 0, 0, 0.0)
    for t in range(0, 5):
        ex.step(t)
    new = np.array([action(0.50 + 0.01 * i) for i in range(8)])  # 0.1 m off the old plan
    ex.deliver(new, 3, 5, 2 * DT)   # started at tick 3, arrives before tick 5
    got = [ex.step(t)[0] for t in range(5, 11)]
    w = rtc_soft_mask(8, committed=2, overlap=5)  # old plan covers ticks 3..7
    want = [w[i] * old[3 + i, 0] + (1 - w[i]) * new[i, 0] if 3 + i < 8 else new[i, 0]
            for i in range(2, 8)]
    assert np.allclose(got, want)
    # the step at the boundary is a fraction of the 0.1 m disagreement, not all of it
    assert got[0] - old[4, 0] < 0.1 * (1 - w[2]) + 0.011


def test_stale_chunk_is_dropped_and_asked_for_again():
    ex = executor('async', length=4, horizon=1)
    ex.deliver(tagged_chunk(0, 4), 0, 9, 0.45)  # covers ticks 0..3, arrives at tick 9
    assert ex.step(9) is None
    assert ex.wants_inference(9)


@pytest.mark.parametrize('mode', ['sync', 'ensemble', 'async', 'rtc'])
def test_flush_drops_every_planned_action(mode):
    ex = executor(mode, length=8, horizon=3)
    ex.deliver(tagged_chunk(0, 8), 0, 0, DT)
    assert ex.step(0) is not None
    ex.flush()
    assert all(ex.step(t) is None for t in range(1, 10))
    assert ex.queue_depth(10) == 0
    assert ex.wants_inference(10)


def test_planned_actions_start_at_the_current_tick():
    ex = executor('async', length=6, horizon=2)
    chunk = tagged_chunk(0, 6)
    ex.deliver(chunk, 0, 2, 2 * DT)
    ex.step(2)
    assert np.array_equal(ex.planned(2), chunk[2:])
    assert ex.queue_depth(2) == 3


@pytest.mark.parametrize('kwargs, match', [
    (dict(mode='fast', chunk_length=8), 'executor'),
    (dict(mode='async', chunk_length=8, execute_horizon=8), 'execute_horizon'),
    (dict(mode='ensemble', chunk_length=8, execute_horizon=2, ensemble_every=9), 'ensemble_every'),
    (dict(mode='ensemble', chunk_length=8, execute_horizon=2, ensemble_m=float('nan')), 'ensemble_m'),
    (dict(mode='async', chunk_length=8, execute_horizon=2, async_registration=3.0), 'async_registration 3.0'),
    (dict(mode='async', chunk_length=8, execute_horizon=2, async_registration=float('nan')), 'async_registration'),
])
def test_config_refuses_bad_values_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExecutorConfig(**kwargs)


def test_async_trigger_counts_the_wait_for_a_fresh_observation():
    # stamp → chunk: 2 ticks, but request → chunk (waiting for a frame first): 6 ticks
    ex = executor('async', length=20, horizon=2, margin=1)
    ex.deliver(tagged_chunk(0, 20), 0, 0, delay_s=2 * DT, turnaround_s=6 * DT)
    assert ex.trigger_remaining() == 7
    assert not ex.wants_inference(11) and ex.wants_inference(12)   # 7 actions left after 12

"""Period estimation and the interpolated desired pose."""
from __future__ import annotations


import numpy as np
import pytest

from bc_robot.core.interpolation import PeriodBounds, PeriodEstimator, TargetInterpolator
from bc_robot.core.pose import Pose, quat_angle, rotvec_to_quat

DOWN = np.array([1.0, 0.0, 0.0, 0.0])


def test_period_from_stamps_ignores_arrival_jitter():
    rng = np.random.default_rng(0)
    estimator = PeriodEstimator(PeriodBounds(0.001, 0.2, 0.05))
    for i in range(30):
        stamp = 100.0 + i * 0.04  # 25 Hz publisher
        arrival = stamp + rng.uniform(0.0, 0.03)  # bursty transport
        estimator.update(arrival, stamp)
    assert estimator.period == pytest.approx(0.04, abs=1e-9)


def test_period_from_arrivals_when_stamps_are_empty():
    estimator = PeriodEstimator(PeriodBounds(0.001, 0.2, 0.05))
    arrivals = [0.0, 0.1, 0.2, 0.3, 0.31, 0.4, 0.5, 0.6, 0.95, 1.0]  # one burst, one gap
    for t in arrivals:
        estimator.update(t, None)
    assert estimator.period == pytest.approx(0.1)


def test_period_falls_back_when_stamps_jump_and_recovers():
    estimator = PeriodEstimator(PeriodBounds(0.001, 0.2, 0.05), window=5)
    for i in range(6):
        estimator.update(i * 0.02, 10.0 + i * 0.05)  # stamps say 20 Hz, arrivals 50 Hz
    assert estimator.period == pytest.approx(0.05)
    estimator.update(0.14, 3.0)  # the stamp went backwards (a sim reset)
    assert estimator.period == pytest.approx(0.02)  # arrivals until stamps behave again
    for i in range(1, 6):
        estimator.update(0.14 + i * 0.02, 3.0 + i * 0.05)
    assert estimator.period == pytest.approx(0.05)


def test_period_initial_and_bounds():
    estimator = PeriodEstimator(PeriodBounds(0.01, 0.2, 0.05))
    assert estimator.period == 0.05
    estimator.update(0.0, 1.0)
    estimator.update(0.0001, 1.0001)
    assert estimator.period == 0.01
    estimator.reset()
    estimator.update(0.0, None)
    estimator.update(5.0, None)
    assert estimator.period == 0.2


@pytest.mark.parametrize('kwargs', [{'minimum': 0.0}, {'maximum': float('nan')},
                                    {'minimum': 0.3, 'maximum': 0.2}])
def test_period_bounds_validate(kwargs):
    with pytest.raises(ValueError):
        PeriodBounds(**kwargs)


def test_interpolator_linear_and_slerp_over_period():
    interp = TargetInterpolator()
    a = Pose([0.4, 0.0, 0.3], [0.0, 0.0, 0.0, 1.0])
    b = Pose([0.5, 0.1, 0.3], rotvec_to_quat(np.array([0.0, 0.0, 0.4])))
    interp.restart(a, 0.0)
    interp.push(b, 0.0, 0.05)
    mid = interp.sample(0.025)
    np.testing.assert_allclose(mid.position, [0.45, 0.05, 0.3])
    assert quat_angle(mid.orientation, a.orientation) == pytest.approx(0.2)
    assert interp.sample(0.05) is b
    assert interp.sample(1.0) is b  # never extrapolates past the waypoint
    assert interp.target is b


def test_interpolator_new_target_starts_from_current_desired():
    interp = TargetInterpolator()
    a = Pose([0.4, 0.0, 0.3], DOWN)
    interp.restart(a, 0.0)
    interp.push(Pose([0.5, 0.0, 0.3], DOWN), 0.0, 0.1)
    interp.push(Pose([0.5, 0.0, 0.4], DOWN), 0.05, 0.1)  # arrives halfway
    np.testing.assert_allclose(interp.sample(0.05).position, [0.45, 0.0, 0.3])
    np.testing.assert_allclose(interp.sample(0.10).position, [0.475, 0.0, 0.35])


def test_interpolator_smooth_at_constant_velocity():
    """A 20 Hz ramp interpolated at 100 Hz: equal steps, no stall or jump at waypoints."""
    interp = TargetInterpolator()
    interp.restart(Pose([0.4, 0.0, 0.3], DOWN), 0.0)
    steps = []
    previous = interp.sample(0.0).position
    for tick in range(1, 200):
        t = tick * 0.01
        if tick % 5 == 0:
            interp.push(Pose([0.4 + 0.001 * tick, 0.0, 0.3], DOWN), t, 0.05)
        p = interp.sample(t).position
        steps.append(p[0] - previous[0])
        previous = p
    steps = np.array(steps[10:])
    np.testing.assert_allclose(steps, 0.001, atol=1e-9)


def test_interpolator_zero_duration_and_empty():
    interp = TargetInterpolator()
    with pytest.raises(ValueError, match='no target'):
        interp.sample(0.0)
    b = Pose([0.5, 0.0, 0.3], DOWN)
    interp.push(b, 0.0, 0.0)
    assert interp.sample(0.0) is b
    interp.clear()
    assert not interp.active and interp.target is None

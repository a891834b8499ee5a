"""Every gate rule on its own, with the values that break naive code: signalling NaN, ±Inf,
1e308, -0.0, a zero quaternion, a target a metre away."""
from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from bc_robot.core.gate import (CLAMP_ANGULAR_STEP, CLAMP_GRIPPER, CLAMP_LINEAR_STEP,
                                CLAMP_ORIENTATION_ERROR, CLAMP_POSITION_ERROR, CLAMP_WORKSPACE,
                                NORMALIZED_QUATERNION, REJECT_FRAME, REJECT_GRIPPER_NON_FINITE,
                                REJECT_NON_FINITE, REJECT_QUATERNION, Gate, GateLimits,
                                GateRejection, check_finite, check_frame, clamp_gripper,
                                clamp_to_box, limit_rotation, limit_translation,
                                normalize_quaternion)
from bc_robot.core.pose import Pose, quat_angle, rotvec_to_quat

DOWN = np.array([1.0, 0.0, 0.0, 0.0])  # gripper pointing down (home orientation)
HOME = Pose(np.array([0.45, 0.0, 0.30]), DOWN)
LO, HI = (0.20, -0.40, 0.0), (0.80, 0.40, 0.60)

# A signalling NaN: exponent all ones, quiet bit clear, payload non-zero. Built from bytes
# because float('nan') is always quiet.
SNAN = struct.unpack('<d', struct.pack('<Q', 0x7FF0000000000001))[0]
SNAN_F32 = float(np.frombuffer(struct.pack('<I', 0x7F800001), dtype=np.float32)[0])


def test_signalling_nan_really_is_signalling():
    bits = struct.unpack('<Q', struct.pack('<d', SNAN))[0]
    assert math.isnan(SNAN) and not bits & (1 << 51)  # quiet bit clear
    assert math.isnan(SNAN_F32)


@pytest.mark.parametrize('bad', [float('nan'), SNAN, SNAN_F32, float('inf'), -float('inf')])
@pytest.mark.parametrize('index', range(7))
def test_check_finite_rejects_any_non_finite_element(bad, index):
    vector = np.concatenate([HOME.position, HOME.orientation])
    vector[index] = bad
    with pytest.raises(GateRejection) as info:
        check_finite(vector[:3], vector[3:])
    assert info.value.reason == REJECT_NON_FINITE
    assert isinstance(info.value, ValueError)
    assert 'nan' in str(info.value).lower() or 'inf' in str(info.value).lower()


def test_check_finite_accepts_huge_and_negative_zero():
    check_finite(np.array([1e308, -0.0, -1e308]), np.array([-0.0, 0.0, 0.0, 1.0]))


def test_check_frame():
    check_frame('base', 'base')
    check_frame('', 'base')  # unset frame means the base frame
    with pytest.raises(GateRejection) as info:
        check_frame('camera', 'base')
    assert info.value.reason == REJECT_FRAME and "'camera'" in str(info.value)


@pytest.mark.parametrize('q', [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0], [0.5, 0.0, 0.0, 0.5],
                               [1e308, 0.0, 0.0, 0.0], [1e308, 1e308, 1e308, 1e308],
                               [1e-308, 0.0, 0.0, 0.0]])
def test_quaternion_far_from_unit_is_rejected(q):
    with pytest.raises(GateRejection) as info:
        normalize_quaternion(np.array(q), 1e-2)
    assert info.value.reason == REJECT_QUATERNION
    assert 'norm' in str(info.value)


@pytest.mark.parametrize('q', [[0.0, 0.0, 0.0, float('nan')], [SNAN, 0.0, 0.0, 1.0]])
def test_quaternion_non_finite_is_rejected(q):
    with pytest.raises(GateRejection) as info:
        normalize_quaternion(np.array(q), 1e-2)
    assert info.value.reason == REJECT_NON_FINITE


def test_small_quaternion_deviation_is_normalized_and_canonical():
    q, normalized = normalize_quaternion(np.array([0.0, 0.0, 0.0, -1.005]), 1e-2)
    assert normalized
    np.testing.assert_allclose(q, [0.0, 0.0, 0.0, 1.0])  # w >= 0
    assert all(math.copysign(1.0, v) == 1.0 for v in q)  # no -0.0 left behind
    q, normalized = normalize_quaternion(DOWN, 1e-2)
    assert not normalized
    np.testing.assert_array_equal(q, DOWN)


def test_negative_zero_quaternion_components_are_fine():
    q, _ = normalize_quaternion(np.array([-0.0, -0.0, -0.0, 1.0]), 1e-2)
    np.testing.assert_array_equal(q, [0.0, 0.0, 0.0, 1.0])


@pytest.mark.parametrize('position, expected, outside', [
    ([0.45, 0.0, 0.3], [0.45, 0.0, 0.3], False),
    ([1e308, -1e308, 1e308], [0.8, -0.4, 0.6], True),
    ([0.45, 0.0, -0.0], [0.45, 0.0, 0.0], False),
    ([0.0, 0.0, 0.3], [0.2, 0.0, 0.3], True),
    ([0.45, 0.41, 0.3], [0.45, 0.4, 0.3], True),
])
def test_clamp_to_box(position, expected, outside):
    clamped, was_outside = clamp_to_box(np.array(position), LO, HI)
    np.testing.assert_array_equal(clamped, expected)
    assert was_outside is outside
    assert all(math.copysign(1.0, v) == 1.0 for v in clamped if v == 0.0)  # no -0.0


def test_limit_translation_target_one_metre_away():
    origin = HOME.position
    target = origin + np.array([1.0, 0.0, 0.0])
    limited, clamped = limit_translation(origin, target, 0.1)
    assert clamped
    np.testing.assert_allclose(limited, origin + [0.1, 0.0, 0.0])
    limited, clamped = limit_translation(origin, origin + [0.03, 0.04, 0.0], 0.1)
    assert not clamped
    np.testing.assert_allclose(limited, origin + [0.03, 0.04, 0.0])


def test_limit_translation_no_overflow_at_1e308():
    limited, clamped = limit_translation(np.zeros(3), np.array([1e308, 1e308, 1e308]), 0.1)
    assert clamped and np.all(np.isfinite(limited))
    assert np.linalg.norm(limited) == pytest.approx(0.1)


def test_limit_translation_no_overflow_between_opposite_extremes():
    origin, target = np.full(3, -1.7e308), np.full(3, 1.7e308)
    limited, clamped = limit_translation(origin, target, 1e300)
    assert clamped and np.all(np.isfinite(limited))
    # (resolution of doubles near 1.7e308 is ~1e292, hence the tolerance)
    np.testing.assert_allclose(limited - origin, np.full(3, 1e300 / math.sqrt(3)), rtol=1e-6)


def test_limit_rotation():
    half_turn = rotvec_to_quat(np.array([0.0, 0.0, math.pi * 0.9]))
    limited, clamped = limit_rotation(np.array([0.0, 0.0, 0.0, 1.0]), half_turn, 0.5)
    assert clamped
    assert quat_angle(limited, [0.0, 0.0, 0.0, 1.0]) == pytest.approx(0.5)
    assert quat_angle(limited, half_turn) == pytest.approx(math.pi * 0.9 - 0.5)
    small = rotvec_to_quat(np.array([0.1, 0.0, 0.0]))
    limited, clamped = limit_rotation(np.array([0.0, 0.0, 0.0, 1.0]), small, 0.5)
    assert not clamped
    np.testing.assert_allclose(limited, small)


@pytest.mark.parametrize('value, expected, changed', [
    (0.5, 0.5, False), (1.0, 1.0, False), (0.0, 0.0, False), (-0.0, 0.0, False),
    (1e308, 1.0, True), (-1e308, 0.0, True), (1.2, 1.0, True), (-0.1, 0.0, True),
])
def test_clamp_gripper(value, expected, changed):
    clamped, was_changed = clamp_gripper(value)
    assert clamped == expected and was_changed is changed
    assert math.copysign(1.0, clamped) == 1.0  # never a negative zero on the wire


@pytest.mark.parametrize('bad', [float('nan'), SNAN, float('inf'), -float('inf')])
def test_clamp_gripper_rejects_non_finite(bad):
    with pytest.raises(GateRejection) as info:
        clamp_gripper(bad)
    assert info.value.reason == REJECT_GRIPPER_NON_FINITE


@pytest.mark.parametrize('kwargs, word', [
    ({'workspace_min': (0.8, -0.4, 0.0)}, 'below'),
    ({'workspace_min': (0.2, float('nan'), 0.0)}, 'finite'),
    ({'workspace_max': (0.8, 0.4)}, '3 finite'),
    ({'max_linear_speed': 0.0}, 'max_linear_speed'),
    ({'max_angular_speed': float('inf')}, 'max_angular_speed'),
    ({'max_position_error': -0.1}, 'max_position_error'),
    ({'quat_norm_tolerance': 1.0}, 'zero quaternion'),
    ({'output_rate_hz': float('nan')}, 'output_rate_hz'),
])
def test_limits_validate(kwargs, word):
    with pytest.raises(ValueError, match=word):
        GateLimits(**kwargs)


def test_limits_step_sizes():
    limits = GateLimits(max_linear_speed=0.5, max_angular_speed=1.5, output_rate_hz=100.0)
    assert limits.max_step_translation == pytest.approx(0.005)
    assert limits.max_step_rotation == pytest.approx(0.015)


# --- the composed gate -------------------------------------------------------------------

def test_admit_counts_rejections_and_keeps_nothing():
    gate = Gate(GateLimits())
    for position, orientation, frame in [
            ([SNAN, 0.0, 0.3], DOWN, 'base'), ([0.45, 0.0, 0.3], [0, 0, 0, 0], 'base'),
            ([0.45, 0.0, 0.3], DOWN, 'world')]:
        with pytest.raises(GateRejection):
            gate.admit(np.array(position), np.array(orientation), frame)
    counts = gate.counts()
    assert counts[f'rejected.{REJECT_NON_FINITE}'] == 1
    assert counts[f'rejected.{REJECT_QUATERNION}'] == 1
    assert counts[f'rejected.{REJECT_FRAME}'] == 1


def test_admit_clamps_to_box_and_normalizes():
    gate = Gate(GateLimits())
    pose = gate.admit(np.array([1e308, -0.0, 0.3]), np.array([1.004, 0.0, 0.0, 0.0]), 'base')
    np.testing.assert_array_equal(pose.position, [0.8, 0.0, 0.3])
    np.testing.assert_allclose(pose.orientation, DOWN)
    assert gate.clamped[CLAMP_WORKSPACE] == 1
    assert gate.clamped[NORMALIZED_QUATERNION] == 1


def test_admit_gripper_counts():
    gate = Gate(GateLimits())
    assert gate.admit_gripper(2.0) == 1.0
    with pytest.raises(GateRejection):
        gate.admit_gripper(SNAN)
    assert gate.clamped[CLAMP_GRIPPER] == 1
    assert gate.rejected[REJECT_GRIPPER_NON_FINITE] == 1


def test_shape_target_one_metre_away_moves_one_step_toward_it():
    limits = GateLimits()
    gate = Gate(limits)
    far = Pose(HOME.position + [1.0, 0.0, 0.0], DOWN)  # outside the box too
    out = gate.shape(HOME, far, HOME)
    assert np.linalg.norm(out.position - HOME.position) == pytest.approx(
        limits.max_step_translation)
    assert out.position[0] > HOME.position[0]
    assert gate.clamped[CLAMP_POSITION_ERROR] == 1 and gate.clamped[CLAMP_LINEAR_STEP] == 1


def test_shape_keeps_target_within_error_of_measured_and_in_box():
    limits = GateLimits()
    gate = Gate(limits)
    measured = Pose([0.75, 0.0, 0.3], DOWN)
    desired = Pose([0.79, 0.0, 0.3], DOWN)
    previous = desired
    # Without a previous output (first tick) only the error and box rules apply.
    out = gate.shape(None, Pose([5.0, 0.0, 0.3], DOWN), measured)
    np.testing.assert_allclose(out.position, [0.8, 0.0, 0.3])  # box wins over the 0.85 ball
    assert gate.clamped[CLAMP_WORKSPACE] == 1
    out = gate.shape(previous, desired, measured)
    np.testing.assert_allclose(out.position, desired.position)


def test_shape_limits_rotation_error_and_step():
    limits = GateLimits(max_angular_speed=1.5, max_orientation_error=0.5)
    gate = Gate(limits)
    flipped = Pose(HOME.position, rotvec_to_quat(np.array([0.0, 0.0, 3.0])))
    out = gate.shape(HOME, flipped, HOME)
    assert quat_angle(out.orientation, HOME.orientation) == pytest.approx(
        limits.max_step_rotation)
    assert gate.clamped[CLAMP_ORIENTATION_ERROR] == 1
    assert gate.clamped[CLAMP_ANGULAR_STEP] == 1
    out = gate.shape(None, flipped, HOME)
    assert quat_angle(out.orientation, HOME.orientation) == pytest.approx(0.5)


def test_shape_sequence_never_steps_more_than_limit():
    """Random hostile desired poses: every output step stays within the per-tick limit."""
    rng = np.random.default_rng(4)
    limits = GateLimits()
    gate = Gate(limits)
    previous, measured = HOME, HOME
    for _ in range(500):
        desired = Pose(rng.uniform(-2, 2, 3), rotvec_to_quat(rng.uniform(-3, 3, 3)))
        out = gate.shape(previous, desired, measured)
        step = np.linalg.norm(out.position - previous.position)
        assert step <= limits.max_step_translation + 1e-12
        assert quat_angle(out.orientation, previous.orientation) <= limits.max_step_rotation + 1e-9
        assert np.all(out.position >= np.array(LO) - 1e-12)
        assert np.all(out.position <= np.array(HI) + 1e-12)
        assert np.linalg.norm(out.position - measured.position) <= limits.max_position_error + 1e-9
        previous = out
        measured = Pose(0.5 * (measured.position + out.position), out.orientation)

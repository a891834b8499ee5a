"""core/pose.py: conversions round-trip, slerp/interpolation behave, bad quaternions refused."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bc_robot.core import pose as P

RNG = np.random.default_rng(11)


def rodrigues(axis, angle) -> np.ndarray:
    """Rotation matrix from axis-angle, written independently of the code under test."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def axis_angle_quat(axis, angle) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    return np.concatenate([axis * math.sin(angle / 2), [math.cos(angle / 2)]])


def random_quats(n: int) -> np.ndarray:
    q = RNG.normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def same_rotation(a, b, atol=1e-9) -> bool:
    return abs(abs(float(np.dot(a, b))) - 1.0) < atol


# --- conversions -------------------------------------------------------------------------

def test_quat_to_matrix_matches_rodrigues():
    for axis, angle in [((1, 0, 0), 0.3), ((0, 1, 0), -1.2), ((1, 2, 3), 2.9),
                        ((0, 0, 1), math.pi)]:
        np.testing.assert_allclose(P.quat_to_matrix(axis_angle_quat(axis, angle)),
                                   rodrigues(axis, angle), atol=1e-12)


@pytest.mark.parametrize('axis,angle', [
    ((1, 0, 0), 0.0),            # trace branch
    ((0.2, -0.3, 1), 1.0),       # trace branch
    ((1, 0, 0), math.pi),        # m00 largest
    ((0, 1, 0), math.pi),        # m11 largest
    ((0, 0, 1), math.pi),        # m22 largest
    ((1, 1, 0), 3.0),
    ((0, 1, 1), 3.1),
])
def test_matrix_to_quat_every_branch(axis, angle):
    q = P.matrix_to_quat(rodrigues(axis, angle))
    assert q[3] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
    assert same_rotation(q, axis_angle_quat(axis, angle))


def test_quat_matrix_round_trip_random():
    for q in random_quats(200):
        back = P.matrix_to_quat(P.quat_to_matrix(q))
        np.testing.assert_allclose(back, P.quat_canonical(q), atol=1e-10)


def test_rot6d_round_trip_and_gram_schmidt():
    for q in random_quats(100):
        r6 = P.quat_to_rot6d(q)
        assert r6.shape == (6,)
        np.testing.assert_allclose(P.rot6d_to_quat(r6), P.quat_canonical(q), atol=1e-10)
    # A network's raw output: not orthonormal, still a proper rotation after Gram-Schmidt.
    m = P.rot6d_to_matrix([2.0, 0.1, 0.0, 0.3, 1.5, 0.2])
    np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(m) == pytest.approx(1.0)
    np.testing.assert_allclose(m[:, 0], np.array([2.0, 0.1, 0.0]) / np.hypot(2.0, 0.1))


def test_rot6d_errors_name_the_values():
    with pytest.raises(ValueError, match=r'first column is zero: \[0.0, 0.0, 0.0, 0.0, 1.0, 0.0\]'):
        P.rot6d_to_matrix([0, 0, 0, 0, 1, 0])
    with pytest.raises(ValueError, match=r'columns are parallel: \[1.0, 0.0, 0.0, 2.0, 0.0, 0.0\]'):
        P.rot6d_to_matrix([1, 0, 0, 2, 0, 0])
    with pytest.raises(ValueError, match=r'6 finite values, got \[1.0, nan'):
        P.rot6d_to_matrix([1, np.nan, 0, 0, 1, 0])
    with pytest.raises(ValueError, match=r'6 finite values, got \[1.0, 0.0, 0.0\]'):
        P.rot6d_to_matrix([1, 0, 0])


def test_matrix_to_quat_refuses_non_rotations():
    with pytest.raises(ValueError, match=r'not a rotation.*\[\[2.0, 0.0, 0.0\]'):
        P.matrix_to_quat(np.eye(3) * 2)
    with pytest.raises(ValueError, match=r'not a rotation'):
        P.matrix_to_quat(np.diag([1.0, 1.0, -1.0]))  # a mirror
    with pytest.raises(ValueError, match=r'finite 3x3 array, got \[\[nan'):
        P.matrix_to_quat(np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match=r'finite 3x3'):
        P.matrix_to_quat(np.eye(4))
    # float32 round-off is not a fault
    q = P.matrix_to_quat(rodrigues((1, 2, 3), 0.7).astype(np.float32))
    assert same_rotation(q, axis_angle_quat((1, 2, 3), 0.7), atol=1e-6)


def test_wxyz_crossing_for_mujoco():
    q = np.array([0.1, 0.2, 0.3, 0.9])
    np.testing.assert_array_equal(P.quat_to_wxyz(q), [0.9, 0.1, 0.2, 0.3])
    np.testing.assert_array_equal(P.quat_from_wxyz(P.quat_to_wxyz(q)), q)


def test_rotvec_round_trip_and_shortest_rotation():
    for q in random_quats(100):
        rv = P.quat_to_rotvec(q)
        assert np.linalg.norm(rv) <= math.pi + 1e-12
        assert same_rotation(P.rotvec_to_quat(rv), q)
    np.testing.assert_allclose(P.quat_to_rotvec(axis_angle_quat((0, 0, 1), 0.5)), [0, 0, 0.5])
    # q and -q give the same (shortest) rotation vector
    q = axis_angle_quat((1, 0, 0), 0.4)
    np.testing.assert_allclose(P.quat_to_rotvec(-q), P.quat_to_rotvec(q))
    # 350° about z is -10° about z
    np.testing.assert_allclose(P.quat_to_rotvec(axis_angle_quat((0, 0, 1), math.radians(350))),
                               [0, 0, -math.radians(10)], atol=1e-12)
    np.testing.assert_allclose(P.rotvec_to_quat([0, 0, 0]), [0, 0, 0, 1])
    with pytest.raises(ValueError, match=r'3 finite values, got \[nan, 0.0, 0.0\]'):
        P.rotvec_to_quat([np.nan, 0, 0])


def test_quat_error_is_the_rotation_from_current_to_target():
    current = axis_angle_quat((0, 0, 1), 0.2)
    target = axis_angle_quat((0, 0, 1), 0.5)
    np.testing.assert_allclose(P.quat_error(target, current), [0, 0, 0.3], atol=1e-12)
    for a, b in zip(random_quats(50), random_quats(50)):
        err = P.quat_error(b, a)
        # applying the error (in the base frame) to current gives target
        assert same_rotation(P.quat_multiply(P.rotvec_to_quat(err), a), b)


def test_quat_multiply_composes_like_matrices():
    for a, b in zip(random_quats(20), random_quats(20)):
        np.testing.assert_allclose(P.quat_to_matrix(P.quat_multiply(a, b)),
                                   P.quat_to_matrix(a) @ P.quat_to_matrix(b), atol=1e-12)


# --- validation ---------------------------------------------------------------------------

def test_normalize_small_drift_but_refuse_garbage():
    np.testing.assert_allclose(P.quat_normalize([0, 0, 0, 1.004]), [0, 0, 0, 1])
    with pytest.raises(ValueError, match=r'norm 0 is not within 0.01 of 1: \[0.0, 0.0, 0.0, 0.0\]'):
        P.quat_normalize([0, 0, 0, 0])
    with pytest.raises(ValueError, match=r'norm 2 is not within 0.01 of 1: \[0.0, 2.0, 0.0, 0.0\]'):
        P.quat_normalize([0, 2, 0, 0])
    with pytest.raises(ValueError, match=r'norm 0.5 '):
        P.quat_normalize([0, 0, 0, 0.5])
    with pytest.raises(ValueError, match=r'not finite: \[nan, 0.0, 0.0, 1.0\]'):
        P.quat_normalize([np.nan, 0, 0, 1])
    with pytest.raises(ValueError, match=r'not finite: \[0.0, inf, 0.0, 1.0\]'):
        P.quat_normalize([0, np.inf, 0, 1])
    with pytest.raises(ValueError, match=r'4 values, got 3'):
        P.quat_normalize([0, 0, 1])


def test_every_conversion_refuses_bad_quaternions():
    for func in (P.quat_to_matrix, P.quat_to_rot6d, P.quat_to_rotvec):
        with pytest.raises(ValueError, match=r'norm 0 '):
            func(np.zeros(4))
        with pytest.raises(ValueError, match=r'not finite'):
            func([np.nan, 0, 0, 1])
    with pytest.raises(ValueError, match=r'norm 0 '):
        P.quat_slerp([0, 0, 0, 1], [0, 0, 0, 0], 0.5)
    with pytest.raises(ValueError, match=r'not finite'):
        P.quat_angle([0, 0, 0, 1], [0, 0, np.nan, 1])


def test_pose_dataclass_shapes():
    pose = P.Pose([0.1, 0.2, 0.3], [0, 0, 0, 1])
    assert pose.position.dtype == np.float64
    np.testing.assert_array_equal(P.Pose.from_vector(pose.as_vector()).as_vector(),
                                  pose.as_vector())
    np.testing.assert_array_equal(P.Pose.identity().orientation, [0, 0, 0, 1])
    with pytest.raises(ValueError, match=r'position must have 3 values, got 2'):
        P.Pose([0, 0], [0, 0, 0, 1])
    with pytest.raises(ValueError, match=r'orientation must have 4 values, got 3'):
        P.Pose([0, 0, 0], [0, 0, 1])
    with pytest.raises(ValueError, match=r'pose vector must have 7 values, got 6'):
        P.Pose.from_vector(np.zeros(6))
    assert not P.is_finite([0.0, float('nan')])
    assert P.is_finite([0.0, 1.0])


# --- slerp and interpolation --------------------------------------------------------------

def test_slerp_endpoints_and_midpoint():
    a = axis_angle_quat((0, 0, 1), 0.0)
    b = axis_angle_quat((0, 0, 1), 1.0)
    np.testing.assert_allclose(P.quat_slerp(a, b, 0.0), a, atol=1e-12)
    np.testing.assert_allclose(P.quat_slerp(a, b, 1.0), b, atol=1e-12)
    np.testing.assert_allclose(P.quat_slerp(a, b, 0.5), axis_angle_quat((0, 0, 1), 0.5), atol=1e-12)
    np.testing.assert_allclose(P.quat_slerp(a, b, 0.25), axis_angle_quat((0, 0, 1), 0.25),
                               atol=1e-12)
    # constant angular speed between random orientations
    for qa, qb in zip(random_quats(20), random_quats(20)):
        total = P.quat_angle(qa, qb)
        mid = P.quat_slerp(qa, qb, 0.3)
        assert P.quat_angle(qa, mid) == pytest.approx(0.3 * total, abs=1e-9)
        assert abs(np.linalg.norm(mid) - 1) < 1e-12


def test_slerp_takes_the_shortest_arc():
    a = axis_angle_quat((0, 0, 1), math.radians(10))
    b = -axis_angle_quat((0, 0, 1), math.radians(30))  # same rotation, opposite hemisphere
    mid = P.quat_slerp(a, b, 0.5)
    assert same_rotation(mid, axis_angle_quat((0, 0, 1), math.radians(20)))
    # 170° → -170° goes through 180°, not back through 0°
    a = axis_angle_quat((0, 0, 1), math.radians(170))
    b = axis_angle_quat((0, 0, 1), math.radians(-170))
    assert same_rotation(P.quat_slerp(a, b, 0.5), axis_angle_quat((0, 0, 1), math.pi))


def test_slerp_nearly_identical_orientations_is_stable():
    a = axis_angle_quat((1, 0, 0), 0.0)
    b = axis_angle_quat((1, 0, 0), 1e-6)
    q = P.quat_slerp(a, b, 0.5)
    assert P.is_finite(q) and abs(np.linalg.norm(q) - 1) < 1e-12
    assert P.quat_angle(a, q) == pytest.approx(5e-7, rel=1e-3)


def test_pose_interpolate_clips_and_never_extrapolates():
    start = P.Pose([0.0, 0.0, 0.0], axis_angle_quat((0, 0, 1), 0.0))
    end = P.Pose([1.0, -2.0, 0.5], axis_angle_quat((0, 0, 1), 1.0))
    mid = P.pose_interpolate(start, end, 0.5)
    np.testing.assert_allclose(mid.position, [0.5, -1.0, 0.25])
    assert same_rotation(mid.orientation, axis_angle_quat((0, 0, 1), 0.5))
    for t, expect in ((-0.5, start), (0.0, start), (1.0, end), (1.7, end), (float('inf'), end)):
        got = P.pose_interpolate(start, end, t)
        np.testing.assert_allclose(got.position, expect.position, atol=1e-12)
        assert same_rotation(got.orientation, expect.orientation)


def test_pose_distance_in_metres_and_radians():
    a = P.Pose([0.1, 0.2, 0.3], axis_angle_quat((0, 1, 0), 0.1))
    b = P.Pose([0.4, 0.6, 0.3], axis_angle_quat((0, 1, 0), 0.35))
    d_pos, d_rot = P.pose_distance(a, b)
    assert d_pos == pytest.approx(0.5)
    assert d_rot == pytest.approx(0.25)
    assert P.pose_distance(b, a) == pytest.approx((d_pos, d_rot))
    # q and -q are distance 0; the angle is the shorter one (≤ π)
    c = P.Pose(a.position, -a.orientation)
    assert P.pose_distance(a, c) == pytest.approx((0.0, 0.0), abs=1e-12)
    e = P.Pose(a.position, axis_angle_quat((0, 1, 0), 0.1 + math.radians(350)))
    assert P.pose_distance(a, e)[1] == pytest.approx(math.radians(10))
    # tiny angles keep their precision
    f = P.Pose(a.position, P.quat_multiply(axis_angle_quat((1, 0, 0), 1e-7), a.orientation))
    assert P.pose_distance(a, f)[1] == pytest.approx(1e-7, rel=1e-6)

"""Action vectors ⇄ (Pose, gripper): every representation, blending, and refusal of the
outputs that must never reach the controller (NaN, a zero quaternion, a wild gripper); the
axial layout's blindness to a half turn about the tool axis and its choice by reference."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bc_robot.core.actions import ActionLayout
from bc_robot.core.pose import Pose, quat_angle, quat_multiply, rotvec_to_quat
from bc_robot.sim.expert import down_quaternion as pointing_down, wrap_half_turn


def half_turned(q: np.ndarray) -> np.ndarray:
    return quat_multiply(q, rotvec_to_quat(np.array([0, 0, math.pi])))


@pytest.mark.parametrize('representation, dim', [('ee_pose_quat_gripper', 8),
                                                  ('ee_pose_rot6d_gripper', 10),
                                                  ('ee_pose_axial_gripper', 13)])
def test_round_trip(representation, dim):
    layout = ActionLayout(representation)
    pose = Pose(np.array([0.5, -0.1, 0.2]), rotvec_to_quat(np.array([2.5, 0.3, -0.2])))
    vector = layout.from_target(pose, 0.3)
    assert vector.shape == (dim,)
    back, gripper = layout.to_target(vector, pose.orientation)
    assert np.allclose(back.position, pose.position)
    assert quat_angle(back.orientation, pose.orientation) < 1e-9
    assert gripper == pytest.approx(0.3)


def test_gripper_overshoot_is_clipped_but_nonsense_refused():
    layout = ActionLayout('ee_pose_quat_gripper')
    base = layout.from_target(Pose(np.zeros(3), np.array([1.0, 0, 0, 0])), 1.0)
    base[-1] = 1.08
    assert layout.to_target(base)[1] == 1.0
    base[-1] = 3.0
    with pytest.raises(ValueError, match='gripper opening 3'):
        layout.to_target(base)


@pytest.mark.parametrize('bad, match', [
    ([0.4, 0, 0.3, 0, 0, 0, 1, math.nan], 'non-finite'),
    ([0.4, 0, 0.3, 0, 0, 0, 0, 1], 'not a rotation'),
    ([0.4, 0, 0.3, 1], 'needs 8 values'),
])
def test_refusals_name_the_problem(bad, match):
    with pytest.raises(ValueError, match=match):
        ActionLayout('ee_pose_quat_gripper').to_target(np.array(bad))


def test_validate_chunk_names_the_action_and_aligns_signs():
    layout = ActionLayout('ee_pose_quat_gripper')
    chunk = np.tile([0.4, 0, 0.3, 1.0, 0, 0, 0, 1.0], (4, 1))
    chunk[2, 3] = -1.0  # same rotation, other sign
    aligned = layout.validate_chunk(chunk[None], expected_length=4)
    assert aligned.shape == (4, 8) and np.all(aligned[:, 3] == 1.0)
    chunk[3, 0] = math.inf
    with pytest.raises(ValueError, match='chunk action 3'):
        layout.validate_chunk(chunk)
    with pytest.raises(ValueError, match='expected 5'):
        layout.validate_chunk(chunk[:3], expected_length=5)


def test_rot6d_blend_is_a_rotation_between_the_two():
    layout = ActionLayout('ee_pose_rot6d_gripper')
    a = layout.from_target(Pose(np.zeros(3), rotvec_to_quat(np.array([0, 0, 0.0]))), 1.0)
    b = layout.from_target(Pose(np.zeros(3), rotvec_to_quat(np.array([0, 0, 0.4]))), 0.0)
    pose, gripper = layout.to_target(layout.blend([a, b], [1.0, 1.0]))
    assert quat_angle(pose.orientation, rotvec_to_quat(np.array([0, 0, 0.2]))) < 0.01
    assert gripper == pytest.approx(0.5)


def test_unknown_representation():
    with pytest.raises(ValueError, match='euler'):
        ActionLayout('euler')


def test_axial_is_blind_to_a_half_turn_and_takes_the_one_nearest_the_reference():
    layout = ActionLayout('ee_pose_axial_gripper')
    rng = np.random.default_rng(3)
    for _ in range(200):
        q = rotvec_to_quat(rng.uniform(-3, 3, 3))
        vector = layout.from_target(Pose(np.zeros(3), q), 0.5)
        assert np.allclose(vector, layout.from_target(Pose(np.zeros(3), half_turned(q)), 0.5))
        reference = rotvec_to_quat(rng.uniform(-3, 3, 3))
        chosen = layout.to_target(vector, reference)[0].orientation
        other = half_turned(chosen)
        assert min(quat_angle(chosen, q), quat_angle(other, q)) < 1e-6
        # of the two, the one nearer the reference: never a needless half turn
        assert quat_angle(chosen, reference) <= quat_angle(other, reference) + 1e-6
    # no reference: the one nearer pointing down with x along base +x
    assert quat_angle(layout.to_target(layout.from_target(
        Pose(np.zeros(3), pointing_down(3.0)), 1.0))[0].orientation, pointing_down(3.0 - math.pi)
    ) < 1e-6


def test_axial_labels_stay_continuous_where_the_expert_wraps_its_yaw():
    """The scripted human keeps |yaw| ≤ 90° (the paddle is symmetric), so pushing sideways
    its yaw label jumps by half a turn: rot6d labels jump with it, axial ones do not."""
    directions = np.linspace(math.radians(80), math.radians(100), 41)
    steps = {}
    for representation in ('ee_pose_rot6d_gripper', 'ee_pose_axial_gripper'):
        layout = ActionLayout(representation)
        labels = [layout.from_target(Pose(np.zeros(3), pointing_down(wrap_half_turn(d))), 1.0)
                  for d in directions]
        steps[representation] = np.abs(np.diff(labels, axis=0)).max()
    assert steps['ee_pose_rot6d_gripper'] > 1.5
    assert steps['ee_pose_axial_gripper'] < 0.05


def test_axial_blend_of_the_two_names_of_one_orientation_is_that_orientation():
    layout = ActionLayout('ee_pose_axial_gripper')
    a = layout.from_target(Pose(np.zeros(3), pointing_down(1.5)), 1.0)
    b = layout.from_target(Pose(np.zeros(3), pointing_down(1.6 - math.pi)), 1.0)
    pose = layout.to_target(layout.blend([a, b], [1.0, 1.0]), pointing_down(1.5))[0]
    assert quat_angle(pose.orientation, pointing_down(1.55)) < 1e-3


@pytest.mark.parametrize('rotation, match', [
    ([0, 0, 0, 1, 0, 0, 0, 0, 0], 'z axis is zero'),
    ([0, 0, -1, 0, 0, 0, 0, 0, 0], 'no dominant axis'),
    ([0, 0, -1, 0, 0, 1, 0, 0, 0], 'no dominant axis'),   # x along z: nothing across it
])
def test_axial_refusals_name_the_problem(rotation, match):
    with pytest.raises(ValueError, match=match):
        ActionLayout('ee_pose_axial_gripper').to_target(np.array([0.4, 0, 0.3, *rotation, 1.0]))

"""Action vectors ⇄ (Pose, gripper): both representations, blending, and refusal of the
outputs that must never reach the controller (NaN, a zero quaternion, a wild gripper)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bc_robot.core.actions import ActionLayout
from bc_robot.core.pose import Pose, quat_angle, rotvec_to_quat


@pytest.mark.parametrize('representation, dim', [('ee_pose_quat_gripper', 8),
                                                  ('ee_pose_rot6d_gripper', 10)])
def test_round_trip(representation, dim):
    layout = ActionLayout(representation)
    pose = Pose(np.array([0.5, -0.1, 0.2]), rotvec_to_quat(np.array([2.5, 0.3, -0.2])))
    vector = layout.from_target(pose, 0.3)
    assert vector.shape == (dim,)
    back, gripper = layout.to_target(vector)
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

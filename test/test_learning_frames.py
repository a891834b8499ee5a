"""The network's action frames (learning/frames.py): exact inverses, the tool frame's
invariance to where on the table and which way a push runs, and the conversion the
normalization statistics share with the graph."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bc_robot.core.pose import matrix_to_rot6d, quat_to_matrix, rot6d_to_matrix
from bc_robot.learning.frames import ActionFrame, rot6d_to_rotation
from bc_robot.sim.expert import down_quaternion

# state [ee_position(3), ee_rot6d(6), gripper(1)], actions [position(3), rot6d(6), gripper(1)]
TOOL = ActionFrame(position=slice(0, 3), rotation=slice(3, 9))
WORLD = ActionFrame(position=slice(0, 3))


def _pose_vector(position, rotation: np.ndarray, gripper: float) -> np.ndarray:
    return np.r_[position, matrix_to_rot6d(rotation), gripper]


def _rz(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return quat_to_matrix(q / np.linalg.norm(q))


def test_rot6d_to_rotation_matches_core_pose():
    rng = np.random.default_rng(0)
    for _ in range(5):
        rot6d = rng.normal(size=6)
        np.testing.assert_allclose(rot6d_to_rotation(torch.tensor(rot6d)).numpy(),
                                   rot6d_to_matrix(rot6d), atol=1e-12)


@pytest.mark.parametrize('frame', [TOOL, WORLD, ActionFrame(slice(0, 3), (1.0, 1.0, 0.0)),
                                   ActionFrame()])
def test_from_model_inverts_to_model(frame):
    rng = np.random.default_rng(1)
    state = torch.tensor(np.stack([_pose_vector(rng.normal(size=3), _random_rotation(rng), 0.3)
                                   for _ in range(4)]))
    actions = torch.tensor(np.stack([[_pose_vector(rng.normal(size=3), _random_rotation(rng),
                                                   rng.uniform()) for _ in range(6)]
                                     for _ in range(4)]))
    model = frame.to_model(actions, state)
    np.testing.assert_allclose(frame.from_model(model, state).numpy(), actions.numpy(),
                               atol=1e-12)
    if frame.position is not None:
        assert not torch.allclose(model, actions)


def test_tool_frame_is_the_same_push_wherever_it_runs():
    """A push 3 cm along the paddle with the paddle turning 5°: the same action in the tool
    frame for any TCP position and push direction; different ones in the world frame."""
    def push(position, yaw):
        tcp = _pose_vector(position, quat_to_matrix(down_quaternion(yaw)), 0.0)
        direction = np.array([math.cos(yaw), math.sin(yaw), 0.0])
        target = _pose_vector(np.asarray(position) + 0.03 * direction,
                              quat_to_matrix(down_quaternion(yaw + math.radians(5))), 0.0)
        return torch.tensor(tcp)[None], torch.tensor(target)[None, None]

    tool, world = [], []
    for position, yaw in (((0.5, 0.0, 0.025), 0.0), ((0.4, 0.1, 0.025), 1.2),
                          ((0.6, -0.1, 0.03), -2.5)):
        state, actions = push(position, yaw)
        tool.append(TOOL.to_model(actions, state).numpy())
        world.append(WORLD.to_model(actions, state).numpy())
    for other in tool[1:]:
        np.testing.assert_allclose(other, tool[0], atol=1e-6)
    # paddle (TCP x axis) forward 3 cm; the new x axis turned 5° about the tool z
    np.testing.assert_allclose(tool[0][0, 0, :3], [0.03, 0.0, 0.0], atol=1e-12)
    turn = math.radians(5)
    np.testing.assert_allclose(tool[0][0, 0, 3:6], [math.cos(turn), -math.sin(turn), 0.0],
                               atol=1e-12)  # tool z points down: a left turn is −y in the tool
    assert not np.allclose(world[1], world[0], atol=1e-3)


def test_tool_frame_needs_every_axis_relative():
    with pytest.raises(ValueError, match=r'needs positions relative on every axis, got position '
                                         r'slice\(0, 3, None\) and mask \(1.0, 1.0, 0.0\)'):
        ActionFrame(slice(0, 3), (1.0, 1.0, 0.0), rotation=slice(3, 9))

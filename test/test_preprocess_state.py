"""core/preprocess.py (the one image preprocessing) and core/state.py (labelled state vector)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bc_robot.core import image as im
from bc_robot.core.pose import Pose, quat_to_matrix
from bc_robot.core.preprocess import preprocess_image
from bc_robot.core.spec import STATE_KEY_DIMS, CameraSpec
from bc_robot.core.state import build_state_vector, state_labels, state_parts

RNG = np.random.default_rng(3)


def frame(height=48, width=64) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


# --- preprocess_image ---------------------------------------------------------------------

def test_same_size_no_crop_is_identity():
    rgb = frame(32, 32)
    out = preprocess_image(rgb, CameraSpec('front', 32, 32))
    np.testing.assert_array_equal(out, rgb)
    assert out.flags.c_contiguous


def test_crop_takes_top_left_height_width_in_source_pixels():
    rgb = frame(48, 64)
    out = preprocess_image(rgb, CameraSpec('front', 16, 24, crop=(5, 10, 16, 24)))
    np.testing.assert_array_equal(out, rgb[5:21, 10:34])
    assert out.flags.c_contiguous


def test_shrinking_averages_areas():
    # 2x2 blocks of a checkerboard average to mid grey: area interpolation, no aliasing.
    board = np.zeros((32, 32, 3), np.uint8)
    board[::2, ::2] = 255
    board[1::2, 1::2] = 255
    out = preprocess_image(board, CameraSpec('front', 16, 16))
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert np.all(np.abs(out.astype(int) - 128) <= 1)
    # a plain nearest-neighbour subsample would have kept only white pixels
    assert not np.all(board[::2, ::2] == out)


def test_growing_is_smooth_and_keeps_colour():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, :, 0] = 200  # red
    rgb[:, 4:, 2] = 100  # right half also blue
    out = preprocess_image(rgb, CameraSpec('front', 16, 16))
    assert out.shape == (16, 16, 3)
    assert np.all(out[:, :, 0] == 200)
    assert out[0, 0, 2] == 0 and out[0, 15, 2] == 100
    assert 0 < out[0, 8, 2] < 100  # interpolated at the edge, not blocky


def test_crop_then_resize_and_aspect_change():
    rgb = frame(120, 160)
    out = preprocess_image(rgb, CameraSpec('wrist', 32, 48, crop=(0, 0, 120, 120)))
    assert out.shape == (32, 48, 3)


def test_deterministic_for_train_and_deploy():
    rgb = frame(120, 160)
    camera = CameraSpec('front', 64, 64, crop=(0, 20, 120, 120))
    np.testing.assert_array_equal(preprocess_image(rgb, camera),
                                  preprocess_image(rgb.copy(), camera))


def test_accepts_padded_read_only_message_views():
    """What observation_node feeds it: a strided, read-only view of a message buffer."""
    rgb = frame(48, 64)
    fields = im.array_to_image(rgb[:, :, ::-1].copy(), 'bgr8')
    padded_step = fields.step + 16
    rows = np.frombuffer(fields.data, np.uint8).reshape(48, -1)
    data = np.concatenate([rows, np.zeros((48, 16), np.uint8)], axis=1).tobytes()
    view = im.image_to_rgb8(48, 64, 'bgr8', 0, padded_step, data)
    camera = CameraSpec('front', 24, 32, crop=(0, 0, 48, 64))
    np.testing.assert_array_equal(preprocess_image(view, camera), preprocess_image(rgb, camera))


def test_crop_that_does_not_fit_is_named():
    with pytest.raises(ValueError, match=r"camera 'front': crop \[40, 0, 16, 16\] \(top, left, "
                                         r"height, width\) does not fit the 48x64 frame"):
        preprocess_image(frame(48, 64), CameraSpec('front', 16, 16, crop=(40, 0, 16, 16)))


@pytest.mark.parametrize('bad', [np.zeros((16, 16), np.uint8), np.zeros((16, 16, 4), np.uint8),
                                 np.zeros((16, 16, 3), np.float32)])
def test_wrong_frame_kind_is_named(bad):
    with pytest.raises(ValueError, match=rf"camera 'front': expected an RGB uint8 HxWx3 frame, "
                                         rf"got {bad.dtype} \[{', '.join(map(str, bad.shape))}\]"):
        preprocess_image(bad, CameraSpec('front', 16, 16))


# --- state vector -------------------------------------------------------------------------

HOME = Pose([0.45, 0.0, 0.30], [1.0, 0.0, 0.0, 0.0])  # gripper pointing down
JOINTS = [0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.8]


def test_labels_follow_the_keys_in_order():
    keys = ['ee_position', 'gripper', 'ee_rot6d']
    labels = state_labels(keys)
    assert labels == ['ee_position.0', 'ee_position.1', 'ee_position.2', 'gripper'] + \
        [f'ee_rot6d.{i}' for i in range(6)]
    assert len(state_labels(list(STATE_KEY_DIMS))) == sum(STATE_KEY_DIMS.values())


def test_vector_layout_matches_labels():
    keys = ['ee_position', 'ee_rot6d', 'gripper', 'joint_positions', 'ee_quaternion']
    vector = build_state_vector(keys, HOME, 0.25, JOINTS)
    labels = state_labels(keys)
    assert vector.dtype == np.float32 and vector.shape == (len(labels),)
    named = dict(zip(labels, vector.tolist()))
    assert named['ee_position.0'] == pytest.approx(0.45)
    assert named['ee_position.2'] == pytest.approx(0.30)
    assert named['gripper'] == 0.25
    assert [named[f'joint_positions.{i}'] for i in range(7)] == pytest.approx(JOINTS)
    # 6D = first two columns of the rotation matrix (pointing down: x stays, y flips)
    m = quat_to_matrix(HOME.orientation)
    assert [named[f'ee_rot6d.{i}'] for i in range(6)] == pytest.approx(
        list(m[:, 0]) + list(m[:, 1]))
    assert [named[f'ee_rot6d.{i}'] for i in range(6)] == pytest.approx([1, 0, 0, 0, -1, 0])


def test_quaternion_sign_is_canonical():
    q = np.array([0.1, 0.2, 0.3, math.sqrt(1 - 0.14)])
    a = build_state_vector(['ee_quaternion'], Pose([0, 0, 0], q), 1.0, JOINTS)
    b = build_state_vector(['ee_quaternion'], Pose([0, 0, 0], -q), 1.0, JOINTS)
    np.testing.assert_array_equal(a, b)
    assert a[3] > 0


def test_empty_keys_give_empty_vector():
    vector = build_state_vector([], HOME, 1.0, JOINTS)
    assert vector.shape == (0,) and vector.dtype == np.float32


def test_state_errors_name_the_value():
    with pytest.raises(ValueError, match=r"state key 'wrench' is unknown; known: ee_position"):
        state_labels(['ee_position', 'wrench'])
    with pytest.raises(ValueError, match=r"state key 'wrench' is unknown"):
        build_state_vector(['wrench'], HOME, 1.0, JOINTS)
    with pytest.raises(ValueError, match=r'expected 7 arm joint positions, got 6'):
        state_parts(HOME, 1.0, JOINTS[:6])
    with pytest.raises(ValueError, match=r'quaternion norm 0 '):
        build_state_vector(['ee_position'], Pose([0, 0, 0], [0, 0, 0, 0]), 1.0, JOINTS)
    with pytest.raises(ValueError, match=r'state ee_position is not finite: \[nan, 0.0, 0.3\]'):
        build_state_vector(['ee_position'], Pose([np.nan, 0, 0.3], [0, 0, 0, 1]), 1.0, JOINTS)
    with pytest.raises(ValueError, match=r'state gripper is not finite: \[inf\]'):
        build_state_vector(['gripper'], HOME, float('inf'), JOINTS)
    with pytest.raises(ValueError, match=r'state joint_positions is not finite'):
        build_state_vector(['gripper'], HOME, 1.0, JOINTS[:6] + [float('nan')])


def test_simulation_ground_truth_is_relative_and_checked():
    cube_and_goal = [0.55, 0.05, 0.025, 0.40, 0.10]
    vector = build_state_vector(['ee_position', 'sim_objects'], HOME, 0.25, JOINTS,
                                cube_and_goal)
    np.testing.assert_allclose(vector[3:], [0.10, 0.05, -0.275, -0.15, 0.05], atol=1e-6)
    assert 'sim_objects' not in state_parts(HOME, 0.25, JOINTS)
    with pytest.raises(ValueError, match='sim_objects needs .* none were given'):
        build_state_vector(['sim_objects'], HOME, 0.25, JOINTS)
    for bad in ([0.5, float('nan'), 0.0, 0.4, 0.1], [0.5, 0.0, 0.0]):
        with pytest.raises(ValueError, match=r'cube x, y, z and goal x, y .*got'):
            build_state_vector(['sim_objects'], HOME, 0.25, JOINTS, bad)

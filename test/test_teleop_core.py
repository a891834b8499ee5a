"""Twist/Joy → velocity mapping and its integration into a target (pure, no ROS)."""
import math

import numpy as np
import pytest

from bc_robot.core.pose import Pose, quat_angle, quat_to_matrix, rotvec_to_quat
from bc_robot.core.teleop import (ButtonEdges, TeleopConfig, TeleopIntegrator, VelocityCommand,
                                  apply_deadband, command_from_joy, command_from_twist,
                                  integrate_pose, limit_target)

HOME = Pose(np.array([0.45, 0.0, 0.30]), np.array([1.0, 0.0, 0.0, 0.0]))


def test_deadband_zeroes_small_input_and_is_continuous_outside():
    out = apply_deadband(np.array([0.04, -0.05, 0.0]), 0.05)
    assert np.all(out == 0.0)
    just_outside = apply_deadband(np.array([0.0501]), 0.05)[0]
    assert 0.0 < just_outside < 1e-3          # no jump at the deadband edge
    assert apply_deadband(np.array([1.0, -1.0]), 0.05).tolist() == [1.0, -1.0]
    assert apply_deadband(np.array([1.7]), 0.05)[0] == 1.0   # overshooting drivers are clipped


def test_twist_scales_full_deflection_to_configured_speeds():
    cfg = TeleopConfig()
    cmd = command_from_twist((1.0, -0.5, 0.0), (0.0, 0.0, 1.0), cfg)
    assert cmd.linear[0] == pytest.approx(0.15)
    assert cmd.linear[1] == pytest.approx(-0.15 * (0.45 / 0.95))
    assert cmd.angular[2] == pytest.approx(0.6)


def test_twist_signs_flip_components():
    cfg = TeleopConfig(axis_signs=(-1, 1, 1, 1, 1, -1), deadband=0.0)
    cmd = command_from_twist((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), cfg)
    assert cmd.linear[0] == pytest.approx(-0.15)
    assert cmd.angular[2] == pytest.approx(-0.6)


def test_nan_input_is_refused_with_the_value_named():
    with pytest.raises(ValueError, match='nan'):
        command_from_twist((float('nan'), 0, 0), (0, 0, 0), TeleopConfig())
    with pytest.raises(ValueError, match='inf'):
        command_from_joy([0, 0, math.inf, 0, 0, 0], TeleopConfig())


def test_joy_axis_map_picks_and_signs_axes():
    # a gamepad: left stick x/y (0, 1) → vy/vx, triggers unused, right stick y (4) → vz
    cfg = TeleopConfig(axis_map=(1, 0, 4, -1, -1, 3), axis_signs=(1, -1, 1, 1, 1, 1),
                       deadband=0.0)
    cmd = command_from_joy([0.2, 1.0, 0.0, -1.0, 0.5], cfg)
    assert cmd.linear.tolist() == pytest.approx([0.15, -0.03, 0.075])
    assert cmd.angular.tolist() == pytest.approx([0.0, 0.0, -0.6])


def test_joy_with_too_few_axes_names_the_axis():
    cfg = TeleopConfig(axis_map=(0, 1, 2, 3, 4, 7))
    with pytest.raises(ValueError, match='axis 7 for wz'):
        command_from_joy([0.0] * 6, cfg)


@pytest.mark.parametrize('kwargs, text', [
    ({'frame': 'world'}, 'frame'), ({'deadband': 1.0}, 'deadband'),
    ({'axis_map': (0, 1, 2)}, 'axis_map'), ({'axis_signs': (1, 1, 1, 1, 1, 0.5)}, 'axis_signs'),
    ({'linear_scale': float('nan')}, 'linear_scale'),
    ({'workspace_min': (1, 0, 0), 'workspace_max': (0, 1, 1)}, 'workspace')])
def test_config_refuses_bad_values(kwargs, text):
    with pytest.raises(ValueError, match=text):
        TeleopConfig(**kwargs)


def test_button_edges_fire_once_per_press():
    edges = ButtonEdges()
    assert edges.update([0, 0, 0]) == set()
    assert edges.update([1, 0, 0]) == {0}
    assert edges.update([1, 0, 0]) == set()          # held: no repeat
    assert edges.update([0, 1, 1]) == {1, 2}
    assert edges.update([1, 1]) == {0}                # shorter message: no crash
    assert ButtonEdges.held([0, 1], 1) is True
    assert ButtonEdges.held([0, 1], 5) is None and ButtonEdges.held([1], -1) is None


def test_base_frame_integration_moves_along_base_axes():
    cmd = VelocityCommand(np.array([0.1, 0.0, 0.0]), np.zeros(3))
    moved = integrate_pose(HOME, cmd, 0.5, 'base')
    assert moved.position.tolist() == pytest.approx([0.50, 0.0, 0.30])


def test_tool_frame_integration_uses_the_tcp_axes():
    # home points the gripper down: tool z is base -z, tool y is base -y
    cmd = VelocityCommand(np.array([0.0, 0.0, 0.1]), np.zeros(3))
    moved = integrate_pose(HOME, cmd, 1.0, 'tool')
    assert moved.position.tolist() == pytest.approx([0.45, 0.0, 0.20])
    twist = VelocityCommand(np.zeros(3), np.array([0.0, 0.0, 0.5]))
    rotated = integrate_pose(HOME, twist, 1.0, 'tool')
    assert rotated.position.tolist() == pytest.approx(HOME.position.tolist())  # about the TCP
    # the tool z axis stays put when rotating about tool z
    assert (quat_to_matrix(rotated.orientation)[:, 2]).tolist() == pytest.approx([0, 0, -1])
    assert quat_angle(rotated.orientation, HOME.orientation) == pytest.approx(0.5)


def test_base_frame_rotation_is_about_base_axes():
    cmd = VelocityCommand(np.zeros(3), np.array([0.0, 0.0, 0.4]))
    rotated = integrate_pose(HOME, cmd, 1.0, 'base')
    expected = quat_to_matrix(rotvec_to_quat(np.array([0, 0, 0.4]))) @ quat_to_matrix(HOME.orientation)
    assert quat_to_matrix(rotated.orientation) == pytest.approx(expected)


def test_limit_keeps_target_in_box_and_near_the_measured_pose():
    cfg = TeleopConfig(max_lead=0.05)
    outside = Pose(np.array([0.95, 0.0, 0.30]), HOME.orientation)
    limited = limit_target(outside, HOME, None, cfg)
    assert limited.position[0] == pytest.approx(0.80)
    far = Pose(np.array([0.60, 0.0, 0.30]), HOME.orientation)
    limited = limit_target(far, HOME, HOME, cfg)
    assert np.linalg.norm(limited.position - HOME.position) == pytest.approx(0.05)


def test_limit_never_pulls_an_already_violating_target_back():
    """An anchor outside the box must not be yanked inside (that would be a step)."""
    cfg = TeleopConfig()
    anchor = Pose(np.array([0.85, 0.0, 0.30]), HOME.orientation)
    same = limit_target(anchor, anchor, None, cfg)
    assert same.position.tolist() == anchor.position.tolist()
    further = Pose(np.array([0.86, 0.0, 0.30]), HOME.orientation)
    assert limit_target(further, anchor, None, cfg).position[0] == pytest.approx(0.85)


def test_integrator_starts_exactly_at_the_anchor_and_moves_smoothly():
    integ = TeleopIntegrator(TeleopConfig())
    assert integ.step(0.0, None) is None                  # nothing to move before an anchor
    integ.anchor(HOME, 0.3, now=10.0)
    assert integ.gripper == 0.3
    first = integ.step(10.0, HOME)
    assert first.position.tolist() == HOME.position.tolist()
    integ.set_command(VelocityCommand(np.array([0.15, 0, 0]), np.zeros(3)), 10.0)
    positions = [integ.step(10.0 + 0.02 * k, HOME).position[0] for k in range(1, 11)]
    steps = np.diff([HOME.position[0], *positions])
    assert steps == pytest.approx([0.003] * 10)          # 0.15 m/s × 20 ms per tick


def test_integrator_holds_when_input_goes_stale():
    integ = TeleopIntegrator(TeleopConfig(input_timeout=0.5))
    integ.anchor(HOME, None, 0.0)
    integ.set_command(VelocityCommand(np.array([0.1, 0, 0]), np.zeros(3)), 0.0)
    integ.step(0.4, None)
    x = integ.target.position[0]
    integ.step(0.6, None)       # command is 0.6 s old: stale → zero velocity
    integ.step(2.0, None)
    assert integ.target.position[0] == pytest.approx(x)


def test_integrator_clips_a_long_stall_to_max_dt():
    integ = TeleopIntegrator(TeleopConfig(input_timeout=0.0))
    integ.anchor(HOME, None, 0.0)
    integ.set_command(VelocityCommand(np.array([0.1, 0, 0]), np.zeros(3)), 0.0)
    integ.step(5.0, None, max_dt=0.1)          # process stalled for 5 s
    assert integ.target.position[0] - HOME.position[0] == pytest.approx(0.01)


def test_gripper_toggles_between_open_and_closed():
    integ = TeleopIntegrator(TeleopConfig())
    integ.anchor(HOME, 0.7, 0.0)
    assert integ.toggle_gripper() == 0.0
    assert integ.toggle_gripper() == 1.0


def test_integrator_reanchors_when_the_arm_was_moved_under_it():
    """A sim reset teleports the arm home: continue from there instead of chasing the old
    target (which would drive the arm back at full speed)."""
    integ = TeleopIntegrator(TeleopConfig(reanchor_distance=0.2))
    away = Pose(np.array([0.70, 0.20, 0.10]), HOME.orientation)
    integ.anchor(away, None, 0.0)
    integ.step(0.02, away)
    assert integ.reanchors == 0
    target = integ.step(0.04, HOME)                      # arm measured back home
    assert target.position.tolist() == HOME.position.tolist() and integ.reanchors == 1

"""The simulated arm's pure pieces (no rclpy): MJCF model, impedance controller, tasks,
world, pacing, cameras' intrinsics, expert geometry and the correction monitor."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bc_robot.core.pose import Pose, quat_angle, quat_to_matrix
from bc_robot.sim.camera import CameraRig, camera_intrinsics, check_cameras
from bc_robot.sim.controller import ImpedanceConfig
from bc_robot.sim.expert import (Command, CorrectionConfig, CorrectionMonitor, ExpertConfig,
                                 JoyButtons, Observation, PushGeometry, ScriptedExpert,
                                 TargetIntegrator, distance_to_polyline, down_quaternion,
                                 spacenav_axes, tcp_yaw, wrap_half_turn)
from bc_robot.sim.model import ARM_JOINTS, FINGER_JOINTS, JOINT_NAMES, ArmModel
from bc_robot.sim.pacing import Pacer, RateMeter, RtfMeter
from bc_robot.sim.settings import (SIM_ARM_SCHEMA, SIM_EXPERT_SCHEMA, sim_config_from_params)
from bc_robot.sim.tasks import PushContactProbe, TaskConfig, evaluate, sample_scene
from bc_robot.sim.world import HOME_ORIENTATION, HOME_POSITION, SimConfig, SimWorld

DOWN = np.array([1.0, 0.0, 0.0, 0.0])


@pytest.fixture(scope='module')
def world() -> SimWorld:
    return SimWorld()


# --- model ---------------------------------------------------------------------------------
def test_model_follows_the_shared_conventions():
    arm = ArmModel()
    assert arm.timestep == pytest.approx(0.001)
    assert JOINT_NAMES == ARM_JOINTS + FINGER_JOINTS == (
        'joint1', 'joint2', 'joint3', 'joint4', 'joint5', 'joint6', 'joint7',
        'finger_joint1', 'finger_joint2')
    pose = arm.tcp_pose()
    assert np.allclose(pose.position, HOME_POSITION, atol=1e-3)
    assert quat_angle(pose.orientation, HOME_ORIENTATION) < 1e-3
    assert arm.gripper_opening() == pytest.approx(1.0)
    # Panda joint limits, torque-driven arm (motors), every arm body with real mass.
    assert np.allclose(arm.arm_limits[3], [-3.0718, -0.0698])
    assert np.allclose(arm.torque_limits[:, 1], [87, 87, 87, 87, 12, 12, 12])
    masses = arm.model.body_mass[[arm.model.body(f'link{i}').id for i in range(1, 8)]]
    assert np.all(masses > 0.5) and 15.0 < masses.sum() < 20.0


def test_panda_ready_pose_matches_franka_forward_kinematics():
    """The Franka 'ready' configuration puts the TCP at (0.307, 0, 0.487) pointing down
    (franka_ros values; TCP 0.1034 m past the flange): the kinematics are the Panda's."""
    import mujoco
    arm = ArmModel()
    arm.data.qpos[arm.arm_qpos] = [0, -math.pi / 4, 0, -3 * math.pi / 4, 0, math.pi / 2,
                                   math.pi / 4]
    mujoco.mj_kinematics(arm.model, arm.data)
    assert np.allclose(arm.tcp_position(), [0.30689, 0.0, 0.48688], atol=1e-4)
    assert np.allclose(arm.tcp_rotation(), quat_to_matrix(DOWN), atol=1e-6)


# --- controller ----------------------------------------------------------------------------
def test_impedance_tracks_a_step_without_overshoot_in_sim_time():
    world = SimWorld()
    world.step(200)
    start = world.tcp_pose().position
    target = start + np.array([0.05, 0.03, -0.04])
    assert world.set_target(Pose(target, DOWN)) is None
    direction = (target - start) / np.linalg.norm(target - start)
    overshoot, error_at_1s = 0.0, None
    for step in range(1500):
        world.step(1)
        p = world.arm.data.site_xpos[world.arm.tcp_site]
        overshoot = max(overshoot, float((p - target) @ direction))
        if step == 999:
            error_at_1s = float(np.linalg.norm(p - target))
    assert error_at_1s < 0.005
    assert overshoot < 0.010


def test_error_clipping_bounds_the_pull_of_a_far_target():
    world = SimWorld()
    start = world.tcp_pose().position
    world.set_target(Pose(start + np.array([0.0, 0.3, 0.0]), DOWN))
    world.step(1)
    assert np.linalg.norm(world.controller.last_error[:3]) == pytest.approx(0.1, abs=1e-6)
    far_yaw = Pose(start, down_quaternion(2.0))
    world.set_target(far_yaw)
    world.step(1)
    assert np.linalg.norm(world.controller.last_error[3:]) == pytest.approx(0.5, abs=1e-6)


def test_gravity_compensation_holds_home_with_zero_drift():
    world = SimWorld()
    world.step(2000)
    pose = world.tcp_pose()
    assert np.linalg.norm(pose.position - HOME_POSITION) < 5e-4
    assert quat_angle(pose.orientation, HOME_ORIENTATION) < 5e-3


@pytest.mark.parametrize('position, quaternion', [
    ([float('nan'), 0.0, 0.3], DOWN),
    ([0.5, float('inf'), 0.3], DOWN),
    ([0.5, 0.0, 0.3], [float('nan'), 0.0, 0.0, 1.0]),
    ([0.5, 0.0, 0.3], [0.0, 0.0, 0.0, 0.0]),
    ([0.5, 0.0, 0.3], [2.0, 0.0, 0.0, 0.0]),
])
def test_bad_targets_are_ignored_counted_and_the_arm_holds(position, quaternion):
    world = SimWorld()
    world.step(100)
    before = world.tcp_pose().position
    reason = world.set_target(Pose(np.array(position), np.array(quaternion)))
    assert reason and world.rejected_targets == 1
    world.step(500)
    assert np.linalg.norm(world.tcp_pose().position - before) < 1e-3
    assert np.all(np.isfinite(world.arm.data.qpos))


def test_gripper_opening_moves_the_fingers_and_nan_is_refused():
    world = SimWorld()
    assert world.set_gripper(0.0) is None
    world.step(600)
    assert world.arm.gripper_opening() < 0.05
    assert world.set_gripper(float('nan')) is not None and world.rejected_gripper == 1
    assert world.set_gripper(1.5) is None and world.gripper_target == 1.0  # clipped
    world.step(600)
    assert world.arm.gripper_opening() > 0.95


def test_impedance_config_refuses_bad_gains():
    with pytest.raises(ValueError, match='translational_stiffness'):
        ImpedanceConfig(translational_stiffness=float('nan'))
    with pytest.raises(ValueError, match='max_position_error'):
        ImpedanceConfig(max_position_error=0.0)


# --- tasks and episodes --------------------------------------------------------------------
def test_unknown_task_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown task 'pick'"):
        TaskConfig(name='pick')


def test_scene_is_a_function_of_the_seed_and_respects_the_ranges():
    config = TaskConfig()
    a, b, c = sample_scene(config, 7), sample_scene(config, 7), sample_scene(config, 8)
    assert np.array_equal(a.cube_xy, b.cube_xy) and np.array_equal(a.goal_xy, b.goal_xy)
    assert not np.array_equal(a.cube_xy, c.cube_xy)
    for seed in range(200):
        s = sample_scene(config, seed)
        assert 0.40 <= s.cube_xy[0] <= 0.60 and -0.15 <= s.cube_xy[1] <= 0.15
        assert 0.33 <= s.goal_xy[0] <= 0.68 and -0.25 <= s.goal_xy[1] <= 0.25
        assert 0.10 - 1e-9 <= np.linalg.norm(s.goal_xy - s.cube_xy) <= 0.18 + 1e-9


def test_impossible_goal_box_is_refused_at_config_time():
    with pytest.raises(ValueError, match='no goal fits'):
        TaskConfig(goal_x=(2.0, 2.1))


def test_reset_with_the_same_seed_reproduces_the_scene(world):
    world.set_seed(42)
    first = world.reset()
    world.step(50)
    world.reset()
    world.set_seed(42)
    again = world.reset()
    assert first['seed'] == again['seed'] == 42
    assert first['cube'] == again['cube'] and first['goal'] == again['goal']
    assert again['episode'] > first['episode'] and again['time'] > first['time']


def test_push_success_is_the_cube_within_two_centimetres_of_the_goal():
    config = TaskConfig()
    goal = np.array([0.5, 0.1])
    tcp = np.zeros(3)
    assert evaluate(config, tcp, np.array([0.5, 0.119, 0.025]), goal, tcp) == \
        pytest.approx((0.019, True))
    assert evaluate(config, tcp, np.array([0.5, 0.121, 0.025]), goal, tcp)[1] is False
    assert evaluate(config, tcp, np.array([0.5, 0.1, 0.2]), goal, tcp)[1] is False  # lifted
    reach = TaskConfig(name='reach')
    assert evaluate(reach, np.array([0.4, 0, 0.2]), tcp, goal, np.array([0.41, 0, 0.2]))[1]


def test_task_state_carries_the_agreed_keys(world):
    state = world.task_state()
    for key in ('task', 'episode', 'seed', 'time', 'success', 'tcp', 'cube', 'goal',
                'distance'):
        assert key in state
    reach = SimWorld(SimConfig(task=TaskConfig(name='reach'))).task_state()
    assert 'marker' in reach and 'cube' not in reach


def test_parameter_schema_builds_the_typed_config():
    config = sim_config_from_params(SIM_ARM_SCHEMA.defaults())
    assert config.task.name == 'push' and config.impedance.max_position_error == 0.1
    assert "'pick'" in SIM_ARM_SCHEMA['task'].check('pick')
    for spec in (*SIM_ARM_SCHEMA, *SIM_EXPERT_SCHEMA):
        assert spec.description


# --- pacing --------------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_pacer_keeps_sim_time_on_wall_time_and_resyncs_instead_of_bursting():
    clock = FakeClock()
    pacer = Pacer(1.0, max_lag=0.1, clock=clock)
    assert pacer.behind(0.0) == 0.0
    clock.t += 0.05
    assert pacer.behind(0.0) == pytest.approx(0.05)
    assert pacer.behind(0.06) == pytest.approx(-0.01)
    clock.t += 1.0  # a long stall: do not replay a second of physics in a burst
    assert pacer.behind(0.06) == 0.0 and pacer.resyncs == 1
    pacer.set_rtf(2.0)
    pacer.behind(1.0)
    clock.t += 0.01
    assert pacer.behind(1.0) == pytest.approx(0.02)
    assert pacer.wall_seconds(0.02) == pytest.approx(0.01)
    assert Pacer(0.0).behind(5.0) == math.inf
    with pytest.raises(ValueError, match='real_time_factor'):
        Pacer(-1.0)


def test_pacer_reanchors_when_sim_time_moves_under_it():
    """A sim time read mid-reset (the keyframe's time 0) once anchored the pacer 447 s in
    the past: the physics then slept for 447 s. Sim time ahead of schedule by more than
    max_lag re-anchors instead of waiting."""
    clock = FakeClock()
    pacer = Pacer(1.0, max_lag=0.1, clock=clock)
    clock.t = 447.0
    pacer.behind(447.0)
    assert pacer.behind(0.0) == 0.0 and pacer.resyncs == 1   # the torn read
    assert pacer.behind(447.0) == 0.0 and pacer.resyncs == 2  # real time again: no wait
    clock.t += 0.002
    assert pacer.behind(447.0) == pytest.approx(0.002)
    assert pacer.behind(447.05) == pytest.approx(-0.048)     # normal waiting is kept


def test_rate_and_rtf_meters():
    clock = FakeClock()
    meter, rtf = RateMeter(clock), RtfMeter(0.0, clock)
    meter.tick(30)
    clock.t += 2.0
    assert meter.read() == pytest.approx(15.0)
    assert rtf.read(1.0) == pytest.approx(0.5)


# --- cameras -------------------------------------------------------------------------------
def test_camera_intrinsics_and_names():
    fx, fy, cx, cy = camera_intrinsics(90.0, 320, 240)
    assert fx == pytest.approx(120.0) and fy == fx and cx == pytest.approx(159.5)
    model = ArmModel().model
    check_cameras(model, ['front', 'wrist'], 320, 240)
    with pytest.raises(ValueError, match="unknown camera 'side'"):
        check_cameras(model, ['side'], 320, 240)
    with pytest.raises(ValueError, match='exceeds'):
        check_cameras(model, ['front'], 4000, 240)


def test_render_samples_trade_anti_aliasing_for_time_and_are_checked():
    world = SimWorld(SimConfig())
    images = {}
    for samples in (4, 0):
        rig = CameraRig(world.arm.model, ['front'], 96, 72, samples)
        try:
            rig.capture(world.arm.data)
            images[samples] = rig.render()['front'].astype(np.int16)
        finally:
            rig.close()
    difference = np.abs(images[4] - images[0])
    assert images[0].shape == (72, 96, 3)
    assert difference.max() > 0                  # edges are aliased without the samples
    assert difference.mean() < 5.0               # ... the scene is the same
    with pytest.raises(ValueError, match='render samples must be an int in \\[0, 16\\], got 32'):
        CameraRig(world.arm.model, ['front'], 96, 72, 32)


# --- expert --------------------------------------------------------------------------------
def test_yaw_helpers_agree():
    for yaw in (-1.5, -0.3, 0.0, 0.8, 1.5):
        assert tcp_yaw(down_quaternion(yaw)) == pytest.approx(yaw)
    assert wrap_half_turn(math.pi) == pytest.approx(0.0, abs=1e-9)
    assert wrap_half_turn(2.0) == pytest.approx(2.0 - math.pi)


def test_push_plan_sides_mirror_across_the_push_line():
    config = ExpertConfig()
    left = PushGeometry(config, np.array([0.5, 0.0]), np.array([0.5, 0.15]), 1)
    right = PushGeometry(config, np.array([0.5, 0.0]), np.array([0.5, 0.15]), -1)
    assert np.allclose(left.direction, [0, 1])
    # Looking along the push (+y), left is -x and right is +x: mirror images of each other.
    assert left.above_side[0] == pytest.approx(0.5 - 0.10)
    assert right.above_side[0] == pytest.approx(0.5 + 0.10)
    assert np.allclose(left.behind, right.behind) and left.behind[1] < 0.0
    dist, remaining = distance_to_polyline(left.behind, left.polyline())
    assert dist == pytest.approx(0.0, abs=1e-9)
    assert remaining == pytest.approx(np.linalg.norm(left.push_end - left.behind))


def test_expert_sides_are_random_per_episode_and_reproducible():
    state = {'task': 'push', 'cube': [0.5, 0.0, 0.025], 'goal': [0.5, 0.15]}
    sides = []
    for seed in (1, 1):
        expert = ScriptedExpert(rng=np.random.default_rng(seed))
        run = []
        for _ in range(20):
            expert.reset(state)
            run.append(expert.side_name)
        sides.append(run)
    assert sides[0] == sides[1] and set(sides[0]) == {'left', 'right'}


def test_expert_velocity_is_capped_and_human_noise_is_bounded():
    state = {'task': 'push', 'cube': [0.5, 0.0, 0.025], 'goal': [0.5, 0.15],
             'time': 0.0, 'episode': 0, 'seed': 0, 'success': False, 'distance': 0.15}
    expert = ScriptedExpert(rng=np.random.default_rng(3))
    expert.reset(state, side=1)
    obs = Observation(np.array([0.45, 0.0, 0.30]), 0.0, state)
    speeds = [np.linalg.norm(expert.act(obs, 0.02).linear) for _ in range(200)]
    cap = expert.config.max_speed * (1 + expert.config.speed_variation)
    assert 0.5 * expert.config.max_speed < np.median(speeds)
    assert max(speeds) < 2.0 * cap
    assert np.std(speeds) > 0.0  # noisy, like a hand


def test_target_integrator_clamps_to_the_workspace_and_lead():
    start = Pose(np.array([0.45, 0.0, 0.30]), DOWN)
    integrator = TargetIntegrator(start, max_lead=0.05)
    command = Command(linear=np.array([0.0, 0.0, -10.0]), angular=np.array([0.0, 0.0, 0.5]))
    target = integrator.step(command, 0.1, start.position)
    assert np.linalg.norm(target.position - start.position) == pytest.approx(0.05)
    for _ in range(100):
        target = integrator.step(command, 0.1, target.position)
    assert target.position[2] == pytest.approx(0.0)  # table-top floor of the workspace box
    assert tcp_yaw(target.orientation) == pytest.approx(
        math.atan2(math.sin(101 * 0.05), math.cos(101 * 0.05)), abs=1e-6)


def test_spacenav_axes_and_buttons_look_like_the_driver():
    axes = spacenav_axes(Command(linear=np.array([0.3, -0.075, 0.0]),
                                 angular=np.array([0.0, 0.0, 0.3])), 0.15, 0.6)
    assert axes == pytest.approx([1.0, -0.5, 0.0, 0.0, 0.0, 0.5])
    buttons = JoyButtons(press_ticks=2)
    buttons.press(JoyButtons.GRIPPER)
    buttons.pedal = True
    assert [buttons.tick(), buttons.tick(), buttons.tick()] == \
        [[1, 0, 1], [1, 0, 1], [0, 0, 1]]


def test_correction_monitor_takes_over_when_off_plan_or_stalled_and_releases():
    monitor = CorrectionMonitor(CorrectionConfig(off_plan_threshold=0.08, stall_time=2.0,
                                                 min_progress=0.01, min_correction_time=1.0,
                                                 release_distance=0.03))
    monitor.reset(0.0)
    t = 0.0
    # Progressing on plan: no takeover.
    for i in range(50):
        t += 0.1
        assert not monitor.update(t, 0.02, 0.5 - 0.01 * i, False)
    # Stalled for more than stall_time: takeover.
    taken = None
    for _ in range(40):
        t += 0.1
        if monitor.update(t, 0.02, 0.0, False):
            taken = t
            break
    assert taken is not None and 'no progress' in monitor.reason
    # Held at least min_correction_time even when back on plan and progressing.
    assert monitor.update(t + 0.5, 0.01, -0.05, False)
    assert not monitor.update(t + 1.1, 0.01, -0.10, False)
    assert monitor.interventions == 1
    # Off plan: immediate takeover.
    assert monitor.update(t + 1.2, 0.2, -0.10, False) and 'off plan' in monitor.reason
    # Task success releases at once.
    assert not monitor.update(t + 1.3, 0.2, -0.10, True)


def test_expert_resume_picks_the_nearer_side_and_phase():
    state = {'task': 'push', 'cube': [0.5, 0.0, 0.025], 'goal': [0.5, 0.15]}
    expert = ScriptedExpert(rng=np.random.default_rng(0))
    expert.reset(state, side=1)
    geo = PushGeometry(expert.config, np.array([0.5, 0.0]), np.array([0.5, 0.15]), -1)
    expert.resume(Observation(geo.above_side, 0.0, state))
    assert expert.side_name == 'right' and expert.phase == 'lift'
    expert.resume(Observation(np.array([0.5, -0.04, 0.025]), 0.0, state))
    assert expert.phase == 'push'
    # Behind the cube but 2.5 cm off its line (push along +y: left is -x): back off onto the
    # line at push height; 4 cm off (beyond realign_lateral), or high: lift and re-approach.
    expert.resume(Observation(np.array([0.475, -0.04, 0.025]), 0.0, state))
    assert expert.phase == 'behind'
    expert.resume(Observation(np.array([0.46, -0.04, 0.025]), 0.0, state))
    assert expert.phase == 'lift'
    expert.resume(Observation(np.array([0.475, -0.04, 0.06]), 0.0, state))
    assert expert.phase == 'lift'


class OffCentrePusher(ScriptedExpert):
    """A policy's typical failure: it pushes with the paddle `offset` across the cube's line."""

    offset = 0.028

    def _push_velocity(self, obs, geo, dt):
        if float(np.linalg.norm(geo.goal - geo.cube)) < self.config.goal_tolerance:
            return np.zeros(3), 'at_goal'
        lateral = float((obs.tcp[:2] - geo.cube) @ geo.normal)
        velocity = np.zeros(3)
        velocity[:2] = self.config.push_speed * geo.direction \
            - self.config.gain * (lateral - self.offset) * geo.normal
        velocity[2] = self.config.gain * (self.config.push_height - obs.tcp[2])
        return velocity, 'pushing'


def test_a_correction_recentres_an_off_centre_push_without_lifting(world):
    """Physics: the expert takes over a push running off centre, backs off onto the line at
    push height and hands back pushing, in about a second, without knocking the cube."""
    world.set_seed(3)
    state = world.reset()
    start = float(state['time'])
    policy = OffCentrePusher(rng=np.random.default_rng(0))
    expert = ScriptedExpert(rng=np.random.default_rng(1))
    policy.reset(state, side=1)
    expert.reset(state, side=1)
    monitor = CorrectionMonitor(CorrectionConfig(min_correction_time=1.0))
    monitor.reset(start)
    integrator = TargetIntegrator(world.tcp_pose())
    steps = int(round(0.02 / world.timestep))
    dt = steps * world.timestep
    takeovers, heights = [], []
    while not state['success'] and float(state['time']) - start < 30.0:
        tcp, state = world.tcp_pose(), world.task_state()
        now, obs = float(state['time']), Observation.from_pose(tcp, state)
        was = monitor.correcting
        correcting = monitor.update(now, *expert.plan_deviation(obs), bool(state['success']),
                                    expert.push_offset(obs, now), expert.phase == 'push')
        if correcting and not was:
            expert.resume(obs)
            takeovers.append([now, None, expert.phase])
        elif was and not correcting:
            takeovers[-1][1] = now
        if correcting:
            heights.append(float(tcp.position[2]))
        command = expert.act(obs, dt) if correcting else policy.act(obs, dt)
        world.set_target(integrator.step(command, dt, tcp.position))
        world.set_gripper(command.gripper)
        world.step(steps)
    assert state['success']
    assert takeovers and all(phase == 'behind' for _, _, phase in takeovers)
    assert all(end is not None and end - begin < 1.5 for begin, end, _ in takeovers)
    assert max(heights) < ExpertConfig().push_height + 0.01  # never lifted


def test_push_offset_watches_the_paddle_only_while_it_moves_the_cube():
    goal = [0.5, 0.30]  # push along +y; left of the line is -x

    def offsets(paddle_x: float, paddle_z: float = 0.025, cube_speed: float = 0.05,
                ticks: int = 10) -> list[float]:
        expert = ScriptedExpert(rng=np.random.default_rng(0))
        expert.reset({'task': 'push', 'cube': [0.5, 0.0, 0.025], 'goal': goal}, side=1)
        out = []
        for k in range(ticks):
            y = cube_speed * 0.02 * k
            state = {'task': 'push', 'cube': [0.5, y, 0.025], 'goal': goal}
            out.append(expert.push_offset(
                Observation(np.array([paddle_x, y - 0.036, paddle_z]), 0.0, state), 0.02 * k))
        return out

    off_centre = offsets(0.47)
    assert off_centre[0] == 0.0  # no track yet: not known to move
    assert off_centre[-1] == pytest.approx(0.03)
    assert max(offsets(0.47, cube_speed=0.0)) == 0.0    # paddle beside a cube at rest
    assert max(offsets(0.47, paddle_z=0.08)) == 0.0     # something else moves it
    assert max(offsets(0.499)) == pytest.approx(0.001)  # a push on the line
    assert CorrectionConfig().push_lateral == pytest.approx(0.02)


def test_an_off_centre_takeover_lasts_until_the_expert_pushes():
    monitor = CorrectionMonitor(CorrectionConfig(min_correction_time=1.0, push_lateral=0.02))
    monitor.reset(0.0)
    assert not monitor.update(0.1, 0.01, 0.5, False, push_offset=0.015)
    assert monitor.update(0.2, 0.01, 0.5, False, push_offset=0.04, pushing=False)
    assert 'pushing the cube 0.040 m off its centre line' in monitor.reason
    # Back on plan and progressing long enough, but not pushing yet: keeps the pedal down.
    assert monitor.update(1.5, 0.01, 0.3, False, pushing=False)
    assert not monitor.update(1.6, 0.01, 0.2, False, pushing=True)
    assert monitor.interventions == 1
    # Other takeovers hand back without waiting for a push.
    assert monitor.update(1.7, 0.2, 0.2, False, pushing=False) and 'off plan' in monitor.reason
    assert not monitor.update(2.8, 0.01, 0.1, False, pushing=False)


def test_push_contact_probe_reports_the_offset_at_contact_and_the_heading():
    probe = PushContactProbe(np.array([0.5, 0.0]), np.array([0.5, 0.1]))  # push along +y
    heading = math.radians(-10.0)  # the cube leaves turned right of the push line
    along = np.array([math.sin(-heading), math.cos(heading)])
    for travel in np.linspace(0.0, 0.05, 51):
        cube = np.array([0.5, 0.0]) + travel * along
        tcp = cube + np.array([-0.012, -0.036])  # 12 mm left of the line (left of +y is -x)
        probe.update(tcp, cube)
        if travel < 0.005 - 1e-9:
            assert probe.contact_lateral_m is None
    assert probe.contact_lateral_m == pytest.approx(0.012, abs=1e-6)
    assert probe.heading_deg == pytest.approx(-10.0, abs=1e-6)


def test_push_contact_probe_stays_empty_while_the_cube_has_not_moved():
    probe = PushContactProbe(np.array([0.5, 0.0]), np.array([0.6, 0.0]))
    probe.update(np.array([0.4, 0.0]), np.array([0.502, 0.0]))
    assert probe.contact_lateral_m is None and probe.heading_deg is None

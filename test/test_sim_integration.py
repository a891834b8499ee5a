"""sim_arm and sim_expert as real processes over DDS, observed by an in-process probe.

Timing is measured in sim time (the sim runs with use_sim_time, so message stamps are sim
time), which keeps the assertions meaningful on a loaded shared machine."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, Twist
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import CameraInfo, Image, JointState, Joy
from std_msgs.msg import Float64, String
from std_srvs.srv import Trigger

from bc_robot.core.pose import Pose
from bc_robot.nodes.common import (COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, pose_from_msg,
                                   pose_to_msg, seconds_to_stamp, stamp_to_seconds)
from bc_robot.sim.tasks import TaskConfig, sample_scene

from conftest import REPO, wait_for

pytestmark = pytest.mark.integration

SIM = 'bc_robot.nodes.sim_arm'
EXPERT = 'bc_robot.nodes.sim_expert'
DOWN = np.array([1.0, 0.0, 0.0, 0.0])


class Observer:
    """Collects what the sim publishes, with the stamps it carries."""

    def __init__(self, node, images: bool = False) -> None:
        self.node = node
        self.lock = threading.Lock()
        self.poses: list[tuple[float, np.ndarray]] = []
        self.joints: list[JointState] = []
        self.task: dict | None = None
        self.diagnostics: dict[str, str] = {}
        self.images: dict[str, list[Image]] = {'front': [], 'wrist': []}
        self.infos: dict[str, CameraInfo] = {}
        node.create_subscription(PoseStamped, '/current_pose', self._on_pose, SENSOR_QOS)
        node.create_subscription(JointState, '/joint_states', self._keep(self.joints), SENSOR_QOS)
        node.create_subscription(String, '/sim/task_state', self._on_task, LATCHED_QOS)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        if images:
            for cam in ('front', 'wrist'):
                node.create_subscription(Image, f'/camera/{cam}/image_raw',
                                         self._keep(self.images[cam]), SENSOR_QOS)
                node.create_subscription(CameraInfo, f'/camera/{cam}/camera_info',
                                         lambda m, c=cam: self.infos.__setitem__(c, m),
                                         SENSOR_QOS)
        self.pub_target = node.create_publisher(PoseStamped, '/target_pose', COMMAND_QOS)
        self.pub_gripper = node.create_publisher(Float64, '/gripper/target', COMMAND_QOS)
        self.reset_client = node.create_client(Trigger, '/sim/reset')
        self.param_client = node.create_client(SetParameters, '/sim_arm/set_parameters')

    def _keep(self, store: list):
        def callback(msg):
            with self.lock:
                store.append(msg)
                del store[:-400]
        return callback

    def _on_pose(self, msg: PoseStamped) -> None:
        with self.lock:
            self.poses.append((stamp_to_seconds(msg.header.stamp), pose_from_msg(msg).position))

    def _on_task(self, msg: String) -> None:
        self.task = json.loads(msg.data)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == 'sim_arm: physics':
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def last_pose(self) -> tuple[float, np.ndarray]:
        with self.lock:
            return self.poses[-1]

    def poses_since(self, t0: float) -> list[tuple[float, np.ndarray]]:
        with self.lock:
            return [p for p in self.poses if p[0] >= t0]

    def send_target(self, position, orientation=DOWN, frame: str = 'base') -> None:
        msg = pose_to_msg(Pose(np.array(position, dtype=float), np.array(orientation, dtype=float)),
                          frame, seconds_to_stamp(0.0))
        self.pub_target.publish(msg)

    def call(self, client, request, timeout: float = 20.0):
        assert client.wait_for_service(timeout_sec=timeout), client.srv_name
        future = client.call_async(request)
        assert wait_for(future.done, timeout), f'{client.srv_name} did not answer'
        return future.result()

    def reset(self) -> dict:
        return json.loads(self.call(self.reset_client, Trigger.Request()).message)

    def set_seed(self, seed: int) -> None:
        value = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=seed)
        request = SetParameters.Request(parameters=[ParameterMsg(name='seed', value=value)])
        assert self.call(self.param_client, request).results[0].successful


def start_sim(launch_node, **params):
    return launch_node(SIM, params={'camera_rate': 0.0, 'use_sim_time': True, **params})


def test_arm_tracks_a_step_within_5mm_in_1s_without_overshoot_and_ignores_bad_targets(
        probe, launch_node):
    obs = Observer(probe.node)
    sim = start_sim(launch_node)
    assert wait_for(lambda: len(obs.poses) > 50, 60), sim.log()
    assert wait_for(lambda: probe.node.count_subscribers('/target_pose') > 0 and
                    obs.pub_target.get_subscription_count() > 0, 20)
    t0, start = obs.last_pose()
    assert np.linalg.norm(start - [0.45, 0.0, 0.30]) < 0.002  # holds home before any target
    step = np.array([0.05, 0.0, -0.03])
    target = start + step
    obs.send_target(target)
    assert wait_for(lambda: obs.last_pose()[0] > t0 + 1.5, 30)
    track = obs.poses_since(t0)
    direction = step / np.linalg.norm(step)
    after_1s = [p for t, p in track if t >= t0 + 1.0]
    assert after_1s and np.linalg.norm(after_1s[0] - target) <= 0.005, after_1s[0] - target
    overshoot = max(float((p - target) @ direction) for _, p in track)
    assert overshoot <= 0.010, overshoot
    assert len(track) > 20  # the pose stream really was sampled during the move

    # Bad targets: NaN position, non-unit quaternion, wrong frame. The arm holds.
    t1, held = obs.last_pose()
    obs.send_target([float('nan'), 0.0, 0.3])
    obs.send_target(target + [0.1, 0, 0], [0.0, 0.0, 0.0, 2.0])
    obs.send_target(target + [0.1, 0, 0], [0.0, 0.0, 0.0, 0.5])
    obs.send_target(target + [0.1, 0, 0], frame='world')
    assert wait_for(lambda: obs.last_pose()[0] > t1 + 1.0, 30)
    assert max(np.linalg.norm(p - held) for _, p in obs.poses_since(t1)) < 0.001
    assert wait_for(lambda: int(obs.diagnostics.get('rejected_targets', 0)) >= 4, 20), \
        obs.diagnostics
    assert obs.diagnostics['rejected_non_finite'] == '1'
    assert obs.diagnostics['rejected_quaternion_norm'] == '2'
    assert obs.diagnostics['rejected_frame_id'] == '1'
    assert 'ignored /target_pose' in sim.log()

    # The gripper follows /gripper/target; joint_states carries arm + finger joints.
    obs.pub_gripper.publish(Float64(data=0.0))
    def closed() -> bool:
        with obs.lock:
            js = obs.joints[-1]
        return js.position[js.name.index('finger_joint1')] < 0.004
    assert wait_for(closed, 20)
    with obs.lock:
        names = list(obs.joints[-1].name)
    assert names == [f'joint{i}' for i in range(1, 8)] + ['finger_joint1', 'finger_joint2']
    assert sim.alive()


def _blob(image: Image, colour: str) -> tuple[int, np.ndarray]:
    rgb = np.frombuffer(bytes(image.data), dtype=np.uint8).reshape(image.height, image.width, 3)
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    if colour == 'red':
        mask = (r > 120) & (g < 60) & (b < 60)
    else:
        mask = (g > 120) & (r < 100) & (b < 110)
    ys, xs = np.nonzero(mask)
    return int(mask.sum()), (np.array([xs.mean(), ys.mean()]) if xs.size else np.zeros(2))


def test_cameras_show_cube_and_goal_and_reset_with_the_same_seed_reproduces_the_scene(
        probe, launch_node):
    obs = Observer(probe.node, images=True)
    sim = start_sim(launch_node, camera_rate=10.0)
    assert wait_for(lambda: obs.images['front'] and obs.images['wrist'] and
                    len(obs.infos) == 2, 60), sim.log()

    def frame_after(t: float) -> Image:
        assert wait_for(lambda: obs.images['front'] and
                        stamp_to_seconds(obs.images['front'][-1].header.stamp) > t, 20)
        with obs.lock:
            return obs.images['front'][-1]

    obs.set_seed(11)
    scene_a = obs.reset()
    image_a = frame_after(scene_a['time'])
    assert image_a.encoding == 'rgb8' and (image_a.width, image_a.height) == (320, 240)
    red_a, cube_px_a = _blob(image_a, 'red')
    green_a, goal_px_a = _blob(image_a, 'green')
    assert red_a > 30 and green_a > 30, (red_a, green_a)
    info = obs.infos['front']
    assert (info.width, info.height) == (320, 240) and info.k[0] > 0 and info.k[2] == 159.5
    with obs.lock:
        wrist = obs.images['wrist'][-1]
    assert (wrist.width, wrist.height) == (320, 240)
    assert np.frombuffer(bytes(wrist.data), dtype=np.uint8).std() > 5  # not a blank frame

    expected = sample_scene(TaskConfig(), 11)
    assert np.allclose(scene_a['cube'][:2], expected.cube_xy, atol=1e-5)
    assert np.allclose(scene_a['goal'], expected.goal_xy, atol=1e-5)

    scene_b = obs.reset()  # the next seed: a different scene, and the pixels show it
    image_b = frame_after(scene_b['time'])
    assert scene_b['seed'] == 12 and scene_b['cube'] != scene_a['cube']
    assert np.linalg.norm(_blob(image_b, 'red')[1] - cube_px_a) > 3.0

    obs.set_seed(11)
    scene_c = obs.reset()
    image_c = frame_after(scene_c['time'])
    assert scene_c['seed'] == 11
    assert scene_c['cube'] == scene_a['cube'] and scene_c['goal'] == scene_a['goal']
    assert np.linalg.norm(_blob(image_c, 'red')[1] - cube_px_a) < 1.0
    assert np.linalg.norm(_blob(image_c, 'green')[1] - goal_px_a) < 1.0
    assert sim.alive()


def test_unknown_task_fails_startup_naming_it(launch_node):
    sim = launch_node(SIM, params={'task': 'stack_blocks', 'camera_rate': 0.0})
    assert sim.wait(timeout=60) == 2
    assert 'stack_blocks' in sim.log()


def test_demo_runs_the_expert_in_direct_mode_over_topics_and_saves_frames(tmp_path):
    """`bc-robot demo` (= `make demo`): sim_arm + sim_expert as real processes, the expert
    solving push episodes through /target_pose, frames saved as PNG."""
    out = tmp_path / 'demo'
    proc = subprocess.run([str(Path(sys.executable).with_name('bc-robot')), 'demo',
                           '--episodes', '2', '--expert-only', '--output', str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'success rate: 2/2 (100 %)' in proc.stdout, proc.stdout
    assert 'no policy is deployed in this run' in proc.stdout
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['mode'] == 'direct' and summary['successes'] == 2
    assert all(r['final_distance'] <= 0.02 for r in summary['results'])
    assert 'done: 2/2' in (out / 'sim_expert.log').read_text()
    import cv2
    for name in ('start_front', 'start_wrist', 'episode2_end_front', 'episode2_end_wrist'):
        image = cv2.imread(str(out / f'{name}.png'))
        assert image is not None and image.shape == (240, 320, 3), name
    bgr = cv2.imread(str(out / 'start_front.png')).astype(int)
    red = (bgr[..., 2] > 120) & (bgr[..., 1] < 60) & (bgr[..., 0] < 60)
    assert red.sum() > 30  # the cube is in the saved frame


def test_expert_teleop_mode_publishes_spacenav_twist_joy_correction_presses_the_pedal_watch_never(
        probe, launch_node):
    joys: dict[str, list[Joy]] = {'teleop': [], 'correction': [], 'watch': []}
    twists: list[Twist] = []
    node = probe.node
    node.create_subscription(Joy, '/spacenav/joy', joys['teleop'].append, 10)
    node.create_subscription(Joy, '/corrector/joy', joys['correction'].append, 10)
    node.create_subscription(Joy, '/watcher/joy', joys['watch'].append, 10)
    node.create_subscription(Twist, '/spacenav/twist', twists.append, 10)
    start_sim(launch_node)
    launch_node(EXPERT, params={'mode': 'teleop', 'episodes': 1, 'use_sim_time': True})
    # Nothing integrates the twist here (that is the teleop node's job), so the arm does not
    # move and the watching expert sees no progress: it must take over with the pedal.
    launch_node(EXPERT, name='corrector', params={
        'mode': 'correction', 'use_sim_time': True, 'stall_time': 1.0,
        'joy_topic': '/corrector/joy', 'twist_topic': '/corrector/twist'})
    # ... and one that only watches (evaluations) must not, with the same trigger settings
    launch_node(EXPERT, name='watcher', params={
        'mode': 'watch', 'use_sim_time': True, 'stall_time': 1.0,
        'joy_topic': '/watcher/joy', 'twist_topic': '/watcher/twist'})
    assert wait_for(lambda: any(j.buttons[1] == 1 for j in joys['teleop']), 60)  # start
    assert wait_for(lambda: any(j.buttons[0] == 1 for j in joys['teleop']), 20)  # close
    assert wait_for(lambda: any(max(abs(a) for a in j.axes) > 0.2 for j in joys['teleop']), 20)
    assert all(len(j.axes) == 6 and len(j.buttons) == 3 for j in joys['teleop'])
    assert all(-1.0 <= a <= 1.0 for j in joys['teleop'] for a in j.axes)
    assert twists and any(abs(t.linear.x) + abs(t.linear.y) + abs(t.linear.z) > 0.1
                          for t in twists)
    assert wait_for(lambda: any(j.buttons[2] == 1 for j in joys['correction']), 30)
    pressed = [j for j in joys['correction'] if j.buttons[2] == 1]
    assert any(max(abs(a) for a in j.axes) > 0.05 for j in pressed)  # and it drives
    # 3 s of its messages at 50 Hz: past the 0.5 s grace plus the 1 s stall the corrector took
    assert wait_for(lambda: len(joys['watch']) > 150, 30)
    assert all(j.buttons[2] == 0 and max(abs(a) for a in j.axes) == 0.0 for j in joys['watch'])
